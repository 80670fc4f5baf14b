/* CPU emulation of the CUDA subset pixcon's kernels use: qualifiers, thread geometry, __shared__,
 * __syncthreads, bit casts, the launch macro's back end and a small runtime (memory, copies, errors).
 * Cost: a launch runs blockDim threads as real std::threads, blocks one after another; O(1) per sync. */
#ifndef PIXCON_EMU_H
#define PIXCON_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#include <tuple>
#include <type_traits>
#include <utility>
#endif

/* ---- qualifiers ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
/* Shared memory: one static object per declaration, shared by the threads of the running block.
 * Blocks of a launch run one after another, so one copy per declaration is enough; it keeps its
 * contents from the previous block (as uninitialised shared memory may). */
#define __shared__ static

/* ---- vector types and geometry ---- */
typedef struct uint3 {
  unsigned int x, y, z;
} uint3;

#ifdef __cplusplus
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
/* The geometry of the calling emulated thread. threadIdx, blockIdx, blockDim and gridDim are
 * macros for its members (blockDim and gridDim as uint3: same members, convertible to dim3), so
 * kernels read them as on a GPU while the thread_local itself stays inside the runtime. */
namespace pixcon_emu {
struct Geometry {
  uint3 thread, block, block_dim, grid_dim;
};
Geometry &geometry();
}  // namespace pixcon_emu
#define threadIdx (::pixcon_emu::geometry().thread)
#define blockIdx (::pixcon_emu::geometry().block)
#define blockDim (::pixcon_emu::geometry().block_dim)
#define gridDim (::pixcon_emu::geometry().grid_dim)
constexpr int warpSize = 32;
#endif

/* ---- runtime types (values as in the CUDA runtime headers) ---- */
typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9
} cudaError_t;

typedef enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_16BF = 14
} cudaDataType;

struct CUstream_st;
typedef struct CUstream_st *cudaStream_t;

#ifdef __cplusplus
extern "C" {
#endif
cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemset(void *ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
void __syncthreads(void);
#ifdef __cplusplus
}
#endif

/* ---- device intrinsics ---- */
static inline unsigned int __float_as_uint(float f) {
  unsigned int u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float __uint_as_float(unsigned int u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

#ifdef __cplusplus
template <class T> static inline cudaError_t cudaMalloc(T **ptr, size_t size) {
  return cudaMalloc((void **)ptr, size);
}

namespace pixcon_emu {

/* Runs body once per thread of every block of the grid (see pixcon_emu.cpp). */
typedef void (*thread_body)(void *context);
void run_grid(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, thread_body body,
              void *context);

/* True when [p, p + bytes) lies inside one live cudaMalloc allocation. */
bool is_device_range(const void *p, size_t bytes);

/* Number of kernel launches so far (for tests). */
long long launch_count();

/* Argument checks of the device-wide CUB stand-ins (pixcon_emu_cub.cpp): abort with a message naming
 * the call and the argument. require_device_range: [p, p + bytes) inside one live cudaMalloc
 * allocation (bytes == 0 passes); require_disjoint: the two byte ranges do not overlap. */
[[noreturn]] void misuse(const char *api, const char *what);
void require_device_range(const char *api, const char *what, const void *p, size_t bytes);
void require_disjoint(const char *api, const char *what_a, const void *a, size_t a_bytes, const char *what_b,
                      const void *b, size_t b_bytes);

template <class... P> struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;

  template <class... A> void operator()(A &&...args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    struct Context {
      void (*kernel)(P...);
      std::tuple<typename std::decay<P>::type...> args;
    } context{kernel, std::tuple<typename std::decay<P>::type...>(std::forward<A>(args)...)};
    run_grid(grid, block, shared_bytes, stream,
             [](void *c) {
               Context *ctx = (Context *)c;
               auto own = ctx->args; /* each thread gets its own copy of the parameters */
               std::apply(ctx->kernel, own);
             },
             &context);
  }
};

template <class... P>
Launch<P...> launch(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, void (*kernel)(P...)) {
  return Launch<P...>{kernel, grid, block, shared_bytes, stream};
}

}  // namespace pixcon_emu

#define PIXCON_EMULATED_LAUNCH(grid, block, smem, stream, ...) \
  ::pixcon_emu::launch((grid), (block), (smem), (stream), __VA_ARGS__)
#endif /* __cplusplus */

#endif /* PIXCON_EMU_H */
