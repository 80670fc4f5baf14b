// CPU kernel of pixcon::kmeans (kmeans.h): one call of the C API with a workspace tensor.
#include <torch/csrc/stable/ops.h>

#include "errors.h"
#include "kmeans_ops.h"
#include "tensors.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

std::tuple<Tensor, Tensor> kmeans_cpu(Tensor features, std::optional<Tensor> valid_mask,
                                      PIXCON_KMEANS_OPTION_ARGS) {
  const char* op = "pixcon.kmeans";
  KmeansProblem k = prepare_kmeans(op, features, valid_mask, PIXCON_KMEANS_OPTIONS);
  k.params.num_threads = static_cast<int>(torch::stable::get_num_threads());
  const size_t bytes = pixcon_cpu_kmeans_workspace_size(&k.params);
  Tensor ws = empty_on(k.features, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  check_status(op,
               pixcon_cpu_kmeans(&k.params, static_cast<int64_t*>(k.labels.data_ptr()),
                                 static_cast<float*>(k.centroids.data_ptr()), ws.data_ptr(), bytes),
               nullptr);
  return {k.labels, k.centroids};
}

}  // namespace pixcon_shim
