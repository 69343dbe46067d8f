// chan_go_test.cpp: the semantics of Go's own channel tests (test/chan/*.go
// and runtime/chan_test.go), re-expressed for weft. Each test names the Go
// test it follows; the code is our own.
#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

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

class GoChan : public chantest::WorkersTest {};

// fifo.go AsynchFifo: a buffered channel keeps order.
TEST_P(GoChan, AsynchFifo) {
  weft::run([] {
    const int N = 10;
    Chan<int> ch(N);
    for (int i = 0; i < N; i++) ch.send(i);
    for (int i = 0; i < N; i++) EXPECT_EQ(*ch.recv(), i);
  }, opts());
}

// fifo.go SynchFifo: a chain of fibers, each sending once it was told to,
// and telling the next; the values arrive in chain order.
TEST_P(GoChan, SynchFifo) {
  weft::run([] {
    const int N = 300;
    Chan<int> ch(0);
    Chan<int> in(0), start = in;
    for (int i = 0; i < N; i++) {
      Chan<int> out(0);
      weft::spawn([ch, in, out, i] {
        (void)in.recv();
        ch.send(i);
        out.send(0);
      });
      in = out;
    }
    start.send(0);
    for (int i = 0; i < N; i++) EXPECT_EQ(*ch.recv(), i);
    (void)in.recv();
  }, opts());
}

// goroutines.go: a long chain of fibers, each passing the value on plus one.
TEST_P(GoChan, GoroutineChain) {
  weft::run([] {
    const int N = static_cast<int>(chantest::scaled(5000, 500));
    Chan<int> left(0), first = left;
    for (int i = 0; i < N; i++) {
      Chan<int> right(0);
      weft::spawn([left, right] { right.send(*left.recv() + 1); });
      left = right;
    }
    first.send(0);
    EXPECT_EQ(*left.recv(), N);
  }, opts());
}

// nonblock.go: non-blocking operations succeed exactly when the other side
// is ready, for unbuffered and buffered channels.
TEST_P(GoChan, Nonblock) {
  weft::run([] {
    for (std::size_t cap : {0u, 1u, 8u}) {
      Chan<int> c(cap);
      EXPECT_FALSE(c.try_recv());
      if (cap == 0) {
        int v = 1;
        EXPECT_FALSE(c.try_send(v));
      }
      // A parked receiver makes try_send succeed (after at most a few tries).
      auto r = weft::go([c] { return *c.recv(); });
      int v = 123;
      for (int tries = 0; !c.try_send(v); tries++) {
        ASSERT_LT(tries, 1000000);
        weft::this_fiber::yield();
      }
      EXPECT_EQ(r.join(), 123);
      // A parked sender makes try_recv succeed.
      auto s = weft::go([c] { c.send(456); });
      std::optional<int> got;
      for (int tries = 0; !(got = c.try_recv()); tries++) {
        ASSERT_LT(tries, 1000000);
        weft::this_fiber::yield();
      }
      EXPECT_EQ(*got, 456);
      s.join();
      // The same through select with otherwise.
      auto r2 = weft::go([c] { return *c.recv(); });
      while (select(send(c, 7), otherwise()) != 0) weft::this_fiber::yield();
      EXPECT_EQ(r2.join(), 7);
    }
  }, opts());
}

// doubleselect.go: senders select over four channels, four muxes forward
// into one channel; every value arrives exactly once.
TEST_P(GoChan, DoubleSelect) {
  weft::run([] {
    const int N = static_cast<int>(chantest::scaled(20000, 2000));
    Chan<int> c1(0), c2(0), c3(0), c4(0), cmux(0);
    weft::spawn([=] {
      for (int i = 0; i < N; i++) select(send(c1, i), send(c2, i), send(c3, i), send(c4, i));
      c1.close();
      c2.close();
      c3.close();
      c4.close();
    });
    weft::WaitGroup wg;
    for (const Chan<int>& c : {c1, c2, c3, c4}) {
      wg.add();
      weft::spawn([&wg, c, cmux] {
        for (int v : c) cmux.send(v);
        wg.done();
      });
    }
    weft::spawn([&wg, cmux] {
      wg.wait();
      cmux.close();
    });
    std::vector<char> seen(static_cast<std::size_t>(N), 0);
    int n = 0;
    for (int v : cmux) {
      ASSERT_EQ(seen[static_cast<std::size_t>(v)], 0) << "duplicate " << v;
      seen[static_cast<std::size_t>(v)] = 1;
      n++;
    }
    EXPECT_EQ(n, N);
  }, opts());
}

