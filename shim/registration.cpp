// Every C++ registration of the pixcon ops, in one place. Compiled into libpixcon.so (the schemas
// and the CPU kernels) and, with PIXCON_REGISTER_CUDA, into libpixcon_cuda.so (the CUDA kernels),
// which python/pixcon/_library.py loads only where it can serve. The fake kernels and autograd
// are registered from Python (python/pixcon/_loss_op.py, python/pixcon/sampling.py).
#include <torch/csrc/stable/library.h>

#include "sample_ops.h"

#ifdef PIXCON_REGISTER_CUDA

#include "loss_cuda.h"

STABLE_TORCH_LIBRARY_IMPL(pixcon, CUDA, m) {
  using pixcon_shim::CudaLoss;
  m.impl("contrastive_loss", TORCH_BOX(&pixcon_shim::contrastive_loss<CudaLoss>));
  m.impl("contrastive_loss_backward", TORCH_BOX(&pixcon_shim::contrastive_loss_backward<CudaLoss>));
  m.impl("sample_pixels", TORCH_BOX(&pixcon_shim::sample_pixels_cuda));
}

#else

#include "loss_cpu.h"

STABLE_TORCH_LIBRARY(pixcon, m) {
  m.def(pixcon_shim::kLossSchema);
  m.def(pixcon_shim::kLossBackwardSchema);
  m.def(PIXCON_SAMPLE_SCHEMA);
}

STABLE_TORCH_LIBRARY_IMPL(pixcon, CPU, m) {
  using pixcon_shim::CpuLoss;
  m.impl("contrastive_loss", TORCH_BOX(&pixcon_shim::contrastive_loss<CpuLoss>));
  m.impl("contrastive_loss_backward", TORCH_BOX(&pixcon_shim::contrastive_loss_backward<CpuLoss>));
  m.impl("sample_pixels", TORCH_BOX(&pixcon_shim::sample_pixels_cpu));
}

#endif
