/* The update of kmeans.h step 2b on the GPU, deterministic for any schedule: S_k sums cluster k's members
 * in ascending row order, in chunks of PIXCON_KMEANS_CHUNK, in double, exactly as the contract orders it.
 *  1. a stable radix sort of the pairs (label, row) written by the assignment, rows ascending, puts each
 *     cluster's members in one run in ascending row order (invalid rows carry label K and sort last);
 *  2. runs_kernel: each run's [begin, end);
 *  3. chunk_counts_kernel + a CUB exclusive scan over K + 1: each cluster's first chunk slot and, in the
 *     high word, each empty cluster's rank among the empty ones (integers, so exact in any order);
 *  4. chunk_sums_kernel: a CTA per chunk slot (found by binary search in the slots' starts), a thread per
 *     column d summing the chunk's members in order, from 0;
 *  5. far_keys_kernel + a radix sort: the valid rows ordered by pixcon_kmeans_key(best_i, i), farthest
 *     first (also serves the final outliers);
 *  6. centroid_kernel: a CTA per cluster: S_kd = its chunk sums in order from 0, the norm by one thread in
 *     ascending d with fma, c_k = (float)(S_k / sqrt(norm^2)) when that is positive (else c_k stays); an
 *     empty cluster of rank e takes the unit row at sorted position e of step 5 when there is one.
 * Cost: two radix sorts of n pairs (32 and 64 bits), O(n Dp) double additions, O(K Dp) for the norms
 * (serial per cluster), scans of K + 1 integers; n / 256 + K chunk slots of Dp doubles.
 */
#ifndef PIXCON_CUDA_KMEANS_UPDATE_CUH
#define PIXCON_CUDA_KMEANS_UPDATE_CUH

#include <math.h>
#include <stdint.h>

#include "common.cuh"
#include "kmeans_init.cuh"
#include "kmeans_state.cuh"
#include "pixcon/kmeans.h"

namespace pixcon_cuda {
namespace {

constexpr int kChunk = PIXCON_KMEANS_CHUNK;

/* The clusters' runs in the sorted labels; begin and end were cleared, so an empty cluster has 0 members. */
__global__ void runs_kernel(KmeansState s, const uint32_t *sorted_labels) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < s.n; i += step) {
    const uint32_t k = sorted_labels[i];
    if (k >= (uint64_t)s.k) continue;
    if (i == 0 || sorted_labels[i - 1] != k) s.begin[k] = (int32_t)i;
    if (i == s.n - 1 || sorted_labels[i + 1] != k) s.end[k] = (int32_t)(i + 1);
  }
}

__global__ void chunk_counts_kernel(KmeansState s) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k <= s.k; k += step) {
    uint64_t v = 0;
    if (k < s.k) {
      const int64_t members = s.end[k] - s.begin[k];
      v = members == 0 ? (uint64_t)1 << 32 : (uint64_t)((members + kChunk - 1) / kChunk);
    }
    s.packed[k] = v;
  }
}

__device__ __forceinline__ int64_t first_slot(const KmeansState &s, int64_t k) { return (uint32_t)s.starts[k]; }

constexpr int kSumThreads = 128;

constexpr size_t kSumSharedBytes = kChunk * sizeof(int32_t);

__global__ void __launch_bounds__(kSumThreads) chunk_sums_kernel(KmeansState s, const int32_t *sorted_index) {
  PIXCON_DYNAMIC_SHARED(smem);
  int32_t *members = (int32_t *)smem; /* the chunk's rows */
  const int64_t slots = first_slot(s, s.k);
  for (int64_t j = blockIdx.x; j < slots; j += gridDim.x) {
    /* the last cluster whose first slot is <= j: empty clusters share their successor's start, so this
     * is the one whose chunks contain j */
    int64_t lo = 0, hi = s.k - 1;
    while (lo < hi) {
      const int64_t mid = hi - (hi - lo) / 2;
      if (first_slot(s, mid) <= j) lo = mid;
      else hi = mid - 1;
    }
    const int64_t first = s.begin[lo] + (j - first_slot(s, lo)) * kChunk;
    const int64_t left = s.end[lo] - first;
    const int count = (int)(left < kChunk ? left : kChunk);
    for (int m = threadIdx.x; m < count; m += kSumThreads) members[m] = sorted_index[first + m];
    __syncthreads();
    for (int64_t d = threadIdx.x; d < s.dp; d += kSumThreads) {
      double acc = 0.0;
      for (int m = 0; m < count; ++m) acc += (double)s.unit[(int64_t)members[m] * s.dp + d];
      s.partial[j * s.dp + d] = acc;
    }
    __syncthreads(); /* members is rewritten for the next slot */
  }
}

/* The valid rows by pixcon_kmeans_key(best_i, i); invalid rows sort last. */
__global__ void far_keys_kernel(KmeansState s, const float *best) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < s.n; i += step) {
    s.keys[0][i] = s.valid[i] ? pixcon_kmeans_key(best[i], i) : kNoRow;
    s.index[0][i] = (int32_t)i;
  }
}

constexpr int kCentroidThreads = 128;

__global__ void __launch_bounds__(kCentroidThreads) centroid_kernel(KmeansState s, const uint64_t *far_keys,
                                                                      const int32_t *far_index) {
  __shared__ double norm2_shared;
  for (int64_t k = blockIdx.x; k < s.k; k += gridDim.x) {
    float *c = s.centroid + k * s.dp;
    const int64_t members = s.end[k] - s.begin[k];
    if (members > 0) {
      const int64_t first = first_slot(s, k), chunks = (members + kChunk - 1) / kChunk;
      double *sum = s.sums + k * s.dp;
      for (int64_t d = threadIdx.x; d < s.dp; d += kCentroidThreads) {
        double acc = 0.0;
        for (int64_t q = 0; q < chunks; ++q) acc += s.partial[(first + q) * s.dp + d];
        sum[d] = acc;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        double norm2 = 0.0;
        for (int64_t d = 0; d < s.dp; ++d) norm2 = fma(sum[d], sum[d], norm2);
        norm2_shared = norm2;
      }
      __syncthreads();
      const double norm2 = norm2_shared;
      if (norm2 > 0.0) {
        const double norm = sqrt(norm2);
        for (int64_t d = threadIdx.x; d < s.dp; d += kCentroidThreads) c[d] = (float)(sum[d] / norm);
      }
    } else {
      const uint64_t rank = s.starts[k] >> 32;
      if (rank < (uint64_t)s.n && far_keys[rank] != kNoRow) {
        const float *u = s.unit + (int64_t)far_index[rank] * s.dp;
        for (int64_t d = threadIdx.x; d < s.dp; d += kCentroidThreads) c[d] = u[d];
      }
    }
    __syncthreads(); /* norm2_shared is rewritten for the next cluster */
  }
}

}  // namespace
}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_KMEANS_UPDATE_CUH */
