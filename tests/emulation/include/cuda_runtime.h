/* Stand-in for the CUDA runtime header under the CPU emulation: everything is in pixcon_emu.h.
 * Cost: none (declarations only).
 * Put tests/emulation/include first on the include path and never the toolkit's include dir. */
#ifndef PIXCON_EMU_CUDA_RUNTIME_H
#define PIXCON_EMU_CUDA_RUNTIME_H
#include "pixcon_emu.h"
#endif
