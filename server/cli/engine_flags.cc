#include "server/cli/engine_flags.h"

#include <pthread.h>

#include <cstdlib>
#include <filesystem>

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/engine/cuda_module.h"

namespace tokenfab {

void AddEngineFlags(FlagSet& flags, EngineFlags* f, int32_t default_threads) {
  f->threads = default_threads;
  flags.AddString("device", &f->device,
                  "cpu (default) or cuda:N: the CUDA backend on GPU N (bf16 weights and KV cache)");
  flags.AddFloat("gpu-memory-fraction", &f->gpu_memory_fraction,
                 "on a GPU, the share of its memory for weights, activations and the KV cache "
                 "(default 0.9; --kv-cache-mb overrides the KV part)");
  flags.AddBool("enforce-eager", &f->enforce_eager,
                "on a GPU, run every step eagerly instead of replaying CUDA graphs for decode");
  flags.AddInt("threads", &f->threads, StrCat("engine threads (default ", default_threads, ")"));
  flags.AddInt("kv-cache-mb", &f->kv_cache_mb, "memory for the KV cache in MiB (default 1024)");
  flags.AddString("kv-cache-type", &f->kv_cache_type, "f16 (default) or f32");
  flags.AddInt("max-num-seqs", &f->max_num_seqs, "sequences in one batch (default 32)");
  flags.AddInt("max-batched-tokens", &f->max_batched_tokens,
               "tokens in one step, prefill chunks included (default 512)");
  flags.AddInt("max-queue", &f->max_queue,
               "requests waiting before new ones get RESOURCE_EXHAUSTED / 429 (default 256)");
}

absl::Status CheckRange(std::string_view name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        StrCat("--", name, " must be between ", lo, " and ", hi, ", got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckEngineFlags(const EngineFlags& f) {
  if (f.device != "cpu") RETURN_IF_ERROR(ParseCudaDevice(f.device).status());
  if (!(f.gpu_memory_fraction > 0 && f.gpu_memory_fraction <= 1)) {
    return absl::InvalidArgumentError(
        StrCat("--gpu-memory-fraction must be in (0, 1], got ", f.gpu_memory_fraction));
  }
  RETURN_IF_ERROR(CheckRange("threads", f.threads, 1, 1024));
  RETURN_IF_ERROR(CheckRange("kv-cache-mb", f.kv_cache_mb, 1, 1 << 22));
  RETURN_IF_ERROR(CheckRange("max-num-seqs", f.max_num_seqs, 1, 4096));
  RETURN_IF_ERROR(CheckRange("max-batched-tokens", f.max_batched_tokens, 1, 1 << 20));
  RETURN_IF_ERROR(CheckRange("max-queue", f.max_queue, 0, 1 << 20));
  if (f.kv_cache_type != "f16" && f.kv_cache_type != "f32") {
    return absl::InvalidArgumentError(
        StrCat("--kv-cache-type must be f16 or f32, got '", f.kv_cache_type, "'"));
  }
  return absl::OkStatus();
}

DeviceBackendOptions EngineFlags::backend(bool kv_cache_mb_given) const {
  DeviceBackendOptions o;
  o.device = device;
  o.threads = threads;
  o.kv_dtype = kv_dtype();
  o.kv_cache_mb = kv_cache_mb;
  o.kv_cache_mb_given = kv_cache_mb_given;
  o.gpu_memory_fraction = gpu_memory_fraction;
  o.cuda_graphs = !enforce_eager;
  o.scheduler = scheduler();
  return o;
}

std::string DefaultModelPath() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string cache =
      xdg && *xdg ? std::string(xdg) : std::string(home ? home : "/root") + "/.cache";
  return cache + "/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string ModelIdFor(const std::string& model_path, const std::string& model_id_flag) {
  if (!model_id_flag.empty()) return model_id_flag;
  std::string id = std::filesystem::path(model_path).filename().replace_extension().string();
  return id.empty() ? "model" : id;
}

sigset_t BlockControlSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

const char* WaitForSignal(const sigset_t& signals, const std::function<void()>& on_hangup) {
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig != SIGHUP) return sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (on_hangup) on_hangup();
  }
}

}  // namespace tokenfab
