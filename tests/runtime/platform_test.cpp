// The OS layer (runtime/src/platform/): the generic futex fallback, which
// is compiled in every build, beside the platform's own futex; the
// asymmetric barrier pair; the thread queries. Every test runs in every
// build; with -Dplatform=generic the "platform" rows are the generic ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "internal.hpp"
#include "platform/barrier.hpp"
#include "platform/futex.hpp"
#include "platform/thread.hpp"
#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft::rt::platform::kFutexNoDeadline;
using Word = std::atomic<std::uint32_t>;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct FutexImpl {
  const char* name;
  void (*wait)(Word*, std::uint32_t, std::int64_t) noexcept;
  void (*wake)(Word*, int) noexcept;
};

class Futex : public ::testing::TestWithParam<FutexImpl> {};

// Waits until *w == want, looping over the futex as every caller does
// (returns that are not wakes for us are tolerated). Returns the number of
// futex returns it took.
int wait_for(const FutexImpl& f, Word& w, std::uint32_t want) {
  int returns = 0;
  for (std::uint32_t v; (v = w.load(std::memory_order_acquire)) != want;) {
    f.wait(&w, v, kFutexNoDeadline);
    returns++;
  }
  return returns;
}

TEST_P(Futex, ReturnsAtOnceWhenTheWordDiffers) {
  Word w{1};
  auto t0 = std::chrono::steady_clock::now();
  GetParam().wait(&w, 0, kFutexNoDeadline);  // would hang if it slept
  GetParam().wait(&w, 0, now_ns() + 60'000'000'000);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
}

TEST_P(Futex, AWakeAfterAStoreIsNeverLost) {
  const FutexImpl f = GetParam();
  const int rounds = static_cast<int>(weft_test::scaled(2000));
  Word ping{0}, pong{0};
  std::thread t([&] {
    for (int i = 1; i <= rounds; i++) {
      wait_for(f, ping, static_cast<std::uint32_t>(i));
      pong.store(static_cast<std::uint32_t>(i), std::memory_order_release);
      f.wake(&pong, 1);
    }
  });
  for (int i = 1; i <= rounds; i++) {
    ping.store(static_cast<std::uint32_t>(i), std::memory_order_release);
    f.wake(&ping, 1);
    wait_for(f, pong, static_cast<std::uint32_t>(i));
  }
  t.join();
  EXPECT_EQ(pong.load(), static_cast<std::uint32_t>(rounds));
}

// Many words, so in the generic implementation several share a bucket: a
// wake of one word returns the others' waits too (spurious for them). Each
// waiter must leave only once its own word is set, and every one must.
TEST_P(Futex, SpuriousReturnsAreToleratedAndNoWaiterLeavesEarly) {
  const FutexImpl f = GetParam();
  constexpr int kWords = 200;  // > the generic table's 64 buckets
  std::vector<Word> words(kWords);
  std::atomic<int> released{0}, early{0};
  std::vector<std::thread> ts;
  constexpr int kThreads = 8;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      for (int i = t; i < kWords; i += kThreads) {
        wait_for(f, words[i], 1);
        if (released.load(std::memory_order_acquire) <= i) early.fetch_add(1);
      }
    });
  for (int i = 0; i < kWords; i++) {
    released.store(i + 1, std::memory_order_release);
    words[i].store(1, std::memory_order_release);
    f.wake(&words[i], i % 2 ? 1 : INT32_MAX);
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(early.load(), 0);
}

TEST_P(Futex, WakeAllReleasesEveryWaiterOfAWord) {
  const FutexImpl f = GetParam();
  Word w{0};
  std::atomic<int> out{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 6; i++) ts.emplace_back([&] {
    wait_for(f, w, 1);
    out.fetch_add(1);
  });
  w.store(1, std::memory_order_release);
  f.wake(&w, INT32_MAX);
  for (auto& t : ts) t.join();
  EXPECT_EQ(out.load(), 6);
}

TEST_P(Futex, TimesOutWithoutAWake) {
  const FutexImpl f = GetParam();
  Word w{0};
  // A deadline in the past: no sleep at all.
  auto t0 = std::chrono::steady_clock::now();
  f.wait(&w, 0, now_ns() - 1'000'000);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
  // A short deadline: the wait ends by itself. Spurious returns may end it
  // early, so loop to the deadline as callers do; only a lower bound on the
  // time (never a ratio or a tight upper bound: a loaded machine).
  const std::int64_t deadline = now_ns() + 20'000'000;
  int returns = 0;
  while (now_ns() < deadline) {
    f.wait(&w, 0, deadline);
    returns++;
    ASSERT_LT(returns, 100000) << "the wait neither sleeps nor times out";
  }
  EXPECT_GE(now_ns(), deadline);
  EXPECT_EQ(w.load(), 0u);
}

