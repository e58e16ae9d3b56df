// The `model` power source: P = idle + (busy - idle) * utilization, where
// utilization is the share of wall time the engine spent stepping since the
// last reading. Declared watts, so an estimate; its metrics say source="model".
#ifndef TOKENFAB_WORKER_POWER_MODEL_POWER_METER_H_
#define TOKENFAB_WORKER_POWER_MODEL_POWER_METER_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/power/power_meter.h"

namespace tokenfab {

class ModelPowerMeter : public PowerMeter {
 public:
  // Monotonic seconds; the default is the steady clock.
  using Now = std::function<double()>;

  // InvalidArgument unless 0 <= idle_watts <= busy_watts (and finite).
  static absl::StatusOr<std::unique_ptr<ModelPowerMeter>> Create(double idle_watts,
                                                                 double busy_watts,
                                                                 BusySeconds busy_seconds,
                                                                 Now now = nullptr);

  std::string_view source() const override { return "model"; }
  std::string description() const override;
  absl::StatusOr<double> EnergyJoules() override;

 private:
  ModelPowerMeter(double idle, double busy, BusySeconds busy_seconds, Now now);

  const double idle_watts_, busy_watts_;
  const BusySeconds busy_seconds_;
  const Now now_;
  absl::Mutex mu_;
  double last_time_ ABSL_GUARDED_BY(mu_);
  double last_busy_ ABSL_GUARDED_BY(mu_);
  double joules_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_POWER_MODEL_POWER_METER_H_
