/* CPU emulation of the CUDA subset pixcon's kernels use: qualifiers, thread geometry, static and dynamic
 * shared memory, block and warp barriers, warp shuffles, bit casts, 64-bit atomicAdd, device-side
 * assertions, the launch macro's back end and a small runtime (memory, copies, errors, function
 * attributes, counters).
 * WMMA, cp.async and 16-bit float types are in mma.h, cuda_pipeline_primitives.h, cuda_fp16.h and
 * cuda_bf16.h next to this file.
 * Cost: a launch runs blockDim threads as real std::threads, blocks one after another in a shuffled
 * order; every barrier or warp-level operation is one rendezvous of the threads involved. */
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
#define __align__(n) __attribute__((aligned(n)))
/* Static shared memory: one object per declaration (blocks run one after another), all of them in the
 * ELF section pixcon_shared, which the runtime fills with 0xff before every block and whose size counts
 * against the shared-memory limit. GCC (12 at least, PR 70435) ignores the section attribute inside a
 * template, so a __shared__ object in a function template or a member of a class template is a plain
 * static: not poisoned, not counted; and in an inline function (also a member function defined in its
 * class, or a lambda) it fails to compile ("section type conflict") when its translation unit also has
 * one in a non-inline function. The dynamic arena (PIXCON_EMULATED_DYNAMIC_SHARED) has neither limit. */
#define __shared__ static __attribute__((section("pixcon_shared"), aligned(16)))

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
  cudaErrorInvalidConfiguration = 9,
  cudaErrorAssert = 710
} cudaError_t;

typedef enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 } cudaDeviceAttr;

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
const char *cudaGetErrorName(cudaError_t error);
/* Only cudaFuncAttributeMaxDynamicSharedMemorySize: the kernel's dynamic shared memory may then reach
 * value bytes, at most 101376 (sm_86/sm_89's opt-in limit) minus the static shared memory. */
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value);
/* One device, 0. Only cudaDevAttrMaxSharedMemoryPerBlockOptin: 101376, as above. */
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
void __syncthreads(void);
int __syncthreads_or(int predicate);
int __syncthreads_and(int predicate);
int __syncthreads_count(int predicate);
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
static inline int __float_as_int(float f) { return (int)__float_as_uint(f); }
static inline float __int_as_float(int i) { return __uint_as_float((unsigned int)i); }

#ifdef __cplusplus
template <class T> static inline cudaError_t cudaMalloc(T **ptr, size_t size) {
  return cudaMalloc((void **)ptr, size);
}

/* The kernel-pointer overload of the runtime API (cuda_runtime.h has the same one). */
template <class T> static inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute((const void *)entry, attr, value);
}

/* A read through the read-only data cache: a plain load here. */
template <class T> static inline T __ldg(const T *p) { return *p; }

/* CUDA's 64-bit integer atomicAdd (relaxed, as on a GPU): returns the old value. Only the unsigned long
 * long overload exists in CUDA, so a uint64_t (unsigned long here) pointer does not compile, as there. */
static inline unsigned long long atomicAdd(unsigned long long *address, unsigned long long val) {
  return __atomic_fetch_add(address, val, __ATOMIC_RELAXED);
}

