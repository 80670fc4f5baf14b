/*
 * C unit test of ops/: every supported CPU tier against the plain reference on random
 * problems covering both denominators, self positives, masks, image ids, ignored rows,
 * many bags (empty and one-row bags included) and float32/float64/float16/bfloat16 input.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pixcon/pixcon.h"
#include "dtype_io.h"
#include "pixcon_reference.h"
#include "test_rng.h"


static uint16_t to_half_bits(double v) { /* via float: exactness is not needed here */
  float f = (float)v;
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t e = (u >> 23) & 0xff;
  if (e < 113) return (uint16_t)((u >> 16) & 0x8000u);
  return (uint16_t)(((u >> 16) & 0x8000u) | ((e - 112) << 10) | ((u >> 13) & 0x3ffu));
}

typedef struct problem {
  pixcon_loss_params p;
  void *z;
  int64_t *labels, *image_ids, *offsets;
  uint8_t *anchor, *contrast;
} problem;

static problem make_problem(int64_t n, int64_t d, int64_t bags, int classes, pixcon_dtype dtype,
                            int options) {
  problem q;
  memset(&q, 0, sizeof q);
  size_t es = dtype == PIXCON_FLOAT64 ? 8 : dtype == PIXCON_FLOAT32 ? 4 : 2;
  q.z = malloc((size_t)(n * d) * es + 1);
  for (int64_t k = 0; k < n * d; ++k) {
    double v = uniform() * 2 - 1;
    if (dtype == PIXCON_FLOAT64) ((double *)q.z)[k] = v;
    else if (dtype == PIXCON_FLOAT32) ((float *)q.z)[k] = (float)v;
    else if (dtype == PIXCON_FLOAT16) ((uint16_t *)q.z)[k] = to_half_bits(v);
    else {
      float f = (float)v;
      uint32_t u;
      memcpy(&u, &f, 4);
      ((uint16_t *)q.z)[k] = (uint16_t)(u >> 16);
    }
  }
  q.labels = malloc(sizeof(int64_t) * (size_t)(n + 1));
  q.image_ids = malloc(sizeof(int64_t) * (size_t)(n + 1));
  q.anchor = malloc((size_t)n + 1);
  q.contrast = malloc((size_t)n + 1);
  for (int64_t r = 0; r < n; ++r) {
    q.labels[r] = uniform() < 0.1 ? 255 : 1000 * below(classes); /* sparse label values */
    q.image_ids[r] = below(3) * 7;
    q.anchor[r] = uniform() < 0.8;
    q.contrast[r] = uniform() < 0.8;
  }
  q.offsets = malloc(sizeof(int64_t) * (size_t)(bags + 1));
  q.offsets[0] = 0;
  for (int64_t b = 1; b < bags; ++b) q.offsets[b] = below(n + 1);
  q.offsets[bags] = n;
  for (int64_t b = 1; b <= bags; ++b) /* insertion sort: small */
    for (int64_t k = b; k > 1 && q.offsets[k - 1] > q.offsets[k]; --k) {
      int64_t t = q.offsets[k];
      q.offsets[k] = q.offsets[k - 1];
      q.offsets[k - 1] = t;
    }
  pixcon_loss_params *p = &q.p;
  p->num_rows = n;
  p->dim = d;
  p->embeddings = q.z;
  p->dtype = dtype;
  p->row_stride = d;
  p->col_stride = 1;
  p->labels = q.labels;
  p->anchor_mask = (options & 1) ? q.anchor : NULL;
  p->contrast_mask = (options & 2) ? q.contrast : NULL;
  p->image_ids = (options & 4) ? q.image_ids : NULL;
  p->num_bags = bags;
  p->bag_offsets = q.offsets;
  p->temperature = 0.07 + uniform();
  p->ignore_index = 255;
  p->denominator = (options & 8) ? PIXCON_DENOMINATOR_PAIR : PIXCON_DENOMINATOR_ALL;
  p->self_positive = (options & 16) != 0;
  p->num_threads = 1 + (int)below(3);
  return q;
}

static void free_problem(problem *q) {
  free(q->z);
  free(q->labels);
  free(q->image_ids);
  free(q->anchor);
  free(q->contrast);
  free(q->offsets);
}

static double read_acc(const void *buf, int f64, int64_t k) {
  return f64 ? ((const double *)buf)[k] : ((const float *)buf)[k];
}

static int failures = 0;

static void check_close(const char *what, double got, double want, double tol, const char *ctx) {
  if (isinf(want) && got == want) return;
  if (!(fabs(got - want) <= tol * (1 + fabs(want)))) {
    if (failures < 20) fprintf(stderr, "FAIL %s %s: got %.17g want %.17g\n", ctx, what, got, want);
    ++failures;
  }
}

