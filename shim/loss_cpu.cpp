#include "loss_cpu.h"

#include <torch/csrc/stable/ops.h>

#include "errors.h"

namespace pixcon_shim {

CpuLoss::CpuLoss(LossProblem problem) : q_(std::move(problem)) {
  q_.params.num_threads = static_cast<int>(torch::stable::get_num_threads());
  char message[256];
  check_status(q_.op, pixcon_loss_params_check(&q_.params, message, sizeof message), message);
}

size_t CpuLoss::forward_workspace() const { return pixcon_cpu_forward_workspace_size(&q_.params); }

void CpuLoss::forward(const ForwardOutputs& out, const Tensor& ws) const {
  check_status(q_.op,
               pixcon_cpu_contrastive_forward(&q_.params, out.loss.data_ptr(),
                                              static_cast<uint8_t*>(out.valid.data_ptr()),
                                              out.stats.data_ptr(), ws.data_ptr(), ws.numel()),
               nullptr);
}

size_t CpuLoss::backward_workspace() const { return pixcon_cpu_backward_workspace_size(&q_.params); }

void CpuLoss::backward(const BackwardInputs& in, const Tensor& grad, const Tensor& ws) const {
  check_status(q_.op,
               pixcon_cpu_contrastive_backward(&q_.params, in.grad_loss.data_ptr(),
                                               in.stats.data_ptr(), grad.data_ptr(), ws.data_ptr(),
                                               ws.numel()),
               nullptr);
}

}  // namespace pixcon_shim
