// edge_test.cpp: regression tests for the runtime races of issue 8 ("found
// by reading"), each narrating its interleaving. The windows are narrow; the
// chaos build (meson -Dchaos=true, ./dev test chaos) widens them with random
// delays at exactly these points, and the suite runs so under TSan in CI.
#include <atomic>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::RuntimeTest;
using weft_test::scaled;

class Edge : public RuntimeTest {};

// wakep() skipped the wake when "the only worker is the caller", testing
// only that the caller was *a* worker. A fiber of runtime A completing a
// rendezvous with a fiber of one-worker runtime B queued B's fiber on B's
// global queue and returned without waking B's sleeping worker: B slept
// until its next timer (here the 10 s bound of the select), or forever.
// Either side may park first, so both directions are exercised: the value
// must cross promptly (the bound is 10 s; a correct runtime takes
// microseconds, so the verdict does not depend on the machine's speed).
TEST_F(Edge, WakeAcrossRuntimesReachesAOneWorkerRuntime) {
  const int rounds = static_cast<int>(scaled(40));
  for (int i = 0; i < rounds; i++) {
    weft::Chan<int> c(0);
    std::atomic<bool> got{false}, sent{false};
    std::thread b([&] {
      weft::run([&] {
        if (i % 2) weft::this_fiber::sleep_for(200us);  // alternate who parks first
        weft::select(weft::recv(c, [&](std::optional<int> v) { got = v == i; }), weft::after(10s, [] {}));
      }, weft::Options{.workers = 1});
    });
    std::thread a([&] {
      weft::run([&] {
        if (i % 2 == 0) weft::this_fiber::sleep_for(200us);
        weft::select(weft::send(c, i, [&] { sent = true; }), weft::after(10s, [] {}));
      }, weft::Options{.workers = 1});
    });
    auto t0 = weft::Clock::now();
    a.join();
    b.join();
    EXPECT_TRUE(got.load()) << "round " << i;
    EXPECT_TRUE(sent.load()) << "round " << i;
    EXPECT_LT(weft::Clock::now() - t0, 5s) << "round " << i << ": a wake across runtimes waited for a timer";
  }
}

// A plain thread's send completes a fiber's parked recv: under the channel
// lock it moves the value and takes the receiver's parker, unlocks, then
// unparks. In between, main returned: the shutdown sweep cancelled the
// receiver (its claim was still open), it unwound, the runtime ended and
// freed its sync table, and the late unpark read freed memory. Now the send
// pins the receiver's runtime while it still holds the lock (DeferredWake),
// and run() waits for the pin to drop. Under ASan (and the chaos build, which
// sleeps in exactly that window) the old order was a use-after-free.
TEST_F(Edge, OutsideWakeRacingShutdownKeepsTheRuntimeAlive) {
  const int rounds = static_cast<int>(scaled(200));
  for (int i = 0; i < rounds; i++) {
    weft::Chan<int> c(0);
    std::atomic<bool> parked{false};
    std::thread t;
    weft::run([&] {
      weft::spawn([&] {
        parked = true;
        (void)c.recv();  // parks; cancelled at shutdown unless the send won
      });
      t = std::thread([&] {
        while (!parked) std::this_thread::yield();
        try {
          (void)c.try_send(i);
        } catch (const weft::ChanClosed&) {
        }
      });
      if (i % 3) weft::this_fiber::sleep_for(std::chrono::microseconds(i % 50));
    }, weft::Options{.workers = 1u + static_cast<unsigned>(i % 2)});
    t.join();
  }
}

// The blocking pool's thread finishes a job: under the job's lock it sets
// done and takes the fiber's parker, unlocks, then unparks. The fiber had
// been cancelled by shutdown (it keeps waiting for the job, which writes
// into its stack): it re-checked under the lock, saw done, unwound and
// exited, run() returned and freed the sync table, and the late unpark of
// the old parker read freed memory. Now the pool thread pins the runtime
// across that window. Caught by ASan and the chaos build (which sleeps in
// the window).
TEST_F(Edge, BlockingJobFinishingAtShutdownKeepsTheRuntimeAlive) {
  const int rounds = static_cast<int>(scaled(200));
  for (int i = 0; i < rounds; i++) {
    std::atomic<bool> started{false};
    weft::run([&] {
      weft::spawn([&] {
        weft::blocking([&] {
          started = true;
          std::this_thread::sleep_for(std::chrono::microseconds(i % 40));
        });
      });
      while (!started) weft::this_fiber::yield();
    }, weft::Options{.workers = 1u + static_cast<unsigned>(i % 2)});
  }
}

// A joiner in runtime B parked on a fiber of runtime A; B shuts down and
// cancels the joiner just as A's fiber ends. The fiber's join_finish
// exchanged the state to done and then unparked the joiner's old parker;
// the joiner, whose withdrawal found "done", unwound and exited first, B
// ended and freed its sync table, and the late unpark read freed memory.
// Now the fiber marks the state "waking" until its unpark is over, and the
// cancelled joiner waits for "done" before it unwinds. ASan and chaos.
TEST_F(Edge, JoinAcrossRuntimesRacingShutdown) {
  const int rounds = static_cast<int>(scaled(100));
  for (int i = 0; i < rounds; i++) {
    weft::Chan<weft::JoinHandle<int>> handoff(1);
    std::atomic<bool> joining{false};
    std::thread b([&] {
      weft::run([&] {
        weft::spawn([&] {
          auto h = handoff.recv();
          joining = true;
          try {
            (void)h->join();
          } catch (const std::exception&) {
            // A's shutdown may unwind the fiber first: join reports that.
          }
        });
        while (!joining) weft::this_fiber::sleep_for(10us);
        if (i % 2) weft::this_fiber::sleep_for(std::chrono::microseconds(i % 30));
      }, weft::Options{.workers = 1});
    });
    weft::run([&] {
      auto h = weft::go([&] {
        while (!joining) weft::this_fiber::sleep_for(10us);
        return 1;
      });
      handoff.send(std::move(h));
    }, weft::Options{.workers = 1});
    b.join();
  }
}

