// chan_stress_test.cpp: 4 producers x 4 consumers x 1,000,000 values
// (scaled by WEFT_STRESS_SCALE) over unbuffered and buffered channels, on
// 1, 2 and 4 workers: every value arrives exactly once, and values of one
// producer reach any one consumer in the order they were sent (FIFO).
// Plus a select-based variant and close racing with parked senders.
#include <memory>
#include <vector>

#include "test_util.hpp"

using weft::Chan;
using weft::recv;
using weft::select;
using weft::send;

namespace {

struct StressParam {
  unsigned workers;
  std::size_t cap;
};

class ChanStress : public ::testing::TestWithParam<StressParam> {};

constexpr int kProducers = 4, kConsumers = 4;

// Values encode (producer, sequence): v = seq * kProducers + producer.
void check_exactly_once(const std::vector<std::vector<std::uint32_t>>& got, std::size_t per) {
  std::vector<std::uint8_t> seen(per * kProducers, 0);
  std::size_t total = 0;
  for (const auto& g : got) {
    std::int64_t last[kProducers];
    for (auto& l : last) l = -1;
    for (std::uint32_t v : g) {
      ASSERT_LT(v, seen.size());
      ASSERT_EQ(seen[v], 0) << "value " << v << " received twice";
      seen[v] = 1;
      std::int64_t seq = v / kProducers;
      ASSERT_GT(seq, last[v % kProducers]) << "out of order from producer " << v % kProducers;
      last[v % kProducers] = seq;
    }
    total += g.size();
  }
  EXPECT_EQ(total, per * kProducers);
}

TEST_P(ChanStress, ProducersConsumersExactlyOnce) {
  const StressParam p = GetParam();
  static constexpr std::size_t per = chantest::scaled(1000000, 1000);
  std::vector<std::vector<std::uint32_t>> got(kConsumers);
  weft::run([&] {
    Chan<std::uint32_t> ch(p.cap);
    weft::WaitGroup prod;
    std::vector<weft::JoinHandle<void>> cons;
    for (int c = 0; c < kConsumers; c++) {
      got[c].reserve(per * kProducers / 2);
      cons.push_back(weft::go([ch, &v = got[c]] {
        for (std::uint32_t x : ch) v.push_back(x);
      }));
    }
    for (int i = 0; i < kProducers; i++) {
      prod.add();
      weft::spawn([ch, i, &prod] {
        for (std::size_t s = 0; s < per; s++) ch.send(static_cast<std::uint32_t>(s * kProducers + i));
        prod.done();
      });
    }
    prod.wait();
    ch.close();
    for (auto& h : cons) h.join();
  }, {.workers = p.workers});
  check_exactly_once(got, per);
}

// The same traffic through selects: producers offer each value on two
// channels, consumers take from either (so ordering is only per channel and
// not checked here), with one consumer using a non-blocking poll.
TEST_P(ChanStress, SelectProducersConsumersExactlyOnce) {
  const StressParam p = GetParam();
  static constexpr std::size_t per = chantest::scaled(200000, 500);
  std::vector<std::uint8_t> seen(per * kProducers, 0);
  std::atomic<std::size_t> dups{0}, total{0};
  weft::run([&] {
    Chan<std::uint32_t> a(p.cap), b(p.cap);
    weft::WaitGroup prod, cons;
    for (int c = 0; c < kConsumers; c++) {
      cons.add();
      weft::spawn([a, b, c, &seen, &dups, &total, &cons] {
        bool a_open = true, b_open = true;
        Chan<std::uint32_t> ca = a, cb = b;
        while (a_open || b_open) {
          std::optional<std::uint32_t> v;
          bool closed_a = false, closed_b = false;
          auto on_a = [&](std::optional<std::uint32_t> x) { if (x) v = x; else closed_a = true; };
          auto on_b = [&](std::optional<std::uint32_t> x) { if (x) v = x; else closed_b = true; };
          if (c == 0) {
            if (select(recv(ca, on_a), recv(cb, on_b), weft::otherwise()) == 2) {
              weft::this_fiber::yield();
              continue;
            }
          } else {
            select(recv(ca, on_a), recv(cb, on_b));
          }
          if (closed_a) { a_open = false; ca = Chan<std::uint32_t>(); }  // nil: disable the case
          if (closed_b) { b_open = false; cb = Chan<std::uint32_t>(); }
          if (v) {
            // Distinct fibers may run on distinct workers: the byte is
            // written by exactly one consumer if the channel is correct.
            if (std::atomic_ref<std::uint8_t>(seen[*v]).fetch_add(1, std::memory_order_relaxed) != 0) dups++;
            total.fetch_add(1, std::memory_order_relaxed);
          }
        }
        cons.done();
      });
    }
    for (int i = 0; i < kProducers; i++) {
      prod.add();
      weft::spawn([a, b, i, &prod] {
        for (std::size_t s = 0; s < per; s++) select(send(a, static_cast<std::uint32_t>(s * kProducers + i)),
                                                     send(b, static_cast<std::uint32_t>(s * kProducers + i)));
        prod.done();
      });
    }
    prod.wait();
    a.close();
    b.close();
    cons.wait();
  }, {.workers = p.workers});
  EXPECT_EQ(dups.load(), 0u);
  EXPECT_EQ(total.load(), per * kProducers);
}

// Close racing with many parked and arriving senders and receivers: every
// value that a send reported as delivered is received, and every other send
// threw ChanClosed.
TEST_P(ChanStress, CloseRacesWithSendersAndReceivers) {
  const StressParam p = GetParam();
  const int rounds = static_cast<int>(chantest::scaled(200, 20));
  weft::run([&] {
    for (int r = 0; r < rounds; r++) {
      Chan<int> ch(p.cap ? 4 : 0);  // a small ring: close meets parked senders
      std::atomic<long> delivered{0}, received{0}, refused{0};
      weft::WaitGroup wg;
      for (int i = 0; i < 8; i++) {
        wg.add(2);
        weft::spawn([&, ch] {
          try {
            for (;;) {
              ch.send(1);
              delivered++;
            }
          } catch (const weft::ChanClosed&) {
            refused++;
          }
          wg.done();
        });
        weft::spawn([&, ch] {
          for (int v : ch) received += v;
          wg.done();
        });
      }
      for (int i = 0; i < 1 + r % 5; i++) weft::this_fiber::yield();
      ch.close();
      wg.wait();
      EXPECT_EQ(delivered.load(), received.load());
      EXPECT_EQ(refused.load(), 8);
    }
  }, {.workers = p.workers});
}

std::vector<StressParam> params() {
  std::vector<StressParam> v;
  for (unsigned w : {1u, 2u, 4u})
    for (std::size_t cap : {std::size_t{0}, std::size_t{1024}}) v.push_back({w, cap});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Stress, ChanStress, ::testing::ValuesIn(params()),
                         [](const ::testing::TestParamInfo<StressParam>& i) {
                           std::string s = "w";
                           s += std::to_string(i.param.workers);
                           s += i.param.cap ? "_buffered" : "_unbuffered";
                           return s;
                         });

}  // namespace
