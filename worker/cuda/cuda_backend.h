// The CUDA backend: the Llama-family forward pass on one NVIDIA GPU. Weights
// in bf16 (device_model.h), a paged bf16 KV cache in GPU memory with the CPU
// cache's layout, GEMMs through cuBLASLt, the other steps in this folder's
// kernels, and token choice on the GPU for sequences that want no logprobs.
//
// A step is enqueued on the backend's compute stream and awaited once, at
// its end (tokens or logits copied back, the cache written). Pure decode steps replay a CUDA
// graph captured per (batch-size bucket, context bucket), so a small batch
// costs one launch instead of ~10 per layer. KV import/export for
// disaggregated prefill uses a second stream.
//
// Not batch-invariant: cuBLASLt's algorithm (and so the rounding) may depend
// on the batch size, so tokens match the CPU engine to bf16 tolerance, not
// bit for bit.
//
// Called from one thread (the engine loop).
#ifndef TOKENFAB_WORKER_CUDA_CUDA_BACKEND_H_
#define TOKENFAB_WORKER_CUDA_CUDA_BACKEND_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "worker/cuda/device_buffer.h"
#include "worker/cuda/device_model.h"
#include "worker/cuda/gemm.h"
#include "worker/cuda/kernels.h"
#include "worker/engine/backend.h"
#include "worker/engine/cuda_module.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab::cuda {

using ::tokenfab::CudaBackendOptions;

class CudaBackend : public Backend {
 public:
  // `config` and `weights` must outlive the backend only until Create
  // returns (the weights are copied to the GPU).
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const ModelConfig& config,
                                                             const ModelWeights& weights,
                                                             const CudaBackendOptions& options);
  ~CudaBackend() override;

  absl::Status Forward(std::span<const SequenceStep> batch, StepResult* result,
                       const LayerDone& after_layer = nullptr) override;
  absl::Status ReadKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                      int32_t count, std::span<uint8_t> dst) const override;
  absl::Status WriteKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                       int32_t count, std::span<const uint8_t> src) override;
  KvLayout kv_layout() const override {
    return {config_.num_layers, config_.num_kv_heads, config_.head_dim, KvDType::kBF16};
  }
  const ModelConfig& config() const override { return config_; }
  int32_t num_kv_blocks() const override { return num_blocks_; }
  std::string_view name() const override { return "cuda"; }
  bool samples_on_device() const override { return true; }

  // KV export and import in device memory, for the nccl transport (no host
  // copy). PackKv gathers `slice` into a new device buffer (cudaMallocAsync)
  // on the KV stream and records `ready` there when it is packed; the next
  // step waits for it too, so the slice's blocks cannot be rewritten first.
  // The caller frees the buffer with cudaFreeAsync on a stream that waited
  // for `ready`. UnpackKv scatters `count` positions of `layer` packed in
  // device memory at `src` (complete before the call) into the blocks and
  // returns when they are written. Arguments are checked as ReadKv's.
  absl::StatusOr<void*> PackKv(const KvSlice& slice, cudaEvent_t ready) const;
  absl::Status UnpackKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                        int32_t count, const void* src);
  int32_t device() const { return options_.device; }

  // "NVIDIA H100 80GB HBM3 (cuda:0, sm_90, 132 SMs): weights 2.5 GiB, KV 60.1 GiB"
  const std::string& description() const { return description_; }
  int32_t graphs_captured() const { return static_cast<int32_t>(graphs_.size()); }

 private:
  struct StepPlan;
  CudaBackend(const ModelConfig& config, const CudaBackendOptions& options);
  absl::Status Init(const ModelWeights& weights);
  absl::Status Upload(const StepPlan& plan);
  // Enqueues the forward pass of an uploaded plan (embedding to logits of
  // the first `plan.logit_rows` rows); `after_layer` forces a sync per layer.
  absl::Status Enqueue(const StepPlan& plan, const LayerDone& after_layer);
  absl::Status RunLayer(const StepPlan& plan, int32_t layer);
  absl::Status ReplayDecodeGraph(const StepPlan& plan);
  KvLayer Layer(int32_t layer) const;
  // The start of every KV export and import: checks the arguments (as
  // CheckKvRange, for `bytes` of packed KV) and puts the cache slots of
  // positions [first, first + count) in kv_slots_d_ (on kv_stream_).
  absl::Status PrepareKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                         int32_t count, size_t bytes) const;

  ModelConfig config_;
  CudaBackendOptions options_;
  std::string description_;
  int32_t sm_count_ = 0;
  int32_t num_blocks_ = 0;
  int32_t max_tokens_ = 0;  // activation rows
  int32_t max_rows_ = 0;    // logits and sampling rows at once
  int32_t max_table_entries_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaStream_t kv_stream_ = nullptr;
  cudaEvent_t packed_ = nullptr;  // the last PackKv's gather; each step waits for it
  std::unique_ptr<Gemm> gemm_;
  DeviceModel model_;

  DeviceBuffer<bf16> kv_;  // [layer][K|V][block][head][slot][dim], one spare block
  DeviceBuffer<float> x_;
  DeviceBuffer<bf16> xn_, qkv_, attn_, delta_, gate_up_, act_;
  DeviceBuffer<float> logits_, decode_scratch_, sample_work_;
  DeviceBuffer<int32_t> sample_counts_, sampled_;
  // Per-step arguments: pinned on the host, mirrored on the device.
  PinnedBuffer<int32_t> args_h_;
  DeviceBuffer<int32_t> args_d_;
  PinnedBuffer<PrefillTile> tiles_h_;
  DeviceBuffer<PrefillTile> tiles_d_;
  PinnedBuffer<SamplingRow> rows_h_;
  DeviceBuffer<SamplingRow> rows_d_;
  PinnedBuffer<int32_t> history_h_;
  DeviceBuffer<int32_t> history_d_;
  PinnedBuffer<int32_t> sampled_h_;
  PinnedBuffer<float> logits_h_;
  // Per-step host bookkeeping, kept so a step allocates nothing.
  std::vector<const DeviceSampling*> row_sampling_;  // per logits row; null: return logits
  std::vector<int32_t> sampled_rows_, logits_rows_;  // of the current logits chunk
  // KV import/export staging.
  mutable std::vector<int32_t> kv_slots_h_;
  mutable DeviceBuffer<int32_t> kv_slots_d_;
  mutable DeviceBuffer<bf16> kv_packed_d_;

  bool prefill_kernel_ = false;  // the tensor-core prefill fits this GPU and head_dim
  absl::flat_hash_map<std::pair<int32_t, int32_t>, cudaGraphExec_t> graphs_;
  absl::flat_hash_set<std::pair<int32_t, int32_t>> failed_graphs_;  // run eagerly instead
};

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_CUDA_BACKEND_H_
