#include "loss_op.h"

#include <string>

#include <torch/csrc/stable/ops.h>

#include "errors.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

namespace {

pixcon_dtype embedding_dtype(const char* op, const Tensor& z) {
  switch (z.scalar_type()) {
    case ScalarType::Float: return PIXCON_FLOAT32;
    case ScalarType::Double: return PIXCON_FLOAT64;
    case ScalarType::Half: return PIXCON_FLOAT16;
    case ScalarType::BFloat16: return PIXCON_BFLOAT16;
    default:
      fail(ErrorKind::Type, op, ": embeddings must be float32, float64, float16 or bfloat16, got ",
           dtype_name(z.scalar_type()));
  }
}

ScalarType scalar_type_of(pixcon_dtype d) {
  switch (d) {
    case PIXCON_FLOAT64: return ScalarType::Double;
    case PIXCON_FLOAT16: return ScalarType::Half;
    case PIXCON_BFLOAT16: return ScalarType::BFloat16;
    default: return ScalarType::Float;
  }
}

// The dtype of losses, statistics and the upstream gradient (the C API's rule).
ScalarType accumulation_type(const LossProblem& q) {
  return scalar_type_of(pixcon_loss_accumulation_dtype(q.params.dtype));
}

void check_rows(const char* op, const char* name, const Tensor& t, int64_t n) {
  require(t.dim() == 1, ErrorKind::Value, op, ": ", name, " must be 1-D [N], got ", t.dim(), "-D");
  require(t.size(0) == n, ErrorKind::Value, op, ": ", name,
          " must have one entry per row of embeddings (", n, "), got ", t.size(0));
}

Tensor int64_rows(const char* op, const char* name, const Tensor& t, int64_t n) {
  check_rows(op, name, t, n);
  return as_int64(op, name, t);
}

std::optional<Tensor> mask_rows(const char* op, const char* name, const std::optional<Tensor>& t,
                                int64_t n) {
  if (!t) return std::nullopt;
  check_rows(op, name, *t, n);
  require(t->scalar_type() == ScalarType::Bool, ErrorKind::Type, op, ": ", name,
          " must be a bool tensor, got ", dtype_name(t->scalar_type()));
  return torch::stable::contiguous(*t);
}

Tensor offsets_of(const char* op, const Tensor& t) {
  require(t.dim() == 1 && t.size(0) >= 2, ErrorKind::Value, op,
          ": bag_offsets must be 1-D [num_bags + 1] with at least two entries");
  require(t.scalar_type() == ScalarType::Long, ErrorKind::Type, op,
          ": bag_offsets must be int64, got ", dtype_name(t.scalar_type()));
  return torch::stable::contiguous(t);
}

pixcon_denominator parse_denominator(const char* op, std::string_view d) {
  if (d == "all") return PIXCON_DENOMINATOR_ALL;
  if (d == "pair") return PIXCON_DENOMINATOR_PAIR;
  fail(ErrorKind::Value, op, ": denominator must be \"all\" or \"pair\", got \"", std::string(d),
       "\"");
}

void check_devices(const char* op, const LossArgs& a) {
  auto same = [&](const char* name, const std::optional<Tensor>& t) {
    if (t) check_same_device(op, name, *t, "embeddings", a.embeddings);
  };
  same("labels", a.labels);
  same("bag_offsets", a.bag_offsets);
  same("anchor_mask", a.anchor_mask);
  same("contrast_mask", a.contrast_mask);
  same("image_ids", a.image_ids);
}

}  // namespace

LossProblem make_loss_problem(const char* op, LossArgs a) {
  require(a.embeddings.dim() == 2, ErrorKind::Value, op, ": embeddings must be 2-D [N, D], got ",
          a.embeddings.dim(), "-D");
  const pixcon_dtype dtype = embedding_dtype(op, a.embeddings);
  check_devices(op, a);
  const int64_t n = a.embeddings.size(0);
  a.labels = int64_rows(op, "labels", a.labels, n);
  a.bag_offsets = offsets_of(op, a.bag_offsets);
  a.anchor_mask = mask_rows(op, "anchor_mask", a.anchor_mask, n);
  a.contrast_mask = mask_rows(op, "contrast_mask", a.contrast_mask, n);
  if (a.image_ids) a.image_ids = int64_rows(op, "image_ids", *a.image_ids, n);
  return {op, a, fill_params(a, dtype, parse_denominator(op, a.denominator))};
}

ForwardOutputs empty_forward_outputs(const LossProblem& q) {
  const Tensor& z = q.args.embeddings;
  const int64_t n = q.params.num_rows;
  const ScalarType acc = accumulation_type(q);
  return {empty_on(z, {n}, acc), empty_on(z, {n}, ScalarType::Bool),
          empty_on(z, {n, pixcon_loss_num_stats()}, acc)};
}

BackwardInputs backward_inputs(const LossProblem& q, const Tensor& grad_loss, const Tensor& stats) {
  const Tensor& z = q.args.embeddings;
  const int64_t n = q.params.num_rows;
  check_same_device(q.op, "grad_loss", grad_loss, "embeddings", z);
  check_same_device(q.op, "stats", stats, "embeddings", z);
  require(grad_loss.dim() == 1 && grad_loss.size(0) == n, ErrorKind::Value, q.op,
          ": grad_loss must be 1-D with one entry per row of embeddings (", n, ")");
  require(stats.dim() == 2 && stats.size(0) == n && stats.size(1) == pixcon_loss_num_stats(),
          ErrorKind::Value, q.op, ": stats must be [N, ", pixcon_loss_num_stats(),
          "] as returned by the forward op");
  const ScalarType acc = accumulation_type(q);
  return {torch::stable::contiguous(torch::stable::to(grad_loss, acc)),
          torch::stable::contiguous(torch::stable::to(stats, acc))};
}

Tensor empty_gradient(const LossProblem& q) {
  return empty_on(q.args.embeddings, {q.params.num_rows, q.params.dim},
                  q.args.embeddings.scalar_type());
}

Tensor empty_workspace(const LossProblem& q, size_t bytes) {
  return empty_on(q.args.embeddings, {static_cast<int64_t>(bytes)}, ScalarType::Byte);
}

}  // namespace pixcon_shim
