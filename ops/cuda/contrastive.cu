/* Host side of the fused CUDA loss (pixcon_cuda.h): checks, the workspace layout, and the three
 * launches of each pass (pack, plan, fused forward or backward) on the caller's stream. The host
 * reads no device memory: grids are sized from N, D and B, the work list is built on the device,
 * and the shared-memory layout (anchor rows resident or streamed) from D and the device's limit.
 * Cost: O(1) host work per call; the kernels' costs are in their files.
 */
#include <stdio.h>
#include <string.h>

#include "../common/message.h"
#include "common.cuh"
#include "workspace.cuh"
#include "fused_args.cuh"
#include "fused_backward.cuh"
#include "fused_forward.cuh"
#include "fused_kinds.cuh"
#include "fused_prepare.cuh"
#include "pixcon/pixcon_cuda.h"
#include "tile_math.cuh"

namespace pixcon_cuda {
namespace {

/* The default shared-memory limit of a CTA; above it a kernel must opt in. */
constexpr size_t kDefaultSharedLimit = 48 * 1024;
/* pack is memory bound: about one wave of a large GPU is enough */
constexpr int64_t kMaxPackBlocks = 2048;

Path path_of(const pixcon_cuda_loss_params *q) {
  switch (q->base.dtype) {
    case PIXCON_FLOAT64: return Path::F64;
    case PIXCON_FLOAT16: return Path::F16;
    case PIXCON_BFLOAT16: return Path::BF16;
    default: return q->allow_tf32 ? Path::TF32 : Path::F32;
  }
}

size_t elem_size(Path p) {
  switch (p) {
    case Path::F16:
    case Path::BF16: return 2;
    case Path::F64: return 8;
    default: return 4;
  }
}

struct Workspace {
  int64_t dp;
  size_t zs, roles, tile_start, total;
};

Workspace workspace_layout(const pixcon_cuda_loss_params *q) {
  const pixcon_loss_params *p = &q->base;
  Workspace w;
  w.dp = (p->dim + kDimAlign - 1) / kDimAlign * kDimAlign;
  w.zs = 0;
  w.roles = align256((size_t)p->num_rows * (size_t)w.dp * elem_size(path_of(q)));
  w.tile_start = w.roles + align256((size_t)p->num_rows);
  w.total = w.tile_start + align256((size_t)(p->num_bags + 1) * sizeof(int64_t)) + 256; /* alignment slack */
  return w;
}

/* The buffers of one pass (those of the other pass stay NULL). */
struct Buffers {
  void *loss, *stats;
  uint8_t *valid;
  const void *grad_loss, *stats_in;
  void *grad;
};

FusedArgs fused_args(const pixcon_cuda_loss_params *q, const Workspace &w, void *workspace, const Buffers &b) {
  const pixcon_loss_params *p = &q->base;
  char *base = aligned_base(workspace);
  FusedArgs a;
  memset(&a, 0, sizeof a);
  a.n = p->num_rows;
  a.dim = p->dim;
  a.dp = w.dp;
  a.num_bags = p->num_bags;
  a.offsets = p->bag_offsets;
  a.labels = p->labels;
  a.image = p->image_ids;
  a.anchor_mask = p->anchor_mask;
  a.contrast_mask = p->contrast_mask;
  a.ignore_index = p->ignore_index;
  a.self_positive = p->self_positive != 0;
  a.pair = p->denominator == PIXCON_DENOMINATOR_PAIR;
  a.scale = 1.0 / p->temperature;
  a.z = p->embeddings;
  a.row_stride = p->row_stride;
  a.col_stride = p->col_stride;
  a.zs = base + w.zs;
  a.roles = (uint8_t *)(base + w.roles);
  a.tile_start = (int64_t *)(base + w.tile_start);
  a.loss = b.loss;
  a.stats = b.stats;
  a.valid = b.valid;
  a.grad_loss = b.grad_loss;
  a.stats_in = b.stats_in;
  a.grad = b.grad;
  return a;
}

/* PIXCON_ERROR_CUDA with the CUDA error in the message, if the last launch or call failed. */
pixcon_status cuda_status(const char *what, char *message, size_t size) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return PIXCON_OK;
  if (message && size > 0)
    snprintf(message, size, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  return PIXCON_ERROR_CUDA;
}

/* The (bag, row tile) items of any bag layout number at most ceil(N / rows) + B - 1. */
unsigned item_grid(const FusedArgs &a, int rows) {
  const int64_t items = (a.n + rows - 1) / rows + a.num_bags;
  return (unsigned)(items < 1 ? 1 : items);
}

template <Path P> pixcon_status prepare(const FusedArgs &a, int tile_rows, cudaStream_t stream, char *message,
                                        size_t size) {
  int64_t blocks = (a.n * a.dp + kPackThreads - 1) / kPackThreads;
  if (blocks > kMaxPackBlocks) blocks = kMaxPackBlocks;
  PIXCON_LAUNCH((unsigned)(blocks < 1 ? 1 : blocks), kPackThreads, 0, stream, pack_kernel<P>)(a);
  pixcon_status st = cuda_status("pixcon: pack_kernel launch", message, size);
  if (st != PIXCON_OK) return st;
  PIXCON_LAUNCH(1, kPlanThreads, 0, stream, plan_kernel)(a, (int64_t)tile_rows);
  return cuda_status("pixcon: plan_kernel launch", message, size);
}

/* How one pass is launched: the stream, whether anchor rows may stay resident, and where a
 * failure is described. */
struct Launch {
  cudaStream_t stream;
  bool stream_anchors;
  char *message;
  size_t size;
};

/* The shared memory a CTA of the current device may have, opted in (a host query, no wait). */
pixcon_status shared_limit(const Launch &l, size_t *bytes) {
  int device = 0, optin = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  *bytes = (size_t)optin;
  return cuda_status("pixcon: querying the device's shared-memory limit", l.message, l.size);
}

/* The pass's layout (anchor rows resident when they fit) in a.resident, and the kernel opted in to
 * its shared memory when that exceeds the default limit. */
template <class K, class Sh, class Kernel>
pixcon_status plan_shared(Kernel kernel, const Launch &l, FusedArgs &a, size_t *bytes) {
  size_t limit = 0;
  pixcon_status st = shared_limit(l, &limit);
  if (st != PIXCON_OK) return st;
  const Layout<K, Sh> resident(a.dp, true), streamed(a.dp, false);
  a.resident = !l.stream_anchors && resident.bytes <= limit;
  *bytes = a.resident ? resident.bytes : streamed.bytes;
  if (*bytes <= kDefaultSharedLimit) return PIXCON_OK;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)*bytes);
  return cuda_status("pixcon: cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", l.message, l.size);
}

