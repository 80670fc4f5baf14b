// Kernels of pixcon::kmeans (shim side) and its schema: the spherical k-means of auxiliary labels
// (ops/include/pixcon/kmeans.h). No autograd: the labels are integers.
#pragma once

#include <optional>
#include <string_view>
#include <tuple>

#include <torch/csrc/stable/tensor.h>

#include "pixcon/kmeans.h"

#define PIXCON_KMEANS_SCHEMA                                                                    \
  "kmeans(Tensor features, Tensor? valid_mask, int num_clusters, int iterations, int restarts, " \
  "float outlier_fraction, str init, int seed, int ignore_index) -> (Tensor, Tensor)"

namespace pixcon_shim {

using torch::stable::Tensor;

// The schema's arguments after features and valid_mask.
struct KmeansOptions {
  int64_t num_clusters, iterations, restarts;
  double outlier_fraction;
  std::string_view init;
  int64_t seed, ignore_index;
};

#define PIXCON_KMEANS_OPTION_ARGS                                                           \
  int64_t num_clusters, int64_t iterations, int64_t restarts, double outlier_fraction,     \
      std::string_view init, int64_t seed, int64_t ignore_index
#define PIXCON_KMEANS_OPTIONS                                                               \
  KmeansOptions { num_clusters, iterations, restarts, outlier_fraction, init, seed, ignore_index }

// Checked inputs (kept alive here), the C API's parameters pointing into them, and the outputs:
// labels [N] for features [N, D], [B, H, W] for [B, D, H, W]; centroids [K, D] float32.
struct KmeansProblem {
  Tensor features;
  std::optional<Tensor> valid;
  Tensor labels, centroids;
  pixcon_kmeans_params params{};
};

KmeansProblem prepare_kmeans(const char* op, const Tensor& features,
                             const std::optional<Tensor>& valid_mask, const KmeansOptions& options);

std::tuple<Tensor, Tensor> kmeans_cpu(Tensor features, std::optional<Tensor> valid_mask,
                                      PIXCON_KMEANS_OPTION_ARGS);

std::tuple<Tensor, Tensor> kmeans_cuda(Tensor features, std::optional<Tensor> valid_mask,
                                       PIXCON_KMEANS_OPTION_ARGS);

}  // namespace pixcon_shim
