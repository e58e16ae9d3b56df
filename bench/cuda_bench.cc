// The CUDA backend's speed on a model of real shape (tools/make_random_model.py
// writes Llama-3.2-1B and Llama-3.1-8B shapes with random weights), next to
// what the same GPU does at its limits in the same run:
//   - decode step time at each batch size and context, and the HBM bandwidth
//     it achieves (bytes of weights and KV read per step / step time) against
//     a device-to-device copy's;
//   - prefill time at each prompt length, and its FLOP/s against a plain
//     cuBLASLt bf16 GEMM of the model's largest projection at the same
//     token count.
// Every figure is a median over --iters timed runs after warm-up.
//
//   cuda_bench --model DIR [--batches 1,8,64,256] [--contexts 1024,8192]
//              [--prefill 512,2048,8192] [--iters 20] [--device 0]
//
// Decode sequences share their context's KV blocks (each writes its new
// token into a block of its own), so batch 256 at 8k context fits in GPU
// memory; every sequence still reads its whole context, so the bytes and the
// time are those of distinct contexts.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/mapped_file.h"
#include "nlohmann/json.hpp"
#include "server/cli/cli_util.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/gemm.h"
#include "worker/model/safetensors_file.h"

namespace tokenfab::bench {
namespace {

using cuda::CudaBackend;
using cuda::CudaBackendOptions;

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}
void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Milliseconds of `fn` on the GPU, median of `iters` after 3 warm-ups.
template <typename Fn>
double TimeMs(int iters, Fn fn) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return Median(ms);
}

// Bytes per second of a device-to-device copy of 2 GiB, counting bytes read
// and written (as the decode figure counts bytes read).
double CopyBandwidth(int iters) {
  const size_t bytes = size_t{1} << 31;
  void *src = nullptr, *dst = nullptr;
  CheckCuda(cudaMalloc(&src, bytes), "cudaMalloc");
  CheckCuda(cudaMalloc(&dst, bytes), "cudaMalloc");
  cudaMemset(src, 1, bytes);
  const double ms =
      TimeMs(iters, [&] { cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice); });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (ms * 1e-3);
}

// FLOP/s of y[n][out] = x[n][in] w[out][in]^T in bf16.
double GemmFlops(int64_t n, int64_t in, int64_t out, int iters) {
  auto gemm = cuda::Gemm::Create();
  Check(gemm.status(), "cuBLASLt");
  void *x = nullptr, *w = nullptr, *y = nullptr;
  CheckCuda(cudaMalloc(&x, 2 * n * in), "cudaMalloc");
  CheckCuda(cudaMalloc(&w, 2 * out * in), "cudaMalloc");
  CheckCuda(cudaMalloc(&y, 2 * n * out), "cudaMalloc");
  cudaMemset(x, 0x3c, 2 * n * in);  // bf16 ~0.01: finite, non-zero
  cudaMemset(w, 0x3c, 2 * out * in);
  const double ms = TimeMs(iters, [&] {
    Check((*gemm)->Run(static_cast<const cuda::bf16*>(x), static_cast<const cuda::bf16*>(w), n, in,
                       out, y, CUDA_R_16BF, false, nullptr),
          "GEMM");
  });
  cudaFree(x);
  cudaFree(w);
  cudaFree(y);
  return 2.0 * n * in * out / (ms * 1e-3);
}

