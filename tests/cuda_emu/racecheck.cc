// The race check (racecheck.h) and the ThreadSanitizer entry points that
// the racecheck build of the kernels calls before each access.
//
// Shadow: for each byte of the running block's shared memory, and of each
// 4 KB page of device memory the block touches, two sets of
// accessors since the last barrier, one of writes and one of reads. A set
// keeps its newest member and the one before it (for the report), the warp
// they are in (or that there were several), and the warp's barrier count
// (generation) at the newest access. A set belongs to one block and one
// interval between __syncthreads (its block serial and epoch); a set from
// an earlier block or interval is empty, so nothing is cleared between
// blocks.
//
// A new access by thread t of warp w conflicts with a set of the current
// interval when a member of the set may be unordered with it: the set spans
// several warps, or is of another warp, or is of w at t's generation and
// has a member other than t. (Members at an older generation of w passed a
// __syncwarp of the whole warp before t's access.)
#include "tests/cuda_emu/racecheck.h"

#include <dlfcn.h>
#include <elf.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tests/cuda_emu/device_runtime.h"
#include "tests/cuda_emu/emu_runtime.h"

namespace tokenfab::cuda_emu::race {
namespace {

struct Accessors {
  uintptr_t pc = 0;       // the newest access's code address
  uintptr_t prev_pc = 0;  // the newest access by another thread before it
  uint32_t block = 0;     // block serial; 0: never used
  uint32_t epoch = 0;     // __syncthreads passed in the block before the accesses
  uint32_t gen = 0;       // the warp's full __syncwarps before the newest access
  uint16_t tid = 0;
  uint16_t prev_tid = 0;
  uint16_t warp = 0;
  bool many_threads = false;  // threads other than `tid` at generation `gen`
  bool many_warps = false;
  bool atomic = false;  // every access in the set was atomic
};

struct Shadow {
  Accessors write;
  Accessors read;
};

// Shared memory the block has: its dynamic array and each static variable.
struct Range {
  uintptr_t base = 0;
  size_t bytes = 0;
  const char* name = "";
  bool dynamic = false;
  Shadow* shadow = nullptr;  // attached at the block's first checked access
};

// Global memory's shadow: a page of Shadow per 4 KB page the block touches,
// handed out afresh at each block's start (the pages' sets then belong to
// an earlier block, so they read as empty).
constexpr int kPageBits = 12;
constexpr size_t kPageBytes = size_t{1} << kPageBits;
struct GlobalShadow {
  std::unordered_map<uintptr_t, Shadow*> pages;  // by page number, this block's
  std::vector<std::unique_ptr<Shadow[]>> pool;
  size_t used = 0;  // pages of the pool handed out in this block
  uintptr_t last_page = ~uintptr_t{0};
  Shadow* last = nullptr;

