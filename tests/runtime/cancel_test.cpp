// cancel_test.cpp: cancellation (API.md "Cancellation and structured
// concurrency"; weft/cancel.hpp, JoinHandle::cancel): a cancel reaching a
// fiber parked in each kind of cancellation point, the consistency rules (a
// cancelled operation did nothing, a completed one wins over a racing
// cancel), stickiness, CancelShield, join semantics, stop tokens,
// with_timeout/with_deadline frames, mass cancellation, and stress races of a
// cancel against a send, a join, a blocking() job, a with_timeout deadline
// and CondVar notifies completing.
// Scope is not covered here (weft/scope.hpp has its own suite).
//
// How a test knows a fiber is parked before it cancels it: wait_parked(n)
// polls weft::stats().fibers_parked (bounded by 10 s). A fiber cancelled
// before it parks takes the entry check or the scheduler's side of the
// Dekker handshake instead: the verdicts hold either way, only the path
// differs. Every bound below is a failure bound, never a timing ratio.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stop_token>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft::Chan;
using weft::Clock;
using weft_test::RuntimeTest;
using weft_test::scaled;
using weft_test::since;
using weft_test::WorkersTest;

constexpr auto kBound = 10s;  // failure bound for "eventually"
constexpr int kWaiters = 8;   // CondVar stress: waiters per round

using weft_test::wait_parked;

// True if f() threw weft::Cancelled (any other exception propagates).
template <class F>
bool throws_cancelled(F&& f) {
  try {
    f();
    return false;
  } catch (const weft::Cancelled&) {
    return true;
  }
}

// Spins (yield is not a cancellation point) until `flag`, bounded.
void yield_until(const std::atomic<bool>& flag) {
  auto t0 = Clock::now();
  while (!flag.load()) {
    if (since(t0) > kBound) {
      ADD_FAILURE() << "flag never set";
      return;
    }
    weft::this_fiber::yield();
  }
}

class Cancel : public WorkersTest {};
class CancelPlain : public RuntimeTest {};

// ---- a cancel reaching a fiber parked in each kind of cancellation point ----

// Receiver parked on an empty unbuffered channel; cancel wakes it with
// Cancelled. Its waiter was withdrawn: a try_send afterwards finds no
// receiver (a stale waiter would swallow the value), and a new receiver works.
TEST_P(Cancel, ParkedRecvThrowsAndLeavesNoWaiter) {
  weft::run([] {
    for (std::size_t cap : {0u, 3u}) {
      Chan<int> ch(cap);
      auto h = weft::go([ch] { return ch.recv(); });
      wait_parked(1);
      h.cancel();
      EXPECT_THROW(h.join(), weft::Cancelled);
      if (cap == 0) {
        int v = 5;
        EXPECT_FALSE(ch.try_send(v)) << "a withdrawn receiver is still queued";
      }
      auto h2 = weft::go([ch] { return ch.recv(); });
      ch.send(7);
      EXPECT_EQ(h2.join(), std::optional<int>(7));
      EXPECT_EQ(ch.size(), 0u);
    }
  }, opts());
}

// Sender parked on an unbuffered channel with no receiver: cancelled, it
// delivered nothing (try_recv finds no sender), and the channel then carries
// another sender's value.
TEST_P(Cancel, ParkedUnbufferedSendDeliversNothing) {
  weft::run([] {
    Chan<int> ch(0);
    auto h = weft::go([ch] { ch.send(1); });
    wait_parked(1);
    h.cancel();
    EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_FALSE(ch.try_recv().has_value()) << "the cancelled send's value was delivered";
    auto h2 = weft::go([ch] { ch.send(2); });
    EXPECT_EQ(ch.recv(), std::optional<int>(2));
    h2.join();
    EXPECT_FALSE(ch.try_recv().has_value());
  }, opts());
}

// Sender parked on a full buffered channel: cancelled, its value never
// enters the buffer; the buffer holds exactly what was there.
TEST_P(Cancel, ParkedFullBufferedSendDeliversNothing) {
  weft::run([] {
    Chan<int> ch(2);
    ch.send(10);
    ch.send(11);
    auto h = weft::go([ch] { ch.send(12); });
    wait_parked(1);
    h.cancel();
    EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_EQ(ch.size(), 2u);
    EXPECT_EQ(ch.try_recv(), std::optional<int>(10));
    EXPECT_EQ(ch.try_recv(), std::optional<int>(11));
    EXPECT_FALSE(ch.try_recv().has_value()) << "the cancelled send's value reached the buffer";
    // Room again: a plain send does not park and is received.
    ch.send(13);
    EXPECT_EQ(ch.recv(), std::optional<int>(13));
  }, opts());
}

// A select parked on two receives and a send (no otherwise): cancelled, no
// handler ran, no case happened, and none of its three waiters stays queued:
// each channel then behaves as if the select had never been there.
TEST_P(Cancel, ParkedSelectLeavesNoWaiter) {
  weft::run([] {
    Chan<int> a(0), b(0), c(0);
    std::atomic<int> handlers{0};
    auto h = weft::go([a, b, c, &handlers] {
      return weft::select(weft::recv(a, [&](std::optional<int>) { handlers++; }),
                          weft::recv(b, [&](std::optional<int>) { handlers++; }),
                          weft::send(c, 9, [&] { handlers++; }));
    });
    wait_parked(1);
    h.cancel();
    EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_EQ(handlers.load(), 0);
    int v = 1;
    EXPECT_FALSE(a.try_send(v)) << "stale select receiver on a";
    EXPECT_FALSE(b.try_send(v)) << "stale select receiver on b";
    EXPECT_FALSE(c.try_recv().has_value()) << "stale select sender on c";
    // New parties pair up normally on each channel.
    auto r = weft::go([a] { return a.recv(); });
    a.send(3);
    EXPECT_EQ(r.join(), std::optional<int>(3));
    auto s = weft::go([c] { c.send(4); });
    EXPECT_EQ(c.recv(), std::optional<int>(4));
    s.join();
    auto st = weft::stats();
    EXPECT_EQ(st.fibers_parked, 0u);
  }, opts());
}

