// The whole CUDA backend against the CPU engine: logits on the default
// model (SmolLM2-135M, Q4_1 weights dequantized to bf16) and on the tiny
// Hugging Face checkpoints (against transformers' logits), greedy output of
// 10 prompts (32 tokens each, chosen on the GPU), chunked and batched
// prefill, CUDA graphs against eager steps, and KV export/import. Skipped
// where no GPU is visible.
#include "worker/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <thread>

#include "common/mapped_file.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"
#include "tests/worker/cuda/gpu_test_util.h"
#include "worker/engine/cpu_backend.h"
#include "worker/model/safetensors_file.h"
#include "worker/model_loader.h"

namespace tokenfab::cuda {
namespace {

using testing::DefaultModel;

std::unique_ptr<CudaBackend> MakeCuda(const ModelConfig& c, const ModelWeights& w,
                                      bool graphs = true) {
  CudaBackendOptions o;
  o.num_kv_blocks = 512;
  o.max_batched_tokens = 1024;
  o.max_num_seqs = 32;
  o.cuda_graphs = graphs;
  auto b = CudaBackend::Create(c, w, o);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : nullptr;
}

std::unique_ptr<CpuBackend> MakeCpu(const ModelConfig& c, const ModelWeights& w) {
  CpuBackendOptions o;
  o.threads = 8;
  o.num_kv_blocks = 512;
  o.kv_dtype = KvDType::kF32;
  auto b = CpuBackend::Create(c, w, o);
  EXPECT_TRUE(b.ok()) << b.status();
  return std::move(*b);
}

std::pair<std::unique_ptr<CudaBackend>, std::unique_ptr<CpuBackend>> BothBackends(
    const LoadedModel& m) {
  return {MakeCuda(m.config, m.weights), MakeCpu(m.config, m.weights)};
}

std::vector<int32_t> Blocks(int32_t first, int32_t count) {
  std::vector<int32_t> b(count);
  std::iota(b.begin(), b.end(), first);
  return b;
}

// All logits of a prompt, prefilled in one step.
std::vector<float> PromptLogits(Backend& b, const std::vector<int32_t>& ids) {
  const std::vector<int32_t> table = Blocks(0, static_cast<int32_t>(ids.size() + 15) / 16);
  const SequenceStep step{ids, 0, table, LogitsMode::kAll};
  StepResult r;
  const absl::Status s = b.Forward({&step, 1}, &r);
  EXPECT_TRUE(s.ok()) << s;
  return r.logits;
}

// The exact reference (tools/make_smollm2_exact_golden.py): transformers in
// float64 on the GGUF's dequantized weights. Each engine is measured against
// it, since each rounds in its own way: the CUDA backend to bf16, the CPU
// engine (like llama.cpp) its activations to 8 bits.
const nlohmann::json& ExactGolden() {
  static const nlohmann::json* golden = [] {
    auto text = ReadFileToString(tokenfab::testing::GoldenPath("exact/smollm2_f64.json"));
    return new nlohmann::json(text.ok() ? nlohmann::json::parse(*text) : nlohmann::json());
  }();
  return *golden;
}

std::vector<int32_t> GoldenIds(const nlohmann::json& prompt) {
  return prompt["ids"].get<std::vector<int32_t>>();
}

// The golden's 10 prompts (empty if the golden is missing).
std::vector<std::vector<int32_t>> GoldenPrompts() {
  std::vector<std::vector<int32_t>> out;
  if (!ExactGolden().contains("prompts")) return out;
  for (const auto& p : ExactGolden()["prompts"]) out.push_back(GoldenIds(p));
  return out;
}

// An engine's logits against a reference, row by row. `max_scaled` is the
// worst |diff| / the row's largest |logit| (over the reference's top entries
// when the reference is the golden's, else over the vocabulary). An argmax
// that differs from the reference's is consistent only when the two tokens'
// reference logits are within twice that row's worst |diff| (each may be off
// by it): a near-tie; `argmax_flips` counts the others.
struct Agreement {
  double max_scaled = 0;
  double max_abs = 0;
  double top2_abs = 0;  // worst |diff| at the reference's two best tokens
  int32_t rows = 0, argmax_same = 0, argmax_flips = 0;
  void Row(double scale, double worst, double worst_top2, bool same, double ref_gap) {
    ++rows;
    max_abs = std::max(max_abs, worst);
    top2_abs = std::max(top2_abs, worst_top2);
    max_scaled = std::max(max_scaled, worst / std::max(scale, 1e-6));
    argmax_same += same;
    argmax_flips += !same && ref_gap > 2 * worst;
  }
  std::string Summary() const {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "max |diff| %.3f (%.4f of scale), at the top 2 %.3f, argmax %d/%d, flips %d",
                  max_abs, max_scaled, top2_abs, argmax_same, rows, argmax_flips);
    return buf;
  }
};

int32_t Argmax(const float* row, int32_t vocab) {
  return static_cast<int32_t>(std::max_element(row, row + vocab) - row);
}

// `logits` (all rows of one prompt) against the golden's rows of it.
void AgainstGolden(const nlohmann::json& prompt, const std::vector<float>& logits, int32_t vocab,
                   Agreement* a) {
  const auto& rows = prompt["rows"];
  ASSERT_EQ(logits.size(), rows.size() * vocab);
  for (size_t r = 0; r < rows.size(); ++r) {
    const float* got = logits.data() + r * vocab;
    const auto& top = rows[r]["top"];
    double worst = 0;
    absl::flat_hash_map<int32_t, double> ref;
    for (const auto& e : top) {
      const int32_t id = e[0].get<int32_t>();
      ref[id] = e[1].get<double>();
      worst = std::max(worst, std::fabs(got[id] - ref[id]));
    }
    const int32_t want = top[0][0].get<int32_t>(), second = top[1][0].get<int32_t>();
    const int32_t have = Argmax(got, vocab);
    ASSERT_TRUE(ref.contains(have))
        << "argmax " << have << " is outside the reference's top " << top.size() << " in row " << r;
    const double top2 =
        std::max(std::fabs(got[want] - ref[want]), std::fabs(got[second] - ref[second]));
    a->Row(rows[r]["scale"].get<double>(), worst, top2, have == want, ref[want] - ref[have]);
  }
}

// Two engines' logits against each other over the whole vocabulary, the
// first as the reference.
void AgainstEngine(const std::vector<float>& ref, const std::vector<float>& got, int32_t vocab,
                   Agreement* a) {
  ASSERT_EQ(ref.size(), got.size());
  for (size_t r = 0; r < ref.size() / vocab; ++r) {
    const float* x = ref.data() + r * vocab;
    const float* y = got.data() + r * vocab;
    double scale = 0, worst = 0;
    for (int32_t i = 0; i < vocab; ++i) {
      scale = std::max(scale, std::fabs(static_cast<double>(x[i])));
      worst = std::max(worst, std::fabs(static_cast<double>(x[i]) - y[i]));
    }
    const int32_t want = Argmax(x, vocab), have = Argmax(y, vocab);
    std::vector<float> sorted(x, x + vocab);
    std::nth_element(sorted.begin(), sorted.begin() + 1, sorted.end(), std::greater<float>());
    const int32_t second = static_cast<int32_t>(std::find(x, x + vocab, sorted[1]) - x);
    const double top2 = std::max(std::fabs(static_cast<double>(x[want]) - y[want]),
                                 std::fabs(static_cast<double>(x[second]) - y[second]));
    a->Row(scale, worst, top2, want == have, static_cast<double>(x[want]) - x[have]);
  }
}

// Measured on the 10 prompts (73 rows) on the CUDA emulator, 2026-12-07, as
// a share of the row's largest |logit|: CUDA backend vs exact 0.024 (top 16),
// CPU engine vs exact 0.051 (its 8-bit activations), CUDA vs CPU 0.069 (whole
// vocabulary). The bounds leave room for cuBLAS's own summation order on a
// GPU; an argmax that differs must be a near-tie (Agreement).
constexpr double kCudaVsExact = 0.05, kCpuVsExact = 0.08, kCudaVsCpu = kCudaVsExact + kCpuVsExact;

TEST(CudaBackendTest, LogitsMatchCpuOnDefaultModel) {
  TOKENFAB_REQUIRE_GPU();
  const LoadedModel* m = DefaultModel();
  ASSERT_NE(m, nullptr) << "run scripts/setup to fetch the default model";
  const nlohmann::json& golden = ExactGolden();
  ASSERT_TRUE(golden.contains("prompts")) << "tests/golden/exact/smollm2_f64.json is missing";
  auto [gpu, cpu] = BothBackends(*m);
  ASSERT_NE(gpu, nullptr);
  const int32_t vocab = m->config.vocab_size;
  Agreement cuda_exact, cpu_exact, cuda_cpu;
  for (const auto& prompt : golden["prompts"]) {
    const std::vector<int32_t> ids = GoldenIds(prompt);
    const std::vector<float> on_gpu = PromptLogits(*gpu, ids), on_cpu = PromptLogits(*cpu, ids);
    AgainstGolden(prompt, on_gpu, vocab, &cuda_exact);
    AgainstGolden(prompt, on_cpu, vocab, &cpu_exact);
    AgainstEngine(on_cpu, on_gpu, vocab, &cuda_cpu);
  }
  std::printf("SmolLM2, 10 prompts: CUDA vs exact: %s\n", cuda_exact.Summary().c_str());
  std::printf("SmolLM2, 10 prompts: CPU vs exact:  %s\n", cpu_exact.Summary().c_str());
  std::printf("SmolLM2, 10 prompts: CUDA vs CPU:   %s\n", cuda_cpu.Summary().c_str());
  EXPECT_LT(cuda_exact.max_scaled, kCudaVsExact);
  EXPECT_LT(cpu_exact.max_scaled, kCpuVsExact);
  EXPECT_LT(cuda_cpu.max_scaled, kCudaVsCpu);
  EXPECT_EQ(cuda_exact.argmax_flips, 0);
  EXPECT_EQ(cuda_cpu.argmax_flips, 0);
}

// Generates `steps` tokens for every prompt at once: prefill all, then decode
// as one batch; tokens chosen on the backend if it samples on the device,
// else by the CPU sampler's greedy rule. Also returns, per step, the gap
// between the two best logits of each sequence (when logits come back).
struct Generation {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<float>> gaps;
};

Generation Greedy(Backend& b, const std::vector<std::vector<int32_t>>& prompts, int32_t steps) {
  const int32_t n = static_cast<int32_t>(prompts.size());
  const int32_t per_seq = 8;  // blocks: 128 positions each
  std::vector<std::vector<int32_t>> seqs = prompts, tables;
  for (int32_t s = 0; s < n; ++s) tables.push_back(Blocks(s * per_seq, per_seq));
  Generation g;
  g.tokens.resize(n);
  g.gaps.resize(n);
  std::vector<DeviceSampling> sampling(n);
  std::vector<int32_t> computed(n, 0);
  for (int32_t step = 0; step < steps; ++step) {
    std::vector<SequenceStep> batch;
    for (int32_t s = 0; s < n; ++s) {
      const int32_t from = computed[s];
      batch.push_back(
          {std::span<const int32_t>(seqs[s]).subspan(from), from, tables[s], LogitsMode::kLast});
      sampling[s] = {SamplingOptions{}, seqs[s], static_cast<int32_t>(prompts[s].size()),
                     static_cast<uint64_t>(step)};
      if (b.samples_on_device()) batch.back().sampling = &sampling[s];
    }
    StepResult r;
    const absl::Status st = b.Forward(batch, &r);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) return g;
    for (int32_t s = 0; s < n; ++s) {
      computed[s] = static_cast<int32_t>(seqs[s].size());
      int32_t t;
      if (!r.tokens.empty() && r.tokens[r.first_row[s]] >= 0) {
        t = r.tokens[r.first_row[s]];
      } else {
        const float* row = r.Row(r.first_row[s]);
        std::vector<float> v(row, row + r.vocab_size);
        t = static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
        std::nth_element(v.begin(), v.begin() + 1, v.end(), std::greater<float>());
        g.gaps[s].push_back(v[0] - v[1]);
      }
      g.tokens[s].push_back(t);
      seqs[s].push_back(t);
    }
  }
  return g;
}

