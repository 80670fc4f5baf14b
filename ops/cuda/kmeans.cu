/* CUDA spherical k-means (kmeans_cuda.h): the run of kmeans.h with the same operations in the same order
 * as the CPU, so labels and centroids are equal bit for bit. The host only enqueues: unit rows
 * (kmeans_init.cuh), then per restart the initialisation, `iterations` x (assignment, kmeans_assign.cuh;
 * update, kmeans_update.cuh) and a last assignment that adds the restart's integer score; a one-thread
 * kernel compares it with the best so far on the device and the winner's labels, cosines and centroids are
 * copied out; finally the outliers (the m lowest pixcon_kmeans_key of the winner) get ignore_index. Every
 * launch is sized from n, K and D alone, so nothing is read back (no synchronisation, no device-to-host
 * copy) and a run is one CUDA-graph-capturable sequence. Integer atomics (valid count, score, k-means++
 * potentials) are the only unordered operations, and integer sums do not depend on the order.
 * Cost: per assignment n K Dp multiply-adds; per update two radix sorts of n pairs and O(n Dp) double
 * additions; k-means++ per centroid (1 + pixcon_kmeans_trials(K)) n Dp multiply-adds and a scan of n.
 * Workspace: n (4 Dp + 37) + K (12 Dp + 24) + (n / 256 + K) 8 Dp bytes and CUB's temporary storage. */
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "common.cuh"
#include "kmeans_assign.cuh"
#include "kmeans_init.cuh"
#include "kmeans_state.cuh"
#include "kmeans_update.cuh"
#include "pixcon/kmeans_cuda.h"
#include "workspace.cuh"

namespace pixcon_cuda {
namespace {

constexpr int kThreads = 256;
/* about one wave of 256-thread blocks on an H100/H200; the element-wise loops are memory bound */
constexpr int64_t kMaxBlocks = 1024;
/* the per-chunk and per-cluster kernels loop over their items past this many CTAs */
constexpr int64_t kMaxItemBlocks = 65535;

unsigned blocks_for(int64_t count, int threads, int64_t cap) {
  int64_t b = (count + threads - 1) / threads;
  if (b > cap) b = cap;
  return (unsigned)(b < 1 ? 1 : b);
}

/* The restart's score beats the ones before (ties: the earlier restart). A separate launch from the
 * copy, so that no CTA of the copy sees the updated best score. */
__global__ void decide_kernel(KmeansState s, int64_t r) {
  const long long score = (long long)*s.score, best = (long long)*s.win_score;
  const bool won = r == 0 || score > best;
  if (won) *s.win_score = (unsigned long long)score;
  *s.won = won;
}

__global__ void commit_kernel(KmeansState s, int64_t *labels, float *centroids) {
  if (!*s.won) return;
  const int64_t kd = s.k * s.p.dim, total = s.n > kd ? s.n : kd;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
    if (e < s.n) {
      labels[e] = s.valid[e] ? (int64_t)s.label[e] : s.p.ignore_index;
      s.win_best[e] = s.best[e];
    }
    if (e < kd) {
      const int64_t k = e / s.p.dim;
      centroids[e] = s.centroid[k * s.dp + (e - k * s.p.dim)];
    }
  }
}

/* The m valid rows of lowest key come first in the sort; m < num_valid as outlier_fraction < 1. */
__global__ void outliers_kernel(KmeansState s, const int32_t *sorted_index, int64_t *labels) {
  const int64_t m = pixcon_kmeans_num_outliers(s.p.outlier_fraction, (int64_t)*s.num_valid);
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < m; j += step)
    labels[sorted_index[j]] = s.p.ignore_index;
}

/* num_valid, score, win_score, potentials; won, pick, trialing, candidates */
constexpr size_t kScalarBytes =
    (3 + kMaxTrials) * sizeof(unsigned long long) + (3 + kMaxTrials) * sizeof(int32_t);

/* Workspace regions (offsets from the 256-aligned base), each 256-aligned. */
struct KmeansLayout {
  int64_t n, k, dp, slots;
  int label_bits;
  size_t off_unit, off_valid, off_label, off_best, off_win_best, off_keys[2], off_index[2], off_begin, off_end,
      off_packed, off_starts, off_partial, off_sums, off_centroid, off_scalars, off_temp;
  size_t temp_bytes, total;
};

