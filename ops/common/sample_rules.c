/* The sampling strategies' public rules (sample.h step 2): per-group quotas from per-group counts,
 * plus the parameter checks. Host code shared by the CPU and CUDA paths (the CUDA path copies its
 * counts here). Cost: O(G). */
#include <stdio.h>

#include "message.h"
#include "pixcon/sample.h"

int64_t pixcon_sample_num_groups(const pixcon_sample_params *p) {
  if (p->strategy == PIXCON_SAMPLE_UNIFORM) return p->per_image ? p->num_images : 1;
  return p->num_images * p->num_classes * (p->strategy == PIXCON_SAMPLE_HARD_EASY ? 2 : 1);
}

int64_t pixcon_sample_num_bags(const pixcon_sample_params *p) {
  return p->strategy == PIXCON_SAMPLE_UNIFORM && p->per_image ? p->num_images : 1;
}

pixcon_status pixcon_sample_params_check_shape(const pixcon_sample_params *p, char *message, size_t size) {
  pixcon_status st = pixcon_check_start(p, message, size);
  if (st != PIXCON_OK) return st;
  if (p->num_images < 0 || p->pixels_per_image < 0)
    return pixcon_invalid_argument(message, size, "labels: negative size [%lld, %lld]", (long long)p->num_images,
                (long long)p->pixels_per_image);
  /* 2^40 pixels keep every workspace size (about 17 bytes a pixel) exact in size_t */
  if (p->pixels_per_image > 0 && p->num_images > (INT64_C(1) << 40) / p->pixels_per_image)
    return pixcon_invalid_argument(message, size, "labels: at most 2^40 pixels, got %lld x %lld",
                                   (long long)p->num_images, (long long)p->pixels_per_image);
  int64_t n = p->num_images * p->pixels_per_image;
  if (n > 0 && !p->labels) return pixcon_invalid_argument(message, size, "labels is NULL");
  switch (p->strategy) {
    case PIXCON_SAMPLE_UNIFORM:
      if (p->num_samples < 0) return pixcon_invalid_argument(message, size, "num_samples must be >= 0, got %lld", (long long)p->num_samples);
      if (p->num_images > (((int64_t)1 << 31) - 2))
        return pixcon_invalid_argument(message, size, "labels: at most 2^31 - 2 images, got %lld", (long long)p->num_images);
      if (p->num_classes < 0) return pixcon_invalid_argument(message, size, "num_classes must be >= 0, got %lld", (long long)p->num_classes);
      return PIXCON_OK;
    case PIXCON_SAMPLE_CLASS_BALANCED:
      if (p->min_views < 1) return pixcon_invalid_argument(message, size, "min_views must be >= 1, got %lld", (long long)p->min_views);
      if (p->max_views < 1) return pixcon_invalid_argument(message, size, "max_views must be >= 1, got %lld", (long long)p->max_views);
      if (p->max_total < 0) return pixcon_invalid_argument(message, size, "max_total must be >= 0, got %lld", (long long)p->max_total);
      break;
    case PIXCON_SAMPLE_HARD_EASY:
      if (p->max_views < 1) return pixcon_invalid_argument(message, size, "max_views must be >= 1, got %lld", (long long)p->max_views);
      if (p->max_samples < 0) return pixcon_invalid_argument(message, size, "max_samples must be >= 0, got %lld", (long long)p->max_samples);
      if (n > 0 && !p->predictions) return pixcon_invalid_argument(message, size, "predictions are required by strategy 'hard_easy'");
      break;
    default:
      return pixcon_invalid_argument(message, size, "strategy: unknown value %d", (int)p->strategy);
  }
  if (p->num_classes < 0) return pixcon_invalid_argument(message, size, "num_classes must be >= 0, got %lld", (long long)p->num_classes);
  if (p->num_classes > 0 && p->num_images > (((int64_t)1 << 30) - 1) / p->num_classes)
    return pixcon_invalid_argument(message, size, "num_images * num_classes must be < 2^30, got %lld * %lld",
                (long long)p->num_images, (long long)p->num_classes);
  return PIXCON_OK;
}

