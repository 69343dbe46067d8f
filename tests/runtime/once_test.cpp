// once_test.cpp: weft::Once (sync.hpp/sync.cpp), over worker counts 1 and
// 2, with fibers and plain std::threads. Ports of Go's sync/once_test.go
// (TestOnce; TestOncePanic with std::call_once's rule: the exception
// reaches the caller and a later call tries again), concurrent callers
// parked while f parks, a waiter taking over after f threw, cancellation
// of a waiting caller, the lifetime rule, and a stress with many fibers.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft::Chan;
using weft::Clock;
using weft::Once;
using weft_test::scaled;
using weft_test::since;
using weft_test::WorkersTest;

constexpr auto kBound = 10s;

using weft_test::wait_parked;

class OnceTest : public WorkersTest {};

// Go's TestOnce: ten fibers call once; f ran once, and each caller sees its
// effect when call() returns.
TEST_P(OnceTest, RunsOnceAndCallersSeeIt) {
  weft::run([] {
    Once once;
    int o = 0;  // plain int: published by call()'s return
    std::atomic<int> bad{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 10; i++) {
      hs.push_back(weft::go([&] {
        once.call([&] { o++; });
        if (o != 1) bad++;
      }));
    }
    for (auto& h : hs) h.join();
    EXPECT_EQ(o, 1);
    EXPECT_EQ(bad.load(), 0);
    EXPECT_TRUE(once.done());
  }, opts());
}

// Arguments are forwarded; the callable may be move-only.
TEST_P(OnceTest, ForwardsArguments) {
  weft::run([] {
    Once once;
    int sum = 0;
    auto p = std::make_unique<int>(5);
    once.call([q = std::move(p)](int a, int& b) { b = a + *q; }, 3, sum);
    EXPECT_EQ(sum, 8);
    once.call([&] { sum = -1; });
    EXPECT_EQ(sum, 8);
  }, opts());
}

// Go's TestOncePanic with std::call_once's rule: f throws, the exception
// reaches the caller, the Once is not done, and the next call runs f.
TEST_P(OnceTest, ExceptionThenRetry) {
  auto body = [] {
    Once once;
    int runs = 0;
    EXPECT_THROW(once.call([&] {
      runs++;
      throw std::runtime_error("failed");
    }), std::runtime_error);
    EXPECT_FALSE(once.done());
    once.call([&] { runs++; });
    EXPECT_TRUE(once.done());
    once.call([&] {
      runs++;
      ADD_FAILURE() << "Once ran f after it had completed";
    });
    EXPECT_EQ(runs, 2);
  };
  weft::run(body, opts());
  std::thread(body).join();
}

// Callers that come while f runs (and parks) wait for it, then see its
// effect; f ran once.
TEST_P(OnceTest, CallersWaitWhileFParks) {
  weft::run([] {
    Once once;
    std::atomic<int> runs{0};
    long value = 0;
    std::atomic<int> bad{0};
    weft::WaitGroup wg;
    const int n = 50;
    wg.add(n);
    for (int i = 0; i < n; i++) {
      weft::spawn([&] {
        once.call([&] {
          runs++;
          weft::this_fiber::sleep_for(2ms);  // others arrive and park
          value = 42;
        });
        if (value != 42) bad++;
        wg.done();
      });
    }
    ASSERT_TRUE(wg.wait_for(kBound));
    EXPECT_EQ(runs.load(), 1);
    EXPECT_EQ(bad.load(), 0);
  }, opts());
}

// f throws while others wait: the thrower gets the exception, one waiter
// runs f again (and succeeds), every other waiter returns after that.
TEST_P(OnceTest, WaiterRetriesAfterThrow) {
  weft::run([] {
    Once once;
    std::atomic<int> runs{0}, threw{0}, returned{0};
    std::atomic<bool> ok{false};
    auto f = [&] {
      int k = runs.fetch_add(1);
      weft::this_fiber::sleep_for(1ms);
      if (k == 0) throw std::runtime_error("first try fails");
      ok = true;
    };
    std::vector<weft::JoinHandle<void>> hs;
    hs.push_back(weft::go([&] {
      try {
        once.call(f);
        returned++;
      } catch (const std::runtime_error&) {
        threw++;
      }
    }));
    wait_parked(1);  // the first caller runs f (sleeping)
    for (int i = 0; i < 5; i++) {
      hs.push_back(weft::go([&] {
        once.call(f);
        if (!ok.load()) ADD_FAILURE() << "call() returned before f succeeded";
        returned++;
      }));
    }
    for (auto& h : hs) h.join();
    EXPECT_EQ(runs.load(), 2);
    EXPECT_EQ(threw.load(), 1);
    EXPECT_EQ(returned.load(), 5);
    EXPECT_TRUE(once.done());
  }, opts());
}

