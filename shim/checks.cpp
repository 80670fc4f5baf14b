#include "checks.h"

#include <torch/csrc/stable/ops.h>
#include <torch/headeronly/util/Exception.h>

namespace pixcon_shim {

using torch::headeronly::ScalarType;

namespace {

std::string device_name(const Tensor& t) {
  if (t.is_cpu()) return "cpu";
  if (t.is_cuda()) return "cuda:" + std::to_string(t.get_device_index());
  return "a non-CPU, non-CUDA device";
}

pixcon_dtype embedding_dtype(const char* op, const Tensor& z) {
  switch (z.scalar_type()) {
    case ScalarType::Float: return PIXCON_FLOAT32;
    case ScalarType::Double: return PIXCON_FLOAT64;
    case ScalarType::Half: return PIXCON_FLOAT16;
    case ScalarType::BFloat16: return PIXCON_BFLOAT16;
    default:
      STD_TORCH_CHECK(false, op, ": embeddings must be float32, float64, float16 or bfloat16, got ",
                      dtype_name(z.scalar_type()));
  }
  return PIXCON_FLOAT32;
}

// An integer [N] tensor as contiguous int64.
Tensor int64_rows(const char* op, const char* name, const Tensor& t, int64_t n) {
  STD_TORCH_CHECK(t.dim() == 1, op, ": ", name, " must be 1-D [N], got ", t.dim(), "-D");
  STD_TORCH_CHECK(t.size(0) == n, op, ": ", name, " must have one entry per row of embeddings (",
                  n, "), got ", t.size(0));
  STD_TORCH_CHECK(is_integer(t.scalar_type()), op, ": ", name, " must be an integer tensor, got ",
                  dtype_name(t.scalar_type()));
  return torch::stable::contiguous(torch::stable::to(t, ScalarType::Long));
}

std::optional<Tensor> mask_rows(const char* op, const char* name, const std::optional<Tensor>& t,
                                int64_t n) {
  if (!t.has_value()) return std::nullopt;
  STD_TORCH_CHECK(t->dim() == 1 && t->size(0) == n, op, ": ", name,
                  " must be a 1-D bool tensor with one entry per row of embeddings (", n, ")");
  STD_TORCH_CHECK(t->scalar_type() == ScalarType::Bool, op, ": ", name,
                  " must be a bool tensor, got ", dtype_name(t->scalar_type()));
  return torch::stable::contiguous(*t);
}

pixcon_denominator parse_denominator(const char* op, std::string_view d) {
  if (d == "all") return PIXCON_DENOMINATOR_ALL;
  if (d == "pair") return PIXCON_DENOMINATOR_PAIR;
  STD_TORCH_CHECK(false, op, ": denominator must be \"all\" or \"pair\", got \"", std::string(d),
                  "\"");
  return PIXCON_DENOMINATOR_ALL;
}

}  // namespace

const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::Half: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Bool: return "bool";
    case ScalarType::Byte: return "uint8";
    case ScalarType::Char: return "int8";
    case ScalarType::Short: return "int16";
    case ScalarType::Int: return "int32";
    case ScalarType::Long: return "int64";
    default: return "an unsupported dtype";
  }
}

bool is_integer(ScalarType t) {
  return t == ScalarType::Byte || t == ScalarType::Char || t == ScalarType::Short ||
         t == ScalarType::Int || t == ScalarType::Long;
}

