// sync.cpp: SpinLock, WaitList, Mutex, CondVar, WaitGroup, RWMutex,
// Semaphore, Once. Invariants and lock order: see weft/sync.hpp, lot.hpp
// and each primitive's section below. Lock order (HACKING.md): a queue lock
// (Mutex::qlock_, RWMutex::qlock_, a lot bucket's lock) is level 1: only
// rt::unpark is called under it; no two are ever held at once.
#include <weft/sync.hpp>

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <weft/runtime.hpp>

#include "lot.hpp"

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

}  // namespace detail

// ---- Mutex -----------------------------------------------------------------------
// The protocol follows Go's sync.Mutex (written anew for the park API):
// - Normal mode: unlock drops kLocked with one atomic add, and wakes one
//   waiter only if there are waiters, nobody holds the lock again already,
//   and no waiter is awake yet (kWoken). The woken waiter competes with
//   running fibers (barging keeps the lock hot in one cache) and re-queues at
//   the front if it loses. A fiber spinning for the lock sets kWoken too, so
//   that unlock does not wake a waiter it is about to beat anyway.
// - Starvation mode (kStarving): set by a waiter that has waited more than
//   1 ms. Unlock hands ownership to the first waiter (Waiter::handoff; it
//   sets kLocked itself) and newcomers queue instead of barging. The mode
//   ends when the receiving waiter is the last one or waited less than 1 ms.
// Every wake is claimed through rt::unpark under qlock_; a waiter that lost
// its claim to a cancellation is skipped and never handed the lock.

bool Mutex::try_lock() noexcept {
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  while (!(s & (kLocked | kStarving)))
    if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  return false;
}

