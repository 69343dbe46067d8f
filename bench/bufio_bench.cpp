// bufio_bench.cpp: weft::net::BufReader (weft/bufio.hpp), public headers
// only. One whole workload per iteration (Iterations(1)); the Go twin lives
// in bench/go/bufio and bench/compare.py runs both side by side (pairs in
// bench/pairs_bufio.json).
//
//   read_line/workers:{1,2}  2,097,152 lines of 64 bytes ("\n" included)
//                            read with read_line over a loopback TCP
//                            connection while another fiber writes them in
//                            64 KiB blocks: ns_per_line, mb_per_s. Go's twin
//                            reads with a bufio.Scanner.
#include <benchmark/benchmark.h>
#include <weft/bufio.hpp>
#include <weft/weft.hpp>

#include "bench_util.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

using bench::Clock;
using bench::seconds_since;
using bench::workers;

constexpr int kLines = 2048 * 1024;  // 2,097,152: whole 64 KiB blocks
constexpr int kLineLen = 64;  // with its "\n"

void BM_read_line(benchmark::State& st) {
  for (auto _ : st) {
    double secs = weft::run(
        [] {
          auto ln = weft::net::TcpListener::listen("127.0.0.1:0");
          auto writer = weft::go([addr = ln.local_addr()] {
            auto c = weft::net::TcpStream::connect(addr);
            std::string line(kLineLen - 1, 'x');
            line += '\n';
            std::string block;
            for (int i = 0; i < 1024; i++) block += line;  // 64 KiB
            for (int sent = 0; sent < kLines; sent += 1024) c.write_all(block);
          });
          auto conn = ln.accept();
          auto t0 = Clock::now();
          weft::net::BufReader in(conn);
          std::string line;
          long n = 0, bytes = 0;
          while (in.read_line(line)) {
            n++;
            bytes += static_cast<long>(line.size());
          }
          double s = seconds_since(t0);
          writer.join();
          if (n != kLines || bytes != static_cast<long>(kLines) * (kLineLen - 1)) {
            std::fprintf(stderr, "read_line: %ld lines, %ld bytes\n", n, bytes);
            std::abort();
          }
          return s;
        },
        workers(st));
    st.SetIterationTime(secs);
    st.counters["ns_per_line"] = secs * 1e9 / kLines;
    st.counters["mb_per_s"] = static_cast<double>(kLines) * kLineLen / secs / 1e6;
  }
}
BENCHMARK(BM_read_line)->Name("read_line")->Arg(1)->Arg(2)->ArgName("workers")->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
