// Kernel tables shared by vec_dot.cc (dispatch), vec_dot_reference.cc and
// vec_dot_avx2.cc. Not for use outside worker/kernels.
#ifndef TOKENFAB_WORKER_KERNELS_VEC_DOT_INTERNAL_H_
#define TOKENFAB_WORKER_KERNELS_VEC_DOT_INTERNAL_H_

#include "worker/kernels/vec_dot.h"

namespace tokenfab::kernels_internal {

DotKernel ReferenceKernel(DType weight_type);
// nullptr where the build or the type has no AVX2 kernel.
DotKernel Avx2Kernel(DType weight_type);

// The float dot's accumulation scheme, shared so the scalar reference and the
// AVX2 kernel sum in the same order: elements i go to accumulator (i / 8) % 4,
// lane i % 8, for the first n - n % 32 elements; then 8 at a time into
// accumulator 0; the last n % 8 are added after the reduction.
inline constexpr int kFloatLanes = 8;
inline constexpr int kFloatAccumulators = 4;

// Reduces lanes as: a = (acc0 + acc1) + (acc2 + acc3); then lane pairs
// (k, k + 4), then (k, k + 2), then (0, 1).
float ReduceLanes(const float acc[kFloatAccumulators][kFloatLanes]);

}  // namespace tokenfab::kernels_internal

#endif  // TOKENFAB_WORKER_KERNELS_VEC_DOT_INTERNAL_H_
