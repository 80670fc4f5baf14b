/*
 * Off-diagonal tiles with a fixed shift (included after contrastive_tiles.h). With
 * a_i = |z_i|^2 / (2 tau), every E_ij = exp(s_ij - a_i - a_j) = exp(-|z_i - z_j|^2 / (2 tau)) is
 * at most 1, and at least exp(-(sqrt a_i + sqrt a_j)^2). Then one exponential per pair serves
 * both rows of the symmetric tile, against G, the bag's largest a up to FIXED_SHIFT_CAP:
 *   row i:  sum_j exp(s_ij - a_i - G) = sum_j E_ij q_j,  q_j = exp(a_j - G) <= 1
 *   row j:  sum_i E_ij q_i
 *   backward: g_i exp(s_ij - LSE_i) = E_ij alpha_i q_j,  alpha_i = g_i exp(a_i + G - LSE_i)
 * No running maximum and no second pass over the tile: about 20 vector operations per vector
 * of pairs, against some 70 for the online path of contrastive_tiles.h with its two
 * exponentials. A tile takes this path only when its blocks' bounds keep every term
 * E_ij q_j in [exp(-FIXED_EXP_LIMIT), 1], normal numbers, so the sums keep full precision and
 * cannot overflow; unit rows at tau >= 1 / 40 always do. Blocks with a row that is far from unit
 * length (a > G), or not finite, take the online path, without holding back the others of the
 * bag. finish_lse merges the two sums of a row.
 */

#define FIXED_EXP_LIMIT (REAL_IS_DOUBLE ? 700.0 : 80.0)
/* rows with a larger a stay out of G: a block of two such rows could not keep E_ij in range */
#define FIXED_SHIFT_CAP (FIXED_EXP_LIMIT / 4)
/* alpha and beta above this may overflow in alpha_i q_j + alpha_j q_i */
#define FIXED_WEIGHT_LIMIT (REAL_IS_DOUBLE ? 1e300 : 1e37)
#define ROWV_STRIDE ((int64_t)(PIXCON_ROWV_BYTES / sizeof(REAL)))

/* Image codes of a block: the one its rows with a role share, IMAGE_MIXED, or IMAGE_NONE when
 * no row has a role (such a block matches any). */
enum { IMAGE_MIXED = -1, IMAGE_NONE = -2 };

static int tile_fixed_ok(const pixcon_block_bounds *bi, const pixcon_block_bounds *bj) {
  if (bi->image == IMAGE_MIXED || bj->image == IMAGE_MIXED) return 0;
  if (!(bi->shift_max <= bi->bag_shift && bj->shift_max <= bj->bag_shift)) return 0; /* NaN fails */
  if (bi->image != bj->image && bi->image != IMAGE_NONE && bj->image != IMAGE_NONE) return 0;
  double reach = sqrt(bi->shift_max) + sqrt(bj->shift_max);
  double low = bi->shift_min < bj->shift_min ? bi->shift_min : bj->shift_min;
  return reach * reach + bi->bag_shift - low <= FIXED_EXP_LIMIT; /* NaN fails */
}

/* Whether some pair of the tile is a positive (either way round): label ranges that meet. */
static int tile_has_positives(const pixcon_block_bounds *bi, const pixcon_block_bounds *bj) {
  return (bi->anchor_lo <= bj->contrast_hi && bj->contrast_lo <= bi->anchor_hi) ||
         (bj->anchor_lo <= bi->contrast_hi && bi->contrast_lo <= bj->anchor_hi);
}

static inline void vadd_to(REAL *p, vreal x) { vstore(p, vload(p) + x); }

/* Forward: the fixed-shift sums of rows I and J (ROWV_FIXED and ROW_FIXED), and for "all" the
 * positive sums (ROWV_POS and ROW_POS). The roles live in q (0 for rows that are no contrast
 * row) and in the codes; a row that is no anchor gathers sums nobody reads. Without positives
 * in the tile (tile_has_positives) the masks drop out. A diagonal tile (I0 == J0) holds both
 * orientations of its pairs: rows only, the self pair left out (it is added per row). Only the
 * corner of rows x cols of S is read: the rows and columns past it enter nothing. */
