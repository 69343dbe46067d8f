// futex_darwin.cpp: futex.hpp's contract on macOS. os_sync_wait_on_address
// (public since macOS 14.4), else __ulock_wait/__ulock_wake, the private
// calls libc++ and other runtimes used before it (declared here; their
// operation codes are xnu's sys/ulock.h). NEVER COMPILED: no macOS machine
// was available (README "Platforms"). Kept minimal so that a port is a
// matter of compiling it.
#if __has_include(<os/os_sync_wait_on_address.h>)
#include <os/os_sync_wait_on_address.h>
#define WEFT_HAVE_OS_SYNC 1
#endif

#include <chrono>
#include <cstdint>

#include "futex.hpp"

extern "C" int __ulock_wait(std::uint32_t operation, void* addr, std::uint64_t value, std::uint32_t timeout_us);
extern "C" int __ulock_wake(std::uint32_t operation, void* addr, std::uint64_t wake_value);

namespace weft::rt::platform {
namespace {
constexpr std::uint32_t kUlCompareAndWait = 1, kUlfWakeAll = 0x100, kUlfNoErrno = 0x01000000;
}

void futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept {
  std::int64_t d = 0;
  if (deadline_ns != kFutexNoDeadline) {
    d = deadline_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
    if (d <= 0) return;
  }
#ifdef WEFT_HAVE_OS_SYNC
  if (__builtin_available(macOS 14.4, *)) {
    if (deadline_ns == kFutexNoDeadline)
      os_sync_wait_on_address(w, val, sizeof *w, OS_SYNC_WAIT_ON_ADDRESS_NONE);
    else
      os_sync_wait_on_address_with_timeout(w, val, sizeof *w, OS_SYNC_WAIT_ON_ADDRESS_NONE,
                                           OS_CLOCK_MACH_ABSOLUTE_TIME, static_cast<std::uint64_t>(d));
    return;
  }
#endif
  // __ulock_wait: a timeout in microseconds, 0 meaning none (so round up).
  std::uint64_t us = deadline_ns == kFutexNoDeadline ? 0 : (static_cast<std::uint64_t>(d) + 999) / 1000;
  __ulock_wait(kUlCompareAndWait | kUlfNoErrno, w, val, us > UINT32_MAX ? UINT32_MAX : static_cast<std::uint32_t>(us));
}

void futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept {
#ifdef WEFT_HAVE_OS_SYNC
  if (__builtin_available(macOS 14.4, *)) {
    if (n == 1)
      os_sync_wake_by_address_any(w, sizeof *w, OS_SYNC_WAKE_BY_ADDRESS_NONE);
    else
      os_sync_wake_by_address_all(w, sizeof *w, OS_SYNC_WAKE_BY_ADDRESS_NONE);
    return;
  }
#endif
  __ulock_wake(kUlCompareAndWait | kUlfNoErrno | (n == 1 ? 0 : kUlfWakeAll), w, 0);
}

}  // namespace weft::rt::platform
