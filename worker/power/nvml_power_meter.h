// The `nvml` power source: a GPU's energy counter through NVML, which the
// driver ships as libnvidia-ml.so.1. The library is loaded with dlopen when
// the meter is created, so the tokenfab binary starts on machines without a
// driver. Volta and newer GPUs count total energy (millijoules) themselves;
// on older ones the meter integrates the power reading (milliwatts).
#ifndef TOKENFAB_WORKER_POWER_NVML_POWER_METER_H_
#define TOKENFAB_WORKER_POWER_NVML_POWER_METER_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "worker/power/power_meter.h"

namespace tokenfab {

class NvmlPowerMeter : public PowerMeter {
 public:
  // Unavailable when the library cannot be loaded or initialised; NotFound
  // for a GPU index NVML does not know.
  static absl::StatusOr<std::unique_ptr<NvmlPowerMeter>> Create(const std::string& library,
                                                                uint32_t gpu_index);
  ~NvmlPowerMeter() override;

  std::string_view source() const override { return "nvml"; }
  std::string description() const override { return description_; }
  absl::StatusOr<double> EnergyJoules() override;

  struct Api;  // the NVML entry points, resolved with dlsym

 private:
  NvmlPowerMeter() = default;

  void* library_ = nullptr;
  std::unique_ptr<Api> api_;
  void* device_ = nullptr;  // nvmlDevice_t
  bool energy_counter_ = false;
  std::string description_;
  absl::Mutex mu_;
  uint64_t last_mj_ ABSL_GUARDED_BY(mu_) = 0;   // counter mode
  double last_watts_ ABSL_GUARDED_BY(mu_) = 0;  // power mode
  double last_time_ ABSL_GUARDED_BY(mu_) = 0;
  double joules_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_POWER_NVML_POWER_METER_H_
