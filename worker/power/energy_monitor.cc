#include "worker/power/energy_monitor.h"

#include <algorithm>
#include <cstdio>

namespace tokenfab {

EnergyMonitor::EnergyMonitor(std::unique_ptr<PowerMeter> meter, std::function<Activity()> activity,
                             EnergyMonitorOptions options)
    : meter_(std::move(meter)), activity_(std::move(activity)), options_(options) {
  {
    absl::MutexLock lock(&mu_);
    snapshot_.source = std::string(meter_->source());
  }
  if (!options_.start_thread) return;
  thread_ = std::thread([this] {
    const auto now = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
    Sample(now());
    while (!stop_.WaitForNotificationWithTimeout(absl::FromChrono(options_.interval))) {
      Sample(now());
    }
  });
}

EnergyMonitor::~EnergyMonitor() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

EnergySnapshot EnergyMonitor::Read() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

EnergySnapshot EnergyMonitor::ReadNow() {
  Sample(
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count());
  return Read();
}

void EnergyMonitor::Sample(double now) {
  // One sample at a time (the thread's tick and a scrape may race): a
  // reading applied out of order would count some energy twice.
  absl::MutexLock sampling(&sample_mu_);
  absl::StatusOr<double> meter_joules = meter_->EnergyJoules();
  const Activity a = activity_();
  absl::MutexLock lock(&mu_);
  if (!meter_joules.ok()) {
    // Keep the last figures; say so once, count every failure.
    if (snapshot_.meter_errors++ == 0) {
      std::fprintf(stderr, "tokenfab: %s power meter: %s\n", snapshot_.source.c_str(),
                   std::string(meter_joules.status().message()).c_str());
    }
    return;
  }
  if (!started_) {
    started_ = true;
    last_time_ = now;
    last_meter_joules_ = *meter_joules;
    last_activity_ = a;
    window_.push_back({now, 0.0, a.decode_tokens});
    return;
  }
  const double dt = now - last_time_;
  if (dt <= 0) return;
  const double energy = std::max(0.0, *meter_joules - last_meter_joules_);
  double prefill = std::max(0.0, a.prefill_seconds - last_activity_.prefill_seconds);
  double decode = std::max(0.0, a.decode_seconds - last_activity_.decode_seconds);
  // A step that began in the previous interval is counted whole in this one;
  // never attribute more than the interval's length.
  if (prefill + decode > dt) {
    const double scale = dt / (prefill + decode);
    prefill *= scale;
    decode *= scale;
  }
  EnergySnapshot& s = snapshot_;
  s.joules += energy;
  s.prefill_joules += energy * prefill / dt;
  s.decode_joules += energy * decode / dt;
  s.idle_joules += energy * std::max(0.0, dt - prefill - decode) / dt;
  last_time_ = now;
  last_meter_joules_ = *meter_joules;
  last_activity_ = a;

  window_.push_back({now, s.joules, a.decode_tokens});
  const double horizon = now - std::chrono::duration<double>(options_.window).count();
  while (window_.size() > 2 && window_[1].time <= horizon) window_.pop_front();
  // Watts over the last second or more: meters update their counters every
  // few milliseconds (RAPL) to every 100 ms (NVML), so a scrape just after a
  // tick would otherwise read noise.
  size_t from = window_.size() - 1;
  while (from > 0 && window_[from].time > now - 1.0) --from;
  if (from + 1 < window_.size()) {
    s.watts = (s.joules - window_[from].joules) / (now - window_[from].time);
  }
  const Point& first = window_.front();
  const double joules = s.joules - first.joules;
  s.tokens_per_joule =
      joules > 0
          ? static_cast<double>(std::max<int64_t>(0, window_.back().tokens - first.tokens)) / joules
          : 0.0;
}

}  // namespace tokenfab
