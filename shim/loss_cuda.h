// The CUDA backend of the loss op (loss_op.h): every launch on torch's current stream of the
// embeddings' device; nothing is copied to the host and nothing waits (labels and offsets are
// checked on the device, pixcon_cuda.h).
#pragma once

#include <torch/csrc/stable/accelerator.h>

#include "loss_op.h"
#include "pixcon/pixcon_cuda.h"

namespace pixcon_shim {

class CudaLoss {
 public:
  // Runs the C API's host-side check (sizes, dtype, temperature; no device memory is read).
  explicit CudaLoss(LossProblem problem);
  const LossProblem& problem() const { return q_; }
  size_t forward_workspace() const;
  void forward(const ForwardOutputs& out, const Tensor& ws) const;
  size_t backward_workspace() const;
  void backward(const BackwardInputs& in, const Tensor& grad, const Tensor& ws) const;

 private:
  torch::stable::accelerator::DeviceGuard guard_;
  LossProblem q_;
  pixcon_cuda_loss_params params_{};
};

}  // namespace pixcon_shim
