// The CUDA backend's layer and attention kernels and its GEMM against the
// CPU engine's functions of the same job (worker/kernels), on seeded random
// data. bf16 results: rtol 2e-2. Skipped where no GPU is visible.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/worker/cuda/gpu_test_util.h"
#include "worker/cuda/gemm.h"
#include "worker/cuda/kernels.h"
#include "worker/kernels/attention.h"
#include "worker/kernels/ops.h"
#include "worker/model/model_config.h"

namespace tokenfab::cuda {
namespace {

using testing::ExpectClose;
using testing::FromBf16;
using testing::RandomBf16Values;
using testing::TestSeed;
using testing::ToBf16;
using testing::ToDevice;
using testing::ToHost;

constexpr float kRtol = 2e-2f;

TEST(CudaKernelsTest, EmbeddingCopiesRows) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int32_t vocab = 50, hidden = 96;
  const std::vector<float> table = RandomBf16Values(rng, vocab * hidden);
  const std::vector<int32_t> tokens = {3, 0, 49, 3, 17};
  auto d_table = ToDevice(ToBf16(table));
  auto d_tokens = ToDevice(tokens);
  auto d_x = ToDevice(std::vector<float>(tokens.size() * hidden));
  ASSERT_EQ(LaunchEmbedding(d_tokens.get(), 5, reinterpret_cast<const bf16*>(d_table.get()), hidden,
                            d_x.get(), nullptr),
            cudaSuccess);
  const std::vector<float> x = ToHost(d_x, tokens.size() * hidden);
  for (size_t t = 0; t < tokens.size(); ++t) {
    for (int32_t i = 0; i < hidden; ++i)
      ASSERT_EQ(x[t * hidden + i], table[tokens[t] * hidden + i]);
  }
}

TEST(CudaKernelsTest, ResidualRmsNormMatchesCpu) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int32_t n = 7, hidden = 576;
  std::uniform_real_distribution<float> d(-2, 2);
  std::vector<float> x(n * hidden), weight(hidden);
  for (float& v : x) v = d(rng);
  for (float& v : weight) v = d(rng);
  const std::vector<float> delta = RandomBf16Values(rng, n * hidden);
  auto d_x = ToDevice(x);
  auto d_delta = ToDevice(ToBf16(delta));
  auto d_w = ToDevice(weight);
  auto d_out = ToDevice(std::vector<uint16_t>(n * hidden));
  ASSERT_EQ(
      LaunchResidualRmsNorm(d_x.get(), reinterpret_cast<const bf16*>(d_delta.get()), d_w.get(), n,
                            hidden, 1e-5f, reinterpret_cast<bf16*>(d_out.get()), nullptr),
      cudaSuccess);
  std::vector<float> ref_x = x, ref_out(n * hidden);
  for (int32_t t = 0; t < n; ++t) {
    AddInPlace(ref_x.data() + t * hidden, delta.data() + t * hidden, hidden);
    RmsNorm(ref_x.data() + t * hidden, weight.data(), hidden, 1e-5f, ref_out.data() + t * hidden);
  }
  ExpectClose(ref_x, ToHost(d_x, n * hidden), 0, 0, "residual");
  ExpectClose(ref_out, FromBf16(ToHost(d_out, n * hidden)), 1e-3f, kRtol, "normed");

  // The final norm of chosen rows only.
  const std::vector<int32_t> rows = {6, 2};
  auto d_rows = ToDevice(rows);
  auto d_sel = ToDevice(std::vector<uint16_t>(rows.size() * hidden));
  ASSERT_EQ(LaunchRmsNormRows(d_x.get(), d_rows.get(), 2, d_w.get(), hidden, 1e-5f,
                              reinterpret_cast<bf16*>(d_sel.get()), nullptr),
            cudaSuccess);
  std::vector<float> ref_sel;
  for (int32_t r : rows) {
    ref_sel.insert(ref_sel.end(), ref_out.begin() + r * hidden, ref_out.begin() + (r + 1) * hidden);
  }
  ExpectClose(ref_sel, FromBf16(ToHost(d_sel, rows.size() * hidden)), 1e-3f, kRtol, "rows");
}

class CudaRopeTest : public ::testing::TestWithParam<RopeStyle> {};

