// park.cpp: park and unpark (the sync-word protocol of fiber.hpp and
// park.hpp), the single entry point that makes a woken fiber runnable
// (ready), deferred wakes, the futexes of plain threads and idle workers,
// and the cooperative budget. The scheduler that runs what these make
// runnable: scheduler.cpp. Shared state and lock order: internal.hpp.
#include <utility>

#include <weft/cancel.hpp>

#include "platform/futex.hpp"
#include "switch.hpp"

namespace weft::rt {

// The OS wait behind them: platform/futex.hpp (inline on Linux).
void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t val, std::int64_t deadline_ns) noexcept {
  static_assert(kNoDeadline == platform::kFutexNoDeadline);
  platform::futex_wait(word, val, deadline_ns);
}

void futex_wake(std::atomic<std::uint32_t>* word, int n) noexcept { platform::futex_wake(word, n); }

// Makes a fiber whose park we claimed runnable: the one entry point, for
// every source of wakes.
// - From a fiber running on a worker of f's runtime (a channel hand-off, an
//   unlock): f goes to this worker's lifo slot and runs next, not
//   stealable, waking nobody (message-passing locality; the monitor shares
//   a lasting backlog). A fiber it displaces goes to the run queue.
// - From a timer or the poller (run by an idle worker, or by a busy one
//   between fibers: Worker::batch_wake), or from the idle path: f goes to
//   the run queue, and an idle worker is woken once that queue holds a
//   backlog (two or more: what an idle worker may steal); a lone fiber is
//   run by this worker itself, moments later. While the global queue holds
//   a backlog, f joins its tail instead (fairness: scheduler.cpp). A poll
//   that readies many fibers must not push them one by one through the
//   lifo slot (each displacing the last, none shared).
// - From outside the runtime (a plain thread, the blocking pool, another
//   runtime): the global queue, and a worker is woken. Once f is queued it
//   may run, let main return and run() tear the runtime down while we are
//   still in inject()'s wakep(): the in-flight count makes run() wait for
//   our last touch (found by TSan: a blocking-pool thread read
//   Runtime::nspinning after the runtime was destroyed and a new one built
//   in its place).
void ready(Fiber* f) noexcept {
  Worker* w = current_worker();
  Runtime* r = f->rt;
  if (!w || w->rt != r) {
    r->ext_inflight.fetch_add(1, std::memory_order_acq_rel);
    r->inject(f);
    r->ext_inflight.fetch_sub(1, std::memory_order_release);
  } else if (w->current.load(std::memory_order_relaxed) && !w->batch_wake) {
    if (Fiber* old = lifo_put(w, f)) push_local(w, old);
  } else if (r->gq_size.load(std::memory_order_relaxed) > 0) {
    // A backlog waits in the global queue (a poll or timer run overflowed
    // the run queue): queue behind it, not ahead of it in the local queue,
    // which is served first (the global queue only every 61st pick).
    r->inject(f);
  } else {
    push_local(w, f);
    // Keep a lone fiber, wake a helper for a backlog. An idle worker could
    // not take a lone queued fiber anyway (scheduler.cpp: stealable), so
    // waking one for it bought a futex wake, a fruitless spin and a futex
    // sleep (at workers=2, most polls of an echo server ready one fiber:
    // the woken worker found nothing, and the two swapped the poller back
    // and forth). The fiber is still found without a wake: this worker is
    // either on its idle path (find_work: it picks from its own queue right
    // after the timer run or poll that readied f) or between fibers
    // (pick_periodic: pick_local pops its queue next); if it gets stuck in
    // a long fiber before reaching f, the monitor marks it stuck, which
    // makes a single queued fiber stealable, and wakes an idle worker
    // (monitor.cpp), as for a yielded or spawning parent (switch.hpp). The
    // second fiber queued is stealable, and wakes a helper at once.
    if (w->q.size() > 1) {
      r->wakep();
    } else {
      bump(w->wakes_kept);
    }
  }
}

