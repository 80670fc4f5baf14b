/*
 * The k-means assignment micro-kernel of one instruction-set tier (compiled once per tier, like
 * contrastive_tier.c): cosines of unit rows against centroids in the exact order of kmeans.h
 * (lane l of 16 accumulates d = l, l + 16, ... with a fused multiply-add; then the tree
 * l += l + s, s = 8, 4, 2, 1), folded at once into a running arg-max per row, so the rows x
 * clusters matrix never exists. Every tier computes the same bits: the fused multiply-adds are
 * explicit (this file is compiled with -ffp-contract=off) and the tree's additions are the
 * scalar tree's, done sixteen pairs at a time by a transposing reduction.
 *
 * Shape: an MR x NR block of (row, cluster) pairs keeps one 16-lane accumulator per pair in
 * registers (AVX-512: 4 x 4, sixteen of its 32 registers; narrower tiers 2 x 2) and streams the
 * padded dimension; the centroids (K x Dp floats) stay in L2 for a chunk of rows.
 * Cost: rows x K x Dp multiply-adds, plus 15 vector shuffle-adds per 16 pairs.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "kmeans_tier.h"
#include "pixcon/kmeans.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define TIER_FN(name) CAT(name, CAT(_, PIXCON_FN_SUFFIX))

#if defined(__AVX512F__)
#define MR 4
#define NR 4
#else
#define MR 2
#define NR 2
#endif

/* The 64-byte vectors never cross a call boundary that another file sees (every helper is static
 * inline), so the narrower tiers' different argument-passing ABI does not matter. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline v16 fma16(v16 a, v16 b, v16 c) {
#if defined(__AVX512F__)
  return (v16)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
  union {
    v16 v;
    __m256 h[2];
  } x = {a}, y = {b}, z = {c}, r;
  r.h[0] = _mm256_fmadd_ps(x.h[0], y.h[0], z.h[0]);
  r.h[1] = _mm256_fmadd_ps(x.h[1], y.h[1], z.h[1]);
  return r.v;
#else
  v16 r;
  for (int l = 0; l < 16; ++l) r[l] = fmaf(a[l], b[l], c[l]);
  return r;
#endif
}

#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)

/* out[j] = the tree sum of a[j]'s lanes, for j < 16. Each step adds, for every pair, exactly the
 * lanes the scalar tree adds at that step: lanes l and l + 8, then l and l + 4, l and l + 2, 0 and 1. */
static inline v16 tree_sums(const v16 a[16]) {
  v16 b[8], c[4], d[2];
  for (int j = 0; j < 8; ++j)
    b[j] = SHUF(a[2 * j], a[2 * j + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           SHUF(a[2 * j], a[2 * j + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int j = 0; j < 4; ++j)
    c[j] = SHUF(b[2 * j], b[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           SHUF(b[2 * j], b[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  for (int j = 0; j < 2; ++j)
    d[j] = SHUF(c[2 * j], c[2 * j + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           SHUF(c[2 * j], c[2 * j + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  return SHUF(d[0], d[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         SHUF(d[0], d[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/* cos[r * NR + k] for the MR rows `row` and the NR centroids `cen` (pointers to padded rows). */
static inline v16 block_cosines(const float *const row[MR], const float *const cen[NR], int64_t dp) {
  v16 acc[16] = {{0}};
  for (int64_t d = 0; d < dp; d += PIXCON_KMEANS_LANES) {
    v16 x[MR], c[NR];
    for (int r = 0; r < MR; ++r) x[r] = load16(row[r] + d);
    for (int k = 0; k < NR; ++k) c[k] = load16(cen[k] + d);
    for (int r = 0; r < MR; ++r)
      for (int k = 0; k < NR; ++k) acc[r * NR + k] = fma16(x[r], c[k], acc[r * NR + k]);
  }
  return tree_sums(acc);
}

void TIER_FN(pixcon_cpu_kmeans_assign)(const pixcon_kmeans_rows *rows, const float *centroids,
                                        int64_t num_clusters, int32_t *label, float *best) {
  const int64_t dp = rows->padded_dim;
  for (int64_t i0 = 0; i0 < rows->count; i0 += MR) {
    const float *row[MR];
    for (int r = 0; r < MR; ++r) row[r] = rows->units + (i0 + r < rows->count ? i0 + r : i0) * dp;
    float top[MR];
    int32_t arg[MR];
    for (int r = 0; r < MR; ++r) {
      top[r] = -INFINITY;
      arg[r] = 0;
    }
    for (int64_t k0 = 0; k0 < num_clusters; k0 += NR) {
      const float *cen[NR];
      for (int k = 0; k < NR; ++k) cen[k] = centroids + (k0 + k < num_clusters ? k0 + k : k0) * dp;
      v16 cos = block_cosines(row, cen, dp);
      /* clusters in ascending order with a strict >, so ties go to the smaller cluster */
      for (int r = 0; r < MR; ++r)
        for (int k = 0; k < NR && k0 + k < num_clusters; ++k)
          if (cos[r * NR + k] > top[r]) {
            top[r] = cos[r * NR + k];
            arg[r] = (int32_t)(k0 + k);
          }
    }
    for (int r = 0; r < MR && i0 + r < rows->count; ++r) {
      label[i0 + r] = arg[r];
      best[i0 + r] = top[r];
    }
  }
}

void TIER_FN(pixcon_cpu_kmeans_cosines)(const pixcon_kmeans_rows *rows, const float *centroids,
                                         int64_t num_clusters, float *cos) {
  const int64_t dp = rows->padded_dim;
  for (int64_t i0 = 0; i0 < rows->count; i0 += MR) {
    const float *row[MR];
    for (int r = 0; r < MR; ++r) row[r] = rows->units + (i0 + r < rows->count ? i0 + r : i0) * dp;
    for (int64_t k0 = 0; k0 < num_clusters; k0 += NR) {
      const float *cen[NR];
      for (int k = 0; k < NR; ++k) cen[k] = centroids + (k0 + k < num_clusters ? k0 + k : k0) * dp;
      v16 block = block_cosines(row, cen, dp);
      for (int r = 0; r < MR && i0 + r < rows->count; ++r)
        for (int k = 0; k < NR && k0 + k < num_clusters; ++k) cos[(i0 + r) * num_clusters + k0 + k] = block[r * NR + k];
    }
  }
}
