// timer.cpp: weft::Timer and weft::Ticker (weft/timer.hpp) on the runtime's
// one-shot timers (park.hpp: rt::Timer, timer_start, timer_cancel).
//
// One TimerState per Timer/Ticker, allocated at construction beside its
// channel; arming, firing, stopping and resetting allocate nothing.
//
// Shared state (TimerState):
//   lock     a SpinLock. Guards every field below but refs and core. Taken
//            by the owner's calls (any thread) and by the runtime timer's
//            callback (on a worker, with no runtime lock held, possibly on
//            the stack of a fiber that is parking: the callback must never
//            park or yield, so it sends with chan_offer below, which spends
//            no cooperative budget). Lock order: a TimerState's lock, then
//            its channel's lock (the send), then the runtime's leaves
//            (TimerHeap::lock_ in timer_start/timer_cancel, the idle and
//            global-queue locks in the unpark). Nothing takes it while
//            holding any of those.
//   timer    the runtime timer. We write when/fn/a/seq only under lock and
//            only while it is in no heap (never armed yet, cancelled, or
//            taken by its callback, after which the runtime never touches
//            it again: park.hpp); the runtime reads them under its heap lock.
//   gen      the current arming's number (timer.seq of the armed firing).
//            Every stop/reset bumps it, so a callback already taken from the
//            heap when timer_cancel() lost the race finds seq != gen and
//            does nothing: a firing that loses to stop()/reset() sends no
//            value, and stop() may report that it stopped it.
//   armed    a callback of generation gen is pending (in a heap, or taken
//            and not yet run); it owns one reference.
//   active   Timer: armed or waiting forever, not yet fired (what stop() and
//            reset() report). Ticker: running.
//   period   0 for a Timer; a Ticker's period in ns (> 0).
//   refs     atomic: the owner's reference plus one per pending callback
//            (current or stale generation). The last one frees the state
//            and drops its channel reference. This is what makes the owner's
//            destructor safe against a callback running concurrently on
//            another worker: the callback holds its own reference until
//            it has unlocked, and touches nothing afterwards. acq_rel on
//            the decrement: the freeing side sees every other side's writes.
//   core     the channel, with a reference of our own: the user's copies of
//            chan() may outlive the Timer, and the Timer's handle may be
//            gone while a callback still sends.
//
// Invariants (under lock): armed implies active; armed implies timer is in
// a heap or its gen-callback is in flight; refs == 1 + (armed ? 1 : 0) +
// stale callbacks in flight.
//
// Runtime shutdown: every fiber is unwound before run() returns, so a
// Timer/Ticker owned by a fiber (a local, or a member of what a fiber owns)
// is destroyed, hence disarmed, while the runtime lives. One that outlives
// run() (a static, a leak) had its runtime timer dropped by the runtime's
// teardown, which sets timer.fn to nullptr and removes it from the heap
// (runtime/src/timer.cpp): timer_cancel() then returns false, and we take
// the callback's reference back ourselves (disarm below), so it neither
// crashes nor leaks.
//
// Rejected alternatives: waiting in stop() for a running callback to finish
// (Go 1.19 does so); the generation check gives the same guarantee (no
// value after stop() returns) without a wait, and with no wait the
// destructor can never block on a callback. A ticker re-armed from outside
// the callback (a fiber per ticker, as a hand-rolled sleep_until loop):
// a park and a switch per tick instead of one heap insertion.
#include <weft/runtime.hpp>
#include <weft/sync.hpp>
#include <weft/timer.hpp>

#include <mutex>
#include <new>
#include <string>

#include "chan_core.hpp"

