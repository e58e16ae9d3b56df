// What `tokenfab bench` reads from the workers' energy meters: their
// /metrics pages (Prometheus text) before and after the run, summed over
// every worker on them, turned into the run's tokens per joule and joules
// per token by phase.
#ifndef TOKENFAB_SERVER_LOADGEN_WORKER_METERS_H_
#define TOKENFAB_SERVER_LOADGEN_WORKER_METERS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenfab::loadgen {

struct MeterReading {
  std::map<std::string, double> joules_by_source;  // tokenfab_energy_joules_total
  double prefill_joules = 0, decode_joules = 0, idle_joules = 0;
  double prefill_tokens = 0, decode_tokens = 0;  // tokenfab_worker_tokens_total
  int32_t meters = 0;  // samples of tokenfab_energy_joules_total (one per worker)
};

// Sums the energy and token samples of one metrics page. InvalidArgument
// for a malformed sample of those families.
absl::StatusOr<MeterReading> ParseMeterReading(std::string_view page);

// GETs each http://HOST:PORT/metrics and adds their readings.
absl::StatusOr<MeterReading> ReadWorkerMeters(const std::vector<std::string>& urls);

struct RunEnergy {
  std::string sources;  // e.g. "rapl", "model (a declared estimate, not a measurement)"
  int32_t meters = 0;
  double joules = 0;
  double tokens_per_joule = 0;  // output tokens / joules
  double joules_per_token = 0;
  double prefill_joules_per_token = 0;  // per prompt token computed (0 if none)
  double decode_joules_per_token = 0;   // per generated token
};

// The run's figures from readings before and after it and the output
// tokens the load generator received.
RunEnergy EnergyOfRun(const MeterReading& before, const MeterReading& after, int64_t output_tokens);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_WORKER_METERS_H_
