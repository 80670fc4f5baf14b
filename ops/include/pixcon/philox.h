/* Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3" (SC 2011): ten rounds of a keyed bijection of a 128-bit counter.
 * Cost: 10 rounds of two 32x32->64 multiplies per call; no state, so any thread computes any draw.
 *
 * pixcon keys it with the user's seed and counts with the pixel's flat index, so a pixel's random
 * key is the same on the CPU, on the GPU and for any thread count. Usable from C, C++ and CUDA. */
#ifndef PIXCON_PHILOX_H
#define PIXCON_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define PIXCON_PHILOX_FN static __host__ __device__ __forceinline__
#else
#define PIXCON_PHILOX_FN static inline
#endif

/* The round and key-schedule constants of the paper (Table 2 / Random123). */
#define PIXCON_PHILOX_M0 0xD2511F53u
#define PIXCON_PHILOX_M1 0xCD9E8D57u
#define PIXCON_PHILOX_W0 0x9E3779B9u
#define PIXCON_PHILOX_W1 0xBB67AE85u

typedef struct pixcon_philox4x32 {
  uint32_t v[4];
} pixcon_philox4x32;

PIXCON_PHILOX_FN pixcon_philox4x32 pixcon_philox4x32_10(pixcon_philox4x32 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = (uint64_t)PIXCON_PHILOX_M0 * ctr.v[0];
    uint64_t p1 = (uint64_t)PIXCON_PHILOX_M1 * ctr.v[2];
    pixcon_philox4x32 next;
    next.v[0] = (uint32_t)(p1 >> 32) ^ ctr.v[1] ^ k0;
    next.v[1] = (uint32_t)p1;
    next.v[2] = (uint32_t)(p0 >> 32) ^ ctr.v[3] ^ k1;
    next.v[3] = (uint32_t)p0;
    ctr = next;
    k0 += PIXCON_PHILOX_W0;
    k1 += PIXCON_PHILOX_W1;
  }
  return ctr;
}

/* The 32-bit random key of pixel `index` under `seed`: word 0 of Philox4x32-10 with
 * key (seed low, seed high) and counter (index low, index high, 0, 0). */
PIXCON_PHILOX_FN uint32_t pixcon_pixel_key(uint64_t seed, int64_t index) {
  pixcon_philox4x32 c;
  c.v[0] = (uint32_t)(uint64_t)index;
  c.v[1] = (uint32_t)((uint64_t)index >> 32);
  c.v[2] = 0;
  c.v[3] = 0;
  return pixcon_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32)).v[0];
}

#endif /* PIXCON_PHILOX_H */
