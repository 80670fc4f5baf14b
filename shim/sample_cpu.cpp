// CPU kernel of pixcon::sample_pixels: counts, the strategy's quotas, selection (sample.h).
#include <torch/csrc/stable/ops.h>

#include "errors.h"
#include "sample_ops.h"
#include "sample_problem.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

std::tuple<Tensor, Tensor> sample_pixels_cpu(Tensor labels, std::optional<Tensor> predictions,
                                             PIXCON_SAMPLE_RULE_ARGS) {
  const char* op = "pixcon.sample_pixels";
  SampleProblem s = prepare_sample(op, labels, predictions, PIXCON_SAMPLE_RULE);
  pixcon_sample_params& p = s.params;
  p.num_threads = static_cast<int>(torch::stable::get_num_threads());
  const int64_t groups = pixcon_sample_num_groups(&p), bags = pixcon_sample_num_bags(&p);
  size_t bytes = pixcon_cpu_sample_workspace_size(&p);
  Tensor ws = empty_on(s.labels, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
  Tensor counts = empty_on(s.labels, {groups + 1}, ScalarType::Long);
  check_status(op,
               pixcon_cpu_sample_counts(&p, static_cast<int64_t*>(counts.data_ptr()),
                                        ws.data_ptr(), bytes),
               nullptr);
  Tensor quotas = empty_on(s.labels, {groups}, ScalarType::Long);
  Tensor offsets = empty_on(s.labels, {bags + 1}, ScalarType::Long);
  char message[256];
  check_status(op,
               pixcon_sample_quotas(&p, static_cast<const int64_t*>(counts.data_ptr()),
                                    static_cast<int64_t*>(quotas.data_ptr()),
                                    static_cast<int64_t*>(offsets.data_ptr()), message,
                                    sizeof message),
               message);
  const int64_t total = static_cast<const int64_t*>(offsets.data_ptr())[bags];
  Tensor indices = empty_on(s.labels, {total}, ScalarType::Long);
  check_status(op,
               pixcon_cpu_sample_select(&p, static_cast<const int64_t*>(quotas.data_ptr()),
                                        static_cast<int64_t*>(indices.data_ptr()), ws.data_ptr(),
                                        bytes),
               nullptr);
  return {indices, offsets};
}

}  // namespace pixcon_shim
