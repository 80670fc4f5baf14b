/*
 * pixcon C API: auxiliary labels by spherical k-means (docs/design.md section 4b; Zhang et al.,
 * NeurIPS 2021, "Looking Beyond Single Images").
 *
 * Rows are pixel features x_i in R^D, addressed as (image, pixel) with element strides, so a
 * [B, D, H, W] feature map is read in place. A row is valid when its `valid` flag is set (or
 * `valid` is NULL) and its norm is finite and nonzero. Every run follows these steps; the CPU and
 * CUDA entry points perform the same floating-point operations in the same order, so they give the
 * same labels and centroids, bit for bit, for any thread count (the rules marked [exact] below
 * fix that order).
 *
 *  1. Unit rows: u_i = x_i / ||x_i|| in a [n, Dp] copy, Dp = D rounded up to 16, padded with zeros.
 *     [exact] ||x||^2 = sum over d ascending of (double)x_d^2 (each square exact in double),
 *     u_id = (float)((double)x_d / sqrt(||x||^2)).
 *  2. For each restart r = 0 .. restarts-1:
 *     a. Initialisation, Philox-keyed (pixcon_kmeans_draw32/64):
 *        - random: the K valid rows with the smallest (draw32(seed, r, 0, i), i), in that order;
 *        - k-means++, greedy (Arthur and Vassilvitskii 2007, with the local trials of
 *          scikit-learn's kmeans_plusplus): c_0 is the valid row with the smallest
 *          (draw32(seed, r, 0, i), i); for t = 1 .. the weight of a valid row is
 *          w_i = pixcon_kmeans_weight(b_i), b_i its max cosine to the chosen centroids, an
 *          integer. Trial j < pixcon_kmeans_trials(K) draws the first row (ascending i) whose
 *          inclusive prefix sum of w exceeds pixcon_kmeans_target(draw64(seed, r, t, j), sum w);
 *          c_t is the trial whose potential sum_i pixcon_kmeans_weight(max(b_i, cos(u_i, row)))
 *          is smallest (ties: the first trial). When sum w = 0, c_t is the valid row with the
 *          smallest (draw32(seed, r, t, i), i).
 *        Only min(K, valid rows) centroids are drawn; the others are zero vectors.
 *     b. `iterations` times: assign, then update.
 *        - assign: label_i = argmax_k cos(u_i, c_k), ties to the smaller k, best_i its cosine.
 *          [exact] cos(u, c) = pixcon_kmeans_dot: 16 lanes, lane l accumulates fmaf(u_d, c_d, .)
 *          over d = l, l + 16, ... ascending; then lanes l += l + s for s = 8, 4, 2, 1.
 *        - update: S_k = sum of the unit rows labelled k. [exact] in double: members in ascending
 *          i, in chunks of PIXCON_KMEANS_CHUNK; each chunk summed in order from 0, the chunk sums
 *          added in order from 0. c_k = (float)(S_k / sqrt(sum over d ascending of fma(S_kd,
 *          S_kd, .))). Empty clusters, in ascending k, are re-seeded with the valid rows of lowest
 *          pixcon_kmeans_key(best_i, i) (farthest from their centroid), one row each, in that
 *          order; a cluster left without members and without a row to take keeps its centroid.
 *     c. A last assign. The restart's score is sum over valid rows of pixcon_kmeans_fixed(best_i),
 *        an integer, so it does not depend on the summation order.
 *  3. The restart with the highest score wins (ties: the smaller r). Its labels are returned,
 *     except that invalid rows and the m = pixcon_kmeans_num_outliers(outlier_fraction, n_valid)
 *     valid rows of lowest pixcon_kmeans_key(best_i, i) get ignore_index. Its centroids [K, D]
 *     are returned as float32 unit vectors (a zero vector for a centroid never drawn).
 *
 * Cost per assign: n K D multiply-adds (k-means++: about 1 + pixcon_kmeans_trials(K) passes of
 * n D per centroid), tiled (rows x clusters) with a running arg-max per row,
 * so the n x K matrix is never stored; per update O(n D). Memory: the unit copy (n Dp floats),
 * O(n) integers and O(K D) for the centroids.
 */
