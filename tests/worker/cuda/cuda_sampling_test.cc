// Token choice on the GPU against the CPU sampler (engine/sampler.h): the
// same greedy token with penalties, draws only from the set the CPU's
// top-k / top-p / min-p keeps, in proportions that match its probabilities,
// and the same token for the same seed and draw. Skipped where no GPU is
// visible.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "tests/worker/cuda/gpu_test_util.h"
#include "worker/cuda/kernels.h"
#include "worker/engine/sampler.h"

namespace tokenfab::cuda {
namespace {

using testing::TestSeed;
using testing::ToDevice;
using testing::ToHost;

// Runs the sampling kernel over `rows` of `logits` ([k][vocab]).
std::vector<int32_t> SampleOnGpu(const std::vector<float>& logits, int32_t vocab,
                                 const std::vector<SamplingRow>& rows,
                                 const std::vector<int32_t>& history) {
  const int32_t n = static_cast<int32_t>(rows.size());
  auto d_logits = ToDevice(logits);
  auto d_rows = ToDevice(rows);
  auto d_history = ToDevice(history);
  auto d_work = ToDevice(std::vector<float>(static_cast<size_t>(n) * vocab));
  auto d_counts = ToDevice(std::vector<int32_t>(static_cast<size_t>(n) * vocab));
  auto d_out = ToDevice(std::vector<int32_t>(n));
  EXPECT_EQ(LaunchSample(d_logits.get(), vocab, d_rows.get(), n, d_history.get(), d_work.get(),
                         d_counts.get(), d_out.get(), nullptr),
            cudaSuccess);
  const std::vector<int32_t> counts = ToHost(d_counts, static_cast<size_t>(n) * vocab);
  EXPECT_TRUE(std::all_of(counts.begin(), counts.end(), [](int32_t c) { return c == 0; }))
      << "the kernel must leave its counts zeroed for the next step";
  return ToHost(d_out, n);
}

SamplingRow RowFrom(const SamplingOptions& o, int32_t logits_row, uint64_t draw) {
  SamplingRow r;
  r.logits_row = logits_row;
  r.temperature = o.temperature;
  r.top_k = o.top_k;
  r.top_p = o.top_p;
  r.min_p = o.min_p;
  r.repetition_penalty = o.repetition_penalty;
  r.presence_penalty = o.presence_penalty;
  r.frequency_penalty = o.frequency_penalty;
  r.seed = o.seed;
  r.draw = draw;
  return r;
}

TEST(CudaSamplingTest, GreedyWithPenaltiesMatchesCpuSampler) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int32_t vocab = 3000, rows = 12;
  std::normal_distribution<float> d(0, 3);
  std::uniform_int_distribution<int32_t> tok(0, 40);  // few distinct: repeats
  std::vector<float> logits(rows * vocab);
  for (float& l : logits) l = d(rng);
  // The history's tokens lead every row, so the penalties decide the winner.
  for (int32_t r = 0; r < rows; ++r) {
    for (int32_t i = 0; i < 40; ++i)
      logits[r * vocab + i] = 9.0f + 0.01f * static_cast<float>(i % 3);
  }
  logits[vocab + 7] = logits[vocab + 5] = 50.0f;  // a tie: the lower id wins
  std::vector<SamplingRow> gpu_rows;
  std::vector<int32_t> history, expected;
  for (int32_t r = 0; r < rows; ++r) {
    SamplingOptions o;
    o.repetition_penalty = r % 3 == 0 ? 1.0f : 1.3f;
    o.presence_penalty = r % 2 == 0 ? 0.5f : 0.0f;
    o.frequency_penalty = r % 4 == 1 ? 0.7f : 0.0f;
    std::vector<int32_t> prompt(5 + r), output(3 * r);
    for (int32_t& t : prompt) t = tok(rng);
    for (int32_t& t : output) t = tok(rng);
    Sampler cpu(o, prompt);
    for (int32_t t : output) cpu.Accept(t);
    expected.push_back(cpu.Sample(std::span<const float>(logits.data() + r * vocab, vocab)));
    SamplingRow row = RowFrom(o, r, 0);
    row.history_offset = static_cast<int32_t>(history.size());
    row.prompt_len = static_cast<int32_t>(prompt.size());
    row.history_len = static_cast<int32_t>(prompt.size() + output.size());
    history.insert(history.end(), prompt.begin(), prompt.end());
    history.insert(history.end(), output.begin(), output.end());
    gpu_rows.push_back(row);
  }
  EXPECT_EQ(SampleOnGpu(logits, vocab, gpu_rows, history), expected);
}

// The tokens the CPU sampler can draw and their probabilities.
std::map<int32_t, double> CpuDistribution(const std::vector<float>& logits,
                                          const SamplingOptions& o) {
  std::vector<std::pair<float, int32_t>> c;
  for (int32_t i = 0; i < static_cast<int32_t>(logits.size()); ++i) {
    c.emplace_back(logits[i] * (1.0f / o.temperature), i);
  }
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (o.top_k > 0 && o.top_k < static_cast<int32_t>(c.size())) c.resize(o.top_k);
  std::vector<double> p;
  for (const auto& e : c) p.push_back(std::exp(static_cast<double>(e.first) - c[0].first));
  if (o.top_p > 0 && o.top_p < 1) {
    double total = 0, cum = 0;
    for (double x : p) total += x;
    size_t cut = p.size();
    for (size_t i = 0; i < p.size(); ++i) {
      cum += p[i] / total;
      if (cum >= o.top_p) {
        cut = i + 1;
        break;
      }
    }
    p.resize(cut);
    c.resize(cut);
  }
  std::map<int32_t, double> out;
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (o.min_p > 0 && p[i] < o.min_p) continue;
    out[c[i].second] = p[i];
    total += p[i];
  }
  for (auto& [t, x] : out) x /= total;
  return out;
}

