/*
 * Spherical k-means on the CPU (kmeans.h): the driver of the steps, OpenMP-parallel over rows for
 * the unit copy, the assignment and the k-means++ weights, over clusters for the update. Every
 * decision that involves more than one row is made from integers (scores, weights, prefix sums)
 * or from sums in a fixed order, so the result does not depend on the thread count; compiled with
 * -ffp-contract=off so that no multiply-add fuses unless it is written as fma.
 *
 * Cost per restart: (iterations + 1) assignments of n K Dp multiply-adds (kmeans_tier.c), an
 * initialisation of n Dp (2 + floor(ln K)) per centroid drawn (greedy k-means++) or one sort of
 * the valid rows (random), and O(n Dp) per update. Memory: the workspace of pixcon_cpu_kmeans_workspace_size.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kmeans_tier.h"
#include "layout.h"
#include "pixcon/kmeans.h"

/* Rows per parallel work item: the centroids are reused across a chunk while they sit in cache. */
#define ROW_GRAIN 256
/* pixcon_kmeans_trials of any K < 2^31 */
#define MAX_TRIALS 23

typedef struct kmeans_ws {
  const pixcon_kmeans_params *p;
  int threads;
  int64_t n, k, dim, dp;
  int64_t num_valid;
  float *units;          /* n x dp */
  uint8_t *valid;        /* n */
  int32_t *label, *best_label;   /* n: this restart, the best restart */
  float *best, *best_best;       /* n: cosine to the own centroid */
  float *centroids, *best_centroids; /* k x dp */
  double *sums;          /* k x dp */
  int64_t *members;      /* k + 1: CSR offsets of the clusters' members */
  int64_t *cursor;       /* k: the counting sort's next slot per cluster */
  int32_t *order;        /* n: valid rows grouped by cluster, ascending within each */
  uint64_t *keys;        /* n: sort keys */
  uint64_t *chunk_sums;  /* ceil(n / ROW_GRAIN) */
  float *trial_cos;      /* n x trials: the cosines to each candidate of a k-means++ step */
  float *trial_units;    /* trials x dp: the candidates */
  uint64_t *potential;   /* trials */
} kmeans_ws;

typedef void (*assign_fn)(const pixcon_kmeans_rows *, const float *, int64_t, int32_t *, float *);
typedef void (*cosines_fn)(const pixcon_kmeans_rows *, const float *, int64_t, float *);

static void tier_kernels(assign_fn *assign, cosines_fn *cosines) {
  switch (pixcon_cpu_isa()) {
#if defined(PIXCON_HAVE_X86_TIERS)
    case PIXCON_ISA_AVX512:
      *assign = pixcon_cpu_kmeans_assign_avx512;
      *cosines = pixcon_cpu_kmeans_cosines_avx512;
      return;
    case PIXCON_ISA_AVX2:
      *assign = pixcon_cpu_kmeans_assign_avx2;
      *cosines = pixcon_cpu_kmeans_cosines_avx2;
      return;
#endif
    default:
      *assign = pixcon_cpu_kmeans_assign_scalar;
      *cosines = pixcon_cpu_kmeans_cosines_scalar;
  }
}

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

