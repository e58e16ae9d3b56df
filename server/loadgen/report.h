// The report of a `tokenfab bench` run: its conditions (target, load, workload,
// machine) and its figures, as aligned text for people or as one JSON object
// for scripts (bench/compare_aiperf.sh, bench/vs_llamacpp.sh read it).
#ifndef TOKENFAB_SERVER_LOADGEN_REPORT_H_
#define TOKENFAB_SERVER_LOADGEN_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/loadgen/stats.h"
#include "server/loadgen/worker_meters.h"

namespace tokenfab::loadgen {

struct MachineInfo {
  std::string host;
  std::string cpu;  // /proc/cpuinfo "model name"
  int32_t hardware_threads = 0;
  std::string load_average;  // /proc/loadavg's first three fields
};

// Reads the host name, CPU model, thread count and load average now.
MachineInfo ReadMachineInfo();

// Now as UTC "YYYY-MM-DDTHH:MM:SSZ".
std::string UtcNow();

struct BenchConditions {
  std::string target;       // as given: grpc://... or http://...
  std::string model_id;     // the served model's id
  int32_t concurrency = 0;  // closed loop: users; open loop: the in-flight cap
  double rate = 0;          // requests/s, Poisson; 0 means closed loop
  int32_t isl = 0;
  int32_t osl = 0;
  int32_t requests = 0;
  int32_t warmup = 0;
  uint64_t seed = 0;
  std::string tokenizer;   // the model file whose tokenizer sized the prompts
  std::string extra_body;  // extra HTTP request fields, if any
  SloTargets targets;
  MachineInfo machine;
  std::string load_average_at_end;
  std::string started_at;  // UtcNow() at the start
};

// The run's energy from the workers' meters, or why there is none.
struct EnergyReport {
  std::optional<RunEnergy> energy;
  std::string note;  // set when `energy` is not
};

std::string FormatReportText(const BenchConditions& conditions, const BenchSummary& summary,
                             const EnergyReport& energy = {});
// One line of JSON: {"conditions": {...}, "results": {...}}; distributions
// are objects {count, mean, min, max, p50, p90, p99} in the unit their key
// names (_ms, _tokens).
// "results.energy" holds the energy figures, or null with "energy_note".
std::string FormatReportJson(const BenchConditions& conditions, const BenchSummary& summary,
                             const EnergyReport& energy = {});

// One JSON object per request, one per line, in the order they were listed:
// {"ok", "error", "start_s", "ttft_s", "latency_s", "output_tokens",
// "prompt_tokens", "itl_s"} with times in seconds from the run's start (null
// where a request has no such figure). For looking at what percentiles hide.
std::string FormatRecordsJsonLines(const std::vector<RequestRecord>& records);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_REPORT_H_
