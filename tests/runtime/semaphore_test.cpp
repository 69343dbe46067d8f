// semaphore_test.cpp: weft::Semaphore (sync.hpp/sync.cpp), over worker
// counts 1 and 2, with fibers and plain std::threads: bad arguments, a
// bounded fan-out that never exceeds n, FIFO hand-off (no overtaking by
// try_acquire), release(n) waking n waiters, try_acquire_for with generous
// bounds and any duration type, cancellation of a parked acquire (took no
// unit; a racing release loses nothing), the lifetime rule, and a stress
// with many fibers.
//
// Verdicts are about counts and order, never timing ratios; "eventually"
// is a failure bound of 10 s (kBound).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft::Chan;
using weft::Clock;
using weft::Semaphore;
using weft_test::scaled;
using weft_test::since;
using weft_test::WorkersTest;

constexpr auto kBound = 10s;

using weft_test::wait_parked;

// Polls (sleeping) until pred() or kBound; returns pred().
template <class P>
bool eventually(P pred) {
  auto t0 = Clock::now();
  while (!pred()) {
    if (since(t0) > kBound) return pred();
    weft::this_fiber::sleep_for(100us);
  }
  return true;
}

class SemaphoreTest : public WorkersTest {};
class SemaphorePlain : public weft_test::RuntimeTest {};

TEST_F(SemaphorePlain, BadArguments) {
  EXPECT_THROW(Semaphore(-1), std::invalid_argument);
  EXPECT_THROW(Semaphore(Semaphore::max() + 1), std::invalid_argument);
  Semaphore s(2);
  EXPECT_THROW(s.release(-1), std::invalid_argument);
  EXPECT_EQ(s.available(), 2);
  Semaphore full(Semaphore::max());
  EXPECT_THROW(full.release(1), std::invalid_argument);
  EXPECT_EQ(full.available(), Semaphore::max()) << "a failed release changed the count";
  EXPECT_THROW(s.release(Semaphore::max()), std::invalid_argument);
  EXPECT_EQ(s.available(), 2);
  s.release(0);
  EXPECT_EQ(s.available(), 2);
}

// Plain counting, from a plain thread and from a fiber.
TEST_P(SemaphoreTest, TryAcquireCounts) {
  auto body = [] {
    Semaphore s(0);
    EXPECT_FALSE(s.try_acquire());
    s.release(3);
    EXPECT_EQ(s.available(), 3);
    EXPECT_TRUE(s.try_acquire());
    EXPECT_TRUE(s.try_acquire());
    s.acquire();  // a unit is free: does not park
    EXPECT_FALSE(s.try_acquire());
    EXPECT_EQ(s.available(), 0);
  };
  std::thread(body).join();
  weft::run(body, opts());
}

// A bounded fan-out: many fibers each take a unit of Semaphore(n), work a
// little (parking inside), and give it back; never more than n inside.
TEST_P(SemaphoreTest, BoundedFanOutNeverExceedsN) {
  const int jobs = static_cast<int>(scaled(2000));
  for (int n : {1, 3, 16}) {
    std::atomic<int> inside{0}, peak{0}, done{0};
    weft::run([&] {
      Semaphore sem(n);
      weft::WaitGroup wg;
      wg.add(jobs);
      for (int j = 0; j < jobs; j++) {
        weft::spawn([&, j] {
          sem.acquire();
          int now = inside.fetch_add(1) + 1;
          int p = peak.load();
          while (now > p && !peak.compare_exchange_weak(p, now)) {
          }
          if (j % 3 == 0) weft::this_fiber::sleep_for(10us); else weft::this_fiber::yield();
          inside.fetch_sub(1);
          done++;
          sem.release();
          wg.done();
        });
      }
      ASSERT_TRUE(wg.wait_for(60s));
      EXPECT_EQ(sem.available(), n) << "units were lost or made";
    }, opts());
    EXPECT_LE(peak.load(), n) << "more than n fibers inside";
    EXPECT_GE(peak.load(), 1);
    EXPECT_EQ(done.load(), jobs);
  }
}

