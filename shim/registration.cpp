// Registers the pixcon operator schemas and their CPU kernels through torch's stable ABI.
// Autograd and fake (meta) kernels are registered from Python (python/pixcon/_ops.py).
#include <torch/csrc/stable/library.h>

#include "contrastive_cpu.h"
#include "sample_ops.h"

STABLE_TORCH_LIBRARY(pixcon, m) {
  m.def(
      "contrastive_loss(Tensor embeddings, Tensor labels, Tensor bag_offsets, "
      "Tensor? anchor_mask, Tensor? contrast_mask, Tensor? image_ids, float temperature, "
      "int ignore_index, str denominator, bool self_positive, bool allow_tf32=False) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "contrastive_loss_backward(Tensor grad_loss, Tensor embeddings, Tensor labels, "
      "Tensor bag_offsets, Tensor? anchor_mask, Tensor? contrast_mask, Tensor? image_ids, "
      "Tensor stats, float temperature, int ignore_index, str denominator, bool self_positive, "
      "bool allow_tf32=False) "
      "-> Tensor");
  m.def(
      "sample_pixels(Tensor labels, Tensor? predictions, str strategy, int num_classes, "
      "int ignore_index, int seed, bool per_image, int num_samples, int min_views, int max_views, "
      "int max_total, int max_samples) -> (Tensor, Tensor)");
}

STABLE_TORCH_LIBRARY_IMPL(pixcon, CPU, m) {
  m.impl("contrastive_loss", TORCH_BOX(&pixcon_shim::contrastive_loss_cpu));
  m.impl("contrastive_loss_backward", TORCH_BOX(&pixcon_shim::contrastive_loss_backward_cpu));
  m.impl("sample_pixels", TORCH_BOX(&pixcon_shim::sample_pixels_cpu));
}
