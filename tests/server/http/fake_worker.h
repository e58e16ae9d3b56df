// A WorkerClient for HTTP tests: each request gets its own thread that emits
// a fixed token sequence, one token per output with a delay, until
// max_tokens (finish LENGTH) or a Cancel (finish CANCELLED). Records which
// requests were cancelled; can be told to reject submissions (queue full).
#ifndef TOKENFAB_TESTS_SERVER_HTTP_FAKE_WORKER_H_
#define TOKENFAB_TESTS_SERVER_HTTP_FAKE_WORKER_H_

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "scheduler/worker_client.h"

namespace tokenfab::testing {

class FakeWorker : public WorkerClient {
 public:
  FakeWorker(std::vector<int32_t> tokens, std::chrono::milliseconds delay)
      : tokens_(std::move(tokens)), delay_(delay) {}

  ~FakeWorker() override {
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
  }

  absl::Status Submit(internal::v1::WorkerRequest request, OutputCallback on_output) override {
    absl::MutexLock lock(&mu_);
    if (reject_) return absl::ResourceExhaustedError("the worker's queue is full");
    submitted_.push_back(request.request_id());
    threads_.emplace_back([this, request = std::move(request), cb = std::move(on_output)] {
      Run(request, cb);
    });
    return absl::OkStatus();
  }

  void Cancel(const std::string& request_id) override {
    absl::MutexLock lock(&mu_);
    cancelled_.insert(request_id);
  }

  WorkerLoad Load() const override { return {}; }

  void set_reject(bool reject) {
    absl::MutexLock lock(&mu_);
    reject_ = reject;
  }
  std::string last_submitted() const {
    absl::MutexLock lock(&mu_);
    return submitted_.empty() ? "" : submitted_.back();
  }
  int submitted_count() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(submitted_.size());
  }
  bool WaitCancelled(const std::string& id, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto cancelled = [&] { return cancelled_.contains(id); };
    return mu_.AwaitWithTimeout(absl::Condition(&cancelled), timeout);
  }
  bool WasCancelled(const std::string& id) const {
    absl::MutexLock lock(&mu_);
    return cancelled_.contains(id);
  }

 private:
  void Run(const internal::v1::WorkerRequest& request, const OutputCallback& cb) {
    for (int32_t i = 0; i < request.max_tokens(); ++i) {
      std::this_thread::sleep_for(delay_);
      internal::v1::WorkerOutput out;
      out.set_request_id(request.request_id());
      {
        absl::MutexLock lock(&mu_);
        if (stopping_ || cancelled_.contains(request.request_id())) {
          out.set_finish(internal::v1::WORKER_FINISH_CANCELLED);
          cb(out);
          return;
        }
      }
      const int32_t token = tokens_[i % tokens_.size()];
      out.add_token_ids(token);
      if (request.logprobs() > 0) {
        internal::v1::TokenLogprobs* l = out.add_logprobs();
        l->mutable_chosen()->set_token_id(token);
        l->mutable_chosen()->set_logprob(-0.5f);
        for (int32_t k = 0; k < request.logprobs(); ++k) {
          internal::v1::TokenLogprob* t = l->add_top();
          t->set_token_id(k == 0 ? token : tokens_[(i + k) % tokens_.size()]);
          t->set_logprob(-0.5f - k);
        }
      }
      if (i + 1 == request.max_tokens()) out.set_finish(internal::v1::WORKER_FINISH_LENGTH);
      cb(out);
    }
  }

  const std::vector<int32_t> tokens_;
  const std::chrono::milliseconds delay_;
  mutable absl::Mutex mu_;
  bool reject_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> submitted_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> cancelled_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenfab::testing

#endif  // TOKENFAB_TESTS_SERVER_HTTP_FAKE_WORKER_H_
