/*
 * Plain reference of the fused loss: the definitions of pixcon.h evaluated pair by pair in
 * double precision, recomputing every s_ij (O(N^2 D) time, no extra memory), with the sets of
 * ops/common/sets.h. The tiled tiers, which work on dense label codes instead, are tested against
 * it; it is written for clarity, not speed.
 */
#include <math.h>

#include "common/convert.h"
#include "common/sets.h"
#include "pixcon_reference.h"

static double z_at(const pixcon_loss_params *p, int64_t r, int64_t d) {
  return pixcon_load_elem(p->embeddings, p->dtype, r * p->row_stride + d * p->col_stride);
}

static double sim(const pixcon_loss_params *p, int64_t i, int64_t j) {
  double s = 0;
  for (int64_t d = 0; d < p->dim; ++d) s += z_at(p, i, d) * z_at(p, j, d);
  return s / p->temperature;
}

static pixcon_row_key key(const pixcon_loss_params *p, int64_t r) {
  pixcon_row_key k;
  k.label = p->labels[r];
  k.image = p->image_ids ? p->image_ids[r] : 0;
  k.roles = pixcon_row_roles(p->labels[r], p->ignore_index, p->anchor_mask, p->contrast_mask, r);
  return k;
}

static int is_anchor(const pixcon_loss_params *p, int64_t r) {
  return (key(p, r).roles & PIXCON_ROLE_ANCHOR) != 0;
}

static int is_positive(const pixcon_loss_params *p, int64_t i, int64_t j) {
  pixcon_row_key ki = key(p, i), kj = key(p, j);
  return pixcon_is_positive(p->self_positive, i, &ki, j, &kj);
}

static int is_negative(const pixcon_loss_params *p, int64_t i, int64_t j) {
  pixcon_row_key ki = key(p, i), kj = key(p, j);
  return pixcon_is_negative(p->image_ids != NULL, i, &ki, j, &kj);
}

static int in_lse(const pixcon_loss_params *p, int64_t i, int64_t j) {
  return p->denominator == PIXCON_DENOMINATOR_ALL ? is_positive(p, i, j) || is_negative(p, i, j)
                                                  : is_negative(p, i, j);
}

static double row_lse(const pixcon_loss_params *p, int64_t i, int64_t begin, int64_t end) {
  double m = -INFINITY, sum = 0;
  for (int64_t j = begin; j < end; ++j)
    if (in_lse(p, i, j) && sim(p, i, j) > m) m = sim(p, i, j);
  if (m == -INFINITY) return -INFINITY;
  for (int64_t j = begin; j < end; ++j)
    if (in_lse(p, i, j)) sum += exp(sim(p, i, j) - m);
  return m + log(sum);
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

pixcon_status pixcon_reference_contrastive_forward(const pixcon_loss_params *p, double *loss,
                                                   uint8_t *valid, double *stats) {
  pixcon_status st = pixcon_loss_params_check(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  for (int64_t b = 0; b < p->num_bags; ++b) {
    int64_t begin = p->bag_offsets[b], end = p->bag_offsets[b + 1];
    for (int64_t i = begin; i < end; ++i) {
      double npos = 0, pos_sum = 0, sp_sum = 0, sig_sum = 0;
      double lse = is_anchor(p, i) ? row_lse(p, i, begin, end) : -INFINITY;
      if (is_anchor(p, i)) {
        for (int64_t j = begin; j < end; ++j) {
          if (!is_positive(p, i, j)) continue;
          double s = sim(p, i, j);
          npos += 1;
          pos_sum += s;
          if (lse != -INFINITY) {
            sp_sum += softplus(lse - s);
            sig_sum += sigmoid(lse - s);
          }
        }
      }
      int ok = is_anchor(p, i) && npos >= 1;
      int pair = p->denominator == PIXCON_DENOMINATOR_PAIR;
      valid[i] = (uint8_t)ok;
      loss[i] = !ok ? 0 : pair ? sp_sum / npos : lse - pos_sum / npos;
      stats[i * PIXCON_NUM_STATS + 0] = lse;
      stats[i * PIXCON_NUM_STATS + 1] = ok && pair ? sig_sum / npos : 0;
      stats[i * PIXCON_NUM_STATS + 2] = npos;
    }
  }
  return PIXCON_OK;
}

/* dl_i / ds_ij for a valid anchor i. */
static double slope(const pixcon_loss_params *p, int64_t i, int64_t j, const double *stats) {
  double stat = stats[i * PIXCON_NUM_STATS + 0], w = stats[i * PIXCON_NUM_STATS + 1];
  double invp = 1 / stats[i * PIXCON_NUM_STATS + 2], s = sim(p, i, j), a = 0;
  if (p->denominator == PIXCON_DENOMINATOR_ALL) {
    if (in_lse(p, i, j)) a += exp(s - stat);
    if (is_positive(p, i, j)) a -= invp;
  } else {
    if (is_negative(p, i, j)) a += w * exp(s - stat);
    if (is_positive(p, i, j) && stat != -INFINITY) a -= invp * sigmoid(stat - s);
  }
  return a;
}

pixcon_status pixcon_reference_contrastive_backward(const pixcon_loss_params *p,
                                                    const double *grad_loss,
                                                    const double *stats,
                                                    double *grad_embeddings) {
  pixcon_status st = pixcon_loss_params_check(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  for (int64_t k = 0; k < p->num_rows * p->dim; ++k) grad_embeddings[k] = 0;
  for (int64_t b = 0; b < p->num_bags; ++b) {
    int64_t begin = p->bag_offsets[b], end = p->bag_offsets[b + 1];
    for (int64_t i = begin; i < end; ++i) {
      if (!is_anchor(p, i) || stats[i * PIXCON_NUM_STATS + 2] < 1) continue;
      for (int64_t j = begin; j < end; ++j) {
        double c = grad_loss[i] * slope(p, i, j, stats) / p->temperature;
        if (c == 0) continue;
        for (int64_t d = 0; d < p->dim; ++d) {
          grad_embeddings[i * p->dim + d] += c * z_at(p, j, d);
          grad_embeddings[j * p->dim + d] += c * z_at(p, i, d);
        }
      }
    }
  }
  return PIXCON_OK;
}