/* Lays the workspace out from `base` (NULL: only sizes it); returns its size. */
static size_t kmeans_layout(const pixcon_kmeans_params *p, unsigned char *base, kmeans_ws *w) {
  int64_t n = p->num_images * p->pixels_per_image, k = p->num_clusters;
  int64_t dp = pixcon_kmeans_padded_dim(p->dim);
  size_t off = 0;
#define CARVE(field, type, count)                                 \
  do {                                                            \
    if (base) w->field = (type *)(base + off);                    \
    off = align64(off + (size_t)(count) * sizeof(type));          \
  } while (0)
  CARVE(units, float, n * dp);
  CARVE(valid, uint8_t, n);
  CARVE(label, int32_t, n);
  CARVE(best_label, int32_t, n);
  CARVE(best, float, n);
  CARVE(best_best, float, n);
  CARVE(centroids, float, k * dp);
  CARVE(best_centroids, float, k * dp);
  CARVE(sums, double, k * dp);
  CARVE(members, int64_t, k + 1);
  CARVE(cursor, int64_t, k);
  CARVE(order, int32_t, n);
  CARVE(keys, uint64_t, n);
  CARVE(chunk_sums, uint64_t, (n + ROW_GRAIN - 1) / ROW_GRAIN + 1);
  CARVE(trial_cos, float, n * (p->init == PIXCON_KMEANS_PLUS_PLUS ? pixcon_kmeans_trials(k) : 0));
  CARVE(potential, uint64_t, MAX_TRIALS);
  CARVE(trial_units, float, MAX_TRIALS * dp);
#undef CARVE
  if (base) {
    w->p = p;
    w->n = n;
    w->k = k;
    w->dim = p->dim;
    w->dp = dp;
  }
  return off + 64; /* room to align the caller's pointer */
}

size_t pixcon_cpu_kmeans_workspace_size(const pixcon_kmeans_params *p) {
  if (pixcon_kmeans_params_check(p, NULL, 0) != PIXCON_OK) return 0;
  return kmeans_layout(p, NULL, NULL);
}

static int64_t num_chunks(int64_t n) { return (n + ROW_GRAIN - 1) / ROW_GRAIN; }

static pixcon_kmeans_rows chunk_rows(const kmeans_ws *w, int64_t c) {
  int64_t begin = c * ROW_GRAIN, end = begin + ROW_GRAIN < w->n ? begin + ROW_GRAIN : w->n;
  pixcon_kmeans_rows rows = {w->units + begin * w->dp, end - begin, w->dp};
  return rows;
}

/* Step 1: the unit copy and the valid flags. */
static void unit_rows(kmeans_ws *w) {
  const pixcon_kmeans_params *p = w->p;
  int64_t valid = 0;
#pragma omp parallel for schedule(static) num_threads(w->threads) reduction(+ : valid)
  for (int64_t i = 0; i < w->n; ++i) {
    int64_t image = i / p->pixels_per_image, pixel = i % p->pixels_per_image;
    const float *x = p->features + image * p->image_stride + pixel * p->pixel_stride;
    float *u = w->units + i * w->dp;
    double norm2 = 0.0;
    for (int64_t d = 0; d < w->dim; ++d) {
      double v = (double)x[d * p->dim_stride];
      norm2 += v * v; /* exact: a float squared fits a double */
    }
    int ok = (!p->valid || p->valid[i]) && norm2 > 0.0 && isfinite(norm2);
    w->valid[i] = (uint8_t)ok;
    valid += ok;
    double norm = ok ? sqrt(norm2) : 1.0;
    for (int64_t d = 0; d < w->dim; ++d) u[d] = ok ? (float)((double)x[d * p->dim_stride] / norm) : 0.0f;
    for (int64_t d = w->dim; d < w->dp; ++d) u[d] = 0.0f;
  }
  w->num_valid = valid;
}

/* The valid row with the smallest (draw32(seed, r, step, i), i), or -1 when there is none. */
static int64_t uniform_choice(const kmeans_ws *w, int64_t restart, int64_t step) {
  uint64_t least = UINT64_MAX;
#pragma omp parallel for schedule(static) num_threads(w->threads) reduction(min : least)
  for (int64_t i = 0; i < w->n; ++i)
    if (w->valid[i]) {
      uint64_t key = ((uint64_t)pixcon_kmeans_draw32(w->p->seed, restart, step, i) << 32) | (uint32_t)i;
      if (key < least) least = key;
    }
  return least == UINT64_MAX ? -1 : (int64_t)(uint32_t)least;
}