TEST_P(CudaRopeTest, MatchesCpuWithBiasAndLlama3Scaling) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int32_t heads = 9, kv_heads = 3, dim = 64, half = dim / 2;
  const int32_t width = (heads + 2 * kv_heads) * dim;
  const std::vector<int32_t> positions = {0, 1, 17, 4095, 8192, 100000};
  const int32_t n = static_cast<int32_t>(positions.size());
  std::vector<float> inv_freq = RopeInverseFrequencies(dim, 500000.0f);
  ApplyLlama3RopeScaling({}, &inv_freq);
  const std::vector<float> qkv = RandomBf16Values(rng, n * width);
  const std::vector<float> bias = RandomBf16Values(rng, width, 0.5f);
  auto d_qkv = ToDevice(ToBf16(qkv));
  auto d_bias = ToDevice(bias);
  auto d_pos = ToDevice(positions);
  auto d_freq = ToDevice(inv_freq);
  RopeArgs a;
  a.qkv = reinterpret_cast<bf16*>(d_qkv.get());
  a.row_stride = width;
  a.bias = d_bias.get();
  a.positions = d_pos.get();
  a.inv_freq = d_freq.get();
  a.n = n;
  a.num_heads = heads;
  a.num_kv_heads = kv_heads;
  a.head_dim = dim;
  a.interleaved = GetParam() == RopeStyle::kInterleaved;
  ASSERT_EQ(LaunchRope(a, nullptr), cudaSuccess);
  std::vector<float> ref = qkv;
  std::vector<float> cs(half), sn(half);
  for (int32_t t = 0; t < n; ++t) {
    float* row = ref.data() + t * width;
    AddInPlace(row, bias.data(), width);
    RopeAngles(positions[t], inv_freq.data(), half, cs.data(), sn.data());
    ApplyRope(row, heads + kv_heads, dim, cs.data(), sn.data(), GetParam());
  }
  ExpectClose(ref, FromBf16(ToHost(d_qkv, n * width)), 1e-2f, kRtol, "rotated qkv");
}

INSTANTIATE_TEST_SUITE_P(Styles, CudaRopeTest,
                         ::testing::Values(RopeStyle::kInterleaved, RopeStyle::kHalves));

TEST(CudaKernelsTest, KvWriteGatherScatterRoundTrip) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int32_t kv_heads = 2, dim = 32, blocks = 6, kv_dim = kv_heads * dim;
  const int32_t q_dim = 4 * dim, width = q_dim + 2 * kv_dim;
  const std::vector<int32_t> slots = {5 * 16 + 3, 0, 2 * 16 + 15, 16};
  const int32_t n = static_cast<int32_t>(slots.size());
  const std::vector<uint16_t> qkv = ToBf16(RandomBf16Values(rng, n * width));
  const size_t cache = static_cast<size_t>(blocks) * kv_heads * 16 * dim;
  auto d_qkv = ToDevice(qkv);
  auto d_slots = ToDevice(slots);
  auto d_k = ToDevice(std::vector<uint16_t>(cache));
  auto d_v = ToDevice(std::vector<uint16_t>(cache));
  KvLayer kv{reinterpret_cast<bf16*>(d_k.get()), reinterpret_cast<bf16*>(d_v.get()), kv_heads, dim};
  ASSERT_EQ(LaunchKvWrite(reinterpret_cast<const bf16*>(d_qkv.get()), width, q_dim, q_dim + kv_dim,
                          d_slots.get(), n, kv, nullptr),
            cudaSuccess);
  const std::vector<uint16_t> k = ToHost(d_k, cache), v = ToHost(d_v, cache);
  for (int32_t t = 0; t < n; ++t) {
    for (int32_t i = 0; i < kv_dim; ++i) {
      const int32_t h = i / dim, d = i % dim, b = slots[t] / 16, s = slots[t] % 16;
      const size_t at = ((static_cast<size_t>(b) * kv_heads + h) * 16 + s) * dim + d;
      ASSERT_EQ(k[at], qkv[t * width + q_dim + i]);
      ASSERT_EQ(v[at], qkv[t * width + q_dim + kv_dim + i]);
    }
  }
  // Gather packs [K|V][position][head][dim]; scatter into a fresh cache
  // puts every value back where it was.
  auto d_packed = ToDevice(std::vector<uint16_t>(2 * n * kv_dim));
  ASSERT_EQ(LaunchKvGather(kv, d_slots.get(), n, reinterpret_cast<bf16*>(d_packed.get()), nullptr),
            cudaSuccess);
  const std::vector<uint16_t> packed = ToHost(d_packed, 2 * n * kv_dim);
  for (int32_t t = 0; t < n; ++t) {
    for (int32_t i = 0; i < kv_dim; ++i) {
      ASSERT_EQ(packed[t * kv_dim + i], qkv[t * width + q_dim + i]);
      ASSERT_EQ(packed[(n + t) * kv_dim + i], qkv[t * width + q_dim + kv_dim + i]);
    }
  }
  auto d_k2 = ToDevice(std::vector<uint16_t>(cache));
  auto d_v2 = ToDevice(std::vector<uint16_t>(cache));
  KvLayer kv2{reinterpret_cast<bf16*>(d_k2.get()), reinterpret_cast<bf16*>(d_v2.get()), kv_heads,
              dim};
  ASSERT_EQ(LaunchKvScatter(reinterpret_cast<const bf16*>(d_packed.get()), d_slots.get(), n, kv2,
                            nullptr),
            cudaSuccess);
  EXPECT_EQ(ToHost(d_k2, cache), k);
  EXPECT_EQ(ToHost(d_v2, cache), v);
}

