/*
 * libFuzzer target of the loss's C API (pixcon.h): the bytes decode into a problem that a careless
 * or hostile caller could pass (any dtype code, zero, negative, overlapping and huge strides,
 * offsets past the end, decreasing or NULL, labels and image ids at the integer limits, NULL
 * where an array is optional and where it is not, NaN and infinite temperatures and embeddings),
 * with every array allocated to exactly the extent the parameters describe, so that ASan reports
 * any read or write outside it.
 *
 * Properties: a problem the check rejects has a message and is rejected by the kernels too; a
 * problem it accepts runs forward and backward without a sanitizer report, and, when its values
 * are tame, matches the C reference; sizes too large to allocate give a workspace size that
 * does not wrap around.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype_io.h"
#include "fuzz_input.h"
#include "pixcon/pixcon.h"
#include "pixcon_reference.h"

/* The first TAME values keep every similarity moderate, so the kernel must match the reference. */
#define TAME 12
static const float kValues[] = {0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 0.25f, -0.75f, 2.0f, -2.0f, 1e-3f, 1.5f, -1.25f,
                                NAN, INFINITY, -INFINITY, 6e4f};
static const uint16_t kHalfValues[] = {0x0000, 0x3800, 0xB800, 0x3C00, 0xBC00, 0x3400, 0xBA00, 0x4000,
                                       0xC000, 0x1419, 0x3E00, 0xBD00, 0x7E00, 0x7C00, 0xFC00, 0x7B53};
#define TAME_TEMPERATURES 4
static const double kTemperatures[] = {0.07, 0.5, 1.0, 3.0, 1e-4, 1e4, 0.0, -1.0, NAN, INFINITY, 1e-300, 1e300};
static const int64_t kStrideShapes[] = {0, 1, 2, 3, 4, 5, 6};

typedef struct loss_problem {
  pixcon_loss_params p;
  void *buffer;            /* the embeddings' extent; p.embeddings points into it */
  int64_t *labels, *image_ids, *offsets;
  uint8_t *anchor, *contrast;
  int tame;
} loss_problem;

static void fail(const char *why) {
  fprintf(stderr, "pixcon fuzz_loss: %s\n", why);
  abort();
}

static size_t element_size(pixcon_dtype dtype) {
  return dtype == PIXCON_FLOAT64 ? 8 : dtype == PIXCON_FLOAT32 ? 4 : dtype <= PIXCON_BFLOAT16 ? 2 : 8;
}

static void put_value(void *buffer, pixcon_dtype dtype, int64_t k, int v) {
  switch (dtype) {
    case PIXCON_FLOAT64: ((double *)buffer)[k] = kValues[v]; break;
    case PIXCON_FLOAT16: ((uint16_t *)buffer)[k] = kHalfValues[v]; break;
    case PIXCON_BFLOAT16: {
      uint32_t u;
      memcpy(&u, &kValues[v], 4);
      ((uint16_t *)buffer)[k] = (uint16_t)(u >> 16);
      break;
    }
    default: ((float *)buffer)[k] = kValues[v]; break;
  }
}

/* Strides of one of the layouts a caller may pass: row-major, column-major, broadcast rows,
 * negative rows or columns, overlapping rows, or arbitrary small values. */
static void take_strides(fuzz_input *in, int64_t n, int64_t d, int64_t *rs, int64_t *cs) {
  switch (TAKE_PICK(in, kStrideShapes)) {
    case 0: *rs = d, *cs = 1; break;
    case 1: *rs = 1, *cs = n; break;
    case 2: *rs = 0, *cs = 1; break;
    case 3: *rs = -d, *cs = 1; break;
    case 4: *rs = d, *cs = -1; break;
    case 5: *rs = 1, *cs = 1; break;
    default: *rs = take_range(in, -40, 40), *cs = take_range(in, -40, 40); break;
  }
}

static void take_embeddings(fuzz_input *in, loss_problem *q) {
  pixcon_loss_params *p = &q->p;
  int64_t n = p->num_rows, d = p->dim, rs, cs;
  take_strides(in, n, d, &rs, &cs);
  int64_t lo = 0, hi = 0;
  if (n > 0 && d > 0) {
    lo = (rs < 0 ? (n - 1) * rs : 0) + (cs < 0 ? (d - 1) * cs : 0);
    hi = (rs > 0 ? (n - 1) * rs : 0) + (cs > 0 ? (d - 1) * cs : 0);
  }
  size_t es = element_size(p->dtype);
  q->buffer = malloc((size_t)(hi - lo + 1) * es);
  q->tame = 1;
  for (int64_t k = 0; k <= hi - lo; ++k) {
    int v = (int)take_range(in, 0, 15);
    if (take_range(in, 0, 7) != 0) v %= TAME; /* mostly tame, sometimes NaN, infinite or huge */
    q->tame &= v < TAME;
    put_value(q->buffer, p->dtype == PIXCON_FLOAT64 || p->dtype == PIXCON_FLOAT16 || p->dtype == PIXCON_BFLOAT16
                             ? p->dtype : PIXCON_FLOAT32, k, v);
  }
  p->embeddings = (const char *)q->buffer - lo * (int64_t)es;
  p->row_stride = rs;
  p->col_stride = cs;
}

