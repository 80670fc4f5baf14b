/*
 * libFuzzer target of the k-means C API (kmeans.h): feature maps read through zero, overlapping,
 * negative or huge strides, NaN, infinite, zero and huge features, masks or none, cluster counts,
 * iterations, restarts and outlier fractions that are zero, negative, NaN or huge, every
 * ignore_index, sizes no caller could allocate.
 *
 * Properties: a rejected problem has a message, a zero workspace size and is refused by the
 * kernel; an accepted one runs without a sanitizer report and equals the step-by-step reference
 * bit for bit; workspace sizes never wrap around.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "pixcon/kmeans.h"
#include "pixcon_reference.h"

/* Work beyond this (rows x clusters x passes) is a long run asked for, not a hang. */
#define MAX_WORK 2000000

static const float kFeatures[] = {0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 0.25f, 2.0f, -3.0f, 1e-3f, 1.5f, 1e30f, -1e-30f,
                                  NAN, INFINITY};
static const double kFractions[] = {0.0, 0.05, 0.5, 0.999, 1.0, -0.1, NAN, INFINITY, 1e-300};

static void fail(const char *why) {
  fprintf(stderr, "pixcon fuzz_kmeans: %s\n", why);
  abort();
}

static void take_options(fuzz_input *in, pixcon_kmeans_params *p) {
  static const int64_t clusters[] = {1, 2, 3, 5, 8, 0, -1};
  static const int64_t ignores[] = {255, -1, 0, 1, INT64_MIN, INT64_MAX};
  p->num_clusters = take_range(in, 0, 7) ? TAKE_PICK(in, clusters) : TAKE_PICK(in, kHostileInts);
  p->iterations = take_range(in, 0, 7) ? take_range(in, 0, 4) : TAKE_PICK(in, kHostileInts);
  p->restarts = take_range(in, 0, 7) ? take_range(in, 1, 3) : TAKE_PICK(in, kHostileInts);
  p->outlier_fraction = TAKE_PICK(in, kFractions);
  p->init = (pixcon_kmeans_init)take_range(in, 0, 2);
  p->seed = take_bits(in, 8);
  p->ignore_index = TAKE_PICK(in, ignores);
  p->num_threads = (int)take_range(in, 1, 3);
}

static void run_problem(const pixcon_kmeans_params *p) {
  char message[256];
  pixcon_status st = pixcon_kmeans_params_check(p, message, sizeof message);
  size_t bytes = pixcon_cpu_kmeans_workspace_size(p);
  int64_t n = p->num_images * p->pixels_per_image;
  if (st != PIXCON_OK) {
    if (message[0] == '\0') fail("a rejected problem has no message");
    if (bytes != 0) fail("a rejected problem has a workspace size");
    if (pixcon_cpu_kmeans(p, NULL, NULL, NULL, 0) == PIXCON_OK) fail("the kernel accepts a rejected problem");
    return;
  }
  double passes = ((double)p->iterations + 2) * (double)p->restarts * (double)(n + 1) * (double)p->num_clusters;
  if (passes > MAX_WORK) return;
  int64_t k = p->num_clusters, d = p->dim;
  int64_t *labels = malloc((size_t)(n + 1) * sizeof(int64_t)), *ref_labels = malloc((size_t)(n + 1) * sizeof(int64_t));
  float *centroids = malloc((size_t)(k * d + 1) * sizeof(float)), *ref_centroids = malloc((size_t)(k * d + 1) * sizeof(float));
  void *ws = malloc(bytes + 1);
  if (pixcon_cpu_kmeans(p, labels, centroids, ws, bytes) != PIXCON_OK) fail("the kernel rejects an accepted problem");
  if (pixcon_reference_kmeans(p, ref_labels, ref_centroids) != PIXCON_OK) fail("the reference rejects an accepted problem");
  if (memcmp(labels, ref_labels, (size_t)n * sizeof(int64_t)) != 0) fail("labels differ from the reference");
  if (memcmp(centroids, ref_centroids, (size_t)(k * d) * sizeof(float)) != 0) fail("centroids differ from the reference");
  free(labels);
  free(ref_labels);
  free(centroids);
  free(ref_centroids);
  free(ws);
}