// The select variants that take other paths: with an after() (park_until:
// the cancel must beat the 1 h timer and the select must not report the
// timeout case), and with only nil channels (its own parking path), with
// and without an after().
TEST_P(Cancel, ParkedSelectWithTimerOrOnlyNilChannels) {
  weft::run([] {
    Chan<int> a(0), nil;
    bool timer_case = false;
    auto h1 = weft::go([a, &timer_case] {
      return weft::select(weft::recv(a), weft::after(1h, [&] { timer_case = true; }));
    });
    auto h2 = weft::go([nil] { return weft::select(weft::recv(nil)); });
    auto h3 = weft::go([nil] { return weft::select(weft::recv(nil), weft::after(1h)); });
    wait_parked(3);
    auto t0 = Clock::now();
    h1.cancel();
    h2.cancel();
    h3.cancel();
    EXPECT_THROW(h1.join(), weft::Cancelled);
    EXPECT_THROW(h2.join(), weft::Cancelled);
    EXPECT_THROW(h3.join(), weft::Cancelled);
    EXPECT_LT(since(t0), kBound);
    EXPECT_FALSE(timer_case);
    int v = 1;
    EXPECT_FALSE(a.try_send(v));
  }, opts());
}

// sleep_for / sleep_until: a 1 h sleep ends at the cancel.
TEST_P(Cancel, ParkedSleepThrows) {
  weft::run([] {
    auto t0 = Clock::now();
    auto h1 = weft::go([] { weft::this_fiber::sleep_for(1h); });
    auto h2 = weft::go([] { weft::this_fiber::sleep_until(Clock::now() + 1h); });
    wait_parked(2);
    h1.cancel();
    h2.cancel();
    EXPECT_THROW(h1.join(), weft::Cancelled);
    EXPECT_THROW(h2.join(), weft::Cancelled);
    EXPECT_LT(since(t0), kBound);
  }, opts());
}

// CondVar::wait re-locks the mutex before it throws (std's rule). The
// canceller holds the mutex while it cancels: the woken waiter must queue
// for the mutex (a Mutex lock is not a cancellation point, so a cancelled
// fiber still gets it) and cannot finish before the canceller unlocks.
// When it catches Cancelled it owns the lock. Untimed and timed waits.
TEST_P(Cancel, ParkedCondVarWaitRelocksBeforeThrowing) {
  weft::run([] {
    for (bool timed : {false, true}) {
      weft::Mutex m;
      weft::CondVar cv;
      bool flag = false;  // never set: only the cancel ends the wait
      auto h = weft::go([&] {
        std::unique_lock<weft::Mutex> l(m);
        try {
          if (timed) {
            while (!flag) (void)cv.wait_for(l, 1h);
          } else {
            while (!flag) cv.wait(l);
          }
        } catch (const weft::Cancelled&) {
          return l.owns_lock();
        }
        return false;
      });
      wait_parked(1);
      {
        std::lock_guard<weft::Mutex> g(m);
        h.cancel();
        weft::this_fiber::sleep_for(2ms);  // let the waiter wake and queue for m
        EXPECT_FALSE(h.done()) << "the waiter ended without the mutex";
      }
      EXPECT_TRUE(h.join()) << "Cancelled caught without the lock held (timed=" << timed << ")";
      // The CondVar still works for the next waiter.
      auto h2 = weft::go([&] {
        std::unique_lock<weft::Mutex> l(m);
        cv.wait(l, [&] { return flag; });
        return 1;
      });
      wait_parked(1);
      {
        std::lock_guard<weft::Mutex> g(m);
        flag = true;
      }
      cv.notify_one();
      EXPECT_EQ(h2.join(), 1);
    }
  }, opts());
}

// WaitGroup::wait and wait_for with the count stuck at 1: cancelled, both
// throw; the WaitGroup is unaffected (done() then lets a new waiter through).
TEST_P(Cancel, ParkedWaitGroupWaitThrows) {
  weft::run([] {
    weft::WaitGroup wg;
    wg.add(1);
    auto h1 = weft::go([&] { wg.wait(); });
    auto h2 = weft::go([&] { return wg.wait_for(1h); });
    wait_parked(2);
    h1.cancel();
    h2.cancel();
    EXPECT_THROW(h1.join(), weft::Cancelled);
    EXPECT_THROW(h2.join(), weft::Cancelled);
    auto h3 = weft::go([&] { return wg.wait_for(kBound); });
    wait_parked(1);
    wg.done();
    EXPECT_TRUE(h3.join());
  }, opts());
}

// JoinHandle::join: the joiner is cancelled while the fiber it joins keeps
// running. join() throws Cancelled and leaves the handle joinable; the
// target is unaffected (not cancelled) and later joined for its value.
TEST_P(Cancel, ParkedJoinerThrowsAndHandleStaysJoinable) {
  weft::run([] {
    Chan<int> gate(0);
    weft::JoinHandle<int> target = weft::go([gate] { return *gate.recv() * 2; });
    auto joiner = weft::go([&target] {
      try {
        (void)target.join();
        return 0;
      } catch (const weft::Cancelled&) {
        return target.joinable() ? 1 : 2;
      }
    });
    wait_parked(2);
    joiner.cancel();
    EXPECT_EQ(joiner.join(), 1) << "join() consumed the handle although it was cancelled";
    ASSERT_TRUE(target.joinable());
    EXPECT_FALSE(target.done());
    gate.send(21);
    EXPECT_EQ(target.join(), 42);
  }, opts());
}

// blocking(): the caller throws Cancelled promptly while the job still runs
// (it waits for a gate the test opens only afterwards); the job then runs to
// its end on its pool thread, its result dropped. It captures by value.
TEST_P(Cancel, ParkedBlockingThrowsPromptlyJobRunsOn) {
  weft::run([] {
    auto gate = std::make_shared<std::atomic<bool>>(false);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    auto h = weft::go([gate, finished] {
      return weft::blocking([gate, finished] {
        auto t0 = Clock::now();
        while (!gate->load() && since(t0) < kBound) std::this_thread::sleep_for(1ms);
        finished->store(true);
        return std::make_unique<int>(7);  // dropped by the pool: no leak (ASan)
      });
    });
    wait_parked(1);
    h.cancel();
    EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_FALSE(finished->load()) << "blocking() waited for the job";
    gate->store(true);
    auto t0 = Clock::now();
    while (!finished->load() && since(t0) < kBound) weft::this_fiber::sleep_for(1ms);
    EXPECT_TRUE(finished->load());
    // A later blocking() of another fiber works normally.
    EXPECT_EQ(weft::go([] { return weft::blocking([] { return 3; }); }).join(), 3);
  }, opts());
}

// A cancel arriving from a plain std::thread (outside the runtime) wakes a
// parked receiver (the wake goes through the runtime's global queue).
TEST_P(Cancel, CancelFromPlainThreadWakesParkedFiber) {
  weft::run([] {
    Chan<int> ch(0);
    auto h = weft::go([ch] { return ch.recv(); });
    wait_parked(1);
    std::thread t([&h] { h.cancel(); });
    t.join();
    EXPECT_THROW(h.join(), weft::Cancelled);
    int v = 1;
    EXPECT_FALSE(ch.try_send(v));
  }, opts());
}

