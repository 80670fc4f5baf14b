/* Runtime pieces of the device-wide CUB stand-ins (the headers under include/cub/device): argument
 * checks that abort on a range outside cudaMalloc'd memory or on overlapping ranges CUB forbids
 * (misuse, the plain abort with a message, is in pixcon_emu.cpp).
 * Cost: one lookup in the allocation map per checked range. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pixcon_emu.h"

namespace pixcon_emu {

void require_device_range(const char *api, const char *what, const void *p, size_t bytes) {
  if (bytes == 0 || is_device_range(p, bytes)) return;
  fprintf(stderr, "pixcon CUDA emulation: %s: %s (%zu bytes at %p) is not inside one cudaMalloc allocation\n", api,
          what, bytes, p);
  abort();
}

void require_disjoint(const char *api, const char *what_a, const void *a, size_t a_bytes, const char *what_b,
                      const void *b, size_t b_bytes) {
  uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  if (a_bytes == 0 || b_bytes == 0 || x + a_bytes <= y || y + b_bytes <= x) return;
  fprintf(stderr, "pixcon CUDA emulation: %s: %s and %s overlap, which CUB does not support\n", api, what_a, what_b);
  abort();
}

}  // namespace pixcon_emu
