/* The tests' reading of the C API's element types: float16 and bfloat16 bits to double, and an
 * element of any dtype. Plain C, header-only. */
#ifndef PIXCON_TEST_DTYPE_IO_H
#define PIXCON_TEST_DTYPE_IO_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "pixcon/pixcon.h"

static inline double half_bits_to_double(uint16_t h) {
  uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0) return sign * m * ldexp(1.0, -24);
  if (e == 31) return m ? NAN : sign * INFINITY;
  return sign * (1024 + m) * ldexp(1.0, (int)e - 25);
}

static inline double bfloat16_bits_to_double(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Element k of an array of `dtype`. */
static inline double dtype_element(const void *a, pixcon_dtype dtype, int64_t k) {
  switch (dtype) {
    case PIXCON_FLOAT64: return ((const double *)a)[k];
    case PIXCON_FLOAT32: return ((const float *)a)[k];
    case PIXCON_FLOAT16: return half_bits_to_double(((const uint16_t *)a)[k]);
    default: return bfloat16_bits_to_double(((const uint16_t *)a)[k]);
  }
}

#endif /* PIXCON_TEST_DTYPE_IO_H */
