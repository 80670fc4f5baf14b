/* Faithfulness test of the emulation's device-wide CUB stand-ins against CUB's documented semantics:
 * DeviceRadixSort::SortPairs (DoubleBuffer: temp-storage query, bit ranges, stability, signed keys, selector),
 * DeviceSelect::Flagged (order kept, count on the device) and DeviceScan::InclusiveSum / ExclusiveSum
 * (wrapping unsigned sums, in place), plus their aborts on bad device ranges.
 * Cost: O(cases * n log n) on the host, well under a second. */
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <vector>
#include "../c/test_rng.h"
#include "cuda_check.h"

namespace {


int failures = 0;
void expect(bool ok, const char *what) {
  if (ok) return;
  if (failures < 25) fprintf(stderr, "FAIL %s\n", what);
  ++failures;
}

template <class T> std::vector<T> host(const T *d, size_t n) {
  std::vector<T> v(n);
  if (n) CHECK_CUDA(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

/* Bits [begin, end) of CUB's radix form: unsigned as is, signed with the sign bit flipped. */
template <class K> uint64_t bits_of(K k, int begin, int end) {
  typedef typename std::make_unsigned<K>::type U;
  U u = (U)k;
  if (std::is_signed<K>::value) u ^= (U)((U)1 << (sizeof(U) * 8 - 1));
  uint64_t v = (uint64_t)u >> begin;
  return end - begin >= 64 ? v : v & (((uint64_t)1 << (end - begin)) - 1);
}

int selector_seen[2];

/* One sort of n pairs (keys drawn by draw(), values 0..n-1) against std::stable_sort on the bit range. */
template <class K> void sort_case(size_t n, int begin, int end, const std::function<K()> &draw) {
  std::vector<K> keys(n);
  std::vector<int64_t> values(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i] = draw();
    values[i] = (int64_t)i;
  }
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return bits_of(keys[a], begin, end) < bits_of(keys[b], begin, end); });

  cub::DoubleBuffer<K> d_keys(to_device(keys), to_device(std::vector<K>(n)));
  cub::DoubleBuffer<int64_t> d_values(to_device(values), to_device(std::vector<int64_t>(n)));
  size_t bytes = 0;
  expect(cub::DeviceRadixSort::SortPairs(nullptr, bytes, d_keys, d_values, n, begin, end) == cudaSuccess,
         "sort: the size query succeeds");
  expect(bytes > 0 && d_keys.selector == 0 && d_values.selector == 0, "sort: the size query only writes the size");
  expect(host(d_keys.d_buffers[0], n) == keys, "sort: the size query leaves the keys alone");
  void *temp = nullptr;
  CHECK_CUDA(cudaMalloc(&temp, bytes));
  if (bytes > 1) {
    size_t short_bytes = bytes - 1;
    expect(cub::DeviceRadixSort::SortPairs(temp, short_bytes, d_keys, d_values, n, begin, end) ==
               cudaErrorInvalidValue,
           "sort: too little temporary storage is cudaErrorInvalidValue");
    expect(d_keys.selector == 0 && host(d_keys.d_buffers[0], n) == keys, "sort: a refused call changes nothing");
  }
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  expect(cub::DeviceRadixSort::SortPairs(temp, bytes, d_keys, d_values, n, begin, end, stream) == cudaSuccess,
         "sort: succeeds");
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_CUDA(cudaStreamDestroy(stream));
  expect(d_keys.selector == d_values.selector, "sort: keys and values end in the same buffer");
  std::vector<K> got_keys = host(d_keys.Current(), n);
  std::vector<int64_t> got_values = host(d_values.Current(), n);
  bool ok = true;
  for (size_t k = 0; k < n; ++k) ok = ok && got_values[k] == (int64_t)order[k] && got_keys[k] == keys[order[k]];
  expect(ok, begin == end ? "sort: an empty bit range leaves the input in place"
                          : "sort: stable by the bit range, full keys carried, values with their keys");
  if (n == 0 || begin == end) expect(d_keys.selector == 0, "sort: nothing to sort keeps the selector");
  if (n > 0 && begin < end) ++selector_seen[d_keys.selector];
  for (void *d : {(void *)d_keys.d_buffers[0], (void *)d_keys.d_buffers[1], (void *)d_values.d_buffers[0],
                  (void *)d_values.d_buffers[1], temp})
    CHECK_CUDA(cudaFree(d));
}