// ---- a cancelled fiber that runs (not parked) ----

// The fiber is cancelled while it runs (it yields until the canceller has
// cancelled it: yield is not a cancellation point). Then every cancellation
// point throws although each could proceed, and does nothing: a ready recv
// leaves the value, a send with room adds none, a ready select (no
// otherwise) takes no case; sleep, WaitGroup::wait with count 0, join of a
// finished fiber, blocking() all throw. Sticky: each throws again. try_*
// and a select with otherwise() are not cancellation points.
TEST_P(Cancel, PointsThrowWhenTheyCouldProceedAndDoNothing) {
  weft::run([] {
    Chan<int> full(1), room(1);
    full.send(1);
    std::atomic<bool> go_on{false};
    weft::WaitGroup wg;
    auto finished = weft::go([] { return 5; });
    auto h = weft::go([&] {
      yield_until(go_on);
      EXPECT_TRUE(weft::this_fiber::cancelled());
      for (int round = 0; round < 3; round++) {  // sticky: every later point throws again
        EXPECT_TRUE(throws_cancelled([&] { (void)full.recv(); }));
        EXPECT_TRUE(throws_cancelled([&] { room.send(2); }));
        EXPECT_TRUE(throws_cancelled([&] { (void)weft::select(weft::recv(full), weft::send(room, 3)); }));
        EXPECT_TRUE(throws_cancelled([&] { weft::this_fiber::sleep_for(0ms); }));
        EXPECT_TRUE(throws_cancelled([&] { weft::this_fiber::sleep_until(Clock::now() - 1s); }));
        EXPECT_TRUE(throws_cancelled([&] { wg.wait(); }));
        EXPECT_TRUE(throws_cancelled([&] { (void)wg.wait_for(1ms); }));
        EXPECT_TRUE(throws_cancelled([&] { (void)weft::blocking([] { return 1; }); }));
        EXPECT_TRUE(throws_cancelled([] { weft::this_fiber::check_cancelled(); }));
        EXPECT_TRUE(throws_cancelled([&] { (void)finished.join(); }));
        EXPECT_TRUE(finished.joinable());
        weft::this_fiber::yield();  // not a cancellation point
      }
      EXPECT_EQ(full.size(), 1u) << "a cancelled recv consumed the value";
      EXPECT_EQ(room.size(), 0u) << "a cancelled send delivered a value";
      // Not cancellation points: they never park.
      int v = 4;
      EXPECT_TRUE(room.try_send(v));
      EXPECT_EQ(room.try_recv(), std::optional<int>(4));
      std::optional<int> got;
      EXPECT_EQ(weft::select(weft::recv(full, [&](std::optional<int> x) { got = x; }), weft::otherwise()), 0u);
      EXPECT_EQ(got, std::optional<int>(1));
      full.send(1);  // room, but cancelled: throws, the fiber ends with Cancelled
      return 0;
    });
    h.cancel();
    go_on = true;
    EXPECT_THROW(h.join(), weft::Cancelled);  // the last send throws: the fiber ends with Cancelled
    EXPECT_EQ(full.size(), 0u);               // the select with otherwise() took it
    EXPECT_EQ(finished.join(), 5);
  }, opts());
}

// A Mutex lock is not a cancellation point: a cancelled fiber parked on a
// contended Mutex stays parked through the cancel and gets the lock when
// the holder unlocks; a cancelled fiber also takes an uncontended one.
TEST_P(Cancel, MutexLockIsNotACancellationPoint) {
  weft::run([] {
    weft::Mutex m;
    m.lock();
    auto h = weft::go([&] {
      m.lock();  // contended: parks
      bool c = weft::this_fiber::cancelled();
      m.unlock();
      m.lock();  // uncontended, cancelled
      m.unlock();
      return c;
    });
    wait_parked(1);
    h.cancel();
    weft::this_fiber::sleep_for(2ms);
    EXPECT_FALSE(h.done()) << "the Mutex waiter left without the lock";
    m.unlock();
    EXPECT_TRUE(h.join());  // returned normally, and saw itself cancelled
  }, opts());
}

// A CPU loop that reaches no cancellation point polls cancelled(), or calls
// check_cancelled(). The canceller is a plain std::thread (the fiber may
// hold the only worker). Each fiber first yields once so that main can
// publish its handle to the thread; its loop is bounded by 10 s.
TEST_P(Cancel, CpuLoopSeesCancelFromPlainThread) {
  weft::run([] {
    std::atomic<weft::JoinHandle<int>*> target{nullptr};
    std::thread canceller([&] {
      auto t0 = Clock::now();
      for (int done = 0; done < 2 && since(t0) < kBound;) {
        if (auto* h = target.exchange(nullptr)) {
          h->cancel();
          done++;
        }
        std::this_thread::sleep_for(200us);
      }
    });
    auto polling = weft::go([] {
      weft::this_fiber::yield();
      auto t0 = Clock::now();
      while (!weft::this_fiber::cancelled())
        if (since(t0) > kBound) return -1;
      return 1;
    });
    target = &polling;
    EXPECT_EQ(polling.join(), 1);
    // This one also holds a stop token: when check_cancelled() throws, the
    // token must already report the stop, although the canceller thread
    // may not have reached its request_stop yet (the fiber requests it).
    auto checking = weft::go([] {
      std::stop_token tok = weft::this_fiber::stop_token();
      weft::this_fiber::yield();
      auto t0 = Clock::now();
      try {
        while (since(t0) < kBound) weft::this_fiber::check_cancelled();
      } catch (const weft::Cancelled&) {
        return tok.stop_requested() ? 1 : -2;
      }
      return -1;
    });
    // The canceller took the first handle: publish the second once it did.
    auto t0 = Clock::now();
    while (target.load() != nullptr && since(t0) < kBound) weft::this_fiber::sleep_for(100us);
    target = &checking;
    EXPECT_EQ(checking.join(), 1);
    canceller.join();
  }, opts());
}

