// Element and block formats of weight tensors, numbered as GGUF numbers them
// (ggml_type), so a GGUF tensor's type field maps directly. Quantized formats
// store rows as a sequence of fixed-size blocks; see kernels/quant_blocks.h for
// their layouts.
#ifndef TOKENFAB_WORKER_MODEL_TENSOR_TYPES_H_
#define TOKENFAB_WORKER_MODEL_TENSOR_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tokenfab {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
};

struct DTypeTraits {
  DType type;
  std::string_view name;
  int64_t block_elems;  // elements per block (1 for plain floats)
  int64_t block_bytes;  // bytes per block
};

// Traits of a supported type; nullopt for a type number tokenfab cannot run.
std::optional<DTypeTraits> GetDTypeTraits(uint32_t raw_type);
const DTypeTraits& Traits(DType type);

// The ggml name of any type number, supported or not (for error messages).
std::string_view GgmlTypeName(uint32_t raw_type);

// Comma-separated names of the supported types, for error messages.
std::string_view SupportedDTypeNames();

// Bytes of one row of `cols` elements; nullopt if cols is not a whole number of
// blocks or the size overflows.
std::optional<uint64_t> RowBytes(DType type, int64_t cols);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_MODEL_TENSOR_TYPES_H_
