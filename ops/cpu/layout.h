/*
 * Workspace layout shared by every CPU tier: bags padded to whole tiles, embeddings packed
 * three times (row-major and in row panels, both scaled by 1/temperature, and in column panels), per-row codes and
 * statistics, per-thread tile scratch. O(N * D + threads * TILE^2) bytes, never O(N^2).
 */
#ifndef PIXCON_CPU_LAYOUT_H
#define PIXCON_CPU_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "pixcon/pixcon.h"

/* Rows per tile: a multiple of every micro-kernel's row count (6, 12) and panel width (4..32). */
#define PIXCON_TILE 96
/* Embedding dimension is padded with zeros to a multiple of the widest panel. */
#define PIXCON_DIM_PAD 32

/* Per-row arrays of the accumulation type, each padded_rows long. */
enum pixcon_row_array {
  ROW_ANCHOR_CODE,   /* dense label code if the row is an anchor, else -1 */
  ROW_CONTRAST_CODE, /* dense label code if the row is a contrast row, else -2 */
  ROW_IMAGE_CODE,    /* dense image code (0 without image ids) */
  ROW_MAX,           /* running max of the log-sum-exp, then LSE_i or NL_i */
  ROW_SUM,           /* running sum of the log-sum-exp */
  ROW_POS,           /* "all": sum of s_ip; "pair": sum of softplus(NL_i - s_ip) */
  ROW_NPOS,          /* |P(i)| */
  ROW_SIG,           /* "pair": sum of sigmoid(NL_i - s_ip) */
  ROW_GRAD,          /* backward: upstream gradient of valid anchors, else 0 */
  ROW_SHIFT,         /* a_i = |z_i|^2 / (2 tau), the row's share of the fixed shift */
  ROW_WEIGHT,        /* q_i = exp(a_i - G) for contrast rows, else 0 (G: the bag's largest a) */
  ROW_FIXED,         /* fixed-shift sum of exp(s_ij - a_i - G) from the column side of tiles */
  ROW_ALPHA,         /* backward: g_i exp(a_i + G - LSE_i) ("pair": times W_i), 0 if not valid */
  ROW_BETA,          /* backward: g_i / |P(i)|, 0 if not valid */
  ROW_NUM_ARRAYS
};

/* Per-row vector accumulators (one vector per row, the widest tier's 64 bytes): the row side of
 * the fixed-shift tiles adds whole vectors and reduces them once, when the row is finished. */
enum pixcon_row_vector { ROWV_FIXED, ROWV_POS, ROWV_NUM_ARRAYS };
#define PIXCON_ROWV_BYTES 64

/* What decides whether a tile pair may take the fixed shift (see fixed_shift_tiles.h). */
typedef struct pixcon_block_bounds {
  double shift_max, shift_min; /* of a_i over the block's rows (NaN if one is not finite) */
  double bag_shift;            /* G of the block's bag */
  int64_t bag;                 /* the bag it belongs to */
  int64_t image;               /* the image code every row of the block shares, or -1 */
  int64_t live;                /* rows up to the last one with a role: the rest enter nothing */
  int64_t anchor_lo, anchor_hi;     /* range of the anchors' label codes (empty: lo > hi) */
  int64_t contrast_lo, contrast_hi; /* range of the contrast rows' label codes */
  int backward_ok;             /* backward: every ROW_ALPHA and ROW_BETA of the block in range */
} pixcon_block_bounds;

typedef struct pixcon_layout {
  int threads;
  int64_t padded_rows;
  int64_t dim_pad;
  size_t real_size;
  size_t off_rowmajor;  /* padded_rows x dim_pad, z / temperature */
  size_t off_panels;    /* padded_rows x dim_pad, z in column panels */
  size_t off_rowpanels; /* padded_rows x dim_pad, z / temperature in row panels */
  size_t off_grad;      /* padded_rows x dim_pad, backward only */
  size_t off_rows;      /* ROW_NUM_ARRAYS x padded_rows */
  size_t off_rowvec;    /* ROWV_NUM_ARRAYS x padded_rows x PIXCON_ROWV_BYTES */
  size_t off_blocks;    /* padded_rows / TILE pixcon_block_bounds */
  size_t off_tiles;     /* threads x 2 x TILE x TILE */
  size_t off_codes;     /* 2 x num_rows int32: label and image codes */
  size_t off_sort;      /* 3 num_rows + 2 num_bags int64 sort scratch */
  size_t off_perm;      /* padded_rows int64: the original row of each padded row, -1 padding */
  size_t off_bagbase;   /* num_bags + 1 int64: padded row offset of each bag */
  size_t off_prefix;    /* threads x (num_bags + 1) int64: each thread's per-round work prefix */
  size_t off_progress;  /* padded_rows / TILE int64: items done per group, from the bag's block 0 */
  size_t total;
} pixcon_layout;

int pixcon_resolve_threads(int requested);
void pixcon_layout_compute(const pixcon_loss_params *p, size_t real_size, int backward,
                           pixcon_layout *out);

#endif /* PIXCON_CPU_LAYOUT_H */