void Mutex::lock_slow() {
  using std::chrono::milliseconds;
  Clock::time_point first_wait{};
  bool awoke = false;    // we own the kWoken bit (set by the unlocker or by our spin)
  bool requeue = false;  // we have waited before: queue at the front
  int spins = 0;
  for (;;) {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    if (!(s & (kLocked | kStarving))) {
      if (state_.compare_exchange_weak(s, (s | kLocked) & ~(awoke ? kWoken : 0u), std::memory_order_acquire,
                                       std::memory_order_relaxed))
        return;
      continue;
    }
    // The holder may be running on another worker: spin a little first.
    if ((s & kLocked) && !(s & kStarving) && spins < 8 && rt::can_spin()) {
      if (!awoke && !(s & kWoken) && (s & kWaiters) &&
          state_.compare_exchange_weak(s, s | kWoken, std::memory_order_relaxed, std::memory_order_relaxed))
        awoke = true;
      for (int i = 0; i < 16; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      spins++;
      continue;
    }
    detail::Waiter w;
    {
      std::lock_guard<detail::SpinLock> g(qlock_);
      s = state_.load(std::memory_order_relaxed);
      bool queued = false;
      while (!queued) {
        if (!(s & (kLocked | kStarving))) break;  // free again: retry outside
        std::uint32_t ns = (s | kWaiters) & ~(awoke ? kWoken : 0u);
        if (requeue && (s & kLocked) && Clock::now() - first_wait > milliseconds(1)) ns |= kStarving;
        queued = state_.compare_exchange_weak(s, ns, std::memory_order_relaxed, std::memory_order_relaxed);
      }
      if (!queued) continue;
      awoke = false;
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
        if (waiters_.empty()) state_.fetch_and(~kWaiters, std::memory_order_relaxed);
      }
      // Our claim was lost before any unlocker could hand us the lock.
      rt::throw_unwind();
    }
    if (w.handoff) {
      // Starvation mode: ownership is ours. Leave the mode if we are the
      // last waiter or did not wait long.
      std::uint32_t add = kLocked;
      std::uint32_t clear = 0;
      bool last = !(state_.load(std::memory_order_relaxed) & kWaiters);
      if (last || Clock::now() - first_wait < milliseconds(1)) clear = kStarving;
      std::uint32_t cur = state_.load(std::memory_order_relaxed);
      while (!state_.compare_exchange_weak(cur, (cur | add) & ~clear, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
      }
      return;
    }
    awoke = true;  // the unlocker set kWoken for us
    spins = 0;
  }
}

void Mutex::unlock_slow() {
  // Nobody to wake (no waiters, or one already awake) and not starving:
  // release by CAS, touching nothing afterwards. Otherwise release under
  // qlock_, which the destructor waits for.
  std::uint32_t s = state_.load(std::memory_order_relaxed);
  while (!(s & kStarving) && (!(s & kWaiters) || (s & kWoken)) && (s & kLocked))
    if (state_.compare_exchange_weak(s, s - kLocked, std::memory_order_release, std::memory_order_relaxed)) return;
  std::lock_guard<detail::SpinLock> g(qlock_);
  s = state_.fetch_sub(kLocked, std::memory_order_release) - kLocked;
  if (s & kLocked) {
    std::fputs("weft: Mutex::unlock() of an unlocked mutex\n", stderr);
    std::abort();
  }
  // The mode this unlock released in decides its duty, as in Go's
  // unlockSlow: only an unlock that released with kStarving set hands the
  // lock off. (Deciding from a later load once let a delayed normal-mode
  // unlock hand off too: holder H released in normal mode and headed here;
  // barger B took the lock, a waiter set kStarving, B unlocked and handed
  // the lock to waiter W1; then H took qlock_, saw kStarving and no kLocked,
  // and handed it to W2 as well: two owners. Releasing under qlock_ now also
  // closes that window.)
  const bool starving = s & kStarving;
  for (;;) {
    s = state_.load(std::memory_order_relaxed);
    // Taken again since our fetch_sub (a barger): its unlock wakes or hands
    // off. In starvation mode nobody can take it, so this is for the normal
    // path, where also nothing is to do if nobody waits, a waiter is
    // already awake (it will find the lock free), or the mode turned to
    // starvation meanwhile (whoever holds or last released it hands off).
    if (s & kLocked) return;
    if (!starving && (!(s & kWaiters) || (s & (kWoken | kStarving)))) return;
    detail::Waiter* w = waiters_.pop_front();
    if (!w) {
      state_.fetch_and(~(kWaiters | kStarving), std::memory_order_relaxed);
      return;
    }
    std::uint32_t set = starving ? 0 : kWoken;
    std::uint32_t clear = waiters_.empty() ? kWaiters : 0;
    state_.fetch_or(set, std::memory_order_relaxed);
    if (clear) state_.fetch_and(~clear, std::memory_order_relaxed);
    w->handoff = starving;
    if (rt::unpark(w->parker)) return;
    // That waiter was cancelled meanwhile: undo and try the next one.
    w->handoff = false;
    if (set) state_.fetch_and(~set, std::memory_order_relaxed);
  }
}

// ---- CondVar -------------------------------------------------------------------
// Waiters are queued in the parking lot under the CondVar's address (lot.hpp
// explains why: the CondVar may be destroyed once its waiters were notified,
// before they return). A notify touches only the lot; a woken waiter never
// touches the CondVar again; one that timed out or was cancelled unlinks
// itself under the bucket lock.

std::cv_status CondVar::wait_until(std::unique_lock<Mutex>& lock, Clock::time_point deadline) {
  if (!lock.owns_lock()) throw std::logic_error("weft: CondVar::wait() needs a locked unique_lock");
  rt::cancellation_point();
  detail::LotWaiter w;
  w.key = this;
  detail::LotBucket& b = detail::lot_bucket(this);
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    w.parker = rt::prepare_park(WaitKind::CondVar, this);
    detail::lot_push(b, &w);
  }
  lock.unlock();
  WakeReason r = rt::park_until(w.parker, deadline);
  if (r != WakeReason::Event) {
    std::lock_guard<detail::SpinLock> g(b.lock);
    // Not queued any more: a notify popped us after our timeout or
    // cancellation had won the claim. Nothing to pass on: that notify's
    // unpark failed, so lot_wake_one went on to the next waiter (notify_all
    // woke them all). Passing it on again here woke a second waiter for one
    // notify_one (cancel_test: NotifyOneRacingCancelWakesExactlyOne).
    if (w.queued) detail::lot_remove(b, &w);
  }
  if (r == WakeReason::Cancel) {
    // std's rule: the lock is held again when wait() throws. At shutdown
    // the fiber unwinds instead and does not queue for the mutex.
    if (!rt::shutting_down()) lock.lock();
    rt::throw_unwind();
  }
  lock.lock();
  return r == WakeReason::Timeout ? std::cv_status::timeout : std::cv_status::no_timeout;
}

