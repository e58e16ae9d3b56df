// The `rapl` power source: the CPU packages' energy counters from the
// kernel's powercap interface (<root>/intel-rapl:N/energy_uj, also used for
// AMD packages). Each counter counts microjoules and wraps to zero after
// max_energy_range_uj; a reading smaller than the last one is a wrap.
// Counters must be read at least once per wrap period (minutes at full
// load; EnergyMonitor reads every 250 ms).
//
// The packages' energy is the whole machine's CPU work, not only this
// process's: run one worker per machine for per-worker figures.
#ifndef TOKENFAB_WORKER_POWER_RAPL_POWER_METER_H_
#define TOKENFAB_WORKER_POWER_RAPL_POWER_METER_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/power/power_meter.h"

namespace tokenfab {

class RaplPowerMeter : public PowerMeter {
 public:
  // NotFound when `root` has no package zone, PermissionDenied when a
  // counter cannot be read (recent kernels let only root read energy_uj).
  static absl::StatusOr<std::unique_ptr<RaplPowerMeter>> Create(const std::string& root);

  std::string_view source() const override { return "rapl"; }
  std::string description() const override;
  absl::StatusOr<double> EnergyJoules() override;

 private:
  struct Zone {
    std::string path, name;
    uint64_t max_range_uj = 0;
    uint64_t last_uj = 0;
  };
  explicit RaplPowerMeter(std::vector<Zone> zones) : zones_(std::move(zones)) {}

  mutable absl::Mutex mu_;
  std::vector<Zone> zones_ ABSL_GUARDED_BY(mu_);
  double joules_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_POWER_RAPL_POWER_METER_H_
