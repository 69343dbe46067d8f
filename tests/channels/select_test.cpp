// select_test.cpp: select() semantics (API.md "Select"): readiness rules,
// nil cases, otherwise, after, send cases, closed channels, uniform choice,
// timers left behind, and races between selects and close.
#include <cmath>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "internal.hpp"  // runtime internals: timer heap sizes (leak check)
#include "test_util.hpp"

using namespace std::chrono_literals;
using weft::after;
using weft::Chan;
using weft::ChanClosed;
using weft::otherwise;
using weft::recv;
using weft::select;
using weft::send;

namespace {

class Select : public chantest::WorkersTest {};

TEST_P(Select, OtherwiseWhenNothingReady) {
  weft::run([] {
    Chan<int> a(0), b(1), nil;
    b.send(1);  // b full: a send case on it is not ready
    bool ran = false;
    EXPECT_EQ(select(recv(a), send(b, 2), recv(nil), send(nil, 3), otherwise([&] { ran = true; })), 4u);
    EXPECT_TRUE(ran);
    EXPECT_EQ(select(otherwise()), 0u);
    EXPECT_EQ(select(recv(nil), otherwise()), 1u);
  }, opts());
}

TEST_P(Select, ReadyCasesRunWithHandlers) {
  weft::run([] {
    Chan<int> a(1), b(1);
    a.send(10);
    std::optional<int> got;
    EXPECT_EQ(select(recv(a, [&](std::optional<int> v) { got = v; }), otherwise()), 0u);
    EXPECT_EQ(got, 10);
    bool sent = false;
    EXPECT_EQ(select(recv(a), send(b, 5, [&] { sent = true; })), 1u);
    EXPECT_TRUE(sent);
    EXPECT_EQ(*b.recv(), 5);
    // A handler taking no argument is fine for recv too.
    b.send(6);
    int calls = 0;
    EXPECT_EQ(select(recv(b, [&] { calls++; })), 0u);
    EXPECT_EQ(calls, 1);
  }, opts());
}

TEST_P(Select, ParksUntilACaseIsReady) {
  weft::run([] {
    Chan<int> a(0), b(0), c(0);
    auto h = weft::go([a, b, c] {
      int got = -1;
      std::size_t i = select(recv(a, [&](auto v) { got = *v; }), recv(b, [&](auto v) { got = *v + 100; }), send(c, 7));
      return std::pair<std::size_t, int>(i, got);
    });
    weft::this_fiber::sleep_for(2ms);
    b.send(5);
    auto [i, got] = h.join();
    EXPECT_EQ(i, 1u);
    EXPECT_EQ(got, 105);
    // The losers were dequeued: a and c have no stale waiter.
    int v = 1;
    EXPECT_FALSE(a.try_send(v));
    EXPECT_FALSE(c.try_recv());
    // The send case fires when a receiver comes.
    auto h2 = weft::go([a, c] { return select(recv(a), send(c, 8)); });
    EXPECT_EQ(*c.recv(), 8);
    EXPECT_EQ(h2.join(), 1u);
  }, opts());
}

TEST_P(Select, ClosedChannelRecvIsReady) {
  weft::run([] {
    Chan<int> a(0), b(0);
    a.close();
    bool closed = false;
    EXPECT_EQ(select(recv(b), recv(a, [&](std::optional<int> v) { closed = !v; })), 1u);
    EXPECT_TRUE(closed);
    // A parked select is woken by close.
    auto h = weft::go([b] {
      std::optional<int> got = 1;
      select(recv(b, [&](std::optional<int> v) { got = v; }));
      return got.has_value();
    });
    weft::this_fiber::sleep_for(1ms);
    b.close();
    EXPECT_FALSE(h.join());
  }, opts());
}

TEST_P(Select, SendOnClosedThrowsIfChosen) {
  weft::run([] {
    Chan<int> a(0), nil;
    a.close();
    EXPECT_THROW(select(send(a, 1)), ChanClosed);
    EXPECT_THROW(select(send(a, 1), recv(nil), otherwise()), ChanClosed);
    // A parked send case whose channel gets closed throws too.
    Chan<int> b(0);
    auto h = weft::go([b] {
      try {
        select(send(b, 1), after(1h));
        return false;
      } catch (const ChanClosed&) {
        return true;
      }
    });
    weft::this_fiber::sleep_for(1ms);
    b.close();
    EXPECT_TRUE(h.join());
  }, opts());
}

TEST_P(Select, UnchosenSendValueNotConsumed) {
  weft::run([] {
    Chan<std::unique_ptr<int>> a(0), b(1);
    auto p = std::make_unique<int>(1);
    EXPECT_EQ(select(send(a, std::move(p)), otherwise()), 1u);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 1);
    EXPECT_EQ(select(send(a, std::move(p)), send(b, std::make_unique<int>(2))), 1u);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(**b.recv(), 2);
    EXPECT_EQ(select(send(a, std::move(p)), send(b, std::move(p))), 1u);
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(**b.recv(), 1);
    // Timed out: not consumed either.
    auto q = std::make_unique<int>(3);
    EXPECT_EQ(select(send(a, std::move(q)), after(1ms)), 1u);
    EXPECT_NE(q, nullptr);
  }, opts());
}

