// futex_generic.cpp: the POSIX stand-in for a futex (the argument is in
// futex.hpp). Built on every platform: the generic build uses it as the
// runtime's futex, and tests/runtime/platform_test.cpp tests it everywhere.
//
// Shared state: kBuckets immortal buckets. Bucket::mu guards Bucket::sleepers
// (a leaf lock: nothing else is taken while it is held). The word itself is
// read under mu by the waiter (acquire) and written by the waker before it
// takes mu, so the mutex orders the two.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "futex.hpp"

namespace weft::rt::platform {
namespace {

struct alignas(64) Bucket {
  std::mutex mu;
  std::condition_variable cv;
  unsigned sleepers = 0;  // guarded by mu
};

constexpr std::size_t kBuckets = 64;

Bucket& bucket_of(const void* w) noexcept {
  // Never destroyed: a detached thread may wake a word during exit.
  static Bucket* buckets = new Bucket[kBuckets];
  auto a = reinterpret_cast<std::uintptr_t>(w);
  return buckets[((a >> 2) ^ (a >> 9) ^ (a >> 16)) % kBuckets];
}

}  // namespace

void generic_futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t val, std::int64_t deadline_ns) noexcept {
  using std::chrono::steady_clock;
  Bucket& b = bucket_of(w);
  std::unique_lock<std::mutex> g(b.mu);
  if (w->load(std::memory_order_acquire) != val) return;
  b.sleepers++;
  if (deadline_ns == kFutexNoDeadline) {
    b.cv.wait(g);
  } else {
    b.cv.wait_until(g, steady_clock::time_point(std::chrono::nanoseconds(deadline_ns)));
  }
  b.sleepers--;
}

void generic_futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept {
  (void)n;  // every sleeper of the bucket is notified: they may wait on other words
  Bucket& b = bucket_of(w);
  std::lock_guard<std::mutex> g(b.mu);
  if (b.sleepers) b.cv.notify_all();
}

}  // namespace weft::rt::platform
