// lifetime_test.cpp: API.md's lifetime rule (std::condition_variable's): a
// primitive may be destroyed as soon as no fiber is parked in it, even when
// fibers it woke have not yet returned from their wait. Each test frees the
// primitive at the earliest legal moment and then poisons its bytes (0xFF:
// a spin lock inside would read "held" forever), so a woken waiter or a
// waker that touches it afterwards hangs or is caught by ASan. The verdict
// is bounded: a fiber that never finishes fails the test by a timeout, and
// the process aborts with a message rather than hang.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::scaled;
using weft_test::WorkersTest;

class Lifetime : public WorkersTest {};

// Storage for a primitive that a test destroys by hand and then poisons.
template <class T>
struct Poisonable {
  alignas(T) unsigned char mem[sizeof(T)];
  T* make() { return ::new (mem) T(); }
  void destroy(T* p) {
    p->~T();
    std::memset(mem, 0xFF, sizeof mem);
  }
};

// Waits for `done` to be closed by the helper; a helper stuck on the freed
// primitive never closes it: abort with a message instead of hanging.
void expect_closed_soon(weft::Chan<int>& done, const char* what) {
  bool closed = false;
  weft::select(weft::recv(done, [&](std::optional<int> v) { closed = !v; }),
               weft::after(20s, [] {}));
  if (!closed) {
    std::fprintf(stderr, "FAILED: %s: the helper never finished (it touched the freed primitive)\n", what);
    std::abort();
  }
}

// Go's "WaitGroup with a timeout" idiom (issue 8, item 2):
//   helper:  wg.wait(); close(done)
//   owner:   wg.wait(); return            (frees wg)
// Interleaving that hung before: the helper parks in wait(), the owner
// parks in wait(), a worker fiber's done() moves the counter to zero and
// wakes both. On one worker the owner runs first (it displaced the helper
// from the lifo slot), returns and frees wg; then the helper resumed and
// re-took a spin lock inside the freed WaitGroup to "let the waker finish":
// 100% CPU forever. Now the zero move is the waker's last touch and woken
// waiters never touch the WaitGroup.
TEST_P(Lifetime, WaitGroupTimeoutIdiomFreesWhileHelperWakes) {
  const int rounds = static_cast<int>(scaled(300));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      Poisonable<weft::WaitGroup> store;
      weft::WaitGroup* wg = store.make();
      wg->add(1);
      weft::Chan<int> done(0);
      weft::spawn([wg, done]() mutable {  // runs first, parks in wait()
        wg->wait();
        done.close();
      });
      weft::spawn([wg, i] {  // parks briefly, then makes the counter zero
        if (i % 2) weft::this_fiber::sleep_for(100us); else weft::this_fiber::yield();
        wg->done();
      });
      wg->wait();          // the owner
      store.destroy(wg);   // legal: every waiter was woken
      expect_closed_soon(done, "WaitGroup idiom");
    }
  }, opts());
}

// The same idiom with wait_for (API.md): the owner's bounded wait succeeds.
TEST_P(Lifetime, WaitGroupWaitForThenFree) {
  const int rounds = static_cast<int>(scaled(300));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      Poisonable<weft::WaitGroup> store;
      weft::WaitGroup* wg = store.make();
      wg->add(2);
      weft::Chan<int> done(0);
      weft::spawn([wg, done]() mutable {
        wg->wait();
        done.close();
      });
      for (int k = 0; k < 2; k++) weft::spawn([wg] { weft::this_fiber::yield(); wg->done(); });
      EXPECT_TRUE(wg->wait_for(10s));
      store.destroy(wg);
      expect_closed_soon(done, "WaitGroup wait_for");
    }
  }, opts());
}

