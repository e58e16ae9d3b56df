// Conversion of stored rows (any supported DType) to float: the reference the
// fused kernels are tested against, and the path for embedding lookups.
#ifndef TOKENFAB_WORKER_KERNELS_DEQUANTIZE_H_
#define TOKENFAB_WORKER_KERNELS_DEQUANTIZE_H_

#include <cstdint>

#include "worker/model/tensor_types.h"

namespace tokenfab {

// Writes the `n` values of a row stored as `type` at `src` to `dst`. `n` must
// be a multiple of the type's block size (the loader guarantees it).
void DequantizeRow(DType type, const uint8_t* src, float* dst, int64_t n);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_KERNELS_DEQUANTIZE_H_
