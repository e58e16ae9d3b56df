// nvcuda::wmma for the CUDA emulator: 16x16x16 tiles of bf16 or half
// inputs with float accumulators, as worker/cuda's prefill attention uses
// them. Every operation is warp-synchronous, as on the GPU: the lanes meet
// at a barrier first, so a divergent call is reported as a deadlock.
//
// Each lane holds the whole A and B tiles (as floats: bf16 and half convert
// exactly) and eight elements of an accumulator: element e of the 16x16 tile
// (row e / 16, column e % 16) belongs to lane e % 32. A store writes only the
// lane's own elements, so a lane that reads the stored tile before a
// __syncwarp sees other lanes' elements missing, as it may on the GPU.
#ifndef TOKENFAB_TESTS_CUDA_EMU_INCLUDE_MMA_H_
#define TOKENFAB_TESTS_CUDA_EMU_INCLUDE_MMA_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace tokenfab::cuda_emu {
void SyncWarp(unsigned mask);
int LaneId();
}  // namespace tokenfab::cuda_emu

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
inline float ToFloat(float v) { return v; }
inline float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float ToFloat(__half v) { return __half2float(v); }
inline void Converge() { ::tokenfab::cuda_emu::SyncWarp(0xffffffffu); }
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 wmma tiles only");
  static_assert(!std::is_same_v<Use, accumulator>, "accumulator fragments have no layout");
  float tile[256];  // [row][col] of the operand, whole
};

template <int M, int N, int K, typename T>
struct fragment<accumulator, M, N, K, T, void> {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 wmma tiles only");
  static_assert(std::is_same_v<T, float>, "the emulator has float accumulators only");
  static constexpr int num_elements = 8;
  float x[8];  // elements lane, lane + 32, ..., of the tile in row-major order
};

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
  for (float& e : f.tile) e = v;
}
template <int M, int N, int K>
void fill_fragment(fragment<accumulator, M, N, K, float, void>& f, float v) {
  for (float& e : f.x) e = v;
}

// A tile (rows x cols 16 x 16 of the operand) from memory laid out as
// Layout with leading dimension ldm.
template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  detail::Converge();
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) {
      const P v = std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[c * ldm + r];
      f.tile[r * 16 + c] = detail::ToFloat(v);
    }
  }
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float, void>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  detail::Converge();
  const int lane = ::tokenfab::cuda_emu::LaneId();
  for (int i = 0; i < 8; ++i) {
    const int e = lane + 32 * i, r = e / 16, c = e % 16;
    f.x[i] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  }
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float, void>& f, unsigned ldm,
                       layout_t layout) {
  detail::Converge();
  const int lane = ::tokenfab::cuda_emu::LaneId();
  for (int i = 0; i < 8; ++i) {
    const int e = lane + 32 * i, r = e / 16, c = e % 16;
    (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[i];
  }
}

// d = a * b + c, the lane's own elements of d.
template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float, void>& d,
              const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b,
              const fragment<accumulator, M, N, K, float, void>& c) {
  detail::Converge();
  const int lane = ::tokenfab::cuda_emu::LaneId();
  float out[8];
  for (int i = 0; i < 8; ++i) {
    const int e = lane + 32 * i, r = e / 16, col = e % 16;
    float acc = c.x[i];
    for (int k = 0; k < 16; ++k) acc += a.tile[r * 16 + k] * b.tile[k * 16 + col];
    out[i] = acc;
  }
  for (int i = 0; i < 8; ++i) d.x[i] = out[i];
}

}  // namespace nvcuda::wmma

#endif  // TOKENFAB_TESTS_CUDA_EMU_INCLUDE_MMA_H_
