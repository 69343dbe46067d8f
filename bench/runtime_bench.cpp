// runtime_bench.cpp: the runtime's benchmarks (issue "The runtime"), with
// their in-binary baselines. Public headers only, as users see weft.
//
// Every benchmark reports a counter named after what it measures (ns per
// fiber, per switch, per lock, bytes per parked fiber); bench/compare.py runs
// the Go twin of each (bench/go/runtime) side by side and prints ratios.
// Each benchmark runs one whole workload per iteration (Iterations(1)):
// repetitions give the medians.
#include <benchmark/benchmark.h>
#include <boost/context/detail/fcontext.hpp>
#include <weft/weft.hpp>

#include "bench_util.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using bench::Clock;
using bench::resident_kib;
using bench::seconds_since;
using bench::workers;

// ---- spawn: spawn and join 1,000,000 empty fibers --------------------------------

constexpr int kSpawn = 1'000'000;

void BM_spawn_join(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          auto t0 = Clock::now();
          std::vector<weft::JoinHandle<void>> hs;
          hs.reserve(kSpawn);
          for (int i = 0; i < kSpawn; i++) hs.push_back(weft::go([] {}));
          for (auto& h : hs) h.join();
          return seconds_since(t0);
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_fiber"] = secs * 1e9 / kSpawn;
  }
}
BENCHMARK(BM_spawn_join)->Name("spawn/join")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// The shape of the Go twin: detached fibers and a WaitGroup.
void BM_spawn_wg(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          auto t0 = Clock::now();
          weft::WaitGroup wg;
          for (int i = 0; i < kSpawn; i++) {
            wg.add();
            weft::spawn([&wg] { wg.done(); });
          }
          wg.wait();
          return seconds_since(t0);
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_fiber"] = secs * 1e9 / kSpawn;
  }
}
BENCHMARK(BM_spawn_wg)->Name("spawn/waitgroup")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// Baseline: std::thread create+join (fewer of them: they are slow).
void BM_spawn_thread(benchmark::State& st) {
  constexpr int n = 10'000;
  for (auto _ : st) {
    auto t0 = Clock::now();
    for (int i = 0; i < n; i++) std::thread([] {}).join();
    double secs = seconds_since(t0);
    st.SetIterationTime(secs);
    st.counters["ns_per_fiber"] = secs * 1e9 / n;
  }
}
BENCHMARK(BM_spawn_thread)->Name("spawn/std_thread")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- yield: two fibers on one worker, 5,000,000 yields each --------------------------

constexpr int kYields = 5'000'000;

void BM_yield(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          auto body = [] {
            for (int i = 0; i < kYields; i++) weft::this_fiber::yield();
          };
          auto t0 = Clock::now();
          auto a = weft::go(body);
          auto b = weft::go(body);
          a.join();
          b.join();
          return seconds_since(t0);
        },
        weft::Options{.workers = 1});
    st.SetIterationTime(secs);
    st.counters["ns_per_switch"] = secs * 1e9 / (2.0 * kYields);
  }
}
BENCHMARK(BM_yield)->Name("yield")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// Baseline: a bare jump_fcontext ping-pong between two contexts, the floor
// any fiber switch pays. One "switch" here is one jump.
namespace bctx = boost::context::detail;
void bare_entry(bctx::transfer_t t) {
  for (;;) t = bctx::jump_fcontext(t.fctx, nullptr);
}
void BM_bare_jump(benchmark::State& st) {
  static char stack[64 * 1024];
  for (auto _ : st) {
    bctx::fcontext_t c = bctx::make_fcontext(stack + sizeof stack, sizeof stack, bare_entry);
    auto t0 = Clock::now();
    for (int i = 0; i < kYields; i++) c = bctx::jump_fcontext(c, nullptr).fctx;
    double secs = seconds_since(t0);
    st.SetIterationTime(secs);
    st.counters["ns_per_switch"] = secs * 1e9 / (2.0 * kYields);
  }
}
BENCHMARK(BM_bare_jump)->Name("yield/bare_jump_fcontext")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- parked: 1,000,000 fibers parked at once -------------------------------------------

constexpr int kParked = 1'000'000;

void BM_parked_condvar(benchmark::State& st) {
  for (auto _ : st) {
    struct R {
      double spawn_secs;
      double bytes;
    };
    R r = weft::run(
        [] {
          weft::Mutex m;
          weft::CondVar cv;
          bool go = false;
          weft::WaitGroup done;
          long before = resident_kib();
          auto t0 = Clock::now();
          for (int i = 0; i < kParked; i++) {
            done.add();
            weft::spawn([&] {
              std::unique_lock<weft::Mutex> l(m);
              cv.wait(l, [&] { return go; });
              l.unlock();
              done.done();
            });
          }
          R out{seconds_since(t0), (resident_kib() - before) * 1024.0 / kParked};
          {
            std::lock_guard<weft::Mutex> g(m);
            go = true;
          }
          cv.notify_all();
          done.wait();
          return out;
        },
        workers(st));
    st.SetIterationTime(r.spawn_secs);
    st.counters["bytes_per_fiber"] = r.bytes;
    st.counters["spawn_s"] = r.spawn_secs;
  }
}
BENCHMARK(BM_parked_condvar)->Name("parked/condvar")->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_parked_sleep(benchmark::State& st) {
  for (auto _ : st) {
    struct R {
      double spawn_secs;
      double bytes;
    };
    // The sleepers are still asleep when main returns: run() unwinds them.
    R r = weft::run(
        [] {
          long before = resident_kib();
          auto t0 = Clock::now();
          auto wake = t0 + std::chrono::hours(1);
          for (int i = 0; i < kParked; i++) weft::spawn([wake] { weft::this_fiber::sleep_until(wake); });
          return R{seconds_since(t0), (resident_kib() - before) * 1024.0 / kParked};
        },
        workers(st));
    st.SetIterationTime(r.spawn_secs);
    st.counters["bytes_per_fiber"] = r.bytes;
    st.counters["spawn_s"] = r.spawn_secs;
  }
}
BENCHMARK(BM_parked_sleep)->Name("parked/sleep")->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- mutex: 8 fibers x 1,000,000 lock/unlock; WaitGroup fan-out/fan-in ------------------

