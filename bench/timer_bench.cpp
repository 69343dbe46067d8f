// timer_bench.cpp: Timer/Ticker benchmarks (issue 11, "Ticker at 1 ms with
// 10,000 tickers"), public headers only. Each benchmark runs one whole
// workload per iteration (Iterations(1)); the Go twin is bench/go/timer and
// bench/compare.py runs both side by side (pairs in bench/pairs_timer.json).
//
//   ticker/workers:{1,2}  10,000 fibers, each receiving from its own 1 ms
//                         Ticker. After a 200 ms warm-up, a 1.5 s window:
//                         cpu_ns_per_tick = process CPU time (user + sys,
//                         getrusage) / ticks received in the window;
//                         ticks_per_s is the rate received (ticks for a
//                         receiver that has not taken the previous one yet
//                         are dropped, in Go too, so a saturated machine
//                         receives fewer than 10,000,000 a second).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <weft/weft.hpp>

#include "bench_util.hpp"

#include <atomic>
#include <chrono>
#include <memory>

namespace {

using namespace std::chrono_literals;
using bench::Clock;
using bench::workers;

constexpr int kTickers = 10'000;
constexpr auto kWarmup = 200ms;
constexpr auto kWindow = 1500ms;

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return tv(u.ru_utime) + tv(u.ru_stime);
}

struct alignas(64) Count {
  std::atomic<std::uint64_t> n{0};  // written by its fiber only
};

void BM_ticker(benchmark::State& st) {
  for (auto _ : st) {
    struct Result {
      double cpu, wall;
      std::uint64_t ticks;
    };
    Result res = weft::run(
        [] {
          auto counts = std::make_unique<Count[]>(kTickers);
          std::atomic<bool> stop{false};
          weft::WaitGroup wg;
          weft::Chan<int> start(0);
          // All fibers first, then the tickers (as the Go twin, whose
          // spawning loop would be starved once 10,000 tickers run).
          for (int i = 0; i < kTickers; i++) {
            wg.add(1);
            weft::spawn([&, i, start] {
              start.recv();
              weft::Ticker t(1ms);
              std::atomic<std::uint64_t>& n = counts[i].n;
              while (!stop.load(std::memory_order_relaxed)) {
                t.chan().recv();
                n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
              }
              wg.done();
            });
          }
          auto sum = [&] {
            std::uint64_t s = 0;
            for (int i = 0; i < kTickers; i++) s += counts[i].n.load(std::memory_order_relaxed);
            return s;
          };
          start.close();
          weft::this_fiber::sleep_for(kWarmup);
          std::uint64_t n0 = sum();
          double c0 = cpu_seconds();
          auto t0 = Clock::now();
          weft::this_fiber::sleep_for(kWindow);
          std::uint64_t n1 = sum();
          double c1 = cpu_seconds();
          double wall = bench::seconds_since(t0);
          stop.store(true);
          wg.wait();
          return Result{c1 - c0, wall, n1 - n0};
        },
        workers(st));
    st.SetIterationTime(res.wall);
    st.counters["cpu_ns_per_tick"] = res.cpu * 1e9 / static_cast<double>(res.ticks ? res.ticks : 1);
    st.counters["ticks_per_s"] = static_cast<double>(res.ticks) / res.wall;
    st.counters["cpu_util"] = res.cpu / res.wall;
  }
}
BENCHMARK(BM_ticker)->Name("ticker")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
