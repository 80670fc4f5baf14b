/*
 * Which tile pairs run together. The similarity matrix of a bag is symmetric, so only tiles
 * (I, J) with I <= J are visited, each updating rows I and rows J. To do that without atomic
 * updates or per-thread copies of the rows' statistics, pairs run in rounds of a round-robin
 * tournament (circle method): in one round every block appears at most once, so concurrent work
 * never touches the same rows, and each row's accumulation order is fixed: results do not depend
 * on the thread count.
 * Round 0 holds the diagonal tiles; rounds 1..n'-1 the off-diagonal ones (n' = blocks rounded
 * up to even; a pair with the dummy block n' - 1 >= blocks is skipped).
 * Rounds need not wait for each other as a whole: an item waits only for its two groups' items of
 * the earlier rounds (pixcon_schedule_items_before), so a thread whose round is done moves on
 * while the other finishes its last item. Two items that run at once still share no group: the
 * later one waits for the earlier.
 * The tournament runs over groups of consecutive blocks: one thread does every tile pair of two
 * groups in a fixed order, so each row block it brings into cache serves `group` tiles instead of
 * one. The group size depends only on the bag's size, never on the threads.
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

/* Groups per bag (fewer only when the bag has fewer blocks): a round then holds 8 items of each
 * bag, enough for the threads of one socket, and each item is as large as that allows. One thread
 * does an item's tile pairs row block by row block, so the row block's packed rows and gradient
 * stay in cache while the group's column blocks stream past: measured on 2 AVX-512 cores
 * (N = 16 641 to 33 000), the larger the group, the faster, from 50 % of the multiply-add peak
 * with single blocks to 63 % with 11 blocks and 67 % with 43. */
#define PIXCON_SCHEDULE_GROUPS 16

static inline int64_t pixcon_schedule_groups(int64_t blocks) {
  return blocks < PIXCON_SCHEDULE_GROUPS ? blocks : PIXCON_SCHEDULE_GROUPS;
}

/* The first block of group g (g = groups: the end of the bag). Sizes differ by at most one
 * block, so a round's 8 items are nearly equal work and keep 2, 4 or 8 threads busy to its end;
 * groups of a fixed size with one short last group left 2 threads 10 % idle. */
static inline int64_t pixcon_schedule_group_begin(int64_t blocks, int64_t groups, int64_t g) {
  return g * blocks / groups;
}

/* Tile pairs in slot k's item of a round (0 for a dummy pair). */
static inline int64_t pixcon_schedule_item_tiles(int64_t blocks, int64_t groups, int64_t round,
                                                 int64_t k) {
  int64_t P, Q;
  if (!pixcon_schedule_pair(groups, round, k, &P, &Q)) return 0;
  int64_t np = pixcon_schedule_group_begin(blocks, groups, P + 1) -
               pixcon_schedule_group_begin(blocks, groups, P);
  int64_t nq = pixcon_schedule_group_begin(blocks, groups, Q + 1) -
               pixcon_schedule_group_begin(blocks, groups, Q);
  return P == Q ? np * (np + 1) / 2 : np * nq;
}

/* The slot whose item goes k-th in its round: the largest first (ties by slot), so that the
 * threads take the large items while the round is young and end it together on the small ones.
 * The items of a round share no rows, so their order changes no result. O(groups^2) <= 256. */
static inline int64_t pixcon_schedule_slot_by_size(int64_t blocks, int64_t groups, int64_t round,
                                                   int64_t k) {
  int64_t slots = pixcon_schedule_slots(groups, round), tiles[PIXCON_SCHEDULE_GROUPS];
  for (int64_t s = 0; s < slots; ++s) tiles[s] = pixcon_schedule_item_tiles(blocks, groups, round, s);
  for (int64_t s = 0; s < slots; ++s) {
    int64_t rank = 0;
    for (int64_t o = 0; o < slots; ++o) rank += tiles[o] > tiles[s] || (tiles[o] == tiles[s] && o < s);
    if (rank == k) return s;
  }
  return k;
}

/* Items with group g in rounds before `round`: one per round, but for the round in which g sits
 * out, which an odd number of groups gives each of them once (round g + 1, when the fixed team of
 * the circle is the dummy). An item may start once both its groups have done this many: the
 * rounds then need no barrier between them, and each group still meets its partners in round
 * order. */
static inline int64_t pixcon_schedule_items_before(int64_t groups, int64_t round, int64_t g) {
  return round - ((groups & 1) && g + 1 < round);
}

/* Row blocks that an item takes across its column blocks together: each column block then comes
 * from memory once per CHUNK row blocks, not once per row block, while the CHUNK row blocks' data
 * (3 x 96 x D floats each) stay in a 1 MiB L2 up to D = 256. Measured on 2 AVX-512 cores at
 * N = 16 641 and 66 564: 2 gains 2 to 5 points of the multiply-add peak over 1; 3 and 4 no more.
 * The order within an item does not change any row's accumulation order (contrastive_tier.c). */
#define PIXCON_SCHEDULE_CHUNK 2

#endif /* PIXCON_CPU_SCHEDULE_H */
