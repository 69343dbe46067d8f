// selector_alloc_test.cpp: Selector::wait() never allocates (only add()
// may). Its own executable: it replaces the global operator new to count
// allocations, which must not affect the other suites.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <weft/weft.hpp>

#include "test_util.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_news{0};
std::atomic<std::uint64_t> g_fiber{0};  // the fiber whose allocations count (not the monitor's, say)
}  // namespace

// Both replaced, as a malloc/free pair (so ASan sees matching calls); g++
// cannot tell that operator delete pairs with this operator new.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed) && weft::in_fiber() &&
      weft::this_fiber::id() == g_fiber.load(std::memory_order_relaxed))
    g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace std::chrono_literals;
using weft::Chan;
using weft::Selector;

class SelectorAlloc : public chantest::WorkersTest {};

// Ready paths, the parked path (woken by a peer's send), the timeout path
// and otherwise, many times each after a first wait: no operator new in
// the waiting fiber (other threads, such as the runtime's monitor, may
// allocate meanwhile: only the waiting fiber's allocations count).
TEST_P(SelectorAlloc, WaitDoesNotAllocate) {
  weft::run([workers = GetParam()] {
    constexpr int K = 64;
    std::vector<Chan<int>> cs;
    for (int i = 0; i < K; i++) cs.emplace_back(i % 2);
    Chan<int> go_on(0), never(0);
    Selector sel, timed, dflt;
    long sum = 0;
    for (auto& c : cs) sel.add(weft::recv(c, [&sum](std::optional<int> v) { sum += *v; }));
    timed.add(weft::recv(never));
    timed.add(weft::after(10us));
    dflt.add(weft::recv(never));
    dflt.add(weft::otherwise());
    constexpr int kRounds = 2000;
    auto peer = weft::go([&cs, go_on] {
      for (int i = 0; i < kRounds; i++) cs[static_cast<std::size_t>(i * 7 % K)].send(i);
      (void)go_on.recv();
    });
    // Warm up: the first wait of each, and the timer machinery.
    sel.wait();
    timed.wait();
    dflt.wait();
    g_news = 0;
    g_fiber = weft::this_fiber::id();
    g_counting = true;
    for (int i = 1; i < kRounds; i++) sel.wait();
    // The timeout path on one worker only: with more, the fiber may first
    // arm a timer on a worker whose timer heap then grows once (the
    // runtime's one-time growth per worker, not the Selector's).
    if (workers == 1)
      for (int i = 0; i < 50; i++) timed.wait();
    for (int i = 0; i < 1000; i++) dflt.wait();
    long during_waits = g_news.load();
    dflt.add(weft::recv(never));  // the control: add() allocates, and is counted
    g_counting = false;
    go_on.send(0);
    peer.join();
    EXPECT_EQ(during_waits, 0);
    EXPECT_GT(g_news.load(), 0) << "the counter missed add()'s allocation: the check above proves nothing";
    EXPECT_EQ(sum, static_cast<long>(kRounds) * (kRounds - 1) / 2);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, SelectorAlloc, ::testing::Values(1u, 2u), chantest::workers_name);

}  // namespace
