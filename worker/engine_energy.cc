#include "worker/engine_energy.h"

namespace tokenfab {

Activity EngineActivity(const Engine& engine) {
  const EngineStats s = engine.Stats();
  return {s.prefill_busy_seconds, s.decode_busy_seconds, s.prefill_tokens, s.decode_tokens};
}

absl::StatusOr<std::unique_ptr<EnergyMonitor>> StartEnergyMonitor(const Engine& engine,
                                                                  const PowerOptions& power,
                                                                  int32_t sharers,
                                                                  std::string* fallback) {
  auto meter = CreatePowerMeter(
      power,
      [&engine] {
        const EngineStats s = engine.Stats();
        return s.prefill_busy_seconds + s.decode_busy_seconds;
      },
      fallback);
  if (!meter.ok()) return meter.status();
  std::unique_ptr<PowerMeter> m = std::move(*meter);
  if (sharers > 1 && m->source() == "rapl") {
    m = std::make_unique<SharedPowerMeter>(std::shared_ptr<PowerMeter>(std::move(m)), sharers);
  }
  return StartEnergyMonitor(engine, std::move(m));
}

std::unique_ptr<EnergyMonitor> StartEnergyMonitor(const Engine& engine,
                                                  std::unique_ptr<PowerMeter> meter) {
  return std::make_unique<EnergyMonitor>(std::move(meter),
                                         [&engine] { return EngineActivity(engine); });
}

}  // namespace tokenfab
