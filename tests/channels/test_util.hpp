// test_util.hpp: helpers shared by the channel tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <weft/weft.hpp>

#ifndef WEFT_STRESS_SCALE
#define WEFT_STRESS_SCALE 100
#endif


#include "../deadlock_skip.hpp"

namespace chantest {

// n scaled by the stress knob (percent), at least `floor`.
constexpr std::size_t scaled(std::size_t n, std::size_t floor = 1) {
  std::size_t v = n * WEFT_STRESS_SCALE / 100;
  return v < floor ? floor : v;
}

// Worker counts the parameterised tests run with.
inline const auto kWorkers = ::testing::Values(1u, 2u, 4u);

inline std::string workers_name(const ::testing::TestParamInfo<unsigned>& i) {
  std::string s = "w";
  s += std::to_string(i.param);
  return s;
}

// Yields until every other live fiber is parked (switched out and not yet
// woken: nothing but the caller can run), e.g. until a fiber just started
// has queued itself on a channel. A deterministic condition, not a delay;
// the 10 s limit only bounds a test that would otherwise hang.
inline void wait_others_parked() {
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    weft::Stats s = weft::stats();
    if (s.fibers_parked + 1 >= s.fibers_live) return;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "other fibers never all parked";
    weft::this_fiber::yield();
  }
}

// Base of the tests parameterised by worker count.
class WorkersTest : public ::testing::TestWithParam<unsigned> {
 protected:
  weft::Options opts() const { return {.workers = GetParam()}; }
};

}  // namespace chantest
