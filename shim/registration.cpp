// Every C++ registration of the pixcon ops, in one place. Compiled into libpixcon.so (the schemas
// and the CPU kernels) and, with PIXCON_REGISTER_CUDA, into libpixcon_cuda.so (the CUDA kernels),
// which python/pixcon/_library.py loads only where it can serve. The fake kernels and autograd
// are registered from Python (python/pixcon/_loss_op.py, python/pixcon/sampling.py).
#include <torch/csrc/stable/library.h>

#include "kmeans_ops.h"
#include "loss_op.h"
#include "sample_ops.h"

namespace pixcon_shim {

template <const LossBackend& loss, auto sample_pixels, auto kmeans>
void register_kernels(torch::stable::detail::StableLibrary& m) {
  m.impl("contrastive_loss", TORCH_BOX(&contrastive_loss<loss>));
  m.impl("contrastive_loss_backward", TORCH_BOX(&contrastive_loss_backward<loss>));
  m.impl("sample_pixels", TORCH_BOX(sample_pixels));
  m.impl("kmeans", TORCH_BOX(kmeans));
}

}  // namespace pixcon_shim

#ifdef PIXCON_REGISTER_CUDA

STABLE_TORCH_LIBRARY_IMPL(pixcon, CUDA, m) {
  pixcon_shim::register_kernels<pixcon_shim::kCudaLoss, &pixcon_shim::sample_pixels_cuda,
                                &pixcon_shim::kmeans_cuda>(m);
}

#else

STABLE_TORCH_LIBRARY(pixcon, m) {
  m.def(pixcon_shim::kLossSchema);
  m.def(pixcon_shim::kLossBackwardSchema);
  m.def(PIXCON_SAMPLE_SCHEMA);
  m.def(PIXCON_KMEANS_SCHEMA);
}

STABLE_TORCH_LIBRARY_IMPL(pixcon, CPU, m) {
  pixcon_shim::register_kernels<pixcon_shim::kCpuLoss, &pixcon_shim::sample_pixels_cpu,
                                &pixcon_shim::kmeans_cpu>(m);
}

#endif
