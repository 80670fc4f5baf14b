/* The arithmetic paths of the fused loss kernels and their tile shapes.
 *
 * A path fixes how the similarity tile S = Z_I Z_J^T and the gradient tile dZ_I += W Z_J are computed:
 *   F16, BF16  S on tensor cores (WMMA m16n16k16, fp32 accumulation), W Z on TF32 tensor cores;
 *   TF32       float32 input when the caller allows TF32: both products on TF32 tensor cores;
 *   F32        float32 input, strict: both products by FP32 FMA;
 *   F64        float64 input: both products by FP64 FMA (the plain path).
 * W Z uses TF32 rather than the input's 16-bit type because the weights w_ij = g_i a_ij + g_j a_ji
 * are as small as g / N (g ~ 1 / anchors under a mean reduction): float16 flushes them to zero,
 * TF32 keeps float32's exponent range, and every float16 or bfloat16 value is exact in TF32.
 * Cost: none (types and constants).
 */
#ifndef PIXCON_CUDA_FUSED_KINDS_CUH
#define PIXCON_CUDA_FUSED_KINDS_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>

#include "../common/convert.h"
#include "common.cuh"

namespace pixcon_cuda {

enum class Path { F16, BF16, TF32, F32, F64 };

/* Elem: the packed copy's element (the shared-memory operand of S); Acc: similarities, statistics
 * and the online log-sum-exp; Grad: the W Z operands and the gradient accumulator. */
template <Path P> struct Kind;

/* 16-bit input of dtype D: S on 16-bit tensor cores (WMMA type W); widened exactly to float for W Z. */
template <pixcon_dtype D, class W> struct Kind16 {
  typedef uint16_t Elem;
  typedef float Acc, Grad;
  typedef W Wmma; /* fragment element type and pointer type of WMMA loads */
  typedef W WmmaPtr;
  static constexpr bool kTensor = true;
  static constexpr int kMmaK = 16;
  PIXCON_HD static Elem pack(const void *z, int64_t at) { return ((const uint16_t *)z)[at]; }
  PIXCON_HD static Grad widen(Elem e) { return pixcon_16bit_to_float(D, e); }
  PIXCON_HD static void store(void *out, int64_t at, Grad v) { ((uint16_t *)out)[at] = pixcon_float_to_16bit(D, v); }
};

template <> struct Kind<Path::F16> : Kind16<PIXCON_FLOAT16, __half> {};
template <> struct Kind<Path::BF16> : Kind16<PIXCON_BFLOAT16, __nv_bfloat16> {};

/* The packed copy is rounded to TF32 once, so WMMA loads need no per-fragment conversion. */
template <> struct Kind<Path::TF32> {
  typedef float Elem;
  typedef float Acc, Grad;
  typedef nvcuda::wmma::precision::tf32 Wmma;
  typedef float WmmaPtr;
  static constexpr bool kTensor = true;
  static constexpr int kMmaK = 8;
  __device__ static Elem pack(const void *z, int64_t at) {
    return nvcuda::wmma::__float_to_tf32(((const float *)z)[at]);
  }
  PIXCON_HD static Grad widen(Elem e) { return e; }
  PIXCON_HD static void store(void *out, int64_t at, Grad v) { ((float *)out)[at] = v; }
};

/* float32 (strict) and float64 input: both products by FMA in the input type. */
template <class T> struct KindFma {
  typedef T Elem;
  typedef T Acc, Grad;
  static constexpr bool kTensor = false;
  PIXCON_HD static Elem pack(const void *z, int64_t at) { return ((const T *)z)[at]; }
  PIXCON_HD static Grad widen(Elem e) { return e; }
  PIXCON_HD static void store(void *out, int64_t at, Grad v) { ((T *)out)[at] = v; }
};

template <> struct Kind<Path::F32> : KindFma<float> {};
template <> struct Kind<Path::F64> : KindFma<double> {};

/* A CTA owns kRows anchor rows and streams kCols-row column tiles, each through shared memory in
 * kChunk-wide slices of D; the backward CTA owns kGradCols gradient columns (D above that takes
 * several CTAs per row tile, each recomputing S). kPiece rows of Z_J enter W Z at a time (one TF32
 * k-step). Every warp computes whole 16 x 16 tiles (WMMA), or every thread 4 rows of the tile (FMA). */
template <int BR, int BC, int DK, int DC, int THREADS> struct Shape {
  static constexpr int kRows = BR, kCols = BC, kChunk = DK, kGradCols = DC, kThreads = THREADS;
  static constexpr int kPiece = 8;
  static constexpr int kWarps = THREADS / 32;
  static constexpr int kFoldLanes = THREADS / BR; /* threads that fold one row of S */
  /* WMMA: warp w owns 16-row band w % kBands and column group w / kBands */
  static constexpr int kBands = BR / 16;
  static constexpr int kGroups = kWarps / kBands;
  static constexpr int kSimFrags = BC / 16 / kGroups;
  static constexpr int kGradFrags = DC / 16 / kGroups;
  /* FMA: thread t owns rows 4 (t / kLanes) .. + 3 and columns t % kLanes + kLanes q */
  static constexpr int kLanes = THREADS / (BR / 4);
  static constexpr int kSimCols = BC / kLanes;
  static constexpr int kGradColsPerThread = DC / kLanes;
  static_assert(THREADS % 32 == 0 && THREADS % BR == 0, "whole warps; whole rows per fold group");
  static_assert((kFoldLanes & (kFoldLanes - 1)) == 0 && kFoldLanes <= 32, "fold groups are shuffle groups");
  static_assert(BR % 16 == 0 && BC % 16 == 0 && DC % 16 == 0 && kWarps % kBands == 0, "16 x 16 WMMA tiles");
  static_assert(kSimFrags >= 1 && kGradFrags >= 1 && BC % (16 * kGroups) == 0 && DC % (16 * kGroups) == 0,
                "every warp owns whole fragments");
  static_assert(THREADS % (BR / 4) == 0 && BC % kLanes == 0 && DC % kLanes == 0, "FMA micro-tiles cover the tile");
  static_assert(BC % kPiece == 0 && 32 % DK == 0, "pieces tile BC; D is padded to a multiple of 32");
};

/* D is padded with zeros to a multiple of this, so every slice is whole and 16-byte aligned. */
constexpr int64_t kDimAlign = 32;

/* The tile shapes: the production shape of each path, and a small one (more, partial tiles on
 * small problems) selected by PIXCON_CUDA_TILES_SMALL for tests. */
template <Path P> struct Shapes {
  typedef Shape<64, 64, 32, 256, 256> Default;
  typedef Shape<32, 32, 16, 32, 64> Small;
};
/* float64: half as many columns per slice and per gradient chunk keep shared memory and registers
 * within what a CTA may have. */
template <> struct Shapes<Path::F64> {
  typedef Shape<64, 64, 16, 128, 256> Default;
  typedef Shape<32, 32, 16, 32, 64> Small;
};

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_FUSED_KINDS_CUH */