// CancelShield: inside it cancelled() is still true but no point throws
// (check_cancelled included, a ready recv proceeds, a sleep sleeps);
// shields nest (the inner one's end keeps the outer shield); after the
// outermost ends, the next point throws. A fiber parked inside a shield
// stays parked through the cancel and completes its operation.
TEST_P(Cancel, CancelShieldSuppressesThrowsAndNests) {
  weft::run([] {
    Chan<int> ch(2);
    ch.send(1);
    ch.send(2);
    std::atomic<bool> go_on{false};
    auto h = weft::go([&] {
      yield_until(go_on);
      {
        weft::CancelShield outer;
        EXPECT_TRUE(weft::this_fiber::cancelled());
        EXPECT_NO_THROW(weft::this_fiber::check_cancelled());
        EXPECT_EQ(ch.recv(), std::optional<int>(1));
        {
          weft::CancelShield inner;
          EXPECT_NO_THROW(weft::this_fiber::sleep_for(1ms));
        }
        EXPECT_NO_THROW(weft::this_fiber::sleep_for(1ms));  // still shielded by `outer`
        EXPECT_NO_THROW(ch.send(3));
      }
      EXPECT_TRUE(throws_cancelled([&] { (void)ch.recv(); }));
      EXPECT_EQ(ch.size(), 2u);
      return 1;
    });
    h.cancel();
    go_on = true;
    EXPECT_EQ(h.join(), 1);
    EXPECT_EQ(ch.try_recv(), std::optional<int>(2));
    EXPECT_EQ(ch.try_recv(), std::optional<int>(3));

    // Parked inside a shield: the cancel does not wake it.
    Chan<int> empty(0);
    auto p = weft::go([empty] {
      std::optional<int> v;
      {
        weft::CancelShield s;
        v = empty.recv();
      }
      EXPECT_TRUE(throws_cancelled([&] { (void)empty.recv(); }));
      return *v;
    });
    wait_parked(1);
    p.cancel();
    weft::this_fiber::sleep_for(2ms);
    EXPECT_FALSE(p.done()) << "a shielded park was cancelled";
    empty.send(8);
    EXPECT_EQ(p.join(), 8);
  }, opts());
}

// ---- join semantics ----

// A fiber cancelled that never reaches another point finishes normally:
// join() returns its value. cancel() after the fiber ended is a no-op;
// on an empty (or joined) handle too; cancel is idempotent.
TEST_P(Cancel, JoinValueCancelAfterEndEmptyAndIdempotent) {
  weft::run([] {
    std::atomic<bool> go_on{false};
    auto h = weft::go([&] {
      yield_until(go_on);
      return 7;  // cancelled, but no cancellation point follows
    });
    h.cancel();
    go_on = true;
    EXPECT_EQ(h.join(), 7);

    auto ended = weft::go([] { return 5; });
    auto t0 = Clock::now();
    while (!ended.done() && since(t0) < kBound) weft::this_fiber::sleep_for(100us);
    ASSERT_TRUE(ended.done());
    ended.cancel();
    ended.cancel();
    EXPECT_EQ(ended.join(), 5);
    ended.cancel();  // joined: empty now
    weft::JoinHandle<int> empty;
    empty.cancel();
    EXPECT_FALSE(empty.joinable());

    Chan<int> ch(0);
    auto p = weft::go([ch] { return ch.recv(); });
    wait_parked(1);
    for (int i = 0; i < 5; i++) p.cancel();
    EXPECT_THROW(p.join(), weft::Cancelled);
  }, opts());
}

// Concurrent cancellers of one parked fiber (main and two plain threads,
// repeatedly): it ends once, with Cancelled.
TEST_P(Cancel, ConcurrentCancellersAreIdempotent) {
  const int rounds = static_cast<int>(scaled(200));
  weft::run([rounds] {
    for (int i = 0; i < rounds; i++) {
      Chan<int> ch(0);
      auto h = weft::go([ch] { return ch.recv(); });
      std::thread a([&h] { h.cancel(); });
      std::thread b([&h] { h.cancel(); });
      h.cancel();
      a.join();
      b.join();
      EXPECT_THROW(h.join(), weft::Cancelled);
    }
  }, opts());
}

// A fiber that ends with Cancelled is never a panic: its handle dropped
// while it is still parked (the fiber lets go of the state last), dropped
// after it ended (the handle lets go last), a detached weft::spawn fiber,
// and a fiber that throws Cancelled itself. The process must survive.
TEST_P(Cancel, EndingWithCancelledIsNotAPanic) {
  weft::run([] {
    Chan<int> ch(0);
    {
      auto h = weft::go([ch] { return ch.recv(); });
      wait_parked(1);
      h.cancel();
    }  // dropped: the fiber ends after
    {
      auto h = weft::go([ch] { return ch.recv(); });
      wait_parked(1);
      h.cancel();
      auto t0 = Clock::now();
      while (!h.done() && since(t0) < kBound) weft::this_fiber::sleep_for(100us);
      EXPECT_TRUE(h.done());
    }  // dropped after the end
    { auto h = weft::go([] { throw weft::Cancelled(); }); }
    weft::spawn([] { throw weft::Cancelled(); });
    {
      auto h = weft::go([ch] { (void)ch.recv(); });
      wait_parked(1);
      h.cancel();
      h.detach();
    }
    EXPECT_TRUE(weft_test::only_caller_left()) << weft::stats().fibers_live << " fibers still live after 10 s";
  }, opts());
}

// ---- stop tokens ----

// A std::stop_callback registered on the fiber's stop_token fires on cancel.
// When the fiber observes Cancelled at its cancellation point, its token
// already reports stop_requested() (the fiber requests the stop itself if
// the canceller has not yet: the canceller wakes it first). The callback
// has run once both cancel() and join() returned (it may still be running
// on the canceller's thread when the fiber throws, as std allows).
// Repeated, the canceller being main or (every other round) a plain thread:
// the woken fiber may run on another worker at once, racing the canceller;
// the callback takes a little while to widen that window.
TEST_P(Cancel, StopCallbackFiresOnCancel) {
  const int rounds = static_cast<int>(scaled(300));
  weft::run([rounds] {
    int bad = 0, not_fired = 0;
    for (int i = 0; i < rounds; i++) {
      Chan<int> ch(0);
      auto fired = std::make_shared<std::atomic<bool>>(false);
      auto h = weft::go([ch, fired] {
        auto tok = weft::this_fiber::stop_token();
        EXPECT_TRUE(tok.stop_possible());
        EXPECT_FALSE(tok.stop_requested());
        std::stop_callback cb(tok, [fired] {
          std::this_thread::sleep_for(50us);
          fired->store(true);
        });
        try {
          (void)ch.recv();
        } catch (const weft::Cancelled&) {
          return tok.stop_requested();
        }
        return false;
      });
      if (i % 4 < 2) wait_parked(1);
      if (i % 2) {
        std::thread t([&h] { h.cancel(); });
        t.join();
      } else {
        h.cancel();
      }
      if (!h.join()) bad++;
      if (!fired->load()) not_fired++;
    }
    EXPECT_EQ(bad, 0) << "Cancelled observed while the stop token said no stop";
    EXPECT_EQ(not_fired, 0) << "the stop callback never ran";
  }, opts());
}