namespace weft::detail {

struct TimerState {
  SpinLock lock;
  std::atomic<std::uint32_t> refs{1};
  bool armed = false;
  bool active = false;
  std::int64_t period = 0;
  std::uint64_t gen = 0;
  rt::Timer timer;
  ChanCore* core = nullptr;
};

namespace {

constexpr std::int64_t kNever = INT64_MAX;

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// now + d in ns since the clock's epoch, kNever if not representable.
std::int64_t deadline_ns(std::int64_t now, std::chrono::nanoseconds d) noexcept {
  std::int64_t r;
  if (__builtin_add_overflow(now, d.count(), &r)) return d.count() > 0 ? kNever : 0;
  return r;
}

Clock::time_point to_time(std::int64_t ns) noexcept {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

// A send that never parks, yields, spends budget or throws: try_send for a
// caller that may be a timer callback on a parking fiber's stack (where a
// budget yield would switch away mid-park). A full or closed channel drops
// the value. Called with the TimerState lock held.
void chan_offer(ChanCore* c, Clock::time_point v) noexcept {
  rt::DeferredWake wake;
  c->lock.lock();
  send_locked(c, &v, &wake);
  c->lock.unlock();
  wake.fire();
}

void release(TimerState* s) noexcept {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  chan_release(s->core);
  delete s;
}

// With s->lock held: withdraws the pending callback of the current
// generation, if any. Its reference comes back to us when timer_cancel()
// removed it, or when the runtime's teardown dropped it (fn == nullptr);
// otherwise the callback is in flight and, finding gen changed, drops it.
void disarm(TimerState* s) noexcept {
  s->gen++;
  if (!s->armed) return;
  s->armed = false;
  if (rt::timer_cancel(s->timer) || s->timer.fn == nullptr) s->refs.fetch_sub(1, std::memory_order_relaxed);  // never the last: the owner holds one
}

void on_fire(void* a, void*, std::uint64_t seq) noexcept;

// With s->lock held, not armed: arms the runtime timer for `when` (ns).
void arm(TimerState* s, std::int64_t when) noexcept {
  s->timer.when = to_time(when);
  s->timer.fn = on_fire;
  s->timer.a = s;
  s->timer.seq = s->gen;
  s->refs.fetch_add(1, std::memory_order_relaxed);  // the callback's; the owner's keeps s alive meanwhile
  s->armed = true;
  rt::timer_start(s->timer);
}

// The runtime timer's callback: on a worker, no runtime lock held.
void on_fire(void* a, void*, std::uint64_t seq) noexcept {
  auto* s = static_cast<TimerState*>(a);
  {
    std::lock_guard<SpinLock> g(s->lock);
    if (seq == s->gen && s->armed) {
      std::int64_t now = now_ns();
      chan_offer(s->core, to_time(now));
      s->armed = false;
      if (s->period == 0) {
        s->active = false;
      } else {
        // Go's ticker schedule: the next tick is the first one due after
        // now, counted from the one that just fired (late ticks are skipped,
        // latency does not accumulate).
        std::int64_t due = std::chrono::duration_cast<std::chrono::nanoseconds>(s->timer.when.time_since_epoch()).count();
        std::int64_t periods = (now > due ? (now - due) / s->period : 0) + 1, step, next;
        if (!__builtin_mul_overflow(periods, s->period, &step) && !__builtin_add_overflow(due, step, &next) &&
            next != kNever) {
          s->timer.when = to_time(next);  // same generation: our reference carries over
          s->armed = true;
          rt::timer_start(s->timer);
          return;
        }
        // The next tick is beyond the clock's range: it never comes.
      }
    }
  }
  release(s);  // a stale generation's callback, or a firing that armed nothing
}

}  // namespace

void timer_require_fiber(const char* what) {
  if (!in_fiber())
    throw std::logic_error(std::string(what) + " must be called on a fiber of a running weft runtime");
}

TimerState* timer_create(ChanCore* core) {
  auto* s = new TimerState;
  s->core = core;
  chan_retain(core);
  return s;
}

void timer_release(TimerState* s) noexcept { release(s); }

bool timer_stop(TimerState* s) noexcept {
  std::lock_guard<SpinLock> g(s->lock);
  bool was = s->active;
  disarm(s);
  s->active = false;
  return was;
}

bool timer_reset(TimerState* s, std::chrono::nanoseconds d) {
  timer_require_fiber("weft::Timer::reset");
  std::lock_guard<SpinLock> g(s->lock);
  bool was = s->active;
  disarm(s);
  std::int64_t now = now_ns();
  if (d.count() <= 0) {
    s->active = false;
    chan_offer(s->core, to_time(now));  // fires at once
    return was;
  }
  s->active = true;
  if (std::int64_t when = deadline_ns(now, d); when != kNever) arm(s, when);
  return was;
}

void ticker_reset(TimerState* s, std::chrono::nanoseconds period) {
  if (period.count() <= 0) throw std::invalid_argument("weft::Ticker: non-positive period");
  timer_require_fiber("weft::Ticker::reset");
  std::lock_guard<SpinLock> g(s->lock);
  disarm(s);
  s->period = period.count();
  s->active = true;
  if (std::int64_t when = deadline_ns(now_ns(), period); when != kNever) arm(s, when);
}

}  // namespace weft::detail

namespace weft {

Timer::Timer(std::chrono::nanoseconds d) {
  detail::timer_require_fiber("weft::Timer");
  Chan<Clock::time_point> ch(1);
  s_ = detail::timer_create(ch.core());
  ch_ = std::move(ch);
  detail::timer_reset(s_, d);  // cannot throw now: we are on a fiber
}

Timer::~Timer() {
  if (!s_) return;
  detail::timer_stop(s_);
  detail::timer_release(s_);
}

Timer& Timer::operator=(Timer&& o) noexcept {
  if (this != &o) {
    Timer old(std::move(*this));
    s_ = std::exchange(o.s_, nullptr);
    ch_ = std::move(o.ch_);
  }
  return *this;
}

detail::TimerState* Timer::checked() const {
  if (!s_) throw std::logic_error("weft::Timer::reset on a moved-from Timer");
  return s_;
}

Ticker::Ticker(std::chrono::nanoseconds period) {
  if (period.count() <= 0) throw std::invalid_argument("weft::Ticker: non-positive period");
  detail::timer_require_fiber("weft::Ticker");
  Chan<Clock::time_point> ch(1);
  s_ = detail::timer_create(ch.core());
  ch_ = std::move(ch);
  detail::ticker_reset(s_, period);
}

Ticker::~Ticker() {
  if (!s_) return;
  detail::timer_stop(s_);
  detail::timer_release(s_);
}

Ticker& Ticker::operator=(Ticker&& o) noexcept {
  if (this != &o) {
    Ticker old(std::move(*this));
    s_ = std::exchange(o.s_, nullptr);
    ch_ = std::move(o.ch_);
  }
  return *this;
}

void Ticker::reset(std::chrono::nanoseconds period) {
  if (!s_) throw std::logic_error("weft::Ticker::reset on a moved-from Ticker");
  detail::ticker_reset(s_, period);
}

}  // namespace weft
