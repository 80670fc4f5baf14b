/* CUDA forward and backward of the fused contrastive loss (pixcon_cuda.h): per bag, blocks of rows
 * against all columns of the bag via a cuBLAS GEMM into a bounded workspace, reduced by small kernels.
 * Cost per bag of n rows: forward n^2 D MACs + ~n^2 exps; backward 2 n^2 D MACs; memory O(N D + R n). */
#include <cublas_v2.h>
#include <cub/block/block_reduce.cuh>
#include <stdio.h>

#include "../cpu/message.h"
#include "common.cuh"
#include "pixcon/pixcon_cuda.h"

namespace pixcon_cuda {

constexpr int kRowThreads = 128;  /* threads per row-reduction block */
constexpr int kWeightRows = 4;    /* rows of S per backward-weights block (see RowInfo) */
constexpr int kElemThreads = 256; /* threads per block of the element-wise kernels */
constexpr int64_t kMaxElemBlocks = 4096;

/* ---- element-wise kernels ---- */

/* Packs the strided embeddings into a contiguous [N, D] copy in the input dtype (zc, element
 * size esize) and, when zf is not NULL, a float32 copy (the backward GEMM operand for 16-bit input). */
__global__ void pack_kernel(const void *z, int dtype, int esize, int64_t n, int64_t dim,
                            int64_t row_stride, int64_t col_stride, void *zc, float *zf) {
  int64_t total = n * dim, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step) {
    int64_t r = k / dim, d = k - r * dim, src = r * row_stride + d * col_stride;
    if (esize == 8) ((double *)zc)[k] = ((const double *)z)[src];
    else if (esize == 4) ((float *)zc)[k] = ((const float *)z)[src];
    else ((uint16_t *)zc)[k] = ((const uint16_t *)z)[src];
    if (zf) zf[k] = (float)load_as_double(z, dtype, src);
  }
}

/* grad[k] = dz[k] in a 16-bit dtype (2: float16, 3: bfloat16), k < count. */
__global__ void store_16bit_kernel(const float *dz, int dtype, int64_t count, uint16_t *grad) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += step)
    grad[k] = dtype == 2 ? float_to_half_bits(dz[k]) : float_to_bf16_bits(dz[k]);
}

/* ---- forward reduction: one block per row of the row block ---- */

/* Online log-sum-exp of the LSE set plus the positive count and sum, mergeable in any order. */
template <class T> struct LseState {
  T m, s, pos;
  int npos;
};

template <class T> struct LseMerge {
  __device__ __forceinline__ LseState<T> operator()(const LseState<T> &a, const LseState<T> &b) const {
    LseState<T> r;
    r.m = a.m > b.m ? a.m : b.m;
    T sa = a.m == neg_inf<T>() ? (T)0 : a.s * px_exp(a.m - r.m);
    T sb = b.m == neg_inf<T>() ? (T)0 : b.s * px_exp(b.m - r.m);
    r.s = sa + sb;
    r.pos = a.pos + b.pos;
    r.npos = a.npos + b.npos;
    return r;
  }
};

template <class T> struct PairSums {
  T softplus, sigmoid;
};

template <class T> struct PairAdd {
  __device__ __forceinline__ PairSums<T> operator()(const PairSums<T> &a, const PairSums<T> &b) const {
    PairSums<T> r;
    r.softplus = a.softplus + b.softplus;
    r.sigmoid = a.sigmoid + b.sigmoid;
    return r;
  }
};

/* S: row-major [rows, ld] similarities (already divided by the temperature) of rows
 * row0 + blockIdx.x against the bag's columns bag0 .. bag0 + bag_n - 1. */
