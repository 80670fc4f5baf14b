// Input validation and the translation of torch tensors into the C API's parameter struct.
// Every invalid input becomes an exception whose message names the argument.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// "float32", "int64", ... for messages.
const char* dtype_name(torch::headeronly::ScalarType t);

bool is_integer(torch::headeronly::ScalarType t);

// An uninitialised tensor on the device of `like`.
Tensor empty_on(const Tensor& like, std::vector<int64_t> sizes, torch::headeronly::ScalarType dtype);

// The forward op's outputs for these embeddings: loss [N], valid [N], stats [N, PIXCON_NUM_STATS].
struct ForwardOutputs {
  Tensor loss, valid, stats;
};
ForwardOutputs empty_forward_outputs(const Tensor& embeddings);

// The dtype of losses, statistics and the upstream gradient for these embeddings.
torch::headeronly::ScalarType accumulation_type(const Tensor& embeddings);

// Checks that a tensor argument of the op lives on the embeddings' device.
void check_same_device(const char* op, const char* name, const Tensor& t, const Tensor& embeddings);

void check_status(const char* op, pixcon_status status);

// grad_loss [N] and stats [N, PIXCON_NUM_STATS] of the backward op, converted to the
// accumulation type and made contiguous.
std::pair<Tensor, Tensor> prepare_backward_inputs(const char* op, const Tensor& grad_loss,
                                                  const Tensor& stats, const Tensor& embeddings);

}  // namespace pixcon_shim
