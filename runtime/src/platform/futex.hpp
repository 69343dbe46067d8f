// platform/futex.hpp: wait on a 32-bit word until it is woken (the kernel's
// futex, or what stands in for it). The runtime's only blocking primitive
// for OS threads: idle workers (Worker::sleep_word), plain threads parked in
// weft primitives (Fiber::thread_wake), run()'s wait for main and for the
// unwind (Runtime::main_done, exit_epoch), the monitor's sleep.
//
// The contract every implementation keeps (the callers rely on nothing more):
// - futex_wait(w, val, deadline_ns) returns at once if *w != val when it
//   looks (the look and the sleep are atomic with respect to futex_wake:
//   a wake that follows a store changing *w is never lost); otherwise it
//   sleeps until a futex_wake on w, until deadline_ns (steady clock,
//   nanoseconds since its epoch; kNoDeadline: none) or spuriously. Callers
//   re-check their condition in a loop; none needs to know why it returned.
// - futex_wake(w, n) wakes at least one (n == 1) or all (n > 1) of the
//   threads waiting on w. It never reads *w: the word may belong to an
//   object its waiter is free to destroy once it sees the store.
// - Both are noexcept and allocate nothing.
//
// Implementations (meson picks one from host_machine.system(), or the
// generic one everywhere with -Dplatform=generic):
//   Linux    FUTEX_WAIT_PRIVATE / FUTEX_WAKE_PRIVATE, inline here: the same
//            code the runtime had before this layer existed.
//   FreeBSD  _umtx_op(UMTX_OP_WAIT_UINT_PRIVATE / UMTX_OP_WAKE_PRIVATE)
//            (futex_freebsd.cpp; never compiled: README "Platforms").
//   macOS    os_sync_wait_on_address / os_sync_wake_by_address_any|all
//            (macOS 14.4+), else the older __ulock_wait / __ulock_wake
//            (futex_darwin.cpp; never compiled).
//   generic  POSIX only (futex_generic.cpp): 64 buckets hashed by address,
//            each a mutex and a condition variable. The waiter compares *w
//            under its bucket's mutex and sleeps on the condvar, which
//            releases the mutex atomically; a waker takes the same mutex
//            after its store, so either the waiter's compare comes after the
//            store (mutex order: it sees the new value and returns) or the
//            waiter is already asleep when the waker notifies. Buckets are
//            shared, so a wake notifies every sleeper of its bucket: the
//            others see a spurious return, which the contract allows.
//            The generic functions are compiled in every build, under
//            their own names, so tests/runtime/platform_test.cpp runs them
//            on every platform.
// Shared state: only the generic buckets (immortal; each bucket's mutex
// guards its sleeper count, a leaf lock: nothing else is taken under it).
#pragma once

#include <atomic>
#include <cstdint>

#if defined(WEFT_PLATFORM_LINUX)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#endif

namespace weft::rt::platform {

inline constexpr std::int64_t kFutexNoDeadline = INT64_MAX;

// The POSIX fallback, built everywhere (see above).
void generic_futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept;
void generic_futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept;

#if defined(WEFT_PLATFORM_LINUX)

inline void futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept {
  timespec ts{};
  timespec* tp = nullptr;
  if (deadline_ns != kFutexNoDeadline) {
    std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::steady_clock::now().time_since_epoch())
                           .count();
    std::int64_t d = deadline_ns - now;
    if (d <= 0) return;
    ts.tv_sec = d / 1000000000;
    ts.tv_nsec = d % 1000000000;
    tp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(w), FUTEX_WAIT_PRIVATE, val, tp, nullptr, 0);
}

inline void futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(w), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

#elif defined(WEFT_PLATFORM_GENERIC)

inline void futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept {
  generic_futex_wait(w, val, deadline_ns);
}
inline void futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept { generic_futex_wake(w, n); }

#else  // FreeBSD, macOS: futex_<system>.cpp

void futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept;
void futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept;

#endif

}  // namespace weft::rt::platform
