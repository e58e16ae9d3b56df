// Small pieces every benchmark prints with: the machine's CPU name, medians
// and percentiles, and flag parsing that exits on --help or a bad flag.
#ifndef TOKENFAB_BENCH_BENCH_UTIL_H_
#define TOKENFAB_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "server/cli/flags.h"

namespace tokenfab::bench {

inline std::string CpuName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

// The value at fraction p (0.5: the median) of the sorted samples.
inline double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

inline double Median(std::vector<double> v) { return Percentile(std::move(v), 0.5); }

// Parses argv into `flags`; prints usage and exits 0 on --help, prints the
// error and exits 2 on a bad flag.
inline void ParseOrExit(FlagSet& flags, int argc, char** argv) {
  if (absl::Status s = flags.Parse(std::vector<std::string>(argv + 1, argv + argc)); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    std::exit(2);
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    std::exit(0);
  }
}

}  // namespace tokenfab::bench

#endif  // TOKENFAB_BENCH_BENCH_UTIL_H_
