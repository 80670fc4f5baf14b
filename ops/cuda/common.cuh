/* Shared device helpers of the CUDA kernels: the launch, dynamic-shared-memory and device-assert macros
 * (one source for nvcc and the CPU emulation), and stable exp/log/sigmoid/softplus overloads (the 16-bit
 * conversions are those of ops/common/convert.h). Cost: O(1) per call; no memory of its own. */
#ifndef PIXCON_CUDA_COMMON_CUH
#define PIXCON_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

/* Every kernel launches through this macro, so the same source builds with nvcc and with the
 * CPU emulation of tests/emulation (whose cuda_runtime.h defines PIXCON_EMULATED_LAUNCH):
 *   PIXCON_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...);
 * The kernel comes last so that a template-id with commas needs no extra parentheses. */
#if defined(__CUDACC__)
#define PIXCON_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#elif defined(PIXCON_EMULATED_LAUNCH)
#define PIXCON_LAUNCH(grid, block, smem, stream, ...) \
  PIXCON_EMULATED_LAUNCH((grid), (block), (smem), (stream), __VA_ARGS__)
#else
#error "pixcon CUDA sources need nvcc or the emulation headers of tests/emulation"
#endif

/* The block's dynamic shared memory as `unsigned char name[]`, 128-byte aligned (WMMA needs 32). */
#if defined(__CUDACC__)
#define PIXCON_DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#else
#define PIXCON_DYNAMIC_SHARED(name) PIXCON_EMULATED_DYNAMIC_SHARED(name)
#endif

/* A device-side assertion that stays on in release builds, as torch's CUDA_KERNEL_ASSERT: the kernel
 * traps, and the host learns of it at its next synchronisation ("device-side assert triggered"), so
 * checking data on the device never blocks the host. Code after it must stay memory-safe: under the
 * emulation the asserting thread carries on. */
#if defined(__CUDACC__)
#include <assert.h>
#if defined(NDEBUG) /* assert.h then declares nothing; the device runtime still has it (torch does the same) */
extern "C" __host__ __device__ void __assert_fail(const char *assertion, const char *file, unsigned int line,
                                                  const char *function) noexcept __attribute__((__noreturn__));
#endif
#define PIXCON_DEVICE_ASSERT(cond, message) \
  ((cond) ? (void)0 : __assert_fail(message, __FILE__, __LINE__, __func__))
#else
#define PIXCON_DEVICE_ASSERT(cond, message) PIXCON_EMULATED_DEVICE_ASSERT((cond), (message))
#endif

#define PIXCON_HD __device__ __forceinline__

namespace pixcon_cuda {

/* ---- math in the accumulation type: one name for the float and the double function ---- */

#define PIXCON_MATH_OVERLOADS(name, f32, f64)          \
  PIXCON_HD float name(float x) { return f32(x); }     \
  PIXCON_HD double name(double x) { return f64(x); }

PIXCON_MATH_OVERLOADS(px_exp, expf, exp)
PIXCON_MATH_OVERLOADS(px_exp2, exp2f, exp2)
PIXCON_MATH_OVERLOADS(px_log2, log2f, log2)
PIXCON_MATH_OVERLOADS(px_log1p, log1pf, log1p)
PIXCON_MATH_OVERLOADS(px_abs, fabsf, fabs)
#undef PIXCON_MATH_OVERLOADS

template <class T> PIXCON_HD T neg_inf() { return (T)-INFINITY; }

/* sigmoid(x) and softplus(x) = log(1 + e^x), stable for every x including +-inf. */
template <class T> PIXCON_HD T sigmoid(T x) {
  T t = px_exp(-px_abs(x));
  return x >= 0 ? (T)1 / ((T)1 + t) : t / ((T)1 + t);
}
template <class T> PIXCON_HD T softplus(T x) {
  return (x > 0 ? x : (T)0) + px_log1p(px_exp(-px_abs(x)));
}

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_COMMON_CUH */
