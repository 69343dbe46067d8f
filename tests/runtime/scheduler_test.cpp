// scheduler_test.cpp: scheduling guarantees (scheduler.cpp, monitor.cpp):
// a CPU-bound fiber does not stall the fibers queued behind it on its
// worker (the monitor marks it stuck, another worker steals), the lifo
// slot does not starve the run queue, and fibers woken from outside the
// runtime (global queue) run while others keep yielding. Verdicts are
// "eventually happened" with generous bounds, never speeds.
#include <atomic>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::since;
using weft_test::WorkersTest;

class Sched : public WorkersTest {};

// Child-first spawn: the child runs at once and spins without ever yielding;
// its parent sits queued alone on the same worker and must be taken by
// another worker (after the monitor marks the spinning one stuck) to set
// the flag that ends the spin.
TEST_P(Sched, CpuBoundFiberDoesNotStallItsQueue) {
  if (GetParam() < 2) GTEST_SKIP() << "needs a second worker to take over the queue";
  weft::run([] {
    std::atomic<bool> flag{false};
    auto spinner = weft::go([&] {
      auto t0 = weft::Clock::now();
      while (!flag.load(std::memory_order_relaxed) && since(t0) < 30s) {
      }
      return flag.load();
    });
    flag.store(true);  // runs only once another worker has taken this fiber
    EXPECT_TRUE(spinner.join());
  }, opts());
}

// Two fibers wake each other through CondVars, so each wake lands in the
// lifo slot; the parent (queued behind them by child-first spawn) must still
// get its turn while they play (the lifo slot is capped), not only once
// they give up after 2M rounds each.
TEST_P(Sched, LifoSlotDoesNotStarveQueue) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv[2];
    int turn = 0;
    std::atomic<bool> stop{false};
    auto player = [&](int me) {
      for (long i = 0; i < 2'000'000 && !stop.load(); i++) {
        std::unique_lock<weft::Mutex> l(m);
        cv[me].wait(l, [&] { return turn == me || stop.load(); });
        turn = 1 - me;
        cv[1 - me].notify_one();
      }
    };
    auto a = weft::go(player, 0);
    auto b = weft::go(player, 1);
    // Here the parent runs again.
    bool players_alive = !a.done() && !b.done();
    {
      std::lock_guard<weft::Mutex> l(m);
      stop = true;
      cv[0].notify_all();
      cv[1].notify_all();
    }
    a.join();
    b.join();
    EXPECT_TRUE(players_alive) << "the parent ran only after the ping-pong gave up";
  }, opts());
}

// Fibers that yield in a loop keep every worker busy; a fiber woken from a
// plain thread goes to the global queue and must still run.
TEST_P(Sched, GlobalQueueNotStarvedByYielders) {
  weft::run([] {
    std::atomic<bool> stop{false};
    std::vector<weft::JoinHandle<void>> yielders;
    for (unsigned i = 0; i < 2 * GetParam(); i++)
      yielders.push_back(weft::go([&] {
        auto t0 = weft::Clock::now();
        while (!stop.load() && since(t0) < 30s) weft::this_fiber::yield();
      }));
    weft::Mutex m;
    weft::CondVar cv;
    bool woken = false;
    std::thread t([&] {
      std::this_thread::sleep_for(2ms);
      std::lock_guard<weft::Mutex> l(m);
      woken = true;
      cv.notify_one();
    });
    {
      std::unique_lock<weft::Mutex> l(m);
      EXPECT_TRUE(cv.wait_for(l, 30s, [&] { return woken; }));
    }
    stop = true;
    t.join();
    for (auto& y : yielders) y.join();
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, Sched, ::testing::ValuesIn(weft_test::kWorkerCounts), weft_test::workers_name);

}  // namespace
