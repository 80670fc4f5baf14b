/* Stand-in for cuda_bf16.h under the CPU emulation: __nv_bfloat16 as 2-byte storage only (the kernels
 * keep 16-bit values as uint16_t bits and reinterpret them for WMMA loads; no arithmetic).
 * Cost: none (a type). */
#ifndef PIXCON_EMU_CUDA_BF16_H
#define PIXCON_EMU_CUDA_BF16_H

#include "pixcon_emu.h"

struct __nv_bfloat16 {
  unsigned short __x; /* bfloat16 bits (the high half of a float), as the member of CUDA's type */
};
static_assert(sizeof(__nv_bfloat16) == 2 && std::is_standard_layout<__nv_bfloat16>::value,
              "__nv_bfloat16 is 2-byte storage");

#endif /* PIXCON_EMU_CUDA_BF16_H */
