#include "server/cli/power_flags.h"

#include <cmath>
#include <cstdio>

#include "common/strings.h"

namespace tokenfab {

PowerOptions PowerFlags::options(const std::string& device) const {
  PowerOptions o;
  o.source = source;
  o.device = device;
  o.nvml_library = nvml_library;
  o.rapl_root = rapl_root;
  o.idle_watts = idle_watts;
  o.busy_watts = busy_watts;
  return o;
}

void AddPowerFlags(FlagSet& flags, PowerFlags* f) {
  flags.AddString("power-source", &f->source,
                  "where watts and joules come from: auto (default: nvml on a GPU, rapl where "
                  "readable, else model), nvml, rapl or model");
  flags.AddFloat("power-idle-watts", &f->idle_watts,
                 "model source: watts one worker draws idle (default 10)");
  flags.AddFloat("power-busy-watts", &f->busy_watts,
                 "model source: watts one worker draws while stepping (default 50)");
  flags.AddString("nvml-library", &f->nvml_library,
                  "NVML library to load (default libnvidia-ml.so.1)");
  flags.AddString("rapl-root", &f->rapl_root,
                  "powercap folder with the RAPL zones (default /sys/class/powercap)");
}

absl::Status CheckPowerFlags(const PowerFlags& f) {
  if (f.source != "auto" && f.source != "nvml" && f.source != "rapl" && f.source != "model") {
    return absl::InvalidArgumentError(
        StrCat("--power-source must be auto, nvml, rapl or model, got '", f.source, "'"));
  }
  if (!std::isfinite(f.idle_watts) || !std::isfinite(f.busy_watts) || f.idle_watts < 0 ||
      f.busy_watts < f.idle_watts || f.busy_watts > 100000) {
    return absl::InvalidArgumentError(
        StrCat("--power-idle-watts and --power-busy-watts need 0 <= idle <= busy <= 100000, got ",
               f.idle_watts, " and ", f.busy_watts));
  }
  return absl::OkStatus();
}

void PrintPowerSource(std::string_view command, const PowerMeter& meter,
                      const std::string& fallback) {
  std::fprintf(stderr, "tokenfab %.*s: power source %.*s: %s%s\n", static_cast<int>(command.size()),
               command.data(), static_cast<int>(meter.source().size()), meter.source().data(),
               meter.description().c_str(),
               fallback.empty() ? "" : StrCat(" (no measured source: ", fallback, ")").c_str());
}

}  // namespace tokenfab
