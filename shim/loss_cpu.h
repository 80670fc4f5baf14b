// The CPU backend of the loss op (loss_op.h): OpenMP threads as torch's, no TF32.
#pragma once

#include "loss_op.h"

namespace pixcon_shim {

class CpuLoss {
 public:
  // Runs the C API's full check (it reads the offsets and labels, which live on the host).
  explicit CpuLoss(LossProblem problem);
  const LossProblem& problem() const { return q_; }
  size_t forward_workspace() const;
  void forward(const ForwardOutputs& out, const Tensor& ws) const;
  size_t backward_workspace() const;
  void backward(const BackwardInputs& in, const Tensor& grad, const Tensor& ws) const;

 private:
  LossProblem q_;
};

}  // namespace pixcon_shim