template <class T>
__global__ void __launch_bounds__(kRowThreads)
forward_rows_kernel(const T *S, int64_t ld, int64_t row0, int64_t bag0, int64_t bag_n, RowSets sets,
                    T *loss, uint8_t *valid, T *stats) {
  typedef cub::BlockReduce<LseState<T>, kRowThreads> LseReduce;
  typedef cub::BlockReduce<PairSums<T>, kRowThreads> PairReduce;
  __shared__ typename LseReduce::TempStorage lse_storage;
  __shared__ typename PairReduce::TempStorage pair_storage;
  __shared__ T shared_lse;
  __shared__ int shared_npos;

  const int64_t i = row0 + blockIdx.x;
  const T *s = S + (int64_t)blockIdx.x * ld;
  if (!sets.is_anchor(i)) { /* uniform over the block */
    if (threadIdx.x == 0) {
      loss[i] = 0;
      valid[i] = 0;
      stats[i * PIXCON_NUM_STATS + 0] = neg_inf<T>();
      stats[i * PIXCON_NUM_STATS + 1] = 0;
      stats[i * PIXCON_NUM_STATS + 2] = 0;
    }
    return;
  }
  const int64_t yi = sets.labels[i], imi = sets.image ? sets.image[i] : 0;

  LseState<T> st;
  st.m = neg_inf<T>();
  st.s = 0;
  st.pos = 0;
  st.npos = 0;
  for (int64_t c = threadIdx.x; c < bag_n; c += kRowThreads) {
    int64_t j = bag0 + c;
    bool pos = sets.positive(i, yi, j);
    bool in_lse = sets.negative(i, yi, imi, j) || (!sets.pair && pos);
    T v = s[c];
    if (pos) {
      st.pos += v;
      st.npos += 1;
    }
    if (in_lse) {
      if (v > st.m) {
        st.s = (st.m == neg_inf<T>() ? (T)0 : st.s * px_exp(st.m - v)) + (T)1;
        st.m = v;
      } else {
        st.s += px_exp(v - st.m);
      }
    }
  }
  LseState<T> total = LseReduce(lse_storage).Reduce(st, LseMerge<T>());
  if (threadIdx.x == 0) {
    shared_lse = total.s > 0 ? total.m + px_log(total.s) : neg_inf<T>();
    shared_npos = total.npos;
  }
  __syncthreads();
  const T lse = shared_lse;
  const int npos = shared_npos;

  PairSums<T> ps;
  ps.softplus = 0;
  ps.sigmoid = 0;
  if (sets.pair && npos > 0 && lse != neg_inf<T>()) { /* uniform over the block */
    for (int64_t c = threadIdx.x; c < bag_n; c += kRowThreads) {
      if (!sets.positive(i, yi, bag0 + c)) continue;
      T x = lse - s[c];
      ps.softplus += softplus(x);
      ps.sigmoid += sigmoid(x);
    }
    ps = PairReduce(pair_storage).Reduce(ps, PairAdd<T>());
  }
  if (threadIdx.x == 0) {
    bool ok = npos >= 1;
    valid[i] = (uint8_t)ok;
    loss[i] = !ok ? (T)0 : sets.pair ? ps.softplus / (T)npos : lse - total.pos / (T)npos;
    stats[i * PIXCON_NUM_STATS + 0] = lse;
    stats[i * PIXCON_NUM_STATS + 1] = ok && sets.pair ? ps.sigmoid / (T)npos : (T)0;
    stats[i * PIXCON_NUM_STATS + 2] = (T)npos;
  }
}

/* ---- backward weights: S becomes W, w_ij = g_i dl_i/ds_ij + g_j dl_j/ds_ji ---- */

/* dl_a/ds for anchor a with statistics (stat, w, invp) against one column. */
template <class T>
__device__ __forceinline__ T slope(bool pair, bool pos, bool neg, T s, T stat, T w, T invp) {
  T a = 0;
  if (!pair) {
    if (pos || neg) a += px_exp(s - stat);
    if (pos) a -= invp;
  } else {
    if (neg) a += w * px_exp(s - stat);
    if (pos && stat != neg_inf<T>()) a -= invp * sigmoid(stat - s);
  }
  return a;
}

template <class T>
__device__ __forceinline__ T upstream(const RowSets &sets, const T *grad_loss, const T *stats, int64_t r) {
  return sets.is_anchor(r) && stats[r * PIXCON_NUM_STATS + 2] >= 1 ? grad_loss[r] : (T)0;
}

/* An anchor row's part of w_ij, staged in shared memory by one thread and read by all: each
 * column's own data (label, image, stats) is then loaded once per kWeightRows rows, not per row. */
template <class T> struct RowInfo {
  int64_t label, image;
  bool contrast;
  T g, stat, w, invp;
};

/* j in P(i) / N(i) from the staged data of anchor a = i and column c = j (as RowSets does). */
template <class T>
__device__ __forceinline__ bool staged_positive(const RowSets &sets, int64_t i, const RowInfo<T> &a, int64_t j,
                                                const RowInfo<T> &c) {
  return i == j ? sets.self_positive != 0 : c.contrast && c.label == a.label;
}
template <class T>
__device__ __forceinline__ bool staged_negative(const RowSets &sets, int64_t i, const RowInfo<T> &a, int64_t j,
                                                const RowInfo<T> &c) {
  return i != j && c.contrast && c.label != a.label && (!sets.image || c.image == a.image);
}

