#include "worker/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/cuda/cuda_status.h"

namespace tokenfab::cuda {
namespace {

// Decode batches are padded up to one of these sizes for graph replay.
constexpr int32_t kGraphBatches[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
constexpr int32_t kMinGraphContext = 1024;
constexpr int32_t kPrefillTile = 64;
// Cache slots (block * 16 + slot, the spare block included) stay int32.
constexpr int32_t kMaxBlocks = INT32_MAX / kKvBlock - 2;

int32_t CeilDiv(int64_t a, int64_t b) { return static_cast<int32_t>((a + b - 1) / b); }

}  // namespace

// One step's shape, written into args_h_ at fixed offsets so that the
// device copy (and a graph that reads it) never moves.
struct CudaBackend::StepPlan {
  int32_t n = 0;            // activation rows
  int32_t decode_rows = 0;  // rows the decode kernel computes
  int32_t tiles = 0;        // prefill tiles
  int32_t logit_rows = 0;
  int32_t max_context = 0;
  int32_t table_entries = 0;
};

CudaBackend::CudaBackend(const ModelConfig& config, const CudaBackendOptions& options)
    : config_(config), options_(options) {}

CudaBackend::~CudaBackend() {
  cudaSetDevice(options_.device);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
  if (packed_ != nullptr) cudaEventDestroy(packed_);
  if (kv_stream_ != nullptr) cudaStreamDestroy(kv_stream_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(
    const ModelConfig& config, const ModelWeights& weights, const CudaBackendOptions& options) {
  if (options.max_batched_tokens < 1 || options.max_num_seqs < 1) {
    return absl::InvalidArgumentError("the CUDA backend needs positive batch limits");
  }
  if (options.gpu_memory_fraction <= 0 || options.gpu_memory_fraction > 1) {
    return absl::InvalidArgumentError(
        StrCat("gpu memory fraction must be in (0, 1], got ", options.gpu_memory_fraction));
  }
  if (config.head_dim % 8 != 0 || config.head_dim > 256) {
    return absl::InvalidArgumentError(
        StrCat("the CUDA backend needs head_dim a multiple of 8 up to 256, got ", config.head_dim));
  }
  int count = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    return absl::UnavailableError(StrCat("no usable GPU (", cudaGetErrorName(e), ": ",
                                         cudaGetErrorString(e),
                                         "); is the NVIDIA driver installed and a GPU visible?"));
  }
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(
        StrCat("cuda:", options.device, " does not exist: ", count, " GPU(s) visible"));
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(config, options));
  RETURN_IF_ERROR(b->Init(weights));
  return b;
}

absl::Status CudaBackend::Init(const ModelWeights& weights) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  cudaDeviceProp prop{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, options_.device));
  if (prop.major < 8) {
    return absl::FailedPreconditionError(StrCat(prop.name, " is sm_", prop.major, prop.minor,
                                                "; the CUDA backend needs sm_80 or newer (bf16)"));
  }
  sm_count_ = prop.multiProcessorCount;
  if (const cudaError_t e =
          PrepareDecodeAttention(config_.num_heads, config_.num_kv_heads, config_.head_dim);
      e != cudaSuccess) {
    return absl::InvalidArgumentError(StrCat(
        "the CUDA backend cannot run ", config_.num_heads, " query heads on ", config_.num_kv_heads,
        " KV heads of ", config_.head_dim,
        " (at most 32 query heads per KV head, head_dim up to 256): ", cudaGetErrorString(e)));
  }
  prefill_kernel_ = PrefillAttentionSupports(config_.head_dim);
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&kv_stream_, cudaStreamNonBlocking));
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&packed_, cudaEventDisableTiming));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(packed_, kv_stream_));
  ASSIGN_OR_RETURN(gemm_, Gemm::Create());
  ASSIGN_OR_RETURN(model_, DeviceModel::Upload(config_, weights, stream_));

  const ModelConfig& c = config_;
  max_tokens_ = options_.max_batched_tokens;
  max_rows_ = std::min(std::max(options_.max_num_seqs, 64), max_tokens_);
  const int32_t blocks_per_seq = CeilDiv(c.context_length, kKvBlock);
  max_table_entries_ = static_cast<int32_t>(
      std::min<int64_t>(int64_t{options_.max_num_seqs} * blocks_per_seq + max_tokens_, 1 << 26));
  const size_t T = max_tokens_, hidden = c.hidden_size;
  ASSIGN_OR_RETURN(x_, DeviceBuffer<float>::Allocate(T * hidden, "residual"));
  ASSIGN_OR_RETURN(xn_, DeviceBuffer<bf16>::Allocate(T * hidden, "normed"));
  ASSIGN_OR_RETURN(qkv_, DeviceBuffer<bf16>::Allocate(T * (c.q_dim() + 2 * c.kv_dim()), "qkv"));
  ASSIGN_OR_RETURN(attn_, DeviceBuffer<bf16>::Allocate(T * c.q_dim(), "attention"));
  ASSIGN_OR_RETURN(delta_, DeviceBuffer<bf16>::Allocate(T * hidden, "delta"));
  ASSIGN_OR_RETURN(gate_up_, DeviceBuffer<bf16>::Allocate(T * 2 * c.intermediate_size, "gate_up"));
  ASSIGN_OR_RETURN(act_, DeviceBuffer<bf16>::Allocate(T * c.intermediate_size, "mlp"));
  // The slots of a whole context, so KV export and import never grow it: a
  // cudaFree then would wait for every kernel on the GPU, NCCL's included.
  ASSIGN_OR_RETURN(kv_slots_d_, DeviceBuffer<int32_t>::Allocate(
                                    std::max(c.context_length, max_tokens_), "KV slots"));
  const size_t rows_vocab = static_cast<size_t>(max_rows_) * c.vocab_size;
  ASSIGN_OR_RETURN(logits_, DeviceBuffer<float>::Allocate(rows_vocab, "logits"));
  ASSIGN_OR_RETURN(sample_work_, DeviceBuffer<float>::Allocate(rows_vocab, "sampling"));
  ASSIGN_OR_RETURN(sample_counts_, DeviceBuffer<int32_t>::Allocate(rows_vocab, "sampling counts"));
  CUDA_RETURN_IF_ERROR(cudaMemset(sample_counts_.get(), 0, sample_counts_.bytes()));
  ASSIGN_OR_RETURN(sampled_, DeviceBuffer<int32_t>::Allocate(max_rows_, "sampled"));
  ASSIGN_OR_RETURN(sampled_h_, PinnedBuffer<int32_t>::Allocate(max_rows_, "sampled"));
  ASSIGN_OR_RETURN(rows_h_, PinnedBuffer<SamplingRow>::Allocate(max_rows_, "sampling rows"));
  ASSIGN_OR_RETURN(rows_d_, DeviceBuffer<SamplingRow>::Allocate(max_rows_, "sampling rows"));
  const int64_t scratch =
      DecodeScratchFloats(max_tokens_ + 2 * sm_count_, c.num_heads, c.head_dim, 1);
  ASSIGN_OR_RETURN(decode_scratch_, DeviceBuffer<float>::Allocate(scratch, "decode scratch"));
  const size_t args = 6 * T + max_table_entries_ + 1;  // + the spare block's table
  ASSIGN_OR_RETURN(args_h_, PinnedBuffer<int32_t>::Allocate(args, "step arguments"));
  ASSIGN_OR_RETURN(args_d_, DeviceBuffer<int32_t>::Allocate(args, "step arguments"));
  const size_t tiles = T / 2 + options_.max_num_seqs + 1;
  ASSIGN_OR_RETURN(tiles_h_, PinnedBuffer<PrefillTile>::Allocate(tiles, "prefill tiles"));
  ASSIGN_OR_RETURN(tiles_d_, DeviceBuffer<PrefillTile>::Allocate(tiles, "prefill tiles"));

  // The KV cache takes what is left, with one spare block that padded
  // graph rows write into.
  const uint64_t block_bytes = static_cast<uint64_t>(kv_layout().PositionBytes()) * kKvBlock *
                               static_cast<uint64_t>(c.num_layers);
  if (options_.num_kv_blocks > 0) {
    num_blocks_ = std::min(options_.num_kv_blocks, kMaxBlocks);
  } else if (options_.kv_cache_mb > 0) {
    num_blocks_ = static_cast<int32_t>(std::min<uint64_t>(
        (static_cast<uint64_t>(options_.kv_cache_mb) << 20) / block_bytes, kMaxBlocks));
  } else {
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
    const double budget = static_cast<double>(total_bytes) * options_.gpu_memory_fraction -
                          static_cast<double>(total_bytes - free_bytes) - (512.0 * (1 << 20));
    num_blocks_ =
        budget > 0 ? static_cast<int32_t>(std::min<double>(budget / block_bytes, kMaxBlocks)) : 0;
  }
  if (num_blocks_ < 1) {
    return absl::ResourceExhaustedError(StrCat("no GPU memory is left for the KV cache after ",
                                               model_.bytes >> 20, " MiB of weights"));
  }
  ASSIGN_OR_RETURN(
      kv_, DeviceBuffer<bf16>::Allocate(
               (static_cast<size_t>(num_blocks_) + 1) * block_bytes / sizeof(bf16), "KV cache"));
  CUDA_RETURN_IF_ERROR(cudaMemset(kv_.get(), 0, kv_.bytes()));
  args_h_.get()[6 * T + max_table_entries_] = num_blocks_;  // the spare block's table
  CUDA_RETURN_IF_ERROR(cudaMemcpy(args_d_.get() + 6 * T + max_table_entries_,
                                  args_h_.get() + 6 * T + max_table_entries_, sizeof(int32_t),
                                  cudaMemcpyHostToDevice));
  description_ =
      StrCat(prop.name, " (cuda:", options_.device, ", sm_", prop.major, prop.minor, ", ",
             sm_count_, " SMs): weights ", Fixed(model_.bytes / 1073741824.0, 2), " GiB, KV cache ",
             num_blocks_, " blocks (", Fixed(kv_.bytes() / 1073741824.0, 2), " GiB)");
  return absl::OkStatus();
}

