// MatMul against the scalar reference dot, element by element and bit for
// bit: every weight type, every instruction set this CPU runs, row counts
// that are not multiples of the row tiles, token counts 1..17 and more (so
// every mix of the tokens kernel's groups, padded groups and the rows
// kernel), strided inputs and outputs, one and two threads; and several
// matrices sharing one quantization of the activations.
#include "worker/kernels/matmul.h"

#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "tests/worker/kernels/kernel_test_util.h"
#include "worker/kernels/gemm_internal.h"
#include "worker/kernels/vec_dot.h"

namespace tokenfab {
namespace {

using kernels_internal::GemmFor;
using kernels_internal::GemmIsa;
using kernels_internal::GemmKernel;
using kernels_internal::MatMulWith;

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

int64_t ColsFor(DType type) {
  if (Traits(type).block_elems == 256) return 512;
  if (Traits(type).block_elems == 32) return 576;
  return 203;  // float rows: a 32-element body, an 8-wide step and a scalar tail
}

struct Weights {
  std::vector<uint8_t> data;
  WeightMatrix matrix;
};

Weights RandomWeights(DType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  Weights w;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> row = testing::RandomRow(type, cols, rng);
    w.data.insert(w.data.end(), row.begin(), row.end());
  }
  w.matrix = WeightMatrix{type, rows, cols, *RowBytes(type, cols), w.data.data()};
  return w;
}

// y[t][r] from the reference kernel on the reference's activation format.
std::vector<float> Reference(const WeightMatrix& w, const std::vector<float>& x, int64_t x_stride,
                             int64_t n) {
  const ActFormat f = ActivationFormatFor(w.type);
  const DotKernel dot = GetReferenceDotKernel(w.type);
  std::vector<uint8_t> xq(ActivationRowBytes(f, w.cols));
  std::vector<float> y(n * w.rows);
  for (int64_t t = 0; t < n; ++t) {
    QuantizeActivations(f, x.data() + t * x_stride, w.cols, xq.data());
    for (int64_t r = 0; r < w.rows; ++r) y[t * w.rows + r] = dot(w.row(r), xq.data(), w.cols);
  }
  return y;
}

struct Isa {
  const char* name;
  GemmIsa isa;
};

// Every result equals the reference's bits; padding of the output stays.
void ExpectMatchesReference(const GemmKernel& kernel, const Weights& w, int64_t n, ThreadPool& pool,
                            std::mt19937& rng) {
  const int64_t rows = w.matrix.rows, cols = w.matrix.cols;
  const int64_t x_stride = cols + 3, y_stride = rows + 5;
  std::vector<float> x(n * x_stride);
  for (int64_t t = 0; t < n; ++t) {
    const std::vector<float> row = testing::RandomActivations(cols, rng);
    std::copy(row.begin(), row.end(), x.begin() + t * x_stride);
  }
  const float sentinel = -std::numeric_limits<float>::infinity();
  std::vector<float> y(n * y_stride, sentinel);
  std::vector<uint8_t> scratch;
  MatMulWith(kernel, w.matrix, x.data(), x_stride, n, y.data(), y_stride, pool, &scratch);
  const std::vector<float> ref = Reference(w.matrix, x, x_stride, n);
  int mismatches = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t r = 0; r < y_stride; ++r) {
      const float got = y[t * y_stride + r];
      if (r >= rows) {
        EXPECT_EQ(Bits(got), Bits(sentinel)) << "wrote padding at token " << t << " row " << r;
        continue;
      }
      if (Bits(got) != Bits(ref[t * rows + r]) && ++mismatches <= 5) {
        ADD_FAILURE() << "n=" << n << " token " << t << " row " << r << ": " << got
                      << " != reference " << ref[t * rows + r];
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << "n=" << n;
}

TEST(MatMulTest, EveryKernelEqualsTheReferenceBitForBit) {
  std::mt19937 rng(testing::Seed("matmul_test"));
  ThreadPool one(1), two(2);
  const Isa isas[] = {
      {"best", GemmIsa::kBest}, {"avx2", GemmIsa::kAvx2}, {"avx-vnni", GemmIsa::kAvxVnni}};
  std::vector<int64_t> token_counts;
  for (int64_t n = 1; n <= 17; ++n) token_counts.push_back(n);
  for (int64_t n : {24, 29, 33, 64}) token_counts.push_back(n);
  for (DType type : testing::kAllTypes) {
    for (int64_t rows : {37, 5}) {
      const Weights w = RandomWeights(type, rows, ColsFor(type), rng);
      for (const Isa& isa : isas) {
        const GemmKernel kernel = GemmFor(type, isa.isa);
        if (isa.isa != GemmIsa::kBest && kernel.run == nullptr) continue;  // not on this CPU
        SCOPED_TRACE(std::string(Traits(type).name) + " rows=" + std::to_string(rows) + " " +
                     isa.name);
        for (int64_t n : token_counts) ExpectMatchesReference(kernel, w, n, n % 2 ? one : two, rng);
      }
    }
  }
}

// A CPU with AVX-VNNI gets the VNNI kernels (a build that lost the flag for
// gemm_vnni.cc would silently fall back).
TEST(MatMulTest, CpusWithAvxVnniGetItsKernels) {
  if (!__builtin_cpu_supports("avxvnni")) GTEST_SKIP() << "this CPU has no AVX-VNNI";
  EXPECT_NE(GemmFor(DType::kQ4_1, GemmIsa::kAvxVnni).run, nullptr);
  EXPECT_NE(GemmFor(DType::kQ8_0, GemmIsa::kAvxVnni).run, nullptr);
}

// The public entry point: results do not depend on the batch a token is in
// or on the thread count.
TEST(MatMulTest, ATokensResultDoesNotDependOnItsBatch) {
  std::mt19937 rng(testing::Seed("matmul_test"));
  ThreadPool one(1), two(2);
  for (DType type : testing::kAllTypes) {
    SCOPED_TRACE(std::string(Traits(type).name));
    const int64_t rows = 45, cols = ColsFor(type), n = 21;
    const Weights w = RandomWeights(type, rows, cols, rng);
    std::vector<float> x;
    for (int64_t t = 0; t < n; ++t) {
      const std::vector<float> row = testing::RandomActivations(cols, rng);
      x.insert(x.end(), row.begin(), row.end());
    }
    std::vector<uint8_t> scratch;
    std::vector<float> batched(n * rows);
    MatMul(w.matrix, x.data(), cols, n, batched.data(), rows, two, &scratch);
    for (int64_t t = 0; t < n; ++t) {
      std::vector<float> alone(rows);
      MatMul(w.matrix, x.data() + t * cols, cols, 1, alone.data(), rows, one, &scratch);
      EXPECT_EQ(std::memcmp(alone.data(), batched.data() + t * rows, rows * sizeof(float)), 0)
          << "token " << t;
    }
  }
}

// Several matrices on one set of activations (q, k, v) give what separate
// MatMul calls give, bit for bit, with row counts that split work items
// unevenly, for every type and for a mix of types.
TEST(MatMulTest, SharedActivationsEqualSeparateCalls) {
  std::mt19937 rng(testing::Seed("matmul_test"));
  ThreadPool two(2);
  std::vector<std::vector<DType>> sets;
  for (DType type : testing::kAllTypes) sets.push_back({type, type, type});
  sets.push_back({DType::kQ4_1, DType::kQ8_0, DType::kQ4_1});  // mixed: one call each
  for (const std::vector<DType>& types : sets) {
    SCOPED_TRACE(std::string(Traits(types[0]).name) + "/" + std::string(Traits(types[1]).name));
    const int64_t cols = ColsFor(types[0]);
    const int64_t rows[] = {45, 16, 23};
    std::vector<Weights> w;
    for (int i = 0; i < 3; ++i) w.push_back(RandomWeights(types[i], rows[i], cols, rng));
    for (int64_t n : {1, 3, 9, 20}) {
      std::vector<float> x;
      for (int64_t t = 0; t < n; ++t) {
        const std::vector<float> row = testing::RandomActivations(cols, rng);
        x.insert(x.end(), row.begin(), row.end());
      }
      std::vector<uint8_t> scratch;
      std::vector<std::vector<float>> shared(3), separate(3);
      std::vector<MatMulOutput> outs;
      for (int i = 0; i < 3; ++i) {
        shared[i].assign(n * rows[i], -1.0f);
        separate[i].assign(n * rows[i], -2.0f);
        outs.push_back({&w[i].matrix, shared[i].data(), rows[i]});
      }
      MatMulShared(outs, x.data(), cols, n, two, &scratch);
      for (int i = 0; i < 3; ++i) {
        MatMul(w[i].matrix, x.data(), cols, n, separate[i].data(), rows[i], two, &scratch);
        EXPECT_EQ(std::memcmp(shared[i].data(), separate[i].data(), n * rows[i] * sizeof(float)), 0)
            << "matrix " << i << ", " << n << " tokens";
      }
    }
  }
}

}  // namespace
}  // namespace tokenfab
