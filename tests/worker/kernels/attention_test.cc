// AttendGroup against its scalar definition (bit for bit), against float64
// attention (within rounding), and against itself with other head groupings.
#include "worker/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/half.h"
#include "gtest/gtest.h"
#include "tests/worker/kernels/kernel_test_util.h"

namespace tokenfab {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kBlocks = 24;
constexpr int32_t kKvHeads = 2;

// A layer's cache filled with random keys and values, and a shuffled block table.
struct Cache {
  KvLayerView view;
  std::vector<uint16_t> k16, v16;
  std::vector<float> k32, v32;
  std::vector<int32_t> table;

  Cache(KvDType dtype, int32_t head_dim, std::mt19937& rng) {
    const size_t n = static_cast<size_t>(kBlocks) * kKvHeads * kBlockSize * head_dim;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    k32.resize(n);
    v32.resize(n);
    for (auto& x : k32) x = normal(rng);
    for (auto& x : v32) x = normal(rng);
    if (dtype == KvDType::kF16) {
      for (float x : k32) k16.push_back(Fp32ToFp16(x));
      for (float x : v32) v16.push_back(Fp32ToFp16(x));
    }
    view = KvLayerView{dtype,
                       dtype == KvDType::kF16 ? static_cast<const void*>(k16.data()) : k32.data(),
                       dtype == KvDType::kF16 ? static_cast<const void*>(v16.data()) : v32.data(),
                       kKvHeads, head_dim, kBlockSize};
    table.resize(kBlocks);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
  }

  float At(const void* base, int32_t head, int32_t j, int32_t d) const {
    const int64_t off = view.Offset(table[j / kBlockSize], head, j % kBlockSize) + d;
    return view.dtype == KvDType::kF16 ? Fp16ToFp32(static_cast<const uint16_t*>(base)[off])
                                       : static_cast<const float*>(base)[off];
  }
};

std::vector<float> Attend(const Cache& c, const std::vector<float>& q, int32_t heads, int32_t kv_head,
                          int32_t n_ctx, float scale) {
  std::vector<float> scratch(AttendGroupScratchFloats(heads, n_ctx, c.view), std::nanf(""));
  std::vector<float> out(heads * c.view.head_dim);
  AttendGroup(q.data(), heads, kv_head, c.table.data(), n_ctx, c.view, scale, scratch.data(), out.data());
  return out;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(AttentionTest, EqualsTheReferenceBitForBit) {
  std::mt19937 rng(testing::Seed("attention_test"));
  for (KvDType dtype : {KvDType::kF16, KvDType::kF32}) {
    for (int32_t hd : {64, 40, 12}) {  // the templated width, any multiple of 8, the scalar path
      const Cache c(dtype, hd, rng);
      for (int32_t n_ctx : {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257, kBlocks * kBlockSize}) {
        for (int32_t heads : {1, 3}) {
          SCOPED_TRACE(std::string(dtype == KvDType::kF16 ? "f16" : "f32") + " hd=" + std::to_string(hd) +
                       " n_ctx=" + std::to_string(n_ctx) + " heads=" + std::to_string(heads));
          std::vector<float> q = testing::RandomActivations(heads * hd, rng);
          const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
          const int32_t kv_head = n_ctx % kKvHeads;
          const std::vector<float> got = Attend(c, q, heads, kv_head, n_ctx, scale);
          std::vector<float> ref(heads * hd);
          AttendGroupReference(q.data(), heads, kv_head, c.table.data(), n_ctx, c.view, scale, ref.data());
          EXPECT_TRUE(BitEqual(got, ref));
        }
      }
    }
  }
}

TEST(AttentionTest, AHeadsResultDoesNotDependOnItsGroup) {
  std::mt19937 rng(testing::Seed("attention_test"));
  const Cache c(KvDType::kF16, 64, rng);
  const int32_t heads = 3, hd = 64, n_ctx = 77;
  const std::vector<float> q = testing::RandomActivations(heads * hd, rng);
  const std::vector<float> together = Attend(c, q, heads, 1, n_ctx, 0.125f);
  for (int32_t h = 0; h < heads; ++h) {
    const std::vector<float> qh(q.begin() + h * hd, q.begin() + (h + 1) * hd);
    const std::vector<float> alone = Attend(c, qh, 1, 1, n_ctx, 0.125f);
    EXPECT_TRUE(BitEqual(alone, std::vector<float>(together.begin() + h * hd, together.begin() + (h + 1) * hd)))
        << "head " << h;
  }
}

TEST(AttentionTest, MatchesFloat64Attention) {
  std::mt19937 rng(testing::Seed("attention_test"));
  const Cache c(KvDType::kF32, 64, rng);
  const int32_t hd = 64;
  for (int32_t n_ctx : {1, 5, 64, 300}) {
    const std::vector<float> q = testing::RandomActivations(hd, rng);
    const float scale = 0.125f;
    const std::vector<float> got = Attend(c, q, 1, 0, n_ctx, scale);
    std::vector<double> s(n_ctx);
    for (int32_t j = 0; j < n_ctx; ++j) {
      double dot = 0;
      for (int32_t d = 0; d < hd; ++d) dot += static_cast<double>(q[d]) * c.At(c.view.k, 0, j, d);
      s[j] = dot * scale;
    }
    const double m = *std::max_element(s.begin(), s.end());
    double sum = 0;
    for (double& x : s) sum += (x = std::exp(x - m));
    for (int32_t d = 0; d < hd; ++d) {
      double want = 0;
      for (int32_t j = 0; j < n_ctx; ++j) want += s[j] / sum * c.At(c.view.v, 0, j, d);
      EXPECT_NEAR(got[d], want, 2e-5 * (1 + std::fabs(want))) << "n_ctx=" << n_ctx << " d=" << d;
    }
  }
}

TEST(AttentionTest, SoftmaxExpIsWithinTwoUlpOfExp) {
  for (float x = -87.0f; x <= 87.0f; x += 0.00731f) {
    const double want = std::exp(static_cast<double>(x));
    const float got = SoftmaxExp(x);
    const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(want)) - 23);
    ASSERT_LE(std::fabs(got - want), 2 * ulp) << "x=" << x;
  }
  EXPECT_EQ(SoftmaxExp(0.0f), 1.0f);
  EXPECT_EQ(SoftmaxExp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(SoftmaxExp(-1000.0f), 0.0f);
}

}  // namespace
}  // namespace tokenfab
