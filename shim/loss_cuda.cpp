// The CUDA backend of the loss op (loss_op.h): every launch on torch's current stream of the
// embeddings' device, under a guard of that device; nothing is copied to the host and nothing
// waits (labels and offsets are checked on the device, pixcon_cuda.h).
#include <torch/csrc/stable/accelerator.h>

#include "cuda_context.h"
#include "errors.h"
#include "loss_op.h"
#include "pixcon/pixcon_cuda.h"

namespace pixcon_shim {

namespace {

// The CUDA parameters of one call, with the embeddings' device current while they live.
struct CudaCall {
  torch::stable::accelerator::DeviceGuard guard;
  pixcon_cuda_loss_params params{};
  char message[256] = "";

  explicit CudaCall(const LossProblem& q) : guard(q.args.embeddings.get_device_index()) {
    params.base = q.params;
    params.allow_tf32 = q.args.allow_tf32 ? 1 : 0;
    params.stream = current_stream(q.args.embeddings.get_device_index());
  }
};

// The host-side C check: sizes, dtype, temperature, CUDA limits; no device memory is read.
void check(LossProblem& q) {
  CudaCall c(q);
  check_status(q.op, pixcon_cuda_loss_params_check(&c.params, c.message, sizeof c.message),
               c.message);
}

size_t forward_workspace(const LossProblem& q) {
  CudaCall c(q);
  return pixcon_cuda_forward_workspace_size(&c.params);
}

void forward(const LossProblem& q, const ForwardOutputs& out, const Tensor& ws) {
  CudaCall c(q);
  check_status(q.op,
               pixcon_cuda_contrastive_forward(&c.params, out.loss.data_ptr(),
                                               static_cast<uint8_t*>(out.valid.data_ptr()),
                                               out.stats.data_ptr(), ws.data_ptr(), ws.numel(),
                                               c.message, sizeof c.message),
               c.message);
}

size_t backward_workspace(const LossProblem& q) {
  CudaCall c(q);
  return pixcon_cuda_backward_workspace_size(&c.params);
}

void backward(const LossProblem& q, const BackwardInputs& in, const Tensor& grad, const Tensor& ws) {
  CudaCall c(q);
  check_status(q.op,
               pixcon_cuda_contrastive_backward(&c.params, in.grad_loss.data_ptr(),
                                                in.stats.data_ptr(), grad.data_ptr(), ws.data_ptr(),
                                                ws.numel(), c.message, sizeof c.message),
               c.message);
}

}  // namespace

const LossBackend kCudaLoss{check, forward_workspace, forward, backward_workspace, backward};

}  // namespace pixcon_shim
