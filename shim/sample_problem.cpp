#include "sample_problem.h"

#include <string>

#include <torch/csrc/stable/ops.h>

#include "errors.h"
#include "tensors.h"

namespace pixcon_shim {

namespace {

pixcon_sample_strategy parse_strategy(const char* op, std::string_view s) {
  if (s == "uniform") return PIXCON_SAMPLE_UNIFORM;
  if (s == "class_balanced") return PIXCON_SAMPLE_CLASS_BALANCED;
  if (s == "hard_easy") return PIXCON_SAMPLE_HARD_EASY;
  fail(ErrorKind::Value, op,
       ": strategy must be \"uniform\", \"class_balanced\" or \"hard_easy\", got \"",
       std::string(s), "\"");
}

Tensor int64_map(const char* op, const char* name, const Tensor& t) {
  require(t.dim() == 3, ErrorKind::Value, op, ": ", name, " must be 3-D [B, H, W], got ", t.dim(),
          "-D");
  return as_int64(op, name, t);
}

}  // namespace

SampleProblem prepare_sample(const char* op, const Tensor& labels,
                             const std::optional<Tensor>& predictions, const SampleRule& rule) {
  SampleProblem s;
  s.labels = int64_map(op, "labels", labels);
  pixcon_sample_params& p = s.params;
  p.strategy = parse_strategy(op, rule.strategy);
  if (predictions.has_value() && p.strategy == PIXCON_SAMPLE_HARD_EASY) {
    check_same_device(op, "predictions", *predictions, "labels", labels);
    s.predictions = int64_map(op, "predictions", *predictions);
    for (int k = 0; k < 3; ++k)
      require(s.predictions->size(k) == labels.size(k), ErrorKind::Value, op,
              ": predictions must have the shape of labels");
  }
  p.num_images = labels.size(0);
  p.pixels_per_image = labels.size(1) * labels.size(2);
  p.labels = static_cast<const int64_t*>(s.labels.data_ptr());
  p.predictions = s.predictions ? static_cast<const int64_t*>(s.predictions->data_ptr()) : nullptr;
  p.ignore_index = rule.ignore_index;
  p.num_classes = rule.num_classes;
  p.seed = static_cast<uint64_t>(rule.seed);
  p.per_image = rule.per_image ? 1 : 0;
  p.num_samples = rule.num_samples;
  p.min_views = rule.min_views;
  p.max_views = rule.max_views;
  p.max_total = rule.max_total;
  p.max_samples = rule.max_samples;
  p.num_threads = 0;
  char message[256];
  check_status(op, pixcon_sample_params_check_shape(&p, message, sizeof message), message);
  return s;
}

}  // namespace pixcon_shim
