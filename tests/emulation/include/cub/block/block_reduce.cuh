/* Stand-in for cub::BlockReduce under the CPU emulation: same template interface (TempStorage,
 * Reduce(x, op), Reduce(x, op, num_valid), Sum(x)); the aggregate is defined only in thread 0.
 * Cost: one __syncthreads plus a serial reduction by thread 0 over the block's values. */
#ifndef PIXCON_EMU_CUB_BLOCK_REDUCE_CUH
#define PIXCON_EMU_CUB_BLOCK_REDUCE_CUH

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "pixcon_emu.h"

namespace cub {

enum BlockReduceAlgorithm {
  BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY,
  BLOCK_REDUCE_RAKING,
  BLOCK_REDUCE_WARP_REDUCTIONS
};

template <typename T, int BLOCK_DIM_X, BlockReduceAlgorithm ALGORITHM = BLOCK_REDUCE_WARP_REDUCTIONS,
          int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1>
class BlockReduce {
  static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;
  static_assert(std::is_trivially_copyable<T>::value, "BlockReduce stand-in needs a trivially copyable T");

 public:
  struct TempStorage {
    T slot[kThreads];
  };

  BlockReduce() : storage_(private_storage()), tid_(linear_tid()) {}
  explicit BlockReduce(TempStorage &storage) : storage_(storage), tid_(linear_tid()) {}

  template <typename ReductionOp> T Reduce(T input, ReductionOp op) { return Reduce(input, op, kThreads); }

  /* Only the first num_valid threads' inputs count. */
  template <typename ReductionOp> T Reduce(T input, ReductionOp op, int num_valid) {
    if (tid_ < num_valid) storage_.slot[tid_] = input;
    __syncthreads();
    T result;
    if (tid_ == 0) {
      result = storage_.slot[0];
      for (int t = 1; t < num_valid && t < kThreads; ++t) result = op(result, storage_.slot[t]);
    } else {
      memset((void *)&result, 0xff, sizeof result); /* undefined outside thread 0: poison it */
    }
    return result;
  }

  T Sum(T input) { return Reduce(input, Add()); }
  T Sum(T input, int num_valid) { return Reduce(input, Add(), num_valid); }

 private:
  struct Add {
    T operator()(const T &a, const T &b) const { return a + b; }
  };

  static TempStorage &private_storage() {
    static TempStorage storage;
    return storage;
  }

  static int linear_tid() {
    if ((int)blockDim.x != BLOCK_DIM_X || (int)blockDim.y != BLOCK_DIM_Y || (int)blockDim.z != BLOCK_DIM_Z) {
      fprintf(stderr, "cub::BlockReduce<%d, %d, %d> used in a block of %u x %u x %u threads\n", BLOCK_DIM_X,
              BLOCK_DIM_Y, BLOCK_DIM_Z, blockDim.x, blockDim.y, blockDim.z);
      abort();
    }
    return (int)(threadIdx.x + BLOCK_DIM_X * (threadIdx.y + BLOCK_DIM_Y * threadIdx.z));
  }

  TempStorage &storage_;
  int tid_;
};

}  // namespace cub

#endif /* PIXCON_EMU_CUB_BLOCK_REDUCE_CUH */
