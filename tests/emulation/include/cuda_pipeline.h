/* Stand-in for cuda_pipeline.h under the CPU emulation: only the primitives (cp.async) are emulated.
 * Cost: none (declarations only). */
#ifndef PIXCON_EMU_CUDA_PIPELINE_H
#define PIXCON_EMU_CUDA_PIPELINE_H
#include "cuda_pipeline_primitives.h"
#endif
