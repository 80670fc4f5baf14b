/*
 * C unit test of the pixel sampling (sample.h): Philox4x32-10 against the Random123 known
 * answers, the OpenMP kernel against the plain reference on random problems of every strategy
 * for 1, 2 and 3 threads, invariants that hold for any implementation, the tie rule, and errors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pixcon/philox.h"
#include "pixcon/sample.h"
#include "pixcon_reference.h"
#include "test_rng.h"


static int failures = 0;

static void fail(const char *ctx, const char *what) {
  if (failures < 20) fprintf(stderr, "FAIL %s: %s\n", ctx, what);
  ++failures;
}

static void expect(int ok, const char *ctx, const char *what) {
  if (!ok) fail(ctx, what);
}

static void test_philox(void) {
  static const uint32_t cases[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
       0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
       0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
  for (int c = 0; c < 3; ++c) {
    pixcon_philox4x32 ctr = {{cases[c][0], cases[c][1], cases[c][2], cases[c][3]}};
    pixcon_philox4x32 out = pixcon_philox4x32_10(ctr, cases[c][4], cases[c][5]);
    for (int k = 0; k < 4; ++k) expect(out.v[k] == cases[c][6 + k], "philox", "known answer");
  }
  pixcon_philox4x32 ctr = {{7, 0, 0, 0}};
  expect(pixcon_pixel_key(0x1234567890abcdefull, 7) ==
             pixcon_philox4x32_10(ctr, 0x90abcdefu, 0x12345678u).v[0],
         "philox", "pixel key = word 0 of (index, seed)");
}

typedef struct problem {
  pixcon_sample_params p;
  int64_t *labels, *predictions;
} problem;

static int64_t pick(int64_t a, int64_t b, int64_t c) {
  int64_t r = below(3);
  return r == 0 ? a : r == 1 ? b : c;
}

static problem make_problem(int64_t b, int64_t hw, int64_t classes, int strategy) {
  problem q;
  memset(&q, 0, sizeof q);
  int64_t n = b * hw;
  double ignored = (double)pick(0, 1, 2) / 2 * (below(4) ? uniform() * 2 : 1);
  q.labels = malloc(sizeof(int64_t) * (size_t)(n + 1));
  q.predictions = malloc(sizeof(int64_t) * (size_t)(n + 1));
  int64_t ignore_index = below(2) ? 255 : -1;
  for (int64_t i = 0; i < n; ++i) {
    q.labels[i] = uniform() < ignored ? ignore_index : below(classes);
    q.predictions[i] = below(2) ? q.labels[i] : below(classes);
  }
  pixcon_sample_params *p = &q.p;
  p->num_images = b;
  p->pixels_per_image = hw;
  p->labels = q.labels;
  p->predictions = q.predictions;
  p->ignore_index = ignore_index;
  p->num_classes = classes;
  p->strategy = (pixcon_sample_strategy)strategy;
  p->seed = next_u64();
  p->per_image = (int)below(2);
  p->num_samples = pick(0, 1 + below(n + 1), below(4) ? below(n / 2 + 2) : INT64_MAX);
  p->min_views = pick(1, 1 + below(40), INT64_MAX);
  p->max_views = pick(1, 1 + below(60), INT64_MAX);
  p->max_total = pick(0, below(n + 1), INT64_MAX);
  p->max_samples = pick(0, below(n + 1), INT64_MAX);
  if (below(4) == 0) p->min_views = 1 + below(4);
  return q;
}

static void free_problem(problem *q) {
  free(q->labels);
  free(q->predictions);
}

static int64_t group_of(const pixcon_sample_params *p, int64_t i) {
  int64_t pred = p->strategy == PIXCON_SAMPLE_HARD_EASY ? p->predictions[i] : 0;
  return pixcon_sample_group(p, i, p->labels[i], pred);
}

/* Invariants of any correct sampler: ascending, never ignored, per-group count == quota. */
static void check_invariants(const pixcon_sample_params *p, const int64_t *quotas,
                             const int64_t *indices, int64_t total, const char *ctx) {
  int64_t groups = pixcon_sample_num_groups(p);
  int64_t *got = calloc((size_t)groups + 1, sizeof *got);
  for (int64_t k = 0; k < total; ++k) {
    if (k > 0 && indices[k] <= indices[k - 1]) fail(ctx, "indices not strictly ascending");
    if (indices[k] < 0 || indices[k] >= p->num_images * p->pixels_per_image) {
      fail(ctx, "index out of range");
      continue;
    }
    int64_t g = group_of(p, indices[k]);
    if (g < 0 || g >= groups) fail(ctx, "selected an ignored or overflow pixel");
    else ++got[g];
  }
  for (int64_t g = 0; g < groups; ++g)
    if (got[g] != quotas[g]) fail(ctx, "per-group count differs from the quota");
  free(got);
}

