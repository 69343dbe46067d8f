// fuzz_regress_test.cpp: regression tests for channel bugs found by the
// channel fuzzer (tests/fuzz/chan_fuzz.cpp), one per bug, each with the
// fuzzer's program that found it.
#include <chrono>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

class FuzzRegress : public chantest::WorkersTest {};

// Found as: select(send(nil, 4), send(nil, 5), after(0), otherwise) returned
// otherwise. An after() already due is a ready case, so otherwise() must not
// be taken; select_impl's shortcut for "only nil channel cases" (n == 0)
// returned Default before looking at the deadline, unlike the general path
// where an expired after joins the poll order.
TEST_P(FuzzRegress, DueAfterBeatsOtherwiseWithOnlyNilChannels) {
  weft::run([] {
    weft::Chan<int> nil;
    EXPECT_EQ(weft::select(weft::after(0ns), weft::otherwise()), 0u);
    EXPECT_EQ(weft::select(weft::otherwise(), weft::after(-1ms)), 1u);
    EXPECT_EQ(weft::select(weft::send(nil, 4), weft::recv(nil), weft::after(0ns), weft::otherwise()), 2u);
    // Not yet due: otherwise, as before.
    EXPECT_EQ(weft::select(weft::recv(nil), weft::after(1h), weft::otherwise()), 2u);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(W, FuzzRegress, chantest::kWorkers, chantest::workers_name);

}  // namespace
