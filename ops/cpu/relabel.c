/* Dense per-bag label and image codes by sorting each bag's values: O(N log N) time. */
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

static void code_bag(const int64_t *values, int64_t begin, int64_t end, const int64_t *skip,
                     int64_t skip_value, int32_t *codes, int64_t *scratch) {
  int64_t n = 0;
  for (int64_t r = begin; r < end; ++r)
    if (!skip || skip[r] != skip_value) scratch[n++] = values[r];
  int64_t u = sort_unique(scratch, n);
  for (int64_t r = begin; r < end; ++r)
    codes[r] = (!skip || skip[r] != skip_value) ? rank_of(scratch, u, values[r]) : -1;
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