// FIFO: waiters get units in the order they queued; a try_acquire made
// while waiters are queued does not overtake them.
TEST_P(SemaphoreTest, FifoAndNoOvertaking) {
  weft::run([] {
    Semaphore s(0);
    std::vector<int> order;
    weft::Mutex mu;
    std::vector<weft::JoinHandle<void>> hs;
    const int n = 8;
    for (int i = 0; i < n; i++) {
      hs.push_back(weft::go([&, i] {
        s.acquire();
        std::lock_guard<weft::Mutex> l(mu);
        order.push_back(i);
      }));
      wait_parked(static_cast<std::uint64_t>(i) + 1);  // queued in index order
    }
    for (int i = 0; i < n; i++) {
      s.release();
      EXPECT_FALSE(s.try_acquire()) << "try_acquire overtook a queued waiter";
      ASSERT_TRUE(eventually([&] {
        std::lock_guard<weft::Mutex> l(mu);
        return order.size() == static_cast<std::size_t>(i) + 1;
      }));
    }
    for (auto& h : hs) h.join();
    std::vector<int> want(n);
    for (int i = 0; i < n; i++) want[i] = i;
    EXPECT_EQ(order, want);
    EXPECT_EQ(s.available(), 0);
  }, opts());
}

// release(n) with more waiters than n wakes exactly n; the rest stay parked
// until more units come. release(n) with fewer waiters keeps the rest.
TEST_P(SemaphoreTest, ReleaseNWakesUpToN) {
  weft::run([] {
    Semaphore s(0);
    std::atomic<int> got{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 5; i++) hs.push_back(weft::go([&] {
      s.acquire();
      got++;
    }));
    wait_parked(5);
    s.release(3);
    ASSERT_TRUE(eventually([&] { return got.load() == 3; }));
    weft::this_fiber::sleep_for(2ms);  // a fourth wake would show
    EXPECT_EQ(got.load(), 3) << "release(3) woke more than 3";
    EXPECT_EQ(s.available(), 0);
    s.release(4);  // 2 waiters left: 2 units stay
    for (auto& h : hs) h.join();
    EXPECT_EQ(got.load(), 5);
    EXPECT_EQ(s.available(), 2);
  }, opts());
}

// try_acquire_for: times out (generous bounds), any duration type, zero and
// negative durations do not park, success when a release comes in time.
TEST_P(SemaphoreTest, TryAcquireFor) {
  weft::run([] {
    Semaphore s(0);
    auto t0 = Clock::now();
    EXPECT_FALSE(s.try_acquire_for(20ms));
    auto took = since(t0);
    EXPECT_GE(took, 20ms);
    EXPECT_LT(took, kBound);
    t0 = Clock::now();
    EXPECT_FALSE(s.try_acquire_for(std::chrono::duration<double, std::milli>(5.5)));
    EXPECT_GE(since(t0), 5ms);
    EXPECT_FALSE(s.try_acquire_for(0s));
    EXPECT_FALSE(s.try_acquire_for(-5s));
    EXPECT_FALSE(s.try_acquire_until(Clock::now() - 1s));
    // A release in time: true, well before the deadline.
    weft::spawn([&] {
      weft::this_fiber::sleep_for(2ms);
      s.release();
    });
    t0 = Clock::now();
    EXPECT_TRUE(s.try_acquire_for(std::chrono::hours(1)));
    EXPECT_LT(since(t0), kBound);
    // A timed-out waiter left nothing behind: the next release stays a unit.
    EXPECT_FALSE(s.try_acquire_for(1ms));
    s.release();
    EXPECT_EQ(s.available(), 1);
    s.release(1);
    EXPECT_TRUE(s.try_acquire_for(1ms));
    EXPECT_TRUE(s.try_acquire_for(std::chrono::duration<long double>(0.001L)));
    EXPECT_EQ(s.available(), 0);
  }, opts());
}