static int64_t *take_int64s(fuzz_input *in, int64_t n, const int64_t *small, int64_t count) {
  int64_t *a = malloc((size_t)(n + 1) * sizeof(int64_t));
  for (int64_t r = 0; r < n; ++r)
    a[r] = take_range(in, 0, 9) ? small[take_range(in, 0, count - 1)] : TAKE_PICK(in, kHostileInts);
  return a;
}

static uint8_t *take_mask(fuzz_input *in, int64_t n) {
  if (take_bool(in)) return NULL;
  uint8_t *m = malloc((size_t)n + 1);
  for (int64_t r = 0; r < n; ++r) m[r] = (uint8_t)take_bool(in);
  return m;
}

/* Valid CSR offsets from cut points, or hostile ones: decreasing, negative, past the end. */
static void take_offsets(fuzz_input *in, loss_problem *q) {
  pixcon_loss_params *p = &q->p;
  int64_t bags = take_range(in, -1, 6);
  p->num_bags = bags;
  if (bags < 0 || take_range(in, 0, 15) == 0) {
    q->offsets = NULL;
    p->bag_offsets = NULL;
    return;
  }
  q->offsets = malloc((size_t)(bags + 1) * sizeof(int64_t));
  int hostile = take_range(in, 0, 5) == 0;
  q->offsets[0] = 0;
  for (int64_t b = 1; b <= bags; ++b)
    q->offsets[b] = hostile ? TAKE_PICK(in, kHostileInts) % (p->num_rows + 2)
                            : q->offsets[b - 1] + take_range(in, 0, p->num_rows - q->offsets[b - 1]);
  if (!hostile) q->offsets[bags] = p->num_rows;
  if (hostile && take_bool(in)) q->offsets[0] = TAKE_PICK(in, kHostileInts);
  p->bag_offsets = q->offsets;
}

static loss_problem take_problem(fuzz_input *in) {
  loss_problem q;
  memset(&q, 0, sizeof q);
  pixcon_loss_params *p = &q.p;
  static const int64_t dims[] = {1, 1, 2, 3, 5, 8, 16, 17, 33, 0, -1};
  static const int64_t labels[] = {0, 1, 2, 3, 0, 1, 255, -1};
  static const int64_t ignores[] = {255, 255, -1, INT64_MIN, INT64_MAX, 0};
  static const int64_t images[] = {0, 1, 2, INT64_MIN, INT64_MAX};
  p->num_rows = take_range(in, 0, 48);
  p->dim = TAKE_PICK(in, dims);
  p->dtype = (pixcon_dtype)take_range(in, 0, 4);
  take_embeddings(in, &q);
  p->ignore_index = TAKE_PICK(in, ignores);
  q.labels = take_int64s(in, p->num_rows, labels, 8);
  p->labels = take_range(in, 0, 15) ? q.labels : NULL;
  p->anchor_mask = q.anchor = take_mask(in, p->num_rows);
  p->contrast_mask = q.contrast = take_mask(in, p->num_rows);
  q.image_ids = take_bool(in) ? take_int64s(in, p->num_rows, images, 5) : NULL;
  p->image_ids = q.image_ids;
  take_offsets(in, &q);
  int t = (int)take_range(in, 0, (int64_t)(sizeof kTemperatures / sizeof kTemperatures[0]) - 1);
  p->temperature = kTemperatures[t];
  q.tame &= t < TAME_TEMPERATURES;
  p->denominator = (pixcon_denominator)take_range(in, 0, 2);
  p->self_positive = take_bool(in);
  p->num_threads = (int)take_range(in, 1, 3);
  return q;
}

static void free_problem(loss_problem *q) {
  free(q->buffer);
  free(q->labels);
  free(q->image_ids);
  free(q->offsets);
  free(q->anchor);
  free(q->contrast);
}

/* The similarity scale of the problem: the kernel's rounding grows with it. */
static double similarity_scale(const pixcon_loss_params *p) {
  double zmax = 0;
  for (int64_t r = 0; r < p->num_rows; ++r)
    for (int64_t c = 0; c < p->dim; ++c) {
      int64_t at = r * p->row_stride + c * p->col_stride;
      zmax = fmax(zmax, fabs(dtype_element(p->embeddings, p->dtype, at)));
    }
  return 1 + zmax * zmax * (double)p->dim / p->temperature;
}

static void expect_close(double got, double want, double tol) {
  if (!(fabs(got - want) <= tol)) {
    fprintf(stderr, "got %.17g want %.17g (tolerance %.3g)\n", got, want, tol);
    fail("kernel differs from the reference");
  }
}

