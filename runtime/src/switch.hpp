// switch.hpp: the context switch and the hot scheduling helpers, inline
// for scheduler.cpp (park, unpark, the worker loop) and fiber.cpp (spawn,
// yield). Invariants: internal.hpp; the sync-word protocol: fiber.hpp.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "internal.hpp"
#include "lifo.hpp"

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

inline constexpr unsigned kLifoCap = 8;  // lifo picks in a row before the run queue goes first

[[noreturn]] void die(const std::string& msg);
[[gnu::noinline]] void free_slot(Worker* w, Fiber* f) noexcept;
[[gnu::noinline]] void push_overflow(Worker* w, Fiber* f) noexcept;
[[gnu::noinline]] Fiber* pick_periodic(Worker* w) noexcept;
void fiber_main(bctx::transfer_t t) noexcept;
void worker_loop(Worker* w);
Fiber* thread_fiber();

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
//
// Clobbers: everything the SysV ABI lets a call destroy, since another
// context runs in between and jump_fcontext saves only the callee-saved
// registers: the caller-saved GPRs, flags, x87, and every vector register.
// Built for AVX-512 (-mavx512f, or -march=native on such a CPU) the
// compiler also allocates xmm16-31 and the mask registers k0-k7, which are
// caller-saved too: without naming them here GCC 12 and clang 14 kept live
// doubles in xmm16/xmm17 across the switch, and the other context's vector
// code overwrote them (tests/runtime/switch_avx512_test.cpp).
#if defined(__AVX512F__)
#define WEFT_AVX512_CLOBBERS                                                                                    \
  , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", \
      "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"
#else
#define WEFT_AVX512_CLOBBERS
#endif
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
        "st(3)", "st(4)", "st(5)", "st(6)", "st(7)" WEFT_AVX512_CLOBBERS);
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

inline void push_local(Worker* w, Fiber* f) noexcept {
  if (!w->q.push(f)) push_overflow(w, f);
}

// cancel.cpp: claims the park of f (sync word v) with Cancel and queues it.
void cancel_parked(Worker* w, Fiber* f, std::uint64_t v) noexcept;

// What the resumed context does for the one that left (Go's mcall tail).
[[gnu::always_inline]] inline void after_switch(Worker* w, const Msg& m) noexcept {
  switch (m.action) {
    case Action::None:
      break;
    case Action::Park: {
      // m lives on the parked fiber's stack, which a waker may resume right
      // after our RMW: copy what we need first. The cancel word may then
      // belong to a later fiber of the slot (atomic, never reconstructed);
      // cancel_parked's CAS on this generation rejects a stale one.
      Fiber* f = m.subject;
      std::atomic<std::uint32_t>& cancel = cancel_word(f);
      // seq_cst: this RMW and the load of the cancel word below are the
      // scheduler's half of the cancellation Dekker (fiber.hpp).
      std::uint64_t old = f->sync->fetch_or(kSwitched, std::memory_order_seq_cst);
      if (old & kWoken) {
        push_local(w, f);  // woken before it was off-CPU
      } else if ((old & kCancellable) && cancel.load(std::memory_order_seq_cst) != 0) [[unlikely]] {
        cancel_parked(w, f, old | kSwitched);
      }
      break;
    }
    case Action::Yield:
    case Action::SpawnParent:
      // Wake a helper only for a real backlog: a lone parent or yielder is
      // resumed here in a moment (the monitor rescues it if not).
      push_local(w, m.subject);
      if (w->shared && w->q.size() > 1) [[unlikely]] w->rt->wakep();
      break;
    case Action::Exit:
      free_slot(w, m.subject);
      break;
  }
}

#ifdef WEFT_ASAN
inline void stack_bounds(Worker* w, Fiber* f, const void** bottom, std::size_t* size) {
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
  w->current.store(to, std::memory_order_relaxed);
  w->budget = kBudget;
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

// The next fiber from this worker's own sources (no stealing, no sleeping).
// Safe to call on a fiber's stack: it only takes leaf locks.
inline Fiber* pick_local(Worker* w) noexcept {
  if (--w->countdown == 0 || w->timers.next_ns() != kNoDeadline) [[unlikely]]
    if (Fiber* f = pick_periodic(w)) return f;
  Fiber* f = nullptr;
  if (w->shared && !w->lifo.load(std::memory_order_relaxed)) {
    // Nothing the monitor could take from us (it only ever empties lifo):
    // skip the bracket.
    w->lifo_streak = 0;
    f = w->q.pop();
    if (!f && w->rt->gq_size.load(std::memory_order_relaxed) > 0) f = w->rt->pop_global(w, true);
    return f;
  }
  bool contended = enter_local(w);
  if (w->lifo_streak < kLifoCap && (f = take_lifo(w, contended))) {
    w->lifo_streak++;
  } else {
    w->lifo_streak = 0;
    f = w->shared || contended ? w->q.pop() : w->q.pop_unshared();
    if (!f) f = take_lifo(w, contended);
  }
  leave_local(w);
  if (!f && w->rt->gq_size.load(std::memory_order_relaxed) > 0) f = w->rt->pop_global(w, true);
  return f;
}

}  // namespace weft::rt
