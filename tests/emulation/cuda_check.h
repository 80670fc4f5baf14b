// Shared by the emulation tests: abort on a CUDA runtime error, upload a host vector, and the
// command line every test takes.
#pragma once

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#define CHECK_CUDA(x)                                                                      \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(2);                                                                             \
    }                                                                                      \
  } while (0)

// One spare byte, so that an empty vector still gets a distinct non-null pointer, as the kernels
// assume of their inputs.
template <class T> T *to_device(const std::vector<T> &v) {
  T *d = nullptr;
  CHECK_CUDA(cudaMalloc((void **)&d, v.size() * sizeof(T) + 1));
  if (!v.empty()) CHECK_CUDA(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// The tests' only option: --quick runs a subset (the ThreadSanitizer build). Exits with a usage
// message on anything else.
inline bool quick_option(int argc, char **argv) {
  bool quick = false;
  for (int a = 1; a < argc; ++a) {
    if (strcmp(argv[a], "--quick") != 0) {
      fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      exit(2);
    }
    quick = true;
  }
  return quick;
}