/* One pass: pack and plan, the shared-memory layout, then `kernel` on `grid` (`name` in messages). */
template <Path P, class Sh, class Kernel>
pixcon_status launch_pass(Kernel kernel, const char *name, dim3 grid, FusedArgs a, const Launch &l) {
  size_t bytes = 0;
  pixcon_status st = prepare<P>(a, Sh::kRows, l.stream, l.message, l.size);
  if (st == PIXCON_OK) st = plan_shared<Kind<P>, Sh>(kernel, l, a, &bytes);
  if (st != PIXCON_OK) return st;
  PIXCON_LAUNCH(grid, Sh::kThreads, bytes, l.stream, kernel)(a);
  return cuda_status(name, l.message, l.size);
}

template <Path P, class Sh> struct ForwardPass {
  static pixcon_status run(const FusedArgs &a, const Launch &l) {
    return launch_pass<P, Sh>(fused_forward_kernel<P, Sh>, "pixcon: fused_forward_kernel launch",
                              dim3(item_grid(a, Sh::kRows)), a, l);
  }
};

/* grid.y: the chunks of kGradCols gradient columns */
template <Path P, class Sh> struct BackwardPass {
  static pixcon_status run(const FusedArgs &a, const Launch &l) {
    const dim3 grid(item_grid(a, Sh::kRows), (unsigned)((a.dp + Sh::kGradCols - 1) / Sh::kGradCols));
    return launch_pass<P, Sh>(fused_backward_kernel<P, Sh>, "pixcon: fused_backward_kernel launch", grid, a, l);
  }
};

