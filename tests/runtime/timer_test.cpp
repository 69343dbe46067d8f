// timer_test.cpp: sleep_for/sleep_until and the timer heaps (timer.cpp).
// Only lower bounds on elapsed time are asserted ("never before the
// deadline"); upper bounds are generous hang guards, never speed checks.
#include <atomic>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::since;
using weft_test::scaled;
using weft_test::WorkersTest;

class Timer : public WorkersTest {};

TEST_P(Timer, SleepForWakesAfterDeadline) {
  weft::run([] {
    for (auto d : {1ms, 5ms, 20ms}) {
      auto t0 = weft::Clock::now();
      weft::this_fiber::sleep_for(d);
      EXPECT_GE(since(t0), d);
    }
  }, opts());
}

TEST_P(Timer, SleepUntilWakesAfterDeadline) {
  weft::run([] {
    auto deadline = weft::Clock::now() + 15ms;
    weft::this_fiber::sleep_until(deadline);
    EXPECT_GE(weft::Clock::now(), deadline);
    // A deadline in the past returns at once (it yields).
    weft::this_fiber::sleep_until(weft::Clock::now() - 1s);
    weft::this_fiber::sleep_for(-5ms);
    weft::this_fiber::sleep_for(0ns);
  }, opts());
}

// Many sleepers with different deadlines, on every worker: each one wakes
// after its own deadline.
TEST_P(Timer, ManySleepersNeverEarly) {
  const int n = static_cast<int>(scaled(2000));
  weft::run([n] {
    std::atomic<int> early{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < n; i++) {
      hs.push_back(weft::go([i, &early] {
        for (int k = 0; k < 3; k++) {
          auto deadline = weft::Clock::now() + std::chrono::microseconds((i * 37 + k * 101) % 3000);
          weft::this_fiber::sleep_until(deadline);
          if (weft::Clock::now() < deadline) early++;
        }
      }));
    }
    for (auto& h : hs) h.join();
    EXPECT_EQ(early.load(), 0);
  }, opts());
}

// One worker, 1000 fibers sleeping 50 ms each: sleeping parks the fiber,
// not the thread, so they all sleep at once. Serially this would take 50 s;
// the bound below only guards against that (and hangs), it measures nothing.
TEST(TimerOneWorker, ThousandSleepersShareOneThread) {
  auto t0 = weft::Clock::now();
  int finished = weft::run([] {
    std::atomic<int> done{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 1000; i++) {
      hs.push_back(weft::go([&] {
        auto t = weft::Clock::now();
        weft::this_fiber::sleep_for(50ms);
        EXPECT_GE(since(t), 50ms);
        done++;
      }));
    }
    for (auto& h : hs) h.join();
    return done.load();
  }, {.workers = 1});
  EXPECT_EQ(finished, 1000);
  EXPECT_LT(since(t0), 25s);
}

// A busy fiber on one worker must not delay the timers of a sleeper on
// another... only asserted as "eventually": a sleeper next to a fiber
// that yields in a loop still wakes (timers are checked on every pick).
TEST_P(Timer, SleeperWakesNextToAYieldingFiber) {
  weft::run([] {
    std::atomic<bool> stop{false};
    auto busy = weft::go([&] {
      while (!stop.load()) weft::this_fiber::yield();
    });
    auto t0 = weft::Clock::now();
    weft::this_fiber::sleep_for(10ms);
    EXPECT_GE(since(t0), 10ms);
    stop = true;
    busy.join();
  }, opts());
}

TEST(TimerPlainThread, SleepOutsideAFiberSleepsTheThread) {
  auto t0 = weft::Clock::now();
  weft::this_fiber::sleep_for(5ms);
  EXPECT_GE(since(t0), 5ms);
  weft::this_fiber::yield();  // harmless on a plain thread
}

// The low-level timer interface: a cancelled timer never fires; an armed
// one fires after its deadline.
TEST_P(Timer, RawTimerCancelAndFire) {
  weft::run([] {
    struct Hit {
      std::atomic<int> n{0};
    } hit;
    weft::rt::Timer cancelled;
    cancelled.when = weft::Clock::now() + 50ms;
    cancelled.fn = [](void* a, void*, std::uint64_t) { static_cast<Hit*>(a)->n += 100; };
    cancelled.a = &hit;
    weft::rt::timer_start(cancelled);
    EXPECT_TRUE(weft::rt::timer_cancel(cancelled));
    EXPECT_FALSE(weft::rt::timer_cancel(cancelled));

    weft::rt::Timer fires;
    auto when = weft::Clock::now() + 5ms;
    fires.when = when;
    fires.fn = [](void* a, void*, std::uint64_t seq) { static_cast<Hit*>(a)->n += static_cast<int>(seq); };
    fires.a = &hit;
    fires.seq = 1;
    weft::rt::timer_start(fires);
    while (hit.n.load() == 0) weft::this_fiber::sleep_for(1ms);
    EXPECT_GE(weft::Clock::now(), when);
    EXPECT_FALSE(weft::rt::timer_cancel(fires));
    weft::this_fiber::sleep_for(60ms);
    EXPECT_EQ(hit.n.load(), 1);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, Timer, ::testing::ValuesIn(weft_test::kWorkerCounts), weft_test::workers_name);

}  // namespace
