/* Steps 1 and 2a of kmeans.h on the GPU: the unit rows, and the Philox-keyed initialisations.
 *   unit_rows_kernel: a thread per row (the contract's norm is a sequential double sum over d, so the
 *     row is the unit of parallelism); reads the strided input, where a [B, D, H, W] map makes the
 *     threads of a warp read adjacent pixels of one channel; counts the valid rows.
 *   random: keys (draw32(seed, r, 0, i), i) of the valid rows (invalid rows all ones), one radix sort,
 *     centroid j = the row of sorted position j while that position holds a valid row.
 *   k-means++ (greedy, with pixcon_kmeans_trials(K) local trials), per step t:
 *     plus_plus_draw_kernel: t = 0 or all weights 0: the smallest (draw32(seed, r, t, i), i) by a block
 *       reduction; else each trial's row, the first whose inclusive prefix sum of the integer weights
 *       exceeds its Philox target, by binary search (the prefix sums are a CUB scan of 64-bit integers
 *       before it, exact in any order);
 *     plus_plus_potential_kernel: each trial's potential, an integer sum over rows (16 lanes per row,
 *       group_dot; per-CTA partials in shared memory, then one 64-bit atomicAdd per CTA and trial);
 *     plus_plus_choose_kernel: the trial of least potential;
 *     plus_plus_add_kernel: copies the row to c_t and updates each row's nearest cosine and weight.
 *     Steps past the number of valid rows draw nothing (pick = -1): those centroids stay zero.
 * Cost: unit rows O(n D); random one 64-bit sort of n keys; k-means++ per centroid (1 + trials) n Dp
 * multiply-adds, a scan of n integers and one block for the draw. */
#ifndef PIXCON_CUDA_KMEANS_INIT_CUH
#define PIXCON_CUDA_KMEANS_INIT_CUH

#include <math.h>
#include <stdint.h>

#include "common.cuh"
#include "kmeans_assign.cuh"
#include "kmeans_state.cuh"
#include "pixcon/kmeans.h"

namespace pixcon_cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr unsigned long long kNoRow = ~0ull; /* sorts after every valid row's key */

__global__ void __launch_bounds__(kRowThreads) unit_rows_kernel(KmeansState s) {
  const pixcon_kmeans_params &p = s.p;
  const int64_t i = (int64_t)blockIdx.x * kRowThreads + threadIdx.x;
  int ok = 0;
  if (i < s.n) {
    const float *x =
        p.features + (i / p.pixels_per_image) * p.image_stride + (i % p.pixels_per_image) * p.pixel_stride;
    double norm2 = 0.0;
    for (int64_t d = 0; d < p.dim; ++d) {
      const double v = (double)x[d * p.dim_stride];
      norm2 = fma(v, v, norm2); /* the square is exact in double, so this is the contract's sum */
    }
    ok = (!p.valid || p.valid[i]) && norm2 > 0.0 && isfinite(norm2);
    const double norm = sqrt(norm2);
    float *u = s.unit + i * s.dp;
    for (int64_t d = 0; d < p.dim; ++d) u[d] = ok ? (float)((double)x[d * p.dim_stride] / norm) : 0.0f;
    for (int64_t d = p.dim; d < s.dp; ++d) u[d] = 0.0f;
    s.valid[i] = (uint8_t)ok;
  }
  const int count = __syncthreads_count(ok);
  if (threadIdx.x == 0 && count > 0) atomicAdd(s.num_valid, (unsigned long long)count);
}

__device__ __forceinline__ unsigned long long draw_key(const KmeansState &s, int64_t r, int64_t t, int64_t i) {
  return (unsigned long long)pixcon_kmeans_draw32(s.p.seed, r, t, i) << 32 | (uint32_t)i;
}

__global__ void random_keys_kernel(KmeansState s, int64_t r) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < s.n; i += step) {
    s.keys[0][i] = s.valid[i] ? draw_key(s, r, 0, i) : kNoRow;
    s.index[0][i] = (int32_t)i;
  }
}

/* Centroid j, j < min(K, n), is the row at sorted position j; the zeros the centroids were cleared to
 * stay where that position holds no valid row. */
__global__ void random_gather_kernel(KmeansState s, const uint64_t *sorted_keys, const int32_t *sorted_index) {
  const int64_t drawn = s.k < s.n ? s.k : s.n, total = drawn * s.dp;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t j = e / s.dp, d = e - j * s.dp;
    if (sorted_keys[j] != kNoRow) s.centroid[e] = s.unit[(int64_t)sorted_index[j] * s.dp + d];
  }
}

constexpr int kDrawThreads = 256;
static_assert(kMaxTrials <= kDrawThreads, "a thread per trial");

/* Step t's draw. t past the valid rows: none (*pick = -1). All weights 0 (and t = 0): the valid row
 * with the smallest (draw32(seed, r, t, i), i) into *pick, by a block reduction. Else each trial j's
 * row into candidate[j], by binary search in the prefix sums of the weights, and *trialing = 1 for
 * the potential and choice kernels. */
