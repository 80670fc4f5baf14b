/*
 * pixcon C API: the fused pixel-wise, label-based contrastive loss.
 *
 * Pure C, no framework types. The caller owns every buffer (outputs and the
 * workspace); kernels never allocate and report failure through a status code.
 * The mathematics is in docs/design.md section 2; in short, for an anchor row i of a bag,
 *   s_ij = z_i . z_j / temperature
 *   P(i) = contrast rows j != i of the bag with y_j == y_i   (+ i itself if self_positive)
 *   N(i) = contrast rows j of the bag with y_j != y_i        (and image_j == image_i, if given)
 *   "all":  l_i = LSE_{a in P(i) u N(i)} s_ia - mean_{p in P(i)} s_ip
 *   "pair": l_i = mean_{p in P(i)} softplus(LSE_{n in N(i)} s_in - s_ip)
 * An anchor is valid when |P(i)| >= 1; invalid rows get loss 0 and no gradient.
 */
#ifndef PIXCON_PIXCON_H
#define PIXCON_PIXCON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pixcon_status {
  PIXCON_OK = 0,
  PIXCON_ERROR_INVALID_ARGUMENT = 1,
  PIXCON_ERROR_WORKSPACE_TOO_SMALL = 2,
  PIXCON_ERROR_UNSUPPORTED_ISA = 3,
  PIXCON_ERROR_CUDA = 16    /* CUDA entry points: a kernel launch or CUDA runtime call failed */
} pixcon_status;

/* Element type of the embeddings (and of their gradient). Accumulation is float64 for
 * PIXCON_FLOAT64 and float32 for every other type; losses, statistics and the upstream
 * gradient use that accumulation type. The values are ABI: bindings mirror them by number. */
typedef enum pixcon_dtype {
  PIXCON_FLOAT32 = 0,
  PIXCON_FLOAT64 = 1,
  PIXCON_FLOAT16 = 2,
  PIXCON_BFLOAT16 = 3
} pixcon_dtype;

typedef enum pixcon_denominator {
  PIXCON_DENOMINATOR_ALL = 0,  /* SupCon L_out, pytorch-metric-learning SupConLoss */
  PIXCON_DENOMINATOR_PAIR = 1  /* official code of Zhao et al., ContrastiveSeg, Pissas et al. */
} pixcon_denominator;

/* Instruction-set tier of the CPU kernels; AUTO picks the widest the running CPU has. */
typedef enum pixcon_isa {
  PIXCON_ISA_AUTO = 0,
  PIXCON_ISA_SCALAR = 1,
  PIXCON_ISA_AVX2 = 2,
  PIXCON_ISA_AVX512 = 3
} pixcon_isa;

/* Number of per-row statistics saved by the forward pass for the backward pass:
 * [0] LSE_i ("all") or NL_i ("pair", -inf when N(i) is empty),
 * [1] W_i = mean_p sigmoid(NL_i - s_ip) ("pair"; 0 for "all"),
 * [2] |P(i)|. Stored row-major as stats[row * PIXCON_NUM_STATS + k]. */
#define PIXCON_NUM_STATS 3

/* One loss problem: many independent bags of rows in CSR form. */
typedef struct pixcon_loss_params {
  int64_t num_rows;            /* N <= 2^40, with (N + 128 B) (D + 32) <= 2^56 */
  int64_t dim;                 /* 1 <= D <= 2^31 */
  const void *embeddings;      /* element (r, d) at embeddings[r * row_stride + d * col_stride] */
  pixcon_dtype dtype;
  int64_t row_stride;          /* in elements */
  int64_t col_stride;          /* in elements */
  const int64_t *labels;       /* [N]; >= 0, or ignore_index */
  const uint8_t *anchor_mask;  /* [N] 0/1, or NULL for all rows */
  const uint8_t *contrast_mask;/* [N] 0/1, or NULL for all rows */
  const int64_t *image_ids;    /* [N], or NULL: negatives from any image of the bag */
  int64_t num_bags;            /* 1 <= B <= 2^40 */
  const int64_t *bag_offsets;  /* [B + 1]: 0 = o_0 <= o_1 <= ... <= o_B = N */
  double temperature;          /* > 0 */
  int64_t ignore_index;        /* rows with this label are neither anchors nor contrast rows */
  pixcon_denominator denominator;
  int self_positive;           /* nonzero: the (i, i) pair is a positive of anchor i */
  int num_threads;             /* OpenMP threads; <= 0 means the OpenMP default */
} pixcon_loss_params;

