/* The emulation runtime's CUDA features, each against its definition by a small kernel written here:
 * shared memory poisoned at every block start (static and dynamic), the shuffled block order, the
 * 48 KiB shared-memory rule and its opt-in, the four shuffles (every width), __syncwarp,
 * __syncthreads_or/_and/_count, WMMA (every layout, half / bfloat16 / tf32, against a naive matmul;
 * the scrambled fragment layout), __float_to_tf32, cp.async (deferred until waited for, zero fill,
 * dropped at the block's end), 64-bit atomicAdd, the counters, the sticky device-side assertion, and
 * every check that aborts (each in a child process: this program run again with --case NAME).
 * `--case missing_syncthreads_race` runs a kernel with a missing __syncthreads: under ThreadSanitizer
 * it must be reported (its own ctest in the TSan build).
 * Cost: about a hundred small launches and thirty child processes; well under a second without
 * sanitizers. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <mma.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../c/test_rng.h"
#include "cuda_check.h"

extern "C" unsigned char __start_pixcon_shared[] __attribute__((weak));
extern "C" unsigned char __stop_pixcon_shared[] __attribute__((weak));
extern char **environ;

namespace {

int failures = 0;

void check(bool ok, const std::string &what) {
  if (ok) return;
  fprintf(stderr, "FAIL: %s\n", what.c_str());
  ++failures;
}

template <class T> std::vector<T> download(const T *d, size_t n) {
  std::vector<T> h(n);
  CHECK_CUDA(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

template <class T> T *device_zeros(size_t n) {
  T *d = nullptr;
  CHECK_CUDA(cudaMalloc((void **)&d, n * sizeof(T)));
  CHECK_CUDA(cudaMemset(d, 0, n * sizeof(T)));
  return d;
}

size_t static_shared_bytes() { return (size_t)((uintptr_t)__stop_pixcon_shared - (uintptr_t)__start_pixcon_shared); }

/* ---- poisoned shared memory at every block start ---- */

constexpr unsigned kPoisonThreads = 64;

/* Each thread reads its words before writing them, then dirties them for the next block. */
__global__ void read_before_write_static(unsigned *before, uint64_t *where) {
  __shared__ unsigned words[kPoisonThreads];
  const unsigned t = threadIdx.x;
  before[blockIdx.x * kPoisonThreads + t] = words[t];
  words[t] = blockIdx.x;
  if (t == 0) where[blockIdx.x] = (uint64_t)(uintptr_t)words;
}

__global__ void read_before_write_dynamic(unsigned *before, uint64_t *where) {
  PIXCON_EMULATED_DYNAMIC_SHARED(smem);
  unsigned *words = (unsigned *)smem;
  const unsigned t = threadIdx.x;
  before[blockIdx.x * kPoisonThreads + t] = words[t];
  words[t] = blockIdx.x;
  where[blockIdx.x * kPoisonThreads + t] = (uint64_t)(uintptr_t)smem;
}

void test_poisoned_shared_memory() {
  const unsigned blocks = 5;
  unsigned *before = device_zeros<unsigned>(blocks * kPoisonThreads);
  uint64_t *where = device_zeros<uint64_t>(blocks * kPoisonThreads);

  PIXCON_EMULATED_LAUNCH(blocks, kPoisonThreads, 0, nullptr, read_before_write_static)(before, where);
  CHECK_CUDA(cudaGetLastError());
  std::vector<unsigned> b = download(before, blocks * kPoisonThreads);
  std::vector<uint64_t> w = download(where, blocks);
  check(std::all_of(b.begin(), b.end(), [](unsigned v) { return v == 0xffffffffu; }),
        "static __shared__ reads 0xff before being written, in every block");
  uintptr_t start = (uintptr_t)__start_pixcon_shared, stop = (uintptr_t)__stop_pixcon_shared;
  check(w[0] >= start && w[0] + sizeof(unsigned) * kPoisonThreads <= stop && w[0] % 16 == 0,
        "a static __shared__ array lies in the pixcon_shared section, 16-byte aligned");

  const size_t bytes = kPoisonThreads * sizeof(unsigned) + 3; /* any size, not only multiples */
  PIXCON_EMULATED_LAUNCH(blocks, kPoisonThreads, bytes, nullptr, read_before_write_dynamic)(before, where);
  CHECK_CUDA(cudaGetLastError());
  b = download(before, blocks * kPoisonThreads);
  w = download(where, blocks * kPoisonThreads);
  check(std::all_of(b.begin(), b.end(), [](unsigned v) { return v == 0xffffffffu; }),
        "dynamic shared memory reads 0xff before being written, in every block");
  check(std::all_of(w.begin(), w.end(), [&](uint64_t p) { return p == w[0]; }) && w[0] % 128 == 0,
        "every thread of every block gets the same 128-byte aligned dynamic arena");
  float f;
  memcpy(&f, &b[0], sizeof f);
  check(isnan(f), "the poison is NaN as a float");
  CHECK_CUDA(cudaFree(before));
  CHECK_CUDA(cudaFree(where));
}

/* ---- shuffled block order ---- */

__global__ void record_block_order(unsigned *order, unsigned *next) {
  /* blocks run one after another and thread 0 of every block is the same worker: no race */
  if (threadIdx.x == 0) order[(*next)++] = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
}

std::vector<unsigned> block_order(unsigned *order, unsigned *next) {
  const dim3 grid(8, 3, 2);
  CHECK_CUDA(cudaMemset(next, 0, sizeof(unsigned)));
  PIXCON_EMULATED_LAUNCH(grid, 32, 0, nullptr, record_block_order)(order, next);
  CHECK_CUDA(cudaGetLastError());
  return download(order, 48);
}

void test_block_order() {
  unsigned *order = device_zeros<unsigned>(48), *next = device_zeros<unsigned>(1);
  pixcon_emu::set_block_order_seed(7);
  std::vector<unsigned> first = block_order(order, next), second = block_order(order, next);
  std::vector<unsigned> sorted = first, identity(48);
  std::sort(sorted.begin(), sorted.end());
  for (unsigned k = 0; k < 48; ++k) identity[k] = k;
  check(sorted == identity, "the blocks of a launch run once each");
  check(first != identity, "the blocks do not run in index order");
  check(first != second, "the order changes from one launch to the next");
  pixcon_emu::set_block_order_seed(7);
  check(block_order(order, next) == first && block_order(order, next) == second,
        "the same seed gives the same orders");
  pixcon_emu::set_block_order_seed(8);
  check(block_order(order, next) != first, "another seed gives another order");
  CHECK_CUDA(cudaFree(order));
  CHECK_CUDA(cudaFree(next));
}

