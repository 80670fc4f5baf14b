/* Stand-in for cuda_runtime_api.h under the CPU emulation: everything is in pixcon_emu.h.
 * Cost: none (declarations only).
 * Put tests/emulation/include first on the include path. */
#ifndef PIXCON_EMU_CUDA_RUNTIME_API_H
#define PIXCON_EMU_CUDA_RUNTIME_API_H
#include "pixcon_emu.h"
#endif
