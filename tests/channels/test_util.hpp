// test_util.hpp: helpers shared by the channel tests.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <weft/weft.hpp>

#ifndef WEFT_STRESS_SCALE
#define WEFT_STRESS_SCALE 100
#endif

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

// Base of the tests parameterised by worker count.
class WorkersTest : public ::testing::TestWithParam<unsigned> {
 protected:
  weft::Options opts() const { return {.workers = GetParam()}; }
};

}  // namespace chantest