#ifndef PIXCON_KMEANS_H
#define PIXCON_KMEANS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "pixcon/philox.h"
#include "pixcon/pixcon.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pixcon_kmeans_init {
  PIXCON_KMEANS_PLUS_PLUS = 0,
  PIXCON_KMEANS_RANDOM = 1
} pixcon_kmeans_init;

#define PIXCON_KMEANS_LANES 16
#define PIXCON_KMEANS_CHUNK 256

typedef struct pixcon_kmeans_params {
  int64_t num_images;        /* B >= 0 */
  int64_t pixels_per_image;  /* P >= 0; rows n = B * P, row i = (i / P, i % P) */
  int64_t dim;               /* D >= 1 */
  const float *features;     /* x_i[d] = features[(i / P) * image_stride + (i % P) * pixel_stride
                                                  + d * dim_stride] */
  int64_t image_stride, pixel_stride, dim_stride; /* in elements, >= 0 */
  const uint8_t *valid;      /* [n], nonzero = use the row; NULL: every row */
  int64_t num_clusters;      /* K >= 1 */
  int64_t iterations;        /* >= 0 */
  int64_t restarts;          /* >= 1 */
  double outlier_fraction;   /* in [0, 1) */
  pixcon_kmeans_init init;
  uint64_t seed;
  int64_t ignore_index;      /* the label of invalid rows and outliers, outside [0, K) */
  int num_threads;           /* CPU: OpenMP threads, <= 0 for the runtime's default */
} pixcon_kmeans_params;

/* Checks sizes and options without reading the arrays (so it also serves device pointers):
 * n < 2^31, K < 2^31, and the options above. On failure returns PIXCON_ERROR_INVALID_ARGUMENT and
 * writes a message naming the argument (message may be NULL). */
pixcon_status pixcon_kmeans_params_check(const pixcon_kmeans_params *p, char *message,
                                         size_t message_size);

/* ---- CPU (host pointers) ---- */

/* Bytes of workspace pixcon_cpu_kmeans needs: about n (4 Dp + 29) + K Dp 16, plus 4 n
 * pixcon_kmeans_trials(K) for k-means++ (0 when the params are invalid). */
size_t pixcon_cpu_kmeans_workspace_size(const pixcon_kmeans_params *p);

/* The whole run above: labels [n] (int64) and centroids [K, D] (float32, row-major). */
pixcon_status pixcon_cpu_kmeans(const pixcon_kmeans_params *p, int64_t *labels, float *centroids,
                                void *workspace, size_t workspace_size);

/* ---- the [exact] rules, shared by both backends ---- */

#if defined(__CUDACC__)
#define PIXCON_KMEANS_FN static __host__ __device__ __forceinline__
#else
#define PIXCON_KMEANS_FN static inline
#endif

PIXCON_KMEANS_FN int64_t pixcon_kmeans_padded_dim(int64_t dim) {
  return (dim + PIXCON_KMEANS_LANES - 1) / PIXCON_KMEANS_LANES * PIXCON_KMEANS_LANES;
}

