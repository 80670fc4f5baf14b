/* Stand-in for cub::DeviceScan::InclusiveSum / ExclusiveSum (pointer form) under the CPU emulation, as CUB
 * documents them: two-phase temporary storage, out[i] = in[0] + ... + in[i] (inclusive) or the sum of the
 * items before i, from a zero-initialised value (exclusive), d_in == d_out allowed (in place).
 * Cost: one host pass over the items, with per-tile sums in the temporary storage, O(n). */
#ifndef PIXCON_EMU_CUB_DEVICE_SCAN_CUH
#define PIXCON_EMU_CUB_DEVICE_SCAN_CUH

#include <stdint.h>

#include <type_traits>

#include "cub/util_temporary_storage.cuh"
#include "pixcon_emu.h"

namespace cub {
namespace emu_detail {

/* Items per tile of the decoupled look-back: CUB's temporary storage grows with the number of tiles. */
constexpr int64_t kScanTile = 1024;

}  // namespace emu_detail

struct DeviceScan {
  template <typename T, typename NumItemsT>
  static cudaError_t InclusiveSum(void *d_temp_storage, size_t &temp_storage_bytes, const T *d_in, T *d_out,
                                  NumItemsT num_items, cudaStream_t stream = 0) {
    return scan(d_temp_storage, temp_storage_bytes, d_in, d_out, num_items, stream, true,
                "cub::DeviceScan::InclusiveSum");
  }

  template <typename T, typename NumItemsT>
  static cudaError_t ExclusiveSum(void *d_temp_storage, size_t &temp_storage_bytes, const T *d_in, T *d_out,
                                  NumItemsT num_items, cudaStream_t stream = 0) {
    return scan(d_temp_storage, temp_storage_bytes, d_in, d_out, num_items, stream, false,
                "cub::DeviceScan::ExclusiveSum");
  }

 private:
  /* Arithmetic types only: the sums wrap as the type does (unsigned) on a GPU. */
  template <typename T, typename NumItemsT>
  static cudaError_t scan(void *d_temp_storage, size_t &temp_storage_bytes, const T *d_in, T *d_out,
                          NumItemsT num_items, cudaStream_t stream, bool inclusive, const char *api) {
    static_assert(std::is_arithmetic<T>::value, "the DeviceScan stand-in sums arithmetic items only");
    static_assert(std::is_integral<NumItemsT>::value, "num_items must be an integer");
    (void)stream; /* the emulation is synchronous: work runs in issue order */
    if (emu_detail::negative(num_items)) ::pixcon_emu::misuse(api, "num_items is negative");
    const int64_t n = (int64_t)num_items;
    const int64_t tiles = (n + emu_detail::kScanTile - 1) / emu_detail::kScanTile;
    const size_t needed = emu_detail::alias_bytes((size_t)(tiles + 1) * sizeof(T));
    if (!d_temp_storage) {
      temp_storage_bytes = needed;
      return cudaSuccess;
    }
    if (temp_storage_bytes < needed) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const size_t bytes = (size_t)n * sizeof(T);
    ::pixcon_emu::require_device_range(api, "d_temp_storage", d_temp_storage, temp_storage_bytes);
    ::pixcon_emu::require_device_range(api, "d_in", d_in, bytes);
    ::pixcon_emu::require_device_range(api, "d_out", d_out, bytes);
    ::pixcon_emu::require_disjoint(api, "d_out", d_out, bytes, "d_temp_storage", d_temp_storage, temp_storage_bytes);
    if ((const void *)d_in != (const void *)d_out)
      ::pixcon_emu::require_disjoint(api, "d_in", d_in, bytes, "d_out", d_out, bytes);
    /* the tiles' sums first (CUB's look-back state), then each tile from its predecessors' total */
    T *tile_total = (T *)emu_detail::align256(d_temp_storage);
    for (int64_t t = 0; t < tiles; ++t) {
      T sum = T();
      for (int64_t i = t * emu_detail::kScanTile; i < n && i < (t + 1) * emu_detail::kScanTile; ++i)
        sum = (T)(sum + d_in[i]);
      tile_total[t] = sum;
    }
    T carry = T();
    for (int64_t t = 0; t < tiles; ++t) {
      T running = carry;
      for (int64_t i = t * emu_detail::kScanTile; i < n && i < (t + 1) * emu_detail::kScanTile; ++i) {
        const T item = d_in[i]; /* read before the write: d_out may be d_in */
        if (inclusive) running = (T)(running + item);
        d_out[i] = running;
        if (!inclusive) running = (T)(running + item);
      }
      carry = (T)(carry + tile_total[t]);
    }
    return cudaSuccess;
  }
};

}  // namespace cub

#endif /* PIXCON_EMU_CUB_DEVICE_SCAN_CUH */
