/* Host helpers of the CUDA entry points for carving a caller's workspace: every region starts on a
 * 256-byte boundary (CUB's and the vector loads' alignment), from a base aligned up the same way. */
#ifndef PIXCON_CUDA_WORKSPACE_CUH
#define PIXCON_CUDA_WORKSPACE_CUH

#include <stddef.h>
#include <stdint.h>

namespace pixcon_cuda {

inline size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

inline char *aligned_base(void *workspace) { return (char *)(((uintptr_t)workspace + 255) & ~(uintptr_t)255); }

/* Bits needed for the values 0 .. x: the end bit of a radix sort over them. */
inline int bit_width(uint64_t x) {
  int w = 0;
  for (; x; x >>= 1) ++w;
  return w;
}

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_WORKSPACE_CUH */
