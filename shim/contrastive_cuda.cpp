// CUDA kernels of pixcon::contrastive_loss and pixcon::contrastive_loss_backward: outputs and
// workspace allocated by torch, every launch on the current torch stream. Nothing is copied to the
// host and nothing waits: labels and bag offsets are checked on the device (pixcon_cuda.h).
#include <cuda_runtime.h>

#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/util/Exception.h>

#include "checks.h"
#include "cuda_context.h"
#include "pixcon/pixcon_cuda.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

namespace {

struct CudaProblem {
  LossProblem q;
  pixcon_cuda_loss_params params{};
};

CudaProblem prepare_cuda(const char* op, const Tensor& embeddings, const Tensor& labels,
                         const Tensor& bag_offsets, const std::optional<Tensor>& anchor_mask,
                         const std::optional<Tensor>& contrast_mask,
                         const std::optional<Tensor>& image_ids, double temperature,
                         int64_t ignore_index, std::string_view denominator, bool self_positive,
                         bool allow_tf32) {
  CudaProblem c;
  c.q = prepare_problem(op, embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids,
                        temperature, ignore_index, denominator, self_positive);
  c.params.base = c.q.params;
  c.params.allow_tf32 = allow_tf32 ? 1 : 0;
  c.params.tuning = 0;
  c.params.stream = current_stream(embeddings.get_device_index());
  char message[256];
  if (pixcon_cuda_loss_params_check(&c.params, message, sizeof message) != PIXCON_OK) {
    STD_TORCH_CHECK(false, op, ": ", message);
  }
  return c;
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor> contrastive_loss_cuda(
    Tensor embeddings, Tensor labels, Tensor bag_offsets, std::optional<Tensor> anchor_mask,
    std::optional<Tensor> contrast_mask, std::optional<Tensor> image_ids, double temperature,
    int64_t ignore_index, std::string_view denominator, bool self_positive, bool allow_tf32) {
  const char* op = "pixcon.contrastive_loss";
  torch::stable::accelerator::DeviceGuard guard(embeddings.get_device_index());
  CudaProblem c = prepare_cuda(op, embeddings, labels, bag_offsets, anchor_mask, contrast_mask,
                               image_ids, temperature, ignore_index, denominator, self_positive,
                               allow_tf32);
  ForwardOutputs out = empty_forward_outputs(embeddings);
  size_t bytes = pixcon_cuda_forward_workspace_size(&c.params);
  Tensor ws = empty_on(embeddings, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  char message[256] = "";
  check_cuda_status(op,
                    pixcon_cuda_contrastive_forward(&c.params, out.loss.data_ptr(),
                                                    static_cast<uint8_t*>(out.valid.data_ptr()),
                                                    out.stats.data_ptr(), ws.data_ptr(), bytes,
                                                    message, sizeof message),
                    message);
  return {out.loss, out.valid, out.stats};
}

Tensor contrastive_loss_backward_cuda(Tensor grad_loss, Tensor embeddings, Tensor labels,
                                      Tensor bag_offsets, std::optional<Tensor> anchor_mask,
                                      std::optional<Tensor> contrast_mask,
                                      std::optional<Tensor> image_ids, Tensor stats,
                                      double temperature, int64_t ignore_index,
                                      std::string_view denominator, bool self_positive,
                                      bool allow_tf32) {
  const char* op = "pixcon.contrastive_loss_backward";
  torch::stable::accelerator::DeviceGuard guard(embeddings.get_device_index());
  CudaProblem c = prepare_cuda(op, embeddings, labels, bag_offsets, anchor_mask, contrast_mask,
                               image_ids, temperature, ignore_index, denominator, self_positive,
                               allow_tf32);
  const int64_t n = c.params.base.num_rows;
  auto [g, st] = prepare_backward_inputs(op, grad_loss, stats, embeddings);
  Tensor grad = empty_on(embeddings, {n, c.params.base.dim}, embeddings.scalar_type());
  size_t bytes = pixcon_cuda_backward_workspace_size(&c.params);
  Tensor ws = empty_on(embeddings, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  char message[256] = "";
  check_cuda_status(op,
                    pixcon_cuda_contrastive_backward(&c.params, g.data_ptr(), st.data_ptr(),
                                                     grad.data_ptr(), ws.data_ptr(), bytes,
                                                     message, sizeof message),
                    message);
  return grad;
}

}  // namespace pixcon_shim

STABLE_TORCH_LIBRARY_IMPL(pixcon, CUDA, m) {
  m.impl("contrastive_loss", TORCH_BOX(&pixcon_shim::contrastive_loss_cuda));
  m.impl("contrastive_loss_backward", TORCH_BOX(&pixcon_shim::contrastive_loss_backward_cuda));
}
