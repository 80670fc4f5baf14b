/*
 * C unit test of the CPU kernels' schedule (ops/cpu/schedule.h), for bags of 1 to 70 blocks:
 * the groups cover the blocks with sizes differing by at most one; over the rounds every pair of
 * groups P <= Q meets exactly once; no group is in two items of one round; the largest-first
 * order is a permutation of a round's slots by non-increasing tile count; and
 * pixcon_schedule_items_before counts exactly the items a group has in the earlier rounds, which
 * is what lets an item start without waiting for the whole round before it.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../ops/cpu/schedule.h"

static int failures = 0;

static void expect(int ok, int64_t blocks, const char *what) {
  if (ok) return;
  if (failures < 20) fprintf(stderr, "FAIL blocks=%lld: %s\n", (long long)blocks, what);
  ++failures;
}

static void test_groups_cover_the_blocks(int64_t blocks, int64_t groups) {
  int64_t smallest = INT64_MAX, largest = 0;
  expect(pixcon_schedule_group_begin(blocks, groups, 0) == 0, blocks, "first group starts at 0");
  expect(pixcon_schedule_group_begin(blocks, groups, groups) == blocks, blocks,
         "groups end the bag");
  for (int64_t g = 0; g < groups; ++g) {
    int64_t size = pixcon_schedule_group_begin(blocks, groups, g + 1) -
                   pixcon_schedule_group_begin(blocks, groups, g);
    if (size < smallest) smallest = size;
    if (size > largest) largest = size;
  }
  expect(smallest >= 1 && largest - smallest <= 1, blocks, "group sizes differ by at most one");
}

static void test_rounds(int64_t blocks, int64_t groups) {
  int met[PIXCON_SCHEDULE_GROUPS][PIXCON_SCHEDULE_GROUPS] = {{0}};
  int64_t items[PIXCON_SCHEDULE_GROUPS] = {0}; /* items of each group in the rounds so far */
  for (int64_t round = 0; round < pixcon_schedule_rounds(groups); ++round) {
    int64_t slots = pixcon_schedule_slots(groups, round), in_round[PIXCON_SCHEDULE_GROUPS] = {0};
    int taken[PIXCON_SCHEDULE_GROUPS] = {0};
    int64_t previous_tiles = INT64_MAX;
    for (int64_t k = 0; k < slots; ++k) {
      int64_t slot = pixcon_schedule_slot_by_size(blocks, groups, round, k);
      expect(slot >= 0 && slot < slots && !taken[slot], blocks,
             "largest-first order is a permutation");
      if (slot < 0 || slot >= slots) continue;
      taken[slot] = 1;
      int64_t tiles = pixcon_schedule_item_tiles(blocks, groups, round, slot);
      expect(tiles <= previous_tiles, blocks, "items go largest first");
      previous_tiles = tiles;
      int64_t P, Q;
      if (!pixcon_schedule_pair(groups, round, slot, &P, &Q)) continue;
      expect(P <= Q && Q < groups, blocks, "a pair is P <= Q of the bag's groups");
      ++met[P][Q];
      expect(pixcon_schedule_items_before(groups, round, P) == items[P], blocks, "items before P");
      expect(pixcon_schedule_items_before(groups, round, Q) == items[Q], blocks, "items before Q");
      ++in_round[P];
      if (Q != P) ++in_round[Q];
    }
    for (int64_t g = 0; g < groups; ++g) {
      expect(in_round[g] <= 1, blocks, "a group is in at most one item of a round");
      items[g] += in_round[g];
    }
  }
  for (int64_t P = 0; P < groups; ++P)
    for (int64_t Q = P; Q < groups; ++Q) expect(met[P][Q] == 1, blocks, "every pair meets once");
}

int main(void) {
  for (int64_t blocks = 1; blocks <= 70; ++blocks) {
    int64_t groups = pixcon_schedule_groups(blocks);
    test_groups_cover_the_blocks(blocks, groups);
    test_rounds(blocks, groups);
  }
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  printf("schedule: all checks passed\n");
  return 0;
}
