/*
 * Register-blocked tile products over the packed embeddings (included after simd.h).
 * tile_similarities: S = A B^T for a rows x cols corner of a TILE x TILE tile, rows * cols * D
 *                    multiply-adds.
 * tile_accumulate:   out += C X for the first `rows` rows of out, summing `terms` rows of X:
 *                    rows * terms * D.
 * A tile's corner leaves out the rows that enter nothing (the padding at the end of a bag):
 * N = 4 225 fills 44 blocks and one row of a 45th, which is in 45 of the bag's 1 035 tiles.
 * The micro-tile is MR rows x NR = 2 vectors: MR broadcasts and 2 vector loads feed 2 MR
 * multiply-adds. Loads cost multiply-add issue slots, so the widest tile the register file
 * holds wins: 12 x 2 on AVX-512 (24 accumulators of 32 registers), 6 x 2 with 16 registers.
 */
#if PIXCON_VECTOR_BYTES >= 64
#define MR 12
#else
#define MR 6
#endif
#define NR (2 * VLANES)

/* S[i][j] = sum_d A[i][d] * B[d][j] for i < rows (a multiple of MR), j < cols (of NR): A in row
 * panels of MR rows (element (i, d) at (i / MR) * MR * dim_pad + d * MR + i % MR, so one
 * micro-tile's broadcasts are adjacent), B as TILE / NR column panels of dim_pad x NR. */
static void tile_similarities(const REAL *restrict A, const REAL *restrict panels, int64_t dim,
                              int64_t dim_pad, int rows, int cols, REAL *restrict S) {
  for (int pj = 0; pj < cols / NR; ++pj) {
    const REAL *B = panels + (int64_t)pj * dim_pad * NR;
    for (int i0 = 0; i0 < rows; i0 += MR) {
      const REAL *a = A + (int64_t)i0 * dim_pad;
      vreal c0[MR], c1[MR];
      for (int r = 0; r < MR; ++r) c0[r] = c1[r] = vset1(0);
      for (int64_t d = 0; d < dim; ++d) {
        vreal b0 = vload(B + d * NR), b1 = vload(B + d * NR + VLANES);
        for (int r = 0; r < MR; ++r) {
          REAL ar = a[d * MR + r];
          c0[r] += ar * b0;
          c1[r] += ar * b1;
        }
      }
      for (int r = 0; r < MR; ++r) {
        vstore(S + (i0 + r) * PIXCON_TILE + pj * NR, c0[r]);
        vstore(S + (i0 + r) * PIXCON_TILE + pj * NR + VLANES, c1[r]);
      }
    }
  }
}

/* out[i][d] += sum_t C[i * c_row + t * c_col] * X[t][d] for i < rows (a multiple of MR), t < terms;
 * X and out in slices of NR columns, each TILE x NR contiguous (slice (d / NR) at d * TILE), so
 * both stream from memory in order. (c_row, c_col) = (TILE, 1) reads C, (1, TILE) its transpose. */
static void tile_accumulate(const REAL *restrict C, int64_t c_row, int64_t c_col,
                            const REAL *restrict X, int64_t dim_pad, int rows, int terms,
                            REAL *restrict out) {
  for (int64_t d0 = 0; d0 < dim_pad; d0 += NR) {
    const REAL *x = X + d0 * PIXCON_TILE;
    REAL *o = out + d0 * PIXCON_TILE;
    for (int i0 = 0; i0 < rows; i0 += MR) {
      vreal c0[MR], c1[MR];
      for (int r = 0; r < MR; ++r) c0[r] = c1[r] = vset1(0);
      for (int t = 0; t < terms; ++t) {
        vreal x0 = vload(x + t * NR), x1 = vload(x + t * NR + VLANES);
        for (int r = 0; r < MR; ++r) {
          REAL w = C[(i0 + r) * c_row + t * c_col];
          c0[r] += w * x0;
          c1[r] += w * x1;
        }
      }
      for (int r = 0; r < MR; ++r) {
        REAL *row = o + (i0 + r) * NR;
        vstore(row, vload(row) + c0[r]);
        vstore(row + VLANES, vload(row + VLANES) + c1[r]);
      }
    }
  }
}
