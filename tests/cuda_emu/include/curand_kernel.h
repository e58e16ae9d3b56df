// The part of cuRAND's device API tokenfab's kernels use, for the CUDA
// emulator: the Philox4x32-10 generator (Salmon et al., "Parallel Random
// Numbers: As Easy as 1, 2, 3", SC 2011) with cuRAND's seeding: the seed is
// the key, the subsequence the high 64 bits of the 128-bit counter, the
// offset counts 32-bit outputs. The emulator's draws are a Philox stream as
// that paper defines it; that they equal cuRAND's bit for bit is not checked
// here (no GPU), and no test depends on it.
#ifndef TOKENFAB_TESTS_CUDA_EMU_INCLUDE_CURAND_KERNEL_H_
#define TOKENFAB_TESTS_CUDA_EMU_INCLUDE_CURAND_KERNEL_H_

#include <vector_types.h>

#include <cstdint>

struct curandStatePhilox4_32_10_t {
  uint4 ctr;
  uint4 output;
  uint2 key;
  unsigned int STATE;
};

namespace tokenfab::cuda_emu::philox {

inline uint4 Rounds(uint4 c, uint2 k) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k.x += kW0;
      k.y += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c.x;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c.z;
    c = make_uint4(static_cast<uint32_t>(p1 >> 32) ^ c.y ^ k.x, static_cast<uint32_t>(p1),
                   static_cast<uint32_t>(p0 >> 32) ^ c.w ^ k.y, static_cast<uint32_t>(p0));
  }
  return c;
}

// 128-bit counter += n.
inline void Advance(uint4& c, uint64_t n) {
  const uint64_t lo = (static_cast<uint64_t>(c.y) << 32 | c.x) + n;
  const bool carry = lo < n;
  c.x = static_cast<uint32_t>(lo);
  c.y = static_cast<uint32_t>(lo >> 32);
  if (carry && ++c.z == 0) ++c.w;
}

// High 64 bits of the counter += n.
inline void AdvanceSequence(uint4& c, uint64_t n) {
  const uint64_t hi = (static_cast<uint64_t>(c.w) << 32 | c.z) + n;
  c.z = static_cast<uint32_t>(hi);
  c.w = static_cast<uint32_t>(hi >> 32);
}

}  // namespace tokenfab::cuda_emu::philox

inline void curand_init(unsigned long long seed, unsigned long long subsequence,
                        unsigned long long offset, curandStatePhilox4_32_10_t* s) {
  namespace p = tokenfab::cuda_emu::philox;
  s->ctr = make_uint4(0, 0, 0, 0);
  s->key = make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  p::AdvanceSequence(s->ctr, subsequence);
  p::Advance(s->ctr, offset / 4);
  s->STATE = static_cast<unsigned>(offset % 4);
  s->output = p::Rounds(s->ctr, s->key);
}

inline uint4 curand4(curandStatePhilox4_32_10_t* s) {
  namespace p = tokenfab::cuda_emu::philox;
  const uint4 cur = s->output;
  p::Advance(s->ctr, 1);
  s->output = p::Rounds(s->ctr, s->key);
  const uint32_t a[8] = {cur.x,       cur.y,       cur.z,       cur.w,
                         s->output.x, s->output.y, s->output.z, s->output.w};
  const unsigned k = s->STATE;
  return make_uint4(a[k], a[k + 1], a[k + 2], a[k + 3]);
}

inline unsigned int curand(curandStatePhilox4_32_10_t* s) {
  namespace p = tokenfab::cuda_emu::philox;
  const uint32_t v[4] = {s->output.x, s->output.y, s->output.z, s->output.w};
  const unsigned int r = v[s->STATE++];
  if (s->STATE == 4) {
    s->STATE = 0;
    p::Advance(s->ctr, 1);
    s->output = p::Rounds(s->ctr, s->key);
  }
  return r;
}

inline float curand_uniform(curandStatePhilox4_32_10_t* s) {
  return (static_cast<float>(curand(s)) + 0.5f) * 2.3283064365386963e-10f;  // (0, 1]
}

#endif  // TOKENFAB_TESTS_CUDA_EMU_INCLUDE_CURAND_KERNEL_H_
