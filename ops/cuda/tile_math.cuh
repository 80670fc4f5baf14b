/* The two products of the fused kernels, on one CTA's tiles in shared memory:
 *   similarity_tile: S = Z_I Z_J^T / temperature (kRows x kCols), streamed over D in kChunk-wide
 *     slices, double-buffered with cp.async, on tensor cores (WMMA) or by FMA. The anchor rows Z_I
 *     stay resident in shared memory for the CTA's whole sweep when they fit (load_anchor_rows),
 *     which halves the bytes streamed per tile; otherwise they are streamed with each column tile;
 *   weights_times_z: dZ_I[:, d0 : d0 + kGradCols] += W Z_J, streamed over the tile's columns in
 *     kPiece-row pieces of Z_J, double-buffered the same way.
 * Rows past the bag's end are zero-filled in shared memory, never read from another bag (a NaN
 * there must not leak into this bag through 0 * NaN).
 * Cost per CTA and column tile: kRows kCols Dp multiply-adds for S, kRows kCols kGradCols for W Z;
 * kCols Dp elements (resident anchors; else (kRows + kCols) Dp) and kCols kGradCols for W Z read
 * from L2/HBM.
 */
#ifndef PIXCON_CUDA_TILE_MATH_CUH
#define PIXCON_CUDA_TILE_MATH_CUH

#include <cuda_pipeline_primitives.h>
#include <mma.h>
#include <stdint.h>

#include "common.cuh"
#include "fused_args.cuh"
#include "fused_kinds.cuh"