// A plain thread's try_acquire_for times out on its futex, and a plain
// thread's acquire is woken by a fiber's release.
TEST_P(SemaphoreTest, PlainThreadWaits) {
  Semaphore s(0);
  auto t0 = Clock::now();
  EXPECT_FALSE(s.try_acquire_for(10ms));
  EXPECT_GE(since(t0), 10ms);
  std::atomic<bool> got{false};
  weft::run([&] {
    std::thread t([&] {
      s.acquire();
      got = true;
    });
    weft::this_fiber::sleep_for(2ms);
    s.release();
    EXPECT_TRUE(eventually([&] { return got.load(); }));
    t.join();
  }, opts());
  EXPECT_EQ(s.available(), 0);
}

// Fibers and plain threads share one Semaphore(2) as a lock-like bound.
TEST_P(SemaphoreTest, SharedWithPlainThreads) {
  const int iters = static_cast<int>(scaled(3000));
  Semaphore s(2);
  std::atomic<int> inside{0}, bad{0};
  auto body = [&] {
    for (int i = 0; i < iters; i++) {
      s.acquire();
      if (inside.fetch_add(1) + 1 > 2) bad++;
      inside.fetch_sub(1);
      s.release();
    }
  };
  weft::run([&] {
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; i++) ts.emplace_back(body);
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 6; i++) hs.push_back(weft::go(body));
    for (auto& h : hs) h.join();
    for (auto& t : ts) t.join();
  }, opts());
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(s.available(), 2);
}

// ---- cancellation -------------------------------------------------------------

// A parked acquire, cancelled: throws Cancelled, took no unit, left no
// waiter behind (a later release stays in the count). A cancelled fiber's
// acquire throws even with units free, and takes none; try_acquire is not
// a cancellation point.
TEST_P(SemaphoreTest, CancelParkedAcquire) {
  weft::run([] {
    Semaphore s(0);
    auto h = weft::go([&] { s.acquire(); });
    auto h2 = weft::go([&] { return s.try_acquire_for(1h); });
    wait_parked(2);
    h.cancel();
    h2.cancel();
    EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_THROW(h2.join(), weft::Cancelled);
    s.release();
    EXPECT_EQ(s.available(), 1) << "a cancelled waiter took the unit";
    std::atomic<bool> go_on{false};
    auto c = weft::go([&] {
      while (!go_on.load()) weft::this_fiber::yield();
      bool t = s.try_acquire();  // not a cancellation point
      if (t) s.release();
      s.acquire();               // throws: cancelled
    });
    c.cancel();
    go_on = true;
    EXPECT_THROW(c.join(), weft::Cancelled);
    EXPECT_EQ(s.available(), 1);
  }, opts());
}

// Cancels racing releases: K waiters, release(K) in random pieces, random
// waiters cancelled in between. Every waiter either returned (with a unit)
// or threw (without one); no unit is lost: returned + available == K.
TEST_P(SemaphoreTest, StressCancelVersusReleaseConservesUnits) {
  const int rounds = static_cast<int>(scaled(200));
  const int k = 8;
  const unsigned seed = 4242 + GetParam();
  weft::run([&] {
    std::mt19937 rng(seed);
    for (int round = 0; round < rounds; round++) {
      Semaphore s(0);
      std::atomic<int> returned{0}, threw{0};
      std::vector<weft::JoinHandle<void>> hs;
      for (int i = 0; i < k; i++) {
        hs.push_back(weft::go([&] {
          try {
            s.acquire();
            returned++;
          } catch (const weft::Cancelled&) {
            threw++;
          }
        }));
      }
      if (rng() % 2) wait_parked(k);
      std::vector<int> order(k);
      for (int i = 0; i < k; i++) order[i] = i;
      std::shuffle(order.begin(), order.end(), rng);
      int c = 0, released = 0;
      while (released < k) {
        if (c < k && rng() % 3 == 0) hs[order[c++]].cancel();
        int n = 1 + static_cast<int>(rng() % 3);
        n = std::min(n, k - released);
        s.release(n);
        released += n;
        if (rng() % 4 == 0) weft::this_fiber::yield();
      }
      for (auto& h : hs) h.join();
      ASSERT_EQ(returned + threw, k);
      EXPECT_EQ(returned.load() + s.available(), k) << "units lost or made in round " << round;
      EXPECT_LE(threw.load(), c);
    }
  }, opts());
}

