/*
 * The multiply-add peak of one instruction-set tier (compiled once per tier, like
 * contrastive_tier.c): every thread runs independent chains of vector multiply-adds on registers
 * only, so the rate is the cores' arithmetic limit, the yardstick of the loss benchmark's
 * efficiency figures. ACCUMULATORS chains cover the latency of the multiply-add units (4 cycles x
 * 2 ports needs 8; 12 leave margin and fit AVX2's 16 registers with the two operands).
 */
#include <omp.h>
#include <stdint.h>

#include "tier.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define VLANES ((int)(PIXCON_VECTOR_BYTES / sizeof(float)))
#define ACCUMULATORS 12

typedef float vfloat __attribute__((vector_size(PIXCON_VECTOR_BYTES)));

/* iterations x ACCUMULATORS vector multiply-adds on this thread; returns a value that depends on
 * all of them, so none can be dropped. */
static float chains(int64_t iterations, float seed) {
  vfloat acc[ACCUMULATORS], m = (vfloat){0} + (1.0f - 1e-7f * seed), c = (vfloat){0} + 1e-7f;
  for (int k = 0; k < ACCUMULATORS; ++k) acc[k] = (vfloat){0} + (float)k;
  for (int64_t it = 0; it < iterations; ++it) {
    for (int k = 0; k < ACCUMULATORS; ++k) acc[k] = acc[k] * m + c;
    __asm__ volatile("" : "+v"(m)); /* the multiplier is unknown to the compiler each iteration */
  }
  float total = 0;
  for (int k = 0; k < ACCUMULATORS; ++k)
    for (int l = 0; l < VLANES; ++l) total += acc[k][l];
  return total;
}

/* Seconds for `iterations` on every thread. */
static double timed_chains(int num_threads, int64_t iterations) {
  volatile float sink = 0;
  double start = omp_get_wtime();
#pragma omp parallel num_threads(num_threads)
  {
    float v = chains(iterations, (float)(omp_get_thread_num() + 1));
#pragma omp atomic
    sink += v;
  }
  return omp_get_wtime() - start;
}

/* The best of TRIALS runs of about seconds / TRIALS each: a run that another process interrupted
 * is slower, never faster, so the fastest is the cores' rate and a lower, disturbed reading cannot
 * inflate the efficiency figures measured against it. */
#define TRIALS 4

double CAT(pixcon_cpu_fma_peak_gflops_, PIXCON_FN_SUFFIX)(int num_threads, double seconds) {
  int64_t iterations = 1 << 12;
  double elapsed = timed_chains(num_threads, iterations), target = seconds / TRIALS;
  while (elapsed < target / 4 && iterations < (INT64_C(1) << 40)) {
    iterations *= 4;
    elapsed = timed_chains(num_threads, iterations);
  }
  if (elapsed > 0 && elapsed < target) iterations = (int64_t)((double)iterations * target / elapsed) + 1;
  double best = 0, flops = 2.0 * VLANES * ACCUMULATORS * (double)iterations * num_threads;
  for (int t = 0; t < TRIALS; ++t) {
    double rate = flops / timed_chains(num_threads, iterations) / 1e9;
    if (rate > best) best = rate;
  }
  return best;
}