// Where a greedy continuation first leaves the reference's, and the
// reference's top-2 gap there (0 tokens apart: -1).
struct Divergence {
  int32_t at = -1;
  float gap = 0;
};
Divergence FirstDivergence(const std::vector<int32_t>& ref, const std::vector<float>& ref_gaps,
                           const std::vector<int32_t>& got) {
  const size_t n = std::min(ref.size(), got.size());
  for (size_t i = 0; i < n; ++i) {
    if (ref[i] != got[i]) return {static_cast<int32_t>(i), ref_gaps[i]};
  }
  return {};
}

// The CUDA backend's 32 greedy tokens (chosen on the device) against the
// exact reference's, and the CPU engine's too. A divergence is allowed only
// after a near-tie of the reference: a top-2 gap under twice the engine's
// error at the two best logits (measured above: CUDA 0.41, CPU 0.51 logits at
// most), so the bands are 1.0 and 1.2.
TEST(CudaBackendTest, GreedyTokensMatchCpuExceptAfterNearTies) {
  TOKENFAB_REQUIRE_GPU();
  const LoadedModel* m = DefaultModel();
  ASSERT_NE(m, nullptr) << "run scripts/setup to fetch the default model";
  const nlohmann::json& golden = ExactGolden();
  ASSERT_TRUE(golden.contains("prompts")) << "tests/golden/exact/smollm2_f64.json is missing";
  auto [gpu, cpu] = BothBackends(*m);
  ASSERT_NE(gpu, nullptr);
  const std::vector<std::vector<int32_t>> prompts = GoldenPrompts();
  const Generation on_gpu = Greedy(*gpu, prompts, 32);
  const Generation on_cpu = Greedy(*cpu, prompts, 32);
  ASSERT_EQ(on_gpu.tokens.size(), prompts.size());
  constexpr float kCudaNearTie = 1.0f, kCpuNearTie = 1.2f;
  int32_t gpu_same = 0, cpu_same = 0, gpu_cpu_same = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const auto& p = golden["prompts"][s];
    const auto ref = p["greedy"].get<std::vector<int32_t>>();
    const auto gaps = p["greedy_gaps"].get<std::vector<float>>();
    const Divergence g = FirstDivergence(ref, gaps, on_gpu.tokens[s]);
    const Divergence c = FirstDivergence(ref, gaps, on_cpu.tokens[s]);
    gpu_same += g.at < 0;
    cpu_same += c.at < 0;
    gpu_cpu_same += on_gpu.tokens[s] == on_cpu.tokens[s];
    if (g.at >= 0) {
      std::printf("prompt %zu: CUDA leaves the exact continuation at token %d (gap %.3f)\n", s,
                  g.at, g.gap);
      EXPECT_LT(g.gap, kCudaNearTie)
          << "prompt " << s << ": CUDA diverged at token " << g.at << " without a near-tie";
    }
    if (c.at >= 0) {
      std::printf("prompt %zu: CPU leaves the exact continuation at token %d (gap %.3f)\n", s, c.at,
                  c.gap);
      EXPECT_LT(c.gap, kCpuNearTie)
          << "prompt " << s << ": CPU diverged at token " << c.at << " without a near-tie";
    }
  }
  std::printf(
      "greedy, 32 tokens of 10 prompts: CUDA as exact %d, CPU as exact %d, CUDA as CPU %d\n",
      gpu_same, cpu_same, gpu_cpu_same);
}