void CondVar::wait(std::unique_lock<Mutex>& lock) {
  (void)wait_until(lock, Clock::time_point::max());
}

void CondVar::notify_one() noexcept {
  detail::LotBucket& b = detail::lot_bucket(this);
  std::lock_guard<detail::SpinLock> g(b.lock);
  detail::lot_wake_one(b, this);
}

void CondVar::notify_all() noexcept {
  detail::LotBucket& b = detail::lot_bucket(this);
  std::lock_guard<detail::SpinLock> g(b.lock);
  detail::lot_wake_all(b, this);
}

// ---- WaitGroup -----------------------------------------------------------------
// Every move of the counter to zero, and every locked look at it by a
// waiter, happen under the lot bucket's lock of this WaitGroup; other moves
// are a lock-free CAS. So either a waiter sees zero, or it is queued before
// the waker looks.
//
// Lifetime (API.md; lot.hpp): `wg.wait()` may return, and its caller free
// wg, while the fiber that made the counter zero is still inside add(). The
// zero move is that fiber's last touch of *this: the wakes that follow touch
// only the lot. A waiter that sees zero (with or without the lock) returns
// at once; a woken one returns without touching *this. (Before, a woken
// waiter re-took a spin lock inside the WaitGroup to let the waker finish:
// Go's "WaitGroup with a timeout" idiom, where a helper fiber waits and the
// owner also waits and then frees the WaitGroup, left the helper spinning
// forever on freed memory.)

void WaitGroup::add(int n) {
  if (n > 0) {  // never a move to zero (the count is never negative): one RMW
    count_.fetch_add(n, std::memory_order_acq_rel);
    return;
  }
  std::int64_t v = count_.load(std::memory_order_relaxed);
  for (;;) {
    std::int64_t nv = v + n;
    if (nv < 0) throw std::logic_error("weft: WaitGroup counter would go negative");
    if (nv == 0 && n != 0) break;  // the move to zero: under the bucket lock
    if (count_.compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_relaxed)) return;
  }
  detail::LotBucket& b = detail::lot_bucket(this);
  std::lock_guard<detail::SpinLock> g(b.lock);
  v = count_.load(std::memory_order_relaxed);
  std::int64_t nv;
  do {
    nv = v + n;
    if (nv < 0) throw std::logic_error("weft: WaitGroup counter would go negative");
  } while (!count_.compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_relaxed));
  // From here on *this may be freed by a waiter that sees zero: the key is
  // only compared, never dereferenced.
  if (nv == 0) detail::lot_wake_all(b, this);
}

void WaitGroup::wait() { (void)wait_until(Clock::time_point::max()); }

bool WaitGroup::wait_until(Clock::time_point deadline) {
  rt::cancellation_point();
  // acquire: pairs with the acq_rel move to zero, so the work of the fibers
  // that called done() happens-before our return.
  if (count_.load(std::memory_order_acquire) == 0) return true;
  detail::LotWaiter w;
  w.key = this;
  detail::LotBucket& b = detail::lot_bucket(this);
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    if (count_.load(std::memory_order_acquire) == 0) return true;
    w.parker = rt::prepare_park(WaitKind::WaitGroup, this);
    detail::lot_push(b, &w);
  }
  WakeReason r = rt::park_until(w.parker, deadline);
  if (r == WakeReason::Event) return true;
  bool reached;
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    // Still queued: no zero move came. Unlinked: one did (its wake lost
    // the claim to our timeout or cancellation).
    reached = !w.queued;
    if (w.queued) detail::lot_remove(b, &w);
  }
  if (r == WakeReason::Cancel) rt::throw_unwind();
  return reached;
}