template <class T>
__device__ __forceinline__ RowInfo<T> row_info(const RowSets &sets, const T *grad_loss, const T *stats,
                                               int64_t r) {
  RowInfo<T> a;
  a.label = sets.labels[r];
  a.image = sets.image ? sets.image[r] : 0;
  a.contrast = sets.is_contrast(r);
  a.g = upstream(sets, grad_loss, stats, r);
  a.stat = a.w = a.invp = 0;
  if (a.g != 0) {
    a.stat = stats[r * PIXCON_NUM_STATS + 0];
    a.w = stats[r * PIXCON_NUM_STATS + 1];
    a.invp = (T)1 / stats[r * PIXCON_NUM_STATS + 2];
  }
  return a;
}

/* Rows first .. first + kWeightRows - 1 of the row block (S rows, global rows row0 + ...). */
template <class T>
__global__ void __launch_bounds__(kRowThreads)
backward_weights_kernel(T *S, int64_t ld, int64_t row0, int64_t rows, int64_t bag0, int64_t bag_n,
                        RowSets sets, const T *grad_loss, const T *stats) {
  __shared__ RowInfo<T> info[kWeightRows];
  const int64_t first = (int64_t)blockIdx.x * kWeightRows;
  const int nrows = rows - first < kWeightRows ? (int)(rows - first) : kWeightRows;
  if ((int)threadIdx.x < nrows) info[threadIdx.x] = row_info(sets, grad_loss, stats, row0 + first + threadIdx.x);
  __syncthreads();
  for (int64_t c = threadIdx.x; c < bag_n; c += kRowThreads) {
    const int64_t j = bag0 + c;
    const RowInfo<T> col = row_info(sets, grad_loss, stats, j);
    for (int r = 0; r < nrows; ++r) {
      const RowInfo<T> &a = info[r];
      const int64_t i = row0 + first + r;
      T *s = S + (first + r) * ld;
      const T v = s[c];
      T wij = 0;
      if (a.g != 0)
        wij += a.g * slope(sets.pair != 0, staged_positive(sets, i, a, j, col),
                           staged_negative(sets, i, a, j, col), v, a.stat, a.w, a.invp);
      if (col.g != 0)
        wij += col.g * slope(sets.pair != 0, staged_positive(sets, j, col, i, a),
                             staged_negative(sets, j, col, i, a), v, col.stat, col.w, col.invp);
      s[c] = wij;
    }
  }
}

/* ---- host side ---- */

struct Layout {
  int64_t max_bag, ld, rows;
  size_t off_zc, off_zf, off_s, off_dz, total;
};

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

static size_t elem_size(int dtype) { return dtype == PIXCON_FLOAT64 ? 8 : dtype == PIXCON_FLOAT32 ? 4 : 2; }

static bool is_16bit(int dtype) { return dtype == PIXCON_FLOAT16 || dtype == PIXCON_BFLOAT16; }

static Layout compute_layout(const pixcon_cuda_loss_params *q, int backward) {
  const pixcon_loss_params *p = &q->base;
  Layout l;
  l.max_bag = 0;
  for (int64_t b = 0; b < p->num_bags; ++b) {
    int64_t n = p->bag_offsets[b + 1] - p->bag_offsets[b];
    if (n > l.max_bag) l.max_bag = n;
  }
  l.ld = l.max_bag < 1 ? 1 : (l.max_bag + 3) / 4 * 4;
  size_t acc = p->dtype == PIXCON_FLOAT64 ? 8 : 4, nd = (size_t)p->num_rows * (size_t)p->dim;
  bool f16 = backward && is_16bit(p->dtype);
  size_t fixed = align256(nd * elem_size(p->dtype)) + (f16 ? align256(nd * 4) : 0) + 256 /* slack */;
  size_t per_row = (size_t)l.ld * acc + (f16 ? (size_t)p->dim * 4 : 0);
  size_t limit = q->workspace_limit ? q->workspace_limit : PIXCON_CUDA_DEFAULT_WORKSPACE_LIMIT;
  /* two align256 roundings of the per-row regions cost at most 2 * 255 bytes */
  size_t room = limit > fixed + 512 ? limit - fixed - 512 : 0;
  int64_t rows = (int64_t)(room / per_row);
  if (rows > l.max_bag) rows = l.max_bag;
  if (rows > 2147483647) rows = 2147483647;
  if (rows < 1) rows = 1;
  l.rows = rows;
  size_t at = 0;
  l.off_zc = at;
  at += align256(nd * elem_size(p->dtype));
  l.off_zf = at;
  at += f16 ? align256(nd * 4) : 0;
  l.off_s = at;
  at += align256((size_t)rows * (size_t)l.ld * acc);
  l.off_dz = at;
  at += f16 ? align256((size_t)rows * (size_t)p->dim * 4) : 0;
  l.total = at + 256;
  return l;
}

