/* Stand-in for cub::DeviceSelect::Flagged (d_in -> d_out form) under the CPU emulation, as CUB documents
 * it: two-phase temporary storage, the selected items in their input order, their number on the device.
 * Cost: two host passes over the items with per-tile counts in the temporary storage, O(n). */
#ifndef PIXCON_EMU_CUB_DEVICE_SELECT_CUH
#define PIXCON_EMU_CUB_DEVICE_SELECT_CUH

#include <stdint.h>

#include <iterator>
#include <type_traits>

#include "cub/util_temporary_storage.cuh"
#include "pixcon_emu.h"

namespace cub {
namespace emu_detail {

/* Items per tile of the per-tile counts: CUB's temporary storage also grows with the number of tiles. */
constexpr int64_t kSelectTile = 1024;

/* Bytes of count items behind a pointer; 0 for other iterators (fancy iterators are no memory range). */
template <typename It> size_t item_bytes(It, int64_t count) {
  if constexpr (std::is_pointer<It>::value)
    return (size_t)count * sizeof(typename std::iterator_traits<It>::value_type);
  return 0;
}

template <typename It> const void *address(It it) {
  if constexpr (std::is_pointer<It>::value) return (const void *)it;
  return nullptr;
}

/* A pointer argument must lie in device memory. */
template <typename It> void require_items(const char *api, const char *what, It it, int64_t count) {
  if constexpr (std::is_pointer<It>::value)
    ::pixcon_emu::require_device_range(api, what, address(it), item_bytes(it, count));
}

/* [d_out, d_out + selected) must not overlap the range of another pointer argument. */
template <typename Out, typename It>
void require_apart(const char *api, Out out, int64_t selected, const char *what, It it, int64_t count) {
  ::pixcon_emu::require_disjoint(api, "d_out", address(out), item_bytes(out, selected), what, address(it),
                                 item_bytes(it, count));
}

}  // namespace emu_detail

struct DeviceSelect {
  /* d_out[0 .. k) = the d_in[i] with d_flags[i] true, in order of i; *d_num_selected_out = k.
   * [d_out, d_out + k) must not overlap d_in, d_flags nor d_num_selected_out.
   * With d_temp_storage == NULL only temp_storage_bytes is written. */
  template <typename InputIteratorT, typename FlagIterator, typename OutputIteratorT, typename NumSelectedIteratorT>
  static cudaError_t Flagged(void *d_temp_storage, size_t &temp_storage_bytes, InputIteratorT d_in,
                             FlagIterator d_flags, OutputIteratorT d_out, NumSelectedIteratorT d_num_selected_out,
                             int64_t num_items, cudaStream_t stream = 0) {
    (void)stream; /* the emulation is synchronous: work runs in issue order */
    const char *api = "cub::DeviceSelect::Flagged";
    if (num_items < 0) ::pixcon_emu::misuse(api, "num_items is negative");
    const int64_t tiles = (num_items + emu_detail::kSelectTile - 1) / emu_detail::kSelectTile;
    const size_t needed = emu_detail::alias_bytes((size_t)tiles * sizeof(int64_t));
    if (!d_temp_storage) {
      temp_storage_bytes = needed;
      return cudaSuccess;
    }
    if (temp_storage_bytes < needed) return cudaErrorInvalidValue;
    ::pixcon_emu::require_device_range(api, "d_temp_storage", d_temp_storage, temp_storage_bytes);
    emu_detail::require_items(api, "d_in", d_in, num_items);
    emu_detail::require_items(api, "d_flags", d_flags, num_items);
    emu_detail::require_items(api, "d_num_selected_out", d_num_selected_out, 1);

    int64_t *tile_offsets = (int64_t *)emu_detail::align256(d_temp_storage);
    int64_t selected = 0;
    for (int64_t t = 0; t < tiles; ++t) {
      tile_offsets[t] = selected;
      for (int64_t i = t * emu_detail::kSelectTile; i < tile_end(t, num_items); ++i) selected += (bool)d_flags[i];
    }
    emu_detail::require_items(api, "d_out", d_out, selected);
    emu_detail::require_apart(api, d_out, selected, "d_in", d_in, num_items);
    emu_detail::require_apart(api, d_out, selected, "d_flags", d_flags, num_items);
    emu_detail::require_apart(api, d_out, selected, "d_num_selected_out", d_num_selected_out, 1);
    for (int64_t t = 0; t < tiles; ++t) {
      int64_t at = tile_offsets[t];
      for (int64_t i = t * emu_detail::kSelectTile; i < tile_end(t, num_items); ++i)
        if ((bool)d_flags[i]) d_out[at++] = d_in[i];
    }
    *d_num_selected_out = selected;
    return cudaSuccess;
  }

 private:
  static int64_t tile_end(int64_t t, int64_t num_items) {
    return (t + 1) * emu_detail::kSelectTile < num_items ? (t + 1) * emu_detail::kSelectTile : num_items;
  }
};

}  // namespace cub

#endif /* PIXCON_EMU_CUB_DEVICE_SELECT_CUH */