int Main(int argc, char** argv) {
  std::string model_dir, batches_s = "1,8,64,256", contexts_s = "1024,8192",
                         prefill_s = "512,2048,8192";
  int32_t iters = 20, device = 0;
  FlagSet flags("cuda_bench",
                "The CUDA backend's decode and prefill speed against the GPU's limits.");
  flags.AddString("model", &model_dir, "Hugging Face folder (tools/make_random_model.py)", true);
  flags.AddString("batches", &batches_s, "decode batch sizes (default 1,8,64,256)");
  flags.AddString("contexts", &contexts_s, "decode context lengths (default 1024,8192)");
  flags.AddString("prefill", &prefill_s, "prefill prompt lengths (default 512,2048,8192)");
  flags.AddInt("iters", &iters, "timed runs per figure (default 20)");
  flags.AddInt("device", &device, "GPU index (default 0)");
  ParseOrExit(flags, argc, argv);
  auto batches_or = ParseIntList("batches", batches_s);
  auto contexts_or = ParseIntList("contexts", contexts_s);
  auto prefills_or = ParseIntList("prefill", prefill_s);
  Check(batches_or.status(), "cuda_bench");
  Check(contexts_or.status(), "cuda_bench");
  Check(prefills_or.status(), "cuda_bench");
  const std::vector<int32_t>&batches = *batches_or, &contexts = *contexts_or,
        &prefills = *prefills_or;

  auto text = ReadFileToString(model_dir + "/config.json");
  Check(text.status(), "config.json");
  auto config = ModelConfigFromHfJson(nlohmann::json::parse(*text), model_dir + "/config.json");
  Check(config.status(), "config");
  auto ckpt = SafetensorsCheckpoint::OpenDirectory(model_dir);
  Check(ckpt.status(), "checkpoint");
  auto weights = WeightsFromSafetensors(**ckpt, *config, model_dir);
  Check(weights.status(), "weights");
  const ModelConfig& c = *config;

  int32_t max_prefill = *std::max_element(prefills.begin(), prefills.end());
  int32_t max_batch = *std::max_element(batches.begin(), batches.end());
  int32_t max_ctx = *std::max_element(contexts.begin(), contexts.end());
  const int32_t ctx_blocks = (max_ctx + 16) / 16;  // the context and the new token
  CudaBackendOptions o;
  o.device = device;
  o.max_batched_tokens = std::max(max_prefill, max_batch);
  o.max_num_seqs = max_batch;
  o.num_kv_blocks = std::max(ctx_blocks + max_batch, (max_prefill + 15) / 16 + 1);
  auto backend = CudaBackend::Create(c, *weights, o);
  Check(backend.status(), "CUDA backend");
  CudaBackend& b = **backend;

  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  const double copy_bw = CopyBandwidth(iters);
  const double weight_bytes = [&] {
    // Every matrix is read once per step: embedding rows are negligible, the
    // LM head is read whole.
    const double h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ff = c.intermediate_size;
    return 2.0 * (c.num_layers * (h * (q + 2 * kv) + q * h + 3 * h * ff) + c.vocab_size * h);
  }();
  const double kv_bytes_per_pos = 2.0 * c.num_layers * c.kv_dim() * 2;
  std::printf("cuda_bench: %s\n", b.description().c_str());
  std::printf(
      "model %s: %d layers, hidden %d, heads %d/%d x %d, ff %d, vocab %d; %.2f GB of "
      "matrices read per step\n",
      model_dir.c_str(), c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
      c.intermediate_size, c.vocab_size, weight_bytes / 1e9);
  std::printf("device-to-device copy: %.0f GB/s (read + write), median of %d\n\n", copy_bw / 1e9,
              iters);

  // Decode.
  std::printf("%-6s %-8s %10s %12s %12s %10s\n", "batch", "context", "step ms", "tokens/s",
              "GB/s read", "of copy");
  std::vector<int32_t> shared(ctx_blocks);
  std::iota(shared.begin(), shared.end(), 0);
  for (int32_t ctx : contexts) {
    for (int32_t batch : batches) {
      std::vector<std::vector<int32_t>> tables(batch);
      std::vector<int32_t> token = {1};
      std::vector<DeviceSampling> sampling(batch);
      std::vector<SequenceStep> steps;
      std::vector<int32_t> history(1, 1);
      for (int32_t s = 0; s < batch; ++s) {
        tables[s].assign(shared.begin(), shared.begin() + ctx / 16);
        tables[s].push_back(ctx_blocks + s);  // the block its new token goes to
        sampling[s] = {SamplingOptions{}, history, 1, 0};
        steps.push_back({token, ctx, tables[s], LogitsMode::kLast, &sampling[s]});
      }
      StepResult r;
      const double ms = TimeMs(iters, [&] { Check(b.Forward(steps, &r), "decode step"); });
      const double bytes = weight_bytes + static_cast<double>(batch) * (ctx + 1) * kv_bytes_per_pos;
      std::printf("%-6d %-8d %10.3f %12.0f %12.0f %9.1f%%\n", batch, ctx, ms, batch / (ms * 1e-3),
                  bytes / (ms * 1e-3) / 1e9, 100.0 * bytes / (ms * 1e-3) / copy_bw);
    }
  }

  // Prefill.
  std::printf("\n%-8s %10s %12s %12s %14s %10s\n", "prompt", "ms", "tokens/s", "TFLOP/s",
              "GEMM TFLOP/s", "of GEMM");
  for (int32_t n : prefills) {
    std::vector<int32_t> ids(n);
    for (int32_t i = 0; i < n; ++i) ids[i] = (i * 7919) % c.vocab_size;
    std::vector<int32_t> table((n + 15) / 16);
    std::iota(table.begin(), table.end(), 0);
    const SequenceStep step{ids, 0, table, LogitsMode::kLast};
    StepResult r;
    const double ms = TimeMs(iters, [&] { Check(b.Forward({&step, 1}, &r), "prefill"); });
    const double h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), ff = c.intermediate_size;
    const double matmul =
        2.0 * n * c.num_layers * (h * (q + 2 * kv) + q * h + 3 * h * ff) + 2.0 * h * c.vocab_size;
    const double attention = 4.0 * c.num_layers * c.num_heads * c.head_dim * (n * (n + 1.0) / 2);
    const double flops = (matmul + attention) / (ms * 1e-3);
    const double gemm = GemmFlops(n, c.hidden_size, 2 * c.intermediate_size, iters);
    std::printf("%-8d %10.2f %12.0f %12.1f %14.1f %9.1f%%\n", n, ms, n / (ms * 1e-3), flops / 1e12,
                gemm / 1e12, 100.0 * flops / gemm);
  }
  std::printf(
      "\nconditions: %s, %d SMs, CUDA graphs for decode, bf16 weights and KV, greedy "
      "sampling on the GPU; host %s\n",
      prop.name, prop.multiProcessorCount, CpuName().c_str());
  return 0;
}

}  // namespace
}  // namespace tokenfab::bench

int main(int argc, char** argv) { return tokenfab::bench::Main(argc, argv); }
