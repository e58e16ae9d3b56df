// Runs emulated kernels: the blocks of a grid one after another on the
// stream's thread, the threads of a block as fibers (Boost.Context) that run
// until they finish or wait at a barrier. The scheduler resumes every
// runnable thread in turn; when none is runnable and some have not finished,
// the block is deadlocked (a barrier that not all of its threads reach) and
// the launch fails with cudaErrorLaunchFailure, naming the kernel, the block
// and where its threads wait.
//
// By default blocks run in index order and threads start, and leave each
// barrier, in index order. With TOKENFAB_CUDA_EMU_SHUFFLE=SEED (or
// SetShuffleSeed) every launch runs its blocks in a random order and starts
// and releases its threads in random orders, seeded from SEED and the
// launch's number: a kernel whose result depends on which block or warp
// runs first (a missing barrier, a block reading another's output) then
// gives other results from launch to launch, as it would on a GPU. (A grid
// of more than 2^26 blocks runs in index order.)
#include <sys/mman.h>

#include <boost/context/fiber.hpp>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/cuda_emu/device_runtime.h"
#include "tests/cuda_emu/emu_runtime.h"
#include "tests/cuda_emu/racecheck.h"

namespace tokenfab::cuda_emu {

TOKENFAB_EMU_TLS uint3 t_thread_idx;
TOKENFAB_EMU_TLS uint3 t_block_idx;
TOKENFAB_EMU_TLS dim3 t_block_dim;
TOKENFAB_EMU_TLS dim3 t_grid_dim;

namespace {

namespace bctx = boost::context;

// Kernel frames are small: 64 KB a CUDA thread is plenty. Stacks are cut
// from 4 MB regions backed by huge pages where the kernel allows (a block
// of 1024 threads then touches a few TLB entries, not 1024), so there are
// no guard pages; a canary at the bottom of each stack, checked when the
// stack is handed back, turns an overflow into a clear abort.
constexpr size_t kStackBytes = 64 * 1024;
constexpr size_t kRegionBytes = 4 << 20;
constexpr uint64_t kCanary = 0x7374616b63616e61ull;

// Fiber stacks of one OS thread, kept from block to block.
class StackPool {
 public:
  ~StackPool() {
    for (void* r : regions_) {
      Unpoison(r, kRegionBytes);  // the range may become another thread's stack
      munmap(r, kRegionBytes);
    }
  }
  bctx::stack_context Allocate() {
    if (free_.empty()) Grow();
    char* base = free_.back();
    free_.pop_back();
    Unpoison(base, kStackBytes);  // no redzones left from the stack's last fiber
    *reinterpret_cast<uint64_t*>(base) = kCanary;
    bctx::stack_context sc;
    sc.size = kStackBytes;
    sc.sp = base + kStackBytes;
    return sc;
  }
  void Deallocate(bctx::stack_context& sc) {
    char* base = static_cast<char*>(sc.sp) - kStackBytes;
    if (*reinterpret_cast<uint64_t*>(base) != kCanary) {
      std::fprintf(stderr, "tokenfab cuda emulator: a CUDA thread overflowed its %zu KB stack\n",
                   kStackBytes / 1024);
      std::abort();
    }
    free_.push_back(base);
  }

 private:
  void Grow() {
    // A 2 MB-aligned region, so that huge pages can back it.
    void* raw = mmap(nullptr, kRegionBytes + (2 << 20), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + (2 << 20) - 1) & ~uintptr_t{(2 << 20) - 1};
    if (aligned > start) munmap(raw, aligned - start);
    const uintptr_t end = start + kRegionBytes + (2 << 20);
    if (end > aligned + kRegionBytes) {
      munmap(reinterpret_cast<void*>(aligned + kRegionBytes), end - aligned - kRegionBytes);
    }
    char* region = reinterpret_cast<char*>(aligned);
    madvise(region, kRegionBytes, MADV_HUGEPAGE);
    regions_.push_back(region);
    for (size_t off = 0; off < kRegionBytes; off += kStackBytes) free_.push_back(region + off);
  }

  // AddressSanitizer's shadow of a stack region outlives the fibers that
  // used it; cleared before the memory is used anew.
  static void Unpoison(void* p, size_t bytes) {
#if defined(__SANITIZE_ADDRESS__)
    __asan_unpoison_memory_region(p, bytes);
#endif
  }