/* ---- the shared-memory limit: 48 KiB (static + dynamic) unless the kernel opted in ---- */

__global__ void touch_arena_end(unsigned char *seen, size_t bytes) {
  PIXCON_EMULATED_DYNAMIC_SHARED(smem);
  if (threadIdx.x == 0) {
    *seen = smem[bytes - 1];
    smem[bytes - 1] = 0;
  }
}
__global__ void opted_in_kernel(unsigned char *seen, size_t bytes) {
  PIXCON_EMULATED_DYNAMIC_SHARED(smem);
  if (threadIdx.x == 0) *seen = smem[bytes - 1];
}

void test_shared_memory_limit() {
  unsigned char *seen = device_zeros<unsigned char>(1);
  const size_t fits = 49152 - static_shared_bytes();
  pixcon_emu::reset_counters();
  PIXCON_EMULATED_LAUNCH(2, 32, fits, nullptr, touch_arena_end)(seen, fits);
  check(cudaGetLastError() == cudaSuccess && download(seen, 1)[0] == 0xff,
        "static + dynamic = 48 KiB launches without the opt-in");
  CHECK_CUDA(cudaMemset(seen, 0, 1));
  PIXCON_EMULATED_LAUNCH(2, 32, fits + 1, nullptr, touch_arena_end)(seen, fits + 1);
  check(cudaGetLastError() == cudaErrorInvalidValue, "one byte more without the opt-in: cudaErrorInvalidValue");
  check(download(seen, 1)[0] == 0 && pixcon_emu::counters().launches == 1, "and the kernel did not run");

  const int optin_max = (int)(101376 - static_shared_bytes());
  check(cudaFuncSetAttribute(opted_in_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin_max + 1) ==
                cudaErrorInvalidValue &&
            cudaGetLastError() == cudaErrorInvalidValue,
        "an opt-in above 99 KiB - static is refused (and is the last error)");
  check(cudaFuncSetAttribute(opted_in_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, -1) == cudaErrorInvalidValue,
        "a negative opt-in is refused");
  cudaGetLastError();
  CHECK_CUDA(cudaFuncSetAttribute(opted_in_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  PIXCON_EMULATED_LAUNCH(2, 32, 65536, nullptr, opted_in_kernel)(seen, 65536);
  check(cudaGetLastError() == cudaSuccess && download(seen, 1)[0] == 0xff, "64 KiB runs after opting in to 64 KiB");
  PIXCON_EMULATED_LAUNCH(2, 32, 65537, nullptr, opted_in_kernel)(seen, 65537);
  check(cudaGetLastError() == cudaErrorInvalidValue, "above the opted-in size: cudaErrorInvalidValue");
  CHECK_CUDA(cudaFuncSetAttribute((const void *)opted_in_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  optin_max));
  PIXCON_EMULATED_LAUNCH(1, 32, (size_t)optin_max, nullptr, opted_in_kernel)(seen, (size_t)optin_max);
  check(cudaGetLastError() == cudaSuccess, "the const void * overload raises the limit to 99 KiB - static");
  PIXCON_EMULATED_LAUNCH(1, 32, fits + 1, nullptr, touch_arena_end)(seen, fits + 1);
  check(cudaGetLastError() == cudaErrorInvalidValue, "the opt-in is per kernel");
  CHECK_CUDA(cudaFree(seen));
}

/* ---- shuffles ---- */

constexpr int kShuffleWidths[] = {1, 2, 4, 8, 16, 32};
constexpr int kShuffleArgs[] = {0, 1, 3, 5, 16, 31, -1, -7, 33};

template <class T> T lane_value(unsigned tid) { return (T)(tid * 3 + 100) + (T)(tid % 2 ? 0.5 : 0); }

template <class T> __global__ void shuffle_all(T *out, unsigned threads) {
  const unsigned t = threadIdx.x, lanes = threads - t / 32 * 32 < 32 ? threads - t / 32 * 32 : 32;
  const unsigned mask = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
  const T v = lane_value<T>(t);
  size_t k = 0;
  for (int width : kShuffleWidths)
    for (int arg : kShuffleArgs) {
      T *o = out + k++ * 4 * threads;
      o[t] = __shfl_sync(mask, v, arg, width);
      o[threads + t] = __shfl_up_sync(mask, v, (unsigned)arg, width);
      o[2 * threads + t] = __shfl_down_sync(mask, v, (unsigned)arg, width);
      o[3 * threads + t] = __shfl_xor_sync(mask, v, arg & 31, width);
    }
}

/* The source lane by the definitions in the CUDA programming guide (-1: past a partial warp). */
int shuffle_source(int mode, int lane, long long arg, int width, int lanes) {
  const int first = lane / width * width, end = first + width;
  long long src;
  if (mode == 0) src = first + ((arg % width) + width) % width;
  else if (mode == 1) src = lane - arg >= first ? lane - arg : lane;
  else if (mode == 2) src = lane + arg < end ? lane + arg : lane;
  else src = (lane ^ arg) < end ? lane ^ arg : lane;
  return src < lanes ? (int)src : -1;
}

template <class T> void test_shuffles_of(const char *type) {
  for (unsigned threads : {64u, 48u}) { /* two full warps; a full and a partial one */
    const size_t n = sizeof kShuffleWidths / sizeof(int) * (sizeof kShuffleArgs / sizeof(int)) * 4 * threads;
    T *out = device_zeros<T>(n);
    PIXCON_EMULATED_LAUNCH(2, threads, 0, nullptr, shuffle_all<T>)(out, threads);
    CHECK_CUDA(cudaGetLastError());
    std::vector<T> got = download(out, n);
    size_t k = 0, bad = 0;
    for (int width : kShuffleWidths)
      for (int arg : kShuffleArgs)
        for (int mode = 0; mode < 4; ++mode, ++k)
          for (unsigned t = 0; t < threads; ++t) {
            const int lane = t % 32, lanes = threads - t / 32 * 32 < 32 ? threads - t / 32 * 32 : 32;
            const long long a = mode == 0 ? arg : mode == 3 ? (arg & 31) : (long long)(unsigned)arg;
            const int src = shuffle_source(mode, lane, a, width, lanes);
            T expect;
            if (src < 0) memset(&expect, 0xff, sizeof expect);
            else expect = lane_value<T>(t / 32 * 32 + src);
            if (memcmp(&got[k * threads + t], &expect, sizeof expect) != 0) ++bad;
          }
    check(bad == 0, std::string("shuffles of ") + type + " (" + std::to_string(threads) +
                        " threads): every mode, width and lane argument as CUDA defines it (" +
                        std::to_string(bad) + " wrong)");
    CHECK_CUDA(cudaFree(out));
  }
}

void test_shuffles() {
  test_shuffles_of<int>("int");
  test_shuffles_of<unsigned>("unsigned");
  test_shuffles_of<long long>("long long");
  test_shuffles_of<unsigned long long>("unsigned long long");
  test_shuffles_of<float>("float");
  test_shuffles_of<double>("double");
}

/* ---- __syncwarp, __syncthreads_or/_and/_count ---- */

__global__ void rotate_in_warp(unsigned *out) {
  __shared__ unsigned slots[64];
  const unsigned t = threadIdx.x, lanes = blockDim.x - t / 32 * 32 < 32 ? blockDim.x - t / 32 * 32 : 32;
  const unsigned mask = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
  for (unsigned round = 0; round < 3; ++round) {
    slots[t] = t * 10 + round;
    __syncwarp(mask);
    out[round * blockDim.x + t] = slots[t / 32 * 32 + (t % 32 + 1) % lanes];
    __syncwarp(mask);
  }
}

__global__ void block_votes(int *out, int which) {
  const unsigned t = threadIdx.x, n = blockDim.x;
  const int p = which == 0 ? 0 : which == 1 ? t == n - 1 : which == 2 ? t % 3 == 0 : 1;
  out[t] = __syncthreads_or(p);
  out[n + t] = __syncthreads_and(p);
  out[2 * n + t] = __syncthreads_count(p);
}

void test_syncwarp_and_votes() {
  for (unsigned threads : {64u, 40u}) {
    unsigned *out = device_zeros<unsigned>(3 * threads);
    PIXCON_EMULATED_LAUNCH(3, threads, 0, nullptr, rotate_in_warp)(out);
    CHECK_CUDA(cudaGetLastError());
    std::vector<unsigned> got = download(out, 3 * threads);
    bool ok = true;
    for (unsigned round = 0; round < 3; ++round)
      for (unsigned t = 0; t < threads; ++t) {
        const unsigned lanes = threads - t / 32 * 32 < 32 ? threads - t / 32 * 32 : 32;
        ok = ok && got[round * threads + t] == (t / 32 * 32 + (t % 32 + 1) % lanes) * 10 + round;
      }
    check(ok, "__syncwarp orders the shared-memory writes of a warp (" + std::to_string(threads) + " threads)");
    CHECK_CUDA(cudaFree(out));
  }
  const unsigned n = 96;
  int *out = device_zeros<int>(3 * n);
  for (int which = 0; which < 4; ++which) {
    PIXCON_EMULATED_LAUNCH(2, n, 0, nullptr, block_votes)(out, which);
    CHECK_CUDA(cudaGetLastError());
    std::vector<int> got = download(out, 3 * n);
    const int count = which == 0 ? 0 : which == 1 ? 1 : which == 2 ? 32 : 96;
    bool ok = true;
    for (unsigned t = 0; t < n; ++t)
      ok = ok && got[t] == (count > 0) && got[n + t] == (count == (int)n) && got[2 * n + t] == count;
    check(ok, "__syncthreads_or/_and/_count over the block, predicate case " + std::to_string(which));
  }
  CHECK_CUDA(cudaFree(out));
}

/* ---- WMMA ---- */

using namespace nvcuda;

uint16_t half_bits(float f) { /* exact for the small integers used here */
  if (f == 0) return 0;
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(((u >> 16) & 0x8000u) | ((((u >> 23) & 0xffu) - 112u) << 10) | ((u >> 13) & 0x3ffu));
}
uint16_t bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}
float tf32_read(float f) { /* what the tensor core reads of a float */
  uint32_t u;
  memcpy(&u, &f, 4);
  u &= ~0x1fffu;
  memcpy(&f, &u, 4);
  return f;
}

/* Input element types of the tests, with their memory type and host encoding. The 16-bit types are
 * their own memory type, holding the bits of Bits(f); their small integers are read exactly. */
template <class T16, uint16_t (*Bits)(float)> struct In16 {
  typedef T16 T;
  typedef T16 Mem;
  static constexpr int K = 16;
  static Mem encode(float f) { return T16{Bits(f)}; }
  static float read(float f) { return f; }
};
typedef In16<__half, half_bits> HalfIn;
typedef In16<__nv_bfloat16, bf16_bits> Bf16In;
struct Tf32In {
  typedef wmma::precision::tf32 T;
  typedef float Mem;
  static constexpr int K = 8;
  static Mem encode(float f) { return f; }
  static float read(float f) { return tf32_read(f); }
};

/* D = A B + C by one warp per block (the warp's tile at blockIdx.x * tile); d aliases c. */
template <class In, class LA, class LB>
__global__ void wmma_product(const typename In::Mem *A, unsigned lda, const typename In::Mem *B, unsigned ldb,
                             const float *C, unsigned ldc, wmma::layout_t c_layout, float *D, unsigned ldd,
                             wmma::layout_t d_layout, size_t a_tile, size_t b_tile, size_t c_tile) {
  wmma::fragment<wmma::matrix_a, 16, 16, In::K, typename In::T, LA> a;
  wmma::fragment<wmma::matrix_b, 16, 16, In::K, typename In::T, LB> b;
  wmma::fragment<wmma::accumulator, 16, 16, In::K, float> acc;
  wmma::load_matrix_sync(a, A + blockIdx.x * a_tile, lda);
  wmma::load_matrix_sync(b, B + blockIdx.x * b_tile, ldb);
  wmma::load_matrix_sync(acc, C + blockIdx.x * c_tile, ldc, c_layout);
  wmma::mma_sync(acc, a, b, acc);
  wmma::store_matrix_sync(D + blockIdx.x * c_tile, acc, ldd, d_layout);
}

template <class In, class LA, class LB> void test_wmma_case(bool integers, const char *name) {
  constexpr int K = In::K;
  constexpr bool a_row = std::is_same<LA, wmma::row_major>::value, b_row = std::is_same<LB, wmma::row_major>::value;
  const unsigned blocks = 3, lda = (a_row ? K : 16) + 8, ldb = (b_row ? 16 : K) + 8, ldc = 20, ldd = 24;
  const size_t a_tile = (size_t)lda * 16, b_tile = (size_t)ldb * 16, c_tile = (size_t)ldd * 16;
  for (int c_row = 0; c_row < 2; ++c_row)
    for (int d_row = 0; d_row < 2; ++d_row) {
      std::vector<typename In::Mem> a_mem(blocks * a_tile), b_mem(blocks * b_tile);
      std::vector<float> a(blocks * 16 * K), b(blocks * K * 16), c(blocks * 256), c_mem(blocks * c_tile, NAN);
      auto value = [&]() { return integers ? (float)(below(17) - 8) : (float)(uniform() * 2 - 1); };
      for (unsigned t = 0; t < blocks; ++t) {
        for (int r = 0; r < 16; ++r)
          for (int k = 0; k < K; ++k) {
            float v = a[(t * 16 + r) * K + k] = value();
            a_mem[t * a_tile + (a_row ? r * lda + k : k * lda + r)] = In::encode(v);
          }
        for (int k = 0; k < K; ++k)
          for (int col = 0; col < 16; ++col) {
            float v = b[(t * K + k) * 16 + col] = value();
            b_mem[t * b_tile + (b_row ? k * ldb + col : col * ldb + k)] = In::encode(v);
          }
        for (int r = 0; r < 16; ++r)
          for (int col = 0; col < 16; ++col)
            c_mem[t * c_tile + (c_row ? r * ldc + col : col * ldc + r)] = c[t * 256 + r * 16 + col] = value();
      }
      typename In::Mem *dA = to_device(a_mem), *dB = to_device(b_mem);
      float *dC = to_device(c_mem), *dD = nullptr;
      CHECK_CUDA(cudaMalloc((void **)&dD, blocks * c_tile * sizeof(float)));
      PIXCON_EMULATED_LAUNCH(blocks, 32, 0, nullptr, wmma_product<In, LA, LB>)(
          dA, lda, dB, ldb, dC, ldc, c_row ? wmma::mem_row_major : wmma::mem_col_major, dD, ldd,
          d_row ? wmma::mem_row_major : wmma::mem_col_major, a_tile, b_tile, c_tile);
      CHECK_CUDA(cudaGetLastError());
      std::vector<float> d = download(dD, blocks * c_tile);
      size_t bad = 0;
      for (unsigned t = 0; t < blocks; ++t)
        for (int r = 0; r < 16; ++r)
          for (int col = 0; col < 16; ++col) {
            float sum = 0;
            for (int k = 0; k < K; ++k) sum += In::read(a[(t * 16 + r) * K + k]) * In::read(b[(t * K + k) * 16 + col]);
            const float expect = c[t * 256 + r * 16 + col] + sum;
            bad += d[t * c_tile + (d_row ? r * ldd + col : col * ldd + r)] != expect;
          }
      check(bad == 0, std::string("wmma ") + name + (a_row ? " A row" : " A col") + (b_row ? " B row" : " B col") +
                          (c_row ? " C row" : " C col") + (d_row ? " D row" : " D col") +
                          (integers ? ", integers" : ", random floats") + ": D = A B + C exactly as a naive matmul (" +
                          std::to_string(bad) + " wrong)");
      CHECK_CUDA(cudaFree(dA));
      CHECK_CUDA(cudaFree(dB));
      CHECK_CUDA(cudaFree(dC));
      CHECK_CUDA(cudaFree(dD));
    }
}

template <class In> void test_wmma_type(bool integers, const char *name) {
  test_wmma_case<In, wmma::row_major, wmma::row_major>(integers, name);
  test_wmma_case<In, wmma::row_major, wmma::col_major>(integers, name);
  test_wmma_case<In, wmma::col_major, wmma::row_major>(integers, name);
  test_wmma_case<In, wmma::col_major, wmma::col_major>(integers, name);
}

/* Every lane's x[] of a fragment loaded from a matrix whose element (r, c) holds r * cols + c. */
template <class Use, int K, class T, class L>
__global__ void fragment_elements(const void *m, unsigned ld, float *out) {
  wmma::fragment<Use, 16, 16, K, T, L> f;
  typedef typename std::remove_reference<decltype(f.x[0])>::type X;
  wmma::load_matrix_sync(f, (const typename pixcon_emu::wmma_detail::Element<T>::memory *)m, ld);
  for (int e = 0; e < f.num_elements; ++e) {
    const X x = f.x[e];
    float v;
    if constexpr (std::is_same<X, float>::value) v = x;
    else if constexpr (std::is_same<X, __half>::value) v = pixcon_emu::half_to_float(x.__x);
    else v = pixcon_emu::bf16_to_float(x.__x);
    out[threadIdx.x * f.num_elements + e] = v;
  }
}

__global__ void accumulator_round_trip(const float *m, float *out, float *first, wmma::layout_t layout) {
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> f;
  wmma::load_matrix_sync(f, m, 16, layout);
  wmma::store_matrix_sync(out, f, 16, layout);
  first[threadIdx.x] = f.x[0];
}

/* The layout: a bijection onto the matrix, not lane-major row-major order, lane 0's x[0] not (0, 0). */
template <class Use, int K, class T, class L, class Mem>
void test_fragment_layout(const char *name, int rows, int cols, Mem (*encode)(float)) {
  std::vector<Mem> m(rows * cols);
  constexpr bool col_major = std::is_same<L, wmma::col_major>::value;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) m[col_major ? c * rows + r : r * cols + c] = encode((float)(r * cols + c));
  Mem *dm = to_device(m);
  float *out = device_zeros<float>(rows * cols);
  PIXCON_EMULATED_LAUNCH(1, 32, 0, nullptr, fragment_elements<Use, K, T, L>)(
      (const void *)dm, (unsigned)(col_major ? rows : cols), out);
  CHECK_CUDA(cudaGetLastError());
  std::vector<float> got = download(out, rows * cols), sorted = got;
  std::sort(sorted.begin(), sorted.end());
  bool bijection = true, lane_major = true;
  for (int i = 0; i < rows * cols; ++i) {
    bijection = bijection && sorted[i] == (float)i;
    lane_major = lane_major && got[i] == (float)i;
  }
  check(bijection, std::string(name) + ": the lanes' elements cover the matrix once each");
  check(!lane_major && got[0] != 0.0f, std::string(name) + ": scrambled (lane 0's x[0] is not element (0, 0))");
  CHECK_CUDA(cudaFree(dm));
  CHECK_CUDA(cudaFree(out));
}

