#include "loss_cuda.h"

#include "cuda_context.h"
#include "errors.h"

namespace pixcon_shim {

CudaLoss::CudaLoss(LossProblem problem)
    : guard_(problem.args.embeddings.get_device_index()), q_(std::move(problem)) {
  params_.base = q_.params;
  params_.allow_tf32 = q_.args.allow_tf32 ? 1 : 0;
  params_.tuning = 0;
  params_.stream = current_stream(q_.args.embeddings.get_device_index());
  char message[256];
  check_status(q_.op, pixcon_cuda_loss_params_check(&params_, message, sizeof message), message);
}

size_t CudaLoss::forward_workspace() const { return pixcon_cuda_forward_workspace_size(&params_); }

void CudaLoss::forward(const ForwardOutputs& out, const Tensor& ws) const {
  char message[256] = "";
  check_status(q_.op,
               pixcon_cuda_contrastive_forward(&params_, out.loss.data_ptr(),
                                               static_cast<uint8_t*>(out.valid.data_ptr()),
                                               out.stats.data_ptr(), ws.data_ptr(), ws.numel(),
                                               message, sizeof message),
               message);
}

size_t CudaLoss::backward_workspace() const {
  return pixcon_cuda_backward_workspace_size(&params_);
}

void CudaLoss::backward(const BackwardInputs& in, const Tensor& grad, const Tensor& ws) const {
  char message[256] = "";
  check_status(q_.op,
               pixcon_cuda_contrastive_backward(&params_, in.grad_loss.data_ptr(),
                                                in.stats.data_ptr(), grad.data_ptr(),
                                                ws.data_ptr(), ws.numel(), message, sizeof message),
               message);
}

}  // namespace pixcon_shim
