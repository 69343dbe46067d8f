// chan_bench.cpp: channel and select benchmarks (issue "Channels and
// select"), public headers only. Each benchmark runs one whole workload per
// iteration (Iterations(1)) and reports a counter named after its unit; the
// Go twins live in bench/go/chan and bench/compare.py runs both side by side
// (pairs registered in bench/pairs_chan.json).
//
//   pingpong/workers:{1,2}  two fibers bounce an int over two unbuffered
//                           channels, 1,000,000 round trips: ns_per_roundtrip
//   mpmc/workers:2          cap-1024 channel, 4 producers x 4 consumers,
//                           10,000,000 ints: ns_per_item
//   select/workers:2        one consumer selecting over 4 unbuffered channels
//                           fed by 4 producers, 4,000,000 messages: ns_per_msg
//   parked_chan/workers:2   1,000,000 fibers each parked in recv on its own
//                           channel: bytes_per_fiber = (VmRSS+VmPTE delta)/fiber
//   pingpong/condvar        baseline: the same ping-pong over weft
//                           Mutex+CondVar (what a channel-less handoff costs)
#include <benchmark/benchmark.h>
#include <weft/weft.hpp>

#include "bench_util.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

namespace {

using bench::Clock;
using bench::resident_kib;
using bench::seconds_since;
using bench::workers;

// ---- pingpong ------------------------------------------------------------------

constexpr int kRoundTrips = 1'000'000;

void BM_pingpong(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          weft::Chan<int> ping(0), pong(0);
          auto peer = weft::go([ping, pong] {
            for (int i = 0; i < kRoundTrips; i++) pong.send(*ping.recv() + 1);
          });
          auto t0 = Clock::now();
          int v = 0;
          for (int i = 0; i < kRoundTrips; i++) {
            ping.send(v);
            v = *pong.recv();
          }
          double s = seconds_since(t0);
          peer.join();
          benchmark::DoNotOptimize(v);
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_roundtrip"] = secs * 1e9 / kRoundTrips;
  }
}
BENCHMARK(BM_pingpong)->Name("pingpong")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_pingpong_condvar(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          weft::Mutex m;
          weft::CondVar cv;
          int turn = 0;  // 0: main's, 1: peer's
          auto peer = weft::go([&] {
            for (int i = 0; i < kRoundTrips; i++) {
              std::unique_lock<weft::Mutex> l(m);
              cv.wait(l, [&] { return turn == 1; });
              turn = 0;
              cv.notify_one();
            }
          });
          auto t0 = Clock::now();
          for (int i = 0; i < kRoundTrips; i++) {
            std::unique_lock<weft::Mutex> l(m);
            turn = 1;
            cv.notify_one();
            cv.wait(l, [&] { return turn == 0; });
          }
          double s = seconds_since(t0);
          peer.join();
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_roundtrip"] = secs * 1e9 / kRoundTrips;
  }
}
BENCHMARK(BM_pingpong_condvar)->Name("pingpong/condvar")->Arg(1)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- mpmc ----------------------------------------------------------------------

constexpr long kMpmcItems = 10'000'000;

void BM_mpmc(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          constexpr int P = 4, C = 4;
          weft::Chan<long> ch(1024);
          weft::WaitGroup prod, cons;
          std::atomic<long> sum{0};
          auto t0 = Clock::now();
          for (int c = 0; c < C; c++) {
            cons.add();
            weft::spawn([ch, &cons, &sum] {
              long s = 0;
              for (long v : ch) s += v;
              sum += s;
              cons.done();
            });
          }
          for (int p = 0; p < P; p++) {
            prod.add();
            weft::spawn([ch, &prod] {
              for (long i = 0; i < kMpmcItems / P; i++) ch.send(i);
              prod.done();
            });
          }
          prod.wait();
          ch.close();
          cons.wait();
          double s = seconds_since(t0);
          if (sum.load() != P * ((kMpmcItems / P) * (kMpmcItems / P - 1) / 2)) std::abort();
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_item"] = secs * 1e9 / kMpmcItems;
  }
}
BENCHMARK(BM_mpmc)->Name("mpmc")->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- select --------------------------------------------------------------------

constexpr int kSelectMsgs = 4'000'000;

void BM_select(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          weft::Chan<int> cs[4] = {weft::Chan<int>(0), weft::Chan<int>(0), weft::Chan<int>(0), weft::Chan<int>(0)};
          auto t0 = Clock::now();
          for (auto& c : cs)
            weft::spawn([c] {
              for (int i = 0; i < kSelectMsgs / 4; i++) c.send(i);
            });
          long sum = 0;
          auto add = [&](std::optional<int> v) { sum += *v; };
          for (int i = 0; i < kSelectMsgs; i++)
            weft::select(weft::recv(cs[0], add), weft::recv(cs[1], add), weft::recv(cs[2], add), weft::recv(cs[3], add));
          double s = seconds_since(t0);
          benchmark::DoNotOptimize(sum);
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_msg"] = secs * 1e9 / kSelectMsgs;
  }
}
BENCHMARK(BM_select)->Name("select")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- parked_chan ---------------------------------------------------------------

constexpr int kParked = 1'000'000;

void BM_parked_chan(benchmark::State& st) {
  for (auto _ : st) {
    struct R {
      double spawn_secs;
      double bytes;
    };
    // Nobody ever sends: the fibers are still parked when main returns, and
    // run() unwinds them.
    R r = weft::run(
        [] {
          weft::WaitGroup started;
          long before = resident_kib();
          auto t0 = Clock::now();
          started.add(kParked);
          for (int i = 0; i < kParked; i++)
            weft::spawn([&started] {
              weft::Chan<int> own(0);
              started.done();
              (void)own.recv();
            });
          started.wait();
          weft::this_fiber::sleep_for(std::chrono::milliseconds(10));  // the last ones reach recv
          return R{seconds_since(t0), (resident_kib() - before) * 1024.0 / kParked};
        },
        workers(st));
    st.SetIterationTime(r.spawn_secs);
    st.counters["bytes_per_fiber"] = r.bytes;
    st.counters["spawn_s"] = r.spawn_secs;
  }
}
BENCHMARK(BM_parked_chan)->Name("parked_chan")->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