/* Philox4x32-10 keyed by the seed, counter (index low, index high, restart, step). */
PIXCON_KMEANS_FN pixcon_philox4x32 pixcon_kmeans_philox(uint64_t seed, int64_t restart, int64_t step,
                                                        int64_t index) {
  pixcon_philox4x32 c;
  c.v[0] = (uint32_t)(uint64_t)index;
  c.v[1] = (uint32_t)((uint64_t)index >> 32);
  c.v[2] = (uint32_t)restart;
  c.v[3] = (uint32_t)step;
  return pixcon_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

PIXCON_KMEANS_FN uint32_t pixcon_kmeans_draw32(uint64_t seed, int64_t restart, int64_t step,
                                               int64_t index) {
  return pixcon_kmeans_philox(seed, restart, step, index).v[0];
}

/* The k-means++ draw of trial j of step t: one 64-bit word (negative indices keep it apart from
 * the row draws). */
PIXCON_KMEANS_FN uint64_t pixcon_kmeans_draw64(uint64_t seed, int64_t restart, int64_t step, int64_t trial) {
  pixcon_philox4x32 r = pixcon_kmeans_philox(seed, restart, step, -1 - trial);
  return ((uint64_t)r.v[1] << 32) | r.v[0];
}

/* Local trials per greedy k-means++ step: 2 + floor(ln K), from integer thresholds ceil(e^m). */
PIXCON_KMEANS_FN int pixcon_kmeans_trials(int64_t num_clusters) {
  const int64_t ceil_exp[] = {3, 8, 21, 55, 149, 404, 1097, 2981, 8104, 22027, 59875, 162755, 442414,
                              1202605, 3269018, 8886111, 24154953, 65659970, 178482301, 485165196,
                              1318815735};
  int trials = 2;
  for (int m = 0; m < (int)(sizeof ceil_exp / sizeof ceil_exp[0]); ++m) trials += num_clusters >= ceil_exp[m];
  return trials;
}

/* floor(u / 2^64 * total), computed exactly: the prefix-sum target of a k-means++ draw. */
PIXCON_KMEANS_FN uint64_t pixcon_kmeans_target(uint64_t u, uint64_t total) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(u, total);
#else
  return (uint64_t)(((unsigned __int128)u * total) >> 64);
#endif
}

/* The k-means++ weight of a row whose best cosine to the chosen centroids is `cos`: (1 - cos),
 * proportional to the squared distance of unit vectors, in units of 2^-30 (at most 2^31). */
PIXCON_KMEANS_FN uint64_t pixcon_kmeans_weight(float cos) {
  float d = 1.0f - cos;
  if (!(d > 0.0f)) return 0;
  if (d > 2.0f) d = 2.0f;
  return (uint64_t)llrintf(d * 1073741824.0f);
}

/* A cosine in units of 2^-30, rounded to nearest even: scores add up exactly in any order
 * (n < 2^31 rows of |cos| <= 1 stay below 2^62). */
PIXCON_KMEANS_FN int64_t pixcon_kmeans_fixed(float cos) {
  return (int64_t)llrintf(cos * 1073741824.0f);
}

/* Orders rows by (cosine, index) as unsigned integers: the smallest key is the row farthest from
 * its centroid, ties to the smaller index. Needs n < 2^32 and a cosine that is not NaN. */
PIXCON_KMEANS_FN uint64_t pixcon_kmeans_key(float cos, int64_t index) {
  union {
    float f;
    uint32_t u;
  } bits;
  bits.f = cos + 0.0f; /* -0 and +0 are one cosine */
  uint32_t ordered = (bits.u & 0x80000000u) ? ~bits.u : (bits.u | 0x80000000u);
  return ((uint64_t)ordered << 32) | (uint32_t)index;
}

PIXCON_KMEANS_FN int64_t pixcon_kmeans_num_outliers(double fraction, int64_t num_valid) {
  return (int64_t)floor(fraction * (double)num_valid);
}

/* cos(u, c) of two padded unit rows in the [exact] order of step 2b (the serial form; the CPU
 * tiers and the CUDA kernels compute it vectorised, lane for lane the same). */
PIXCON_KMEANS_FN float pixcon_kmeans_dot(const float *u, const float *c, int64_t padded_dim) {
  float lane[PIXCON_KMEANS_LANES];
  for (int l = 0; l < PIXCON_KMEANS_LANES; ++l) lane[l] = 0.0f;
  for (int64_t d = 0; d < padded_dim; d += PIXCON_KMEANS_LANES)
    for (int l = 0; l < PIXCON_KMEANS_LANES; ++l) lane[l] = fmaf(u[d + l], c[d + l], lane[l]);
  for (int s = PIXCON_KMEANS_LANES / 2; s >= 1; s /= 2)
    for (int l = 0; l < s; ++l) lane[l] = lane[l] + lane[l + s];
  return lane[0];
}

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_KMEANS_H */
