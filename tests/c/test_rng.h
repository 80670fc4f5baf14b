/* The tests' random problems: xorshift64, seeded per test program so each run sees the same cases.
 * Plain C, also included by the C++ emulation tests. */
#ifndef PIXCON_TEST_RNG_H
#define PIXCON_TEST_RNG_H

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static inline void rng_seed(uint64_t seed) { rng_state = seed ? seed : 0x9e3779b97f4a7c15ull; }

static inline uint64_t next_u64(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* uniform in [0, 1) with 53 random bits */
static inline double uniform(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

/* uniform in [0, n), n > 0 */
static inline int64_t below(int64_t n) { return (int64_t)(next_u64() % (uint64_t)n); }

#endif /* PIXCON_TEST_RNG_H */