// A timer armed while an idle worker is between scanning the timer heaps
// and publishing its sleep deadline was seen by neither side: the sleeper
// slept with no deadline, and the arming worker, busy with a long fiber,
// ran its timers only at its next switch. Here worker X arms a 1 ms sleep
// and then runs a 200 ms CPU hog; the other worker is idle. The sleeper
// must wake while the hog still runs (the idle worker fires X's timers).
TEST_F(Edge, TimerArmedWhileTheOtherWorkerGoesToSleepFiresOnTime) {
  const int rounds = static_cast<int>(scaled(20));
  int late = 0;
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      std::atomic<bool> hog_done{false}, woke_during_hog{false};
      weft::WaitGroup wg;
      wg.add(2);
      weft::spawn([&] {
        weft::this_fiber::sleep_for(1ms);  // armed on this worker's heap
        woke_during_hog = !hog_done.load();
        wg.done();
      });
      weft::spawn([&] {  // queued behind the sleeper on the same worker
        auto end = weft::Clock::now() + 200ms;
        while (weft::Clock::now() < end) {
        }
        hog_done = true;
        wg.done();
      });
      wg.wait();
      if (!woke_during_hog) late++;
    }
  }, weft::Options{.workers = 2, .stuck_threshold = std::chrono::milliseconds(1000)});
  EXPECT_EQ(late, 0) << "a 1 ms sleep outlasted a 200 ms hog on the other worker";
}

// Shutdown read the live-fiber count worker by worker, spawns and exits
// together, and could read 0 while a fiber was parked: a fiber spawned on
// a worker already summed and ending on one not yet summed cancelled out
// the parked one, and run() stopped the workers without unwinding it (its
// destructors never ran). Many short-lived fibers churn across two
// workers while one stays parked; its destructor must run every time.
TEST_F(Edge, ShutdownUnwindsAParkedFiberWhileOthersChurn) {
  const int rounds = static_cast<int>(scaled(100));
  for (int i = 0; i < rounds; i++) {
    weft_test::Probe::reset();
    weft::run([&] {
      weft::spawn([] {
        weft_test::Probe p;
        weft::Chan<int> never(0);
        (void)never.recv();
      });
      for (int k = 0; k < 8; k++)
        weft::spawn([] {
          for (int j = 0; j < 50; j++) weft::spawn([] { weft::this_fiber::yield(); });
        });
    }, weft::Options{.workers = 2});
    EXPECT_EQ(weft_test::Probe::made.load(), weft_test::Probe::destroyed.load()) << "round " << i;
  }
}

// Found by CI (TSan, Fiber.JoinRethrowsException, 1 run in ~40): a fiber
// ending with an exception unparks its parked joiner, then drops its
// reference to the join state. The joiner, woken on the other worker,
// rethrew the exception and dropped its reference first; the fiber's drop
// was then the last one, found the exception still in the state and took
// it for one nobody joined: "weft: panic: ... uncaught exception" although
// join() had thrown it. join() now takes the exception out of the state
// before letting go. This test replays exactly that order without a
// scheduler: the fiber's state change (kDone), the joiner's whole join(),
// then the fiber's last drop (join_finish), which must neither panic nor
// leak (ASan).
TEST(JoinState, JoinerLettingGoFirstDoesNotTurnAJoinedExceptionIntoAPanic) {
  auto* st = new weft::detail::JoinState<int>();
  st->error = std::make_exception_ptr(std::runtime_error("joined"));
  st->state.store(weft::detail::JoinStateBase::kDone);  // the fiber ended ...
  weft::JoinHandle<int> h(st);
  EXPECT_THROW(h.join(), std::runtime_error);            // ... the joiner saw it, let go ...
  weft::detail::join_finish(st);                         // ... then the fiber lets go, last
}

// The same race with a real scheduler. The joiner is a plain thread parked
// in join(), so it wakes at once and races the fiber's last drop (a fiber
// joiner is queued behind the dying fiber and only a monitor rescue lets it
// run first: how CI met it). The chaos build delays the fiber right after
// its unpark, where the joiner's drop must come first.
TEST_F(Edge, JoinedExceptionNeverPanicsWhicheverSideLetsGoLast) {
  const int rounds = static_cast<int>(scaled(300));
  for (int i = 0; i < rounds; i++) {
    weft::JoinHandle<void> h;
    std::atomic<bool> handed{false};
    std::thread joiner([&] {
      while (!handed.load(std::memory_order_acquire)) std::this_thread::yield();
      EXPECT_THROW(h.join(), std::runtime_error);
    });
    weft::run([&] {
      h = weft::go([] {
        weft::this_fiber::sleep_for(100us);  // the joiner parks meanwhile
        throw std::runtime_error("joined");
      });
      handed.store(true, std::memory_order_release);
    }, weft::Options{.workers = 2});
    joiner.join();
  }
}

}  // namespace
