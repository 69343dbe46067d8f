// chan_basic_test.cpp: Chan<T> semantics one by one (API.md "Channels").
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using weft::Chan;
using weft::ChanClosed;

namespace {

// Counts copies and moves, and live objects.
struct Tracked {
  static inline std::atomic<int> copies{0}, moves{0}, live{0};
  int v = 0;
  explicit Tracked(int x) : v(x) { live++; }
  Tracked(const Tracked& o) : v(o.v) { copies++; live++; }
  Tracked(Tracked&& o) noexcept : v(o.v) { moves++; live++; }
  Tracked& operator=(const Tracked&) = delete;
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() { live--; }
  static void reset() { copies = moves = 0; }
};

class ChanBasic : public chantest::WorkersTest {};

TEST_P(ChanBasic, UnbufferedRendezvous) {
  weft::run([] {
    Chan<int> ch;  // nil
    EXPECT_FALSE(ch);
    auto c = weft::make_chan<int>();
    EXPECT_TRUE(c);
    EXPECT_EQ(c.capacity(), 0u);
    auto h = weft::go([c] {
      int sum = 0;
      for (int i = 0; i < 1000; i++) sum += *c.recv();
      return sum;
    });
    for (int i = 0; i < 1000; i++) c.send(i);
    EXPECT_EQ(h.join(), 999 * 1000 / 2);
  }, opts());
}

TEST_P(ChanBasic, BufferedFifoSizeCapacity) {
  weft::run([] {
    Chan<int> c(3);
    EXPECT_EQ(c.capacity(), 3u);
    EXPECT_EQ(c.size(), 0u);
    c.send(1);
    c.send(2);
    EXPECT_EQ(c.size(), 2u);
    int v = 3;
    EXPECT_TRUE(c.try_send(v));
    int w = 4;
    EXPECT_FALSE(c.try_send(w));  // full
    EXPECT_EQ(w, 4);
    EXPECT_EQ(c.size(), 3u);
    EXPECT_EQ(*c.recv(), 1);
    EXPECT_EQ(*c.try_recv(), 2);
    EXPECT_EQ(*c.recv(), 3);
    EXPECT_FALSE(c.try_recv().has_value());
    // Wrap around the ring many times.
    for (int i = 0; i < 100; i++) {
      c.send(i);
      c.send(i + 1000);
      EXPECT_EQ(*c.recv(), i);
      EXPECT_EQ(*c.recv(), i + 1000);
    }
  }, opts());
}

TEST_P(ChanBasic, TryOpsOnUnbuffered) {
  weft::run([] {
    Chan<int> c(0);
    int v = 7;
    EXPECT_FALSE(c.try_send(v));  // nobody receiving
    EXPECT_FALSE(c.try_recv());   // nobody sending
    auto h = weft::go([c] { return *c.recv(); });
    // Wait until the receiver is parked, then try_send must succeed.
    while (!c.try_send(v)) weft::this_fiber::yield();
    EXPECT_EQ(h.join(), 7);
    auto s = weft::go([c] { c.send(9); });
    std::optional<int> got;
    while (!(got = c.try_recv())) weft::this_fiber::yield();
    EXPECT_EQ(*got, 9);
    s.join();
  }, opts());
}

TEST_P(ChanBasic, CloseDrainsThenNullopt) {
  weft::run([] {
    Chan<std::string> c(4);
    c.send("a");
    c.send("b");
    c.close();
    EXPECT_EQ(*c.recv(), "a");
    EXPECT_EQ(*c.try_recv(), "b");
    EXPECT_FALSE(c.recv().has_value());
    EXPECT_FALSE(c.recv().has_value());
    EXPECT_FALSE(c.try_recv().has_value());
    EXPECT_THROW(c.send("c"), ChanClosed);
    std::string s = "d";
    EXPECT_THROW(c.try_send(s), ChanClosed);
    EXPECT_EQ(s, "d");
    EXPECT_THROW(c.close(), ChanClosed);
    Chan<int> nil;
    EXPECT_THROW(nil.close(), ChanClosed);
  }, opts());
}

TEST_P(ChanBasic, CloseWakesParkedReceiversAndSenders) {
  weft::run([] {
    Chan<int> r(0);
    std::vector<weft::JoinHandle<bool>> rs;
    for (int i = 0; i < 10; i++) rs.push_back(weft::go([r] { return r.recv().has_value(); }));
    Chan<int> s(0);
    std::vector<weft::JoinHandle<bool>> ss;
    for (int i = 0; i < 10; i++)
      ss.push_back(weft::go([s, i] {
        try {
          s.send(i);
          return false;
        } catch (const ChanClosed&) {
          return true;
        }
      }));
    weft::this_fiber::sleep_for(5ms);
    r.close();
    s.close();
    for (auto& h : rs) EXPECT_FALSE(h.join());
    for (auto& h : ss) EXPECT_TRUE(h.join());
  }, opts());
}

TEST_P(ChanBasic, MoveOnlyValuesMoveOnceNeverCopy) {
  weft::run([] {
    Chan<std::unique_ptr<int>> u(0), b(2);
    auto h = weft::go([u] { return **u.recv(); });
    u.send(std::make_unique<int>(5));
    EXPECT_EQ(h.join(), 5);
    b.send(std::make_unique<int>(6));
    auto p = std::make_unique<int>(7);
    EXPECT_TRUE(b.try_send(p));
    EXPECT_EQ(p, nullptr);
    EXPECT_EQ(**b.recv(), 6);
    EXPECT_EQ(**b.recv(), 7);

    // Unbuffered: exactly one move from send's parameter into recv's result.
    Chan<Tracked> t(0);
    Tracked::reset();
    auto rh = weft::go([t] {
      auto v = t.recv();
      return v->v;
    });
    weft::this_fiber::sleep_for(1ms);  // let the receiver park (either order is fine)
    Tracked x(42);
    Tracked::reset();
    t.send(std::move(x));  // one move into the parameter, one into the receiver
    EXPECT_EQ(rh.join(), 42);
    EXPECT_EQ(Tracked::copies.load(), 0);
    EXPECT_EQ(Tracked::moves.load(), 2);

    Chan<Tracked> tb(4);
    Tracked::reset();
    tb.send(Tracked(1));
    EXPECT_EQ(tb.recv()->v, 1);
    EXPECT_EQ(Tracked::copies.load(), 0);
  }, opts());
  EXPECT_EQ(Tracked::live.load(), 0);
}

TEST_P(ChanBasic, BufferedValuesDestroyedWithLastHandle) {
  weft::run([] {
    {
      Chan<Tracked> c(8);
      for (int i = 0; i < 5; i++) c.send(Tracked(i));
      Chan<Tracked> d = c;  // same channel
      EXPECT_EQ(d.size(), 5u);
      EXPECT_TRUE(d == c);
      EXPECT_EQ(d.recv()->v, 0);
    }
    EXPECT_EQ(Tracked::live.load(), 0);
  }, opts());
}

TEST_P(ChanBasic, RangeFor) {
  weft::run([] {
    Chan<std::unique_ptr<int>> c(3);
    weft::go([c] {
      for (int i = 0; i < 100; i++) c.send(std::make_unique<int>(i));
      c.close();
    }).detach();
    int expect = 0;
    for (std::unique_ptr<int> v : c) EXPECT_EQ(*v, expect++);
    EXPECT_EQ(expect, 100);
  }, opts());
}

TEST_P(ChanBasic, NilChannel) {
  weft::run([] {
    Chan<int> nil;
    int v = 1;
    EXPECT_FALSE(nil.try_send(v));
    EXPECT_FALSE(nil.try_recv());
    EXPECT_EQ(nil.size(), 0u);
    EXPECT_EQ(nil.capacity(), 0u);
    // send and recv park forever: a fiber stuck there is unwound at shutdown.
    weft::spawn([nil] { nil.send(1); ADD_FAILURE() << "nil send returned"; });
    weft::spawn([nil] { (void)nil.recv(); ADD_FAILURE() << "nil recv returned"; });
    weft::this_fiber::sleep_for(2ms);
  }, opts());
}

TEST_P(ChanBasic, PlainThreadsAndFibers) {
  // A plain std::thread may use a channel too (it blocks on a futex).
  weft::run([] {
    Chan<int> c(0), back(0);
    std::thread t([c, back] {
      for (int i = 0; i < 200; i++) back.send(*c.recv() + 1);
    });
    for (int i = 0; i < 200; i++) {
      c.send(i);
      EXPECT_EQ(*back.recv(), i + 1);
    }
    t.join();
  }, opts());
}

// Shutdown with fibers parked in recv, send and select: they unwind (their
// destructors run) and run() returns.
TEST_P(ChanBasic, ShutdownUnwindsParkedFibers) {
  static std::atomic<int> unwound{0};
  unwound = 0;
  struct Guard {
    ~Guard() { unwound++; }
  };
  Chan<int> keep;
  weft::run([&keep] {
    Chan<int> c(0), d(1);
    d.send(0);  // full: senders park
    keep = c;
    for (int i = 0; i < 20; i++) {
      weft::spawn([c] { Guard g; (void)c.recv(); });
      weft::spawn([d] { Guard g; d.send(1); });
      weft::spawn([c, d] { Guard g; weft::select(weft::recv(c), weft::send(d, 5), weft::after(1h)); });
      weft::spawn([c, d] { Guard g; weft::select(weft::recv(c), weft::send(d, 5)); });
    }
    weft::this_fiber::sleep_for(5ms);
  }, opts());
  EXPECT_EQ(unwound.load(), 80);
  // Every waiter unlinked itself: the channel is usable from a new runtime.
  weft::run([&keep] {
    auto h = weft::go([keep] { return *keep.recv(); });
    keep.send(3);
    EXPECT_EQ(h.join(), 3);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, ChanBasic, chantest::kWorkers, chantest::workers_name);

}  // namespace
