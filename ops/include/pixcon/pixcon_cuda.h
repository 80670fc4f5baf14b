/* pixcon CUDA C API: the fused contrastive loss of pixcon.h, forward and backward, on the GPU.
 * Fused kernels in the FlashAttention shape (docs/design.md section 3b): similarities are computed tile by
 * tile in shared memory and folded at once, never written to global memory.
 * Cost per bag of n rows: forward n^2 D multiply-adds ("pair": 2 n^2 D) and ~n^2 exps; backward
 * 2 n^2 D multiply-adds (more for D > 256) and ~2 n^2 exps. Memory: the workspace, O(N D + N + B).
 */
/*
 * Pure C; includable without the CUDA headers (the stream is the CUDA runtime's opaque struct type,
 * declared here by name).
 *
 * Semantics are exactly those of pixcon.h / docs/design.md section 2: same per-row loss, valid flag,
 * statistics layout (stats[row * PIXCON_NUM_STATS + k]) and gradient.
 *
 * The data contract:
 *  - Every pointer of base (embeddings, labels, masks, image ids, bag_offsets) and every buffer of
 *    the entry points is a DEVICE pointer. The host reads nothing from device memory: no
 *    device-to-host copy, no stream or device synchronisation; the entry points only enqueue work
 *    on `stream`, so a CUDA graph may capture them.
 *  - The host sizes the launches from num_rows, dim and num_bags alone; the (bag, row tile) work
 *    list is built on the device from bag_offsets, and one launch serves every bag.
 *  - Data that only the device can check is checked there: a label below 0 other than
 *    ignore_index, or bag offsets that do not rise from 0 to N without decreasing, trigger a
 *    device-side assertion (as torch's own kernels do for a bad index): the stream's next
 *    synchronisation reports cudaErrorAssert ("device-side assert triggered"), or the call itself
 *    returns PIXCON_ERROR_CUDA saying so when the assertion fired before its last launch; after
 *    bad offsets the kernels read no row at all.
 *  - Labels are compared as raw int64 values (no dense relabelling).
 *  - The entry points never allocate: the caller passes a workspace of at least the queried size
 *    (any alignment; 256 bytes of slack are included): a packed copy of the embeddings with D
 *    padded to a multiple of 32 (in float32 for float32 input, float64 for float64, else 16-bit),
 *    N row flags and B + 1 work-list entries. Nothing of size rows x bag, whatever the problem.
 *  - Errors: a failed launch or CUDA runtime call returns PIXCON_ERROR_CUDA with the CUDA error's
 *    name and string in `message` (when not NULL); bad host-side arguments return
 *    PIXCON_ERROR_INVALID_ARGUMENT with a message naming the argument.
 *  - base.num_threads is ignored.
 */
#ifndef PIXCON_PIXCON_CUDA_H
#define PIXCON_PIXCON_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "pixcon/pixcon.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st; /* cudaStream_t is struct CUstream_st * */

/* Tuning flags of the fused kernels, for tests; 0 is the production choice: 64 anchor rows x 64
 * columns per tile, the anchor rows kept in shared memory for the CTA's whole sweep when they fit
 * on the device (else streamed with every column tile). */
#define PIXCON_CUDA_SMALL_TILES 1u     /* 32 x 32 tiles: small problems span several, partial tiles */
#define PIXCON_CUDA_STREAM_ANCHORS 2u  /* stream the anchor rows even when they would fit */

typedef struct pixcon_cuda_loss_params {
  pixcon_loss_params base;  /* all device pointers */
  int allow_tf32;           /* nonzero: float32 similarities and gradients may use TF32 tensor cores */
  unsigned tuning;          /* PIXCON_CUDA_* flags above; 0 in production */
  struct CUstream_st *stream; /* every kernel is issued on this stream */
} pixcon_cuda_loss_params;

/* Host-side checks: sizes, strides, dtype, temperature, denominator, non-NULL pointers, the tuning
 * flags. Reads no device memory. Message as in pixcon_loss_params_check. */
pixcon_status pixcon_cuda_loss_params_check(const pixcon_cuda_loss_params *q, char *message,
                                            size_t message_size);

/* Bytes of workspace the forward / backward need (0 when the parameters fail the check). */
size_t pixcon_cuda_forward_workspace_size(const pixcon_cuda_loss_params *q);
size_t pixcon_cuda_backward_workspace_size(const pixcon_cuda_loss_params *q);

/* Forward. loss [N], stats [N * PIXCON_NUM_STATS] in the accumulation type (float64 for float64
 * input, else float32); valid [N]. All device pointers. Asynchronous on q->stream; the host asks
 * the runtime only for the current device and its shared-memory limit (no synchronisation). */
pixcon_status pixcon_cuda_contrastive_forward(const pixcon_cuda_loss_params *q, void *loss,
                                              uint8_t *valid, void *stats, void *workspace,
                                              size_t workspace_size, char *message,
                                              size_t message_size);

/* Backward. grad_loss [N] and stats in the accumulation type (grad_loss of invalid rows is
 * ignored); grad_embeddings [N, D] contiguous in base.dtype. All device pointers. Asynchronous. */
pixcon_status pixcon_cuda_contrastive_backward(const pixcon_cuda_loss_params *q,
                                               const void *grad_loss, const void *stats,
                                               void *grad_embeddings, void *workspace,
                                               size_t workspace_size, char *message,
                                               size_t message_size);

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_PIXCON_CUDA_H */
