// sync_test.cpp: Mutex, CondVar and WaitGroup (sync.hpp/sync.cpp), over
// worker counts 1, 2, 4, 8, and shared with plain std::threads.
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::RuntimeTest;
using weft_test::scaled;
using weft_test::since;
using weft_test::WorkersTest;

class Sync : public WorkersTest {};

// Many fibers increment a plain counter under the Mutex; `inside` catches
// any moment two of them hold it at once.
TEST_P(Sync, MutexMutualExclusion) {
  const int fibers = 64;
  const int iters = static_cast<int>(scaled(2000));
  long counter = 0;
  weft::run([&] {
    weft::Mutex m;
    std::atomic<int> inside{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < fibers; i++) {
      hs.push_back(weft::go([&, i] {
        for (int k = 0; k < iters; k++) {
          std::lock_guard<weft::Mutex> l(m);
          EXPECT_EQ(inside.fetch_add(1), 0);
          counter++;
          if ((k + i) % 16 == 0) weft::this_fiber::yield();  // hold it across a switch sometimes
          inside.fetch_sub(1);
        }
      }));
    }
    for (auto& h : hs) h.join();
  }, opts());
  EXPECT_EQ(counter, static_cast<long>(fibers) * iters);
}

TEST_P(Sync, MutexTryLock) {
  weft::run([] {
    weft::Mutex m;
    EXPECT_TRUE(m.try_lock());
    EXPECT_FALSE(m.try_lock());
    EXPECT_FALSE(weft::go([&] { return m.try_lock(); }).join());
    m.unlock();
    EXPECT_TRUE(weft::go([&] {
      bool ok = m.try_lock();
      if (ok) m.unlock();
      return ok;
    }).join());
  }, opts());
}

// Plain threads and fibers contend for one Mutex: the threads block on a
// futex, the fibers park.
TEST_P(Sync, MutexSharedWithPlainThreads) {
  const int iters = static_cast<int>(scaled(20000));
  long counter = 0;
  weft::Mutex m;
  std::atomic<int> inside{0};
  auto body = [&] {
    for (int k = 0; k < iters; k++) {
      std::lock_guard<weft::Mutex> l(m);
      EXPECT_EQ(inside.fetch_add(1), 0);
      counter++;
      inside.fetch_sub(1);
    }
  };
  weft::run([&] {
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; i++) ts.emplace_back(body);
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 8; i++) hs.push_back(weft::go(body));
    for (auto& h : hs) h.join();
    // Joining a std::thread blocks this worker: fine here, the threads do
    // not need fibers to finish (each only waits for the Mutex).
    for (auto& t : ts) t.join();
  }, opts());
  EXPECT_EQ(counter, 10L * iters);
}

// Regression: two owners after a starvation-mode hand-off. Both fixed
// interleavings start the same way: holder H (often a plain thread here,
// easily preempted) unlocks in normal mode (its fetch_sub leaves kWaiters)
// and heads for unlock_slow; before H takes qlock_, barger B takes the free
// lock by CAS, and a queued waiter that has waited over 1 ms re-queues and
// sets kStarving while B holds it.
//  1. H takes qlock_, sees kStarving, and hands the lock to waiter W
//     without checking kLocked: B and W both own it.
//  2. B unlocks first (kStarving set: it hands the lock to W1), then H
//     takes qlock_, sees kStarving and a free lock, and hands it to W2 too.
// Either way the second unlock aborted with "weft: Mutex::unlock() of an
// unlocked mutex" (or the `inside` check below failed). Now only an unlock
// that itself released in starvation mode hands off, and never while
// kLocked is set. Holds of over 1 ms keep the mutex flipping into
// starvation mode while threads and fibers barge.
TEST_P(Sync, MutexStarvationHandoffVsBarger) {
  const int iters = static_cast<int>(scaled(3000));
  long counter = 0;
  weft::Mutex m;
  std::atomic<int> inside{0};
  auto body = [&](int who) {
    for (int k = 0; k < iters; k++) {
      std::lock_guard<weft::Mutex> l(m);
      ASSERT_EQ(inside.fetch_add(1), 0);
      counter++;
      if ((k + who) % 500 == 0) weft::this_fiber::sleep_for(1200us);  // on a thread: sleeps the thread
      inside.fetch_sub(1);
    }
  };
  weft::run([&] {
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; i++) ts.emplace_back(body, i);
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 6; i++) hs.push_back(weft::go(body, 100 + i));
    for (auto& h : hs) h.join();
    for (auto& t : ts) t.join();
  }, opts());
  EXPECT_EQ(counter, 9L * iters);
}