TEST(CudaKernelsTest, SiluMulMatchesCpu) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const int32_t n = 3, ff = 1536;
  const std::vector<float> gate_up = RandomBf16Values(rng, n * 2 * ff, 6.0f);
  auto d_in = ToDevice(ToBf16(gate_up));
  auto d_out = ToDevice(std::vector<uint16_t>(n * ff));
  ASSERT_EQ(LaunchSiluMul(reinterpret_cast<const bf16*>(d_in.get()), n, ff,
                          reinterpret_cast<bf16*>(d_out.get()), nullptr),
            cudaSuccess);
  std::vector<float> ref(n * ff);
  for (int32_t t = 0; t < n; ++t) {
    SiluMul(gate_up.data() + t * 2 * ff, gate_up.data() + t * 2 * ff + ff, ff, ref.data() + t * ff);
  }
  ExpectClose(ref, FromBf16(ToHost(d_out, n * ff)), 1e-3f, kRtol, "silu*up");
}

// A paged bf16 cache with shuffled block tables, and the CPU engine's
// attention reference reading the same values as f32.
struct AttentionFixture {
  int32_t heads, kv_heads, dim, blocks;
  std::vector<float> k, v;                   // [block][head][slot][dim]
  std::vector<std::vector<int32_t>> tables;  // per sequence

