// stress_test.cpp: large fiber counts and wake storms over worker counts
// 1, 2, 4, 8. Sizes scale with WEFT_STRESS_SCALE (percent). Verdicts are
// counts and completions only, never speeds.
#include <atomic>
#include <memory>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::scaled;
using weft_test::WorkersTest;

class Stress : public WorkersTest {};

// 1,000,000 fibers spawned and joined: by a few spawner fibers, each
// keeping a window of handles and joining the oldest, so handles and fibers
// in flight stay bounded while spawns, exits and joins interleave on every
// worker.
TEST_P(Stress, MillionFibersSpawnedAndJoined) {
  const std::size_t total = scaled(1'000'000);
  const int spawners = 4;
  std::atomic<std::size_t> ran{0};
  std::size_t sum = weft::run([&] {
    std::vector<weft::JoinHandle<std::size_t>> sp;
    for (int s = 0; s < spawners; s++) {
      sp.push_back(weft::go([&, s] {
        std::size_t mine = total / spawners + (s == 0 ? total % spawners : 0);
        std::size_t acc = 0;
        std::vector<weft::JoinHandle<std::size_t>> window;
        window.reserve(1024);
        std::size_t head = 0;
        for (std::size_t i = 0; i < mine; i++) {
          window.push_back(weft::go([&ran](std::size_t v) {
            ran.fetch_add(1, std::memory_order_relaxed);
            if (v % 64 == 0) weft::this_fiber::yield();
            return v;
          }, i));
          if (window.size() - head >= 512) acc += window[head++].join();
          if (head == window.size() || head >= 512) {
            window.erase(window.begin(), window.begin() + static_cast<std::ptrdiff_t>(head));
            head = 0;
          }
        }
        for (; head < window.size(); head++) acc += window[head].join();
        return acc;
      }));
    }
    std::size_t all = 0;
    for (auto& h : sp) all += h.join();
    return all;
  }, opts());
  EXPECT_EQ(ran.load(), total);
  std::size_t expect = 0;
  for (int s = 0; s < spawners; s++) {
    std::size_t mine = total / spawners + (s == 0 ? total % spawners : 0);
    expect += mine * (mine - 1) / 2;
  }
  EXPECT_EQ(sum, expect);
}

// A barrier made of Mutex + CondVar: every round all fibers wait, and the
// last to arrive wakes everyone with notify_all, a wake storm across all
// workers each round.
TEST_P(Stress, BarrierWakeStorms) {
  const int n = 64;
  const int rounds = static_cast<int>(scaled(1000));
  weft::run([&] {
    weft::Mutex m;
    weft::CondVar cv;
    int arrived = 0;
    long generation = 0;
    std::vector<long> seen(n, 0);
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < n; i++) {
      hs.push_back(weft::go([&, i] {
        for (int r = 0; r < rounds; r++) {
          std::unique_lock<weft::Mutex> l(m);
          long g = generation;
          ASSERT_EQ(g, r);
          if (++arrived == n) {
            arrived = 0;
            generation++;
            cv.notify_all();
          } else {
            cv.wait(l, [&] { return generation != g; });
          }
          seen[i]++;
        }
      }));
    }
    for (auto& h : hs) h.join();
    EXPECT_EQ(generation, rounds);
    for (int i = 0; i < n; i++) EXPECT_EQ(seen[i], rounds);
  }, opts());
}