static void set_centroid(kmeans_ws *w, int64_t cluster, int64_t row) {
  memcpy(w->centroids + cluster * w->dp, w->units + row * w->dp, (size_t)w->dp * sizeof(float));
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* keys[0 .. count) = the valid rows' keys, sorted ascending; returns count. */
static int64_t sorted_keys(kmeans_ws *w, uint64_t (*key)(const kmeans_ws *, int64_t, int64_t), int64_t arg) {
  int64_t count = 0;
  for (int64_t i = 0; i < w->n; ++i)
    if (w->valid[i]) w->keys[count++] = key(w, i, arg);
  qsort(w->keys, (size_t)count, sizeof(uint64_t), compare_u64);
  return count;
}

static uint64_t random_init_key(const kmeans_ws *w, int64_t i, int64_t restart) {
  return ((uint64_t)pixcon_kmeans_draw32(w->p->seed, restart, 0, i) << 32) | (uint32_t)i;
}

static uint64_t farthest_key(const kmeans_ws *w, int64_t i, int64_t unused) {
  (void)unused;
  return pixcon_kmeans_key(w->best[i], i);
}

static void init_random(kmeans_ws *w, int64_t restart) {
  int64_t count = sorted_keys(w, random_init_key, restart);
  for (int64_t c = 0; c < w->k && c < count; ++c) set_centroid(w, c, (int64_t)(uint32_t)w->keys[c]);
}

/* The k-means++ weights of the valid rows into w->keys, their sums per chunk of rows into
 * w->chunk_sums; returns the total. */
static uint64_t weights(kmeans_ws *w) {
  int64_t chunks = num_chunks(w->n);
  uint64_t total = 0;
#pragma omp parallel for schedule(static) num_threads(w->threads) reduction(+ : total)
  for (int64_t c = 0; c < chunks; ++c) {
    uint64_t s = 0;
    for (int64_t i = c * ROW_GRAIN; i < w->n && i < (c + 1) * ROW_GRAIN; ++i) {
      w->keys[i] = w->valid[i] ? pixcon_kmeans_weight(w->best[i]) : 0;
      s += w->keys[i];
    }
    w->chunk_sums[c] = s;
    total += s;
  }
  return total;
}

/* The row whose inclusive prefix sum of weights first exceeds target < the sum of the weights. */
static int64_t weighted_choice(const kmeans_ws *w, uint64_t target) {
  uint64_t prefix = 0;
  int64_t c = 0;
  while (prefix + w->chunk_sums[c] <= target) prefix += w->chunk_sums[c++];
  for (int64_t i = c * ROW_GRAIN;; ++i) {
    prefix += w->keys[i];
    if (prefix > target) return i;
  }
}

/* One pass over the rows for all trials of a step: the cosines of every row to each candidate
 * (w->trial_cos, [n, trials]) and each candidate's potential. The candidates are copied next to
 * each other, so the pass is the assignment's tiled product with `trials` clusters and the unit
 * copy is streamed once per step, not once per trial. */
static void try_candidates(kmeans_ws *w, const int64_t *candidate, int trials, uint64_t *potential,
                           cosines_fn cosines) {
  for (int j = 0; j < trials; ++j)
    memcpy(w->trial_units + j * w->dp, w->units + candidate[j] * w->dp, (size_t)w->dp * sizeof(float));
  int64_t chunks = num_chunks(w->n);
  memset(potential, 0, (size_t)trials * sizeof(uint64_t));
#pragma omp parallel num_threads(w->threads)
  {
    uint64_t mine[MAX_TRIALS] = {0};
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      pixcon_kmeans_rows rows = chunk_rows(w, ch);
      const float *best = w->best + ch * ROW_GRAIN;
      const uint8_t *valid = w->valid + ch * ROW_GRAIN;
      float *cos = w->trial_cos + ch * ROW_GRAIN * trials;
      cosines(&rows, w->trial_units, trials, cos);
      for (int64_t i = 0; i < rows.count; ++i)
        for (int j = 0; j < trials && valid[i]; ++j) {
          float c = cos[i * trials + j];
          mine[j] += pixcon_kmeans_weight(c > best[i] ? c : best[i]);
        }
    }
#pragma omp critical
    for (int j = 0; j < trials; ++j) potential[j] += mine[j];
  }
}

