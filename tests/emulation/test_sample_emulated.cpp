/* Agreement test of the CUDA pixel sampling (ops/cuda/sample.cu, run under the CPU emulation) with the plain
 * reference (pixcon_reference_sample) and the CPU kernels (pixcon_cpu_sample_counts/_select): counts, quotas,
 * bag offsets and indices must be identical on random problems of every strategy, plus ties and large G.
 * Cost: O(cases * B H W log) on the host; each emulated launch runs real threads (seconds in total). */
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

#include "pixcon/philox.h"
#include "pixcon/sample.h"
#include "pixcon/sample_cuda.h"
#include "pixcon_reference.h"
#include "../c/test_rng.h"
#include "cuda_check.h"

namespace {

template <class T> T pick(std::initializer_list<T> v) { return v.begin()[below((int64_t)v.size())]; }

int failures = 0;
cudaStream_t stream;

void fail(const std::string &ctx, const char *fmt, ...) {
  if (failures < 25) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "FAIL %s: ", ctx.c_str());
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
  }
  ++failures;
}

/* A device copy of v (exactly its size, so the emulation's range checks catch any overrun); NULL when empty. */
int64_t *to_device_exact(const std::vector<int64_t> &v) {
  if (v.empty()) return nullptr;
  int64_t *d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, v.size() * sizeof(int64_t)));
  CHECK_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
  return d;
}

std::vector<int64_t> to_host(const int64_t *d, int64_t count) {
  std::vector<int64_t> v((size_t)count);
  if (count) CHECK_CUDA(cudaMemcpy(v.data(), d, (size_t)count * sizeof(int64_t), cudaMemcpyDeviceToHost));
  return v;
}

void compare(const std::string &ctx, const char *what, const int64_t *got, const int64_t *want, int64_t count) {
  for (int64_t k = 0; k < count; ++k)
    if (got[k] != want[k]) {
      fail(ctx, "%s[%lld] = %lld, want %lld (of %lld)", what, (long long)k, (long long)got[k], (long long)want[k],
           (long long)count);
      return;
    }
}

struct Problem {
  pixcon_sample_params p;
  std::vector<int64_t> labels, predictions;
  bool with_predictions;

  /* p with its pointers into this problem's host arrays */
  pixcon_sample_params host() const {
    pixcon_sample_params h = p;
    h.labels = labels.empty() ? nullptr : labels.data();
    h.predictions = with_predictions && !predictions.empty() ? predictions.data() : nullptr;
    return h;
  }
};

std::string describe(const Problem &c) {
  const pixcon_sample_params &p = c.p;
  char buf[320];
  snprintf(buf, sizeof buf,
           "[B=%lld HW=%lld C=%lld strategy=%d per_image=%d ignore=%lld seed=%llu num_samples=%lld min_views=%lld "
           "max_views=%lld max_total=%lld max_samples=%lld]",
           (long long)p.num_images, (long long)p.pixels_per_image, (long long)p.num_classes, (int)p.strategy,
           p.per_image, (long long)p.ignore_index, (unsigned long long)p.seed, (long long)p.num_samples,
           (long long)p.min_views, (long long)p.max_views, (long long)p.max_total, (long long)p.max_samples);
  return buf;
}

