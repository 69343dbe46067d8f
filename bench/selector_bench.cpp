// selector_bench.cpp: weft::Selector (dynamic select), public headers only.
// The Go twin (bench/go/selector, reflect.Select) and the pairs
// (bench/pairs_selector.json) follow chan_bench's conventions: one whole
// workload per iteration, a counter named after its unit.
//
//   selector64/unbuffered/workers:{1,2}  one consumer waits on a Selector of
//       64 recv cases over 64 unbuffered channels; one producer sends
//       200,000 ints, each to a channel picked by xorshift64: ns_per_wait.
//       Unbuffered is the headline: nearly every wait finds nothing ready
//       and parks on all 64 channels (queue 64 waiters, unqueue 63 on wake),
//       the whole machinery of a dynamic select and reflect.Select's
//       heaviest path too.
//   selector64/buffered16/workers:{1,2}  the same over capacity-16 channels:
//       the producer runs ahead, most waits find a case ready (the common
//       fan-in shape).
//   selector64/unbuffered/static_select/workers:1  baseline: the same
//       workload with a compiled select() of 64 cases (what the Selector's
//       type erasure and ownership cost on top).
#include <benchmark/benchmark.h>
#include <weft/weft.hpp>

#include "bench_util.hpp"

#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

namespace {

using bench::Clock;
using bench::seconds_since;
using bench::workers;

constexpr int kChans = 64;
constexpr int kMsgs = 200'000;

void producer(std::vector<weft::Chan<int>> cs) {
  std::uint64_t x = 88172645463325252ull;  // xorshift64, as the Go twin
  for (int i = 0; i < kMsgs; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    cs[x % kChans].send(i);
  }
}

std::vector<weft::Chan<int>> make_chans(std::size_t cap) {
  std::vector<weft::Chan<int>> cs;
  for (int i = 0; i < kChans; i++) cs.emplace_back(cap);
  return cs;
}

void check(long sum) {
  if (sum != static_cast<long>(kMsgs) * (kMsgs - 1) / 2) std::abort();
}

void run_selector(benchmark::State& st, std::size_t cap) {
  for (auto _ : st) {
    double secs = weft::run(
        [cap] {
          auto cs = make_chans(cap);
          weft::Selector sel;
          long sum = 0;
          for (auto& c : cs) sel.add(weft::recv(c, [&sum](std::optional<int> v) { sum += *v; }));
          auto t0 = Clock::now();
          weft::spawn(producer, cs);
          for (int i = 0; i < kMsgs; i++) sel.wait();
          double s = seconds_since(t0);
          check(sum);
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_wait"] = secs * 1e9 / kMsgs;
  }
}

void BM_selector_unbuffered(benchmark::State& st) { run_selector(st, 0); }
void BM_selector_buffered(benchmark::State& st) { run_selector(st, 16); }
BENCHMARK(BM_selector_unbuffered)->Name("selector64/unbuffered")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_selector_buffered)->Name("selector64/buffered16")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

template <std::size_t... I>
std::size_t select64(const std::vector<weft::Chan<int>>& cs, long& sum, std::index_sequence<I...>) {
  auto add = [&sum](std::optional<int> v) { sum += *v; };
  return weft::select(weft::recv(cs[I], add)...);
}

void BM_static_select(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          auto cs = make_chans(0);
          long sum = 0;
          auto t0 = Clock::now();
          weft::spawn(producer, cs);
          for (int i = 0; i < kMsgs; i++) select64(cs, sum, std::make_index_sequence<kChans>());
          double s = seconds_since(t0);
          check(sum);
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_wait"] = secs * 1e9 / kMsgs;
  }
}
BENCHMARK(BM_static_select)->Name("selector64/unbuffered/static_select")->Arg(1)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