ScalarType accumulation_type(const Tensor& embeddings) {
  return embeddings.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

Tensor empty_on(const Tensor& like, std::vector<int64_t> sizes, ScalarType dtype) {
  return torch::stable::empty(sizes, dtype, std::nullopt, like.device());
}

ForwardOutputs empty_forward_outputs(const Tensor& embeddings) {
  const int64_t n = embeddings.size(0);
  ScalarType acc = accumulation_type(embeddings);
  return {empty_on(embeddings, {n}, acc), empty_on(embeddings, {n}, ScalarType::Bool),
          empty_on(embeddings, {n, PIXCON_NUM_STATS}, acc)};
}

void check_same_device(const char* op, const char* name, const Tensor& t, const Tensor& z) {
  STD_TORCH_CHECK(t.is_cpu() == z.is_cpu() && t.is_cuda() == z.is_cuda() &&
                      (!t.is_cuda() || t.get_device_index() == z.get_device_index()),
                  op, ": ", name, " is on ", device_name(t), " but embeddings is on ",
                  device_name(z), "; every tensor argument must be on the same device");
}

void check_status(const char* op, pixcon_status status) {
  STD_TORCH_CHECK(status != PIXCON_ERROR_WORKSPACE_TOO_SMALL, op,
                  ": internal error: workspace too small");
  STD_TORCH_CHECK(status == PIXCON_OK, op, ": kernel failed with status ", static_cast<int>(status));
}

std::pair<Tensor, Tensor> prepare_backward_inputs(const char* op, const Tensor& grad_loss,
                                                  const Tensor& stats, const Tensor& embeddings) {
  const int64_t n = embeddings.size(0);
  check_same_device(op, "grad_loss", grad_loss, embeddings);
  check_same_device(op, "stats", stats, embeddings);
  STD_TORCH_CHECK(grad_loss.dim() == 1 && grad_loss.size(0) == n, op,
                  ": grad_loss must be 1-D with one entry per row of embeddings (", n, ")");
  STD_TORCH_CHECK(stats.dim() == 2 && stats.size(0) == n && stats.size(1) == PIXCON_NUM_STATS, op,
                  ": stats must be [N, ", PIXCON_NUM_STATS, "] as returned by the forward op");
  ScalarType acc = accumulation_type(embeddings);
  return {torch::stable::contiguous(torch::stable::to(grad_loss, acc)),
          torch::stable::contiguous(torch::stable::to(stats, acc))};
}

LossProblem prepare_problem(const char* op, const Tensor& embeddings, const Tensor& labels,
                            const Tensor& bag_offsets, const std::optional<Tensor>& anchor_mask,
                            const std::optional<Tensor>& contrast_mask,
                            const std::optional<Tensor>& image_ids, double temperature,
                            int64_t ignore_index, std::string_view denominator,
                            bool self_positive) {
  STD_TORCH_CHECK(embeddings.dim() == 2, op, ": embeddings must be 2-D [N, D], got ",
                  embeddings.dim(), "-D");
  check_same_device(op, "labels", labels, embeddings);
  check_same_device(op, "bag_offsets", bag_offsets, embeddings);
  if (anchor_mask) check_same_device(op, "anchor_mask", *anchor_mask, embeddings);
  if (contrast_mask) check_same_device(op, "contrast_mask", *contrast_mask, embeddings);
  if (image_ids) check_same_device(op, "image_ids", *image_ids, embeddings);
  STD_TORCH_CHECK(temperature > 0 && temperature < 1.0 / 0.0, op,
                  ": temperature must be a positive finite number, got ", temperature);
  const int64_t n = embeddings.size(0);
  LossProblem q;
  q.embeddings = embeddings;
  q.labels = int64_rows(op, "labels", labels, n);
  STD_TORCH_CHECK(bag_offsets.dim() == 1 && bag_offsets.size(0) >= 2, op,
                  ": bag_offsets must be 1-D [num_bags + 1] with at least two entries");
  STD_TORCH_CHECK(bag_offsets.scalar_type() == ScalarType::Long, op,
                  ": bag_offsets must be int64, got ", dtype_name(bag_offsets.scalar_type()));
  q.bag_offsets = torch::stable::contiguous(bag_offsets);
  q.anchor_mask = mask_rows(op, "anchor_mask", anchor_mask, n);
  q.contrast_mask = mask_rows(op, "contrast_mask", contrast_mask, n);
  if (image_ids) q.image_ids = int64_rows(op, "image_ids", *image_ids, n);

  pixcon_loss_params& p = q.params;
  p.num_rows = n;
  p.dim = embeddings.size(1);
  p.embeddings = embeddings.data_ptr();
  p.dtype = embedding_dtype(op, embeddings);
  p.row_stride = embeddings.stride(0);
  p.col_stride = embeddings.stride(1);
  p.labels = static_cast<const int64_t*>(q.labels.data_ptr());
  p.anchor_mask = q.anchor_mask ? static_cast<const uint8_t*>(q.anchor_mask->data_ptr()) : nullptr;
  p.contrast_mask =
      q.contrast_mask ? static_cast<const uint8_t*>(q.contrast_mask->data_ptr()) : nullptr;
  p.image_ids = q.image_ids ? static_cast<const int64_t*>(q.image_ids->data_ptr()) : nullptr;
  p.num_bags = bag_offsets.size(0) - 1;
  p.bag_offsets = static_cast<const int64_t*>(q.bag_offsets.data_ptr());
  p.temperature = temperature;
  p.ignore_index = ignore_index;
  p.denominator = parse_denominator(op, denominator);
  p.self_positive = self_positive ? 1 : 0;
  p.num_threads = 0;

  char message[256];
  if (embeddings.is_cpu() && pixcon_loss_params_check(&p, message, sizeof message) != PIXCON_OK) {
    STD_TORCH_CHECK(false, op, ": ", message);
  }
  return q;
}

}  // namespace pixcon_shim
