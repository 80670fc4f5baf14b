/* Runtime of the CPU emulation: grid execution with real threads and a checked block barrier,
 * cudaMalloc'd memory (poisoned, registered for range checks), copies, errors, and the cuBLAS GEMMs.
 * Cost: persistent worker threads (one per thread of a block) run the blocks in order; GEMM is naive O(m n k). */
#include <atomic>
#include <memory>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <stdio.h>
#include <stdlib.h>

#include "cublas_v2.h"
#include "pixcon_emu.h"

namespace pixcon_emu {

static thread_local Geometry current_geometry;
Geometry &geometry() { return current_geometry; }
namespace {

thread_local cudaError_t last_error = cudaSuccess;
long long launches = 0;

[[noreturn]] void die(const char *what) {
  fprintf(stderr, "pixcon CUDA emulation: %s\n", what);
  abort();
}

/* ---- block barrier: all threads of the block meet (futex-based: waiters sleep on the generation
 * counter). A thread that leaves the kernel while others wait in __syncthreads (a divergent barrier,
 * undefined on a GPU) aborts the run. ---- */
enum arrival { ARRIVE_SYNC = 1, ARRIVE_EXIT = 2 };

class Barrier {
 public:
  explicit Barrier(unsigned count) : count_(count) {}
  void wait(int kind) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    kinds_.fetch_or(kind, std::memory_order_relaxed);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      if (kinds_.load(std::memory_order_relaxed) != kind)
        die("__syncthreads reached by only part of a block (divergent barrier)");
      kinds_.store(0, std::memory_order_relaxed);
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      generation_.notify_all();
      return;
    }
    while (generation_.load(std::memory_order_acquire) == gen) generation_.wait(gen, std::memory_order_acquire);
  }

 private:
  unsigned count_;
  std::atomic<unsigned> arrived_{0};
  std::atomic<int> kinds_{0};
  std::atomic<uint32_t> generation_{0};
};

thread_local Barrier *block_barrier = nullptr;

/* ---- device allocations ---- */
std::mutex alloc_mutex;
std::map<uintptr_t, size_t> allocations; /* start -> size */

}  // namespace

bool is_device_range(const void *p, size_t bytes) {
  std::lock_guard<std::mutex> lock(alloc_mutex);
  uintptr_t a = (uintptr_t)p;
  auto it = allocations.upper_bound(a);
  if (it == allocations.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second && a + bytes >= a;
}

long long launch_count() { return launches; }

namespace {

/* One launch: the body every thread runs for every block, and the geometry. */
struct Job {
  thread_body body;
  void *context;
  dim3 grid, block;
  unsigned long long blocks;
  Barrier *barrier;
};

/* Persistent workers, one per thread of the largest block launched so far; worker t plays thread t
 * of every block of a launch, the blocks in order. */
class Pool {
 public:
  ~Pool() {
    stop_ = true;
    for (auto &w : workers_) {
      w->go.fetch_add(1);
      w->go.notify_one();
    }
    for (auto &w : workers_) w->thread.join();
  }

  void run(const Job &job, unsigned threads) {
    std::lock_guard<std::mutex> lock(launch_mutex_); /* one launch at a time */
    while (workers_.size() < threads) {
      workers_.emplace_back(new Worker);
      Worker *w = workers_.back().get();
      unsigned id = (unsigned)workers_.size() - 1;
      w->thread = std::thread([this, w, id] { loop(w, id); });
    }
    job_ = job;
    remaining_.store(threads);
    for (unsigned t = 0; t < threads; ++t) {
      workers_[t]->go.fetch_add(1, std::memory_order_release);
      workers_[t]->go.notify_one();
    }
    for (unsigned left; (left = remaining_.load(std::memory_order_acquire)) != 0;)
      remaining_.wait(left, std::memory_order_acquire);
  }

 private:
  struct Worker {
    std::atomic<uint32_t> go{0};
    std::thread thread;
  };

  void loop(Worker *w, unsigned t) {
    uint32_t seen = 0;
    for (;;) {
      uint32_t now;
      while ((now = w->go.load(std::memory_order_acquire)) == seen) w->go.wait(seen, std::memory_order_acquire);
      seen = now;
      if (stop_) return;
      const Job &job = job_;
      blockDim = uint3{job.block.x, job.block.y, job.block.z};
      gridDim = uint3{job.grid.x, job.grid.y, job.grid.z};
      threadIdx.x = t % job.block.x;
      threadIdx.y = t / job.block.x % job.block.y;
      threadIdx.z = t / (job.block.x * job.block.y);
      block_barrier = job.barrier;
      for (unsigned long long b = 0; b < job.blocks; ++b) {
        blockIdx.x = (unsigned)(b % job.grid.x);
        blockIdx.y = (unsigned)(b / job.grid.x % job.grid.y);
        blockIdx.z = (unsigned)(b / ((unsigned long long)job.grid.x * job.grid.y));
        job.body(job.context);
        job.barrier->wait(ARRIVE_EXIT); /* the block ends when all its threads have left the kernel */
      }
      block_barrier = nullptr;
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_all();
    }
  }

  std::mutex launch_mutex_;
  std::vector<std::unique_ptr<Worker>> workers_;
  Job job_{};
  std::atomic<unsigned> remaining_{0};
  std::atomic<bool> stop_{false};
};

Pool &pool() {
  static Pool p;
  return p;
}

}  // namespace

void run_grid(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, thread_body body, void *context) {
  (void)stream; /* the emulation is synchronous: launches run in issue order */
  unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
      shared_bytes != 0 /* dynamic shared memory is not emulated */) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  ++launches;
  Barrier barrier((unsigned)threads);
  Job job{body, context, grid, block, (unsigned long long)grid.x * grid.y * grid.z, &barrier};
  pool().run(job, (unsigned)threads);
}

}  // namespace pixcon_emu