static cudaDataType data_type(int dtype) {
  switch (dtype) {
    case PIXCON_FLOAT64: return CUDA_R_64F;
    case PIXCON_FLOAT16: return CUDA_R_16F;
    case PIXCON_BFLOAT16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

/* Compute type of a GEMM whose operands are `dtype` (accumulating in float32 / float64). */
static cublasComputeType_t compute_type(int dtype, int allow_tf32) {
  if (dtype == PIXCON_FLOAT64) return CUBLAS_COMPUTE_64F;
  if (dtype == PIXCON_FLOAT32) return allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC;
  return CUBLAS_COMPUTE_32F; /* 16-bit operands, float32 accumulation (tensor cores) */
}

static RowSets row_sets(const pixcon_loss_params *p) {
  RowSets s;
  s.labels = p->labels;
  s.anchor = p->anchor_mask;
  s.contrast = p->contrast_mask;
  s.image = p->image_ids;
  s.ignore_index = p->ignore_index;
  s.self_positive = p->self_positive != 0;
  s.pair = p->denominator == PIXCON_DENOMINATOR_PAIR;
  return s;
}

static unsigned elem_blocks(int64_t count) {
  int64_t b = (count + kElemThreads - 1) / kElemThreads;
  if (b > kMaxElemBlocks) b = kMaxElemBlocks;
  return (unsigned)(b < 1 ? 1 : b);
}

/* S[rows, ld] (row-major) = Z[r0 : r0 + rows] Z[b0 : b0 + n]^T / temperature.
 * Column-major view: S^T (n x rows, ld) = op_T(Zc_J) (n x D) * Zc_I (D x rows); Zc is
 * column-major D x N with leading dimension D. */
static cublasStatus_t similarity_gemm(const pixcon_cuda_loss_params *q, const void *zc, int64_t r0,
                                      int64_t rows, int64_t b0, int64_t n, void *S, int64_t ld) {
  const pixcon_loss_params *p = &q->base;
  size_t es = elem_size(p->dtype);
  const char *z = (const char *)zc;
  if (p->dtype == PIXCON_FLOAT64) {
    double alpha = 1.0 / p->temperature, beta = 0;
    return cublasGemmEx(q->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)rows, (int)p->dim, &alpha,
                        z + (size_t)b0 * p->dim * es, CUDA_R_64F, (int)p->dim,
                        z + (size_t)r0 * p->dim * es, CUDA_R_64F, (int)p->dim, &beta, S, CUDA_R_64F,
                        (int)ld, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT);
  }
  float alpha = (float)(1.0 / p->temperature), beta = 0;
  cudaDataType t = data_type(p->dtype);
  return cublasGemmEx(q->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)rows, (int)p->dim, &alpha,
                      z + (size_t)b0 * p->dim * es, t, (int)p->dim, z + (size_t)r0 * p->dim * es, t,
                      (int)p->dim, &beta, S, CUDA_R_32F, (int)ld,
                      compute_type(p->dtype, q->allow_tf32), CUBLAS_GEMM_DEFAULT);
}

/* dz[rows, D] (row-major, ld D) = W[rows, n] (row-major, ld) Z[b0 : b0 + n] / temperature.
 * Column-major view: dz^T (D x rows) = Zf_J (D x n, ld D) * W^T (n x rows, ld). */
static cublasStatus_t gradient_gemm(const pixcon_cuda_loss_params *q, const void *zf, int64_t rows,
                                    int64_t b0, int64_t n, const void *W, int64_t ld, void *dz) {
  const pixcon_loss_params *p = &q->base;
  if (p->dtype == PIXCON_FLOAT64) {
    double alpha = 1.0 / p->temperature, beta = 0;
    return cublasGemmEx(q->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)p->dim, (int)rows, (int)n, &alpha,
                        (const double *)zf + b0 * p->dim, CUDA_R_64F, (int)p->dim, W, CUDA_R_64F,
                        (int)ld, &beta, dz, CUDA_R_64F, (int)p->dim, CUBLAS_COMPUTE_64F,
                        CUBLAS_GEMM_DEFAULT);
  }
  float alpha = (float)(1.0 / p->temperature), beta = 0;
  return cublasGemmEx(q->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)p->dim, (int)rows, (int)n, &alpha,
                      (const float *)zf + b0 * p->dim, CUDA_R_32F, (int)p->dim, W, CUDA_R_32F, (int)ld,
                      &beta, dz, CUDA_R_32F, (int)p->dim, compute_type(PIXCON_FLOAT32, q->allow_tf32),
                      CUBLAS_GEMM_DEFAULT);
}

