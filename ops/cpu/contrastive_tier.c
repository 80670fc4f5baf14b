/*
 * The fused contrastive loss on the CPU, forward and backward, for one instruction-set tier
 * and one accumulation type (this file is compiled once per tier x {float, double}).
 * Cost: forward N^2 D / 2 multiply-adds ("pair": plus its sweep over the tile pairs that hold
 * positives), backward 1.5 N^2 D; memory O(N D). docs/design.md §3.
 */
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdint.h>

#include "../common/convert.h"
#include "../common/sets.h"
#include "layout.h"
#include "pixcon/pixcon.h"
#include "relabel.h"
#include "schedule.h"
#include "tier.h"

#if REAL_IS_DOUBLE
#define REAL double
#else
#define REAL float
#endif
#define VLANES ((int)(PIXCON_VECTOR_BYTES / sizeof(REAL)))

#include "simd.h"
#include "tile_gemm.h"
#include "contrastive_tiles.h"
#include "fixed_shift_tiles.h"

#define FN(name) SIMD_CAT(SIMD_CAT(name, _), PIXCON_FN_SUFFIX)

enum pass { PASS_LSE_ALL, PASS_LSE_NEG, PASS_GRAD };

typedef struct tier_ctx {
  const pixcon_loss_params *p;
  pixcon_layout l;
  REAL *zf;     /* z / temperature in slices (slice_index) */
  REAL *zp;     /* z in panels of NR columns */
  REAL *za;     /* z / temperature in panels of MR rows */
  REAL *dz;     /* backward accumulator in slices (slice_index) */
  REAL *tiles;  /* per thread: S and C */
  tile_rows rows;
  pixcon_block_bounds *blocks;
  int32_t *label_codes, *image_codes;
  int64_t *bag_base, *prefix;
  int64_t *progress;  /* per group, from its bag's first block on: items done in this pass */
  int64_t next_item;  /* the next item of the pass to hand out, over all rounds */
  int64_t *counts; /* per bag, contrast rows per label code (the relabelling's sort scratch) */
  int64_t *perm;   /* the original row of each padded row, -1 for padding (order_bag) */
  int64_t max_rounds;
  int64_t sweep_span; /* positive_span, for "pair"'s second sweep */
  int fixed_shift; /* pixcon_cpu_fixed_shift() at the call */
} tier_ctx;

static int64_t bag_size(const pixcon_loss_params *p, int64_t b) {
  return p->bag_offsets[b + 1] - p->bag_offsets[b];
}

static int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

static int64_t padded_size(int64_t n) { return round_up(n, PIXCON_TILE); }

static int64_t bag_blocks(const tier_ctx *c, int64_t b) {
  return (c->bag_base[b + 1] - c->bag_base[b]) / PIXCON_TILE;
}

static int64_t bag_groups(const tier_ctx *c, int64_t b) {
  return pixcon_schedule_groups(bag_blocks(c, b));
}

/* One stable counting pass of rows `from` into `to` by key(row) in [0, keys]. */
static void counting_pass(const int64_t *from, int64_t *to, int64_t n, const int32_t *codes,
                          int64_t keys, int64_t *counts) {
  for (int64_t k = 0; k <= keys + 1; ++k) counts[k] = 0;
  for (int64_t k = 0; k < n; ++k) ++counts[(codes[from[k]] < 0 ? keys : codes[from[k]]) + 1];
  for (int64_t k = 0; k < keys + 1; ++k) counts[k + 1] += counts[k];
  for (int64_t k = 0; k < n; ++k) to[counts[codes[from[k]] < 0 ? keys : codes[from[k]]]++] = from[k];
}

/* Packs bag b's rows sorted by (image, label, row), ignored rows last within their image: a
 * label's positives then sit in few tiles, and tile pairs whose label ranges do not meet skip
 * the positives' work ("pair": the whole second sweep, DESIGN's sum_c n_c^2 D). O(bag rows). */
static void order_bag(tier_ctx *c, int64_t b) {
  int64_t begin = c->p->bag_offsets[b], n = bag_size(c->p, b);
  int64_t *rows = c->counts + c->p->num_rows + 2 * c->p->num_bags, *by_label = rows + n;
  int64_t *counts = c->counts + begin + 2 * b, *perm = c->perm + c->bag_base[b];
  for (int64_t k = 0; k < n; ++k) rows[k] = begin + k;
  counting_pass(rows, by_label, n, c->label_codes, n, counts);
  counting_pass(by_label, perm, n, c->image_codes, n, counts);
  for (int64_t k = n; k < c->bag_base[b + 1] - c->bag_base[b]; ++k) perm[k] = -1;
}

