/* Runtime of the CPU emulation: grid execution with real threads (blocks in a shuffled order, shared
 * memory poisoned before each block), checked block and warp barriers, shuffles, the warp's WMMA
 * product, cp.async queues, cudaMalloc'd memory (poisoned, registered for range checks), copies, errors
 * (with the sticky device-side assertion), function attributes, counters.
 * Cost: persistent worker threads (one per thread of a block) run the blocks; each barrier or warp-level
 * operation is one futex rendezvous; each block start fills its shared memory; a warp's mma_sync is a
 * naive 16 x 16 x k product. */
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cuda_pipeline_primitives.h"
#include "pixcon_emu.h"

/* The static shared memory: every __shared__ object the compiler put in the pixcon_shared section (see
 * pixcon_emu.h). The linker defines these bounds when the section exists; weak, so a binary without
 * one still links, with both null. */
extern "C" unsigned char __start_pixcon_shared[] __attribute__((weak));
extern "C" unsigned char __stop_pixcon_shared[] __attribute__((weak));

namespace pixcon_emu {

static thread_local Geometry current_geometry;
Geometry &geometry() { return current_geometry; }
namespace {

/* Shared memory per block on the strictest target GPUs (sm_86, sm_89): 48 KiB without the opt-in,
 * 99 KiB with it (static + dynamic). */
constexpr size_t kDefaultSharedLimit = 49152;
constexpr size_t kOptInSharedLimit = 101376;

thread_local cudaError_t last_error = cudaSuccess;
std::atomic<int> sticky_error{cudaSuccess}; /* a device-side assertion: the context is unusable */
std::atomic<long long> total_launches{0}, launches{0}, host_syncs{0}, device_to_host_copies{0};

/* Aborts the run; when several threads fail at once (the lanes of a warp, say), only the first says why. */
[[noreturn]] void die(const char *what) { misuse(nullptr, what); }

/* The whole section: an upper bound on any one kernel's static shared memory. */
size_t static_shared_bytes() { return (size_t)((uintptr_t)__stop_pixcon_shared - (uintptr_t)__start_pixcon_shared); }

/* ---- one launch ---- */
struct Job {
  thread_body body;
  void *context;
  dim3 grid, block;
  unsigned threads;
  unsigned long long blocks;
  uint64_t order_key;
  unsigned char *arena; /* dynamic shared memory, arena_bytes long */
  size_t arena_bytes;
};

/* Before every block: uninitialised shared memory reads as 0xff (NaN as float, half, bfloat16; -1 as
 * integers) rather than as the previous block's values. */
void poison_shared(const Job &job) {
  memset(job.arena, 0xff, job.arena_bytes);
  if (size_t n = static_shared_bytes()) memset(__start_pixcon_shared, 0xff, n);
}

/* Kinds of arrival. A rendezvous whose arrivals mix kinds was reached by threads doing different things
 * (undefined on a GPU, usually a hang): it aborts the run. Block-level arrivals and leaving the kernel
 * also count at the warp level, without waiting there, so a lane that waits in a warp operation while a
 * warp-mate is at __syncthreads or has left is caught instead of deadlocking. */
enum Arrival {
  BLOCK_SYNC = 1,   /* __syncthreads */
  BLOCK_REDUCE = 2, /* __syncthreads_or / _and / _count */
  LEAVE = 4,        /* the thread left the kernel: the end of its block */
  WARP_SYNC = 8,    /* __syncwarp */
  WARP_SHUFFLE = 16,
  WARP_MMA = 32,
};
constexpr int kWaitsAtWarp = WARP_SYNC | WARP_SHUFFLE | WARP_MMA;

std::string arrival_names(int kinds) {
  static const char *const names[] = {"__syncthreads", "__syncthreads_or/_and/_count", "leaving the kernel",
                                      "__syncwarp", "a shuffle", "wmma::mma_sync"};
  std::string s;
  for (int b = 0; b < 6; ++b)
    if (kinds & (1 << b)) s += (s.empty() ? "" : ", ") + std::string(names[b]);
  return s;
}

/* Waits until gen moves past seen: a few sched_yields, since the threads still to arrive usually need
 * only a time slice, then a futex sleep. With more emulated threads than cores this beats both a plain
 * futex wait (a sleep and a wake-up per thread per rendezvous) and std::atomic::wait (about a third
 * slower on a 2-core machine: it sleeps sooner). */
void await_change(std::atomic<uint32_t> &gen, uint32_t seen) {
  for (int k = 0; k < 64; ++k) {
    if (gen.load(std::memory_order_acquire) != seen) return;
    sched_yield();
  }
  while (gen.load(std::memory_order_acquire) == seen)
    syscall(SYS_futex, (uint32_t *)&gen, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
}
/* Wakes every thread asleep in await_change(gen); after gen changed. */
void wake_all(std::atomic<uint32_t> &gen) {
  syscall(SYS_futex, (uint32_t *)&gen, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

/* All threads of the block meet; the last to arrive checks the kinds, counts the predicates and, at the
 * end of a block that has a successor, poisons shared memory before releasing anyone, so no thread of
 * the next block can see the old contents. */
class BlockBarrier {
 public:
  void reset(unsigned count) { count_ = count; }

  unsigned wait(int kind, bool predicate, const Job *next_block) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    kinds_.fetch_or(kind, std::memory_order_relaxed);
    if (predicate) passed_.fetch_add(1, std::memory_order_relaxed);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      int all = kinds_.load(std::memory_order_relaxed);
      if (all != kind) {
        if (all & LEAVE) die("__syncthreads reached by only part of a block (divergent barrier)");
        die(("threads of a block met at different barriers: " + arrival_names(all)).c_str());
      }
      unsigned passed = passed_.load(std::memory_order_relaxed);
      result_.store(passed, std::memory_order_relaxed);
      passed_.store(0, std::memory_order_relaxed);
      kinds_.store(0, std::memory_order_relaxed);
      arrived_.store(0, std::memory_order_relaxed);
      if (next_block) poison_shared(*next_block);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      wake_all(generation_);
      return passed;
    }
    await_change(generation_, gen);
    return result_.load(std::memory_order_relaxed);
  }

 private:
  unsigned count_ = 0;
  std::atomic<unsigned> arrived_{0}, passed_{0}, result_{0};
  std::atomic<int> kinds_{0};
  std::atomic<uint32_t> generation_{0};
};

/* The lanes of one warp: a rendezvous and the areas its operations exchange values through. A lane
 * reads the phase, writes its part to the phase's area, arrives, and reads the others' parts. Two areas
 * alternate: a lane can only write phase g + 2's area after every lane arrived at g + 1, that is after
 * every lane finished reading phase g's. */
struct Warp {
  unsigned lanes = 0; /* set by the launching thread before the workers start */
  std::atomic<unsigned> arrived{0};
  std::atomic<int> kinds{0};
  std::atomic<uint32_t> generation{0};
  uint64_t shuffle[2][32];
  float mma[2][3][256]; /* A, B, C of wmma::mma_sync, row-major */

  uint32_t phase() const { return generation.load(std::memory_order_acquire); }

  void arrive(int kind, uint32_t phase) {
    kinds.fetch_or(kind, std::memory_order_relaxed);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == lanes) {
      int all = kinds.load(std::memory_order_relaxed);
      if (all != kind)
        die(("lanes of a warp met at different operations (divergent warp): " + arrival_names(all)).c_str());
      kinds.store(0, std::memory_order_relaxed);
      arrived.store(0, std::memory_order_relaxed);
      generation.fetch_add(1, std::memory_order_acq_rel);
      if (kind & kWaitsAtWarp) wake_all(generation);
      return;
    }
    if (kind & kWaitsAtWarp) await_change(generation, phase);
  }
};

/* What the calling worker is playing; job is null outside a kernel. */
struct ThreadState {
  const Job *job = nullptr;
  BlockBarrier *barrier = nullptr;
  Warp *warp = nullptr;
  unsigned lane = 0;
};
thread_local ThreadState self;

ThreadState &in_kernel(const char *api) {
  if (!self.job) misuse(api, "called outside a kernel");
  return self;
}

/* ---- cp.async: the calling thread's queue, in issue order (so group numbers never decrease) ---- */
struct AsyncCopy {
  unsigned char *dst;
  const unsigned char *src;
  size_t read, size;
  unsigned long long group;
};
struct Pipeline {
  std::vector<AsyncCopy> pending;
  unsigned long long committed = 0; /* groups committed so far; the open group has this number */
};
thread_local Pipeline pipeline;

/* ---- the block order: a bijection of [0, n) keyed per launch (a keyed odd-multiply / xorshift mix on
 * the next power of two, cycle-walked back into range) ---- */
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t shuffled_block(uint64_t pos, uint64_t n, uint64_t key) {
  if (n < 2) return pos;
  const int bits = 64 - __builtin_clzll(n - 1);
  const uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
  uint64_t x = pos;
  do {
    uint64_t k = key;
    for (int round = 0; round < 3; ++round) {
      k = splitmix64(k);
      x = (x * (k | 1) + (k >> 32)) & mask;
      x ^= x >> (bits / 2 + 1);
    }
  } while (x >= n);
  return x;
}

struct BlockOrder {
  std::mutex mutex;
  uint64_t seed;
  uint64_t launches = 0;
  BlockOrder() {
    const char *s = getenv("PIXCON_EMU_SEED");
    seed = s && *s ? strtoull(s, nullptr, 0) : 0x5eed5eed5eed5eedull;
  }
  uint64_t next_key() {
    std::lock_guard<std::mutex> lock(mutex);
    return splitmix64(seed ^ splitmix64(launches++));
  }
};
BlockOrder &block_order() {
  static BlockOrder order;
  return order;
}

/* ---- cudaFuncSetAttribute(MaxDynamicSharedMemorySize) per kernel ---- */
std::mutex attribute_mutex;
std::map<const void *, size_t> dynamic_limits;

bool shared_fits(const void *kernel, size_t dynamic_bytes) {
  std::lock_guard<std::mutex> lock(attribute_mutex);
  auto it = dynamic_limits.find(kernel);
  if (it != dynamic_limits.end()) return dynamic_bytes <= it->second;
  return static_shared_bytes() + dynamic_bytes <= kDefaultSharedLimit;
}

/* ---- device allocations ---- */
std::mutex alloc_mutex;
std::map<uintptr_t, size_t> allocations; /* start -> size */
std::atomic<unsigned long long> free_epoch{0}; /* bumped by every cudaFree: invalidates range caches */

/* The last allocation a thread found, while no cudaFree happened since: cp.async checks every copy. */
struct RangeCache {
  unsigned long long epoch = ~0ull;
  uintptr_t start = 0, end = 0;
};
thread_local RangeCache range_cache;

}  // namespace

bool is_device_range(const void *p, size_t bytes) {
  uintptr_t a = (uintptr_t)p;
  if (a + bytes < a) return false;
  RangeCache &c = range_cache;
  unsigned long long epoch = free_epoch.load(std::memory_order_acquire);
  if (c.epoch == epoch && a >= c.start && a + bytes <= c.end) return true;
  std::lock_guard<std::mutex> lock(alloc_mutex);
  auto it = allocations.upper_bound(a);
  if (it == allocations.begin()) return false;
  --it;
  c = RangeCache{free_epoch.load(std::memory_order_relaxed), it->first, it->first + it->second};
  return a >= c.start && a + bytes <= c.end;
}

long long launch_count() { return total_launches.load(); }

Counters counters() { return Counters{launches.load(), host_syncs.load(), device_to_host_copies.load()}; }

void reset_counters() {
  launches = 0;
  host_syncs = 0;
  device_to_host_copies = 0;
}

void set_block_order_seed(uint64_t seed) {
  BlockOrder &order = block_order();
  std::lock_guard<std::mutex> lock(order.mutex);
  order.seed = seed;
  order.launches = 0;
}

void reset_device() {
  sticky_error = cudaSuccess;
  last_error = cudaSuccess;
}

void device_assert(bool holds, const char *message, const char *file, int line) {
  if (holds) return;
  int expected = cudaSuccess;
  if (!sticky_error.compare_exchange_strong(expected, cudaErrorAssert)) return; /* reported already */
  const Geometry &g = geometry();
  fprintf(stderr,
          "pixcon CUDA emulation: %s:%d: block (%u, %u, %u), thread (%u, %u, %u): device-side assertion failed: %s\n",
          file, line, g.block.x, g.block.y, g.block.z, g.thread.x, g.thread.y, g.thread.z, message);
}

unsigned char *dynamic_shared_memory() { return in_kernel("dynamic shared memory").job->arena; }

unsigned warp_lane() { return in_kernel("a warp-level operation").lane; }

namespace {

void check_mask(const char *api, unsigned mask, unsigned lanes) {
  unsigned full = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
  if (mask == full) return;
  char what[160];
  snprintf(what, sizeof what, "mask 0x%08x must name exactly the %u lanes of the warp (0x%08x)", mask, lanes, full);
  misuse(api, what);
}

}  // namespace

void warp_sync(unsigned mask) {
  ThreadState &me = in_kernel("__syncwarp");
  check_mask("__syncwarp", mask, me.warp->lanes);
  me.warp->arrive(WARP_SYNC, me.warp->phase());
}

uint64_t warp_shuffle(unsigned mask, uint64_t bits, int mode, long long lane_arg, int width) {
  static const char *const names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
  const char *api = names[mode];
  ThreadState &me = in_kernel(api);
  Warp &w = *me.warp;
  check_mask(api, mask, w.lanes);
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) misuse(api, "width must be a power of two from 1 to 32");
  const uint32_t phase = w.phase();
  uint64_t *area = w.shuffle[phase & 1];
  area[me.lane] = bits;
  w.arrive(WARP_SHUFFLE, phase);
  const long long lane = me.lane, first = lane & ~(long long)(width - 1), last = first + width - 1;
  long long src;
  switch (mode) {
    case SHUFFLE_IDX: src = first | (lane_arg & (width - 1)); break;
    case SHUFFLE_UP: src = lane - lane_arg >= first ? lane - lane_arg : lane; break;
    case SHUFFLE_DOWN: src = lane + lane_arg <= last ? lane + lane_arg : lane; break;
    default: src = (lane ^ (lane_arg & 31)) <= last ? lane ^ (lane_arg & 31) : lane; break;
  }
  return src < (long long)w.lanes ? area[src] : ~0ull;
}

