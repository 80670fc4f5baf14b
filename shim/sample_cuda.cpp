// CUDA kernel of pixcon::sample_pixels: counts on the device, the strategy's quotas on the host
// (one copy of the G + 1 counts: the output size depends on them), selection on the device.
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/ops.h>

#include "cuda_context.h"
#include "pixcon/sample_cuda.h"
#include "sample_ops.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

std::tuple<Tensor, Tensor> sample_pixels_cuda(Tensor labels, std::optional<Tensor> predictions,
                                              PIXCON_SAMPLE_RULE_ARGS) {
  const char* op = "pixcon.sample_pixels";
  torch::stable::accelerator::DeviceGuard guard(labels.get_device_index());
  SampleProblem s = prepare_sample(op, labels, predictions, PIXCON_SAMPLE_RULE);
  pixcon_cuda_sample_params q{};
  q.base = s.params;
  q.stream = current_stream(labels.get_device_index());
  const int64_t groups = pixcon_sample_num_groups(&q.base), bags = pixcon_sample_num_bags(&q.base);
  size_t bytes = pixcon_cuda_sample_workspace_size(&q);
  Tensor ws = empty_on(s.labels, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  Tensor counts = empty_on(s.labels, {groups + 1}, ScalarType::Long);
  check_cuda_status(op, pixcon_cuda_sample_counts(&q, static_cast<int64_t*>(counts.data_ptr()),
                                             ws.data_ptr(), bytes));
  Tensor counts_host = to_host(counts);
  Tensor quotas_host = empty_on(counts_host, {groups}, ScalarType::Long);
  Tensor offsets_host = empty_on(counts_host, {bags + 1}, ScalarType::Long);
  char message[256];
  check_status(op,
               pixcon_sample_quotas(&q.base, static_cast<const int64_t*>(counts_host.data_ptr()),
                                    static_cast<int64_t*>(quotas_host.data_ptr()),
                                    static_cast<int64_t*>(offsets_host.data_ptr()), message,
                                    sizeof message),
               message);
  const int64_t total = static_cast<const int64_t*>(offsets_host.data_ptr())[bags];
  Tensor quotas = to_device_of(quotas_host, s.labels);
  Tensor indices = empty_on(s.labels, {total}, ScalarType::Long);
  check_cuda_status(op, pixcon_cuda_sample_select(
                            &q, static_cast<const int64_t*>(quotas.data_ptr()), total,
                            static_cast<int64_t*>(indices.data_ptr()), ws.data_ptr(), bytes));
  return {indices, to_device_of(offsets_host, s.labels)};
}

}  // namespace pixcon_shim
