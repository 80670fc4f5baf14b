/*
 * Plain reference of the pixel sampling of sample.h, one thread, written for clarity, not
 * speed: count the groups, take pixcon_sample_quotas, sort the valid pixels by (group, key,
 * index) and keep the first `quota` of every group. O(B H W log(B H W)) time. Being a test
 * reference it allocates its memory with malloc, which the kernels never do.
 */
#include <stdlib.h>

#include "pixcon/philox.h"
#include "pixcon_reference.h"

typedef struct keyed_pixel {
  int64_t group;
  uint32_t key;
  int64_t index;
} keyed_pixel;

static int compare_keyed(const void *a, const void *b) {
  const keyed_pixel *x = a, *y = b;
  if (x->group != y->group) return x->group < y->group ? -1 : 1;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

static int64_t group_of(const pixcon_sample_params *p, int64_t i) {
  int64_t pred = p->strategy == PIXCON_SAMPLE_HARD_EASY ? p->predictions[i] : 0;
  return pixcon_sample_group(p, i, p->labels[i], pred);
}

/* Flags the selected pixels; returns the status of pixcon_sample_quotas. */
static pixcon_status flag_selected(const pixcon_sample_params *p, int64_t *counts, int64_t *quotas,
                                   keyed_pixel *pixels, uint8_t *selected, int64_t *bag_offsets) {
  int64_t n = p->num_images * p->pixels_per_image, groups = pixcon_sample_num_groups(p), valid = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t g = group_of(p, i);
    if (g < 0) continue;
    ++counts[g];
    pixels[valid].group = g;
    pixels[valid].key = pixcon_pixel_key(p->seed, i);
    pixels[valid].index = i;
    ++valid;
  }
  pixcon_status st = pixcon_sample_quotas(p, counts, quotas, bag_offsets, NULL, 0);
  if (st != PIXCON_OK) return st;
  qsort(pixels, (size_t)valid, sizeof *pixels, compare_keyed);
  int64_t rank = 0;
  for (int64_t k = 0; k < valid; ++k) {
    rank = k > 0 && pixels[k].group == pixels[k - 1].group ? rank + 1 : 0;
    if (pixels[k].group < groups && rank < quotas[pixels[k].group]) selected[pixels[k].index] = 1;
  }
  return PIXCON_OK;
}

pixcon_status pixcon_reference_sample(const pixcon_sample_params *p, int64_t *indices,
                                      int64_t *bag_offsets) {
  pixcon_status st = pixcon_sample_params_check_shape(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  int64_t n = p->num_images * p->pixels_per_image, groups = pixcon_sample_num_groups(p);
  int64_t *counts = calloc((size_t)groups + 1, sizeof *counts);
  int64_t *quotas = calloc((size_t)groups + 1, sizeof *quotas);
  keyed_pixel *pixels = malloc(((size_t)n + 1) * sizeof *pixels);
  uint8_t *selected = calloc((size_t)n + 1, 1);
  /* no status means "out of memory"; the closest is that the memory it needs was not there */
  st = PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  if (counts && quotas && pixels && selected)
    st = flag_selected(p, counts, quotas, pixels, selected, bag_offsets);
  if (st == PIXCON_OK) {
    int64_t out = 0;
    for (int64_t i = 0; i < n; ++i)
      if (selected[i]) indices[out++] = i;
  }
  free(counts);
  free(quotas);
  free(pixels);
  free(selected);
  return st;
}