__global__ void __launch_bounds__(kDrawThreads) plus_plus_draw_kernel(KmeansState s, int64_t r, int64_t t,
                                                                      int trials) {
  __shared__ unsigned long long warp_min[kDrawThreads / 32];
  const bool none = (unsigned long long)t >= *s.num_valid;
  const uint64_t *prefix = s.keys[1];
  const uint64_t total = none || t == 0 ? 0 : prefix[s.n - 1];
  if (threadIdx.x == 0) *s.trialing = total > 0;
  if (none) {
    if (threadIdx.x == 0) *s.pick = -1;
    return;
  }
  if (total > 0) {
    const int j = threadIdx.x;
    if (j >= trials) return;
    const uint64_t target = pixcon_kmeans_target(pixcon_kmeans_draw64(s.p.seed, r, t, j), total);
    int64_t lo = 0, hi = s.n - 1; /* prefix[n - 1] = total > target */
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (prefix[mid] > target) hi = mid;
      else lo = mid + 1;
    }
    s.candidate[j] = (int32_t)lo;
    s.potential[j] = 0;
    return;
  }
  unsigned long long m = kNoRow;
  for (int64_t i = threadIdx.x; i < s.n; i += kDrawThreads)
    if (s.valid[i]) {
      const unsigned long long key = draw_key(s, r, t, i);
      m = key < m ? key : m;
    }
  for (int off = 16; off >= 1; off /= 2) {
    const unsigned long long other = __shfl_xor_sync(kFullWarp, m, off);
    m = other < m ? other : m;
  }
  if (threadIdx.x % 32 == 0) warp_min[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kDrawThreads / 32; ++w) m = warp_min[w] < m ? warp_min[w] : m;
  *s.pick = (int32_t)(uint32_t)m; /* t < num_valid: some row is valid */
}

constexpr int kGroupRows = kRowThreads / kLanes; /* rows per CTA at 16 lanes per row */

/* potential[j] += sum over this CTA's valid rows of pixcon_kmeans_weight(max(b_i, cos(u_i, row_j))):
 * integers, so the per-CTA partials add up in any order. */
__global__ void __launch_bounds__(kRowThreads) plus_plus_potential_kernel(KmeansState s, int trials) {
  __shared__ unsigned long long block_sum[kMaxTrials];
  if (!*s.trialing) return;
  if ((int)threadIdx.x < trials) block_sum[threadIdx.x] = 0;
  __syncthreads();
  const int lane = threadIdx.x % kLanes;
  const int64_t i = (int64_t)blockIdx.x * kGroupRows + threadIdx.x / kLanes;
  const bool in = i < s.n, counted = in && s.valid[i];
  const float b = in ? s.best[i] : 0.0f;
  for (int j = 0; j < trials; ++j) {
    const float *c = s.unit + (int64_t)s.candidate[j] * s.dp;
    const float cos = group_dot(in ? s.unit + i * s.dp : c, c, in ? s.dp : 0, lane);
    if (counted && lane == 0) atomicAdd(&block_sum[j], (unsigned long long)pixcon_kmeans_weight(cos > b ? cos : b));
  }
  __syncthreads();
  if ((int)threadIdx.x < trials) atomicAdd(&s.potential[threadIdx.x], block_sum[threadIdx.x]);
}

/* The trial of least potential (ties: the first) becomes *pick. */
__global__ void plus_plus_choose_kernel(KmeansState s, int trials) {
  if (!*s.trialing) return;
  int chosen = 0;
  for (int j = 1; j < trials; ++j)
    if (s.potential[j] < s.potential[chosen]) chosen = j;
  *s.pick = s.candidate[chosen];
}

/* c_t = u_pick; best_i = cos(u_i, c_t) at t = 0, else the larger of the two; keys[0][i] = the weight of
 * row i for step t + 1 (0 for an invalid row). */
__global__ void __launch_bounds__(kRowThreads) plus_plus_add_kernel(KmeansState s, int64_t t) {
  const int32_t pick = *s.pick;
  if (pick < 0) return;
  const float *c = s.unit + (int64_t)pick * s.dp;
  if (blockIdx.x == 0)
    for (int64_t d = threadIdx.x; d < s.dp; d += kRowThreads) s.centroid[t * s.dp + d] = c[d];
  const int lane = threadIdx.x % kLanes;
  const int64_t i = (int64_t)blockIdx.x * kGroupRows + threadIdx.x / kLanes;
  const bool in = i < s.n;
  const float cos = group_dot(in ? s.unit + i * s.dp : c, c, in ? s.dp : 0, lane);
  if (!in || lane != 0) return;
  const float best = t == 0 || cos > s.best[i] ? cos : s.best[i];
  s.best[i] = best;
  s.keys[0][i] = s.valid[i] ? pixcon_kmeans_weight(best) : 0;
}

}  // namespace
}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_KMEANS_INIT_CUH */
