// The CUDA emulator's streams, events, graphs and host functions.
#include <chrono>
#include <string>

#include "tests/cuda_emu/state.h"

using namespace tokenfab::cuda_emu;  // NOLINT: the C API is global

namespace {

StreamState* AsState(cudaStream_t s) { return reinterpret_cast<StreamState*>(s); }
EventState* AsState(cudaEvent_t e) { return reinterpret_cast<EventState*>(e); }

EventState* FindEventLocked(cudaEvent_t e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  auto it = R().events.find(AsState(e));
  return it == R().events.end() ? nullptr : it->second.get();
}

bool EventDoneLocked(const EventState& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  return e.stream == nullptr || e.stream->completed >= e.seq;
}

}  // namespace

cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned int flags, int priority) {
  if (stream == nullptr || (flags & ~cudaStreamNonBlocking) != 0) {
    return Ret(cudaErrorInvalidValue);
  }
  absl::MutexLock lock(&R().mu);
  const int device = CurrentDevice();
  if (!ValidDeviceLocked(device)) return Ret(cudaErrorNoDevice);
  StreamRef s = StartStreamLocked(device, StreamState::Kind::kCreated, flags);
  R().streams.emplace(s.get(), s);
  *stream = reinterpret_cast<cudaStream_t>(s.get());
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  return cudaStreamCreateWithPriority(stream, flags, 0);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

// As in CUDA, work already enqueued still runs; the handle is gone at once.
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  absl::MutexLock lock(&R().mu);
  auto it = R().streams.find(AsState(stream));
  if (it == R().streams.end() || it->second->kind != StreamState::Kind::kCreated) {
    Complain("cudaStreamDestroy of a stream that is not live (destroyed twice, or never made)");
    return Ret(cudaErrorInvalidResourceHandle);
  }
  StreamRef s = it->second;
  if (s->capture != nullptr) {
    InvalidateCaptureLocked(*s, "the stream was destroyed while captured");
    std::erase(R().capturing, s.get());
    s->capture = nullptr;
  }
  s->destroyed = true;
  R().streams.erase(it);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (s->capture != nullptr) {
    InvalidateCaptureLocked(*s, "cudaStreamSynchronize of the stream being captured");
    return Ret(cudaErrorStreamCaptureUnsupported);
  }
  if (const cudaError_t e = CheckNotCapturingLocked("cudaStreamSynchronize"); e != cudaSuccess) {
    return Ret(e);
  }
  DrainLocked(s);
  return Ret(StickyLocked(s->device));
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (const cudaError_t e = StickyLocked(s->device); e != cudaSuccess) return Ret(e);
  return s->completed >= s->enqueued ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  EventState* e = FindEventLocked(event);
  if (s == nullptr || e == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (e->in_capture) {
    Complain(
        "cudaStreamWaitEvent on an event recorded during capture: capture across streams "
        "is not emulated");
    return Ret(cudaErrorStreamCaptureUnsupported);
  }
  if (e->stream == nullptr || EventDoneLocked(*e)) return cudaSuccess;  // nothing to wait for
  if (s->capture != nullptr) {
    // A captured wait for work outside the graph: CUDA refuses it too.
    InvalidateCaptureLocked(*s, "a captured stream waits for an event recorded outside capture");
    return Ret(cudaErrorStreamCaptureIsolation);
  }
  StreamRef other = e->stream;
  const uint64_t seq = e->seq;
  // A task with no work but the dependency: the stream's later work waits.
  const cudaError_t r = EnqueueLocked(s, "cudaStreamWaitEvent", [] { return cudaSuccess; });
  if (r != cudaSuccess) return Ret(r);
  s->tasks.back().deps.push_back({other, seq});
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (s->kind == StreamState::Kind::kLegacy) return Ret(cudaErrorStreamCaptureImplicit);
  if (s->capture != nullptr) return Ret(cudaErrorIllegalState);
  s->capture = std::make_shared<GraphState>();
  s->capture_mode = mode;
  s->capture_thread = std::this_thread::get_id();
  R().capturing.push_back(s.get());
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return Ret(cudaErrorInvalidValue);
  *graph = nullptr;
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (s->capture == nullptr) return Ret(cudaErrorIllegalState);
  if (s->capture_mode != cudaStreamCaptureModeRelaxed &&
      s->capture_thread != std::this_thread::get_id()) {
    return Ret(cudaErrorStreamCaptureWrongThread);
  }
  std::shared_ptr<GraphState> g = std::move(s->capture);
  s->capture = nullptr;
  std::erase(R().capturing, s.get());
  if (g->invalidated) return Ret(cudaErrorStreamCaptureInvalidated);
  auto owned = std::make_unique<GraphState>(std::move(*g));
  *graph = reinterpret_cast<cudaGraph_t>(owned.get());
  R().graphs.emplace(owned.get(), std::move(owned));
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  *status = s->capture == nullptr     ? cudaStreamCaptureStatusNone
            : s->capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                      : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long flags) {
  if (exec == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  auto it = R().graphs.find(reinterpret_cast<GraphState*>(graph));
  if (it == R().graphs.end()) return Ret(cudaErrorInvalidValue);
  auto copy = std::make_unique<GraphState>(*it->second);
  *exec = reinterpret_cast<cudaGraphExec_t>(copy.get());
  R().execs.emplace(copy.get(), std::move(copy));
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  absl::MutexLock lock(&R().mu);
  if (R().graphs.erase(reinterpret_cast<GraphState*>(graph)) == 0) {
    return Ret(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  absl::MutexLock lock(&R().mu);
  if (R().execs.erase(reinterpret_cast<GraphState*>(exec)) == 0) return Ret(cudaErrorInvalidValue);
  return cudaSuccess;
}

// The graph's nodes run in capture order, as one task (a graph launch is
// ordered on its stream as a whole).
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  absl::MutexLock lock(&R().mu);
  auto it = R().execs.find(reinterpret_cast<GraphState*>(exec));
  if (it == R().execs.end()) return Ret(cudaErrorInvalidValue);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  auto nodes = std::make_shared<std::vector<GraphNode>>(it->second->nodes);
  return Ret(EnqueueLocked(s, "cudaGraphLaunch", [nodes] {
    for (GraphNode& n : *nodes) {
      if (const cudaError_t e = n.work(); e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }));
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* data) {
  if (fn == nullptr) return Ret(cudaErrorInvalidValue);
  return Ret(Enqueue(stream, "cudaLaunchHostFunc", [fn, data] {
    fn(data);
    return cudaSuccess;
  }));
}

// ---- events ----

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (event == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  auto e = std::make_unique<EventState>();
  e->device = CurrentDevice();
  e->flags = flags;
  *event = reinterpret_cast<cudaEvent_t>(e.get());
  R().events.emplace(e.get(), std::move(e));
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  absl::MutexLock lock(&R().mu);
  if (R().events.erase(AsState(event)) == 0) {
    Complain("cudaEventDestroy of an event that is not live (destroyed twice, or never made)");
    return Ret(cudaErrorInvalidResourceHandle);
  }
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  absl::MutexLock lock(&R().mu);
  EventState* e = FindEventLocked(event);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (e == nullptr || s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (e->device != s->device) {
    Complain("cudaEventRecord: the event belongs to device " + std::to_string(e->device) +
             ", the stream to device " + std::to_string(s->device));
    return Ret(cudaErrorInvalidResourceHandle);
  }
  auto stamp = std::make_shared<Stamp>();
  uint64_t seq = 0;
  const cudaError_t r = EnqueueLocked(
      s, "cudaEventRecord",
      [stamp] {
        stamp->when = std::chrono::steady_clock::now();
        stamp->done = true;
        return cudaSuccess;
      },
      &seq);
  if (r != cudaSuccess) return Ret(r);
  e->in_capture = s->capture != nullptr;
  e->stream = e->in_capture ? nullptr : s;
  e->seq = seq;
  e->stamp = stamp;
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  absl::MutexLock lock(&R().mu);
  EventState* e = FindEventLocked(event);
  if (e == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (const cudaError_t s = StickyLocked(e->device); s != cudaSuccess) return Ret(s);
  return EventDoneLocked(*e) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  absl::MutexLock lock(&R().mu);
  EventState* e = FindEventLocked(event);
  if (e == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (const cudaError_t c = CheckNotCapturingLocked("cudaEventSynchronize"); c != cudaSuccess) {
    return Ret(c);
  }
  if (e->stream != nullptr) {
    StreamRef s = e->stream;
    const uint64_t seq = e->seq;
    auto done = [&s, seq] { return s->completed >= seq; };
    R().mu.Await(absl::Condition(&done));
  }
  return Ret(StickyLocked(e->device));
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  EventState* a = FindEventLocked(start);
  EventState* b = FindEventLocked(end);
  if (a == nullptr || b == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if ((a->flags & cudaEventDisableTiming) != 0 || (b->flags & cudaEventDisableTiming) != 0) {
    return Ret(cudaErrorInvalidResourceHandle);
  }
  if (a->stamp == nullptr || b->stamp == nullptr || a->in_capture || b->in_capture) {
    return Ret(cudaErrorInvalidResourceHandle);
  }
  // The stream's count is raised under the mutex after the stamp is written.
  if (!EventDoneLocked(*a) || !EventDoneLocked(*b)) return Ret(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(b->stamp->when - a->stamp->when).count();
  return cudaSuccess;
}