  std::vector<void*> regions_;
  std::vector<char*> free_;
};

// Where a context's stack lies, for AddressSanitizer, which must be told of
// every switch between stacks (__sanitizer_start/finish_switch_fiber)
// or it misreads the frames of the stack it did not expect.
struct StackSpan {
  const void* bottom = nullptr;
  size_t size = 0;
};

// Before control leaves the running context for one on `to`'s stack;
// `save` keeps the running context's state (null: it ends for good).
void LeaveFor(void** save, const StackSpan& to) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(save, to.bottom, to.size);
#endif
}
// Once control is back in a context: the state its LeaveFor saved; `from`
// gets the stack control came from.
void Arrive(void* saved, StackSpan* from) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(saved, &from->bottom, &from->size);
#endif
}

// Boost.Context's StackAllocator, over the thread's pool; records where
// the stack is.
struct PooledStack {
  StackPool* pool;
  StackSpan* span;
  bctx::stack_context allocate() {
    bctx::stack_context sc = pool->Allocate();
    *span = {static_cast<char*>(sc.sp) - sc.size, sc.size};
    return sc;
  }
  void deallocate(bctx::stack_context& sc) { pool->Deallocate(sc); }
};

enum class State : uint8_t { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone, kFailed };

struct Thread {
  uint3 idx{};
  int lane = 0;
  int warp = 0;
  State state = State::kRunnable;
  uint32_t exchanges = 0;  // which of the warp's two slot arrays is next
  bctx::fiber fiber;       // the thread, while suspended
  StackSpan stack;
  void* sanitizer_state = nullptr;
};

struct Warp {
  uint32_t present = 0;  // lanes the block has (a last warp may be partial)
  uint32_t live = 0;     // lanes that have not exited
  uint32_t arrived = 0;  // lanes waiting at the warp barrier
  uint32_t mask = 0;     // lanes the barrier in progress waits for
  bool orders = true;    // every lane so far came to the barrier by __syncwarp (not a shuffle)
  uint64_t slots[2][32] = {};
};

// Control passes from thread to thread directly: a thread that must wait
// switches to the next runnable one (first in, first out); the scheduler
// gets control back only when no thread can run: all finished, deadlock,
// or a failure.
struct Block {
  const char* kernel = "";
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  std::deque<int> runnable;
  bctx::fiber scheduler;      // while a thread runs
  StackSpan scheduler_stack;  // known once the first thread has started
  bool scheduler_known = false;
  void* scheduler_state = nullptr;
  int live = 0;
  int arrived = 0;  // at __syncthreads
  void* shared = nullptr;
  std::string error;
  std::mt19937_64* shuffle = nullptr;  // set when threads start in random orders
  std::vector<const void*> fresh;      // static shared variables filled for this block
  std::vector<int> released;           // scratch for ReleaseBlockBarrier
};

// Pushes threads [first, last) (indices) onto the run queue, in a random
// order when the block shuffles.
void MakeRunnable(Block& b, int* first, int* last) {
  if (b.shuffle != nullptr) std::shuffle(first, last, *b.shuffle);
  for (int* i = first; i != last; ++i) b.runnable.push_back(*i);
}

struct Schedule {
  std::atomic<bool> shuffle{false};
  std::atomic<uint64_t> seed{0};
  std::atomic<uint64_t> launches{0};
};

Schedule& TheSchedule() {
  static Schedule* schedule = [] {
    auto* s = new Schedule;
    if (const char* e = std::getenv("TOKENFAB_CUDA_EMU_SHUFFLE"); e != nullptr && *e != 0) {
      char* end = nullptr;
      const unsigned long long seed = std::strtoull(e, &end, 10);
      if (*end != 0) {
        std::fprintf(stderr,
                     "tokenfab cuda emulator: TOKENFAB_CUDA_EMU_SHUFFLE must be a seed (a "
                     "decimal number), not '%s'\n",
                     e);
        std::abort();
      }
      s->seed = seed;
      s->shuffle = true;
    }
    return s;
  }();
  return *schedule;
}

TOKENFAB_EMU_TLS Block* t_block = nullptr;
TOKENFAB_EMU_TLS Thread* t_thread = nullptr;

Thread& Me() {
  if (t_thread == nullptr) {
    std::fprintf(stderr, "tokenfab cuda emulator: a device function was called outside a kernel\n");
    std::abort();
  }
  return *t_thread;
}

std::string Where(const Thread& t) {
  return "thread (" + std::to_string(t.idx.x) + "," + std::to_string(t.idx.y) + "," +
         std::to_string(t.idx.z) + ")";
}

