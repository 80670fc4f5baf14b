/*
 * libFuzzer target of the sampling C API (sample.h): labels and predictions with values at the
 * integer limits, NULL predictions where a strategy needs them, unknown strategies, class counts
 * and rule parameters that are zero, negative or huge, sizes no caller could allocate.
 *
 * Properties: a rejected problem has a message and a zero workspace size; an accepted one runs the
 * three steps without a sanitizer report and selects exactly the reference's pixels and bags.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "pixcon/sample.h"
#include "pixcon_reference.h"

/* Groups beyond this are a size the harness cannot allocate counts for, not a finding. */
#define MAX_GROUPS (1 << 16)

static void fail(const char *why) {
  fprintf(stderr, "pixcon fuzz_sample: %s\n", why);
  abort();
}

static int64_t take_small_or_hostile(fuzz_input *in, int64_t lo, int64_t hi) {
  return take_range(in, 0, 7) ? take_range(in, lo, hi) : TAKE_PICK(in, kHostileInts);
}

static int64_t *take_labels(fuzz_input *in, int64_t n, int64_t classes) {
  int64_t *a = malloc((size_t)(n + 1) * sizeof(int64_t));
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = take_range(in, 0, 15);
    a[i] = r < 12 ? r % (classes > 0 ? classes : 4) : r == 12 ? 255 : r == 13 ? -1 : TAKE_PICK(in, kHostileInts);
  }
  return a;
}

static void take_rule(fuzz_input *in, pixcon_sample_params *p) {
  p->strategy = (pixcon_sample_strategy)take_range(in, 0, 3);
  p->seed = take_bits(in, 8);
  p->per_image = take_bool(in);
  p->ignore_index = take_bool(in) ? 255 : TAKE_PICK(in, kHostileInts);
  p->num_classes = take_small_or_hostile(in, 0, 6);
  p->num_samples = take_small_or_hostile(in, 0, 40);
  p->min_views = take_small_or_hostile(in, 0, 6);
  p->max_views = take_small_or_hostile(in, 0, 12);
  p->max_total = take_small_or_hostile(in, 0, 60);
  p->max_samples = take_small_or_hostile(in, 0, 60);
  p->num_threads = (int)take_range(in, 1, 3);
}

static void run_problem(const pixcon_sample_params *p) {
  char message[256];
  pixcon_status st = pixcon_sample_params_check_shape(p, message, sizeof message);
  size_t bytes = pixcon_cpu_sample_workspace_size(p);
  if (st != PIXCON_OK) {
    if (message[0] == '\0') fail("a rejected problem has no message");
    if (bytes != 0) fail("a rejected problem has a workspace size");
    return;
  }
  int64_t n = p->num_images * p->pixels_per_image, groups = pixcon_sample_num_groups(p), bags = pixcon_sample_num_bags(p);
  if (groups > MAX_GROUPS) return;
  int64_t *counts = malloc((size_t)(groups + 1) * sizeof(int64_t)), *quotas = malloc((size_t)(groups + 1) * sizeof(int64_t));
  int64_t *offsets = malloc((size_t)(bags + 1) * sizeof(int64_t)), *ref_offsets = malloc((size_t)(bags + 1) * sizeof(int64_t));
  int64_t *ref_indices = malloc((size_t)(n + 1) * sizeof(int64_t));
  void *ws = malloc(bytes + 1);
  if (pixcon_cpu_sample_counts(p, counts, ws, bytes) != PIXCON_OK) fail("counts rejects an accepted problem");
  pixcon_status quota_status = pixcon_sample_quotas(p, counts, quotas, offsets, message, sizeof message);
  pixcon_status ref_status = pixcon_reference_sample(p, ref_indices, ref_offsets);
  if (quota_status != ref_status) fail("quotas and the reference disagree on the labels");
  if (quota_status == PIXCON_OK) {
    int64_t total = offsets[bags];
    int64_t *indices = malloc((size_t)(total + 1) * sizeof(int64_t));
    if (pixcon_cpu_sample_select(p, quotas, indices, ws, bytes) != PIXCON_OK) fail("select rejects an accepted problem");
    if (memcmp(offsets, ref_offsets, (size_t)(bags + 1) * sizeof(int64_t)) != 0) fail("bag offsets differ from the reference");
    if (memcmp(indices, ref_indices, (size_t)total * sizeof(int64_t)) != 0) fail("indices differ from the reference");
    free(indices);
  } else if (message[0] == '\0') {
    fail("rejected labels have no message");
  }
  free(counts);
  free(quotas);
  free(offsets);
  free(ref_offsets);
  free(ref_indices);
  free(ws);
}

/* Sizes no caller could allocate: the check reads no array; the workspace must not wrap around. */
static void run_huge(fuzz_input *in) {
  static int64_t dummy[1];
  pixcon_sample_params p;
  memset(&p, 0, sizeof p);
  take_rule(in, &p);
  p.num_images = TAKE_PICK(in, kHostileInts);
  p.pixels_per_image = TAKE_PICK(in, kHostileInts);
  p.labels = dummy;
  p.predictions = take_bool(in) ? dummy : NULL;
  if (pixcon_sample_params_check_shape(&p, NULL, 0) != PIXCON_OK) return;
  size_t bytes = pixcon_cpu_sample_workspace_size(&p);
  unsigned __int128 pixels = (unsigned __int128)(uint64_t)p.num_images * (uint64_t)p.pixels_per_image;
  if (bytes != 0 && (unsigned __int128)bytes < pixels) fail("the workspace size wrapped around");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_input in = {data, size, 0};
  if (take_range(&in, 0, 7) == 0) {
    run_huge(&in);
    return 0;
  }
  pixcon_sample_params p;
  memset(&p, 0, sizeof p);
  take_rule(&in, &p);
  p.num_images = take_range(&in, 0, 4);
  p.pixels_per_image = take_range(&in, 0, 40);
  int64_t n = p.num_images * p.pixels_per_image;
  int64_t *labels = take_range(&in, 0, 15) ? take_labels(&in, n, p.num_classes) : NULL;
  int64_t *predictions = take_bool(&in) ? take_labels(&in, n, p.num_classes) : NULL;
  p.labels = labels;
  p.predictions = predictions;
  run_problem(&p);
  free(labels);
  free(predictions);
  return 0;
}
