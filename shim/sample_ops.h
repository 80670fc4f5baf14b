// Kernels of pixcon::sample_pixels (shim side).
#pragma once

#include <optional>
#include <tuple>

#include <torch/csrc/stable/tensor.h>

#include "sample_problem.h"

namespace pixcon_shim {

std::tuple<Tensor, Tensor> sample_pixels_cpu(Tensor labels, std::optional<Tensor> predictions,
                                             PIXCON_SAMPLE_RULE_ARGS);

}  // namespace pixcon_shim