TEST(CudaBackendTest, GraphsAndEagerStepsAgree) {
  TOKENFAB_REQUIRE_GPU();
  const LoadedModel* m = DefaultModel();
  ASSERT_NE(m, nullptr);
  auto graphs = MakeCuda(m->config, m->weights, true);
  auto eager = MakeCuda(m->config, m->weights, false);
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  auto prompts = GoldenPrompts();
  ASSERT_GE(prompts.size(), 3u) << "tests/golden/exact/smollm2_f64.json is missing";
  prompts.resize(3);  // batch 3: padded to the graph of 4
  const Generation a = Greedy(*graphs, prompts, 16);
  const Generation b = Greedy(*eager, prompts, 16);
  EXPECT_GT(graphs->graphs_captured(), 0);
  EXPECT_EQ(eager->graphs_captured(), 0);
  // Same kernels; only cuBLASLt's choice for the padded batch may differ.
  int32_t same = 0;
  for (size_t s = 0; s < prompts.size(); ++s) same += a.tokens[s] == b.tokens[s];
  EXPECT_GE(same, 2);
}

// The last logits of `ids` prefilled in chunks of `chunk` tokens, each step
// alone (no logits until the last: nothing to copy back, so the steps must
// still see each other's KV and their own arguments) or beside another
// sequence's prefill.
std::vector<float> LastLogitsInChunks(Backend& b, const std::vector<int32_t>& ids, int32_t chunk,
                                      bool beside_other) {
  const std::vector<int32_t> table = Blocks(100, static_cast<int32_t>(ids.size() + 15) / 16);
  const std::vector<int32_t> other(50, 42), other_table = Blocks(300, 4);
  const int32_t n = static_cast<int32_t>(ids.size());
  std::vector<float> last;
  for (int32_t at = 0; at < n; at += chunk) {
    const int32_t len = std::min(chunk, n - at);
    const bool final = at + len == n;
    std::vector<SequenceStep> steps = {{std::span<const int32_t>(ids).subspan(at, len), at, table,
                                        final ? LogitsMode::kLast : LogitsMode::kNone}};
    steps.back().prompt_end = n;
    if (beside_other) steps.push_back({other, 0, other_table, LogitsMode::kLast});
    StepResult r;
    const absl::Status st = b.Forward(steps, &r);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) return {};
    if (final) last.assign(r.Row(r.first_row[0]), r.Row(r.first_row[0]) + r.vocab_size);
  }
  return last;
}

