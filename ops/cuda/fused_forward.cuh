/* Forward of the fused loss (DESIGN.md section 3b): a CTA owns kRows anchor rows of one bag and
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

/* One sweep over the bag's column tiles: each tile's column keys and similarities S, then fold(c0, n)
 * on its n columns from c0, between the barriers that keep S and the keys in place. */
template <class K, class Sh, class Fold>
__device__ __forceinline__ void sweep_columns(unsigned char *smem, const Layout<K, Sh> &L, const FusedArgs &a,
                                              const Tile &t, Side<typename K::Acc> *cols, Fold fold) {
  typename SimMath<K, Sh>::type sim;
  for (int64_t c0 = t.bag0; c0 < t.bag1; c0 += Sh::kCols) {
    const int n = tile_columns<Sh::kCols>(t, c0);
    for (int c = threadIdx.x; c < n; c += Sh::kThreads) cols[c].key = load_key(a, c0 + c);
    similarity_tile<K, Sh>(sim, smem, L, a, t.row0, t.rows, c0, n);
    __syncthreads();
    fold(c0, n);
    __syncthreads();
  }
}

template <Path P, class Sh> __global__ void __launch_bounds__(Sh::kThreads) fused_forward_kernel(FusedArgs a) {
  typedef Kind<P> K;
  typedef typename K::Acc Acc;
  PIXCON_DYNAMIC_SHARED(smem);
  const Layout<K, Sh> L(a.dp, a.resident != 0);
  Tile t;
  if (!open_tile<K, Sh>(smem, L, a, &t)) return;
  Side<Acc> *cols = (Side<Acc> *)(smem + L.col_sides);

  const int r = threadIdx.x / Sh::kFoldLanes, part = threadIdx.x % Sh::kFoldLanes;
  const Acc *S = (const Acc *)(smem + L.s) + r * Layout<K, Sh>::kSPitch; /* row r of S */
  const int64_t i = t.row0 + r;
  const bool live = r < t.rows;
  const Key me = load_key(a, live ? i : t.row0);
  const bool anchor = live && (me.roles & PIXCON_ROLE_ANCHOR);

  OnlineLse<Acc> lse;
  lse.init();
  Acc pos_sum = 0;
  int npos = 0;
  sweep_columns<K, Sh>(smem, L, a, t, cols, [&](int64_t c0, int n) {
    if (!anchor) return;
    for (int c = part; c < n; c += Sh::kFoldLanes) {
      const int64_t j = c0 + c;
      const Acc s = S[c];
      const bool pos = is_positive(a, i, me, j, cols[c].key);
      if (pos) {
        pos_sum += s;
        ++npos;
      }
      if (is_negative(i, me, j, cols[c].key) || (!a.pair && pos)) lse.add(s);
    }
  });
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
    sweep_columns<K, Sh>(smem, L, a, t, cols, [&](int64_t c0, int n) {
      if (!needs_pass2) return;
      for (int c = part; c < n; c += Sh::kFoldLanes) {
        if (!is_positive(a, i, me, c0 + c, cols[c].key)) continue;
        const Acc x = stat - S[c];
        softplus_sum += softplus(x);
        sigmoid_sum += sigmoid(x);
      }
    });
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