TEST_P(Sync, CondVarNotifyOneAndAll) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    int ready = 0, tickets = 0, served = 0;
    const int n = 50;
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < n; i++) {
      hs.push_back(weft::go([&] {
        std::unique_lock<weft::Mutex> l(m);
        ready++;
        cv.wait(l, [&] { return tickets > 0; });
        tickets--;
        served++;
      }));
    }
    // notify_one, one ticket at a time: each wakes one waiter.
    for (int i = 0; i < n / 2; i++) {
      std::lock_guard<weft::Mutex> l(m);
      tickets++;
      cv.notify_one();
    }
    {
      std::unique_lock<weft::Mutex> l(m);
      tickets += n - n / 2;
    }
    cv.notify_all();
    for (auto& h : hs) h.join();
    EXPECT_EQ(served, n);
    EXPECT_EQ(tickets, 0);
  }, opts());
}

TEST_P(Sync, CondVarWaitForTimesOut) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    std::unique_lock<weft::Mutex> l(m);
    auto t0 = weft::Clock::now();
    EXPECT_EQ(cv.wait_for(l, 20ms), std::cv_status::timeout);
    EXPECT_GE(since(t0), 20ms);
    EXPECT_TRUE(l.owns_lock());
    t0 = weft::Clock::now();
    EXPECT_FALSE(cv.wait_for(l, 10ms, [] { return false; }));
    EXPECT_GE(since(t0), 10ms);
    EXPECT_TRUE(cv.wait_for(l, 10ms, [] { return true; }));
    // A huge timeout does not overflow into the past.
    bool flag = false;
    auto h = weft::go([&] {
      std::lock_guard<weft::Mutex> g(m);
      flag = true;
      cv.notify_one();
    });
    EXPECT_TRUE(cv.wait_for(l, std::chrono::nanoseconds::max(), [&] { return flag; }));
    l.unlock();
    h.join();
  }, opts());
}

TEST_P(Sync, CondVarWaitForNotifiedBeforeDeadline) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    bool flag = false;
    auto h = weft::go([&] {
      weft::this_fiber::sleep_for(5ms);
      std::lock_guard<weft::Mutex> l(m);
      flag = true;
      cv.notify_all();
    });
    std::unique_lock<weft::Mutex> l(m);
    EXPECT_TRUE(cv.wait_for(l, 60s, [&] { return flag; }));
    l.unlock();
    h.join();
  }, opts());
}

// Timeouts and notifies racing: every waiter returns exactly once, with
// the lock held, whichever wins.
TEST_P(Sync, CondVarTimeoutRacesNotify) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    std::atomic<int> returned{0};
    std::vector<weft::JoinHandle<void>> hs;
    const int n = static_cast<int>(scaled(400));
    for (int i = 0; i < n; i++) {
      hs.push_back(weft::go([&, i] {
        std::unique_lock<weft::Mutex> l(m);
        (void)cv.wait_for(l, std::chrono::microseconds(i % 50));
        EXPECT_TRUE(l.owns_lock());
        returned++;
      }));
      if (i % 3 == 0) cv.notify_one();
      if (i % 17 == 0) cv.notify_all();
    }
    for (auto& h : hs) h.join();
    EXPECT_EQ(returned.load(), n);
  }, opts());
}

TEST_P(Sync, CondVarWaitNeedsLock) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    std::unique_lock<weft::Mutex> l(m, std::defer_lock);
    EXPECT_THROW(cv.wait(l), std::logic_error);
  }, opts());
}

// A plain thread waits on a CondVar that a fiber notifies, and the reverse.
TEST_P(Sync, CondVarAcrossThreadsAndFibers) {
  weft::Mutex m;
  weft::CondVar cv;
  int stage = 0;
  std::thread t([&] {
    std::unique_lock<weft::Mutex> l(m);
    cv.wait(l, [&] { return stage == 1; });
    stage = 2;
    cv.notify_all();
  });
  weft::run([&] {
    {
      std::lock_guard<weft::Mutex> l(m);
      stage = 1;
    }
    cv.notify_all();
    std::unique_lock<weft::Mutex> l(m);
    cv.wait(l, [&] { return stage == 2; });
  }, opts());
  t.join();
  EXPECT_EQ(stage, 2);
}

TEST_P(Sync, WaitGroupWaitsForAll) {
  weft::run([] {
    weft::WaitGroup wg;
    wg.wait();  // zero: returns at once
    std::atomic<int> n{0};
    const int fibers = 200;
    for (int round = 0; round < 3; round++) {  // reusable once back at zero
      wg.add(fibers);
      for (int i = 0; i < fibers; i++) {
        weft::spawn([&, i] {
          if (i % 2) weft::this_fiber::sleep_for(std::chrono::microseconds(i));
          n++;
          wg.done();
        });
      }
      // Several waiters at once, all woken.
      std::vector<weft::JoinHandle<void>> waiters;
      for (int w = 0; w < 4; w++) waiters.push_back(weft::go([&] { wg.wait(); }));
      wg.wait();
      EXPECT_EQ(n.load(), fibers * (round + 1));
      for (auto& h : waiters) h.join();
    }
  }, opts());
}