pixcon_status check(const pixcon_cuda_kmeans_params *q) {
  return q ? pixcon_kmeans_params_check(&q->base, NULL, 0) : PIXCON_ERROR_INVALID_ARGUMENT;
}

/* The temporary-storage queries launch nothing; every call repeats them with the same arguments, so
 * the size matches what the sorts and scans ask for. */
cudaError_t kmeans_layout(const pixcon_cuda_kmeans_params *q, KmeansLayout *l) {
  const pixcon_kmeans_params *p = &q->base;
  l->n = p->num_images * p->pixels_per_image;
  l->k = p->num_clusters;
  l->dp = pixcon_kmeans_padded_dim(p->dim);
  l->slots = (l->n + kChunk - 1) / kChunk + l->k; /* >= sum over k of ceil(members_k / chunk) */
  l->label_bits = bit_width((uint64_t)l->k);      /* labels 0 .. K, K for invalid rows */
  size_t bytes[4] = {0, 0, 0, 0};
  cub::DoubleBuffer<uint64_t> wide;
  cub::DoubleBuffer<uint32_t> narrow;
  cub::DoubleBuffer<int32_t> index;
  cudaError_t e = cub::DeviceRadixSort::SortPairs(NULL, bytes[0], wide, index, l->n, 0, 64, q->stream);
  if (e == cudaSuccess)
    e = cub::DeviceRadixSort::SortPairs(NULL, bytes[1], narrow, index, l->n, 0, l->label_bits, q->stream);
  if (e == cudaSuccess)
    e = cub::DeviceScan::InclusiveSum(NULL, bytes[2], (const uint64_t *)NULL, (uint64_t *)NULL, l->n, q->stream);
  if (e == cudaSuccess)
    e = cub::DeviceScan::ExclusiveSum(NULL, bytes[3], (const uint64_t *)NULL, (uint64_t *)NULL, l->k + 1,
                                      q->stream);
  if (e != cudaSuccess) return e;
  l->temp_bytes = 0;
  for (size_t b : bytes) l->temp_bytes = b > l->temp_bytes ? b : l->temp_bytes;
  const size_t n = (size_t)l->n, k = (size_t)l->k, dp = (size_t)l->dp;
  size_t at = 0;
  auto region = [&at](size_t *off, size_t size) {
    *off = at;
    at += align256(size);
  };
  region(&l->off_unit, n * dp * sizeof(float));
  region(&l->off_valid, n);
  region(&l->off_label, n * sizeof(int32_t));
  region(&l->off_best, n * sizeof(float));
  region(&l->off_win_best, n * sizeof(float));
  for (int b = 0; b < 2; ++b) {
    region(&l->off_keys[b], n * sizeof(uint64_t));
    region(&l->off_index[b], n * sizeof(int32_t));
  }
  region(&l->off_begin, k * sizeof(int32_t));
  region(&l->off_end, k * sizeof(int32_t));
  region(&l->off_packed, (k + 1) * sizeof(uint64_t));
  region(&l->off_starts, (k + 1) * sizeof(uint64_t));
  region(&l->off_partial, (size_t)l->slots * dp * sizeof(double));
  region(&l->off_sums, k * dp * sizeof(double));
  region(&l->off_centroid, k * dp * sizeof(float));
  region(&l->off_scalars, kScalarBytes);
  region(&l->off_temp, l->temp_bytes);
  l->total = at + 256; /* slack for aligning the caller's workspace */
  return cudaSuccess;
}