// Rings of fibers passing a token to the next through per-fiber
// Mutex/CondVar mailboxes: every pass wakes a fiber that may be on another
// worker, with many rings in flight at once.
TEST_P(Stress, TokenRingsAcrossWorkers) {
  const int rings = 16, ring_size = 16;
  const long passes = static_cast<long>(scaled(20000));
  struct Box {
    weft::Mutex m;
    weft::CondVar cv;
    long token = -1;
  };
  long total = weft::run([&] {
    std::vector<std::unique_ptr<Box>> boxes;
    for (int i = 0; i < rings * ring_size; i++) boxes.push_back(std::make_unique<Box>());
    std::atomic<long> hops{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int r = 0; r < rings; r++) {
      for (int k = 0; k < ring_size; k++) {
        hs.push_back(weft::go([&, r, k] {
          Box& me = *boxes[r * ring_size + k];
          Box& next = *boxes[r * ring_size + (k + 1) % ring_size];
          for (;;) {
            long t;
            {
              std::unique_lock<weft::Mutex> l(me.m);
              me.cv.wait(l, [&] { return me.token >= 0; });
              t = std::exchange(me.token, -1);
            }
            if (t < passes) hops.fetch_add(1, std::memory_order_relaxed);
            {
              std::lock_guard<weft::Mutex> l(next.m);
              next.token = t + 1;
              next.cv.notify_one();
            }
            // Past the end: pass it on once more so that every fiber of
            // the ring sees a value >= passes, then stop.
            if (t >= passes) return;
          }
        }));
      }
      Box& first = *boxes[r * ring_size];
      std::lock_guard<weft::Mutex> l(first.m);
      first.token = 0;
      first.cv.notify_one();
    }
    for (auto& h : hs) h.join();
    return hops.load();
  }, opts());
  EXPECT_EQ(total, rings * passes);
}

// 100,000 fibers parked on CondVars, all woken by notify_all.
TEST_P(Stress, HundredThousandWaitersNotifyAll) {
  const int n = static_cast<int>(weft_test::live_fiber_cap(scaled(100'000)));
  const int ncv = 4;
  weft::run([n] {
    weft::Mutex m;
    weft::CondVar cvs[ncv];
    weft::CondVar all_waiting;
    int waiting = 0;
    bool go_flag = false;
    weft::WaitGroup wg;
    wg.add(n);
    std::atomic<int> woken{0};
    for (int i = 0; i < n; i++) {
      weft::spawn([&, i] {
        {
          std::unique_lock<weft::Mutex> l(m);
          if (++waiting == n) all_waiting.notify_one();
          cvs[i % ncv].wait(l, [&] { return go_flag; });
        }
        woken.fetch_add(1, std::memory_order_relaxed);
        wg.done();
      });
    }
    {
      std::unique_lock<weft::Mutex> l(m);
      all_waiting.wait(l, [&] { return waiting == n; });
      go_flag = true;
    }
    for (auto& cv : cvs) cv.notify_all();
    wg.wait();
    EXPECT_EQ(woken.load(), n);
  }, opts());
}

// Mutex handoff under heavy contention with short sleeps: exercises the
// starvation mode (waiters older than 1 ms get the lock handed over).
TEST_P(Stress, MutexStarvationModeHandoff) {
  const int fibers = 32;
  const int iters = static_cast<int>(scaled(300));
  long counter = 0;
  weft::run([&] {
    weft::Mutex m;
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < fibers; i++) {
      hs.push_back(weft::go([&] {
        for (int k = 0; k < iters; k++) {
          std::lock_guard<weft::Mutex> l(m);
          counter++;
          if (k % 50 == 0) weft::this_fiber::sleep_for(1500us);  // long holds push waiters past 1 ms
        }
      }));
    }
    for (auto& h : hs) h.join();
  }, opts());
  EXPECT_EQ(counter, static_cast<long>(fibers) * iters);
}

// Thousands of runnable fibers at once: each yields repeatedly, so a
// worker's bounded run queue (256) overflows into the global queue and
// fibers come back from it, get stolen, and all finish.
TEST_P(Stress, RunQueueOverflowAndYieldStorm) {
  const int n = static_cast<int>(scaled(20000));
  const int yields = 20;
  std::atomic<long> steps{0};
  weft::run([&] {
    weft::WaitGroup wg;
    wg.add(n);
    for (int i = 0; i < n; i++) {
      weft::spawn([&] {
        for (int k = 0; k < yields; k++) {
          steps.fetch_add(1, std::memory_order_relaxed);
          weft::this_fiber::yield();
        }
        wg.done();
      });
    }
    wg.wait();
  }, opts());
  EXPECT_EQ(steps.load(), static_cast<long>(n) * yields);
}

INSTANTIATE_TEST_SUITE_P(Workers, Stress, ::testing::ValuesIn(weft_test::kWorkerCounts), weft_test::workers_name);

}  // namespace
