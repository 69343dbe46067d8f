// cancel_net_test.cpp: cancellation (API.md "Cancellation and structured
// concurrency") reaching fibers parked in socket calls: TcpStream read and
// write, TcpListener accept, on loopback. A cancelled call throws
// weft::Cancelled and did nothing: the socket stays usable and no byte is
// lost or invented (a cancelled read consumed none, a cancelled write wrote
// only what its earlier calls reported). Every socket has a 10 s deadline
// as a failure bound; verdicts never depend on timing.
#include <gtest/gtest.h>

#include "net_util.hpp"
#include <weft/weft.hpp>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using weft::Clock;
using weft::net::TcpListener;
using weft::net::TcpStream;

constexpr auto kBound = 10s;

using net_test::connect_pair;
using net_test::Pair;

// Reads exactly n bytes (the stream's deadline bounds it).
std::string read_n(TcpStream& t, std::size_t n) {
  std::string got(n, '\0');
  std::size_t k = 0;
  while (k < n) {
    std::size_t r = t.read({got.data() + k, n - k});
    if (r == 0) {
      ADD_FAILURE() << "EOF after " << k << " of " << n << " bytes";
      got.resize(k);
      return got;
    }
    k += r;
  }
  return got;
}

using net_test::wait_parked;

class CancelNet : public net_test::WorkersParam {};

// A reader parked in read() with nothing to read: cancelled, it throws
// Cancelled. Its waiter is gone: a later read on the same stream gets the
// bytes written after the cancel, all of them.
TEST_P(CancelNet, ParkedReadThrowsAndStreamStaysUsable) {
  weft::run([] {
    auto ln = TcpListener::listen("127.0.0.1:0");
    auto p = connect_pair(ln);
    auto r = weft::go([&p] {
      char buf[16];
      return p.c.read(buf);
    });
    wait_parked(1);
    r.cancel();
    EXPECT_THROW(r.join(), weft::Cancelled);
    p.s.write_all("after the cancel");
    EXPECT_EQ(read_n(p.c, 16), "after the cancel");
    // And another fiber parking in read afterwards is woken by data.
    auto r2 = weft::go([&p] { return read_n(p.c, 5); });
    wait_parked(1);
    p.s.write_all("again");
    EXPECT_EQ(r2.join(), "again");
  }, opts());
}

// A cancelled fiber's read throws even when data is ready, and consumes
// none: the bytes are still there for the next reader.
TEST_P(CancelNet, ReadWithDataReadyThrowsAndConsumesNothing) {
  weft::run([] {
    auto ln = TcpListener::listen("127.0.0.1:0");
    auto p = connect_pair(ln);
    p.s.write_all("abc");
    std::atomic<bool> go_on{false};
    auto r = weft::go([&] {
      while (!go_on.load()) weft::this_fiber::yield();  // not a cancellation point
      char buf[8];
      return p.c.read(buf);
    });
    r.cancel();
    go_on = true;
    EXPECT_THROW(r.join(), weft::Cancelled);
    EXPECT_EQ(read_n(p.c, 3), "abc");
  }, opts());
}

// A writer parked in write() (the peer does not read, the buffers are
// full): cancelled, it throws. The bytes on the wire are exactly those its
// earlier write() calls reported: the peer reads that many, then the bytes
// a later write on the same stream sends.
TEST_P(CancelNet, ParkedWriteThrowsAndWritesNothingUnreported) {
  weft::run([] {
    auto ln = TcpListener::listen("127.0.0.1:0");
    auto p = connect_pair(ln);
    std::atomic<std::size_t> written{0};
    auto w = weft::go([&] {
      std::string chunk(64 * 1024, 'x');
      for (;;) written += p.c.write({chunk.data(), chunk.size()});
    });
    wait_parked(1);  // the send and receive buffers are full
    w.cancel();
    EXPECT_THROW(w.join(), weft::Cancelled);
    std::size_t total = written.load();
    ASSERT_GT(total, 0u);
    // The peer drains concurrently (the buffers are full: "END" cannot go
    // out before it reads).
    auto reader = weft::go([&p, total] { return read_n(p.s, total + 3); });
    p.c.write_all("END");
    std::string got = reader.join();
    ASSERT_EQ(got.size(), total + 3);
    EXPECT_EQ(got.find_first_not_of('x'), total) << "bytes lost or invented around the cancelled write";
    EXPECT_EQ(got.substr(total), "END");
  }, opts());
}