TEST_P(Select, SameChannelInSeveralCases) {
  weft::run([] {
    // Buffered: both cases of one select on one channel (locked once).
    Chan<int> c(1);
    EXPECT_EQ(select(recv(c), send(c, 1)), 1u);
    EXPECT_EQ(select(recv(c), send(c, 2)), 0u);
    EXPECT_EQ(select(recv(c), recv(c), send(c, 3), send(c, 4)) >= 2, true);
    // Unbuffered: a select parked both to send and to receive on one channel;
    // the other side uses the channel both ways too.
    Chan<int> u(0);
    auto h = weft::go([u] {
      int sends = 0, recvs = 0;
      for (int i = 0; i < 200; i++) {
        if (select(send(u, i), recv(u)) == 0) sends++; else recvs++;
      }
      return sends + recvs;
    });
    for (int i = 0; i < 200; i++) {
      if (i % 2) (void)u.recv(); else u.send(-1);
    }
    EXPECT_EQ(h.join(), 200);
  }, opts());
}

TEST_P(Select, OnlyNilChannelsParkForeverUntilShutdown) {
  static std::atomic<int> done{0};
  done = 0;
  weft::run([] {
    Chan<int> nil;
    weft::spawn([nil] {
      struct G { ~G() { done++; } } g;
      select(recv(nil), send(nil, 1));
      ADD_FAILURE() << "select on nil channels returned";
    });
    weft::spawn([] {
      struct G { ~G() { done++; } } g;
      select();
      ADD_FAILURE() << "empty select returned";
    });
    // With after: it times out.
    auto t0 = weft::Clock::now();
    EXPECT_EQ(select(recv(nil), after(2ms)), 1u);
    EXPECT_GE(weft::Clock::now() - t0, 2ms);
    weft::this_fiber::sleep_for(1ms);
  }, opts());
  EXPECT_EQ(done.load(), 2);
}

TEST_P(Select, AfterFiresAndZeroIsReady) {
  weft::run([] {
    Chan<int> a(0);
    bool fired = false;
    auto t0 = weft::Clock::now();
    EXPECT_EQ(select(recv(a), after(3ms, [&] { fired = true; })), 1u);
    EXPECT_TRUE(fired);
    EXPECT_GE(weft::Clock::now() - t0, 3ms);
    EXPECT_EQ(select(recv(a), after(0ns)), 1u);
    EXPECT_EQ(select(recv(a), after(-5ms)), 1u);
    // The earliest of several afters wins.
    EXPECT_EQ(select(after(1h), recv(a), after(1ms), after(2ms)), 2u);
    // A ready channel beats an after that has not passed.
    Chan<int> b(1);
    b.send(1);
    EXPECT_EQ(select(after(1ms), recv(b)), 1u);
  }, opts());
}

