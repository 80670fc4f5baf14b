/* pixcon CUDA C API: the fused contrastive loss of pixcon.h, forward and backward, on the GPU.
 * Cost per bag of N_b rows: forward N_b^2 D multiply-adds (cuBLAS) + O(N_b^2) exps, backward 2 N_b^2 D;
 * memory O(N D + rows_per_block * N_b), bounded by a settable workspace limit, never O(N^2). */
/*
 * Pure C; includable without the CUDA headers (the stream and cuBLAS handle are the CUDA
 * runtime's own opaque struct types, declared here by name).
 *
 * Semantics are exactly those of pixcon.h / DESIGN.md section 2: same per-row loss, valid flag
 * and statistics layout (stats[row * PIXCON_NUM_STATS + k]), same gradient.
 *
 * Memory rules:
 *  - embeddings, labels, anchor_mask, contrast_mask, image_ids (base.*), and every output /
 *    input buffer of the entry points are DEVICE pointers.
 *  - base.bag_offsets is a HOST pointer ([B + 1], CSR): the kernels launch one row block of one
 *    bag at a time and need the offsets on the host; requiring them there avoids a device->host
 *    copy (and its synchronisation) inside the op. A caller that has the offsets only on the
 *    device must copy them to the host itself.
 *  - Labels are compared directly as int64 values (no dense relabelling); the label-range check
 *    of pixcon_loss_params_check reads host memory and is NOT done here: validate labels before
 *    calling (the shim does it with device ops).
 *  - The ops never allocate: the caller passes a workspace of at least the queried size
 *    (any alignment; 256 bytes of slack are included) and a cuBLAS handle. The ops set the
 *    handle's stream to `stream` (and leave it so) and do not change its math mode; the TF32
 *    choice is made per call through the compute type (allow_tf32).
 *  - The workspace holds a packed copy of the embeddings (O(N D)) plus a block of
 *    rows_per_block x max_bag_size similarities; rows_per_block is the largest value that keeps
 *    the total within workspace_limit (at least 1, at most the largest bag), so the quadratic
 *    part never exceeds the limit. If even one row does not fit, the size query returns the
 *    one-row size (which exceeds the limit).
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

struct CUstream_st;   /* cudaStream_t is struct CUstream_st * */
struct cublasContext; /* cublasHandle_t is struct cublasContext * */

/* Default bound on the workspace (bytes) when workspace_limit is 0. */
#define PIXCON_CUDA_DEFAULT_WORKSPACE_LIMIT ((size_t)256 << 20)

typedef struct pixcon_cuda_loss_params {
  pixcon_loss_params base;       /* device pointers, except base.bag_offsets (host) */
  int allow_tf32;                /* nonzero: float32 GEMMs may use TF32 tensor cores */
  size_t workspace_limit;        /* bytes; 0 means PIXCON_CUDA_DEFAULT_WORKSPACE_LIMIT */
  struct cublasContext *cublas;  /* caller-owned cuBLAS handle, required when N > 0 */
  struct CUstream_st *stream;    /* every kernel and GEMM is issued on this stream */
} pixcon_cuda_loss_params;

/* Host-side checks: sizes, strides, dtype, temperature, denominator, host bag offsets, the
 * handle. Does not read device memory. Message as in pixcon_loss_params_check. */
pixcon_status pixcon_cuda_loss_params_check(const pixcon_cuda_loss_params *q, char *message,
                                            size_t message_size);

/* Rows of a bag processed per GEMM + reduction step for q (forward / backward). */
int64_t pixcon_cuda_rows_per_block(const pixcon_cuda_loss_params *q, int backward);

/* Bytes of workspace the forward / backward need (see the memory rules above). */
size_t pixcon_cuda_forward_workspace_size(const pixcon_cuda_loss_params *q);
size_t pixcon_cuda_backward_workspace_size(const pixcon_cuda_loss_params *q);

/* Forward. loss [N], stats [N * PIXCON_NUM_STATS] in the accumulation type (float64 for
 * float64 input, else float32); valid [N]. All device pointers. Asynchronous on q->stream. */
pixcon_status pixcon_cuda_contrastive_forward(const pixcon_cuda_loss_params *q, void *loss,
                                              uint8_t *valid, void *stats, void *workspace,
                                              size_t workspace_size);

/* Backward. grad_loss [N] and stats in the accumulation type (grad_loss of invalid rows is
 * ignored); grad_embeddings [N, D] contiguous in base.dtype. All device pointers. */
pixcon_status pixcon_cuda_contrastive_backward(const pixcon_cuda_loss_params *q,
                                               const void *grad_loss, const void *stats,
                                               void *grad_embeddings, void *workspace,
                                               size_t workspace_size);

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_PIXCON_CUDA_H */
