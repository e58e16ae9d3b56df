// The CUDA emulator's process-wide state (devices, streams, events, graphs,
// allocations), under one mutex, shared by the runtime's source files. Work
// itself (copies, kernels) runs outside the mutex, on the streams' threads.
#ifndef TOKENFAB_TESTS_CUDA_EMU_STATE_H_
#define TOKENFAB_TESTS_CUDA_EMU_STATE_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "tests/cuda_emu/emu_runtime.h"

namespace tokenfab::cuda_emu {

struct StreamState;
using StreamRef = std::shared_ptr<StreamState>;

// Work may start once `stream` has completed `seq` tasks.
struct Dep {
  StreamRef stream;
  uint64_t seq = 0;
};

struct Task {
  const char* what = "";
  Work work;
  std::vector<Dep> deps;
};

struct GraphNode {
  const char* what = "";
  Work work;
};

// A captured graph, and its instantiation (the same nodes, copied).
struct GraphState {
  std::vector<GraphNode> nodes;
  bool invalidated = false;
  std::string why;
};

struct StreamState {
  enum class Kind { kCreated, kLegacy, kPerThread };
  Kind kind = Kind::kCreated;
  int device = 0;
  unsigned flags = 0;
  uint64_t enqueued = 0;   // tasks ever enqueued
  uint64_t completed = 0;  // of them, done
  std::deque<Task> tasks;
  bool destroyed = false;  // its thread exits once the tasks are done
  std::shared_ptr<GraphState> capture;
  cudaStreamCaptureMode capture_mode = cudaStreamCaptureModeGlobal;
  std::thread::id capture_thread;
  // The legacy default stream waits for blocking streams, and they for it.
  bool Blocking() const { return kind != Kind::kCreated || (flags & cudaStreamNonBlocking) == 0; }
};

// When an event's latest record ran, shared by the record's task.
struct Stamp {
  bool done = false;
  std::chrono::steady_clock::time_point when;
};

struct EventState {
  int device = 0;
  unsigned flags = 0;
  StreamRef stream;  // of the latest record; null if never recorded
  uint64_t seq = 0;
  std::shared_ptr<Stamp> stamp;
  bool in_capture = false;  // the latest record was captured into a graph
};

struct DeviceState {
  cudaDeviceProp prop{};
  size_t total = 0;
  size_t used = 0;
  cudaError_t sticky = cudaSuccess;
  StreamRef legacy;
};

struct Runtime {
  absl::Mutex mu;
  std::vector<DeviceState> devices ABSL_GUARDED_BY(mu);
  // Live handles the application holds, for validation.
  absl::flat_hash_map<StreamState*, StreamRef> streams ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<EventState*, std::unique_ptr<EventState>> events ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<GraphState*, std::unique_ptr<GraphState>> graphs ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<GraphState*, std::unique_ptr<GraphState>> execs ABSL_GUARDED_BY(mu);
  std::map<uintptr_t, Allocation> allocations ABSL_GUARDED_BY(mu);  // by base
  std::atomic<uint64_t> allocations_changed{0};  // counts changes to `allocations`
  absl::flat_hash_set<uintptr_t> freeing ABSL_GUARDED_BY(mu);       // cudaFreeAsync pending
  absl::flat_hash_map<const void*, size_t> max_dynamic_shared ABSL_GUARDED_BY(mu);
  std::vector<StreamState*> capturing ABSL_GUARDED_BY(mu);
};

// The runtime, created on first use and never destroyed (streams' threads
// may outlive static destructors).
Runtime& R();

// A stream handle as the calling thread means it on `device` (0 and
// cudaStreamLegacy: the legacy stream; cudaStreamPerThread: the thread's
// own); null for a handle that is not a live stream.
StreamRef ResolveLocked(cudaStream_t handle, int device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
// Appends a task (or a graph node when capturing); the stream's sequence
// number of the task in *seq.
cudaError_t EnqueueLocked(const StreamRef& s, const char* what, Work work, uint64_t* seq = nullptr)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
// CUDA refuses synchronous ("unsafe") calls while a stream is captured in
// global mode, or in thread-local mode by the calling thread: such a call
// invalidates the capture and fails with cudaErrorStreamCaptureUnsupported.
cudaError_t CheckNotCapturingLocked(const char* api) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
// Invalidates the capture on `s` (it fails at cudaStreamEndCapture).
void InvalidateCaptureLocked(StreamState& s, const std::string& why)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
// Blocks until `s` has completed everything enqueued so far.
void DrainLocked(const StreamRef& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
// Every stream of `device` drained (cudaDeviceSynchronize, cudaFree).
void DrainDeviceLocked(int device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
bool ValidDeviceLocked(int device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
// The device's sticky error, or cudaSuccess.
cudaError_t StickyLocked(int device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);
// A new stream of `device` with its thread running.
StreamRef StartStreamLocked(int device, StreamState::Kind kind, unsigned flags)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu);

void SetCurrentDevice(int device);
// The thread's last error (or the device's sticky one); `reset` clears the
// former, as cudaGetLastError does.
cudaError_t TakeLastError(bool reset);

// Result of an API call: records it as the thread's last error.
inline cudaError_t Ret(cudaError_t e) { return SetLastError(e); }

}  // namespace tokenfab::cuda_emu

#endif  // TOKENFAB_TESTS_CUDA_EMU_STATE_H_