  void Reset() {
    pages.clear();
    used = 0;
    last_page = ~uintptr_t{0};
  }
  Shadow* Page(uintptr_t page) {
    if (page == last_page) return last;
    Shadow*& p = pages[page];
    if (p == nullptr) {
      if (used == pool.size()) pool.push_back(std::make_unique<Shadow[]>(kPageBytes));
      p = pool[used++].get();
    }
    last_page = page;
    last = p;
    return p;
  }
};

// What an access touched, for the report: a shared variable (`name`) or a
// device allocation (`allocation`), and the offset of its first byte.
struct Target {
  const char* name;
  const Allocation* allocation;
  size_t offset;
};

enum class Op : uint8_t { kRead, kWrite, kAtomicRead, kAtomicWrite };

bool Writes(Op op) { return op == Op::kWrite || op == Op::kAtomicWrite; }
bool Atomic(Op op) { return op == Op::kAtomicRead || op == Op::kAtomicWrite; }

// The race check's state on one OS thread (which runs one block at a time).
struct State {
  uint32_t serial = 0;
  uint32_t epoch = 0;
  std::vector<uint32_t> gens;  // per warp
  static constexpr int kMaxRanges = 16;
  Range ranges[kMaxRanges];
  int num_ranges = 0;
  // Shadows attached, allocations refreshed: done at the block's first
  // access from instrumented code, so uninstrumented kernels pay nothing.
  bool prepared = false;
  bool failed = false;  // one report per block
  std::vector<Shadow> dynamic_shadow;
  std::unordered_map<uintptr_t, std::vector<Shadow>> static_shadow;
  // Device allocations, sorted by base, as of `allocations_seen`.
  std::vector<Allocation> allocations;
  uint64_t allocations_seen = ~uint64_t{0};
  GlobalShadow global;
};

TOKENFAB_EMU_TLS int t_tid = -1;
TOKENFAB_EMU_TLS State* t_state = nullptr;

State& Mine() {
  if (t_state == nullptr) {
    // Freed when the OS thread ends; t_state is the fast way to it.
    static thread_local std::unique_ptr<State> owner;
    owner = std::make_unique<State>();
    t_state = owner.get();
  }
  return *t_state;
}

// An access by `tid` now, as the sets see it.
struct Now {
  uint32_t block, epoch, gen;
  uint16_t tid, warp;
};

bool Current(const Accessors& a, const Now& n) { return a.block == n.block && a.epoch == n.epoch; }

bool Conflicts(const Accessors& a, const Now& n) {
  if (!Current(a, n)) return false;
  if (a.many_warps || a.warp != n.warp) return true;
  if (a.gen < n.gen) return false;
  return a.many_threads || a.tid != n.tid;
}

void Add(Accessors& a, const Now& n, uintptr_t pc, bool atomic) {
  if (!Current(a, n)) {
    a = Accessors{pc, pc, n.block, n.epoch, n.gen, n.tid, n.tid, n.warp, false, false, atomic};
    return;
  }
  a.atomic = a.atomic && atomic;
  if (n.tid != a.tid) {
    a.prev_tid = a.tid;
    a.prev_pc = a.pc;
  }
  if (a.warp != n.warp) a.many_warps = true;
  if (n.gen > a.gen || a.many_warps) {
    a.gen = n.gen;
    a.many_threads = a.many_warps;
  } else if (n.tid != a.tid) {
    a.many_threads = true;
  }
  a.tid = n.tid;
  a.pc = pc;
}

std::string ThreadName(int tid) {
  const dim3 d = t_block_dim;
  return "thread (" + std::to_string(tid % d.x) + "," + std::to_string(tid / d.x % d.y) + "," +
         std::to_string(tid / (d.x * d.y)) + ")";
}

// "attention.cu:96" for a code address, with the frames it is inlined into
// ("mma.h:88 in attention.cu:246"), or the object and offset when
// addr2line cannot say.
std::string Where(uintptr_t pc) {
  Dl_info info{};
  if (pc == 0 || dladdr(reinterpret_cast<void*>(pc), &info) == 0 || info.dli_fname == nullptr) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, pc);
    return buf;
  }
  const auto* header = static_cast<const Elf64_Ehdr*>(info.dli_fbase);
  const uintptr_t address =
      header->e_type == ET_DYN ? pc - reinterpret_cast<uintptr_t>(info.dli_fbase) : pc;
  char fallback[64];
  std::snprintf(fallback, sizeof fallback, "+0x%" PRIxPTR, address);
  const std::string object = info.dli_fname;
  if (object.find('\'') != std::string::npos) return object + fallback;
  // The return address is just past the call: step back into it.
  char at[32];
  std::snprintf(at, sizeof at, "0x%" PRIxPTR, address - 1);
  const std::string command = "addr2line -i -s -e '" + object + "' " + at + " 2>/dev/null";
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return object + fallback;
  std::string out;
  char line[512];
  while (std::fgets(line, sizeof line, p) != nullptr) {
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (const size_t d = s.find(" (discriminator"); d != std::string::npos) s.resize(d);
    if (s.empty() || s.rfind("??", 0) == 0) continue;
    out += out.empty() ? s : " in " + s;
  }
  pclose(p);
  return out.empty() ? object + fallback : out;
}

