/* Backward of the fused loss (docs/design.md section 3b.4): a CTA owns kRows rows I of one bag and the
 * gradient columns [d0, d0 + kGradCols) (blockIdx.y), and sweeps every column tile J of the bag:
 * recompute S_IJ, turn it in place into the weights
 *   w_ij = g_i dl_i/ds_ij + g_j dl_j/ds_ji      (both sides' saved statistics; s is symmetric)
 * and accumulate dZ_I += W_IJ Z_J / temperature. Each row's gradient is summed by one CTA in a fixed
 * order: deterministic, no atomics.
 *   "all":  dl_i/ds_ij = exp(s_ij - LSE_i) [j in C(i)] - [j in P(i)] / |P(i)|
 *   "pair": dl_i/ds_ij = W_i exp(s_ij - NL_i) [j in N(i)] - sigmoid(NL_i - s_ij) [j in P(i)] / |P(i)|
 * Cost per bag of n rows: n^2 Dp multiply-adds per gradient chunk for S plus n^2 Dp for W Z, 2 n^2 exps.
 */
#ifndef PIXCON_CUDA_FUSED_BACKWARD_CUH
#define PIXCON_CUDA_FUSED_BACKWARD_CUH

#include "common.cuh"
#include "fused_args.cuh"
#include "fused_kinds.cuh"
#include "tile_math.cuh"

namespace pixcon_cuda {

/* dl_a/ds for the anchor on `side` against one other row, s the pair's similarity. */
template <class Acc>
__device__ __forceinline__ Acc slope(bool pair, bool pos, bool neg, Acc s, const Side<Acc> &side) {
  /* s <= stat in exact arithmetic; clamp what rounding puts above (a weight is at most 1) */
  const Acc x2 = s * (Acc)kLog2e - side.stat2;
  const Acc e = px_exp2(x2 > 0 ? (Acc)0 : x2);
  if (!pair) return (pos || neg ? e : (Acc)0) - (pos ? side.invp : (Acc)0);
  Acc v = neg ? side.w * e : (Acc)0;
  if (pos && side.stat != neg_inf<Acc>()) v -= side.invp * sigmoid(side.stat - s);
  return v;
}

template <class Acc>
__device__ __forceinline__ Acc pair_weight(const FusedArgs &a, int64_t i, const Side<Acc> &ri, int64_t j,
                                           const Side<Acc> &cj, Acc s) {
  Acc w = 0;
  if (ri.g != 0)
    w += ri.g * slope(a.pair != 0, pixcon_is_positive(a.self_positive, i, &ri.key, j, &cj.key),
                      pixcon_is_negative(a.image != NULL, i, &ri.key, j, &cj.key), s, ri);
  if (cj.g != 0)
    w += cj.g * slope(a.pair != 0, pixcon_is_positive(a.self_positive, j, &cj.key, i, &ri.key),
                      pixcon_is_negative(a.image != NULL, j, &cj.key, i, &ri.key), s, cj);
  return w;
}

template <Path P, class Sh> __global__ void __launch_bounds__(Sh::kThreads) fused_backward_kernel(FusedArgs a) {
  typedef Kind<P> K;
  typedef typename K::Acc Acc;
  typedef Layout<K, Sh> LT;
  PIXCON_DYNAMIC_SHARED(smem);
  Tile t;
  if (!find_tile<Sh::kRows>(a, &t)) return;
  const LT L(a.dp, a.resident != 0);
  const int64_t d0 = (int64_t)blockIdx.y * Sh::kGradCols;
  Acc *S = (Acc *)(smem + L.s);
  Side<Acc> *rows = (Side<Acc> *)(smem + L.row_sides), *cols = (Side<Acc> *)(smem + L.col_sides);
  load_anchor_rows<K, Sh>(smem, L, a, t.row0, t.rows);
  for (int r = threadIdx.x; r < Sh::kRows; r += Sh::kThreads)
    rows[r] = r < t.rows ? load_side<Acc>(a, t.row0 + r) : empty_side<Acc>();

  typename SimMath<K, Sh>::type sim;
  typename GradMath<K, Sh>::type grad;
  grad.clear();
  for (int64_t c0 = t.bag0; c0 < t.bag1; c0 += Sh::kCols) {
    const int n = tile_columns<Sh::kCols>(t, c0);
    for (int c = threadIdx.x; c < Sh::kCols; c += Sh::kThreads)
      cols[c] = c < n ? load_side<Acc>(a, c0 + c) : empty_side<Acc>();
    similarity_tile<K, Sh>(sim, smem, L, a, t.row0, t.rows, c0, n);
    __syncthreads();
    for (int e = threadIdx.x; e < Sh::kRows * Sh::kCols; e += Sh::kThreads) {
      const int r = e / Sh::kCols, c = e % Sh::kCols;
      Acc *s = S + r * LT::kSPitch + c;
      *s = r < t.rows && c < n ? pair_weight(a, t.row0 + r, rows[r], c0 + c, cols[c], *s) : (Acc)0;
    }
    __syncthreads();
    weights_times_z<K, Sh>(grad, smem, L, a, c0, n, d0);
  }
  grad.store((typename K::Grad *)S, a, t.row0, t.rows, d0, (typename K::Grad)a.scale);
}

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_FUSED_BACKWARD_CUH */