  AttentionFixture(std::mt19937& rng, int32_t heads_, int32_t kv_heads_, int32_t dim_,
                   const std::vector<int32_t>& contexts)
      : heads(heads_), kv_heads(kv_heads_), dim(dim_) {
    blocks = 0;
    for (int32_t c : contexts) blocks += (c + 15) / 16;
    std::vector<int32_t> ids(blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    int32_t next = 0;
    for (int32_t c : contexts) {
      tables.emplace_back(ids.begin() + next, ids.begin() + next + (c + 15) / 16);
      next += (c + 15) / 16;
    }
    const size_t n = static_cast<size_t>(blocks) * kv_heads * 16 * dim;
    k = RandomBf16Values(rng, n);
    v = RandomBf16Values(rng, n);
  }

  // Attention of one token (query `q`, all heads) at position `pos` of
  // sequence `s`.
  std::vector<float> Reference(const float* q, int32_t s, int32_t pos) const {
    KvLayerView view;
    view.dtype = KvDType::kF32;
    view.k = k.data();
    view.v = v.data();
    view.num_kv_heads = kv_heads;
    view.head_dim = dim;
    view.block_size = 16;
    const int32_t group = heads / kv_heads;
    std::vector<float> out(heads * dim);
    for (int32_t kvh = 0; kvh < kv_heads; ++kvh) {
      AttendGroupReference(q + kvh * group * dim, group, kvh, tables[s].data(), pos + 1, view,
                           1.0f / std::sqrt(static_cast<float>(dim)),
                           out.data() + kvh * group * dim);
    }
    return out;
  }
};

struct AttentionCase {
  int32_t heads, kv_heads, dim;
};

class CudaAttentionTest : public ::testing::TestWithParam<AttentionCase> {};

AttentionArgs Args(const AttentionCase& c, int32_t stride, const DeviceBuffer<uint16_t>& q,
                   const DeviceBuffer<uint16_t>& k, const DeviceBuffer<uint16_t>& v,
                   const DeviceBuffer<int32_t>& tables, const DeviceBuffer<int32_t>& offsets,
                   const DeviceBuffer<int32_t>& positions, DeviceBuffer<uint16_t>& out) {
  AttentionArgs a;
  a.q = reinterpret_cast<const bf16*>(q.get());
  a.q_stride = stride;
  a.out = reinterpret_cast<bf16*>(out.get());
  a.k_cache = reinterpret_cast<const bf16*>(k.get());
  a.v_cache = reinterpret_cast<const bf16*>(v.get());
  a.num_heads = c.heads;
  a.num_kv_heads = c.kv_heads;
  a.head_dim = c.dim;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
  a.block_tables = tables.get();
  a.table_offset = offsets.get();
  a.positions = positions.get();
  return a;
}

TEST_P(CudaAttentionTest, DecodeMatchesCpuAtEverySplitCount) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  const AttentionCase c = GetParam();
  const std::vector<int32_t> contexts = {1, 17, 300, 5000};
  AttentionFixture f(rng, c.heads, c.kv_heads, c.dim, contexts);
  const int32_t n = static_cast<int32_t>(contexts.size());
  const int32_t stride = (c.heads + 2 * c.kv_heads) * c.dim;
  const std::vector<float> q = RandomBf16Values(rng, n * stride);
  std::vector<int32_t> flat_tables, offsets, positions;
  for (int32_t s = 0; s < n; ++s) {
    offsets.push_back(static_cast<int32_t>(flat_tables.size()));
    flat_tables.insert(flat_tables.end(), f.tables[s].begin(), f.tables[s].end());
    positions.push_back(contexts[s] - 1);
  }
  auto d_q = ToDevice(ToBf16(q));
  auto d_k = ToDevice(ToBf16(f.k));
  auto d_v = ToDevice(ToBf16(f.v));
  auto d_tables = ToDevice(flat_tables);
  auto d_offsets = ToDevice(offsets);
  auto d_pos = ToDevice(positions);
  std::vector<float> ref;
  for (int32_t s = 0; s < n; ++s) {
    const std::vector<float> r = f.Reference(q.data() + s * stride, s, positions[s]);
    ref.insert(ref.end(), r.begin(), r.end());
  }
  const int32_t max_context = 5000;
  for (int32_t splits : {1, 3, DecodeSplits(n, c.kv_heads, max_context, 132), 20}) {
    SCOPED_TRACE(::testing::Message() << splits << " splits");
    auto d_out = ToDevice(std::vector<uint16_t>(n * c.heads * c.dim));
    auto d_scratch = ToDevice(std::vector<float>(DecodeScratchFloats(n, c.heads, c.dim, splits)));
    AttentionArgs a = Args(c, stride, d_q, d_k, d_v, d_tables, d_offsets, d_pos, d_out);
    a.n = n;
    ASSERT_EQ(LaunchDecodeAttention(a, max_context, splits, d_scratch.get(), nullptr), cudaSuccess);
    ExpectClose(ref, FromBf16(ToHost(d_out, n * c.heads * c.dim)), 2e-3f, kRtol, "decode");
  }
}

