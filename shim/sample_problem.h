// Validation of pixcon::sample_pixels' arguments and their translation into the C API's
// pixcon_sample_params, shared by the CPU and CUDA kernels.
#pragma once

#include <optional>
#include <string_view>

#include <torch/csrc/stable/tensor.h>

#include "pixcon/sample.h"

namespace pixcon_shim {

using torch::stable::Tensor;

// Tensors converted for the kernels (kept alive here) and the parameters pointing into them.
struct SampleProblem {
  Tensor labels;
  std::optional<Tensor> predictions;
  pixcon_sample_params params{};
};

struct SampleRule {
  std::string_view strategy;
  int64_t num_classes, ignore_index, seed;
  bool per_image;
  int64_t num_samples, min_views, max_views, max_total, max_samples;
};

SampleProblem prepare_sample(const char* op, const Tensor& labels,
                             const std::optional<Tensor>& predictions, const SampleRule& rule);

// The schema's argument list after labels and predictions, as a SampleRule.
#define PIXCON_SAMPLE_RULE_ARGS                                                                   \
  std::string_view strategy, int64_t num_classes, int64_t ignore_index, int64_t seed,            \
      bool per_image, int64_t num_samples, int64_t min_views, int64_t max_views,                 \
      int64_t max_total, int64_t max_samples
#define PIXCON_SAMPLE_RULE                                                                        \
  SampleRule {                                                                                    \
    strategy, num_classes, ignore_index, seed, per_image, num_samples, min_views, max_views,      \
        max_total, max_samples                                                                    \
  }

}  // namespace pixcon_shim
