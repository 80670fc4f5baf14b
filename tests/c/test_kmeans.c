/*
 * C unit test of the spherical k-means (kmeans.h): pixcon_cpu_kmeans against the step-by-step
 * reference, bit for bit, on random problems (strided maps, masks, D not a multiple of 16, fewer
 * valid rows than clusters, duplicate rows that empty clusters, both initialisations) for every
 * instruction-set tier this CPU has and 1, 2 and 3 threads; planted clusters recovered; the
 * outlier count; argument errors.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pixcon/kmeans.h"
#include "pixcon_reference.h"
#include "test_rng.h"

static int failures = 0;

static void expect(int ok, const char *ctx, const char *what) {
  if (!ok && failures++ < 20) fprintf(stderr, "FAIL %s: %s\n", ctx, what);
}

typedef struct problem {
  pixcon_kmeans_params p;
  float *features;
  uint8_t *valid;
} problem;

/* A [B, D, H*W] map (strided rows) or [n, D] rows, points around `centres` random directions. */
static problem make_problem(int64_t b, int64_t hw, int64_t dim, int64_t k, int channels_first) {
  problem q;
  memset(&q, 0, sizeof q);
  int64_t n = b * hw, centres = 1 + below(6);
  q.features = calloc((size_t)(n * dim + 1), sizeof(float));
  float *centre = calloc((size_t)(centres * dim), sizeof(float));
  for (int64_t c = 0; c < centres * dim; ++c) centre[c] = (float)(uniform() * 2 - 1);
  int duplicates = below(3) == 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t c = below(centres), image = i / hw, pixel = i % hw;
    for (int64_t d = 0; d < dim; ++d) {
      float v = duplicates ? centre[c * dim + d] : centre[c * dim + d] + (float)(uniform() - 0.5) * 0.6f;
      if (below(50) == 0) v = 0.0f;
      int64_t at = channels_first ? image * dim * hw + d * hw + pixel : i * dim + d;
      q.features[at] = v;
    }
  }
  free(centre);
  if (below(2)) {
    q.valid = malloc((size_t)n + 1);
    for (int64_t i = 0; i < n; ++i) q.valid[i] = below(5) != 0;
  }
  pixcon_kmeans_params p = {0};
  p.num_images = channels_first ? b : 1;
  p.pixels_per_image = channels_first ? hw : n;
  p.dim = dim;
  p.features = q.features;
  p.image_stride = channels_first ? dim * hw : 0;
  p.pixel_stride = channels_first ? 1 : dim;
  p.dim_stride = channels_first ? hw : 1;
  p.valid = q.valid;
  p.num_clusters = k;
  p.iterations = below(6);
  p.restarts = 1 + below(3);
  p.outlier_fraction = below(2) ? 0.05 * below(3) : 0.0;
  p.init = below(3) ? PIXCON_KMEANS_PLUS_PLUS : PIXCON_KMEANS_RANDOM;
  p.seed = next_u64();
  p.ignore_index = 255;
  q.p = p;
  return q;
}

static int64_t rows_of(const pixcon_kmeans_params *p) { return p->num_images * p->pixels_per_image; }

static pixcon_status run_cpu(const pixcon_kmeans_params *p, int64_t *labels, float *centroids) {
  size_t bytes = pixcon_cpu_kmeans_workspace_size(p);
  void *ws = malloc(bytes);
  pixcon_status st = pixcon_cpu_kmeans(p, labels, centroids, ws, bytes);
  free(ws);
  return st;
}

static void test_matches_reference(void) {
  static const pixcon_isa isas[] = {PIXCON_ISA_SCALAR, PIXCON_ISA_AVX2, PIXCON_ISA_AVX512};
  for (int t = 0; t < 40; ++t) {
    int64_t dim = 1 + below(40), k = 1 + below(12);
    problem q = make_problem(1 + below(3), 1 + below(90), dim, k, (int)below(2));
    int64_t n = rows_of(&q.p);
    int64_t *want = malloc((size_t)(n + 1) * sizeof(int64_t)), *got = malloc((size_t)(n + 1) * sizeof(int64_t));
    float *want_c = malloc((size_t)(k * dim) * sizeof(float)), *got_c = malloc((size_t)(k * dim) * sizeof(float));
    expect(pixcon_reference_kmeans(&q.p, want, want_c) == PIXCON_OK, "reference", "runs");
    for (int a = 0; a < 3; ++a) {
      if (!pixcon_cpu_isa_supported(isas[a])) continue;
      pixcon_cpu_set_isa(isas[a]);
      for (int threads = 1; threads <= 3; ++threads) {
        q.p.num_threads = threads;
        char ctx[96];
        snprintf(ctx, sizeof ctx, "case %d, %s, %d threads", t, pixcon_isa_name(isas[a]), threads);
        expect(run_cpu(&q.p, got, got_c) == PIXCON_OK, ctx, "runs");
        expect(memcmp(want, got, (size_t)n * sizeof(int64_t)) == 0, ctx, "labels equal the reference's");
        expect(memcmp(want_c, got_c, (size_t)(k * dim) * sizeof(float)) == 0, ctx, "centroids equal the reference's");
      }
    }
    pixcon_cpu_set_isa(PIXCON_ISA_AUTO);
    free(want), free(got), free(want_c), free(got_c), free(q.features), free(q.valid);
  }
}