/* Greedy k-means++ (kmeans.h): w->best holds the running max cosine to the chosen centroids. */
static void init_plus_plus(kmeans_ws *w, int64_t restart, cosines_fn cosines) {
  int64_t drawn = w->num_valid < w->k ? w->num_valid : w->k;
  for (int64_t t = 0; t < drawn; ++t) {
    uint64_t total = t > 0 ? weights(w) : 0;
    int64_t candidate[MAX_TRIALS];
    int trials = total == 0 ? 1 : pixcon_kmeans_trials(w->k), winner = 0;
    if (total == 0)
      candidate[0] = uniform_choice(w, restart, t);
    else
      for (int j = 0; j < trials; ++j)
        candidate[j] = weighted_choice(w, pixcon_kmeans_target(pixcon_kmeans_draw64(w->p->seed, restart, t, j), total));
    try_candidates(w, candidate, trials, w->potential, cosines);
    for (int j = 1; j < trials; ++j)
      if (w->potential[j] < w->potential[winner]) winner = j;
    set_centroid(w, t, candidate[winner]);
#pragma omp parallel for schedule(static) num_threads(w->threads)
    for (int64_t i = 0; i < w->n; ++i) {
      float cos = w->trial_cos[i * trials + winner];
      w->best[i] = (t == 0 || cos > w->best[i]) ? cos : w->best[i];
    }
  }
}