void warp_mma(int n, int k, const MmaPart &a, const MmaPart &b, const MmaPart &c, float *d) {
  ThreadState &me = in_kernel("wmma::mma_sync");
  Warp &w = *me.warp;
  if (w.lanes != 32) misuse("wmma::mma_sync", "called in a partial warp (it needs all 32 lanes)");
  const uint32_t phase = w.phase();
  float *A = w.mma[phase & 1][0], *B = w.mma[phase & 1][1], *C = w.mma[phase & 1][2];
  for (int e = 0; e < a.count; ++e) A[a.at[e]] = a.value[e];
  for (int e = 0; e < b.count; ++e) B[b.at[e]] = b.value[e];
  for (int e = 0; e < c.count; ++e) C[c.at[e]] = c.value[e];
  w.arrive(WARP_MMA, phase);
  for (int e = 0; e < c.count; ++e) {
    const int at = c.at[e], row = at / n, col = at % n;
    float sum = 0;
    for (int q = 0; q < k; ++q) sum += A[row * k + q] * B[q * n + col];
    d[e] = C[at] + sum;
  }
}

namespace {

/* Persistent workers, one per thread of the largest block launched so far; worker t plays thread t
 * (the linear index) of every block of a launch, lane t % 32 of warp t / 32. */
class Pool {
 public:
  ~Pool() {
    stop_ = true;
    for (auto &w : workers_) {
      w->go.fetch_add(1);
      w->go.notify_one();
    }
    for (auto &w : workers_) w->thread.join();
  }

