// weft/timer.hpp: Timer and Ticker, Go's time.Timer and time.Ticker
// (API.md "Timers and signals"), with Go 1.19's semantics.
//
//   weft::Timer t(5s);                      // fires once, 5 s from now
//   weft::select(weft::recv(jobs, ...), weft::recv(t.chan(), ...));
//
//   weft::Ticker tick(100ms);               // fires every 100 ms until stopped
//   for (auto now : tick.chan()) { ... }    // (the channel is never closed)
//
// Both own a channel of capacity 1 that receives the firing time
// (steady_clock::now() when the timer fired). A Timer sends once; a Ticker
// offers a value every period and drops it when the previous one has not
// been received yet (a slow receiver sees fewer ticks, never a backlog),
// keeping its schedule: tick k is due at start + k * period, whatever the
// latency of the earlier ones, and periods that passed entirely while the
// receiver was slow are skipped.
//
// stop() and reset() never touch the channel: a value already in it stays
// there (Go 1.19), so the idiom to re-arm a Timer that may have fired is
//   if (!t.stop()) t.chan().try_recv();   // drain a fired value, if any
//   t.reset(d);
// Unlike Go 1.19 no stale value can arrive after stop() or reset() has
// returned: a firing that loses the race with them sends nothing.
//
// They are built on the runtime's timers, with no allocation per tick or per
// reset (one small block and the channel, at construction). A Timer or
// Ticker is created and reset on a fiber of a running runtime (otherwise
// std::logic_error); stop() and the destructor may run anywhere. The
// destructor stops it; copies of chan() may outlive it (they then never
// receive another value). An armed timer counts as one for the deadlock
// detector: a fiber waiting on chan() of an armed Timer or a running Ticker
// is never reported as deadlocked.
//
// Durations: every function taking std::chrono::nanoseconds also takes any
// std::chrono::duration (1.5s, duration<long double>), rounded up to whole
// nanoseconds; a duration too long to represent (or +infinity) means "never"
// (it is never armed, so a fiber waiting on it alone is a deadlock); NaN is
// std::invalid_argument.
//
// `after(d)` in a select differs from a Timer: its clock starts anew at each
// select, whereas a Timer made once before a loop is an overall deadline
// across every iteration.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ratio>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <weft/chan.hpp>

namespace weft {

namespace detail {

struct TimerState;

// d in whole nanoseconds, rounded up (towards +infinity), saturated at
// nanoseconds::min()/max() instead of overflowing. NaN: std::invalid_argument.
template <class Rep, class Period>
std::chrono::nanoseconds timer_ns(std::chrono::duration<Rep, Period> d) {
  using std::chrono::nanoseconds;
  using NsRep = nanoseconds::rep;
  constexpr NsRep kMax = std::numeric_limits<NsRep>::max(), kMin = std::numeric_limits<NsRep>::min();
  if constexpr (std::is_floating_point_v<Rep>) {
    // In long double: exact for every int64 and wide enough for any Period.
    long double ns = static_cast<long double>(d.count()) * Period::num * 1e9L / Period::den;
    if (std::isnan(ns)) throw std::invalid_argument("weft: timer duration is NaN");
    ns = std::ceil(ns);
    if (ns >= static_cast<long double>(kMax)) return nanoseconds::max();
    if (ns <= static_cast<long double>(kMin)) return nanoseconds::min();
    return nanoseconds(static_cast<NsRep>(ns));
  } else {
    static_assert(std::is_integral_v<Rep>, "weft: timer durations need an arithmetic representation");
    using R = std::ratio_divide<Period, std::nano>;  // one tick of d in nanoseconds
    if constexpr (R::den == 1) {
      // Coarser than (or equal to) a nanosecond: a multiplication, checked.
      constexpr auto lim = static_cast<std::uintmax_t>(kMax / R::num);  // |count| <= lim fits
      auto c = d.count();
      if constexpr (std::is_signed_v<Rep>) {
        if (c < 0) {
          if (static_cast<std::uintmax_t>(-(c + 1)) >= lim) return nanoseconds::min();
          return nanoseconds(static_cast<NsRep>(c) * R::num);
        }
      }
      if (static_cast<std::uintmax_t>(c) > lim) return nanoseconds::max();
      return nanoseconds(static_cast<NsRep>(c) * R::num);
    } else {
      // Finer than a nanosecond: a division, rounded up by hand (no
      // overflow: the quotient is smaller than the count).
      static_assert(R::num == 1, "weft: timer duration periods must be a multiple or a fraction of a nanosecond");
      using W = std::common_type_t<Rep, std::intmax_t>;
      W c = d.count(), q = c / static_cast<W>(R::den);
      if (q * static_cast<W>(R::den) < c) q++;  // round up (towards +infinity)
      if (q > static_cast<W>(kMax)) return nanoseconds::max();
      return nanoseconds(static_cast<NsRep>(q));
    }
  }
}

// The state a Timer or Ticker shares with its armed runtime timer
// (channels/src/timer.cpp). create takes a reference on the channel's core.
TimerState* timer_create(ChanCore* core);
void timer_release(TimerState* s) noexcept;  // drops the owner's reference
bool timer_stop(TimerState* s) noexcept;     // true: it was active
bool timer_reset(TimerState* s, std::chrono::nanoseconds d);  // one-shot; true: it was active
void ticker_reset(TimerState* s, std::chrono::nanoseconds period);  // periodic
void timer_require_fiber(const char* what);  // throws std::logic_error off a fiber

}  // namespace detail

// Go's time.Timer: fires once, sending the firing time on chan().
class Timer {
 public:
  // Fires once d has passed; d <= 0 fires at once (the value is in chan()
  // when the constructor returns). Throws std::logic_error off a fiber.
  explicit Timer(std::chrono::nanoseconds d);
  template <class Rep, class Period>
  explicit Timer(std::chrono::duration<Rep, Period> d) : Timer(detail::timer_ns(d)) {}
  ~Timer();  // stops it
  Timer(Timer&& o) noexcept : s_(std::exchange(o.s_, nullptr)), ch_(std::move(o.ch_)) {}
  Timer& operator=(Timer&& o) noexcept;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Capacity 1; receives the firing time once per arming. Never closed.
  // (A moved-from Timer's is a nil channel.)
  Chan<Clock::time_point>& chan() noexcept { return ch_; }

