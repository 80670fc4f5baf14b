/*
 * Per-tile updates of the fused loss (included after simd.h): given a TILE x TILE block S of
 * similarities between rows I and rows J, fold it into the per-row statistics of both sides
 * (forward) or turn it into the symmetric gradient weights c_ij = g_i a_ij + g_j a_ji
 * (backward). O(TILE^2) work and exponentials per call; rows are vectorised along j.
 * Positive sums ride along the same stream, so labels never need class sums; |P(i)| is counted
 * per bag beforehand. This is the general path: any input, any tile; fixed_shift_tiles.h is the
 * fast one for the off-diagonal tiles whose norms allow it.
 */

/* Which columns enter the log-sum-exp: "all" uses P(i) u N(i), "pair" only N(i). */
enum lse_set { LSE_ALL = 0, LSE_NEG = 1 };

typedef struct tile_rows {
  REAL *r[ROW_NUM_ARRAYS];  /* the per-row arrays of layout.h, indexed by padded row */
  REAL *v[ROWV_NUM_ARRAYS]; /* the per-row vectors of layout.h, PIXCON_ROWV_BYTES per row */
} tile_rows;

static inline vreal lane_index(void) {
  vreal v;
  for (int k = 0; k < VLANES; ++k) v[k] = (REAL)k;
  return v;
}

static inline vreal vabs(vreal x) { return vselect(x < 0, -x, x); }

/* sigmoid(x) and softplus(x) from t = exp(-|x|), stable for every x including -inf. */
static inline vreal vsigmoid_t(vreal x, vreal t) {
  vreal r = (REAL)1 / ((REAL)1 + t); /* one division instead of two */
  return vselect(x >= 0, r, t * r);
}

static inline vreal vsoftplus_t(vreal x, vreal t) {
  return vmax(x, vset1(0)) + vlog1p_unit(t);
}

/* The sets of ops/common/sets.h on dense codes, for a row x known to have its role (an anchor in
 * the row loops, a contrast row in the column loops: code >= 0, image ix) against lanes y whose
 * code is negative where they lack the other role: positives, and the LSE set. Codes are equal
 * only for positives: the "no anchor" -1 never meets the "no contrast" -2. */
static inline vmask mask_pos(vreal x, vreal y) { return y == x; }

static inline vmask mask_lse(vreal x, vreal ix, vreal y, vreal iy, int set) {
  vmask pos = y == x, same_image = iy == ix, has_role = y >= 0;
  return set == LSE_ALL ? has_role & (pos | same_image) : has_role & ~pos & same_image;
}

/* In a diagonal tile, drops the lane of row i itself from both masks (idx0 = lane_index()): the
 * self pair is added per row. */
static inline void drop_self(vreal idx0, int i, int j, vmask *pos, vmask *mem) {
  vmask not_self = (idx0 + (REAL)j) != (REAL)i;
  *pos &= not_self;
  *mem &= not_self;
}

/* Contrast row `row` against the anchors of the lanes (codes a, images ia), roles swapped; 0 when
 * the row is no contrast row. */
static inline int col_masks(const tile_rows *t, int64_t row, vreal a, vreal ia, int set, vmask *pos,
                            vmask *mem) {
  REAL c = t->r[ROW_CONTRAST_CODE][row];
  if (c < 0) return 0;
  vreal cv = vset1(c);
  *pos = mask_pos(cv, a);
  *mem = mask_lse(cv, vset1(t->r[ROW_IMAGE_CODE][row]), a, ia, set);
  return 1;
}

/* Online log-sum-exp merge of one more maximum / partial sum. */
static inline void lse_merge(REAL *m, REAL *sum, REAL tile_sum_at_new_max, REAL new_max) {
  REAL scale = (*m == -INFINITY) ? (REAL)0 : (REAL)exp((double)(*m - new_max));
  *sum = *sum * scale + tile_sum_at_new_max;
  *m = new_max;
}

