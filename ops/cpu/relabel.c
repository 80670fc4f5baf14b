/* Dense per-bag label and image codes: the rank of each value among its bag's distinct values.
 * Values within a range no wider than the bag (class labels and image ids usually are) take a
 * table of the values present and its running count, O(bag rows); others a sort, O(n log n). */
#include "relabel.h"

#include <stdlib.h>

static int compare_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int64_t sort_unique(int64_t *v, int64_t n) {
  qsort(v, (size_t)n, sizeof *v, compare_i64);
  int64_t u = 0;
  for (int64_t k = 0; k < n; ++k)
    if (u == 0 || v[u - 1] != v[k]) v[u++] = v[k];
  return u;
}

static int32_t rank_of(const int64_t *v, int64_t n, int64_t x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (v[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return (int32_t)lo;
}

/* Whether row r takes part: not skipped. */
static int kept(const int64_t *skip, int64_t skip_value, int64_t r) {
  return !skip || skip[r] != skip_value;
}

/* The table path; returns 0 (and writes nothing) when the values span more than end - begin. */
static int code_bag_dense(const int64_t *values, int64_t begin, int64_t end, const int64_t *skip,
                          int64_t skip_value, int32_t *codes, int64_t *table) {
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (int64_t r = begin; r < end; ++r)
    if (kept(skip, skip_value, r)) {
      if (values[r] < lo) lo = values[r];
      if (values[r] > hi) hi = values[r];
    }
  if (lo > hi) { /* nothing kept */
    for (int64_t r = begin; r < end; ++r) codes[r] = -1;
    return 1;
  }
  uint64_t span = (uint64_t)hi - (uint64_t)lo; /* no overflow for any pair of int64 */
  if (span >= (uint64_t)(end - begin)) return 0;
  for (uint64_t k = 0; k <= span; ++k) table[k] = 0;
  for (int64_t r = begin; r < end; ++r)
    if (kept(skip, skip_value, r)) table[(uint64_t)values[r] - (uint64_t)lo] = 1;
  int64_t rank = 0;
  for (uint64_t k = 0; k <= span; ++k) {
    int64_t present = table[k];
    table[k] = rank;
    rank += present;
  }
  for (int64_t r = begin; r < end; ++r)
    codes[r] = kept(skip, skip_value, r) ? (int32_t)table[(uint64_t)values[r] - (uint64_t)lo] : -1;
  return 1;
}

static void code_bag(const int64_t *values, int64_t begin, int64_t end, const int64_t *skip,
                     int64_t skip_value, int32_t *codes, int64_t *scratch) {
  if (code_bag_dense(values, begin, end, skip, skip_value, codes, scratch)) return;
  int64_t n = 0;
  for (int64_t r = begin; r < end; ++r)
    if (kept(skip, skip_value, r)) scratch[n++] = values[r];
  int64_t u = sort_unique(scratch, n);
  for (int64_t r = begin; r < end; ++r)
    codes[r] = kept(skip, skip_value, r) ? rank_of(scratch, u, values[r]) : -1;
}

void pixcon_relabel(const pixcon_loss_params *p, int32_t *label_codes, int32_t *image_codes,
                    int64_t *sort_scratch) {
  for (int64_t b = 0; b < p->num_bags; ++b) {
    int64_t begin = p->bag_offsets[b], end = p->bag_offsets[b + 1];
    code_bag(p->labels, begin, end, p->labels, p->ignore_index, label_codes, sort_scratch);
    if (p->image_ids) {
      code_bag(p->image_ids, begin, end, NULL, 0, image_codes, sort_scratch);
    } else {
      for (int64_t r = begin; r < end; ++r) image_codes[r] = 0;
    }
  }
}
