/*
 * Test oracles of the C API, built only with the tests: plain implementations of the loss of
 * pixcon.h, of the sampling of sample.h and of the k-means of kmeans.h, written for clarity, not speed, that the kernels are
 * compared with. No product library contains them.
 */
#ifndef PIXCON_REFERENCE_H
#define PIXCON_REFERENCE_H

#include <stdint.h>

#include "pixcon/kmeans.h"
#include "pixcon/pixcon.h"
#include "pixcon/sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* pixcon_cpu_contrastive_forward / _backward evaluated pair by pair: O(N^2 D) time, O(1) extra
 * memory, float64 accumulation whatever the dtype. */
pixcon_status pixcon_reference_contrastive_forward(const pixcon_loss_params *p, double *loss,
                                                   uint8_t *valid, double *stats);
pixcon_status pixcon_reference_contrastive_backward(const pixcon_loss_params *p,
                                                    const double *grad_loss,
                                                    const double *stats,
                                                    double *grad_embeddings);

/* All three steps of the sampling (one thread, a sort per group). indices needs room for
 * B * H * W entries, bag_offsets for num_bags + 1. It allocates its scratch with malloc and
 * returns PIXCON_ERROR_WORKSPACE_TOO_SMALL when that fails. */
pixcon_status pixcon_reference_sample(const pixcon_sample_params *p, int64_t *indices,
                                      int64_t *bag_offsets);

/* The k-means of kmeans.h (one thread, malloc'd scratch, D <= 4096): labels [n], centroids [K, D].
 * Returns PIXCON_ERROR_WORKSPACE_TOO_SMALL when an allocation fails. */
pixcon_status pixcon_reference_kmeans(const pixcon_kmeans_params *p, int64_t *labels, float *centroids);

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_REFERENCE_H */
