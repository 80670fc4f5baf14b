// CPU kernels of pixcon::contrastive_loss and pixcon::contrastive_loss_backward: validate,
// allocate outputs and workspace through torch, call the C API.
#include "contrastive_cpu.h"

#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/util/Exception.h>

#include "checks.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

std::tuple<Tensor, Tensor, Tensor> contrastive_loss_cpu(
    Tensor embeddings, Tensor labels, Tensor bag_offsets, std::optional<Tensor> anchor_mask,
    std::optional<Tensor> contrast_mask, std::optional<Tensor> image_ids, double temperature,
    int64_t ignore_index, std::string_view denominator, bool self_positive,
    bool /*allow_tf32: the CPU kernels compute in float32/float64, never TF32*/) {
  const char* op = "pixcon.contrastive_loss";
  LossProblem q = prepare_problem(op, embeddings, labels, bag_offsets, anchor_mask, contrast_mask,
                                  image_ids, temperature, ignore_index, denominator, self_positive);
  q.params.num_threads = static_cast<int>(torch::stable::get_num_threads());
  ForwardOutputs out = empty_forward_outputs(embeddings);
  size_t bytes = pixcon_cpu_forward_workspace_size(&q.params);
  Tensor ws = empty_on(embeddings, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  check_status(op, pixcon_cpu_contrastive_forward(&q.params, out.loss.data_ptr(),
                                                  static_cast<uint8_t*>(out.valid.data_ptr()),
                                                  out.stats.data_ptr(), ws.data_ptr(), bytes));
  return {out.loss, out.valid, out.stats};
}

Tensor contrastive_loss_backward_cpu(Tensor grad_loss, Tensor embeddings, Tensor labels,
                                     Tensor bag_offsets, std::optional<Tensor> anchor_mask,
                                     std::optional<Tensor> contrast_mask,
                                     std::optional<Tensor> image_ids, Tensor stats,
                                     double temperature, int64_t ignore_index,
                                     std::string_view denominator, bool self_positive,
                                     bool /*allow_tf32: the CPU kernels compute in float32/float64, never TF32*/) {
  const char* op = "pixcon.contrastive_loss_backward";
  LossProblem q = prepare_problem(op, embeddings, labels, bag_offsets, anchor_mask, contrast_mask,
                                  image_ids, temperature, ignore_index, denominator, self_positive);
  q.params.num_threads = static_cast<int>(torch::stable::get_num_threads());
  const int64_t n = q.params.num_rows;
  auto [g, st] = prepare_backward_inputs(op, grad_loss, stats, embeddings);
  Tensor grad = empty_on(embeddings, {n, q.params.dim}, embeddings.scalar_type());
  size_t bytes = pixcon_cpu_backward_workspace_size(&q.params);
  Tensor ws = empty_on(embeddings, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  check_status(op, pixcon_cpu_contrastive_backward(&q.params, g.data_ptr(), st.data_ptr(),
                                                   grad.data_ptr(), ws.data_ptr(), bytes));
  return grad;
}

}  // namespace pixcon_shim
