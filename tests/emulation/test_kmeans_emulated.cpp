/* Agreement test of the CUDA spherical k-means (ops/cuda/kmeans.cu, run under the CPU emulation) with the
 * CPU one (pixcon_cpu_kmeans): labels and centroids must be identical bit for bit (memcmp), and the call
 * must make no host synchronisation and no device-to-host copy. Cases: planted clusters, D not a
 * multiple of 16, [B, D, H, W] maps read through their strides, valid masks and rows invalid by their
 * norm (zero, inf, NaN), more clusters than valid rows, duplicate rows that leave clusters empty (the
 * re-seeding), clusters of more than one chunk, more rows than one sort tile, both initialisations,
 * 1 and 3 restarts, 0 and several iterations, outlier fractions 0 and 0.05; no rows at all; the
 * argument errors. `--quick` runs the fixed cases only (for ThreadSanitizer).
 * Cost: each emulated launch runs real threads; about half a minute in all without sanitizers. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "pixcon/kmeans.h"
#include "pixcon/kmeans_cuda.h"
#include "../c/test_rng.h"
#include "cuda_check.h"

namespace {

int failures = 0;
cudaStream_t stream;

void fail(const std::string &ctx, const std::string &what) {
  if (failures++ < 25) fprintf(stderr, "FAIL %s: %s\n", ctx.c_str(), what.c_str());
}

struct Problem {
  pixcon_kmeans_params p;
  std::vector<float> features;
  std::vector<uint8_t> valid; /* empty: no mask */
  std::string name;
};

enum Rows { NOISY, DUPLICATES };

/* B images of hw pixels around `centres` random directions (exact copies of them with DUPLICATES), as a
 * [B, D, H, W] map (channels_first) or [n, D] rows; `masked`: a random valid mask; a few rows invalid by
 * their norm (all zero, one inf, one NaN). */
Problem make(const char *name, int64_t b, int64_t hw, int64_t dim, int64_t k, int centres, Rows rows,
             bool channels_first, bool masked) {
  Problem q;
  memset(&q.p, 0, sizeof q.p);
  q.name = name;
  const int64_t n = b * hw;
  std::vector<float> centre((size_t)(centres * dim));
  for (float &v : centre) v = (float)(uniform() * 2 - 1);
  q.features.assign((size_t)(n * dim), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = below(centres), image = i / hw, pixel = i % hw;
    const int spoil = below(40) == 0 ? 1 + below(3) : 0; /* 1: zero, 2: inf, 3: NaN */
    for (int64_t d = 0; d < dim; ++d) {
      float v = centre[(size_t)(c * dim + d)];
      if (rows == NOISY) v += (float)(uniform() - 0.5) * 0.5f;
      if (spoil == 1) v = 0.0f;
      if (spoil == 2 && d == 0) v = INFINITY;
      if (spoil == 3 && d == dim - 1) v = NAN;
      const int64_t at = channels_first ? image * dim * hw + d * hw + pixel : i * dim + d;
      q.features[(size_t)at] = v;
    }
  }
  if (masked) {
    q.valid.resize((size_t)n);
    for (uint8_t &v : q.valid) v = (uint8_t)(below(5) != 0 ? 1 + below(200) : 0); /* any nonzero is valid */
  }
  pixcon_kmeans_params &p = q.p;
  p.num_images = b;
  p.pixels_per_image = hw;
  p.dim = dim;
  p.image_stride = channels_first ? dim * hw : hw * dim;
  p.pixel_stride = channels_first ? 1 : dim;
  p.dim_stride = channels_first ? hw : 1;
  p.num_clusters = k;
  p.iterations = 4;
  p.restarts = 1;
  p.outlier_fraction = 0.0;
  p.init = PIXCON_KMEANS_PLUS_PLUS;
  p.seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)next_u64();
  p.ignore_index = -1;
  p.num_threads = 2;
  return q;
}

std::string describe(const Problem &q) {
  const pixcon_kmeans_params &p = q.p;
  char buf[256];
  snprintf(buf, sizeof buf, "%s (B %lld, P %lld, D %lld, K %lld, iterations %lld, restarts %lld, %s, outliers %g)",
           q.name.c_str(), (long long)p.num_images, (long long)p.pixels_per_image, (long long)p.dim,
           (long long)p.num_clusters, (long long)p.iterations, (long long)p.restarts,
           p.init == PIXCON_KMEANS_RANDOM ? "random" : "k-means++", p.outlier_fraction);
  return buf;
}