// ---- RWMutex -------------------------------------------------------------------
// The design is Go's sync.RWMutex (reader count, writer-pending flag in the
// same word, departing readers counted down by the writer), written anew
// around one spin lock so that every wake, and every touch of *this after
// a wake, happens under qlock_ (the destructor takes it: see sync.hpp).
//
// state_ (see sync.hpp): R readers counted | kWriter | kWriters.
// - A reader counts itself with one fetch_add. Without kWriter in the old
//   value it holds the read lock. With kWriter it is a *waiting* reader: it
//   takes qlock_ and either finds a read unit granted for it (rsem_) or
//   queues in readers_ until a writer's release hands it one.
// - A writer gets the exclusivity by setting kWriter (CAS, under qlock_ on
//   the slow path) while it is clear; the R readers counted in that old
//   value are holders, and it waits (as pending_) until all R have left:
//   rwait_ = R, and each departing holder (fetch_sub sees kWriter) counts
//   rwait_ down under qlock_; the one that reaches zero hands the lock to
//   the pending writer. A writer that finds kWriter set queues in writers_
//   (setting kWriters, so that unlock's fast path fails).
// - A writer's release (unlock_slow, under qlock_) is one CAS on state_
//   that fixes the set of readers that arrived during its hold (the R of
//   the value it replaces: RMWs on one word are totally ordered): it grants
//   each of them a read unit (handing it straight to a queued reader, or
//   adding it to rsem_ for one still on its way to qlock_). If writers are
//   queued, the CAS keeps kWriter and the first of them becomes the pending
//   writer with rwait_ = R: so readers that arrived during a hold go before
//   the next writer, and readers arriving later queue behind that writer:
//   neither side starves. Else the CAS clears kWriter and later readers
//   take the fast path.
// Read units are fungible: a reader counted after a hand-off's CAS can take
// a unit from rsem_ meant for one counted before it that has not reached
// qlock_ yet; the latter then queues for the next writer's release, and the
// pending writer still waits for exactly R departures (the taker is one).
// So every counted reader either holds (and departs once) or waits for a
// release that counts it, and rwait_ reaches zero exactly when the readers
// the pending writer must wait for have left.
//
// Invariants (qlock_ held): pending_ != null iff kWriter is set and its
// writer waits for rwait_ > 0 departures; every waiter in readers_ was
// counted while kWriter was set; writers_ non-empty iff kWriters.
//
// Memory ordering. The read fast path's fetch_add (acquire) reads from the
// last writer release (a CAS with release) or from later RMWs of its release
// sequence, so a reader sees the writer's writes; a reader's departing
// fetch_sub (release) is read by the writer's acquire CAS on the fast path,
// or reaches the pending writer through qlock_ and the unpark's acq_rel
// claim. Grants through rsem_ are published by qlock_.
//
// Cut-short waits. RWMutex parks are not cancellation points, but at
// shutdown the runtime claims every park with Cancel. A waker never checks
// unpark()'s result: a waiter whose claim was lost finds, under qlock_,
// whether it is still queued (then it withdraws) or was granted the lock
// (then it releases it again) before it unwinds.

void RWMutex::lock_slow() {
  detail::Waiter w;
  {
    std::lock_guard<detail::SpinLock> g(qlock_);
    std::uint64_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      if (!(s & kWriter)) {
        if (!state_.compare_exchange_weak(s, s | kWriter, std::memory_order_acquire, std::memory_order_relaxed))
          continue;
        if (!(s & kReaderMask)) return;  // no reader holds it: ours
        rwait_ = s & kReaderMask;
        pending_ = &w;
        break;
      }
      if (state_.compare_exchange_weak(s, s | kWriters, std::memory_order_relaxed, std::memory_order_relaxed)) {
        writers_.push_back(&w);
        break;
      }
    }
    w.parker = rt::prepare_park(WaitKind::RWMutex, this);
  }
  WakeReason r = rt::park(w.parker);
  if (r == WakeReason::Event) return;  // handed the lock
  {
    std::lock_guard<detail::SpinLock> g(qlock_);
    if (w.queued) {
      writers_.remove(&w);
      if (writers_.empty()) state_.fetch_and(~kWriters, std::memory_order_relaxed);
    } else if (pending_ == &w) {
      pending_ = nullptr;
      release_writer_locked();  // give up the exclusivity (rwait_ readers still hold)
    } else {
      release_writer_locked();  // the lock was handed to us: release it
    }
  }
  rt::throw_unwind();
}

