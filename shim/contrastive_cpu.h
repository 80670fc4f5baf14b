// CPU implementations of the pixcon ops (shim side).
#pragma once

#include <optional>
#include <string_view>
#include <tuple>

#include <torch/csrc/stable/tensor.h>

namespace pixcon_shim {

using torch::stable::Tensor;

std::tuple<Tensor, Tensor, Tensor> contrastive_loss_cpu(
    Tensor embeddings, Tensor labels, Tensor bag_offsets, std::optional<Tensor> anchor_mask,
    std::optional<Tensor> contrast_mask, std::optional<Tensor> image_ids, double temperature,
    int64_t ignore_index, std::string_view denominator, bool self_positive,
    bool allow_tf32);

Tensor contrastive_loss_backward_cpu(Tensor grad_loss, Tensor embeddings, Tensor labels,
                                     Tensor bag_offsets, std::optional<Tensor> anchor_mask,
                                     std::optional<Tensor> contrast_mask,
                                     std::optional<Tensor> image_ids, Tensor stats,
                                     double temperature, int64_t ignore_index,
                                     std::string_view denominator, bool self_positive,
                                     bool allow_tf32);

}  // namespace pixcon_shim
