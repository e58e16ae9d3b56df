// Where a worker's energy figures come from. A PowerMeter reports the
// cumulative energy of what it measures; EnergyMonitor turns the readings
// into watts, joules by phase and tokens per joule.
//
// Three sources, named in every metric's `source` label:
//  - nvml:  a GPU's own counter (NVML, loaded with dlopen at run time);
//  - rapl:  the CPU packages' energy counters (Linux powercap);
//  - model: a declared idle/busy-watts model driven by the engine's busy
//           time, for machines with neither. An estimate, never presented
//           as a measurement.
//
// Implementations are thread-safe.
#ifndef TOKENFAB_WORKER_POWER_POWER_METER_H_
#define TOKENFAB_WORKER_POWER_POWER_METER_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tokenfab {

class PowerMeter {
 public:
  virtual ~PowerMeter() = default;
  // "nvml", "rapl" or "model".
  virtual std::string_view source() const = 0;
  // What is measured, for the start-up log ("GPU 0 NVIDIA H100 ...").
  virtual std::string description() const = 0;
  // Energy in joules since the meter was created; never decreases.
  virtual absl::StatusOr<double> EnergyJoules() = 0;
};

struct PowerOptions {
  // "auto" picks nvml for a cuda device, else rapl where it is readable,
  // else model.
  std::string source = "auto";
  std::string device = "cpu";  // the worker's --device: cuda:N picks GPU N for nvml
  std::string nvml_library = "libnvidia-ml.so.1";
  std::string rapl_root = "/sys/class/powercap";
  // The model source: watts drawn idle and while the engine steps.
  double idle_watts = 10;
  double busy_watts = 50;
};

// Cumulative seconds the engine has been busy (the model source's input).
using BusySeconds = std::function<double()>;

// Builds the meter `options` ask for. With source "auto", a source that is
// not available here is skipped and `*fallback_reason` (if given) says why.
absl::StatusOr<std::unique_ptr<PowerMeter>> CreatePowerMeter(
    const PowerOptions& options, BusySeconds busy_seconds, std::string* fallback_reason = nullptr);

// A 1/n share of a meter several workers in one process stand on (one CPU
// package under `serve --workers N`), so that their sum is the package once.
class SharedPowerMeter : public PowerMeter {
 public:
  SharedPowerMeter(std::shared_ptr<PowerMeter> meter, int32_t sharers)
      : meter_(std::move(meter)), sharers_(sharers < 1 ? 1 : sharers) {}
  std::string_view source() const override { return meter_->source(); }
  std::string description() const override;
  absl::StatusOr<double> EnergyJoules() override;

 private:
  std::shared_ptr<PowerMeter> meter_;
  const int32_t sharers_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_POWER_POWER_METER_H_