KmeansState bind(const pixcon_kmeans_params *p, const KmeansLayout &l, char *base) {
  KmeansState s;
  s.p = *p;
  s.n = l.n;
  s.k = l.k;
  s.dp = l.dp;
  s.unit = (float *)(base + l.off_unit);
  s.valid = (uint8_t *)(base + l.off_valid);
  s.label = (int32_t *)(base + l.off_label);
  s.best = (float *)(base + l.off_best);
  s.win_best = (float *)(base + l.off_win_best);
  for (int b = 0; b < 2; ++b) {
    s.keys[b] = (uint64_t *)(base + l.off_keys[b]);
    s.index[b] = (int32_t *)(base + l.off_index[b]);
  }
  s.begin = (int32_t *)(base + l.off_begin);
  s.end = (int32_t *)(base + l.off_end);
  s.packed = (uint64_t *)(base + l.off_packed);
  s.starts = (uint64_t *)(base + l.off_starts);
  s.partial = (double *)(base + l.off_partial);
  s.sums = (double *)(base + l.off_sums);
  s.centroid = (float *)(base + l.off_centroid);
  unsigned long long *scalars = (unsigned long long *)(base + l.off_scalars);
  s.num_valid = scalars;
  s.score = scalars + 1;
  s.win_score = scalars + 2;
  s.potential = scalars + 3;
  int32_t *flags = (int32_t *)(s.potential + kMaxTrials);
  s.won = flags;
  s.pick = flags + 1;
  s.trialing = flags + 2;
  s.candidate = flags + 3;
  return s;
}

#define PIXCON_KM_TRY(call)              \
  do {                                   \
    const cudaError_t e_ = (call);       \
    if (e_ != cudaSuccess) return e_;    \
  } while (0)

/* One run of the whole algorithm, enqueued on the stream. */
class Run {
 public:
  Run(const pixcon_cuda_kmeans_params *q, const KmeansLayout &l, char *base)
      : s_(bind(&q->base, l, base)), l_(l), stream_(q->stream), temp_((void *)(base + l.off_temp)) {}

  cudaError_t all(int64_t *labels, float *centroids) {
    PIXCON_KM_TRY(cudaMemsetAsync(s_.num_valid, 0, kScalarBytes, stream_));
    PIXCON_LAUNCH(blocks_for(s_.n, kRowThreads, INT64_MAX), kRowThreads, 0, stream_, unit_rows_kernel)(s_);
    PIXCON_KM_TRY(cudaGetLastError());
    for (int64_t r = 0; r < s_.p.restarts; ++r) {
      PIXCON_KM_TRY(cudaMemsetAsync(s_.centroid, 0, (size_t)(s_.k * s_.dp) * sizeof(float), stream_));
      PIXCON_KM_TRY(s_.p.init == PIXCON_KMEANS_RANDOM ? init_random(r) : init_plus_plus(r));
      for (int64_t it = 0; it < s_.p.iterations; ++it) {
        PIXCON_KM_TRY(assign((uint32_t *)s_.keys[0], s_.index[0], NULL));
        PIXCON_KM_TRY(update());
      }
      PIXCON_KM_TRY(cudaMemsetAsync(s_.score, 0, sizeof *s_.score, stream_));
      PIXCON_KM_TRY(assign(NULL, NULL, s_.score));
      PIXCON_LAUNCH(1, 1, 0, stream_, decide_kernel)(s_, r);
      PIXCON_KM_TRY(cudaGetLastError());
      const int64_t items = s_.n > s_.k * s_.p.dim ? s_.n : s_.k * s_.p.dim;
      PIXCON_LAUNCH(blocks_for(items, kThreads, kMaxBlocks), kThreads, 0, stream_, commit_kernel)(s_, labels, centroids);
      PIXCON_KM_TRY(cudaGetLastError());
    }
    if (s_.p.outlier_fraction == 0.0) return cudaSuccess; /* m = 0 for any number of valid rows */
    const int32_t *farthest = NULL;
    PIXCON_KM_TRY(sort_farthest(s_.win_best, NULL, &farthest));
    PIXCON_LAUNCH(blocks_for(s_.n, kThreads, kMaxBlocks), kThreads, 0, stream_, outliers_kernel)(s_, farthest, labels);
    return cudaGetLastError();
  }

