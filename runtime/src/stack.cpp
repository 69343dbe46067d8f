// stack.cpp: stack arenas, guard pages and the overflow handler. See stack.hpp.
#include "stack.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <system_error>

#include "fiber.hpp"
#include "platform/vm.hpp"


namespace weft::rt {
namespace {

// Registry of live arenas for the signal handler: fixed slots, CAS-claimed.
constexpr int kMaxArenas = 64;
std::atomic<const StackArena*> g_arenas[kMaxArenas];

long read_max_map_count() {
  long v = 65530;
  if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    if (std::fscanf(f, "%ld", &v) != 1) v = 65530;
    std::fclose(f);
  }
  return v;
}

// Test hook: see StackArena::fail_maps_for_testing.
std::atomic<bool> g_fail_maps{false};

// Reads a /proc file through a fixed buffer, calling each(chunk, n). No
// allocation: the caller may be out of memory. False if it cannot be opened.
template <class F>
bool scan_proc(const char* path, F each) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t r;
  while ((r = ::read(fd, buf, sizeof buf)) > 0) each(buf, static_cast<std::size_t>(r));
  ::close(fd);
  return true;
}

// "; check RLIMIT_AS (ulimit -v: 600 MiB, 530 MiB in use) and
// vm.max_map_count (65530, 412 mappings in use)": the two limits an arena
// mapping or a guard install runs into, with their values now.
std::string limits_note() {
  std::string s = "; check RLIMIT_AS (ulimit -v: ";
  rlimit rl{};
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
    s += "unlimited";
  } else {
    s += std::to_string(rl.rlim_cur >> 20) + " MiB";
  }
  long vm_pages = -1;
  char first[32] = {};
  std::size_t nfirst = 0;
  scan_proc("/proc/self/statm", [&](const char* b, std::size_t n) {
    for (std::size_t i = 0; i < n && nfirst < sizeof first - 1; i++) first[nfirst++] = b[i];
  });
  if (nfirst) vm_pages = std::strtol(first, nullptr, 10);
  if (vm_pages >= 0)
    s += ", " + std::to_string(static_cast<unsigned long>(vm_pages) * sysconf(_SC_PAGESIZE) >> 20) + " MiB in use";
  long maps = 0;
  bool have_maps = scan_proc("/proc/self/maps", [&](const char* b, std::size_t n) { maps += std::count(b, b + n, '\n'); });
  s += ") and vm.max_map_count (" + std::to_string(read_max_map_count());
  if (have_maps) s += ", " + std::to_string(maps) + " mappings in use";
  return s + ")";
}

[[noreturn]] void throw_exhausted(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), "weft: " + what + limits_note());
}

GuardMode initial_mode() {
  const char* e = std::getenv("WEFT_GUARD");
  if (e && std::strcmp(e, "mprotect") == 0) return GuardMode::Mprotect;
  if (e && std::strcmp(e, "canary") == 0) return GuardMode::Canary;
  // Probe MADV_GUARD_INSTALL on a scratch page. (If even the probe cannot
  // be mapped, mprotect guards are the safe choice: they work everywhere.)
  long pg = sysconf(_SC_PAGESIZE);
  void* p = mmap(nullptr, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | platform::kMapNoReserve, -1, 0);
  if (p == MAP_FAILED) return GuardMode::Mprotect;
  bool ok = platform::install_guard_page(p, static_cast<std::size_t>(pg)) == 0;
  munmap(p, 2 * pg);
  return ok ? GuardMode::Madvise : GuardMode::Mprotect;
}

}  // namespace

StackArena::StackArena(std::size_t slot_bytes) : page_(static_cast<std::size_t>(sysconf(_SC_PAGESIZE))) {
  slot_bytes_ = (std::max<std::size_t>(slot_bytes, 16 * page_) + page_ - 1) / page_ * page_;
  chunks_ = new Chunk[kMaxChunks];
  mode_ = initial_mode();
  // Each mprotect guard splits a mapping in two; keep well clear of the limit
  // so the rest of the process (malloc arenas, libraries) can still map.
  long budget = (read_max_map_count() - 16384) / 2;
  mprotect_budget_ = budget > 0 ? static_cast<std::size_t>(budget) : 0;
  if (mode_ == GuardMode::Canary) first_canary_slot_ = 0;
  for (auto& a : g_arenas) {
    const StackArena* expected = nullptr;
    if (a.compare_exchange_strong(expected, this)) break;
  }
}

StackArena::~StackArena() {
  for (auto& a : g_arenas) {
    const StackArena* expected = this;
    if (a.compare_exchange_strong(expected, nullptr)) break;
  }
  std::size_t n = nchunks_.load();
  for (std::size_t i = 0; i < n; i++) {
    munmap(chunks_[i].base, kChunkSlots * slot_bytes_);
    delete[] chunks_[i].sync;
  }
  delete[] chunks_;
}