/* Rows i of I over columns J: LSE statistics, and ("all") positive sums.
 * In a diagonal tile the column j == i is excluded (the self pair is added per row). */
static void tile_lse_rows(const REAL *S, int64_t I0, int64_t J0, int diag, int set,
                          tile_rows *t) {
  const REAL *cc = t->r[ROW_CONTRAST_CODE] + J0, *ic = t->r[ROW_IMAGE_CODE] + J0;
  REAL masked[PIXCON_TILE];
  vreal idx0 = lane_index(), neg_inf = vset1(-INFINITY), zero = vset1(0);
  for (int i = 0; i < PIXCON_TILE; ++i) {
    REAL a = t->r[ROW_ANCHOR_CODE][I0 + i];
    if (a < 0) continue;
    vreal av = vset1(a), iav = vset1(t->r[ROW_IMAGE_CODE][I0 + i]);
    vreal mx = neg_inf, psum = zero;
    for (int j = 0; j < PIXCON_TILE; j += VLANES) {
      vreal s = vload(S + i * PIXCON_TILE + j), ccv = vload(cc + j), icv = vload(ic + j);
      vmask pos = mask_pos(av, ccv), mem = mask_lse(av, iav, ccv, icv, set);
      if (diag) drop_self(idx0, i, j, &pos, &mem);
      vreal ms = vselect(mem, s, neg_inf);
      vstore(masked + j, ms);
      mx = vmax(mx, ms);
      psum += vselect(pos, s, zero);
    }
    if (set == LSE_ALL) t->r[ROW_POS][I0 + i] += hsum(psum);
    REAL tmax = hmax(mx);
    if (tmax == -INFINITY) continue;
    REAL *m = &t->r[ROW_MAX][I0 + i];
    REAL new_max = (tmax > *m || tmax != tmax) ? tmax : *m;
    vreal acc = zero, nm = vset1(new_max);
    for (int j = 0; j < PIXCON_TILE; j += VLANES) acc += vexp_neg(vload(masked + j) - nm);
    lse_merge(m, &t->r[ROW_SUM][I0 + i], hsum(acc), new_max);
  }
}

/* Rows j of J over rows i of I (the transposed half of an off-diagonal tile), vectorised
 * along j: each lane carries its own running max and sum. */
static void tile_lse_cols(const REAL *S, int64_t I0, int64_t J0, int set, tile_rows *t) {
  vreal neg_inf = vset1(-INFINITY), zero = vset1(0);
  for (int j = 0; j < PIXCON_TILE; j += VLANES) {
    vreal av = vload(t->r[ROW_ANCHOR_CODE] + J0 + j), iav = vload(t->r[ROW_IMAGE_CODE] + J0 + j);
    if (hmax(av) < 0) continue;
    vreal mx = neg_inf, psum = zero;
    for (int i = 0; i < PIXCON_TILE; ++i) {
      vmask pos, mem;
      if (!col_masks(t, I0 + i, av, iav, set, &pos, &mem)) continue;
      vreal s = vload(S + i * PIXCON_TILE + j);
      mx = vmax(mx, vselect(mem, s, neg_inf));
      psum += vselect(pos, s, zero);
    }
    REAL *mp = t->r[ROW_MAX] + J0 + j, *sp = t->r[ROW_SUM] + J0 + j;
    if (set == LSE_ALL) vstore(t->r[ROW_POS] + J0 + j, vload(t->r[ROW_POS] + J0 + j) + psum);
    if (hmax(mx) == -INFINITY) continue;
    vreal m_old = vload(mp), m_new = vmax(m_old, mx);
    vreal acc = zero;
    for (int i = 0; i < PIXCON_TILE; ++i) {
      vmask pos, mem;
      if (!col_masks(t, I0 + i, av, iav, set, &pos, &mem)) continue;
      acc += vexp_neg(vselect(mem, vload(S + i * PIXCON_TILE + j) - m_new, neg_inf));
    }
    /* lanes whose max stays -inf keep sum 0; exp(m_old - m_new) is 0 when m_old was -inf */
    vreal shift = vselect(m_old == m_new, zero, m_old - m_new);
    vstore(sp, vload(sp) * vexp_neg(shift) + acc);
    vstore(mp, m_new);
  }
}