// A waiter whose deadline is far off still wakes on a wake.
TEST_P(Futex, AWakeEndsATimedWait) {
  const FutexImpl f = GetParam();
  Word w{0};
  std::atomic<bool> done{false};
  std::thread t([&] {
    while (w.load(std::memory_order_acquire) == 0) f.wait(&w, 0, now_ns() + 600'000'000'000);
    done = true;
  });
  std::this_thread::sleep_for(5ms);
  w.store(1, std::memory_order_release);
  f.wake(&w, 1);
  t.join();  // would take ten minutes if the wake were lost
  EXPECT_TRUE(done.load());
}

INSTANTIATE_TEST_SUITE_P(Platform, Futex,
                         ::testing::Values(FutexImpl{"generic", weft::rt::platform::generic_futex_wait,
                                                     weft::rt::platform::generic_futex_wake},
                                           FutexImpl{"platform", weft::rt::platform::futex_wait,
                                                     weft::rt::platform::futex_wake}),
                         [](const auto& info) { return std::string(info.param.name); });

// The barrier pair's one promise (platform/barrier.hpp): in the store
// buffering pattern, with light_barrier() on one side and heavy_barrier()
// on the other, the two loads never both miss the other's store.
TEST(PlatformBarrier, StoreBufferingNeverLosesBothStores) {
  if (!weft::rt::platform::heavy_barrier()) GTEST_SKIP() << "no process-wide barrier here (Linux < 4.3)";
  const int rounds = static_cast<int>(weft_test::scaled(3000));
  std::atomic<std::uint32_t> x{0}, y{0};
  std::atomic<int> go{0}, done{0};
  std::atomic<std::uint32_t> rx{0};
  int both_missed = 0;
  std::thread light([&] {
    for (int i = 1; i <= rounds; i++) {
      while (go.load(std::memory_order_acquire) != i) std::this_thread::yield();
      x.store(static_cast<std::uint32_t>(i), std::memory_order_relaxed);
      weft::rt::platform::light_barrier();
      rx.store(y.load(std::memory_order_acquire), std::memory_order_relaxed);
      done.store(i, std::memory_order_release);
    }
  });
  for (int i = 1; i <= rounds; i++) {
    go.store(i, std::memory_order_release);
    y.store(static_cast<std::uint32_t>(i), std::memory_order_relaxed);
    weft::rt::platform::heavy_barrier();
    std::uint32_t seen_x = x.load(std::memory_order_acquire);
    while (done.load(std::memory_order_acquire) != i) std::this_thread::yield();
    if (seen_x != static_cast<std::uint32_t>(i) && rx.load(std::memory_order_relaxed) != static_cast<std::uint32_t>(i))
      both_missed++;
  }
  light.join();
  EXPECT_EQ(both_missed, 0);
}

TEST(PlatformThread, IdsAreNonzeroAndDistinct) {
  using weft::rt::platform::ThreadId;
  ThreadId mine = weft::rt::platform::thread_id(), other = 0;
  std::thread([&] { other = weft::rt::platform::thread_id(); }).join();
  EXPECT_NE(mine, 0);
  EXPECT_NE(other, 0);
  EXPECT_NE(mine, other);
  EXPECT_EQ(mine, weft::rt::platform::thread_id());
}

TEST(PlatformThread, ListingFindsThisThreadWhereSupported) {
  std::vector<weft::rt::platform::ThreadId> ts;
  if (!weft::rt::platform::list_threads(ts)) {
#if defined(WEFT_PLATFORM_LINUX)
    FAIL() << "Linux lists threads through /proc";
#else
    GTEST_SKIP() << "this platform cannot list threads: deadlock detection is off (platform/thread.hpp)";
#endif
  }
  EXPECT_NE(std::find(ts.begin(), ts.end(), weft::rt::platform::thread_id()), ts.end());
}

TEST(PlatformThread, SleepingIsNeverNoForAThreadAsleepInTheKernel) {
  Word w{0};
  std::atomic<weft::rt::platform::ThreadId> tid{0};
  std::thread t([&] {
    tid = weft::rt::platform::thread_id();
    while (w.load() == 0) weft::rt::platform::futex_wait(&w, 0, kFutexNoDeadline);
  });
  while (tid.load() == 0) std::this_thread::yield();
  // It may not be asleep yet: ask until it is (or the platform cannot say).
  weft::rt::platform::Sleeping s = weft::rt::platform::Sleeping::No;
  for (int i = 0; i < 10000 && s == weft::rt::platform::Sleeping::No; i++) {
    std::this_thread::sleep_for(1ms);
    s = weft::rt::platform::thread_sleeping(tid.load());
  }
  w = 1;
  weft::rt::platform::futex_wake(&w, 1);
  t.join();
  EXPECT_NE(s, weft::rt::platform::Sleeping::No);
#if defined(WEFT_PLATFORM_LINUX)
  EXPECT_EQ(s, weft::rt::platform::Sleeping::Yes);
#endif
}

TEST(PlatformThread, CpuClockAndStackWhereSupported) {
  clockid_t c{};
  bool have_clock = weft::rt::platform::thread_cpu_clock(&c);
  if (have_clock) {
    timespec ts{};
    EXPECT_EQ(clock_gettime(c, &ts), 0);
  }
  const void* bottom = nullptr;
  std::size_t size = 0;
  bool have_stack = weft::rt::platform::thread_stack(&bottom, &size);
  if (have_stack) {
    int local = 0;
    auto a = reinterpret_cast<std::uintptr_t>(&local), b = reinterpret_cast<std::uintptr_t>(bottom);
    EXPECT_GE(a, b);
    EXPECT_LT(a, b + size);
  }
#if defined(WEFT_PLATFORM_LINUX)
  EXPECT_TRUE(have_clock);
  EXPECT_TRUE(have_stack);
#endif
}

}  // namespace
