/* Stand-in for cub::DeviceRadixSort::SortPairs (DoubleBuffer form) under the CPU emulation, as CUB documents
 * it: two-phase temporary storage, [begin_bit, end_bit), stable, ascending, result in either buffer.
 * Cost: host LSD counting sort, one O(n) pass per 8 bits of the range (one stable sort for a small input). */
#ifndef PIXCON_EMU_CUB_DEVICE_RADIX_SORT_CUH
#define PIXCON_EMU_CUB_DEVICE_RADIX_SORT_CUH

#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cub/util_temporary_storage.cuh"
#include "cub/util_type.cuh"
#include "pixcon_emu.h"

namespace cub {
namespace emu_detail {

/* CUB sorts an input of at most one tile in a single kernel (one buffer swap) and a larger one in
 * passes of 8 bits (onesweep, one swap per pass), so the result's buffer depends on the size and the
 * bit range; the stand-in does the same, with this tile. */
constexpr size_t kSingleTileItems = 1024;

/* CUB's key transformation for integral keys: unsigned as is, signed with the sign bit inverted. */
template <typename KeyT> uint64_t radix_bits(KeyT k) {
  typedef typename std::make_unsigned<KeyT>::type U;
  U u = (U)k;
  if (std::is_signed<KeyT>::value) u ^= (U)((U)1 << (sizeof(U) * 8 - 1));
  return (uint64_t)u;
}

/* Bits [begin, end) of the radix form of k, as an unsigned number. */
template <typename KeyT> uint64_t digit(KeyT k, int begin, int end) {
  const uint64_t v = radix_bits(k) >> begin;
  return end - begin >= 64 ? v : v & (((uint64_t)1 << (end - begin)) - 1);
}

}  // namespace emu_detail

struct DeviceRadixSort {
  /* Sorts the pairs by bits [begin_bit, end_bit) of the keys' radix form; pairs with equal bits keep
   * their input order. Reads d_keys.Current() / d_values.Current(), may overwrite both buffers of each,
   * and leaves the selectors naming the buffers that hold the result (keys unmasked). With
   * d_temp_storage == NULL only temp_storage_bytes is written (O(P) bytes, not O(n)). */
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void *d_temp_storage, size_t &temp_storage_bytes, DoubleBuffer<KeyT> &d_keys,
                               DoubleBuffer<ValueT> &d_values, NumItemsT num_items, int begin_bit = 0,
                               int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    static_assert(std::is_integral<KeyT>::value && !std::is_same<KeyT, bool>::value,
                  "the DeviceRadixSort stand-in sorts integral keys only");
    static_assert(std::is_trivially_copyable<ValueT>::value, "values must be trivially copyable");
    static_assert(std::is_integral<NumItemsT>::value, "num_items must be an integer");
    (void)stream; /* the emulation is synchronous: work runs in issue order */
    const char *api = "cub::DeviceRadixSort::SortPairs";
    if (emu_detail::negative(num_items)) ::pixcon_emu::misuse(api, "num_items is negative");
    if (begin_bit < 0 || end_bit > (int)sizeof(KeyT) * 8 || begin_bit > end_bit)
      ::pixcon_emu::misuse(api, "[begin_bit, end_bit) is not a bit range of the key type");
    const size_t n = (size_t)num_items;
    const bool single_tile = n <= emu_detail::kSingleTileItems;
    const int passes = (end_bit - begin_bit + 7) / 8;
    /* CUB asks for 1 byte when nothing is sorted or one tile is; else for per-pass digit counters */
    const size_t needed = n == 0 || begin_bit == end_bit || single_tile
                              ? 1
                              : emu_detail::alias_bytes((size_t)passes * 257 * sizeof(size_t));
    if (!d_temp_storage) {
      temp_storage_bytes = needed;
      return cudaSuccess;
    }
    if (temp_storage_bytes < needed) return cudaErrorInvalidValue;
    if (n == 0 || begin_bit == end_bit) return cudaSuccess; /* CUB leaves both buffers and selectors alone */
    ::pixcon_emu::require_device_range(api, "d_temp_storage", d_temp_storage, temp_storage_bytes);
    const void *ranges[5] = {d_keys.d_buffers[0], d_keys.d_buffers[1], d_values.d_buffers[0], d_values.d_buffers[1],
                             d_temp_storage};
    const size_t sizes[5] = {n * sizeof(KeyT), n * sizeof(KeyT), n * sizeof(ValueT), n * sizeof(ValueT),
                             temp_storage_bytes};
    const char *names[5] = {"d_keys buffer 0", "d_keys buffer 1", "d_values buffer 0", "d_values buffer 1",
                            "d_temp_storage"};
    for (int a = 0; a < 4; ++a) ::pixcon_emu::require_device_range(api, names[a], ranges[a], sizes[a]);
    for (int a = 0; a < 5; ++a)
      for (int b = a + 1; b < 5; ++b)
        ::pixcon_emu::require_disjoint(api, names[a], ranges[a], sizes[a], names[b], ranges[b], sizes[b]);

    if (single_tile) {
      std::vector<size_t> order(n);
      for (size_t i = 0; i < n; ++i) order[i] = i;
      const KeyT *keys = d_keys.Current();
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return emu_detail::digit(keys[a], begin_bit, end_bit) < emu_detail::digit(keys[b], begin_bit, end_bit);
      });
      scatter(d_keys, d_values, order);
      return cudaSuccess;
    }
    /* one pass per 8 bits; its digit counters live in the temporary storage, as CUB's do */
    size_t *counters = (size_t *)emu_detail::align256(d_temp_storage);
    for (int pass = 0; pass < passes; ++pass) {
      const int lo = begin_bit + 8 * pass, hi = lo + 8 < end_bit ? lo + 8 : end_bit;
      size_t *offsets = counters + (size_t)pass * 257;
      const KeyT *keys = d_keys.Current();
      memset(offsets, 0, 257 * sizeof(size_t));
      for (size_t i = 0; i < n; ++i) ++offsets[emu_detail::digit(keys[i], lo, hi) + 1];
      for (int d = 1; d < 257; ++d) offsets[d] += offsets[d - 1];
      std::vector<size_t> order(n);
      for (size_t i = 0; i < n; ++i) order[offsets[emu_detail::digit(keys[i], lo, hi)]++] = i;
      scatter(d_keys, d_values, order);
    }
    return cudaSuccess;
  }

 private:
  /* Alternate[k] = Current[order[k]] for keys and values, then swap the selectors. */
  template <typename KeyT, typename ValueT>
  static void scatter(DoubleBuffer<KeyT> &d_keys, DoubleBuffer<ValueT> &d_values, const std::vector<size_t> &order) {
    const KeyT *keys = d_keys.Current();
    const ValueT *values = d_values.Current();
    KeyT *keys_out = d_keys.Alternate();
    ValueT *values_out = d_values.Alternate();
    for (size_t k = 0; k < order.size(); ++k) {
      keys_out[k] = keys[order[k]];
      memcpy((void *)&values_out[k], (const void *)&values[order[k]], sizeof(ValueT));
    }
    d_keys.selector ^= 1;
    d_values.selector ^= 1;
  }
};

}  // namespace cub

#endif /* PIXCON_EMU_CUB_DEVICE_RADIX_SORT_CUH */