/* 8 planted directions in D = 32, 95 % of the rows near them and 5 % uniform on the sphere. */
static void test_planted_clusters(void) {
  const int64_t n = 4000, dim = 32, k = 8;
  float *x = malloc((size_t)(n * dim) * sizeof(float)), centre[8 * 32];
  int64_t *truth = malloc((size_t)n * sizeof(int64_t)), *labels = malloc((size_t)n * sizeof(int64_t));
  float centroids[8 * 32];
  int good = 0;
  for (int seed = 0; seed < 10; ++seed) {
    for (int64_t c = 0; c < k * dim; ++c) centre[c] = (float)(uniform() * 2 - 1);
    for (int64_t i = 0; i < n; ++i) {
      truth[i] = i % 20 == 0 ? -1 : below(k);
      for (int64_t d = 0; d < dim; ++d)
        x[i * dim + d] = truth[i] < 0 ? (float)(uniform() * 2 - 1) : centre[truth[i] * dim + d] + (float)(uniform() - 0.5f) * 0.4f;
    }
    pixcon_kmeans_params p = {1, n, dim, x, 0, dim, 1, NULL, k, 20, 3, 0.05, PIXCON_KMEANS_PLUS_PLUS, (uint64_t)seed, 255, 0};
    expect(run_cpu(&p, labels, centroids) == PIXCON_OK, "planted", "runs");
    int64_t ignored = 0, agree = 0, counted = 0;
    int64_t table[8][8] = {{0}};
    for (int64_t i = 0; i < n; ++i) {
      ignored += labels[i] == 255;
      if (labels[i] != 255 && truth[i] >= 0) table[labels[i]][truth[i]]++, ++counted;
    }
    for (int a = 0; a < 8; ++a) {
      int64_t top = 0;
      for (int c = 0; c < 8; ++c) top = table[a][c] > top ? table[a][c] : top;
      agree += top;
    }
    expect(ignored == (int64_t)floor(0.05 * n), "planted", "exactly floor(0.05 n) rows ignored");
    good += agree >= 0.99 * counted;
  }
  expect(good >= 9, "planted", "purity >= 0.99 for at least 9 of 10 seeds");
  free(x), free(truth), free(labels);
}

static void test_trials_are_two_plus_floor_log(void) {
  for (int64_t k = 1; k < 200000; ++k)
    if (pixcon_kmeans_trials(k) != 2 + (int)floor(log((double)k))) {
      expect(0, "trials", "2 + floor(ln K)");
      return;
    }
}

static void test_errors(void) {
  float x[4] = {1, 0, 0, 1};
  pixcon_kmeans_params good = {1, 2, 2, x, 0, 2, 1, NULL, 2, 5, 1, 0.0, PIXCON_KMEANS_PLUS_PLUS, 0, -1, 1};
  char msg[256];
  expect(pixcon_kmeans_params_check(&good, msg, sizeof msg) == PIXCON_OK && msg[0] == 0, "errors", "good params pass");
  pixcon_kmeans_params p = good;
  p.num_clusters = 0;
  expect(pixcon_kmeans_params_check(&p, msg, sizeof msg) != PIXCON_OK && strstr(msg, "num_clusters"), "errors", "num_clusters named");
  p = good;
  p.outlier_fraction = 1.0;
  expect(pixcon_kmeans_params_check(&p, msg, sizeof msg) != PIXCON_OK && strstr(msg, "outlier_fraction"), "errors", "outlier_fraction named");
  p = good;
  p.restarts = 0;
  expect(pixcon_kmeans_params_check(&p, msg, sizeof msg) != PIXCON_OK && strstr(msg, "restarts"), "errors", "restarts named");
  p = good;
  p.ignore_index = 1;
  expect(pixcon_kmeans_params_check(&p, msg, sizeof msg) != PIXCON_OK && strstr(msg, "ignore_index"), "errors", "ignore_index inside [0, K) refused");
  p = good;
  p.features = NULL;
  expect(pixcon_kmeans_params_check(&p, msg, sizeof msg) != PIXCON_OK && strstr(msg, "features"), "errors", "NULL features named");
  int64_t labels[2];
  float cen[4];
  expect(pixcon_cpu_kmeans(&good, labels, cen, x, 1) == PIXCON_ERROR_WORKSPACE_TOO_SMALL, "errors", "small workspace refused");
}

int main(void) {
  rng_seed(0x6b6d65616e73ull);
  test_matches_reference();
  test_planted_clusters();
  test_trials_are_two_plus_floor_log();
  test_errors();
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("k-means: all checks passed\n");
  return 0;
}
