/* What every fused kernel reads: one parameter struct passed by value (as flash-attention's
 * Flash_fwd_params), the per-row keys of the sets of ops/common/sets.h (docs/design.md section 2.1)
 * and the backward's sides, the (bag, row tile) lookup in the device work list, and the mergeable
 * online log-sum-exp.
 * Cost: O(log B) per CTA for the lookup, O(1) per pair for the predicates.
 */
#ifndef PIXCON_CUDA_FUSED_ARGS_CUH
#define PIXCON_CUDA_FUSED_ARGS_CUH

#include <stdint.h>

#include "../common/sets.h"
#include "common.cuh"

namespace pixcon_cuda {

constexpr double kLog2e = 1.4426950408889634074, kLn2 = 0.69314718055994530942;

struct FusedArgs {
  /* the problem (device pointers) */
  int64_t n, dim, dp;      /* rows, D, D padded to kDimAlign */
  int64_t num_bags;
  const int64_t *offsets;  /* [B + 1] */
  const int64_t *labels;   /* [N] */
  const int64_t *image;    /* [N] or NULL */
  const uint8_t *anchor_mask, *contrast_mask; /* [N] or NULL; read by the pack kernel only */
  int64_t ignore_index;
  int self_positive, pair;
  double scale;            /* 1 / temperature */
  /* the caller's embeddings (read by the pack kernel only) */
  const void *z;
  int64_t row_stride, col_stride;
  /* workspace */
  void *zs;                /* [N, dp] packed copy in the path's Elem */
  uint8_t *roles;          /* [N] PIXCON_ROLE_* of each row (pixcon_row_roles) */
  int64_t *tile_start;     /* [B + 1] first work item of each bag; [B] = number of items */
  int resident;            /* the CTA keeps its anchor rows in shared memory (Layout) */
  /* forward outputs; backward inputs and output (in the path's Acc, gradient in the input dtype) */
  void *loss, *stats;
  uint8_t *valid;
  const void *grad_loss, *stats_in;
  void *grad;
};

typedef pixcon_row_key Key;

__device__ __forceinline__ Key load_key(const FusedArgs &a, int64_t r) {
  Key k;
  k.label = a.labels[r];
  k.image = a.image ? a.image[r] : 0;
  k.roles = a.roles[r];
  return k;
}

/* A row as the backward pass sees it from either side of a pair: its key, its upstream gradient g
 * (0 unless it is a valid anchor) and, when g != 0, its saved statistics. */
template <class Acc> struct Side {
  Key key;
  Acc g, stat, stat2, w, invp; /* stat2 = stat * log2(e), for exp2 */
};

template <class Acc> __device__ __forceinline__ Side<Acc> load_side(const FusedArgs &a, int64_t r) {
  Side<Acc> s;
  s.key = load_key(a, r);
  const Acc *stats = (const Acc *)a.stats_in + r * 3;
  const Acc npos = stats[2];
  s.g = (s.key.roles & PIXCON_ROLE_ANCHOR) && npos >= 1 ? ((const Acc *)a.grad_loss)[r] : (Acc)0;
  s.stat = s.stat2 = s.w = s.invp = 0;
  if (s.g != 0) {
    s.stat = stats[0];
    s.stat2 = stats[0] * (Acc)kLog2e;
    s.w = stats[1];
    s.invp = (Acc)1 / npos;
  }
  return s;
}

template <class Acc> __device__ __forceinline__ Side<Acc> empty_side() {
  Side<Acc> s;
  s.key.label = s.key.image = 0;
  s.key.roles = 0;
  s.g = s.stat = s.stat2 = s.w = s.invp = 0;
  return s;
}

/* The rows [row0, row0 + rows) of bag [bag0, bag1) that this CTA owns. */
struct Tile {
  int64_t bag0, bag1, row0;
  int rows;
};

/* Item blockIdx.x of the work list built by plan_kernel: the bag is the last one whose first item is
 * at or before it (empty bags own no item). Surplus CTAs of the host's upper bound find none. */
template <int BR> __device__ __forceinline__ bool find_tile(const FusedArgs &a, Tile *t) {
  const int64_t item = blockIdx.x;
  if (item >= a.tile_start[a.num_bags]) return false;
  int64_t lo = 0, hi = a.num_bags - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (a.tile_start[mid] <= item) lo = mid;
    else hi = mid - 1;
  }
  t->bag0 = a.offsets[lo];
  t->bag1 = a.offsets[lo + 1];
  t->row0 = t->bag0 + (item - a.tile_start[lo]) * BR;
  const int64_t left = t->bag1 - t->row0;
  t->rows = left < BR ? (int)left : BR;
  return true;
}

/* The columns of the tile of BC from c0: BC, fewer at the bag's end. */
template <int BC> __device__ __forceinline__ int tile_columns(const Tile &t, int64_t c0) {
  return t.bag1 - c0 < BC ? (int)(t.bag1 - c0) : BC;
}

/* log-sum-exp kept as (max, sum of exp2((x - max) log2 e)) and mergeable in any order; the scale
 * log2(e) folds into one FMA per element. */
template <class Acc> struct OnlineLse {
  Acc m2, sum; /* max of x log2(e); sum of 2^(x log2(e) - m2) */

  __device__ __forceinline__ void init() {
    m2 = neg_inf<Acc>();
    sum = 0;
  }
  __device__ __forceinline__ void add(Acc x) {
    const Acc x2 = x * (Acc)kLog2e;
    if (x2 > m2) {
      sum = sum * px_exp2(m2 - x2) + (Acc)1;
      m2 = x2;
    } else {
      sum += px_exp2(x2 - m2);
    }
  }
  __device__ __forceinline__ void merge(Acc om2, Acc osum) {
    const Acc m = om2 > m2 ? om2 : m2;
    const Acc mine = m2 == neg_inf<Acc>() ? (Acc)0 : sum * px_exp2(m2 - m);
    const Acc theirs = om2 == neg_inf<Acc>() ? (Acc)0 : osum * px_exp2(om2 - m);
    sum = mine + theirs;
    m2 = m;
  }
  /* natural log-sum-exp; -inf for an empty set, NaN when a NaN entered */
  __device__ __forceinline__ Acc value() const {
    return (sum > 0 || sum != sum) ? (m2 + px_log2(sum)) * (Acc)kLn2 : neg_inf<Acc>();
  }
};

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_FUSED_ARGS_CUH */
