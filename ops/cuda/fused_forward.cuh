/* Forward of the fused loss (docs/design.md section 3b.3): a CTA owns kRows anchor rows of one bag and
 * sweeps the bag's column tiles; each kRows x kCols similarity tile (tile_math.cuh) is folded at once
 * into per-row state: online log-sum-exp of the denominator set, positive sum and count. "pair"
 * sweeps a second time for sum_p softplus(NL - s_ip) and sum_p sigmoid(NL - s_ip). kFoldLanes
 * consecutive threads share a row (columns interleaved) and merge by shuffles.
 * Outputs per row: loss, valid, and the statistics [LSE or NL, W, |P|] the backward reads.
 * Cost per bag of n rows: n^2 Dp multiply-adds ("pair": 2 n^2 Dp) and n^2 exps; nothing of size
 * rows x bag leaves the CTA.
 */
#ifndef PIXCON_CUDA_FUSED_FORWARD_CUH
#define PIXCON_CUDA_FUSED_FORWARD_CUH

#include "common.cuh"
#include "fused_args.cuh"
#include "fused_kinds.cuh"
#include "tile_math.cuh"

namespace pixcon_cuda {

/* Sum over the kFoldLanes threads of a row (consecutive lanes of one warp). */
template <int LANES, class T> __device__ __forceinline__ T fold_sum(T x) {
  for (int m = 1; m < LANES; m <<= 1) x += __shfl_xor_sync(0xffffffffu, x, m);
  return x;
}

/* Column tile c0 of the bag, ready to fold: its columns' keys and the similarities S, written and
 * synchronised. Returns its width. */
template <class K, class Sh>
__device__ __forceinline__ int column_tile(typename SimMath<K, Sh>::type &sim, unsigned char *smem,
                                           const Layout<K, Sh> &L, const FusedArgs &a, const Tile &t,
                                           Side<typename K::Acc> *cols, int64_t c0) {
  const int n = tile_columns<Sh::kCols>(t, c0);
  for (int c = threadIdx.x; c < n; c += Sh::kThreads) cols[c].key = load_key(a, c0 + c);
  similarity_tile<K, Sh>(sim, smem, L, a, t.row0, t.rows, c0, n);
  __syncthreads();
  return n;
}

template <Path P, class Sh> __global__ void __launch_bounds__(Sh::kThreads) fused_forward_kernel(FusedArgs a) {
  typedef Kind<P> K;
  typedef typename K::Acc Acc;
  PIXCON_DYNAMIC_SHARED(smem);
  Tile t;
  if (!find_tile<Sh::kRows>(a, &t)) return;
  const Layout<K, Sh> L(a.dp, a.resident != 0);
  Side<Acc> *cols = (Side<Acc> *)(smem + L.col_sides);
  load_anchor_rows<K, Sh>(smem, L, a, t.row0, t.rows);

  const int r = threadIdx.x / Sh::kFoldLanes, part = threadIdx.x % Sh::kFoldLanes;
  const Acc *S = (const Acc *)(smem + L.s) + r * Layout<K, Sh>::kSPitch; /* row r of S */
  const int64_t i = t.row0 + r;
  const bool live = r < t.rows;
  const Key me = load_key(a, live ? i : t.row0);
  const bool anchor = live && (me.roles & PIXCON_ROLE_ANCHOR);

  typename SimMath<K, Sh>::type sim;
  OnlineLse<Acc> lse;
  lse.init();
  Acc pos_sum = 0;
  int npos = 0;
  for (int64_t c0 = t.bag0; c0 < t.bag1; c0 += Sh::kCols) {
    const int n = column_tile<K, Sh>(sim, smem, L, a, t, cols, c0);
    if (anchor) {
      for (int c = part; c < n; c += Sh::kFoldLanes) {
        const int64_t j = c0 + c;
        const Acc s = S[c];
        const bool pos = pixcon_is_positive(a.self_positive, i, &me, j, &cols[c].key);
        if (pos) {
          pos_sum += s;
          ++npos;
        }
        if (pixcon_is_negative(a.image != NULL, i, &me, j, &cols[c].key) || (!a.pair && pos)) lse.add(s);
      }
    }
    __syncthreads();
  }
  for (int m = 1; m < Sh::kFoldLanes; m <<= 1) {
    const Acc om2 = __shfl_xor_sync(0xffffffffu, lse.m2, m), osum = __shfl_xor_sync(0xffffffffu, lse.sum, m);
    lse.merge(om2, osum);
  }
  pos_sum = fold_sum<Sh::kFoldLanes>(pos_sum);
  npos = fold_sum<Sh::kFoldLanes>(npos);
  const Acc stat = anchor ? lse.value() : neg_inf<Acc>();

  /* "pair": softplus and sigmoid of NL - s over the positives, once NL is known */
  Acc softplus_sum = 0, sigmoid_sum = 0;
  const bool needs_pass2 = anchor && npos > 0 && stat != neg_inf<Acc>();
  if (a.pair && __syncthreads_or(needs_pass2)) {
    for (int64_t c0 = t.bag0; c0 < t.bag1; c0 += Sh::kCols) {
      const int n = column_tile<K, Sh>(sim, smem, L, a, t, cols, c0);
      if (needs_pass2) {
        for (int c = part; c < n; c += Sh::kFoldLanes) {
          if (!pixcon_is_positive(a.self_positive, i, &me, c0 + c, &cols[c].key)) continue;
          const Acc x = stat - S[c];
          softplus_sum += softplus(x);
          sigmoid_sum += sigmoid(x);
        }
      }
      __syncthreads();
    }
    softplus_sum = fold_sum<Sh::kFoldLanes>(softplus_sum);
    sigmoid_sum = fold_sum<Sh::kFoldLanes>(sigmoid_sum);
  }

  if (live && part == 0) {
    const bool ok = anchor && npos >= 1;
    Acc *loss = (Acc *)a.loss, *stats = (Acc *)a.stats + i * 3;
    a.valid[i] = (uint8_t)ok;
    loss[i] = !ok ? (Acc)0 : a.pair ? softplus_sum / (Acc)npos : stat - pos_sum / (Acc)npos;
    stats[0] = stat;
    stats[1] = ok && a.pair ? sigmoid_sum / (Acc)npos : (Acc)0;
    stats[2] = (Acc)npos;
  }
}

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_FUSED_FORWARD_CUH */