/* A feature map in one of the layouts a caller passes ([B, D, P], [B, P, D], broadcast, overlapping,
 * arbitrary small or negative strides), allocated to exactly its extent. */
static float *take_features(fuzz_input *in, pixcon_kmeans_params *p) {
  int64_t b = p->num_images, hw = p->pixels_per_image, d = p->dim;
  switch (take_range(in, 0, 4)) {
    case 0: p->image_stride = d * hw, p->pixel_stride = 1, p->dim_stride = hw; break;
    case 1: p->image_stride = d * hw, p->pixel_stride = d, p->dim_stride = 1; break;
    case 2: p->image_stride = 0, p->pixel_stride = 0, p->dim_stride = 1; break;
    case 3: p->image_stride = 1, p->pixel_stride = 1, p->dim_stride = 1; break;
    default:
      p->image_stride = take_range(in, -3, 60), p->pixel_stride = take_range(in, -3, 20), p->dim_stride = take_range(in, -3, 20);
  }
  int64_t extent = 1;
  if (b > 0 && hw > 0 && d > 0 && p->image_stride >= 0 && p->pixel_stride >= 0 && p->dim_stride >= 0)
    extent += (b - 1) * p->image_stride + (hw - 1) * p->pixel_stride + (d - 1) * p->dim_stride;
  float *x = malloc((size_t)extent * sizeof(float));
  for (int64_t e = 0; e < extent; ++e) {
    int64_t v = take_range(in, 0, 13);
    x[e] = kFeatures[take_range(in, 0, 5) ? v % 10 : v];
  }
  return x;
}

static void run_huge(fuzz_input *in) {
  static float dummy[1];
  pixcon_kmeans_params p;
  memset(&p, 0, sizeof p);
  take_options(in, &p);
  p.num_images = TAKE_PICK(in, kHostileInts);
  p.pixels_per_image = TAKE_PICK(in, kHostileInts);
  p.dim = TAKE_PICK(in, kHostileInts);
  p.image_stride = p.pixel_stride = p.dim_stride = TAKE_PICK(in, kHostileInts);
  p.features = dummy;
  if (pixcon_kmeans_params_check(&p, NULL, 0) != PIXCON_OK) return;
  size_t bytes = pixcon_cpu_kmeans_workspace_size(&p);
  unsigned __int128 need = (unsigned __int128)(uint64_t)(p.num_images * p.pixels_per_image) * (uint64_t)p.dim * 4 +
                           (unsigned __int128)(uint64_t)p.num_clusters * (uint64_t)p.dim * 4;
  if (bytes != 0 && (unsigned __int128)bytes < need) fail("the workspace size wrapped around");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input in = {data, size, 0};
  if (take_range(&in, 0, 7) == 0) {
    run_huge(&in);
    return 0;
  }
  static const int64_t dims[] = {1, 2, 3, 16, 17, 33, 0, -1};
  pixcon_kmeans_params p;
  memset(&p, 0, sizeof p);
  take_options(&in, &p);
  p.num_images = take_range(&in, 0, 3);
  p.pixels_per_image = take_range(&in, 0, 30);
  p.dim = TAKE_PICK(&in, dims);
  float *x = take_features(&in, &p);
  p.features = take_range(&in, 0, 15) ? x : NULL;
  int64_t n = p.num_images * p.pixels_per_image;
  uint8_t *valid = NULL;
  if (take_bool(&in)) {
    valid = malloc((size_t)n + 1);
    for (int64_t i = 0; i < n; ++i) valid[i] = (uint8_t)take_bool(&in);
  }
  p.valid = valid;
  run_problem(&p);
  free(x);
  free(valid);
  return 0;
}