/* One problem through the three implementations. misalign offsets the CUDA workspace from its allocation. */
void run_case(const Problem &c, size_t misalign) {
  const std::string ctx = describe(c);
  const pixcon_sample_params p = c.host();
  const int64_t n = p.num_images * p.pixels_per_image, groups = pixcon_sample_num_groups(&p);
  const int64_t bags = pixcon_sample_num_bags(&p);

  std::vector<int64_t> ref_indices((size_t)n + 1), ref_offsets((size_t)bags + 1);
  const pixcon_status ref_status = pixcon_reference_sample(&p, ref_indices.data(), ref_offsets.data());

  /* the CPU kernels */
  std::vector<unsigned char> cpu_ws(pixcon_cpu_sample_workspace_size(&p) + 1);
  std::vector<int64_t> cpu_counts((size_t)groups + 1), cpu_quotas((size_t)groups + 1), cpu_offsets((size_t)bags + 1);
  if (pixcon_cpu_sample_counts(&p, cpu_counts.data(), cpu_ws.data(), cpu_ws.size()) != PIXCON_OK)
    return fail(ctx, "pixcon_cpu_sample_counts failed");
  const pixcon_status cpu_status =
      pixcon_sample_quotas(&p, cpu_counts.data(), cpu_quotas.data(), cpu_offsets.data(), NULL, 0);
  std::vector<int64_t> cpu_indices;
  if (cpu_status == PIXCON_OK) {
    cpu_indices.resize((size_t)cpu_offsets[(size_t)bags] + 1);
    if (pixcon_cpu_sample_select(&p, cpu_quotas.data(), cpu_indices.data(), cpu_ws.data(), cpu_ws.size()) !=
        PIXCON_OK)
      return fail(ctx, "pixcon_cpu_sample_select failed");
  }

  /* the CUDA path, as a caller runs it */
  pixcon_cuda_sample_params q;
  q.base = p;
  q.stream = stream;
  int64_t *d_labels = to_device_exact(c.labels);
  int64_t *d_predictions = c.with_predictions ? to_device_exact(c.predictions) : nullptr;
  q.base.labels = d_labels;
  q.base.predictions = d_predictions;
  const size_t ws_size = pixcon_cuda_sample_workspace_size(&q);
  if (ws_size == 0) fail(ctx, "workspace size 0 for valid params");
  char *ws = nullptr;
  CHECK_CUDA(cudaMalloc(&ws, ws_size + misalign));
  int64_t *d_counts = nullptr, *d_quotas = nullptr, *d_indices = nullptr;
  CHECK_CUDA(cudaMalloc(&d_counts, (size_t)(groups + 1) * sizeof(int64_t)));
  if (n > 0 && pixcon_cuda_sample_counts(&q, d_counts, ws + misalign, ws_size - 1) != PIXCON_ERROR_WORKSPACE_TOO_SMALL)
    fail(ctx, "a workspace one byte short is accepted");
  pixcon_status st = pixcon_cuda_sample_counts(&q, d_counts, ws + misalign, ws_size);
  if (st != PIXCON_OK) {
    fail(ctx, "pixcon_cuda_sample_counts: status %d", (int)st);
  } else {
    std::vector<int64_t> counts = to_host(d_counts, groups + 1);
    compare(ctx, "counts", counts.data(), cpu_counts.data(), groups + 1);
    std::vector<int64_t> quotas((size_t)groups + 1), offsets((size_t)bags + 1);
    const pixcon_status quota_status = pixcon_sample_quotas(&p, counts.data(), quotas.data(), offsets.data(), NULL, 0);
    if (quota_status != ref_status || quota_status != cpu_status)
      fail(ctx, "quota status %d, reference %d, CPU %d", (int)quota_status, (int)ref_status, (int)cpu_status);
    if (quota_status == PIXCON_OK && ref_status == PIXCON_OK && cpu_status == PIXCON_OK) {
      compare(ctx, "quotas", quotas.data(), cpu_quotas.data(), groups);
      compare(ctx, "bag_offsets", offsets.data(), ref_offsets.data(), bags + 1);
      compare(ctx, "bag_offsets (CPU)", cpu_offsets.data(), ref_offsets.data(), bags + 1);
      const int64_t total = offsets[(size_t)bags];
      quotas.resize((size_t)groups);
      d_quotas = to_device_exact(quotas);
      if (total > 0) CHECK_CUDA(cudaMalloc(&d_indices, (size_t)total * sizeof(int64_t)));
      st = pixcon_cuda_sample_select(&q, d_quotas, total, d_indices, ws + misalign, ws_size);
      if (st != PIXCON_OK) {
        fail(ctx, "pixcon_cuda_sample_select: status %d", (int)st);
      } else {
        std::vector<int64_t> indices = to_host(d_indices, total);
        compare(ctx, "indices", indices.data(), ref_indices.data(), total);
        compare(ctx, "indices (CPU)", cpu_indices.data(), ref_indices.data(), total);
      }
    }
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  for (void *d : {(void *)d_labels, (void *)d_predictions, (void *)ws, (void *)d_counts, (void *)d_quotas,
                  (void *)d_indices})
    CHECK_CUDA(cudaFree(d));
}

/* Labels in [0, C) or ignored; predictions wrong with probability `hard`. */
void fill(Problem &c, double ignored, double hard, int skew) {
  const int64_t n = c.p.num_images * c.p.pixels_per_image, classes = c.p.num_classes;
  c.labels.assign((size_t)n, 0);
  c.predictions.assign((size_t)n, 0);
  const int64_t dominant = below(classes), subset = 1 + below(classes);
  for (int64_t i = 0; i < n; ++i) {
    int64_t y = below(classes);
    if (skew == 1 && uniform() < 0.8) y = dominant; /* one class dominates */
    if (skew == 2) y = below(subset);               /* some classes never appear */
    c.labels[(size_t)i] = uniform() < ignored ? c.p.ignore_index : y;
    c.predictions[(size_t)i] = uniform() < hard ? (y + 1 + below(classes > 1 ? classes - 1 : 1)) % (classes + 1) : y;
  }
}

Problem random_problem(int k) {
  Problem c;
  memset(&c.p, 0, sizeof c.p);
  pixcon_sample_params &p = c.p;
  p.num_images = 1 + below(4);
  p.pixels_per_image = (1 + below(20)) * (1 + below(20));
  p.num_classes = 1 + below(8);
  p.strategy = (pixcon_sample_strategy)(k % 3);
  p.ignore_index = pick<int64_t>({255, -1, p.num_classes, -100, 0});
  p.seed = pick<uint64_t>({0, (uint64_t)below(100), next_u64(), ((uint64_t)1 << 32) + (uint64_t)below(1000),
                           ~(uint64_t)0, next_u64() | ((uint64_t)1 << 63)});
  p.per_image = (int)below(2);
  const int64_t n = p.num_images * p.pixels_per_image, huge = (int64_t)1 << 40;
  p.num_samples = pick<int64_t>({0, 1, below(n + 2), n, huge});
  p.min_views = pick<int64_t>({1, 1 + below(30), 1 + below(n + 2), huge});
  p.max_views = pick<int64_t>({1, 1 + below(50), 1 + below(n + 2), huge});
  p.max_total = pick<int64_t>({0, below(300), below(n + 2), huge});
  p.max_samples = pick<int64_t>({0, 1, below(300), below(n + 2), huge});
  p.num_threads = (int)below(3);
  c.with_predictions = p.strategy == PIXCON_SAMPLE_HARD_EASY || below(2);
  fill(c, pick<double>({0.0, 1.0, uniform(), 0.1}), pick<double>({0.0, 1.0, uniform()}), (int)below(3));
  /* now and then a label outside [0, C) that is not ignored: class strategies must reject it alike */
  if (below(16) == 0 && n > 0) {
    int64_t bad = pick<int64_t>({p.num_classes, -2, p.num_classes + 1000});
    if (bad != p.ignore_index) c.labels[(size_t)below(n)] = bad;
  }
  return c;
}

Problem fixed_problem(int64_t images, int64_t pixels, int64_t classes, pixcon_sample_strategy strategy) {
  Problem c;
  memset(&c.p, 0, sizeof c.p);
  c.p.num_images = images;
  c.p.pixels_per_image = pixels;
  c.p.num_classes = classes;
  c.p.strategy = strategy;
  c.p.ignore_index = -1;
  c.p.seed = 0x123456789abcdefull;
  c.p.num_samples = 50;
  c.p.min_views = 2;
  c.p.max_views = 40;
  c.p.max_total = 4000;
  c.p.max_samples = 3000;
  c.with_predictions = true;
  fill(c, 0.2, 0.5, 0);
  return c;
}

/* A seed under which two of the first `n` pixels share a key, both above the smallest key. */
bool find_tie(int64_t n, uint64_t *seed, int64_t *a, int64_t *b, int64_t *smallest) {
  std::vector<uint64_t> packed((size_t)n);
  for (uint64_t s = 1; s < 4000; ++s) {
    for (int64_t i = 0; i < n; ++i) packed[(size_t)i] = (uint64_t)pixcon_pixel_key(s, i) << 32 | (uint64_t)i;
    std::sort(packed.begin(), packed.end());
    for (int64_t k = 2; k < n; ++k)
      if (packed[(size_t)k] >> 32 == packed[(size_t)k - 1] >> 32) {
        *seed = s;
        *a = (int64_t)(uint32_t)packed[(size_t)k - 1];
        *b = (int64_t)(uint32_t)packed[(size_t)k];
        *smallest = (int64_t)(uint32_t)packed[0];
        return true;
      }
  }
  return false;
}

/* Equal keys: the smaller index wins, checked directly and through run_case. */
void test_ties(int *cases) {
  const int64_t n = 4096;
  uint64_t seed;
  int64_t a, b, c;
  if (!find_tie(n, &seed, &a, &b, &c)) return fail("[ties]", "no key collision found");
  Problem t = fixed_problem(1, n, 1, PIXCON_SAMPLE_UNIFORM);
  t.p.seed = seed;
  t.p.per_image = 1;
  for (int with_smallest = 0; with_smallest < 2; ++with_smallest) {
    for (auto &y : t.labels) y = t.p.ignore_index;
    t.labels[(size_t)a] = t.labels[(size_t)b] = 0;
    if (with_smallest) t.labels[(size_t)c] = 0;
    t.p.num_samples = 1 + with_smallest;
    pixcon_cuda_sample_params q;
    q.base = t.host();
    q.stream = stream;
    int64_t *d_labels = to_device_exact(t.labels);
    q.base.labels = d_labels;
    const size_t ws_size = pixcon_cuda_sample_workspace_size(&q);
    void *ws = nullptr;
    int64_t *d_counts = nullptr, *d_quotas = nullptr, *d_indices = nullptr;
    CHECK_CUDA(cudaMalloc(&ws, ws_size));
    CHECK_CUDA(cudaMalloc(&d_counts, 2 * sizeof(int64_t)));
    CHECK_CUDA(cudaMalloc(&d_indices, 2 * sizeof(int64_t)));
    int64_t counts[2] = {0, 0}, quotas[1], offsets[2], got[2] = {-1, -1};
    pixcon_sample_params h = t.host();
    if (pixcon_cuda_sample_counts(&q, d_counts, ws, ws_size) != PIXCON_OK) return fail("[ties]", "counts failed");
    CHECK_CUDA(cudaMemcpy(counts, d_counts, sizeof counts, cudaMemcpyDeviceToHost));
    if (pixcon_sample_quotas(&h, counts, quotas, offsets, NULL, 0) != PIXCON_OK) return fail("[ties]", "quotas failed");
    d_quotas = to_device_exact(std::vector<int64_t>(quotas, quotas + 1));
    if (pixcon_cuda_sample_select(&q, d_quotas, offsets[1], d_indices, ws, ws_size) != PIXCON_OK)
      return fail("[ties]", "select failed");
    CHECK_CUDA(cudaMemcpy(got, d_indices, (size_t)offsets[1] * sizeof(int64_t), cudaMemcpyDeviceToHost));
    if (!with_smallest && !(offsets[1] == 1 && got[0] == std::min(a, b)))
      fail("[ties]", "equal keys of pixels %lld and %lld: got %lld", (long long)a, (long long)b, (long long)got[0]);
    if (with_smallest && !(offsets[1] == 2 && got[0] == std::min(std::min(a, b), c) &&
                           got[1] == std::max(std::min(a, b), c)))
      fail("[ties]", "the smallest key, then the smaller of two equal keys: got %lld %lld", (long long)got[0],
           (long long)got[1]);
    for (void *d : {(void *)d_labels, ws, (void *)d_counts, (void *)d_quotas, (void *)d_indices})
      CHECK_CUDA(cudaFree(d));
    run_case(t, 0);
    *cases += 1;
  }
}

/* Argument handling that needs no comparison. */
void test_errors() {
  Problem c = fixed_problem(2, 30, 4, PIXCON_SAMPLE_CLASS_BALANCED);
  pixcon_cuda_sample_params q;
  q.base = c.host();
  q.stream = stream;
  if (pixcon_cuda_sample_workspace_size(nullptr) != 0) fail("[errors]", "workspace size of NULL params");
  q.base.max_views = 0;
  if (pixcon_cuda_sample_workspace_size(&q) != 0) fail("[errors]", "workspace size of invalid params");
  int64_t dummy = 0;
  if (pixcon_cuda_sample_counts(&q, &dummy, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("[errors]", "counts accepted max_views = 0");
  q.base.max_views = 40;
  if (pixcon_cuda_sample_counts(&q, nullptr, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("[errors]", "counts accepted counts = NULL");
  if (pixcon_cuda_sample_counts(&q, &dummy, nullptr, 0) != PIXCON_ERROR_WORKSPACE_TOO_SMALL)
    fail("[errors]", "counts accepted no workspace");
  if (pixcon_cuda_sample_select(&q, &dummy, -1, &dummy, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("[errors]", "select accepted total = -1");
  if (pixcon_cuda_sample_select(&q, &dummy, 61, &dummy, nullptr, 0) != PIXCON_ERROR_INVALID_ARGUMENT)
    fail("[errors]", "select accepted total > B H W");
  if (pixcon_cuda_sample_select(&q, &dummy, 0, nullptr, nullptr, 0) != PIXCON_OK)
    fail("[errors]", "select of nothing failed");
}

}  // namespace

int main(int argc, char **argv) {
  rng_seed(0x853c49e6748fea9bull);
  const bool quick = quick_option(argc, argv);
  CHECK_CUDA(cudaStreamCreate(&stream));
  int cases = 0;
  const int random_cases = quick ? 60 : 300;
  for (int k = 0; k < random_cases; ++k, ++cases) run_case(random_problem(k), (size_t)below(3) * 8 + (k % 2));

  /* empty problems: no images, empty images */
  for (int strategy = 0; strategy < 3; ++strategy, cases += 2) {
    run_case(fixed_problem(0, 25, 3, (pixcon_sample_strategy)strategy), 0);
    run_case(fixed_problem(3, 0, 3, (pixcon_sample_strategy)strategy), 0);
  }
  /* more than one sort tile, with G + 1 below and above 2^8 (odd and even numbers of 8-bit passes) */
  run_case(fixed_problem(3, 700, 5, PIXCON_SAMPLE_HARD_EASY), 3);
  run_case(fixed_problem(4, 24 * 24, 40, PIXCON_SAMPLE_HARD_EASY), 5);
  run_case(fixed_problem(4, 900, 64, PIXCON_SAMPLE_CLASS_BALANCED), 0);
  Problem uniform_big = fixed_problem(2, 3000, 3, PIXCON_SAMPLE_UNIFORM);
  uniform_big.p.per_image = 1;
  run_case(uniform_big, 1);
  cases += 4;
  if (!quick) {
    /* more pixels and groups than the kernels' largest grid (1024 x 256 threads), so every grid-stride
     * loop goes round; one-pixel images make every sorted position a run boundary and every valid
     * pixel a sample */
    Problem grid_stride = fixed_problem(1024 * 256 + 1000, 1, 2, PIXCON_SAMPLE_UNIFORM);
    grid_stride.p.per_image = 1;
    grid_stride.p.num_samples = 1;
    fill(grid_stride, 0.0, 0.0, 0); /* ignored pixels would sort to the end, past the loops' second round */
    run_case(grid_stride, 0);
    ++cases;
  }
  test_ties(&cases);
  test_errors();
  CHECK_CUDA(cudaStreamDestroy(stream));
  printf("%d cases, %d mismatches\n", cases, failures);
  return failures ? 1 : 0;
}