__half encode_half(float f) { return __half{half_bits(f)}; }
__nv_bfloat16 encode_bf16(float f) { return __nv_bfloat16{bf16_bits(f)}; }
float encode_float(float f) { return f; }

void test_wmma() {
  test_wmma_type<HalfIn>(true, "m16n16k16 half");
  test_wmma_type<Bf16In>(true, "m16n16k16 bfloat16");
  test_wmma_type<Tf32In>(true, "m16n16k8 tf32");
  test_wmma_type<Tf32In>(false, "m16n16k8 tf32");

  test_fragment_layout<wmma::matrix_a, 16, __half, wmma::row_major>("matrix_a half row_major", 16, 16, encode_half);
  test_fragment_layout<wmma::matrix_a, 16, __nv_bfloat16, wmma::col_major>("matrix_a bfloat16 col_major", 16, 16,
                                                                           encode_bf16);
  test_fragment_layout<wmma::matrix_b, 16, __half, wmma::col_major>("matrix_b half col_major", 16, 16, encode_half);
  test_fragment_layout<wmma::matrix_a, 8, wmma::precision::tf32, wmma::row_major>("matrix_a tf32 row_major", 16, 8,
                                                                                  encode_float);
  test_fragment_layout<wmma::matrix_b, 8, wmma::precision::tf32, wmma::row_major>("matrix_b tf32 row_major", 8, 16,
                                                                                  encode_float);

  std::vector<float> m(256);
  for (int i = 0; i < 256; ++i) m[i] = (float)i;
  float *dm = to_device(m), *out = device_zeros<float>(256), *first = device_zeros<float>(32);
  for (int row = 0; row < 2; ++row) {
    PIXCON_EMULATED_LAUNCH(1, 32, 0, nullptr, accumulator_round_trip)(dm, out, first,
                                                                     row ? wmma::mem_row_major : wmma::mem_col_major);
    CHECK_CUDA(cudaGetLastError());
    check(download(out, 256) == m, "store_matrix_sync(load_matrix_sync(p)) gives p back, both layouts");
  }
  std::vector<float> f = download(first, 32);
  check(f[0] != 0.0f, "accumulator: lane 0's x[0] is not element (0, 0)");
  CHECK_CUDA(cudaFree(dm));
  CHECK_CUDA(cudaFree(out));
  CHECK_CUDA(cudaFree(first));
}

