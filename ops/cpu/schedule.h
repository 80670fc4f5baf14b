/*
 * Which tile pairs run together. The similarity matrix of a bag is symmetric, so only tiles
 * (I, J) with I <= J are visited, each updating rows I and rows J. To do that without atomics
 * or per-thread copies, pairs run in rounds of a round-robin tournament (circle method): in
 * one round every block appears at most once, so concurrent work never touches the same rows,
 * and each row's accumulation order is fixed: results do not depend on the thread count.
 * Round 0 holds the diagonal tiles; rounds 1..n'-1 the off-diagonal ones (n' = blocks rounded
 * up to even; a pair with the dummy block n' - 1 >= blocks is skipped).
 */
#ifndef PIXCON_CPU_SCHEDULE_H
#define PIXCON_CPU_SCHEDULE_H

#include <stdint.h>

static inline int64_t pixcon_schedule_rounds(int64_t blocks) {
  int64_t even = blocks + (blocks & 1);
  return blocks == 0 ? 0 : even; /* the diagonal round plus even - 1 tournament rounds */
}

/* Slots of a bag in a round (some may be dummy pairs). */
static inline int64_t pixcon_schedule_slots(int64_t blocks, int64_t round) {
  if (round >= pixcon_schedule_rounds(blocks)) return 0;
  return round == 0 ? blocks : (blocks + (blocks & 1)) / 2;
}

/* The pair of slot k in a round: returns 0 for a dummy pair, else 1 with *lo <= *hi. */
static inline int pixcon_schedule_pair(int64_t blocks, int64_t round, int64_t k, int64_t *lo,
                                       int64_t *hi) {
  if (round == 0) {
    *lo = *hi = k;
    return 1;
  }
  int64_t m = blocks + (blocks & 1) - 1; /* teams 0..m, team m fixed */
  int64_t r = round - 1, a, b;
  if (k == 0) {
    a = r;
    b = m;
  } else {
    a = (r + k) % m;
    b = (r - k + m) % m;
  }
  if (a >= blocks || b >= blocks) return 0;
  *lo = a < b ? a : b;
  *hi = a < b ? b : a;
  return 1;
}

#endif /* PIXCON_CPU_SCHEDULE_H */