static void run_case(problem *q, pixcon_isa isa, const char *ctx) {
  pixcon_loss_params *p = &q->p;
  int64_t n = p->num_rows, d = p->dim;
  int f64 = p->dtype == PIXCON_FLOAT64;
  size_t acc = f64 ? 8 : 4;
  double tol = f64 ? 1e-10 : p->dtype == PIXCON_FLOAT32 ? 2e-4 : 2e-3;
  double *ref_loss = malloc(8 * (size_t)(n + 1)), *ref_stats = malloc(24 * (size_t)(n + 1));
  double *ref_grad = malloc(8 * (size_t)(n * d + 1)), *g = malloc(8 * (size_t)(n + 1));
  uint8_t *ref_valid = malloc((size_t)n + 1), *valid = malloc((size_t)n + 1);
  void *loss = malloc(acc * (size_t)(n + 1)), *stats = malloc(3 * acc * (size_t)(n + 1));
  void *gacc = malloc(acc * (size_t)(n + 1)), *grad = malloc(8 * (size_t)(n * d + 1));
  for (int64_t r = 0; r < n; ++r) g[r] = uniform() * 2 - 1;
  for (int64_t r = 0; r < n; ++r) {
    if (f64) ((double *)gacc)[r] = g[r];
    else ((float *)gacc)[r] = (float)g[r];
  }
  if (pixcon_reference_contrastive_forward(p, ref_loss, ref_valid, ref_stats) != PIXCON_OK ||
      pixcon_reference_contrastive_backward(p, g, ref_stats, ref_grad) != PIXCON_OK) {
    fprintf(stderr, "FAIL %s: reference rejected the problem\n", ctx);
    ++failures;
    return;
  }
  if (pixcon_cpu_set_isa(isa) != PIXCON_OK) abort();
  size_t fws = pixcon_cpu_forward_workspace_size(p), bws = pixcon_cpu_backward_workspace_size(p);
  void *ws = malloc(fws > bws ? fws : bws);
  if (pixcon_cpu_contrastive_forward(p, loss, valid, stats, ws, fws) != PIXCON_OK ||
      pixcon_cpu_contrastive_backward(p, gacc, stats, grad, ws, bws) != PIXCON_OK) {
    fprintf(stderr, "FAIL %s: kernel returned an error\n", ctx);
    ++failures;
  } else {
    for (int64_t r = 0; r < n; ++r) {
      if (valid[r] != ref_valid[r]) {
        if (failures < 20) fprintf(stderr, "FAIL %s valid[%lld]\n", ctx, (long long)r);
        ++failures;
      }
      check_close("loss", read_acc(loss, f64, r), ref_loss[r], tol, ctx);
      check_close("npos", read_acc(stats, f64, 3 * r + 2), ref_stats[3 * r + 2], 0, ctx);
    }
    double scale = 0;
    for (int64_t k = 0; k < n * d; ++k) scale = fmax(scale, fabs(ref_grad[k]));
    for (int64_t k = 0; k < n * d; ++k)
      check_close("grad", dtype_element(grad, p->dtype, k) / (1 + scale), ref_grad[k] / (1 + scale),
                  tol, ctx);
  }
  free(ws);
  free(ref_loss); free(ref_stats); free(ref_grad); free(g); free(ref_valid); free(valid);
  free(loss); free(stats); free(gacc); free(grad);
}

int main(void) {
  /* 2 100 rows in 2 bags: up to 22 blocks, 16 groups, items of several rounds at once */
  const int64_t sizes[][3] = {{1, 3, 1}, {7, 1, 1}, {40, 3, 3}, {97, 64, 2}, {200, 5, 1},
                              {250, 33, 6}, {300, 16, 1}, {2100, 8, 2}};
  const pixcon_dtype dtypes[] = {PIXCON_FLOAT64, PIXCON_FLOAT32, PIXCON_FLOAT16, PIXCON_BFLOAT16};
  int cases = 0;
  for (int isa = PIXCON_ISA_SCALAR; isa <= PIXCON_ISA_AVX512; ++isa) {
    if (!pixcon_cpu_isa_supported((pixcon_isa)isa)) {
      printf("skip tier %s: not supported by this CPU or build\n", pixcon_isa_name((pixcon_isa)isa));
      continue;
    }
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s)
      for (int options = 0; options < 32; ++options)
        for (size_t t = 0; t < 4; ++t) {
          int keep = sizes[s][0] > 1000 ? 16 : sizes[s][0] > 100 ? 3 : 1; /* of the options */
          if ((options + (int)t + (int)s) % keep != 0) continue;
          problem q = make_problem(sizes[s][0], sizes[s][1], sizes[s][2], 1 + (int)below(4),
                                   dtypes[t], options);
          char ctx[160];
          snprintf(ctx, sizeof ctx, "[%s n=%lld d=%lld bags=%lld options=%d dtype=%d]",
                   pixcon_isa_name((pixcon_isa)isa), (long long)sizes[s][0],
                   (long long)sizes[s][1], (long long)sizes[s][2], options, (int)dtypes[t]);
          run_case(&q, (pixcon_isa)isa, ctx);
          free_problem(&q);
          ++cases;
        }
  }
  printf("%d cases, %d mismatches\n", cases, failures);
  return failures ? 1 : 0;
}