void test_float_to_tf32() {
  struct Case {
    uint32_t in, out;
    const char *what;
  } cases[] = {
      {0x3f800000u, 0x3f800000u, "1 stays"},
      {0x3f801000u, 0x3f802000u, "a tie rounds away from zero (not to even)"},
      {0xbf801000u, 0xbf802000u, "a negative tie rounds away from zero"},
      {0x3f803000u, 0x3f804000u, "a tie between odd and even rounds up"},
      {0x3f800fffu, 0x3f800000u, "just below a tie rounds down"},
      {0x3f801001u, 0x3f802000u, "just above a tie rounds up"},
      {0xbf800fffu, 0xbf800000u, "negative, below a tie"},
      {0x3fffffffu, 0x40000000u, "rounding carries into the exponent"},
      {0x7f7fffffu, 0x7f800000u, "the largest float rounds to inf"},
      {0x00001000u, 0x00002000u, "a subnormal tie"},
      {0x00000fffu, 0x00000000u, "a tiny subnormal to zero"},
      {0x7f800000u, 0x7f800000u, "inf unchanged"},
      {0xff800000u, 0xff800000u, "-inf unchanged"},
      {0x7fc00001u, 0x7fc00001u, "nan unchanged"},
      {0x7f800001u, 0x7f800001u, "a nan with only low payload bits stays nan"},
  };
  for (const Case &c : cases) {
    float in;
    memcpy(&in, &c.in, 4);
    float got = wmma::__float_to_tf32(in);
    uint32_t bits;
    memcpy(&bits, &got, 4);
    char what[160];
    snprintf(what, sizeof what, "__float_to_tf32(0x%08x) = 0x%08x, want 0x%08x: %s", c.in, bits, c.out, c.what);
    check(bits == c.out, what);
  }
}

