// The GEMM kernels built for AVX2/FMA/F16C (x86-64-v3), the build's baseline.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "worker/kernels/gemm_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#define TF_GEMM_VNNI false
#define TF_DPBUSD(acc, u, s) (acc)  // not used without VNNI

namespace tokenfab::kernels_internal {
namespace gemm_avx2 {
#include "worker/kernels/gemm_x86_common.inc"
#include "worker/kernels/gemm_q32.inc"
#include "worker/kernels/gemm_float.inc"
#include "worker/kernels/gemm_table.inc"
}  // namespace gemm_avx2

GemmKernel Avx2Gemm(DType type) { return gemm_avx2::KernelFor(type); }

}  // namespace tokenfab::kernels_internal

#else

namespace tokenfab::kernels_internal {
GemmKernel Avx2Gemm(DType) { return {}; }
}  // namespace tokenfab::kernels_internal

#endif