// The concurrent prime sieve (Go's classic, test/chan/sieve1.go).
TEST_P(GoChan, Sieve) {
  weft::run([] {
    Chan<int> ch(0);
    weft::spawn([ch] {
      for (int i = 2;; i++) ch.send(i);
    });
    std::vector<int> primes;
    for (int i = 0; i < 100; i++) {
      int p = *ch.recv();
      primes.push_back(p);
      Chan<int> next(0);
      weft::spawn([ch, next, p] {
        for (;;) {
          int v = *ch.recv();
          if (v % p != 0) next.send(v);
        }
      });
      ch = next;
    }
    EXPECT_EQ(primes.front(), 2);
    EXPECT_EQ(primes[9], 29);
    EXPECT_EQ(primes.back(), 541);
    // The filter fibers are parked forever; shutdown unwinds them.
  }, opts());
}

// Zero-size (empty) values, buffered and unbuffered, as Go's struct{}.
TEST_P(GoChan, ZeroSizeValues) {
  struct Empty {};
  weft::run([] {
    for (std::size_t cap : {0u, 1u, 100u}) {
      Chan<Empty> c(cap);
      const int N = 1000;
      auto h = weft::go([c] {
        int n = 0;
        for (Empty e : c) {
          (void)e;
          n++;
        }
        return n;
      });
      for (int i = 0; i < N; i++) c.send(Empty{});
      c.close();
      EXPECT_EQ(h.join(), N);
    }
  }, opts());
}

// chan_test.go TestChan: per capacity, a receive blocks on empty, a send
// blocks on full, close drains, FIFO from one sender, and many senders and
// receivers move every value exactly once.
TEST_P(GoChan, ChanTestMatrix) {
  weft::run([] {
    for (std::size_t cap : {0u, 1u, 2u, 7u, 64u}) {
      {  // recv blocks on empty
        Chan<int> c(cap);
        std::atomic<bool> got{false};
        auto h = weft::go([c, &got] {
          (void)c.recv();
          got = true;
        });
        weft::this_fiber::sleep_for(1ms);
        EXPECT_FALSE(got.load());
        c.send(0);
        h.join();
        EXPECT_TRUE(got.load());
      }
      {  // send blocks on full
        Chan<int> c(cap);
        for (std::size_t i = 0; i < cap; i++) c.send(static_cast<int>(i));
        std::atomic<bool> sent{false};
        auto h = weft::go([c, &sent] {
          c.send(0);
          sent = true;
        });
        weft::this_fiber::sleep_for(1ms);
        EXPECT_FALSE(sent.load());
        (void)c.recv();
        h.join();
        EXPECT_TRUE(sent.load());
      }
      {  // close: buffered values first, then nullopt, repeatedly
        Chan<int> c(cap);
        for (std::size_t i = 0; i < cap; i++) c.send(static_cast<int>(i));
        c.close();
        for (std::size_t i = 0; i < cap; i++) EXPECT_EQ(*c.recv(), static_cast<int>(i));
        for (int i = 0; i < 3; i++) EXPECT_FALSE(c.recv());
        EXPECT_THROW(c.send(1), ChanClosed);
      }
      {  // FIFO from one sender
        Chan<int> c(cap);
        weft::spawn([c] {
          for (int i = 0; i < 1000; i++) c.send(i);
        });
        for (int i = 0; i < 1000; i++) ASSERT_EQ(*c.recv(), i);
      }
      {  // many to many, sum and count
        Chan<int> c(cap);
        const int P = 4, L = 500;
        Chan<long> sums(P);
        for (int p = 0; p < P; p++)
          weft::spawn([c] {
            for (int i = 0; i < L; i++) c.send(i);
          });
        for (int p = 0; p < P; p++)
          weft::spawn([c, sums] {
            long s = 0;
            for (int i = 0; i < L; i++) s += *c.recv();
            sums.send(s);
          });
        long total = 0;
        for (int p = 0; p < P; p++) total += *sums.recv();
        EXPECT_EQ(total, static_cast<long>(P) * L * (L - 1) / 2);
      }
    }
  }, opts());
}

// chan_test.go TestNonblockRecvRace: a buffered value is never missed by a
// non-blocking receive racing with close.
TEST_P(GoChan, NonblockRecvRace) {
  weft::run([] {
    const int N = static_cast<int>(chantest::scaled(1000, 100));
    for (int i = 0; i < N; i++) {
      Chan<int> c(1);
      c.send(1);
      auto h = weft::go([c] { return c.try_recv().has_value(); });
      c.close();
      EXPECT_TRUE(h.join());
    }
  }, opts());
}

// chan_test.go TestSelfSelect: fibers each select to send on or receive
// from one channel; on an unbuffered channel no select ever pairs with
// itself (it would have to be parked on both ends).
TEST_P(GoChan, SelfSelect) {
  weft::run([] {
    for (std::size_t cap : {0u, 10u}) {
      Chan<int> c(cap);
      weft::WaitGroup wg;
      std::atomic<int> self{0};
      for (int p = 0; p < 2; p++) {
        wg.add();
        weft::spawn([&, p, c] {
          for (int i = 0; i < 1000; i++) {
            if (p == 0 || i % 2 == 0) {
              select(send(c, p), recv(c, [&](std::optional<int> v) {
                       if (cap == 0 && v && *v == p) self++;
                     }));
            } else {
              select(recv(c, [&](std::optional<int> v) {
                       if (cap == 0 && v && *v == p) self++;
                     }),
                     send(c, p));
            }
          }
          wg.done();
        });
      }
      wg.wait();
      EXPECT_EQ(self.load(), 0);
    }
  }, opts());
}

