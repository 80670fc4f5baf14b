/* Pixel sampling on the CPU (sample.h): step 1 counts the groups and sorts the valid pixels by
 * group with a stable counting sort; step 3 quickselects each group's smallest (key, index) pairs
 * and compacts them in index order. Cost: O(B H W + G) time, about 17 bytes a pixel of workspace. */
#include <stdint.h>
#include <string.h>

#include "layout.h"
#include "pixcon/philox.h"
#include "pixcon/sample.h"

/* Work is cut into chunks of pixels fixed by the problem alone, never by the thread count, so
 * every thread count produces the same order and the same output. */
enum { CHUNK_PIXELS = 4096, MAX_CHUNKS = 256, GROUP_GRAIN = 4 };

typedef struct sample_ws {
  int64_t n, g, chunks;
  int threads;
  int64_t *order;      /* [n] valid pixels by group, ascending within a group; kept for select */
  int64_t *starts;     /* [G + 2] group g owns order[starts[g] .. starts[g + 1]) */
  int64_t *matrix;     /* [chunks x (G + 1)] per-chunk group counts, then scatter cursors */
  int32_t *group;      /* [n] counts: each pixel's group, -1 when ignored */
  uint32_t *keys;      /* [n] select: key of order[s]; reuses the room of `group`, dead by then */
  uint32_t *scratch;   /* [n] quickselect's copy of keys */
  uint8_t *flags;      /* [n] select: 1 for a selected pixel */
  int64_t *chunk_sums; /* [chunks + 1] first output slot of each chunk */
} sample_ws;

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

static int64_t num_chunks(int64_t n, int64_t g) {
  int64_t c = (n + CHUNK_PIXELS - 1) / CHUNK_PIXELS;
  if (c > MAX_CHUNKS) c = MAX_CHUNKS;
  if (c > 1 + n / (g + 1)) c = 1 + n / (g + 1); /* keeps chunks x groups within O(n + G) */
  return c < 1 ? 1 : c;
}

static void *region(char *base, size_t *at, size_t bytes) {
  void *r = base ? base + *at : NULL;
  *at = align64(*at + bytes);
  return r;
}

/* Lays the workspace out from `base` (NULL: sizes only); returns the bytes needed, with slack
 * for aligning the caller's pointer. */
static size_t carve(const pixcon_sample_params *p, char *base, sample_ws *w) {
  w->n = p->num_images * p->pixels_per_image;
  w->g = pixcon_sample_num_groups(p);
  w->chunks = num_chunks(w->n, w->g);
  w->threads = pixcon_resolve_threads(p->num_threads);
  if ((uint64_t)w->n > SIZE_MAX / 32) return SIZE_MAX; /* no buffer can hold it */
  size_t n = (size_t)w->n, g = (size_t)w->g, at = 0;
  w->order = region(base, &at, n * sizeof(int64_t));
  w->starts = region(base, &at, (g + 2) * sizeof(int64_t));
  w->matrix = region(base, &at, (size_t)w->chunks * (g + 1) * sizeof(int64_t));
  w->group = region(base, &at, n * sizeof(int32_t));
  w->keys = (uint32_t *)w->group;
  w->scratch = region(base, &at, n * sizeof(uint32_t));
  w->flags = region(base, &at, n);
  w->chunk_sums = region(base, &at, ((size_t)w->chunks + 1) * sizeof(int64_t));
  return at + 64;
}

static pixcon_status prepare(const pixcon_sample_params *p, void *workspace, size_t size, sample_ws *w) {
  pixcon_status st = pixcon_sample_params_check_shape(p, NULL, 0);
  if (st != PIXCON_OK) return st;
  if (!workspace || size < carve(p, NULL, w)) return PIXCON_ERROR_WORKSPACE_TOO_SMALL;
  carve(p, (char *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63), w);
  return PIXCON_OK;
}

size_t pixcon_cpu_sample_workspace_size(const pixcon_sample_params *p) {
  sample_ws w;
  if (pixcon_sample_params_check_shape(p, NULL, 0) != PIXCON_OK) return 0;
  return carve(p, NULL, &w);
}

/* Balanced split without forming chunk * n, which could overflow. */
static int64_t chunk_begin(const sample_ws *w, int64_t c) {
  int64_t q = w->n / w->chunks, r = w->n % w->chunks;
  return q * c + (c < r ? c : r);
}

static void count_chunk(const pixcon_sample_params *p, const sample_ws *w, int64_t c) {
  int64_t *row = w->matrix + c * (w->g + 1);
  int hard_easy = p->strategy == PIXCON_SAMPLE_HARD_EASY;
  for (int64_t k = 0; k <= w->g; ++k) row[k] = 0;
  for (int64_t i = chunk_begin(w, c), end = chunk_begin(w, c + 1); i < end; ++i) {
    int64_t g = pixcon_sample_group(p, i, p->labels[i], hard_easy ? p->predictions[i] : 0);
    w->group[i] = (int32_t)g;
    if (g >= 0) ++row[g];
  }
}

/* Turns per-chunk counts into scatter cursors. Within a group, earlier chunks come first, so
 * the sort is stable: a group's pixels stay in index order. */
