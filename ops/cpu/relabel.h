/* Dense per-bag codes for labels and image ids, so tile kernels compare small floats. */
#ifndef PIXCON_CPU_RELABEL_H
#define PIXCON_CPU_RELABEL_H

#include <stdint.h>

#include "pixcon/pixcon.h"

/* label_codes[r]: rank of labels[r] among the distinct non-ignored labels of r's bag (-1 for
 * ignored rows); image_codes[r]: rank of image_ids[r] among the bag's image ids (0 when
 * p->image_ids is NULL). sort_scratch holds num_rows int64. O(N) for values within a range no
 * wider than their bag, else O(N log N). */
void pixcon_relabel(const pixcon_loss_params *p, int32_t *label_codes, int32_t *image_codes,
                    int64_t *sort_scratch);

#endif /* PIXCON_CPU_RELABEL_H */