// Where control goes next: the next runnable thread (made current), or the
// scheduler when none can run or the block failed.
struct Next {
  bctx::fiber* fiber;
  const StackSpan* stack;
};
Next NextContext(Block& b) {
  if (b.error.empty() && !b.runnable.empty()) {
    Thread& next = b.threads[b.runnable.front()];
    b.runnable.pop_front();
    t_thread = &next;
    t_thread_idx = next.idx;
    race::SetThread(next.warp * 32 + next.lane);
    return {&next.fiber, &next.stack};
  }
  t_thread = nullptr;
  race::SetThread(-1);
  return {&b.scheduler, &b.scheduler_stack};
}

// Suspends the running thread `t` (already marked as waiting) until a
// release queues it again.
void Wait(Block& b, Thread& t) {
  const Next next = NextContext(b);
  LeaveFor(&t.sanitizer_state, *next.stack);
  std::move(*next.fiber).resume_with([&t](bctx::fiber&& self) {
    t.fiber = std::move(self);
    return bctx::fiber();
  });
  StackSpan from;
  Arrive(t.sanitizer_state, &from);
}

// Misuse inside a kernel: the block stops here (its fibers are unwound).
void Fail(Block& b, Thread& t, const std::string& why) {
  if (b.error.empty()) b.error = Where(t) + ": " + why;
  t.state = State::kFailed;
  Wait(b, t);
}

void ReleaseBlockBarrier(Block& b) {
  b.arrived = 0;
  race::BlockBarrier();
  std::vector<int>& released = b.released;
  released.clear();
  for (size_t i = 0; i < b.threads.size(); ++i) {
    if (b.threads[i].state != State::kAtBlockBarrier) continue;
    b.threads[i].state = State::kRunnable;
    released.push_back(static_cast<int>(i));
  }
  MakeRunnable(b, released.data(), released.data() + released.size());
}

void ReleaseWarpBarrier(Block& b, Warp& w, int warp) {
  int released[32];
  int n = 0;
  for (int lane = 0; lane < 32; ++lane) {
    if (((w.mask >> lane) & 1u) == 0) continue;
    Thread& x = b.threads[warp * 32 + lane];
    if (x.state != State::kAtWarpBarrier) continue;
    x.state = State::kRunnable;
    released[n++] = warp * 32 + lane;
  }
  MakeRunnable(b, released, released + n);
  if (w.orders && w.mask == w.present) race::WarpBarrier(warp);
  w.arrived = 0;
  w.mask = 0;
  w.orders = true;
}

void Exit(Block& b, Thread& t) {
  t.state = State::kDone;
  --b.live;
  Warp& w = b.warps[t.warp];
  w.live &= ~(1u << t.lane);
  // An exited thread counts as arrived at __syncthreads (as on sm_70 and
  // later); a warp barrier that waits for it is undefined behaviour.
  if (b.arrived > 0 && b.arrived == b.live) ReleaseBlockBarrier(b);
  if (w.arrived != 0 && ((w.mask >> t.lane) & 1u) != 0 && b.error.empty()) {
    b.error = Where(t) + " exited while lanes of its warp wait for it at a warp barrier";
  }
}

std::string Deadlock(const Block& b) {
  int at_block = 0, at_warp = 0, done = 0;
  std::string warps;
  for (const Thread& t : b.threads) {
    at_block += t.state == State::kAtBlockBarrier;
    at_warp += t.state == State::kAtWarpBarrier;
    done += t.state == State::kDone;
  }
  for (size_t w = 0; w < b.warps.size(); ++w) {
    if (b.warps[w].arrived == 0) continue;
    char buf[96];
    std::snprintf(buf, sizeof buf, " warp %zu: lanes %08x of %08x arrived;", w, b.warps[w].arrived,
                  b.warps[w].mask);
    warps += buf;
  }
  return "deadlock: " + std::to_string(at_block) + " threads wait at __syncthreads, " +
         std::to_string(at_warp) + " at a warp barrier, " + std::to_string(done) + " finished;" +
         warps;
}