using namespace pixcon_emu;

extern "C" {

void __syncthreads(void) {
  if (!block_barrier) die("__syncthreads called outside a kernel");
  block_barrier->wait(ARRIVE_SYNC);
}

cudaError_t cudaMalloc(void **ptr, size_t size) {
  if (!ptr) return last_error = cudaErrorInvalidValue;
  size_t rounded = (size + 255) / 256 * 256;
  void *p = aligned_alloc(256, rounded ? rounded : 256);
  if (!p) return last_error = cudaErrorMemoryAllocation;
  memset(p, 0xff, rounded ? rounded : 256); /* poison: NaN as floats, -1 as integers */
  std::lock_guard<std::mutex> lock(alloc_mutex);
  allocations[(uintptr_t)p] = size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
  if (!ptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(alloc_mutex);
    auto it = allocations.find((uintptr_t)ptr);
    if (it == allocations.end()) return last_error = cudaErrorInvalidValue;
    allocations.erase(it);
  }
  free(ptr);
  return cudaSuccess;
}

static bool copy_ok(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  if (count == 0) return true;
  bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault) return true;
  if (dst_dev && !is_device_range(dst, count)) return false;
  if (src_dev && !is_device_range(src, count)) return false;
  return true;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  if (!copy_ok(dst, src, count, kind)) return last_error = cudaErrorInvalidValue;
  if (count) memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  (void)stream;
  return cudaMemcpy(dst, src, count, kind);
}

