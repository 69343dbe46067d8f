// poller.hpp: the platform contract of the netpoller, stated once; the
// backends (epoll.cpp on Linux, kqueue.cpp on BSD/macOS or with libkqueue)
// only implement it. Exactly one backend is compiled (meson -Dpoller=).
//
// Contract:
// - arm(fd, key): watch fd for readability and writability, edge-triggered
//   (epoll EPOLLET, kqueue EV_CLEAR): an event is reported when the state
//   changes to ready, once, not for as long as it stays ready. Registering
//   reports the current readiness once. Each fd is armed once for both
//   directions and stays armed until disarm() or close(fd).
// - disarm(fd): stop watching. Closing the fd does it implicitly on epoll
//   and kernel kqueues, not on libkqueue (kDisarmBeforeClose): there every
//   fd is disarmed before it is closed, and forget(fd) stands in for
//   disarm when the closing thread has no Backend at hand.
// - wait(deadline, out, max): block until at least one event, a wake(), or
//   the deadline (Clock::time_point::min(): do not block; max(): no limit),
//   and store up to max events. Returns how many. Error and hang-up
//   conditions are reported as both readable and writable: the next system
//   call on the fd surfaces the error, except where the backend had to
//   take the error from the socket to report it (libkqueue reads SO_ERROR,
//   which clears it): then PollEvent::error carries it and the socket layer
//   surfaces it (pollfd.hpp, take_error). Interruptions return 0 events.
// - Regular files and directories are always ready and never armed: arm()
//   may refuse them (epoll: EPERM), wait_foreign checks first.
// - wake(): make a concurrent or the next wait() return promptly; callable
//   from any thread; wakes coalesce.
// Only one thread calls wait() at a time (the runtime serialises pollers);
// arm/disarm/wake may race with it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <weft/park.hpp>

namespace weft::net::detail {

struct PollEvent {
  std::uint64_t key;
  bool readable;
  bool writable;
  int error;  // a socket error the backend consumed to report this event, else 0
};

class Backend {
 public:
  static constexpr int kMaxEvents = 128;
#ifdef WEFT_LIBKQUEUE
  static constexpr bool kDisarmBeforeClose = true;
  static constexpr bool kConsumesErrors = true;  // PollEvent::error may be set
#else
  static constexpr bool kDisarmBeforeClose = false;
  static constexpr bool kConsumesErrors = false;
#endif
  // kqueue: the longest wait asked of the kernel (Go's 1e6 s; Darwin
  // refuses more than 1e8 s with EINVAL). Longer waits wake early and wait again.
  static constexpr std::int64_t kMaxWaitNs = 1'000'000LL * 1'000'000'000LL;
  Backend();   // throws std::system_error
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  void arm(int fd, std::uint64_t key);  // throws std::system_error
  void disarm(int fd) noexcept;
  static void forget(int fd) noexcept;
  int wait(Clock::time_point deadline, PollEvent* out, int max);
  void wake() noexcept;

 private:
  // The kernel's event array, in the object rather than on the stack: a
  // busy worker polls on whatever fiber stack it is running, and a parked
  // fiber should keep costing one page. Only the polling thread uses it.
  struct Raw;
  std::unique_ptr<Raw> raw_;
  int qfd_ = -1;     // the epoll or kqueue descriptor
  [[maybe_unused]] int wakefd_ = -1;  // epoll: an eventfd; kqueue: unused (EVFILT_USER)
  // Set by wake() before signalling, cleared by wait() when it drains the
  // signal: wakes between the two coalesce into one write.
  std::atomic<bool> wake_pending_{false};
};

}  // namespace weft::net::detail
