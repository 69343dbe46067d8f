// test_util.hpp: helpers shared by the runtime test suite.
//
// - WEFT_STRESS_SCALE (percent, meson option stress_scale) scales stress
//   sizes: scaled(n) is n * scale / 100, at least 1.
// - RuntimeTest is the base fixture: its TearDown asserts that no run() of
//   the test leaked a fiber or a stack slot (the runtime's teardown
//   accounting, reached through its internals).
// - kWorkerCounts are the worker counts stress and sync tests run over.
#pragma once

#include <gtest/gtest.h>
#ifdef __linux__
#include <sched.h>
#endif

#include <weft/weft.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "internal.hpp"

#ifndef WEFT_STRESS_SCALE
#define WEFT_STRESS_SCALE 100
#endif


#include "../deadlock_skip.hpp"

namespace weft_test {

inline std::size_t scaled(std::size_t n) {
  std::size_t v = n * WEFT_STRESS_SCALE / 100;
  return v ? v : 1;
}

inline constexpr unsigned kWorkerCounts[] = {1, 2, 4, 8};

#if defined(__SANITIZE_THREAD__)
#define WEFT_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TEST_TSAN 1
#endif
#endif

// Fibers alive at once that a test may ask for. TSan gives every fiber
// (__tsan_create_fiber) its own shadow-stack mapping, so with
// vm.max_map_count at 65530 it cannot hold 100,000 parked fibers ("failed
// to allocate noreserve ... shadow stack"): cap them under TSan.
inline std::size_t live_fiber_cap(std::size_t n) {
#ifdef WEFT_TEST_TSAN
  return n < 30000 ? n : 30000;
#else
  return n;
#endif
}

inline std::string workers_name(const ::testing::TestParamInfo<unsigned>& i) {
  std::string s = "w";  // not "w" + ...: GCC 12 -Wrestrict false positive (PR 105329)
  s += std::to_string(i.param);
  return s;
}

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override { before_ = weft::rt::teardown_stats(); }
  void TearDown() override {
    auto after = weft::rt::teardown_stats();
    EXPECT_EQ(after.leaked_fibers, before_.leaked_fibers) << "a run() ended with fibers still counted live";
    EXPECT_EQ(after.leaked_slots, before_.leaked_slots) << "a run() ended with stack slots unaccounted for";
  }
  weft::rt::TeardownStats before_;
};

class WorkersTest : public RuntimeTest, public ::testing::WithParamInterface<unsigned> {
 protected:
  weft::Options opts() const { return weft::Options{.workers = GetParam()}; }
};

// Counts constructions and destructions (RAII probes for unwinding tests).
struct Probe {
  static inline std::atomic<long> made{0}, destroyed{0};
  Probe() { made.fetch_add(1); }
  Probe(const Probe&) { made.fetch_add(1); }
  ~Probe() { destroyed.fetch_add(1); }
  static void reset() {
    made = 0;
    destroyed = 0;
  }
};

#ifdef __linux__
// Pins the calling thread to the first CPU it may run on, until destroyed;
// threads it starts meanwhile (a runtime's workers and monitor) inherit it.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    if (sched_getaffinity(0, sizeof before_, &before_) != 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &before_)) cpu++;
    CPU_SET(cpu, &one);
    ok_ = sched_setaffinity(0, sizeof one, &one) == 0;
  }
  ~PinnedToOneCpu() {
    if (ok_) sched_setaffinity(0, sizeof before_, &before_);
  }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;
  bool ok() const { return ok_; }

 private:
  cpu_set_t before_{};
  bool ok_ = false;
};
#endif

inline std::chrono::nanoseconds since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::steady_clock::now() - t0;
}

// Waits (10 s at most) until the calling fiber is the runtime's only live
// fiber; false if it never is. A fiber that has woken its waiter (a
// WaitGroup done(), a join) still counts until its last instructions ran
// and its slot was freed, so "all ended" is polled, never read once.
inline bool only_caller_left() {
  auto t0 = std::chrono::steady_clock::now();
  while (weft::stats().fibers_live > 1) {
    if (since(t0) > std::chrono::seconds(10)) return false;
    weft::this_fiber::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// Waits until at least n fibers of the current runtime are switched out in
// a park (the caller runs, so it is not one of them). Bounded: 10 s, then
// a test failure.
inline void wait_parked(std::uint64_t n) {
  auto t0 = std::chrono::steady_clock::now();
  while (weft::stats().fibers_parked < n) {
    if (since(t0) > std::chrono::seconds(10)) {
      ADD_FAILURE() << "fewer than " << n << " fibers parked after 10 s";
      return;
    }
    weft::this_fiber::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace weft_test