  /* Runs job (job.arena already allocated); one launch at a time. */
  void run(const Job &job) {
    std::lock_guard<std::mutex> lock(launch_mutex_);
    while (workers_.size() < job.threads) {
      workers_.emplace_back(new Worker);
      Worker *w = workers_.back().get();
      unsigned id = (unsigned)workers_.size() - 1;
      w->thread = std::thread([this, w, id] { loop(w, id); });
    }
    job_ = job;
    barrier_.reset(job.threads);
    for (unsigned w = 0; w * 32 < job.threads; ++w)
      warps_[w].lanes = job.threads - w * 32 < 32 ? job.threads - w * 32 : 32;
    poison_shared(job_);
    remaining_.store(job.threads);
    for (unsigned t = 0; t < job.threads; ++t) {
      workers_[t]->go.fetch_add(1, std::memory_order_release);
      workers_[t]->go.notify_one();
    }
    for (unsigned left; (left = remaining_.load(std::memory_order_acquire)) != 0;)
      remaining_.wait(left, std::memory_order_acquire);
  }

 private:
  struct Worker {
    std::atomic<uint32_t> go{0};
    std::thread thread;
  };

  void loop(Worker *w, unsigned t) {
    uint32_t seen = 0;
    for (;;) {
      uint32_t now;
      while ((now = w->go.load(std::memory_order_acquire)) == seen) w->go.wait(seen, std::memory_order_acquire);
      seen = now;
      if (stop_) return;
      const Job &job = job_;
      self = ThreadState{&job, &barrier_, &warps_[t / 32], t % 32};
      blockDim = uint3{job.block.x, job.block.y, job.block.z};
      gridDim = uint3{job.grid.x, job.grid.y, job.grid.z};
      threadIdx.x = t % job.block.x;
      threadIdx.y = t / job.block.x % job.block.y;
      threadIdx.z = t / (job.block.x * job.block.y);
      for (unsigned long long pos = 0; pos < job.blocks; ++pos) {
        unsigned long long b = shuffled_block(pos, job.blocks, job.order_key);
        blockIdx.x = (unsigned)(b % job.grid.x);
        blockIdx.y = (unsigned)(b / job.grid.x % job.grid.y);
        blockIdx.z = (unsigned)(b / ((unsigned long long)job.grid.x * job.grid.y));
        job.body(job.context);
        pipeline.pending.clear(); /* copies never waited for are dropped with the block */
        pipeline.committed = 0;
        self.warp->arrive(LEAVE, 0);
        barrier_.wait(LEAVE, false, pos + 1 < job.blocks ? &job : nullptr); /* the block ends */
      }
      self = ThreadState{};
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_all();
    }
  }