/* ---- cp.async ---- */

constexpr unsigned kCopyThreads = 32;

/* Word slots per thread: 0 before any wait, 1 after waiting for group 1 of 2, 2 group 2 then, 3 group 2
 * after waiting for all, 4 and 5 the kept word and the OR of the three zero-filled words of a copy with
 * zfill 12, 6 an uncommitted copy after wait_prior(0), 7 a static __shared__ destination, 8 what a
 * copy left pending by the previous block left behind. */
constexpr unsigned kCopySlots = 9;
__global__ void async_copies(const uint32_t *src, uint32_t *out) {
  PIXCON_EMULATED_DYNAMIC_SHARED(smem);
  __shared__ __align__(16) uint32_t stat[4 * kCopyThreads];
  uint32_t *s = (uint32_t *)smem;
  const unsigned t = threadIdx.x, n = kCopyThreads;
  uint32_t *o = out + blockIdx.x * kCopySlots * n;
  __pipeline_wait_prior(0); /* a copy the previous block left pending must not land now */
  o[8 * n + t] = s[16 * n + 4 * t];
  __pipeline_memcpy_async(&s[4 * t], &src[4 * t], 16);
  __pipeline_commit();
  o[0 * n + t] = s[4 * t];
  __pipeline_memcpy_async(&s[4 * n + 4 * t], &src[4 * n + 4 * t], 16);
  __pipeline_commit();
  __pipeline_wait_prior(1);
  o[1 * n + t] = s[4 * t];
  o[2 * n + t] = s[4 * n + 4 * t];
  __pipeline_wait_prior(0);
  o[3 * n + t] = s[4 * n + 4 * t];
  __pipeline_memcpy_async(&s[8 * n + 4 * t], &src[8 * n + 4 * t], 16, 12);
  __pipeline_commit();
  __pipeline_memcpy_async(&s[12 * n + 2 * t], &src[12 * n + 2 * t], 8); /* never committed */
  __pipeline_wait_prior(0);
  o[4 * n + t] = s[8 * n + 4 * t];
  o[5 * n + t] = s[8 * n + 4 * t + 1] | s[8 * n + 4 * t + 2] | s[8 * n + 4 * t + 3];
  o[6 * n + t] = s[12 * n + 2 * t];
  __pipeline_memcpy_async(&stat[4 * t], &src[4 * t], 4);
  __pipeline_commit();
  __pipeline_wait_prior(0);
  o[7 * n + t] = stat[4 * t];
  __pipeline_memcpy_async(&s[16 * n + 4 * t], &src[4 * t], 16); /* left pending at the block's end */
  __pipeline_commit();
}

