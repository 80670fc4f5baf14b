/*
 * Width-generic SIMD vocabulary for the CPU kernels: GCC vector extensions, so one source
 * compiles to AVX-512, AVX2 or baseline code depending on the flags of the file including it.
 * The includer defines REAL (float or double) and VLANES (lanes per vector) first.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SIMD_CAT2(a, b) a##b
#define SIMD_CAT(a, b) SIMD_CAT2(a, b)

#if REAL_IS_DOUBLE
typedef int64_t ireal;
typedef uint64_t ureal;
#define REAL_MANT_BITS 52
#define REAL_EXP_BIAS 1023
#define REAL_EXP_MIN (-708.0)
#else
typedef int32_t ireal;
typedef uint32_t ureal;
#define REAL_MANT_BITS 23
#define REAL_EXP_BIAS 127
#define REAL_EXP_MIN (-87.0f)
#endif

typedef REAL vreal __attribute__((vector_size(VLANES * sizeof(REAL))));
typedef ireal vmask __attribute__((vector_size(VLANES * sizeof(REAL))));
typedef ureal vbits __attribute__((vector_size(VLANES * sizeof(REAL))));

static inline vreal vload(const REAL *p) {
  vreal v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void vstore(REAL *p, vreal v) { memcpy(p, &v, sizeof v); }

static inline vreal vset1(REAL x) { return (vreal){0} + x; }

/* Lane-wise m ? a : b, with m from a vector comparison (all-ones or all-zeros lanes). */
static inline vreal vselect(vmask m, vreal a, vreal b) {
  return (vreal)((m & (vmask)a) | (~m & (vmask)b));
}

/* Maxima propagate NaN (a NaN similarity must reach the loss, not vanish in a comparison). */
static inline vreal vmax(vreal a, vreal b) { return vselect((a > b) | (a != a), a, b); }

static inline REAL hsum(vreal v) {
  REAL s = 0;
  for (int k = 0; k < VLANES; ++k) s += v[k];
  return s;
}

static inline REAL hmax(vreal v) {
  REAL m = v[0];
  for (int k = 1; k < VLANES; ++k) m = (v[k] > m || v[k] != v[k]) ? v[k] : m;
  return m;
}

/* exp(r) for |r| <= ln2 / 2: a Taylor polynomial whose truncation error is below half an ulp of
 * REAL (degree 13 for double, 7 for float); 1/k! from k = degree down to 0, each the correctly
 * rounded REAL quotient of exact integers. */
static inline vreal vexp_taylor(vreal r) {
#if REAL_IS_DOUBLE
  static const REAL taylor[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                1.0 / 24.0,         1.0 / 6.0,         0.5, 1.0, 1.0};
#else
  static const REAL taylor[] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                1.0f / 6.0f,    0.5f,          1.0f,          1.0f};
#endif
  vreal p = vset1(taylor[0]);
  for (size_t k = 1; k < sizeof taylor / sizeof taylor[0]; ++k) p = p * r + taylor[k];
  return p;
}

/* exp(x) for x <= 0 (the kernels only exponentiate differences to a running maximum);
 * -inf and anything below the underflow bound give 0. Cody-Waite reduction
 * x = k ln2 + r, |r| <= ln2/2, then vexp_taylor. */
static inline vreal vexp_neg(vreal x) {
  const REAL log2e = (REAL)1.4426950408889634;
  const REAL ln2_hi = (REAL)0.693145751953125;
  const REAL ln2_lo = (REAL)1.42860682030941723212e-6;
  vmask underflow = x < (REAL)REAL_EXP_MIN;
  x = vselect(underflow, vset1((REAL)0), x);
  vreal kf = x * log2e;
  kf = __builtin_convertvector(__builtin_convertvector(kf - (REAL)0.5, vmask), vreal);
  vreal r = x - kf * ln2_hi - kf * ln2_lo;
  vreal p = vexp_taylor(r);
  vmask k = __builtin_convertvector(kf, vmask);
  vreal scale = (vreal)((k + REAL_EXP_BIAS) << REAL_MANT_BITS);
  return vselect(underflow, vset1((REAL)0), p * scale);
}

/* exp(x) for REAL_EXP_MIN <= x <= 1, the range the fixed-shift tiles guarantee, so there is no
 * underflow test and no float-to-int conversion: adding 1.5 * 2^mantissa_bits rounds x log2(e) to
 * the nearest integer k and leaves k in the low bits of the sum. Same reduction and polynomial as
 * vexp_neg; about 12 vector operations instead of 17. */
static inline vreal vexp_bounded(vreal x) {
  const REAL log2e = (REAL)1.4426950408889634;
  const REAL ln2_hi = (REAL)0.693145751953125;
  const REAL ln2_lo = (REAL)1.42860682030941723212e-6;
  const REAL magic = (REAL)(1.5 * (double)((ireal)1 << REAL_MANT_BITS));
  vreal shifted = x * log2e + magic;
  vreal kf = shifted - magic;
  vbits k = (vbits)shifted - (vbits)vset1(magic); /* k modulo 2^bits: only its low bits matter */
  vreal r = x - kf * ln2_hi - kf * ln2_lo;
  return (vreal)((vbits)vexp_taylor(r) + (k << REAL_MANT_BITS));
}

/* log1p(t) for t in [0, 1]: log((1+w)/(1-w)) = 2 atanh(w) with w = t / (2 + t) in [0, 1/3],
 * summed as an odd series; exact to rounding for tiny t as well. */
static inline vreal vlog1p_unit(vreal t) {
  vreal w = t / (t + (REAL)2);
  vreal w2 = w * w;
#if REAL_IS_DOUBLE
  vreal p = vset1(1.0 / 33.0);
  for (int k = 31; k >= 3; k -= 2) p = p * w2 + (REAL)1 / (REAL)k;
#else
  vreal p = vset1(1.0f / 17.0f);
  for (int k = 15; k >= 3; k -= 2) p = p * w2 + (REAL)1 / (REAL)k;
#endif
  p = p * w2 + (REAL)1;
  return (REAL)2 * w * p;
}
