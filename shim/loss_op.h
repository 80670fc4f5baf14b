// The loss op's contract on the C++ side, in one place: the schemas of pixcon::contrastive_loss and
// its backward, the one function that turns their arguments into the C API's pixcon_loss_params,
// and the entry points every backend's kernels are registered through (registration.cpp).
//
// A backend (loss_cpu.cpp, loss_cuda.cpp) is a table of the device's C entry points behind one
// LossBackend; the entry points are templates over it. Adding an option of the loss touches this
// file only (the schema, LossArgs, the two entry points, fill_params), not the backends
// (docs/design.md section 6).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <tuple>

#include <torch/csrc/stable/tensor.h>

#include "pixcon/pixcon.h"
#include "tensors.h"

#define PIXCON_LOSS_ROWS                                                                        \
  "Tensor embeddings, Tensor labels, Tensor bag_offsets, Tensor? anchor_mask, "                 \
  "Tensor? contrast_mask, Tensor? image_ids"
#define PIXCON_LOSS_OPTIONS                                                                     \
  "float temperature, int ignore_index, str denominator, bool self_positive, "                 \
  "bool allow_tf32=False"

namespace pixcon_shim {

inline constexpr char kLossSchema[] =
    "contrastive_loss(" PIXCON_LOSS_ROWS ", " PIXCON_LOSS_OPTIONS ") -> (Tensor, Tensor, Tensor)";
inline constexpr char kLossBackwardSchema[] =
    "contrastive_loss_backward(Tensor grad_loss, " PIXCON_LOSS_ROWS ", Tensor stats, "
    PIXCON_LOSS_OPTIONS ") -> Tensor";

// The arguments both ops take (all but the backward's grad_loss and stats).
struct LossArgs {
  Tensor embeddings, labels, bag_offsets;
  std::optional<Tensor> anchor_mask, contrast_mask, image_ids;
  double temperature;
  int64_t ignore_index;
  std::string_view denominator;
  bool self_positive;
  bool allow_tf32;  // CUDA float32 only: TF32 tensor cores allowed; the CPU kernels never use TF32
};

// The arguments converted for the kernels (kept alive here) and the C parameters pointing into them.
struct LossProblem {
  const char* op;
  LossArgs args;
  pixcon_loss_params params;
};

// Checks what the C API cannot see (tensor ranks, lengths, dtypes, devices, the denominator's
// name), converts the tensors for the kernels and fills the C parameters (fill_params); the values
// (offsets, labels, temperature) are the C API's to check, which each backend asks for its device.
LossProblem make_loss_problem(const char* op, LossArgs args);

// The C parameters of converted arguments (labels and image ids contiguous int64, masks contiguous
// bool, offsets contiguous int64); everything but the thread count, which the CPU backend sets.
inline pixcon_loss_params fill_params(const LossArgs& a, pixcon_dtype dtype,
                                      pixcon_denominator denominator) {
  auto pointer = [](const std::optional<Tensor>& t) { return t ? t->data_ptr() : nullptr; };
  pixcon_loss_params p{};
  p.num_rows = a.embeddings.size(0);
  p.dim = a.embeddings.size(1);
  p.embeddings = a.embeddings.data_ptr();
  p.dtype = dtype;
  p.row_stride = a.embeddings.stride(0);
  p.col_stride = a.embeddings.stride(1);
  p.labels = static_cast<const int64_t*>(a.labels.data_ptr());
  p.anchor_mask = static_cast<const uint8_t*>(pointer(a.anchor_mask));
  p.contrast_mask = static_cast<const uint8_t*>(pointer(a.contrast_mask));
  p.image_ids = static_cast<const int64_t*>(pointer(a.image_ids));
  p.num_bags = a.bag_offsets.size(0) - 1;
  p.bag_offsets = static_cast<const int64_t*>(a.bag_offsets.data_ptr());
  p.temperature = a.temperature;
  p.ignore_index = a.ignore_index;
  p.denominator = denominator;
  p.self_positive = a.self_positive ? 1 : 0;
  return p;
}

struct ForwardOutputs {
  Tensor loss, valid, stats;  // [N], [N] bool, [N, PIXCON_NUM_STATS], in the accumulation type
};
ForwardOutputs empty_forward_outputs(const LossProblem& q);

struct BackwardInputs {
  Tensor grad_loss, stats;  // checked, contiguous, in the accumulation type
};
BackwardInputs backward_inputs(const LossProblem& q, const Tensor& grad_loss, const Tensor& stats);

Tensor empty_gradient(const LossProblem& q);
Tensor empty_workspace(const LossProblem& q, size_t bytes);

// One device's C entry points. `check` runs the C API's own checks for the device (and sets what
// the device takes from torch: threads); the others size and run the two passes.
struct LossBackend {
  void (*check)(LossProblem& q);
  size_t (*forward_workspace)(const LossProblem& q);
  void (*forward)(const LossProblem& q, const ForwardOutputs& out, const Tensor& ws);
  size_t (*backward_workspace)(const LossProblem& q);
  void (*backward)(const LossProblem& q, const BackwardInputs& in, const Tensor& grad,
                   const Tensor& ws);
};

extern const LossBackend kCpuLoss;   // loss_cpu.cpp, in libpixcon.so
extern const LossBackend kCudaLoss;  // loss_cuda.cpp, in libpixcon_cuda.so

template <const LossBackend& backend>
std::tuple<Tensor, Tensor, Tensor> contrastive_loss(
    Tensor embeddings, Tensor labels, Tensor bag_offsets, std::optional<Tensor> anchor_mask,
    std::optional<Tensor> contrast_mask, std::optional<Tensor> image_ids, double temperature,
    int64_t ignore_index, std::string_view denominator, bool self_positive, bool allow_tf32) {
  LossProblem q = make_loss_problem(
      "pixcon.contrastive_loss",
      {embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids, temperature,
       ignore_index, denominator, self_positive, allow_tf32});
  backend.check(q);
  ForwardOutputs out = empty_forward_outputs(q);
  backend.forward(q, out, empty_workspace(q, backend.forward_workspace(q)));
  return {out.loss, out.valid, out.stats};
}

template <const LossBackend& backend>
Tensor contrastive_loss_backward(
    Tensor grad_loss, Tensor embeddings, Tensor labels, Tensor bag_offsets,
    std::optional<Tensor> anchor_mask, std::optional<Tensor> contrast_mask,
    std::optional<Tensor> image_ids, Tensor stats, double temperature, int64_t ignore_index,
    std::string_view denominator, bool self_positive, bool allow_tf32) {
  LossProblem q = make_loss_problem(
      "pixcon.contrastive_loss_backward",
      {embeddings, labels, bag_offsets, anchor_mask, contrast_mask, image_ids, temperature,
       ignore_index, denominator, self_positive, allow_tf32});
  backend.check(q);
  BackwardInputs in = backward_inputs(q, grad_loss, stats);
  Tensor grad = empty_gradient(q);
  backend.backward(q, in, grad, empty_workspace(q, backend.backward_workspace(q)));
  return grad;
}

}  // namespace pixcon_shim