static void assign(kmeans_ws *w, assign_fn kernel) {
  int64_t chunks = num_chunks(w->n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(w->threads)
  for (int64_t c = 0; c < chunks; ++c) {
    pixcon_kmeans_rows rows = chunk_rows(w, c);
    kernel(&rows, w->centroids, w->k, w->label + c * ROW_GRAIN, w->best + c * ROW_GRAIN);
  }
}

/* members/order: the valid rows of each cluster, ascending (a counting sort). */
static void group_members(kmeans_ws *w) {
  memset(w->members, 0, (size_t)(w->k + 1) * sizeof(int64_t));
  for (int64_t i = 0; i < w->n; ++i)
    if (w->valid[i]) ++w->members[w->label[i] + 1];
  for (int64_t c = 0; c < w->k; ++c) w->members[c + 1] += w->members[c];
  memcpy(w->cursor, w->members, (size_t)w->k * sizeof(int64_t));
  for (int64_t i = 0; i < w->n; ++i)
    if (w->valid[i]) w->order[w->cursor[w->label[i]]++] = (int32_t)i;
}

/* S_k in the order of kmeans.h, then c_k = S_k / ||S_k|| (kept when S_k is zero). */
static void update_centroid(kmeans_ws *w, int64_t cluster) {
  double *s = w->sums + cluster * w->dp;
  memset(s, 0, (size_t)w->dp * sizeof(double));
  for (int64_t m0 = w->members[cluster]; m0 < w->members[cluster + 1]; m0 += PIXCON_KMEANS_CHUNK) {
    int64_t m1 = m0 + PIXCON_KMEANS_CHUNK < w->members[cluster + 1] ? m0 + PIXCON_KMEANS_CHUNK : w->members[cluster + 1];
    double chunk[PIXCON_KMEANS_LANES];
    for (int64_t d0 = 0; d0 < w->dp; d0 += PIXCON_KMEANS_LANES) {
      for (int l = 0; l < PIXCON_KMEANS_LANES; ++l) chunk[l] = 0.0;
      for (int64_t m = m0; m < m1; ++m) {
        const float *u = w->units + (int64_t)w->order[m] * w->dp + d0;
        for (int l = 0; l < PIXCON_KMEANS_LANES; ++l) chunk[l] += (double)u[l];
      }
      for (int l = 0; l < PIXCON_KMEANS_LANES; ++l) s[d0 + l] += chunk[l];
    }
  }
  double norm2 = 0.0;
  for (int64_t d = 0; d < w->dp; ++d) norm2 = fma(s[d], s[d], norm2);
  if (!(norm2 > 0.0)) return;
  double norm = sqrt(norm2);
  float *c = w->centroids + cluster * w->dp;
  for (int64_t d = 0; d < w->dp; ++d) c[d] = (float)(s[d] / norm);
}

/* Empty clusters, ascending, take the valid rows farthest from their centroids, one each. */
static void reseed_empty(kmeans_ws *w) {
  int64_t empty = 0;
  for (int64_t c = 0; c < w->k; ++c) empty += w->members[c + 1] == w->members[c];
  if (empty == 0) return;
  int64_t count = sorted_keys(w, farthest_key, 0), taken = 0;
  for (int64_t c = 0; c < w->k && taken < count; ++c)
    if (w->members[c + 1] == w->members[c]) set_centroid(w, c, (int64_t)(uint32_t)w->keys[taken++]);
}

static void update(kmeans_ws *w) {
  group_members(w);
#pragma omp parallel for schedule(dynamic, 1) num_threads(w->threads)
  for (int64_t c = 0; c < w->k; ++c) update_centroid(w, c);
  reseed_empty(w);
}

static int64_t score(const kmeans_ws *w) {
  int64_t total = 0;
#pragma omp parallel for schedule(static) num_threads(w->threads) reduction(+ : total)
  for (int64_t i = 0; i < w->n; ++i)
    if (w->valid[i]) total += pixcon_kmeans_fixed(w->best[i]);
  return total;
}

static void keep_best(kmeans_ws *w) {
  memcpy(w->best_label, w->label, (size_t)w->n * sizeof(int32_t));
  memcpy(w->best_best, w->best, (size_t)w->n * sizeof(float));
  memcpy(w->best_centroids, w->centroids, (size_t)(w->k * w->dp) * sizeof(float));
}

static uint64_t best_farthest_key(const kmeans_ws *w, int64_t i, int64_t unused) {
  (void)unused;
  return pixcon_kmeans_key(w->best_best[i], i);
}

static void write_outputs(kmeans_ws *w, int64_t *labels, float *centroids) {
  int64_t outliers = pixcon_kmeans_num_outliers(w->p->outlier_fraction, w->num_valid);
  for (int64_t i = 0; i < w->n; ++i) labels[i] = w->valid[i] ? w->best_label[i] : w->p->ignore_index;
  if (outliers > 0) {
    sorted_keys(w, best_farthest_key, 0);
    for (int64_t m = 0; m < outliers; ++m) labels[(uint32_t)w->keys[m]] = w->p->ignore_index;
  }
  for (int64_t c = 0; c < w->k; ++c)
    memcpy(centroids + c * w->dim, w->best_centroids + c * w->dp, (size_t)w->dim * sizeof(float));
}

pixcon_status pixcon_cpu_kmeans(const pixcon_kmeans_params *p, int64_t *labels, float *centroids,
                                void *workspace, size_t workspace_size) {
  pixcon_status st = pixcon_kmeans_params_check(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  if (workspace_size < kmeans_layout(p, NULL, NULL)) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  kmeans_ws w;
  memset(&w, 0, sizeof w);
  kmeans_layout(p, (unsigned char *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63), &w);
  w.threads = pixcon_resolve_threads(p->num_threads);
  assign_fn assign_kernel;
  cosines_fn cosines;
  tier_kernels(&assign_kernel, &cosines);

  unit_rows(&w);
  int64_t best_score = 0;
  for (int64_t r = 0; r < p->restarts; ++r) {
    memset(w.centroids, 0, (size_t)(w.k * w.dp) * sizeof(float));
    if (p->init == PIXCON_KMEANS_RANDOM)
      init_random(&w, r);
    else
      init_plus_plus(&w, r, cosines);
    for (int64_t it = 0; it < p->iterations; ++it) {
      assign(&w, assign_kernel);
      update(&w);
    }
    assign(&w, assign_kernel);
    int64_t s = score(&w);
    if (r == 0 || s > best_score) {
      best_score = s;
      keep_best(&w);
    }
  }
  write_outputs(&w, labels, centroids);
  return PIXCON_OK;
}