  std::mutex launch_mutex_;
  std::vector<std::unique_ptr<Worker>> workers_;
  Job job_{};
  BlockBarrier barrier_;
  Warp warps_[32];
  std::atomic<unsigned> remaining_{0};
  std::atomic<bool> stop_{false};
};

Pool &pool() {
  static Pool p;
  return p;
}

}  // namespace

void run_grid(const void *kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, thread_body body,
              void *context) {
  (void)stream; /* the emulation is synchronous: launches run in issue order */
  if (sticky_error.load() != cudaSuccess) return; /* after a device-side assertion nothing runs */
  unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (!shared_fits(kernel, shared_bytes)) {
    last_error = cudaErrorInvalidValue;
    return;
  }
  void *arena = nullptr;
  if (posix_memalign(&arena, 128, shared_bytes) != 0) die("cannot allocate the dynamic shared memory");
  ++launches;
  ++total_launches;
  Job job{body, context, grid, block, (unsigned)threads, (unsigned long long)grid.x * grid.y * grid.z,
          block_order().next_key(), (unsigned char *)arena, shared_bytes};
  pool().run(job);
  free(arena);
}

void misuse(const char *api, const char *what) {
  static std::atomic<bool> dying{false};
  if (dying.exchange(true))
    for (;;) pause(); /* the first thread prints and aborts; an abort here could cut its message short */
  if (api) fprintf(stderr, "pixcon CUDA emulation: %s: %s\n", api, what);
  else fprintf(stderr, "pixcon CUDA emulation: %s\n", what);
  abort();
}

