// stack_test.cpp: fiber stacks (stack.hpp/stack.cpp): commit on touch,
// trim when returned after a burst, guard pages and the overflow message.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::RuntimeTest;

long page_size() { return sysconf(_SC_PAGESIZE); }

// Resident set size in bytes (VmRSS).
long rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  return -1;
}

// Resident pages of the current fiber's stack slot (mincore: exact, unlike
// RSS, which other threads' allocations disturb).
std::size_t resident_pages_of_current_slot() {
  weft::rt::Fiber* f = weft::rt::current_fiber();
  auto& arena = f->rt->arena;
  char* base = arena.slot_base(f->slot);
  std::size_t n = arena.slot_bytes() / page_size();
  std::vector<unsigned char> v(n);
  if (mincore(base, arena.slot_bytes(), v.data()) != 0) return SIZE_MAX;
  std::size_t r = 0;
  for (unsigned char c : v) r += c & 1;
  return r;
}

// Touches `bytes` of stack below the caller's frame, one write per page.
[[gnu::noinline]] void touch_stack(std::size_t bytes) {
  auto* p = static_cast<volatile char*>(__builtin_alloca(bytes));
  for (std::size_t i = 0; i < bytes; i += 512) p[i] = 1;
  p[bytes - 1] = 1;
}

class Stack : public RuntimeTest {};

TEST_F(Stack, CommitOnTouch) {
  weft::run([] {
    weft::go([] {
      std::size_t before = resident_pages_of_current_slot();
      // A fresh fiber uses a few pages at most, not its 256 KiB maximum.
      EXPECT_LT(before, 16u);
      touch_stack(64 * 1024);
      std::size_t after = resident_pages_of_current_slot();
      EXPECT_GE(after, before + 64 * 1024 / page_size() - 1);
      EXPECT_LT(after, 256 * 1024 / page_size());
    }).join();
  }, {.workers = 1});
}

TEST_F(Stack, RssGrowsByAboutAPagePerTouchedPage) {
  weft::run([] {
    weft::go([] {
      // Warm up the frames of this path, then compare RSS around touching
      // 32 more pages: it grows by at least most of them (pages are
      // committed on touch).
      touch_stack(4096);
      long before = rss_bytes();
      touch_stack(32 * 4096);
      long after = rss_bytes();
      EXPECT_GE(after - before, 24 * 4096);
    }).join();
  }, {.workers = 1});
}

// Resident pages of a set of slots of the current runtime's arena.
std::size_t resident_pages_of_slots(const std::vector<std::uint32_t>& slots) {
  auto& arena = weft::rt::current_fiber()->rt->arena;
  std::size_t n = arena.slot_bytes() / page_size(), r = 0;
  std::vector<unsigned char> v(n);
  for (std::uint32_t s : slots) {
    if (mincore(arena.slot_base(s), arena.slot_bytes(), v.data()) != 0) return SIZE_MAX;
    for (unsigned char c : v) r += c & 1;
  }
  return r;
}

TEST_F(Stack, TrimmedAfterBurst) {
  // A burst of fibers, all alive at once, each touching 64 KiB of stack.
  // Once they have ended, their slots go back to the arena trimmed (only a
  // few hot ones per worker stay committed), so RSS shrinks back. Checked
  // exactly on the burst's slots (mincore) and, roughly, on VmRSS.
  const int n = 1024;  // 64 MiB at the peak
  weft::run([] {
    long base = rss_bytes();
    weft::WaitGroup started, ended;
    weft::Mutex m;
    weft::CondVar cv;
    bool release = false;
    std::vector<std::uint32_t> slots;
    started.add(n);
    ended.add(n);
    for (int i = 0; i < n; i++) {
      weft::spawn([&] {
        touch_stack(64 * 1024);
        {
          std::unique_lock<weft::Mutex> l(m);
          slots.push_back(weft::rt::current_fiber()->slot);
          started.done();
          cv.wait(l, [&] { return release; });
        }
        ended.done();
      });
    }
    started.wait();
    long peak = rss_bytes();
    std::size_t peak_pages = resident_pages_of_slots(slots);
    EXPECT_GE(peak_pages, n * 16u) << "the burst did not commit its stacks";
    {
      std::lock_guard<weft::Mutex> l(m);
      release = true;
    }
    cv.notify_all();
    ended.wait();
    weft::this_fiber::sleep_for(20ms);  // let the last fibers switch out and free their slots
    std::size_t after_pages = resident_pages_of_slots(slots);
    EXPECT_LT(after_pages, peak_pages / 4) << "peak " << peak_pages << " pages, after " << after_pages;
#ifndef WEFT_TEST_TSAN
    // (Under TSan, RSS is dominated by the shadow of the touched stacks,
    // which TSan keeps after the stack pages are returned.)
    long after = rss_bytes();
    EXPECT_LT(after - base, (peak - base) / 4) << "base " << base << " peak " << peak << " after " << after;
#else
    (void)base;
    (void)peak;
#endif
  }, {.workers = 2});
}

