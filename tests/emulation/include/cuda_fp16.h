/* Stand-in for cuda_fp16.h under the CPU emulation: __half as 2-byte storage only (the kernels keep
 * 16-bit values as uint16_t bits and reinterpret them as __half for WMMA loads; no arithmetic).
 * Cost: none (a type). */
#ifndef PIXCON_EMU_CUDA_FP16_H
#define PIXCON_EMU_CUDA_FP16_H

#include "pixcon_emu.h"

struct __half {
  unsigned short __x; /* IEEE binary16 bits, as the member of CUDA's __half */
};
static_assert(sizeof(__half) == 2 && std::is_standard_layout<__half>::value, "__half is 2-byte storage");

#endif /* PIXCON_EMU_CUDA_FP16_H */