void RWMutex::unlock_slow() {
  std::lock_guard<detail::SpinLock> g(qlock_);
  if (!(state_.load(std::memory_order_relaxed) & kWriter) || pending_) {
    std::fputs("weft: RWMutex::unlock() of a mutex not locked for writing\n", stderr);
    std::abort();
  }
  release_writer_locked();
}

// The exclusivity's holder gives it up: to the first queued writer, or to
// nobody. rwait_ is 0, except when a pending writer gives up (shutdown):
// then rwait_ readers still hold and are not granted again.
void RWMutex::release_writer_locked() noexcept {
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (detail::Waiter* next = writers_.front()) {
      std::uint64_t ns = s;
      if (!next->next) ns &= ~kWriters;  // it is the last queued writer
      // acq_rel: fixes the readers counted so far (they go first) and
      // publishes our writes to them and to the next writer.
      if (!state_.compare_exchange_weak(s, ns, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
      writers_.pop_front();
      std::uint64_t counted = s & kReaderMask;
      std::uint64_t units = counted - rwait_;
      pending_ = next;
      rwait_ = counted;
      grant_readers_locked(units);
      if (rwait_ == 0) grant_pending_locked();
      return;
    }
    if (!state_.compare_exchange_weak(s, s & ~(kWriter | kWriters), std::memory_order_release,
                                      std::memory_order_relaxed))
      continue;
    std::uint64_t units = (s & kReaderMask) - rwait_;
    rwait_ = 0;
    grant_readers_locked(units);
    return;
  }
}

void RWMutex::grant_readers_locked(std::uint64_t units) noexcept {
  for (; units > 0; units--) {
    detail::Waiter* r = readers_.pop_front();
    if (!r) break;
    rt::unpark(r->parker);  // a lost claim: that reader releases it itself
  }
  rsem_ += units;
}

void RWMutex::grant_pending_locked() noexcept {
  detail::Waiter* w = std::exchange(pending_, nullptr);
  rt::unpark(w->parker);  // a lost claim: that writer releases it itself
}

// A reader counted while kWriter was set leaves (qlock_ held).
void RWMutex::depart_locked() noexcept {
  if (rwait_ == 0 || !pending_) {
    std::fputs("weft: RWMutex::unlock_shared() with no read lock held\n", stderr);
    std::abort();
  }
  if (--rwait_ == 0) grant_pending_locked();
}

void RWMutex::lock_shared_slow() {
  // Counted (fetch_add in lock_shared) while a writer was present.
  WEFT_CHAOS_POINT();  // counted, not queued: the writer's release may come first (rsem_)
  detail::Waiter w;
  {
    std::lock_guard<detail::SpinLock> g(qlock_);
    if (rsem_ > 0) {
      rsem_--;  // the writer has gone and left a unit for us
      return;
    }
    w.parker = rt::prepare_park(WaitKind::RWMutex, this);
    readers_.push_back(&w);
  }
  WakeReason r = rt::park(w.parker);
  if (r == WakeReason::Event) return;  // handed a read unit
  {
    std::lock_guard<detail::SpinLock> g(qlock_);
    if (w.queued) {
      readers_.remove(&w);
      state_.fetch_sub(1, std::memory_order_relaxed);  // withdraw: never a holder
    } else {
      // Granted: we hold the read lock and leave again.
      std::uint64_t s = state_.fetch_sub(1, std::memory_order_release);
      if (s & kWriter) depart_locked();
    }
  }
  rt::throw_unwind();
}

void RWMutex::unlock_shared_slow(std::uint64_t before) {
  if (!(before & kReaderMask)) {
    std::fputs("weft: RWMutex::unlock_shared() of a mutex not locked for reading\n", stderr);
    std::abort();
  }
  // A writer waits for the holders it counted to leave (we are one: a
  // holder counted after its CAS cannot exist). *this is alive: that
  // writer needs this call.
  WEFT_CHAOS_POINT();  // departed from state_, not yet from rwait_
  std::lock_guard<detail::SpinLock> g(qlock_);
  depart_locked();
}

// ---- Semaphore -----------------------------------------------------------------
// Waiters are queued in the parking lot under the semaphore's address
// (lot.hpp). state_ = free units << 1 | kWaiters (sync.hpp).
//
// Invariants. kWaiters is set iff the lot queue of this key is non-empty;
// both change only under the bucket lock. While kWaiters is set, no unit is
// free (units go straight to waiters), so the fast paths (a CAS taking a
// unit when one is free; a CAS adding units when kWaiters is clear) cannot
// change state_: it only changes under the bucket lock then. FIFO follows:
// nobody takes a unit while a waiter is queued, and release hands units to
// the oldest waiters.
//
// A waiter wakes with Event only when a release won the claim on its park
// and so handed it a unit; that wake is the transfer. A waiter whose
// timeout or cancellation won the claim took nothing: if a release popped
// it meanwhile, that release's unpark failed and it passed the unit to the
// next waiter (or to the count). The waiter unlinks itself under the bucket
// lock (clearing kWaiters if it was the last) and returns false or throws.
//
// Lifetime. A woken waiter returns without touching *this. release() wakes
// and then stores the units left over, all under the bucket lock; the
// destructor takes that lock, so freeing a semaphore as soon as a woken
// waiter returns waits out a release still inside. The fast paths' CAS is
// their last touch.
//
// Memory ordering: units move through state_ by CAS (acquire to take,
// release to add) or through the claim (unpark's acq_rel CAS, park's
// acquire load), both after the releaser's writes.

Semaphore::Semaphore(std::ptrdiff_t n) : state_(0) {
  if (n < 0 || n > max()) throw std::invalid_argument("weft: Semaphore: initial count out of range");
  state_.store(static_cast<std::int64_t>(n) << 1, std::memory_order_relaxed);
}

Semaphore::~Semaphore() {
  detail::LotBucket& b = detail::lot_bucket(this);
  b.lock.lock();
  b.lock.unlock();
}

bool Semaphore::acquire_slow(Clock::time_point deadline) {
  detail::LotWaiter w;
  w.key = this;
  detail::LotBucket& b = detail::lot_bucket(this);
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    std::int64_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      if (s >= 2) {
        if (state_.compare_exchange_weak(s, s - 2, std::memory_order_acquire, std::memory_order_relaxed)) return true;
        continue;
      }
      // No unit free. A deadline already passed (try_acquire_for(0)): no queueing.
      if (deadline != Clock::time_point::max() && deadline <= Clock::now()) return false;
      if (s == kWaiters) break;
      if (state_.compare_exchange_weak(s, kWaiters, std::memory_order_relaxed, std::memory_order_relaxed)) break;
    }
    w.parker = rt::prepare_park(WaitKind::Semaphore, this);
    detail::lot_push(b, &w);
  }
  WakeReason r = rt::park_until(w.parker, deadline);
  if (r == WakeReason::Event) return true;  // a release handed us a unit
  {
    std::lock_guard<detail::SpinLock> g(b.lock);
    if (w.queued) {
      detail::lot_remove(b, &w);
      if (!detail::lot_has_waiters(b, this)) state_.store(0, std::memory_order_relaxed);
    }
  }
  if (r == WakeReason::Cancel) rt::throw_unwind();
  return false;
}

