#include "worker/power/rapl_power_meter.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

// Reads a sysfs file holding one unsigned decimal number.
absl::StatusOr<uint64_t> ReadCounter(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(
          StrCat("cannot read ", path,
                 ": permission denied (the kernel lets only root read RAPL "
                 "counters; run as root or grant read access to energy_uj)"));
    }
    return absl::NotFoundError(StrCat("cannot read ", path, ": ", std::strerror(err)));
  }
  std::string text;
  std::getline(in, text);
  if (text.empty() || text.size() > 20 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return absl::DataLossError(
        StrCat(path, " does not hold a counter: '", text.substr(0, 40), "'"));
  }
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) return absl::DataLossError(StrCat(path, " is out of range"));
  return static_cast<uint64_t>(v);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RaplPowerMeter>> RaplPowerMeter::Create(const std::string& root) {
  std::error_code ec;
  std::vector<Zone> zones;
  // Top-level zones only (intel-rapl:0, intel-rapl:1): their subzones
  // (intel-rapl:0:0, cores, dram) are already counted in the package.
  static const std::regex kPackage("intel-rapl:[0-9]+");
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, kPackage)) continue;
    Zone z;
    z.path = entry.path().string();
    std::ifstream name_file(z.path + "/name");
    if (!std::getline(name_file, z.name)) z.name = name;
    ASSIGN_OR_RETURN(z.max_range_uj, ReadCounter(z.path + "/max_energy_range_uj"));
    ASSIGN_OR_RETURN(z.last_uj, ReadCounter(z.path + "/energy_uj"));
    if (z.max_range_uj == 0 || z.last_uj > z.max_range_uj) {
      return absl::DataLossError(StrCat(z.path, ": energy_uj ", z.last_uj,
                                        " does not fit max_energy_range_uj ", z.max_range_uj));
    }
    zones.push_back(std::move(z));
  }
  if (zones.empty()) {
    return absl::NotFoundError(StrCat("no RAPL package zone under ", root,
                                      ec ? StrCat(" (", ec.message(), ")") : std::string()));
  }
  std::sort(zones.begin(), zones.end(),
            [](const Zone& a, const Zone& b) { return a.path < b.path; });
  return std::unique_ptr<RaplPowerMeter>(new RaplPowerMeter(std::move(zones)));
}

std::string RaplPowerMeter::description() const {
  absl::MutexLock lock(&mu_);
  std::string out = "RAPL";
  for (const Zone& z : zones_) out += StrCat(" ", z.name, " (", z.path, ")");
  return out;
}

absl::StatusOr<double> RaplPowerMeter::EnergyJoules() {
  absl::MutexLock lock(&mu_);
  // Read every zone before applying any, so a failed read changes nothing.
  std::vector<uint64_t> now;
  for (const Zone& z : zones_) {
    ASSIGN_OR_RETURN(const uint64_t v, ReadCounter(z.path + "/energy_uj"));
    if (v > z.max_range_uj) {
      return absl::DataLossError(
          StrCat(z.path, "/energy_uj reads ", v, ", above its range ", z.max_range_uj));
    }
    now.push_back(v);
  }
  for (size_t i = 0; i < zones_.size(); ++i) {
    Zone& z = zones_[i];
    // The counter runs from 0 to max_energy_range_uj, then starts again at 0.
    const uint64_t delta =
        now[i] >= z.last_uj ? now[i] - z.last_uj : (z.max_range_uj - z.last_uj) + now[i];
    joules_ += static_cast<double>(delta) * 1e-6;
    z.last_uj = now[i];
  }
  return joules_;
}

}  // namespace tokenfab