// A token obtained after the cancellation is already stopped; a token on a
// plain thread never stops.
TEST_P(Cancel, StopTokenAfterCancelIsStopped) {
  weft::run([] {
    std::atomic<bool> go_on{false};
    auto h = weft::go([&] {
      yield_until(go_on);
      return weft::this_fiber::stop_token().stop_requested();
    });
    h.cancel();
    go_on = true;
    EXPECT_TRUE(h.join());
    EXPECT_FALSE(weft::this_fiber::stop_token().stop_requested());
  }, opts());
  EXPECT_FALSE(weft::this_fiber::stop_token().stop_possible());
  EXPECT_FALSE(weft::this_fiber::cancelled());
  EXPECT_NO_THROW(weft::this_fiber::check_cancelled());
}

// The stop token handed to a blocking() job: the job waits on a
// std::condition_variable_any with the token (blocking its pool thread,
// not a worker). Cancelling the fiber makes blocking() throw, and the
// token's stop wakes the job, which then ends. (The canceller wakes the
// fiber before it stops the token, so blocking() throws; only if the job
// could end and mark itself done between that wake and the fiber taking
// the job's lock would blocking() return, the job having completed: a
// legal outcome, accepted here, that a chaos build can produce.)
TEST_P(Cancel, StopTokenWakesBlockingJob) {
  weft::run([] {
    auto ended = std::make_shared<std::atomic<int>>(0);
    auto h = weft::go([ended] {
      std::stop_token tok = weft::this_fiber::stop_token();
      weft::blocking([tok, ended] {
        std::mutex m;
        std::condition_variable_any cv;
        std::unique_lock<std::mutex> l(m);
        bool stopped = cv.wait_for(l, tok, kBound, [] { return false; }) == false && tok.stop_requested();
        ended->store(stopped ? 1 : 2);
      });
    });
    wait_parked(1);
    h.cancel();
    bool threw = throws_cancelled([&] { h.join(); });
    if (!threw) {
      EXPECT_NE(ended->load(), 0) << "blocking() returned before its job ended";
    }
    auto t0 = Clock::now();
    while (ended->load() == 0 && since(t0) < kBound + 5s) weft::this_fiber::sleep_for(1ms);
    EXPECT_EQ(ended->load(), 1) << "the job was not woken by the stop token";
  }, opts());
}

// ---- with_timeout / with_deadline ----

// The deadline fires while f is parked on an empty channel: inside f the
// recv throws Cancelled (f catches and rethrows it), with_timeout throws
// Timeout. Afterwards the fiber is no longer cancelled: points do not throw.
TEST_P(Cancel, WithTimeoutThrowsTimeoutWhenParked) {
  weft::run([] {
    Chan<int> ch(0);
    bool inner_cancelled = false;
    auto t0 = Clock::now();
    EXPECT_THROW(weft::with_timeout(20ms, [&] {
      try {
        (void)ch.recv();
      } catch (const weft::Cancelled&) {
        inner_cancelled = true;
        throw;
      }
    }), weft::Timeout);
    EXPECT_GE(since(t0), 20ms);
    EXPECT_TRUE(inner_cancelled);
    EXPECT_FALSE(weft::this_fiber::cancelled());
    EXPECT_NO_THROW(weft::this_fiber::check_cancelled());
    EXPECT_NO_THROW(weft::this_fiber::sleep_for(1ms));
    int v = 1;
    EXPECT_FALSE(ch.try_send(v)) << "the timed-out recv left a waiter";
    // Timeout is a std::system_error with errc::timed_out.
    try {
      weft::with_deadline(Clock::now() + 5ms, [&] { (void)ch.recv(); });
      ADD_FAILURE() << "no Timeout";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::make_error_code(std::errc::timed_out));
    }
    // Run in a spawned fiber as well (not only main).
    EXPECT_TRUE(weft::go([] {
      try {
        weft::with_timeout(5ms, [&] { weft::this_fiber::sleep_for(1h); });
      } catch (const weft::Timeout&) {
        return !weft::this_fiber::cancelled();
      }
      return false;
    }).join());
  }, opts());
}

// f returns normally: its value is returned; f returning a value after
// swallowing the deadline's cancellation: that value is returned (not
// Timeout); a CPU loop in f that polls cancelled() sees the deadline.
TEST_P(Cancel, WithTimeoutReturnsValues) {
  weft::run([] {
    Chan<int> ch(0);
    EXPECT_EQ(weft::with_timeout(1h, [] { return 3; }), 3);
    EXPECT_EQ(weft::with_timeout(10ms, [&] {
      try {
        (void)ch.recv();
      } catch (const weft::Cancelled&) {
        return -1;
      }
      return 0;
    }), -1);
    EXPECT_FALSE(weft::this_fiber::cancelled());
    EXPECT_EQ(weft::with_timeout(10ms, [] {
      auto t0 = Clock::now();
      // Yields now and then (not a cancellation point): on one worker the
      // deadline's timer runs between fibers.
      for (unsigned k = 0; !weft::this_fiber::cancelled(); k++) {
        if (since(t0) > kBound) return 0;
        if (k % 1024 == 0) weft::this_fiber::yield();
      }
      return 9;
    }), 9);
    EXPECT_FALSE(weft::this_fiber::cancelled());
    EXPECT_NO_THROW(weft::this_fiber::sleep_for(1ms));
  }, opts());
}

// A zero, negative or past deadline: due at once. f without a point
// returns its value (cancelled() true inside); f with a point throws
// Cancelled inside and Timeout outside, even when the point could proceed.
TEST_P(Cancel, WithTimeoutZeroAndPastDeadline) {
  weft::run([] {
    Chan<int> ch(1);
    ch.send(1);
    EXPECT_TRUE(weft::with_timeout(0ns, [] { return weft::this_fiber::cancelled(); }));
    EXPECT_TRUE(weft::with_timeout(-5ms, [] { return weft::this_fiber::cancelled(); }));
    EXPECT_TRUE(weft::with_deadline(Clock::now() - 1s, [] { return weft::this_fiber::cancelled(); }));
    EXPECT_THROW(weft::with_timeout(0ns, [&] { (void)ch.recv(); }), weft::Timeout);
    EXPECT_EQ(ch.size(), 1u) << "the cancelled recv consumed the value";
    EXPECT_THROW(weft::with_deadline(Clock::now() - 1s, [] { weft::this_fiber::check_cancelled(); }),
                 weft::Timeout);
    EXPECT_FALSE(weft::this_fiber::cancelled());
    EXPECT_EQ(ch.recv(), std::optional<int>(1));
  }, opts());
}