static void compare_with_reference(const pixcon_loss_params *p, const void *loss, const uint8_t *valid,
                                   const void *stats, const double *g, const void *grad) {
  int64_t n = p->num_rows, d = p->dim;
  int f64 = p->dtype == PIXCON_FLOAT64;
  double *ref_loss = malloc(8 * (size_t)(n + 1)), *ref_stats = malloc(24 * (size_t)(n + 1));
  double *ref_grad = malloc(8 * (size_t)(n * d + 1));
  uint8_t *ref_valid = malloc((size_t)n + 1);
  if (pixcon_reference_contrastive_forward(p, ref_loss, ref_valid, ref_stats) != PIXCON_OK ||
      pixcon_reference_contrastive_backward(p, g, ref_stats, ref_grad) != PIXCON_OK)
    fail("the reference rejects a problem the check accepts");
  double tol = (f64 ? 1e-10 : p->dtype == PIXCON_FLOAT32 ? 2e-4 : 2e-3) * similarity_scale(p);
  double gmax = 0;
  for (int64_t k = 0; k < n * d; ++k) gmax = fmax(gmax, fabs(ref_grad[k]));
  for (int64_t r = 0; r < n; ++r) {
    if (valid[r] != ref_valid[r]) fail("valid differs from the reference");
    expect_close(f64 ? ((const double *)loss)[r] : ((const float *)loss)[r], ref_loss[r], tol);
    expect_close(f64 ? ((const double *)stats)[3 * r + 2] : ((const float *)stats)[3 * r + 2], ref_stats[3 * r + 2], 0);
  }
  for (int64_t k = 0; k < n * d; ++k) expect_close(dtype_element(grad, p->dtype, k), ref_grad[k], tol * (1 + gmax));
  free(ref_loss);
  free(ref_stats);
  free(ref_grad);
  free(ref_valid);
}

static void run_problem(fuzz_input *in, loss_problem *q) {
  pixcon_loss_params *p = &q->p;
  char message[256];
  pixcon_status st = pixcon_loss_params_check(p, message, sizeof message);
  size_t fws = pixcon_cpu_forward_workspace_size(p), bws = pixcon_cpu_backward_workspace_size(p);
  int64_t n = p->num_rows > 0 ? p->num_rows : 0, d = p->dim > 0 ? p->dim : 0;
  size_t acc = p->dtype == PIXCON_FLOAT64 ? 8 : 4;
  void *ws = malloc((fws > bws ? fws : bws) + 1), *loss = malloc(acc * (size_t)(n + 1));
  void *stats = malloc(3 * acc * (size_t)(n + 1)), *gacc = malloc(acc * (size_t)(n + 1));
  void *grad = malloc(8 * (size_t)(n * d + 1));
  uint8_t *valid = malloc((size_t)n + 1);
  double *g = malloc(8 * (size_t)(n + 1));
  for (int64_t r = 0; r < n; ++r) {
    g[r] = kValues[take_range(in, 0, TAME - 1)];
    if (acc == 8) ((double *)gacc)[r] = g[r];
    else ((float *)gacc)[r] = (float)g[r];
  }
  pixcon_status fwd = pixcon_cpu_contrastive_forward(p, loss, valid, stats, ws, fws);
  if (st != PIXCON_OK) {
    if (message[0] == '\0') fail("a rejected problem has no message");
    if (fwd == PIXCON_OK) fail("the forward kernel accepts a problem the check rejects");
  } else {
    if (fwd != PIXCON_OK) fail("the forward kernel rejects a problem the check accepts");
    if (pixcon_cpu_contrastive_backward(p, gacc, stats, grad, ws, bws) != PIXCON_OK)
      fail("the backward kernel rejects a problem the check accepts");
    if (q->tame) compare_with_reference(p, loss, valid, stats, g, grad);
  }
  free(ws);
  free(loss);
  free(stats);
  free(gacc);
  free(grad);
  free(valid);
  free(g);
}

/* Sizes no caller could allocate: the checks that read no array, and workspace sizes that must
 * not wrap around (0 means the problem is refused). */
static void run_huge(fuzz_input *in) {
  static int64_t dummy[2];
  pixcon_loss_params p;
  memset(&p, 0, sizeof p);
  p.num_rows = TAKE_PICK(in, kHostileInts);
  p.dim = TAKE_PICK(in, kHostileInts);
  p.dtype = (pixcon_dtype)take_range(in, 0, 3);
  p.row_stride = TAKE_PICK(in, kHostileInts);
  p.col_stride = TAKE_PICK(in, kHostileInts);
  p.embeddings = dummy;
  p.labels = dummy;
  int64_t offsets[2] = {0, p.num_rows};
  p.num_bags = 1;
  p.bag_offsets = offsets;
  p.temperature = 0.1;
  p.num_threads = 1;
  if (pixcon_loss_params_check_shape(&p, NULL, 0) != PIXCON_OK) return;
  unsigned __int128 need = (unsigned __int128)(uint64_t)p.num_rows * (uint64_t)p.dim * element_size(p.dtype);
  size_t sizes[2] = {pixcon_cpu_forward_workspace_size(&p), pixcon_cpu_backward_workspace_size(&p)};
  for (int k = 0; k < 2; ++k)
    if (sizes[k] != 0 && (unsigned __int128)sizes[k] < need) fail("a workspace size wrapped around");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input in = {data, size, 0};
  if (take_range(&in, 0, 7) == 0) {
    run_huge(&in);
    return 0;
  }
  loss_problem q = take_problem(&in);
  run_problem(&in, &q);
  free_problem(&q);
  return 0;
}