float half_to_float(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp((double)(m | 0x400), e - 25);
  return (float)((h & 0x8000) ? -v : v);
}

float bf16_to_float(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }

}  // namespace pixcon_emu

using namespace pixcon_emu;

/* ---- cp.async ---- */

void __pipeline_memcpy_async(void *__restrict__ dst_shared, const void *__restrict__ src_global,
                             size_t size_and_align, size_t zfill) {
  const char *api = "__pipeline_memcpy_async";
  ThreadState &me = in_kernel(api);
  const size_t size = size_and_align;
  if (size != 4 && size != 8 && size != 16) misuse(api, "size_and_align must be 4, 8 or 16");
  if (zfill > size) misuse(api, "zfill exceeds size_and_align");
  if ((uintptr_t)dst_shared % size != 0 || (uintptr_t)src_global % size != 0)
    misuse(api, "dst and src must be aligned to size_and_align");
  const uintptr_t d = (uintptr_t)dst_shared, arena = (uintptr_t)me.job->arena;
  const uintptr_t section = (uintptr_t)__start_pixcon_shared;
  const bool in_arena = d >= arena && d + size <= arena + me.job->arena_bytes;
  const bool in_section = d >= section && d + size <= section + static_shared_bytes();
  if (!in_arena && !in_section)
    misuse(api, "dst is not inside the block's shared memory (the dynamic arena, or a __shared__ object in the "
                "pixcon_shared section: not one declared in a template)");
  const size_t read = size - zfill;
  if (!is_device_range(src_global, read ? read : 1)) misuse(api, "src is not inside a live cudaMalloc allocation");
  /* On a GPU the copy may land at any moment from now until the wait that covers it. Both ends are
   * made visible: the destination is overwritten with poison now (a thread still reading the old
   * contents races with this write, which ThreadSanitizer reports) and gets its data only at the
   * wait (a read before the wait sees poison). */
  memset(dst_shared, 0xff, size);
  pipeline.pending.push_back(
      AsyncCopy{(unsigned char *)dst_shared, (const unsigned char *)src_global, read, size, pipeline.committed});
}