/* Checks the parameters (shapes, offsets, label range, temperature). On failure returns
 * PIXCON_ERROR_INVALID_ARGUMENT and writes a message naming the argument into
 * message[0..message_size) (always NUL-terminated when message_size > 0). */
pixcon_status pixcon_loss_params_check(const pixcon_loss_params *p, char *message,
                                       size_t message_size);

/* The checks that read nothing behind the pointers (sizes, strides, dtype, temperature,
 * denominator, non-NULL pointers): they also serve callers whose data live in device memory. */
pixcon_status pixcon_loss_params_check_scalars(const pixcon_loss_params *p, char *message,
                                               size_t message_size);

/* pixcon_loss_params_check_scalars plus the bag offsets, which it reads (host memory); not the
 * label range. */
pixcon_status pixcon_loss_params_check_shape(const pixcon_loss_params *p, char *message,
                                             size_t message_size);

/* PIXCON_NUM_STATS, and the accumulation type of embeddings of the given dtype (PIXCON_FLOAT64 for
 * PIXCON_FLOAT64, else PIXCON_FLOAT32): the dtype of losses, statistics and the upstream gradient.
 * For callers that mirror these rules without compiling this header. */
int pixcon_loss_num_stats(void);
pixcon_dtype pixcon_loss_accumulation_dtype(pixcon_dtype embeddings);

/* ---- CPU kernels (host pointers), OpenMP-parallel ---- */

/* Bytes of workspace the CPU forward / backward need for p: O(N * D + threads * tile^2),
 * never O(N^2). */
size_t pixcon_cpu_forward_workspace_size(const pixcon_loss_params *p);
size_t pixcon_cpu_backward_workspace_size(const pixcon_loss_params *p);

/* Forward. loss [N], stats [N * PIXCON_NUM_STATS] in the accumulation type; valid [N]. */
pixcon_status pixcon_cpu_contrastive_forward(const pixcon_loss_params *p, void *loss,
                                             uint8_t *valid, void *stats, void *workspace,
                                             size_t workspace_size);

/* Backward. grad_loss [N] and stats in the accumulation type (grad_loss of invalid rows is
 * ignored); grad_embeddings [N, D] contiguous, in p->dtype. */
pixcon_status pixcon_cpu_contrastive_backward(const pixcon_loss_params *p,
                                              const void *grad_loss, const void *stats,
                                              void *grad_embeddings, void *workspace,
                                              size_t workspace_size);

/* The tier the CPU kernels use. The first call to any kernel resolves AUTO from the
 * PIXCON_CPU_ISA environment variable ("scalar", "avx2", "avx512") or, when unset, from
 * the running CPU. pixcon_cpu_set_isa fails with PIXCON_ERROR_UNSUPPORTED_ISA when the CPU
 * (or the build) lacks the tier. */
pixcon_isa pixcon_cpu_isa(void);
pixcon_status pixcon_cpu_set_isa(pixcon_isa isa);

/* The float32 multiply-add rate (2 flops each) the current tier reaches on num_threads threads
 * (<= 0: the OpenMP default) in a register-only loop, the fastest of a few runs lasting about
 * `seconds` together: the peak that efficiency figures are measured against, in GFLOP/s. */
double pixcon_cpu_fma_peak_gflops(int num_threads, double seconds);
int pixcon_cpu_isa_supported(pixcon_isa isa);

/* The fixed-shift path of the CPU kernels (on by default): off-diagonal tiles whose rows' norms
 * bound every exponent (unit rows at temperature >= 1/32 always do) take one exponential per pair
 * and no running maximum; the rest take the online log-sum-exp path. Both agree with the float64
 * reference to rounding; turning the fast path off shows that, or isolates a numerical question.
 * Results stay independent of the thread count either way. */
void pixcon_cpu_set_fixed_shift(int enabled);
int pixcon_cpu_fixed_shift(void);
const char *pixcon_isa_name(pixcon_isa isa);

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_PIXCON_H */
