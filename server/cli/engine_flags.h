// Flags shared by the commands that run engines (serve, worker): device,
// threads, KV cache size and type, batch limits. Declared, checked and
// converted in one place.
#ifndef TOKENFAB_SERVER_CLI_ENGINE_FLAGS_H_
#define TOKENFAB_SERVER_CLI_ENGINE_FLAGS_H_

#include <signal.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/cli/flags.h"
#include "worker/engine/backend_factory.h"
#include "worker/engine/batch_scheduler.h"
#include "worker/kernels/attention.h"

namespace tokenfab {

struct EngineFlags {
  std::string device = "cpu";  // or cuda:N
  float gpu_memory_fraction = 0.9f;
  bool enforce_eager = false;
  int32_t threads;  // default set by AddEngineFlags
  int32_t kv_cache_mb = 1024;
  std::string kv_cache_type = "f16";
  int32_t max_num_seqs = 32;
  int32_t max_batched_tokens = 512;
  int32_t max_queue = 256;

  KvDType kv_dtype() const { return kv_cache_type == "f32" ? KvDType::kF32 : KvDType::kF16; }
  SchedulerOptions scheduler() const { return {max_num_seqs, max_batched_tokens, max_queue}; }
  // `kv_cache_mb_given`: --kv-cache-mb was on the command line (on a GPU
  // the cache otherwise takes what --gpu-memory-fraction leaves).
  DeviceBackendOptions backend(bool kv_cache_mb_given) const;
};

void AddEngineFlags(FlagSet& flags, EngineFlags* f, int32_t default_threads);
absl::Status CheckEngineFlags(const EngineFlags& f);

// "--name must be between lo and hi, got v" unless lo <= v <= hi.
absl::Status CheckRange(std::string_view name, int64_t v, int64_t lo, int64_t hi);

// The model the setup step downloads (SmolLM2-135M-Instruct Q4_1).
std::string DefaultModelPath();
// --model-id if given, else the model file's name without extension.
std::string ModelIdFor(const std::string& model_path, const std::string& model_id_flag);

// Blocks SIGINT, SIGTERM and SIGHUP in this thread (call before starting
// threads, which inherit the mask) and returns the set for WaitForSignal.
sigset_t BlockControlSignals();
// Waits for SIGINT or SIGTERM and returns its name; each SIGHUP meanwhile
// calls `on_hangup` (the key files are re-read: key_reloader.h).
const char* WaitForSignal(const sigset_t& signals, const std::function<void()>& on_hangup = {});

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLI_ENGINE_FLAGS_H_
