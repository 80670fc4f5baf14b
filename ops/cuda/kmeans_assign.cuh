/* The dot products of the CUDA k-means (kmeans.h, steps 2a and 2b), in the contract's canonical order:
 * lane l of a group of 16 threads accumulates fmaf(u_d, c_d, .) over d = l, l + 16, ... ascending, and the
 * 16 partials are added as the tree lane[l] += lane[l + s], s = 8, 4, 2, 1. Float addition is
 * commutative bit for bit, so a shuffle that adds the partner's value to one's own reproduces each node.
 *   group_dot:     one (row, centroid) pair per group, reduced with __shfl_down_sync (k-means++);
 *   assign_kernel: label_i = argmax_k cos(u_i, c_k) (ties to the smaller k) and best_i, GEMM-shaped: a CTA
 *     owns 32 rows and streams the centroids through shared memory in tiles of 32 (8 when K <= 8), in
 *     slices of 64 of Dp; each thread holds 8 rows x 8 (2) centroids of accumulators, so a pair of
 *     shared-memory loads feeds 4 (1.6) multiply-adds. A tile's 64 (16) pairs per group are reduced by a
 *     transposing butterfly (xor 8, 4, 2, 1, each step keeping half of the pairs), 60 (15) shuffles per
 *     thread instead of 4 per pair, after which every lane holds 4 (1) finished cosines. The running arg-max per row stays on chip: the n x K matrix is
 *     never stored. It also writes the update's sort pairs (label, row) and adds the restart's score.
 * Cost: n K Dp multiply-adds; per CTA and centroid tile, Dp / 64 slices of (32 + 32) x 64 floats through
 * shared memory (21.5 KiB; 13.5 KiB when K <= 8); no atomics but one 64-bit add per CTA for the score.
 */
#ifndef PIXCON_CUDA_KMEANS_ASSIGN_CUH
#define PIXCON_CUDA_KMEANS_ASSIGN_CUH

#include <limits.h>
#include <stdint.h>

#include "common.cuh"
#include "pixcon/kmeans.h"

#if defined(__CUDACC__)
#define PIXCON_KMEANS_UNROLL _Pragma("unroll")
#else
#define PIXCON_KMEANS_UNROLL
#endif