template <class T> T *device_copy(const std::vector<T> &v) {
  if (v.empty()) return nullptr;
  T *d = nullptr;
  CHECK_CUDA(cudaMalloc((void **)&d, v.size() * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

/* Runs both and compares; returns the CPU labels (for the planted-cluster check). */
std::vector<int64_t> run_case(const Problem &q) {
  const std::string ctx = describe(q);
  const pixcon_kmeans_params &p = q.p;
  const int64_t n = p.num_images * p.pixels_per_image, kd = p.num_clusters * p.dim;

  pixcon_kmeans_params cpu = p;
  cpu.features = q.features.data();
  cpu.valid = q.valid.empty() ? nullptr : q.valid.data();
  std::vector<int64_t> want_labels((size_t)n + 1);
  std::vector<float> want_centroids((size_t)kd);
  std::vector<unsigned char> cpu_ws(pixcon_cpu_kmeans_workspace_size(&cpu));
  if (pixcon_cpu_kmeans(&cpu, want_labels.data(), want_centroids.data(), cpu_ws.data(), cpu_ws.size()) != PIXCON_OK) {
    fail(ctx, "the CPU k-means failed");
    return want_labels;
  }

  pixcon_cuda_kmeans_params gpu;
  gpu.base = p;
  gpu.base.features = device_copy(q.features);
  gpu.base.valid = device_copy(q.valid);
  gpu.stream = stream;
  int64_t *labels = nullptr;
  float *centroids = nullptr;
  void *workspace = nullptr;
  const size_t ws = pixcon_cuda_kmeans_workspace_size(&gpu);
  if (ws == 0) fail(ctx, "workspace size 0 for valid parameters");
  CHECK_CUDA(cudaMalloc((void **)&labels, (size_t)n * sizeof(int64_t) + 1));
  CHECK_CUDA(cudaMalloc((void **)&centroids, (size_t)kd * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&workspace, ws + 1));
  /* an unaligned workspace: the op aligns it itself */
  pixcon_emu::reset_counters();
  const pixcon_status st = pixcon_cuda_kmeans(&gpu, labels, centroids, (char *)workspace + 1, ws);
  const pixcon_emu::Counters c = pixcon_emu::counters();
  if (st != PIXCON_OK) fail(ctx, "pixcon_cuda_kmeans returned " + std::to_string((int)st));
  if (c.host_syncs != 0 || c.device_to_host_copies != 0)
    fail(ctx, "the call synchronised the host " + std::to_string(c.host_syncs) + " times and copied to the host " +
                  std::to_string(c.device_to_host_copies) + " times");
  if (n > 0 && c.launches == 0) fail(ctx, "nothing was launched");

  std::vector<int64_t> got_labels((size_t)n + 1);
  std::vector<float> got_centroids((size_t)kd);
  if (n) CHECK_CUDA(cudaMemcpy(got_labels.data(), labels, (size_t)n * sizeof(int64_t), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(got_centroids.data(), centroids, (size_t)kd * sizeof(float), cudaMemcpyDeviceToHost));
  if (memcmp(got_labels.data(), want_labels.data(), (size_t)n * sizeof(int64_t)) != 0) {
    int64_t i = 0, differ = 0;
    while (got_labels[(size_t)i] == want_labels[(size_t)i]) ++i;
    for (int64_t j = 0; j < n; ++j) differ += got_labels[(size_t)j] != want_labels[(size_t)j];
    fail(ctx, "labels differ at " + std::to_string(differ) + " rows, first " + std::to_string(i) + ": " +
                  std::to_string(got_labels[(size_t)i]) + ", want " + std::to_string(want_labels[(size_t)i]));
  }
  if (memcmp(got_centroids.data(), want_centroids.data(), (size_t)kd * sizeof(float)) != 0) {
    int64_t e = 0;
    while (memcmp(&got_centroids[(size_t)e], &want_centroids[(size_t)e], sizeof(float)) == 0) ++e;
    char buf[160];
    snprintf(buf, sizeof buf, "centroid %lld, element %lld: %.9g, want %.9g", (long long)(e / p.dim),
             (long long)(e % p.dim), got_centroids[(size_t)e], want_centroids[(size_t)e]);
    fail(ctx, buf);
  }
  for (void *d : {(void *)gpu.base.features, (void *)gpu.base.valid, (void *)labels, (void *)centroids, workspace})
    if (d) CHECK_CUDA(cudaFree(d));
  return want_labels;
}

/* Both initialisations x 1 and 3 restarts x 0 and 3 iterations on one problem, with outlier fractions
 * 0 and 0.05 alternating so that each initialisation meets both. */
void run_variants(Problem q, int *cases) {
  int variant = 0;
  for (int init = 0; init < 2; ++init)
    for (int64_t restarts : {1, 3})
      for (int64_t iterations : {0, 3}) {
        q.p.init = (pixcon_kmeans_init)init;
        q.p.restarts = restarts;
        q.p.iterations = iterations;
        q.p.outlier_fraction = (variant++ + init) % 2 ? 0.05 : 0.0;
        run_case(q);
        ++*cases;
      }
}

/* Planted, well-separated clusters on their own: every valid row of one centre gets one label. */
void test_planted(int *cases) {
  const int64_t n = 160, dim = 20, k = 4;
  Problem q = make("planted", 1, n, dim, k, 1, NOISY, false, false);
  std::vector<int> truth((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    truth[(size_t)i] = (int)(i % k);
    for (int64_t d = 0; d < dim; ++d)
      q.features[(size_t)(i * dim + d)] = (d % k == i % k ? 5.0f : 0.0f) + (float)(uniform() - 0.5) * 0.2f;
  }
  q.p.restarts = 2;
  std::vector<int64_t> labels = run_case(q);
  ++*cases;
  std::vector<int64_t> of_centre((size_t)k, -2);
  bool consistent = true;
  for (int64_t i = 0; i < n; ++i) {
    int64_t &l = of_centre[(size_t)truth[(size_t)i]];
    if (l == -2) l = labels[(size_t)i];
    consistent &= l == labels[(size_t)i] && l >= 0;
  }
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = a + 1; b < k; ++b) consistent &= of_centre[(size_t)a] != of_centre[(size_t)b];
  if (!consistent) fail("planted", "the planted clusters are not recovered");
}

void test_errors() {
  Problem q = make("errors", 1, 10, 3, 2, 2, NOISY, false, false);
  pixcon_cuda_kmeans_params gpu;
  gpu.base = q.p;
  gpu.base.features = device_copy(q.features);
  gpu.stream = stream;
  if (pixcon_cuda_kmeans_workspace_size(nullptr) != 0) fail("errors", "workspace size of NULL params");
  int64_t *labels = nullptr;
  float *centroids = nullptr;
  CHECK_CUDA(cudaMalloc((void **)&labels, 10 * sizeof(int64_t)));
  CHECK_CUDA(cudaMalloc((void **)&centroids, 6 * sizeof(float)));
  if (pixcon_cuda_kmeans(nullptr, labels, centroids, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("errors", "NULL params accepted");
  if (pixcon_cuda_kmeans(&gpu, labels, centroids, nullptr, 0) != PIXCON_ERROR_WORKSPACE_TOO_SMALL)
    fail("errors", "no workspace accepted");
  if (pixcon_cuda_kmeans(&gpu, nullptr, centroids, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("errors", "NULL labels accepted");
  gpu.base.num_clusters = 0;
  if (pixcon_cuda_kmeans_workspace_size(&gpu) != 0) fail("errors", "workspace size of K = 0");
  if (pixcon_cuda_kmeans(&gpu, labels, centroids, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("errors", "K = 0 accepted");
  gpu.base.num_clusters = 2;
  gpu.base.outlier_fraction = 1.0;
  if (pixcon_cuda_kmeans(&gpu, labels, centroids, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("errors", "outlier_fraction = 1 accepted");
  for (void *d : {(void *)gpu.base.features, (void *)labels, (void *)centroids}) CHECK_CUDA(cudaFree(d));
}

}  // namespace

int main(int argc, char **argv) {
  rng_seed(0x94d049bb133111ebull);
  const bool quick = quick_option(argc, argv);
  CHECK_CUDA(cudaStreamCreate(&stream));
  int cases = 0;
  test_planted(&cases);
  /* D = 20 and 33 (padded to 32 and 48), a [B, D, H, W] map with a mask: every option */
  run_variants(make("strided map, masked", 2, 7 * 9, 33, 5, 4, NOISY, true, true), &cases);
  /* duplicates: few distinct rows for more clusters, so clusters run empty and are re-seeded */
  run_variants(make("duplicates", 1, 90, 20, 6, 3, DUPLICATES, false, false), &cases);
  {
    /* more clusters than valid rows: the undrawn centroids stay zero */
    Problem few = make("K > valid rows", 2, 6, 20, 9, 5, NOISY, true, true);
    few.p.restarts = 3;
    run_case(few);
    few.p.init = PIXCON_KMEANS_RANDOM;
    run_case(few);
    /* no valid row at all, one cluster, one row */
    Problem none = make("no valid row", 1, 5, 4, 3, 2, NOISY, false, true);
    none.valid.assign(5, 0);
    run_case(none);
    run_case(make("K = 1", 1, 40, 16, 1, 2, NOISY, false, false));
    run_case(make("one row", 1, 1, 1, 2, 1, NOISY, false, false));
    /* no rows: zero centroids */
    run_case(make("no rows", 0, 5, 3, 2, 1, NOISY, false, false));
    run_case(make("empty images", 3, 0, 3, 2, 1, NOISY, false, false));
    /* clusters of more than one chunk (256 members) and more rows than one sort tile (1024) */
    Problem big = make("chunks and sort passes", 2, 560, 17, 3, 2, NOISY, true, false);
    big.p.iterations = 1;
    big.p.outlier_fraction = 0.05;
    run_case(big);
    cases += 8;
  }
  if (!quick)
    for (int k = 0; k < 5; ++k, ++cases) {
      Problem q = make("random", 1 + below(3), 1 + below(50), 1 + below(40), 1 + below(12), 1 + below(6),
                       below(4) == 0 ? DUPLICATES : NOISY, below(2), below(2));
      q.p.init = (pixcon_kmeans_init)below(2);
      q.p.restarts = 1 + below(3);
      q.p.iterations = below(4);
      q.p.outlier_fraction = below(2) ? 0.0 : uniform() * 0.3;
      q.p.seed = next_u64();
      run_case(q);
    }
  test_errors();
  CHECK_CUDA(cudaStreamDestroy(stream));
  printf("%d cases, %d failures\n", cases, failures);
  return failures ? 1 : 0;
}
