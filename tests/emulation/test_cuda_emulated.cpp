/* Agreement test: the CUDA kernels of ops/cuda (run under the CPU emulation, or on a GPU when built
 * with nvcc) against pixcon_reference_contrastive_forward/backward and against the tiled CPU kernels
 * (pixcon_cpu_contrastive_forward/backward) on a matrix of small random problems.
 * Cost: O(cases * N^2 D) on the CPU; each emulated launch runs real threads (seconds in total). */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "pixcon/pixcon.h"
#include "pixcon/pixcon_cuda.h"
#include "../c/test_rng.h"
#include "cuda_check.h"

namespace {


/* Host-side 16-bit encodings for the inputs (truncation is fine: the reference reads the same bits). */
uint16_t f2bf(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}
uint16_t f2half(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xffu;
  if (e < 113) return (uint16_t)sign; /* tiny: flush to zero */
  return (uint16_t)(sign | ((e - 112) << 10) | ((u >> 13) & 0x3ffu));
}
double half2d(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp((double)(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}
double bf2d(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

size_t esize(pixcon_dtype t) { return t == PIXCON_FLOAT64 ? 8 : t == PIXCON_FLOAT32 ? 4 : 2; }

double elem(const std::vector<unsigned char> &buf, pixcon_dtype t, int64_t k) {
  const unsigned char *p = buf.data();
  switch (t) {
    case PIXCON_FLOAT64: return ((const double *)p)[k];
    case PIXCON_FLOAT32: return ((const float *)p)[k];
    case PIXCON_FLOAT16: return half2d(((const uint16_t *)p)[k]);
    default: return bf2d(((const uint16_t *)p)[k]);
  }
}

struct Problem {
  int64_t n, d, bags;
  pixcon_dtype dtype;
  int options;        /* 1 anchor mask, 2 contrast mask, 4 image ids, 8 pair, 16 self_positive */
  bool transposed;    /* embeddings stored [D, N] (row_stride 1, col_stride N) */
  size_t limit;       /* workspace limit, 0 = default */
  std::vector<unsigned char> z;
  std::vector<int64_t> labels, images, offsets;
  std::vector<uint8_t> anchor, contrast;
  double temperature;
};

Problem make_problem(int64_t n, int64_t d, int64_t bags, int classes, pixcon_dtype dtype, int options,
                     bool transposed, size_t limit) {
  Problem q;
  q.n = n;
  q.d = d;
  q.bags = bags;
  q.dtype = dtype;
  q.options = options;
  q.transposed = transposed;
  q.limit = limit;
  q.z.resize((size_t)(n * d) * esize(dtype));
  const int64_t label_values[] = {0, 7, 1000, (int64_t)1 << 40, 3};
  for (int64_t k = 0; k < n * d; ++k) {
    float v = (float)(uniform() * 2 - 1);
    unsigned char *p = q.z.data();
    if (dtype == PIXCON_FLOAT64) ((double *)p)[k] = uniform() * 2 - 1;
    else if (dtype == PIXCON_FLOAT32) ((float *)p)[k] = v;
    else if (dtype == PIXCON_FLOAT16) ((uint16_t *)p)[k] = f2half(v);
    else ((uint16_t *)p)[k] = f2bf(v);
  }
  for (int64_t r = 0; r < n; ++r) {
    q.labels.push_back(uniform() < 0.1 ? 255 : label_values[below(classes)]);
    q.images.push_back(below(3) * 11 - 5);
    q.anchor.push_back(uniform() < 0.8);
    q.contrast.push_back(uniform() < 0.8);
  }
  q.offsets.push_back(0);
  for (int64_t b = 1; b < bags; ++b) q.offsets.push_back(below(n + 1));
  q.offsets.push_back(n);
  for (int64_t b = 1; b <= bags; ++b)
    for (int64_t k = b; k > 1 && q.offsets[k - 1] > q.offsets[k]; --k) std::swap(q.offsets[k], q.offsets[k - 1]);
  q.temperature = 0.07 + uniform();
  return q;
}

void fill_params(const Problem &q, pixcon_loss_params *p, const void *z, const int64_t *labels,
                 const int64_t *images, const uint8_t *anchor, const uint8_t *contrast) {
  memset(p, 0, sizeof *p);
  p->num_rows = q.n;
  p->dim = q.d;
  p->embeddings = z;
  p->dtype = q.dtype;
  p->row_stride = q.transposed ? 1 : q.d;
  p->col_stride = q.transposed ? q.n : 1;
  p->labels = labels;
  p->anchor_mask = (q.options & 1) ? anchor : nullptr;
  p->contrast_mask = (q.options & 2) ? contrast : nullptr;
  p->image_ids = (q.options & 4) ? images : nullptr;
  p->num_bags = q.bags;
  p->bag_offsets = q.offsets.data(); /* host in both APIs */
  p->temperature = q.temperature;
  p->ignore_index = 255;
  p->denominator = (q.options & 8) ? PIXCON_DENOMINATOR_PAIR : PIXCON_DENOMINATOR_ALL;
  p->self_positive = (q.options & 16) != 0;
  p->num_threads = 1;
}

int failures = 0;

void check_close(const std::string &ctx, const char *what, int64_t at, double got, double want, double tol) {
  if (isinf(want) && got == want) return;
  if (!(fabs(got - want) <= tol * (1 + fabs(want)))) {
    if (failures < 25)
      fprintf(stderr, "FAIL %s %s[%lld]: got %.17g want %.17g\n", ctx.c_str(), what, (long long)at, got, want);
    ++failures;
  }
}

/* CUDA outputs (raw bytes) against expected values (doubles) for every row and gradient entry. */
void compare(const std::string &ctx, int64_t n, int64_t d, pixcon_dtype dtype, pixcon_dtype acc_t,
             const std::vector<unsigned char> &loss, const std::vector<uint8_t> &valid,
             const std::vector<unsigned char> &stats, const std::vector<unsigned char> &grad,
             const std::vector<double> &want_loss, const std::vector<uint8_t> &want_valid,
             const std::vector<double> &want_stats, const std::vector<double> &want_grad, double tol) {
  for (int64_t r = 0; r < n; ++r) {
    if (valid[r] != want_valid[r]) {
      if (failures < 25) fprintf(stderr, "FAIL %s valid[%lld]: %d vs %d\n", ctx.c_str(), (long long)r, valid[r], want_valid[r]);
      ++failures;
    }
    check_close(ctx, "loss", r, elem(loss, acc_t, r), want_loss[r], tol);
    check_close(ctx, "stat_lse", r, elem(stats, acc_t, 3 * r), want_stats[3 * r], tol);
    check_close(ctx, "stat_w", r, elem(stats, acc_t, 3 * r + 1), want_stats[3 * r + 1], tol);
    check_close(ctx, "stat_npos", r, elem(stats, acc_t, 3 * r + 2), want_stats[3 * r + 2], 0);
  }
  double scale = 0;
  for (int64_t k = 0; k < n * d; ++k) scale = fmax(scale, fabs(want_grad[k]));
  for (int64_t k = 0; k < n * d; ++k)
    check_close(ctx, "grad", k, elem(grad, dtype, k) / (1 + scale), want_grad[k] / (1 + scale), tol);
}

/* The tiled CPU kernels on the same host problem and upstream gradient, widened to double. */
bool run_cpu_kernels(const pixcon_loss_params &hp, const std::vector<unsigned char> &gacc, std::vector<double> &loss,
                     std::vector<uint8_t> &valid, std::vector<double> &stats, std::vector<double> &grad) {
  int64_t n = hp.num_rows, d = hp.dim;
  pixcon_dtype acc_t = hp.dtype == PIXCON_FLOAT64 ? PIXCON_FLOAT64 : PIXCON_FLOAT32;
  size_t acc = acc_t == PIXCON_FLOAT64 ? 8 : 4;
  std::vector<unsigned char> l(acc * n + 1), st(3 * acc * n + 1), gr(esize(hp.dtype) * n * d + 1);
  valid.assign(n + 1, 0);
  size_t fws = pixcon_cpu_forward_workspace_size(&hp), bws = pixcon_cpu_backward_workspace_size(&hp);
  std::vector<unsigned char> ws(fws > bws ? fws : bws);
  if (pixcon_cpu_contrastive_forward(&hp, l.data(), valid.data(), st.data(), ws.data(), fws) != PIXCON_OK ||
      pixcon_cpu_contrastive_backward(&hp, gacc.data(), st.data(), gr.data(), ws.data(), bws) != PIXCON_OK)
    return false;
  loss.resize(n + 1);
  stats.resize(3 * n + 3);
  grad.resize(n * d + 1);
  for (int64_t r = 0; r < n; ++r) loss[r] = elem(l, acc_t, r);
  for (int64_t k = 0; k < 3 * n; ++k) stats[k] = elem(st, acc_t, k);
  for (int64_t k = 0; k < n * d; ++k) grad[k] = elem(gr, hp.dtype, k);
  return true;
}

void run_case(cublasHandle_t handle, cudaStream_t stream, Problem &q) {
  char buf[200];
  snprintf(buf, sizeof buf, "[n=%lld d=%lld bags=%lld options=%d dtype=%d transposed=%d limit=%zu]", (long long)q.n,
           (long long)q.d, (long long)q.bags, q.options, (int)q.dtype, (int)q.transposed, q.limit);
  std::string ctx(buf);
  int64_t n = q.n, d = q.d;
  bool f64 = q.dtype == PIXCON_FLOAT64;
  size_t acc = f64 ? 8 : 4;
  double tol = f64 ? 1e-10 : q.dtype == PIXCON_FLOAT32 ? 2e-4 : 2e-3;

  /* reference on the host (same bits) */
  std::vector<unsigned char> zt = q.z;
  if (q.transposed) { /* the stored layout is [D, N] */
    size_t es = esize(q.dtype);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < d; ++c) memcpy(&zt[(size_t)(c * n + r) * es], &q.z[(size_t)(r * d + c) * es], es);
  }
  pixcon_loss_params hp;
  fill_params(q, &hp, zt.data(), q.labels.data(), q.images.data(), q.anchor.data(), q.contrast.data());
  std::vector<double> ref_loss(n + 1), ref_stats(3 * n + 3), ref_grad(n * d + 1), g(n + 1);
  std::vector<uint8_t> ref_valid(n + 1);
  for (int64_t r = 0; r < n; ++r) g[r] = uniform() * 2 - 1;
  if (pixcon_reference_contrastive_forward(&hp, ref_loss.data(), ref_valid.data(), ref_stats.data()) != PIXCON_OK ||
      pixcon_reference_contrastive_backward(&hp, g.data(), ref_stats.data(), ref_grad.data()) != PIXCON_OK) {
    fprintf(stderr, "FAIL %s: reference rejected the problem\n", ctx.c_str());
    ++failures;
    return;
  }

  /* device */
  unsigned char *dz = to_device(zt);
  int64_t *dlabels = to_device(q.labels), *dimages = to_device(q.images);
  uint8_t *danchor = to_device(q.anchor), *dcontrast = to_device(q.contrast);
  pixcon_cuda_loss_params cp;
  memset(&cp, 0, sizeof cp);
  fill_params(q, &cp.base, dz, dlabels, dimages, danchor, dcontrast);
  cp.allow_tf32 = 0;
  cp.workspace_limit = q.limit;
  cp.cublas = handle;
  cp.stream = stream;
  char message[256];
  if (pixcon_cuda_loss_params_check(&cp, message, sizeof message) != PIXCON_OK) {
    fprintf(stderr, "FAIL %s: params rejected: %s\n", ctx.c_str(), message);
    ++failures;
    return;
  }
  size_t fws = pixcon_cuda_forward_workspace_size(&cp), bws = pixcon_cuda_backward_workspace_size(&cp);
  if (q.limit && pixcon_cuda_rows_per_block(&cp, 1) > 1 && (fws > q.limit || bws > q.limit)) {
    fprintf(stderr, "FAIL %s: workspace %zu / %zu above the limit\n", ctx.c_str(), fws, bws);
    ++failures;
  }
  void *dws_f = nullptr, *dws_b = nullptr, *dloss = nullptr, *dstats = nullptr, *dgl = nullptr, *dgrad = nullptr;
  uint8_t *dvalid = nullptr;
  CHECK_CUDA(cudaMalloc(&dws_f, fws));
  CHECK_CUDA(cudaMalloc(&dws_b, bws));
  CHECK_CUDA(cudaMalloc(&dloss, acc * n + 1));
  CHECK_CUDA(cudaMalloc(&dstats, 3 * acc * n + 1));
  CHECK_CUDA(cudaMalloc((void **)&dvalid, n + 1));
  CHECK_CUDA(cudaMalloc(&dgl, acc * n + 1));
  CHECK_CUDA(cudaMalloc(&dgrad, esize(q.dtype) * n * d + 1));
  std::vector<unsigned char> gacc(acc * n + 1);
  for (int64_t r = 0; r < n; ++r) {
    if (f64) ((double *)gacc.data())[r] = g[r];
    else ((float *)gacc.data())[r] = (float)g[r];
  }
  CHECK_CUDA(cudaMemcpy(dgl, gacc.data(), acc * n, cudaMemcpyHostToDevice));
  pixcon_status s1 = pixcon_cuda_contrastive_forward(&cp, dloss, dvalid, dstats, dws_f, fws);
  pixcon_status s2 = s1 == PIXCON_OK ? pixcon_cuda_contrastive_backward(&cp, dgl, dstats, dgrad, dws_b, bws) : s1;
  CHECK_CUDA(cudaStreamSynchronize(stream));
  if (s1 != PIXCON_OK || s2 != PIXCON_OK) {
    fprintf(stderr, "FAIL %s: status %d / %d\n", ctx.c_str(), (int)s1, (int)s2);
    ++failures;
  } else {
    std::vector<unsigned char> loss(acc * n + 1), stats(3 * acc * n + 1), grad(esize(q.dtype) * n * d + 1);
    std::vector<uint8_t> valid(n + 1);
    CHECK_CUDA(cudaMemcpy(loss.data(), dloss, acc * n, cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(stats.data(), dstats, 3 * acc * n, cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(valid.data(), dvalid, n, cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(grad.data(), dgrad, esize(q.dtype) * n * d, cudaMemcpyDeviceToHost));
    pixcon_dtype acc_t = f64 ? PIXCON_FLOAT64 : PIXCON_FLOAT32;
    /* against the plain reference, then against the CPU kernels (the tier dispatch picks) */
    compare(ctx + " vs reference", n, d, q.dtype, acc_t, loss, valid, stats, grad, ref_loss, ref_valid,
            ref_stats, ref_grad, tol);
    std::vector<double> cpu_loss, cpu_stats, cpu_grad;
    std::vector<uint8_t> cpu_valid;
    if (run_cpu_kernels(hp, gacc, cpu_loss, cpu_valid, cpu_stats, cpu_grad)) {
      compare(ctx + " vs cpu", n, d, q.dtype, acc_t, loss, valid, stats, grad, cpu_loss, cpu_valid, cpu_stats,
              cpu_grad, tol);
    } else {
      fprintf(stderr, "FAIL %s: the CPU kernels rejected the problem\n", ctx.c_str());
      ++failures;
    }
  }
  cudaFree(dz); cudaFree(dlabels); cudaFree(dimages); cudaFree(danchor); cudaFree(dcontrast);
  cudaFree(dws_f); cudaFree(dws_b); cudaFree(dloss); cudaFree(dstats); cudaFree(dvalid); cudaFree(dgl); cudaFree(dgrad);
}

}  // namespace

int main(int argc, char **argv) {
  rng_seed(0x2545f4914f6cdd1dull);
  bool quick = false, fail_fast = false;
  for (int a = 1; a < argc; ++a) {
    if (strcmp(argv[a], "--quick") == 0) quick = true;
    else if (strcmp(argv[a], "--fail-fast") == 0) fail_fast = true; /* stop at the first failing case */
  }
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) return 2;
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  /* {n, d, bags}: single rows, one-column embeddings, empty bags (random offsets), bags above the
   * 128-thread stride, several row blocks per bag (small limits) */
  const int64_t sizes[][3] = {{1, 3, 1}, {7, 1, 1}, {40, 3, 3}, {97, 17, 2}, {150, 5, 4}, {260, 8, 1}};
  const pixcon_dtype dtypes[] = {PIXCON_FLOAT64, PIXCON_FLOAT32, PIXCON_FLOAT16, PIXCON_BFLOAT16};
  int cases = 0;
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
    for (int options = 0; options < 32; ++options)
      for (int t = 0; t < 4; ++t) {
        int64_t n = sizes[s][0];
        if (n > 100 && (options + t + (int)s) % (quick ? 8 : 3) != 0) continue;
        if (quick && n <= 100 && (options + t) % 2) continue;
        bool transposed = (options + t) % 5 == 0;
        /* limits: default, about 3 rows per block, 1 row per block */
        size_t limit = 0;
        int which = (options + 2 * t + (int)s) % 3;
        if (which > 0) {
          size_t per_row = (size_t)((n + 3) / 4 * 4) * (dtypes[t] == PIXCON_FLOAT64 ? 8 : 4) + 4 * sizes[s][1];
          size_t fixed = (size_t)(n * sizes[s][1]) * 12 + 2048;
          limit = fixed + (which == 1 ? 3 : 1) * per_row;
        }
        Problem q = make_problem(n, sizes[s][1], sizes[s][2], 1 + (int)below(5), dtypes[t], options, transposed, limit);
        run_case(handle, stream, q);
        ++cases;
        if (fail_fast && failures) {
          printf("%d cases, %d mismatches (stopped at the first failing case)\n", cases, failures);
          return 1;
        }
      }
  /* no rows at all */
  {
    Problem q = make_problem(0, 4, 2, 2, PIXCON_FLOAT32, 0, false, 0);
    run_case(handle, stream, q);
    ++cases;
  }
  cublasDestroy(handle);
  printf("%d cases, %d mismatches\n", cases, failures);
  return failures ? 1 : 0;
}
