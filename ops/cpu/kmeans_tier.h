/* Entry points of each compiled k-means tier (kmeans_tier.c built per instruction set). */
#ifndef PIXCON_CPU_KMEANS_TIER_H
#define PIXCON_CPU_KMEANS_TIER_H

#include <stdint.h>

/* `count` consecutive unit rows of `padded_dim` floats (a multiple of 16, zero-padded). */
typedef struct pixcon_kmeans_rows {
  const float *units;
  int64_t count;
  int64_t padded_dim;
} pixcon_kmeans_rows;

/* assign: label[i], best[i]: the arg-max over the padded centroids [num_clusters, padded_dim] of
 * the cosine of row i (ties to the smaller cluster) and that cosine.
 * cosines: cos[i * num_clusters + k], every cosine of the rows to the centroids. */
#define PIXCON_DECLARE_KMEANS_TIER(sfx)                                                          \
  void pixcon_cpu_kmeans_assign_##sfx(const pixcon_kmeans_rows *rows, const float *centroids,    \
                                      int64_t num_clusters, int32_t *label, float *best);        \
  void pixcon_cpu_kmeans_cosines_##sfx(const pixcon_kmeans_rows *rows, const float *centroids,   \
                                       int64_t num_clusters, float *cos);

PIXCON_DECLARE_KMEANS_TIER(scalar)
#if defined(PIXCON_HAVE_X86_TIERS)
PIXCON_DECLARE_KMEANS_TIER(avx2)
PIXCON_DECLARE_KMEANS_TIER(avx512)
#endif

#endif /* PIXCON_CPU_KMEANS_TIER_H */