/* "pair" pass 2, rows i of I: sum over positives p of softplus(NL_i - s_ip) and sigmoid. */
static void tile_softplus_rows(const REAL *S, int64_t I0, int64_t J0, int diag, tile_rows *t) {
  enum { NV = PIXCON_TILE / VLANES };
  const REAL *cc = t->r[ROW_CONTRAST_CODE] + J0;
  vreal idx0 = lane_index(), zero = vset1(0);
  /* each vector's range of contrast codes: rows sorted by label put a row's positives in few of
   * them, and the others (all terms 0) skip their exponential, logarithm and division */
  REAL lo[NV], hi[NV];
  for (int v = 0; v < NV; ++v) {
    lo[v] = INFINITY;
    hi[v] = -1;
    for (int l = 0; l < VLANES; ++l) {
      REAL code = cc[v * VLANES + l];
      if (code >= 0 && code < lo[v]) lo[v] = code;
      if (code > hi[v]) hi[v] = code;
    }
  }
  for (int i = 0; i < PIXCON_TILE; ++i) {
    REAL a = t->r[ROW_ANCHOR_CODE][I0 + i], nl = t->r[ROW_MAX][I0 + i];
    if (a < 0 || nl == -INFINITY) continue; /* no negatives: every term is 0 */
    vreal av = vset1(a), nlv = vset1(nl), sp = zero, sg = zero;
    for (int j = 0; j < PIXCON_TILE; j += VLANES) {
      if (a < lo[j / VLANES] || a > hi[j / VLANES]) continue;
      vmask pos = mask_pos(av, vload(cc + j));
      if (diag) pos &= (idx0 + (REAL)j) != (REAL)i;
      vreal x = nlv - vload(S + i * PIXCON_TILE + j), e = vexp_neg(-vabs(x));
      sp += vselect(pos, vsoftplus_t(x, e), zero);
      sg += vselect(pos, vsigmoid_t(x, e), zero);
    }
    t->r[ROW_POS][I0 + i] += hsum(sp);
    t->r[ROW_SIG][I0 + i] += hsum(sg);
  }
}

/* "pair" pass 2, rows j of J over rows i of I (off-diagonal tiles). */
static void tile_softplus_cols(const REAL *S, int64_t I0, int64_t J0, tile_rows *t) {
  vreal zero = vset1(0);
  for (int j = 0; j < PIXCON_TILE; j += VLANES) {
    vreal av = vload(t->r[ROW_ANCHOR_CODE] + J0 + j), nlv = vload(t->r[ROW_MAX] + J0 + j);
    if (hmax(av) < 0) continue;
    vreal sp = zero, sg = zero;
    for (int i = 0; i < PIXCON_TILE; ++i) {
      REAL c = t->r[ROW_CONTRAST_CODE][I0 + i];
      if (c < 0) continue;
      vmask pos = mask_pos(vset1(c), av);
      vreal x = nlv - vload(S + i * PIXCON_TILE + j), e = vexp_neg(-vabs(x));
      sp += vselect(pos, vsoftplus_t(x, e), zero);
      sg += vselect(pos, vsigmoid_t(x, e), zero);
    }
    vstore(t->r[ROW_POS] + J0 + j, vload(t->r[ROW_POS] + J0 + j) + sp);
    vstore(t->r[ROW_SIG] + J0 + j, vload(t->r[ROW_SIG] + J0 + j) + sg);
  }
}

