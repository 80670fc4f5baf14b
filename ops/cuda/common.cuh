/* Shared device helpers of the CUDA kernels: the launch, dynamic-shared-memory and device-assert macros
 * (one source for nvcc and the CPU emulation), 16-bit float conversions by bit manipulation, and stable
 * exp/log/sigmoid/softplus overloads. Cost: O(1) per call; no memory of its own. */
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

/* ---- 16-bit floats as raw bits (no cuda_fp16.h needed) ---- */

PIXCON_HD float half_bits_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    float v = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
    return sign ? -v : v;
  }
  return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}

/* Round to nearest, ties to even. */
PIXCON_HD uint16_t float_to_half_bits(float f) {
  uint32_t u = __float_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (a < 0x38800000u) { /* subnormal half (or zero): count units of 2^-24 */
    float units = __uint_as_float(a) * 16777216.0f; /* exact scaling by 2^24 */
    return (uint16_t)(sign | (uint32_t)rintf(units));
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

PIXCON_HD float bf16_bits_to_float(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

PIXCON_HD uint16_t float_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* dtype codes as in pixcon.h (PIXCON_FLOAT32 = 0, FLOAT64 = 1, FLOAT16 = 2, BFLOAT16 = 3) */
PIXCON_HD double load_as_double(const void *base, int dtype, int64_t k) {
  switch (dtype) {
    case 1: return ((const double *)base)[k];
    case 2: return half_bits_to_float(((const uint16_t *)base)[k]);
    case 3: return bf16_bits_to_float(((const uint16_t *)base)[k]);
    default: return ((const float *)base)[k];
  }
}

/* ---- math in the accumulation type ---- */

PIXCON_HD float px_exp(float x) { return expf(x); }
PIXCON_HD double px_exp(double x) { return exp(x); }
PIXCON_HD float px_exp2(float x) { return exp2f(x); }
PIXCON_HD double px_exp2(double x) { return exp2(x); }
PIXCON_HD float px_log2(float x) { return log2f(x); }
PIXCON_HD double px_log2(double x) { return log2(x); }
PIXCON_HD float px_log(float x) { return logf(x); }
PIXCON_HD double px_log(double x) { return log(x); }
PIXCON_HD float px_log1p(float x) { return log1pf(x); }
PIXCON_HD double px_log1p(double x) { return log1p(x); }
PIXCON_HD float px_abs(float x) { return fabsf(x); }
PIXCON_HD double px_abs(double x) { return fabs(x); }

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
