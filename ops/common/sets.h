/*
 * The sets of pixcon.h (docs/design.md section 2.1), for the CPU and the CUDA kernels alike: a row's roles
 * (anchor, contrast row) and whether row j of a bag is a positive or a negative of anchor i. Labels
 * and image ids are compared as raw int64 values. Cost: O(1) per row or pair.
 */
#ifndef PIXCON_COMMON_SETS_H
#define PIXCON_COMMON_SETS_H

#include <stdint.h>

#include "shared_fn.h"

enum { PIXCON_ROLE_ANCHOR = 1, PIXCON_ROLE_CONTRAST = 2 };

/* Roles of row r with label `label`: none when the label is ignore_index, else each role unless its
 * mask (NULL: every row) leaves the row out. */
PIXCON_SHARED_FN unsigned pixcon_row_roles(int64_t label, int64_t ignore_index, const uint8_t *anchor_mask,
                                           const uint8_t *contrast_mask, int64_t r) {
  if (label == ignore_index) return 0;
  unsigned roles = 0;
  if (!anchor_mask || anchor_mask[r]) roles |= PIXCON_ROLE_ANCHOR;
  if (!contrast_mask || contrast_mask[r]) roles |= PIXCON_ROLE_CONTRAST;
  return roles;
}

/* What the pair predicates read of a row: its label, its image id (read only with image ids) and
 * its roles. */
typedef struct pixcon_row_key {
  int64_t label, image;
  unsigned roles;
} pixcon_row_key;

/* j in P(i): a contrast row other than i with i's label; i itself when self_positive. */
PIXCON_SHARED_FN int pixcon_is_positive(int self_positive, int64_t i, const pixcon_row_key *ki, int64_t j,
                                        const pixcon_row_key *kj) {
  if (i == j) return self_positive != 0;
  return (kj->roles & PIXCON_ROLE_CONTRAST) && kj->label == ki->label;
}

/* j in N(i): a contrast row of another label and, when the rows carry image ids (by_image), of i's
 * image. */
PIXCON_SHARED_FN int pixcon_is_negative(int by_image, int64_t i, const pixcon_row_key *ki, int64_t j,
                                        const pixcon_row_key *kj) {
  return i != j && (kj->roles & PIXCON_ROLE_CONTRAST) && kj->label != ki->label &&
         (!by_image || kj->image == ki->image);
}

#endif /* PIXCON_COMMON_SETS_H */