// chan_test.go TestPseudoRandomSend: two send cases on one channel are both
// chosen, in roughly equal shares.
TEST_P(GoChan, PseudoRandomSend) {
  weft::run([] {
    for (std::size_t cap : {0u, 100u}) {
      Chan<int> c(cap);
      const int N = 100;
      auto h = weft::go([c] {
        int ones = 0;
        for (int i = 0; i < N; i++) ones += *c.recv();
        return ones;
      });
      for (int i = 0; i < N; i++) select(send(c, 0), send(c, 1));
      int ones = h.join();
      EXPECT_GT(ones, N / 10);
      EXPECT_LT(ones, N - N / 10);
    }
  }, opts());
}

// chan_test.go TestSelectFairness: with two cases always ready and others
// never, the two share the wins; the never-ready ones get none.
TEST_P(GoChan, SelectFairness) {
  weft::run([] {
    const int N = 10000;
    Chan<int> c1(N), c2(N), c3(0), nil;
    for (int i = 0; i < N; i++) {
      c1.send(1);
      c2.send(2);
    }
    int cnt[5] = {};
    for (int i = 0; i < N; i++) cnt[select(recv(c1), recv(c2), recv(c3), recv(nil), send(nil, 0))]++;
    // Binomial(N, 1/2): sd = 50; 8 sd is far beyond any fair run.
    EXPECT_LT(std::abs(cnt[0] - N / 2), 400) << cnt[0] << " vs " << cnt[1];
    EXPECT_EQ(cnt[2] + cnt[3] + cnt[4], 0);
  }, opts());
}

// Receivers parked on a channel are served in the order they parked.
TEST_P(GoChan, ParkedReceiversServedFifo) {
  weft::run([] {
    Chan<int> c(0);
    Chan<std::pair<int, int>> out(16);
    for (int i = 0; i < 8; i++) {
      weft::spawn([c, out, i] { out.send({i, *c.recv()}); });
      weft::this_fiber::sleep_for(200us);  // i parks before i + 1
    }
    for (int i = 0; i < 8; i++) c.send(i);
    for (int i = 0; i < 8; i++) {
      auto [who, v] = *out.recv();
      EXPECT_EQ(who, v);
    }
  }, opts());
}

// chan_test.go TestMultiConsumer: a work channel feeding several consumers;
// every item processed once, results summed.
TEST_P(GoChan, MultiConsumer) {
  weft::run([] {
    const int nwork = 23;
    int niter = static_cast<int>(chantest::scaled(27100, 2000));
    Chan<int> q(nwork * 3), r(nwork * 3);
    weft::WaitGroup wg;
    for (int i = 0; i < nwork; i++) {
      wg.add();
      weft::spawn([q, r, &wg] {
        for (int v : q) r.send(v % 7 == 0 ? 1 : v);
        wg.done();
      });
    }
    long expect = 0;
    weft::spawn([q, niter] {
      for (int i = 0; i < niter; i++) q.send(i);
      q.close();
    });
    for (int i = 0; i < niter; i++) expect += i % 7 == 0 ? 1 : i;
    weft::spawn([r, &wg] {
      wg.wait();
      r.close();
    });
    long sum = 0;
    int n = 0;
    for (int v : r) {
      sum += v;
      n++;
    }
    EXPECT_EQ(n, niter);
    EXPECT_EQ(sum, expect);
  }, opts());
}

// Power series (powser1.go), small: multiply two series given as streams of
// coefficients and check the product of 1/(1-x) with itself is 1,2,3,...
TEST_P(GoChan, PowerSeriesProduct) {
  weft::run([] {
    const int K = 20;
    auto ones = [] {
      Chan<long> c(0);
      weft::spawn([c] {
        for (;;) c.send(1);
      });
      return c;
    };
    Chan<long> a = ones(), b = ones(), prod(0);
    // Cauchy product, keeping the prefixes seen so far.
    weft::spawn([a, b, prod] {
      std::vector<long> as, bs;
      for (int n = 0;; n++) {
        as.push_back(*a.recv());
        bs.push_back(*b.recv());
        long s = 0;
        for (int i = 0; i <= n; i++) s += as[static_cast<std::size_t>(i)] * bs[static_cast<std::size_t>(n - i)];
        prod.send(s);
      }
    });
    for (long n = 1; n <= K; n++) EXPECT_EQ(*prod.recv(), n);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, GoChan, chantest::kWorkers, chantest::workers_name);

}  // namespace