constexpr int kMutexFibers = 8;
constexpr int kMutexOps = 1'000'000;

void BM_mutex(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          weft::Mutex m;
          long counter = 0;
          auto t0 = Clock::now();
          std::vector<weft::JoinHandle<void>> hs;
          for (int f = 0; f < kMutexFibers; f++)
            hs.push_back(weft::go([&] {
              for (int i = 0; i < kMutexOps; i++) {
                std::lock_guard<weft::Mutex> g(m);
                counter++;
              }
            }));
          for (auto& h : hs) h.join();
          if (counter != long{kMutexFibers} * kMutexOps) std::abort();
          return seconds_since(t0);
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_lock"] = secs * 1e9 / (double(kMutexFibers) * kMutexOps);
  }
}
BENCHMARK(BM_mutex)->Name("mutex")->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// Baseline: std::mutex with 8 OS threads (a fiber runtime must not lose to it).
void BM_mutex_std(benchmark::State& st) {
  for (auto _ : st) {
    std::mutex m;
    long counter = 0;
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int f = 0; f < kMutexFibers; f++)
      ts.emplace_back([&] {
        for (int i = 0; i < kMutexOps; i++) {
          std::lock_guard<std::mutex> g(m);
          counter++;
        }
      });
    for (auto& t : ts) t.join();
    double secs = seconds_since(t0);
    st.SetIterationTime(secs);
    st.counters["ns_per_lock"] = secs * 1e9 / (double(kMutexFibers) * kMutexOps);
  }
}
BENCHMARK(BM_mutex_std)->Name("mutex/std_thread")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// 10,000 rounds of: 100 fibers started, each calls done(), the parent waits.
constexpr int kWgRounds = 10'000;
constexpr int kWgFanout = 100;

void BM_waitgroup(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          auto t0 = Clock::now();
          for (int r = 0; r < kWgRounds; r++) {
            weft::WaitGroup wg;
            wg.add(kWgFanout);
            for (int i = 0; i < kWgFanout; i++) weft::spawn([&wg] { wg.done(); });
            wg.wait();
          }
          return seconds_since(t0);
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_fiber"] = secs * 1e9 / (double(kWgRounds) * kWgFanout);
  }
}
BENCHMARK(BM_waitgroup)->Name("waitgroup")->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- scope: 1,000,000 children in scopes of 1,000 (errgroup's shape) -------------
// The Go twin: errgroup.WithContext semantics written by hand (a WaitGroup,
// a first-error Once and a context.WithCancel per group).

constexpr int kScopeGroups = 1000;
constexpr int kScopeChildren = 1000;

void BM_scope(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          auto t0 = Clock::now();
          for (int g = 0; g < kScopeGroups; g++) {
            weft::Scope s;
            for (int i = 0; i < kScopeChildren; i++) s.spawn([] {});
            s.wait();
          }
          return seconds_since(t0);
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_child"] = secs * 1e9 / (double(kScopeGroups) * kScopeChildren);
  }
}
BENCHMARK(BM_scope)->Name("scope")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- cancel latency: from cancel() to the cancelled fiber's handler --------------
// 10,000 fibers parked in a channel recv; each is cancelled in turn (the
// next only once the previous handler ran, so no latency includes a queue
// of other handlers), and its catch block records the time. Median and p99.

constexpr int kCancelFibers = 10'000;

void BM_cancel_latency(benchmark::State& st) {
  for (auto _ : st) {
    std::vector<double> lat(kCancelFibers);
    weft::run(
        [&lat] {
          weft::Chan<int> never(0);
          std::vector<weft::JoinHandle<void>> hs;
          std::vector<Clock::time_point> handled(kCancelFibers);
          hs.reserve(kCancelFibers);
          weft::WaitGroup parked;
          parked.add(kCancelFibers);
          for (int i = 0; i < kCancelFibers; i++)
            hs.push_back(weft::go([&, i] {
              parked.done();
              try {
                (void)never.recv();
              } catch (const weft::Cancelled&) {
                handled[i] = Clock::now();
              }
            }));
          parked.wait();
          weft::this_fiber::sleep_for(std::chrono::milliseconds(1));  // all parked by now
          for (int i = 0; i < kCancelFibers; i++) {
            auto t0 = Clock::now();
            hs[i].cancel();
            hs[i].join();
            lat[i] = std::chrono::duration<double, std::nano>(handled[i] - t0).count();
          }
        },
        workers(st));
    std::sort(lat.begin(), lat.end());
    st.SetIterationTime(1e-3);
    st.counters["median_ns"] = lat[lat.size() / 2];
    st.counters["p99_ns"] = lat[lat.size() * 99 / 100];
  }
}
BENCHMARK(BM_cancel_latency)->Name("cancel_latency")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
