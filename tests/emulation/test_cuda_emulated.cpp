/* Agreement test: the fused CUDA kernels of ops/cuda (run under the CPU emulation, or on a GPU when
 * built with nvcc) against pixcon_reference_contrastive_forward/backward and the tiled CPU kernels
 * (pixcon_cpu_contrastive_forward/backward), over the option matrix: both denominators, self_positive,
 * anchor/contrast masks, image ids; 1, 2 and 37 bags (empty and one-row bags among them); D from 1 to
 * 300; float64, float32 (strict and TF32), float16, bfloat16; the small tile shape (several, partial
 * tiles) and the production one. Under the emulation it also checks the data contract: no host
 * synchronisation and no device-to-host copy in forward or backward, as many launches for 1 bag as
 * for 64, bad labels and offsets reported by a device-side assertion without a stray memory access,
 * and a backward that is bitwise the same whatever order the blocks run in.
 * Cost: O(cases * N^2 D) on the CPU; each emulated launch runs real threads (a few minutes in all).
 */
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
#include "pixcon_reference.h"
#include "../c/test_rng.h"
#include "cuda_check.h"

namespace {

/* ---- host-side 16-bit and TF32 encodings (truncation is fine: the reference reads the same bits) ---- */

uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
uint16_t f2bf(float f) { return (uint16_t)(bits(f) >> 16); }
uint16_t f2half(float f) {
  uint32_t u = bits(f), sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xffu;
  if (e < 113) return (uint16_t)sign; /* tiny: flush to zero */
  return (uint16_t)(sign | ((e - 112) << 10) | ((u >> 13) & 0x3ffu));
}
double half2d(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp((double)(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}
double bf2d(uint16_t b) { return from_bits((uint32_t)b << 16); }
/* cvt.rna.tf32.f32: 10 mantissa bits, ties away from zero */
float round_tf32(float f) { return from_bits((bits(f) + 0x1000u) & ~0x1fffu); }

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

/* ---- problems ---- */

enum Option { ANCHOR_MASK = 1, CONTRAST_MASK = 2, IMAGE_IDS = 4, PAIR = 8, SELF_POSITIVE = 16 };

struct Problem {
  int64_t n, d, bags;
  pixcon_dtype dtype;
  bool tf32;          /* float32 with allow_tf32 */
  int options;        /* Option bits */
  bool transposed;    /* embeddings stored [D, N] (row_stride 1, col_stride N) */
  unsigned tuning;    /* PIXCON_CUDA_* flags */
  std::vector<unsigned char> z; /* [N, D] in dtype (TF32 problems: already TF32 values) */
  std::vector<int64_t> labels, images, offsets;
  std::vector<uint8_t> anchor, contrast;
  double temperature;
};

/* Bag sizes: random cuts, plus (for many bags) some forced empty and one-row bags. */
std::vector<int64_t> make_offsets(int64_t n, int64_t bags) {
  std::vector<int64_t> cut(1, 0);
  for (int64_t b = 1; b < bags; ++b) cut.push_back(below(n + 1));
  cut.push_back(n);
  for (int64_t b = 1; b <= bags; ++b)
    for (int64_t k = b; k > 1 && cut[k - 1] > cut[k]; --k) std::swap(cut[k], cut[k - 1]);
  if (bags >= 4 && n >= 4) { /* bag 1 empty, bag 2 one row */
    if (cut[1] > n - 1) cut[1] = n - 1;
    cut[2] = cut[1];
    cut[3] = cut[2] + 1;
    for (int64_t b = 4; b < bags; ++b) cut[b] = cut[b] < cut[3] ? cut[3] : cut[b];
  }
  return cut;
}

Problem make_problem(int64_t n, int64_t d, int64_t bags, int classes, pixcon_dtype dtype, bool tf32, int options,
                     bool transposed, unsigned tuning) {
  Problem q;
  q.n = n;
  q.d = d;
  q.bags = bags;
  q.dtype = dtype;
  q.tf32 = tf32;
  q.options = options;
  q.transposed = transposed;
  q.tuning = tuning;
  q.z.resize((size_t)(n * d) * esize(dtype));
  const int64_t label_values[] = {0, 7, 1000, (int64_t)1 << 40, 3};
  for (int64_t k = 0; k < n * d; ++k) {
    float v = (float)(uniform() * 2 - 1);
    unsigned char *p = q.z.data();
    if (dtype == PIXCON_FLOAT64) ((double *)p)[k] = uniform() * 2 - 1;
    else if (dtype == PIXCON_FLOAT32) ((float *)p)[k] = tf32 ? round_tf32(v) : v;
    else if (dtype == PIXCON_FLOAT16) ((uint16_t *)p)[k] = f2half(v);
    else ((uint16_t *)p)[k] = f2bf(v);
  }
  for (int64_t r = 0; r < n; ++r) {
    q.labels.push_back(uniform() < 0.1 ? 255 : label_values[below(classes)]);
    q.images.push_back(below(3) * 11 - 5);
    q.anchor.push_back(uniform() < 0.8);
    q.contrast.push_back(uniform() < 0.8);
  }
  q.offsets = make_offsets(n, bags);
  q.temperature = 0.07 + uniform();
  return q;
}

void fill_params(const Problem &q, pixcon_loss_params *p, const void *z, const int64_t *labels, const int64_t *images,
                 const uint8_t *anchor, const uint8_t *contrast, const int64_t *offsets) {
  memset(p, 0, sizeof *p);
  p->num_rows = q.n;
  p->dim = q.d;
  p->embeddings = z;
  p->dtype = q.dtype;
  p->row_stride = q.transposed ? 1 : q.d;
  p->col_stride = q.transposed ? q.n : 1;
  p->labels = labels;
  p->anchor_mask = (q.options & ANCHOR_MASK) ? anchor : nullptr;
  p->contrast_mask = (q.options & CONTRAST_MASK) ? contrast : nullptr;
  p->image_ids = (q.options & IMAGE_IDS) ? images : nullptr;
  p->num_bags = q.bags;
  p->bag_offsets = offsets;
  p->temperature = q.temperature;
  p->ignore_index = 255;
  p->denominator = (q.options & PAIR) ? PIXCON_DENOMINATOR_PAIR : PIXCON_DENOMINATOR_ALL;
  p->self_positive = (q.options & SELF_POSITIVE) != 0;
  p->num_threads = 1;
}

/* The embeddings as stored for the kernels: [N, D], or [D, N] when transposed. */
std::vector<unsigned char> stored(const Problem &q) {
  if (!q.transposed) return q.z;
  std::vector<unsigned char> zt(q.z.size());
  size_t es = esize(q.dtype);
  for (int64_t r = 0; r < q.n; ++r)
    for (int64_t c = 0; c < q.d; ++c) memcpy(&zt[(size_t)(c * q.n + r) * es], &q.z[(size_t)(r * q.d + c) * es], es);
  return zt;
}

/* ---- comparison ---- */

int failures = 0;

void fail(const std::string &ctx, const char *what) {
  if (failures < 25) fprintf(stderr, "FAIL %s: %s\n", ctx.c_str(), what);
  ++failures;
}

void check_close(const std::string &ctx, const char *what, int64_t at, double got, double want, double tol) {
  if (isinf(want) && got == want) return;
  if (!(fabs(got - want) <= tol * (1 + fabs(want)))) {
    if (failures < 25)
      fprintf(stderr, "FAIL %s %s[%lld]: got %.17g want %.17g\n", ctx.c_str(), what, (long long)at, got, want);
    ++failures;
  }
}

struct Result {
  std::vector<double> loss, stats, grad;
  std::vector<uint8_t> valid;
};

void compare(const std::string &ctx, const Problem &q, const Result &got, const Result &want, double tol,
             double grad_tol) {
  for (int64_t r = 0; r < q.n; ++r) {
    if (got.valid[r] != want.valid[r]) fail(ctx, ("valid[" + std::to_string(r) + "]").c_str());
    check_close(ctx, "loss", r, got.loss[r], want.loss[r], tol);
    check_close(ctx, "stat_lse", r, got.stats[3 * r], want.stats[3 * r], tol);
    check_close(ctx, "stat_w", r, got.stats[3 * r + 1], want.stats[3 * r + 1], tol);
    check_close(ctx, "stat_npos", r, got.stats[3 * r + 2], want.stats[3 * r + 2], 0);
  }
  double scale = 0;
  for (int64_t k = 0; k < q.n * q.d; ++k) scale = fmax(scale, fabs(want.grad[k]));
  for (int64_t k = 0; k < q.n * q.d; ++k)
    check_close(ctx, "grad", k, got.grad[k] / (1 + scale), want.grad[k] / (1 + scale), grad_tol);
}

/* ---- the three implementations ---- */

bool run_reference(const pixcon_loss_params &hp, const std::vector<double> &g, Result &out) {
  int64_t n = hp.num_rows;
  out.loss.assign(n + 1, 0);
  out.stats.assign(3 * n + 3, 0);
  out.grad.assign(n * hp.dim + 1, 0);
  out.valid.assign(n + 1, 0);
  return pixcon_reference_contrastive_forward(&hp, out.loss.data(), out.valid.data(), out.stats.data()) == PIXCON_OK &&
         pixcon_reference_contrastive_backward(&hp, g.data(), out.stats.data(), out.grad.data()) == PIXCON_OK;
}

/* Accumulation-type bytes of the upstream gradient g. */
std::vector<unsigned char> acc_bytes(const std::vector<double> &g, bool f64) {
  std::vector<unsigned char> b(g.size() * (f64 ? 8 : 4) + 1);
  for (size_t r = 0; r < g.size(); ++r) {
    if (f64) ((double *)b.data())[r] = g[r];
    else ((float *)b.data())[r] = (float)g[r];
  }
  return b;
}

void widen(const std::vector<unsigned char> &l, const std::vector<unsigned char> &st,
           const std::vector<unsigned char> &gr, pixcon_dtype acc_t, pixcon_dtype dtype, int64_t n, int64_t d,
           Result &out) {
  out.loss.resize(n + 1);
  out.stats.resize(3 * n + 3);
  out.grad.resize(n * d + 1);
  for (int64_t r = 0; r < n; ++r) out.loss[r] = elem(l, acc_t, r);
  for (int64_t k = 0; k < 3 * n; ++k) out.stats[k] = elem(st, acc_t, k);
  for (int64_t k = 0; k < n * d; ++k) out.grad[k] = elem(gr, dtype, k);
}

bool run_cpu(const pixcon_loss_params &hp, const std::vector<double> &g, Result &out) {
  int64_t n = hp.num_rows, d = hp.dim;
  bool f64 = hp.dtype == PIXCON_FLOAT64;
  pixcon_dtype acc_t = f64 ? PIXCON_FLOAT64 : PIXCON_FLOAT32;
  size_t acc = f64 ? 8 : 4;
  std::vector<unsigned char> l(acc * n + 1), st(3 * acc * n + 1), gr(esize(hp.dtype) * n * d + 1);
  std::vector<unsigned char> gacc = acc_bytes(g, f64);
  out.valid.assign(n + 1, 0);
  size_t fws = pixcon_cpu_forward_workspace_size(&hp), bws = pixcon_cpu_backward_workspace_size(&hp);
  std::vector<unsigned char> ws(fws > bws ? fws : bws);
  if (pixcon_cpu_contrastive_forward(&hp, l.data(), out.valid.data(), st.data(), ws.data(), fws) != PIXCON_OK ||
      pixcon_cpu_contrastive_backward(&hp, gacc.data(), st.data(), gr.data(), ws.data(), bws) != PIXCON_OK)
    return false;
  widen(l, st, gr, acc_t, hp.dtype, n, d, out);
  return true;
}

/* The problem's buffers on the device and the CUDA parameters pointing at them. */
struct DeviceProblem {
  std::vector<void *> owned;
  pixcon_cuda_loss_params params;

  DeviceProblem(const Problem &q, const std::vector<unsigned char> &z, cudaStream_t stream) {
    unsigned char *dz = to_device(z);
    int64_t *dlabels = to_device(q.labels), *dimages = to_device(q.images), *doffsets = to_device(q.offsets);
    uint8_t *danchor = to_device(q.anchor), *dcontrast = to_device(q.contrast);
    owned = {dz, dlabels, dimages, doffsets, danchor, dcontrast};
    memset(&params, 0, sizeof params);
    fill_params(q, &params.base, dz, dlabels, dimages, danchor, dcontrast, doffsets);
    params.allow_tf32 = q.tf32;
    params.tuning = q.tuning;
    params.stream = stream;
  }
  ~DeviceProblem() {
    for (void *p : owned) cudaFree(p);
  }
  void *alloc(size_t bytes) {
    void *p = nullptr;
    CHECK_CUDA(cudaMalloc(&p, bytes + 1));
    owned.push_back(p);
    return p;
  }
};

/* Forward then backward on the device; false (with a failure recorded) when a call fails. */
bool run_cuda(const std::string &ctx, DeviceProblem &dp, const Problem &q, const std::vector<double> &g,
              cudaStream_t stream, Result &out) {
  const pixcon_cuda_loss_params *cp = &dp.params;
  int64_t n = q.n, d = q.d;
  bool f64 = q.dtype == PIXCON_FLOAT64;
  size_t acc = f64 ? 8 : 4;
  char message[256];
  if (pixcon_cuda_loss_params_check(cp, message, sizeof message) != PIXCON_OK) {
    fail(ctx, message);
    return false;
  }
  size_t fws = pixcon_cuda_forward_workspace_size(cp), bws = pixcon_cuda_backward_workspace_size(cp);
  void *ws_f = dp.alloc(fws), *ws_b = dp.alloc(bws), *loss = dp.alloc(acc * n), *stats = dp.alloc(3 * acc * n);
  void *gl = dp.alloc(acc * n), *grad = dp.alloc(esize(q.dtype) * n * d);
  uint8_t *valid = (uint8_t *)dp.alloc(n);
  std::vector<unsigned char> gacc = acc_bytes(g, f64);
  CHECK_CUDA(cudaMemcpy(gl, gacc.data(), acc * n, cudaMemcpyHostToDevice));
  pixcon_status s1 = pixcon_cuda_contrastive_forward(cp, loss, valid, stats, ws_f, fws, message, sizeof message);
  pixcon_status s2 = s1 == PIXCON_OK ? pixcon_cuda_contrastive_backward(cp, gl, stats, grad, ws_b, bws, message,
                                                                          sizeof message)
                                     : s1;
  CHECK_CUDA(cudaStreamSynchronize(stream));
  if (s1 != PIXCON_OK || s2 != PIXCON_OK) {
    fail(ctx, message);
    return false;
  }
  std::vector<unsigned char> l(acc * n + 1), st(3 * acc * n + 1), gr(esize(q.dtype) * n * d + 1);
  out.valid.assign(n + 1, 0);
  CHECK_CUDA(cudaMemcpy(l.data(), loss, acc * n, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(st.data(), stats, 3 * acc * n, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(out.valid.data(), valid, n, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(gr.data(), grad, esize(q.dtype) * n * d, cudaMemcpyDeviceToHost));
  widen(l, st, gr, f64 ? PIXCON_FLOAT64 : PIXCON_FLOAT32, q.dtype, n, d, out);
  return true;
}

std::string describe(const Problem &q) {
  char buf[200];
  snprintf(buf, sizeof buf, "[n=%lld d=%lld bags=%lld options=%d dtype=%d%s transposed=%d tiles=%s anchors=%s]",
           (long long)q.n, (long long)q.d, (long long)q.bags, q.options, (int)q.dtype, q.tf32 ? "(tf32)" : "",
           (int)q.transposed, q.tuning & PIXCON_CUDA_SMALL_TILES ? "small" : "default",
           q.tuning & PIXCON_CUDA_STREAM_ANCHORS ? "streamed" : "resident-if-they-fit");
  return buf;
}

/* Tolerances (relative to 1 + |value|; gradients relative to the largest): float64 1e-10;
 * float32 strict 1e-5; TF32 (inputs already TF32, so S is exact up to float32 accumulation; the
 * weights are rounded to TF32 for W Z) 1e-5 forward, 2e-3 gradient; 16-bit 1e-2. */
void tolerances(const Problem &q, double *tol, double *grad_tol) {
  if (q.dtype == PIXCON_FLOAT64) *tol = *grad_tol = 1e-10;
  else if (q.dtype == PIXCON_FLOAT32) {
    *tol = 1e-5;
    *grad_tol = q.tf32 ? 2e-3 : 1e-5;
  } else {
    *tol = *grad_tol = 1e-2;
  }
}

void run_case(cudaStream_t stream, const Problem &q) {
  const std::string ctx = describe(q);
  std::vector<unsigned char> z = stored(q);
  pixcon_loss_params hp;
  fill_params(q, &hp, z.data(), q.labels.data(), q.images.data(), q.anchor.data(), q.contrast.data(), q.offsets.data());
  std::vector<double> g(q.n + 1);
  for (int64_t r = 0; r < q.n; ++r) g[r] = uniform() * 2 - 1;
  Result ref, cpu, got;
  if (!run_reference(hp, g, ref)) return fail(ctx, "the reference rejected the problem");
  DeviceProblem dp(q, z, stream);
  if (!run_cuda(ctx, dp, q, g, stream, got)) return;
  double tol, grad_tol;
  tolerances(q, &tol, &grad_tol);
  compare(ctx + " vs reference", q, got, ref, tol, grad_tol);
  if (!run_cpu(hp, g, cpu)) return fail(ctx, "the CPU kernels rejected the problem");
  compare(ctx + " vs cpu", q, got, cpu, tol, grad_tol);
}

/* ---- the matrix ---- */

const pixcon_dtype kDtypes[] = {PIXCON_FLOAT64, PIXCON_FLOAT32, PIXCON_FLOAT32, PIXCON_FLOAT16, PIXCON_BFLOAT16};
const bool kTf32[] = {false, false, true, false, false};

/* quick: a quarter of the pairs; few: a sixteenth, of the shapes of at most 100 rows only (for
 * compute-sanitizer, which slows each launch down a hundredfold) */
int run_matrix(cudaStream_t stream, bool quick, bool few, bool fail_fast) {
  struct Shape {
    int64_t n, d, bags;
    unsigned tiles;
    int stride; /* run every stride-th (options, dtype) pair; quick runs every 4 stride-th */
  };
  const unsigned small = PIXCON_CUDA_SMALL_TILES;
  const Shape shapes[] = {
      {1, 3, 1, small, 1},    {7, 1, 1, small, 1},     {40, 3, 2, small, 1},    {97, 16, 2, small, 2},
      {150, 5, 37, small, 2}, {70, 64, 37, small, 5},  {66, 300, 1, small, 9},  {100, 256, 2, 0u, 11},
      {140, 300, 37, 0u, 13}, {150, 17, 1, 0u, 7},
  };
  int cases = 0, pair_index = 0;
  for (const Shape &s : shapes)
    for (int options = 0; options < 32 && !(few && s.n > 100); ++options)
      for (int t = 0; t < 5; ++t, ++pair_index) {
        const int stride = few ? 16 * s.stride : quick ? 4 * s.stride : s.stride;
        if (pair_index % stride != 0) continue;
        const bool transposed = (options + t) % 5 == 0;
        /* every other case streams the anchor rows, so both layouts meet every shape and path */
        const unsigned tuning = s.tiles | (cases % 2 ? PIXCON_CUDA_STREAM_ANCHORS : 0u);
        Problem q = make_problem(s.n, s.d, s.bags, 1 + (int)below(5), kDtypes[t], kTf32[t], options, transposed,
                                 tuning);
        run_case(stream, q);
        ++cases;
        if (fail_fast && failures) {
          printf("%d cases, %d mismatches (stopped at the first failing case)\n", cases, failures);
          return cases;
        }
      }
  Problem empty = make_problem(0, 4, 2, 2, PIXCON_FLOAT32, false, 0, false, PIXCON_CUDA_SMALL_TILES);
  run_case(stream, empty);
  return cases + 1;
}

/* Kernel launches so far (under the emulation; on a GPU the refusals are checked by status alone). */
#if defined(PIXCON_EMULATED_LAUNCH)
long long launches_so_far() { return pixcon_emu::launch_count(); }
#else
long long launches_so_far() { return 0; }
#endif

/* Parameters of one bag of n rows of dimension d whose pointers are never read (host-only checks). */
pixcon_cuda_loss_params unread_params(int64_t n, int64_t d, pixcon_dtype t) {
  static const int64_t offsets[2] = {0, 0};
  pixcon_cuda_loss_params q;
  memset(&q, 0, sizeof q);
  q.base.num_rows = n;
  q.base.dim = d;
  q.base.embeddings = q.base.labels = offsets; /* any non-NULL */
  q.base.dtype = t;
  q.base.row_stride = d;
  q.base.col_stride = 1;
  q.base.num_bags = 1;
  q.base.bag_offsets = offsets;
  q.base.temperature = 0.07;
  q.base.ignore_index = 255;
  return q;
}

/* Bad host-side arguments are refused before any launch, with a message naming the argument. */
void check_host_side_refusals() {
  char message[256];
  pixcon_cuda_loss_params q = unread_params(10, (int64_t)65535 * 128 + 1, PIXCON_FLOAT32);
  if (pixcon_cuda_loss_params_check(&q, message, sizeof message) != PIXCON_ERROR_INVALID_ARGUMENT ||
      !strstr(message, "D must be"))
    fail("host checks", "a D beyond the backward's grid was not refused");
  q = unread_params(10, 8, PIXCON_FLOAT32);
  q.tuning = 4;
  if (pixcon_cuda_loss_params_check(&q, message, sizeof message) != PIXCON_ERROR_INVALID_ARGUMENT ||
      !strstr(message, "tuning"))
    fail("host checks", "unknown tuning flags were not refused");
  q.tuning = 0;
  long long before = launches_so_far();
  if (pixcon_cuda_contrastive_forward(&q, message, (uint8_t *)message, message, nullptr, 0, message,
                                      sizeof message) != PIXCON_ERROR_INVALID_ARGUMENT ||
      !strstr(message, "workspace"))
    fail("host checks", "a missing workspace was not refused");
  if (launches_so_far() != before) fail("host checks", "a refused call launched a kernel");
}

/* The workspace is O(N D + N + B): at N = 262 144, D = 256 it stays below 512 MiB. */
void check_workspace_bound() {
  for (pixcon_dtype t : {PIXCON_FLOAT32, PIXCON_FLOAT16, PIXCON_BFLOAT16}) {
    pixcon_cuda_loss_params q = unread_params(262144, 256, t);
    size_t f = pixcon_cuda_forward_workspace_size(&q), b = pixcon_cuda_backward_workspace_size(&q);
    printf("workspace at N = 262144, D = 256, dtype %d: forward %.1f MiB, backward %.1f MiB\n", (int)t,
           f / 1048576.0, b / 1048576.0);
    if (f == 0 || f >= ((size_t)512 << 20) || b == 0 || b >= ((size_t)512 << 20)) fail("workspace", "not below 512 MiB");
  }
}

#if defined(PIXCON_EMULATED_LAUNCH)
/* The data contract, seen through the emulator's counters. */
void check_no_host_sync_and_launches_independent_of_bags(cudaStream_t stream) {
  long long launches[2];
  const int64_t bag_counts[2] = {1, 64};
  for (int k = 0; k < 2; ++k) {
    Problem q = make_problem(200, 8, bag_counts[k], 3, PIXCON_FLOAT32, false, PAIR, false, PIXCON_CUDA_SMALL_TILES);
    DeviceProblem dp(q, q.z, stream);
    size_t ws = pixcon_cuda_forward_workspace_size(&dp.params);
    void *w = dp.alloc(ws), *loss = dp.alloc(800), *stats = dp.alloc(2400), *gl = dp.alloc(800), *grad = dp.alloc(6400);
    uint8_t *valid = (uint8_t *)dp.alloc(200);
    CHECK_CUDA(cudaMemset(gl, 0, 800));
    CHECK_CUDA(cudaStreamSynchronize(stream));
    pixcon_emu::reset_counters();
    char message[256];
    pixcon_status s1 = pixcon_cuda_contrastive_forward(&dp.params, loss, valid, stats, w, ws, message, sizeof message);
    pixcon_status s2 = pixcon_cuda_contrastive_backward(&dp.params, gl, stats, grad, w, ws, message, sizeof message);
    pixcon_emu::Counters c = pixcon_emu::counters();
    const std::string ctx = "counters, " + std::to_string(bag_counts[k]) + " bags";
    if (s1 != PIXCON_OK || s2 != PIXCON_OK) fail(ctx, message);
    if (c.host_syncs != 0) fail(ctx, "forward + backward synchronised the host");
    if (c.device_to_host_copies != 0) fail(ctx, "forward + backward copied device memory to the host");
    launches[k] = c.launches;
    printf("%s: %lld launches, %lld host syncs, %lld device-to-host copies\n", ctx.c_str(), c.launches, c.host_syncs,
           c.device_to_host_copies);
  }
  if (launches[0] != launches[1]) fail("counters", "launches depend on the number of bags");
}

/* A bad label or bad offsets: a device-side assertion, reported at the next synchronisation; the
 * sticky error then reaches every later call as PIXCON_ERROR_CUDA with CUDA's message. */
void check_device_assertions(cudaStream_t stream) {
  for (int which = 0; which < 2; ++which) {
    Problem q = make_problem(50, 4, 3, 3, PIXCON_FLOAT32, false, 0, false, PIXCON_CUDA_SMALL_TILES);
    if (which == 0) q.labels[17] = -3;
    else q.offsets[1] = q.offsets[2] + 5;
    const std::string ctx = which == 0 ? "negative label" : "decreasing offsets";
    DeviceProblem dp(q, q.z, stream);
    size_t ws = pixcon_cuda_forward_workspace_size(&dp.params);
    void *w = dp.alloc(ws), *loss = dp.alloc(200), *stats = dp.alloc(600);
    uint8_t *valid = (uint8_t *)dp.alloc(50);
    char message[256] = "";
    /* the call enqueues; if the assertion has already fired when it launches the next kernel (always,
     * under the synchronous emulation), the call reports it, else the next synchronisation does */
    pixcon_status st = pixcon_cuda_contrastive_forward(&dp.params, loss, valid, stats, w, ws, message, sizeof message);
    if (st != PIXCON_OK && (st != PIXCON_ERROR_CUDA || !strstr(message, "device-side assert")))
      fail(ctx, "the call failed for another reason than the assertion");
    if (cudaStreamSynchronize(stream) != cudaErrorAssert) fail(ctx, "no device-side assertion at the synchronisation");
    /* a CUDA error reaches the caller as a status with the runtime's own words, never swallowed */
    message[0] = '\0';
    st = pixcon_cuda_contrastive_forward(&dp.params, loss, valid, stats, w, ws, message, sizeof message);
    if (st != PIXCON_ERROR_CUDA || !strstr(message, cudaGetErrorString(cudaErrorAssert)))
      fail(ctx, "a later call on the failed context did not report the CUDA error with its string");
    pixcon_emu::reset_device();
  }
}

/* Each row's gradient is summed in a fixed order by one CTA: the block order cannot change a bit. */
void check_backward_bitwise_independent_of_block_order(cudaStream_t stream) {
  Problem q = make_problem(120, 40, 3, 4, PIXCON_FLOAT32, false, PAIR | IMAGE_IDS, false, PIXCON_CUDA_SMALL_TILES);
  std::vector<double> g(q.n + 1);
  for (int64_t r = 0; r < q.n; ++r) g[r] = uniform() * 2 - 1;
  Result first, second;
  DeviceProblem dp(q, q.z, stream);
  pixcon_emu::set_block_order_seed(1);
  bool ok = run_cuda("block order 1", dp, q, g, stream, first);
  pixcon_emu::set_block_order_seed(2);
  ok = ok && run_cuda("block order 2", dp, q, g, stream, second);
  if (ok && (first.grad != second.grad || first.loss != second.loss))
    fail("block order", "results differ between block orders");
}
#endif

}  // namespace

int main(int argc, char **argv) {
  rng_seed(0x2545f4914f6cdd1dull);
  bool quick = false, few = false, fail_fast = false;
  for (int a = 1; a < argc; ++a) {
    if (strcmp(argv[a], "--quick") == 0) quick = true;
    else if (strcmp(argv[a], "--few") == 0) quick = few = true;
    else if (strcmp(argv[a], "--fail-fast") == 0) fail_fast = true; /* stop at the first failing case */
    else {
      fprintf(stderr, "usage: %s [--quick | --few] [--fail-fast]\n", argv[0]);
      return 2;
    }
  }
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  int cases = run_matrix(stream, quick, few, fail_fast);
  if (!(fail_fast && failures)) {
    check_workspace_bound();
    check_host_side_refusals();
#if defined(PIXCON_EMULATED_LAUNCH)
    check_no_host_sync_and_launches_independent_of_bags(stream);
    check_device_assertions(stream);
    check_backward_bitwise_independent_of_block_order(stream);
#endif
  }
  printf("%d cases, %d mismatches\n", cases, failures);
  return failures ? 1 : 0;
}
