// The CPU engine's batch invariance on the real default model: a sequence's
// logits are bit-identical alone or batched, prefilled at once, in chunks or
// decoded one token at a time, and with 1 or 2 threads.
#include "worker/engine/cpu_backend.h"

#include <cstring>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_paths.h"
#include "worker/model/gguf_file.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"

namespace tokenfab {
namespace {

struct Model {
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  ModelWeights weights;
};

const Model* DefaultModel() {
  static const Model* model = [] {
    auto* m = new Model;
    const std::string path = testing::DefaultModelPath();
    auto file = GgufFile::Open(path);
    if (!file.ok()) return static_cast<Model*>(nullptr);
    m->file = std::move(*file);
    m->config = *ModelConfigFromGguf(*m->file, *RopeFreqFactorsFromGguf(*m->file));
    m->weights = *WeightsFromGguf(*m->file, m->config);
    return m;
  }();
  return model;
}

std::unique_ptr<CpuBackend> MakeBackend(const Model& m, int threads, int blocks = 64,
                                        KvDType dtype = KvDType::kF16) {
  CpuBackendOptions o;
  o.threads = threads;
  o.num_kv_blocks = blocks;
  o.kv_dtype = dtype;
  auto b = CpuBackend::Create(m.config, m.weights, o);
  EXPECT_TRUE(b.ok()) << b.status();
  return std::move(*b);
}

// Three token sequences of different lengths (ids from the vocabulary).
std::vector<int32_t> Tokens(int seed, int n) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (seed * 7919 + i * 104729) % 49152;
  return t;
}

std::vector<int32_t> Blocks(int first, int count) {
  std::vector<int32_t> b(count);
  std::iota(b.begin(), b.end(), first);
  return b;
}

// All-position logits of `tokens`, computed in chunks of `chunk` tokens.
std::vector<float> Chunked(Backend& backend, const std::vector<int32_t>& tokens,
                           const std::vector<int32_t>& blocks, int chunk) {
  std::vector<float> all;
  StepResult r;
  for (size_t pos = 0; pos < tokens.size(); pos += chunk) {
    const size_t len = std::min<size_t>(chunk, tokens.size() - pos);
    SequenceStep s{std::span(tokens).subspan(pos, len), static_cast<int32_t>(pos), blocks,
                   LogitsMode::kAll};
    EXPECT_TRUE(backend.Forward({&s, 1}, &r).ok());
    all.insert(all.end(), r.logits.begin(), r.logits.end());
  }
  return all;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class CpuBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::RequireFile(testing::DefaultModelPath())) GTEST_SKIP();
    model_ = DefaultModel();
    ASSERT_NE(model_, nullptr);
  }
  const Model* model_ = nullptr;
};

TEST_F(CpuBackendTest, PrefillChunkedAndDecodeAreBitIdentical) {
  auto backend = MakeBackend(*model_, 2);
  const std::vector<int32_t> tokens = Tokens(1, 45);
  const std::vector<int32_t> blocks = Blocks(0, 3);
  const std::vector<float> whole = Chunked(*backend, tokens, blocks, 45);
  ASSERT_EQ(whole.size(), 45u * 49152);
  EXPECT_TRUE(BitEqual(whole, Chunked(*backend, tokens, blocks, 16)));
  EXPECT_TRUE(BitEqual(whole, Chunked(*backend, tokens, blocks, 7)));
  EXPECT_TRUE(BitEqual(whole, Chunked(*backend, tokens, blocks, 1)));
}

