// futex_freebsd.cpp: futex.hpp's contract on FreeBSD's _umtx_op (the call
// its libthr and Go's runtime use). NEVER COMPILED: no FreeBSD machine was
// available (README "Platforms"). Kept minimal so that a port is a matter
// of compiling it.
#include <sys/types.h>
#include <sys/umtx.h>

#include <cerrno>
#include <chrono>

#include "futex.hpp"

namespace weft::rt::platform {

void futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept {
  if (deadline_ns == kFutexNoDeadline) {
    _umtx_op(w, UMTX_OP_WAIT_UINT_PRIVATE, val, nullptr, nullptr);
    return;
  }
  std::int64_t d = deadline_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count();
  if (d <= 0) return;
  // A relative timeout on CLOCK_MONOTONIC: uaddr carries the struct's size.
  _umtx_time ut{};
  ut._timeout.tv_sec = d / 1000000000;
  ut._timeout.tv_nsec = d % 1000000000;
  ut._flags = 0;
  ut._clockid = CLOCK_MONOTONIC;
  _umtx_op(w, UMTX_OP_WAIT_UINT_PRIVATE, val, reinterpret_cast<void*>(sizeof ut), &ut);
}

void futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept {
  _umtx_op(w, UMTX_OP_WAKE_PRIVATE, n, nullptr, nullptr);
}

}  // namespace weft::rt::platform
