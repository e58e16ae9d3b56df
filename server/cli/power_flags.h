// Flags of the power meter, shared by the commands that run engines (serve,
// worker): which source, and the declared model's watts.
#ifndef TOKENFAB_SERVER_CLI_POWER_FLAGS_H_
#define TOKENFAB_SERVER_CLI_POWER_FLAGS_H_

#include "absl/status/status.h"
#include "server/cli/flags.h"
#include "worker/power/power_meter.h"

namespace tokenfab {

struct PowerFlags {
  std::string source = "auto";
  float idle_watts = 10;
  float busy_watts = 50;
  std::string nvml_library = "libnvidia-ml.so.1";
  std::string rapl_root = "/sys/class/powercap";

  PowerOptions options(const std::string& device) const;
};

void AddPowerFlags(FlagSet& flags, PowerFlags* f);
absl::Status CheckPowerFlags(const PowerFlags& f);

// Prints where `command`'s watts come from, and why not from a measured
// source when "auto" fell back to the model.
void PrintPowerSource(std::string_view command, const PowerMeter& meter,
                      const std::string& fallback);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_POWER_FLAGS_H_