void Semaphore::release(std::ptrdiff_t n) {
  if (n < 0) throw std::invalid_argument("weft: Semaphore::release: negative count");
  if (n == 0) return;
  if (n > max()) throw std::invalid_argument("weft: Semaphore::release: count would pass max()");
  const std::int64_t add = static_cast<std::int64_t>(n) << 1;
  std::int64_t s = state_.load(std::memory_order_relaxed);
  while (!(s & kWaiters)) {
    if ((s >> 1) > max() - n) throw std::invalid_argument("weft: Semaphore::release: count would pass max()");
    if (state_.compare_exchange_weak(s, s + add, std::memory_order_release, std::memory_order_relaxed)) return;
  }
  detail::LotBucket& b = detail::lot_bucket(this);
  std::lock_guard<detail::SpinLock> g(b.lock);
  s = state_.load(std::memory_order_relaxed);
  while (!(s & kWaiters)) {  // the last waiter left meanwhile
    if ((s >> 1) > max() - n) throw std::invalid_argument("weft: Semaphore::release: count would pass max()");
    if (state_.compare_exchange_weak(s, s + add, std::memory_order_release, std::memory_order_relaxed)) return;
  }
  // Waiters queued: state_ is kWaiters (no unit free) and only changes
  // under this lock.
  std::ptrdiff_t left = n;
  while (left > 0) {
    detail::LotWaiter* w = detail::lot_pop(b, this);
    if (!w) break;
    if (rt::unpark(w->parker)) left--;  // else: it timed out or was cancelled first
  }
  if (!detail::lot_has_waiters(b, this))
    state_.store(static_cast<std::int64_t>(left) << 1, std::memory_order_release);
}