// Nested frames take the earliest deadline.
// Outer shorter: the outer deadline fires; the inner with_timeout (1 h)
// must rethrow Cancelled (not its own Timeout), the outer throws Timeout.
// Inner shorter: the inner throws Timeout, the outer frame is unaffected
// (f goes on, its points work, it returns normally).
TEST_P(Cancel, NestedWithTimeoutTakesTheEarliest) {
  weft::run([] {
    Chan<int> ch(0);
    bool inner_cancelled = false, inner_timeout = false;
    EXPECT_THROW(weft::with_timeout(20ms, [&] {
      try {
        weft::with_timeout(1h, [&] { (void)ch.recv(); });
      } catch (const weft::Timeout&) {
        inner_timeout = true;
        throw;
      } catch (const weft::Cancelled&) {
        inner_cancelled = true;
        throw;
      }
    }), weft::Timeout);
    EXPECT_TRUE(inner_cancelled);
    EXPECT_FALSE(inner_timeout);
    EXPECT_FALSE(weft::this_fiber::cancelled());

    int r = weft::with_timeout(1h, [&] {
      EXPECT_THROW(weft::with_timeout(10ms, [&] { (void)ch.recv(); }), weft::Timeout);
      EXPECT_FALSE(weft::this_fiber::cancelled());
      weft::this_fiber::sleep_for(1ms);  // must not throw
      return 5;
    });
    EXPECT_EQ(r, 5);

    // Three levels, the middle one shortest: the innermost rethrows
    // Cancelled, the middle throws Timeout, the outermost catches it and
    // carries on.
    int levels = weft::with_timeout(1h, [&] {
      bool innermost_cancelled = false;
      try {
        weft::with_timeout(10ms, [&] {
          try {
            weft::with_timeout(1h, [&] { (void)ch.recv(); });
          } catch (const weft::Cancelled&) {
            innermost_cancelled = true;
            throw;
          }
        });
      } catch (const weft::Timeout&) {
        EXPECT_TRUE(innermost_cancelled);
        EXPECT_FALSE(weft::this_fiber::cancelled());
        weft::this_fiber::sleep_for(1ms);
        return 3;
      }
      return 0;
    });
    EXPECT_EQ(levels, 3);
  }, opts());
}

// An outside cancel during with_timeout surfaces as Cancelled, not Timeout:
// (a) the frame's deadline is far; (b) the deadline fired first, f
// swallowed it and then the outside cancel came before f ended. After
// either, the fiber stays cancelled (sticky).
TEST_P(Cancel, OutsideCancelDuringWithTimeoutIsCancelled) {
  weft::run([] {
    Chan<int> ch(0);
    auto a = weft::go([ch] {
      try {
        weft::with_timeout(1h, [&] { (void)ch.recv(); });
      } catch (const weft::Timeout&) {
        return 0;
      } catch (const weft::Cancelled&) {
        return weft::this_fiber::cancelled() && throws_cancelled([] { weft::this_fiber::check_cancelled(); }) ? 1
                                                                                                                : 2;
      }
      return 3;
    });
    wait_parked(1);
    a.cancel();
    EXPECT_EQ(a.join(), 1);

    std::atomic<bool> deadline_seen{false}, outside_done{false};
    auto b = weft::go([&, ch] {
      try {
        weft::with_timeout(5ms, [&] {
          try {
            (void)ch.recv();
          } catch (const weft::Cancelled&) {
            deadline_seen = true;
          }
          yield_until(outside_done);
          throw weft::Cancelled();
        });
      } catch (const weft::Timeout&) {
        return 0;
      } catch (const weft::Cancelled&) {
        return 1;
      }
      return 2;
    });
    yield_until(deadline_seen);  // yields run due timers on one worker
    b.cancel();
    outside_done = true;
    EXPECT_EQ(b.join(), 1);

    // Already cancelled from outside when with_timeout begins, with a zero
    // timeout as well: Cancelled.
    std::atomic<bool> go_on{false};
    auto c = weft::go([&] {
      yield_until(go_on);
      int r = 0;
      try {
        weft::with_timeout(0ns, [] { weft::this_fiber::check_cancelled(); });
      } catch (const weft::Timeout&) {
        r |= 1;
      } catch (const weft::Cancelled&) {
        r |= 2;
      }
      return r;
    });
    c.cancel();
    go_on = true;
    EXPECT_EQ(c.join(), 2);
  }, opts());
}

// The stop token obtained inside with_timeout is stopped at the deadline
// (by the time the parked recv throws); the fiber's own token (outside the
// frame) is not; a token of a frame that ended without its deadline firing
// never stops. Off a fiber, with_timeout is a logic_error. (Whether the 2 ms
// frame's token is still unstopped when its body starts depends on timing:
// the chaos build's delays once let the deadline pass first. The 1 h frame
// shows a fresh frame's token starts unstopped.)
TEST_P(Cancel, StopTokenInsideWithTimeout) {
  weft::run([] {
    Chan<int> ch(0);
    auto base = weft::this_fiber::stop_token();
    for (int i = 0; i < 20; i++) {
      bool stopped_at_throw = false;
      std::stop_token inner;
      EXPECT_THROW(weft::with_timeout(2ms, [&] {
        inner = weft::this_fiber::stop_token();
        try {
          (void)ch.recv();
        } catch (const weft::Cancelled&) {
          stopped_at_throw = inner.stop_requested();
          throw;
        }
      }), weft::Timeout);
      EXPECT_TRUE(stopped_at_throw) << "round " << i;
      EXPECT_TRUE(inner.stop_requested());
    }
    std::stop_token quiet;
    weft::with_timeout(1h, [&] {
      quiet = weft::this_fiber::stop_token();
      EXPECT_FALSE(quiet.stop_requested());
    });
    EXPECT_FALSE(quiet.stop_requested());
    EXPECT_FALSE(base.stop_requested());
    EXPECT_FALSE(weft::this_fiber::stop_token().stop_requested());
  }, opts());
  EXPECT_THROW(weft::with_timeout(1ms, [] {}), std::logic_error);
}

// ---- many fibers ----