// ---- lifetime (API.md) ----------------------------------------------------

void expect_done(Chan<int>& done, const char* what) {
  bool got = false;
  weft::select(weft::recv(done, [&](std::optional<int> v) { got = v.has_value(); }), weft::after(kBound, [] {}));
  if (!got) {
    std::fprintf(stderr, "FAILED: %s: a fiber never finished (it touched the freed Semaphore?)\n", what);
    std::abort();
  }
}

// The woken waiter frees the semaphore as soon as acquire() returns, while
// the release that woke it may still be inside (heap: ASan sees a late
// touch). Two shapes: one waiter woken by release(1); two waiters woken by
// one release(2), the helper signalling and the owner freeing.
TEST_P(SemaphoreTest, FreedByWokenWaiter) {
  const int rounds = static_cast<int>(scaled(300));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      auto* s = new Semaphore(0);
      Chan<int> done(1);
      weft::spawn([s, i] {
        if (i % 2) weft::this_fiber::sleep_for(20us); else weft::this_fiber::yield();
        s->release();
      });
      s->acquire();
      delete s;  // legal: nobody is parked in it any more
      // Two waiters, one release(2).
      s = new Semaphore(0);
      weft::spawn([s, done]() mutable {
        s->acquire();
        done.send(1);  // never touches s again
      });
      weft::spawn([s, i] {
        if (i % 2) weft::this_fiber::sleep_for(20us); else weft::this_fiber::yield();
        s->release(2);
      });
      s->acquire();
      expect_done(done, "Semaphore two waiters");
      delete s;
    }
  }, opts());
}

// A plain thread as the woken waiter that frees.
TEST_P(SemaphoreTest, FreedByWokenPlainThread) {
  const int rounds = static_cast<int>(scaled(100));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      auto* s = new Semaphore(0);
      std::thread t([s] {
        s->acquire();
        delete s;
      });
      if (i % 2) weft::this_fiber::sleep_for(20us);
      s->release();
      t.join();
    }
  }, opts());
}

// Stress: many fibers through a small semaphore, with timed and untimed
// acquires mixed; every job completes and the count ends where it began.
TEST_P(SemaphoreTest, StressManyFibers) {
  const int fibers = static_cast<int>(weft_test::live_fiber_cap(scaled(10000)));
  std::atomic<int> inside{0}, bad{0}, timed_out{0}, finished{0};
  weft::run([&] {
    Semaphore s(4);
    weft::WaitGroup wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; f++) {
      weft::spawn([&, f] {
        bool got = true;
        if (f % 5 == 0) got = s.try_acquire_for(100us); else s.acquire();
        if (got) {
          if (inside.fetch_add(1) + 1 > 4) bad++;
          weft::this_fiber::yield();
          inside.fetch_sub(1);
          s.release();
        } else {
          timed_out++;
        }
        finished++;
        wg.done();
      });
    }
    ASSERT_TRUE(wg.wait_for(120s));
    EXPECT_EQ(s.available(), 4);
  }, opts());
  EXPECT_EQ(finished.load(), fibers);
  EXPECT_LE(timed_out.load(), (fibers + 4) / 5);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(inside.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Workers, SemaphoreTest, ::testing::Values(1u, 2u), weft_test::workers_name);

}  // namespace