void test_cp_async() {
  const unsigned n = kCopyThreads, blocks = 2;
  std::vector<uint32_t> src(16 * n);
  for (unsigned k = 0; k < src.size(); ++k) src[k] = 0x1000u + k;
  uint32_t *dsrc = to_device(src), *out = device_zeros<uint32_t>(blocks * kCopySlots * n);
  PIXCON_EMULATED_LAUNCH(blocks, n, 20 * n * sizeof(uint32_t), nullptr, async_copies)(dsrc, out);
  CHECK_CUDA(cudaGetLastError());
  std::vector<uint32_t> o = download(out, blocks * kCopySlots * n);
  bool before = true, first = true, pending = true, all = true, zfill = true, uncommitted = true, stat = true,
       dropped = true;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < n; ++t) {
      const uint32_t *p = &o[b * kCopySlots * n];
      before = before && p[t] == 0xffffffffu;
      first = first && p[n + t] == src[4 * t];
      pending = pending && p[2 * n + t] == 0xffffffffu;
      all = all && p[3 * n + t] == src[4 * n + 4 * t];
      zfill = zfill && p[4 * n + t] == src[8 * n + 4 * t] && p[5 * n + t] == 0;
      uncommitted = uncommitted && p[6 * n + t] == 0xffffffffu;
      stat = stat && p[7 * n + t] == src[4 * t];
      dropped = dropped && p[8 * n + t] == 0xffffffffu;
    }
  check(before, "cp.async: the destination still holds poison before any wait");
  check(first, "cp.async: __pipeline_wait_prior(1) completes the older of two groups");
  check(pending, "cp.async: ... but not the most recent one");
  check(all, "cp.async: __pipeline_wait_prior(0) completes every committed group");
  check(zfill, "cp.async: zfill keeps size - zfill source bytes and zeroes the rest");
  check(uncommitted, "cp.async: a copy not yet committed is not waited for");
  check(stat, "cp.async: a static __shared__ destination");
  check(dropped, "cp.async: a copy pending at the block's end is dropped");
  CHECK_CUDA(cudaFree(dsrc));
  CHECK_CUDA(cudaFree(out));
}

/* ---- counters ---- */

__global__ void nothing() {}

void test_counters() {
  int *d = device_zeros<int>(4);
  int h[4] = {1, 2, 3, 4};
  const long long total = pixcon_emu::launch_count();
  pixcon_emu::reset_counters();
  pixcon_emu::Counters c = pixcon_emu::counters();
  check(c.launches == 0 && c.host_syncs == 0 && c.device_to_host_copies == 0, "reset_counters zeroes the counters");
  CHECK_CUDA(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice));
  c = pixcon_emu::counters();
  check(c.host_syncs == 1 && c.device_to_host_copies == 0,
        "a host-to-device cudaMemcpy is a host sync, not a D2H copy");
  CHECK_CUDA(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  c = pixcon_emu::counters();
  check(c.host_syncs == 2 && c.device_to_host_copies == 1, "a device-to-host cudaMemcpy is both");
  CHECK_CUDA(cudaMemcpy(d + 2, d, 2 * sizeof(int), cudaMemcpyDeviceToDevice));
  CHECK_CUDA(cudaMemcpyAsync(d + 2, d, 2 * sizeof(int), cudaMemcpyDeviceToDevice, nullptr));
  c = pixcon_emu::counters();
  check(c.host_syncs == 2 && c.device_to_host_copies == 1, "device-to-device copies are neither");
  CHECK_CUDA(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, nullptr));
  c = pixcon_emu::counters();
  check(c.host_syncs == 2 && c.device_to_host_copies == 2, "cudaMemcpyAsync to the host is a D2H copy, not a sync");
  CHECK_CUDA(cudaMemcpy(h, d, sizeof h, cudaMemcpyDefault));
  c = pixcon_emu::counters();
  check(c.host_syncs == 3 && c.device_to_host_copies == 3, "cudaMemcpyDefault from device to host counts as D2H");
  CHECK_CUDA(cudaStreamSynchronize(nullptr));
  CHECK_CUDA(cudaDeviceSynchronize());
  PIXCON_EMULATED_LAUNCH(1, 32, 0, nullptr, nothing)();
  c = pixcon_emu::counters();
  check(c.host_syncs == 5 && c.launches == 1, "stream and device synchronisations and a launch are counted");
  check(pixcon_emu::launch_count() == total + 1, "launch_count counts every launch, reset or not");
  CHECK_CUDA(cudaFree(d));
}

/* ---- device-side assertions ---- */

/* Thread 5 of block bad_block asserts; every thread when bad_block is -2. */
__global__ void assert_in_one_thread(int *out, int bad_block) {
  const unsigned t = threadIdx.x;
  PIXCON_EMULATED_DEVICE_ASSERT(bad_block != -2 && !((int)blockIdx.x == bad_block && t == 5), "a bad thread");
  out[blockIdx.x * blockDim.x + t] = 1; /* the asserting thread carries on, as the others do */
}