// When several cases are ready, each is chosen with equal probability.
// Chi-square over K cases with N draws: the 99.9999th percentile for 5
// degrees of freedom is ~35.9; a fair select exceeds 60 with probability
// far below 1e-10, so the verdict is deterministic for practical purposes.
TEST_P(Select, UniformAmongReadyCases) {
  weft::run([] {
    constexpr int K = 6;
    const int N = static_cast<int>(chantest::scaled(60000, 6000));
    std::vector<Chan<int>> cs;
    for (int i = 0; i < K; i++) {
      cs.emplace_back(1);
      cs.back().send(i);
    }
    int counts[K] = {};
    for (int n = 0; n < N; n++) {
      std::size_t i = select(recv(cs[0]), recv(cs[1]), recv(cs[2]), recv(cs[3]), recv(cs[4]), recv(cs[5]));
      counts[i]++;
      cs[i].send(static_cast<int>(i));
    }
    double expect = static_cast<double>(N) / K, chi2 = 0;
    for (int c : counts) chi2 += (c - expect) * (c - expect) / expect;
    EXPECT_LT(chi2, 60.0) << counts[0] << " " << counts[1] << " " << counts[2] << " " << counts[3];
    // Only the ready ones are chosen: with cases 1 and 4 empty, never them.
    (void)cs[1].recv();
    (void)cs[4].recv();
    int c2[K] = {};
    for (int n = 0; n < N / 10; n++) {
      std::size_t i = select(recv(cs[0]), recv(cs[1]), recv(cs[2]), recv(cs[3]), recv(cs[4]), recv(cs[5]));
      c2[i]++;
      cs[i].send(0);
    }
    EXPECT_EQ(c2[1], 0);
    EXPECT_EQ(c2[4], 0);
    for (int i : {0, 2, 3, 5}) EXPECT_GT(c2[i], N / 10 / 4 / 2);
  }, opts());
}

// Selects that park with an after() and are woken by a channel cancel their
// timer: none is left on any worker's heap afterwards, and memory stays flat.
TEST_P(Select, AbandonedTimersLeaveNothingBehind) {
  weft::run([] {
    int N = static_cast<int>(chantest::scaled(1000000, 20000));
    Chan<int> ping(0), pong(0);
    auto h = weft::go([ping, pong, N] {
      for (int i = 0; i < N; i++) {
        int got = -1;
        select(recv(ping, [&](std::optional<int> v) { got = *v; }), after(1h));
        pong.send(got);
      }
    });
    for (int i = 0; i < N; i++) {
      ping.send(i);
      ASSERT_EQ(*pong.recv(), i);
    }
    h.join();
    std::size_t armed = 0;
    auto* w = weft::rt::current_worker();
    for (auto& wk : w->rt->workers) armed += wk->timers.size();
    EXPECT_EQ(armed, 0u);
  }, opts());
}

// Go's TestSelectStress-like: many selects over shared channels, every value
// through exactly once.
TEST_P(Select, ManyConcurrentSelectsOnSharedChannels) {
  weft::run([] {
    const int kFibers = 16;
    const int kPer = static_cast<int>(chantest::scaled(5000, 200));
    std::vector<Chan<int>> cs = {Chan<int>(0), Chan<int>(0), Chan<int>(3), Chan<int>(1)};
    Chan<int> out(16);
    weft::WaitGroup wg;
    // Senders: each select offers its value on every channel.
    for (int f = 0; f < kFibers; f++) {
      wg.add();
      weft::spawn([&, f] {
        for (int i = 0; i < kPer; i++) {
          int v = f * kPer + i;
          select(send(cs[0], v), send(cs[1], v), send(cs[2], v), send(cs[3], v));
        }
        wg.done();
      });
    }
    // Receivers: each select takes from any channel.
    Chan<int> done(0);
    weft::WaitGroup rwg;
    for (int f = 0; f < kFibers; f++) {
      rwg.add();
      weft::spawn([&rwg, cs, done, out] {
        struct Done {
          weft::WaitGroup& wg;
          ~Done() { wg.done(); }
        } d{rwg};
        for (;;) {
          std::optional<int> v;
          bool stop = false;
          select(recv(cs[0], [&](auto x) { v = x; }), recv(cs[1], [&](auto x) { v = x; }),
                 recv(cs[2], [&](auto x) { v = x; }), recv(cs[3], [&](auto x) { v = x; }),
                 recv(done, [&] { stop = true; }));
          if (stop) return;
          out.send(*v);
        }
      });
    }
    std::vector<char> seen(static_cast<std::size_t>(kFibers * kPer), 0);
    for (int n = 0; n < kFibers * kPer; n++) {
      int v = *out.recv();
      ASSERT_EQ(seen[static_cast<std::size_t>(v)], 0) << v;
      seen[static_cast<std::size_t>(v)] = 1;
    }
    wg.wait();
    done.close();
    rwg.wait();
  }, opts());
}

