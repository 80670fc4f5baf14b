/*
 * Conversions between the storage dtypes and the accumulation type, for the CPU and the CUDA
 * kernels alike: IEEE half and bfloat16 by bit manipulation (round to nearest even on the way
 * down, whatever the floating-point environment), so no compiler support for 16-bit floats is
 * needed. Cost: a few integer operations per element.
 */
#ifndef PIXCON_COMMON_CONVERT_H
#define PIXCON_COMMON_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "pixcon/pixcon.h"
#include "shared_fn.h"

/* A float's bits and back, without type punning (device code has an instruction for it). */
#if defined(__CUDA_ARCH__)
PIXCON_SHARED_FN float pixcon_bits_to_float(uint32_t u) { return __uint_as_float(u); }
PIXCON_SHARED_FN uint32_t pixcon_float_to_bits(float f) { return __float_as_uint(f); }
#else
PIXCON_SHARED_FN float pixcon_bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

PIXCON_SHARED_FN uint32_t pixcon_float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
#endif

PIXCON_SHARED_FN float pixcon_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return pixcon_bits_to_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    float f = (float)mant * (1.0f / 16777216.0f); /* subnormal: mant * 2^-24, exact */
    return sign ? -f : f;
  }
  return pixcon_bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

PIXCON_SHARED_FN uint16_t pixcon_float_to_half(float f) {
  uint32_t u = pixcon_float_to_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t absu = u & 0x7fffffffu;
  if (absu >= 0x7f800000u) /* inf or nan */
    return (uint16_t)(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0u));
  if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (absu < 0x38800000u) { /* below the smallest normal half: round to a subnormal */
    float a = pixcon_bits_to_float(absu) * 16777216.0f; /* in units of 2^-24, exact */
    uint32_t q = (uint32_t)a;
    float rem = a - (float)q;
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return (uint16_t)(sign | q);
  }
  uint32_t rounded = absu + 0xfffu + ((absu >> 13) & 1u); /* nearest even on 13 dropped bits */
  return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

PIXCON_SHARED_FN float pixcon_bf16_to_float(uint16_t b) {
  return pixcon_bits_to_float((uint32_t)b << 16);
}

PIXCON_SHARED_FN uint16_t pixcon_float_to_bf16(float f) {
  uint32_t u = pixcon_float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet nan */
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* A 16-bit element of dtype PIXCON_FLOAT16 or PIXCON_BFLOAT16 widened to float (exactly), and a
 * float rounded to one. */
PIXCON_SHARED_FN float pixcon_16bit_to_float(pixcon_dtype dtype, uint16_t b) {
  return dtype == PIXCON_BFLOAT16 ? pixcon_bf16_to_float(b) : pixcon_half_to_float(b);
}

PIXCON_SHARED_FN uint16_t pixcon_float_to_16bit(pixcon_dtype dtype, float f) {
  return dtype == PIXCON_BFLOAT16 ? pixcon_float_to_bf16(f) : pixcon_float_to_half(f);
}

/* Element k of an embedding buffer, widened to double (exact for every dtype). */
PIXCON_SHARED_FN double pixcon_load_elem(const void *base, pixcon_dtype dtype, int64_t k) {
  switch (dtype) {
    case PIXCON_FLOAT64: return ((const double *)base)[k];
    case PIXCON_FLOAT16:
    case PIXCON_BFLOAT16: return pixcon_16bit_to_float(dtype, ((const uint16_t *)base)[k]);
    case PIXCON_FLOAT32:
    default: return ((const float *)base)[k];
  }
}

/* Stores v at element k of a buffer of the given dtype. */
PIXCON_SHARED_FN void pixcon_store_elem(void *base, pixcon_dtype dtype, int64_t k, double v) {
  switch (dtype) {
    case PIXCON_FLOAT64: ((double *)base)[k] = v; break;
    case PIXCON_FLOAT16:
    case PIXCON_BFLOAT16: ((uint16_t *)base)[k] = pixcon_float_to_16bit(dtype, (float)v); break;
    case PIXCON_FLOAT32:
    default: ((float *)base)[k] = (float)v; break;
  }
}

#endif /* PIXCON_COMMON_CONVERT_H */