// 10,000 fibers parked on one channel's recv, cancelled at once by main and
// by a plain thread racing it: all end with Cancelled, the channel has no
// waiter left, and no fiber but main is live afterwards.
TEST_P(Cancel, TenThousandParkedFibersCancelledAtOnce) {
  const std::size_t n = weft_test::live_fiber_cap(10000);
  weft::run([n] {
    Chan<int> ch(0);
    std::vector<weft::JoinHandle<std::optional<int>>> hs;
    hs.reserve(n);
    for (std::size_t i = 0; i < n; i++) hs.push_back(weft::go([ch] { return ch.recv(); }));
    wait_parked(n);
    std::thread other([&hs] {
      for (std::size_t i = hs.size(); i-- > 0;) hs[i].cancel();
    });
    for (auto& h : hs) h.cancel();
    other.join();
    std::size_t cancelled = 0;
    for (auto& h : hs) cancelled += throws_cancelled([&] { (void)h.join(); });
    EXPECT_EQ(cancelled, n);
    int v = 1;
    EXPECT_FALSE(ch.try_send(v));
    EXPECT_TRUE(weft_test::only_caller_left()) << weft::stats().fibers_live << " fibers still live after 10 s";
    EXPECT_EQ(weft::stats().fibers_live, 1u);
  }, opts());
}

// ---- stress: racing a cancel against a completing operation ----

// Per round: a sender sends i on an unbuffered channel, a receiver receives
// once, and main cancels the receiver (sometimes the sender as well) after a
// random spin, with the two started in random order. Whatever the
// interleaving, a value is never lost nor duplicated: if the receiver's
// recv returned, it has i and the send returned; if it threw, i is still
// with the sender (main receives it) or the send threw too. Checked by
// conservation over all rounds and per round.
TEST_P(Cancel, StressCancelVersusSendConservesValues) {
  const int rounds = static_cast<int>(scaled(3000));
  const unsigned seed = 12345 + GetParam();
  weft::run([rounds, seed] {
    std::mt19937 rng(seed);
    long sent = 0, received = 0, rescued = 0, recv_cancelled = 0;
    for (int i = 0; i < rounds; i++) {
      Chan<int> ch(0);
      bool cancel_sender = rng() % 4 == 0;
      bool receiver_first = rng() % 2;
      unsigned spin = rng() % 2000;
      unsigned yields = rng() % 3;
      weft::JoinHandle<bool> tx;
      weft::JoinHandle<std::optional<int>> rx;
      auto start_tx = [&] {
        tx = weft::go([ch, i] {
          try {
            ch.send(i);
            return true;
          } catch (const weft::Cancelled&) {
            return false;
          }
        });
      };
      // Every other round the receiver is a select over ch and a channel
      // nobody uses (the select's claim protocol instead of park_on's).
      const bool via_select = i % 2;
      auto start_rx = [&] {
        rx = weft::go([ch, via_select] {
          if (!via_select) return ch.recv();
          Chan<int> idle(0);
          std::optional<int> got;
          weft::select(weft::recv(ch, [&](std::optional<int> v) { got = v; }), weft::recv(idle));
          return got;
        });
      };
      if (receiver_first) {
        start_rx();
        start_tx();
      } else {
        start_tx();
        start_rx();
      }
      for (unsigned k = 0; k < yields; k++) weft::this_fiber::yield();
      for (unsigned k = 0; k < spin; k++) asm volatile("" ::: "memory");  // a random delay
      rx.cancel();
      if (cancel_sender) tx.cancel();
      std::optional<int> got;
      bool rx_threw = false;
      try {
        got = rx.join();
      } catch (const weft::Cancelled&) {
        rx_threw = true;
        recv_cancelled++;
      }
      if (!rx_threw) {
        ASSERT_EQ(got, std::optional<int>(i));
        received++;
        ASSERT_TRUE(tx.join()) << "the receiver has the value but the send failed";
        sent++;
      } else if (cancel_sender) {
        // Both cancelled, the recv did nothing: the sender ends either way
        // (nobody can take its value now), and its send must have failed.
        ASSERT_FALSE(tx.join()) << "a send returned but no receiver has the value (round " << i << ")";
      } else {
        // The recv did nothing: the value is still with the sender, parked
        // or about to park. Receive it, with a failure bound.
        std::optional<int> late;
        weft::select(weft::recv(ch, [&](std::optional<int> v) { late = v; }), weft::after(kBound));
        ASSERT_EQ(late, std::optional<int>(i)) << "a value was lost (round " << i << ")";
        ASSERT_TRUE(tx.join());
        sent++;
        rescued++;
      }
      ASSERT_FALSE(ch.try_recv().has_value()) << "a value was duplicated";
    }
    EXPECT_EQ(sent, received + rescued);
    EXPECT_EQ(received + recv_cancelled, rounds);
  }, opts());
}

// Per round: a target fiber finishes (after a random delay) while a joiner
// joins it and main cancels the joiner at a random moment. The target's
// value is observed exactly once: either the joiner's join returned it
// (the handle is then empty), or the join threw Cancelled, the handle is
// still joinable, and main joins it for the value.
TEST_P(Cancel, StressCancelVersusJoinCompletes) {
  const int rounds = static_cast<int>(scaled(2000));
  const unsigned seed = 99 + GetParam();
  weft::run([rounds, seed] {
    std::mt19937 rng(seed);
    int by_joiner = 0, by_main = 0;
    for (int i = 0; i < rounds; i++) {
      unsigned target_spin = rng() % 3000, cancel_spin = rng() % 3000;
      weft::JoinHandle<int> target = weft::go([i, target_spin] {
        for (unsigned k = 0; k < target_spin; k++) asm volatile("" ::: "memory");
        return i;
      });
      auto joiner = weft::go([&target] {
        try {
          return std::optional<int>(target.join());
        } catch (const weft::Cancelled&) {
          return std::optional<int>();
        }
      });
      for (unsigned k = 0; k < cancel_spin; k++) asm volatile("" ::: "memory");
      if (rng() % 2) weft::this_fiber::yield();
      joiner.cancel();
      std::optional<int> got = joiner.join();
      if (got) {
        ASSERT_EQ(*got, i);
        ASSERT_FALSE(target.joinable()) << "join returned but left the handle joinable";
        by_joiner++;
      } else {
        ASSERT_TRUE(target.joinable()) << "a cancelled join consumed the handle (round " << i << ")";
        ASSERT_EQ(target.join(), i);
        by_main++;
      }
    }
    EXPECT_EQ(by_joiner + by_main, rounds);
  }, opts());
}

