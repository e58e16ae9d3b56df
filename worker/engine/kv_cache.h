// The paged KV cache of one backend: for every layer, `num_blocks` blocks of
// `block_size` token slots of keys and values (layout in kernels/attention.h).
// Memory is reserved at creation and becomes resident as blocks are first
// written, so a large --kv-cache-mb costs only what the load uses.
// Which blocks belong to which sequence is decided outside (block tables);
// the cache only stores. Written and read by the engine thread during a step.
#ifndef TOKENFAB_WORKER_ENGINE_KV_CACHE_H_
#define TOKENFAB_WORKER_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/kernels/attention.h"
#include "worker/model/model_config.h"

namespace tokenfab {

// Tokens per KV block, everywhere in tokenfab (also the prefix-hash unit).
inline constexpr int32_t kKvBlockSize = 16;

// The shape of one position's keys and values in every layer; two workers
// can exchange KV only when their layouts are equal.
struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  KvDType dtype = KvDType::kF16;

  int32_t ElementBytes() const { return dtype == KvDType::kF32 ? 4 : 2; }
  // Bytes of K and V of one position in one layer.
  int64_t PositionBytes() const { return 2ll * num_kv_heads * head_dim * ElementBytes(); }
  bool operator==(const KvLayout&) const = default;
};

struct KvCacheOptions {
  int32_t num_blocks = 0;
  KvDType dtype = KvDType::kF16;
};

class KvCache {
 public:
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const ModelConfig& config,
                                                         const KvCacheOptions& options);

  // Bytes one block takes across all layers (keys and values).
  static uint64_t BytesPerBlock(const ModelConfig& config, KvDType dtype);
  // How many blocks `mib` MiB hold; InvalidArgument if not even one.
  static absl::StatusOr<int32_t> BlocksIn(const ModelConfig& config, KvDType dtype, int64_t mib);

  int32_t num_blocks() const { return num_blocks_; }
  KvDType dtype() const { return dtype_; }
  KvLayerView LayerView(int32_t layer) const;

  KvLayout layout() const { return {num_layers_, num_kv_heads_, head_dim_, dtype_}; }

  // Copies the keys and values of `layer` at positions [first, first + count)
  // of the sequence whose blocks are `block_table` to `dst` (Read) or from
  // `src` (Write), packed as [K|V][position][head][dim] in the cache's element
  // type: layout().PositionBytes() * count bytes. The caller checked the
  // table covers the positions and the blocks exist.
  void ReadPositions(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                     int32_t count, uint8_t* dst) const;
  void WritePositions(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                      int32_t count, const uint8_t* src);

  // Stores one token's keys and values (kv_dim floats each) of `layer` at
  // (block, slot), converting to the cache's element type.
  void Write(int32_t layer, int32_t block, int32_t slot, const float* k, const float* v);

 private:
  KvCache(const ModelConfig& config, const KvCacheOptions& options);

  int32_t num_layers_;
  int32_t num_kv_heads_;
  int32_t head_dim_;
  int32_t num_blocks_;
  KvDType dtype_;
  int64_t layer_elems_;  // elements of K (or V) per layer
  // [layer][K|V][block][head][slot][dim] of uint16_t (f16) or float: an
  // anonymous mapping, so pages no block has used yet take no memory.
  struct Unmap {
    size_t bytes;
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Unmap> storage_;

  uint16_t* f16() const { return static_cast<uint16_t*>(storage_.get()); }
  float* f32() const { return static_cast<float*>(storage_.get()); }
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_KV_CACHE_H_
