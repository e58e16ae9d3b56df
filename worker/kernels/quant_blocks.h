// Byte layouts of the quantized block formats, as GGUF stores them (weights)
// and as the kernels quantize activations. Each block covers 32 (or, for the
// K formats, 256) consecutive elements of a row; scales are IEEE half unless
// noted. Dequantized value of element j of a block:
//   Q4_0: d * (nibble_j - 8)            Q4_1: d * nibble_j + m
//   Q5_0: d * (5-bit_j - 16)            Q5_1: d * 5-bit_j + m
//   Q8_0: d * qs_j
//   Q4_K: 8 sub-blocks of 32 with 6-bit scale sc and min mn:  d*sc*nibble - dmin*mn
//   Q6_K: 16 sub-blocks of 16 with int8 scale sc:             d*sc*(6-bit - 32)
// In Q4_0/Q4_1/Q5_x, byte j holds element j in its low nibble and element
// j + 16 in its high nibble.
#ifndef TOKENFAB_WORKER_KERNELS_QUANT_BLOCKS_H_
#define TOKENFAB_WORKER_KERNELS_QUANT_BLOCKS_H_

#include <cstdint>

namespace tokenfab {

inline constexpr int kQBlock = 32;   // elements per block of the 32-formats
inline constexpr int kKBlock = 256;  // elements per super-block of the K formats

#pragma pack(push, 1)
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQBlock / 2];
};
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQBlock / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // bit j is the fifth bit of element j
  uint8_t qs[kQBlock / 2];
};
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQBlock / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQBlock];
};
// Activations for weights with a min term: s = d * sum(qs), so the min's
// contribution m * sum(x) costs one multiply per block.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQBlock];
};
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];  // 8 six-bit scales and 8 six-bit mins, packed
  uint8_t qs[kKBlock / 2];
};
struct BlockQ6_K {
  uint8_t ql[kKBlock / 2];  // low 4 bits
  uint8_t qh[kKBlock / 4];  // high 2 bits
  int8_t scales[kKBlock / 16];
  uint16_t d;
};
// Activations for the K formats: float scale, and per-16 sums of qs for the
// min terms.
struct BlockQ8_K {
  float d;
  int8_t qs[kKBlock];
  int16_t bsums[kKBlock / 16];
};
#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Unpacks sub-block j's (0..7) six-bit scale and min of a Q4_K block: the
// first four use the low six bits of bytes 0-3 and 4-7; the last four combine
// a nibble of bytes 8-11 with the top two bits of bytes 0-7.
inline void Q4KScaleMin(const uint8_t* scales, int j, int* scale, int* min) {
  if (j < 4) {
    *scale = scales[j] & 63;
    *min = scales[j + 4] & 63;
  } else {
    *scale = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
    *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_KERNELS_QUANT_BLOCKS_H_
