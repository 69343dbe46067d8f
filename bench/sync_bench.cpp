// sync_bench.cpp: RWMutex and Semaphore workloads (Go twins in
// bench/go/sync, pairs in bench/pairs_sync.json; bench/README.md).
//   rwmutex:   8 fibers x 1,000,000 ops on one RWMutex, 1 op in 100 a
//              write (counter++ under lock()), the rest reads (the counter
//              read under lock_shared()); ns per op. Baseline:
//              std::shared_mutex with 8 OS threads.
//   semaphore: 100,000 jobs, each a fiber that acquires a Semaphore(16),
//              yields once (its tiny bit of work) and releases; the spawner
//              waits on a WaitGroup; ns per job. (Go: a buffered channel of
//              capacity 16 as the semaphore, Go's idiom.)
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <weft/sync.hpp>

#include "bench_util.hpp"

using bench::Clock;
using bench::seconds_since;
using bench::workers;

namespace {

constexpr int kRwFibers = 8;
constexpr int kRwOps = 1'000'000;
constexpr int kRwWriteEvery = 100;

void BM_rwmutex(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          weft::RWMutex m;
          long counter = 0;
          std::atomic<long> seen{0};
          auto t0 = Clock::now();
          std::vector<weft::JoinHandle<void>> hs;
          for (int f = 0; f < kRwFibers; f++)
            hs.push_back(weft::go([&] {
              long sum = 0;
              for (int i = 0; i < kRwOps; i++) {
                if (i % kRwWriteEvery == 0) {
                  std::lock_guard<weft::RWMutex> g(m);
                  counter++;
                } else {
                  std::shared_lock<weft::RWMutex> g(m);
                  sum += counter;
                }
              }
              seen.fetch_add(sum, std::memory_order_relaxed);
            }));
          for (auto& h : hs) h.join();
          if (counter != long{kRwFibers} * (kRwOps / kRwWriteEvery)) std::abort();
          benchmark::DoNotOptimize(seen.load());
          return seconds_since(t0);
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_op"] = secs * 1e9 / (double(kRwFibers) * kRwOps);
  }
}
BENCHMARK(BM_rwmutex)->Name("rwmutex")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// Baseline: std::shared_mutex with 8 OS threads.
void BM_rwmutex_std(benchmark::State& st) {
  for (auto _ : st) {
    std::shared_mutex m;
    long counter = 0;
    std::atomic<long> seen{0};
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int f = 0; f < kRwFibers; f++)
      ts.emplace_back([&] {
        long sum = 0;
        for (int i = 0; i < kRwOps; i++) {
          if (i % kRwWriteEvery == 0) {
            std::lock_guard<std::shared_mutex> g(m);
            counter++;
          } else {
            std::shared_lock<std::shared_mutex> g(m);
            sum += counter;
          }
        }
        seen.fetch_add(sum, std::memory_order_relaxed);
      });
    for (auto& t : ts) t.join();
    double secs = seconds_since(t0);
    if (counter != long{kRwFibers} * (kRwOps / kRwWriteEvery)) std::abort();
    benchmark::DoNotOptimize(seen.load());
    st.SetIterationTime(secs);
    st.counters["ns_per_op"] = secs * 1e9 / (double(kRwFibers) * kRwOps);
  }
}
BENCHMARK(BM_rwmutex_std)->Name("rwmutex/std_thread")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

constexpr int kSemJobs = 100'000;
constexpr int kSemLimit = 16;

void BM_semaphore(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          weft::Semaphore sem(kSemLimit);
          weft::WaitGroup wg;
          std::atomic<int> inside{0}, peak{0};
          auto t0 = Clock::now();
          wg.add(kSemJobs);
          for (int j = 0; j < kSemJobs; j++)
            weft::spawn([&] {
              sem.acquire();
              int now = inside.fetch_add(1, std::memory_order_relaxed) + 1;
              if (now > peak.load(std::memory_order_relaxed)) peak.store(now, std::memory_order_relaxed);
              weft::this_fiber::yield();
              inside.fetch_sub(1, std::memory_order_relaxed);
              sem.release();
              wg.done();
            });
          wg.wait();
          double s = seconds_since(t0);
          if (peak.load() > kSemLimit) std::abort();
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_job"] = secs * 1e9 / kSemJobs;
  }
}
BENCHMARK(BM_semaphore)->Name("semaphore")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