static char *aligned_base(void *workspace) {
  return (char *)(((uintptr_t)workspace + 255) & ~(uintptr_t)255);
}

static pixcon_status launched() { return cudaGetLastError() == cudaSuccess ? PIXCON_OK : PIXCON_ERROR_CUDA; }

static pixcon_status pack(const pixcon_cuda_loss_params *q, const Layout &l, char *base, bool f32_copy) {
  const pixcon_loss_params *p = &q->base;
  int64_t count = p->num_rows * p->dim;
  PIXCON_LAUNCH(elem_blocks(count), kElemThreads, 0, q->stream, pack_kernel)
  (p->embeddings, (int)p->dtype, (int)elem_size(p->dtype), p->num_rows, p->dim, p->row_stride,
   p->col_stride, (void *)(base + l.off_zc), f32_copy ? (float *)(base + l.off_zf) : (float *)NULL);
  return launched();
}

/* For every row block of every bag: S = the block's similarities against its bag (one GEMM),
 * then step(S, r0, rows, b0, n) with global rows r0 .. r0 + rows - 1 of the bag b0 .. b0 + n - 1. */
template <class T, class Step>
static pixcon_status for_each_row_block(const pixcon_cuda_loss_params *q, const Layout &l, char *base, Step step) {
  const pixcon_loss_params *p = &q->base;
  T *S = (T *)(base + l.off_s);
  for (int64_t b = 0; b < p->num_bags; ++b) {
    int64_t b0 = p->bag_offsets[b], n = p->bag_offsets[b + 1] - b0;
    for (int64_t r0 = b0; r0 < b0 + n; r0 += l.rows) {
      int64_t rows = b0 + n - r0 < l.rows ? b0 + n - r0 : l.rows;
      if (similarity_gemm(q, base + l.off_zc, r0, rows, b0, n, S, l.ld) != CUBLAS_STATUS_SUCCESS)
        return PIXCON_ERROR_CUBLAS;
      pixcon_status st = step(S, r0, rows, b0, n);
      if (st != PIXCON_OK) return st;
    }
  }
  return PIXCON_OK;
}

template <class T>
static pixcon_status forward_impl(const pixcon_cuda_loss_params *q, T *loss, uint8_t *valid, T *stats,
                                  char *base, const Layout &l) {
  pixcon_status st = pack(q, l, base, false);
  if (st != PIXCON_OK) return st;
  RowSets sets = row_sets(&q->base);
  return for_each_row_block<T>(q, l, base, [&](T *S, int64_t r0, int64_t rows, int64_t b0, int64_t n) {
    PIXCON_LAUNCH((unsigned)rows, kRowThreads, 0, q->stream, forward_rows_kernel<T>)
    (S, l.ld, r0, b0, n, sets, loss, valid, stats);
    return launched();
  });
}

template <class T>
static pixcon_status backward_impl(const pixcon_cuda_loss_params *q, const T *grad_loss, const T *stats,
                                   void *grad, char *base, const Layout &l) {
  const pixcon_loss_params *p = &q->base;
  bool f16 = is_16bit(p->dtype);
  pixcon_status st = pack(q, l, base, f16);
  if (st != PIXCON_OK) return st;
  const void *zf = f16 ? (const void *)(base + l.off_zf) : (const void *)(base + l.off_zc);
  RowSets sets = row_sets(p);
  return for_each_row_block<T>(q, l, base, [&](T *S, int64_t r0, int64_t rows, int64_t b0, int64_t n) {
    unsigned blocks = (unsigned)((rows + kWeightRows - 1) / kWeightRows);
    PIXCON_LAUNCH(blocks, kRowThreads, 0, q->stream, backward_weights_kernel<T>)
    (S, l.ld, r0, rows, b0, n, sets, grad_loss, stats);
    if (launched() != PIXCON_OK) return PIXCON_ERROR_CUDA;
    /* 16-bit gradients go through a float32 block, rounded once at the end */
    void *dz = f16 ? (void *)(base + l.off_dz) : (void *)((T *)grad + r0 * p->dim);
    if (gradient_gemm(q, zf, rows, b0, n, S, l.ld, dz) != CUBLAS_STATUS_SUCCESS) return PIXCON_ERROR_CUBLAS;
    if (!f16) return PIXCON_OK;
    int64_t count = rows * p->dim;
    PIXCON_LAUNCH(elem_blocks(count), kElemThreads, 0, q->stream, store_16bit_kernel)
    ((const float *)dz, (int)p->dtype, count, (uint16_t *)grad + r0 * p->dim);
    return launched();
  });
}

}  // namespace pixcon_cuda