TEST(CudaSamplingTest, DrawsStayInCpuSetWithItsProportions) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int32_t vocab = 2000, draws = 4096;
  std::normal_distribution<float> d(0, 2.5f);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = d(rng);
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p, min_p;
  };
  for (const Case& k :
       {Case{1.0f, 0, 1.0f, 0.0f}, Case{0.7f, 40, 1.0f, 0.0f}, Case{0.9f, 0, 0.8f, 0.0f},
        Case{1.2f, 100, 0.9f, 0.05f}, Case{0.8f, 0, 1.0f, 0.1f}}) {
    SCOPED_TRACE(::testing::Message() << "temperature " << k.temperature << " top_k " << k.top_k
                                      << " top_p " << k.top_p << " min_p " << k.min_p);
    SamplingOptions o;
    o.temperature = k.temperature;
    o.top_k = k.top_k;
    o.top_p = k.top_p;
    o.min_p = k.min_p;
    o.seed = seed;
    const std::map<int32_t, double> want = CpuDistribution(logits, o);
    std::vector<SamplingRow> rows;
    for (int32_t i = 0; i < draws; ++i) rows.push_back(RowFrom(o, 0, static_cast<uint64_t>(i)));
    const std::vector<int32_t> got = SampleOnGpu(logits, vocab, rows, {0});
    std::map<int32_t, double> freq;
    for (int32_t t : got) {
      ASSERT_TRUE(want.count(t)) << "token " << t << " is outside the CPU sampler's set";
      freq[t] += 1.0 / draws;
    }
    // Total variation over 20 bins of about equal probability (tokens by
    // probability): per token, 4096 draws from a 2000-token distribution
    // would differ by ~0.12 even for an exact sampler; over bins, ~0.02.
    std::vector<std::pair<double, int32_t>> by_p;
    for (const auto& [t, p] : want) by_p.emplace_back(p, t);
    std::sort(by_p.rbegin(), by_p.rend());
    constexpr int kBins = 20;
    std::vector<double> want_bin(kBins), got_bin(kBins);
    double cum = 0;
    for (const auto& [p, t] : by_p) {
      const int bin = std::min(kBins - 1, static_cast<int>(cum * kBins));
      cum += p;
      want_bin[bin] += p;
      got_bin[bin] += freq.count(t) ? freq.at(t) : 0.0;
    }
    double tv = 0;
    for (int b = 0; b < kBins; ++b) tv += std::fabs(want_bin[b] - got_bin[b]);
    tv /= 2;
    EXPECT_LT(tv, 0.08) << "total variation from the CPU distribution over " << want.size()
                        << " tokens in " << kBins << " bins";
  }
}

TEST(CudaSamplingTest, SameSeedAndDrawGiveSameToken) {
  TOKENFAB_REQUIRE_GPU();
  const int32_t vocab = 500;
  std::vector<float> logits(vocab, 0.0f);  // uniform: any token is possible
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 7;
  std::vector<SamplingRow> rows = {RowFrom(o, 0, 3), RowFrom(o, 0, 3), RowFrom(o, 0, 4)};
  o.seed = 8;
  rows.push_back(RowFrom(o, 0, 3));
  const std::vector<int32_t> a = SampleOnGpu(logits, vocab, rows, {0});
  const std::vector<int32_t> b = SampleOnGpu(logits, vocab, rows, {0});
  EXPECT_EQ(a, b);
  EXPECT_EQ(a[0], a[1]);
  EXPECT_TRUE(a[0] != a[2] || a[0] != a[3]) << "draws of other draw numbers and seeds all equal";
}

TEST(CudaSamplingTest, NanLogitsAreNeverChosen) {
  TOKENFAB_REQUIRE_GPU();
  const int32_t vocab = 300;
  std::vector<float> logits(2 * vocab, std::nanf(""));
  logits[17] = -1.0f;
  logits[18] = -2.0f;
  for (int32_t i = vocab; i < 2 * vocab; ++i) logits[i] = -INFINITY;  // nothing possible
  SamplingOptions greedy, hot;
  hot.temperature = 1.0f;
  const std::vector<int32_t> got = SampleOnGpu(
      logits, vocab,
      {RowFrom(greedy, 0, 0), RowFrom(hot, 0, 1), RowFrom(hot, 0, 2), RowFrom(hot, 1, 0)}, {0});
  EXPECT_EQ(got[0], 17);
  EXPECT_TRUE(got[1] == 17 || got[1] == 18);
  EXPECT_TRUE(got[2] == 17 || got[2] == 18);
  EXPECT_EQ(got[3], 0);
}

}  // namespace
}  // namespace tokenfab::cuda