TEST_F(CpuBackendTest, AloneAndBatchedAreBitIdentical) {
  auto backend = MakeBackend(*model_, 2);
  const std::vector<int32_t> a = Tokens(1, 30), b = Tokens(2, 21), c = Tokens(3, 5);
  const std::vector<int32_t> ba = Blocks(0, 2), bb = Blocks(2, 2), bc = Blocks(4, 1);
  const std::vector<float> alone_a = Chunked(*backend, a, ba, 30);
  const std::vector<float> alone_c = Chunked(*backend, c, bc, 5);

  // All three in one step, in a different order, into other blocks.
  const std::vector<int32_t> ba2 = Blocks(10, 2), bb2 = Blocks(12, 2), bc2 = Blocks(14, 1);
  SequenceStep steps[3] = {{b, 0, bb2, LogitsMode::kLast},
                           {a, 0, ba2, LogitsMode::kAll},
                           {c, 0, bc2, LogitsMode::kAll}};
  StepResult r;
  ASSERT_TRUE(backend->Forward(steps, &r).ok());
  const int64_t v = r.vocab_size;
  std::vector<float> batched_a(r.logits.begin() + r.first_row[1] * v,
                               r.logits.begin() + (r.first_row[1] + 30) * v);
  std::vector<float> batched_c(r.logits.begin() + r.first_row[2] * v,
                               r.logits.begin() + (r.first_row[2] + 5) * v);
  EXPECT_TRUE(BitEqual(alone_a, batched_a));
  EXPECT_TRUE(BitEqual(alone_c, batched_c));

  // A decode step of `a` batched with a prefill chunk of `b` equals `a`'s
  // decode step alone.
  const int32_t next[1] = {123};
  const std::vector<int32_t> bb3 = Blocks(20, 2);
  SequenceStep mixed[2] = {{std::span(b).subspan(0, 16), 0, bb3, LogitsMode::kNone},
                           {next, 30, ba2, LogitsMode::kLast}};
  ASSERT_TRUE(backend->Forward(mixed, &r).ok());
  std::vector<float> mixed_row(r.logits.begin() + r.first_row[1] * v,
                               r.logits.begin() + (r.first_row[1] + 1) * v);
  SequenceStep single{next, 30, ba, LogitsMode::kLast};
  ASSERT_TRUE(backend->Forward({&single, 1}, &r).ok());
  EXPECT_TRUE(BitEqual(mixed_row, r.logits));
}

TEST_F(CpuBackendTest, OneAndTwoThreadsAreBitIdentical) {
  auto one = MakeBackend(*model_, 1);
  auto two = MakeBackend(*model_, 2);
  const std::vector<int32_t> tokens = Tokens(4, 40);
  const std::vector<int32_t> blocks = Blocks(0, 3);
  EXPECT_TRUE(BitEqual(Chunked(*one, tokens, blocks, 40), Chunked(*two, tokens, blocks, 40)));
  EXPECT_TRUE(BitEqual(Chunked(*one, tokens, blocks, 9), Chunked(*two, tokens, blocks, 1)));
}

TEST_F(CpuBackendTest, RejectsInvalidBatches) {
  auto backend = MakeBackend(*model_, 1, 4);
  StepResult r;
  const std::vector<int32_t> ok_tokens = {1, 2, 3};
  const std::vector<int32_t> bad_token = {1, 49152};
  const std::vector<int32_t> blocks = {0};
  const std::vector<int32_t> bad_block = {7};
  const std::vector<int32_t> long_tokens(17, 1);
  struct Case {
    SequenceStep step;
    const char* expected;
  };
  const Case cases[] = {
      {{bad_token, 0, blocks}, "outside the vocabulary"},
      {{ok_tokens, 0, bad_block}, "uses KV block 7 of 4"},
      {{long_tokens, 0, blocks}, "needs 2 KV blocks"},
      {{ok_tokens, -1, blocks}, "negative position"},
      {{ok_tokens, 8190, blocks}, "beyond the context length"},
      {{{}, 0, blocks}, "has no tokens"},
  };
  // Two sequences writing the same cache slots in one step.
  SequenceStep clash[2] = {{ok_tokens, 0, blocks}, {ok_tokens, 0, blocks}};
  EXPECT_THAT(backend->Forward(clash, &r).message(),
              ::testing::HasSubstr("which another token of this step also writes"));
  for (const Case& c : cases) {
    absl::Status s = backend->Forward({&c.step, 1}, &r);
    EXPECT_THAT(s.message(), ::testing::HasSubstr(c.expected));
  }
}

// The f32 cache is checked exactly against reference logits on the tiny
// models (reference_logits_test); here only that both cache types give the
// same greedy choice on most positions of the real model.
TEST_F(CpuBackendTest, F32AndF16CacheMostlyAgreeOnTheTopToken) {
  auto f16 = MakeBackend(*model_, 2, 64, KvDType::kF16);
  auto f32 = MakeBackend(*model_, 2, 64, KvDType::kF32);
  const std::vector<int32_t> tokens = Tokens(5, 40);
  const std::vector<int32_t> blocks = Blocks(0, 3);
  const std::vector<float> a = Chunked(*f16, tokens, blocks, 40);
  const std::vector<float> b = Chunked(*f32, tokens, blocks, 40);
  int agree = 0;
  for (int p = 0; p < 40; ++p) {
    auto row_a = a.begin() + p * 49152, row_b = b.begin() + p * 49152;
    agree += std::max_element(row_a, row_a + 49152) - row_a ==
             std::max_element(row_b, row_b + 49152) - row_b;
  }
  std::printf("f16 vs f32 KV cache: top token agrees at %d of 40 positions\n", agree);
  EXPECT_FALSE(BitEqual(a, b));  // the caches do differ
  EXPECT_GE(agree, 30);
}

}  // namespace
}  // namespace tokenfab