static pixcon_status ctx_init(tier_ctx *c, const pixcon_loss_params *p, void *workspace,
                              size_t workspace_size, int backward) {
  c->p = p;
  pixcon_layout_compute(p, sizeof(REAL), backward, &c->l);
  if (workspace == NULL || workspace_size < c->l.total) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  char *base = (char *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
  c->zf = (REAL *)(base + c->l.off_rowmajor);
  c->zp = (REAL *)(base + c->l.off_panels);
  c->za = (REAL *)(base + c->l.off_rowpanels);
  c->dz = (REAL *)(base + c->l.off_grad);
  c->tiles = (REAL *)(base + c->l.off_tiles);
  for (int k = 0; k < ROW_NUM_ARRAYS; ++k)
    c->rows.r[k] = (REAL *)(base + c->l.off_rows) + (int64_t)k * c->l.padded_rows;
  for (int k = 0; k < ROWV_NUM_ARRAYS; ++k)
    c->rows.v[k] = (REAL *)(base + c->l.off_rowvec) + (int64_t)k * c->l.padded_rows * ROWV_STRIDE;
  c->blocks = (pixcon_block_bounds *)(base + c->l.off_blocks);
  c->label_codes = (int32_t *)(base + c->l.off_codes);
  c->image_codes = c->label_codes + p->num_rows;
  c->bag_base = (int64_t *)(base + c->l.off_bagbase);
  c->prefix = (int64_t *)(base + c->l.off_prefix);
  c->progress = (int64_t *)(base + c->l.off_progress);
  c->counts = (int64_t *)(base + c->l.off_sort);
  c->perm = (int64_t *)(base + c->l.off_perm);
  pixcon_relabel(p, c->label_codes, c->image_codes, c->counts);
  c->bag_base[0] = 0;
  c->max_rounds = 0;
  c->fixed_shift = pixcon_cpu_fixed_shift();
  for (int64_t b = 0; b < p->num_bags; ++b) {
    int64_t padded = padded_size(bag_size(p, b));
    c->bag_base[b + 1] = c->bag_base[b] + padded;
    int64_t rounds = pixcon_schedule_rounds(bag_groups(c, b));
    if (rounds > c->max_rounds) c->max_rounds = rounds;
  }
  for (int64_t b = 0; b < p->num_bags; ++b) order_bag(c, b);
  return PIXCON_OK;
}


/* Row prow of zf or dz: each block cut into slices of NR columns, TILE x NR each, the layout
 * tile_accumulate streams; element d of the row is at sliced(d) from here. */
static REAL *sliced_row(const tier_ctx *c, REAL *buf, int64_t prow) {
  return buf + (prow / PIXCON_TILE) * PIXCON_TILE * c->l.dim_pad + (prow % PIXCON_TILE) * NR;
}

static int64_t sliced(int64_t d) { return d / NR * (PIXCON_TILE * NR) + d % NR; }

/* Row prow of zp: element d at d * NR from here. */
static REAL *panel_row(const tier_ctx *c, int64_t prow) {
  return c->zp + (prow / NR) * c->l.dim_pad * NR + prow % NR;
}

/* The codes of one padded row; its statistics start empty. Returns its source row, or -1 for
 * padding and for a row with no role: such a row enters nothing and is packed as zeros, so a NaN
 * in it cannot reach the gradients of its bag through a zero weight (0 x NaN). */
static int64_t pack_row_codes(tier_ctx *c, int64_t prow) {
  const pixcon_loss_params *p = c->p;
  int64_t r = c->perm[prow];
  unsigned roles =
      r >= 0 ? pixcon_row_roles(p->labels[r], p->ignore_index, p->anchor_mask, p->contrast_mask, r) : 0;
  for (int k = 0; k < ROWV_NUM_ARRAYS; ++k) vstore(c->rows.v[k] + prow * ROWV_STRIDE, vset1(0));
  REAL **rows = c->rows.r;
  rows[ROW_FIXED][prow] = 0;
  rows[ROW_ALPHA][prow] = 0;
  rows[ROW_BETA][prow] = 0;
  int32_t code = r >= 0 ? c->label_codes[r] : -1;
  rows[ROW_ANCHOR_CODE][prow] = roles & PIXCON_ROLE_ANCHOR ? (REAL)code : (REAL)-1;
  rows[ROW_CONTRAST_CODE][prow] = roles & PIXCON_ROLE_CONTRAST ? (REAL)code : (REAL)-2;
  rows[ROW_IMAGE_CODE][prow] = r >= 0 ? (REAL)c->image_codes[r] : (REAL)-3;
  rows[ROW_MAX][prow] = -INFINITY;
  rows[ROW_SUM][prow] = 0;
  rows[ROW_POS][prow] = 0;
  rows[ROW_NPOS][prow] = 0;
  rows[ROW_SIG][prow] = 0;
  rows[ROW_GRAD][prow] = 0;
  return roles ? r : -1;
}

/* Columns d0 .. d0 + NR of block k's source rows (src: -1 for none), zeros past the row's end or
 * for no row. REAL, the accumulation type, holds every element of the storage dtype exactly; a
 * contiguous row of that very type is copied as is. */
static void load_slice(const tier_ctx *c, const int64_t *src, int64_t d0, REAL rows[][NR]) {
  const pixcon_loss_params *p = c->p;
  int64_t end = d0 + NR < p->dim ? d0 + NR : p->dim > d0 ? p->dim : d0;
  int same_type =
      p->dtype == (REAL_IS_DOUBLE ? PIXCON_FLOAT64 : PIXCON_FLOAT32) && p->col_stride == 1;
  for (int t = 0; t < PIXCON_TILE; ++t) {
    int64_t r = src[t], d = d0;
    if (r >= 0 && same_type) {
      memcpy(rows[t], (const REAL *)p->embeddings + r * p->row_stride + d0,
             (size_t)(end - d0) * sizeof(REAL));
      d = end;
    }
    for (; r >= 0 && d < end; ++d)
      rows[t][d - d0] =
          (REAL)pixcon_load_elem(p->embeddings, p->dtype, r * p->row_stride + d * p->col_stride);
    for (; d < d0 + NR; ++d) rows[t][d - d0] = 0;
  }
}

/* Packs block k: the codes, then the three copies of z a slice of NR columns at a time, through
 * a transpose in L1 so that every store to the panels (zp, za) and slices (zf) is contiguous.
 * Element by element, with strided stores and each norm one serial chain of double additions,
 * packing took 6 to 7 % of a step at N = 4 225, D = 128; here each norm is still summed in the
 * order of d, with the rows side by side in vectors. */
static void pack_block(tier_ctx *c, int64_t k) {
  int64_t dp = c->l.dim_pad, first = k * PIXCON_TILE, src[PIXCON_TILE];
  double inv_t = 1.0 / c->p->temperature, norm2[PIXCON_TILE];
  REAL rows[PIXCON_TILE][NR], cols[NR][PIXCON_TILE], scaled[PIXCON_TILE];
  for (int t = 0; t < PIXCON_TILE; ++t) {
    src[t] = pack_row_codes(c, first + t);
    norm2[t] = 0;
  }
  REAL *zp = c->zp + first * dp; /* TILE / NR panels of dp x NR */
  REAL *za = c->za + first * dp; /* TILE / MR panels of dp x MR */
  REAL *zf = c->zf + first * dp; /* dp / NR slices of TILE x NR */
  for (int64_t d0 = 0; d0 < dp; d0 += NR) {
    load_slice(c, src, d0, rows);
    REAL *f_out = zf + d0 * PIXCON_TILE;
    for (int t = 0; t < PIXCON_TILE; ++t)
      for (int e = 0; e < NR; ++e) {
        f_out[t * NR + e] = (REAL)(rows[t][e] * inv_t);
        cols[e][t] = rows[t][e];
      }
    for (int e = 0; e < NR; ++e) {
      int64_t d = d0 + e;
      for (int t = 0; t < PIXCON_TILE; ++t) {
        norm2[t] += (double)cols[e][t] * (double)cols[e][t];
        scaled[t] = (REAL)(cols[e][t] * inv_t);
      }
      for (int pj = 0; pj < PIXCON_TILE / NR; ++pj)
        memcpy(zp + (pj * dp + d) * NR, cols[e] + pj * NR, NR * sizeof(REAL));
      for (int g = 0; g < PIXCON_TILE / MR; ++g)
        memcpy(za + (g * dp + d) * MR, scaled + g * MR, MR * sizeof(REAL));
    }
  }
  for (int t = 0; t < PIXCON_TILE; ++t) c->rows.r[ROW_SHIFT][first + t] = (REAL)(norm2[t] * inv_t / 2);
}

/* s_ii, for the self pair. */
static REAL self_similarity(const tier_ctx *c, int64_t prow) {
  const REAL *zf = sliced_row(c, c->zf, prow), *zp = panel_row(c, prow);
  REAL s = 0;
  for (int64_t d = 0; d < c->p->dim; ++d) s += zf[sliced(d)] * zp[d * NR];
  return s;
}

/* |P(i)| without self for every anchor of bag b: its label's contrast rows, less itself. */
static void count_positives(tier_ctx *c, int64_t b) {
  REAL **rows = c->rows.r;
  int64_t *counts = c->counts + c->p->bag_offsets[b];
  int64_t n = bag_size(c->p, b);
  for (int64_t k = 0; k < n; ++k) counts[k] = 0;
  for (int64_t prow = c->bag_base[b]; prow < c->bag_base[b + 1]; ++prow)
    if (rows[ROW_CONTRAST_CODE][prow] >= 0) ++counts[(int64_t)rows[ROW_CONTRAST_CODE][prow]];
  for (int64_t prow = c->bag_base[b]; prow < c->bag_base[b + 1]; ++prow) {
    REAL code = rows[ROW_ANCHOR_CODE][prow];
    if (code >= 0)
      rows[ROW_NPOS][prow] = (REAL)(counts[(int64_t)code] - (rows[ROW_CONTRAST_CODE][prow] >= 0));
  }
}

/* The backward's fixed-shift weights of a row whose statistics load_backward_row set. */
static void backward_weights(tier_ctx *c, int64_t prow, double bag_shift) {
  REAL **rows = c->rows.r;
  double g = rows[ROW_GRAD][prow];
  if (g == 0) return;
  double w = c->p->denominator == PIXCON_DENOMINATOR_ALL ? 1.0 : rows[ROW_SIG][prow];
  rows[ROW_ALPHA][prow] = (REAL)(g * w * exp(rows[ROW_SHIFT][prow] + bag_shift - rows[ROW_MAX][prow]));
  rows[ROW_BETA][prow] = (REAL)(g * rows[ROW_NPOS][prow]);
}

static int weight_in_range(REAL x) { return fabs((double)x) <= FIXED_WEIGHT_LIMIT; }

/* Adds a label code (negative: the row lacks the role) to the range [*lo, *hi]. */
static void widen(int64_t *lo, int64_t *hi, REAL code) {
  if (code < 0) return;
  if ((int64_t)code < *lo) *lo = (int64_t)code;
  if ((int64_t)code > *hi) *hi = (int64_t)code;
}

/* The bounds that decide which of block k's tiles take the fixed shift (fixed_shift_tiles.h). */
static void bound_block(tier_ctx *c, int64_t k, int64_t bag, double bag_shift, int backward) {
  REAL **rows = c->rows.r;
  pixcon_block_bounds bb = {.shift_max = -INFINITY, .shift_min = INFINITY, .bag_shift = bag_shift,
                            .bag = bag, .image = IMAGE_NONE, .anchor_lo = INT64_MAX, .anchor_hi = -1,
                            .contrast_lo = INT64_MAX, .contrast_hi = -1, .backward_ok = 1,
                            .live = 0};
  int finite = 1;
  for (int64_t prow = k * PIXCON_TILE; prow < (k + 1) * PIXCON_TILE; ++prow) {
    double a = rows[ROW_SHIFT][prow];
    finite &= isfinite(a) != 0;
    if (a > bb.shift_max) bb.shift_max = a;
    if (a < bb.shift_min) bb.shift_min = a;
    widen(&bb.anchor_lo, &bb.anchor_hi, rows[ROW_ANCHOR_CODE][prow]);
    widen(&bb.contrast_lo, &bb.contrast_hi, rows[ROW_CONTRAST_CODE][prow]);
    if (rows[ROW_ANCHOR_CODE][prow] >= 0 || rows[ROW_CONTRAST_CODE][prow] >= 0) {
      bb.live = prow - k * PIXCON_TILE + 1;
      int64_t image = (int64_t)rows[ROW_IMAGE_CODE][prow];
      bb.image = bb.image == IMAGE_NONE || bb.image == image ? image : IMAGE_MIXED;
    }
    if (backward && !(weight_in_range(rows[ROW_ALPHA][prow]) && weight_in_range(rows[ROW_BETA][prow])))
      bb.backward_ok = 0;
  }
  if (!finite) bb.shift_max = NAN; /* fails every bound */
  c->blocks[k] = bb;
}

/* After packing bag b (and, backward, loading its statistics): G, the weights q, |P(i)|
 * (forward) or alpha and beta (backward), and its blocks' bounds. O(rows of the bag). */
static void prepare_bag(tier_ctx *c, int64_t b, int backward) {
  REAL **rows = c->rows.r;
  int64_t begin = c->bag_base[b], end = c->bag_base[b + 1];
  double bag_shift = 0; /* every a >= 0; a larger, NaN or infinite a fails its block's bounds */
  for (int64_t prow = begin; prow < end; ++prow) {
    double a = rows[ROW_SHIFT][prow];
    if (a > bag_shift && a <= FIXED_SHIFT_CAP) bag_shift = a;
  }
  for (int64_t prow = begin; prow < end; ++prow)
    rows[ROW_WEIGHT][prow] =
        rows[ROW_CONTRAST_CODE][prow] >= 0 ? (REAL)exp(rows[ROW_SHIFT][prow] - bag_shift) : 0;
  if (backward) {
    for (int64_t prow = begin; prow < end; ++prow) backward_weights(c, prow, bag_shift);
  } else {
    count_positives(c, b);
  }
  for (int64_t k = begin / PIXCON_TILE; k < end / PIXCON_TILE; ++k) bound_block(c, k, b, bag_shift, backward);
}

#define FOR_EACH_BAG(c, b, body)                           \
  do {                                                     \
    _Pragma("omp for schedule(dynamic, 1)")                \
    for (int64_t b = 0; b < (c)->p->num_bags; ++b) body;   \
  } while (0)

/* The corner of a tile that the fixed-shift path computes: the rows of block I up to its last live
 * row, in whole micro-tiles (MR), and as many columns of block J, in whole panels (NR) that also
 * cover its live rows in whole micro-tiles, as the second tile_accumulate reads them. */
static int corner_rows(const pixcon_block_bounds *b) { return (int)round_up(b->live, MR); }
static int corner_cols(const pixcon_block_bounds *b) {
  return (int)round_up(round_up(b->live, MR), NR);
}

static void process_tile(tier_ctx *c, int pass, int64_t I0, int64_t J0, REAL *S, REAL *C) {
  int64_t dp = c->l.dim_pad;
  int diag = I0 == J0;
  int set = c->p->denominator == PIXCON_DENOMINATOR_ALL ? LSE_ALL : LSE_NEG;
  const pixcon_block_bounds *bi = c->blocks + I0 / PIXCON_TILE, *bj = c->blocks + J0 / PIXCON_TILE;
  int fixed = c->fixed_shift && tile_fixed_ok(bi, bj);
  if (pass == PASS_GRAD) fixed &= bi->backward_ok && bj->backward_ok;
  int positives = tile_has_positives(bi, bj);
  /* the general path reads the whole tile */
  int m = fixed ? corner_rows(bi) : PIXCON_TILE, n = fixed ? corner_cols(bj) : PIXCON_TILE;
  tile_similarities(c->za + I0 * dp, c->zp + J0 * dp, c->p->dim, dp, m, n, S);
  switch (pass) {
    case PASS_LSE_ALL:
    case PASS_LSE_NEG:
      if (fixed) { /* constant flags, so each variant compiles without the others' masks */
        if (diag) tile_fixed_lse(S, I0, J0, set, 1, 1, m, n, &c->rows);
        else if (positives) tile_fixed_lse(S, I0, J0, set, 1, 0, m, n, &c->rows);
        else tile_fixed_lse(S, I0, J0, set, 0, 0, m, n, &c->rows);
        break;
      }
      tile_lse_rows(S, I0, J0, diag, set, &c->rows);
      if (!diag) tile_lse_cols(S, I0, J0, set, &c->rows);
      break;
    default:
      if (fixed && diag) tile_fixed_grad_weights(S, I0, J0, set, 1, 1, m, n, &c->rows, C);
      else if (fixed && positives) tile_fixed_grad_weights(S, I0, J0, set, 1, 0, m, n, &c->rows, C);
      else if (fixed) tile_fixed_grad_weights(S, I0, J0, set, 0, 0, m, n, &c->rows, C);
      else tile_grad_weights(S, I0, J0, diag, set, &c->rows, C);
      tile_accumulate(C, PIXCON_TILE, 1, c->zf + J0 * dp, dp, m, n, c->dz + I0 * dp);
      if (!diag)
        tile_accumulate(C, 1, PIXCON_TILE, c->zf + I0 * dp, dp, fixed ? corner_rows(bj) : n, m,
                        c->dz + J0 * dp);
      break;
  }
}

/* The tile pairs I <= J of groups P <= Q of bag b. Row blocks go PIXCON_SCHEDULE_CHUNK at a time
 * across the column blocks, so each column block fetched serves that many tiles; every row still
 * meets its partner blocks in increasing order, the order the results depend on. */
static void process_groups(tier_ctx *c, int pass, int64_t b, int64_t P, int64_t Q, REAL *S,
                           REAL *C) {
  int64_t blocks = bag_blocks(c, b), groups = bag_groups(c, b), base = c->bag_base[b];
  int64_t i_end = pixcon_schedule_group_begin(blocks, groups, P + 1);
  int64_t j_begin = pixcon_schedule_group_begin(blocks, groups, Q);
  int64_t j_end = pixcon_schedule_group_begin(blocks, groups, Q + 1);
  for (int64_t I0 = pixcon_schedule_group_begin(blocks, groups, P); I0 < i_end;
       I0 += PIXCON_SCHEDULE_CHUNK) {
    int64_t I1 = I0 + PIXCON_SCHEDULE_CHUNK < i_end ? I0 + PIXCON_SCHEDULE_CHUNK : i_end;
    for (int64_t J = P == Q ? I0 : j_begin; J < j_end; ++J)
      for (int64_t I = I0; I < I1 && I <= J; ++I)
        process_tile(c, pass, base + I * PIXCON_TILE, base + J * PIXCON_TILE, S, C);
  }
}

/* Waits until group g of bag b has done `items` items (another thread is finishing the last).
 * Spins briefly, then yields the core: with more threads than cores the thread being waited for
 * may be the one not running (8 threads on 2 cores ran 5 times slower on spinning alone). */
static void wait_for_group(const tier_ctx *c, int64_t b, int64_t g, int64_t items) {
  const int64_t *done = c->progress + c->bag_base[b] / PIXCON_TILE + g;
  for (int spins = 0; __atomic_load_n(done, __ATOMIC_ACQUIRE) < items; ++spins) {
    if (spins >= 256) {
      sched_yield();
      continue;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

/* The items of one round over all bags: each thread's prefix of the bags' slots. */
static int64_t round_prefix(const tier_ctx *c, int64_t round, int64_t *prefix) {
  prefix[0] = 0;
  for (int64_t b = 0; b < c->p->num_bags; ++b)
    prefix[b + 1] = prefix[b] + pixcon_schedule_slots(bag_groups(c, b), round);
  return prefix[c->p->num_bags];
}

/* Item k of a round: its bag's groups P <= Q run once both have done their earlier rounds' items
 * (schedule.h), then tell the items of later rounds that they have. */
static void run_item(tier_ctx *c, int pass, int64_t round, int64_t k, const int64_t *prefix,
                     REAL *S, REAL *C) {
  int64_t lo_b = 0, hi_b = c->p->num_bags; /* last bag whose prefix <= k */
  while (hi_b - lo_b > 1) {
    int64_t mid = (lo_b + hi_b) / 2;
    if (prefix[mid] <= k) lo_b = mid;
    else hi_b = mid;
  }
  int64_t P, Q, blocks = bag_blocks(c, lo_b), groups = bag_groups(c, lo_b);
  int64_t slot = pixcon_schedule_slot_by_size(blocks, groups, round, k - prefix[lo_b]);
  if (!pixcon_schedule_pair(groups, round, slot, &P, &Q)) return;
  int64_t need_p = pixcon_schedule_items_before(groups, round, P);
  int64_t need_q = pixcon_schedule_items_before(groups, round, Q);
  wait_for_group(c, lo_b, P, need_p);
  wait_for_group(c, lo_b, Q, need_q);
  process_groups(c, pass, lo_b, P, Q, S, C);
  int64_t *done = c->progress + c->bag_base[lo_b] / PIXCON_TILE;
  __atomic_store_n(done + P, need_p + 1, __ATOMIC_RELEASE);
  if (Q != P) __atomic_store_n(done + Q, need_q + 1, __ATOMIC_RELEASE);
}

/* Every tile pair (I <= J) of every bag once, in the rounds of schedule.h, handed out one item at a
 * time in round order with no barrier between rounds. Items are taken in increasing order, so the
 * earliest unfinished one always has its predecessors done: no thread waits forever. Called by all
 * threads of the enclosing parallel region. */
static void run_rounds(tier_ctx *c, int pass) {
  const pixcon_loss_params *p = c->p;
  REAL *S = c->tiles + (int64_t)omp_get_thread_num() * 2 * PIXCON_TILE * PIXCON_TILE;
  REAL *C = S + PIXCON_TILE * PIXCON_TILE;
  int64_t *prefix = c->prefix + (int64_t)omp_get_thread_num() * (p->num_bags + 1);
#pragma omp single
  {
    for (int64_t k = 0; k < c->bag_base[p->num_bags] / PIXCON_TILE; ++k) c->progress[k] = 0;
    c->next_item = 0;
  }
  int64_t round = -1, first = 0, end = 0; /* the items of `round` are [first, end) */
  for (;;) {
    int64_t item = __atomic_fetch_add(&c->next_item, 1, __ATOMIC_RELAXED);
    while (item >= end && round + 1 < c->max_rounds) {
      first = end;
      end += round_prefix(c, ++round, prefix);
    }
    if (item >= end) break;
    run_item(c, pass, round, item - first, prefix, S, C);
  }
#pragma omp barrier
}

/* The largest J - I of a tile pair I <= J of one bag that holds positives: the sweep's span. */
static int64_t positive_span(const tier_ctx *c) {
  int64_t span = 0;
  for (int64_t b = 0; b < c->p->num_bags; ++b) {
    int64_t first = c->bag_base[b] / PIXCON_TILE, end = c->bag_base[b + 1] / PIXCON_TILE;
    for (int64_t I = first; I < end; ++I)
      for (int64_t J = end - 1; J > I + span; --J)
        if (tile_has_positives(c->blocks + I, c->blocks + J)) {
          span = J - I;
          break;
        }
  }
  return span;
}

/* "pair"'s second sweep: the tile pairs I <= J that hold positives, each computed once and summed
 * into both its row blocks, in phases by J - I = delta: phase (delta, h) holds the pairs whose
 * (I / delta) % 2 == h, so no two of its tiles share a row block, and every row block meets its
 * partners in the same order whatever the thread count. The pairs of a phase lie all along the
 * diagonal, so the threads share each phase evenly; rounds of the tournament held only a few of
 * the sweep's pairs each and kept one thread working while the other waited. 2 span + 1 phases. */
static void run_softplus_phases(tier_ctx *c, int64_t span) {
  const pixcon_loss_params *p = c->p;
  REAL *S = c->tiles + (int64_t)omp_get_thread_num() * 2 * PIXCON_TILE * PIXCON_TILE;
  int64_t dp = c->l.dim_pad, blocks = c->bag_base[p->num_bags] / PIXCON_TILE;
  for (int64_t phase = 0; phase < 2 * span + 1; ++phase) {
    int64_t delta = (phase + 1) / 2, half = (phase + 1) % 2;
#pragma omp for schedule(dynamic, 1)
    for (int64_t I = 0; I < blocks - delta; ++I) {
      int64_t J = I + delta;
      if (delta > 0 && (I / delta) % 2 != half) continue;
      const pixcon_block_bounds *bi = c->blocks + I, *bj = c->blocks + J;
      int same_bag = delta == 0 || bi->bag == bj->bag;
      if (!same_bag || !tile_has_positives(bi, bj)) continue;
      tile_similarities(c->za + I * PIXCON_TILE * dp, c->zp + J * PIXCON_TILE * dp, p->dim, dp,
                        corner_rows(bi), corner_cols(bj), S); /* the softplus loops stay in it */
      tile_softplus_rows(S, I * PIXCON_TILE, J * PIXCON_TILE, delta == 0, &c->rows);
      if (delta > 0) tile_softplus_cols(S, I * PIXCON_TILE, J * PIXCON_TILE, &c->rows);
    }
  }
}

/* -inf for an empty set; NaN stays NaN */
static double lse_finish(double m, double sum) { return (sum > 0 || sum != sum) ? m + log(sum) : -INFINITY; }

/* After the LSE pass: close the log-sum-exp and add the self pair when it is a positive. */
static void finish_lse(tier_ctx *c, int64_t prow) {
  REAL **rows = c->rows.r;
  if (rows[ROW_ANCHOR_CODE][prow] < 0) return;
  double m = rows[ROW_MAX][prow], sum = rows[ROW_SUM][prow];
  double fixed = rows[ROW_FIXED][prow] + hsum(vload(c->rows.v[ROWV_FIXED] + prow * ROWV_STRIDE));
  rows[ROW_POS][prow] += hsum(vload(c->rows.v[ROWV_POS] + prow * ROWV_STRIDE));
  if (fixed > 0) { /* the fixed-shift tiles' sum, at shift a_i + G */
    double shift = rows[ROW_SHIFT][prow] + c->blocks[prow / PIXCON_TILE].bag_shift;
    double new_max = shift > m ? shift : m;
    sum = (m == -INFINITY ? 0.0 : sum * exp(m - new_max)) + fixed * exp(shift - new_max);
    m = new_max;
  }
  if (c->p->self_positive) {
    double s = self_similarity(c, prow);
    rows[ROW_NPOS][prow] += 1;
    if (c->p->denominator == PIXCON_DENOMINATOR_ALL) {
      double new_max = s > m ? s : m;
      sum = (m == -INFINITY ? 0.0 : sum * exp(m - new_max)) + exp(s - new_max);
      m = new_max;
      rows[ROW_POS][prow] += (REAL)s;
    }
  }
  rows[ROW_MAX][prow] = (REAL)lse_finish(m, sum);
}

static double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }
static double sigmoid(double x) {
  double t = exp(-fabs(x));
  return x >= 0 ? 1 / (1 + t) : t / (1 + t);
}

/* After the "pair" softplus pass: the self pair's term. */
static void finish_softplus(tier_ctx *c, int64_t prow) {
  REAL **rows = c->rows.r;
  if (rows[ROW_ANCHOR_CODE][prow] < 0 || !c->p->self_positive) return;
  double nl = rows[ROW_MAX][prow];
  if (nl == -INFINITY) return;
  double x = nl - self_similarity(c, prow);
  rows[ROW_POS][prow] += (REAL)softplus(x);
  rows[ROW_SIG][prow] += (REAL)sigmoid(x);
}

static void write_forward_row(tier_ctx *c, int64_t prow, int64_t r, REAL *loss, uint8_t *valid,
                              REAL *stats) {
  REAL **rows = c->rows.r;
  REAL npos = rows[ROW_NPOS][prow];
  int ok = rows[ROW_ANCHOR_CODE][prow] >= 0 && npos >= 1;
  int pair = c->p->denominator == PIXCON_DENOMINATOR_PAIR;
  valid[r] = (uint8_t)ok;
  loss[r] = !ok ? 0 : pair ? rows[ROW_POS][prow] / npos : rows[ROW_MAX][prow] - rows[ROW_POS][prow] / npos;
  stats[r * PIXCON_NUM_STATS + 0] = rows[ROW_MAX][prow];
  stats[r * PIXCON_NUM_STATS + 1] = (ok && pair) ? rows[ROW_SIG][prow] / npos : 0;
  stats[r * PIXCON_NUM_STATS + 2] = npos;
}

/* Loads the saved statistics; rows that are not valid anchors become plain contrast rows. */
static void load_backward_row(tier_ctx *c, int64_t prow, int64_t r, const REAL *grad_loss,
                              const REAL *stats) {
  REAL **rows = c->rows.r;
  REAL *dz = sliced_row(c, c->dz, prow);
  for (int64_t d = 0; d < c->l.dim_pad; ++d) dz[sliced(d)] = 0;
  if (r < 0) return;
  REAL npos = stats[r * PIXCON_NUM_STATS + 2];
  if (rows[ROW_ANCHOR_CODE][prow] >= 0 && npos >= 1) {
    rows[ROW_GRAD][prow] = grad_loss[r];
    rows[ROW_MAX][prow] = stats[r * PIXCON_NUM_STATS + 0];
    rows[ROW_SIG][prow] = stats[r * PIXCON_NUM_STATS + 1];
    rows[ROW_NPOS][prow] = (REAL)1 / npos;
  } else {
    rows[ROW_ANCHOR_CODE][prow] = -1;
    rows[ROW_MAX][prow] = 0;
  }
}

/* The self pair's share of dz_i: s_ii depends on z_i twice. Then dz leaves in p->dtype. */
static void write_backward_row(tier_ctx *c, int64_t prow, int64_t r, void *grad) {
  const pixcon_loss_params *p = c->p;
  REAL **rows = c->rows.r, *dz = sliced_row(c, c->dz, prow);
  const REAL *zf = sliced_row(c, c->zf, prow);
  REAL g = rows[ROW_GRAD][prow];
  if (p->self_positive && g != 0) {
    double s = self_similarity(c, prow), stat = rows[ROW_MAX][prow], invp = rows[ROW_NPOS][prow];
    double slope = p->denominator == PIXCON_DENOMINATOR_ALL ? exp(s - stat) - invp
                                                            : -invp * sigmoid(stat - s);
    REAL k = (REAL)(2 * g * slope);
    for (int64_t d = 0; d < p->dim; ++d) dz[sliced(d)] += k * zf[sliced(d)];
  }
  for (int64_t d = 0; d < p->dim; ++d) pixcon_store_elem(grad, p->dtype, r * p->dim + d, dz[sliced(d)]);
}

/* Runs body(prow, r) for every padded row, split over the threads of the region. */
#define FOR_EACH_PADDED_ROW(c, prow, r, body)                                     \
  do {                                                                            \
    for (int64_t b_ = 0; b_ < (c)->p->num_bags; ++b_) {                           \
      _Pragma("omp for schedule(static) nowait")                                  \
      for (int64_t prow = (c)->bag_base[b_]; prow < (c)->bag_base[b_ + 1]; ++prow) { \
        int64_t r = (c)->perm[prow];                                  \
        body;                                                                     \
      }                                                                           \
    }                                                                             \
    _Pragma("omp barrier")                                                        \
  } while (0)

/* Runs body for every block of every bag, split over the threads of the region. */
#define FOR_EACH_BLOCK(c, k, body)                                          \
  do {                                                                      \
    _Pragma("omp for schedule(static)")                                     \
    for (int64_t k = 0; k < (c)->bag_base[(c)->p->num_bags] / PIXCON_TILE; ++k) body; \
  } while (0)

pixcon_status FN(pixcon_cpu_forward)(const pixcon_loss_params *p, void *loss, uint8_t *valid,
                                     void *stats, void *workspace, size_t workspace_size) {
  tier_ctx ctx;
  pixcon_status st = ctx_init(&ctx, p, workspace, workspace_size, 0);
  if (st != PIXCON_OK) return st;
  tier_ctx *c = &ctx;
  int pair = p->denominator == PIXCON_DENOMINATOR_PAIR;
#pragma omp parallel num_threads(c->l.threads)
  {
    FOR_EACH_BLOCK(c, k, pack_block(c, k));
    FOR_EACH_BAG(c, b, prepare_bag(c, b, 0));
    run_rounds(c, pair ? PASS_LSE_NEG : PASS_LSE_ALL);
    FOR_EACH_PADDED_ROW(c, prow, r, { (void)r; finish_lse(c, prow); });
    if (pair) {
#pragma omp single
      c->sweep_span = positive_span(c);
      run_softplus_phases(c, c->sweep_span);
      FOR_EACH_PADDED_ROW(c, prow, r, { (void)r; finish_softplus(c, prow); });
    }
    FOR_EACH_PADDED_ROW(c, prow, r,
                        if (r >= 0) write_forward_row(c, prow, r, loss, valid, stats));
  }
  return PIXCON_OK;
}

pixcon_status FN(pixcon_cpu_backward)(const pixcon_loss_params *p, const void *grad_loss,
                                      const void *stats, void *grad_embeddings, void *workspace,
                                      size_t workspace_size) {
  tier_ctx ctx;
  pixcon_status st = ctx_init(&ctx, p, workspace, workspace_size, 1);
  if (st != PIXCON_OK) return st;
  tier_ctx *c = &ctx;
#pragma omp parallel num_threads(c->l.threads)
  {
    FOR_EACH_BLOCK(c, k, {
      pack_block(c, k);
      for (int64_t prow = k * PIXCON_TILE; prow < (k + 1) * PIXCON_TILE; ++prow)
        load_backward_row(c, prow, c->perm[prow], grad_loss, stats);
    });
    FOR_EACH_BAG(c, b, prepare_bag(c, b, 1));
    run_rounds(c, PASS_GRAD);
    FOR_EACH_PADDED_ROW(c, prow, r, if (r >= 0) write_backward_row(c, prow, r, grad_embeddings));
  }
  return PIXCON_OK;
}
