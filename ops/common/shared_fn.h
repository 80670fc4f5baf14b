/* How the header-only pieces of ops/common are defined: static inline in C and C++, and callable from
 * host and device code under nvcc, so the CPU and the CUDA kernels compile one definition. */
#ifndef PIXCON_COMMON_SHARED_FN_H
#define PIXCON_COMMON_SHARED_FN_H

#if defined(__CUDACC__)
#define PIXCON_SHARED_FN static __host__ __device__ __forceinline__
#else
#define PIXCON_SHARED_FN static inline
#endif

#endif /* PIXCON_COMMON_SHARED_FN_H */