void test_sort() {
  for (size_t n : {0, 1, 2, 7, 300, 1024, 1025, 5000}) {
    /* few distinct values in the sorted bits, so stability is visible */
    sort_case<uint64_t>(n, 0, 64, [] { return next_u64() & 0xf000000000000007ull; });
    sort_case<uint64_t>(n, 32, 41, [] { return next_u64(); });
    sort_case<uint64_t>(n, 0, 37, [] { return (uint64_t)below(5) << 32 | (next_u64() & 0xffff0000ull); });
    sort_case<uint64_t>(n, 5, 5, [] { return next_u64(); });
    sort_case<uint32_t>(n, 3, 17, [] { return (uint32_t)next_u64(); });
    sort_case<int32_t>(n, 0, 32, [] { return (int32_t)below(21) - 10; });
    sort_case<int64_t>(n, 60, 64, [] { return (int64_t)next_u64(); });
    sort_case<uint8_t>(n, 0, 8, [] { return (uint8_t)below(4); });
  }
  /* CUB's result may be in either buffer (one swap per pass); callers must follow the selector */
  expect(selector_seen[0] > 0 && selector_seen[1] > 0, "sort: results land in both buffers over the cases");
}

void test_select() {
  for (int64_t n : {0, 1, 10, 1023, 1024, 1025, 4000}) {
    std::vector<int64_t> in((size_t)n), want;
    std::vector<uint8_t> flags((size_t)n);
    for (int64_t i = 0; i < n; ++i) {
      in[(size_t)i] = (int64_t)next_u64();
      flags[(size_t)i] = (uint8_t)(below(3) == 0 ? 0 : below(3)); /* any nonzero flag selects */
      if (flags[(size_t)i]) want.push_back(in[(size_t)i]);
    }
    int64_t *d_in = to_device(in), *d_out = to_device(std::vector<int64_t>(want.size())), *d_count = nullptr;
    uint8_t *d_flags = to_device(flags);
    CHECK_CUDA(cudaMalloc(&d_count, sizeof(int64_t)));
    size_t bytes = 0;
    expect(cub::DeviceSelect::Flagged(nullptr, bytes, d_in, d_flags, d_out, d_count, n) == cudaSuccess && bytes > 0,
           "select: the size query succeeds");
    void *temp = nullptr;
    CHECK_CUDA(cudaMalloc(&temp, bytes));
    size_t short_bytes = bytes - 1;
    expect(cub::DeviceSelect::Flagged(temp, short_bytes, d_in, d_flags, d_out, d_count, n) == cudaErrorInvalidValue,
           "select: too little temporary storage is cudaErrorInvalidValue");
    expect(cub::DeviceSelect::Flagged(temp, bytes, d_in, d_flags, d_out, d_count, n, (cudaStream_t)0) == cudaSuccess,
           "select: succeeds");
    expect(host(d_count, 1)[0] == (int64_t)want.size(), "select: the number selected");
    expect(host(d_out, want.size()) == want, "select: the flagged items in their input order");
    for (void *d : {(void *)d_in, (void *)d_out, (void *)d_count, (void *)d_flags, temp}) CHECK_CUDA(cudaFree(d));
  }
}

/* Both sums against a serial loop, out of place and in place; 64-bit items whose sum wraps. */
void test_scan() {
  for (int64_t n : {0, 1, 5, 1023, 1024, 1025, 3000}) {
    for (int inclusive = 0; inclusive < 2; ++inclusive) {
      std::vector<uint64_t> in((size_t)n), want((size_t)n);
      uint64_t run = 0;
      for (int64_t i = 0; i < n; ++i) {
        in[(size_t)i] = below(4) == 0 ? 0 : next_u64() >> (below(2) ? 0 : 40);
        if (inclusive) run += in[(size_t)i];
        want[(size_t)i] = run;
        if (!inclusive) run += in[(size_t)i];
      }
      auto sum = [&](void *temp, size_t &bytes, const uint64_t *d_in, uint64_t *d_out) {
        return inclusive ? cub::DeviceScan::InclusiveSum(temp, bytes, d_in, d_out, n)
                         : cub::DeviceScan::ExclusiveSum(temp, bytes, d_in, d_out, n, (cudaStream_t)0);
      };
      uint64_t *d_in = to_device(in), *d_out = to_device(std::vector<uint64_t>((size_t)n));
      size_t bytes = 0;
      expect(sum(nullptr, bytes, d_in, d_out) == cudaSuccess && bytes > 0, "scan: the size query succeeds");
      void *temp = nullptr;
      CHECK_CUDA(cudaMalloc(&temp, bytes));
      size_t short_bytes = bytes - 1;
      expect(sum(temp, short_bytes, d_in, d_out) == cudaErrorInvalidValue,
             "scan: too little temporary storage is cudaErrorInvalidValue");
      expect(sum(temp, bytes, d_in, d_out) == cudaSuccess, "scan: succeeds");
      expect(host(d_out, (size_t)n) == want, inclusive ? "scan: inclusive sums" : "scan: exclusive sums");
      expect(host(d_in, (size_t)n) == in, "scan: the input is left alone");
      expect(sum(temp, bytes, d_in, d_in) == cudaSuccess && host(d_in, (size_t)n) == want, "scan: in place");
      for (void *d : {(void *)d_in, (void *)d_out, temp}) CHECK_CUDA(cudaFree(d));
    }
  }
}