int StackArena::add_chunk() noexcept {
  std::size_t n = nchunks_.load(std::memory_order_relaxed);
  // The side table first: a failure after the mmap would have to undo it.
  auto* sync = new (std::nothrow) SyncCell[kChunkSlots]();
  if (!sync) return ENOMEM;
  void* p = g_fail_maps.load(std::memory_order_relaxed)
                ? MAP_FAILED
                : mmap(nullptr, kChunkSlots * slot_bytes_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | platform::kMapNoReserve, -1, 0);
  if (p == MAP_FAILED) {
    int e = g_fail_maps.load(std::memory_order_relaxed) ? ENOMEM : errno;
    delete[] sync;
    return e;
  }
  chunks_[n].base = static_cast<char*>(p);
  chunks_[n].sync = sync;
  chunks_[n].carved = 0;
  nchunks_.store(n + 1, std::memory_order_release);
  return 0;
}

int StackArena::install_guard(std::uint32_t s) noexcept {
  char* base = slot_base(s);
  if (mode_ == GuardMode::Madvise) {
    // EINTR/EAGAIN: a signal or a racing fault interrupted the walk; retry.
    for (int tries = 0; tries < 8; tries++) {
      if (platform::install_guard_page(base, page_) == 0) return 0;
      if (errno != EINTR && errno != EAGAIN) break;
    }
    return errno;
  }
  if (s < first_canary_slot_ && mprotect_budget_ > 0) {
    if (mprotect(base, page_, PROT_NONE) == 0) {
      mprotect_budget_--;
      return 0;
    }
    if (errno != ENOMEM) return errno;
    // ENOMEM here means the mapping limit (each guard splits the mapping):
    // this slot and every later one get canaries instead.
  }
  if (first_canary_slot_ == UINT32_MAX) first_canary_slot_ = s;
  return 0;
}

GuardMode StackArena::guard_mode(std::uint32_t s) const noexcept {
  if (mode_ == GuardMode::Madvise) return GuardMode::Madvise;
  return s < first_canary_slot_ ? GuardMode::Mprotect : GuardMode::Canary;
}

// Failures leave the arena as it was (a chunk mapped before a failed guard
// install stays, uncarved, for the next call), and are reported after
// lock_ is released: the message reads /proc.
std::uint32_t StackArena::alloc() {
  int err = 0;
  bool mapping = false;
  {
    std::lock_guard<std::mutex> g(lock_);
    if (!free_.empty()) {
      std::uint32_t s = free_.back();
      free_.pop_back();
      return s;
    }
    std::size_t n = nchunks_.load(std::memory_order_relaxed);
    if (n == 0 || chunks_[n - 1].carved == kChunkSlots) {
      if (n == kMaxChunks)
        throw std::system_error(ENOMEM, std::generic_category(),
                                "weft: fiber stack arena is full (" + std::to_string(kMaxChunks * kChunkSlots) +
                                    " stacks)");
      mapping = true;
      err = add_chunk();
      n++;
    }
    if (!err) {
      Chunk& c = chunks_[n - 1];
      std::uint32_t s = static_cast<std::uint32_t>((n - 1) * kChunkSlots + c.carved);
      mapping = false;
      err = install_guard(s);
      if (!err) {
        c.carved++;
        return s;
      }
    }
  }
  if (mapping)
    throw_exhausted(err, "cannot map a fiber stack arena (" + std::to_string(kChunkSlots * slot_bytes_ >> 20) +
                             " MiB for " + std::to_string(kChunkSlots) + " stacks of " +
                             std::to_string(slot_bytes_ >> 10) + " KiB)");
  throw_exhausted(err, mode_ == GuardMode::Madvise
                           ? "cannot install a fiber stack's guard page (madvise MADV_GUARD_INSTALL)"
                           : "cannot install a fiber stack's guard page (mprotect)");
}

void StackArena::trim(std::uint32_t* slots, std::size_t n) noexcept {
  // Coalesce neighbouring slots into one madvise each. The guard page of
  // each slot survives MADV_DONTNEED (both for guard markers and for
  // PROT_NONE pages, which hold nothing to drop).
  std::sort(slots, slots + n);
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i + 1;
    while (j < n && slots[j] == slots[j - 1] + 1 && slots[j] % kChunkSlots != 0) j++;
    char* lo = slot_base(slots[i]) + page_;
    char* hi = slot_top(slots[j - 1]);
    // A failure (EINVAL on an mlock'ed range) leaves the pages committed:
    // memory stays in use, but a reused slot needs no clean stack.
    platform::release_pages(lo, static_cast<std::size_t>(hi - lo));
    i = j;
  }
}

void StackArena::free_trimmed(const std::uint32_t* slots, std::size_t n) noexcept {
  std::lock_guard<std::mutex> g(lock_);
  free_.insert(free_.end(), slots, slots + n);
}

std::size_t StackArena::carved_slots() const noexcept {
  std::size_t n = nchunks_.load(std::memory_order_acquire), c = 0;
  for (std::size_t i = 0; i < n; i++) c += chunks_[i].carved;
  return c;
}