const char* Verb(Op op) {
  switch (op) {
    case Op::kRead:
      return "reads";
    case Op::kWrite:
      return "writes";
    case Op::kAtomicRead:
      return "atomically reads";
    case Op::kAtomicWrite:
      return "atomically updates";
  }
  return "accesses";
}

void Report(State& s, const Target& t, size_t offset, Op op, const Now& n, uintptr_t pc,
            const Accessors& other, bool other_wrote) {
  s.failed = true;
  const bool newest_is_other = other.tid != n.tid;
  const int other_tid = newest_is_other ? other.tid : other.prev_tid;
  const uintptr_t other_pc = newest_is_other ? other.pc : other.prev_pc;
  const char* kind = !other_wrote ? "write after read"
                     : Writes(op) ? "write after write"
                                  : "read after write";
  const std::string other_verb =
      other_wrote ? (other.atomic ? "atomically updated" : "wrote")
                  : (other.atomic ? "atomically read" : "read");
  std::string who = other_tid == n.tid ? "another thread" : ThreadName(other_tid);
  const std::string what =
      t.allocation == nullptr
          ? std::string("shared memory race (") + kind + ") on byte " +
                std::to_string(t.offset + offset) + " of " + t.name
          : std::string("global memory race (") + kind + ") on byte " +
                std::to_string(t.offset + offset) + " of a " +
                std::to_string(t.allocation->bytes) + "-byte device allocation";
  FailBlock(what + ": " + ThreadName(n.tid) + " " + Verb(op) + " it at " + Where(pc) + ", " +
            who + " " + other_verb + " it at " + Where(other_pc) +
            ", and no barrier orders the two (__syncthreads, or a __syncwarp of the whole warp "
            "for lanes of one warp)");
}

// Checks, then records, an access to `n` bytes whose shadow starts at `shadow`.
void Check(State& s, const Target& t, Shadow* shadow, size_t n, Op op, uintptr_t pc) {
  const uint16_t tid = static_cast<uint16_t>(t_tid);
  const uint16_t warp = static_cast<uint16_t>(t_tid / 32);
  const Now now{s.serial, s.epoch, s.gens[warp], tid, warp};
  const bool atomic = Atomic(op), writes = Writes(op);
  for (size_t i = 0; i < n; ++i) {
    Shadow& sh = shadow[i];
    if (Conflicts(sh.write, now) && !(atomic && sh.write.atomic)) {
      Report(s, t, i, op, now, pc, sh.write, true);
      return;
    }
    if (writes && Conflicts(sh.read, now) && !(atomic && sh.read.atomic)) {
      Report(s, t, i, op, now, pc, sh.read, false);
      return;
    }
    if (!writes) {
      Add(sh.read, now, pc, atomic);
    } else if (atomic && Current(sh.write, now) && sh.write.atomic) {
      Add(sh.write, now, pc, true);
    } else {
      sh.write.block = 0;
      Add(sh.write, now, pc, atomic);
      // Earlier reads are ordered before this write (or were reported).
      if (!atomic) sh.read.block = 0;
    }
  }
}

// The device allocation that holds `a`, if any.
const Allocation* DeviceAllocation(const State& s, uintptr_t a) {
  auto it = std::upper_bound(s.allocations.begin(), s.allocations.end(), a,
                             [](uintptr_t x, const Allocation& al) { return x < al.base; });
  if (it == s.allocations.begin()) return nullptr;
  --it;
  return a - it->base < it->bytes ? &*it : nullptr;
}

void CheckGlobal(State& s, const Allocation& al, uintptr_t a, size_t n, Op op, uintptr_t pc) {
  if (n > al.base + al.bytes - a) n = al.base + al.bytes - a;  // past the end: memcheck's
  for (size_t done = 0; done < n && !s.failed;) {
    const uintptr_t x = a + done;
    const size_t in_page = std::min(n - done, kPageBytes - (x & (kPageBytes - 1)));
    Shadow* shadow = s.global.Page(x >> kPageBits) + (x & (kPageBytes - 1));
    Check(s, Target{nullptr, &al, x - al.base}, shadow, in_page, op, pc);
    done += in_page;
  }
}

