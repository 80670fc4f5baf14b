/* Workspace layout of the CPU kernels (see layout.h); every region 64-byte aligned. */
#include "layout.h"

#include <omp.h>

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

int pixcon_resolve_threads(int requested) {
  return requested > 0 ? requested : omp_get_max_threads();
}

static int64_t padded_rows(const pixcon_loss_params *p) {
  int64_t rows = 0;
  for (int64_t b = 0; b < p->num_bags; ++b) {
    int64_t n = p->bag_offsets[b + 1] - p->bag_offsets[b];
    rows += (n + PIXCON_TILE - 1) / PIXCON_TILE * PIXCON_TILE;
  }
  return rows;
}

void pixcon_layout_compute(const pixcon_loss_params *p, size_t real_size, int backward,
                           pixcon_layout *out) {
  pixcon_layout l;
  l.threads = pixcon_resolve_threads(p->num_threads);
  l.padded_rows = padded_rows(p);
  l.dim_pad = (p->dim + PIXCON_DIM_PAD - 1) / PIXCON_DIM_PAD * PIXCON_DIM_PAD;
  l.real_size = real_size;
  size_t matrix = (size_t)l.padded_rows * (size_t)l.dim_pad * real_size;
  size_t at = 0;
  l.off_rowmajor = at;
  at = align64(at + matrix);
  l.off_panels = at;
  at = align64(at + matrix);
  l.off_rowpanels = at;
  at = align64(at + matrix);
  l.off_grad = at;
  at = align64(at + (backward ? matrix : 0));
  l.off_rows = at;
  at = align64(at + (size_t)ROW_NUM_ARRAYS * (size_t)l.padded_rows * real_size);
  l.off_rowvec = at;
  at = align64(at + (size_t)ROWV_NUM_ARRAYS * (size_t)l.padded_rows * PIXCON_ROWV_BYTES);
  l.off_blocks = at;
  at = align64(at + (size_t)(l.padded_rows / PIXCON_TILE) * sizeof(pixcon_block_bounds));
  l.off_tiles = at;
  at = align64(at + (size_t)l.threads * 2 * PIXCON_TILE * PIXCON_TILE * real_size);
  l.off_codes = at;
  at = align64(at + 2 * (size_t)p->num_rows * sizeof(int32_t));
  l.off_sort = at;
  at = align64(at + (3 * (size_t)p->num_rows + 2 * (size_t)p->num_bags) * sizeof(int64_t));
  l.off_perm = at;
  at = align64(at + (size_t)l.padded_rows * sizeof(int64_t));
  l.off_bagbase = at;
  at = align64(at + (size_t)(p->num_bags + 1) * sizeof(int64_t));
  l.off_prefix = at;
  at = align64(at + (size_t)l.threads * (size_t)(p->num_bags + 1) * sizeof(int64_t));
  l.off_progress = at;
  at = align64(at + (size_t)(l.padded_rows / PIXCON_TILE) * sizeof(int64_t));
  l.total = at + 64; /* slack so the caller's buffer can be aligned up */
  *out = l;
}
