// Reads a worker's PowerMeter on its own thread (every 250 ms by default)
// and keeps what its metrics show: watts over the last interval, joules in
// total and by phase, and tokens per joule over a sliding window.
//
// Phase attribution is time-weighted: the energy of each interval goes to
// prefill, decode and idle in proportion to the seconds the engine spent in
// each during it (EngineStats' busy seconds; a mixed step is split by its
// token shares).
//
// Thread-safe: Read() from any thread; Sample() is what the thread runs,
// public so that tests can drive it with their own clock.
#ifndef TOKENFAB_WORKER_POWER_ENERGY_MONITOR_H_
#define TOKENFAB_WORKER_POWER_ENERGY_MONITOR_H_

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "worker/power/power_meter.h"

namespace tokenfab {

// The engine's cumulative activity, read at every sample.
struct Activity {
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;  // generated tokens: the numerator of tokens per joule
};

struct EnergyMonitorOptions {
  std::chrono::milliseconds interval{250};
  std::chrono::seconds window{60};  // of tokens per joule
  bool start_thread = true;         // false: the caller calls Sample()
};

struct EnergySnapshot {
  std::string source;
  double watts = 0;  // average over the last second (or more, up to the last reading before it)
  double joules = 0;
  double prefill_joules = 0;
  double decode_joules = 0;
  double idle_joules = 0;
  double tokens_per_joule = 0;  // generated tokens / joules over the window; 0 before any energy
  int64_t meter_errors = 0;
};

class EnergyMonitor {
 public:
  EnergyMonitor(std::unique_ptr<PowerMeter> meter, std::function<Activity()> activity,
                EnergyMonitorOptions options = {});
  ~EnergyMonitor();

  EnergySnapshot Read() const;
  // Takes a reading now, then returns the figures (a scrape sees energy up
  // to the moment it asked, not up to the last tick).
  EnergySnapshot ReadNow();
  const PowerMeter& meter() const { return *meter_; }

  // One reading at monotonic time `now_seconds`.
  void Sample(double now_seconds);

 private:
  struct Point {
    double time, joules;
    int64_t tokens;
  };

  std::unique_ptr<PowerMeter> meter_;
  const std::function<Activity()> activity_;
  const EnergyMonitorOptions options_;

  absl::Mutex sample_mu_;  // held through a whole Sample(), before mu_
  mutable absl::Mutex mu_;
  EnergySnapshot snapshot_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  double last_time_ ABSL_GUARDED_BY(mu_) = 0;
  double last_meter_joules_ ABSL_GUARDED_BY(mu_) = 0;
  Activity last_activity_ ABSL_GUARDED_BY(mu_);
  std::deque<Point> window_ ABSL_GUARDED_BY(mu_);

  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_POWER_ENERGY_MONITOR_H_
