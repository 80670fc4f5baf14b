// CUDA kernels of pixcon::contrastive_loss and pixcon::contrastive_loss_backward: the current
// torch stream, one cached cuBLAS handle per device, outputs and workspace allocated by torch.
// Bag offsets and labels are checked on a host copy (the CUDA C API takes host offsets).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <mutex>
#include <vector>

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

cublasHandle_t cublas_handle(int32_t device) {
  static std::mutex mutex;
  static std::vector<cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mutex);
  if (handles.size() <= static_cast<size_t>(device)) handles.resize(device + 1, nullptr);
  if (handles[device] == nullptr) {
    torch::stable::accelerator::DeviceGuard guard(device);
    STD_TORCH_CHECK(cublasCreate(&handles[device]) == CUBLAS_STATUS_SUCCESS,
                    "pixcon: cublasCreate failed on cuda:", device);
  }
  return handles[device];
}

struct CudaProblem {
  LossProblem q;
  Tensor offsets_host;
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
  c.offsets_host = to_host(c.q.bag_offsets);
  Tensor labels_host = to_host(c.q.labels);
  pixcon_loss_params host = c.q.params;
  host.labels = static_cast<const int64_t*>(labels_host.data_ptr());
  host.bag_offsets = static_cast<const int64_t*>(c.offsets_host.data_ptr());
  char message[256];
  if (pixcon_loss_params_check(&host, message, sizeof message) != PIXCON_OK) {
    STD_TORCH_CHECK(false, op, ": ", message);
  }
  const int32_t device = embeddings.get_device_index();
  c.params.base = c.q.params;
  c.params.base.bag_offsets = host.bag_offsets;
  c.params.cublas = cublas_handle(device);
  c.params.stream = current_stream(device);
  c.params.allow_tf32 = allow_tf32 ? 1 : 0;
  c.params.workspace_limit = 0;
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
  check_cuda_status(op, pixcon_cuda_contrastive_forward(
                            &c.params, out.loss.data_ptr(), static_cast<uint8_t*>(out.valid.data_ptr()),
                            out.stats.data_ptr(), ws.data_ptr(), bytes));
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
  check_cuda_status(op, pixcon_cuda_contrastive_backward(&c.params, g.data_ptr(), st.data_ptr(),
                                                         grad.data_ptr(), ws.data_ptr(), bytes));
  return grad;
}

}  // namespace pixcon_shim

STABLE_TORCH_LIBRARY_IMPL(pixcon, CUDA, m) {
  m.impl("contrastive_loss", TORCH_BOX(&pixcon_shim::contrastive_loss_cuda));
  m.impl("contrastive_loss_backward", TORCH_BOX(&pixcon_shim::contrastive_loss_backward_cuda));
}
