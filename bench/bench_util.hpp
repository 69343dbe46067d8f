// bench_util.hpp: helpers shared by the benchmark suites.
#pragma once

#include <benchmark/benchmark.h>
#include <weft/runtime.hpp>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A field of /proc/self/status, in KiB ("VmRSS:", "VmPTE:").
inline long status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  std::size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0) return std::stol(line.substr(n));
  return -1;
}

// Resident memory plus page tables: what a parked fiber really costs.
inline long resident_kib() { return status_kib("VmRSS:") + status_kib("VmPTE:"); }

// The worker count a benchmark takes as its first argument.
inline weft::Options workers(const benchmark::State& st) {
  return weft::Options{.workers = static_cast<unsigned>(st.range(0))};
}

}  // namespace bench