  // Stops the timer. True if this call stopped it before it fired; false if
  // it had already fired or been stopped. A value already in chan() stays.
  // Any thread. A moved-from Timer returns false.
  bool stop() noexcept { return s_ && detail::timer_stop(s_); }

  // Re-arms it to fire d from now (d <= 0: at once), whether it was active,
  // fired or stopped. True if it was still active (armed, not yet fired).
  // A value already in chan() stays (drain it first, see the file comment).
  // Throws std::logic_error off a fiber or on a moved-from Timer.
  bool reset(std::chrono::nanoseconds d) { return detail::timer_reset(checked(), d); }
  template <class Rep, class Period>
  bool reset(std::chrono::duration<Rep, Period> d) {
    return reset(detail::timer_ns(d));
  }

 private:
  detail::TimerState* checked() const;
  detail::TimerState* s_ = nullptr;
  Chan<Clock::time_point> ch_;
};

// Go's time.Ticker: sends the time on chan() every period until stopped.
class Ticker {
 public:
  // The first tick is due one period from now. period <= 0:
  // std::invalid_argument; off a fiber: std::logic_error.
  explicit Ticker(std::chrono::nanoseconds period);
  template <class Rep, class Period>
  explicit Ticker(std::chrono::duration<Rep, Period> period) : Ticker(detail::timer_ns(period)) {}
  ~Ticker();  // stops it
  Ticker(Ticker&& o) noexcept : s_(std::exchange(o.s_, nullptr)), ch_(std::move(o.ch_)) {}
  Ticker& operator=(Ticker&& o) noexcept;
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

  // Capacity 1: a tick finding it full is dropped. Never closed.
  Chan<Clock::time_point>& chan() noexcept { return ch_; }

  // No more ticks after it returns; a tick already in chan() stays. Any
  // thread; idempotent; does nothing on a moved-from Ticker.
  void stop() noexcept {
    if (s_) detail::timer_stop(s_);
  }

  // Stops it and restarts it with a new period: the next tick is due one
  // period from now (also after stop()). period <= 0: std::invalid_argument;
  // off a fiber or moved-from: std::logic_error.
  void reset(std::chrono::nanoseconds period);
  template <class Rep, class Period>
  void reset(std::chrono::duration<Rep, Period> period) {
    reset(detail::timer_ns(period));
  }

 private:
  detail::TimerState* s_ = nullptr;
  Chan<Clock::time_point> ch_;
};

}  // namespace weft
