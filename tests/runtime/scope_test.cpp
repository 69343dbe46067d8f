// scope_test.cpp: weft::Scope (structured concurrency, API.md). Each test
// names the interleaving it checks; verdicts are bounded (10 s waits are
// failure bounds only).
#include <weft/scope.hpp>
#include <weft/chan.hpp>
#include <weft/select.hpp>
#include <weft/net.hpp>

#include <atomic>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::scaled;
using weft_test::WorkersTest;

class ScopeTest : public WorkersTest {};

struct Boom : std::runtime_error {
  Boom() : std::runtime_error("boom") {}
};

// Burns CPU without parking.
void spin(int n) {
  std::atomic<int> k{0};
  for (int i = 0; i < n; i++) k.fetch_add(1, std::memory_order_relaxed);
}

// wait() returns once every child ended; go's handles carry the values.
TEST_P(ScopeTest, WaitJoinsAllChildren) {
  weft::run([] {
    std::atomic<int> sum{0};
    weft::Scope s;
    std::vector<weft::JoinHandle<int>> hs;
    for (int i = 1; i <= 100; i++) hs.push_back(s.go([i, &sum] {
      weft::this_fiber::sleep_for(std::chrono::microseconds(i % 7 * 50));
      sum += i;
      return i;
    }));
    s.wait();
    EXPECT_EQ(sum.load(), 5050);
    EXPECT_FALSE(s.cancelled());
    int total = 0;
    for (auto& h : hs) total += h.join();
    EXPECT_EQ(total, 5050);
  }, opts());
}

// A child fails while its siblings are parked in a channel recv: the
// failure cancels them (they end with Cancelled, which is not a failure),
// and wait() rethrows the failure after all ended; the join of the failed
// child sees it too.
TEST_P(ScopeTest, FirstFailureCancelsSiblingsAndIsRethrown) {
  weft::run([] {
    weft::Chan<int> never(0);
    std::atomic<int> cancelled{0};
    weft::Scope s;
    for (int i = 0; i < 20; i++) s.spawn([&] {
      try {
        (void)never.recv();
      } catch (const weft::Cancelled&) {
        cancelled++;
        throw;
      }
    });
    auto bad = s.go([] {
      weft::this_fiber::sleep_for(1ms);
      throw Boom();
    });
    EXPECT_THROW(s.wait(), Boom);
    EXPECT_EQ(cancelled.load(), 20);
    EXPECT_TRUE(s.cancelled());
    EXPECT_TRUE(s.stop_token().stop_requested());
    EXPECT_THROW(bad.join(), Boom);
    EXPECT_TRUE(weft_test::only_caller_left());
  }, opts());
}

// Children ending with Cancelled (cancelled one by one through their
// handles) are not failures: wait() returns normally.
TEST_P(ScopeTest, CancelledChildrenAreNotFailures) {
  weft::run([] {
    weft::Chan<int> never(0);
    weft::Scope s;
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 10; i++) hs.push_back(s.go([&] { (void)never.recv(); }));
    weft::this_fiber::sleep_for(1ms);
    for (auto& h : hs) h.cancel();
    EXPECT_NO_THROW(s.wait());
    EXPECT_FALSE(s.cancelled());
    for (auto& h : hs) EXPECT_THROW(h.join(), weft::Cancelled);
  }, opts());
}

// Leaving the scope without wait() cancels the children and joins them,
// even children that ignore cancellation for a while (CPU-bound, polling
// cancelled() every so often): the destructor returns only after they end.
TEST_P(ScopeTest, DestructorCancelsAndJoinsSlowChildren) {
  weft::run([] {
    std::atomic<int> ended{0};
    {
      weft::Scope s;
      for (int i = 0; i < 4; i++) s.spawn([&] {
        while (!weft::this_fiber::cancelled()) {
          spin(10000);
          weft::this_fiber::yield();
        }
        spin(100000);  // a while more, ignoring it
        ended++;
      });
      for (int i = 0; i < 4; i++) s.spawn([&] {
        weft::this_fiber::sleep_for(1h);  // parked: woken by the cancel
        ended++;
      });
      weft::this_fiber::sleep_for(1ms);
    }
    EXPECT_EQ(ended.load(), 4);  // the sleepers threw Cancelled instead
    EXPECT_TRUE(weft_test::only_caller_left());
  }, opts());
}

