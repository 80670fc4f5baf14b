/* Stand-in for mma.h (nvcuda::wmma) under the CPU emulation: the shapes pixcon's kernels use,
 * m16n16k16 with __half or __nv_bfloat16 inputs and m16n16k8 with precision::tf32 inputs, both with a
 * float accumulator.
 * CUDA leaves the element-to-lane layout of a fragment unspecified, so here each fragment kind (use,
 * memory layout, k) has its own fixed scrambled bijection (lane, element) -> (row, col): a kernel that
 * assumes a layout gets wrong results, one that only goes through load/store/fill/mma or treats every
 * element alike works. Each lane holds rows * cols / 32 elements.
 * Checks (abort): pointers 32-byte aligned, ldm a multiple of 16 bytes, mma_sync by every lane of a
 * full warp. Arithmetic: 16-bit inputs exactly in float, tf32 inputs with their low 13 mantissa bits
 * cleared (what the tensor core reads), products summed in float in ascending k, then added to c.
 * Loads and stores are per lane, no warp barrier: a lane's shared-memory writes need a __syncwarp or
 * __syncthreads before another lane's load_matrix_sync reads them, as on a GPU.
 * Cost: O(elements per lane) per load/store/fill; mma_sync is one warp rendezvous plus 16 * k
 * multiply-adds per accumulator element of the lane. */
#ifndef PIXCON_EMU_MMA_H
#define PIXCON_EMU_MMA_H

#include <stdint.h>

#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "pixcon_emu.h"

namespace nvcuda {
namespace wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}

enum layout_t { mem_row_major, mem_col_major };

/* cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 explicit mantissa bits (the low 13
 * bits become zero); inf and nan unchanged. Sign-magnitude bits: adding half a unit to the magnitude
 * and truncating rounds halfway cases away from zero, and past the largest finite value gives inf. */
inline float __float_to_tf32(float in) {
  const uint32_t u = __float_as_uint(in);
  if ((u & 0x7f800000u) == 0x7f800000u) return in;
  return __uint_as_float((u + 0x1000u) & ~0x1fffu);
}

}  // namespace wmma
}  // namespace nvcuda

namespace pixcon_emu {
namespace wmma_detail {

/* A fragment element type: its storage in x[], what a load reads, the value the tensor core uses. */
template <class T> struct Element;
template <> struct Element<__half> {
  typedef __half storage, memory;
  static float value(__half h) { return half_to_float(h.__x); }
};
template <> struct Element<__nv_bfloat16> {
  typedef __nv_bfloat16 storage, memory;
  static float value(__nv_bfloat16 b) { return bf16_to_float(b.__x); }
};
template <> struct Element<nvcuda::wmma::precision::tf32> {
  typedef float storage, memory;
  static float value(float f) { return __uint_as_float(__float_as_uint(f) & ~0x1fffu); }
};
template <> struct Element<float> {
  typedef float storage, memory;
  static float value(float f) { return f; }
};

/* A fragment kind: its matrix (rows x cols), whether it is supported, and its layout. */
template <class Use, int M, int N, int K, class T, class Layout> struct Kind {
  static constexpr bool is_a = std::is_same<Use, nvcuda::wmma::matrix_a>::value;
  static constexpr bool is_b = std::is_same<Use, nvcuda::wmma::matrix_b>::value;
  static constexpr bool is_acc = std::is_same<Use, nvcuda::wmma::accumulator>::value;
  static constexpr bool row_major = std::is_same<Layout, nvcuda::wmma::row_major>::value;
  static constexpr bool input_ok =
      (K == 16 && (std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value)) ||
      (K == 8 && std::is_same<T, nvcuda::wmma::precision::tf32>::value);
  static constexpr bool supported =
      M == 16 && N == 16 &&
      ((is_a || is_b) ? input_ok && (row_major || std::is_same<Layout, nvcuda::wmma::col_major>::value)
                      : is_acc && (K == 16 || K == 8) && std::is_same<T, float>::value &&
                            std::is_same<Layout, void>::value);
  static constexpr int rows = is_b ? K : M;
  static constexpr int cols = is_a ? K : N;
  static constexpr int size = rows * cols, per_lane = size / 32;

  /* Position (row * cols + col) of element e of a lane: i = lane * per_lane + e, xorshifted, times an
   * odd multiplier plus a nonzero offset modulo size (a power of two), which is a bijection; the
   * constants come from a hash of (use, layout, k), so every kind differs and lane 0's x[0] is never
   * element (0, 0). */
  static constexpr unsigned hash =
      ((is_a ? 1u : is_b ? 2u : 3u) * 7u + (row_major ? 3u : 0u) + (unsigned)K) * 2654435761u;
  static constexpr unsigned mul = (hash >> 7) | 1u;
  static constexpr unsigned add = (hash >> 17) % (unsigned)(size - 1) + 1u;
  static int position(unsigned lane, int e) {
    unsigned i = lane * (unsigned)per_lane + (unsigned)e;
    i ^= i >> 3;
    return (int)((mul * i + add) & (unsigned)(size - 1));
  }
};

/* Where element e of lane `lane`'s fragment F lies in memory: element (r, c) of the matrix at
 * r * ldm + c (row-major) or c * ldm + r (column-major). */
template <class F> size_t offset(unsigned lane, int e, unsigned ldm, bool row_major) {
  const int at = F::position(lane, e), r = at / F::cols, c = at % F::cols;
  return row_major ? (size_t)r * ldm + c : (size_t)c * ldm + r;
}

template <class Memory> void check_access(const char *api, const void *p, unsigned ldm) {
  if ((uintptr_t)p % 32 != 0) misuse(api, "the pointer is not 32-byte (256-bit) aligned");
  if ((size_t)ldm * sizeof(Memory) % 16 != 0) misuse(api, "ldm is not a multiple of 16 bytes");
}

}  // namespace wmma_detail
}  // namespace pixcon_emu