 private:
  cudaError_t init_random(int64_t r) {
    PIXCON_LAUNCH(blocks_for(s_.n, kThreads, kMaxBlocks), kThreads, 0, stream_, random_keys_kernel)(s_, r);
    PIXCON_KM_TRY(cudaGetLastError());
    cub::DoubleBuffer<uint64_t> keys(s_.keys[0], s_.keys[1]);
    cub::DoubleBuffer<int32_t> index(s_.index[0], s_.index[1]);
    size_t bytes = l_.temp_bytes;
    PIXCON_KM_TRY(cub::DeviceRadixSort::SortPairs(temp_, bytes, keys, index, s_.n, 0, 64, stream_));
    const int64_t drawn = s_.k < s_.n ? s_.k : s_.n;
    PIXCON_LAUNCH(blocks_for(drawn * s_.dp, kThreads, kMaxBlocks), kThreads, 0, stream_, random_gather_kernel)
    (s_, (const uint64_t *)keys.Current(), (const int32_t *)index.Current());
    return cudaGetLastError();
  }

  cudaError_t init_plus_plus(int64_t r) {
    const unsigned row_blocks = blocks_for(s_.n, kGroupRows, INT64_MAX);
    const int trials = pixcon_kmeans_trials(s_.k);
    for (int64_t t = 0; t < s_.k; ++t) {
      if (t > 0) {
        size_t bytes = l_.temp_bytes;
        PIXCON_KM_TRY(cub::DeviceScan::InclusiveSum(temp_, bytes, (const uint64_t *)s_.keys[0], s_.keys[1], s_.n,
                                                    stream_));
      }
      PIXCON_LAUNCH(1, kDrawThreads, 0, stream_, plus_plus_draw_kernel)(s_, r, t, trials);
      PIXCON_KM_TRY(cudaGetLastError());
      if (t > 0) { /* step 0 draws uniformly */
        PIXCON_LAUNCH(row_blocks, kRowThreads, 0, stream_, plus_plus_potential_kernel)(s_, trials);
        PIXCON_KM_TRY(cudaGetLastError());
        PIXCON_LAUNCH(1, 1, 0, stream_, plus_plus_choose_kernel)(s_, trials);
        PIXCON_KM_TRY(cudaGetLastError());
      }
      PIXCON_LAUNCH(row_blocks, kRowThreads, 0, stream_, plus_plus_add_kernel)(s_, t);
      PIXCON_KM_TRY(cudaGetLastError());
    }
    return cudaSuccess;
  }

  cudaError_t assign(uint32_t *sort_key, int32_t *sort_index, unsigned long long *score) {
    AssignArgs a;
    a.unit = s_.unit;
    a.valid = s_.valid;
    a.centroid = s_.centroid;
    a.n = s_.n;
    a.k = s_.k;
    a.dp = s_.dp;
    a.label = s_.label;
    a.best = s_.best;
    a.sort_key = sort_key;
    a.sort_index = sort_index;
    a.score = score;
    const unsigned blocks = blocks_for(s_.n, kAssignRows, INT64_MAX);
    if (s_.k <= AssignShape<2>::kClusters)
      PIXCON_LAUNCH(blocks, kAssignThreads, AssignShape<2>::kSharedBytes, stream_, assign_kernel<2>)(a);
    else
      PIXCON_LAUNCH(blocks, kAssignThreads, AssignShape<8>::kSharedBytes, stream_, assign_kernel<8>)(a);
    return cudaGetLastError();
  }

  /* The valid rows ordered by pixcon_kmeans_key(best_i, i): *index gets the sorted rows, *keys (when
   * not NULL) their keys. */
  cudaError_t sort_farthest(const float *best, const uint64_t **keys_out, const int32_t **index_out) {
    PIXCON_LAUNCH(blocks_for(s_.n, kThreads, kMaxBlocks), kThreads, 0, stream_, far_keys_kernel)(s_, best);
    PIXCON_KM_TRY(cudaGetLastError());
    cub::DoubleBuffer<uint64_t> keys(s_.keys[0], s_.keys[1]);
    cub::DoubleBuffer<int32_t> index(s_.index[0], s_.index[1]);
    size_t bytes = l_.temp_bytes;
    PIXCON_KM_TRY(cub::DeviceRadixSort::SortPairs(temp_, bytes, keys, index, s_.n, 0, 64, stream_));
    if (keys_out) *keys_out = keys.Current();
    *index_out = index.Current();
    return cudaSuccess;
  }

