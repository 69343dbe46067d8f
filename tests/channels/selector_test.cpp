// selector_test.cpp: weft::Selector (API.md "Dynamic select") and the
// stored-case rules of select (weft/select.hpp: after() with any duration;
// channel cases only inside the call, checked at compile time by
// compile_fail.py).
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using weft::after;
using weft::Chan;
using weft::ChanClosed;
using weft::otherwise;
using weft::recv;
using weft::Selector;
using weft::send;

namespace {

class SelectorTest : public chantest::WorkersTest {};

// Every case kind, with and without handlers; add() returns the indices in order.
TEST_P(SelectorTest, EveryCaseKind) {
  weft::run([] {
    Chan<int> a(1), b(1), never(0);
    Selector sel;
    std::optional<int> got;
    int sent = 0, timed = 0, dflt = 0;
    EXPECT_EQ(sel.add(recv(a, [&](std::optional<int> v) { got = v; })), 0u);
    EXPECT_EQ(sel.add(send(b, 7, [&] { sent++; })), 1u);
    EXPECT_EQ(sel.add(recv(never)), 2u);
    EXPECT_EQ(sel.add(send(never, 1)), 3u);
    EXPECT_EQ(sel.size(), 4u);
    // Only the send is ready.
    EXPECT_EQ(sel.wait(), 1u);
    EXPECT_EQ(sent, 1);
    EXPECT_EQ(*b.recv(), 7);
    // Now only the recv.
    a.send(3);
    EXPECT_EQ(sel.wait(), 0u);
    EXPECT_EQ(got, 3);
    // Nothing ready: an after, then an otherwise.
    EXPECT_EQ(sel.add(after(1ms, [&] { timed++; })), 4u);
    EXPECT_EQ(sel.wait(), 4u);
    EXPECT_EQ(timed, 1);
    EXPECT_EQ(sel.add(otherwise([&] { dflt++; })), 5u);
    EXPECT_EQ(sel.wait(), 5u);
    EXPECT_EQ(dflt, 1);
    // Handler-less recv / after / otherwise.
    Selector s2;
    s2.add(recv(a));
    s2.add(after(1h));
    s2.add(otherwise());
    EXPECT_EQ(s2.wait(), 2u);
    a.send(1);
    EXPECT_EQ(s2.wait(), 0u);
    EXPECT_EQ(a.size(), 0u);
    // A recv handler taking nothing.
    Selector s3;
    int calls = 0;
    s3.add(recv(a, [&] { calls++; }));
    a.send(2);
    EXPECT_EQ(s3.wait(), 0u);
    EXPECT_EQ(calls, 1);
  }, opts());
}

// Element types differ between cases; values travel by move (move-only T).
TEST_P(SelectorTest, MixedElementTypes) {
  weft::run([] {
    Chan<int> i(1);
    Chan<std::string> s(1);
    Chan<std::unique_ptr<int>> p(1);
    Selector sel;
    std::string gs;
    int gi = 0, gp = 0;
    sel.add(recv(i, [&](std::optional<int> v) { gi = *v; }));
    sel.add(recv(s, [&](std::optional<std::string> v) { gs = v.value_or("closed"); }));
    sel.add(recv(p, [&](std::optional<std::unique_ptr<int>> v) { gp = v && *v ? **v : -1; }));
    s.send(std::string(100, 'x'));
    EXPECT_EQ(sel.wait(), 1u);
    EXPECT_EQ(gs, std::string(100, 'x'));
    p.send(std::make_unique<int>(9));
    EXPECT_EQ(sel.wait(), 2u);
    EXPECT_EQ(gp, 9);
    i.send(4);
    EXPECT_EQ(sel.wait(), 0u);
    EXPECT_EQ(gi, 4);
  }, opts());
}

// The Selector owns what its cases need: a channel whose handles are all
// gone, a send's value built as a temporary (the case that dangles when
// kept outside select), a value moved in at add().
TEST_P(SelectorTest, OwnsChannelsAndValues) {
  weft::run([] {
    Selector sel;
    Chan<std::string> out(0);
    std::optional<std::string> got;
    {
      Chan<std::string> in(1);
      in.send("kept alive");
      sel.add(recv(in, [&](std::optional<std::string> v) { got = std::move(v); }));
      out = Chan<std::string>(1);
      sel.add(send(out, std::string("a temporary, long enough not to be in the SSO buffer")));
    }  // `in`'s last handle is gone: the Selector's reference keeps it
    std::size_t first = sel.wait(), second = sel.wait();
    EXPECT_NE(first, second);
    EXPECT_EQ(got, "kept alive");
    EXPECT_EQ(*out.recv(), "a temporary, long enough not to be in the SSO buffer");
    // send(ch, std::move(v)) moves v into the Selector at add().
    Chan<std::unique_ptr<int>> pc(1);
    auto v = std::make_unique<int>(5);
    Selector s2;
    s2.add(send(pc, std::move(v)));
    EXPECT_EQ(v, nullptr);
    EXPECT_EQ(s2.wait(), 0u);
    EXPECT_EQ(**pc.recv(), 5);
    // An lvalue is copied at add().
    std::string keep = "copy me";
    Chan<std::string> sc(1);
    Selector s3;
    s3.add(send(sc, keep));
    EXPECT_EQ(keep, "copy me");
    s3.wait();
    EXPECT_EQ(*sc.recv(), "copy me");
  }, opts());
}

// Uniform choice, chi-square-free: each of 8 always-ready cases is chosen
// at least once in 2000 rounds (a fair choice misses one with probability
// 8 * (7/8)^2000, about 1e-115).
TEST_P(SelectorTest, EveryReadyCaseGetsChosen) {
  weft::run([] {
    constexpr int K = 8;
    std::vector<Chan<int>> cs;
    Selector sel;
    for (int i = 0; i < K; i++) {
      cs.emplace_back(1);
      cs.back().send(i);
      sel.add(recv(cs.back(), [&cs, i](std::optional<int> v) {
        EXPECT_EQ(*v, i);
        cs[static_cast<std::size_t>(i)].send(i);  // ready again
      }));
    }
    int counts[K] = {};
    for (int n = 0; n < 2000; n++) counts[sel.wait()]++;
    for (int i = 0; i < K; i++) EXPECT_GT(counts[i], 0) << "case " << i << " never chosen";
    // Only ready cases are chosen.
    (void)cs[3].recv();
    for (int n = 0; n < 200; n++) EXPECT_NE(sel.wait(), 3u);
  }, opts());
}

// Re-waiting after the set changed (add between waits), and cases on the
// same channel.
TEST_P(SelectorTest, ReWaitAndAddBetweenWaits) {
  weft::run([] {
    Chan<int> c(4);
    Selector sel;
    int sum = 0;
    sel.add(recv(c, [&](std::optional<int> v) { sum += *v; }));
    for (int i = 1; i <= 3; i++) c.send(i);
    for (int i = 0; i < 3; i++) EXPECT_EQ(sel.wait(), 0u);
    EXPECT_EQ(sum, 6);
    sel.add(recv(c, [&](std::optional<int> v) { sum += 10 * *v; }));
    sel.add(send(c, 5));
    EXPECT_EQ(sel.wait(), 2u);  // c empty: only the send
    std::size_t i = sel.wait();  // the value just sent, by either recv
    EXPECT_TRUE(i == 0 || i == 1);
    EXPECT_EQ(sum, i == 0 ? 11 : 56);
  }, opts());
}

// A chosen send case has no value left: never ready again until clear().
TEST_P(SelectorTest, ChosenSendNeverReadyAgainUntilClear) {
  weft::run([] {
    Chan<int> b(8);
    Selector sel;
    int sends = 0;
    sel.add(send(b, 42, [&] { sends++; }));
    sel.add(otherwise());
    EXPECT_EQ(sel.wait(), 0u);
    for (int n = 0; n < 10; n++) EXPECT_EQ(sel.wait(), 1u);  // b has room, but the value is gone
    EXPECT_EQ(sends, 1);
    EXPECT_EQ(b.size(), 1u);
    EXPECT_EQ(sel.size(), 2u);
    sel.clear();
    EXPECT_EQ(sel.size(), 0u);
    EXPECT_EQ(sel.add(send(b, 43)), 0u);
    EXPECT_EQ(sel.add(otherwise()), 1u);
    EXPECT_EQ(sel.wait(), 0u);
    EXPECT_EQ(*b.recv(), 42);
    EXPECT_EQ(*b.recv(), 43);
    // With only a spent send and no otherwise/after, wait parks: a peer's
    // recv on b is not matched with it (b stays empty), a recv case added
    // later still works.
    Chan<int> u(0);
    Selector s2;
    s2.add(send(u, 1));
    auto h = weft::go([u] { return *u.recv(); });
    EXPECT_EQ(s2.wait(), 0u);
    EXPECT_EQ(h.join(), 1);
    s2.add(recv(u));
    auto h2 = weft::go([u] { u.send(2); });
    EXPECT_EQ(s2.wait(), 1u);
    h2.join();
  }, opts());
}

TEST_P(SelectorTest, NilChannelsNeverReady) {
  weft::run([] {
    Chan<int> nil;
    Selector sel;
    sel.add(recv(nil));
    sel.add(send(nil, 1));
    sel.add(otherwise());
    for (int n = 0; n < 5; n++) EXPECT_EQ(sel.wait(), 2u);
    Selector s2;
    s2.add(recv(nil));
    s2.add(send(nil, 1));
    s2.add(after(2ms));
    EXPECT_EQ(s2.wait(), 2u);
  }, opts());
}

TEST_P(SelectorTest, ClosedChannels) {
  weft::run([] {
    Chan<int> a(0), b(0);
    a.close();
    Selector sel;
    bool closed = false;
    sel.add(recv(a, [&](std::optional<int> v) { closed = !v; }));
    EXPECT_EQ(sel.wait(), 0u);
    EXPECT_TRUE(closed);
    // A send on a closed channel throws if chosen, and keeps its value.
    Chan<std::unique_ptr<int>> pc(1);
    pc.close();
    Selector s2;
    s2.add(send(pc, std::make_unique<int>(1)));
    EXPECT_THROW(s2.wait(), ChanClosed);
    EXPECT_THROW(s2.wait(), ChanClosed);
    // A parked wait woken by close.
    auto h = weft::go([b] {
      Selector s;
      std::optional<int> got = 1;
      s.add(recv(b, [&](std::optional<int> v) { got = v; }));
      s.wait();
      return got.has_value();
    });
    Chan<int> b2(0);
    auto h2 = weft::go([b2] {
      Selector s;
      s.add(send(b2, 3));
      try {
        s.wait();
        return false;
      } catch (const ChanClosed&) {
        return true;
      }
    });
    chantest::wait_others_parked();
    b.close();
    b2.close();
    EXPECT_FALSE(h.join());
    EXPECT_TRUE(h2.join());
  }, opts());
}

// An after's clock starts at each wait(), not at add().
TEST_P(SelectorTest, AfterClockStartsAtEachWait) {
  weft::run([] {
    Chan<int> never(0);
    Selector sel;
    sel.add(recv(never));
    auto t = after(std::chrono::duration<double, std::milli>(20.5));  // stored: a documented meaning
    EXPECT_EQ(sel.add(t), 1u);
    weft::this_fiber::sleep_for(30ms);  // longer than the after: it must not count
    for (int n = 0; n < 3; n++) {
      auto t0 = weft::Clock::now();
      EXPECT_EQ(sel.wait(), 1u);
      EXPECT_GE(weft::Clock::now() - t0, 20ms);
    }
  }, opts());
}

// Several afters: the earliest fires; among equal ones the first added.
// Several otherwise: the second add() throws and changes nothing.
TEST_P(SelectorTest, SeveralAftersAndOtherwise) {
  weft::run([] {
    Selector sel;
    sel.add(after(1h));
    sel.add(after(2ms));
    sel.add(after(5ms));
    sel.add(after(2ms));
    EXPECT_EQ(sel.wait(), 1u);
    sel.add(after(-1s));  // ready at once
    EXPECT_EQ(sel.wait(), 4u);
    Selector s2;
    s2.add(after(0ns));
    s2.add(after(0ns));
    EXPECT_EQ(s2.wait(), 0u);
    // An after already due beats otherwise, as in select.
    s2.add(otherwise());
    EXPECT_EQ(s2.wait(), 0u);
    EXPECT_THROW(s2.add(otherwise()), std::invalid_argument);
    EXPECT_EQ(s2.size(), 3u);
    Selector s3;
    s3.add(otherwise());
    EXPECT_THROW(s3.add(otherwise([] {})), std::invalid_argument);
    EXPECT_EQ(s3.wait(), 0u);
  }, opts());
}

// otherwise() never parks, and makes wait() no cancellation point (as select).
TEST_P(SelectorTest, OtherwiseNeverParks) {
  weft::run([] {
    Chan<int> a(0), b(0);
    Selector sel;
    sel.add(recv(a));
    sel.add(send(b, 1));
    sel.add(otherwise());
    for (int n = 0; n < 100; n++) EXPECT_EQ(sel.wait(), 2u);
    // Not a cancellation point: a cancelled fiber's wait() still returns.
    auto h = weft::go([&sel] {
      try {
        weft::this_fiber::sleep_for(1h);  // cancelled here
      } catch (const weft::Cancelled&) {
      }
      return sel.wait();
    });
    chantest::wait_others_parked();
    h.cancel();
    EXPECT_EQ(h.join(), 2u);
  }, opts());
}

// wait() is a cancellation point: a fiber cancelled while parked in it
// throws Cancelled, consumed nothing, sent nothing, and left no waiter: a
// later sender or receiver on those channels is not matched with it. The
// send case keeps its value (the Selector outlives the fiber here).
TEST_P(SelectorTest, CancelWhileParkedLeavesNoWaiter) {
  weft::run([] {
    Chan<int> a(0), u(0);
    Chan<std::unique_ptr<int>> b(0);
    Selector sel;
    bool ran = false;
    sel.add(recv(a, [&] { ran = true; }));
    sel.add(send(b, std::make_unique<int>(42), [&] { ran = true; }));
    sel.add(recv(u, [&] { ran = true; }));
    sel.add(after(1h, [&] { ran = true; }));
    for (int round = 0; round < 20; round++) {
      auto h = weft::go([&sel] { sel.wait(); });
      chantest::wait_others_parked();
      h.cancel();
      EXPECT_THROW(h.join(), weft::Cancelled);
      EXPECT_FALSE(ran);
      int v = 1;
      EXPECT_FALSE(a.try_send(v));   // no receiver left queued on a
      EXPECT_FALSE(b.try_recv());    // no sender left queued on b
      EXPECT_FALSE(u.try_send(v));
    }
    // A parked peer is matched with the next wait, not a dead one.
    auto peer = weft::go([b] { return **b.recv(); });
    EXPECT_EQ(sel.wait(), 1u);  // the value survived every cancelled wait
    EXPECT_EQ(peer.join(), 42);
    // Cancelled before the call: throws even with a case ready.
    Chan<int> r(1);
    r.send(5);
    Selector s2;
    s2.add(recv(r));
    auto h2 = weft::go([&s2] {
      try {
        weft::this_fiber::sleep_for(1h);
      } catch (const weft::Cancelled&) {
      }
      s2.wait();  // sticky: throws at once
      ADD_FAILURE() << "wait returned in a cancelled fiber";
    });
    chantest::wait_others_parked();
    h2.cancel();
    EXPECT_THROW(h2.join(), weft::Cancelled);
    EXPECT_EQ(r.size(), 1u);  // not consumed
    // An empty Selector parks forever: only cancellation ends it.
    auto h3 = weft::go([] {
      Selector empty;
      empty.wait();
    });
    chantest::wait_others_parked();
    h3.cancel();
    EXPECT_THROW(h3.join(), weft::Cancelled);
  }, opts());
}

TEST_P(SelectorTest, HandlerExceptionLeavesSelectorUsable) {
  weft::run([] {
    Chan<int> a(2);
    a.send(1);
    a.send(2);
    Selector sel;
    int seen = 0;
    sel.add(recv(a, [&](std::optional<int> v) {
      seen = *v;
      if (*v == 1) throw std::runtime_error("handler");
    }));
    EXPECT_THROW(sel.wait(), std::runtime_error);
    EXPECT_EQ(seen, 1);
    EXPECT_EQ(sel.wait(), 0u);
    EXPECT_EQ(seen, 2);
    // Moved: the new owner works, the old one is empty (and usable).
    Selector moved = std::move(sel);
    a.send(3);
    EXPECT_EQ(moved.wait(), 0u);
    EXPECT_EQ(seen, 3);
    EXPECT_EQ(sel.size(), 0u);  // NOLINT(bugprone-use-after-move): documented
    sel.add(otherwise());
    EXPECT_EQ(sel.wait(), 0u);
    Selector other;
    other.add(after(1h));
    other.add(otherwise());
    moved = std::move(other);
    EXPECT_EQ(moved.size(), 2u);
    EXPECT_EQ(moved.wait(), 1u);
    EXPECT_EQ(other.size(), 0u);  // NOLINT(bugprone-use-after-move)
  }, opts());
}

TEST_P(SelectorTest, HandlerMayAddCases) {
  weft::run([] {
    Chan<int> a(1), b(1);
    Selector sel;
    sel.add(recv(a, [&] { sel.add(recv(b)); }));
    a.send(1);
    EXPECT_EQ(sel.wait(), 0u);
    EXPECT_EQ(sel.size(), 2u);
    b.send(2);
    EXPECT_EQ(sel.wait(), 1u);
    EXPECT_EQ(b.size(), 0u);
  }, opts());
}

// Many Selectors over shared channels, with select()s and plain sends and
// recvs on the same channels: every value arrives exactly once.
TEST_P(SelectorTest, StressManySelectorsConserveValues) {
  weft::run([] {
    constexpr int K = 6, kProducers = 8, kConsumers = 8;
    const int kPer = static_cast<int>(chantest::scaled(4000, 200));
    std::vector<Chan<int>> cs;
    for (int k = 0; k < K; k++) cs.emplace_back(static_cast<std::size_t>(k % 3));  // caps 0, 1, 2
    Chan<int> done(0);
    std::vector<std::atomic<int>> seen(static_cast<std::size_t>(kProducers * kPer));
    weft::WaitGroup prod, cons;
    for (int p = 0; p < kProducers; p++) {
      prod.add();
      weft::spawn([&, p] {
        Selector sel;  // rebuilt per value: a spent send is gone until clear()
        for (int i = 0; i < kPer; i++) {
          int v = p * kPer + i;
          if (p % 2) {
            cs[static_cast<std::size_t>(v % K)].send(v);
            continue;
          }
          sel.clear();
          for (auto& c : cs) sel.add(send(c, v));
          sel.wait();
        }
        prod.done();
      });
    }
    std::atomic<long> got{0};
    for (int c = 0; c < kConsumers; c++) {
      cons.add();
      weft::spawn([&, c] {
        Selector sel;
        bool stop = false;
        auto take = [&](std::optional<int> v) {
          seen[static_cast<std::size_t>(*v)]++;
          got++;
        };
        for (auto& ch : cs) sel.add(recv(ch, take));
        sel.add(recv(done, [&] { stop = true; }));
        if (c % 4 == 3) {  // some consumers use select()
          while (!stop)
            weft::select(recv(cs[0], take), recv(cs[1], take), recv(cs[2], take), recv(cs[3], take),
                         recv(cs[4], take), recv(cs[5], take), recv(done, [&] { stop = true; }));
        } else {
          while (!stop) sel.wait();
        }
        cons.done();
      });
    }
    prod.wait();
    // Drain: stop the consumers once every value has arrived.
    while (got.load() < kProducers * kPer) weft::this_fiber::sleep_for(1ms);
    done.close();
    cons.wait();
    for (std::size_t v = 0; v < seen.size(); v++) ASSERT_EQ(seen[v].load(), 1) << "value " << v;
    for (auto& ch : cs) EXPECT_EQ(ch.size(), 0u);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, SelectorTest, chantest::kWorkers, chantest::workers_name);

// ---- after() with any std::chrono duration --------------------------------------

using weft::detail::to_nanoseconds;
using ns = std::chrono::nanoseconds;
static_assert(to_nanoseconds(1.5s) == 1500ms);
static_assert(to_nanoseconds(std::chrono::duration<long double>(0.25)) == 250ms);
static_assert(to_nanoseconds(std::chrono::duration<float, std::milli>(1.5f)) == 1500us);
static_assert(to_nanoseconds(std::chrono::duration<long long, std::pico>(1)) == 1ns);     // rounded up
static_assert(to_nanoseconds(std::chrono::duration<long long, std::pico>(-1)) == 0ns);    // up, toward zero
static_assert(to_nanoseconds(std::chrono::duration<double, std::nano>(0.1)) == 1ns);
static_assert(to_nanoseconds(std::chrono::duration<double, std::nano>(-0.9)) == 0ns);
static_assert(to_nanoseconds(std::chrono::hours::max()) == ns::max());                 // saturates: never fires
static_assert(to_nanoseconds(std::chrono::hours::min()) == ns::min());                 // ready at once
static_assert(to_nanoseconds(std::chrono::duration<double>(1e300)) == ns::max());
static_assert(to_nanoseconds(std::chrono::duration<double>(-1e300)) == ns::min());
static_assert(to_nanoseconds(std::chrono::duration<unsigned long long, std::nano>(~0ull)) == ns::max());
static_assert(to_nanoseconds(std::chrono::duration<int, std::ratio<3, 7>>(7)) == 3s);
static_assert(to_nanoseconds(ns::max()) == ns::max());
static_assert(to_nanoseconds(std::chrono::duration<short, std::milli>(3)) == 3ms);

TEST(SelectorAfter, AnyDuration) {
  weft::run([] {
    Chan<int> never(0);
    // Short ones that really fire, in select and in a Selector.
    EXPECT_EQ(weft::select(recv(never), after(std::chrono::duration<double, std::milli>(1.5))), 1u);
    EXPECT_EQ(weft::select(recv(never), after(std::chrono::duration<long double, std::micro>(10.25L), [] {})), 1u);
    EXPECT_EQ(weft::select(recv(never), after(std::chrono::duration<long long, std::pico>(1))), 1u);
    // Huge: never fires (otherwise wins); negative: ready at once.
    EXPECT_EQ(weft::select(after(std::chrono::hours::max()), otherwise()), 1u);
    EXPECT_EQ(weft::select(after(std::chrono::duration<double>(1e300)), otherwise()), 1u);
    EXPECT_EQ(weft::select(after(std::chrono::duration<double>(-1.5)), otherwise()), 0u);
    EXPECT_EQ(weft::select(after(std::chrono::hours::min()), otherwise()), 0u);
    Selector sel;
    sel.add(after(std::chrono::duration<float>(0.002f)));
    sel.add(after(std::chrono::years(1000)));
    EXPECT_EQ(sel.wait(), 0u);
    // Lvalue and const durations, with lvalue handlers.
    const auto cd = 1ms;
    std::chrono::duration<double, std::micro> ld(500.0);
    auto h = [] {};
    EXPECT_EQ(weft::select(recv(never), after(cd, h)), 1u);
    EXPECT_EQ(weft::select(recv(never), after(ld)), 1u);
    // NaN is a bad argument.
    EXPECT_THROW(after(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())), std::invalid_argument);
    // A stored after (the issue's `auto t = weft::after(100ms);`): it means
    // "d after the select begins", in each select that uses it.
    auto t = after(1.5ms);
    for (int n = 0; n < 2; n++) {
      auto t0 = weft::Clock::now();
      EXPECT_EQ(weft::select(recv(never), t), 1u);
      EXPECT_GE(weft::Clock::now() - t0, 1500us);
    }
  });
}

TEST(SelectorLimits, TooManyCases) {
  Selector sel;
  for (int i = 0; i < 0x7ffe; i++) sel.add(after(1h));
  EXPECT_THROW(sel.add(after(1h)), std::invalid_argument);
  EXPECT_EQ(sel.size(), 0x7ffeu);
  sel.clear();
  EXPECT_EQ(sel.size(), 0u);
}

}  // namespace
