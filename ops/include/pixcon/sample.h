/*
 * pixcon C API: pixel sampling for the contrastive loss (docs/design.md section 4).
 *
 * Given labels [B, H*W] (and, for hard/easy mining, the predicted classes), pick flat pixel
 * indices into B*H*W and group them into bags (CSR offsets) for pixcon_loss_params.
 *
 * Every strategy is the same three steps, shared by the CPU and CUDA paths:
 *  1. counts: each valid pixel (label != ignore_index) falls into one group (see
 *     pixcon_sample_group); count the pixels of every group.
 *  2. quotas: a pure function of the counts (pixcon_sample_quotas, on the host) says how many
 *     pixels to take from each group: the strategy's public rule.
 *  3. select: a group's `quota` pixels are those with the smallest (key, index) pairs, where
 *     key = pixcon_pixel_key(seed, index) (philox.h). For independent uniform keys this is a
 *     uniform sample without replacement; ties in the 32-bit key go to the smaller index.
 *     The selected indices are written in ascending order, so bag b holds its pixels sorted.
 * The result depends on nothing but the inputs and the seed: not on the device, nor the thread
 * count.
 *
 * Groups:
 *  - uniform:        g = image (per_image) or 0 (one bag for the batch); quota = min(count,
 *                    num_samples).
 *  - class_balanced: g = image * num_classes + label. Groups with count >= min_views qualify;
 *                    V = min(smallest qualifying count, max_views, max_total / #qualifying);
 *                    quota = V for qualifying groups, 0 otherwise (Pissas et al.).
 *  - hard_easy:      g = (image * num_classes + label) * 2 + hard, hard = (prediction != label).
 *                    The (image, class) pairs with hard + easy > max_views qualify; per pair
 *                    n = min(max_samples / #qualifying, max_views); with h, e the hard and easy
 *                    counts: if 2h >= n and 2e >= n: n/2 hard (rounded down), n - n/2 easy;
 *                    else if 2h >= n: all e easy and n - e hard; else: all h hard and n - h easy
 *                    (ContrastiveSeg's _hard_anchor_sampling).
 * Bags: uniform with per_image has one bag per image; every other case one bag for the batch.
 */
#ifndef PIXCON_SAMPLE_H
#define PIXCON_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "pixcon/pixcon.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pixcon_sample_strategy {
  PIXCON_SAMPLE_UNIFORM = 0,
  PIXCON_SAMPLE_CLASS_BALANCED = 1,
  PIXCON_SAMPLE_HARD_EASY = 2
} pixcon_sample_strategy;

typedef struct pixcon_sample_params {
  int64_t num_images;          /* B >= 0 */
  int64_t pixels_per_image;    /* H * W >= 0 */
  const int64_t *labels;       /* [B * H * W], contiguous, image-major */
  const int64_t *predictions;  /* [B * H * W] predicted classes; hard_easy only, else ignored */
  int64_t ignore_index;        /* pixels with this label are never sampled */
  int64_t num_classes;         /* every non-ignored label is in [0, num_classes); uniform: 0 means
                                  no upper bound (labels must still be >= 0) */
  pixcon_sample_strategy strategy;
  uint64_t seed;
  int per_image;               /* uniform: one bag per image (nonzero) or one for the batch */
  int64_t num_samples;         /* uniform: pixels per bag (>= 0) */
  int64_t min_views;           /* class_balanced (>= 1) */
  int64_t max_views;           /* class_balanced and hard_easy (>= 1) */
  int64_t max_total;           /* class_balanced (>= 0) */
  int64_t max_samples;         /* hard_easy (>= 0) */
  int num_threads;             /* CPU: OpenMP threads, <= 0 for the runtime's default */
} pixcon_sample_params;

/* Number of groups G of step 1 (see above); counts arrays have G + 1 entries. */
int64_t pixcon_sample_num_groups(const pixcon_sample_params *p);

/* Number of bags of the result: B for uniform with per_image, else 1. */
int64_t pixcon_sample_num_bags(const pixcon_sample_params *p);

/* Checks sizes, the strategy, its parameters and num_classes without reading the arrays
 * (so it also serves device pointers). G must be < 2^31. On failure returns
 * PIXCON_ERROR_INVALID_ARGUMENT and writes a message naming the argument (message may be NULL). */
pixcon_status pixcon_sample_params_check_shape(const pixcon_sample_params *p, char *message,
                                               size_t message_size);

/* Step 2 on the host. counts [G + 1] from step 1 (counts[G] = number of non-ignored pixels whose
 * label is outside [0, num_classes), see pixcon_sample_group; it must be 0). Writes quotas [G] and
 * bag_offsets [num_bags + 1] (CSR; bag_offsets[num_bags] = total number of selected pixels).
 * Fails with PIXCON_ERROR_INVALID_ARGUMENT (message names `labels`) when counts[G] != 0. */
pixcon_status pixcon_sample_quotas(const pixcon_sample_params *p, const int64_t *counts,
                                   int64_t *quotas, int64_t *bag_offsets, char *message,
                                   size_t message_size);

/* ---- CPU (host pointers), OpenMP-parallel, results independent of the thread count ---- */

/* Bytes of workspace (about 17 per pixel); independent of num_threads. 0 for invalid params. */
size_t pixcon_cpu_sample_workspace_size(const pixcon_sample_params *p);

/* Step 1: counts [G + 1]. */
pixcon_status pixcon_cpu_sample_counts(const pixcon_sample_params *p, int64_t *counts,
                                       void *workspace, size_t workspace_size);

/* Step 3: indices [bag_offsets[num_bags]] (from pixcon_sample_quotas), ascending. The workspace
 * must be the one passed to pixcon_cpu_sample_counts, unchanged since. A group gives
 * min(quota, members) pixels (quotas from pixcon_sample_quotas never exceed the members). */
pixcon_status pixcon_cpu_sample_select(const pixcon_sample_params *p, const int64_t *quotas,
                                       int64_t *indices, void *workspace, size_t workspace_size);

/* The group of pixel `index` (label y, prediction pred), or -1 when it is not sampled
 * (ignored). A label outside [0, num_classes) (uniform with num_classes 0: a negative label)
 * returns G, the overflow slot of counts. */
#if defined(__CUDACC__)
static __host__ __device__ __forceinline__
#else
static inline
#endif
int64_t pixcon_sample_group(const pixcon_sample_params *p, int64_t index, int64_t y, int64_t pred) {
  if (y == p->ignore_index) return -1;
  int64_t image = p->pixels_per_image > 0 ? index / p->pixels_per_image : 0;
  if (p->strategy == PIXCON_SAMPLE_UNIFORM) {
    if (y < 0 || (p->num_classes > 0 && y >= p->num_classes)) return p->per_image ? p->num_images : 1;
    return p->per_image ? image : 0;
  }
  int64_t groups = p->num_images * p->num_classes * (p->strategy == PIXCON_SAMPLE_HARD_EASY ? 2 : 1);
  if (y < 0 || y >= p->num_classes) return groups;
  int64_t pair = image * p->num_classes + y;
  return p->strategy == PIXCON_SAMPLE_HARD_EASY ? pair * 2 + (pred != y) : pair;
}

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_SAMPLE_H */
