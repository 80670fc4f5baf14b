/* Stand-in for cub::DoubleBuffer (cub/util_type.cuh) under the CPU emulation: a pair of device buffers and
 * a selector naming the valid one, which the DoubleBuffer forms of the device-wide algorithms update.
 * Cost: none (two pointers and an int). */
#ifndef PIXCON_EMU_CUB_UTIL_TYPE_CUH
#define PIXCON_EMU_CUB_UTIL_TYPE_CUH

namespace cub {

template <typename T> struct DoubleBuffer {
  T *d_buffers[2]{};
  int selector = 0;

  DoubleBuffer() = default;
  DoubleBuffer(T *d_current, T *d_alternate) : d_buffers{d_current, d_alternate} {}

  T *Current() { return d_buffers[selector]; }
  T *Alternate() { return d_buffers[selector ^ 1]; }
};

}  // namespace cub

#endif /* PIXCON_EMU_CUB_UTIL_TYPE_CUH */
