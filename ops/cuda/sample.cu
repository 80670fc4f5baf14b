/* CUDA pixel sampling (sample_cuda.h): each pixel gets the sort key (group << 32 | Philox key); one stable
 * radix sort puts every group in one run ordered by (key, index); counts are run lengths, a group's sample
 * is the head of its run, flagged by pixel and compacted. Cost: O(B H W) + a 33..64-bit radix sort; 32 B/pixel. */
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include "common.cuh"
#include "workspace.cuh"
#include "pixcon/philox.h"
#include "pixcon/sample_cuda.h"

namespace pixcon_cuda {
namespace {

constexpr int kSampleThreads = 256;
/* 1024 x 256 threads is about one wave on an H100/H200 (132 SMs x 2048 resident threads); the
 * element-wise loops are memory bound, so more blocks would only add scheduling. */
constexpr int64_t kMaxSampleBlocks = 1024;
/* Ignored pixels: all ones sorts after every group, the overflow slot G included (see end_bit). */
constexpr uint64_t kIgnoredKey = ~(uint64_t)0;

unsigned sample_blocks(int64_t count) {
  int64_t b = (count + kSampleThreads - 1) / kSampleThreads;
  if (b > kMaxSampleBlocks) b = kMaxSampleBlocks;
  return (unsigned)(b < 1 ? 1 : b);
}

/* The group in the high word makes each group one contiguous run after the sort; the flat index as
 * the value, sorted stably from ascending order, breaks ties in the key toward the smaller index. */
__global__ void sample_keys_kernel(pixcon_sample_params p, int64_t n, uint64_t *keys, int64_t *index) {
  const bool hard_easy = p.strategy == PIXCON_SAMPLE_HARD_EASY;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t g = pixcon_sample_group(&p, i, p.labels[i], hard_easy ? p.predictions[i] : 0);
    keys[i] = g < 0 ? kIgnoredKey : ((uint64_t)g << 32 | pixcon_pixel_key(p.seed, i));
    index[i] = i;
  }
}

/* Group of sorted position s; ignored pixels report G + 1, outside every counted slot. */
__device__ __forceinline__ int64_t sorted_group(const uint64_t *keys, int64_t s, int64_t groups) {
  const uint64_t g = keys[s] >> 32;
  return g > (uint64_t)groups ? groups + 1 : (int64_t)g;
}

/* Slots absent from the sort keep the zeros they were cleared to, so their count comes out 0. */
__global__ void sample_runs_kernel(const uint64_t *keys, int64_t n, int64_t groups, int64_t *run_begin,
                                   int64_t *run_end) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t s = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; s < n; s += step) {
    const int64_t g = sorted_group(keys, s, groups);
    if (g > groups) continue;
    if (s == 0 || sorted_group(keys, s - 1, groups) != g) run_begin[g] = s;
    if (s == n - 1 || sorted_group(keys, s + 1, groups) != g) run_end[g] = s + 1;
  }
}

__global__ void sample_counts_kernel(const int64_t *run_begin, const int64_t *run_end, int64_t slots,
                                     int64_t *counts) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < slots; g += step)
    counts[g] = run_end[g] - run_begin[g];
}

/* A run is ordered by (key, index), so its first quota positions are exactly the group's sample.
 * Flags are by pixel, not by sorted position, so that compacting iota[i] = i by them emits the
 * selected indices ascending. */
__global__ void sample_flags_kernel(const uint64_t *keys, const int64_t *sorted_index, int64_t n,
                                    int64_t groups, const int64_t *run_begin, const int64_t *quotas,
                                    uint8_t *flags, int64_t *iota) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t s = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; s < n; s += step) {
    const int64_t g = sorted_group(keys, s, groups);
    if (g < groups && s - run_begin[g] < quotas[g]) flags[sorted_index[s]] = 1;
    iota[s] = s;
  }
}

/* Workspace regions (offsets from the 256-aligned base). The sort ping-pongs between buffers 0 and 1
 * of the keys and of the values (CUB's DoubleBuffer form needs no O(n) temporary storage); the sorted
 * pairs end up in buffer 0 and, with the runs, must survive from pixcon_cuda_sample_counts to _select.
 * Buffers 1 are then free for the flags and the compaction input; CUB's temporary storage serves the
 * sort and then the compaction. */