/* Runs PASS<path, shape> for q's path and tuning flags. */
template <template <Path, class> class Pass>
pixcon_status dispatch(const pixcon_cuda_loss_params *q, const FusedArgs &a, char *message, size_t size) {
  const bool small = (q->tuning & PIXCON_CUDA_SMALL_TILES) != 0;
  const Launch l = {q->stream, (q->tuning & PIXCON_CUDA_STREAM_ANCHORS) != 0, message, size};
  switch (path_of(q)) {
#define PIXCON_PATH_CASE(P)                                                                         \
  case P:                                                                                           \
    return small ? Pass<P, Shapes<P>::Small>::run(a, l) : Pass<P, Shapes<P>::Default>::run(a, l);
    PIXCON_PATH_CASE(Path::F16)
    PIXCON_PATH_CASE(Path::BF16)
    PIXCON_PATH_CASE(Path::TF32)
    PIXCON_PATH_CASE(Path::F32)
    PIXCON_PATH_CASE(Path::F64)
#undef PIXCON_PATH_CASE
  }
  return PIXCON_ERROR_INVALID_ARGUMENT;
}

/* What both entry points do: the checks (the pass's buffers are all there when `given`), then PASS on
 * the caller's buffers; nothing to launch when there are no rows. */
template <template <Path, class> class Pass>
pixcon_status run(const pixcon_cuda_loss_params *q, const Buffers &b, bool given, void *workspace,
                  size_t workspace_size, char *message, size_t size) {
  pixcon_status st = pixcon_cuda_loss_params_check(q, message, size);
  if (st != PIXCON_OK || q->base.num_rows == 0) return st;
  if (!given) return pixcon_invalid_argument(message, size, "an output or input buffer is NULL");
  const Workspace w = workspace_layout(q);
  if (!workspace || workspace_size < w.total)
    return pixcon_invalid_argument(message, size, "workspace: %zu bytes given, %zu needed", workspace_size, w.total);
  return dispatch<Pass>(q, fused_args(q, w, workspace, b), message, size);
}

}  // namespace
}  // namespace pixcon_cuda

using namespace pixcon_cuda;

extern "C" {

pixcon_status pixcon_cuda_loss_params_check(const pixcon_cuda_loss_params *q, char *message, size_t size) {
  pixcon_status st = pixcon_check_start(q, message, size);
  if (st != PIXCON_OK) return st;
  const pixcon_loss_params *p = &q->base;
  st = pixcon_loss_params_check_scalars(p, message, size);
  if (st != PIXCON_OK) return st;
  /* the backward's grid.y counts gradient chunks of at least 128 columns: at most 65535 */
  if (p->dim > (int64_t)65535 * 128)
    return pixcon_invalid_argument(message, size, "embeddings: D must be at most %lld, got %lld",
                                   (long long)65535 * 128, (long long)p->dim);
  if (p->num_rows > 0 && (p->row_stride < 0 || p->col_stride < 0))
    return pixcon_invalid_argument(message, size, "embeddings: negative strides are not supported");
  /* grid.x holds at most 2^31 - 1 items */
  if ((p->num_rows / 32 + p->num_bags) > 2147483647 - 1)
    return pixcon_invalid_argument(message, size, "too many rows and bags for one launch");
  if (q->tuning & ~(PIXCON_CUDA_SMALL_TILES | PIXCON_CUDA_STREAM_ANCHORS))
    return pixcon_invalid_argument(message, size, "tuning: unknown flags 0x%x", q->tuning);
  return PIXCON_OK;
}

size_t pixcon_cuda_forward_workspace_size(const pixcon_cuda_loss_params *q) {
  if (pixcon_cuda_loss_params_check(q, NULL, 0) != PIXCON_OK) return 0;
  return workspace_layout(q).total;
}

size_t pixcon_cuda_backward_workspace_size(const pixcon_cuda_loss_params *q) {
  return pixcon_cuda_forward_workspace_size(q);
}

pixcon_status pixcon_cuda_contrastive_forward(const pixcon_cuda_loss_params *q, void *loss, uint8_t *valid,
                                              void *stats, void *workspace, size_t workspace_size, char *message,
                                              size_t message_size) {
  const Buffers b = {loss, stats, valid, NULL, NULL, NULL};
  return run<ForwardPass>(q, b, loss && valid && stats, workspace, workspace_size, message, message_size);
}

pixcon_status pixcon_cuda_contrastive_backward(const pixcon_cuda_loss_params *q, const void *grad_loss,
                                               const void *stats, void *grad_embeddings, void *workspace,
                                               size_t workspace_size, char *message, size_t message_size) {
  const Buffers b = {NULL, NULL, NULL, grad_loss, stats, grad_embeddings};
  return run<BackwardPass>(q, b, grad_loss && stats && grad_embeddings, workspace, workspace_size, message,
                           message_size);
}

}  /* extern "C" */
