// Prefill and decode throughput of the CPU engine, and peak resident memory.
//
//   build/bench/engine_bench [--model PATH] [--threads N] [--repeats R] [--json]
//       [--prefill 128,512] [--decode-contexts 128,1024] [--decode-steps 64]
//       [--batches 16] [--batch-context 128] [--batch-steps 32]
//
// Prefill: a prompt of P tokens in one forward step, from an empty cache.
// Decode: one token per step after a prompt of C tokens. Batched decode: B
// sequences with a prompt each, each decoding one token per step (the shape
// of a server's decode steps at concurrency B). Defaults as above; each
// figure is the median of R runs. bench/vs_llamacpp_engine.py sets the shapes
// of llama-bench and llama-batched-bench.
// Prints the machine, thread count, model and KV cache type with the figures.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/strings.h"
#include "common/thread_pool.h"
#include "server/cli/cli_util.h"
#include "server/cli/flags.h"
#include "worker/engine/cpu_backend.h"
#include "worker/model_loader.h"

namespace tokenfab {
namespace {

using Clock = std::chrono::steady_clock;

double PeakRssMiB() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

// Deterministic token ids spread over the vocabulary.
std::vector<int32_t> Tokens(int n, int32_t vocab) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return t;
}

double TimePrefill(Backend& b, const std::vector<int32_t>& tokens,
                   const std::vector<int32_t>& blocks) {
  StepResult r;
  SequenceStep s{tokens, 0, blocks, LogitsMode::kLast};
  const auto t0 = Clock::now();
  if (!b.Forward({&s, 1}, &r).ok()) std::abort();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Seconds per decode step after a prompt of `context` tokens.
double TimeDecode(Backend& b, int context, int steps, const std::vector<int32_t>& blocks) {
  const std::vector<int32_t> prompt = Tokens(context, b.config().vocab_size);
  StepResult r;
  SequenceStep s{prompt, 0, blocks, LogitsMode::kLast};
  if (!b.Forward({&s, 1}, &r).ok()) std::abort();
  int32_t pos = context;
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) {
    const float* row = r.Row(0);
    const int32_t next[1] = {static_cast<int32_t>(std::max_element(row, row + r.vocab_size) - row)};
    SequenceStep d{next, pos++, blocks, LogitsMode::kLast};
    if (!b.Forward({&d, 1}, &r).ok()) std::abort();
  }
  return std::chrono::duration<double>(Clock::now() - t0).count() / steps;
}

// Seconds per step of `batch` sequences, each one token per step after its
// own prompt of `context` tokens; sequence i uses blocks[i * per_seq, ...).
double TimeBatchDecode(Backend& b, int batch, int context, int steps,
                       const std::vector<int32_t>& blocks) {
  const int per_seq = static_cast<int>(blocks.size()) / batch;
  std::vector<std::vector<int32_t>> prompts, tables;
  for (int i = 0; i < batch; ++i) {
    std::vector<int32_t> p = Tokens(context + i, b.config().vocab_size);
    prompts.emplace_back(p.begin() + i, p.end());  // distinct prompts
    tables.emplace_back(blocks.begin() + i * per_seq, blocks.begin() + (i + 1) * per_seq);
  }
  StepResult r;
  std::vector<SequenceStep> seqs;
  for (int i = 0; i < batch; ++i) seqs.push_back({prompts[i], 0, tables[i], LogitsMode::kLast});
  if (!b.Forward(seqs, &r).ok()) std::abort();
  std::vector<int32_t> next(batch);
  const auto t0 = Clock::now();
  for (int step = 0; step < steps; ++step) {
    seqs.clear();
    for (int i = 0; i < batch; ++i) {
      const float* row = r.Row(i);
      next[i] = static_cast<int32_t>(std::max_element(row, row + r.vocab_size) - row);
      seqs.push_back({{&next[i], 1}, context + step, tables[i], LogitsMode::kLast});
    }
    if (!b.Forward(seqs, &r).ok()) std::abort();
  }
  return std::chrono::duration<double>(Clock::now() - t0).count() / steps;
}

int Main(const std::vector<std::string>& args) {
  const char* home = std::getenv("HOME");
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  std::string model_path =
      (xdg && *xdg ? std::string(xdg) : std::string(home ? home : "/root") + "/.cache") +
      "/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  int32_t threads = 2, repeats = 5, decode_steps = 64, batch_context = 128, batch_steps = 32;
  std::string prefill_s = "128,512", contexts_s = "128,1024", batches_s = "16";
  bool json = false;
  FlagSet flags("engine_bench", "Prefill and decode tokens/s of the CPU engine.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face folder (default: SmolLM2)");
  flags.AddInt("threads", &threads, "CPU threads (default 2)");
  flags.AddInt("repeats", &repeats, "runs per figure; the median is printed (default 5)");
  flags.AddString("prefill", &prefill_s, "prompt lengths prefilled in one step (default 128,512)");
  flags.AddString("decode-contexts", &contexts_s,
                  "prompt lengths before single-sequence decode (default 128,1024)");
  flags.AddInt("decode-steps", &decode_steps, "tokens decoded per single-sequence run (default 64)");
  flags.AddString("batches", &batches_s, "sequences per batched-decode step (default 16)");
  flags.AddInt("batch-context", &batch_context, "each batched sequence's prompt (default 128)");
  flags.AddInt("batch-steps", &batch_steps, "steps per batched-decode run (default 32)");
  flags.AddBool("json", &json, "also print the figures as one JSON line at the end");
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  auto prefills = ParseIntList("prefill", prefill_s);
  auto contexts = ParseIntList("decode-contexts", contexts_s);
  auto batches = ParseIntList("batches", batches_s);
  for (const auto* list : {&prefills, &contexts, &batches}) {
    if (!list->ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", std::string(list->status().message()).c_str());
      return 2;
    }
  }
  if (decode_steps < 1 || batch_steps < 1 || batch_context < 1 || repeats < 1) {
    std::fprintf(stderr, "engine_bench: steps, contexts and repeats must be positive\n");
    return 2;
  }
  auto model = LoadModel(model_path);
  if (!model.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config;
  // Blocks for the largest shape: one long sequence, or every batched one.
  int64_t tokens = batch_context + batch_steps;
  for (int p : *prefills) tokens = std::max<int64_t>(tokens, p);
  for (int ctx : *contexts) tokens = std::max<int64_t>(tokens, ctx + decode_steps);
  const int max_batch = batches->back();  // ascending
  CpuBackendOptions o;
  o.threads = threads;
  const int per_seq = static_cast<int>((tokens + kKvBlockSize - 1) / kKvBlockSize);
  o.num_kv_blocks = max_batch * per_seq;
  auto backend = CpuBackend::Create(c, (*model)->weights, o);
  if (!backend.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(backend.status().message()).c_str());
    return 1;
  }
  std::vector<int32_t> blocks(o.num_kv_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);

  std::printf("tokenfab engine_bench\n");
  std::printf("machine: %s, %d hardware threads\n", bench::CpuName().c_str(), HardwareThreads());
  std::printf("model: %s (%s, %d layers, hidden %d)\n", model_path.c_str(), c.name.c_str(),
              c.num_layers, c.hidden_size);
  std::printf("engine: cpu backend, %d threads, f16 KV cache, median of %d runs\n", threads,
              repeats);
  std::string out = "{";
  auto record = [&](const std::string& key, double v) {
    StrAppend(&out, out.size() > 1 ? "," : "", "\"", key, "\":", Fixed(v, 2));
  };

  TimePrefill(**backend, Tokens(32, c.vocab_size), blocks);  // warm-up: page in the weights
  for (int p : *prefills) {
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i)
      t.push_back(TimePrefill(**backend, Tokens(p, c.vocab_size), blocks));
    std::printf("prefill %4d tokens: %8.1f tokens/s (%.3f s)\n", p, p / bench::Median(t),
                bench::Median(t));
    record(StrCat("prefill_", p), p / bench::Median(t));
  }
  for (int ctx : *contexts) {
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i) t.push_back(TimeDecode(**backend, ctx, decode_steps, blocks));
    std::printf("decode at context %4d: %8.1f tokens/s (%.2f ms/token)\n", ctx,
                1.0 / bench::Median(t), 1e3 * bench::Median(t));
    record(StrCat("decode_", ctx), 1.0 / bench::Median(t));
  }
  for (int batch : *batches) {
    std::vector<int32_t> batch_blocks(blocks.begin(), blocks.begin() + batch * per_seq);
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i)
      t.push_back(TimeBatchDecode(**backend, batch, batch_context, batch_steps, batch_blocks));
    std::printf("decode %d sequences at context %d: %8.1f tokens/s (%.2f ms/step)\n", batch,
                batch_context, batch / bench::Median(t), 1e3 * bench::Median(t));
    record(StrCat("batch_", batch), batch / bench::Median(t));
  }
  std::printf("peak resident memory: %.0f MiB\n", PeakRssMiB());
  record("peak_rss_mib", PeakRssMiB());
  if (json) std::printf("%s}\n", out.c_str());
  return 0;
}

}  // namespace
}  // namespace tokenfab

int main(int argc, char** argv) {
  return tokenfab::Main(std::vector<std::string>(argv + 1, argv + argc));
}