// ---- Once ----------------------------------------------------------------------
// state_: kIdle -> kRunning (a CAS by the caller that runs f, no lock) ->
// kDone, or back to kIdle if f threw. Both moves out of kRunning are made
// under the lot bucket's lock of this Once, and a caller that finds
// kRunning queues under that lock after looking again: no lost wake.
// The move to kDone is the runner's last touch of *this: it then wakes the
// waiters (only the lot and their records), telling each through its
// record that f has run, so a woken waiter returns without touching *this
// (the Once may be freed by then). After a throw the runner wakes one
// waiter (the oldest whose claim it wins) to try again; that one is still
// inside call(), so it may touch *this.
// Memory ordering: the kDone store (release) pairs with call()'s acquire
// load; woken waiters see f's effects through the claim.

namespace {
struct OnceWaiter : detail::LotWaiter {
  bool done = false;  // set by the waker: f has run, return
};
}  // namespace

void Once::call_slow(void (*fn)(void*), void* arg) {
  detail::LotBucket& b = detail::lot_bucket(this);
  for (;;) {
    std::uint32_t s = state_.load(std::memory_order_acquire);
    if (s == kDone) return;
    if (s == kIdle) {
      if (state_.compare_exchange_weak(s, kRunning, std::memory_order_acquire, std::memory_order_relaxed)) {
        run(fn, arg);
        return;
      }
      continue;
    }
    rt::cancellation_point();  // we would wait for another caller's f
    OnceWaiter w;
    w.key = this;
    {
      std::lock_guard<detail::SpinLock> g(b.lock);
      if (state_.load(std::memory_order_acquire) != kRunning) continue;
      w.parker = rt::prepare_park(WaitKind::Once, this);
      detail::lot_push(b, &w);
    }
    WakeReason r = rt::park(w.parker);
    if (r == WakeReason::Event) {
      if (w.done) return;  // never touch *this again
      continue;            // f threw: try again
    }
    {
      std::lock_guard<detail::SpinLock> g(b.lock);
      if (w.queued) detail::lot_remove(b, &w);
      // Not queued: a waker popped us and lost the claim; it moved on.
    }
    rt::throw_unwind();
  }
}

void Once::run(void (*fn)(void*), void* arg) {
  detail::LotBucket& b = detail::lot_bucket(this);
  try {
    fn(arg);
  } catch (...) {
    std::lock_guard<detail::SpinLock> g(b.lock);
    state_.store(kIdle, std::memory_order_release);
    while (auto* w = static_cast<OnceWaiter*>(detail::lot_pop(b, this)))
      if (rt::unpark(w->parker)) break;  // w->done stays false: it retries
    throw;
  }
  std::lock_guard<detail::SpinLock> g(b.lock);
  state_.store(kDone, std::memory_order_release);
  // *this may be freed from here on: the key is only compared.
  while (auto* w = static_cast<OnceWaiter*>(detail::lot_pop(b, this))) {
    w->done = true;
    rt::unpark(w->parker);
  }
}

}  // namespace weft
