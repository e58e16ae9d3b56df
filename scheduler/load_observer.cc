#include "scheduler/load_observer.h"

namespace tokenfab {

LoadObserver::LoadObserver(double ttft_target_seconds, double itl_target_seconds,
                           Clock::time_point start)
    : ttft_target_(ttft_target_seconds), itl_target_(itl_target_seconds), interval_start_(start) {}

void LoadObserver::Arrived(int32_t prompt_tokens) {
  absl::MutexLock lock(&mu_);
  ++arrivals_;
  ++totals_.arrived;
  if (prompt_tokens > 0) {
    ++arrivals_with_prompt_;
    prompt_tokens_ += prompt_tokens;
  }
}

void LoadObserver::Refused() {
  absl::MutexLock lock(&mu_);
  ++arrivals_;
  ++totals_.arrived;
  ++totals_.refused;
}

void LoadObserver::Ended(bool completed, int32_t output_tokens, std::optional<double> ttft,
                         std::optional<double> itl) {
  absl::MutexLock lock(&mu_);
  if (ttft) {
    ++ttft_count_;
    ttft_sum_ += *ttft;
  }
  if (itl) {
    ++itl_count_;
    itl_sum_ += *itl;
  }
  if (!completed) {
    ++totals_.failed;
    return;
  }
  ++completions_;
  output_tokens_ += output_tokens;
  ++totals_.completed;
  const bool ttft_ok = ttft && *ttft <= ttft_target_;
  const bool itl_ok = !itl || *itl <= itl_target_;  // one token has no inter-token gap
  totals_.met_ttft += ttft_ok;
  totals_.met_itl += itl_ok;
  totals_.met_both += ttft_ok && itl_ok;
}

IntervalLoad LoadObserver::Take(Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  IntervalLoad load;
  load.seconds = std::chrono::duration<double>(now - interval_start_).count();
  load.requests = arrivals_;
  if (arrivals_with_prompt_ > 0) load.mean_isl = prompt_tokens_ / arrivals_with_prompt_;
  if (completions_ > 0) load.mean_osl = output_tokens_ / completions_;
  load.finished = ttft_count_;
  if (ttft_count_ > 0) load.observed_ttft = ttft_sum_ / ttft_count_;
  if (itl_count_ > 0) load.observed_itl = itl_sum_ / itl_count_;
  interval_start_ = now;
  arrivals_ = arrivals_with_prompt_ = completions_ = ttft_count_ = itl_count_ = 0;
  prompt_tokens_ = output_tokens_ = ttft_sum_ = itl_sum_ = 0;
  return load;
}

LoadObserver::Totals LoadObserver::totals() const {
  absl::MutexLock lock(&mu_);
  return totals_;
}

}  // namespace tokenfab
