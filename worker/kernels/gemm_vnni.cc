// The GEMM kernels built for AVX2 plus AVX-VNNI (vpdpbusd on 256-bit
// vectors: Intel since Alder Lake / Sapphire Rapids, AMD since Zen 5). CMake
// compiles this file alone with -mavxvnni; matmul.cc calls it only where the
// CPU reports the feature. vpdpbusd sums the same exact integer products as
// vpmaddubsw + vpmaddwd, so the results equal the AVX2 kernels' bit for bit.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "worker/kernels/gemm_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__AVXVNNI__)
#include <immintrin.h>

#define TF_GEMM_VNNI true
#define TF_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)

namespace tokenfab::kernels_internal {
namespace gemm_vnni {
#include "worker/kernels/gemm_x86_common.inc"
#include "worker/kernels/gemm_q32.inc"
#include "worker/kernels/gemm_float.inc"
#include "worker/kernels/gemm_table.inc"
}  // namespace gemm_vnni

GemmKernel VnniGemm(DType type) { return gemm_vnni::KernelFor(type); }

}  // namespace tokenfab::kernels_internal

#else

namespace tokenfab::kernels_internal {
GemmKernel VnniGemm(DType) { return {}; }
}  // namespace tokenfab::kernels_internal

#endif