cudaError_t cudaMemset(void *ptr, int value, size_t count) {
  if (count && !is_device_range(ptr, count)) return last_error = cudaErrorInvalidValue;
  if (count) memset(ptr, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream) {
  (void)stream;
  return cudaMemset(ptr, value, count);
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) {
  static char token[64];
  static int next = 0;
  if (!stream) return last_error = cudaErrorInvalidValue;
  *stream = (cudaStream_t)(void *)&token[1 + (next++ % 63)];
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) { (void)stream; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t stream) { (void)stream; return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaGetLastError(void) {
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "unknown error";
  }
}

/* ---------------- cuBLAS ---------------- */

struct cublasContext {
  cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext{nullptr};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (stream) *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

static float emu_half_to_float(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp((double)(m | 0x400), e - 25);
  return (float)((h & 0x8000) ? -v : v);
}

static float emu_bf16_to_float(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

/* TF32: 10 explicit mantissa bits, round to nearest even (as the FAST_TF32 down-conversion). */
static float round_tf32(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u) return f;
  u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
  return __uint_as_float(u);
}

static double load(const void *base, cudaDataType t, size_t k) {
  switch (t) {
    case CUDA_R_64F: return ((const double *)base)[k];
    case CUDA_R_32F: return ((const float *)base)[k];
    case CUDA_R_16F: return emu_half_to_float(((const uint16_t *)base)[k]);
    case CUDA_R_16BF: return emu_bf16_to_float(((const uint16_t *)base)[k]);
  }
  return NAN;
}

static size_t type_size(cudaDataType t) { return t == CUDA_R_64F ? 8 : t == CUDA_R_32F ? 4 : 2; }

/* Column-major rows x cols matrix with leading dimension ld must lie in device memory. */
static void check_matrix(const char *name, const void *p, cudaDataType t, int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return;
  size_t bytes = ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * type_size(t);
  if (!is_device_range(p, bytes)) {
    fprintf(stderr, "pixcon CUDA emulation: cublasGemmEx operand %s (%d x %d, ld %d) is not inside one cudaMalloc allocation\n",
            name, rows, cols, ld);
    abort();
  }
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  (void)algo;
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T && transa != CUBLAS_OP_C) ||
      (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T && transb != CUBLAS_OP_C))
    return CUBLAS_STATUS_INVALID_VALUE;
  bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N; /* real types: C == T */
  int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
  auto at_least_1 = [](int x) { return x > 1 ? x : 1; };
  if (m < 0 || n < 0 || k < 0 || lda < at_least_1(a_rows) || ldb < at_least_1(b_rows) || ldc < at_least_1(m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  bool f64 = computeType == CUBLAS_COMPUTE_64F || computeType == CUBLAS_COMPUTE_64F_PEDANTIC;
  bool f32 = computeType == CUBLAS_COMPUTE_32F || computeType == CUBLAS_COMPUTE_32F_PEDANTIC ||
             computeType == CUBLAS_COMPUTE_32F_FAST_TF32;
  if (f64) {
    if (Atype != CUDA_R_64F || Btype != CUDA_R_64F || Ctype != CUDA_R_64F) return CUBLAS_STATUS_NOT_SUPPORTED;
  } else if (f32) {
    bool ok = Atype == Btype && (Ctype == CUDA_R_32F || Ctype == Atype) &&
              (Atype == CUDA_R_32F || Atype == CUDA_R_16F || Atype == CUDA_R_16BF);
    if (!ok) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (Ctype != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED; /* 16-bit output: not needed, not emulated */
  } else {
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  check_matrix("A", A, Atype, a_rows, a_cols, lda);
  check_matrix("B", B, Btype, b_rows, b_cols, ldb);
  check_matrix("C", C, Ctype, m, n, ldc);
  bool tf32 = computeType == CUBLAS_COMPUTE_32F_FAST_TF32 && Atype == CUDA_R_32F;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      size_t c_at = (size_t)j * ldc + i;
      if (f64) {
        double acc = 0;
        for (int l = 0; l < k; ++l) {
          double a = ((const double *)A)[ta ? (size_t)i * lda + l : (size_t)l * lda + i];
          double b = ((const double *)B)[tb ? (size_t)l * ldb + j : (size_t)j * ldb + l];
          acc += a * b;
        }
        double al = *(const double *)alpha, be = *(const double *)beta;
        double *c = (double *)C + c_at;
        *c = be == 0 ? al * acc : al * acc + be * *c; /* beta == 0: C is not read */
      } else {
        float acc = 0;
        for (int l = 0; l < k; ++l) {
          float a = (float)load(A, Atype, ta ? (size_t)i * lda + l : (size_t)l * lda + i);
          float b = (float)load(B, Btype, tb ? (size_t)l * ldb + j : (size_t)j * ldb + l);
          if (tf32) {
            a = round_tf32(a);
            b = round_tf32(b);
          }
          acc += a * b;
        }
        float al = *(const float *)alpha, be = *(const float *)beta;
        float *c = (float *)C + c_at;
        *c = be == 0 ? al * acc : al * acc + be * *c;
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc) {
  return cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, beta, C,
                      CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t cublasDgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const double *alpha, const double *A, int lda, const double *B, int ldb,
                           const double *beta, double *C, int ldc) {
  return cublasGemmEx(handle, transa, transb, m, n, k, alpha, A, CUDA_R_64F, lda, B, CUDA_R_64F, ldb, beta, C,
                      CUDA_R_64F, ldc, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT);
}

}  /* extern "C" */