struct SampleLayout {
  int64_t n, groups;
  int end_bit;
  size_t off_keys[2], off_index[2], off_runs, off_selected, off_temp;
  size_t temp_bytes, total;
};

/* The checks of sample.h keep G below 2^31: the group fills at most 31 bits of the key's high word,
 * leaving room for the slot above G. */
pixcon_status check(const pixcon_cuda_sample_params *q) {
  return q ? pixcon_sample_params_check_shape(&q->base, NULL, 0) : PIXCON_ERROR_INVALID_ARGUMENT;
}

/* The temporary-storage queries launch nothing; they are repeated with the same arguments in every
 * call so that the size matches what the sort and the compaction will ask for. */
cudaError_t sample_layout(const pixcon_cuda_sample_params *q, SampleLayout *l) {
  const pixcon_sample_params *p = &q->base;
  l->n = p->num_images * p->pixels_per_image;
  l->groups = pixcon_sample_num_groups(p);
  /* Sort bits: the 32 key bits plus enough group bits that the all-ones field of an ignored pixel
   * exceeds the overflow slot G. */
  l->end_bit = 32 + bit_width((uint64_t)l->groups + 1);
  size_t sort_bytes = 0, select_bytes = 0;
  cub::DoubleBuffer<uint64_t> keys;
  cub::DoubleBuffer<int64_t> index;
  cudaError_t e = cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, keys, index, l->n, 0, l->end_bit, q->stream);
  if (e != cudaSuccess) return e;
  e = cub::DeviceSelect::Flagged(NULL, select_bytes, (const int64_t *)NULL, (const uint8_t *)NULL, (int64_t *)NULL,
                                 (int64_t *)NULL, l->n, q->stream);
  if (e != cudaSuccess) return e;
  l->temp_bytes = sort_bytes > select_bytes ? sort_bytes : select_bytes;
  const size_t pixels = (size_t)l->n * sizeof(int64_t), slots = (size_t)(l->groups + 1) * sizeof(int64_t);
  size_t at = 0;
  for (int b = 0; b < 2; ++b) {
    l->off_keys[b] = at;
    at += align256(pixels);
    l->off_index[b] = at;
    at += align256(pixels);
  }
  l->off_runs = at; /* run_begin [G + 1], then run_end [G + 1] */
  at += align256(2 * slots);
  l->off_selected = at;
  at += 256;
  l->off_temp = at;
  at += align256(l->temp_bytes);
  l->total = at + 256; /* slack for aligning the caller's workspace */
  return cudaSuccess;
}

/* Which buffer holds the sorted result depends on CUB's pass count, which _select cannot know:
 * it reads buffer 0. */
template <class T> cudaError_t to_buffer0(cub::DoubleBuffer<T> &b, int64_t n, cudaStream_t stream) {
  if (b.selector == 0) return cudaSuccess;
  return cudaMemcpyAsync(b.d_buffers[0], b.Current(), (size_t)n * sizeof(T), cudaMemcpyDeviceToDevice, stream);
}

}  // namespace
}  // namespace pixcon_cuda

using namespace pixcon_cuda;