TEST_P(CudaAttentionTest, PrefillOverCachedPrefixMatchesCpu) {
  TOKENFAB_REQUIRE_GPU();
  const AttentionCase c = GetParam();
  if (!PrefillAttentionSupports(c.dim)) GTEST_SKIP() << "head_dim " << c.dim << " uses decode";
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  // Sequence 0: 37 cached positions, then 150 new tokens; sequence 1: a
  // fresh prompt of 64; sequence 2: 5 new tokens after 1000 cached.
  const std::vector<int32_t> starts = {37, 0, 1000}, lens = {150, 64, 5};
  std::vector<int32_t> contexts;
  for (size_t s = 0; s < starts.size(); ++s) contexts.push_back(starts[s] + lens[s]);
  AttentionFixture f(rng, c.heads, c.kv_heads, c.dim, contexts);
  const int32_t stride = (c.heads + 2 * c.kv_heads) * c.dim;
  int32_t n = 0;
  for (int32_t l : lens) n += l;
  const std::vector<float> q = RandomBf16Values(rng, n * stride);
  std::vector<int32_t> flat_tables, offsets, positions;
  std::vector<PrefillTile> tiles;
  std::vector<float> ref;
  int32_t row = 0;
  for (size_t s = 0; s < starts.size(); ++s) {
    const int32_t off = static_cast<int32_t>(flat_tables.size());
    flat_tables.insert(flat_tables.end(), f.tables[s].begin(), f.tables[s].end());
    for (int32_t i = 0; i < lens[s]; i += 64) {
      tiles.push_back({row + i, std::min(64, lens[s] - i), starts[s] + i, off});
    }
    for (int32_t i = 0; i < lens[s]; ++i) {
      offsets.push_back(off);
      positions.push_back(starts[s] + i);
      const std::vector<float> r =
          f.Reference(q.data() + (row + i) * stride, static_cast<int32_t>(s), starts[s] + i);
      ref.insert(ref.end(), r.begin(), r.end());
    }
    row += lens[s];
  }
  auto d_q = ToDevice(ToBf16(q));
  auto d_k = ToDevice(ToBf16(f.k));
  auto d_v = ToDevice(ToBf16(f.v));
  auto d_tables = ToDevice(flat_tables);
  auto d_offsets = ToDevice(offsets);
  auto d_pos = ToDevice(positions);
  auto d_tiles = ToDevice(tiles);
  auto d_out = ToDevice(std::vector<uint16_t>(n * c.heads * c.dim));
  const AttentionArgs a = Args(c, stride, d_q, d_k, d_v, d_tables, d_offsets, d_pos, d_out);
  ASSERT_EQ(LaunchPrefillAttention(a, d_tiles.get(), static_cast<int32_t>(tiles.size()), nullptr),
            cudaSuccess);
  // P is rounded to bf16 before P.V (as FlashAttention does): a little
  // more absolute error than decode.
  ExpectClose(ref, FromBf16(ToHost(d_out, n * c.heads * c.dim)), 5e-3f, kRtol, "prefill");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttentionTest,
                         ::testing::Values(AttentionCase{9, 3, 64},    // SmolLM2-135M
                                           AttentionCase{32, 8, 128},  // Llama-3.1-8B
                                           AttentionCase{4, 2, 16},    // tiny checkpoints
                                           AttentionCase{14, 2, 64}));

TEST(CudaGemmTest, MatchesExactProductBf16AndFloatOutputs) {
  TOKENFAB_REQUIRE_GPU();
  const uint32_t seed = TestSeed();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (const auto& [n, in, out] :
       {std::tuple{1, 576, 1536}, std::tuple{5, 256, 384}, std::tuple{130, 1024, 96}}) {
    SCOPED_TRACE(::testing::Message() << n << "x" << in << " by " << out);
    const std::vector<float> x = RandomBf16Values(rng, n * in);
    const std::vector<float> w = RandomBf16Values(rng, out * in);
    const std::vector<float> y0 = RandomBf16Values(rng, n * out);
    std::vector<float> ref(n * out);
    for (int32_t i = 0; i < n; ++i) {
      for (int32_t o = 0; o < out; ++o) {
        double s = 0;
        for (int32_t k = 0; k < in; ++k) s += static_cast<double>(x[i * in + k]) * w[o * in + k];
        ref[i * out + o] = static_cast<float>(s);
      }
    }
    auto d_x = ToDevice(ToBf16(x));
    auto d_w = ToDevice(ToBf16(w));
    auto d_y16 = ToDevice(std::vector<uint16_t>(n * out));
    auto d_y32 = ToDevice(y0);
    const auto* px = reinterpret_cast<const bf16*>(d_x.get());
    const auto* pw = reinterpret_cast<const bf16*>(d_w.get());
    ASSERT_TRUE((*gemm)->Run(px, pw, n, in, out, d_y16.get(), CUDA_R_16BF, false, nullptr).ok());
    ExpectClose(ref, FromBf16(ToHost(d_y16, n * out)), 2e-2f, kRtol, "bf16 out");
    // fp32 output accumulating onto what was there.
    ASSERT_TRUE((*gemm)->Run(px, pw, n, in, out, d_y32.get(), CUDA_R_32F, true, nullptr).ok());
    std::vector<float> ref_acc(ref);
    for (size_t i = 0; i < ref_acc.size(); ++i) ref_acc[i] += y0[i];
    ExpectClose(ref_acc, ToHost(d_y32, n * out), 1e-3f, 1e-3f, "f32 accumulate");
  }
}

}  // namespace
}  // namespace tokenfab::cuda
