/* Stand-in for CUB's temporary-storage aliasing (cub/util_temporary_storage.cuh) under the CPU emulation:
 * the size rule of AliasTemporaries, shared by the device-wide stand-ins so they ask for what CUB would.
 * Cost: O(1). */
#ifndef PIXCON_EMU_CUB_UTIL_TEMPORARY_STORAGE_CUH
#define PIXCON_EMU_CUB_UTIL_TEMPORARY_STORAGE_CUH

#include <stddef.h>
#include <stdint.h>

#include <type_traits>

namespace cub {
namespace emu_detail {

inline size_t round256(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* AliasTemporaries: every allocation rounded up to 256 bytes, plus 255 to align the base. */
inline size_t alias_bytes(size_t a, size_t b = 0) { return round256(a) + round256(b) + 255; }

inline char *align256(void *p) { return (char *)(((uintptr_t)p + 255) & ~(uintptr_t)255); }

template <typename T> bool negative(T x) {
  if constexpr (std::is_signed<T>::value) return x < 0;
  return false;
}

}  // namespace emu_detail
}  // namespace cub

#endif /* PIXCON_EMU_CUB_UTIL_TEMPORARY_STORAGE_CUH */
