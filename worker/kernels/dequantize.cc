#include "worker/kernels/dequantize.h"

#include <cstring>

#include "common/half.h"
#include "worker/kernels/quant_blocks.h"

namespace tokenfab {
namespace {

template <typename Block>
const Block* Blocks(const uint8_t* src) {
  return reinterpret_cast<const Block*>(src);
}

uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

void DequantizeRow(DType type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = Fp16ToFp32(h);
      }
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = Bf16ToFp32(h);
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / kQBlock; ++b, dst += kQBlock) {
        const BlockQ4_0& blk = Blocks<BlockQ4_0>(src)[b];
        const float d = Fp16ToFp32(blk.d);
        for (int j = 0; j < kQBlock / 2; ++j) {
          dst[j] = d * ((blk.qs[j] & 0x0f) - 8);
          dst[j + 16] = d * ((blk.qs[j] >> 4) - 8);
        }
      }
      return;
    case DType::kQ4_1:
      for (int64_t b = 0; b < n / kQBlock; ++b, dst += kQBlock) {
        const BlockQ4_1& blk = Blocks<BlockQ4_1>(src)[b];
        const float d = Fp16ToFp32(blk.d), m = Fp16ToFp32(blk.m);
        for (int j = 0; j < kQBlock / 2; ++j) {
          dst[j] = d * (blk.qs[j] & 0x0f) + m;
          dst[j + 16] = d * (blk.qs[j] >> 4) + m;
        }
      }
      return;
    case DType::kQ5_0:
      for (int64_t b = 0; b < n / kQBlock; ++b, dst += kQBlock) {
        const BlockQ5_0& blk = Blocks<BlockQ5_0>(src)[b];
        const float d = Fp16ToFp32(blk.d);
        const uint32_t qh = Load32(blk.qh);
        for (int j = 0; j < kQBlock / 2; ++j) {
          const int lo = (blk.qs[j] & 0x0f) | (((qh >> j) & 1) << 4);
          const int hi = (blk.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
          dst[j] = d * (lo - 16);
          dst[j + 16] = d * (hi - 16);
        }
      }
      return;
    case DType::kQ5_1:
      for (int64_t b = 0; b < n / kQBlock; ++b, dst += kQBlock) {
        const BlockQ5_1& blk = Blocks<BlockQ5_1>(src)[b];
        const float d = Fp16ToFp32(blk.d), m = Fp16ToFp32(blk.m);
        const uint32_t qh = Load32(blk.qh);
        for (int j = 0; j < kQBlock / 2; ++j) {
          const int lo = (blk.qs[j] & 0x0f) | (((qh >> j) & 1) << 4);
          const int hi = (blk.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
          dst[j] = d * lo + m;
          dst[j + 16] = d * hi + m;
        }
      }
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / kQBlock; ++b, dst += kQBlock) {
        const BlockQ8_0& blk = Blocks<BlockQ8_0>(src)[b];
        const float d = Fp16ToFp32(blk.d);
        for (int j = 0; j < kQBlock; ++j) dst[j] = d * blk.qs[j];
      }
      return;
    case DType::kQ4_K:
      for (int64_t b = 0; b < n / kKBlock; ++b) {
        const BlockQ4_K& blk = Blocks<BlockQ4_K>(src)[b];
        const float d = Fp16ToFp32(blk.d), dmin = Fp16ToFp32(blk.dmin);
        const uint8_t* q = blk.qs;
        // Each 32-byte run of qs holds sub-block 2c in its low nibbles and
        // sub-block 2c+1 in its high nibbles.
        for (int c = 0; c < 4; ++c, q += 32) {
          int sc0, m0, sc1, m1;
          Q4KScaleMin(blk.scales, 2 * c, &sc0, &m0);
          Q4KScaleMin(blk.scales, 2 * c + 1, &sc1, &m1);
          const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
          for (int l = 0; l < 32; ++l) *dst++ = d0 * (q[l] & 0x0f) - mm0;
          for (int l = 0; l < 32; ++l) *dst++ = d1 * (q[l] >> 4) - mm1;
        }
      }
      return;
    case DType::kQ6_K:
      for (int64_t b = 0; b < n / kKBlock; ++b) {
        const BlockQ6_K& blk = Blocks<BlockQ6_K>(src)[b];
        const float d = Fp16ToFp32(blk.d);
        // Two halves of 128; in each, element l (0..31) of four quarter-rows
        // takes its low bits from ql and its high bits from one qh byte.
        for (int half = 0; half < 2; ++half, dst += 128) {
          const uint8_t* ql = blk.ql + 64 * half;
          const uint8_t* qh = blk.qh + 32 * half;
          const int8_t* sc = blk.scales + 8 * half;
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            dst[l] = d * sc[is] * q1;
            dst[l + 32] = d * sc[is + 2] * q2;
            dst[l + 64] = d * sc[is + 4] * q3;
            dst[l + 96] = d * sc[is + 6] * q4;
          }
        }
      }
      return;
  }
}

}  // namespace tokenfab