void test_device_assert() {
  int *out = device_zeros<int>(4 * 32), *later = device_zeros<int>(4 * 32), h = 0;
  PIXCON_EMULATED_LAUNCH(4, 32, 0, nullptr, assert_in_one_thread)(out, -1);
  check(cudaGetLastError() == cudaSuccess, "no assertion, no error");
  PIXCON_EMULATED_LAUNCH(4, 32, 0, nullptr, assert_in_one_thread)(out, 2);
  check(cudaPeekAtLastError() == cudaErrorAssert, "cudaPeekAtLastError reports the assertion");
  check(cudaGetLastError() == cudaErrorAssert && cudaGetLastError() == cudaErrorAssert,
        "cudaGetLastError reports it, and it is sticky");
  check(cudaStreamSynchronize(nullptr) == cudaErrorAssert && cudaDeviceSynchronize() == cudaErrorAssert &&
            cudaMemcpy(&h, out, sizeof h, cudaMemcpyDeviceToHost) == cudaErrorAssert,
        "synchronisations and cudaMemcpy report it");
  check(strcmp(cudaGetErrorString(cudaErrorAssert), "device-side assert triggered") == 0 &&
            strcmp(cudaGetErrorName(cudaErrorAssert), "cudaErrorAssert") == 0 && cudaErrorAssert == 710,
        "its string, name and value");
  const long long launched = pixcon_emu::launch_count();
  PIXCON_EMULATED_LAUNCH(4, 32, 0, nullptr, assert_in_one_thread)(later, -1);
  check(pixcon_emu::launch_count() == launched, "a later launch does not run");
  pixcon_emu::reset_device();
  check(cudaGetLastError() == cudaSuccess, "reset_device clears it");
  std::vector<int> ran = download(out, 4 * 32), skipped = download(later, 4 * 32);
  check(std::all_of(ran.begin(), ran.end(), [](int v) { return v == 1; }),
        "every thread of the asserting launch ran to its end");
  check(std::all_of(skipped.begin(), skipped.end(), [](int v) { return v == 0; }),
        "the launch after the assertion left its output alone");
  PIXCON_EMULATED_LAUNCH(4, 32, 0, nullptr, assert_in_one_thread)(later, -1);
  check(cudaGetLastError() == cudaSuccess && download(later, 1)[0] == 1, "launches run again after reset_device");
  CHECK_CUDA(cudaFree(out));
  CHECK_CUDA(cudaFree(later));
}

/* ---- small things ---- */

struct __align__(32) Aligned {
  float v;
};

__global__ void small_intrinsics(const float *in, int *out) {
  out[0] = __float_as_int(__ldg(in)) == 0x3f800000 && __int_as_float(0x40000000) == 2.0f;
}

void test_small_things() {
  float *in = to_device(std::vector<float>{1.0f});
  int *out = device_zeros<int>(1);
  PIXCON_EMULATED_LAUNCH(1, 1, 0, nullptr, small_intrinsics)(in, out);
  CHECK_CUDA(cudaGetLastError());
  check(download(out, 1)[0] == 1, "__ldg, __float_as_int, __int_as_float");
  check(alignof(Aligned) == 32, "__align__");
  CHECK_CUDA(cudaFree(in));
  CHECK_CUDA(cudaFree(out));
}

/* Every thread adds its own amount (t + 1), or minus one (all ones): the old values returned are the
 * running totals of one order of the additions, so they are distinct, and the total is exact, also
 * when it wraps. */
__global__ void atomic_adds(unsigned long long *total, unsigned long long *old, int minus_one) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  old[t] = atomicAdd(total, minus_one ? ~0ull : (unsigned long long)t + 1);
}

void test_atomic_add() {
  const unsigned blocks = 3, threads = 64, count = blocks * threads;
  unsigned long long *total = to_device(std::vector<unsigned long long>{5});
  unsigned long long *old = device_zeros<unsigned long long>(count);
  const unsigned long long sum = (unsigned long long)count * (count + 1) / 2;
  for (int minus_one = 0; minus_one < 2; ++minus_one) {
    PIXCON_EMULATED_LAUNCH(blocks, threads, 0, nullptr, atomic_adds)(total, old, minus_one);
    CHECK_CUDA(cudaGetLastError());
    std::vector<unsigned long long> seen = download(old, count);
    std::sort(seen.begin(), seen.end());
    check(std::adjacent_find(seen.begin(), seen.end()) == seen.end(),
          "atomicAdd on unsigned long long: each thread sees a distinct old value");
    const bool bounds = minus_one ? seen[0] == 5 + sum - count + 1 && seen.back() == 5 + sum
                                  : seen[0] == 5 && seen.back() < 5 + sum;
    check(bounds, "atomicAdd on unsigned long long: the old values lie between the first and the last total");
  }
  check(download(total, 1)[0] == 5 + sum - count, "atomicAdd on unsigned long long: the total, minus ones wrapping");
  CHECK_CUDA(cudaFree(total));
  CHECK_CUDA(cudaFree(old));
}

/* ---- misuse that aborts: each case runs in a child process ---- */

template <class Kernel, class... A> void launch1(unsigned threads, size_t smem, Kernel kernel, A... args) {
  PIXCON_EMULATED_LAUNCH(1, threads, smem, nullptr, kernel)(args...);
}

__global__ void shuffle_with_mask(unsigned mask, int width) { (void)__shfl_sync(mask, 1, 0, width); }
__global__ void lane0_leaves_before_shuffle() {
  if (threadIdx.x == 0) return;
  (void)__shfl_xor_sync(0xffffffffu, 1, 1);
}
__global__ void shuffle_against_syncthreads() {
  if (threadIdx.x == 3) __syncthreads();
  else (void)__shfl_xor_sync(0xffffffffu, 1, 1);
}
__global__ void mixed_block_barriers() {
  if (threadIdx.x < 32) __syncthreads();
  else (void)__syncthreads_or(1);
}
__global__ void mma_in(int lanes) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
  wmma::fill_fragment(a, 0.0f);
  wmma::fill_fragment(b, 0.0f);
  wmma::fill_fragment(c, 0.0f);
  if ((int)(threadIdx.x % 32) < lanes) wmma::mma_sync(c, a, b, c);
}
__global__ void wmma_load(const float *p, unsigned ldm) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
  wmma::load_matrix_sync(a, p, ldm);
}
/* One copy to the dynamic arena (ARENA), a static __shared__ array (STATIC) or global memory (GLOBAL);
 * a null src means the static array as the source. */
enum CopyTo { ARENA, STATIC, GLOBAL };
__global__ void copy_async(int to, const void *src, size_t size, size_t zfill, size_t offset, float *global) {
  PIXCON_EMULATED_DYNAMIC_SHARED(smem);
  __shared__ __align__(16) unsigned char local[64];
  void *dst = to == ARENA ? (void *)(smem + offset) : to == STATIC ? (void *)(local + offset) : (void *)global;
  __pipeline_memcpy_async(dst, src ? src : local, size, zfill);
}

/* The copy by one thread of a block with 64 bytes of dynamic shared memory. */
void copy_case(int to, const void *src, size_t size, size_t zfill = 0, size_t offset = 0, float *global = nullptr) {
  launch1(1, 64, copy_async, to, src, size, zfill, offset, global);
}

/* A kernel with a missing __syncthreads between two uses of a shared buffer: thread t reads its
 * neighbour's word, then overwrites its own, which the other neighbour may not have read yet. */
