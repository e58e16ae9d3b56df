// EnergyMonitor's arithmetic, driven by hand: watts over an interval,
// time-weighted split of energy into prefill, decode and idle, tokens per
// joule over the sliding window, and meter failures that change nothing.
#include "worker/power/energy_monitor.h"

#include <thread>

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

class ScriptedMeter : public PowerMeter {
 public:
  explicit ScriptedMeter(double* joules, bool* fail) : joules_(joules), fail_(fail) {}
  std::string_view source() const override { return "model"; }
  std::string description() const override { return "scripted"; }
  absl::StatusOr<double> EnergyJoules() override {
    if (*fail_) return absl::UnavailableError("meter unplugged");
    return *joules_;
  }

 private:
  double* joules_;
  bool* fail_;
};

struct Rig {
  double joules = 0;
  bool fail = false;
  Activity activity;
  std::unique_ptr<EnergyMonitor> monitor;
  explicit Rig(std::chrono::seconds window = std::chrono::seconds(60)) {
    monitor = std::make_unique<EnergyMonitor>(
        std::make_unique<ScriptedMeter>(&joules, &fail), [this] { return activity; },
        EnergyMonitorOptions{.window = window, .start_thread = false});
  }
};

TEST(EnergyMonitorTest, SplitsEachIntervalByPhaseTime) {
  Rig r;
  r.joules = 1000;  // what the meter counted before: not this monitor's
  r.monitor->Sample(10.0);
  r.joules += 100;  // 100 J over 2 s: 50 W
  r.activity.prefill_seconds = 0.5;
  r.activity.decode_seconds = 1.0;
  r.monitor->Sample(12.0);
  EnergySnapshot s = r.monitor->Read();
  EXPECT_EQ(s.source, "model");
  EXPECT_NEAR(s.watts, 50.0, 1e-9);
  EXPECT_NEAR(s.joules, 100.0, 1e-9);
  EXPECT_NEAR(s.prefill_joules, 25.0, 1e-9);
  EXPECT_NEAR(s.decode_joules, 50.0, 1e-9);
  EXPECT_NEAR(s.idle_joules, 25.0, 1e-9);
  EXPECT_NEAR(s.prefill_joules + s.decode_joules + s.idle_joules, s.joules, 1e-9);
}

TEST(EnergyMonitorTest, BusyTimeBeyondTheIntervalIsScaledDown) {
  Rig r;
  r.monitor->Sample(0.0);
  r.joules = 30;
  r.activity.prefill_seconds = 1.0;  // a step that began before the interval
  r.activity.decode_seconds = 2.0;
  r.monitor->Sample(1.0);
  EnergySnapshot s = r.monitor->Read();
  EXPECT_NEAR(s.prefill_joules, 10.0, 1e-9);
  EXPECT_NEAR(s.decode_joules, 20.0, 1e-9);
  EXPECT_NEAR(s.idle_joules, 0.0, 1e-9);
}

TEST(EnergyMonitorTest, TokensPerJouleOverTheWindow) {
  Rig r(std::chrono::seconds(10));
  r.monitor->Sample(0.0);
  EXPECT_EQ(r.monitor->Read().tokens_per_joule, 0.0);
  // 0..10 s: 100 J, 400 tokens.
  for (int t = 1; t <= 10; ++t) {
    r.joules += 10;
    r.activity.decode_tokens += 40;
    r.monitor->Sample(t);
  }
  EXPECT_NEAR(r.monitor->Read().tokens_per_joule, 4.0, 1e-9);
  // 10..20 s: 200 J, 200 tokens; the window now holds only these.
  for (int t = 11; t <= 20; ++t) {
    r.joules += 20;
    r.activity.decode_tokens += 20;
    r.monitor->Sample(t);
  }
  EXPECT_NEAR(r.monitor->Read().tokens_per_joule, 1.0, 1e-9);
  EXPECT_NEAR(r.monitor->Read().joules, 300.0, 1e-9);
}

TEST(EnergyMonitorTest, MeterFailureKeepsTheLastFigures) {
  Rig r;
  r.monitor->Sample(0.0);
  r.joules = 10;
  r.monitor->Sample(1.0);
  r.fail = true;
  r.joules = 1e9;
  r.monitor->Sample(2.0);
  EnergySnapshot s = r.monitor->Read();
  EXPECT_EQ(s.meter_errors, 1);
  EXPECT_NEAR(s.joules, 10.0, 1e-9);
  r.fail = false;
  r.joules = 1e9 + 5;  // what the meter counted while unreadable is counted once it reads again
  r.monitor->Sample(3.0);
  EXPECT_NEAR(r.monitor->Read().joules, 10.0 + (1e9 + 5 - 10), 1e-3);
}

// Each reading adds one joule.
class CountingMeter : public PowerMeter {
 public:
  std::string_view source() const override { return "rapl"; }
  std::string description() const override { return "counting"; }
  absl::StatusOr<double> EnergyJoules() override { return ++readings_; }

 private:
  double readings_ = 0;  // the monitor's thread only
};

TEST(EnergyMonitorTest, ThreadSamplesOnItsOwn) {
  EnergyMonitor m(
      std::make_unique<CountingMeter>(), [] { return Activity{}; },
      EnergyMonitorOptions{.interval = std::chrono::milliseconds(10)});
  for (int i = 0; i < 200 && m.Read().joules < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(m.Read().joules, 2.0);
  EXPECT_EQ(m.Read().source, "rapl");
  EXPECT_NEAR(m.Read().idle_joules, m.Read().joules, 1e-9);
}

}  // namespace
}  // namespace tokenfab