static void check_counts(const pixcon_sample_params *p, const int64_t *counts, const char *ctx) {
  int64_t groups = pixcon_sample_num_groups(p);
  int64_t *want = calloc((size_t)groups + 1, sizeof *want);
  for (int64_t i = 0; i < p->num_images * p->pixels_per_image; ++i)
    if (group_of(p, i) >= 0) ++want[group_of(p, i)];
  expect(memcmp(want, counts, sizeof *want * (size_t)(groups + 1)) == 0, ctx, "counts");
  free(want);
}

/* Runs the three CPU steps; returns the status of the first failing one. */
static pixcon_status cpu_sample(const pixcon_sample_params *p, int64_t *counts, int64_t *quotas,
                                int64_t *offsets, int64_t *indices) {
  size_t bytes = pixcon_cpu_sample_workspace_size(p);
  void *ws = malloc(bytes);
  pixcon_status st = pixcon_cpu_sample_counts(p, counts, ws, bytes);
  if (st == PIXCON_OK) st = pixcon_sample_quotas(p, counts, quotas, offsets, NULL, 0);
  if (st == PIXCON_OK) st = pixcon_cpu_sample_select(p, quotas, indices, ws, bytes);
  free(ws);
  return st;
}

static void run_case(pixcon_sample_params *p, const char *ctx) {
  int64_t n = p->num_images * p->pixels_per_image, groups = pixcon_sample_num_groups(p);
  int64_t bags = pixcon_sample_num_bags(p);
  int64_t *ref = malloc(sizeof(int64_t) * (size_t)(n + 1)), *got = malloc(sizeof(int64_t) * (size_t)(n + 1));
  int64_t *ref_off = malloc(sizeof(int64_t) * (size_t)(bags + 1)), *off = malloc(sizeof(int64_t) * (size_t)(bags + 1));
  int64_t *counts = malloc(sizeof(int64_t) * (size_t)(groups + 1)), *quotas = malloc(sizeof(int64_t) * (size_t)(groups + 1));
  if (pixcon_reference_sample(p, ref, ref_off) != PIXCON_OK) {
    fail(ctx, "reference rejected the problem");
  } else {
    for (int threads = 1; threads <= 3; ++threads) {
      p->num_threads = threads;
      memset(got, 0xff, sizeof(int64_t) * (size_t)(n + 1));
      if (cpu_sample(p, counts, quotas, off, got) != PIXCON_OK) {
        fail(ctx, "kernel returned an error");
        continue;
      }
      check_counts(p, counts, ctx);
      expect(memcmp(off, ref_off, sizeof(int64_t) * (size_t)(bags + 1)) == 0, ctx, "bag offsets");
      expect(memcmp(got, ref, sizeof(int64_t) * (size_t)off[bags]) == 0, ctx, "indices");
      expect(got[off[bags]] == -1, ctx, "wrote past the selected indices");
      check_invariants(p, quotas, got, off[bags], ctx);
    }
  }
  free(ref); free(got); free(ref_off); free(off); free(counts); free(quotas);
}