static void uniform_quotas(const pixcon_sample_params *p, const int64_t *counts, int64_t g, int64_t *quotas) {
  for (int64_t k = 0; k < g; ++k) quotas[k] = counts[k] < p->num_samples ? counts[k] : p->num_samples;
}

/* Pissas et al.: V = min(smallest qualifying count, max_views, max_total // #qualifying). */
static void class_balanced_quotas(const pixcon_sample_params *p, const int64_t *counts, int64_t g,
                                  int64_t *quotas) {
  int64_t qualifying = 0, smallest = INT64_MAX;
  for (int64_t k = 0; k < g; ++k) {
    if (counts[k] < p->min_views) continue;
    ++qualifying;
    if (counts[k] < smallest) smallest = counts[k];
  }
  int64_t v = 0;
  if (qualifying > 0) {
    v = smallest < p->max_views ? smallest : p->max_views;
    if (p->max_total / qualifying < v) v = p->max_total / qualifying;
  }
  for (int64_t k = 0; k < g; ++k) quotas[k] = counts[k] >= p->min_views ? v : 0;
}

/* ContrastiveSeg's split of n views between h hard and e easy pixels, h + e >= n. Its test is
 * `count >= n_view / 2` in real division, i.e. 2 * count >= n. */
static void hard_easy_split(int64_t n, int64_t h, int64_t e, int64_t *hard, int64_t *easy) {
  if (2 * h >= n && 2 * e >= n) {
    *hard = n / 2;
    *easy = n - *hard;
  } else if (2 * h >= n) {
    *easy = e;
    *hard = n - e;
  } else {
    *hard = h;
    *easy = n - h;
  }
}

static void hard_easy_quotas(const pixcon_sample_params *p, const int64_t *counts, int64_t g, int64_t *quotas) {
  int64_t qualifying = 0;
  for (int64_t k = 0; k < g; k += 2)
    if (counts[k] + counts[k + 1] > p->max_views) ++qualifying;
  int64_t n = 0;
  if (qualifying > 0) {
    n = p->max_samples / qualifying;
    if (n > p->max_views) n = p->max_views;
  }
  /* group 2k is the easy half of pair k, group 2k + 1 the hard half */
  for (int64_t k = 0; k < g; k += 2) {
    quotas[k] = quotas[k + 1] = 0;
    if (counts[k] + counts[k + 1] > p->max_views)
      hard_easy_split(n, counts[k + 1], counts[k], &quotas[k + 1], &quotas[k]);
  }
}

pixcon_status pixcon_sample_quotas(const pixcon_sample_params *p, const int64_t *counts, int64_t *quotas,
                                   int64_t *bag_offsets, char *message, size_t size) {
  pixcon_status st = pixcon_sample_params_check_shape(p, message, size);
  if (st != PIXCON_OK) return st;
  int64_t g = pixcon_sample_num_groups(p);
  if (counts[g] != 0)
    return pixcon_invalid_argument(message, size, "labels: %lld pixels have a label outside [0, %lld) that is not ignore_index %lld",
                (long long)counts[g], (long long)p->num_classes, (long long)p->ignore_index);
  switch (p->strategy) {
    case PIXCON_SAMPLE_UNIFORM: uniform_quotas(p, counts, g, quotas); break;
    case PIXCON_SAMPLE_CLASS_BALANCED: class_balanced_quotas(p, counts, g, quotas); break;
    default: hard_easy_quotas(p, counts, g, quotas); break;
  }
  /* bags are per image (uniform, per_image: group == image) or one bag */
  int64_t bags = pixcon_sample_num_bags(p);
  bag_offsets[0] = 0;
  if (bags == g) {
    for (int64_t b = 0; b < bags; ++b) bag_offsets[b + 1] = bag_offsets[b] + quotas[b];
  } else {
    int64_t total = 0;
    for (int64_t k = 0; k < g; ++k) total += quotas[k];
    bag_offsets[1] = total;
  }
  return PIXCON_OK;
}