  /* Reads the sort pairs the assignment wrote to keys[0] (as labels) and index[0]. */
  cudaError_t update() {
    cub::DoubleBuffer<uint32_t> labels((uint32_t *)s_.keys[0], (uint32_t *)s_.keys[1]);
    cub::DoubleBuffer<int32_t> index(s_.index[0], s_.index[1]);
    size_t bytes = l_.temp_bytes;
    PIXCON_KM_TRY(cub::DeviceRadixSort::SortPairs(temp_, bytes, labels, index, s_.n, 0, l_.label_bits, stream_));
    PIXCON_KM_TRY(cudaMemsetAsync(s_.begin, 0, (size_t)s_.k * sizeof(int32_t), stream_));
    PIXCON_KM_TRY(cudaMemsetAsync(s_.end, 0, (size_t)s_.k * sizeof(int32_t), stream_));
    PIXCON_LAUNCH(blocks_for(s_.n, kThreads, kMaxBlocks), kThreads, 0, stream_, runs_kernel)
    (s_, (const uint32_t *)labels.Current());
    PIXCON_KM_TRY(cudaGetLastError());
    PIXCON_LAUNCH(blocks_for(s_.k + 1, kThreads, kMaxBlocks), kThreads, 0, stream_, chunk_counts_kernel)(s_);
    PIXCON_KM_TRY(cudaGetLastError());
    bytes = l_.temp_bytes;
    PIXCON_KM_TRY(cub::DeviceScan::ExclusiveSum(temp_, bytes, (const uint64_t *)s_.packed, s_.starts, s_.k + 1,
                                                stream_));
    PIXCON_LAUNCH(blocks_for(l_.slots, 1, kMaxItemBlocks), kSumThreads, kSumSharedBytes, stream_, chunk_sums_kernel)
    (s_, (const int32_t *)index.Current());
    PIXCON_KM_TRY(cudaGetLastError());
    /* the label sort's buffers are free again */
    const uint64_t *far_keys = NULL;
    const int32_t *far_index = NULL;
    PIXCON_KM_TRY(sort_farthest(s_.best, &far_keys, &far_index));
    PIXCON_LAUNCH(blocks_for(s_.k, 1, kMaxItemBlocks), kCentroidThreads, 0, stream_, centroid_kernel)
    (s_, far_keys, far_index);
    return cudaGetLastError();
  }

  KmeansState s_;
  const KmeansLayout &l_;
  cudaStream_t stream_;
  void *temp_;
};

}  // namespace
}  // namespace pixcon_cuda

using namespace pixcon_cuda;

extern "C" {

size_t pixcon_cuda_kmeans_workspace_size(const pixcon_cuda_kmeans_params *q) {
  if (check(q) != PIXCON_OK) return 0;
  KmeansLayout l;
  if (kmeans_layout(q, &l) != cudaSuccess) return 0;
  return l.total;
}

pixcon_status pixcon_cuda_kmeans(const pixcon_cuda_kmeans_params *q, int64_t *labels, float *centroids,
                                 void *workspace, size_t workspace_size) {
  pixcon_status st = check(q);
  if (st != PIXCON_OK) return st;
  const pixcon_kmeans_params *p = &q->base;
  const int64_t n = p->num_images * p->pixels_per_image;
  if (!centroids || (n > 0 && !labels)) return PIXCON_ERROR_INVALID_ARGUMENT;
  if (n == 0) /* no row to draw: every centroid is a zero vector */
    return cudaMemsetAsync(centroids, 0, (size_t)(p->num_clusters * p->dim) * sizeof(float), q->stream) ==
                   cudaSuccess
               ? PIXCON_OK
               : PIXCON_ERROR_CUDA;
  KmeansLayout l;
  if (kmeans_layout(q, &l) != cudaSuccess) return PIXCON_ERROR_CUDA;
  if (!workspace || workspace_size < l.total) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  Run run(q, l, aligned_base(workspace));
  return run.all(labels, centroids) == cudaSuccess ? PIXCON_OK : PIXCON_ERROR_CUDA;
}

}  /* extern "C" */