TEST(CudaBackendTest, ChunkedPrefillAgreesWithWhole) {
  TOKENFAB_REQUIRE_GPU();
  const LoadedModel* m = DefaultModel();
  ASSERT_NE(m, nullptr);
  auto gpu = MakeCuda(m->config, m->weights);
  ASSERT_NE(gpu, nullptr);
  const int32_t vocab = m->config.vocab_size;
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 300; ++i) ids.push_back((i * 7919 + 13) % vocab);
  const std::vector<float> whole = PromptLogits(*gpu, ids);
  const std::vector<float> whole_last(whole.end() - vocab, whole.end());
  // 299: the last prompt token alone, as a decode worker computes it after
  // a remote prefill.
  for (const auto& [chunk, beside_other] :
       {std::pair{100, true}, std::pair{48, false}, std::pair{299, false}}) {
    Agreement d;
    AgainstEngine(whole_last, LastLogitsInChunks(*gpu, ids, chunk, beside_other), vocab, &d);
    std::printf("chunks of %d%s vs whole prefill: %s\n", chunk,
                beside_other ? " beside another prefill" : " alone", d.Summary().c_str());
    EXPECT_LT(d.max_scaled, 0.02) << "chunks of " << chunk;
    EXPECT_EQ(d.argmax_flips, 0) << "chunks of " << chunk;
    // The emulator's products do not depend on the batch, so there every
    // prompt position must come out as in the whole prefill, bit for bit
    // (on a GPU cuBLAS may pick another algorithm per row count).
    if (testing::OnEmulator()) {
      EXPECT_EQ(d.max_abs, 0.0) << "chunks of " << chunk;
    }
  }
}

