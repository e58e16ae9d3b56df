#include "common/thread_pool.h"

#include <algorithm>
#include <system_error>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tokenfab {
namespace {

// Tens of microseconds of spinning before a thread sleeps: longer than the
// gap between two parallel regions of a decode step, much shorter than an
// idle period.
constexpr int kSpinIterations = 2000;

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

}  // namespace

int HardwareThreads() { return std::max(1u, std::thread::hardware_concurrency()); }

ThreadPool::ThreadPool(int num_threads) {
  const int wanted = std::max(1, num_threads);
  workers_.reserve(wanted - 1);
  for (int i = 1; i < wanted; ++i) {
    // Where the system refuses another thread, run with the ones it gave.
    try {
      workers_.emplace_back([this] { WorkerLoop(); });
    } catch (const std::system_error&) {
      break;
    }
  }
  num_threads_ = static_cast<int>(workers_.size()) + 1;
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  WakeSleepers();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WakeSleepers() {
  // A worker counts itself in sleepers_ before it re-checks generation_
  // under the mutex, so either it sees the new generation or we see it here.
  if (sleepers_.load() == 0) return;
  { std::lock_guard<std::mutex> lock(mu_); }
  cv_.notify_all();
}

void ThreadPool::RunRanges() {
  try {
    while (true) {
      const int64_t begin = next_.fetch_add(grain_, std::memory_order_relaxed);
      if (begin >= n_) return;
      (*fn_)(begin, std::min(n_, begin + grain_));
    }
  } catch (...) {
    // Keep the first exception for the caller; stop handing out ranges.
    next_.store(n_);
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::WorkerLoop() {
  // Generation 0 is the value at construction; a worker that starts late
  // must still see every later change, the shutdown's included.
  uint32_t seen = 0;
  while (true) {
    int spins = 0;
    uint32_t gen;
    while ((gen = generation_.load()) == seen) {
      if (++spins < kSpinIterations) {
        CpuRelax();
        continue;
      }
      sleepers_.fetch_add(1);
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load() != seen; });
      }
      sleepers_.fetch_sub(1);
    }
    seen = gen;
    if (stop_.load()) return;
    // Join the job only if it is still open; the caller closes it before
    // waiting for active_ to drain (both sequentially consistent, so either
    // the caller sees us or we see it closed).
    active_.fetch_add(1);
    if (open_.load() && generation_.load() == seen) RunRanges();
    active_.fetch_sub(1);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (num_threads_ == 1 || n <= grain) {
    for (int64_t b = 0; b < n; b += grain) fn(b, std::min(n, b + grain));
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  next_.store(0);
  open_.store(true);
  generation_.fetch_add(1);
  WakeSleepers();
  RunRanges();
  open_.store(false);
  // Only workers that joined are waited for; their ranges are in flight. A
  // joined worker may have been preempted, so yield after a short spin.
  for (int spins = 0; active_.load() != 0; ++spins) {
    if (spins < kSpinIterations) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
  fn_ = nullptr;
  if (error_) {
    std::exception_ptr e = std::exchange(error_, nullptr);
    std::rethrow_exception(e);
  }
}

}  // namespace tokenfab
