// Matmul kernels of the CPU engine next to this machine's limits.
//
//   build/bench/kernels_bench [--benchmark_filter=...]
//
// MatMul/<type>/<tokens>: 4096 x 4096 weight matrices times `tokens`
// activation rows, on 2 threads; each iteration uses the next of enough copies
// to fill 1 GiB, so weights come from memory, not from the (large) L3 cache.
// With 1 token the work is bound by memory bandwidth: compare "weights/s" with
// ReadBandwidth, a plain 2-thread streaming read of 1 GiB in the same run.
// With 64 tokens it is bound by arithmetic: "MAC/s" next to the AVX2 int8
// peak printed at start (2 vpmaddubsw of 32 MACs per cycle per core).
#include <benchmark/benchmark.h>

#include <atomic>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "common/half.h"
#include "common/thread_pool.h"
#include "worker/kernels/matmul.h"
#include "worker/model/model_weights.h"

namespace tokenfab {
namespace {

constexpr int64_t kRows = 4096;
constexpr int64_t kCols = 4096;
constexpr int kThreads = 2;
constexpr size_t kWorkingSetBytes = size_t{1} << 30;

// Random weights of `type` with small finite scales in every block.
std::vector<uint8_t> RandomWeights(DType type) {
  const DTypeTraits& t = Traits(type);
  const uint64_t row_bytes = *RowBytes(type, kCols);
  std::vector<uint8_t> data(row_bytes * kRows);
  std::mt19937 rng(1);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const uint16_t scale = Fp32ToFp16(0.01f);
  for (uint64_t off = 0; off < data.size(); off += t.block_bytes) {
    switch (type) {
      case DType::kF32: {
        const float v = static_cast<float>(rng() % 1000) * 1e-3f;
        std::memcpy(&data[off], &v, 4);
        break;
      }
      case DType::kF16:
      case DType::kBF16: std::memcpy(&data[off], &scale, 2); break;
      case DType::kQ6_K: std::memcpy(&data[off + 208], &scale, 2); break;
      case DType::kQ4_1:
      case DType::kQ5_1:
      case DType::kQ4_K:
        std::memcpy(&data[off], &scale, 2);
        std::memcpy(&data[off + 2], &scale, 2);
        break;
      default: std::memcpy(&data[off], &scale, 2); break;
    }
  }
  return data;
}

void BM_MatMul(benchmark::State& state) {
  const DType type = static_cast<DType>(state.range(0));
  const int64_t tokens = state.range(1);
  static ThreadPool pool(kThreads);
  const std::vector<uint8_t> one = RandomWeights(type);
  const size_t copies = std::max<size_t>(1, kWorkingSetBytes / one.size());
  std::vector<uint8_t> data(one.size() * copies);
  for (size_t c = 0; c < copies; ++c) std::memcpy(data.data() + c * one.size(), one.data(), one.size());
  size_t next = 0;
  std::vector<float> x(tokens * kCols), y(tokens * kRows);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> scratch;
  for (auto _ : state) {
    WeightMatrix w{type, kRows, kCols, *RowBytes(type, kCols), data.data() + next * one.size()};
    next = (next + 1) % copies;
    MatMul(w, x.data(), kCols, tokens, y.data(), kRows, pool, &scratch);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(std::string(Traits(type).name));
  state.counters["weights/s"] = benchmark::Counter(static_cast<double>(one.size()) * state.iterations(),
                                                   benchmark::Counter::kIsRate,
                                                   benchmark::Counter::kIs1024);
  state.counters["MAC/s"] = benchmark::Counter(
      static_cast<double>(kRows) * kCols * tokens * state.iterations(), benchmark::Counter::kIsRate);
}

void MatMulArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K, DType::kF16,
                  DType::kBF16, DType::kF32}) {
    for (int64_t tokens : {1, 64}) b->Args({static_cast<int64_t>(t), tokens});
  }
}
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->Unit(benchmark::kMillisecond)->UseRealTime();

// The bandwidth limit: two threads summing halves of a buffer larger than the
// caches.
void BM_ReadBandwidth(benchmark::State& state) {
  const size_t n = kWorkingSetBytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(n, 1);
  static ThreadPool pool(kThreads);
  for (auto _ : state) {
    std::atomic<uint64_t> total{0};
    pool.ParallelFor(kThreads, 1, [&](int64_t b, int64_t) {
      const size_t begin = n / kThreads * b, end = n / kThreads * (b + 1);
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t i = begin; i < end; i += 4) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
      }
      total += s0 + s1 + s2 + s3;
    });
    benchmark::DoNotOptimize(total.load());
  }
  state.counters["bytes/s"] = benchmark::Counter(static_cast<double>(n * 8) * state.iterations(),
                                                 benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1024);
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

void PrintLimits() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown", mhz = "0";
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 && model == "unknown") model = line.substr(line.find(':') + 2);
    if (line.rfind("cpu MHz", 0) == 0 && mhz == "0") mhz = line.substr(line.find(':') + 2);
  }
  const double ghz = std::stod(mhz) / 1000.0;
  std::printf("kernels_bench: %s, %u hardware threads, %d threads used\n", model.c_str(),
              std::thread::hardware_concurrency(), kThreads);
  std::printf("AVX2 int8 peak at %.2f GHz: %.0f GMAC/s on %d cores (2 x 32 MAC/cycle/core)\n", ghz,
              ghz * 64 * kThreads, kThreads);
}

}  // namespace
}  // namespace tokenfab

int main(int argc, char** argv) {
  tokenfab::PrintLimits();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
