/* Entry points of each compiled tier (contrastive_tier.c built per ISA and precision). */
#ifndef PIXCON_CPU_TIER_H
#define PIXCON_CPU_TIER_H

#include <stddef.h>
#include <stdint.h>

#include "pixcon/pixcon.h"

#define PIXCON_DECLARE_TIER(sfx)                                                            \
  pixcon_status pixcon_cpu_forward_##sfx(const pixcon_loss_params *p, void *loss,           \
                                         uint8_t *valid, void *stats, void *workspace,      \
                                         size_t workspace_size);                            \
  pixcon_status pixcon_cpu_backward_##sfx(const pixcon_loss_params *p, const void *grad_loss, \
                                          const void *stats, void *grad_embeddings,         \
                                          void *workspace, size_t workspace_size);

double pixcon_cpu_fma_peak_gflops_scalar(int num_threads, double seconds);
#if defined(PIXCON_HAVE_X86_TIERS)
double pixcon_cpu_fma_peak_gflops_avx2(int num_threads, double seconds);
double pixcon_cpu_fma_peak_gflops_avx512(int num_threads, double seconds);
#endif

PIXCON_DECLARE_TIER(scalar_f32)
PIXCON_DECLARE_TIER(scalar_f64)
#if defined(PIXCON_HAVE_X86_TIERS)
PIXCON_DECLARE_TIER(avx2_f32)
PIXCON_DECLARE_TIER(avx2_f64)
PIXCON_DECLARE_TIER(avx512_f32)
PIXCON_DECLARE_TIER(avx512_f64)
#endif

#endif /* PIXCON_CPU_TIER_H */