static void scan_groups(const sample_ws *w, int64_t *counts) {
  int64_t run = 0;
  for (int64_t g = 0; g <= w->g; ++g) {
    w->starts[g] = run;
    for (int64_t c = 0; c < w->chunks; ++c) {
      int64_t *cell = w->matrix + c * (w->g + 1) + g, k = *cell;
      *cell = run;
      run += k;
    }
    counts[g] = run - w->starts[g];
  }
  w->starts[w->g + 1] = run;
}

static void scatter_chunk(const sample_ws *w, int64_t c) {
  int64_t *cursor = w->matrix + c * (w->g + 1);
  for (int64_t i = chunk_begin(w, c), end = chunk_begin(w, c + 1); i < end; ++i)
    if (w->group[i] >= 0) w->order[cursor[w->group[i]]++] = i;
}

pixcon_status pixcon_cpu_sample_counts(const pixcon_sample_params *p, int64_t *counts,
                                       void *workspace, size_t workspace_size) {
  sample_ws w;
  pixcon_status st = prepare(p, workspace, workspace_size, &w);
  if (st != PIXCON_OK) return st;
#pragma omp parallel num_threads(w.threads)
  {
#pragma omp for schedule(static)
    for (int64_t c = 0; c < w.chunks; ++c) count_chunk(p, &w, c);
#pragma omp single
    scan_groups(&w, counts);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < w.chunks; ++c) scatter_chunk(&w, c);
  }
  return PIXCON_OK;
}

/* The k-th smallest of v[0 .. n) (0-based), reordering v: Hoare's FIND as written by Wirth.
 * Keys are pseudo-random, so pivoting on v[k] has no bad inputs to fear. */
static uint32_t kth_smallest(uint32_t *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    uint32_t pivot = v[k];
    int64_t i = lo, j = hi;
    do {
      while (v[i] < pivot) ++i;
      while (pivot < v[j]) --j;
      if (i <= j) {
        uint32_t t = v[i];
        v[i++] = v[j];
        v[j--] = t;
      }
    } while (i <= j);
    if (j < k) lo = i;
    if (k < i) hi = j;
  }
  return v[k];
}

/* Flags the quota smallest (key, index) pairs of group g: every key below the quota-th smallest
 * key t, then pixels with key t in index order (the group's order) until the quota is met. */
static void select_group(const sample_ws *w, int64_t g, int64_t quota) {
  int64_t begin = w->starts[g], members = w->starts[g + 1] - begin;
  const int64_t *order = w->order + begin;
  const uint32_t *keys = w->keys + begin;
  if (quota <= 0) return;
  if (quota >= members) {
    for (int64_t s = 0; s < members; ++s) w->flags[order[s]] = 1;
    return;
  }
  memcpy(w->scratch + begin, keys, (size_t)members * sizeof *keys);
  uint32_t t = kth_smallest(w->scratch + begin, members, quota - 1);
  int64_t ties = quota;
  for (int64_t s = 0; s < members; ++s) ties -= keys[s] < t;
  for (int64_t s = 0; s < members; ++s)
    if (keys[s] < t || (keys[s] == t && ties-- > 0)) w->flags[order[s]] = 1;
}

static int64_t count_flags(const sample_ws *w, int64_t c) {
  int64_t k = 0;
  for (int64_t i = chunk_begin(w, c), end = chunk_begin(w, c + 1); i < end; ++i) k += w->flags[i];
  return k;
}

static void compact_chunk(const sample_ws *w, int64_t c, int64_t *indices) {
  int64_t at = w->chunk_sums[c];
  for (int64_t i = chunk_begin(w, c), end = chunk_begin(w, c + 1); i < end; ++i)
    if (w->flags[i]) indices[at++] = i;
}

pixcon_status pixcon_cpu_sample_select(const pixcon_sample_params *p, const int64_t *quotas,
                                       int64_t *indices, void *workspace, size_t workspace_size) {
  sample_ws w;
  pixcon_status st = prepare(p, workspace, workspace_size, &w);
  if (st != PIXCON_OK) return st;
  int64_t keyed = w.starts[w.g]; /* the overflow group G after them is never selected */
#pragma omp parallel num_threads(w.threads)
  {
#pragma omp for schedule(static)
    for (int64_t s = 0; s < keyed; ++s) w.keys[s] = pixcon_pixel_key(p->seed, w.order[s]);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < w.chunks; ++c)
      memset(w.flags + chunk_begin(&w, c), 0, (size_t)(chunk_begin(&w, c + 1) - chunk_begin(&w, c)));
#pragma omp for schedule(dynamic, GROUP_GRAIN)
    for (int64_t g = 0; g < w.g; ++g) select_group(&w, g, quotas[g]);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < w.chunks; ++c) w.chunk_sums[c + 1] = count_flags(&w, c);
#pragma omp single
    {
      w.chunk_sums[0] = 0;
      for (int64_t c = 0; c < w.chunks; ++c) w.chunk_sums[c + 1] += w.chunk_sums[c];
    }
#pragma omp for schedule(static)
    for (int64_t c = 0; c < w.chunks; ++c) compact_chunk(&w, c, indices);
  }
  return PIXCON_OK;
}
