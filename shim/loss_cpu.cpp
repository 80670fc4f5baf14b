// The CPU backend of the loss op (loss_op.h): OpenMP threads as torch's, the full C check (it
// reads the offsets and labels, which live on the host), no TF32.
#include <torch/csrc/stable/ops.h>

#include "errors.h"
#include "loss_op.h"

namespace pixcon_shim {

namespace {

void check(LossProblem& q) {
  q.params.num_threads = static_cast<int>(torch::stable::get_num_threads());
  char message[256];
  check_status(q.op, pixcon_loss_params_check(&q.params, message, sizeof message), message);
}

size_t forward_workspace(const LossProblem& q) { return pixcon_cpu_forward_workspace_size(&q.params); }

void forward(const LossProblem& q, const ForwardOutputs& out, const Tensor& ws) {
  check_status(q.op,
               pixcon_cpu_contrastive_forward(&q.params, out.loss.data_ptr(),
                                              static_cast<uint8_t*>(out.valid.data_ptr()),
                                              out.stats.data_ptr(), ws.data_ptr(), ws.numel()),
               nullptr);
}

size_t backward_workspace(const LossProblem& q) { return pixcon_cpu_backward_workspace_size(&q.params); }

void backward(const LossProblem& q, const BackwardInputs& in, const Tensor& grad, const Tensor& ws) {
  check_status(q.op,
               pixcon_cpu_contrastive_backward(&q.params, in.grad_loss.data_ptr(),
                                               in.stats.data_ptr(), grad.data_ptr(), ws.data_ptr(),
                                               ws.numel()),
               nullptr);
}

}  // namespace

const LossBackend kCpuLoss{check, forward_workspace, forward, backward_workspace, backward};

}  // namespace pixcon_shim
