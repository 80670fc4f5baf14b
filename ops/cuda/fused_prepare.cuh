/* The two small kernels before each fused pass, both reading only device memory:
 *   pack_kernel: the caller's strided embeddings into a dense [N, Dp] copy in the path's element type
 *     (zero columns D .. Dp, zero rows without a role), and each row's roles (anchor, contrast);
 *     checks the labels;
 *   plan_kernel: checks the bag offsets and writes the device work list: tile_start[b], the first
 *     (bag, row tile) item of bag b, and tile_start[B], the number of items.
 * A bad label or bad offsets trigger a device-side assertion (the host learns of it at its next
 * synchronisation); bad offsets also leave an empty work list, so no kernel reads past N.
 * Cost: pack O(N Dp) elements, plan O(B) in one CTA (a warp-shuffle scan over 256 bags at a time).
 */
#ifndef PIXCON_CUDA_FUSED_PREPARE_CUH
#define PIXCON_CUDA_FUSED_PREPARE_CUH

#include <stdint.h>

#include "common.cuh"
#include "fused_args.cuh"
#include "fused_kinds.cuh"

namespace pixcon_cuda {

constexpr int kPackThreads = 256;
constexpr int kPlanThreads = 256;

template <Path P> __global__ void __launch_bounds__(kPackThreads) pack_kernel(FusedArgs a) {
  typedef Kind<P> K;
  typename K::Elem *zs = (typename K::Elem *)a.zs;
  const int64_t step = (int64_t)gridDim.x * kPackThreads, total = a.n * a.dp;
  for (int64_t k = (int64_t)blockIdx.x * kPackThreads + threadIdx.x; k < total; k += step) {
    const int64_t r = k / a.dp, d = k - r * a.dp;
    /* a row with no role is packed as zeros: a NaN in it cannot reach its bag through 0 x NaN */
    const bool used = pixcon_row_roles(a.labels[r], a.ignore_index, a.anchor_mask, a.contrast_mask, r) != 0;
    zs[k] = d < a.dim && used ? K::pack(a.z, r * a.row_stride + d * a.col_stride) : (typename K::Elem)0;
  }
  for (int64_t r = (int64_t)blockIdx.x * kPackThreads + threadIdx.x; r < a.n; r += step) {
    const int64_t y = a.labels[r];
    PIXCON_DEVICE_ASSERT(y == a.ignore_index || y >= 0, "pixcon.contrastive_loss: labels must be >= 0 or ignore_index");
    a.roles[r] = (uint8_t)pixcon_row_roles(y, a.ignore_index, a.anchor_mask, a.contrast_mask, r);
  }
}

/* Inclusive prefix sum over the CTA (kPlanThreads threads); `total` gets the sum of all inputs. */
__device__ __forceinline__ int64_t block_inclusive_scan(int64_t x, int64_t *warp_sums, int64_t *total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int d = 1; d < 32; d <<= 1) {
    const int64_t y = __shfl_up_sync(0xffffffffu, x, d);
    if (lane >= d) x += y;
  }
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  int64_t before = 0, all = 0;
  for (int w = 0; w < kPlanThreads / 32; ++w) {
    if (w < warp) before += warp_sums[w];
    all += warp_sums[w];
  }
  __syncthreads(); /* warp_sums is rewritten by the next call */
  *total = all;
  return before + x;
}

__global__ void __launch_bounds__(kPlanThreads) plan_kernel(FusedArgs a, int64_t tile_rows) {
  __shared__ int64_t warp_sums[kPlanThreads / 32];
  const int64_t *o = a.offsets;
  int bad = threadIdx.x == 0 && (o[0] != 0 || o[a.num_bags] != a.n);
  for (int64_t b = threadIdx.x; b < a.num_bags; b += kPlanThreads) bad |= o[b + 1] < o[b];
  bad = __syncthreads_or(bad);
  if (threadIdx.x == 0)
    PIXCON_DEVICE_ASSERT(!bad, "pixcon.contrastive_loss: bag_offsets must rise from 0 to N without decreasing");
  int64_t carry = 0;
  for (int64_t base = 0; base < a.num_bags; base += kPlanThreads) {
    const int64_t b = base + threadIdx.x;
    const int64_t items = !bad && b < a.num_bags ? (o[b + 1] - o[b] + tile_rows - 1) / tile_rows : 0;
    int64_t total;
    const int64_t inclusive = block_inclusive_scan(items, warp_sums, &total);
    if (b < a.num_bags) a.tile_start[b] = carry + inclusive - items;
    carry += total;
  }
  if (threadIdx.x == 0) a.tile_start[a.num_bags] = carry;
}

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_FUSED_PREPARE_CUH */