void __pipeline_commit() {
  in_kernel("__pipeline_commit");
  ++pipeline.committed;
}

void __pipeline_wait_prior(size_t prior) {
  in_kernel("__pipeline_wait_prior");
  Pipeline &p = pipeline;
  if (p.committed <= prior) return;
  const unsigned long long complete_below = p.committed - prior;
  size_t k = 0;
  for (; k < p.pending.size() && p.pending[k].group < complete_below; ++k) {
    const AsyncCopy &c = p.pending[k];
    memcpy(c.dst, c.src, c.read);
    memset(c.dst + c.read, 0, c.size - c.read);
  }
  p.pending.erase(p.pending.begin(), p.pending.begin() + (ptrdiff_t)k);
}

extern "C" {

void __syncthreads(void) {
  ThreadState &me = in_kernel("__syncthreads");
  me.warp->arrive(BLOCK_SYNC, 0);
  me.barrier->wait(BLOCK_SYNC, false, nullptr);
}

int __syncthreads_count(int predicate) {
  ThreadState &me = in_kernel("__syncthreads_or/_and/_count");
  me.warp->arrive(BLOCK_REDUCE, 0);
  return (int)me.barrier->wait(BLOCK_REDUCE, predicate != 0, nullptr);
}

int __syncthreads_or(int predicate) { return __syncthreads_count(predicate) != 0; }

int __syncthreads_and(int predicate) { return (unsigned)__syncthreads_count(predicate) == self.job->threads; }

cudaError_t cudaMalloc(void **ptr, size_t size) {
  if (!ptr) return last_error = cudaErrorInvalidValue;
  size_t rounded = (size + 255) / 256 * 256;
  void *p = aligned_alloc(256, rounded ? rounded : 256);
  if (!p) return last_error = cudaErrorMemoryAllocation;
  memset(p, 0xff, rounded ? rounded : 256); /* poison: NaN as floats, -1 as integers */
  std::lock_guard<std::mutex> lock(alloc_mutex);
  allocations[(uintptr_t)p] = size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
  if (!ptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(alloc_mutex);
    auto it = allocations.find((uintptr_t)ptr);
    if (it == allocations.end()) return last_error = cudaErrorInvalidValue;
    allocations.erase(it);
    ++free_epoch;
  }
  free(ptr);
  return cudaSuccess;
}

/* Which sides of a copy are device memory: as the kind says, or for cudaMemcpyDefault as the pointers
 * say (unified addressing). */
static void copy_sides(const void *dst, const void *src, size_t count, cudaMemcpyKind kind, bool *dst_dev,
                       bool *src_dev) {
  if (kind == cudaMemcpyDefault) {
    *dst_dev = is_device_range(dst, count);
    *src_dev = is_device_range(src, count);
    return;
  }
  *dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  *src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
}

static cudaError_t copy(void *dst, const void *src, size_t count, cudaMemcpyKind kind, bool dst_dev, bool src_dev) {
  if (sticky_error.load() != cudaSuccess) return (cudaError_t)sticky_error.load();
  if (count == 0) return cudaSuccess;
  if (kind != cudaMemcpyDefault &&
      ((dst_dev && !is_device_range(dst, count)) || (src_dev && !is_device_range(src, count))))
    return last_error = cudaErrorInvalidValue;
  memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  bool dst_dev, src_dev;
  copy_sides(dst, src, count, kind, &dst_dev, &src_dev);
  if (!(dst_dev && src_dev)) ++host_syncs; /* a synchronous copy touching host memory waits for the device */
  if (src_dev && !dst_dev) ++device_to_host_copies;
  return copy(dst, src, count, kind, dst_dev, src_dev);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  (void)stream;
  bool dst_dev, src_dev;
  copy_sides(dst, src, count, kind, &dst_dev, &src_dev);
  if (src_dev && !dst_dev) ++device_to_host_copies;
  return copy(dst, src, count, kind, dst_dev, src_dev);
}

cudaError_t cudaMemset(void *ptr, int value, size_t count) {
  if (sticky_error.load() != cudaSuccess) return (cudaError_t)sticky_error.load();
  if (count && !is_device_range(ptr, count)) return last_error = cudaErrorInvalidValue;
  if (count) memset(ptr, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream) {
  (void)stream;
  return cudaMemset(ptr, value, count);
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) {
  static char token[64];
  static int next = 0;
  if (!stream) return last_error = cudaErrorInvalidValue;
  *stream = (cudaStream_t)(void *)&token[1 + (next++ % 63)];
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) { (void)stream; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  (void)stream;
  ++host_syncs;
  return (cudaError_t)sticky_error.load();
}
cudaError_t cudaDeviceSynchronize(void) {
  ++host_syncs;
  return (cudaError_t)sticky_error.load();
}

cudaError_t cudaGetLastError(void) {
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return sticky_error.load() != cudaSuccess ? (cudaError_t)sticky_error.load() : e;
}
cudaError_t cudaPeekAtLastError(void) {
  return sticky_error.load() != cudaSuccess ? (cudaError_t)sticky_error.load() : last_error;
}

const char *cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorAssert: return "device-side assert triggered";
  }
  return "unknown error";
}

const char *cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorAssert: return "cudaErrorAssert";
  }
  return "cudaErrorUnknown";
}

cudaError_t cudaGetDevice(int *device) {
  if (!device) return last_error = cudaErrorInvalidValue;
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
  if (!value || device != 0 || attr != cudaDevAttrMaxSharedMemoryPerBlockOptin) return last_error = cudaErrorInvalidValue;
  *value = (int)kOptInSharedLimit;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
  if (!func || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      (size_t)value + static_shared_bytes() > kOptInSharedLimit)
    return last_error = cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(attribute_mutex);
  dynamic_limits[func] = (size_t)value;
  return cudaSuccess;
}

}  /* extern "C" */
