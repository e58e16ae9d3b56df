// The CUDA emulator's core: devices, the streams' threads and ordering,
// capture bookkeeping and per-thread state.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/cuda_emu/state.h"

namespace tokenfab::cuda_emu {
namespace {

int EnvInt(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < lo || n > hi) {
    Complain(std::string(name) + "=" + v + " is not a number in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]; using " + std::to_string(fallback));
    return fallback;
  }
  return static_cast<int>(n);
}

cudaDeviceProp EmulatedProperties(int index, size_t memory, int sms) {
  cudaDeviceProp p{};
  std::snprintf(p.name, sizeof p.name, "tokenfab CUDA emulator %d (CPU, sm_90 rules)", index);
  p.totalGlobalMem = memory;
  p.sharedMemPerBlock = kSharedPerBlock;
  p.sharedMemPerBlockOptin = kSharedPerBlockOptin;
  p.sharedMemPerMultiprocessor = 228 * 1024;
  p.regsPerBlock = 65536;
  p.regsPerMultiprocessor = 65536;
  p.warpSize = 32;
  p.maxThreadsPerBlock = 1024;
  p.maxThreadsDim[0] = 1024;
  p.maxThreadsDim[1] = 1024;
  p.maxThreadsDim[2] = 64;
  p.maxGridSize[0] = 0x7fffffff;
  p.maxGridSize[1] = 65535;
  p.maxGridSize[2] = 65535;
  p.maxThreadsPerMultiProcessor = 2048;
  p.major = 9;
  p.minor = 0;
  p.multiProcessorCount = sms;
  p.l2CacheSize = 50 * 1024 * 1024;
  p.memoryBusWidth = 5120;
  p.unifiedAddressing = 1;
  p.concurrentKernels = 1;
  p.asyncEngineCount = 2;
  p.pciDeviceID = index;
  return p;
}

thread_local int t_device = 0;
thread_local cudaError_t t_last_error = cudaSuccess;

// The calling thread's per-thread default streams, one per device, retired
// when the thread exits.
struct PerThreadStreams {
  std::vector<StreamRef> by_device;
  ~PerThreadStreams() {
    absl::MutexLock lock(&R().mu);
    for (StreamRef& s : by_device) {
      if (s == nullptr) continue;
      s->destroyed = true;
      R().streams.erase(s.get());
    }
  }
};
thread_local PerThreadStreams t_streams;

void RunStream(StreamRef s) {
  Runtime& r = R();
  for (;;) {
    Task task;
    cudaError_t sticky;
    {
      absl::MutexLock lock(&r.mu);
      auto has_work = [&s] { return !s->tasks.empty() || s->destroyed; };
      r.mu.Await(absl::Condition(&has_work));
      if (s->tasks.empty()) return;  // destroyed and drained
      auto ready = [&s] {
        for (const Dep& d : s->tasks.front().deps) {
          if (d.stream->completed < d.seq) return false;
        }
        return true;
      };
      r.mu.Await(absl::Condition(&ready));
      task = std::move(s->tasks.front());
      s->tasks.pop_front();
      sticky = StickyLocked(s->device);
    }
    // After a fault the device runs nothing more, as a GPU context is lost.
    const cudaError_t e = sticky == cudaSuccess ? task.work() : cudaSuccess;
    task = Task();  // what the work holds is released before it counts as done
    absl::MutexLock lock(&r.mu);
    if (e != cudaSuccess && r.devices[s->device].sticky == cudaSuccess) {
      r.devices[s->device].sticky = e;
    }
    ++s->completed;
  }
}

}  // namespace

Runtime& R() {
  static Runtime* runtime = [] {
    auto* r = new Runtime();
    const int count = EnvInt("TOKENFAB_CUDA_EMU_DEVICES", 2, 0, 16);
    const size_t memory =
        static_cast<size_t>(EnvInt("TOKENFAB_CUDA_EMU_MEMORY_MB", 4096, 64, 1 << 20)) << 20;
    const int sms = EnvInt("TOKENFAB_CUDA_EMU_SMS", 132, 1, 1024);
    absl::MutexLock lock(&r->mu);
    r->devices.resize(count);
    for (int d = 0; d < count; ++d) {
      r->devices[d].prop = EmulatedProperties(d, memory, sms);
      r->devices[d].total = memory;
    }
    return r;
  }();
  return *runtime;
}

void Complain(const std::string& what) {
  std::fprintf(stderr, "tokenfab cuda emulator: %s\n", what.c_str());
}

int CurrentDevice() { return t_device; }
void SetCurrentDevice(int device) { t_device = device; }

cudaError_t SetLastError(cudaError_t e) {
  if (e != cudaSuccess) t_last_error = e;
  return e;
}
cudaError_t TakeLastError(bool reset) {
  cudaError_t e = t_last_error;
  if (reset) t_last_error = cudaSuccess;
  absl::MutexLock lock(&R().mu);
  if (ValidDeviceLocked(t_device) && R().devices[t_device].sticky != cudaSuccess) {
    e = R().devices[t_device].sticky;  // sticky: never cleared
  }
  return e;
}

