// The `sim` power source of a simulated worker: idle watts from the
// profile while no step runs, and each simulated step's profiled watts for
// its simulated seconds. What a profiled machine would draw under this
// load, never a measurement; its metrics say source="sim".
#ifndef TOKENFAB_WORKER_POWER_SIM_POWER_METER_H_
#define TOKENFAB_WORKER_POWER_SIM_POWER_METER_H_

#include <chrono>
#include <functional>

#include "absl/synchronization/mutex.h"
#include "worker/power/power_meter.h"

namespace tokenfab {

class SimPowerMeter : public PowerMeter {
 public:
  // Cumulative joules and seconds of the simulated steps so far.
  struct Steps {
    double joules = 0;
    double seconds = 0;
  };
  SimPowerMeter(double idle_watts, std::function<Steps()> steps)
      : idle_watts_(idle_watts),
        steps_(std::move(steps)),
        start_(std::chrono::steady_clock::now()) {}

  std::string_view source() const override { return "sim"; }
  std::string description() const override;
  // idle watts x (wall time - step time) + the steps' joules.
  absl::StatusOr<double> EnergyJoules() override;

 private:
  const double idle_watts_;
  const std::function<Steps()> steps_;
  const std::chrono::steady_clock::time_point start_;
  absl::Mutex mu_;
  double last_ ABSL_GUARDED_BY(mu_) = 0;  // readings never go down
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_POWER_SIM_POWER_METER_H_
