/*
 * The spherical k-means of kmeans.h written step by step as its comment states it: one thread,
 * one row and one cluster at a time, the serial pixcon_kmeans_dot, sorts with qsort. The kernels'
 * labels and centroids must equal these bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pixcon/kmeans.h"
#include "pixcon_reference.h"

typedef struct ref_state {
  const pixcon_kmeans_params *p;
  int64_t n, k, dp, num_valid;
  float *units, *cen, *best;
  uint8_t *valid;
  int32_t *label;
} ref_state;

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static void ref_units(ref_state *s) {
  const pixcon_kmeans_params *p = s->p;
  for (int64_t i = 0; i < s->n; ++i) {
    const float *x = p->features + (i / p->pixels_per_image) * p->image_stride + (i % p->pixels_per_image) * p->pixel_stride;
    double norm2 = 0.0;
    for (int64_t d = 0; d < p->dim; ++d) norm2 = fma((double)x[d * p->dim_stride], (double)x[d * p->dim_stride], norm2);
    s->valid[i] = (!p->valid || p->valid[i]) && norm2 > 0.0 && isfinite(norm2);
    s->num_valid += s->valid[i];
    for (int64_t d = 0; d < p->dim && s->valid[i]; ++d)
      s->units[i * s->dp + d] = (float)((double)x[d * p->dim_stride] / sqrt(norm2));
  }
}

static uint64_t draw_key(const ref_state *s, int64_t r, int64_t step, int64_t i) {
  return ((uint64_t)pixcon_kmeans_draw32(s->p->seed, r, step, i) << 32) | (uint32_t)i;
}

static int64_t ref_uniform(const ref_state *s, int64_t r, int64_t step) {
  int64_t pick = -1;
  for (int64_t i = 0; i < s->n; ++i)
    if (s->valid[i] && (pick < 0 || draw_key(s, r, step, i) < draw_key(s, r, step, pick))) pick = i;
  return pick;
}

static void ref_init(ref_state *s, int64_t r, uint64_t *keys) {
  memset(s->cen, 0, (size_t)(s->k * s->dp) * sizeof(float));
  int64_t drawn = s->num_valid < s->k ? s->num_valid : s->k;
  if (s->p->init == PIXCON_KMEANS_RANDOM) {
    int64_t count = 0;
    for (int64_t i = 0; i < s->n; ++i)
      if (s->valid[i]) keys[count++] = draw_key(s, r, 0, i);
    qsort(keys, (size_t)count, sizeof *keys, compare_u64);
    for (int64_t c = 0; c < drawn; ++c) memcpy(s->cen + c * s->dp, s->units + (uint32_t)keys[c] * s->dp, (size_t)s->dp * sizeof(float));
    return;
  }
  for (int64_t t = 0; t < drawn; ++t) {
    int64_t pick = -1;
    if (t == 0) {
      pick = ref_uniform(s, r, 0);
    } else {
      uint64_t total = 0;
      for (int64_t i = 0; i < s->n; ++i) total += s->valid[i] ? pixcon_kmeans_weight(s->best[i]) : 0;
      if (total == 0) {
        pick = ref_uniform(s, r, t);
      } else {
        uint64_t least = 0;
        for (int j = 0; j < pixcon_kmeans_trials(s->k); ++j) {
          uint64_t target = pixcon_kmeans_target(pixcon_kmeans_draw64(s->p->seed, r, t, j), total), prefix = 0;
          int64_t candidate = 0;
          for (;; ++candidate) {
            prefix += s->valid[candidate] ? pixcon_kmeans_weight(s->best[candidate]) : 0;
            if (prefix > target) break;
          }
          uint64_t potential = 0;
          for (int64_t i = 0; i < s->n; ++i) {
            float c = pixcon_kmeans_dot(s->units + i * s->dp, s->units + candidate * s->dp, s->dp);
            potential += s->valid[i] ? pixcon_kmeans_weight(c > s->best[i] ? c : s->best[i]) : 0;
          }
          if (j == 0 || potential < least) {
            least = potential;
            pick = candidate;
          }
        }
      }
    }
    memcpy(s->cen + t * s->dp, s->units + pick * s->dp, (size_t)s->dp * sizeof(float));
    for (int64_t i = 0; i < s->n; ++i) {
      float c = pixcon_kmeans_dot(s->units + i * s->dp, s->cen + t * s->dp, s->dp);
      if (t == 0 || c > s->best[i]) s->best[i] = c;
    }
  }
}

static void ref_assign(ref_state *s) {
  for (int64_t i = 0; i < s->n; ++i) {
    s->label[i] = 0;
    s->best[i] = -INFINITY;
    for (int64_t c = 0; c < s->k; ++c) {
      float cos = pixcon_kmeans_dot(s->units + i * s->dp, s->cen + c * s->dp, s->dp);
      if (cos > s->best[i]) {
        s->best[i] = cos;
        s->label[i] = (int32_t)c;
      }
    }
  }
}

static void ref_update(ref_state *s, uint64_t *keys, double *sum) {
  int64_t taken = 0, count = -1;
  for (int64_t c = 0; c < s->k; ++c) {
    memset(sum, 0, (size_t)s->dp * sizeof(double));
    int64_t members = 0;
    double chunk[4096];
    for (int64_t d = 0; d < s->dp; ++d) chunk[d] = 0.0;
    for (int64_t i = 0; i < s->n; ++i) {
      if (!s->valid[i] || s->label[i] != c) continue;
      for (int64_t d = 0; d < s->dp; ++d) chunk[d] += (double)s->units[i * s->dp + d];
      if (++members % PIXCON_KMEANS_CHUNK == 0)
        for (int64_t d = 0; d < s->dp; ++d) {
          sum[d] += chunk[d];
          chunk[d] = 0.0;
        }
    }
    if (members % PIXCON_KMEANS_CHUNK != 0)
      for (int64_t d = 0; d < s->dp; ++d) sum[d] += chunk[d];
    if (members > 0) {
      double norm2 = 0.0;
      for (int64_t d = 0; d < s->dp; ++d) norm2 = fma(sum[d], sum[d], norm2);
      if (norm2 > 0.0)
        for (int64_t d = 0; d < s->dp; ++d) s->cen[c * s->dp + d] = (float)(sum[d] / sqrt(norm2));
      continue;
    }
    if (count < 0) {
      count = 0;
      for (int64_t i = 0; i < s->n; ++i)
        if (s->valid[i]) keys[count++] = pixcon_kmeans_key(s->best[i], i);
      qsort(keys, (size_t)count, sizeof *keys, compare_u64);
    }
    if (taken < count) memcpy(s->cen + c * s->dp, s->units + (uint32_t)keys[taken++] * s->dp, (size_t)s->dp * sizeof(float));
  }
}

pixcon_status pixcon_reference_kmeans(const pixcon_kmeans_params *p, int64_t *labels, float *centroids) {
  pixcon_status st = pixcon_kmeans_params_check(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  ref_state s = {p, p->num_images * p->pixels_per_image, p->num_clusters, pixcon_kmeans_padded_dim(p->dim), 0,
                 NULL, NULL, NULL, NULL, NULL};
  if (s.dp > 4096) return PIXCON_ERROR_INVALID_ARGUMENT;
  size_t n = (size_t)s.n + 1, kd = (size_t)(s.k * s.dp);
  s.units = calloc(n * (size_t)s.dp, sizeof(float));
  s.cen = calloc(kd, sizeof(float));
  s.best = calloc(n, sizeof(float));
  s.valid = calloc(n, 1);
  s.label = calloc(n, sizeof(int32_t));
  uint64_t *keys = calloc(n, sizeof(uint64_t));
  double *sum = calloc((size_t)s.dp, sizeof(double));
  float *win_cen = calloc(kd, sizeof(float)), *win_best = calloc(n, sizeof(float));
  int32_t *win_label = calloc(n, sizeof(int32_t));
  if (!s.units || !s.cen || !s.best || !s.valid || !s.label || !keys || !sum || !win_cen || !win_best || !win_label) {
    st = PIXCON_ERROR_WORKSPACE_TOO_SMALL;
    goto done;
  }
  ref_units(&s);
  int64_t win_score = 0;
  for (int64_t r = 0; r < p->restarts; ++r) {
    ref_init(&s, r, keys);
    for (int64_t it = 0; it < p->iterations; ++it) {
      ref_assign(&s);
      ref_update(&s, keys, sum);
    }
    ref_assign(&s);
    int64_t score = 0;
    for (int64_t i = 0; i < s.n; ++i) score += s.valid[i] ? pixcon_kmeans_fixed(s.best[i]) : 0;
    if (r == 0 || score > win_score) {
      win_score = score;
      memcpy(win_cen, s.cen, kd * sizeof(float));
      memcpy(win_best, s.best, (size_t)s.n * sizeof(float));
      memcpy(win_label, s.label, (size_t)s.n * sizeof(int32_t));
    }
  }
  int64_t count = 0;
  for (int64_t i = 0; i < s.n; ++i) {
    labels[i] = s.valid[i] ? win_label[i] : p->ignore_index;
    if (s.valid[i]) keys[count++] = pixcon_kmeans_key(win_best[i], i);
  }
  qsort(keys, (size_t)count, sizeof *keys, compare_u64);
  for (int64_t m = 0; m < pixcon_kmeans_num_outliers(p->outlier_fraction, s.num_valid); ++m)
    labels[(uint32_t)keys[m]] = p->ignore_index;
  for (int64_t c = 0; c < s.k; ++c) memcpy(centroids + c * p->dim, win_cen + c * s.dp, (size_t)p->dim * sizeof(float));
done:
  free(s.units);
  free(s.cen);
  free(s.best);
  free(s.valid);
  free(s.label);
  free(keys);
  free(sum);
  free(win_cen);
  free(win_best);
  free(win_label);
  return st;
}