namespace nvcuda {
namespace wmma {

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
  static_assert(::pixcon_emu::wmma_detail::Kind<Use, M, N, K, T, Layout>::supported,
                "emulated WMMA: m16n16k16 with __half/__nv_bfloat16 and m16n16k8 with precision::tf32 inputs "
                "(row_major or col_major), float accumulators (no layout)");
  typedef typename ::pixcon_emu::wmma_detail::Element<T>::storage storage_element_type;
  static constexpr int num_elements = ::pixcon_emu::wmma_detail::Kind<Use, M, N, K, T, Layout>::per_lane;
  storage_element_type x[num_elements];
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f,
                          const typename fragment<Use, M, N, K, T, Layout>::storage_element_type &v) {
  for (auto &e : f.x) e = v;
}

/* matrix_a (M x K) or matrix_b (K x N) from p: element (r, c) at p[r * ldm + c] (row_major) or
 * p[c * ldm + r] (col_major). */
template <class Use, int M, int N, int K, class T, class Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f,
                             const typename ::pixcon_emu::wmma_detail::Element<T>::memory *p, unsigned ldm) {
  typedef ::pixcon_emu::wmma_detail::Kind<Use, M, N, K, T, Layout> F;
  static_assert(!F::is_acc, "an accumulator load takes a layout_t");
  ::pixcon_emu::wmma_detail::check_access<typename ::pixcon_emu::wmma_detail::Element<T>::memory>(
      "wmma::load_matrix_sync", p, ldm);
  const unsigned lane = ::pixcon_emu::warp_lane();
  for (int e = 0; e < F::per_lane; ++e)
    f.x[e] = p[::pixcon_emu::wmma_detail::offset<F>(lane, e, ldm, F::row_major)];
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm,
                             layout_t layout) {
  typedef ::pixcon_emu::wmma_detail::Kind<accumulator, M, N, K, float, void> F;
  ::pixcon_emu::wmma_detail::check_access<float>("wmma::load_matrix_sync", p, ldm);
  const unsigned lane = ::pixcon_emu::warp_lane();
  for (int e = 0; e < F::per_lane; ++e)
    f.x[e] = p[::pixcon_emu::wmma_detail::offset<F>(lane, e, ldm, layout == mem_row_major)];
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm,
                              layout_t layout) {
  typedef ::pixcon_emu::wmma_detail::Kind<accumulator, M, N, K, float, void> F;
  ::pixcon_emu::wmma_detail::check_access<float>("wmma::store_matrix_sync", p, ldm);
  const unsigned lane = ::pixcon_emu::warp_lane();
  for (int e = 0; e < F::per_lane; ++e)
    p[::pixcon_emu::wmma_detail::offset<F>(lane, e, ldm, layout == mem_row_major)] = f.x[e];
}

/* d = a b + c for the warp; d may be c. */
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
  typedef ::pixcon_emu::wmma_detail::Kind<matrix_a, M, N, K, T, LA> A;
  typedef ::pixcon_emu::wmma_detail::Kind<matrix_b, M, N, K, T, LB> B;
  typedef ::pixcon_emu::wmma_detail::Kind<accumulator, M, N, K, float, void> C;
  typedef ::pixcon_emu::wmma_detail::Element<T> E;
  const unsigned lane = ::pixcon_emu::warp_lane();
  int a_at[A::per_lane], b_at[B::per_lane], c_at[C::per_lane];
  float a_value[A::per_lane], b_value[B::per_lane], c_value[C::per_lane], out[C::per_lane];
  for (int e = 0; e < A::per_lane; ++e) {
    a_at[e] = A::position(lane, e);
    a_value[e] = E::value(a.x[e]);
  }
  for (int e = 0; e < B::per_lane; ++e) {
    b_at[e] = B::position(lane, e);
    b_value[e] = E::value(b.x[e]);
  }
  for (int e = 0; e < C::per_lane; ++e) {
    c_at[e] = C::position(lane, e);
    c_value[e] = c.x[e];
  }
  ::pixcon_emu::warp_mma(N, K, {A::per_lane, a_at, a_value}, {B::per_lane, b_at, b_value},
                         {C::per_lane, c_at, c_value}, out);
  for (int e = 0; e < C::per_lane; ++e) d.x[e] = out[e];
}

}  // namespace wmma
}  // namespace nvcuda

#endif /* PIXCON_EMU_MMA_H */
