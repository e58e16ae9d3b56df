// Dot products between one stored weight row and one activation row: the
// inner loop of every matmul.
//
// Quantized weights meet activations quantized per block to int8 (as
// llama.cpp does): Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1 (which carry a
// min term), Q8_K for the K formats. Float weights (F32/F16/BF16) meet float
// activations. Within a block the products are summed exactly in integers;
// blocks are then accumulated in float in row order. Float dots use four
// 8-lane accumulators and a fixed reduction tree. So every result depends only
// on the two rows, never on batch shape or thread count, and the AVX2 kernels
// equal the scalar reference bit for bit (tests check both).
#ifndef TOKENFAB_WORKER_KERNELS_VEC_DOT_H_
#define TOKENFAB_WORKER_KERNELS_VEC_DOT_H_

#include <cstdint>

#include "worker/model/tensor_types.h"

namespace tokenfab {

enum class ActFormat { kF32, kQ8_0, kQ8_1, kQ8_K };

// The activation format a weight type's kernel consumes.
ActFormat ActivationFormatFor(DType weight_type);
// Bytes of one activation row of `n` values (n a multiple of the block size).
int64_t ActivationRowBytes(ActFormat format, int64_t n);
// Converts `n` floats to `format` at `out` (ActivationRowBytes(format, n) bytes).
void QuantizeActivations(ActFormat format, const float* x, int64_t n, uint8_t* out);

// dot(weight row, activation row) over n elements.
using DotKernel = float (*)(const uint8_t* w, const uint8_t* x, int64_t n);

// The fastest kernel this CPU supports for `weight_type`.
DotKernel GetDotKernel(DType weight_type);
// The portable scalar kernel (the reference).
DotKernel GetReferenceDotKernel(DType weight_type);

// Float dot products used by attention: q (f32) against a K row in f32 or f16.
float DotF32(const float* a, const float* b, int64_t n);
float DotF32F16(const float* a, const uint16_t* b, int64_t n);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_KERNELS_VEC_DOT_H_
