// Input validation and the translation of torch tensors into the C API's parameter struct.
// Every invalid input becomes an exception whose message names the argument.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <torch/csrc/stable/tensor.h>

#include "pixcon/pixcon.h"

namespace pixcon_shim {

using torch::stable::Tensor;

// Tensors converted for the kernels (kept alive here) and the parameters pointing into them.
struct LossProblem {
  Tensor embeddings, labels, bag_offsets;
  std::optional<Tensor> anchor_mask, contrast_mask, image_ids;
  pixcon_loss_params params{};
};

LossProblem prepare_problem(const char* op, const Tensor& embeddings, const Tensor& labels,
                            const Tensor& bag_offsets, const std::optional<Tensor>& anchor_mask,
                            const std::optional<Tensor>& contrast_mask,
                            const std::optional<Tensor>& image_ids, double temperature,
                            int64_t ignore_index, std::string_view denominator,
                            bool self_positive);

// The dtype of losses, statistics and the upstream gradient for these embeddings.
torch::headeronly::ScalarType accumulation_type(const Tensor& embeddings);

// Checks that a tensor argument of the op lives on the embeddings' device.
void check_same_device(const char* op, const char* name, const Tensor& t, const Tensor& embeddings);

void check_status(const char* op, pixcon_status status);

}  // namespace pixcon_shim