// Per round: blocking() runs a short job (returning a heap object) while
// main cancels the caller at a random moment. Either blocking() returned
// the job's result, or it threw Cancelled and the pool drops the result
// when the job ends (ASan: no leak). Afterwards every job has ended.
TEST_P(Cancel, StressCancelVersusBlockingCompletes) {
  const int rounds = static_cast<int>(scaled(500));
  const unsigned seed = 4242 + GetParam();
  weft::run([rounds, seed] {
    std::mt19937 rng(seed);
    auto ended = std::make_shared<std::atomic<int>>(0);
    int returned = 0, cancelled = 0;
    for (int i = 0; i < rounds; i++) {
      unsigned job_us = rng() % 50, cancel_spin = rng() % 20000;
      auto h = weft::go([i, job_us, ended] {
        auto r = weft::blocking([i, job_us, ended] {
          std::this_thread::sleep_for(std::chrono::microseconds(job_us));
          ended->fetch_add(1);
          return std::make_unique<int>(i);
        });
        return *r;
      });
      for (unsigned k = 0; k < cancel_spin; k++) asm volatile("" ::: "memory");
      h.cancel();
      try {
        ASSERT_EQ(h.join(), i);
        returned++;
      } catch (const weft::Cancelled&) {
        cancelled++;
      }
    }
    EXPECT_EQ(returned + cancelled, rounds);
    auto t0 = Clock::now();
    while (ended->load() < rounds && since(t0) < kBound) weft::this_fiber::sleep_for(1ms);
    EXPECT_EQ(ended->load(), rounds) << "a job did not run to its end";
  }, opts());
}

// Per round: with_timeout with a deadline of 0-50 us around f, which either
// computes for a random while and returns, or parks on an empty channel.
// The frame's timer fires before, during or after f returns (on two workers,
// on the other worker while the frame closes): with_timeout returns f's
// value or throws Timeout (never Cancelled: nobody cancels from outside),
// and afterwards the fiber is not cancelled and a point does not throw.
TEST_P(Cancel, StressWithTimeoutRacingItsDeadline) {
  const int rounds = static_cast<int>(scaled(3000));
  const unsigned seed = 31337 + GetParam();
  weft::run([rounds, seed] {
    std::mt19937 rng(seed);
    Chan<int> never(0);
    int values = 0, timeouts = 0;
    for (int i = 0; i < rounds; i++) {
      auto d = std::chrono::microseconds(rng() % 50);
      unsigned spin = rng() % 20000;
      bool parks = rng() % 4 == 0;
      try {
        int v = weft::with_timeout(d, [&] {
          for (unsigned k = 0; k < spin; k++) asm volatile("" ::: "memory");
          if (parks) (void)never.recv();
          return 1;
        });
        EXPECT_EQ(v, 1);
        EXPECT_FALSE(parks);
        values++;
      } catch (const weft::Timeout&) {
        timeouts++;
      }
      ASSERT_FALSE(weft::this_fiber::cancelled()) << "round " << i;
      ASSERT_NO_THROW(weft::this_fiber::check_cancelled());
    }
    EXPECT_EQ(values + timeouts, rounds);
    EXPECT_NO_THROW(weft::this_fiber::sleep_for(0ms));
  }, opts());
}

// Per round: N waiters in CondVar::wait (one wait each, no predicate loop,
// so a lost notification leaves a waiter parked), all parked; main then
// interleaves N notify_one calls with cancels of a random subset. Every
// waiter ends (a notified one returns, a cancelled one throws or, if its
// notification won, returns): none sleeps through a notification. A
// waiter that returned normally consumed one notify_one: at most N returns.
TEST_P(Cancel, StressCancelVersusCondVarNotifyLosesNothing) {
  const int rounds = static_cast<int>(scaled(300));
  const unsigned seed = 777 + GetParam();
  weft::run([rounds, seed] {
    std::mt19937 rng(seed);
    for (int round = 0; round < rounds; round++) {
      weft::Mutex m;
      weft::CondVar cv;
      std::atomic<int> returned{0}, threw{0};
      std::vector<weft::JoinHandle<void>> hs;
      for (int i = 0; i < kWaiters; i++) {
        hs.push_back(weft::go([&] {
          std::unique_lock<weft::Mutex> l(m);
          try {
            cv.wait(l);
            returned++;
          } catch (const weft::Cancelled&) {
            EXPECT_TRUE(l.owns_lock());
            threw++;
          }
        }));
      }
      wait_parked(kWaiters);
      std::vector<int> order(kWaiters);
      for (int i = 0; i < kWaiters; i++) order[i] = i;
      std::shuffle(order.begin(), order.end(), rng);
      int to_cancel = static_cast<int>(rng() % (kWaiters + 1));
      int c = 0;
      for (int k = 0; k < kWaiters; k++) {
        if (c < to_cancel && rng() % 2) hs[order[c++]].cancel();
        cv.notify_one();
        if (rng() % 4 == 0) weft::this_fiber::yield();
      }
      while (c < to_cancel) hs[order[c++]].cancel();
      auto t0 = Clock::now();
      while (returned + threw < kWaiters && since(t0) < kBound) weft::this_fiber::sleep_for(100us);
      ASSERT_EQ(returned + threw, kWaiters) << "a waiter slept through a notification (round " << round << ")";
      EXPECT_LE(returned.load(), kWaiters);
      EXPECT_LE(threw.load(), to_cancel);
      for (auto& h : hs) h.join();
    }
  }, opts());
}

// One notify_one racing one cancel, deterministic order on one worker: the
// cancel claims waiter A's park (A still queued, not yet run), then
// notify_one pops A, loses the claim and wakes B instead. A then runs its
// Cancel path. Exactly one waiter may return normally: C must stay parked
// (the notification was passed on once, not twice).
TEST_F(CancelPlain, NotifyOneRacingCancelWakesExactlyOne) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    std::atomic<int> returned{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 3; i++) {
      hs.push_back(weft::go([&] {
        std::unique_lock<weft::Mutex> l(m);
        cv.wait(l);
        returned++;
      }));
    }
    wait_parked(3);
    hs[0].cancel();
    cv.notify_one();  // no switch in between on one worker
    EXPECT_THROW(hs[0].join(), weft::Cancelled);
    auto t0 = Clock::now();
    while (returned.load() < 1 && since(t0) < kBound) weft::this_fiber::sleep_for(100us);
    weft::this_fiber::sleep_for(5ms);
    EXPECT_EQ(returned.load(), 1) << "one notify_one woke two waiters";
    cv.notify_all();
    hs[1].join();
    hs[2].join();
    EXPECT_EQ(returned.load(), 2);
  }, weft::Options{.workers = 1});
}

INSTANTIATE_TEST_SUITE_P(Cancel, Cancel, ::testing::Values(1u, 2u), weft_test::workers_name);

}  // namespace
