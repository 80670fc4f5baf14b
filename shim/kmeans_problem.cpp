// Validation of pixcon::kmeans' arguments and their translation into pixcon_kmeans_params, shared
// by the CPU and CUDA kernels. The features are read in place through their strides (a
// [B, D, H, W] map is never copied), so the op's memory is the kernel's workspace.
#include <string>

#include <torch/csrc/stable/ops.h>

#include "errors.h"
#include "kmeans_ops.h"
#include "tensors.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

namespace {

pixcon_kmeans_init parse_init(const char* op, std::string_view s) {
  if (s == "k-means++") return PIXCON_KMEANS_PLUS_PLUS;
  if (s == "random") return PIXCON_KMEANS_RANDOM;
  fail(ErrorKind::Value, op, ": init must be \"k-means++\" or \"random\", got \"", std::string(s), "\"");
}

// The features as float32 with their strides; a map of another dtype is converted (one copy).
Tensor float_features(const char* op, const Tensor& features) {
  require(features.dim() == 2 || features.dim() == 4, ErrorKind::Value, op,
          ": features must be [N, D] or [B, D, H, W], got a ", features.dim(), "-D tensor");
  const ScalarType t = features.scalar_type();
  require(t == ScalarType::Float || t == ScalarType::Double || t == ScalarType::Half ||
              t == ScalarType::BFloat16,
          ErrorKind::Type, op, ": features must be a floating-point tensor, got ", dtype_name(t));
  return t == ScalarType::Float ? features : torch::stable::to(features, ScalarType::Float);
}

void set_layout(pixcon_kmeans_params& p, const Tensor& x) {
  if (x.dim() == 2) {
    p.num_images = 1;
    p.pixels_per_image = x.size(0);
    p.dim = x.size(1);
    p.image_stride = 0;
    p.pixel_stride = x.stride(0);
    p.dim_stride = x.stride(1);
    return;
  }
  // [B, D, H, W]: pixel (h, w) of an image is h * W + w; one stride per pixel needs W's and H's
  // to agree, else the map is made contiguous first (a view of another layout)
  p.num_images = x.size(0);
  p.dim = x.size(1);
  p.pixels_per_image = x.size(2) * x.size(3);
  p.image_stride = x.stride(0);
  p.dim_stride = x.stride(1);
  p.pixel_stride = x.size(3) > 1 ? x.stride(3) : x.stride(2);
}

}  // namespace

KmeansProblem prepare_kmeans(const char* op, const Tensor& features,
                             const std::optional<Tensor>& valid_mask, const KmeansOptions& o) {
  KmeansProblem k;
  k.features = float_features(op, features);
  if (k.features.dim() == 4 && k.features.size(3) > 1 && k.features.size(2) > 1 &&
      k.features.stride(2) != k.features.stride(3) * k.features.size(3))
    k.features = torch::stable::contiguous(k.features);
  const bool maps = k.features.dim() == 4;
  if (valid_mask.has_value()) {
    check_same_device(op, "valid_mask", *valid_mask, "features", features);
    require(valid_mask->scalar_type() == ScalarType::Bool, ErrorKind::Type, op,
            ": valid_mask must be a bool tensor, got ", dtype_name(valid_mask->scalar_type()));
    const bool same = maps ? valid_mask->dim() == 3 && valid_mask->size(0) == features.size(0) &&
                                 valid_mask->size(1) == features.size(2) &&
                                 valid_mask->size(2) == features.size(3)
                           : valid_mask->dim() == 1 && valid_mask->size(0) == features.size(0);
    require(same, ErrorKind::Value, op, ": valid_mask must have one entry per pixel: ",
            maps ? "[B, H, W]" : "[N]", " of features");
    k.valid = torch::stable::contiguous(torch::stable::to(*valid_mask, ScalarType::Byte));
  }
  pixcon_kmeans_params& p = k.params;
  set_layout(p, k.features);
  p.features = static_cast<const float*>(k.features.data_ptr());
  p.valid = k.valid ? static_cast<const uint8_t*>(k.valid->data_ptr()) : nullptr;
  p.num_clusters = o.num_clusters;
  p.iterations = o.iterations;
  p.restarts = o.restarts;
  p.outlier_fraction = o.outlier_fraction;
  p.init = parse_init(op, o.init);
  p.seed = static_cast<uint64_t>(o.seed);
  p.ignore_index = o.ignore_index;
  p.num_threads = 0;
  char message[256];
  check_status(op, pixcon_kmeans_params_check(&p, message, sizeof message), message);
  if (maps)
    k.labels = empty_on(k.features, {p.num_images, k.features.size(2), k.features.size(3)}, ScalarType::Long);
  else
    k.labels = empty_on(k.features, {p.pixels_per_image}, ScalarType::Long);
  k.centroids = empty_on(k.features, {p.num_clusters, p.dim}, ScalarType::Float);
  return k;
}

}  // namespace pixcon_shim