namespace pixcon_emu {

/* Runs body once per thread of every block of the grid (see pixcon_emu.cpp); kernel identifies the
 * kernel for its cudaFuncSetAttribute limit. */
typedef void (*thread_body)(void *context);
void run_grid(const void *kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, thread_body body,
              void *context);

/* The running block's dynamic shared memory: the launch's shared_bytes, 128-byte aligned, filled with
 * 0xff before each block; the same pointer for every thread of the block. */
unsigned char *dynamic_shared_memory();

/* PIXCON_EMULATED_DEVICE_ASSERT's back end: when !holds, prints the first failure (file:line, block,
 * thread, message) and sets the sticky cudaErrorAssert; the calling thread carries on. */
void device_assert(bool holds, const char *message, const char *file, int line);

/* The calling thread's lane in its warp (32 consecutive linear thread indices). */
unsigned warp_lane();

/* __syncwarp and the shuffles: mask must name exactly the warp's lanes. mode is one of ShuffleMode;
 * the value travels as the low sizeof(T) bytes of bits. A source lane past a partial warp's last lane
 * gives all-ones bits (undefined on a GPU). */
enum ShuffleMode { SHUFFLE_IDX, SHUFFLE_UP, SHUFFLE_DOWN, SHUFFLE_XOR };
void warp_sync(unsigned mask);
uint64_t warp_shuffle(unsigned mask, uint64_t bits, int mode, long long lane_arg, int width);

template <class T> T shuffle(unsigned mask, T var, int mode, long long lane_arg, int width) {
  static_assert(std::is_arithmetic<T>::value && (sizeof(T) == 4 || sizeof(T) == 8),
                "warp shuffles take 32- or 64-bit integers, float or double");
  uint64_t bits = 0;
  memcpy(&bits, &var, sizeof var);
  bits = warp_shuffle(mask, bits, mode, lane_arg, width);
  memcpy(&var, &bits, sizeof var);
  return var;
}

/* One matrix operand of a warp's wmma::mma_sync: the calling lane's elements and where each sits in
 * the row-major matrix (row * cols + col). */
struct MmaPart {
  int count;
  const int *at;
  const float *value;
};
/* D = C + A B for the warp (A m x k, B k x n, C m x n, all float): every lane of a full warp passes its
 * parts; d[e] gets the element at c.at[e]. Products are summed in float in ascending k, then added to C. */
void warp_mma(int n, int k, const MmaPart &a, const MmaPart &b, const MmaPart &c, float *d);

/* Exact conversions of 16-bit float bits (WMMA fragments of __half and __nv_bfloat16). */
float half_to_float(uint16_t h);
float bf16_to_float(uint16_t b);

/* True when [p, p + bytes) lies inside one live cudaMalloc allocation. */
bool is_device_range(const void *p, size_t bytes);

/* ---- hooks for tests ---- */

/* Number of kernel launches that ran, since the start (never reset). */
long long launch_count();

/* Activity since the last reset_counters(): launches that ran; host synchronisations
 * (cudaStreamSynchronize, cudaDeviceSynchronize, every cudaMemcpy that is not device-to-device);
 * device-to-host copies (cudaMemcpy and cudaMemcpyAsync). */
struct Counters {
  long long launches, host_syncs, device_to_host_copies;
};
Counters counters();
void reset_counters();

/* Blocks run in an order shuffled per launch from this seed (default: env PIXCON_EMU_SEED, else a fixed
 * value) and the number of launches since the seed was set. */
void set_block_order_seed(uint64_t seed);

/* Clears the sticky device-side assertion and the calling thread's last error, as cudaDeviceReset
 * would; allocations stay. */
void reset_device();

/* Misuse aborts the run with a message naming the call (api, may be null) and what is wrong; of threads
 * failing at once only the first prints. Argument checks of the stand-ins: require_device_range:
 * [p, p + bytes) inside one live cudaMalloc allocation (bytes == 0 passes); require_disjoint: the two
 * byte ranges do not overlap. */
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
    run_grid((const void *)kernel, grid, block, shared_bytes, stream,
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

/* ---- warp-level intrinsics (CUDA's signatures; T: int, unsigned, long, long long and their unsigned
 * forms, float, double). width is a power of two up to 32: lanes form groups of width. ---- */
static inline void __syncwarp(unsigned mask = 0xffffffffu) { ::pixcon_emu::warp_sync(mask); }

/* var of lane srcLane modulo width in the caller's group */
template <class T> static inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
  return ::pixcon_emu::shuffle(mask, var, ::pixcon_emu::SHUFFLE_IDX, srcLane, width);
}
/* var of lane - delta, or the caller's own var when that leaves the group */
template <class T> static inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
  return ::pixcon_emu::shuffle(mask, var, ::pixcon_emu::SHUFFLE_UP, delta, width);
}
/* var of lane + delta, or the caller's own var when that leaves the group */
template <class T> static inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize) {
  return ::pixcon_emu::shuffle(mask, var, ::pixcon_emu::SHUFFLE_DOWN, delta, width);
}
/* var of lane ^ laneMask; the caller's own var when that lies in a later group */
template <class T> static inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
  return ::pixcon_emu::shuffle(mask, var, ::pixcon_emu::SHUFFLE_XOR, laneMask, width);
}

#define PIXCON_EMULATED_LAUNCH(grid, block, smem, stream, ...) \
  ::pixcon_emu::launch((grid), (block), (smem), (stream), __VA_ARGS__)
#define PIXCON_EMULATED_DYNAMIC_SHARED(name) unsigned char *name = ::pixcon_emu::dynamic_shared_memory()
#define PIXCON_EMULATED_DEVICE_ASSERT(cond, message) \
  ::pixcon_emu::device_assert((cond), (message), __FILE__, __LINE__)
#endif /* __cplusplus */

#endif /* PIXCON_EMU_H */