__global__ void missing_syncthreads(int *out) {
  __shared__ int words[64];
  const unsigned t = threadIdx.x;
  words[t] = (int)t;
  __syncthreads();
  const int neighbour = words[(t + 1) % 64];
  words[t] = neighbour * 2; /* needs a __syncthreads before it */
  __syncthreads();
  out[t] = words[t];
}

struct Case {
  const char *name, *expect; /* expect: a piece of the abort message */
  void (*run)();
};

const Case kCases[] = {
    {"shuffle_mask_missing_a_lane", "mask 0xfffffffe must name exactly the 32 lanes",
     [] { launch1(32, 0, shuffle_with_mask, 0xfffffffeu, 32); }},
    {"shuffle_full_mask_in_partial_warp", "mask 0xffffffff must name exactly the 16 lanes",
     [] { launch1(48, 0, shuffle_with_mask, 0xffffffffu, 32); }},
    {"shuffle_width_not_power_of_two", "width must be a power of two",
     [] { launch1(32, 0, shuffle_with_mask, 0xffffffffu, 3); }},
    {"lane_leaves_while_warp_shuffles", "divergent warp", [] { launch1(64, 0, lane0_leaves_before_shuffle); }},
    {"shuffle_against_syncthreads", "divergent warp", [] { launch1(64, 0, shuffle_against_syncthreads); }},
    {"syncthreads_against_syncthreads_or", "different barriers", [] { launch1(64, 0, mixed_block_barriers); }},
    {"syncwarp_outside_kernel", "called outside a kernel", [] { __syncwarp(); }},
    {"mma_in_partial_warp", "partial warp", [] { launch1(48, 0, mma_in, 32); }},
    {"mma_by_half_a_warp", "divergent warp", [] { launch1(32, 0, mma_in, 16); }},
    {"wmma_load_misaligned", "not 32-byte",
     [] { launch1(32, 0, wmma_load, (const float *)device_zeros<float>(256) + 4, 8u); }},
    {"wmma_load_bad_ldm", "ldm is not a multiple of 16 bytes",
     [] { launch1(32, 0, wmma_load, (const float *)device_zeros<float>(256), 10u); }},
    {"cp_async_size_12", "must be 4, 8 or 16",
     [] { copy_case(ARENA, device_zeros<float>(16), 12); }},
    {"cp_async_zfill_above_size", "zfill exceeds",
     [] { copy_case(ARENA, device_zeros<float>(16), 8, 9); }},
    {"cp_async_dst_global", "dst is not inside the block's shared memory",
     [] { copy_case(GLOBAL, device_zeros<float>(16), 16, 0, 0, device_zeros<float>(16)); }},
    {"cp_async_dst_past_arena", "dst is not inside the block's shared memory",
     [] { copy_case(ARENA, device_zeros<float>(16), 16, 0, 64); }},
    {"cp_async_src_shared", "src is not inside a live cudaMalloc allocation",
     [] { copy_case(STATIC, nullptr, 16); }},
    {"cp_async_src_past_allocation", "src is not inside a live cudaMalloc allocation",
     [] { copy_case(ARENA, device_zeros<float>(3) + 2, 8); }},
    {"cp_async_dst_misaligned", "aligned to size_and_align",
     [] { copy_case(ARENA, device_zeros<float>(16), 16, 0, 8); }},
    {"cp_async_src_misaligned", "aligned to size_and_align",
     [] { copy_case(ARENA, device_zeros<float>(16) + 1, 8); }},
    {"missing_syncthreads_race", nullptr, [] {
       int *out = device_zeros<int>(64);
       launch1(64, 0, missing_syncthreads, out);
       CHECK_CUDA(cudaGetLastError());
     }},
    {"assert_twice", nullptr, [] {
       int *out = device_zeros<int>(4 * 32);
       PIXCON_EMULATED_LAUNCH(4, 32, 0, nullptr, assert_in_one_thread)(out, -2);
       PIXCON_EMULATED_LAUNCH(4, 32, 0, nullptr, assert_in_one_thread)(out, 3);
       pixcon_emu::reset_device();
       PIXCON_EMULATED_LAUNCH(4, 32, 0, nullptr, assert_in_one_thread)(out, 1);
     }},
};

/* Runs this program with --case NAME; returns its exit status and its stdout + stderr. */
int run_child(const char *name, std::string *output) {
  char path[] = "/tmp/pixcon_emu_case_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    perror("mkstemp");
    exit(2);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  char self[] = "/proc/self/exe", flag[] = "--case";
  char *argv[] = {self, flag, (char *)name, nullptr};
  pid_t pid;
  if (posix_spawn(&pid, self, &actions, nullptr, argv, environ) != 0) {
    perror("posix_spawn");
    exit(2);
  }
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  waitpid(pid, &status, 0);
  output->clear();
  char buf[4096];
  ssize_t got;
  lseek(fd, 0, SEEK_SET);
  while ((got = read(fd, buf, sizeof buf)) > 0) output->append(buf, (size_t)got);
  close(fd);
  unlink(path);
  return status;
}

void test_aborts() {
  for (const Case &c : kCases) {
    if (!c.expect) continue;
    std::string output;
    const int status = run_child(c.name, &output);
    const bool aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    check(aborted && output.find(c.expect) != std::string::npos,
          std::string(c.name) + ": aborts saying \"" + c.expect + "\" (got: " + output + ")");
  }
  std::string output;
  const int status = run_child("assert_twice", &output);
  size_t reports = 0;
  for (size_t at = 0; (at = output.find("device-side assertion failed", at)) != std::string::npos; ++at) ++reports;
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0 && reports == 2 &&
            output.find("test_emu_runtime.cpp") != std::string::npos &&
            output.find("a bad thread") != std::string::npos,
        "a device-side assertion prints file, line and message once until reset_device (got: " + output + ")");
}

}  // namespace

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--case") == 0) {
    for (const Case &c : kCases)
      if (strcmp(c.name, argv[2]) == 0) {
        c.run();
        return 0;
      }
    fprintf(stderr, "no case %s\n", argv[2]);
    return 2;
  }
  rng_seed(0x6a09e667f3bcc909ull);
  test_poisoned_shared_memory();
  test_block_order();
  test_shared_memory_limit();
  test_shuffles();
  test_syncwarp_and_votes();
  test_wmma();
  test_float_to_tf32();
  test_cp_async();
  test_counters();
  test_device_assert();
  test_small_things();
  test_atomic_add();
  test_aborts();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("all emulation runtime checks passed\n");
  return 0;
}
