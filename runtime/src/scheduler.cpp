// scheduler.cpp: fibers, context switches, park/unpark, the work-stealing
// scheduler, spawn, join and shutdown. Shared state and lock order: see
// internal.hpp; the sync-word protocol: fiber.hpp and park.hpp.
//
// Scheduling decisions, and the alternatives rejected:
// - Spawn runs the child first (the parent goes to the back of the local run
//   queue, stealable, and an idle worker is woken to take it). A loop that
//   spawns a million fibers without yielding therefore never holds more than
//   a few stacks: each child runs until it parks or ends before the next is
//   made, and a child that ends gives its hot stack straight to the next.
//   Rejected: Go's parent-first (the child in runnext), which piles up one
//   stack per unstarted fiber (Boost.Fiber: 9.2 GB for 1M); and lazily
//   assigned stacks, which would put the control block on the heap and cost
//   a parked fiber more than its one page.
// - A fiber woken by a running fiber goes to that worker's lifo slot and runs
//   next (message-passing locality, as Go's runnext and Tokio's LIFO slot).
//   Like Tokio's, the slot is not stealable and waking into it does not wake
//   another worker (that would just bounce a ping-pong across cores); at most
//   kLifoCap lifo picks in a row, then the run queue goes first.
// - The global queue is checked every 61st pick (as Go) so that it cannot
//   starve behind busy local queues.
// - Idle workers spin (steal from random victims, run due timers, poll) while
//   fewer than half are spinning, then sleep on a futex (or block in the idle
//   poller, one worker at a time) until the earliest timer deadline. A new
//   runnable fiber wakes a sleeper only when no worker is spinning.
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cxxabi.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <typeinfo>

#include "internal.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