KvLayer CudaBackend::Layer(int32_t layer) const {
  const int64_t per_kv =
      static_cast<int64_t>(num_blocks_ + 1) * config_.num_kv_heads * kKvBlock * config_.head_dim;
  bf16* base = kv_.get() + 2 * per_kv * layer;
  return {base, base + per_kv, config_.num_kv_heads, config_.head_dim};
}

absl::Status CudaBackend::Upload(const StepPlan& p) {
  const size_t T = max_tokens_;
  // The used head of each of the six per-token arrays, then the tables
  // (the spare block's table, at the very end, is copied once in Init).
  const int32_t used[6] = {p.n, p.n, p.n, p.n, p.decode_rows, p.logit_rows};
  for (size_t i = 0; i < 6; ++i) {
    if (used[i] == 0) continue;
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(args_d_.get() + i * T, args_h_.get() + i * T,
                                         sizeof(int32_t) * used[i], cudaMemcpyHostToDevice,
                                         stream_));
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(args_d_.get() + 6 * T, args_h_.get() + 6 * T,
                                       sizeof(int32_t) * p.table_entries, cudaMemcpyHostToDevice,
                                       stream_));
  if (p.tiles > 0) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(tiles_d_.get(), tiles_h_.get(),
                                         sizeof(PrefillTile) * p.tiles, cudaMemcpyHostToDevice,
                                         stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::RunLayer(const StepPlan& p, int32_t layer) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = model_.layers[layer];
  const int32_t T = max_tokens_;
  const int32_t* args = args_d_.get();
  const int64_t qkv_width = c.q_dim() + 2 * c.kv_dim();
  // The residual add of the previous layer's MLP (none before layer 0).
  CUDA_RETURN_IF_ERROR(LaunchResidualRmsNorm(x_.get(), layer == 0 ? nullptr : delta_.get(),
                                             w.attn_norm.get(), p.n, c.hidden_size, c.rms_norm_eps,
                                             xn_.get(), stream_));
  RETURN_IF_ERROR(gemm_->Run(xn_.get(), w.wqkv.get(), p.n, c.hidden_size, qkv_width, qkv_.get(),
                             CUDA_R_16BF, false, stream_));
  RopeArgs rope;
  rope.qkv = qkv_.get();
  rope.row_stride = qkv_width;
  rope.bias = w.qkv_bias.get();
  rope.positions = args + T;
  rope.inv_freq = model_.inv_freq.get();
  rope.n = p.n;
  rope.num_heads = c.num_heads;
  rope.num_kv_heads = c.num_kv_heads;
  rope.head_dim = c.head_dim;
  rope.interleaved = c.rope_style == RopeStyle::kInterleaved;
  CUDA_RETURN_IF_ERROR(LaunchRope(rope, stream_));
  const KvLayer kv = Layer(layer);
  CUDA_RETURN_IF_ERROR(LaunchKvWrite(qkv_.get(), qkv_width, c.q_dim(), c.q_dim() + c.kv_dim(),
                                     args + 2 * T, p.n, kv, stream_));

  AttentionArgs at;
  at.q = qkv_.get();
  at.q_stride = qkv_width;
  at.out = attn_.get();
  at.k_cache = kv.k;
  at.v_cache = kv.v;
  at.num_heads = c.num_heads;
  at.num_kv_heads = c.num_kv_heads;
  at.head_dim = c.head_dim;
  at.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  at.block_tables = args + 6 * T;
  at.table_offset = args + 3 * T;
  at.positions = args + T;
  if (p.decode_rows > 0) {
    at.tokens = args + 4 * T;
    at.n = p.decode_rows;
    const int32_t splits = DecodeSplits(p.decode_rows, c.num_kv_heads, p.max_context, sm_count_);
    CUDA_RETURN_IF_ERROR(
        LaunchDecodeAttention(at, p.max_context, splits, decode_scratch_.get(), stream_));
  }
  if (p.tiles > 0) {
    at.tokens = nullptr;
    at.n = 0;
    CUDA_RETURN_IF_ERROR(LaunchPrefillAttention(at, tiles_d_.get(), p.tiles, stream_));
  }
  RETURN_IF_ERROR(gemm_->Run(attn_.get(), w.wo.get(), p.n, c.q_dim(), c.hidden_size, delta_.get(),
                             CUDA_R_16BF, false, stream_));
  CUDA_RETURN_IF_ERROR(LaunchResidualRmsNorm(x_.get(), delta_.get(), w.ffn_norm.get(), p.n,
                                             c.hidden_size, c.rms_norm_eps, xn_.get(), stream_));
  RETURN_IF_ERROR(gemm_->Run(xn_.get(), w.w_gate_up.get(), p.n, c.hidden_size,
                             2 * c.intermediate_size, gate_up_.get(), CUDA_R_16BF, false, stream_));
  CUDA_RETURN_IF_ERROR(
      LaunchSiluMul(gate_up_.get(), p.n, c.intermediate_size, act_.get(), stream_));
  RETURN_IF_ERROR(gemm_->Run(act_.get(), w.w_down.get(), p.n, c.intermediate_size, c.hidden_size,
                             delta_.get(), CUDA_R_16BF, false, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::Enqueue(const StepPlan& p, const LayerDone& after_layer) {
  const ModelConfig& c = config_;
  const int32_t T = max_tokens_;
  CUDA_RETURN_IF_ERROR(LaunchEmbedding(args_d_.get(), p.n, model_.embedding.get(), c.hidden_size,
                                       x_.get(), stream_));
  for (int32_t layer = 0; layer < c.num_layers; ++layer) {
    RETURN_IF_ERROR(RunLayer(p, layer));
    if (after_layer) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      after_layer(layer);
    }
  }
  // The last MLP's residual add, then the final norm of the logits rows
  // only (first chunk; Forward runs further chunks itself).
  CUDA_RETURN_IF_ERROR(LaunchResidualRmsNorm(x_.get(), delta_.get(), model_.output_norm.get(), p.n,
                                             c.hidden_size, c.rms_norm_eps, xn_.get(), stream_));
  const int32_t rows = std::min(p.logit_rows, max_rows_);
  CUDA_RETURN_IF_ERROR(LaunchRmsNormRows(x_.get(), args_d_.get() + 5 * T, rows,
                                         model_.output_norm.get(), c.hidden_size, c.rms_norm_eps,
                                         xn_.get(), stream_));
  RETURN_IF_ERROR(gemm_->Run(xn_.get(), model_.lm_head, rows, c.hidden_size, c.vocab_size,
                             logits_.get(), CUDA_R_32F, false, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::ReplayDecodeGraph(const StepPlan& p) {
  const std::pair<int32_t, int32_t> key{p.n, p.max_context};
  if (failed_graphs_.contains(key)) return Enqueue(p, nullptr);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    cudaGraph_t graph = nullptr;
    CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    absl::Status captured = Enqueue(p, nullptr);
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (captured.ok()) captured = CudaStatus(ended, "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    if (captured.ok())
      captured = CudaStatus(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (!captured.ok()) {
      // This shape runs eagerly from now on; the step itself still runs.
      std::fprintf(stderr, "tokenfab cuda: no CUDA graph for batch %d, context %d (%s); eager\n",
                   p.n, p.max_context, std::string(captured.message()).c_str());
      cudaGetLastError();  // clear a sticky launch error of the capture
      failed_graphs_.insert(key);
      return Enqueue(p, nullptr);
    }
    it = graphs_.emplace(key, exec).first;
  }
  CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second, stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::Forward(std::span<const SequenceStep> batch, StepResult* result,
                                  const LayerDone& after_layer) {
  // The engine thread is not the one that created the backend, and the
  // current device is per thread.
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  RETURN_IF_ERROR(ValidateBatch(batch, config_, num_blocks_));
  // Blocks a KV export is still packing are not rewritten before it is done.
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, packed_, 0));
  const ModelConfig& c = config_;
  const int32_t T = max_tokens_;
  int64_t total = 0;
  for (const SequenceStep& s : batch) total += static_cast<int64_t>(s.tokens.size());
  if (total > T) {
    return absl::InvalidArgumentError(StrCat(
        "a step of ", total, " tokens exceeds the CUDA backend's ", T, " (max batched tokens)"));
  }
  int32_t* tokens = args_h_.get();
  int32_t* positions = tokens + T;
  int32_t* slots = tokens + 2 * T;
  int32_t* table_offset = tokens + 3 * T;
  int32_t* decode_rows = tokens + 4 * T;
  int32_t* logit_rows = tokens + 5 * T;
  int32_t* tables = tokens + 6 * T;
  StepPlan p;
  std::vector<const DeviceSampling*>& row_sampling = row_sampling_;
  row_sampling.clear();
  result->first_row.assign(batch.size(), -1);
  const bool prefill_kernel = prefill_kernel_;
  int32_t t = 0;
  for (size_t si = 0; si < batch.size(); ++si) {
    const SequenceStep& s = batch[si];
    const int32_t len = static_cast<int32_t>(s.tokens.size());
    const int32_t end = s.start_position + len;
    const int32_t need = CeilDiv(end, kKvBlock);
    if (p.table_entries + need > max_table_entries_) {
      return absl::InvalidArgumentError("the step's block tables exceed the CUDA backend's buffer");
    }
    std::memcpy(tables + p.table_entries, s.block_table.data(), sizeof(int32_t) * need);
    for (int32_t i = 0; i < len; ++i) {
      const int32_t pos = s.start_position + i;
      tokens[t + i] = s.tokens[i];
      positions[t + i] = pos;
      slots[t + i] = s.block_table[pos / kKvBlock] * kKvBlock + pos % kKvBlock;
      table_offset[t + i] = p.table_entries;
    }
    // Prompt positions through the prefill kernel and generated ones through
    // the decode kernel, as one worker computing the request uninterrupted
    // would (the kernels round differently); without prompt_end, a single
    // token is a decode step.
    int32_t prompt_rows = 0;
    if (prefill_kernel) {
      prompt_rows = s.prompt_end >= 0 ? std::clamp(s.prompt_end - s.start_position, 0, len)
                                      : (len == 1 ? 0 : len);
    }
    for (int32_t i = 0; i < prompt_rows; i += kPrefillTile) {
      tiles_h_.get()[p.tiles++] = {t + i, std::min(kPrefillTile, prompt_rows - i),
                                   s.start_position + i, p.table_entries};
    }
    for (int32_t i = prompt_rows; i < len; ++i) decode_rows[p.decode_rows++] = t + i;
    if (s.logits != LogitsMode::kNone) {
      result->first_row[si] = p.logit_rows;
      const int32_t from = s.logits == LogitsMode::kAll ? 0 : len - 1;
      for (int32_t i = from; i < len; ++i) {
        logit_rows[p.logit_rows++] = t + i;
        row_sampling.push_back(s.logits == LogitsMode::kLast ? s.sampling : nullptr);
      }
    }
    p.table_entries += need;
    p.max_context = std::max(p.max_context, end);
    t += len;
  }
  p.n = t;

  const bool graph = options_.cuda_graphs && !after_layer && p.tiles == 0 && p.decode_rows == p.n &&
                     p.logit_rows == p.n && p.n <= max_rows_ &&
                     p.n <= kGraphBatches[std::size(kGraphBatches) - 1];
  const int32_t real_rows = p.logit_rows;
  if (graph) {
    // Pad to the bucket with rows that read and write only the spare block.
    int32_t bucket = p.n;
    for (int32_t b : kGraphBatches) {
      if (b >= p.n) {
        bucket = std::min(b, max_rows_);
        break;
      }
    }
    for (int32_t r = p.n; r < bucket; ++r) {
      tokens[r] = 0;
      positions[r] = 0;
      slots[r] = num_blocks_ * kKvBlock;
      table_offset[r] = max_table_entries_;
      decode_rows[r] = r;
      logit_rows[r] = r;
    }
    p.n = p.decode_rows = p.logit_rows = bucket;
    int32_t ctx = kMinGraphContext;
    while (ctx < p.max_context) ctx *= 2;
    p.max_context = std::min(ctx, std::max(c.context_length, p.max_context));
  }
  RETURN_IF_ERROR(Upload(p));
  if (graph) {
    RETURN_IF_ERROR(ReplayDecodeGraph(p));
  } else {
    RETURN_IF_ERROR(Enqueue(p, after_layer));
  }

  // Logits rows in chunks of max_rows_ (the first is already computed):
  // sampled rows come back as tokens, the others as logits.
  result->vocab_size = c.vocab_size;
  const bool any_sampled =
      std::any_of(row_sampling.begin(), row_sampling.end(), [](auto* s) { return s != nullptr; });
  const bool any_logits =
      std::any_of(row_sampling.begin(), row_sampling.end(), [](auto* s) { return s == nullptr; });
  result->tokens.assign(any_sampled ? real_rows : 0, -1);
  result->logits.resize(any_logits ? static_cast<size_t>(real_rows) * c.vocab_size : 0);
  const size_t row_bytes = sizeof(float) * c.vocab_size;
  for (int32_t r0 = 0; r0 < real_rows; r0 += max_rows_) {
    const int32_t rows = std::min(max_rows_, real_rows - r0);
    if (r0 > 0) {
      CUDA_RETURN_IF_ERROR(LaunchRmsNormRows(x_.get(), args_d_.get() + 5 * T + r0, rows,
                                             model_.output_norm.get(), c.hidden_size,
                                             c.rms_norm_eps, xn_.get(), stream_));
      RETURN_IF_ERROR(gemm_->Run(xn_.get(), model_.lm_head, rows, c.hidden_size, c.vocab_size,
                                 logits_.get(), CUDA_R_32F, false, stream_));
    }
    int32_t n_sampled = 0;
    size_t history = 0;
    for (int32_t r = 0; r < rows; ++r) {
      if (const DeviceSampling* s = row_sampling[r0 + r]; s != nullptr)
        history += s->history.size();
    }
    if (history > history_h_.size()) {
      RETURN_IF_ERROR(history_h_.Reserve(history * 2, "sampling history"));
      RETURN_IF_ERROR(history_d_.Reserve(history * 2, "sampling history"));
    }
    int32_t history_used = 0;
    std::vector<int32_t>& sampled_rows = sampled_rows_;
    std::vector<int32_t>& logits_rows = logits_rows_;
    sampled_rows.clear();
    logits_rows.clear();
    for (int32_t r = 0; r < rows; ++r) {
      if (row_sampling[r0 + r] == nullptr) logits_rows.push_back(r);
    }
    // Logits come back through pinned memory: the whole chunk in one copy
    // when every row wants them, else row by row.
    if (!logits_rows.empty()) {
      RETURN_IF_ERROR(logits_h_.Reserve(static_cast<size_t>(max_rows_) * c.vocab_size, "logits"));
      if (static_cast<int32_t>(logits_rows.size()) == rows) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits_h_.get(), logits_.get(), row_bytes * rows,
                                             cudaMemcpyDeviceToHost, stream_));
      } else {
        for (int32_t r : logits_rows) {
          const size_t at = static_cast<size_t>(r) * c.vocab_size;
          CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits_h_.get() + at, logits_.get() + at, row_bytes,
                                               cudaMemcpyDeviceToHost, stream_));
        }
      }
    }
    for (int32_t r = 0; r < rows; ++r) {
      const DeviceSampling* s = row_sampling[r0 + r];
      if (s == nullptr) continue;
      SamplingRow& row = rows_h_.get()[n_sampled++];
      row = {};
      row.logits_row = r;
      row.temperature = s->options.temperature;
      row.top_k = s->options.top_k;
      row.top_p = s->options.top_p;
      row.min_p = s->options.min_p;
      row.repetition_penalty = s->options.repetition_penalty;
      row.presence_penalty = s->options.presence_penalty;
      row.frequency_penalty = s->options.frequency_penalty;
      row.seed = s->options.seed;
      row.draw = s->draw;
      row.history_offset = history_used;
      row.history_len = static_cast<int32_t>(s->history.size());
      row.prompt_len = s->prompt_len;
      std::memcpy(history_h_.get() + history_used, s->history.data(),
                  sizeof(int32_t) * s->history.size());
      history_used += row.history_len;
      sampled_rows.push_back(r0 + r);
    }
    if (n_sampled > 0) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(rows_d_.get(), rows_h_.get(),
                                           sizeof(SamplingRow) * n_sampled, cudaMemcpyHostToDevice,
                                           stream_));
      if (history_used > 0) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(history_d_.get(), history_h_.get(),
                                             sizeof(int32_t) * history_used, cudaMemcpyHostToDevice,
                                             stream_));
      }
      CUDA_RETURN_IF_ERROR(LaunchSample(logits_.get(), c.vocab_size, rows_d_.get(), n_sampled,
                                        history_d_.get(), sample_work_.get(), sample_counts_.get(),
                                        sampled_.get(), stream_));
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(sampled_h_.get(), sampled_.get(),
                                           sizeof(int32_t) * n_sampled, cudaMemcpyDeviceToHost,
                                           stream_));
    }
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    for (int32_t i = 0; i < n_sampled; ++i) result->tokens[sampled_rows[i]] = sampled_h_.get()[i];
    for (int32_t r : logits_rows) {
      std::memcpy(result->logits.data() + static_cast<size_t>(r0 + r) * c.vocab_size,
                  logits_h_.get() + static_cast<size_t>(r) * c.vocab_size, row_bytes);
    }
  }
  // A step without logits (a prefill chunk) still ends here: the next step
  // rewrites the pinned arguments this one's copies read, and KV import and
  // export on the other stream must see this step's cache writes.
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::PrepareKv(int32_t layer, std::span<const int32_t> block_table,
                                    int32_t first, int32_t count, size_t bytes) const {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  RETURN_IF_ERROR(
      CheckKvRange(config_, kv_layout(), num_blocks_, layer, block_table, first, count, bytes));
  kv_slots_h_.resize(count);
  for (int32_t i = 0; i < count; ++i) {
    const int32_t pos = first + i;
    kv_slots_h_[i] = block_table[pos / kKvBlock] * kKvBlock + pos % kKvBlock;
  }
  RETURN_IF_ERROR(kv_slots_d_.Reserve(count, "KV slots"));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(kv_slots_d_.get(), kv_slots_h_.data(),
                                       sizeof(int32_t) * count, cudaMemcpyHostToDevice,
                                       kv_stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::ReadKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                                 int32_t count, std::span<uint8_t> dst) const {
  RETURN_IF_ERROR(PrepareKv(layer, block_table, first, count, dst.size()));
  RETURN_IF_ERROR(kv_packed_d_.Reserve(dst.size() / sizeof(bf16), "KV staging"));
  CUDA_RETURN_IF_ERROR(
      LaunchKvGather(Layer(layer), kv_slots_d_.get(), count, kv_packed_d_.get(), kv_stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.data(), kv_packed_d_.get(), dst.size(),
                                       cudaMemcpyDeviceToHost, kv_stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(kv_stream_));
  return absl::OkStatus();
}

absl::Status CudaBackend::WriteKv(int32_t layer, std::span<const int32_t> block_table,
                                  int32_t first, int32_t count, std::span<const uint8_t> src) {
  RETURN_IF_ERROR(PrepareKv(layer, block_table, first, count, src.size()));
  RETURN_IF_ERROR(kv_packed_d_.Reserve(src.size() / sizeof(bf16), "KV staging"));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(kv_packed_d_.get(), src.data(), src.size(),
                                       cudaMemcpyHostToDevice, kv_stream_));
  CUDA_RETURN_IF_ERROR(
      LaunchKvScatter(kv_packed_d_.get(), kv_slots_d_.get(), count, Layer(layer), kv_stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(kv_stream_));
  return absl::OkStatus();
}

absl::StatusOr<void*> CudaBackend::PackKv(const KvSlice& slice, cudaEvent_t ready) const {
  const size_t bytes = static_cast<size_t>(kv_layout().PositionBytes()) * slice.count;
  RETURN_IF_ERROR(
      PrepareKv(slice.layer, slice.block_table, slice.first_position, slice.count, bytes));
  void* packed = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMallocAsync(&packed, bytes, kv_stream_));
  if (cudaError_t e = LaunchKvGather(Layer(slice.layer), kv_slots_d_.get(), slice.count,
                                     static_cast<bf16*>(packed), kv_stream_);
      e != cudaSuccess) {
    cudaFreeAsync(packed, kv_stream_);
    return CudaStatus(e, "LaunchKvGather");
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(ready, kv_stream_));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(packed_, kv_stream_));
  return packed;
}

absl::Status CudaBackend::UnpackKv(int32_t layer, std::span<const int32_t> block_table,
                                   int32_t first, int32_t count, const void* src) {
  RETURN_IF_ERROR(PrepareKv(layer, block_table, first, count,
                            static_cast<size_t>(kv_layout().PositionBytes()) * count));
  CUDA_RETURN_IF_ERROR(LaunchKvScatter(static_cast<const bf16*>(src), kv_slots_d_.get(), count,
                                       Layer(layer), kv_stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(kv_stream_));
  return absl::OkStatus();
}

}  // namespace tokenfab::cuda