// The owner, parked in wait(), is cancelled: wait() throws Cancelled (the
// children run on), and the scope's destructor, run by the unwinding,
// cancels them and waits for them.
TEST_P(ScopeTest, OwnerCancelledInWaitPropagatesThroughTheDestructor) {
  weft::run([] {
    std::atomic<int> child_cancelled{0};
    auto owner = weft::go([&] {
      weft::Scope s;
      for (int i = 0; i < 8; i++) s.spawn([&] {
        try {
          weft::this_fiber::sleep_for(1h);
        } catch (const weft::Cancelled&) {
          child_cancelled++;
          throw;
        }
      });
      s.wait();
    });
    weft::this_fiber::sleep_for(2ms);
    owner.cancel();
    EXPECT_THROW(owner.join(), weft::Cancelled);
    EXPECT_EQ(child_cancelled.load(), 8);
    EXPECT_TRUE(weft_test::only_caller_left());
  }, opts());
}

// Scopes nest: cancelling the outer scope cancels a child parked in an
// inner scope's wait(), whose destructor then cancels the inner children.
TEST_P(ScopeTest, NestedScopesCancelDownTheTree) {
  weft::run([] {
    std::atomic<int> leaves{0};
    weft::Scope outer;
    for (int i = 0; i < 3; i++) outer.spawn([&] {
      weft::Scope inner;
      for (int j = 0; j < 3; j++) inner.spawn([&] {
        try {
          weft::Chan<int> never(0);
          (void)never.recv();
        } catch (const weft::Cancelled&) {
          leaves++;
          throw;
        }
      });
      inner.wait();
    });
    weft::this_fiber::sleep_for(2ms);
    outer.cancel();
    outer.wait();
    EXPECT_EQ(leaves.load(), 9);
    EXPECT_TRUE(weft_test::only_caller_left());
  }, opts());
}

// cancel() also cancels children started later: such a child's first
// cancellation point throws, and its stop token is stopped.
TEST_P(ScopeTest, ChildrenStartedAfterCancelStartCancelled) {
  weft::run([] {
    weft::Scope s;
    s.cancel();
    s.cancel();  // idempotent
    EXPECT_TRUE(s.cancelled());
    auto h = s.go([] {
      EXPECT_TRUE(weft::this_fiber::cancelled());
      EXPECT_TRUE(weft::this_fiber::stop_token().stop_requested());
      weft::this_fiber::sleep_for(1h);
    });
    EXPECT_THROW(h.join(), weft::Cancelled);
    s.wait();
  }, opts());
}

// A child taking a std::stop_token first gets its fiber's token, stopped
// by the scope's cancel; a std::stop_callback on the scope's token fires.
TEST_P(ScopeTest, StopTokensSeeTheCancel) {
  weft::run([] {
    weft::Scope s;
    std::atomic<bool> scope_cb{false};
    std::stop_callback cb(s.stop_token(), [&] { scope_cb = true; });
    auto h = s.go([](std::stop_token tok, int x) {
      while (!tok.stop_requested()) weft::this_fiber::yield();  // not a cancellation point
      return x;  // finished anyway: join returns the value
    }, 7);
    weft::this_fiber::sleep_for(1ms);
    s.cancel();
    EXPECT_TRUE(scope_cb.load());
    EXPECT_EQ(h.join(), 7);
    s.wait();
  }, opts());
}

// Many children parked at once, cancelled in one call: all end, and no
// fiber is left once the scope is gone.
TEST_P(ScopeTest, TenThousandChildrenCancelledAtOnce) {
  const int n = static_cast<int>(scaled(10000));
  weft::run([n] {
    std::atomic<int> cancelled{0};
    {
      weft::Chan<int> never(0);
      weft::Scope s;
      for (int i = 0; i < n; i++) s.spawn([&] {
        try {
          (void)never.recv();
        } catch (const weft::Cancelled&) {
          cancelled++;
          throw;
        }
      });
      weft::this_fiber::sleep_for(1ms);
      s.cancel();
      s.wait();
    }
    EXPECT_EQ(cancelled.load(), n);
    EXPECT_TRUE(weft_test::only_caller_left());
  }, opts());
}

// A scope cancelled from a plain thread while its children park.
TEST_P(ScopeTest, CancelFromAPlainThread) {
  weft::run([] {
    weft::Scope s;
    for (int i = 0; i < 16; i++) s.spawn([] { weft::this_fiber::sleep_for(1h); });
    std::thread t([&] { s.cancel(); });
    s.wait();
    t.join();
    EXPECT_TRUE(s.cancelled());
  }, opts());
}

