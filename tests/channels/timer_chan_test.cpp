// timer_chan_test.cpp: weft::Timer and weft::Ticker (weft/timer.hpp).
//
// Go's time/sleep_test.go and tick_test.go ported where they apply
// (TestAfterStop, TestTimerStopStress, TestReset, TestTimerModifiedEarlier,
// TestTicker, TestTickerStopWithDirectInitialization, TestTeardown,
// TestNewTickerLtZeroDuration, TestTickerResetLtZeroDuration), plus the
// races of this implementation: stop/reset racing the firing callback on
// another worker, destruction while the callback runs, slow receivers,
// cancellation while parked on chan(), the deadlock detector, runtime
// shutdown, and duration conversions.
//
// Timing: a timer never fires early, so lower bounds ("not before its
// due time") are asserted exactly; upper bounds only as "within 10 s"
// guards against a hang. The racing stress tests check what must hold
// whatever the interleaving: stop() returns true exactly when no value was
// (or will ever be) sent.
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using weft::Clock;
using weft::Ticker;
using weft::Timer;

namespace {

using TP = Clock::time_point;
constexpr auto kHang = 10s;  // bounds a test that would otherwise hang

class TimerTest : public ::testing::TestWithParam<unsigned> {
 protected:
  weft::Options opts() const { return {.workers = GetParam()}; }
};

// Receives from ch, failing the test (and returning nullopt) after kHang.
std::optional<TP> recv_or_hang(weft::Chan<TP>& ch) {
  std::optional<TP> v;
  bool hung = false;
  weft::select(weft::recv(ch, [&](std::optional<TP> x) { v = x; }), weft::after(kHang, [&] { hung = true; }));
  EXPECT_FALSE(hung) << "no value within 10 s";
  return v;
}

// Busy-waits (yielding) until ch holds a value; false after kHang.
bool wait_value(weft::Chan<TP>& ch) {
  auto give_up = Clock::now() + kHang;
  while (ch.size() == 0) {
    if (Clock::now() > give_up) return false;
    weft::this_fiber::sleep_for(100us);
  }
  return true;
}

// ---- Timer ------------------------------------------------------------------------

TEST_P(TimerTest, FiresOnceNotEarly) {
  weft::run([] {
    TP t0 = Clock::now();
    Timer t(20ms);
    EXPECT_EQ(t.chan().capacity(), 1u);
    auto v = recv_or_hang(t.chan());
    ASSERT_TRUE(v);
    EXPECT_GE(*v, t0 + 20ms) << "fired early";
    EXPECT_LE(*v, Clock::now());
    EXPECT_FALSE(t.stop()) << "it had fired";
    weft::this_fiber::sleep_for(30ms);
    EXPECT_FALSE(t.chan().try_recv()) << "a Timer sends once";
  }, opts());
}

TEST_P(TimerTest, NonPositiveDurationFiresAtOnce) {
  weft::run([] {
    for (auto d : {0ns, -1ns, std::chrono::nanoseconds(-5s), std::chrono::nanoseconds::min()}) {
      TP before = Clock::now();
      Timer t(d);
      auto v = t.chan().try_recv();  // already there: "fires at once"
      ASSERT_TRUE(v) << d.count();
      EXPECT_GE(*v, before);
      EXPECT_FALSE(t.stop());
    }
  }, opts());
}

// Go's TestAfterStop, without its flakiness: a stopped timer never sends.
TEST_P(TimerTest, AfterStop) {
  weft::run([] {
    Timer t0(50ms);
    Timer t1(150ms);
    Timer c2(200ms);
    EXPECT_TRUE(t0.stop());
    EXPECT_TRUE(t1.stop());
    ASSERT_TRUE(recv_or_hang(c2.chan()));
    EXPECT_FALSE(t0.chan().try_recv()) << "event 0 was not stopped";
    EXPECT_FALSE(t1.chan().try_recv()) << "event 1 was not stopped";
    EXPECT_FALSE(t1.stop()) << "stop returned true twice";
  }, opts());
}

// Go's TestTimerStopStress: many fibers stop long timers; none fires.
TEST_P(TimerTest, StopStress) {
  weft::run([] {
    std::atomic<int> fired{0}, stopped{0};
    weft::WaitGroup wg;
    const int n = static_cast<int>(chantest::scaled(100, 10));
    for (int i = 0; i < n; i++) {
      wg.add(1);
      weft::spawn([&] {
        Timer t(10s);
        weft::this_fiber::sleep_for(10ms);
        if (t.stop()) stopped++;
        if (t.chan().try_recv()) fired++;
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(stopped.load(), n);
    EXPECT_EQ(fired.load(), 0);
  }, opts());
}

// Go's TestReset: a reset timer fires no earlier than the new deadline;
// reset reports whether it was still active.
TEST_P(TimerTest, Reset) {
  weft::run([] {
    constexpr auto d = 25ms;
    Timer t(2 * d);
    weft::this_fiber::sleep_for(d);
    TP reset_at = Clock::now();
    // The first deadline (2d after creation) cannot have passed unless this
    // sleep overslept by d; the lower bound below holds either way.
    bool was_active = t.reset(3 * d);
    auto v = recv_or_hang(t.chan());
    ASSERT_TRUE(v);
    if (was_active) {
      EXPECT_GE(*v, reset_at + 3 * d) << "timer fired early";
      EXPECT_FALSE(t.chan().try_recv());
    }
    EXPECT_FALSE(t.reset(50ms)) << "resetting an expired timer returned true";
    EXPECT_TRUE(t.reset(1h)) << "resetting an armed timer returned false";
    EXPECT_TRUE(t.stop());
    EXPECT_FALSE(t.reset(1ms)) << "resetting a stopped timer returned true";
    EXPECT_TRUE(recv_or_hang(t.chan())) << "a stopped timer that was reset fires";
  }, opts());
}

// Go's TestTimerModifiedEarlier: a long timer moved into the past fires
// at once (here: before reset even returns), again and again.
TEST_P(TimerTest, ModifiedEarlier) {
  weft::run([] {
    for (std::size_t i = 0; i < chantest::scaled(1000, 50); i++) {
      Timer timer(1h);
      for (int j = 0; j < 10; j++) {
        if (!timer.stop()) {
          ASSERT_TRUE(timer.chan().try_recv()) << "stop false: the value must be there";
        }
        timer.reset(-1h);
      }
      Timer deadline(kHang);
      std::size_t which = weft::select(weft::recv(timer.chan()), weft::recv(deadline.chan()));
      ASSERT_EQ(which, 0u) << "deadline expired";
    }
  }, opts());
}

// The re-arm idiom of the header: after it, exactly the new firing arrives.
TEST_P(TimerTest, DrainAndResetIdiom) {
  weft::run([] {
    Timer t(1ms);
    weft::this_fiber::sleep_for(5ms);
    if (!t.stop()) t.chan().try_recv();  // drain the fired value
    EXPECT_EQ(t.chan().size(), 0u);
    TP at = Clock::now();
    t.reset(5ms);
    auto v = recv_or_hang(t.chan());
    ASSERT_TRUE(v);
    EXPECT_GE(*v, at + 5ms) << "a stale value from the first arming";
  }, opts());
}

// stop() racing the firing callback on another worker, many times. Whatever
// the interleaving: stop() returns true exactly when no value was sent, and
// none ever arrives afterwards (a firing that loses to stop sends nothing);
// false means the value is in the channel when stop() returns.
TEST_P(TimerTest, StopRacesFiring) {
  weft::run([] {
    const std::size_t n = chantest::scaled(3000, 200);
    std::vector<std::unique_ptr<Timer>> timers;
    std::vector<bool> stopped;
    timers.reserve(n);
    std::mt19937 rng(7);
    int wins = 0, losses = 0;
    for (std::size_t i = 0; i < n; i++) {
      auto t = std::make_unique<Timer>(std::chrono::microseconds(rng() % 40));
      // Spin a random little while so that stop lands before, during and
      // after the firing (run by an idle worker, or this one between fibers).
      for (auto until = Clock::now() + std::chrono::microseconds(rng() % 50); Clock::now() < until;) {
        if (rng() % 4 == 0) weft::this_fiber::yield();
      }
      if (i % 64 == 0) weft::this_fiber::sleep_for(1us);  // park now and then (no stuck-fiber report)
      bool s = t->stop();
      ASSERT_EQ(s, t->chan().size() == 0) << "iteration " << i;
      (s ? wins : losses)++;
      stopped.push_back(s);
      timers.push_back(std::move(t));
    }
    weft::this_fiber::sleep_for(20ms);  // any late callback has run by now
    for (std::size_t i = 0; i < n; i++) {
      EXPECT_EQ(timers[i]->chan().size(), stopped[i] ? 0u : 1u) << "iteration " << i;
      EXPECT_FALSE(timers[i]->stop());
    }
    ::testing::Test::RecordProperty("stop_won", wins);
    ::testing::Test::RecordProperty("stop_lost", losses);
  }, opts());
}

// reset() racing the firing from another fiber (another worker when there
// are two): true means the first firing was withdrawn, so the one value
// that arrives is the new arming's, not due before the reset; false means
// the first firing's value is in the channel and the new one is dropped
// (capacity 1). Either way exactly one value ends up in the channel.
TEST_P(TimerTest, ResetRacesFiring) {
  weft::run([] {
    const std::size_t n = chantest::scaled(2000, 100);
    std::mt19937 rng(11);
    for (std::size_t i = 0; i < n; i++) {
      auto d1 = std::chrono::microseconds(rng() % 30), d2 = std::chrono::microseconds(rng() % 30);
      auto spin = std::chrono::microseconds(rng() % 40);
      Timer t(d1);
      TP reset_at;
      bool was = false;
      weft::go([&] {
        for (auto until = Clock::now() + spin; Clock::now() < until;) {
        }
        reset_at = Clock::now();
        was = t.reset(d2);
      }).join();
      auto v = recv_or_hang(t.chan());
      ASSERT_TRUE(v);
      if (was) {
        EXPECT_GE(*v, reset_at + d2) << "iteration " << i << ": the withdrawn firing's value arrived";
      }
      weft::this_fiber::sleep_for(std::chrono::microseconds(60));
      if (was) {
        EXPECT_EQ(t.chan().size(), 0u) << "iteration " << i << ": two values";
      }
    }
  }, opts());
}

// Destroying a Timer or Ticker while its callback runs on another worker:
// the callback holds its own reference to the shared state (ASan: no use
// after free; TSan: no race).
TEST_P(TimerTest, DestroyWhileCallbackRuns) {
  weft::run([] {
    std::mt19937 rng(3);
    const std::size_t n = chantest::scaled(5000, 300);
    for (std::size_t i = 0; i < n; i++) {
      auto d = std::chrono::microseconds(rng() % 20);
      std::optional<weft::Chan<TP>> keep;
      {
        Timer t(d);
        Ticker k(std::chrono::microseconds(1 + rng() % 20));
        if (i % 2) keep = t.chan();  // a user's copy outlives the Timer
        for (auto until = Clock::now() + std::chrono::microseconds(rng() % 25); Clock::now() < until;) {
        }
      }
      if (keep) {
        std::size_t had = keep->size();
        weft::this_fiber::sleep_for(std::chrono::microseconds(50));
        EXPECT_EQ(keep->size(), had) << "a value arrived after the Timer was destroyed";
        EXPECT_LE(had, 1u);
      }
    }
  }, opts());
}

// Many timers at once, across fibers: each fires once, never early.
TEST_P(TimerTest, ManyTimers) {
  weft::run([] {
    const int n = static_cast<int>(chantest::scaled(10000, 1000));
    std::atomic<int> ok{0};
    weft::WaitGroup wg;
    for (int i = 0; i < n; i++) {
      wg.add(1);
      weft::spawn([&, i] {
        auto d = std::chrono::microseconds((i * 7919) % 20000);
        TP t0 = Clock::now();
        Timer t(d);
        auto v = recv_or_hang(t.chan());
        if (v && *v >= t0 + d && !t.stop()) ok++;
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(ok.load(), n);
  }, opts());
}

// select: a Timer is the overall deadline of a loop (after() would restart
// with every select); values keep arriving until it fires.
TEST_P(TimerTest, OverallDeadlineInSelectLoop) {
  weft::run([] {
    weft::Chan<int> jobs(0);
    auto producer = weft::go([jobs] {
      try {
        for (int i = 0;; i++) {
          jobs.send(i);
          weft::this_fiber::sleep_for(1ms);
        }
      } catch (const weft::ChanClosed&) {
      }
    });
    TP t0 = Clock::now();
    Timer deadline(50ms);
    int got = 0;
    bool done = false;
    while (!done) {
      weft::select(weft::recv(jobs, [&](std::optional<int>) { got++; }),
                   weft::recv(deadline.chan(), [&](std::optional<TP> v) {
                     EXPECT_GE(*v, t0 + 50ms);
                     done = true;
                   }));
    }
    EXPECT_GE(Clock::now(), t0 + 50ms);
    EXPECT_GE(got, 1);
    jobs.close();
    producer.join();
  }, opts());
}

// A fiber parked on chan() is cancelled as in any recv; also in a select.
TEST_P(TimerTest, CancelWhileParkedOnChan) {
  weft::run([] {
    Timer t(1h);
    Ticker k(1h);
    auto a = weft::go([&] { return t.chan().recv(); });
    auto b = weft::go([&] { return weft::select(weft::recv(k.chan()), weft::recv(t.chan())); });
    chantest::wait_others_parked();
    a.cancel();
    b.cancel();
    EXPECT_THROW(a.join(), weft::Cancelled);
    EXPECT_THROW(b.join(), weft::Cancelled);
    EXPECT_TRUE(t.stop()) << "the timer is untouched by the cancelled receivers";
  }, opts());
}

// The deadlock detector: fibers waiting only on an armed Timer or a running
// Ticker are not deadlocked (run() returns normally)...
TEST_P(TimerTest, WaitingOnArmedTimerIsNoDeadlock) {
  int ticks = weft::run([] {
    auto f = weft::go([] {
      Timer t(300ms);
      return t.chan().recv().has_value();
    });
    auto g = weft::go([] {
      Ticker k(100ms);
      int n = 0;
      for (int i = 0; i < 4; i++) n += k.chan().recv().has_value();
      return n;
    });
    EXPECT_TRUE(f.join());
    return g.join();
  }, opts());
  EXPECT_EQ(ticks, 4);
}

// ...but one waiting on a stopped Timer is.
TEST_P(TimerTest, WaitingOnStoppedTimerIsDeadlock) {
  WEFT_SKIP_WITHOUT_DEADLOCK_DETECTION();
  testing::internal::CaptureStderr();
  EXPECT_THROW(weft::run([] {
    Timer t(1h);
    t.stop();
    t.chan().recv();
  }, opts()), weft::Deadlock);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("deadlock"), std::string::npos) << err;
}

// ---- Ticker -----------------------------------------------------------------------

// Go's TestTicker: count/2 ticks at delta, reset to 2*delta, count/2 more.
// Ticks are never early, so the total is at least 3 * delta * count/2; after
// stop() (and draining a tick that may have landed before it) nothing comes.
TEST_P(TimerTest, Ticker) {
  weft::run([] {
    constexpr int count = 10;
    constexpr auto delta = 20ms;
    TP t0 = Clock::now();
    Ticker ticker(delta);
    TP last{};
    for (int i = 0; i < count / 2; i++) {
      auto v = recv_or_hang(ticker.chan());
      ASSERT_TRUE(v);
      EXPECT_GT(*v, last);
      last = *v;
    }
    EXPECT_GE(last, t0 + delta * (count / 2)) << "tick k is not due before start + k * period";
    TP r = Clock::now();
    ticker.reset(delta * 2);
    ticker.chan().try_recv();  // a tick that came before reset() stays: drop it
    for (int i = count / 2; i < count; i++) {
      auto v = recv_or_hang(ticker.chan());
      ASSERT_TRUE(v);
      EXPECT_GT(*v, last);
      last = *v;
    }
    ticker.stop();
    EXPECT_GE(last, r + 2 * delta * (count / 2));
    EXPECT_GE(Clock::now() - t0, 3 * delta * (count / 2));
    ticker.chan().try_recv();  // a tick that came before stop() stays
    weft::this_fiber::sleep_for(2 * delta);
    EXPECT_FALSE(ticker.chan().try_recv()) << "Ticker did not shut down";
  }, opts());
}

// A slow receiver: the channel holds one tick, later ones are dropped (no
// backlog, no error), and no ticker ticks more than once per period on
// average (each tick has its own due time, start + k * period).
TEST_P(TimerTest, SlowReceiverDropsTicks) {
  weft::run([] {
    constexpr auto p = 2ms;
    TP start = Clock::now();
    Ticker k(p);
    ASSERT_TRUE(wait_value(k.chan()));
    weft::this_fiber::sleep_for(10 * p);
    EXPECT_EQ(k.chan().size(), 1u);
    auto first = k.chan().try_recv();
    ASSERT_TRUE(first);
    EXPECT_GE(*first, start + p);
    auto next = recv_or_hang(k.chan());
    ASSERT_TRUE(next);
    EXPECT_GT(*next, *first);
    int n = 2;
    TP c0 = Clock::now();
    while (Clock::now() < c0 + 20 * p) {
      if (recv_or_hang(k.chan())) n++;
    }
    EXPECT_LE(n, static_cast<int>((Clock::now() - start) / p));
  }, opts());
}

// The schedule is kept and missed periods are skipped (Go's ticker): with
// one worker and no spare, a fiber that spins for 10.5 periods keeps the
// ticker's callback from running at all; the first tick then fires late,
// and the next one is due at start + 11 periods, not at start + 2 periods
// (a ticker that queued the missed ticks) nor at "late firing + period"
// (one that drifts).
TEST(TimerSchedule, MissedPeriodsAreSkipped) {
  weft::run([] {
    constexpr auto p = 5ms;
    TP start = Clock::now();
    Ticker k(p);
    while (Clock::now() < start + 10 * p + p / 2) {
    }
    auto first = recv_or_hang(k.chan());  // the late first tick
    ASSERT_TRUE(first);
    EXPECT_GE(*first, start + 10 * p + p / 2);
    auto next = recv_or_hang(k.chan());
    ASSERT_TRUE(next);
    EXPECT_GE(*next, start + 11 * p);
  }, {.workers = 1, .stuck_threshold = std::chrono::milliseconds(10000), .spare_workers = 0});
}

// Go's TestTeardown: receive a tick, stop, three times.
TEST_P(TimerTest, TickerTeardown) {
  weft::run([] {
    for (int i = 0; i < 3; i++) {
      Ticker ticker(20ms);
      EXPECT_TRUE(recv_or_hang(ticker.chan()));
      ticker.stop();
      ticker.stop();  // idempotent
    }
  }, opts());
}

// Go's TestNewTickerLtZeroDuration / TestTickerResetLtZeroDuration (Go
// panics; we throw std::invalid_argument), and a failed reset leaves the
// ticker as it was. Go's TestTickerStopWithDirectInitialization: stop() on
// a Ticker that has no timer (moved-from) does nothing.
TEST_P(TimerTest, TickerBadPeriodAndMovedFrom) {
  weft::run([] {
    EXPECT_THROW(Ticker(0ns), std::invalid_argument);
    EXPECT_THROW(Ticker(-1ms), std::invalid_argument);
    EXPECT_THROW(Ticker(std::chrono::duration<double>(-0.5)), std::invalid_argument);
    EXPECT_THROW(Ticker(std::chrono::duration<double>(std::nan(""))), std::invalid_argument);
    Ticker tk(5ms);
    EXPECT_THROW(tk.reset(0ns), std::invalid_argument);
    EXPECT_THROW(tk.reset(-1s), std::invalid_argument);
    EXPECT_TRUE(recv_or_hang(tk.chan())) << "a failed reset leaves the ticker running";
    Ticker moved = std::move(tk);
    tk.stop();  // NOLINT(bugprone-use-after-move): a moved-from Ticker's stop does nothing
    EXPECT_FALSE(tk.chan());
    EXPECT_THROW(tk.reset(1ms), std::logic_error);
    EXPECT_TRUE(recv_or_hang(moved.chan())) << "the moved-to Ticker ticks";
    Timer t(1h);
    Timer t2 = std::move(t);
    EXPECT_FALSE(t.stop());  // NOLINT(bugprone-use-after-move)
    EXPECT_THROW(t.reset(1ms), std::logic_error);
    t = std::move(t2);  // move-assign: the target's own timer is stopped
    EXPECT_TRUE(t.stop());
    Ticker k2(1h);
    k2 = Ticker(1ms);
    EXPECT_TRUE(recv_or_hang(k2.chan()));
  }, opts());
}

// Reset on a stopped Ticker restarts it; reset changes the period.
TEST_P(TimerTest, TickerResetRestarts) {
  weft::run([] {
    Ticker k(1h);
    k.stop();
    TP at = Clock::now();
    k.reset(5ms);
    auto v = recv_or_hang(k.chan());
    ASSERT_TRUE(v);
    EXPECT_GE(*v, at + 5ms);
  }, opts());
}

// stop()/reset() of a Ticker racing its firing callback on another worker:
// after stop() returns no tick arrives.
TEST_P(TimerTest, TickerStopRacesFiring) {
  weft::run([] {
    std::mt19937 rng(5);
    const std::size_t n = chantest::scaled(2000, 100);
    std::vector<std::unique_ptr<Ticker>> tickers;
    for (std::size_t i = 0; i < n; i++) {
      auto k = std::make_unique<Ticker>(std::chrono::microseconds(1 + rng() % 10));
      for (auto until = Clock::now() + std::chrono::microseconds(rng() % 40); Clock::now() < until;) {
        if (rng() % 4 == 0) weft::this_fiber::yield();
      }
      if (i % 64 == 0) weft::this_fiber::sleep_for(1us);  // park now and then (no stuck-fiber report)
      if (rng() % 2) k->reset(std::chrono::microseconds(1 + rng() % 10));
      k->stop();
      k->chan().try_recv();
      tickers.push_back(std::move(k));
    }
    weft::this_fiber::sleep_for(20ms);
    for (std::size_t i = 0; i < n; i++) EXPECT_EQ(tickers[i]->chan().size(), 0u) << "ticker " << i << " ticked after stop";
  }, opts());
}

// 10,000 tickers at once (fewer under sanitizers), each in its own fiber:
// every fiber gets its ticks, in order, none early.
TEST_P(TimerTest, TenThousandTickers) {
  weft::run([] {
    const int n = static_cast<int>(chantest::scaled(10000, 500));
    constexpr int kTicks = 5;
    constexpr auto p = 2ms;
    std::atomic<int> ok{0};
    weft::WaitGroup wg;
    for (int i = 0; i < n; i++) {
      wg.add(1);
      weft::spawn([&] {
        TP start = Clock::now();
        Ticker k(p);
        TP last = start;
        int good = 0;
        for (int j = 1; j <= kTicks; j++) {
          auto v = recv_or_hang(k.chan());
          if (v && *v > last && *v >= start + j * p) good++;
          if (v) last = *v;
        }
        k.stop();
        if (good == kTicks) ok++;
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(ok.load(), n);
  }, opts());
}

// ---- lifetime, shutdown, misuse -------------------------------------------------

// A Ticker left running in a detached fiber: the fiber is unwound when main
// returns, its Ticker's destructor stops it (ASan: nothing leaks).
TEST_P(TimerTest, TickerInDetachedFiberAtShutdown) {
  std::atomic<int> ticks{0};
  weft::run([&] {
    for (int i = 0; i < 20; i++) {
      weft::spawn([&] {
        Ticker k(1ms);
        Timer never(1h);
        for (;;) {
          weft::select(weft::recv(k.chan(), [&](auto) { ticks++; }), weft::recv(never.chan()));
        }
      });
    }
    while (ticks.load() < 20) weft::this_fiber::sleep_for(1ms);
  }, opts());
  EXPECT_GE(ticks.load(), 20);
}

// A Timer or Ticker that outlives its runtime (kept outside run()): the
// runtime's teardown drops its armed timer; destroying it later neither
// crashes nor leaks (ASan), and stop() reports it never fired.
TEST_P(TimerTest, OutlivesRun) {
  std::optional<Timer> t;
  std::optional<Ticker> k;
  std::optional<Timer> fired;
  weft::run([&] {
    t.emplace(1h);
    k.emplace(1h);
    fired.emplace(0ns);
  }, opts());
  EXPECT_TRUE(t->stop());
  EXPECT_FALSE(fired->stop());
  EXPECT_TRUE(fired->chan().try_recv());
  EXPECT_THROW(t->reset(1ms), std::logic_error) << "reset needs a fiber";
  t.reset();
  k.reset();
  fired.reset();
}

TEST(TimerOffFiber, ThrowsLogicError) {
  EXPECT_THROW(Timer(1ms), std::logic_error);
  EXPECT_THROW(Timer(0ns), std::logic_error);
  EXPECT_THROW(Ticker(1ms), std::logic_error);
  EXPECT_THROW(Ticker(0ms), std::invalid_argument);
  try {
    Timer t(1ms);
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("fiber"), std::string::npos) << e.what();
  }
}

// ---- durations --------------------------------------------------------------------

TEST(TimerDuration, ConvertsRoundsUpAndSaturates) {
  using std::chrono::duration;
  using std::chrono::nanoseconds;
  using weft::detail::timer_ns;
  constexpr auto kMax = nanoseconds::max(), kMin = nanoseconds::min();
  EXPECT_EQ(timer_ns(1500us), 1'500'000ns);
  EXPECT_EQ(timer_ns(duration<double>(1.5)), 1'500'000'000ns);
  EXPECT_EQ(timer_ns(duration<long double>(1.5L)), 1'500'000'000ns);
  EXPECT_EQ(timer_ns(duration<double, std::milli>(0.0000001)), 1ns) << "rounded up";
  EXPECT_EQ(timer_ns(duration<double, std::nano>(-1.5)), -1ns) << "towards +infinity";
  EXPECT_EQ(timer_ns(std::chrono::hours::max()), kMax);
  EXPECT_EQ(timer_ns(std::chrono::hours::min()), kMin);
  EXPECT_EQ(timer_ns(std::chrono::seconds(9'223'372'036)), 9'223'372'036'000'000'000ns);
  EXPECT_EQ(timer_ns(std::chrono::seconds(9'223'372'037)), kMax);
  EXPECT_EQ(timer_ns(std::chrono::seconds(-9'223'372'036)), -9'223'372'036'000'000'000ns);
  EXPECT_EQ(timer_ns(std::chrono::seconds(-9'223'372'037)), kMin);
  EXPECT_EQ(timer_ns(duration<unsigned long long, std::milli>(~0ull)), kMax);
  EXPECT_EQ(timer_ns(duration<unsigned, std::micro>(7)), 7000ns);
  EXPECT_EQ(timer_ns(duration<long long, std::pico>(1)), 1ns);
  EXPECT_EQ(timer_ns(duration<long long, std::pico>(1000)), 1ns);
  EXPECT_EQ(timer_ns(duration<long long, std::pico>(1001)), 2ns);
  EXPECT_EQ(timer_ns(duration<long long, std::pico>(-1001)), -1ns);
  EXPECT_EQ(timer_ns(duration<unsigned long long, std::pico>(~0ull)), nanoseconds(18'446'744'073'709'552));
  EXPECT_EQ(timer_ns(duration<double>(1e300)), kMax);
  EXPECT_EQ(timer_ns(duration<double>(-1e300)), kMin);
  EXPECT_EQ(timer_ns(duration<double>(std::numeric_limits<double>::infinity())), kMax);
  EXPECT_EQ(timer_ns(duration<double>(-std::numeric_limits<double>::infinity())), kMin);
  EXPECT_THROW(timer_ns(duration<double>(std::nan(""))), std::invalid_argument);
  EXPECT_EQ(timer_ns(nanoseconds(42)), 42ns);
}

TEST_P(TimerTest, AnyDurationType) {
  weft::run([] {
    using std::chrono::duration;
    TP t0 = Clock::now();
    Timer a(duration<double, std::milli>(1.5));
    Timer b(duration<long double>(0.002L));
    Timer never(std::chrono::hours::max());  // saturates: never fires
    Timer never2{duration<double>(std::numeric_limits<double>::infinity())};
    Timer now(-duration<double>(std::numeric_limits<double>::infinity()));
    EXPECT_TRUE(now.chan().try_recv());
    EXPECT_THROW(Timer(duration<double>(std::nan(""))), std::invalid_argument);
    auto va = recv_or_hang(a.chan());
    auto vb = recv_or_hang(b.chan());
    ASSERT_TRUE(va && vb);
    EXPECT_GE(*va, t0 + 1500us);
    EXPECT_GE(*vb, t0 + 2ms);
    EXPECT_TRUE(never.stop()) << "a never-firing timer is active until stopped";
    EXPECT_FALSE(never2.chan().try_recv());
    EXPECT_TRUE(never2.reset(duration<float>(0.001f)));
    EXPECT_TRUE(recv_or_hang(never2.chan()));
    Ticker k(duration<double, std::milli>(1.5));
    EXPECT_TRUE(recv_or_hang(k.chan()));
    k.reset(duration<double, std::milli>(0.5));
    EXPECT_TRUE(recv_or_hang(k.chan()));
    Ticker slow(std::chrono::years::max());  // valid period, never ticks
    slow.stop();
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, TimerTest, ::testing::Values(1u, 2u), chantest::workers_name);

}  // namespace
