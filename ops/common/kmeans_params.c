/*
 * The argument checks of the k-means C API (kmeans.h), shared by the CPU and CUDA entry points.
 * Plain C with no threads, so the CUDA library links it without OpenMP. Cost: O(1).
 */
#include <stdint.h>

#include "message.h"
#include "pixcon/kmeans.h"

pixcon_status pixcon_kmeans_params_check(const pixcon_kmeans_params *p, char *message, size_t size) {
  pixcon_status st = pixcon_check_start(p, message, size);
  if (st != PIXCON_OK) return st;
  if (p->num_images < 0 || p->pixels_per_image < 0)
    return pixcon_invalid_argument(message, size, "features: negative number of rows");
  if (p->pixels_per_image > 0 && p->num_images > (INT64_C(1) << 31) / p->pixels_per_image)
    return pixcon_invalid_argument(message, size, "features: at most 2^31 rows, got %lld x %lld",
                                   (long long)p->num_images, (long long)p->pixels_per_image);
  if (p->dim < 1 || p->dim > (INT64_C(1) << 31))
    return pixcon_invalid_argument(message, size, "features: need 1 to 2^31 feature channels, got %lld", (long long)p->dim);
  if (p->image_stride < 0 || p->pixel_stride < 0 || p->dim_stride < 0)
    return pixcon_invalid_argument(message, size, "features: negative strides are not supported");
  if (p->num_images * p->pixels_per_image > 0 && !p->features)
    return pixcon_invalid_argument(message, size, "features must not be NULL");
  if (p->num_clusters < 1 || p->num_clusters >= (INT64_C(1) << 31))
    return pixcon_invalid_argument(message, size, "num_clusters must be in [1, 2^31), got %lld", (long long)p->num_clusters);
  /* every workspace size exact in size_t: the unit copy and the centroids below 2^56 floats */
  double padded = (double)pixcon_kmeans_padded_dim(p->dim), limit = (double)(INT64_C(1) << 56);
  if ((double)p->num_images * (double)p->pixels_per_image * padded > limit || (double)p->num_clusters * padded > limit)
    return pixcon_invalid_argument(message, size, "features: %lld x %lld rows of %lld channels into %lld clusters is too large",
                                   (long long)p->num_images, (long long)p->pixels_per_image, (long long)p->dim,
                                   (long long)p->num_clusters);
  if (p->iterations < 0)
    return pixcon_invalid_argument(message, size, "iterations must be >= 0, got %lld", (long long)p->iterations);
  if (p->restarts < 1 || p->restarts >= (INT64_C(1) << 31))
    return pixcon_invalid_argument(message, size, "restarts must be >= 1, got %lld", (long long)p->restarts);
  if (!(p->outlier_fraction >= 0.0 && p->outlier_fraction < 1.0))
    return pixcon_invalid_argument(message, size, "outlier_fraction must be in [0, 1), got %g", p->outlier_fraction);
  if (p->ignore_index >= 0 && p->ignore_index < p->num_clusters)
    return pixcon_invalid_argument(message, size, "ignore_index (%lld) must not be a cluster index in [0, num_clusters = %lld): "
                                   "choose one outside, e.g. -1", (long long)p->ignore_index, (long long)p->num_clusters);
  if (p->init != PIXCON_KMEANS_PLUS_PLUS && p->init != PIXCON_KMEANS_RANDOM)
    return pixcon_invalid_argument(message, size, "init: unknown code %d", (int)p->init);
  return PIXCON_OK;
}