bool ValidDeviceLocked(int device) {
  return device >= 0 && device < static_cast<int>(R().devices.size());
}

cudaError_t StickyLocked(int device) {
  return ValidDeviceLocked(device) ? R().devices[device].sticky : cudaSuccess;
}

StreamRef StartStreamLocked(int device, StreamState::Kind kind, unsigned flags) {
  auto s = std::make_shared<StreamState>();
  s->kind = kind;
  s->device = device;
  s->flags = flags;
  std::thread([s] { RunStream(s); }).detach();
  return s;
}

StreamRef ResolveLocked(cudaStream_t handle, int device) {
  Runtime& r = R();
  if (!ValidDeviceLocked(device)) return nullptr;
  if (handle == nullptr || handle == cudaStreamLegacy) {
    DeviceState& d = r.devices[device];
    if (d.legacy == nullptr) d.legacy = StartStreamLocked(device, StreamState::Kind::kLegacy, 0);
    return d.legacy;
  }
  if (handle == cudaStreamPerThread) {
    std::vector<StreamRef>& mine = t_streams.by_device;
    if (mine.size() <= static_cast<size_t>(device)) mine.resize(device + 1);
    if (mine[device] == nullptr) {
      mine[device] = StartStreamLocked(device, StreamState::Kind::kPerThread, 0);
      r.streams.emplace(mine[device].get(), mine[device]);
    }
    return mine[device];
  }
  auto it = r.streams.find(reinterpret_cast<StreamState*>(handle));
  return it == r.streams.end() ? nullptr : it->second;
}

cudaError_t EnqueueLocked(const StreamRef& s, const char* what, Work work, uint64_t* seq) {
  Runtime& r = R();
  if (const cudaError_t e = StickyLocked(s->device); e != cudaSuccess) return e;
  if (s->capture != nullptr) {
    if (s->capture->invalidated) return cudaErrorStreamCaptureInvalidated;
    s->capture->nodes.push_back({what, std::move(work)});
    if (seq != nullptr) *seq = 0;
    return cudaSuccess;
  }
  Task t;
  t.what = what;
  t.work = std::move(work);
  DeviceState& d = r.devices[s->device];
  if (s->kind == StreamState::Kind::kLegacy) {
    for (auto& [raw, other] : r.streams) {
      if (other->device == s->device && other->Blocking() && other->enqueued > other->completed) {
        t.deps.push_back({other, other->enqueued});
      }
    }
  } else if (s->Blocking() && d.legacy != nullptr && d.legacy->enqueued > d.legacy->completed) {
    t.deps.push_back({d.legacy, d.legacy->enqueued});
  }
  s->tasks.push_back(std::move(t));
  ++s->enqueued;
  if (seq != nullptr) *seq = s->enqueued;
  return cudaSuccess;
}

void InvalidateCaptureLocked(StreamState& s, const std::string& why) {
  if (s.capture == nullptr || s.capture->invalidated) return;
  s.capture->invalidated = true;
  s.capture->why = why;
  Complain("stream capture invalidated: " + why);
}

cudaError_t CheckNotCapturingLocked(const char* api) {
  cudaError_t result = cudaSuccess;
  for (StreamState* s : R().capturing) {
    const bool applies = s->capture_mode == cudaStreamCaptureModeGlobal ||
                         (s->capture_mode == cudaStreamCaptureModeThreadLocal &&
                          s->capture_thread == std::this_thread::get_id());
    if (!applies) continue;
    InvalidateCaptureLocked(*s, std::string(api) + " is not allowed while a stream is captured");
    result = cudaErrorStreamCaptureUnsupported;
  }
  return result;
}

void DrainLocked(const StreamRef& s) {
  const uint64_t target = s->enqueued;
  auto done = [&s, target] { return s->completed >= target; };
  R().mu.Await(absl::Condition(&done));
}

void DrainDeviceLocked(int device) {
  Runtime& r = R();
  std::vector<StreamRef> all;
  if (r.devices[device].legacy != nullptr) all.push_back(r.devices[device].legacy);
  for (auto& [raw, s] : r.streams) {
    if (s->device == device) all.push_back(s);
  }
  for (const StreamRef& s : all) DrainLocked(s);
}

cudaError_t Enqueue(cudaStream_t stream, const char* what, Work work) {
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, t_device);
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  return EnqueueLocked(s, what, std::move(work));
}

cudaError_t StreamDevice(cudaStream_t stream, int* device) {
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, t_device);
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  *device = s->device;
  return cudaSuccess;
}

bool IsCapturing(cudaStream_t stream) {
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, t_device);
  return s != nullptr && s->capture != nullptr;
}

size_t MaxDynamicShared(const void* kernel) {
  absl::MutexLock lock(&R().mu);
  auto it = R().max_dynamic_shared.find(kernel);
  return it == R().max_dynamic_shared.end() ? kSharedPerBlock : it->second;
}

}  // namespace tokenfab::cuda_emu
