#include "worker/power/sim_power_meter.h"

#include <algorithm>

#include "common/strings.h"

namespace tokenfab {

std::string SimPowerMeter::description() const {
  return StrCat("simulated: the profile's watts (", Fixed(idle_watts_, 1),
                " W idle, each step's profiled watts while it runs)");
}

absl::StatusOr<double> SimPowerMeter::EnergyJoules() {
  const Steps s = steps_();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double joules = idle_watts_ * std::max(0.0, wall - s.seconds) + s.joules;
  absl::MutexLock lock(&mu_);
  last_ = std::max(last_, joules);
  return last_;
}

}  // namespace tokenfab