TEST_P(Lifetime, WaitGroupWaitForTimesOutAndLeavesNoWaiter) {
  weft::run([&] {
    weft::WaitGroup wg;
    wg.add(1);
    auto t0 = weft::Clock::now();
    EXPECT_FALSE(wg.wait_for(2ms));
    EXPECT_GE(weft::Clock::now() - t0, 2ms);
    // The timed-out waiter unlinked itself: the zero move wakes nobody stale,
    // and a later wait returns at once.
    wg.done();
    EXPECT_TRUE(wg.wait_for(0s));
    wg.wait();
  }, opts());
}

// CondVar: two fibers wait, the notifier sets the flag and notifies all;
// the owner (one of the waiters) returns from wait and frees the CondVar
// while the other woken waiter is still on its way out of wait(). Before,
// a woken waiter re-took the CondVar's spin lock "to let the notifier
// finish": on the poisoned bytes it spun forever.
TEST_P(Lifetime, CondVarNotifyAllThenOwnerFrees) {
  const int rounds = static_cast<int>(scaled(300));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      weft::Mutex m;
      bool ready = false;
      Poisonable<weft::CondVar> store;
      weft::CondVar* cv = store.make();
      weft::Chan<int> done(0);
      weft::spawn([&, cv, done]() mutable {
        {
          std::unique_lock<weft::Mutex> l(m);
          cv->wait(l, [&] { return ready; });
        }
        done.close();
      });
      weft::spawn([&, cv, i] {
        if (i % 2) weft::this_fiber::sleep_for(100us); else weft::this_fiber::yield();
        std::lock_guard<weft::Mutex> l(m);
        ready = true;
        cv->notify_all();
      });
      {
        std::unique_lock<weft::Mutex> l(m);
        cv->wait(l, [&] { return ready; });
      }
      store.destroy(cv);
      expect_closed_soon(done, "CondVar notify_all");
    }
  }, opts());
}

// A timed wait racing notify_all: the waiter's timer and the notifier's
// wake compete for one claim. Whoever loses must not touch the CondVar (the
// timed-out waiter unlinks itself in the parking lot, not in the object).
// Many rounds with the timeout placed around the notify.
TEST_P(Lifetime, CondVarTimeoutRacesNotifyAll) {
  const int rounds = static_cast<int>(scaled(400));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      weft::Mutex m;
      Poisonable<weft::CondVar> store;
      weft::CondVar* cv = store.make();
      weft::WaitGroup wg;
      for (int k = 0; k < 3; k++) {
        wg.add();
        weft::spawn([&, cv, k] {
          std::unique_lock<weft::Mutex> l(m);
          cv->wait_for(l, std::chrono::microseconds(20 * (k + i % 5)));
          l.unlock();
          wg.done();
        });
      }
      weft::this_fiber::sleep_for(std::chrono::microseconds(30 + i % 50));
      {
        std::lock_guard<weft::Mutex> l(m);
        cv->notify_all();
      }
      wg.wait();  // every waiter returned (woken or timed out)
      store.destroy(cv);
    }
  }, opts());
}

// Plain threads waiting on a WaitGroup a fiber zeroes, then freed by one of
// them while the others are being woken (futex path of the lot).
TEST_P(Lifetime, WaitGroupPlainThreadWaitersThenFree) {
  const int rounds = static_cast<int>(scaled(50));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      auto store = std::make_unique<Poisonable<weft::WaitGroup>>();
      weft::WaitGroup* wg = store->make();
      wg->add(1);
      std::atomic<int> parked{0};
      std::vector<std::thread> ts;
      for (int k = 0; k < 2; k++)
        ts.emplace_back([&, wg] {
          parked.fetch_add(1);
          wg->wait();
        });
      weft::blocking([&] {
        while (parked.load() < 2) std::this_thread::yield();
        std::this_thread::sleep_for(200us);  // most rounds: both are parked
      });
      wg->done();
      weft::blocking([&] {
        for (auto& t : ts) t.join();
      });
      store->destroy(wg);
    }
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, Lifetime, ::testing::Values(1u, 2u), weft_test::workers_name);

}  // namespace
