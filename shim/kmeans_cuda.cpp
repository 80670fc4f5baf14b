// CUDA kernel of pixcon::kmeans (kmeans_cuda.h): one call of the C API on the current stream with a
// workspace tensor. Nothing is copied back, so the op never waits for the device.
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/ops.h>

#include "cuda_context.h"
#include "kmeans_ops.h"
#include "pixcon/kmeans_cuda.h"
#include "tensors.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

std::tuple<Tensor, Tensor> kmeans_cuda(Tensor features, std::optional<Tensor> valid_mask,
                                       PIXCON_KMEANS_OPTION_ARGS) {
  const char* op = "pixcon.kmeans";
  torch::stable::accelerator::DeviceGuard guard(features.get_device_index());
  KmeansProblem k = prepare_kmeans(op, features, valid_mask, PIXCON_KMEANS_OPTIONS);
  pixcon_cuda_kmeans_params q{};
  q.base = k.params;
  q.stream = current_stream(features.get_device_index());
  const size_t bytes = pixcon_cuda_kmeans_workspace_size(&q);
  Tensor ws = empty_on(k.features, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  check_cuda_status(op, pixcon_cuda_kmeans(&q, static_cast<int64_t*>(k.labels.data_ptr()),
                                           static_cast<float*>(k.centroids.data_ptr()), ws.data_ptr(),
                                           bytes));
  return {k.labels, k.centroids};
}

}  // namespace pixcon_shim
