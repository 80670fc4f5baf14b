/*
 * Public CPU entry points: argument checks, workspace sizes, and the run-time choice of the
 * instruction-set tier (never only the build machine's), so one build runs on any x86-64.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "message.h"
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

pixcon_status pixcon_loss_params_check_scalars(const pixcon_loss_params *p, char *message,
                                               size_t size) {
  if (message && size > 0) message[0] = '\0';
  if (!p) return pixcon_invalid_argument(message, size, "params is NULL");
  if (p->num_rows < 0) return pixcon_invalid_argument(message, size, "embeddings: negative number of rows");
  if (p->dim < 1) return pixcon_invalid_argument(message, size, "embeddings: need at least one feature column, got %lld", (long long)p->dim);
  if (p->num_rows > 0 && (!p->embeddings || !p->labels))
    return pixcon_invalid_argument(message, size, "embeddings and labels must not be NULL");
  if (p->dtype < PIXCON_FLOAT32 || p->dtype > PIXCON_BFLOAT16)
    return pixcon_invalid_argument(message, size, "embeddings: unsupported dtype code %d", (int)p->dtype);
  if (!(p->temperature > 0) || p->temperature != p->temperature || p->temperature == 1.0 / 0.0)
    return pixcon_invalid_argument(message, size, "temperature must be a positive finite number, got %g", p->temperature);
  if (p->denominator != PIXCON_DENOMINATOR_ALL && p->denominator != PIXCON_DENOMINATOR_PAIR)
    return pixcon_invalid_argument(message, size, "denominator: unknown code %d", (int)p->denominator);
  if (p->num_bags < 1 || !p->bag_offsets)
    return pixcon_invalid_argument(message, size, "bag_offsets must hold at least two entries [0, ..., N]");
  return PIXCON_OK;
}

pixcon_status pixcon_loss_params_check_shape(const pixcon_loss_params *p, char *message,
                                             size_t size) {
  pixcon_status st = pixcon_loss_params_check_scalars(p, message, size);
  if (st != PIXCON_OK) return st;
  if (p->bag_offsets[0] != 0)
    return pixcon_invalid_argument(message, size, "bag_offsets must start at 0, got %lld", (long long)p->bag_offsets[0]);
  for (int64_t b = 0; b < p->num_bags; ++b)
    if (p->bag_offsets[b + 1] < p->bag_offsets[b])
      return pixcon_invalid_argument(message, size, "bag_offsets must be non-decreasing (offsets[%lld] = %lld > offsets[%lld] = %lld)",
                  (long long)b, (long long)p->bag_offsets[b], (long long)(b + 1), (long long)p->bag_offsets[b + 1]);
  if (p->bag_offsets[p->num_bags] != p->num_rows)
    return pixcon_invalid_argument(message, size, "bag_offsets must end at the number of rows %lld, got %lld",
                (long long)p->num_rows, (long long)p->bag_offsets[p->num_bags]);
  return PIXCON_OK;
}

pixcon_status pixcon_loss_params_check(const pixcon_loss_params *p, char *message, size_t size) {
  pixcon_status st = pixcon_loss_params_check_shape(p, message, size);
  if (st != PIXCON_OK) return st;
  for (int64_t r = 0; r < p->num_rows; ++r)
    if (p->labels[r] < 0 && p->labels[r] != p->ignore_index)
      return pixcon_invalid_argument(message, size, "labels must be >= 0 or ignore_index (%lld), found %lld at row %lld",
                  (long long)p->ignore_index, (long long)p->labels[r], (long long)r);
  return PIXCON_OK;
}

static size_t real_size(const pixcon_loss_params *p) {
  return p->dtype == PIXCON_FLOAT64 ? sizeof(double) : sizeof(float);
}

size_t pixcon_cpu_forward_workspace_size(const pixcon_loss_params *p) {
  pixcon_layout l;
  pixcon_layout_compute(p, real_size(p), 0, &l);
  return l.total;
}

size_t pixcon_cpu_backward_workspace_size(const pixcon_loss_params *p) {
  pixcon_layout l;
  pixcon_layout_compute(p, real_size(p), 1, &l);
  return l.total;
}

#define PIXCON_DISPATCH(kind, p, ...)                                                     \
  do {                                                                                    \
    int f64_ = (p)->dtype == PIXCON_FLOAT64;                                              \
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