static int random_cases(void) {
  int cases = 0;
  for (int k = 0; k < 400; ++k) {
    problem q = make_problem(1 + below(4), (1 + below(20)) * (1 + below(20)), 1 + below(8), k % 3);
    char ctx[200];
    snprintf(ctx, sizeof ctx, "[case %d strategy=%d B=%lld HW=%lld C=%lld per_image=%d]", k,
             (int)q.p.strategy, (long long)q.p.num_images, (long long)q.p.pixels_per_image,
             (long long)q.p.num_classes, q.p.per_image);
    run_case(&q.p, ctx);
    free_problem(&q);
    ++cases;
  }
  /* big enough for several chunks, and one with more groups than pixels per chunk */
  const int64_t big[][3] = {{3, 100 * 100, 19}, {2, 129 * 129, 5}, {1, 20000, 1500}, {1, 1, 1}, {0, 5, 3}};
  for (size_t s = 0; s < sizeof big / sizeof big[0]; ++s)
    for (int strategy = 0; strategy < 3; ++strategy) {
      problem q = make_problem(big[s][0], big[s][1], big[s][2], strategy);
      char ctx[120];
      snprintf(ctx, sizeof ctx, "[big %zu strategy=%d]", s, strategy);
      run_case(&q.p, ctx);
      free_problem(&q);
      ++cases;
    }
  return cases;
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Two pixels a < b with equal keys under seed 0 (a birthday search), and a pixel c with a
 * smaller key: with quota 1 of {a, b} the rule takes a; with quota 2 of {a, b, c}, c and a. */
static void test_ties(void) {
  const int64_t n = 1 << 18;
  uint64_t *packed = malloc(sizeof *packed * (size_t)n);
  for (int64_t i = 0; i < n; ++i) packed[i] = (uint64_t)pixcon_pixel_key(0, i) << 32 | (uint64_t)i;
  qsort(packed, (size_t)n, sizeof *packed, compare_u64);
  int64_t at = -1;
  for (int64_t k = 1; k < n && at < 0; ++k)
    if (packed[k] >> 32 == packed[k - 1] >> 32 && packed[k] >> 32 > packed[0] >> 32) at = k;
  if (at < 0) {
    fail("ties", "no key collision found to test the tie rule");
    free(packed);
    return;
  }
  int64_t a = (int64_t)(uint32_t)packed[at - 1], b = (int64_t)(uint32_t)packed[at];
  int64_t c = (int64_t)(uint32_t)packed[0];
  free(packed);
  problem q = make_problem(1, n, 2, PIXCON_SAMPLE_UNIFORM);
  for (int64_t i = 0; i < n; ++i) q.labels[i] = q.p.ignore_index;
  q.labels[a] = q.labels[b] = 0;
  q.p.seed = 0;
  q.p.per_image = 1;
  q.p.num_samples = 1;
  int64_t counts[2], quotas[1], off[2], got[3];
  for (int threads = 1; threads <= 2; ++threads) {
    q.p.num_threads = threads;
    q.p.num_samples = 1;
    q.labels[c] = q.p.ignore_index;
    expect(cpu_sample(&q.p, counts, quotas, off, got) == PIXCON_OK && off[1] == 1 && got[0] == a,
           "ties", "equal keys go to the smaller index");
    q.p.num_samples = 2;
    q.labels[c] = 0;
    expect(cpu_sample(&q.p, counts, quotas, off, got) == PIXCON_OK && off[1] == 2 &&
               got[0] == (a < c ? a : c) && got[1] == (a < c ? c : a),
           "ties", "smaller key, then the smaller of two equal keys");
  }
  run_case(&q.p, "[ties]");
  free_problem(&q);
}

static void test_errors(void) {
  problem q = make_problem(2, 30, 4, PIXCON_SAMPLE_CLASS_BALANCED);
  int64_t counts[2 * 4 * 2 + 1], quotas[2 * 4 * 2], off[3], got[60];
  for (int strategy = 1; strategy <= 2; ++strategy) {
    q.p.strategy = (pixcon_sample_strategy)strategy;
    const int64_t bad[] = {4, -3, 1000};
    for (int k = 0; k < 3; ++k) {
      int64_t keep = q.labels[7];
      q.labels[7] = bad[k];
      char message[200] = "";
      size_t bytes = pixcon_cpu_sample_workspace_size(&q.p);
      void *ws = malloc(bytes);
      expect(pixcon_cpu_sample_counts(&q.p, counts, ws, bytes) == PIXCON_OK, "errors", "counts");
      expect(counts[pixcon_sample_num_groups(&q.p)] == 1, "errors", "overflow slot counts the bad label");
      expect(pixcon_sample_quotas(&q.p, counts, quotas, off, message, sizeof message) ==
                 PIXCON_ERROR_INVALID_ARGUMENT && strstr(message, "labels"),
             "errors", "quotas reject a label out of range");
      expect(pixcon_reference_sample(&q.p, got, off) == PIXCON_ERROR_INVALID_ARGUMENT, "errors",
             "reference rejects a label out of range");
      free(ws);
      q.labels[7] = keep;
    }
  }
  q.p.strategy = PIXCON_SAMPLE_HARD_EASY;
  size_t bytes = pixcon_cpu_sample_workspace_size(&q.p);
  void *ws = malloc(bytes);
  expect(pixcon_cpu_sample_counts(&q.p, counts, ws, bytes - 1) == PIXCON_ERROR_WORKSPACE_TOO_SMALL,
         "errors", "counts: workspace too small");
  expect(pixcon_cpu_sample_counts(&q.p, counts, NULL, bytes) == PIXCON_ERROR_WORKSPACE_TOO_SMALL,
         "errors", "counts: NULL workspace");
  expect(pixcon_cpu_sample_counts(&q.p, counts, ws, bytes) == PIXCON_OK &&
             pixcon_sample_quotas(&q.p, counts, quotas, off, NULL, 0) == PIXCON_OK,
         "errors", "valid problem");
  expect(pixcon_cpu_sample_select(&q.p, quotas, got, ws, bytes - 1) == PIXCON_ERROR_WORKSPACE_TOO_SMALL,
         "errors", "select: workspace too small");
  q.p.max_views = 0;
  expect(pixcon_cpu_sample_workspace_size(&q.p) == 0, "errors", "workspace size of invalid params");
  expect(pixcon_cpu_sample_counts(&q.p, counts, ws, bytes) == PIXCON_ERROR_INVALID_ARGUMENT, "errors",
         "counts: invalid params");
  expect(pixcon_cpu_sample_select(&q.p, quotas, got, ws, bytes) == PIXCON_ERROR_INVALID_ARGUMENT, "errors",
         "select: invalid params");
  expect(pixcon_reference_sample(&q.p, got, off) == PIXCON_ERROR_INVALID_ARGUMENT, "errors",
         "reference: invalid params");
  free(ws);
  free_problem(&q);
}

static void test_seeds(void) {
  problem q = make_problem(2, 64 * 64, 3, PIXCON_SAMPLE_UNIFORM);
  for (int64_t i = 0; i < 2 * 64 * 64; ++i) q.labels[i] = 0;
  q.p.per_image = 0;
  q.p.num_samples = 200;
  int64_t counts[2], quotas[1], off[2], first[200], second[200];
  q.p.seed = 1;
  pixcon_status a = cpu_sample(&q.p, counts, quotas, off, first);
  q.p.seed = 2;
  pixcon_status b = cpu_sample(&q.p, counts, quotas, off, second);
  expect(a == PIXCON_OK && b == PIXCON_OK && off[1] == 200, "seeds", "sampling failed");
  expect(memcmp(first, second, sizeof first) != 0, "seeds", "different seeds, same selection");
  free_problem(&q);
}

int main(void) {
  test_philox();
  int cases = random_cases();
  test_ties();
  test_errors();
  test_seeds();
  printf("%d sampling cases x 3 thread counts, philox, ties, errors, seeds: %d failures\n", cases,
         failures);
  return failures ? 1 : 0;
}
