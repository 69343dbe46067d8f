// park_test.cpp: the low-level park/unpark protocol (park.hpp): one winner
// per park generation, stale parkers are harmless, wakes from plain threads
// reach fibers even when every worker sleeps, and plain threads can park.
#include <atomic>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft::WakeReason;
using weft_test::scaled;
using weft_test::since;
using weft_test::WorkersTest;

class Park : public WorkersTest {};

TEST_P(Park, StaleParkerNeverWakes) {
  weft::run([] {
    weft::rt::Parker p = weft::rt::prepare_park(weft::WaitKind::Other, nullptr);
    EXPECT_TRUE(weft::rt::unpark(p));           // before park: park returns at once
    EXPECT_FALSE(weft::rt::unpark(p));          // one winner per generation
    EXPECT_EQ(weft::rt::park(p), WakeReason::Event);
    EXPECT_FALSE(weft::rt::unpark(p, WakeReason::Timeout));  // stale now
    weft::rt::Parker q = weft::rt::prepare_park(weft::WaitKind::Other, nullptr);
    EXPECT_FALSE(weft::rt::unpark(p));          // an older generation does not wake the new park
    EXPECT_EQ(weft::rt::park_until(q, weft::Clock::now() + 1ms), WakeReason::Timeout);
    EXPECT_FALSE(weft::rt::should_unwind());
    EXPECT_FALSE(weft::rt::unpark(weft::rt::Parker{}));
    // A parker of a fiber that has ended (its slot maybe reused) is stale too.
    weft::rt::Parker dead = weft::go([] { return weft::rt::prepare_park(weft::WaitKind::Other, nullptr); }).join();
    weft::go([] { weft::this_fiber::sleep_for(1ms); }).join();  // likely reuses that slot
    EXPECT_FALSE(weft::rt::unpark(dead));
  }, opts());
}

// A timer and a plain thread race to wake the same park: exactly one wins,
// and the fiber sees the winner's reason.
TEST_P(Park, TimerAndThreadRaceOneWinner) {
  const int rounds = static_cast<int>(scaled(2000));
  weft::run([rounds] {
    std::atomic<weft::rt::Parker*> slot{nullptr};
    std::atomic<bool> stop{false};
    std::atomic<int> thread_wins{0};
    std::thread waker([&] {
      while (!stop.load()) {
        if (weft::rt::Parker* p = slot.exchange(nullptr)) {
          if (weft::rt::unpark(*p, WakeReason::Event)) thread_wins++;
          delete p;
        }
      }
    });
    int events = 0, timeouts = 0;
    for (int i = 0; i < rounds; i++) {
      weft::rt::Parker p = weft::rt::prepare_park(weft::WaitKind::Other, nullptr);
      slot.store(new weft::rt::Parker(p));
      WakeReason r = weft::rt::park_until(p, weft::Clock::now() + std::chrono::microseconds(i % 20));
      ASSERT_TRUE(r == WakeReason::Event || r == WakeReason::Timeout);
      (r == WakeReason::Event ? events : timeouts)++;
      // Make sure the waker is done with this round's parker before the next.
      while (slot.load() != nullptr) std::this_thread::yield();
    }
    stop = true;
    waker.join();
    EXPECT_EQ(events + timeouts, rounds);
    EXPECT_EQ(thread_wins.load(), events);
  }, opts());
}

// Wakes from a plain thread after the workers have gone to sleep: a lost
// wake-up would leave the fiber parked (caught by the generous timeout).
TEST_P(Park, WakeFromOutsideWhileWorkersSleep) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    int value = 0;
    for (int round = 0; round < 30; round++) {
      std::thread t([&, round] {
        std::this_thread::sleep_for(std::chrono::microseconds(200 + 100 * (round % 10)));  // workers go idle
        std::lock_guard<weft::Mutex> l(m);
        value = round + 1;
        cv.notify_all();
      });
      {
        std::unique_lock<weft::Mutex> l(m);
        EXPECT_TRUE(cv.wait_for(l, 20s, [&] { return value == round + 1; })) << "lost wake in round " << round;
      }
      t.join();
    }
  }, opts());
}

// Many fibers woken from several plain threads at once.
TEST_P(Park, ManyWakesFromPlainThreads) {
  const int n = static_cast<int>(scaled(2000));
  weft::run([n] {
    std::vector<std::atomic<weft::rt::Parker*>> parkers(n);
    for (auto& p : parkers) p.store(nullptr);
    weft::WaitGroup parked, woken;
    parked.add(n);
    woken.add(n);
    for (int i = 0; i < n; i++) {
      weft::spawn([&, i] {
        weft::rt::Parker p = weft::rt::prepare_park(weft::WaitKind::Other, nullptr);
        weft::rt::Parker copy = p;
        parkers[i].store(&copy);
        parked.done();
        EXPECT_EQ(weft::rt::park(p), WakeReason::Event);
        woken.done();
      });
    }
    parked.wait();
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; t++) {
      ts.emplace_back([&, t] {
        for (int i = t; i < n; i += 3) EXPECT_TRUE(weft::rt::unpark(*parkers[i].load()));
      });
    }
    for (auto& t : ts) t.join();
    woken.wait();
  }, opts());
}

// A plain thread parks (on a futex) and a fiber wakes it.
TEST_P(Park, PlainThreadParks) {
  weft::run([] {
    std::atomic<weft::rt::Parker*> p{nullptr};
    std::atomic<int> reason{0};
    std::thread t([&] {
      EXPECT_FALSE(weft::in_fiber());
      weft::rt::Parker mine = weft::rt::prepare_park(weft::WaitKind::Other, nullptr);
      p.store(&mine);
      reason = static_cast<int>(weft::rt::park(mine));
      // And a timed park on a thread times out after its deadline.
      auto t0 = weft::Clock::now();
      weft::rt::Parker again = weft::rt::prepare_park(weft::WaitKind::Other, nullptr);
      EXPECT_EQ(weft::rt::park_until(again, t0 + 5ms), WakeReason::Timeout);
      EXPECT_GE(since(t0), 5ms);
    });
    while (!p.load()) weft::this_fiber::sleep_for(100us);
    weft::this_fiber::sleep_for(1ms);
    EXPECT_TRUE(weft::rt::unpark(*p.load()));
    t.join();
    EXPECT_EQ(reason.load(), static_cast<int>(WakeReason::Event));
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, Park, ::testing::ValuesIn(weft_test::kWorkerCounts), weft_test::workers_name);

}  // namespace
