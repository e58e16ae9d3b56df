#include "worker/power/power_meter.h"

#include "common/strings.h"
#include "worker/power/model_power_meter.h"
#include "worker/power/nvml_power_meter.h"
#include "worker/power/rapl_power_meter.h"

namespace tokenfab {
namespace {

// The GPU index of "cuda:N"; 0 for anything else.
absl::StatusOr<uint32_t> GpuIndex(const std::string& device) {
  if (device.rfind("cuda:", 0) != 0) return 0u;
  const std::string n = device.substr(5);
  if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(StrCat("device '", device, "' is not cuda:N"));
  }
  return static_cast<uint32_t>(std::stoul(n));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PowerMeter>> CreatePowerMeter(const PowerOptions& o,
                                                             BusySeconds busy_seconds,
                                                             std::string* fallback_reason) {
  auto model = [&]() -> absl::StatusOr<std::unique_ptr<PowerMeter>> {
    auto m = ModelPowerMeter::Create(o.idle_watts, o.busy_watts, std::move(busy_seconds));
    if (!m.ok()) return m.status();
    return std::unique_ptr<PowerMeter>(std::move(*m));
  };
  auto nvml = [&]() -> absl::StatusOr<std::unique_ptr<PowerMeter>> {
    auto index = GpuIndex(o.device);
    if (!index.ok()) return index.status();
    auto m = NvmlPowerMeter::Create(o.nvml_library, *index);
    if (!m.ok()) return m.status();
    return std::unique_ptr<PowerMeter>(std::move(*m));
  };
  auto rapl = [&]() -> absl::StatusOr<std::unique_ptr<PowerMeter>> {
    auto m = RaplPowerMeter::Create(o.rapl_root);
    if (!m.ok()) return m.status();
    return std::unique_ptr<PowerMeter>(std::move(*m));
  };
  if (o.source == "model") return model();
  if (o.source == "nvml") return nvml();
  if (o.source == "rapl") return rapl();
  if (o.source != "auto") {
    return absl::InvalidArgumentError(
        StrCat("power source must be auto, nvml, rapl or model, got '", o.source, "'"));
  }
  std::string why;
  if (o.device.rfind("cuda:", 0) == 0) {
    auto m = nvml();
    if (m.ok()) return m;
    why = StrCat("nvml: ", m.status().message());
  } else {
    auto m = rapl();
    if (m.ok()) return m;
    why = StrCat("rapl: ", m.status().message());
  }
  if (fallback_reason != nullptr) *fallback_reason = why;
  return model();
}

std::string SharedPowerMeter::description() const {
  return StrCat(meter_->description(), ", shared by ", sharers_, " workers (each counts 1/",
                sharers_, ")");
}

absl::StatusOr<double> SharedPowerMeter::EnergyJoules() {
  auto j = meter_->EnergyJoules();
  if (!j.ok()) return j.status();
  return *j / sharers_;
}

}  // namespace tokenfab
