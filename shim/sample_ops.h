// Kernels of pixcon::sample_pixels (shim side) and its schema.
#pragma once

#include <optional>
#include <tuple>

#include <torch/csrc/stable/tensor.h>

#include "sample_problem.h"
#include "tensors.h"

#define PIXCON_SAMPLE_SCHEMA                                                                    \
  "sample_pixels(Tensor labels, Tensor? predictions, str strategy, int num_classes, "          \
  "int ignore_index, int seed, bool per_image, int num_samples, int min_views, int max_views, " \
  "int max_total, int max_samples) -> (Tensor, Tensor)"

namespace pixcon_shim {

std::tuple<Tensor, Tensor> sample_pixels_cpu(Tensor labels, std::optional<Tensor> predictions,
                                             PIXCON_SAMPLE_RULE_ARGS);

std::tuple<Tensor, Tensor> sample_pixels_cuda(Tensor labels, std::optional<Tensor> predictions,
                                              PIXCON_SAMPLE_RULE_ARGS);

}  // namespace pixcon_shim
