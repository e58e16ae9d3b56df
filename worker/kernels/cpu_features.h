// What the CPU running us can execute, for the kernels' dispatch. Not for use
// outside worker/kernels.
#ifndef TOKENFAB_WORKER_KERNELS_CPU_FEATURES_H_
#define TOKENFAB_WORKER_KERNELS_CPU_FEATURES_H_

namespace tokenfab::kernels_internal {

// AVX2 with FMA and F16C: what every *_avx2.cc kernel needs.
inline bool CpuHasAvx2() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

// AVX-VNNI (256-bit int8 dot products) on top of AVX2.
inline bool CpuHasAvxVnni() {
#if defined(__x86_64__)
  static const bool has = CpuHasAvx2() && __builtin_cpu_supports("avxvnni");
  return has;
#else
  return false;
#endif
}

}  // namespace tokenfab::kernels_internal

#endif  // TOKENFAB_WORKER_KERNELS_CPU_FEATURES_H_
