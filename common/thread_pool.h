// A fork-join pool for the engine's data-parallel loops.
//
// ParallelFor() hands out index ranges from an atomic counter; the calling
// thread takes ranges too. Results never depend on which thread ran which
// range: the engine only parallelises over independent outputs (a matmul's
// rows, an attention head), never inside one reduction, so outputs are
// bit-identical for any thread count.
//
// A worker only counts once it has joined a job, so when the machine is busy
// and a worker is not scheduled, the caller simply runs the ranges itself
// instead of waiting for it. Threads spin briefly before sleeping, because a
// decode step opens hundreds of short parallel regions.
//
// ParallelFor() must be called from one thread at a time (the engine loop).
#ifndef TOKENFAB_COMMON_THREAD_POOL_H_
#define TOKENFAB_COMMON_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace tokenfab {

class ThreadPool {
 public:
  // `num_threads` counts the caller; 1 means everything runs inline. If the
  // system refuses to start a thread, the pool runs with those it started.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) over disjoint ranges covering [0, n), each at most
  // `grain` long, and returns when all have run. If fn throws, the remaining
  // ranges are skipped and the first exception is rethrown here.
  // fn is borrowed for the call (no allocation, whatever the lambda holds).
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void WorkerLoop();
  void RunRanges();
  void WakeSleepers();

  int num_threads_ = 1;
  std::vector<std::thread> workers_;

  // The current job, valid while open_ is true.
  const absl::FunctionRef<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<int64_t> next_{0};

  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> open_{false};
  std::atomic<int> active_{0};  // workers inside the current job
  std::atomic<bool> stop_{false};

  // Sleeping after the spin (std::atomic::wait in GCC 12's libstdc++ can
  // lose wake-ups, so a plain mutex and condition variable).
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
  std::exception_ptr error_;  // guarded by mu_ while a job runs
};

// The number of hardware threads, at least 1.
int HardwareThreads();

}  // namespace tokenfab

#endif  // TOKENFAB_COMMON_THREAD_POOL_H_