std::size_t StackArena::committed_bytes() const noexcept {
  // mincore over each chunk in windows of kWindow pages. Chunks are never
  // unmapped before the arena dies; pages of slots never carved were never
  // touched and count as zero, guard pages too.
  constexpr std::size_t kWindow = 1024;
  unsigned char vec[kWindow];
  std::size_t n = nchunks_.load(std::memory_order_acquire), span = kChunkSlots * slot_bytes_, pages = 0;
  for (std::size_t i = 0; i < n; i++) {
    for (std::size_t off = 0; off < span; off += kWindow * page_) {
      std::size_t len = std::min(span - off, kWindow * page_);
      if (platform::resident(chunks_[i].base + off, len, vec) != 0) continue;
      for (std::size_t k = 0; k < len / page_; k++) pages += vec[k] & 1;
    }
  }
  return pages * page_;
}

void StackArena::fail_maps_for_testing(bool on) noexcept { g_fail_maps.store(on, std::memory_order_relaxed); }

std::size_t StackArena::free_slots() noexcept {
  std::lock_guard<std::mutex> g(lock_);
  return free_.size();
}

bool StackArena::guard_hit(const void* addr, std::uint32_t* slot) const noexcept {
  auto a = reinterpret_cast<std::uintptr_t>(addr);
  std::size_t n = nchunks_.load(std::memory_order_acquire);
  std::size_t span = kChunkSlots * slot_bytes_;
  for (std::size_t i = 0; i < n; i++) {
    auto b = reinterpret_cast<std::uintptr_t>(chunks_[i].base);
    if (a < b || a >= b + span) continue;
    std::size_t off = a - b;
    std::uint32_t s = static_cast<std::uint32_t>(i * kChunkSlots + off / slot_bytes_);
    // A fault anywhere in the guard page, or in the page just above it
    // (a large frame can jump over part of the guard).
    if (off % slot_bytes_ < 2 * page_) {
      *slot = s;
      return true;
    }
    return false;
  }
  return false;
}

const StackArena* StackArena::find(const void* addr) noexcept {
  for (auto& a : g_arenas) {
    const StackArena* ar = a.load(std::memory_order_acquire);
    std::uint32_t s;
    if (ar && ar->guard_hit(addr, &s)) return ar;
  }
  return nullptr;
}

// ---- the overflow handler ----------------------------------------------------

namespace {

struct sigaction g_old_segv;
std::once_flag g_handler_once;

std::size_t fmt_u64(char* out, std::uint64_t v) {
  char tmp[24];
  std::size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  for (std::size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

void write_str(const char* s) {
  std::size_t n = std::strlen(s);
  while (n) {
    ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

void on_segv(int sig, siginfo_t* info, void* uctx) {
  const StackArena* ar = StackArena::find(info->si_addr);
  std::uint32_t slot;
  if (ar && ar->guard_hit(info->si_addr, &slot)) {
    const Fiber* f = fiber_of_slot(ar->slot_top(slot));
    char buf[160];
    std::size_t n = 0;
    auto put = [&](const char* s) {
      while (*s && n < sizeof buf - 1) buf[n++] = *s++;
    };
    put("weft: fiber ");
    n += fmt_u64(buf + n, f->id);
    put(" overflowed its ");
    n += fmt_u64(buf + n, ar->slot_bytes() / 1024);
    put(" KiB stack\n");
    buf[n] = 0;
    write_str(buf);
    signal(SIGABRT, SIG_DFL);
    abort();
  }
  // Not ours: hand over to whatever was installed before.
  if (g_old_segv.sa_flags & SA_SIGINFO) {
    if (g_old_segv.sa_sigaction) return g_old_segv.sa_sigaction(sig, info, uctx);
  } else if (g_old_segv.sa_handler != SIG_DFL && g_old_segv.sa_handler != SIG_IGN) {
    return g_old_segv.sa_handler(sig);
  }
  // Default action: re-raise with the default disposition.
  signal(SIGSEGV, SIG_DFL);
}

}  // namespace

void install_overflow_handler() {
  std::call_once(g_handler_once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
  });
}

void install_altstack() {
  // One alternate signal stack per thread, released when the thread exits.
  struct AltStack {
    void* mem = nullptr;
    std::size_t size = 64 * 1024;
    AltStack() {
      stack_t cur{};
      if (sigaltstack(nullptr, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return;  // someone else's
      void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return;  // then an overflow dies without our message
      stack_t ss{};
      ss.ss_sp = p;
      ss.ss_size = size;
      if (sigaltstack(&ss, nullptr) == 0) mem = p; else munmap(p, size);
    }
    ~AltStack() {
      if (!mem) return;
      stack_t ss{};
      ss.ss_flags = SS_DISABLE;
      sigaltstack(&ss, nullptr);
      munmap(mem, size);
    }
  };
  thread_local AltStack alt;
  (void)alt;
}

}  // namespace weft::rt
