/*
 * The C API's argument checks (pixcon.h): what every entry point, CPU or CUDA, verifies before it
 * touches the data, and the accumulation rule both follow. Plain C with no threads, so the CUDA
 * library links it without OpenMP. Cost: O(B) for the offsets, O(N) for the labels.
 */
#include <stdint.h>

#include "message.h"
#include "pixcon/pixcon.h"

#define PIXCON_MAX_ROWS (INT64_C(1) << 40)
#define PIXCON_MAX_DIM (INT64_C(1) << 31)
#define PIXCON_MAX_ELEMENTS (INT64_C(1) << 56)

pixcon_status pixcon_loss_params_check_scalars(const pixcon_loss_params *p, char *message,
                                               size_t size) {
  pixcon_status st = pixcon_check_start(p, message, size);
  if (st != PIXCON_OK) return st;
  if (p->num_rows < 0) return pixcon_invalid_argument(message, size, "embeddings: negative number of rows");
  if (p->dim < 1) return pixcon_invalid_argument(message, size, "embeddings: need at least one feature column, got %lld", (long long)p->dim);
  if (p->num_rows > 0 && (!p->embeddings || !p->labels))
    return pixcon_invalid_argument(message, size, "embeddings and labels must not be NULL");
  if (p->dtype < PIXCON_FLOAT32 || p->dtype > PIXCON_BFLOAT16)
    return pixcon_invalid_argument(message, size, "embeddings: unsupported dtype code %d", (int)p->dtype);
  if (!(p->temperature > 0) || p->temperature != p->temperature || p->temperature == 1.0 / 0.0)
    return pixcon_invalid_argument(message, size, "temperature must be a positive finite number, got %g", p->temperature);
  if (p->denominator != PIXCON_DENOMINATOR_ALL && p->denominator != PIXCON_DENOMINATOR_PAIR)
    return pixcon_invalid_argument(message, size, "denominator: unknown code %d", (int)p->denominator);
  if (p->num_bags < 1 || !p->bag_offsets)
    return pixcon_invalid_argument(message, size, "bag_offsets must hold at least two entries [0, ..., N]");
  /* bounds under which every workspace size (bags padded to whole tiles, columns to panels) is
   * exact in size_t: 2^56 padded elements of 8 bytes, times the few matrices, stay below 2^64 */
  if (p->num_rows > PIXCON_MAX_ROWS || p->num_bags > PIXCON_MAX_ROWS || p->dim > PIXCON_MAX_DIM)
    return pixcon_invalid_argument(message, size, "embeddings: at most 2^40 rows and bags and 2^31 columns, got %lld rows, %lld bags, %lld columns",
                                   (long long)p->num_rows, (long long)p->num_bags, (long long)p->dim);
  if ((double)(p->num_rows + 128 * p->num_bags) * (double)(p->dim + 32) > (double)PIXCON_MAX_ELEMENTS)
    return pixcon_invalid_argument(message, size, "embeddings: %lld x %lld is too large for one call",
                                   (long long)p->num_rows, (long long)p->dim);
  return PIXCON_OK;
}

pixcon_status pixcon_loss_params_check_shape(const pixcon_loss_params *p, char *message,
                                             size_t size) {
  pixcon_status st = pixcon_loss_params_check_scalars(p, message, size);
  if (st != PIXCON_OK) return st;
  if (p->bag_offsets[0] != 0)
    return pixcon_invalid_argument(message, size, "bag_offsets must start at 0, got %lld", (long long)p->bag_offsets[0]);
  for (int64_t b = 0; b < p->num_bags; ++b)
    if (p->bag_offsets[b + 1] < p->bag_offsets[b])
      return pixcon_invalid_argument(message, size, "bag_offsets must be non-decreasing (offsets[%lld] = %lld > offsets[%lld] = %lld)",
                  (long long)b, (long long)p->bag_offsets[b], (long long)(b + 1), (long long)p->bag_offsets[b + 1]);
  if (p->bag_offsets[p->num_bags] != p->num_rows)
    return pixcon_invalid_argument(message, size, "bag_offsets must end at the number of rows %lld, got %lld",
                (long long)p->num_rows, (long long)p->bag_offsets[p->num_bags]);
  return PIXCON_OK;
}

pixcon_status pixcon_loss_params_check(const pixcon_loss_params *p, char *message, size_t size) {
  pixcon_status st = pixcon_loss_params_check_shape(p, message, size);
  if (st != PIXCON_OK) return st;
  for (int64_t r = 0; r < p->num_rows; ++r)
    if (p->labels[r] < 0 && p->labels[r] != p->ignore_index)
      return pixcon_invalid_argument(message, size, "labels must be >= 0 or ignore_index (%lld), found %lld at row %lld",
                  (long long)p->ignore_index, (long long)p->labels[r], (long long)r);
  return PIXCON_OK;
}

int pixcon_loss_num_stats(void) { return PIXCON_NUM_STATS; }

pixcon_dtype pixcon_loss_accumulation_dtype(pixcon_dtype embeddings) {
  return embeddings == PIXCON_FLOAT64 ? PIXCON_FLOAT64 : PIXCON_FLOAT32;
}
