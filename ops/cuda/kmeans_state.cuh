/* The device state of one CUDA k-means run (kmeans.cu): the caller's parameters and the workspace arrays
 * every kernel of kmeans_*.cuh reads or writes, passed by value to each launch. Rows are indexed in
 * int32 and elements in int64 (n < 2^31 by the argument checks; n Dp may exceed 2^31).
 * Cost: none (pointers and sizes). */
#ifndef PIXCON_CUDA_KMEANS_STATE_CUH
#define PIXCON_CUDA_KMEANS_STATE_CUH

#include <stdint.h>

#include "pixcon/kmeans.h"

namespace pixcon_cuda {
namespace {

/* pixcon_kmeans_trials of the largest K, 2^31 - 1 */
constexpr int kMaxTrials = 23;

struct KmeansState {
  pixcon_kmeans_params p; /* features and valid are device pointers */
  int64_t n, k, dp;
  float *unit;    /* [n, dp] unit rows, zero-padded; zeros for invalid rows */
  uint8_t *valid; /* [n] */
  float *centroid;  /* [k, dp] of the running restart */
  int32_t *label;   /* [n] of the running restart; k for invalid rows */
  float *best;      /* [n]: cosine to the own centroid (k-means++: to the nearest chosen one) */
  float *win_best;  /* [n]: best of the winning restart's last assignment */
  /* Two ping-pong buffers per sort (CUB's DoubleBuffer form). keys[] hold 64-bit keys (the random
   * draws, pixcon_kmeans_key) or 32-bit labels; k-means++ uses keys[0] for the weights and keys[1] for
   * their inclusive prefix sums, as no sort runs during its draws. */
  uint64_t *keys[2];
  int32_t *index[2];
  /* the update: members of cluster k are sorted positions [begin[k], end[k]) */
  int32_t *begin, *end;
  /* packed[k] = (empty ? 2^32 : 0) + number of chunks of cluster k, k < K, and packed[K] = 0; starts is
   * its exclusive prefix sum: low word the first chunk slot of k, high word the rank of an empty
   * cluster among the empty ones; starts[K] holds the totals */
  uint64_t *packed, *starts;
  double *partial; /* [chunk slots, dp]: each chunk's sum in ascending member order */
  double *sums;    /* [k, dp]: S_k */
  unsigned long long *num_valid, *score, *win_score;
  int32_t *won;  /* the running restart beats the ones before */
  /* k-means++: the row drawn for the next centroid (-1 when none is left to draw); whether it comes from
   * the trials, their rows and potentials */
  int32_t *pick, *trialing, *candidate;
  unsigned long long *potential;
};

}  // namespace
}  // namespace pixcon_cuda

#endif /* PIXCON_CUDA_KMEANS_STATE_CUH */
