/* Faithfulness test of the emulation's cuBLAS stand-in: cublasGemmEx (every transpose pair, padded
 * leading dimensions, alpha/beta, every operand type the kernels use, TF32) against a naive row-major matmul.
 * Cost: O(cases * m n k), well under a second. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "../c/test_rng.h"

namespace {

int failures = 0;

/* Values exactly representable in every operand type (multiples of 1/8 in [-2, 2]). */
double small_value() { return (below(33) - 16) / 8.0; }

void store(void *base, cudaDataType t, size_t k, double v) {
  float f = (float)v;
  uint32_t u;
  memcpy(&u, &f, 4);
  switch (t) {
    case CUDA_R_64F: ((double *)base)[k] = v; break;
    case CUDA_R_32F: ((float *)base)[k] = f; break;
    case CUDA_R_16BF: ((uint16_t *)base)[k] = (uint16_t)(u >> 16); break; /* exact for these values */
    case CUDA_R_16F: {
      if (f == 0) {
        ((uint16_t *)base)[k] = (uint16_t)((u >> 16) & 0x8000u);
        break;
      }
      uint32_t e = (u >> 23) & 0xff;
      ((uint16_t *)base)[k] = (uint16_t)(((u >> 16) & 0x8000u) | ((e - 112) << 10) | ((u >> 13) & 0x3ffu));
      break;
    }
    default: break;
  }
}

size_t tsize(cudaDataType t) { return t == CUDA_R_64F ? 8 : t == CUDA_R_32F ? 4 : 2; }

/* One GEMM: logical op(A) [m x k], op(B) [k x n] as row-major host matrices, stored column-major
 * (transposed when trans is set) with padded leading dimensions. */
void run(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, cudaDataType ab,
         cublasComputeType_t ct, double alpha, double beta, int pad) {
  std::vector<double> opA(m * k), opB(k * n), C0(m * n);
  for (auto &v : opA) v = small_value();
  for (auto &v : opB) v = small_value();
  for (auto &v : C0) v = small_value();
  int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
  int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
  int lda = a_rows + pad, ldb = b_rows + (pad ? pad + 1 : 0), ldc = m + pad * 2;
  if (lda < 1) lda = 1;
  if (ldb < 1) ldb = 1;
  if (ldc < 1) ldc = 1;
  cudaDataType ctype = ct == CUBLAS_COMPUTE_64F ? CUDA_R_64F : CUDA_R_32F;
  size_t as = (size_t)lda * (a_cols ? a_cols : 1), bs = (size_t)ldb * (b_cols ? b_cols : 1), cs = (size_t)ldc * (n ? n : 1);
  std::vector<unsigned char> hA(as * tsize(ab)), hB(bs * tsize(ab)), hC(cs * tsize(ctype));
  for (size_t x = 0; x < as; ++x) store(hA.data(), ab, x, NAN);  /* padding must not be read */
  for (size_t x = 0; x < bs; ++x) store(hB.data(), ab, x, NAN);
  for (size_t x = 0; x < cs; ++x) store(hC.data(), ctype, x, 12345.0);
  for (int i = 0; i < m; ++i)
    for (int l = 0; l < k; ++l) /* op(A)[i][l] */
      store(hA.data(), ab, ta == CUBLAS_OP_N ? (size_t)l * lda + i : (size_t)i * lda + l, opA[i * k + l]);
  for (int l = 0; l < k; ++l)
    for (int j = 0; j < n; ++j) /* op(B)[l][j] */
      store(hB.data(), ab, tb == CUBLAS_OP_N ? (size_t)j * ldb + l : (size_t)l * ldb + j, opB[l * n + j]);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) store(hC.data(), ctype, (size_t)j * ldc + i, beta == 0 ? NAN : C0[i * n + j]);
  void *dA, *dB, *dC;
  cudaMalloc(&dA, hA.size());
  cudaMalloc(&dB, hB.size());
  cudaMalloc(&dC, hC.size());
  cudaMemcpy(dA, hA.data(), hA.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dB, hB.data(), hB.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(dC, hC.data(), hC.size(), cudaMemcpyHostToDevice);
  double a64 = alpha, b64 = beta;
  float a32 = (float)alpha, b32 = (float)beta;
  const void *pa = ct == CUBLAS_COMPUTE_64F ? (const void *)&a64 : (const void *)&a32;
  const void *pb = ct == CUBLAS_COMPUTE_64F ? (const void *)&b64 : (const void *)&b32;
  cublasStatus_t st = cublasGemmEx(h, ta, tb, m, n, k, pa, dA, ab, lda, dB, ab, ldb, pb, dC, ctype, ldc, ct,
                                   CUBLAS_GEMM_DEFAULT);
  cudaMemcpy(hC.data(), dC, hC.size(), cudaMemcpyDeviceToHost);
  if (st != CUBLAS_STATUS_SUCCESS) {
    fprintf(stderr, "FAIL gemm status %d (ta=%d tb=%d m=%d n=%d k=%d)\n", (int)st, ta, tb, m, n, k);
    ++failures;
  } else {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double want = 0; /* exact: small dyadic values */
        for (int l = 0; l < k; ++l) want += opA[i * k + l] * opB[l * n + j];
        want = alpha * want + (beta == 0 ? 0 : beta * C0[i * n + j]);
        size_t at = (size_t)j * ldc + i;
        double got = ctype == CUDA_R_64F ? ((double *)hC.data())[at] : ((float *)hC.data())[at];
        if (!(fabs(got - want) <= 1e-6 * (1 + fabs(want)))) {
          if (failures < 20)
            fprintf(stderr, "FAIL ta=%d tb=%d m=%d n=%d k=%d type=%d C[%d,%d]: got %g want %g\n", ta, tb, m, n, k,
                    (int)ab, i, j, got, want);
          ++failures;
        }
      }
    /* padding rows of C untouched */
    for (int j = 0; j < n; ++j)
      for (int i = m; i < ldc; ++i) {
        size_t at = (size_t)j * ldc + i;
        double got = ctype == CUDA_R_64F ? ((double *)hC.data())[at] : ((float *)hC.data())[at];
        if (got != 12345.0) {
          ++failures;
          fprintf(stderr, "FAIL C padding written at (%d, %d)\n", i, j);
        }
      }
  }
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dC);
}