void Attach(State& s, Range& r) {
  std::vector<Shadow>& shadow = r.dynamic ? s.dynamic_shadow : s.static_shadow[r.base];
  if (shadow.size() < r.bytes) shadow.resize(r.bytes);
  r.shadow = shadow.data();
}

void Prepare(State& s) {
  for (int i = 0; i < s.num_ranges; ++i) Attach(s, s.ranges[i]);
  if (const uint64_t changed = AllocationsChanged(); changed != s.allocations_seen) {
    s.allocations = Allocations();
    s.allocations_seen = changed;
  }
  s.prepared = true;
}

inline void Access(const volatile void* p, size_t n, Op op, uintptr_t pc) {
  if (t_tid < 0) return;
  State& s = *t_state;
  if (s.failed) return;
  if (!s.prepared) Prepare(s);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (int i = 0; i < s.num_ranges; ++i) {
    const Range& r = s.ranges[i];
    if (a - r.base < r.bytes) {
      const size_t offset = a - r.base;
      // Past the end is memcheck's business.
      Check(s, Target{r.name, nullptr, offset}, r.shadow + offset,
            std::min(n, r.bytes - offset), op, pc);
      return;
    }
  }
  if (const Allocation* al = DeviceAllocation(s, a); al != nullptr) {
    CheckGlobal(s, *al, a, n, op, pc);
  }
}

void ClearShadows(State& s) {
  for (Shadow& x : s.dynamic_shadow) x = Shadow{};
  for (auto& [base, shadow] : s.static_shadow) {
    for (Shadow& x : shadow) x = Shadow{};
  }
  for (auto& page : s.global.pool) std::fill(page.get(), page.get() + kPageBytes, Shadow{});
}

}  // namespace

void BeginBlock(const void* dynamic_shared, size_t bytes, int warps) {
  State& s = Mine();
  if (++s.serial == 0) {  // after 2^32 blocks: sets of old serials would look current
    ClearShadows(s);
    s.serial = 1;
  }
  s.epoch = 0;
  s.gens.assign(warps, 0);
  s.prepared = false;
  s.failed = false;
  s.num_ranges = 0;
  s.global.Reset();
  if (dynamic_shared != nullptr && bytes > 0) {
    s.ranges[s.num_ranges++] = {reinterpret_cast<uintptr_t>(dynamic_shared), bytes,
                                "dynamic shared memory", true};
  }
}

void AddStatic(const void* p, size_t bytes, const char* name) {
  State& s = Mine();
  if (s.num_ranges == State::kMaxRanges) return;  // not checked; kMaxRanges is plenty so far
  Range& r = s.ranges[s.num_ranges++];
  r = {reinterpret_cast<uintptr_t>(p), bytes, name, false};
  if (s.prepared) Attach(s, r);
}

void SetThread(int tid) { t_tid = tid; }

void BlockBarrier() { ++Mine().epoch; }

void WarpBarrier(int warp) { ++Mine().gens[warp]; }

void EndBlock() {
  t_tid = -1;
  if (t_state != nullptr) t_state->num_ranges = 0;
}

}  // namespace tokenfab::cuda_emu::race

// ---- ThreadSanitizer's instrumentation ABI, as GCC emits calls to it ----
// Plain accesses are checked; atomics are checked and then done (always
// sequentially consistent, which is at least what was asked for). Function
// entry and exit, vtable updates and the runtime's initialisation need
// nothing here.
namespace race = tokenfab::cuda_emu::race;
namespace {
inline uintptr_t Caller(void* ra) { return reinterpret_cast<uintptr_t>(ra); }
}  // namespace