namespace pixcon_cuda {

template <bool C, class A, class B> struct Select { typedef A type; };
template <class A, class B> struct Select<false, A, B> { typedef B type; };

__host__ __device__ constexpr size_t round128(size_t x) { return (x + 127) / 128 * 128; }
__host__ __device__ constexpr size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Shared memory of one CTA, carved from the dynamic arena: [resident anchor rows] [stream: the two
 * stage buffers, later the two W Z pieces] [S, then W] [row sides] [column sides]. Pitches pad each
 * row by 16 bytes so consecutive rows start in different banks while every 16-row block and every
 * WMMA k-step stays 32-byte aligned, as load_matrix_sync requires. The sizes depend on Dp only
 * through the resident rows, so the host and every CTA compute the same layout from (dp, resident). */
template <class K, class Sh> struct Layout {
  typedef typename K::Elem Elem;
  typedef typename K::Acc Acc;
  typedef typename K::Grad Grad;
  static constexpr int kPitch = Sh::kChunk + (int)(16 / sizeof(Elem));      /* stage rows, in Elem */
  static constexpr int kSPitch = Sh::kCols + (int)(16 / sizeof(Acc));       /* S and W rows, in Acc */
  static constexpr int kPiecePitch = Sh::kGradCols + (int)(16 / sizeof(Grad)); /* piece rows, in Grad */
  static constexpr size_t kPieceElems = (size_t)Sh::kPiece * kPiecePitch;
  int anchor_pitch;   /* resident anchor rows' pitch in Elem; 0 when they are streamed */
  size_t stage_elems; /* one stage buffer: the J slice, after the I slice when I is streamed */
  size_t stream, s, row_sides, col_sides, bytes;

  __host__ __device__ Layout(int64_t dp, bool resident) {
    anchor_pitch = resident ? (int)dp + (int)(16 / sizeof(Elem)) : 0;
    stage_elems = (size_t)(resident ? Sh::kCols : Sh::kRows + Sh::kCols) * kPitch;
    stream = round128((size_t)Sh::kRows * anchor_pitch * sizeof(Elem));
    s = stream + round128(max_size(2 * stage_elems * sizeof(Elem), 2 * kPieceElems * sizeof(Grad)));
    row_sides = s + round128((size_t)Sh::kRows * kSPitch * sizeof(Acc));
    col_sides = row_sides + round128((size_t)Sh::kRows * sizeof(Side<Acc>));
    bytes = col_sides + round128((size_t)Sh::kCols * sizeof(Side<Acc>));
  }
};

/* ---- staging: global -> shared, 16 bytes per cp.async ---- */

/* dst[r][0 .. width) = zs[row0 + r][k0 .. k0 + width) for r < valid, zeros for valid <= r < rows;
 * dst rows `pitch` elements apart. */
template <class K, class Sh>
__device__ __forceinline__ void stage_rows(typename K::Elem *dst, int pitch, const typename K::Elem *zs, int64_t dp,
                                           int64_t row0, int valid, int rows, int64_t k0, int64_t width) {
  constexpr int kVec = (int)(16 / sizeof(typename K::Elem));
  const int64_t units = width / kVec;
  for (int64_t u = threadIdx.x; u < rows * units; u += Sh::kThreads) {
    const int r = (int)(u / units);
    const int64_t c = (u % units) * kVec;
    const bool live = r < valid;
    /* a zero-filled unit reads nothing; any valid global address will do */
    const typename K::Elem *src = live ? zs + (row0 + r) * dp + k0 + c : zs;
    __pipeline_memcpy_async(dst + (int64_t)r * pitch + c, src, 16, live ? 0 : 16);
  }
}

/* The CTA's anchor rows, all of Dp, into the resident region (when the layout has one); waited for. */
template <class K, class Sh>
__device__ __forceinline__ void load_anchor_rows(unsigned char *smem, const Layout<K, Sh> &L, const FusedArgs &a,
                                                 int64_t row0, int rows) {
  if (!L.anchor_pitch) return;
  stage_rows<K, Sh>((typename K::Elem *)smem, L.anchor_pitch, (const typename K::Elem *)a.zs, a.dp, row0, rows,
                    Sh::kRows, 0, a.dp);
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
}

/* Slice k0 of the J rows (after the I rows' slice, when those are streamed) into one stage buffer. */
template <class K, class Sh>
__device__ __forceinline__ void stage_slice(typename K::Elem *buf, const Layout<K, Sh> &L, const FusedArgs &a,
                                            int64_t row0, int rows, int64_t col0, int cols, int64_t k0) {
  typedef Layout<K, Sh> LT;
  const typename K::Elem *zs = (const typename K::Elem *)a.zs;
  if (!L.anchor_pitch) {
    stage_rows<K, Sh>(buf, LT::kPitch, zs, a.dp, row0, rows, Sh::kRows, k0, Sh::kChunk);
    buf += (size_t)Sh::kRows * LT::kPitch;
  }
  stage_rows<K, Sh>(buf, LT::kPitch, zs, a.dp, col0, cols, Sh::kCols, k0, Sh::kChunk);
}

/* piece[k][0 .. kGradCols) = Z[j0 + k][d0 ...] in the gradient type, zero past the bag (k >= valid)
 * or past Dp. 16-bit inputs are widened on the way (exactly), so they go through registers. */
template <class K, class Sh>
__device__ __forceinline__ void stage_piece(typename K::Grad *piece, const FusedArgs &a, int64_t j0, int valid,
                                            int64_t d0) {
  typedef Layout<K, Sh> L;
  typedef typename K::Elem Elem;
  typedef typename K::Grad Grad;
  const Elem *zs = (const Elem *)a.zs;
  if constexpr (sizeof(Elem) == sizeof(Grad)) {
    constexpr int kVec = (int)(16 / sizeof(Grad));
    constexpr int kUnits = Sh::kGradCols / kVec;
    for (int u = threadIdx.x; u < Sh::kPiece * kUnits; u += Sh::kThreads) {
      const int k = u / kUnits, c = (u % kUnits) * kVec;
      const bool live = k < valid && d0 + c < a.dp;
      const Elem *src = live ? zs + (j0 + k) * a.dp + d0 + c : zs;
      __pipeline_memcpy_async(piece + k * L::kPiecePitch + c, src, 16, live ? 0 : 16);
    }
  } else {
    constexpr int kUnits = Sh::kGradCols / 4;
    for (int u = threadIdx.x; u < Sh::kPiece * kUnits; u += Sh::kThreads) {
      const int k = u / kUnits, c = (u % kUnits) * 4;
      Grad *d = piece + k * L::kPiecePitch + c;
      if (k < valid && d0 + c < a.dp) {
        const Elem *s = zs + (j0 + k) * a.dp + d0 + c;
        for (int e = 0; e < 4; ++e) d[e] = K::widen(s[e]);
      } else {
        for (int e = 0; e < 4; ++e) d[e] = 0;
      }
    }
  }
}

/* ---- the accumulators of both products, in registers ---- */

/* Tensor cores: warp w owns the 16-row band w % kBands and the FRAGS 16 x 16 fragments of column group
 * w / kBands. */
template <class Sh, int MMA_K, int FRAGS> struct TensorAcc {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, MMA_K, float> acc[FRAGS];

  __device__ __forceinline__ int band() const { return (threadIdx.x / 32) % Sh::kBands; }
  /* the first column of fragment f */
  __device__ __forceinline__ int col(int f) const { return ((threadIdx.x / 32) / Sh::kBands * FRAGS + f) * 16; }

  __device__ __forceinline__ void clear() {
    for (int f = 0; f < FRAGS; ++f) nvcuda::wmma::fill_fragment(acc[f], 0.0f);
  }
};

/* FMA: thread t owns rows 4 (t / kLanes) .. + 3 and the COLS columns t % kLanes + kLanes q. */
template <class T, class Sh, int COLS> struct FmaAcc {
  T acc[4][COLS];

  __device__ __forceinline__ int row() const { return (threadIdx.x / Sh::kLanes) * 4; }
  __device__ __forceinline__ int lane() const { return threadIdx.x % Sh::kLanes; }

  __device__ __forceinline__ void clear() {
    for (int r = 0; r < 4; ++r)
      for (int q = 0; q < COLS; ++q) acc[r][q] = 0;
  }
};

/* ---- S on tensor cores: warp w computes a 16-row band and kSimFrags 16-column blocks ---- */

template <class K, class Sh> struct SimTensor : TensorAcc<Sh, K::kMmaK, Sh::kSimFrags> {
  typedef Layout<K, Sh> L;

  /* one slice: I rows (row-major, pitch ldi) and J rows (row-major, pitch kPitch) */
  __device__ __forceinline__ void mma(const typename K::Elem *slice_i, int ldi, const typename K::Elem *slice_j) {
    using namespace nvcuda;
    const typename K::WmmaPtr *zi = (const typename K::WmmaPtr *)slice_i + this->band() * 16 * ldi;
    const typename K::WmmaPtr *zj = (const typename K::WmmaPtr *)slice_j;
    for (int k = 0; k < Sh::kChunk; k += K::kMmaK) {
      wmma::fragment<wmma::matrix_a, 16, 16, K::kMmaK, typename K::Wmma, wmma::row_major> fa;
      wmma::load_matrix_sync(fa, zi + k, ldi);
      for (int f = 0; f < Sh::kSimFrags; ++f) {
        /* B = Z_J^T: element (k, c) of B is Z_J[c][k], column-major in the stage */
        wmma::fragment<wmma::matrix_b, 16, 16, K::kMmaK, typename K::Wmma, wmma::col_major> fb;
        wmma::load_matrix_sync(fb, zj + this->col(f) * L::kPitch + k, L::kPitch);
        wmma::mma_sync(this->acc[f], fa, fb, this->acc[f]);
      }
    }
  }

  __device__ __forceinline__ void store(float *S, float scale) {
    for (int f = 0; f < Sh::kSimFrags; ++f) {
      for (int e = 0; e < this->acc[f].num_elements; ++e) this->acc[f].x[e] *= scale;
      nvcuda::wmma::store_matrix_sync(S + this->band() * 16 * L::kSPitch + this->col(f), this->acc[f], L::kSPitch,
                                      nvcuda::wmma::mem_row_major);
    }
  }
};

/* ---- S by FMA ---- */

template <class K, class Sh> struct SimFma : FmaAcc<typename K::Acc, Sh, Sh::kSimCols> {
  typedef Layout<K, Sh> L;
  typedef typename K::Acc Acc;

  __device__ __forceinline__ void mma(const typename K::Elem *slice_i, int ldi, const typename K::Elem *slice_j) {
    const typename K::Elem *zi = slice_i + this->row() * ldi;
    const typename K::Elem *zj = slice_j + this->lane() * L::kPitch;
    for (int k = 0; k < Sh::kChunk; ++k) {
      Acc x[4], y[Sh::kSimCols];
      for (int r = 0; r < 4; ++r) x[r] = zi[r * ldi + k];
      for (int q = 0; q < Sh::kSimCols; ++q) y[q] = zj[q * Sh::kLanes * L::kPitch + k];
      for (int r = 0; r < 4; ++r)
        for (int q = 0; q < Sh::kSimCols; ++q) this->acc[r][q] += x[r] * y[q];
    }
  }

  __device__ __forceinline__ void store(Acc *S, Acc scale) {
    for (int r = 0; r < 4; ++r)
      for (int q = 0; q < Sh::kSimCols; ++q)
        S[(this->row() + r) * L::kSPitch + this->lane() + q * Sh::kLanes] = this->acc[r][q] * scale;
  }
};

template <class K, class Sh> struct SimMath {
  typedef typename Select<K::kTensor, SimTensor<K, Sh>, SimFma<K, Sh> >::type type;
};

/* S of rows [row0, row0 + rows) against columns [col0, col0 + cols) into S (pitch kSPitch), scaled
 * by 1 / temperature. Ends with S written by each thread; the caller synchronises before reading. */
template <class K, class Sh>
__device__ __forceinline__ void similarity_tile(typename SimMath<K, Sh>::type &sim, unsigned char *smem,
                                                const Layout<K, Sh> &L, const FusedArgs &a, int64_t row0, int rows,
                                                int64_t col0, int cols) {
  typedef Layout<K, Sh> LT;
  typedef typename K::Elem Elem;
  Elem *stage = (Elem *)(smem + L.stream);
  const Elem *anchors = (const Elem *)smem;
  const int64_t slices = a.dp / Sh::kChunk;
  sim.clear();
  stage_slice<K, Sh>(stage, L, a, row0, rows, col0, cols, 0);
  __pipeline_commit();
  for (int64_t s = 0; s < slices; ++s) {
    /* the buffer refilled here was last read before the previous iteration's closing barrier */
    if (s + 1 < slices) {
      stage_slice<K, Sh>(stage + ((s + 1) & 1) * L.stage_elems, L, a, row0, rows, col0, cols, (s + 1) * Sh::kChunk);
      __pipeline_commit();
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    const Elem *buf = stage + (s & 1) * L.stage_elems;
    if (L.anchor_pitch) sim.mma(anchors + s * Sh::kChunk, L.anchor_pitch, buf);
    else sim.mma(buf, LT::kPitch, buf + (size_t)Sh::kRows * LT::kPitch);
    __syncthreads();
  }
  sim.store((typename K::Acc *)(smem + L.s), (typename K::Acc)a.scale);
}

/* ---- W Z on TF32 tensor cores: warp w owns a 16-row band and kGradFrags 16-column blocks ---- */

template <class K, class Sh> struct GradTensor : TensorAcc<Sh, 8, Sh::kGradFrags> {
  typedef Layout<K, Sh> L;

  /* acc += W[:, k0 : k0 + kPiece] piece; blocks at or past `cols` (the chunk's width) are all zero */
  __device__ __forceinline__ void mma(const float *W, int k0, const float *piece, int cols) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, W + this->band() * 16 * L::kSPitch + k0, L::kSPitch);
    for (int e = 0; e < fa.num_elements; ++e) fa.x[e] = wmma::__float_to_tf32(fa.x[e]);
    for (int f = 0; f < Sh::kGradFrags; ++f) {
      if (this->col(f) >= cols) break;
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
      wmma::load_matrix_sync(fb, piece + this->col(f), L::kPiecePitch);
      wmma::mma_sync(this->acc[f], fa, fb, this->acc[f]);
    }
  }