#ifdef WEFT_ASAN
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, std::size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, std::size_t* size_old);
void __asan_unpoison_memory_region(void const volatile* addr, std::size_t size);
}
#endif
#ifdef WEFT_TSAN
extern "C" {
void* __tsan_get_current_fiber();
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#endif

namespace weft::rt {

namespace {

constexpr unsigned kLifoCap = 8;
constexpr std::int64_t kSpinNs = 5'000;   // how long an idle worker looks for work before sleeping
constexpr int kSpinPauses = 32;
constexpr std::int64_t kBusyPollNs = 1'000'000;  // busy workers poll I/O at most this often
constexpr std::size_t kHotStacks = 16;    // per worker, kept untrimmed
constexpr std::size_t kTrimBatch = 32;
constexpr std::size_t kMaxInlineClosure = 2048;
constexpr std::size_t kDefaultStack = 256 * 1024;

}  // namespace

// The running worker. A fiber may resume on another thread, so no code may
// keep the TLS address across a switch. On x86-64 the thread pointer is read
// with a volatile asm each time (the compiler cannot cache it) and the
// variable is initial-exec, so its offset from the thread pointer is the same
// in every thread; elsewhere a non-inlined accessor does the job.
[[gnu::tls_model("initial-exec")]] thread_local Worker* tl_worker = nullptr;
#if defined(__x86_64__)
namespace {
inline char* thread_pointer() noexcept {
  char* tp;
  asm volatile("movq %%fs:0, %0" : "=r"(tp));
  return tp;
}
const std::ptrdiff_t tl_worker_offset = reinterpret_cast<char*>(&tl_worker) - thread_pointer();
}  // namespace
Worker* current_worker() noexcept {
  return *reinterpret_cast<Worker**>(thread_pointer() + tl_worker_offset);
}
#else
[[gnu::noinline]] Worker* current_worker() noexcept {
  Worker* w = tl_worker;
  asm volatile("" : "+r"(w));
  return w;
}
#endif

namespace {

// ---- exception-handling state per fiber -------------------------------------
// libstdc++ keeps the caught-exception stack and uncaught count per thread;
// a fiber parked in a catch block, or migrating, must carry its own.
struct EhGlobals {
  void* caught;
  unsigned int uncaught;
};
static_assert(sizeof(EhGlobals) <= 2 * sizeof(void*));

// The worker caches this thread's pointers (a call through __tls_get_addr
// otherwise, twice per switch).
inline void eh_save(Worker* w, void* slot[2]) noexcept { std::memcpy(slot, w->eh_globals, sizeof(EhGlobals)); }
inline void eh_restore(Worker* w, void* const slot[2]) noexcept { std::memcpy(w->eh_globals, slot, sizeof(EhGlobals)); }

// ---- switching -----------------------------------------------------------------

// jump_fcontext returns with `pop %r8; jmp *%r8`, so a plain call to it leaves
// an entry on the CPU's return-stack predictor that no ret consumes: every
// later ret of the resumed fiber is mispredicted (we measured 25 ns instead of
// 4 ns per switch with two frames to return through). On x86-64 we enter it
// with a jmp and a pushed return address instead, so calls and rets stay
// paired. Red zone: the asm steps below it before pushing.
[[gnu::always_inline]] inline bctx::transfer_t jump(bctx::fcontext_t to, void* vp) noexcept {
#if defined(__x86_64__) && defined(__linux__)
  void* fctx;
  void* data;
  asm volatile(
      "lea -128(%%rsp), %%rsp\n\t"
      "lea 1f(%%rip), %%rax\n\t"
      "push %%rax\n\t"
      "jmp jump_fcontext@PLT\n"
      "1:\n\t"
      "lea 128(%%rsp), %%rsp\n\t"
      : "=a"(fctx), "=d"(data), "+D"(to), "+S"(vp)
      :
      : "rcx", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
        "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)",
        "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
  return {fctx, data};
#else
  return bctx::jump_fcontext(to, vp);
#endif
}

enum class Action : std::uint8_t { None, Park, Yield, Exit, SpawnParent };

// Left by the context that switches away, read by the one that resumes.
struct Msg {
  bctx::fcontext_t* save_to;
  Action action;
  Fiber* subject;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

[[gnu::noinline]] void free_slot(Worker* w, Fiber* f) noexcept;
[[gnu::noinline]] void push_overflow(Worker* w, Fiber* f) noexcept;
inline void push_local(Worker* w, Fiber* f) noexcept {
  if (!w->q.push(f)) push_overflow(w, f);
}

// What the resumed context does for the one that left (Go's mcall tail).
[[gnu::always_inline]] inline void after_switch(Worker* w, const Msg& m) noexcept {
  switch (m.action) {
    case Action::None:
      break;
    case Action::Park: {
      std::uint64_t old = m.subject->sync->fetch_or(kSwitched, std::memory_order_acq_rel);
      if (old & kWoken) push_local(w, m.subject);  // woken before it was off-CPU
      break;
    }
    case Action::Yield:
    case Action::SpawnParent:
      // Wake a helper only for a real backlog: a lone parent or yielder is
      // resumed here in a moment (the monitor rescues it if not).
      push_local(w, m.subject);
      if (w->rt->nworkers > 1 && w->q.size() > 1) [[unlikely]] w->rt->wakep();
      break;
    case Action::Exit:
      free_slot(w, m.subject);
      break;
  }
}

#ifdef WEFT_ASAN
void stack_bounds(Worker* w, Fiber* f, const void** bottom, std::size_t* size) {
  if (!f) {
    *bottom = w->thread_stack_bottom;
    *size = w->thread_stack_size;
    return;
  }
  char* base = f->rt->arena.slot_base(f->slot) + f->rt->arena.guard_bytes();
  *bottom = base;
  *size = static_cast<std::size_t>(reinterpret_cast<char*>(f) - base);
}
#endif

// Switches from the running context (fiber `self`, or the worker's own
// context when self is null) to `to` (a fiber, or the worker's context).
[[gnu::always_inline]] inline void switch_to(Worker* w, Fiber* self, Fiber* to, Action a) noexcept {
  Msg m{self ? &self->ctx : &w->sched_ctx, a, self};
  if (self) {
    self->saved_errno = *w->errno_ptr;
    eh_save(w, self->eh_state);
    if (self->canary && *self->canary != StackArena::kCanary)
      die("weft: fiber " + std::to_string(self->id) + " overflowed its " +
          std::to_string(self->rt->arena.slot_bytes() / 1024) + " KiB stack (canary smashed)");
  } else {
    eh_save(w, w->sched_eh);
  }
  w->current = to;
  w->switches.store(w->switches.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  bctx::fcontext_t target = to ? to->ctx : w->sched_ctx;
#ifdef WEFT_ASAN
  const void* bottom;
  std::size_t size;
  stack_bounds(w, to, &bottom, &size);
  void** fake = a == Action::Exit ? nullptr : (self ? &self->asan_fake_stack : &w->sched_fake_stack);
  __sanitizer_start_switch_fiber(fake, bottom, size);
#endif
#ifdef WEFT_TSAN
  __tsan_switch_to_fiber(to ? to->tsan_fiber : w->tsan_ctx, 0);
#endif
  bctx::transfer_t t = jump(target, &m);
  // Resumed, possibly on another worker: nothing cached above is valid.
  Worker* now = current_worker();
#ifdef WEFT_ASAN
  __sanitizer_finish_switch_fiber(self ? self->asan_fake_stack : now->sched_fake_stack, nullptr, nullptr);
#endif
  auto* in = static_cast<Msg*>(t.data);
  *in->save_to = t.fctx;
  after_switch(now, *in);
  if (self) {
    eh_restore(now, self->eh_state);
    *now->errno_ptr = self->saved_errno;
  } else {
    eh_restore(now, now->sched_eh);
  }
}

[[noreturn]] void fiber_exit(Fiber* self) noexcept;

// First frame of every fiber.
void fiber_main(bctx::transfer_t t) noexcept {
  Worker* w = current_worker();
  Fiber* self = w->current;
#ifdef WEFT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  auto* in = static_cast<Msg*>(t.data);
  *in->save_to = t.fctx;
  after_switch(w, *in);
  eh_restore(w, self->eh_state);
  *w->errno_ptr = 0;
  self->entry(self->closure);
  if (self->closure_on_heap) ::operator delete(self->closure, std::align_val_t(64));
  fiber_exit(self);
}

// ---- run queues ---------------------------------------------------------------

// Full run queue: move half of it, plus f, to the global queue in one batch.
[[gnu::noinline]] void push_overflow(Worker* w, Fiber* f) noexcept {
  Fiber* batch[RunQueue::kSize / 2 + 1];
  std::uint32_t n = w->q.take_half(batch);
  batch[n++] = f;
  for (std::uint32_t i = 0; i + 1 < n; i++) batch[i]->next = batch[i + 1];
  batch[n - 1]->next = nullptr;
  Runtime& r = *w->rt;
  std::lock_guard<detail::SpinLock> g(r.gq_lock);
  if (r.gq_tail) r.gq_tail->next = batch[0]; else r.gq_head = batch[0];
  r.gq_tail = batch[n - 1];
  r.gq_size.store(r.gq_size.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::uint64_t next_rand(Worker* w) noexcept {
  std::uint64_t x = w->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return w->rng = x;
}

// Steals half of a random victim's run queue. A victim with a single queued
// fiber is left alone while it keeps switching: it will run that fiber
// itself very soon, and taking it would only bounce it across cores (e.g. a
// spawning parent whose child runs for 20 ns). The monitor marks a worker
// whose switch count has not moved for a tick (stuck_at == switches): then
// even its single queued fiber is fair game.
bool stealable(const Worker* v) noexcept {
  std::uint32_t size = v->q.size();
  return size > 1 ||
         (size == 1 && v->stuck_at.load(std::memory_order_relaxed) == v->switches.load(std::memory_order_relaxed));
}

Fiber* steal(Worker* w) noexcept {
  Runtime& r = *w->rt;
  unsigned n = r.nworkers;
  if (n < 2) return nullptr;
  unsigned start = static_cast<unsigned>(next_rand(w) % n);
  for (unsigned i = 0; i < n; i++) {
    Worker* v = r.workers[(start + i) % n].get();
    if (v == w) continue;
    if (!stealable(v)) continue;
    if (Fiber* f = v->q.steal_into(w->q)) {
      w->steals.store(w->steals.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return f;
    }
  }
  return nullptr;
}

// The rarer half of pick_local: due timers every time some are armed, the
// global queue every 61st pick (fairness, as Go).
[[gnu::noinline]] Fiber* pick_periodic(Worker* w) noexcept {
  Runtime& r = *w->rt;
  if (w->timers.next_ns() != kNoDeadline) w->timers.run_expired(to_ns(Clock::now()));
  if (w->countdown == 0) {
    w->countdown = 61;
    // Busy workers poll for I/O now and then (non-blocking), so ready
    // sockets are not starved while no worker is idle to block in the poller.
    if (IdlePoller* p = r.poller.load(std::memory_order_acquire)) {
      std::int64_t now = to_ns(Clock::now());
      if (now - r.last_poll_ns.load(std::memory_order_relaxed) > kBusyPollNs &&
          !r.poller_busy.exchange(true, std::memory_order_acquire)) {
        r.last_poll_ns.store(now, std::memory_order_relaxed);
        p->poll(Clock::time_point::min());
        r.poller_busy.store(false, std::memory_order_release);
      }
    }
    // A batch when there is room for it: fibers that overflowed to the global
    // queue (a poll that woke hundreds, say) must not wait for the local
    // queue to drain while it keeps being refilled (p99 of 67 ms at 1000
    // echo connections when this took one fiber per 61 picks).
    if (r.gq_size.load(std::memory_order_relaxed) > 0) return r.pop_global(w, w->q.size() < RunQueue::kSize / 2);
  }
  return nullptr;
}

// The next fiber from this worker's own sources (no stealing, no sleeping).
// Safe to call on a fiber's stack: it only takes leaf locks.
inline Fiber* pick_local(Worker* w) noexcept {
  if (--w->countdown == 0 || w->timers.next_ns() != kNoDeadline) [[unlikely]]
    if (Fiber* f = pick_periodic(w)) return f;
  if (w->lifo && w->lifo_streak < kLifoCap) {
    w->lifo_streak++;
    return std::exchange(w->lifo, nullptr);
  }
  w->lifo_streak = 0;
  if (Fiber* f = w->rt->nworkers > 1 ? w->q.pop() : w->q.pop_unshared()) return f;
  if (w->lifo) return std::exchange(w->lifo, nullptr);
  if (w->rt->gq_size.load(std::memory_order_relaxed) > 0) return w->rt->pop_global(w, true);
  return nullptr;
}

void reset_spinning(Worker* w) noexcept {
  if (!w->spinning) return;
  w->spinning = false;
  // The last spinner found work: there may be more, so start another (Go).
  if (w->rt->nspinning.fetch_sub(1, std::memory_order_seq_cst) == 1) w->rt->wakep();
}

void run_all_timers(Runtime& r, bool try_only) noexcept {
  std::int64_t now = to_ns(Clock::now());
  for (auto& v : r.workers)
    if (v->timers.next_ns() <= now) v->timers.run_expired(now, try_only);
}

bool remove_from_idle(Runtime& r, Worker* w) noexcept {
  std::lock_guard<detail::SpinLock> g(r.idle_lock);
  if (!w->in_idle_list) return false;
  r.idle.erase(std::find(r.idle.begin(), r.idle.end(), w));
  w->in_idle_list = false;
  w->in_poller = false;
  r.nidle.store(static_cast<int>(r.idle.size()), std::memory_order_seq_cst);
  return true;
}

void sleep_worker(Runtime& r, Worker* w, std::int64_t deadline) noexcept {
  IdlePoller* p = r.poller.load(std::memory_order_acquire);
  if (p && !r.poller_busy.exchange(true, std::memory_order_acq_rel)) {
    {
      std::lock_guard<detail::SpinLock> g(r.idle_lock);
      w->in_poller = w->in_idle_list;
    }
    if (w->sleep_word.load(std::memory_order_acquire) == 0)
      p->poll(deadline == kNoDeadline ? Clock::time_point::max() : Clock::time_point(std::chrono::nanoseconds(deadline)));
    r.last_poll_ns.store(to_ns(Clock::now()), std::memory_order_relaxed);
    r.poller_busy.store(false, std::memory_order_release);
    return;
  }
  futex_wait(&w->sleep_word, 0, deadline);
}

// The idle path, on the worker's own stack: steal, run timers, then sleep.
// Returns nullptr when the runtime exits.
Fiber* find_work(Worker* w) noexcept {
  Runtime& r = *w->rt;
  for (;;) {
    if (r.exiting.load(std::memory_order_acquire)) return nullptr;
    if (Fiber* f = pick_local(w)) {
      reset_spinning(w);
      return f;
    }
    run_all_timers(r, true);
    if (Fiber* f = pick_local(w)) {
      reset_spinning(w);
      return f;
    }
    // Spin only where there is someone to steal from: with one worker the
    // next work can only come from the poller, a timer or outside, and the
    // sleep below blocks in the poller itself.
    if (!w->spinning && r.nworkers > 1 &&
        2 * r.nspinning.load(std::memory_order_relaxed) < static_cast<int>(r.nworkers)) {
      w->spinning = true;
      r.nspinning.fetch_add(1, std::memory_order_seq_cst);
    }
    if (w->spinning) {
      // Spin for a short while before sleeping: a futex sleep and wake
      // costs both sides microseconds, more than most gaps between bursts.
      // Each round steals; every 16th also polls for I/O without blocking
      // (Go's findrunnable checks netpoll before it steals, too).
      std::int64_t spin_until = to_ns(Clock::now()) + kSpinNs;
      for (unsigned round = 0;; round++) {
        if (Fiber* f = steal(w)) {
          reset_spinning(w);
          return f;
        }
        IdlePoller* p = round % 16 == 0 ? r.poller.load(std::memory_order_acquire) : nullptr;
        if (p) {  // every ~16 us: a poll is a system call
          if (!r.poller_busy.exchange(true, std::memory_order_acq_rel)) {
            p->poll(Clock::time_point::min());
            r.last_poll_ns.store(to_ns(Clock::now()), std::memory_order_relaxed);
            r.poller_busy.store(false, std::memory_order_release);
            if (Fiber* f = pick_local(w)) {
              reset_spinning(w);
              return f;
            }
          }
        }
        if (r.gq_size.load(std::memory_order_relaxed) > 0 || w->lifo) break;
        if (round % 4 == 3 && to_ns(Clock::now()) > spin_until) break;
        // Pace the polling (~1 us a round): every look at a victim's queue
        // pulls cache lines its owner is writing.
        for (int k = 0; k < kSpinPauses; k++) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        }
      }
      w->spinning = false;
      r.nspinning.fetch_sub(1, std::memory_order_seq_cst);
    }
    // Going to sleep. Register first, then look once more: a waker either
    // sees us in the idle list or we see its work (both sides seq_cst).
    {
      std::lock_guard<detail::SpinLock> g(r.idle_lock);
      w->sleep_word.store(0, std::memory_order_relaxed);
      w->in_idle_list = true;
      r.idle.push_back(w);
      r.nidle.store(static_cast<int>(r.idle.size()), std::memory_order_seq_cst);
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (r.exiting.load(std::memory_order_seq_cst) || r.work_available()) {
      if (!remove_from_idle(r, w)) w->spinning = true;  // a waker picked us: we count as spinning
      continue;
    }
    std::int64_t deadline = r.earliest_timer();
    r.sleepers_deadline.store(deadline, std::memory_order_release);
    sleep_worker(r, w, deadline);
    if (!remove_from_idle(r, w)) w->spinning = true;
  }
}

void worker_loop(Worker* w) {
  tl_worker = w;
  w->eh_globals = abi::__cxa_get_globals();
  w->errno_ptr = &errno;
  install_altstack();
#ifdef WEFT_TSAN
  w->tsan_ctx = __tsan_get_current_fiber();
#endif
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr;
    std::size_t size;
    pthread_attr_getstack(&attr, &addr, &size);
    w->thread_stack_bottom = addr;
    w->thread_stack_size = size;
    pthread_attr_destroy(&attr);
  }
  while (Fiber* f = find_work(w)) {
    switch_to(w, nullptr, f, Action::None);
    // Back on the worker's own stack: the fiber that switched here parked,
    // yielded or ended with nothing else runnable locally.
  }
  tl_worker = nullptr;
}

// ---- slots and fiber creation ---------------------------------------------------

std::uint32_t alloc_slot(Worker* w) {
  if (!w->stack_cache.empty()) {
    std::uint32_t s = w->stack_cache.back();
    w->stack_cache.pop_back();
    return s;
  }
  return w->rt->arena.alloc();
}

void free_slot(Worker* w, Fiber* f) noexcept {
  Runtime& r = *w->rt;
  std::uint32_t slot = f->slot;
  bool main = f->is_main;
#ifdef WEFT_TSAN
  __tsan_destroy_fiber(f->tsan_fiber);
#endif
#ifdef WEFT_ASAN
  // The frames the dead fiber never returned from (fiber_main, fiber_exit,
  // the switch) keep their redzones poisoned in ASan's shadow. The next fiber
  // given this slot (or a later arena mapped at the same address) writes its
  // closure and first frames there, and ASan reported a stack-buffer-overflow
  // in spawn() whenever the new closure was larger than the old one. Clear
  // them from here, on another stack, where nothing can poison them again:
  // from the dead fiber's last stack pointer (its saved context) up to its
  // control block. Deeper frames unpoisoned themselves when they returned.
  {
    char* low = r.arena.slot_base(slot) + r.arena.guard_bytes();
    char* sp = static_cast<char*>(f->ctx) - 256;
    if (sp < low) sp = low;
    __asan_unpoison_memory_region(sp, static_cast<std::size_t>(reinterpret_cast<char*>(f) - sp));
  }
#endif
  // A new generation: every Parker of the dead fiber is now stale.
  f->sync->store((f->gen + 1) << kGenShift, std::memory_order_release);
  f->~Fiber();
  if (main) {
    r.ext_exited.fetch_add(1, std::memory_order_release);
  } else {
    w->exited.fetch_add(1, std::memory_order_release);
  }
  if (w->stack_cache.size() < kHotStacks) {
    w->stack_cache.push_back(slot);
  } else {
    w->trim_batch.push_back(slot);
    if (w->trim_batch.size() >= kTrimBatch) {
      r.arena.trim(w->trim_batch.data(), w->trim_batch.size());
      r.arena.free_trimmed(w->trim_batch.data(), w->trim_batch.size());
      w->trim_batch.clear();
    }
  }
  if (main) {
    r.main_done.store(1, std::memory_order_release);
    futex_wake(&r.main_done, 1);
  } else if (r.stopping.load(std::memory_order_relaxed)) {
    r.exit_epoch.fetch_add(1, std::memory_order_release);
    futex_wake(&r.exit_epoch, 1);
  }
}

// Fiber ids: workers take blocks of 1024 from one process-wide counter.
std::atomic<std::uint64_t> g_id_source{1};

std::uint64_t next_id(Worker* w) noexcept {
  if (w->id_next == w->id_end) {
    w->id_next = g_id_source.fetch_add(1024, std::memory_order_relaxed);
    w->id_end = w->id_next + 1024;
  }
  return w->id_next++;
}

Fiber* new_fiber(Runtime& r, std::uint32_t slot) noexcept {
  char* top = r.arena.slot_top(slot);
  Fiber* f = ::new (fiber_of_slot(top)) Fiber();
  f->rt = &r;
  f->slot = slot;
  f->sync = &r.arena.sync(slot);
  f->gen = f->sync->load(std::memory_order_relaxed) >> kGenShift;
  if (r.arena.guard_mode(slot) == GuardMode::Canary) {
    f->canary = reinterpret_cast<std::uint64_t*>(r.arena.slot_base(slot) + r.arena.guard_bytes());
    *f->canary = StackArena::kCanary;
  }
  return f;
}

void start_context(Fiber* f) noexcept {
  char* sp = reinterpret_cast<char*>(f->closure_on_heap ? static_cast<void*>(f) : f->closure);
  sp = reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(sp) & ~std::uintptr_t{63});
  char* low = f->rt->arena.slot_base(f->slot) + f->rt->arena.guard_bytes();
  f->ctx = bctx::make_fcontext(sp, static_cast<std::size_t>(sp - low), fiber_main);
#ifdef WEFT_TSAN
  f->tsan_fiber = __tsan_create_fiber(0);
#endif
}

void fiber_exit(Fiber* self) noexcept {
  Worker* w = current_worker();
  Fiber* next = pick_local(w);
  switch_to(w, self, next, Action::Exit);
  __builtin_unreachable();
}

// ---- plain threads that park -----------------------------------------------------
// Their control blocks come from a pool that is never freed (stale Parkers
// may still point at them), recycled when the thread exits.
struct ThreadFiberPool {
  detail::SpinLock lock;
  std::vector<Fiber*> free;
};
ThreadFiberPool& thread_pool() {
  static auto* p = new ThreadFiberPool;  // intentionally immortal
  return *p;
}
struct ThreadFiberHolder {
  Fiber* f = nullptr;
  ~ThreadFiberHolder() {
    if (!f) return;
    f->sync->store((f->gen + 1) << kGenShift, std::memory_order_release);
    auto& p = thread_pool();
    std::lock_guard<detail::SpinLock> g(p.lock);
    p.free.push_back(f);
  }
};
Fiber* thread_fiber() {
  thread_local ThreadFiberHolder h;
  if (!h.f) {
    auto& p = thread_pool();
    {
      std::lock_guard<detail::SpinLock> g(p.lock);
      if (!p.free.empty()) {
        h.f = p.free.back();
        p.free.pop_back();
      }
    }
    if (!h.f) {
      // Memory for the block and its sync word, never freed.
      struct Block {
        Fiber f;
        std::atomic<std::uint64_t> sync{0};
      };
      auto* b = new Block;
      h.f = &b->f;
      h.f->sync = &b->sync;
      h.f->is_thread = true;
    }
    h.f->gen = h.f->sync->load() >> kGenShift;
  }
  return h.f;
}

}  // namespace

// ---- the public low-level interface -------------------------------------------

Fiber* current_fiber() noexcept {
  Worker* w = current_worker();
  return w ? w->current : nullptr;
}

void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t val, std::int64_t deadline_ns) noexcept {
  timespec ts{};
  timespec* tp = nullptr;
  if (deadline_ns != kNoDeadline) {
    std::int64_t d = deadline_ns - to_ns(Clock::now());
    if (d <= 0) return;
    ts.tv_sec = d / 1000000000;
    ts.tv_nsec = d % 1000000000;
    tp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_PRIVATE, val, tp, nullptr, 0);
}

void futex_wake(std::atomic<std::uint32_t>* word, int n) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

void make_runnable(Fiber* f) noexcept {
  Worker* w = current_worker();
  Runtime* r = f->rt;
  if (w && w->rt == r) {
    if (w->current) {
      // Woken by a running fiber: it runs next here (not stealable, no wake).
      if (Fiber* old = std::exchange(w->lifo, f)) {
        push_local(w, old);
        // Wake a helper only for backlog it could steal (see steal()); a
        // lone queued fiber runs here soon, or the monitor rescues it.
        if (w->q.size() > 1) r->wakep();
      }
    } else {
      push_local(w, f);  // from the idle path (timers, poller)
      r->wakep();
    }
  } else {
    // From outside this runtime (a plain thread, the blocking pool, another
    // runtime). Once f is queued it may run, let main return and run() tear
    // the runtime down while we are still in inject()'s wakep(): the
    // in-flight count makes run() wait for our last touch (found by TSan:
    // a blocking-pool thread read Runtime::nspinning after the runtime was
    // destroyed and a new one built in its place).
    r->ext_inflight.fetch_add(1, std::memory_order_acq_rel);
    r->inject(f);
    r->ext_inflight.fetch_sub(1, std::memory_order_release);
  }
}

Parker prepare_park(WaitKind kind, const void* object) noexcept {
  Fiber* f = current_fiber();
  if (!f) f = thread_fiber();
  f->gen++;
  f->wait_kind = kind;
  f->wait_obj = object;
  if (f->is_thread) f->thread_wake.store(0, std::memory_order_relaxed);
  f->sync->store((f->gen << kGenShift) | (f->unwinding ? kUnwinding : 0) | (f->is_thread ? kThread : 0),
                 std::memory_order_release);
  return Parker{f, f->sync, f->gen};
}

WakeReason park(Parker p) noexcept {
  Fiber* f = p.fiber;
  if (f->is_thread) {
    while (f->thread_wake.load(std::memory_order_acquire) == 0) futex_wait(&f->thread_wake, 0, kNoDeadline);
    f->wait_kind = WaitKind::None;
    return reason_of(f->sync->load(std::memory_order_acquire));
  }
  // At shutdown a fiber that is not yet unwinding does not park: it claims
  // its own park with Cancel and the caller unwinds.
  if (!f->unwinding && f->rt->stopping.load(std::memory_order_acquire)) unpark(p, WakeReason::Cancel);
  std::uint64_t v = f->sync->load(std::memory_order_acquire);
  if (!(v & kWoken)) {
    Worker* w = current_worker();
    w->parks.store(w->parks.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    switch_to(w, f, pick_local(w), Action::Park);
    v = f->sync->load(std::memory_order_acquire);
  }
  f->wait_kind = WaitKind::None;
  f->wait_obj = nullptr;
  return reason_of(v);
}

WakeReason park_until(Parker p, Clock::time_point deadline) noexcept {
  if (deadline == Clock::time_point::max()) return park(p);
  Fiber* f = p.fiber;
  if (!f->is_thread) {
    Timer t;
    timer_start_unpark(t, deadline, p);
    WakeReason r = park(p);
    if (r != WakeReason::Timeout) timer_cancel(t);
    return r;
  }
  std::int64_t d = to_ns(deadline);
  while (f->thread_wake.load(std::memory_order_acquire) == 0) {
    if (to_ns(Clock::now()) >= d) {
      if (unpark(p, WakeReason::Timeout)) break;  // claimed our own park
      d = kNoDeadline;  // someone else won: their wake is on its way
    }
    futex_wait(&f->thread_wake, 0, d);
  }
  f->wait_kind = WaitKind::None;
  return reason_of(f->sync->load(std::memory_order_acquire));
}

bool unpark(Parker p, WakeReason reason) noexcept {
  if (!p.sync) return false;
  std::uint64_t v = p.sync->load(std::memory_order_acquire);
  for (;;) {
    if ((v >> kGenShift) != p.token || (v & kWoken)) return false;
    std::uint64_t nv = v | kWoken | (static_cast<std::uint64_t>(reason) << kReasonShift);
    if (p.sync->compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_acquire)) break;
  }
  // We own the wake. Touch the control block only where it cannot be
  // running or reused: a thread's block is immortal; a fiber's is ours only
  // if it was switched out. If it was not yet (kSwitched clear), its own
  // switch-out queues it, and it may already be running, even finished and
  // its slot reused, by the time we get here (TSan caught a read of
  // is_thread racing with the next fiber's construction in that slot).
  if (v & kThread) {
    p.fiber->thread_wake.store(1, std::memory_order_release);
    futex_wake(&p.fiber->thread_wake, 1);
  } else if (v & kSwitched) {
    make_runnable(p.fiber);
  }
  return true;
}

bool can_spin() noexcept {
  Worker* w = current_worker();
  return w && w->current && w->rt->nworkers > 1 && w->q.empty() && !w->lifo;
}

void begin_unwinding() noexcept {
  if (Fiber* f = current_fiber()) f->unwinding = true;
}

void throw_unwind() {
  if (Fiber* f = current_fiber()) f->unwinding = true;
  throw detail::FiberUnwind{};
}

bool should_unwind() noexcept {
  Fiber* f = current_fiber();
  return f && !f->unwinding && f->rt->stopping.load(std::memory_order_acquire);
}

IdlePoller* current_idle_poller() noexcept {
  Worker* w = current_worker();
  return w ? w->rt->poller.load(std::memory_order_acquire) : nullptr;
}

IdlePoller* install_idle_poller(IdlePoller* (*make)()) {
  Worker* w = current_worker();
  if (!w) throw std::logic_error("weft: the netpoller is only available on a fiber of a running runtime");
  Runtime& r = *w->rt;
  if (IdlePoller* p = r.poller.load(std::memory_order_acquire)) return p;
  std::lock_guard<std::mutex> g(r.poller_mu);
  if (!r.poller_owner) {
    r.poller_owner.reset(make());
    r.poller.store(r.poller_owner.get(), std::memory_order_release);
  }
  return r.poller_owner.get();
}

// ---- Runtime ---------------------------------------------------------------------

static unsigned default_workers() {
  if (const char* e = std::getenv("WEFT_WORKERS")) {
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (end != e && *end == 0 && v > 0 && v <= 1024) return static_cast<unsigned>(v);
    throw std::invalid_argument(std::string("weft: WEFT_WORKERS must be an integer in 1..1024, got \"") + e + "\"");
  }
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

Runtime::Runtime(const Options& opts)
    : nworkers(opts.workers ? opts.workers : default_workers()),
      arena(opts.stack_size ? opts.stack_size : kDefaultStack) {
  if (nworkers > 1024) throw std::invalid_argument("weft: Options::workers must be at most 1024");
  if (opts.stack_size && opts.stack_size < 16 * 4096)
    throw std::invalid_argument("weft: Options::stack_size must be at least 64 KiB");
  for (unsigned i = 0; i < nworkers; i++) {
    auto w = std::make_unique<Worker>();
    w->rt = this;
    w->index = i;
    w->rng = 0x9e3779b97f4a7c15ULL * (i + 1);
    w->stuck_at.store(UINT64_MAX, std::memory_order_relaxed);
    workers.push_back(std::move(w));
  }
}

Runtime::~Runtime() = default;

void Runtime::inject(Fiber* f) noexcept {
  f->next = nullptr;
  {
    std::lock_guard<detail::SpinLock> g(gq_lock);
    if (gq_tail) gq_tail->next = f; else gq_head = f;
    gq_tail = f;
    gq_size.store(gq_size.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  wakep();
}

Fiber* Runtime::pop_global(Worker* w, bool batch) noexcept {
  std::lock_guard<detail::SpinLock> g(gq_lock);
  std::size_t n = gq_size.load(std::memory_order_relaxed);
  if (n == 0) return nullptr;
  std::size_t take = batch ? std::min<std::size_t>({n, n / nworkers + 1, RunQueue::kSize / 2}) : 1;
  Fiber* first = gq_head;
  gq_head = first->next;
  for (std::size_t i = 1; i < take && gq_head; i++) {
    Fiber* f = gq_head;
    gq_head = f->next;
    w->q.push(f);  // room: take <= kSize/2 and callers batch only into a queue at most half full
  }
  if (!gq_head) gq_tail = nullptr;
  gq_size.store(n - take, std::memory_order_relaxed);
  return first;
}

void Runtime::wakep() noexcept {
  if (nworkers == 1 && current_worker()) return;  // the only worker is the caller
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (nspinning.load(std::memory_order_seq_cst) != 0 || nidle.load(std::memory_order_seq_cst) == 0) return;
  int zero = 0;
  if (!nspinning.compare_exchange_strong(zero, 1, std::memory_order_seq_cst)) return;
  Worker* v = nullptr;
  bool via_poller = false;
  {
    std::lock_guard<detail::SpinLock> g(idle_lock);
    if (!idle.empty()) {
      // Prefer a futex sleeper: the poller sleeper keeps watching I/O.
      auto it = std::find_if(idle.begin(), idle.end(), [](Worker* x) { return !x->in_poller; });
      if (it == idle.end()) it = idle.begin();
      v = *it;
      idle.erase(it);
      v->in_idle_list = false;
      via_poller = v->in_poller;
      v->in_poller = false;
      nidle.store(static_cast<int>(idle.size()), std::memory_order_seq_cst);
      v->sleep_word.store(1, std::memory_order_release);
    }
  }
  if (!v) {
    nspinning.fetch_sub(1, std::memory_order_seq_cst);
    return;
  }
  if (via_poller) {
    if (IdlePoller* p = poller.load(std::memory_order_acquire)) p->wake();
  } else {
    futex_wake(&v->sleep_word, 1);
  }
}

void Runtime::wake_all_workers() noexcept {
  {
    std::lock_guard<detail::SpinLock> g(idle_lock);
    for (auto& w : workers) w->sleep_word.store(1, std::memory_order_release);
  }
  for (auto& w : workers) futex_wake(&w->sleep_word, 1);
  if (IdlePoller* p = poller.load(std::memory_order_acquire)) p->wake();
}

bool Runtime::work_available() const noexcept {
  if (gq_size.load(std::memory_order_seq_cst) > 0) return true;
  // Only what an idle worker could take: counting a busy worker's lone
  // queued fiber would keep idle workers spinning forever beside it.
  for (auto& w : workers)
    if (stealable(w.get())) return true;
  std::int64_t now = to_ns(Clock::now());
  for (auto& w : workers)
    if (w->timers.next_ns() <= now) return true;
  return false;
}

std::int64_t Runtime::earliest_timer() const noexcept {
  std::int64_t d = kNoDeadline;
  for (auto& w : workers) d = std::min(d, w->timers.next_ns());
  return d;
}

std::uint64_t Runtime::live_fibers() const noexcept {
  std::uint64_t s = ext_spawned.load(std::memory_order_acquire), e = ext_exited.load(std::memory_order_acquire);
  for (auto& w : workers) {
    e += w->exited.load(std::memory_order_acquire);
    s += w->spawned.load(std::memory_order_acquire);
  }
  return s - e;
}

}  // namespace weft::rt

// ---- fibers, join, run -----------------------------------------------------------

namespace weft {
namespace detail {

using namespace weft::rt;

SpawnSlot spawn_begin(std::size_t size, std::size_t align) {
  Worker* w = current_worker();
  if (!w || !w->current) throw std::logic_error("weft::go() must be called on a fiber of a running runtime");
  std::uint32_t slot = alloc_slot(w);  // throws std::system_error when out of address space
  Fiber* f = new_fiber(*w->rt, slot);
  f->id = next_id(w);
  char* room = reinterpret_cast<char*>(f);
  std::size_t a = std::max<std::size_t>(align, 16);
  char* p = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(room) - size) & ~(a - 1));
  if (size > kMaxInlineClosure || a > 64) {
    if (a > 64) throw std::invalid_argument("weft::go(): closures aligned beyond 64 bytes are not supported");
    p = static_cast<char*>(::operator new(size, std::align_val_t(64)));
    f->closure_on_heap = true;
  }
  f->closure = p;
  return SpawnSlot{f, p, f->id};
}

void spawn_abort(Fiber* f) noexcept {
  Worker* w = current_worker();
  if (f->closure_on_heap) ::operator delete(f->closure, std::align_val_t(64));
  std::uint32_t slot = f->slot;
  f->sync->store((f->gen + 1) << kGenShift, std::memory_order_release);
  f->~Fiber();
  w->stack_cache.push_back(slot);
}

void spawn_commit(Fiber* f, void (*entry)(void*)) noexcept {
  f->entry = entry;
  start_context(f);
  Worker* w = current_worker();
  w->spawned.store(w->spawned.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // Child first: the parent is queued (stealable) and resumes after it.
  switch_to(w, w->current, f, Action::SpawnParent);
}

void join_wait(JoinStateBase* s) {
  if (s->state.load(std::memory_order_acquire) == JoinStateBase::kDone) return;
  s->joiner = prepare_park(WaitKind::Join, s);
  std::uintptr_t expected = JoinStateBase::kRunning;
  if (!s->state.compare_exchange_strong(expected, JoinStateBase::kJoinerWaiting, std::memory_order_acq_rel))
    return;  // finished meanwhile
  if (park(s->joiner) == WakeReason::Event) return;
  // Cancelled: withdraw, unless the fiber finished and is waking us anyway.
  expected = JoinStateBase::kJoinerWaiting;
  s->state.compare_exchange_strong(expected, JoinStateBase::kRunning, std::memory_order_acq_rel);
  throw_unwind();
}

[[noreturn]] void panic(std::exception_ptr e, std::uint64_t fiber_id) noexcept {
  if (fiber_id == 0) fiber_id = this_fiber::id();
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& e) {
    what = std::string(typeid(e).name()) + ": " + e.what();
    int st = 0;
    if (char* d = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &st)) {
      what = std::string(d) + ": " + e.what();
      std::free(d);
    }
  } catch (...) {
  }
  std::fprintf(stderr, "weft: panic: fiber %llu exited with an uncaught exception: %s\n",
               static_cast<unsigned long long>(fiber_id), what.c_str());
  std::fflush(stderr);
  std::abort();
}

void join_finish(JoinStateBase* s) noexcept {
  std::uintptr_t old = s->state.exchange(JoinStateBase::kDone, std::memory_order_acq_rel);
  if (old == JoinStateBase::kJoinerWaiting) unpark(s->joiner);
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    if (s->error) panic(s->error, s->fiber_id);  // the handle was dropped without join
    s->destroy(s);
  }
}

void join_release(JoinStateBase* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) s->destroy(s);
}

void join_detach(JoinStateBase* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    if (s->error) panic(s->error, s->fiber_id);  // ended with an exception nobody will see
    s->destroy(s);
  }
}

void throw_cancelled(std::uint64_t id) {
  throw std::runtime_error("weft: fiber " + std::to_string(id) + " was unwound at runtime shutdown");
}

std::mutex g_teardown_lock;
TeardownStats g_teardown;  // guarded by g_teardown_lock

// Wakes every parked fiber that is not already unwinding, with Cancel.
static void sweep(Runtime& r) {
  std::uint32_t n = r.arena.slot_count();
  for (std::uint32_t i = 0; i < n; i++) {
    std::uint64_t v = r.arena.sync(i).load(std::memory_order_acquire);
    if ((v & (kSwitched | kWoken | kUnwinding)) != kSwitched) continue;
    unpark(Parker{fiber_of_slot(r.arena.slot_top(i)), &r.arena.sync(i), v >> kGenShift}, WakeReason::Cancel);
  }
}

// Teardown accounting (see TeardownStats): every worker has exited, so
// their slot caches are quiescent.
static void record_teardown(Runtime& r) noexcept {
  std::size_t held = r.arena.free_slots();
  for (auto& w : r.workers) held += w->stack_cache.size() + w->trim_batch.size();
  std::size_t carved = r.arena.carved_slots();
  std::lock_guard<std::mutex> g(g_teardown_lock);
  g_teardown.runs++;
  g_teardown.leaked_fibers += r.live_fibers();
  g_teardown.leaked_slots += carved > held ? carved - held : 0;
}

void run_main(const Options& opts, void (*entry)(void*), void* arg) {
  if (current_worker()) throw std::logic_error("weft::run() called on a fiber: runtimes do not nest");
  install_overflow_handler();
  Runtime r(opts);
  std::uint32_t slot = r.arena.alloc();
  Fiber* f = new_fiber(r, slot);
  f->id = g_id_source.fetch_add(1, std::memory_order_relaxed);
  f->is_main = true;
  f->entry = entry;
  f->closure = arg;
  f->closure_on_heap = false;
  // The closure lives on this thread's stack: the fiber's frames start just
  // below its control block.
  f->ctx = nullptr;
  {
    char* low = r.arena.slot_base(slot) + r.arena.guard_bytes();
    char* sp = reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(f) & ~std::uintptr_t{63});
    f->ctx = bctx::make_fcontext(sp, static_cast<std::size_t>(sp - low), fiber_main);
#ifdef WEFT_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
  }
  r.ext_spawned.fetch_add(1, std::memory_order_relaxed);
  r.inject(f);
  for (auto& w : r.workers) {
    Worker* wp = w.get();
    wp->thread = std::thread([wp] { worker_loop(wp); });
  }
  std::thread monitor([&r] { monitor_loop(r); });
  while (r.main_done.load(std::memory_order_acquire) == 0) futex_wait(&r.main_done, 0, kNoDeadline);
  // Unwind whatever is still alive: parked fibers are woken with Cancel,
  // running and runnable ones unwind at their next park or yield.
  r.stopping.store(true, std::memory_order_seq_cst);
  while (r.live_fibers() != 0) {
    std::uint32_t epoch = r.exit_epoch.load(std::memory_order_acquire);
    sweep(r);
    if (r.live_fibers() == 0) break;
    futex_wait(&r.exit_epoch, epoch, to_ns(Clock::now()) + 2'000'000);
  }
  r.exiting.store(true, std::memory_order_seq_cst);
  r.wake_all_workers();
  for (auto& w : r.workers) w->thread.join();
  futex_wake(&r.monitor_word, 1);
  monitor.join();
  r.poller.store(nullptr, std::memory_order_release);
  r.poller_owner.reset();
  while (r.ext_inflight.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  record_teardown(r);
}

}  // namespace detail

bool in_fiber() noexcept { return rt::current_fiber() != nullptr; }

rt::TeardownStats rt::teardown_stats() noexcept {
  std::lock_guard<std::mutex> g(detail::g_teardown_lock);
  return detail::g_teardown;
}

namespace this_fiber {

void yield() {
  using namespace weft::rt;
  Worker* w = current_worker();
  Fiber* f = w ? w->current : nullptr;
  if (!f) {
    std::this_thread::yield();
    return;
  }
  if (!f->unwinding && f->rt->stopping.load(std::memory_order_acquire)) throw_unwind();
  // Run what is already queued here first; if nothing is, carry on.
  Fiber* next = pick_local(w);
  if (!next) return;
  switch_to(w, f, next, Action::Yield);
}

void sleep_until(Clock::time_point t) {
  using namespace weft::rt;
  Fiber* f = current_fiber();
  if (!f) {
    std::this_thread::sleep_until(t);
    return;
  }
  if (t <= Clock::now()) {
    yield();
    return;
  }
  if (park_until(prepare_park(WaitKind::Sleep, nullptr), t) == WakeReason::Cancel) throw_unwind();
}

void sleep_for(std::chrono::nanoseconds d) {
  auto now = Clock::now();
  if (d > Clock::time_point::max() - now) d = Clock::time_point::max() - now;
  sleep_until(now + std::chrono::duration_cast<Clock::duration>(d));
}

std::uint64_t id() noexcept {
  rt::Fiber* f = rt::current_fiber();
  return f ? f->id : 0;
}

}  // namespace this_fiber
}  // namespace weft