// The engine thread is not the thread that made the backend: a backend on a
// second GPU must still run its steps there.
TEST(CudaBackendTest, BackendOnSecondGpuRunsFromAnotherThread) {
  TOKENFAB_REQUIRE_GPU();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  if (count < 2) GTEST_SKIP() << "one GPU visible";
  const LoadedModel* m = DefaultModel();
  ASSERT_NE(m, nullptr);
  CudaBackendOptions o;
  o.device = 1;
  o.num_kv_blocks = 64;
  o.max_batched_tokens = 256;
  o.max_num_seqs = 8;
  auto b = CudaBackend::Create(m->config, m->weights, o);
  ASSERT_TRUE(b.ok()) << b.status();
  std::vector<float> logits;
  std::thread([&] {
    cudaSetDevice(0);
    logits = PromptLogits(**b, {1, 2, 3, 4});
  }).join();
  ASSERT_EQ(logits.size(), 4u * m->config.vocab_size);
  for (float l : logits) ASSERT_TRUE(std::isfinite(l));
}

TEST(CudaBackendTest, ExportedKvImportedElsewhereGivesSameLogits) {
  TOKENFAB_REQUIRE_GPU();
  const LoadedModel* m = DefaultModel();
  ASSERT_NE(m, nullptr);
  auto a = MakeCuda(m->config, m->weights, false);
  auto b = MakeCuda(m->config, m->weights, false);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 40; ++i) ids.push_back((i * 104729 + 5) % m->config.vocab_size);
  const std::vector<int32_t> ta = Blocks(0, 3), tb = Blocks(17, 3);
  const SequenceStep prefill{ids, 0, ta, LogitsMode::kNone};
  StepResult r;
  ASSERT_TRUE(a->Forward({&prefill, 1}, &r).ok());
  const KvLayout layout = a->kv_layout();
  EXPECT_EQ(layout.dtype, KvDType::kBF16);
  std::vector<uint8_t> buf(layout.PositionBytes() * ids.size());
  for (int32_t l = 0; l < layout.num_layers; ++l) {
    ASSERT_TRUE(a->ReadKv(l, ta, 0, static_cast<int32_t>(ids.size()), buf).ok());
    ASSERT_TRUE(b->WriteKv(l, tb, 0, static_cast<int32_t>(ids.size()), buf).ok());
  }
  const std::vector<int32_t> next = {1234};
  const SequenceStep da{next, 40, ta, LogitsMode::kLast}, db{next, 40, tb, LogitsMode::kLast};
  StepResult ra, rb;
  ASSERT_TRUE(a->Forward({&da, 1}, &ra).ok());
  ASSERT_TRUE(b->Forward({&db, 1}, &rb).ok());
  EXPECT_EQ(ra.logits, rb.logits) << "the same KV values must give the same logits";
  // A buffer of the wrong size or an unknown layer is refused.
  EXPECT_EQ(a->ReadKv(0, ta, 0, 3, std::span<uint8_t>(buf).subspan(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->ReadKv(layout.num_layers, ta, 0, 1, buf).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CudaBackendTest, InvalidBatchIsRefusedAndChangesNothing) {
  TOKENFAB_REQUIRE_GPU();
  const LoadedModel* m = DefaultModel();
  ASSERT_NE(m, nullptr);
  auto gpu = MakeCuda(m->config, m->weights);
  ASSERT_NE(gpu, nullptr);
  const std::vector<int32_t> bad = {m->config.vocab_size}, table = Blocks(0, 1);
  const SequenceStep step{bad, 0, table, LogitsMode::kLast};
  StepResult r;
  EXPECT_EQ(gpu->Forward({&step, 1}, &r).code(), absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> many(2000, 1);  // more than max_batched_tokens
  const std::vector<int32_t> big_table = Blocks(0, 125);
  const SequenceStep huge{many, 0, big_table, LogitsMode::kLast};
  EXPECT_EQ(gpu->Forward({&huge, 1}, &r).code(), absl::StatusCode::kInvalidArgument);
}

class CudaTinyHfTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaTinyHfTest, LogitsMatchTransformers) {
  TOKENFAB_REQUIRE_GPU();
  const std::string name = GetParam();
  const std::string dir = tokenfab::testing::TestDataPath("hf/" + name);
  auto golden_text = ReadFileToString(tokenfab::testing::GoldenPath("hf/" + name + ".json"));
  ASSERT_TRUE(golden_text.ok()) << golden_text.status();
  const nlohmann::json golden = nlohmann::json::parse(*golden_text);
  auto model = LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config;
  auto gpu = MakeCuda(c, (*model)->weights);
  ASSERT_NE(gpu, nullptr);
  for (size_t s = 0; s < golden["input_ids"].size(); ++s) {
    const std::vector<int32_t> ids = golden["input_ids"][s].get<std::vector<int32_t>>();
    const std::vector<float> got = PromptLogits(*gpu, ids);
    std::vector<float> want;
    for (const auto& row : golden["logits"][s]) {
      for (float v : row.get<std::vector<float>>()) want.push_back(v);
    }
    Agreement d;
    AgainstEngine(want, got, c.vocab_size, &d);
    std::printf("%s sequence %zu: %s\n", name.c_str(), s, d.Summary().c_str());
    // These random models have near-ties (top-2 gaps down to 0.005): an
    // argmax may flip inside the error band, not beyond it.
    EXPECT_LT(d.max_scaled, 0.03);
    EXPECT_EQ(d.argmax_flips, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaTinyHfTest,
                         ::testing::Values("tiny-llama", "tiny-mistral", "tiny-qwen2"));

}  // namespace
}  // namespace tokenfab::cuda