  /* grad[row0 + r][d0 + c] = scale acc for r < rows, d0 + c < dim; through a 16 x 16 scratch per warp
   * (the fragment layout is opaque) that the caller guarantees is free */
  __device__ __forceinline__ void store(float *scratch, const FusedArgs &a, int64_t row0, int rows, int64_t d0,
                                        float scale) {
    const int lane = threadIdx.x % 32;
    float *mine = scratch + (threadIdx.x / 32) * 256;
    for (int f = 0; f < Sh::kGradFrags; ++f) {
      for (int e = 0; e < this->acc[f].num_elements; ++e) this->acc[f].x[e] *= scale;
      nvcuda::wmma::store_matrix_sync(mine, this->acc[f], 16, nvcuda::wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = this->band() * 16 + e / 16;
        const int64_t c = d0 + this->col(f) + e % 16;
        if (r < rows && c < a.dim) K::store(a.grad, (row0 + r) * a.dim + c, mine[e]);
      }
      __syncwarp();
    }
  }
};

/* ---- W Z by FMA ---- */

template <class K, class Sh> struct GradFma : FmaAcc<typename K::Grad, Sh, Sh::kGradColsPerThread> {
  typedef Layout<K, Sh> L;
  typedef typename K::Grad Grad;

  __device__ __forceinline__ void mma(const Grad *W, int k0, const Grad *piece, int cols) {
    (void)cols; /* zero columns cost what the loop costs; no divergent skip */
    for (int k = 0; k < Sh::kPiece; ++k) {
      Grad w[4];
      for (int r = 0; r < 4; ++r) w[r] = W[(this->row() + r) * L::kSPitch + k0 + k];
      for (int q = 0; q < Sh::kGradColsPerThread; ++q) {
        const Grad z = piece[k * L::kPiecePitch + this->lane() + q * Sh::kLanes];
        for (int r = 0; r < 4; ++r) this->acc[r][q] += w[r] * z;
      }
    }
  }

  __device__ __forceinline__ void store(Grad *scratch, const FusedArgs &a, int64_t row0, int rows, int64_t d0,
                                        Grad scale) {
    (void)scratch;
    const int row = this->row();
    for (int r = 0; r < 4; ++r)
      for (int q = 0; q < Sh::kGradColsPerThread; ++q) {
        const int64_t c = d0 + this->lane() + q * Sh::kLanes;
        if (row + r < rows && c < a.dim) K::store(a.grad, (row0 + row + r) * a.dim + c, this->acc[r][q] * scale);
      }
  }
};

