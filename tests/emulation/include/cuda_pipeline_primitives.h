/* Stand-in for cuda_pipeline_primitives.h (cp.async) under the CPU emulation, adversarial: a copy is
 * only queued by the issuing thread; __pipeline_commit closes the thread's current group of copies, and
 * __pipeline_wait_prior(n) performs every copy of all but the n most recently committed groups. So a
 * stage read before its wait sees what was there (0xff at the block's start), and copies still pending
 * when the block ends are dropped.
 * __pipeline_memcpy_async checks (abort): size_and_align is 4, 8 or 16; zfill <= size_and_align;
 * [dst, dst + size) inside the running block's shared memory (dynamic arena or pixcon_shared section);
 * the size - zfill bytes read at src inside one live cudaMalloc allocation (src itself when none is
 * read); dst and src aligned to size_and_align. The last zfill bytes of dst become zeros.
 * Cost: O(1) per copy at issue and when performed. */
#ifndef PIXCON_EMU_CUDA_PIPELINE_PRIMITIVES_H
#define PIXCON_EMU_CUDA_PIPELINE_PRIMITIVES_H

#include "pixcon_emu.h"

void __pipeline_memcpy_async(void *__restrict__ dst_shared, const void *__restrict__ src_global,
                             size_t size_and_align, size_t zfill = 0);
void __pipeline_commit();
void __pipeline_wait_prior(size_t prior);

#endif /* PIXCON_EMU_CUDA_PIPELINE_PRIMITIVES_H */