extern "C" {

size_t pixcon_cuda_sample_workspace_size(const pixcon_cuda_sample_params *q) {
  if (check(q) != PIXCON_OK) return 0;
  SampleLayout l;
  if (sample_layout(q, &l) != cudaSuccess) return 0;
  return l.total;
}

pixcon_status pixcon_cuda_sample_counts(const pixcon_cuda_sample_params *q, int64_t *counts, void *workspace,
                                        size_t workspace_size) {
  pixcon_status st = check(q);
  if (st != PIXCON_OK) return st;
  if (!counts) return PIXCON_ERROR_INVALID_ARGUMENT;
  SampleLayout l;
  if (sample_layout(q, &l) != cudaSuccess) return PIXCON_ERROR_CUDA;
  const int64_t slots = l.groups + 1;
  cudaStream_t stream = q->stream;
  if (l.n == 0)
    return cudaMemsetAsync(counts, 0, (size_t)slots * sizeof(int64_t), stream) == cudaSuccess ? PIXCON_OK
                                                                                              : PIXCON_ERROR_CUDA;
  if (!workspace || workspace_size < l.total) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  char *base = aligned_base(workspace);
  cub::DoubleBuffer<uint64_t> keys((uint64_t *)(base + l.off_keys[0]), (uint64_t *)(base + l.off_keys[1]));
  cub::DoubleBuffer<int64_t> index((int64_t *)(base + l.off_index[0]), (int64_t *)(base + l.off_index[1]));
  int64_t *run_begin = (int64_t *)(base + l.off_runs), *run_end = run_begin + slots;

  PIXCON_LAUNCH(sample_blocks(l.n), kSampleThreads, 0, stream, sample_keys_kernel)
  (q->base, l.n, keys.Current(), index.Current());
  if (cudaGetLastError() != cudaSuccess) return PIXCON_ERROR_CUDA;
  size_t temp_bytes = l.temp_bytes;
  if (cub::DeviceRadixSort::SortPairs((void *)(base + l.off_temp), temp_bytes, keys, index, l.n, 0, l.end_bit,
                                      stream) != cudaSuccess)
    return PIXCON_ERROR_CUDA;
  if (to_buffer0(keys, l.n, stream) != cudaSuccess || to_buffer0(index, l.n, stream) != cudaSuccess)
    return PIXCON_ERROR_CUDA;
  const uint64_t *sorted_keys = keys.d_buffers[0];
  if (cudaMemsetAsync(run_begin, 0, 2 * (size_t)slots * sizeof(int64_t), stream) != cudaSuccess)
    return PIXCON_ERROR_CUDA;
  PIXCON_LAUNCH(sample_blocks(l.n), kSampleThreads, 0, stream, sample_runs_kernel)
  (sorted_keys, l.n, l.groups, run_begin, run_end);
  if (cudaGetLastError() != cudaSuccess) return PIXCON_ERROR_CUDA;
  PIXCON_LAUNCH(sample_blocks(slots), kSampleThreads, 0, stream, sample_counts_kernel)
  ((const int64_t *)run_begin, (const int64_t *)run_end, slots, counts);
  return cudaGetLastError() == cudaSuccess ? PIXCON_OK : PIXCON_ERROR_CUDA;
}

pixcon_status pixcon_cuda_sample_select(const pixcon_cuda_sample_params *q, const int64_t *quotas, int64_t total,
                                        int64_t *indices, void *workspace, size_t workspace_size) {
  pixcon_status st = check(q);
  if (st != PIXCON_OK) return st;
  SampleLayout l;
  if (sample_layout(q, &l) != cudaSuccess) return PIXCON_ERROR_CUDA;
  if (total < 0 || total > l.n) return PIXCON_ERROR_INVALID_ARGUMENT;
  if (total == 0) return PIXCON_OK;
  if (!quotas || !indices) return PIXCON_ERROR_INVALID_ARGUMENT;
  if (!workspace || workspace_size < l.total) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  cudaStream_t stream = q->stream;
  char *base = aligned_base(workspace);
  const uint64_t *sorted_keys = (const uint64_t *)(base + l.off_keys[0]);
  const int64_t *sorted_index = (const int64_t *)(base + l.off_index[0]);
  const int64_t *run_begin = (const int64_t *)(base + l.off_runs);
  uint8_t *flags = (uint8_t *)(base + l.off_keys[1]);
  int64_t *iota = (int64_t *)(base + l.off_index[1]);

  if (cudaMemsetAsync(flags, 0, (size_t)l.n, stream) != cudaSuccess) return PIXCON_ERROR_CUDA;
  PIXCON_LAUNCH(sample_blocks(l.n), kSampleThreads, 0, stream, sample_flags_kernel)
  (sorted_keys, sorted_index, l.n, l.groups, run_begin, quotas, flags, iota);
  if (cudaGetLastError() != cudaSuccess) return PIXCON_ERROR_CUDA;
  /* Exactly `total` flags are set when the quotas are pixcon_sample_quotas' for these counts; the
   * number selected stays on the device: reading it would synchronise the stream. */
  size_t temp_bytes = l.temp_bytes;
  if (cub::DeviceSelect::Flagged((void *)(base + l.off_temp), temp_bytes, (const int64_t *)iota,
                                 (const uint8_t *)flags, indices,
                                 (int64_t *)(base + l.off_selected), l.n, stream) != cudaSuccess)
    return PIXCON_ERROR_CUDA;
  return PIXCON_OK;
}

}  /* extern "C" */
