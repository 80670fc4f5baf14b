// The current torch CUDA stream, the sampling op's host copies, and CUDA status checks for the shim.
#pragma once

#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include "errors.h"

namespace pixcon_shim {

inline cudaStream_t current_stream(int32_t device) {
  void* stream = nullptr;
  if (aoti_torch_get_current_cuda_stream(device, &stream) != AOTI_TORCH_SUCCESS) {
    fail(ErrorKind::Internal, "pixcon: cannot get the current CUDA stream of cuda:", device);
  }
  return static_cast<cudaStream_t>(stream);
}

// A synchronous copy to the host (it waits for the work queued on the current stream).
inline torch::stable::Tensor to_host(const torch::stable::Tensor& t) {
  return torch::stable::to(t, torch::stable::Device(torch::headeronly::DeviceType::CPU));
}

inline torch::stable::Tensor to_device_of(const torch::stable::Tensor& t,
                                          const torch::stable::Tensor& like) {
  return torch::stable::to(t, like.device());
}

// check_status for the sampling API, which has no message buffer: a CUDA failure reads the
// runtime's last error.
inline void check_cuda_status(const char* op, pixcon_status status) {
  if (status == PIXCON_ERROR_CUDA) {
    fail(ErrorKind::Internal, op, ": a CUDA kernel or runtime call failed: ",
         cudaGetErrorString(cudaGetLastError()));
  }
  check_status(op, status, nullptr);
}

}  // namespace pixcon_shim