static inline void tile_fixed_lse(const REAL *S, int64_t I0, int64_t J0, int set, int positives,
                                  int diag, int rows, int cols, tile_rows *t) {
  enum { NV = PIXCON_TILE / VLANES };
  REAL **r = t->r;
  const REAL *aJ = r[ROW_SHIFT] + J0, *qJ = r[ROW_WEIGHT] + J0;
  const REAL *contrastJ = r[ROW_CONTRAST_CODE] + J0, *anchorJ = r[ROW_ANCHOR_CODE] + J0;
  vreal zero = vset1(0), idx0 = lane_index(), csum[NV], cpos[NV];
  for (int v = 0; v < NV; ++v) csum[v] = cpos[v] = zero;
  for (int i = 0; i < rows; ++i) {
    int64_t row = I0 + i;
    REAL ai = r[ROW_SHIFT][row], qi = diag ? 0 : r[ROW_WEIGHT][row];
    vreal anchor = vset1(r[ROW_ANCHOR_CODE][row]), contrast = vset1(r[ROW_CONTRAST_CODE][row]);
    vreal rsum = zero, rpos = zero;
    for (int v = 0; v < cols / VLANES; ++v) {
      int j = v * VLANES;
      vreal s = vload(S + i * PIXCON_TILE + j);
      vreal e = vexp_bounded(s - (vload(aJ + j) + ai));
      if (diag) {
        vmask not_self = (idx0 + (REAL)j) != (REAL)i;
        e = vselect(not_self, e, zero);
        s = vselect(not_self, s, zero);
      }
      if (!positives) {
        rsum += e * vload(qJ + j);
        csum[v] += e * qi;
        continue;
      }
      vmask pos = vload(contrastJ + j) == anchor, pos_t = vload(anchorJ + j) == contrast;
      if (set == LSE_ALL) {
        rsum += e * vload(qJ + j);
        csum[v] += e * qi;
        rpos += vselect(pos, s, zero);
        cpos[v] += vselect(pos_t, s, zero);
      } else {
        rsum += vselect(pos, zero, e) * vload(qJ + j);
        csum[v] += vselect(pos_t, zero, e) * qi;
      }
    }
    vadd_to(t->v[ROWV_FIXED] + row * ROWV_STRIDE, rsum);
    if (set == LSE_ALL && positives) vadd_to(t->v[ROWV_POS] + row * ROWV_STRIDE, rpos);
  }
  for (int v = 0; v < cols / VLANES && !diag; ++v) {
    vadd_to(r[ROW_FIXED] + J0 + v * VLANES, csum[v]);
    if (set == LSE_ALL && positives) vadd_to(r[ROW_POS] + J0 + v * VLANES, cpos[v]);
  }
}

static inline int vany(vmask m) {
  for (int k = 0; k < VLANES; ++k)
    if (m[k]) return 1;
  return 0;
}

/* "pair": the positives' share beta sigmoid(NL - s) of the weights, on the lanes of pos. */
static inline vreal positive_pull(vmask pos, vreal beta, vreal stat, vreal s) {
  if (!vany(pos)) return vset1(0);
  vreal x = stat - s;
  return vselect(pos, beta * vsigmoid_t(x, vexp_neg(-vabs(x))), vset1(0));
}

/* Backward: C[i][j] = g_i a_ij + g_j a_ji as tile_grad_weights, from one exponential per pair:
 * "all":  E (alpha_i q_j + alpha_j q_i) - [j in P(i)] beta_i - [i in P(j)] beta_j
 * "pair": E ([j in N(i)] alpha_i q_j + [i in N(j)] alpha_j q_i) - positives' sigmoid terms.
 * Over the rows x cols corner of S only, which is all that tile_accumulate reads of C. */
static inline void tile_fixed_grad_weights(const REAL *S, int64_t I0, int64_t J0, int set,
                                           int positives, int diag, int rows, int cols,
                                           tile_rows *t, REAL *C) {
  REAL **r = t->r;
  const REAL *aJ = r[ROW_SHIFT] + J0, *qJ = r[ROW_WEIGHT] + J0, *alphaJ = r[ROW_ALPHA] + J0;
  const REAL *betaJ = r[ROW_BETA] + J0, *statJ = r[ROW_MAX] + J0;
  const REAL *contrastJ = r[ROW_CONTRAST_CODE] + J0, *anchorJ = r[ROW_ANCHOR_CODE] + J0;
  vreal zero = vset1(0), idx0 = lane_index();
  for (int i = 0; i < rows; ++i) {
    int64_t row = I0 + i;
    REAL ai = r[ROW_SHIFT][row], qi = r[ROW_WEIGHT][row], alphai = r[ROW_ALPHA][row];
    vreal betai = vset1(r[ROW_BETA][row]), stati = vset1(r[ROW_MAX][row]);
    vreal anchor = vset1(r[ROW_ANCHOR_CODE][row]), contrast = vset1(r[ROW_CONTRAST_CODE][row]);
    REAL *crow = C + i * PIXCON_TILE;
    for (int j = 0; j < cols; j += VLANES) {
      vreal s = vload(S + i * PIXCON_TILE + j);
      vreal e = vexp_bounded(s - (vload(aJ + j) + ai));
      vreal row_w = alphai * vload(qJ + j), col_w = vload(alphaJ + j) * qi;
      vmask not_self = (idx0 + (REAL)j) != (REAL)i; /* the self pair is added per row */
      if (diag) e = vselect(not_self, e, zero);
      if (!positives) {
        vstore(crow + j, e * (row_w + col_w));
        continue;
      }
      vmask pos = vload(contrastJ + j) == anchor, pos_t = vload(anchorJ + j) == contrast;
      if (diag) {
        pos &= not_self;
        pos_t &= not_self;
      }
      vreal c;
      if (set == LSE_ALL) {
        c = e * (row_w + col_w) - vselect(pos, betai, zero) - vselect(pos_t, vload(betaJ + j), zero);
      } else {
        c = e * (vselect(pos, zero, row_w) + vselect(pos_t, zero, col_w));
        c -= positive_pull(pos, betai, stati, s);
        c -= positive_pull(pos_t, vload(betaJ + j), vload(statJ + j), s);
      }
      vstore(crow + j, c);
    }
  }
}