TEST_P(Sync, WaitGroupNegativeThrows) {
  weft::run([] {
    weft::WaitGroup wg;
    EXPECT_THROW(wg.done(), std::logic_error);
    EXPECT_THROW(wg.add(-1), std::logic_error);
    wg.add(2);
    EXPECT_THROW(wg.add(-3), std::logic_error);
    wg.done();  // the failed add left the counter at 2
    wg.done();
    wg.wait();
  }, opts());
}

// Regression: a WaitGroup destroyed as soon as wait() returns. Interleaving:
// fiber D calls done(), its fetch_add moves the counter to zero; the waiter
// W sees zero on wait()'s lock-free fast path, returns and frees the
// WaitGroup; D then takes the WaitGroup's spin lock, walks its (freed)
// waiter list and unlocks: writes to freed memory (TSan flagged the spin
// lock's write racing with the reuse of that memory). The group lives on the
// heap here so that ASan sees a use after free, TSan a race with the free.
TEST_P(Sync, WaitGroupDestroyedRightAfterWait) {
  const int rounds = static_cast<int>(scaled(4000));
  weft::run([rounds] {
    // The last done() comes from a plain thread: its wake goes through the
    // global queue, so another worker can resume the waiter while that
    // thread is still inside add().
    std::atomic<weft::WaitGroup*> handoff{nullptr};
    std::atomic<bool> stop{false};
    std::thread helper([&] {
      while (!stop.load()) {
        if (weft::WaitGroup* wg = handoff.exchange(nullptr)) wg->done();
        else std::this_thread::yield();  // 2 cores: leave room for the workers
      }
    });
    for (int r = 0; r < rounds; r++) {
      auto* wg = new weft::WaitGroup;
      wg->add(2);
      weft::spawn([wg] { wg->done(); });
      handoff.store(wg);
      wg->wait();
      delete wg;
    }
    stop = true;
    helper.join();
  }, opts());
}

// The same for a CondVar notified after the mutex is released: the woken
// waiter may destroy the CondVar while notify_all() is still running (std
// allows it: only the notification must happen before the destruction).
// The notifier needs the mutex to set the flag, which the waiter holds
// until it is queued, so the waiter is always woken by that notify_all.
TEST_P(Sync, CondVarDestroyedRightAfterWake) {
  const int rounds = static_cast<int>(scaled(4000));
  weft::run([rounds] {
    weft::Mutex m;
    bool flag = false;
    std::atomic<weft::CondVar*> handoff{nullptr};
    std::atomic<bool> stop{false};
    std::thread helper([&] {
      while (!stop.load()) {
        if (weft::CondVar* cv = handoff.exchange(nullptr)) {
          {
            std::lock_guard<weft::Mutex> g(m);
            flag = true;
          }
          cv->notify_all();
        } else {
          std::this_thread::yield();
        }
      }
    });
    for (int r = 0; r < rounds; r++) {
      auto* cv = new weft::CondVar;
      std::unique_lock<weft::Mutex> l(m);
      flag = false;
      handoff.store(cv);
      cv->wait(l, [&] { return flag; });
      l.unlock();
      delete cv;
    }
    stop = true;
    helper.join();
  }, opts());
}

// Destroy-after-unlock: holder H unlocks a contended mutex (a waiter W is
// queued) and, before this fix, released kLocked first and took qlock_ to
// wake W afterwards. In between, a barger B could lock, unlock and delete
// the mutex, and H then locked qlock_ inside freed memory (ASan: heap use
// after free). Now a waking unlock releases under qlock_ and the destructor
// waits for qlock_. Here B is the waiter itself after being woken: it takes
// the lock, releases it and deletes the mutex at once.
TEST_P(Sync, MutexDestroyedRightAfterUnlock) {
  const int rounds = static_cast<int>(scaled(3000));
  weft::run([rounds] {
    for (int r = 0; r < rounds; r++) {
      auto* m = new weft::Mutex;
      m->lock();
      auto w = weft::go([m] {
        m->lock();  // parks: the main fiber holds it
        m->unlock();
        delete m;   // main may still be inside unlock()
      });
      weft::this_fiber::yield();  // let the waiter queue up
      m->unlock();
      w.join();
    }
  }, opts());
}

TEST_P(Sync, WaitGroupFromPlainThread) {
  weft::WaitGroup wg;
  wg.add(4);
  std::thread waiter([&] { wg.wait(); });
  weft::run([&] {
    for (int i = 0; i < 4; i++) weft::spawn([&] {
      weft::this_fiber::sleep_for(1ms);
      wg.done();
    });
    wg.wait();
  }, opts());
  waiter.join();
}

INSTANTIATE_TEST_SUITE_P(Workers, Sync, ::testing::ValuesIn(weft_test::kWorkerCounts), weft_test::workers_name);

}  // namespace