#define TOKENFAB_RACE_ACCESS(N)                                                                   \
  extern "C" void __tsan_read##N(void* p) {                                                      \
    race::Access(p, N, race::Op::kRead, Caller(__builtin_return_address(0)));                    \
  }                                                                                               \
  extern "C" void __tsan_write##N(void* p) {                                                     \
    race::Access(p, N, race::Op::kWrite, Caller(__builtin_return_address(0)));                   \
  }                                                                                               \
  extern "C" void __tsan_unaligned_read##N(void* p) {                                            \
    race::Access(p, N, race::Op::kRead, Caller(__builtin_return_address(0)));                    \
  }                                                                                               \
  extern "C" void __tsan_unaligned_write##N(void* p) {                                           \
    race::Access(p, N, race::Op::kWrite, Caller(__builtin_return_address(0)));                   \
  }                                                                                               \
  extern "C" void __tsan_volatile_read##N(void* p) {                                             \
    race::Access(p, N, race::Op::kRead, Caller(__builtin_return_address(0)));                    \
  }                                                                                               \
  extern "C" void __tsan_volatile_write##N(void* p) {                                            \
    race::Access(p, N, race::Op::kWrite, Caller(__builtin_return_address(0)));                   \
  }
TOKENFAB_RACE_ACCESS(1)
TOKENFAB_RACE_ACCESS(2)
TOKENFAB_RACE_ACCESS(4)
TOKENFAB_RACE_ACCESS(8)
TOKENFAB_RACE_ACCESS(16)
#undef TOKENFAB_RACE_ACCESS

extern "C" void __tsan_read_range(void* p, unsigned long n) {
  race::Access(p, n, race::Op::kRead, Caller(__builtin_return_address(0)));
}
extern "C" void __tsan_write_range(void* p, unsigned long n) {
  race::Access(p, n, race::Op::kWrite, Caller(__builtin_return_address(0)));
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

#define TOKENFAB_RACE_ATOMIC(BITS, T)                                                             \
  extern "C" T __tsan_atomic##BITS##_load(const volatile T* p, int) {                            \
    race::Access(p, sizeof(T), race::Op::kAtomicRead, Caller(__builtin_return_address(0)));      \
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                  \
  }                                                                                               \
  extern "C" void __tsan_atomic##BITS##_store(volatile T* p, T v, int) {                         \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);                                                     \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_exchange(volatile T* p, T v, int) {                         \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_fetch_add(volatile T* p, T v, int) {                        \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);                                            \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_fetch_sub(volatile T* p, T v, int) {                        \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);                                            \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_fetch_and(volatile T* p, T v, int) {                        \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);                                            \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_fetch_or(volatile T* p, T v, int) {                         \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);                                             \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_fetch_xor(volatile T* p, T v, int) {                        \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);                                            \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_fetch_nand(volatile T* p, T v, int) {                       \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_fetch_nand(p, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                               \
  extern "C" int __tsan_atomic##BITS##_compare_exchange_strong(volatile T* p, T* expected,       \
                                                               T desired, int, int) {            \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_compare_exchange_n(p, expected, desired, false, __ATOMIC_SEQ_CST,             \
                                       __ATOMIC_SEQ_CST);                                         \
  }                                                                                               \
  extern "C" int __tsan_atomic##BITS##_compare_exchange_weak(volatile T* p, T* expected,         \
                                                             T desired, int, int) {              \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    return __atomic_compare_exchange_n(p, expected, desired, true, __ATOMIC_SEQ_CST,              \
                                       __ATOMIC_SEQ_CST);                                         \
  }                                                                                               \
  extern "C" T __tsan_atomic##BITS##_compare_exchange_val(volatile T* p, T expected, T desired,  \
                                                          int, int) {                            \
    race::Access(p, sizeof(T), race::Op::kAtomicWrite, Caller(__builtin_return_address(0)));     \
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST,                   \
                                __ATOMIC_SEQ_CST);                                                \
    return expected;                                                                              \
  }
TOKENFAB_RACE_ATOMIC(8, uint8_t)
TOKENFAB_RACE_ATOMIC(16, uint16_t)
TOKENFAB_RACE_ATOMIC(32, uint32_t)
TOKENFAB_RACE_ATOMIC(64, uint64_t)
#undef TOKENFAB_RACE_ATOMIC