// A function the compiler cannot turn into a loop: each frame holds 1 KiB.
volatile int g_depth_limit = 1 << 30;
[[gnu::noinline]] int recurse(int n) {
  volatile char buf[1024];
  buf[0] = static_cast<char>(n);
  if (n >= g_depth_limit) return buf[0];
  return recurse(n + 1) + buf[0];
}

// Under ASan the guard page is still hit (ASan instruments frames but does
// not move them off the fiber's stack; tests/meson.build sets handle_segv=0
// so our handler, not ASan's, reports it).
TEST(StackDeathTest, OverflowNamesFiberAndSize) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(weft::run([] { weft::go([] { return recurse(0); }).join(); }, {.workers = 2}),
               "weft: fiber [1-9][0-9]* overflowed its 256 KiB stack");
}

TEST(StackDeathTest, OverflowOfCustomSizeStack) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(weft::run([] { weft::go([] { return recurse(0); }).join(); },
                         {.workers = 1, .stack_size = 128 * 1024}),
               "weft: fiber [1-9][0-9]* overflowed its 128 KiB stack");
}

// Deep but bounded recursion within the stack is fine, and the stack is
// reused by later fibers without a stale guard or stale contents mattering.
TEST_F(Stack, DeepButBoundedRecursion) {
  weft::run([] {
    for (int i = 0; i < 50; i++) {
      weft::go([] {
        g_depth_limit = 100;  // ~100 KiB of a 256 KiB stack
        recurse(0);
      }).join();
    }
    g_depth_limit = 1 << 30;
  }, {.workers = 2});
}

TEST_F(Stack, BigClosureLivesOnTheHeap) {
  // A closure larger than the inline limit (2 KiB) is moved to the heap.
  struct Big {
    char bytes[8192];
  };
  Big big;
  std::memset(big.bytes, 7, sizeof big.bytes);
  int sum = weft::run([&big] {
    return weft::go([b = big] {
      int s = 0;
      for (char c : b.bytes) s += c;
      return s;
    }).join();
  }, {.workers = 1});
  EXPECT_EQ(sum, 7 * 8192);
}

}  // namespace

namespace {

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_TEST_ASAN 1
#endif
#endif
#ifdef WEFT_TEST_ASAN
extern "C" void* __asan_region_is_poisoned(void* beg, std::size_t size);
#endif

// Regression (ASan): a fiber's outermost frames (fiber_main, fiber_exit, the
// switch) never return, so their redzones stayed poisoned in ASan's shadow
// after the fiber ended. Interleaving: fiber A ends; its slot goes back to
// the worker's cache (or the arena is unmapped and a later run maps a new one
// at the same address: munmap does not clear shadow); fiber B gets that
// memory and placement-news its closure just below the control block, over
// A's old frames: ASan reported a stack-buffer-overflow in spawn() (seen in
// Stress.HundredThousandWaitersNotifyAll). free_slot now unpoisons them.
// Under ASan the test checks the shadow of an ended fiber's slot directly.
TEST_F(Stack, EndedFiberLeavesNoPoisonedStack) {
  weft::run([] {
    for (int round = 0; round < 8; round++) {
      char* lo = nullptr;
      char* hi = nullptr;
      weft::go([&] {
        weft::rt::Fiber* f = weft::rt::current_fiber();
        lo = f->rt->arena.slot_base(f->slot) + f->rt->arena.guard_bytes();
        hi = reinterpret_cast<char*>(f);
        if (round % 2) weft::this_fiber::yield();
      }).join();
      weft::this_fiber::yield();  // the ended fiber's switch-out has completed
#ifdef WEFT_TEST_ASAN
      EXPECT_EQ(__asan_region_is_poisoned(lo, static_cast<std::size_t>(hi - lo)), nullptr);
#else
      EXPECT_LT(lo, hi);
#endif
      struct Big {
        char bytes[1024];
      } big{};
      big.bytes[1023] = 5;
      EXPECT_EQ(weft::go([big] { return big.bytes[1023] + 0; }).join(), 5);
    }
  }, {.workers = 1});
}

}  // namespace
