#include <gtest/gtest.h>
#include <weft/weft.hpp>

TEST(Smoke, RunReturnsMainsValue) {
  EXPECT_EQ(weft::run([] { return weft::go([](int x) { return x * 2; }, 21).join(); }, {.workers = 2}), 42);
}