void RunBlock(Block& b, const std::function<void()>& body, StackPool& pool) {
  t_block = &b;
  std::vector<int>& all = b.released;
  all.resize(b.threads.size());
  for (size_t i = 0; i < b.threads.size(); ++i) {
    b.threads[i].fiber = bctx::fiber(
        std::allocator_arg, PooledStack{&pool, &b.threads[i].stack}, [&b, i, &body](bctx::fiber&&) {
          StackSpan from;
          Arrive(nullptr, &from);
          if (!b.scheduler_known) {  // the first thread is started by the scheduler
            b.scheduler_stack = from;
            b.scheduler_known = true;
          }
          body();
          Exit(b, b.threads[i]);
          const Next next = NextContext(b);
          LeaveFor(nullptr, *next.stack);
          return std::move(*next.fiber);
        });
    all[i] = static_cast<int>(i);
  }
  MakeRunnable(b, all.data(), all.data() + all.size());
  const Next first = NextContext(b);
  LeaveFor(&b.scheduler_state, *first.stack);
  std::move(*first.fiber).resume_with([&b](bctx::fiber&& scheduler) {
    b.scheduler = std::move(scheduler);
    return bctx::fiber();
  });
  StackSpan from;
  Arrive(b.scheduler_state, &from);
  // No thread can run any more.
  if (b.error.empty() && b.live > 0) b.error = Deadlock(b);
  t_thread = nullptr;
  // Threads still suspended are unwound by their fibers' destruction.
  for (Thread& t : b.threads) t.fiber = bctx::fiber();
  t_block = nullptr;
}

cudaError_t RunGrid(const char* name, const LaunchConfig& c, const std::function<void()>& body) {
  static thread_local StackPool pool;
  const int n = static_cast<int>(c.block.x * c.block.y * c.block.z);
  void* shared = nullptr;
  if (c.shared_bytes > 0 && posix_memalign(&shared, 128, c.shared_bytes) != 0) {
    return cudaErrorMemoryAllocation;
  }
  t_grid_dim = c.grid;
  t_block_dim = c.block;
  const uint64_t blocks = uint64_t{c.grid.x} * c.grid.y * c.grid.z;
  // Shuffled: the order of the blocks, and a generator for the threads'.
  Schedule& schedule = TheSchedule();
  std::optional<std::mt19937_64> rng;
  std::vector<uint32_t> order;
  std::string how;
  if (schedule.shuffle && blocks <= (uint64_t{1} << 26)) {
    const uint64_t launch = schedule.launches.fetch_add(1);
    rng.emplace(schedule.seed.load() ^ (launch * 0x9e3779b97f4a7c15ull));
    order.resize(blocks);
    std::iota(order.begin(), order.end(), 0u);
    std::shuffle(order.begin(), order.end(), *rng);
    how = " (blocks and threads in shuffled order: seed " + std::to_string(schedule.seed.load()) +
          ", launch " + std::to_string(launch) + ")";
  }
  cudaError_t result = cudaSuccess;
  for (uint64_t k = 0; k < blocks && result == cudaSuccess; ++k) {
    const uint64_t i = order.empty() ? k : order[k];
    const unsigned x = i % c.grid.x, y = i / c.grid.x % c.grid.y,
                   z = i / (uint64_t{c.grid.x} * c.grid.y);
    t_block_idx = make_uint3(x, y, z);
    Block b;
    b.kernel = name;
    b.threads.resize(n);
    b.warps.resize((n + 31) / 32);
    b.live = n;
    b.shared = shared;
    b.shuffle = rng ? &*rng : nullptr;
    if (shared != nullptr) std::memset(shared, 0xff, c.shared_bytes);  // garbage, as on a GPU
    for (int j = 0; j < n; ++j) {
      Thread& t = b.threads[j];
      t.idx = make_uint3(j % c.block.x, j / c.block.x % c.block.y, j / (c.block.x * c.block.y));
      t.lane = j % 32;
      t.warp = j / 32;
      b.warps[t.warp].present |= 1u << t.lane;
      b.warps[t.warp].live |= 1u << t.lane;
    }
    race::BeginBlock(shared, c.shared_bytes, static_cast<int>(b.warps.size()));
    RunBlock(b, body, pool);
    race::EndBlock();
    if (!b.error.empty()) {
      Complain(std::string("kernel ") + name + ", block (" + std::to_string(x) + "," +
               std::to_string(y) + "," + std::to_string(z) + "): " + b.error + how);
      result = cudaErrorLaunchFailure;
    }
  }
  std::free(shared);
  return result;
}

}  // namespace

void SetShuffleSeed(std::optional<uint64_t> seed) {
  Schedule& s = TheSchedule();
  if (seed) s.seed = *seed;
  s.launches = 0;
  s.shuffle = seed.has_value();
}

std::optional<uint64_t> ShuffleSeed() {
  Schedule& s = TheSchedule();
  return s.shuffle ? std::optional<uint64_t>(s.seed.load()) : std::nullopt;
}