// A caller waiting for another's f is a cancellation point: cancelled, it
// throws Cancelled; f completes anyway and later calls return at once (a
// cancelled fiber's call of a done Once returns too: no wait, no point).
TEST_P(OnceTest, CancelWaitingCaller) {
  weft::run([] {
    Once once;
    Chan<int> release(0);
    std::atomic<int> runs{0};
    auto runner = weft::go([&] {
      once.call([&] {
        runs++;
        (void)release.recv();
      });
    });
    wait_parked(1);
    auto waiter = weft::go([&] { once.call([&] { runs++; }); });
    wait_parked(2);
    waiter.cancel();
    EXPECT_THROW(waiter.join(), weft::Cancelled);
    release.send(1);
    runner.join();
    EXPECT_EQ(runs.load(), 1);
    std::atomic<bool> go_on{false};
    auto done_call = weft::go([&] {
      while (!go_on.load()) weft::this_fiber::yield();
      once.call([&] { runs++; });
      return true;
    });
    done_call.cancel();
    go_on = true;
    EXPECT_TRUE(done_call.join());
    EXPECT_EQ(runs.load(), 1);
  }, opts());
}

// Plain threads and fibers call one Once together; f parks on a fiber or
// blocks a thread, runs once.
TEST_P(OnceTest, PlainThreadsAndFibers) {
  const int rounds = static_cast<int>(scaled(100));
  weft::run([&] {
    for (int r = 0; r < rounds; r++) {
      Once once;
      std::atomic<int> runs{0}, bad{0};
      int value = 0;
      auto body = [&] {
        once.call([&] {
          runs++;
          weft::this_fiber::sleep_for(50us);  // on a thread: sleeps the thread
          value = 7;
        });
        if (value != 7) bad++;
      };
      std::thread t1(body), t2(body);
      std::vector<weft::JoinHandle<void>> hs;
      for (int i = 0; i < 4; i++) hs.push_back(weft::go(body));
      for (auto& h : hs) h.join();
      t1.join();
      t2.join();
      ASSERT_EQ(runs.load(), 1);
      ASSERT_EQ(bad.load(), 0);
    }
  }, opts());
}

// ---- lifetime (API.md) ------------------------------------------------------

// A waiter woken by f's completion frees the Once as soon as call()
// returns, while the runner may still be waking the other waiters (heap:
// ASan sees a late touch by the runner or by another woken waiter).
TEST_P(OnceTest, FreedByWokenWaiter) {
  const int rounds = static_cast<int>(scaled(300));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      auto* once = new Once;
      Chan<int> done(4);
      for (int k = 0; k < 3; k++) {
        weft::spawn([once, done, i, k]() mutable {
          once->call([&] {
            if ((i + k) % 2) weft::this_fiber::sleep_for(20us); else weft::this_fiber::yield();
          });
          done.send(1);  // never touches once again
        });
      }
      weft::this_fiber::yield();
      once->call([] {});  // waits for whichever helper runs f
      delete once;
      for (int k = 0; k < 3; k++) {
        bool got = false;
        weft::select(weft::recv(done, [&](std::optional<int> v) { got = v.has_value(); }),
                     weft::after(kBound, [] {}));
        if (!got) {
          std::fprintf(stderr, "FAILED: Once freed by a woken waiter: a helper never finished\n");
          std::abort();
        }
      }
    }
  }, opts());
}

// Stress: many fibers over many Once objects, some f throwing on the first
// try; each Once ends done with f completed exactly once.
TEST_P(OnceTest, StressManyFibers) {
  const int fibers = static_cast<int>(weft_test::live_fiber_cap(scaled(5000)));
  const int onces = 16;
  std::vector<Once> os(onces);
  std::vector<std::atomic<int>> tries(onces), completions(onces);
  std::atomic<int> bad{0};
  weft::run([&] {
    weft::WaitGroup wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; f++) {
      weft::spawn([&, f] {
        int k = f % onces;
        try {
          os[k].call([&] {
            int t = tries[k].fetch_add(1);
            weft::this_fiber::yield();
            if (k % 2 && t == 0) throw std::runtime_error("first try");
            completions[k]++;
          });
          if (completions[k].load() != 1) bad++;
        } catch (const std::runtime_error&) {
        }
        wg.done();
      });
    }
    ASSERT_TRUE(wg.wait_for(120s));
  }, opts());
  for (int k = 0; k < onces; k++) {
    EXPECT_TRUE(os[k].done());
    EXPECT_EQ(completions[k].load(), 1);
    EXPECT_EQ(tries[k].load(), k % 2 ? 2 : 1);
  }
  EXPECT_EQ(bad.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Workers, OnceTest, ::testing::Values(1u, 2u), weft_test::workers_name);

}  // namespace