Parker prepare_park(WaitKind kind, const void* object) noexcept {
  Fiber* f = current_fiber();
  if (!f) f = thread_fiber();
  f->gen++;
  f->wait_kind = kind;
  f->wait_obj = object;
  if (f->is_thread) {
    f->thread_wake.store(0, std::memory_order_relaxed);
  } else {
    f->park_ms = f->rt->coarse_ms.load(std::memory_order_relaxed);
  }
  // A Mutex's or RWMutex's park is never a cancellation point. (A plain
  // thread's park may be marked cancellable: nobody cancels a thread.)
  std::uint64_t flags = f->park_flags;
  if (kind == WaitKind::Mutex || kind == WaitKind::RWMutex) flags &= ~kCancellable;
  f->sync->store((f->gen << kGenShift) | flags, std::memory_order_release);
  return Parker{f, f->sync, f->gen};
}

WakeReason park(const Parker& p) noexcept {
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
    WEFT_CHAOS_POINT();  // a waker may claim us before or after we switch out
    Worker* w = current_worker();
    w->parks.store(w->parks.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    switch_to(w, f, pick_local(w), Action::Park);
    v = f->sync->load(std::memory_order_acquire);
  }
  f->wait_kind = WaitKind::None;
  f->wait_obj = nullptr;
  return reason_of(v);
}

WakeReason park_until(const Parker& p, Clock::time_point deadline) noexcept {
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

bool unpark(const Parker& pr, WakeReason reason) noexcept {
  // Copied first: pr may live in the woken fiber's waiter record, which is
  // not ours to read once the claim below lets that fiber run.
  const Parker p = pr;
  if (!p.sync) return false;
  std::uint64_t v = p.sync->load(std::memory_order_acquire);
  for (;;) {
    if ((v >> kGenShift) != p.token || (v & kWoken)) return false;
    std::uint64_t nv = v | kWoken | (static_cast<std::uint64_t>(reason) << kReasonShift);
    if (p.sync->compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_acquire)) break;
  }
  WEFT_CHAOS_POINT();  // claimed, not yet runnable
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
    ready(p.fiber);
  }
  return true;
}

void DeferredWake::pin(const void* runtime) noexcept {
  static_cast<Runtime*>(const_cast<void*>(runtime))->ext_inflight.fetch_add(1, std::memory_order_acq_rel);
  pin_ = runtime;
}

void DeferredWake::unpin() noexcept {
  auto* r = static_cast<Runtime*>(const_cast<void*>(std::exchange(pin_, nullptr)));
  r->ext_inflight.fetch_sub(1, std::memory_order_release);
}

bool can_spin() noexcept {
  Worker* w = current_worker();
  return w && w->current.load(std::memory_order_relaxed) && w->rt->started_workers() > 1 && w->q.empty() &&
         !w->lifo.load(std::memory_order_relaxed);
}

void budget_exhausted() noexcept {
  Worker* w = current_worker();
  w->budget = kBudget;
  Fiber* f = w->current.load(std::memory_order_relaxed);
  // Not on a fiber (a plain thread never has a worker; the scheduler's own
  // context spends none), or shutting down: the caller carries on.
  if (!f || f->rt->stopping.load(std::memory_order_relaxed)) return;
  Fiber* next = pick_local(w);
  if (!next) return;
  w->budget_yields.store(w->budget_yields.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  switch_to(w, f, next, Action::Yield);
}

// Unwinding is for good, and shields the fiber from cancellation (its
// destructors may park).
static void mark_unwinding(Fiber* f) noexcept {
  if (f->unwinding) return;
  f->unwinding = true;
  f->shield++;
  refresh_park_flags(f);
}

void begin_unwinding() noexcept {
  if (Fiber* f = current_fiber()) mark_unwinding(f);
}

void throw_unwind() {
  Fiber* f = current_fiber();
  if (f && !shutting_down()) throw_cancelled();  // stops the fiber's tokens first (cancel.cpp)
  if (f) mark_unwinding(f);
  throw detail::FiberUnwind{};
}

bool shutting_down() noexcept {
  Fiber* f = current_fiber();
  return f && (f->unwinding || f->rt->stopping.load(std::memory_order_acquire));
}

bool should_unwind() noexcept {
  Fiber* f = current_fiber();
  return f && !f->unwinding && f->rt->stopping.load(std::memory_order_acquire);
}

}  // namespace weft::rt