/* dl_i/ds_ij for anchor lanes against contrast codes, vectorised either way round:
 * "all":  [j in P u N] exp(s - LSE_i) - [j in P] / |P(i)|
 * "pair": [j in N] W_i exp(s - NL_i) - [j in P] sigmoid(NL_i - s) / |P(i)|
 * stat = LSE_i or NL_i, invp = 1 / |P(i)|, w = W_i. */
static inline vreal loss_slope(vreal s, vmask pos, vmask mem, vreal stat, vreal invp, vreal w,
                               int set) {
  vreal neg_inf = vset1(-INFINITY), zero = vset1(0);
  /* s <= stat in exact arithmetic; rounding of a huge s can put it above, where vexp_neg is
   * undefined: clamp at 0 (NaN passes) */
  vreal shifted = s - stat;
  vreal e = vexp_neg(vselect(mem, vselect(shifted > 0, zero, shifted), neg_inf));
  if (set == LSE_ALL) return e - vselect(pos, invp, zero);
  vreal x = stat - s;
  return w * e - vselect(pos, invp * vsigmoid_t(x, vexp_neg(-vabs(x))), zero);
}

/* C[i][j] = g_i a_ij + g_j a_ji over the tile; the self pair is excluded (added per row). */
static void tile_grad_weights(const REAL *S, int64_t I0, int64_t J0, int diag, int set,
                              tile_rows *t, REAL *C) {
  vreal idx0 = lane_index(), zero = vset1(0);
  const REAL *cc = t->r[ROW_CONTRAST_CODE] + J0, *ic = t->r[ROW_IMAGE_CODE] + J0;
  for (int i = 0; i < PIXCON_TILE; ++i) {
    REAL g = t->r[ROW_GRAD][I0 + i];
    REAL *crow = C + i * PIXCON_TILE;
    if (g == 0) {
      for (int j = 0; j < PIXCON_TILE; j += VLANES) vstore(crow + j, zero);
      continue;
    }
    vreal av = vset1(t->r[ROW_ANCHOR_CODE][I0 + i]), iav = vset1(t->r[ROW_IMAGE_CODE][I0 + i]);
    vreal stat = vset1(t->r[ROW_MAX][I0 + i]), invp = vset1(t->r[ROW_NPOS][I0 + i]);
    vreal w = vset1(t->r[ROW_SIG][I0 + i]);
    for (int j = 0; j < PIXCON_TILE; j += VLANES) {
      vreal s = vload(S + i * PIXCON_TILE + j), ccv = vload(cc + j), icv = vload(ic + j);
      vmask pos = mask_pos(av, ccv), mem = mask_lse(av, iav, ccv, icv, set);
      if (diag) drop_self(idx0, i, j, &pos, &mem);
      vstore(crow + j, g * loss_slope(s, pos, mem, stat, invp, w, set));
    }
  }
  for (int i = 0; i < PIXCON_TILE; ++i) {
    REAL c = t->r[ROW_CONTRAST_CODE][I0 + i];
    if (c < 0) continue;
    vreal cv = vset1(c), icv = vset1(t->r[ROW_IMAGE_CODE][I0 + i]);
    REAL *crow = C + i * PIXCON_TILE;
    for (int j = 0; j < PIXCON_TILE; j += VLANES) {
      vreal gv = vload(t->r[ROW_GRAD] + J0 + j);
      if (hmax(vabs(gv)) == 0) continue;
      vreal av = vload(t->r[ROW_ANCHOR_CODE] + J0 + j), iav = vload(t->r[ROW_IMAGE_CODE] + J0 + j);
      vmask pos = mask_pos(cv, av), mem = mask_lse(cv, icv, av, iav, set);
      if (diag) drop_self(idx0, i, j, &pos, &mem);
      vreal slope = loss_slope(vload(S + i * PIXCON_TILE + j), pos, mem,
                               vload(t->r[ROW_MAX] + J0 + j), vload(t->r[ROW_NPOS] + J0 + j),
                               vload(t->r[ROW_SIG] + J0 + j), set);
      vstore(crow + j, vload(crow + j) + gv * slope);
    }
  }
}
