/*
 * Public CPU entry points: workspace sizes, and the run-time choice of the instruction-set tier
 * (never only the build machine's), so one build runs on any x86-64. The argument checks are in
 * params.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "pixcon/pixcon.h"
#include "tier.h"

static pixcon_isa g_isa = PIXCON_ISA_AUTO;

const char *pixcon_isa_name(pixcon_isa isa) {
  switch (isa) {
    case PIXCON_ISA_SCALAR: return "scalar";
    case PIXCON_ISA_AVX2: return "avx2";
    case PIXCON_ISA_AVX512: return "avx512";
    default: return "auto";
  }
}

int pixcon_cpu_isa_supported(pixcon_isa isa) {
  switch (isa) {
    case PIXCON_ISA_SCALAR: return 1;
#if defined(PIXCON_HAVE_X86_TIERS)
    case PIXCON_ISA_AVX2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case PIXCON_ISA_AVX512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
#endif
    default: return 0;
  }
}

static pixcon_isa widest_isa(void) {
  if (pixcon_cpu_isa_supported(PIXCON_ISA_AVX512)) return PIXCON_ISA_AVX512;
  if (pixcon_cpu_isa_supported(PIXCON_ISA_AVX2)) return PIXCON_ISA_AVX2;
  return PIXCON_ISA_SCALAR;
}

static pixcon_isa isa_from_env(void) {
  const char *env = getenv("PIXCON_CPU_ISA");
  if (!env || !*env) return PIXCON_ISA_AUTO;
  for (int k = PIXCON_ISA_SCALAR; k <= PIXCON_ISA_AVX512; ++k)
    if (strcmp(env, pixcon_isa_name((pixcon_isa)k)) == 0 && pixcon_cpu_isa_supported((pixcon_isa)k))
      return (pixcon_isa)k;
  return PIXCON_ISA_AUTO; /* unknown or unsupported: fall back to detection */
}

pixcon_isa pixcon_cpu_isa(void) {
  pixcon_isa isa = __atomic_load_n(&g_isa, __ATOMIC_ACQUIRE);
  if (isa == PIXCON_ISA_AUTO) {
    isa = isa_from_env();
    if (isa == PIXCON_ISA_AUTO) isa = widest_isa();
    __atomic_store_n(&g_isa, isa, __ATOMIC_RELEASE);
  }
  return isa;
}

pixcon_status pixcon_cpu_set_isa(pixcon_isa isa) {
  if (isa == PIXCON_ISA_AUTO) {
    __atomic_store_n(&g_isa, PIXCON_ISA_AUTO, __ATOMIC_RELEASE);
    return PIXCON_OK;
  }
  if (!pixcon_cpu_isa_supported(isa)) return PIXCON_ERROR_UNSUPPORTED_ISA;
  __atomic_store_n(&g_isa, isa, __ATOMIC_RELEASE);
  return PIXCON_OK;
}

static int g_fixed_shift = 1;

void pixcon_cpu_set_fixed_shift(int enabled) {
  __atomic_store_n(&g_fixed_shift, enabled != 0, __ATOMIC_RELEASE);
}

int pixcon_cpu_fixed_shift(void) { return __atomic_load_n(&g_fixed_shift, __ATOMIC_ACQUIRE); }

double pixcon_cpu_fma_peak_gflops(int num_threads, double seconds) {
  int threads = pixcon_resolve_threads(num_threads);
  switch (pixcon_cpu_isa()) {
#if defined(PIXCON_HAVE_X86_TIERS)
    case PIXCON_ISA_AVX512: return pixcon_cpu_fma_peak_gflops_avx512(threads, seconds);
    case PIXCON_ISA_AVX2: return pixcon_cpu_fma_peak_gflops_avx2(threads, seconds);
#endif
    default: return pixcon_cpu_fma_peak_gflops_scalar(threads, seconds);
  }
}

static int accumulates_in_double(const pixcon_loss_params *p) {
  return pixcon_loss_accumulation_dtype(p->dtype) == PIXCON_FLOAT64;
}

static size_t real_size(const pixcon_loss_params *p) {
  return accumulates_in_double(p) ? sizeof(double) : sizeof(float);
}

size_t pixcon_cpu_forward_workspace_size(const pixcon_loss_params *p) {
  pixcon_layout l;
  if (pixcon_loss_params_check_shape(p, NULL, 0) != PIXCON_OK) return 0;
  pixcon_layout_compute(p, real_size(p), 0, &l);
  return l.total;
}

size_t pixcon_cpu_backward_workspace_size(const pixcon_loss_params *p) {
  pixcon_layout l;
  if (pixcon_loss_params_check_shape(p, NULL, 0) != PIXCON_OK) return 0;
  pixcon_layout_compute(p, real_size(p), 1, &l);
  return l.total;
}

#define PIXCON_DISPATCH(kind, p, ...)                                                     \
  do {                                                                                    \
    int f64_ = accumulates_in_double(p);                                                  \
    switch (pixcon_cpu_isa()) {                                                           \
      PIXCON_X86_CASES(kind, f64_, __VA_ARGS__)                                           \
      default:                                                                            \
        return f64_ ? pixcon_cpu_##kind##_scalar_f64(__VA_ARGS__)                         \
                    : pixcon_cpu_##kind##_scalar_f32(__VA_ARGS__);                        \
    }                                                                                     \
  } while (0)

#if defined(PIXCON_HAVE_X86_TIERS)
#define PIXCON_X86_CASES(kind, f64, ...)                                                  \
  case PIXCON_ISA_AVX512:                                                                 \
    return f64 ? pixcon_cpu_##kind##_avx512_f64(__VA_ARGS__)                              \
               : pixcon_cpu_##kind##_avx512_f32(__VA_ARGS__);                             \
  case PIXCON_ISA_AVX2:                                                                   \
    return f64 ? pixcon_cpu_##kind##_avx2_f64(__VA_ARGS__) : pixcon_cpu_##kind##_avx2_f32(__VA_ARGS__);
#else
#define PIXCON_X86_CASES(kind, f64, ...)
#endif

pixcon_status pixcon_cpu_contrastive_forward(const pixcon_loss_params *p, void *loss,
                                             uint8_t *valid, void *stats, void *workspace,
                                             size_t workspace_size) {
  pixcon_status st = pixcon_loss_params_check(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  PIXCON_DISPATCH(forward, p, p, loss, valid, stats, workspace, workspace_size);
}

pixcon_status pixcon_cpu_contrastive_backward(const pixcon_loss_params *p,
                                              const void *grad_loss, const void *stats,
                                              void *grad_embeddings, void *workspace,
                                              size_t workspace_size) {
  pixcon_status st = pixcon_loss_params_check(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  PIXCON_DISPATCH(backward, p, p, grad_loss, stats, grad_embeddings, workspace, workspace_size);
}