/* body() must abort (the stand-ins' argument checks). */
void expect_abort(const char *what, void (*body)()) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd >= 0) dup2(null_fd, 2);
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, what);
}

/* The temporary-storage query, then the sort of n pairs in storage of that size. */
void sort_pairs(cub::DoubleBuffer<uint64_t> &keys, cub::DoubleBuffer<int64_t> &vals, int n) {
  size_t bytes = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, vals, n);
  void *temp = nullptr;
  cudaMalloc(&temp, bytes);
  cub::DeviceRadixSort::SortPairs(temp, bytes, keys, vals, n);
}

void test_aborts() {
  expect_abort("sort: a key buffer outside cudaMalloc'd memory aborts", [] {
    static uint64_t host_keys[2000];
    std::vector<int64_t> values(2000);
    cub::DoubleBuffer<uint64_t> keys(host_keys, to_device(std::vector<uint64_t>(2000)));
    cub::DoubleBuffer<int64_t> vals(to_device(values), to_device(values));
    sort_pairs(keys, vals, 2000);
  });
  expect_abort("sort: overlapping buffers abort", [] {
    uint64_t *k = to_device(std::vector<uint64_t>(3000));
    int64_t *v = to_device(std::vector<int64_t>(2000));
    cub::DoubleBuffer<uint64_t> keys(k, k + 1000);
    cub::DoubleBuffer<int64_t> vals(v, to_device(std::vector<int64_t>(2000)));
    sort_pairs(keys, vals, 2000);
  });
  expect_abort("sort: end_bit beyond the key aborts", [] {
    cub::DoubleBuffer<uint32_t> keys;
    cub::DoubleBuffer<int64_t> vals;
    size_t bytes = 0;
    cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, vals, 10, 0, 33);
  });
  expect_abort("scan: overlapping input and output abort", [] {
    uint64_t *d = to_device(std::vector<uint64_t>(200));
    size_t bytes = 0;
    cub::DeviceScan::InclusiveSum(nullptr, bytes, d, d + 1, 100);
    void *temp = nullptr;
    cudaMalloc(&temp, bytes);
    cub::DeviceScan::InclusiveSum(temp, bytes, d, d + 1, 100);
  });
  expect_abort("scan: a host output aborts", [] {
    static uint64_t out[100];
    uint64_t *d = to_device(std::vector<uint64_t>(100));
    size_t bytes = 0;
    cub::DeviceScan::ExclusiveSum(nullptr, bytes, d, out, 100);
    void *temp = nullptr;
    cudaMalloc(&temp, bytes);
    cub::DeviceScan::ExclusiveSum(temp, bytes, d, out, 100);
  });
  expect_abort("select: an output too small for the selection aborts", [] {
    std::vector<int64_t> in(100, 7);
    std::vector<uint8_t> flags(100, 1);
    int64_t *d_in = to_device(in), *d_out = nullptr, *d_count = nullptr;
    uint8_t *d_flags = to_device(flags);
    cudaMalloc(&d_out, 99 * sizeof(int64_t));
    cudaMalloc(&d_count, sizeof(int64_t));
    size_t bytes = 0;
    cub::DeviceSelect::Flagged(nullptr, bytes, d_in, d_flags, d_out, d_count, 100);
    void *temp = nullptr;
    cudaMalloc(&temp, bytes);
    cub::DeviceSelect::Flagged(temp, bytes, d_in, d_flags, d_out, d_count, 100);
  });
}

}  // namespace

int main() {
  rng_seed(0x2545f4914f6cdd1dull);
  test_sort();
  test_select();
  test_scan();
  test_aborts();
  printf("cub stand-in: %d failures\n", failures);
  return failures ? 1 : 0;
}