template <class K, class Sh> struct GradMath {
  typedef typename Select<K::kTensor, GradTensor<K, Sh>, GradFma<K, Sh> >::type type;
};

/* grad += W (in the S buffer) times Z_J[:, d0 : d0 + kGradCols], over the tile's `cols` columns. */
template <class K, class Sh>
__device__ __forceinline__ void weights_times_z(typename GradMath<K, Sh>::type &grad, unsigned char *smem,
                                                const Layout<K, Sh> &L, const FusedArgs &a, int64_t col0, int cols,
                                                int64_t d0) {
  typedef Layout<K, Sh> LT;
  typedef typename K::Grad Grad;
  Grad *pieces = (Grad *)(smem + L.stream);
  const Grad *W = (const Grad *)(smem + L.s);
  const int width = a.dp - d0 < Sh::kGradCols ? (int)(a.dp - d0) : Sh::kGradCols;
  const int count = (cols + Sh::kPiece - 1) / Sh::kPiece;
  stage_piece<K, Sh>(pieces, a, col0, cols, d0);
  __pipeline_commit();
  for (int p = 0; p < count; ++p) {
    const int k0 = p * Sh::kPiece;
    if (p + 1 < count) {
      stage_piece<K, Sh>(pieces + ((p + 1) & 1) * LT::kPieceElems, a, col0 + k0 + Sh::kPiece,
                         cols - k0 - Sh::kPiece, d0);
      __pipeline_commit();
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    grad.mma(W, k0, pieces + (p & 1) * LT::kPieceElems, width);
    __syncthreads();
  }
}

}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_TILE_MATH_CUH */
