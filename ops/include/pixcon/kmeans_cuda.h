/* pixcon CUDA C API: the spherical k-means of kmeans.h on the GPU.
 *
 * Pure C; includable without the CUDA headers. Semantics are exactly those of kmeans.h: for the
 * same inputs the labels and centroids equal the CPU's, bit for bit.
 *
 * Memory rules:
 *  - base.features, base.valid, labels and centroids are DEVICE pointers.
 *  - The op never allocates: the caller passes a workspace of at least the queried size.
 *  - Everything is asynchronous on `stream`, with no host synchronisation and no device-to-host
 *    copy: the host loop over restarts and iterations only launches kernels.
 *  - base.num_threads is ignored.
 */
#ifndef PIXCON_KMEANS_CUDA_H
#define PIXCON_KMEANS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "pixcon/kmeans.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st * */

typedef struct pixcon_cuda_kmeans_params {
  pixcon_kmeans_params base;  /* device pointers */
  struct CUstream_st *stream; /* every kernel and CUB call is issued on this stream */
} pixcon_cuda_kmeans_params;

/* Bytes of workspace pixcon_cuda_kmeans needs (0 when the params are invalid). */
size_t pixcon_cuda_kmeans_workspace_size(const pixcon_cuda_kmeans_params *q);

/* The whole run of kmeans.h: labels [n] (int64, device) and centroids [K, D] (float32, device). */
pixcon_status pixcon_cuda_kmeans(const pixcon_cuda_kmeans_params *q, int64_t *labels,
                                 float *centroids, void *workspace, size_t workspace_size);

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_KMEANS_CUDA_H */
