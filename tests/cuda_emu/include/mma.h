// nvcuda::wmma for the CUDA emulator: 16x16x16 tiles of bf16 or half
// inputs with float accumulators, as worker/cuda's prefill attention uses
// them.
//
// Element e of a 16x16 accumulator (row e / 16, column e % 16) belongs to
// lane e % 32: lane l holds column l % 16 of the rows whose parity is
// l / 16. A lane loads only what its own elements need (those rows of A,
// that column of B), and a store writes only the lane's own elements, so a
// lane that reads the stored tile before a __syncwarp sees other lanes'
// elements missing, as it may on the GPU. mma_sync is where the warp's lanes
// meet (a barrier), so a divergent call is reported as a deadlock.
#ifndef TOKENFAB_TESTS_CUDA_EMU_INCLUDE_MMA_H_
#define TOKENFAB_TESTS_CUDA_EMU_INCLUDE_MMA_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace tokenfab::cuda_emu {
void ConvergeWarp(unsigned mask);
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
// The lanes meet, as at a __syncwarp, but no memory is ordered: mma_sync
// is not a memory barrier.
inline void Converge() { ::tokenfab::cuda_emu::ConvergeWarp(0xffffffffu); }
inline int Lane() { return ::tokenfab::cuda_emu::LaneId(); }
// The rows of A (and of the accumulator) lane `lane` works on: 8 of them.
inline int RowOf(int lane, int i) { return 2 * i + lane / 16; }
inline int ColOf(int lane) { return lane % 16; }
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment;

// A: the lane's 8 rows, whole (16 k each).
template <int M, int N, int K, typename T, typename Layout>
struct fragment<matrix_a, M, N, K, T, Layout> {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 wmma tiles only");
  float rows[8][16];
};

// B: the lane's column, whole (16 k).
template <int M, int N, int K, typename T, typename Layout>
struct fragment<matrix_b, M, N, K, T, Layout> {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 wmma tiles only");
  float col[16];
};

template <int M, int N, int K, typename T>
struct fragment<accumulator, M, N, K, T, void> {
  static_assert(M == 16 && N == 16 && K == 16, "the emulator has 16x16x16 wmma tiles only");
  static_assert(std::is_same_v<T, float>, "the emulator has float accumulators only");
  static constexpr int num_elements = 8;
  float x[8];  // the lane's elements: rows RowOf(lane, i), column ColOf(lane)
};

template <int M, int N, int K>
void fill_fragment(fragment<accumulator, M, N, K, float, void>& f, float v) {
  for (float& e : f.x) e = v;
}

template <int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<matrix_a, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  const int lane = detail::Lane();
  for (int i = 0; i < 8; ++i) {
    const int r = detail::RowOf(lane, i);
    for (int k = 0; k < 16; ++k) {
      f.rows[i][k] =
          detail::ToFloat(std::is_same_v<Layout, row_major> ? p[r * ldm + k] : p[k * ldm + r]);
    }
  }
}

template <int M, int N, int K, typename T, typename Layout, typename P>
void load_matrix_sync(fragment<matrix_b, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  const int c = detail::ColOf(detail::Lane());
  for (int k = 0; k < 16; ++k) {
    f.col[k] = detail::ToFloat(std::is_same_v<Layout, row_major> ? p[k * ldm + c] : p[c * ldm + k]);
  }
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float, void>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  const int lane = detail::Lane(), c = detail::ColOf(lane);
  for (int i = 0; i < 8; ++i) {
    const int r = detail::RowOf(lane, i);
    f.x[i] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  }
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float, void>& f, unsigned ldm,
                       layout_t layout) {
  const int lane = detail::Lane(), c = detail::ColOf(lane);
  for (int i = 0; i < 8; ++i) {
    const int r = detail::RowOf(lane, i);
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
  for (int i = 0; i < 8; ++i) {
    float acc = c.x[i];
    for (int k = 0; k < 16; ++k) acc += a.rows[i][k] * b.col[k];
    d.x[i] = acc;
  }
}

}  // namespace nvcuda::wmma

#endif  // TOKENFAB_TESTS_CUDA_EMU_INCLUDE_MMA_H_
