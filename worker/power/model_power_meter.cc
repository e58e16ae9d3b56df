#include "worker/power/model_power_meter.h"

#include <chrono>
#include <cmath>

#include "common/strings.h"

namespace tokenfab {

absl::StatusOr<std::unique_ptr<ModelPowerMeter>> ModelPowerMeter::Create(double idle_watts,
                                                                         double busy_watts,
                                                                         BusySeconds busy_seconds,
                                                                         Now now) {
  if (!std::isfinite(idle_watts) || !std::isfinite(busy_watts) || idle_watts < 0 ||
      busy_watts < idle_watts) {
    return absl::InvalidArgumentError(
        StrCat("the power model needs 0 <= idle watts <= busy watts, got idle ", idle_watts,
               " and busy ", busy_watts));
  }
  if (!busy_seconds) return absl::InvalidArgumentError("the power model needs the busy time");
  if (!now) {
    now = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
  return std::unique_ptr<ModelPowerMeter>(
      new ModelPowerMeter(idle_watts, busy_watts, std::move(busy_seconds), std::move(now)));
}

ModelPowerMeter::ModelPowerMeter(double idle, double busy, BusySeconds busy_seconds, Now now)
    : idle_watts_(idle),
      busy_watts_(busy),
      busy_seconds_(std::move(busy_seconds)),
      now_(std::move(now)),
      last_time_(now_()),
      last_busy_(busy_seconds_()) {}

std::string ModelPowerMeter::description() const {
  return StrCat("declared model: ", idle_watts_, " W idle, ", busy_watts_,
                " W busy (an estimate, not a measurement)");
}

absl::StatusOr<double> ModelPowerMeter::EnergyJoules() {
  absl::MutexLock lock(&mu_);
  const double t = now_();
  const double b = busy_seconds_();
  const double dt = std::max(0.0, t - last_time_);
  // A step that ended just after the last reading can add more busy time
  // than wall time passed: never more than fully busy.
  const double db = std::clamp(b - last_busy_, 0.0, dt);
  joules_ += idle_watts_ * dt + (busy_watts_ - idle_watts_) * db;
  last_time_ = t;
  last_busy_ = std::max(last_busy_, b);
  return joules_;
}

}  // namespace tokenfab
