// weft/cancel.hpp: cancellation (API.md "Cancellation and structured
// concurrency"): Cancelled and Timeout, the calling fiber's cancellation
// state, CancelShield, and deadlines without a context (with_timeout,
// with_deadline). Scopes: weft/scope.hpp. JoinHandle::cancel: runtime.hpp.
//
// The model. A cancelled fiber's cancellation points (every call that can
// park it to wait, but Mutex locks) throw Cancelled: at once if it is
// parked in one, else when it reaches one. The runtime does it in
// park/unpark (park.hpp, fiber.hpp), so every primitive built on them gets
// it, with its own cleanup: the operation either happened (a waker
// completed it first: it returns normally and the next point throws) or
// did nothing. Cancellation from outside is sticky; a deadline's lasts
// until its with_timeout frame ends.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include <weft/park.hpp>

namespace weft {

// Thrown by a cancellation point of a cancelled fiber.
struct Cancelled : std::exception {
  const char* what() const noexcept override { return "weft: the fiber was cancelled"; }
};

// A deadline passed (std::errc::timed_out): a socket's deadline, with_timeout.
// what() is the message alone ("weft: read: deadline exceeded"), without
// system_error's ": Connection timed out" suffix saying it twice; code()
// is std::errc::timed_out.
struct Timeout : std::system_error {
  explicit Timeout(const std::string& what)
      : std::system_error(std::make_error_code(std::errc::timed_out), what), msg_(what) {}
  const char* what() const noexcept override { return msg_.what(); }

 private:
  std::runtime_error msg_;  // a refcounted string: copying the exception never throws
};

namespace this_fiber {
// Cancellation of the calling fiber was requested (or a deadline of an
// enclosing with_timeout passed). True inside a CancelShield too. False on
// a plain thread.
bool cancelled() noexcept;
// Throws Cancelled if cancelled() and no CancelShield is active: for loops
// that compute without reaching a cancellation point.
void check_cancelled();
// A token whose stop is requested when the calling fiber is cancelled
// (inside a with_timeout: also when its deadline passes). Stop callbacks
// run on the thread that cancels (possibly a worker between fibers, for a
// deadline): keep them short and never park in them. On a plain thread: a
// token that never stops.
std::stop_token stop_token();
}  // namespace this_fiber

// While it lives, no cancellation point of the calling fiber throws (for
// cleanup that must park); cancelled() still reports the truth. Nests.
class CancelShield {
 public:
  CancelShield() noexcept;
  ~CancelShield();
  CancelShield(const CancelShield&) = delete;
  CancelShield& operator=(const CancelShield&) = delete;

 private:
  rt::Fiber* f_;
};

namespace rt {
// A with_timeout/with_deadline frame on the calling fiber's stack
// (runtime/src/cancel.cpp). Nested frames take the earliest deadline: a
// frame whose deadline is not earlier than its outer one's arms no timer.
struct DeadlineFrame {
  explicit DeadlineFrame(Clock::time_point deadline);
  ~DeadlineFrame() { (void)close(); }
  DeadlineFrame(const DeadlineFrame&) = delete;
  DeadlineFrame& operator=(const DeadlineFrame&) = delete;
  // Ends the frame (idempotent): disarms its timer, waits out a firing one,
  // and clears the fiber's deadline mark if it is this frame's. True when
  // this frame's deadline cancelled the fiber and nobody cancelled it from
  // outside.
  bool close() noexcept;

  Fiber* fiber = nullptr;
  DeadlineFrame* outer = nullptr;
  std::uint32_t depth = 0;
  Clock::time_point effective{};  // min(deadline, outer's)
  std::stop_source src{std::nostopstate};  // made by this_fiber::stop_token(); under cancel_lock
  Timer timer;
  bool armed = false;
  bool closed = false;
  bool mine = false;
  std::atomic<bool> fired{false};  // the timer's callback is over (its last touch)
};
}  // namespace rt

// Runs f() in the calling fiber. If it has not returned by `deadline`, the
// fiber's cancellation points throw Cancelled inside f, and with_deadline
// throws Timeout instead. A cancellation from outside still surfaces as
// Cancelled; a value f returns after the deadline (it swallowed the
// cancellation) is returned. Nested frames take the earliest deadline.
// Call on a fiber (std::logic_error otherwise).
template <class F>
auto with_deadline(Clock::time_point deadline, F&& f) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  rt::DeadlineFrame frame(deadline);
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(f);
      frame.close();
    } else {
      R r = std::invoke(f);
      frame.close();
      return r;
    }
  } catch (const Cancelled&) {
    if (frame.close()) throw Timeout("weft: with_timeout: the deadline passed");
    throw;
  }
}

// with_deadline(now + d, f).
template <class F>
auto with_timeout(std::chrono::nanoseconds d, F&& f) -> std::invoke_result_t<F&> {
  auto now = Clock::now();
  auto room = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::time_point::max() - now);
  Clock::time_point t = d >= room ? Clock::time_point::max() : now + std::chrono::duration_cast<Clock::duration>(d);
  return with_deadline(t, std::forward<F>(f));
}

}  // namespace weft
