#include "worker/engine/kv_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "common/half.h"
#include "common/strings.h"

namespace tokenfab {

uint64_t KvCache::BytesPerBlock(const ModelConfig& c, KvDType dtype) {
  const uint64_t elem = dtype == KvDType::kF32 ? 4 : 2;
  return 2ull * c.num_layers * c.num_kv_heads * kKvBlockSize * c.head_dim * elem;
}

absl::StatusOr<int32_t> KvCache::BlocksIn(const ModelConfig& config, KvDType dtype, int64_t mib) {
  const uint64_t block_bytes = BytesPerBlock(config, dtype);
  const int64_t blocks = (mib << 20) / static_cast<int64_t>(block_bytes);
  if (blocks < 1) {
    return absl::InvalidArgumentError(StrCat(
        "--kv-cache-mb ", mib, " holds no KV block of this model (", block_bytes, " bytes each)"));
  }
  return static_cast<int32_t>(std::min<int64_t>(blocks, 1 << 30));
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const ModelConfig& config,
                                                         const KvCacheOptions& options) {
  if (options.num_blocks <= 0) {
    return absl::InvalidArgumentError(
        StrCat("KV cache needs at least one block, got ", options.num_blocks));
  }
  if (options.dtype == KvDType::kBF16) {
    return absl::InvalidArgumentError("the CPU KV cache holds f16 or f32; bf16 is the CUDA cache's");
  }
  const uint64_t per_block = BytesPerBlock(config, options.dtype);
  const uint64_t blocks = static_cast<uint64_t>(options.num_blocks);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  const uint64_t physical = pages > 0 && page_size > 0
                                ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size)
                                : std::numeric_limits<uint64_t>::max();
  // Refuse what cannot fit in this machine's memory with a message, instead of
  // dying in the allocator (or later, under the OOM killer).
  if (per_block > physical / blocks) {
    return absl::ResourceExhaustedError(
        StrCat("a KV cache of ", options.num_blocks, " blocks (", options.num_blocks * 16,
               " tokens) needs ", per_block / 1024 * blocks / 1024, " MiB but this machine has ",
               physical >> 20, " MiB of memory; ask for fewer tokens or use an f16 cache"));
  }
  std::unique_ptr<KvCache> kv(new KvCache(config, options));
  const size_t bytes = per_block * blocks;
  // Zero pages on first touch; MAP_NORESERVE: what is never used is never
  // committed.
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        StrCat("cannot reserve a KV cache of ", bytes >> 20, " MiB: ", std::strerror(errno)));
  }
  kv->storage_ = std::unique_ptr<void, Unmap>(p, Unmap{bytes});
  return kv;
}

void KvCache::Unmap::operator()(void* p) const { ::munmap(p, bytes); }

KvCache::KvCache(const ModelConfig& config, const KvCacheOptions& options)
    : num_layers_(config.num_layers),
      num_kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      num_blocks_(options.num_blocks),
      dtype_(options.dtype),
      layer_elems_(static_cast<int64_t>(options.num_blocks) * config.num_kv_heads * kKvBlockSize *
                   config.head_dim),
      storage_(nullptr, Unmap{0}) {}

KvLayerView KvCache::LayerView(int32_t layer) const {
  KvLayerView v;
  v.dtype = dtype_;
  v.num_kv_heads = num_kv_heads_;
  v.head_dim = head_dim_;
  v.block_size = kKvBlockSize;
  const int64_t base = static_cast<int64_t>(layer) * 2 * layer_elems_;
  if (dtype_ == KvDType::kF16) {
    v.k = f16() + base;
    v.v = f16() + base + layer_elems_;
  } else {
    v.k = f32() + base;
    v.v = f32() + base + layer_elems_;
  }
  return v;
}

namespace {

// Moves one position's heads between the cache (strided by block slot) and a
// packed [head][dim] row; `to_cache` picks the direction.
void CopyHeads(uint8_t* cache_base, const KvLayerView& view, int32_t block, int32_t slot,
               uint8_t* packed, int32_t elem, bool to_cache) {
  const size_t row = static_cast<size_t>(view.head_dim) * elem;
  for (int32_t h = 0; h < view.num_kv_heads; ++h) {
    uint8_t* c = cache_base + view.Offset(block, h, slot) * elem;
    uint8_t* p = packed + h * row;
    if (to_cache) {
      std::memcpy(c, p, row);
    } else {
      std::memcpy(p, c, row);
    }
  }
}

}  // namespace

void KvCache::ReadPositions(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                            int32_t count, uint8_t* dst) const {
  const KvLayerView view = LayerView(layer);
  const int32_t elem = layout().ElementBytes();
  const int64_t half = layout().PositionBytes() / 2 * count;  // K part, then V part
  auto* k = static_cast<uint8_t*>(const_cast<void*>(view.k));
  auto* v = static_cast<uint8_t*>(const_cast<void*>(view.v));
  const int64_t row = layout().PositionBytes() / 2;
  for (int32_t i = 0; i < count; ++i) {
    const int32_t pos = first + i;
    const int32_t block = block_table[pos / kKvBlockSize];
    CopyHeads(k, view, block, pos % kKvBlockSize, dst + i * row, elem, false);
    CopyHeads(v, view, block, pos % kKvBlockSize, dst + half + i * row, elem, false);
  }
}

void KvCache::WritePositions(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                             int32_t count, const uint8_t* src) {
  const KvLayerView view = LayerView(layer);
  const int32_t elem = layout().ElementBytes();
  const int64_t half = layout().PositionBytes() / 2 * count;
  auto* k = static_cast<uint8_t*>(const_cast<void*>(view.k));
  auto* v = static_cast<uint8_t*>(const_cast<void*>(view.v));
  const int64_t row = layout().PositionBytes() / 2;
  auto* s = const_cast<uint8_t*>(src);  // read only: CopyHeads copies into the cache
  for (int32_t i = 0; i < count; ++i) {
    const int32_t pos = first + i;
    const int32_t block = block_table[pos / kKvBlockSize];
    CopyHeads(k, view, block, pos % kKvBlockSize, s + i * row, elem, true);
    CopyHeads(v, view, block, pos % kKvBlockSize, s + half + i * row, elem, true);
  }
}

void KvCache::Write(int32_t layer, int32_t block, int32_t slot, const float* k, const float* v) {
  const KvLayerView view = LayerView(layer);  // for the layout only
  const int64_t base = static_cast<int64_t>(layer) * 2 * layer_elems_;
  for (int32_t h = 0; h < num_kv_heads_; ++h) {
    const int64_t off = view.Offset(block, h, slot);
    const float* kh = k + static_cast<int64_t>(h) * head_dim_;
    const float* vh = v + static_cast<int64_t>(h) * head_dim_;
    if (dtype_ == KvDType::kF16) {
      uint16_t* kd = f16() + base + off;
      uint16_t* vd = f16() + base + layer_elems_ + off;
      for (int32_t d = 0; d < head_dim_; ++d) {
        kd[d] = Fp32ToFp16(kh[d]);
        vd[d] = Fp32ToFp16(vh[d]);
      }
    } else {
      float* kd = f32() + base + off;
      float* vd = f32() + base + layer_elems_ + off;
      for (int32_t d = 0; d < head_dim_; ++d) {
        kd[d] = kh[d];
        vd[d] = vh[d];
      }
    }
  }
}

}  // namespace tokenfab
