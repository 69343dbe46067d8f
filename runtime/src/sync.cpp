// sync.cpp: SpinLock, WaitList, Mutex, CondVar, WaitGroup. Invariants and
// lock order: see weft/sync.hpp.
#include <weft/sync.hpp>

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <weft/runtime.hpp>

namespace weft {
namespace detail {

void SpinLock::lock_contended() noexcept {
  for (unsigned spins = 0; flag_.load(std::memory_order_relaxed); spins++) {
    if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();  // the holder was preempted: let it run
    }
  }
}

void WaitList::push_back(Waiter* w) noexcept {
  w->next = nullptr;
  w->prev = tail_;
  if (tail_) tail_->next = w; else head_ = w;
  tail_ = w;
  w->queued = true;
}

void WaitList::push_front(Waiter* w) noexcept {
  w->prev = nullptr;
  w->next = head_;
  if (head_) head_->prev = w; else tail_ = w;
  head_ = w;
  w->queued = true;
}

void WaitList::remove(Waiter* w) noexcept {
  if (w->prev) w->prev->next = w->next; else head_ = w->next;
  if (w->next) w->next->prev = w->prev; else tail_ = w->prev;
  w->prev = w->next = nullptr;
  w->queued = false;
}

Waiter* WaitList::pop_front() noexcept {
  Waiter* w = head_;
  if (w) remove(w);
  return w;
}

bool WaitList::wake_one(WakeReason r) noexcept {
  while (Waiter* w = pop_front())
    if (rt::unpark(w->parker, r)) return true;
  return false;
}

void WaitList::wake_all() noexcept {
  while (Waiter* w = pop_front()) rt::unpark(w->parker);
}

}  // namespace detail

// ---- Mutex -----------------------------------------------------------------------
// Normal mode: unlock clears kLocked and wakes the first waiter, which then
// competes with running fibers for the lock (and re-queues at the front if it
// loses). A waiter that has waited more than 1 ms sets kStarving: from then
// on unlock keeps kLocked set and hands ownership straight to the first
// waiter (Waiter::handoff), and newcomers queue instead of barging, until
// the queue is empty. Every wake is claimed through rt::unpark under qlock_,
// so a waiter that lost its claim to a cancellation is skipped, never given
// the lock.

bool Mutex::try_lock() noexcept {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  // In starvation mode kLocked never drops while waiters remain (ownership
  // passes from hand to hand), so checking kLocked alone keeps barging out.
  while (!(s & kLocked))
    if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  return false;
}

void Mutex::lock_slow() {
  using namespace std::chrono;
  Clock::time_point first_wait{};
  bool requeue = false;
  for (;;) {
    // A brief spin helps when the holder runs on another worker.
    for (int i = 0; i < 32; i++) {
      if (try_lock()) return;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    detail::Waiter w;
    {
      std::lock_guard<detail::SpinLock> g(qlock_);
      std::uint32_t s = state_.load(std::memory_order_relaxed);
      for (;;) {
        if (!(s & kLocked)) {
          if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed))
            return;
          continue;
        }
        std::uint32_t ns = s | kWaiters;
        if (requeue && Clock::now() - first_wait > milliseconds(1)) ns |= kStarving;
        // A CAS from the state we judged: if the holder released meanwhile
        // (its fast path needs state == kLocked exactly), we see it here.
        if (state_.compare_exchange_weak(s, ns, std::memory_order_relaxed, std::memory_order_relaxed)) break;
      }
      w.parker = rt::prepare_park(WaitKind::Mutex, this);
      if (requeue) waiters_.push_front(&w); else waiters_.push_back(&w);
    }
    if (!requeue) first_wait = Clock::now();
    requeue = true;
    WakeReason r = rt::park(w.parker);
    if (r != WakeReason::Event) {
      std::lock_guard<detail::SpinLock> g(qlock_);
      if (w.queued) {
        waiters_.remove(&w);
        if (waiters_.empty()) state_.fetch_and(~(kWaiters | kStarving), std::memory_order_relaxed);
      }
    }
    if (r == WakeReason::Cancel) rt::throw_unwind();
    if (w.handoff) return;  // we own it (starvation mode)
  }
}

