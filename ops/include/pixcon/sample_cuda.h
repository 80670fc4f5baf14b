/* pixcon CUDA C API: the pixel sampling of sample.h on the GPU.
 * Cost: O(B H W) for the keys and group counts, one radix sort of the valid pixels' (group, key)
 * pairs, O(B H W) to select and compact; memory O(B H W) workspace. */
/*
 * Pure C; includable without the CUDA headers. Semantics are exactly those of sample.h: for the
 * same inputs and seed the selected indices equal the CPU's, bit for bit.
 *
 * Memory rules:
 *  - base.labels and base.predictions, counts, quotas and indices are DEVICE pointers.
 *  - The ops never allocate: the caller passes a workspace of at least the queried size (any
 *    alignment) and keeps it unchanged between pixcon_cuda_sample_counts and
 *    pixcon_cuda_sample_select (it holds the sorted pixels).
 *  - Everything is asynchronous on `stream`. The one synchronisation of a sampling call is the
 *    caller's: copying counts [G + 1] to the host for pixcon_sample_quotas (the output size
 *    depends on them), then copying the quotas back.
 *  - base.num_threads is ignored.
 */
#ifndef PIXCON_SAMPLE_CUDA_H
#define PIXCON_SAMPLE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "pixcon/sample.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st * */

typedef struct pixcon_cuda_sample_params {
  pixcon_sample_params base;  /* device pointers */
  struct CUstream_st *stream; /* every kernel and CUB call is issued on this stream */
} pixcon_cuda_sample_params;

/* Bytes of workspace pixcon_cuda_sample_counts / _select need (0 when the params are invalid). */
size_t pixcon_cuda_sample_workspace_size(const pixcon_cuda_sample_params *q);

/* Step 1: counts [G + 1] (device), as pixcon_cpu_sample_counts. */
pixcon_status pixcon_cuda_sample_counts(const pixcon_cuda_sample_params *q, int64_t *counts,
                                        void *workspace, size_t workspace_size);

/* Step 3: quotas [G] (device, from pixcon_sample_quotas), total = bag_offsets[num_bags];
 * writes indices [total] (device), ascending. total must equal the sum of the quotas (checking
 * it would cost a synchronisation): a smaller value lets the compaction write past indices. */
pixcon_status pixcon_cuda_sample_select(const pixcon_cuda_sample_params *q, const int64_t *quotas,
                                        int64_t total, int64_t *indices, void *workspace,
                                        size_t workspace_size);

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_SAMPLE_CUDA_H */