// Selects racing with close: every select ends (value or closed), nothing
// is lost or duplicated, senders see ChanClosed only after close.
TEST_P(Select, SelectsRacingWithClose) {
  weft::run([] {
    const int kRounds = static_cast<int>(chantest::scaled(300, 20));
    for (int round = 0; round < kRounds; round++) {
      Chan<int> c(round % 3), other(0);
      std::atomic<int> received{0}, sent{0}, closed_seen{0};
      weft::WaitGroup wg;
      for (int f = 0; f < 4; f++) {
        wg.add(2);
        weft::spawn([&] {
          for (;;) {
            bool end = false;
            select(recv(c, [&](std::optional<int> v) { if (v) received++; else end = true; }), recv(other));
            if (end) break;
          }
          wg.done();
        });
        weft::spawn([&, f] {
          try {
            for (int i = 0;; i++) {
              select(send(c, i), send(other, f));
              sent++;
            }
          } catch (const ChanClosed&) {
            closed_seen++;
          }
          wg.done();
        });
      }
      weft::this_fiber::sleep_for(std::chrono::microseconds(50 + round % 7 * 30));
      c.close();
      wg.wait();
      // Sends that went to `other` were received by recv(other) cases.
      EXPECT_LE(received.load(), sent.load());
      EXPECT_EQ(closed_seen.load(), 4);
      while (c.try_recv()) {
      }
    }
  }, opts());
}

TEST_P(Select, HandlerExceptionPropagatesAfterTheOperation) {
  weft::run([] {
    Chan<int> a(1);
    a.send(4);
    EXPECT_THROW(select(recv(a, [](std::optional<int>) { throw std::runtime_error("handler"); })), std::runtime_error);
    EXPECT_EQ(a.size(), 0u);  // the value was taken before the handler ran
  }, opts());
}

// select also works on a plain thread (it parks on a futex, and after()
// uses a futex timeout there), against fibers.
TEST_P(Select, PlainThreadSelect) {
  weft::run([] {
    Chan<int> a(0), b(0);
    std::thread t([a, b] {
      int got = 0;
      for (int i = 0; i < 100; i++) select(recv(a, [&](std::optional<int> v) { got += *v; }), recv(b, [&](std::optional<int> v) { got += *v; }));
      EXPECT_EQ(got, 100);
      EXPECT_EQ(select(recv(a), after(1ms)), 1u);
    });
    for (int i = 0; i < 100; i++) (i % 2 ? a : b).send(1);
    t.join();
  }, opts());
}

// Several cases of one select on one channel, and a peer that comes after
// the select parked: select(send(c, 1), send(c, 0)) queued both waiters in
// c's sendq, and the receiver takes the first queued. They were queued in
// argument order, so the receiver always got 1 (100 of 100); Go queues them
// in its shuffled poll order, so either is first with probability 1/2. Now
// the same here. The interleaving, every trial: the selector starts, finds
// nothing ready and parks (wait_others_parked waits for exactly that, no
// delay); only then does main receive (send, for the recv cases). 200
// trials: a correct select misses one of the two outcomes with probability
// 2 * 2^-200.
TEST_P(Select, SameChannelCasesQueuedInRandomOrder) {
  weft::run([] {
    Chan<int> c(0);
    int sent[2] = {0, 0}, took[2] = {0, 0};
    for (int t = 0; t < 200; t++) {
      auto h = weft::go([&] { return select(send(c, 1), send(c, 0)); });
      chantest::wait_others_parked();
      int v = *c.recv();
      ASSERT_TRUE(v == 0 || v == 1);
      EXPECT_EQ(h.join(), v == 1 ? 0u : 1u);  // the case whose value was taken
      sent[v]++;
    }
    for (int t = 0; t < 200; t++) {
      auto h = weft::go([&] { return select(recv(c), recv(c)); });
      chantest::wait_others_parked();
      c.send(7);
      std::size_t i = h.join();
      ASSERT_LT(i, 2u);
      took[i]++;
    }
    EXPECT_GT(sent[0], 0);
    EXPECT_GT(sent[1], 0);
    EXPECT_GT(took[0], 0);
    EXPECT_GT(took[1], 0);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, Select, chantest::kWorkers, chantest::workers_name);

}  // namespace
