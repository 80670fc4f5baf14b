/* Decoding a fuzzer's bytes into parameters: every read is defined on any input (past the end
 * it reads zeros), so every byte string is a problem. Plain C. */
#ifndef PIXCON_FUZZ_INPUT_H
#define PIXCON_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct fuzz_input {
  const uint8_t *data;
  size_t size, at;
} fuzz_input;

static inline uint64_t take_bits(fuzz_input *in, int bytes) {
  uint64_t v = 0;
  for (int k = 0; k < bytes; ++k) v |= (uint64_t)(in->at < in->size ? in->data[in->at++] : 0) << (8 * k);
  return v;
}

/* uniform-ish in [lo, hi], hi - lo < 2^32 */
static inline int64_t take_range(fuzz_input *in, int64_t lo, int64_t hi) {
  return lo + (int64_t)(take_bits(in, hi - lo < 256 ? 1 : 4) % (uint64_t)(hi - lo + 1));
}

static inline int take_bool(fuzz_input *in) { return (int)(take_bits(in, 1) & 1); }

#define TAKE_PICK(in, table) (table)[take_range((in), 0, (int64_t)(sizeof(table) / sizeof((table)[0])) - 1)]

/* The integers a hostile caller passes: the limits, their neighbours, small values. */
static const int64_t kHostileInts[] = {0, 1, 2, 3, -1, -2, 255, 256, INT32_MAX, (int64_t)INT32_MAX + 1,
                                       INT32_MIN, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1,
                                       (int64_t)1 << 31, (int64_t)1 << 40, (int64_t)1 << 62};

#endif /* PIXCON_FUZZ_INPUT_H */
