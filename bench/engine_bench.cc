// Prefill and decode throughput of the CPU engine, and peak resident memory.
//
//   build/bench/engine_bench [--model PATH] [--threads N] [--repeats R]
//
// Prefill: a prompt of P tokens in one forward step (P = 128, 512), from an
// empty cache. Decode: one token per step after a 128-token prompt, 64 steps,
// and the same at a 1024-token context; batched decode: 16 sequences of a
// 128-token context each decoding one token per step (the shape of a server's
// decode steps at concurrency 16), 32 steps. Each figure is the median of R runs.
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
#include "common/thread_pool.h"
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
  int32_t threads = 2, repeats = 5;
  FlagSet flags("engine_bench", "Prefill and decode tokens/s of the CPU engine.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face folder (default: SmolLM2)");
  flags.AddInt("threads", &threads, "CPU threads (default 2)");
  flags.AddInt("repeats", &repeats, "runs per figure; the median is printed (default 5)");
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  auto model = LoadModel(model_path);
  if (!model.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config;
  CpuBackendOptions o;
  o.threads = threads;
  constexpr int kBatch = 16, kBatchContext = 128, kBatchSteps = 32;
  o.num_kv_blocks =
      kBatch * ((kBatchContext + kBatchSteps) / 16 + 1);  // >= 1200 tokens for one sequence
  auto backend = CpuBackend::Create(c, (*model)->weights, o);
  if (!backend.ok()) return 1;
  std::vector<int32_t> blocks(o.num_kv_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);

  std::printf("tokenfab engine_bench\n");
  std::printf("machine: %s, %d hardware threads\n", bench::CpuName().c_str(), HardwareThreads());
  std::printf("model: %s (%s, %d layers, hidden %d)\n", model_path.c_str(), c.name.c_str(),
              c.num_layers, c.hidden_size);
  std::printf("engine: cpu backend, %d threads, f16 KV cache, median of %d runs\n", threads,
              repeats);

  TimePrefill(**backend, Tokens(32, c.vocab_size), blocks);  // warm-up: page in the weights
  for (int p : {128, 512}) {
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i)
      t.push_back(TimePrefill(**backend, Tokens(p, c.vocab_size), blocks));
    std::printf("prefill %4d tokens: %8.1f tokens/s (%.3f s)\n", p, p / bench::Median(t),
                bench::Median(t));
  }
  for (int ctx : {128, 1024}) {
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i) t.push_back(TimeDecode(**backend, ctx, 64, blocks));
    std::printf("decode at context %4d: %8.1f tokens/s (%.2f ms/token)\n", ctx,
                1.0 / bench::Median(t), 1e3 * bench::Median(t));
  }
  {
    std::vector<double> t;
    for (int i = 0; i < repeats; ++i)
      t.push_back(TimeBatchDecode(**backend, kBatch, kBatchContext, kBatchSteps, blocks));
    std::printf("decode %d sequences at context %d: %8.1f tokens/s (%.2f ms/step)\n", kBatch,
                kBatchContext, kBatch / bench::Median(t), 1e3 * bench::Median(t));
  }
  std::printf("peak resident memory: %.0f MiB\n", PeakRssMiB());
  return 0;
}

}  // namespace
}  // namespace tokenfab

int main(int argc, char** argv) {
  return tokenfab::Main(std::vector<std::string>(argv + 1, argv + argc));
}
