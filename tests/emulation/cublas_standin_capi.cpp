/* C entry point to the emulation's cuBLAS stand-in for tests/test_emulation_cublas.py (ctypes), which
 * checks it against torch.matmul. Host buffers in, host buffer out: the operands go through the
 * emulated device memory (cudaMalloc/cudaMemcpy of pixcon_emu.cpp) and cublasGemmEx is called as
 * ops/cuda/contrastive.cu calls it (host alpha/beta: double for CUBLAS_COMPUTE_64F, float otherwise).
 *
 * transa/transb: cublasOperation_t; a_type (A and B), c_type: cudaDataType; compute_type:
 * cublasComputeType_t; values as in the real CUDA headers. Buffers hold the whole column-major
 * matrices: ld * cols elements (A: lda * (transa ? m : k), B: ldb * (transb ? k : n), C: ldc * n).
 * Returns the cublasStatus_t of cublasGemmEx, or -1 when an emulated CUDA call failed. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>

namespace {

size_t type_size(int t) { return t == CUDA_R_64F ? 8 : t == CUDA_R_32F ? 4 : 2; }

/* A device copy of a host buffer (at least one byte, so that empty matrices still get a pointer). */
void *to_device(const void *host, size_t bytes) {
  void *dev = nullptr;
  if (cudaMalloc(&dev, bytes ? bytes : 1) != cudaSuccess) return nullptr;
  if (bytes && cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
    cudaFree(dev);
    return nullptr;
  }
  return dev;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int pixcon_emu_gemm(
    int transa, int transb, int m, int n, int k, double alpha, const void *A, int lda, const void *B, int ldb,
    double beta, void *C, int ldc, int a_type, int c_type, int compute_type) {
  if (m < 0 || n < 0 || k < 0 || lda < 0 || ldb < 0 || ldc < 0) return -1;
  size_t a_cols = transa != CUBLAS_OP_N ? m : k, b_cols = transb != CUBLAS_OP_N ? k : n;
  size_t a_bytes = (size_t)lda * a_cols * type_size(a_type), b_bytes = (size_t)ldb * b_cols * type_size(a_type),
         c_bytes = (size_t)ldc * n * type_size(c_type);
  void *dA = to_device(A, a_bytes), *dB = to_device(B, b_bytes), *dC = to_device(C, c_bytes);
  cublasHandle_t handle = nullptr;
  int status = -1;
  if (dA && dB && dC && cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS) {
    bool f64 = compute_type == CUBLAS_COMPUTE_64F || compute_type == CUBLAS_COMPUTE_64F_PEDANTIC;
    double alpha64 = alpha, beta64 = beta;
    float alpha32 = (float)alpha, beta32 = (float)beta;
    status = cublasGemmEx(handle, (cublasOperation_t)transa, (cublasOperation_t)transb, m, n, k,
                          f64 ? (const void *)&alpha64 : (const void *)&alpha32, dA, (cudaDataType)a_type, lda, dB,
                          (cudaDataType)a_type, ldb, f64 ? (const void *)&beta64 : (const void *)&beta32, dC,
                          (cudaDataType)c_type, ldc, (cublasComputeType_t)compute_type, CUBLAS_GEMM_DEFAULT);
    if (c_bytes && cudaMemcpy(C, dC, c_bytes, cudaMemcpyDeviceToHost) != cudaSuccess) status = -1;
    cublasDestroy(handle);
  }
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dC);
  return status;
}
