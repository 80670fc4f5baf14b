// The current torch CUDA stream, the sampling op's host copies, and CUDA status checks for the shim.
#pragma once

#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/util/Exception.h>

#include "checks.h"

namespace pixcon_shim {

inline cudaStream_t current_stream(int32_t device) {
  void* stream = nullptr;
  STD_TORCH_CHECK(aoti_torch_get_current_cuda_stream(device, &stream) == AOTI_TORCH_SUCCESS,
                  "pixcon: cannot get the current CUDA stream of cuda:", device);
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

// check_status, with the C API's message when it wrote one (the sampling API, which has no message
// buffer, leaves the CUDA runtime's last error to read).
inline void check_cuda_status(const char* op, pixcon_status status, const char* message = nullptr) {
  if (status == PIXCON_OK) return;
  if (message && message[0]) {
    STD_TORCH_CHECK(false, op, ": ", message);
  }
  STD_TORCH_CHECK(status != PIXCON_ERROR_CUDA, op, ": a CUDA kernel or runtime call failed: ",
                  cudaGetErrorString(cudaGetLastError()));
  check_status(op, status);
}

}  // namespace pixcon_shim
