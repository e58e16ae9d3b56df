// Joins an engine to a power meter: the energy monitor of one worker, fed
// with the engine's busy seconds and tokens. Sits above worker/engine and
// worker/power, which know nothing of each other.
#ifndef TOKENFAB_WORKER_ENGINE_ENERGY_H_
#define TOKENFAB_WORKER_ENGINE_ENERGY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/engine.h"
#include "worker/power/energy_monitor.h"

namespace tokenfab {

// The engine's cumulative activity, as the energy monitor reads it.
Activity EngineActivity(const Engine& engine);

// Creates the meter `power` asks for (split `sharers` ways for a rapl
// package that several workers in this process stand on) and starts its
// monitor. `engine` must outlive the monitor. `fallback` (optional) gets
// why "auto" did not find a measured source.
absl::StatusOr<std::unique_ptr<EnergyMonitor>> StartEnergyMonitor(const Engine& engine,
                                                                  const PowerOptions& power,
                                                                  int32_t sharers,
                                                                  std::string* fallback);

// Starts the monitor over a meter built elsewhere (a simulated worker's).
std::unique_ptr<EnergyMonitor> StartEnergyMonitor(const Engine& engine,
                                                  std::unique_ptr<PowerMeter> meter);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_ENERGY_H_