// A failure racing the scope's own cancel and other failures: exactly one
// exception comes out of wait(), every child ends, nothing panics.
TEST_P(ScopeTest, FailuresRacingCancel) {
  const int rounds = static_cast<int>(scaled(200));
  weft::run([rounds] {
    for (int r = 0; r < rounds; r++) {
      weft::Scope s;
      for (int i = 0; i < 6; i++) s.spawn([i] {
        weft::this_fiber::yield();
        if (i % 2) throw Boom();
        weft::this_fiber::sleep_for(1h);
      });
      if (r % 3 == 0) s.cancel();
      try {
        s.wait();
        EXPECT_EQ(r % 3, 0) << "round " << r;  // only a cancel before any failure ends without one
      } catch (const Boom&) {
      }
    }
    EXPECT_TRUE(weft_test::only_caller_left());
  }, opts());
}

// A child fails while its siblings are parked in socket reads (loopback
// connections whose server side never writes) and in accept(): the failure
// cancels them out of the netpoller, wait() rethrows it, and the sockets
// are closed cleanly as the siblings unwind.
TEST_P(ScopeTest, FailureCancelsSiblingsParkedInIo) {
  weft::run([] {
    auto ln = weft::net::TcpListener::listen("127.0.0.1:0");
    std::string addr = ln.local_addr();
    std::atomic<int> cancelled{0};
    std::vector<weft::net::TcpStream> server_side;
    {
      weft::Scope s;
      for (int i = 0; i < 4; i++) {
        auto c = weft::net::TcpStream::connect(addr);
        server_side.push_back(ln.accept());
        s.spawn([&cancelled, c = std::move(c)]() mutable {
          char buf[16];
          try {
            (void)c.read(buf);
          } catch (const weft::Cancelled&) {
            cancelled++;
            throw;
          }
        });
      }
      s.spawn([&] {
        try {
          (void)ln.accept();
        } catch (const weft::Cancelled&) {
          cancelled++;
          throw;
        }
      });
      s.spawn([] {
        weft::this_fiber::sleep_for(2ms);
        throw Boom();
      });
      EXPECT_THROW(s.wait(), Boom);
    }
    EXPECT_EQ(cancelled.load(), 5);
    // Each reader's socket closed as it unwound: the server sides see EOF.
    for (auto& c : server_side) {
      char buf[16];
      EXPECT_EQ(c.read(buf), 0u);
    }
    EXPECT_TRUE(weft_test::only_caller_left());
  }, opts());
}

// Scope::spawn keeps a child's join state and scope record in the fiber's
// own closure (no allocation, no handle). What that must still get right:
// each copied argument and the callable are destroyed exactly once, before
// wait() returns; a value the callable returns is dropped; a std::stop_token
// first parameter receives the child's token (stopped by the scope's
// cancel); an argument whose copy throws fails the spawn call itself and
// leaves the scope as it was (wait() returns, no child counted).
struct Counted {
  static inline std::atomic<int> live{0};
  bool throw_on_copy = false;
  Counted() { live++; }
  Counted(const Counted& o) : throw_on_copy(o.throw_on_copy) {
    if (throw_on_copy) throw Boom();
    live++;
  }
  Counted(Counted&& o) noexcept : throw_on_copy(o.throw_on_copy) { live++; }
  ~Counted() { live--; }
};

TEST_P(ScopeTest, SpawnedChildrenOwnTheirArgumentsAndTokens) {
  weft::run([] {
    Counted::live = 0;
    std::atomic<int> ran{0}, saw_stop{0};
    {
      Counted arg;
      weft::Scope s;
      for (int i = 0; i < 50; i++) s.spawn([&ran, c = Counted()](const Counted&) { ran++; return 7; }, arg);
      s.wait();
      EXPECT_EQ(ran.load(), 50);
      EXPECT_EQ(Counted::live.load(), 1);  // only `arg`: every copy and closure is gone

      Counted bad;
      bad.throw_on_copy = true;
      EXPECT_THROW(s.spawn([](const Counted&) {}, bad), Boom);
      s.wait();  // nothing was counted for the failed spawn
      EXPECT_EQ(Counted::live.load(), 2);

      weft::Chan<int> never;
      for (int i = 0; i < 8; i++) s.spawn([&](std::stop_token tok, int) {
        try {
          (void)never.recv();
        } catch (const weft::Cancelled&) {
          if (tok.stop_requested()) saw_stop++;
          throw;
        }
      }, i);
      weft_test::wait_parked(8);
      s.cancel();
      s.wait();
      EXPECT_EQ(saw_stop.load(), 8);
    }
    EXPECT_EQ(Counted::live.load(), 0);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, ScopeTest, ::testing::Values(1u, 2u), weft_test::workers_name);

}  // namespace