// An acceptor parked in accept(): cancelled, it throws; the listener stays
// usable and the next connection is accepted (by main, then by a new
// parked acceptor).
TEST_P(CancelNet, ParkedAcceptThrowsAndListenerStaysUsable) {
  weft::run([] {
    auto ln = TcpListener::listen("127.0.0.1:0");
    auto a = weft::go([&ln] { return ln.accept(); });
    wait_parked(1);
    a.cancel();
    EXPECT_THROW(a.join(), weft::Cancelled);
    auto p = connect_pair(ln);
    p.c.write_all("hi");
    EXPECT_EQ(read_n(p.s, 2), "hi");
    auto a2 = weft::go([&ln] { return ln.accept(); });
    wait_parked(1);
    auto c = TcpStream::connect(ln.local_addr());
    TcpStream s = a2.join();
    s.set_deadline(Clock::now() + kBound);
    c.write_all("ok");
    EXPECT_EQ(read_n(s, 2), "ok");
  }, opts());
}

// Several readers and writers parked on several streams, all cancelled by
// a plain thread at once: each ends with Cancelled and every stream still
// carries data both ways.
TEST_P(CancelNet, ManyParkedSocketFibersCancelledFromPlainThread) {
  weft::run([] {
    auto ln = TcpListener::listen("127.0.0.1:0");
    const int n = 8;
    std::vector<Pair> ps;
    for (int i = 0; i < n; i++) ps.push_back(connect_pair(ln));
    std::vector<weft::JoinHandle<std::size_t>> hs;
    for (int i = 0; i < n; i++) {
      hs.push_back(weft::go([&ps, i] {
        char buf[4];
        return ps[i].c.read(buf);
      }));
      hs.push_back(weft::go([&ps, i] {
        char buf[4];
        return ps[i].s.read(buf);
      }));
    }
    wait_parked(2 * n);
    std::thread t([&hs] {
      for (auto& h : hs) h.cancel();
    });
    t.join();
    for (auto& h : hs) EXPECT_THROW(h.join(), weft::Cancelled);
    for (auto& p : ps) {
      p.c.write_all("ping");
      EXPECT_EQ(read_n(p.s, 4), "ping");
      p.s.write_all("pong");
      EXPECT_EQ(read_n(p.c, 4), "pong");
    }
  }, opts());
}

// Per round: a reader parks in read() on one stream, the peer writes one
// byte after a random delay, and main cancels the reader at a random
// moment. Either the read returned that byte, or it threw and the byte is
// still in the stream (main's read gets it): no byte lost or read twice.
TEST_P(CancelNet, StressCancelVersusDataArriving) {
  const int rounds = net_test::scaled(300, 20);
  weft::run([rounds] {
    auto ln = TcpListener::listen("127.0.0.1:0");
    auto p = connect_pair(ln);
    std::mt19937 rng(7);
    int by_reader = 0, by_main = 0;
    for (int i = 0; i < rounds; i++) {
      for (TcpStream* t : {&p.c, &p.s}) t->set_deadline(Clock::now() + kBound);  // per round
      const char byte = static_cast<char>('a' + i % 26);
      unsigned write_spin = rng() % 20000, cancel_spin = rng() % 20000;
      auto r = weft::go([&p] {
        char c = 0;
        std::size_t n = p.c.read({&c, 1});
        return n == 1 ? c : '\0';
      });
      auto w = weft::go([&p, byte, write_spin] {
        for (unsigned k = 0; k < write_spin; k++) asm volatile("" ::: "memory");
        p.s.write_all(std::string(1, byte));
      });
      for (unsigned k = 0; k < cancel_spin; k++) asm volatile("" ::: "memory");
      r.cancel();
      w.join();
      try {
        char got = r.join();
        ASSERT_EQ(got, byte) << "round " << i;
        by_reader++;
      } catch (const weft::Cancelled&) {
        ASSERT_EQ(read_n(p.c, 1), std::string(1, byte)) << "a byte was lost (round " << i << ")";
        by_main++;
      }
    }
    EXPECT_EQ(by_reader + by_main, rounds);
    // Nothing extra is left in the stream: the next byte read is the next one written.
    p.s.write_all("Z");
    EXPECT_EQ(read_n(p.c, 1), "Z");
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(CancelNet, CancelNet, ::testing::Values(1u, 2u), [](const auto& info) {
  return std::string("w") + std::to_string(info.param);
});

}  // namespace