void SyncThreads() {
  Thread& t = Me();
  Block& b = *t_block;
  if (++b.arrived == b.live) {
    ReleaseBlockBarrier(b);
    return;
  }
  t.state = State::kAtBlockBarrier;
  Wait(b, t);
}

namespace {

// A barrier of the lanes in `mask`: a __syncwarp (orders memory between
// them) or where a shuffle, vote or mma_sync brings them together (orders
// nothing, for the race check).
void WarpBarrier(unsigned mask, bool orders) {
  Thread& t = Me();
  Block& b = *t_block;
  Warp& w = b.warps[t.warp];
  const uint32_t bit = 1u << t.lane;
  if ((mask & bit) == 0) {
    Fail(b, t, "a warp barrier whose mask leaves out the calling lane");
    return;
  }
  const uint32_t participants = mask & w.live;
  if ((mask & w.present & ~w.live) != 0) {
    Fail(b, t, "a warp barrier waits for a lane that has exited");
    return;
  }
  if (w.arrived == 0) {
    w.mask = participants;
  } else if (w.mask != participants) {
    Fail(b, t, "lanes of a warp meet at a barrier with different masks");
    return;
  }
  w.orders = w.orders && orders;
  w.arrived |= bit;
  if ((w.arrived & w.mask) == w.mask) {
    ReleaseWarpBarrier(b, w, t.warp);
    return;
  }
  t.state = State::kAtWarpBarrier;
  Wait(b, t);
}

}  // namespace

void SyncWarp(unsigned mask) { WarpBarrier(mask, true); }

void ConvergeWarp(unsigned mask) { WarpBarrier(mask, false); }

int LaneId() { return Me().lane; }

const uint64_t* WarpExchange(unsigned mask, uint64_t value) {
  Thread& t = Me();
  // Two arrays in turn: a lane can only be one exchange ahead of the
  // slowest, which still reads the other array.
  uint64_t* slots = t_block->warps[t.warp].slots[t.exchanges++ & 1];
  slots[t.lane] = value;
  WarpBarrier(mask, false);
  return slots;
}

void* DynamicShared() {
  Me();
  return t_block->shared;
}

void FreshShared(void* p, size_t bytes, const char* name) {
  Me();
  std::vector<const void*>& fresh = t_block->fresh;
  if (std::find(fresh.begin(), fresh.end(), p) != fresh.end()) return;
  fresh.push_back(p);
  std::memset(p, 0xff, bytes);
  race::AddStatic(p, bytes, name);
}

void race::FailBlock(const std::string& why) {
  Me();
  if (t_block->error.empty()) t_block->error = why;
}

void Launch(const char* name, const void* kernel, const LaunchConfig& c,
            std::function<void()> body) {
  const uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  if (threads == 0 || threads > 1024 || c.block.z > 64 || c.grid.x == 0 || c.grid.y == 0 ||
      c.grid.z == 0 || c.grid.x > INT_MAX || c.grid.y > 65535 || c.grid.z > 65535) {
    Complain(std::string("kernel ") + name + ": grid (" + std::to_string(c.grid.x) + "," +
             std::to_string(c.grid.y) + "," + std::to_string(c.grid.z) + ") of blocks (" +
             std::to_string(c.block.x) + "," + std::to_string(c.block.y) + "," +
             std::to_string(c.block.z) + ") is not a valid launch");
    SetLastError(cudaErrorInvalidConfiguration);
    return;
  }
  if (const size_t limit = MaxDynamicShared(kernel); c.shared_bytes > limit) {
    Complain(std::string("kernel ") + name + ": " + std::to_string(c.shared_bytes) +
             " bytes of dynamic shared memory, " + std::to_string(limit) +
             " allowed (cudaFuncSetAttribute raises it up to " +
             std::to_string(kSharedPerBlockOptin) + ")");
    SetLastError(cudaErrorInvalidValue);
    return;
  }
  int device = -1;
  if (const cudaError_t e = StreamDevice(c.stream, &device); e != cudaSuccess) {
    SetLastError(e);
    return;
  }
  if (device != CurrentDevice()) {
    Complain(std::string("kernel ") + name + " launched on a stream of device " +
             std::to_string(device) + " while device " + std::to_string(CurrentDevice()) +
             " is current");
    SetLastError(cudaErrorInvalidResourceHandle);
    return;
  }
  SetLastError(Enqueue(c.stream, name,
                       [name, c, body = std::move(body)] { return RunGrid(name, c, body); }));
}

}  // namespace tokenfab::cuda_emu