void expect_status(const char *what, cublasStatus_t got, cublasStatus_t want) {
  if (got != want) {
    fprintf(stderr, "FAIL %s: status %d, want %d\n", what, (int)got, (int)want);
    ++failures;
  }
}

}  // namespace

int main() {
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 2;
  const cublasOperation_t ops[] = {CUBLAS_OP_N, CUBLAS_OP_T};
  struct {
    cudaDataType ab;
    cublasComputeType_t ct;
  } types[] = {{CUDA_R_64F, CUBLAS_COMPUTE_64F},
               {CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC},
               {CUDA_R_32F, CUBLAS_COMPUTE_32F},
               {CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32},
               {CUDA_R_16F, CUBLAS_COMPUTE_32F},
               {CUDA_R_16BF, CUBLAS_COMPUTE_32F}};
  int cases = 0;
  for (auto ta : ops)
    for (auto tb : ops)
      for (auto &t : types)
        for (int rep = 0; rep < 6; ++rep) {
          int m = 1 + below(9), n = 1 + below(9), k = 1 + below(12), pad = rep % 3;
          double alpha = rep == 0 ? 1.0 : (below(9) - 4) / 4.0, beta = rep % 2 ? 0.0 : (below(9) - 4) / 4.0;
          run(h, ta, tb, m, n, k, t.ab, t.ct, alpha, beta, pad);
          ++cases;
        }
  /* exactly the shapes contrastive.cu uses: S^T = op_T(Z_J) Z_I (T, N) and dz^T = Z_J W^T (N, N) */
  run(h, CUBLAS_OP_T, CUBLAS_OP_N, 13, 5, 7, CUDA_R_16F, CUBLAS_COMPUTE_32F, 1.0 / 0.25, 0.0, 3);
  run(h, CUBLAS_OP_N, CUBLAS_OP_N, 7, 5, 13, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC, 2.0, 0.0, 3);
  cases += 2;
  /* argument checks as documented */
  float one = 1, zero = 0;
  void *d;
  cudaMalloc(&d, 4096);
  expect_status("lda < m (N)", cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, &one, d, CUDA_R_32F, 3, d, CUDA_R_32F, 3, &zero, d, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), CUBLAS_STATUS_INVALID_VALUE);
  expect_status("lda < k (T)", cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 4, 2, 3, &one, d, CUDA_R_32F, 2, d, CUDA_R_32F, 3, &zero, d, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), CUBLAS_STATUS_INVALID_VALUE);
  expect_status("ldb < n (T)", cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, 4, 5, 3, &one, d, CUDA_R_32F, 4, d, CUDA_R_32F, 4, &zero, d, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), CUBLAS_STATUS_INVALID_VALUE);
  expect_status("ldc < m", cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 2, 3, &one, d, CUDA_R_32F, 4, d, CUDA_R_32F, 3, &zero, d, CUDA_R_32F, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), CUBLAS_STATUS_INVALID_VALUE);
  expect_status("16F with 64F compute", cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, d, CUDA_R_16F, 2, d, CUDA_R_16F, 2, &zero, d, CUDA_R_32F, 2, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT), CUBLAS_STATUS_NOT_SUPPORTED);
  expect_status("null handle", cublasGemmEx(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, d, CUDA_R_32F, 2, d, CUDA_R_32F, 2, &zero, d, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), CUBLAS_STATUS_NOT_INITIALIZED);
  cudaFree(d);
  cublasDestroy(h);
  printf("%d gemm cases, %d mismatches\n", cases, failures);
  return failures ? 1 : 0;
}