using namespace pixcon_cuda;

extern "C" {

pixcon_status pixcon_cuda_loss_params_check(const pixcon_cuda_loss_params *q, char *message, size_t size) {
  if (message && size > 0) message[0] = '\0';
  if (!q) return pixcon_invalid_argument(message, size, "params is NULL");
  const pixcon_loss_params *p = &q->base;
  pixcon_status st = pixcon_loss_params_check_shape(p, message, size);  /* offsets on the host */
  if (st != PIXCON_OK) return st;
  for (int64_t b = 0; b < p->num_bags; ++b)
    if (p->bag_offsets[b + 1] - p->bag_offsets[b] > 2147483647)
      return pixcon_invalid_argument(message, size, "bag %lld has more than 2^31 - 1 rows (cuBLAS int sizes)", (long long)b);
  if (p->dim > 2147483647) return pixcon_invalid_argument(message, size, "embeddings: D must be < 2^31");
  if (p->num_rows > 0 && !q->cublas) return pixcon_invalid_argument(message, size, "cublas handle is NULL");
  return PIXCON_OK;
}

int64_t pixcon_cuda_rows_per_block(const pixcon_cuda_loss_params *q, int backward) {
  return compute_layout(q, backward).rows;
}

size_t pixcon_cuda_forward_workspace_size(const pixcon_cuda_loss_params *q) {
  if (pixcon_cuda_loss_params_check(q, NULL, 0) != PIXCON_OK) return 0;
  return compute_layout(q, 0).total;
}

size_t pixcon_cuda_backward_workspace_size(const pixcon_cuda_loss_params *q) {
  if (pixcon_cuda_loss_params_check(q, NULL, 0) != PIXCON_OK) return 0;
  return compute_layout(q, 1).total;
}

pixcon_status pixcon_cuda_contrastive_forward(const pixcon_cuda_loss_params *q, void *loss, uint8_t *valid,
                                              void *stats, void *workspace, size_t workspace_size) {
  pixcon_status st = pixcon_cuda_loss_params_check(q, NULL, 0);
  if (st != PIXCON_OK) return st;
  if (q->base.num_rows == 0) return PIXCON_OK;
  Layout l = compute_layout(q, 0);
  if (!workspace || workspace_size < l.total) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  if (cublasSetStream(q->cublas, q->stream) != CUBLAS_STATUS_SUCCESS) return PIXCON_ERROR_CUBLAS;
  char *base = aligned_base(workspace);
  if (q->base.dtype == PIXCON_FLOAT64)
    return forward_impl<double>(q, (double *)loss, valid, (double *)stats, base, l);
  return forward_impl<float>(q, (float *)loss, valid, (float *)stats, base, l);
}

pixcon_status pixcon_cuda_contrastive_backward(const pixcon_cuda_loss_params *q, const void *grad_loss,
                                               const void *stats, void *grad_embeddings, void *workspace,
                                               size_t workspace_size) {
  pixcon_status st = pixcon_cuda_loss_params_check(q, NULL, 0);
  if (st != PIXCON_OK) return st;
  if (q->base.num_rows == 0) return PIXCON_OK;
  Layout l = compute_layout(q, 1);
  if (!workspace || workspace_size < l.total) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  if (cublasSetStream(q->cublas, q->stream) != CUBLAS_STATUS_SUCCESS) return PIXCON_ERROR_CUBLAS;
  char *base = aligned_base(workspace);
  if (q->base.dtype == PIXCON_FLOAT64)
    return backward_impl<double>(q, (const double *)grad_loss, (const double *)stats, grad_embeddings, base, l);
  return backward_impl<float>(q, (const float *)grad_loss, (const float *)stats, grad_embeddings, base, l);
}

}  /* extern "C" */