void Mutex::unlock_slow() {
  std::lock_guard<detail::SpinLock> g(qlock_);
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  if (!(s & kLocked)) {
    std::fputs("weft: Mutex::unlock() of an unlocked mutex\n", stderr);
    std::abort();
  }
  for (;;) {
    detail::Waiter* w = waiters_.pop_front();
    if (!w) {
      state_.fetch_and(~(kLocked | kWaiters | kStarving), std::memory_order_release);
      return;
    }
    bool handoff = s & kStarving;
    std::uint32_t clear = waiters_.empty() ? (kWaiters | kStarving) : 0;
    if (handoff) {
      w->handoff = true;
      state_.fetch_and(~clear, std::memory_order_release);
    } else {
      state_.fetch_and(~(kLocked | clear), std::memory_order_release);
    }
    if (rt::unpark(w->parker)) return;
    // That waiter was already woken by a cancellation: undo and go on.
    w->handoff = false;
    if (!handoff) {
      // The lock is released; some waiter still deserves a wake-up.
      if (!waiters_.wake_one()) state_.fetch_and(~(kWaiters | kStarving), std::memory_order_relaxed);
      return;
    }
    s = state_.load(std::memory_order_relaxed) | kLocked;
    if (waiters_.empty()) s &= ~kStarving;
  }
}

// ---- CondVar -------------------------------------------------------------------

void CondVar::wait(std::unique_lock<Mutex>& lock) {
  (void)wait_until(lock, Clock::time_point::max());
}

std::cv_status CondVar::wait_until(std::unique_lock<Mutex>& lock, Clock::time_point deadline) {
  if (!lock.owns_lock()) throw std::logic_error("weft: CondVar::wait() needs a locked unique_lock");
  detail::Waiter w;
  {
    std::lock_guard<detail::SpinLock> g(qlock_);
    w.parker = rt::prepare_park(WaitKind::CondVar, this);
    waiters_.push_back(&w);
  }
  lock.unlock();
  WakeReason r = rt::park_until(w.parker, deadline);
  if (r != WakeReason::Event) {
    std::lock_guard<detail::SpinLock> g(qlock_);
    if (w.queued) waiters_.remove(&w);
  }
  if (r == WakeReason::Cancel) rt::throw_unwind();  // lock stays released: we unwind
  lock.lock();
  return r == WakeReason::Timeout ? std::cv_status::timeout : std::cv_status::no_timeout;
}

void CondVar::notify_one() noexcept {
  std::lock_guard<detail::SpinLock> g(qlock_);
  waiters_.wake_one();
}

void CondVar::notify_all() noexcept {
  std::lock_guard<detail::SpinLock> g(qlock_);
  waiters_.wake_all();
}

// ---- WaitGroup -----------------------------------------------------------------
// A waiter checks the counter under qlock_ before queueing; whoever moves the
// counter to zero takes qlock_ after that move and wakes everyone queued. So
// either the waiter sees zero, or it is queued before the waker looks.

void WaitGroup::add(int n) {
  std::int64_t v = count_.fetch_add(n, std::memory_order_acq_rel) + n;
  if (v < 0) {
    count_.fetch_sub(n, std::memory_order_relaxed);
    throw std::logic_error("weft: WaitGroup counter would go negative");
  }
  if (v == 0 && n != 0) {
    std::lock_guard<detail::SpinLock> g(qlock_);
    waiters_.wake_all();
  }
}

void WaitGroup::wait() {
  if (count_.load(std::memory_order_acquire) == 0) return;
  detail::Waiter w;
  {
    std::lock_guard<detail::SpinLock> g(qlock_);
    if (count_.load(std::memory_order_acquire) == 0) return;
    w.parker = rt::prepare_park(WaitKind::WaitGroup, this);
    waiters_.push_back(&w);
  }
  if (rt::park(w.parker) == WakeReason::Cancel) {
    {
      std::lock_guard<detail::SpinLock> g(qlock_);
      if (w.queued) waiters_.remove(&w);
    }
    rt::throw_unwind();
  }
}

}  // namespace weft