namespace pixcon_cuda {
namespace {

constexpr int kLanes = PIXCON_KMEANS_LANES;
constexpr unsigned kFullWarp = 0xffffffffu;

/* cos(u, c) over Dp = dp in the canonical order, for the group of 16 lanes this thread belongs to: every
 * lane of the warp calls it (rows past the end pass dp = 0); lane 0 of the group gets the result. */
__device__ __forceinline__ float group_dot(const float *u, const float *c, int64_t dp, int lane) {
  float acc = 0.0f;
  for (int64_t d = lane; d < dp; d += kLanes) acc = fmaf(u[d], c[d], acc);
  for (int s = kLanes / 2; s >= 1; s /= 2) acc += __shfl_down_sync(kFullWarp, acc, s, kLanes);
  return acc;
}

/* The arg-max order of step 2b: a higher cosine, or the same one at a smaller k. Cosines are never NaN
 * (unit rows and centroids are finite), so this total order merges partial arg-maxes in any grouping and
 * gives what one pass over k = 0 .. K-1 with a strict `>` gives. */
__device__ __forceinline__ void take_better(float cos, int k, float &best, int &label) {
  if (cos > best || (cos == best && k < label)) {
    best = cos;
    label = k;
  }
}

constexpr int kAssignThreads = 256;
constexpr int kAssignRows = 32, kAssignSlice = 64;
/* 16 groups of 16 lanes: 4 row groups x 4 centroid groups, each thread 8 rows x PC centroids. */
constexpr int kRowGroups = 4, kClusterGroups = 4, kPairRows = 8;
/* Row group g takes tile rows g, g + 4, ...; centroid group h takes h, h + 4, .... A warp's two groups
 * share their rows (a broadcast) and read adjacent centroids, which a pitch of 16 mod 32 words puts in
 * the other 16 banks. */
constexpr int kAssignPitch = kAssignSlice + 16;
static_assert(kRowGroups * kClusterGroups * kLanes == kAssignThreads, "one group of 16 lanes per pair block");
static_assert(kRowGroups * kPairRows == kAssignRows && kAssignSlice % kLanes == 0, "the groups cover the tile");

/* PC centroids per thread: a centroid tile of 4 PC. PC = 8 (64 accumulators) in general; PC = 2 when
 * K <= 8, where a tile of 32 would mostly compute padding. */
template <int PC> struct AssignShape {
  static constexpr int kClusters = kClusterGroups * PC, kPairs = kPairRows * PC;
  static constexpr int kKept = kPairs / kLanes; /* cosines per lane after the butterfly */
  static constexpr size_t kSharedBytes = (size_t)(kAssignRows + kClusters) * kAssignPitch * sizeof(float) +
                                         (size_t)kClusterGroups * kAssignRows * (sizeof(float) + sizeof(int));
  static_assert(PC % 2 == 0 && kPairs % kLanes == 0, "the butterfly's four halvings leave whole pairs per lane");
};

struct AssignArgs {
  const float *unit;     /* [n, dp] */
  const uint8_t *valid;  /* [n] */
  const float *centroid; /* [k, dp] */
  int64_t n, k, dp;
  int32_t *label; /* [n]: argmax, or k for an invalid row (it sorts after every cluster) */
  float *best;    /* [n]: the cosine to that centroid */
  /* optional (NULL: not written): the update's sort input, key label[i] and value i */
  uint32_t *sort_key;
  int32_t *sort_index;
  unsigned long long *score; /* optional: += sum of pixcon_kmeans_fixed(best_i) over valid rows */
};

/* Rows [first, first + tile_rows) of a [count, dp] matrix, columns [d0, d0 + width), into a tile of
 * pitch kAssignPitch; rows past count read as zeros. */
__device__ __forceinline__ void load_slice(float *tile, const float *src, int64_t first, int tile_rows,
                                           int64_t count, int64_t dp, int64_t d0, int width) {
  for (int e = threadIdx.x; e < tile_rows * width; e += kAssignThreads) {
    const int r = e / width, d = e - r * width;
    tile[r * kAssignPitch + d] = first + r < count ? src[(first + r) * dp + d0 + d] : 0.0f;
  }
}

/* One level of the canonical tree for the 2 Half pairs acc[0 .. 2 Half) of the 16 lanes: it joins tree
 * nodes m and m + S (lanes l and l ^ S); the lane with bit S clear keeps the lower Half pairs, its partner
 * the upper ones, and each adds the other's value to its own, leaving them in acc[0 .. Half). */
template <int N, int Half, int S> __device__ __forceinline__ void butterfly_level(float (&acc)[N], int lane) {
  const bool upper = (lane & S) != 0;
  PIXCON_KMEANS_UNROLL
  for (int q = 0; q < Half; ++q) {
    const float send = upper ? acc[q] : acc[q + Half];
    const float keep = upper ? acc[q + Half] : acc[q];
    acc[q] = keep + __shfl_xor_sync(kFullWarp, send, S, kLanes);
  }
}

template <int PC> __global__ void __launch_bounds__(kAssignThreads, 2) assign_kernel(AssignArgs a) {
  typedef AssignShape<PC> Sh;
  PIXCON_DYNAMIC_SHARED(smem);
  float *rows = (float *)smem;
  float *cols = rows + kAssignRows * kAssignPitch;
  float *cand_cos = cols + Sh::kClusters * kAssignPitch; /* [centroid group][tile row] */
  int *cand_k = (int *)(cand_cos + kClusterGroups * kAssignRows);

  const int tid = threadIdx.x, lane = tid % kLanes, group = tid / kLanes;
  const int row_group = group / kClusterGroups, cluster_group = group % kClusterGroups;
  const int64_t row0 = (int64_t)blockIdx.x * kAssignRows;
  /* after the butterfly, pair p = i PC + j sits in lane bits (8: p >= Pairs / 2, 4, 2, 1: p's next bits)
   * and acc[q] for its low bits: this lane holds tile row my_row and centroids my_col + 4 q */
  const int my_row = row_group + kRowGroups * ((lane >> 1) & 7);
  const int my_col = cluster_group + kClusterGroups * Sh::kKept * (lane & 1);
  float best = -INFINITY; /* the running arg-max of tile row tid (threads 0 .. 31) */
  int label = 0;

  for (int64_t k0 = 0; k0 < a.k; k0 += Sh::kClusters) {
    float acc[Sh::kPairs]; /* pair p = i PC + j: tile row row_group + 4 i, centroid cluster_group + 4 j */
    PIXCON_KMEANS_UNROLL
    for (int p = 0; p < Sh::kPairs; ++p) acc[p] = 0.0f;
    for (int64_t d0 = 0; d0 < a.dp; d0 += kAssignSlice) {
      const int width = (int)(a.dp - d0 < kAssignSlice ? a.dp - d0 : kAssignSlice);
      __syncthreads(); /* the previous slice is read */
      load_slice(rows, a.unit, row0, kAssignRows, a.n, a.dp, d0, width);
      load_slice(cols, a.centroid, k0, Sh::kClusters, a.k, a.dp, d0, width);
      __syncthreads();
      for (int s = lane; s < width; s += kLanes) {
        float x[kPairRows], y[PC];
        PIXCON_KMEANS_UNROLL
        for (int i = 0; i < kPairRows; ++i) x[i] = rows[(row_group + kRowGroups * i) * kAssignPitch + s];
        PIXCON_KMEANS_UNROLL
        for (int j = 0; j < PC; ++j) y[j] = cols[(cluster_group + kClusterGroups * j) * kAssignPitch + s];
        PIXCON_KMEANS_UNROLL
        for (int i = 0; i < kPairRows; ++i)
          PIXCON_KMEANS_UNROLL
          for (int j = 0; j < PC; ++j) acc[i * PC + j] = fmaf(x[i], y[j], acc[i * PC + j]);
      }
    }
    butterfly_level<Sh::kPairs, Sh::kPairs / 2, kLanes / 2>(acc, lane);
    butterfly_level<Sh::kPairs, Sh::kPairs / 4, kLanes / 4>(acc, lane);
    butterfly_level<Sh::kPairs, Sh::kPairs / 8, kLanes / 8>(acc, lane);
    butterfly_level<Sh::kPairs, Sh::kPairs / 16, kLanes / 16>(acc, lane);
    float bc = -INFINITY;
    int bk = INT_MAX;
    PIXCON_KMEANS_UNROLL
    for (int q = 0; q < Sh::kKept; ++q) {
      const int64_t k = k0 + my_col + kClusterGroups * q;
      if (k < a.k) take_better(acc[q], (int)k, bc, bk);
    }
    const float other_cos = __shfl_xor_sync(kFullWarp, bc, 1, kLanes);
    const int other_k = __shfl_xor_sync(kFullWarp, bk, 1, kLanes);
    take_better(other_cos, other_k, bc, bk);
    if ((lane & 1) == 0) {
      cand_cos[cluster_group * kAssignRows + my_row] = bc;
      cand_k[cluster_group * kAssignRows + my_row] = bk;
    }
    __syncthreads();
    if (tid < kAssignRows)
      for (int h = 0; h < kClusterGroups; ++h)
        take_better(cand_cos[h * kAssignRows + tid], cand_k[h * kAssignRows + tid], best, label);
    /* the next write of the candidates follows the next tile's first barrier */
  }

  if (tid >= kAssignRows) return; /* warp 0 owns the rows */
  const int64_t i = row0 + tid;
  long long fixed = 0;
  if (i < a.n) {
    const bool ok = a.valid[i] != 0;
    const int32_t stored = ok ? label : (int32_t)a.k;
    a.label[i] = stored;
    a.best[i] = ok ? best : 0.0f;
    if (ok) fixed = pixcon_kmeans_fixed(best);
    if (a.sort_key) {
      a.sort_key[i] = (uint32_t)stored;
      a.sort_index[i] = (int32_t)i;
    }
  }
  if (!a.score) return;
  for (int s = 16; s >= 1; s /= 2) fixed += __shfl_down_sync(kFullWarp, fixed, s);
  if (tid == 0) atomicAdd(a.score, (unsigned long long)fixed);
}

}  // namespace
}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_KMEANS_ASSIGN_CUH */
