// fiber_test.cpp: run(), go(), JoinHandle (values, void, move-only results,
// exceptions, detach), panics of detached fibers, in_fiber(),
// this_fiber::id() and yield(), per-fiber errno and exception-handling
// state, Options validation and WEFT_WORKERS.
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <regex>

#include <gmock/gmock.h>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::RuntimeTest;
using weft_test::WorkersTest;

class Fiber : public RuntimeTest {};

TEST_F(Fiber, RunReturnsMainsValue) {
  EXPECT_EQ(weft::run([] { return 42; }, {.workers = 1}), 42);
  EXPECT_EQ(weft::run([] { return std::string("hello"); }, {.workers = 2}), "hello");
  weft::run([] {}, {.workers = 2});
}

TEST_F(Fiber, RunRethrowsMainsException) {
  EXPECT_THROW(weft::run([]() -> int { throw std::out_of_range("main"); }, {.workers = 2}), std::out_of_range);
}

TEST_F(Fiber, JoinValue) {
  EXPECT_EQ(weft::run([] { return weft::go([](int x) { return x * 2; }, 21).join(); }, {.workers = 2}), 42);
}

TEST_F(Fiber, JoinVoid) {
  int hit = 0;
  weft::run([&] {
    auto h = weft::go([&] { hit = 1; });
    h.join();
    EXPECT_FALSE(h.joinable());
  }, {.workers = 2});
  EXPECT_EQ(hit, 1);
}

TEST_F(Fiber, JoinMoveOnlyResultAndArgs) {
  auto p = weft::run([] {
    auto arg = std::make_unique<int>(5);
    auto h = weft::go([](std::unique_ptr<int> a) { return std::make_unique<int>(*a + 1); }, std::move(arg));
    return h.join();
  }, {.workers = 2});
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, 6);
}

TEST_F(Fiber, ArgumentsAreDecayedCopies) {
  weft::run([] {
    std::string s = "abc";
    auto h = weft::go([](std::string mine) { mine += "d"; return mine; }, s);
    EXPECT_EQ(h.join(), "abcd");
    EXPECT_EQ(s, "abc");
  }, {.workers = 1});
}

struct MyError : std::runtime_error {
  int code;
  MyError(int c) : std::runtime_error("my error"), code(c) {}
};

TEST_F(Fiber, JoinRethrowsException) {
  weft::run([] {
    auto h = weft::go([]() -> int { throw MyError(7); });
    try {
      h.join();
      ADD_FAILURE() << "join did not throw";
    } catch (const MyError& e) {
      EXPECT_EQ(e.code, 7);
    }
    // Thrown after parking: the joiner is parked when the exception happens.
    auto h2 = weft::go([] {
      weft::this_fiber::sleep_for(2ms);
      throw MyError(8);
    });
    EXPECT_THROW(h2.join(), MyError);
  }, {.workers = 2});
}

TEST_F(Fiber, JoinTwiceOrEmptyThrowsLogicError) {
  weft::run([] {
    auto h = weft::go([] { return 1; });
    EXPECT_EQ(h.join(), 1);
    EXPECT_THROW(h.join(), std::logic_error);
    weft::JoinHandle<int> empty;
    EXPECT_THROW(empty.join(), std::logic_error);
    EXPECT_EQ(empty.id(), 0u);
  }, {.workers = 1});
}

TEST_F(Fiber, DoneAndDetach) {
  weft::run([] {
    weft::Mutex m;
    weft::CondVar cv;
    bool go_on = false;
    auto h = weft::go([&] {
      std::unique_lock<weft::Mutex> l(m);
      cv.wait(l, [&] { return go_on; });
    });
    EXPECT_FALSE(h.done());
    {
      std::lock_guard<weft::Mutex> l(m);
      go_on = true;
    }
    cv.notify_one();
    for (int i = 0; i < 100000 && !h.done(); i++) weft::this_fiber::sleep_for(10us);
    EXPECT_TRUE(h.done());
    h.join();
    // Detached fibers run to completion on their own.
    std::atomic<int> n{0};
    weft::WaitGroup wg;
    for (int i = 0; i < 100; i++) {
      wg.add();
      weft::go([&] {
        weft::this_fiber::yield();
        n++;
        wg.done();
      }).detach();
    }
    wg.wait();
    EXPECT_EQ(n.load(), 100);
    // A handle dropped without join detaches.
    wg.add();
    { auto dropped = weft::go([&] { wg.done(); }); }
    wg.wait();
  }, {.workers = 2});
}

TEST_F(Fiber, MovedHandleJoins) {
  weft::run([] {
    auto h = weft::go([] { return 3; });
    weft::JoinHandle<int> h2 = std::move(h);
    EXPECT_FALSE(h.joinable());
    EXPECT_EQ(h2.join(), 3);
  }, {.workers = 1});
}

TEST(FiberDeathTest, DetachedExceptionPanics) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(weft::run([] {
    weft::go([] {
      weft::this_fiber::yield();
      throw std::runtime_error("boom from a detached fiber");
    }).detach();
    weft::this_fiber::sleep_for(1s);
  }, {.workers = 2}),
               "weft: panic: fiber [1-9][0-9]* exited with an uncaught exception: std::runtime_error: boom from a "
               "detached fiber");
}

TEST(FiberDeathTest, DroppedHandleExceptionPanicsWithItsId) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The id in the message is the fiber's own id (here: the id its handle
  // reported, written out before the fiber throws).
  EXPECT_DEATH(weft::run([] {
    weft::Mutex m;
    auto h = weft::go([&] {
      std::lock_guard<weft::Mutex> l(m);
      throw std::logic_error("dropped");
    });
    std::fprintf(stderr, "id=%llu\n", static_cast<unsigned long long>(h.id()));
    h.detach();
    weft::this_fiber::sleep_for(1s);
  }, {.workers = 1}),
               ::testing::Truly([](const std::string& err) {
                 return std::regex_search(err, std::regex("id=([0-9]+)\n[^]*weft: panic: fiber \\1 exited with an "
                                                          "uncaught exception: std::logic_error: dropped"));
               }));
}

TEST(FiberDeathTest, SpawnedExceptionPanics) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(weft::run([] {
    weft::spawn([] { throw std::invalid_argument("spawned"); });
    weft::this_fiber::sleep_for(1s);
  }, {.workers = 2}),
               "weft: panic: fiber [1-9][0-9]* exited with an uncaught exception: std::invalid_argument: spawned");
}

TEST_F(Fiber, InFiber) {
  EXPECT_FALSE(weft::in_fiber());
  EXPECT_EQ(weft::this_fiber::id(), 0u);
  weft::run([] {
    EXPECT_TRUE(weft::in_fiber());
    EXPECT_TRUE(weft::go([] { return weft::in_fiber(); }).join());
    std::thread t([] { EXPECT_FALSE(weft::in_fiber()); EXPECT_EQ(weft::this_fiber::id(), 0u); });
    t.join();
  }, {.workers = 2});
  EXPECT_FALSE(weft::in_fiber());
}

class FiberW : public WorkersTest {};

TEST_P(FiberW, IdsUniqueAndNonzero) {
  const int n = static_cast<int>(weft_test::scaled(20000));
  std::set<std::uint64_t> ids;
  weft::run([&] {
    weft::Mutex m;
    weft::WaitGroup wg;
    std::uint64_t main_id = weft::this_fiber::id();
    EXPECT_NE(main_id, 0u);
    ids.insert(main_id);
    for (int i = 0; i < n; i++) {
      wg.add();
      auto h = weft::go([&] {
        std::uint64_t id = weft::this_fiber::id();
        weft::this_fiber::yield();
        EXPECT_EQ(weft::this_fiber::id(), id);  // stable across a switch or a migration
        std::lock_guard<weft::Mutex> l(m);
        EXPECT_TRUE(ids.insert(id).second) << "duplicate id " << id;
        wg.done();
      });
      EXPECT_NE(h.id(), 0u);
    }
    wg.wait();
  }, opts());
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(n) + 1);
  EXPECT_EQ(ids.count(0), 0u);
  // Ids are unique for the process lifetime, across runs too.
  std::uint64_t later = weft::run([] { return weft::this_fiber::id(); }, {.workers = 1});
  EXPECT_EQ(ids.count(later), 0u);
}

// errno is saved and restored per fiber. It is read and written here
// through functions that are not inlined: __errno_location() is declared
// const, so within one function the compiler may keep errno's address (the
// old thread's) across a switch, and after a migration it would then read
// another thread's errno. That is the same hazard as any thread_local (see
// runtime.hpp), not something a runtime can fix.
[[gnu::noinline]] int get_errno() { return errno; }
[[gnu::noinline]] void set_errno(int v) { errno = v; }

TEST_P(FiberW, ErrnoPreservedAcrossSwitches) {
  weft::run([] {
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 64; i++) {
      hs.push_back(weft::go([i] {
        for (int k = 0; k < 200; k++) {
          set_errno(1000 + i * 1000 + k);
          if (k % 3 == 0) weft::this_fiber::yield();
          else if (k % 3 == 1) weft::this_fiber::sleep_for(std::chrono::microseconds(k % 7));
          else weft::go([] { set_errno(5); }).join();
          ASSERT_EQ(get_errno(), 1000 + i * 1000 + k);
        }
      }));
    }
    for (auto& h : hs) h.join();
  }, opts());
}

// A fiber parked inside a catch block keeps its exception-handling state:
// std::current_exception() and rethrow still see its own exception after
// the park, even though other fibers threw and caught meanwhile on the same
// (or another) thread.
TEST_P(FiberW, ExceptionStateSurvivesPark) {
  weft::run([] {
    weft::Mutex m;
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 32; i++) {
      hs.push_back(weft::go([i, &m] {
        for (int k = 0; k < 20; k++) {
          std::string mine = std::to_string(i);
          mine += " round ";
          mine += std::to_string(k);
          try {
            throw std::runtime_error(mine);
          } catch (const std::runtime_error&) {
            switch (k % 3) {
              case 0: weft::this_fiber::yield(); break;
              case 1: weft::this_fiber::sleep_for(50us); break;
              case 2: { std::lock_guard<weft::Mutex> l(m); weft::this_fiber::yield(); } break;
            }
            EXPECT_EQ(std::uncaught_exceptions(), 0);
            std::exception_ptr e = std::current_exception();
            ASSERT_TRUE(e);
            try {
              std::rethrow_exception(e);
            } catch (const std::runtime_error& again) {
              ASSERT_EQ(std::string(again.what()), mine);
            }
            try {
              throw;  // a bare rethrow also finds this fiber's exception
            } catch (const std::runtime_error& again) {
              ASSERT_EQ(std::string(again.what()), mine);
            }
          }
          EXPECT_FALSE(std::current_exception());
        }
      }));
    }
    for (auto& h : hs) h.join();
  }, opts());
}

TEST_P(FiberW, YieldLetsOthersRun) {
  weft::run([] {
    std::atomic<int> turns{0};
    std::atomic<bool> stop{false};
    auto spinner = weft::go([&] {
      while (!stop.load()) weft::this_fiber::yield();
    });
    auto counter = weft::go([&] {
      for (int i = 0; i < 1000; i++) {
        turns++;
        weft::this_fiber::yield();
      }
    });
    counter.join();
    stop = true;
    spinner.join();
    EXPECT_EQ(turns.load(), 1000);
  }, opts());
}

INSTANTIATE_TEST_SUITE_P(Workers, FiberW, ::testing::ValuesIn(weft_test::kWorkerCounts), weft_test::workers_name);

TEST_F(Fiber, MisuseOutsideOrInsideRuntime) {
  EXPECT_THROW(weft::go([] {}), std::logic_error);
  weft::run([] { EXPECT_THROW(weft::run([] {}, {.workers = 1}), std::logic_error); }, {.workers = 1});
}

// ---- Options and WEFT_WORKERS -------------------------------------------------

struct EnvGuard {
  std::string old;
  bool had;
  EnvGuard() : had(std::getenv("WEFT_WORKERS") != nullptr) {
    if (had) old = std::getenv("WEFT_WORKERS");
  }
  ~EnvGuard() {
    if (had) setenv("WEFT_WORKERS", old.c_str(), 1); else unsetenv("WEFT_WORKERS");
  }
};

unsigned workers_of_run(weft::Options o) {
  return weft::run([] { return weft::rt::current_worker()->rt->nworkers; }, o);
}

TEST_F(Fiber, WorkersFromOptionsEnvOrHardware) {
  EnvGuard g;
  unsetenv("WEFT_WORKERS");
  EXPECT_EQ(workers_of_run({.workers = 3}), 3u);
  unsigned hw = std::thread::hardware_concurrency();
  EXPECT_EQ(workers_of_run({}), hw ? hw : 1);
  setenv("WEFT_WORKERS", "5", 1);
  EXPECT_EQ(workers_of_run({}), 5u);
  EXPECT_EQ(workers_of_run({.workers = 2}), 2u);  // explicit options win
}

TEST_F(Fiber, InvalidWeftWorkersThrows) {
  EnvGuard g;
  for (const char* bad : {"0", "-1", "abc", "", "3x", "1025", "99999999999999999999"}) {
    setenv("WEFT_WORKERS", bad, 1);
    EXPECT_THROW(workers_of_run({}), std::invalid_argument) << "WEFT_WORKERS=\"" << bad << "\"";
  }
}

TEST_F(Fiber, OptionsValidation) {
  EXPECT_THROW(weft::run([] {}, {.workers = 1025}), std::invalid_argument);
  EXPECT_THROW(weft::run([] {}, {.workers = 1, .stack_size = 4096}), std::invalid_argument);
  EXPECT_THROW(weft::run([] {}, {.workers = 1, .stack_size = 1}), std::invalid_argument);
  // Sizes that are not a page multiple are rounded up.
  EXPECT_EQ(weft::run([] { return weft::go([] { return 1; }).join(); }, {.workers = 1, .stack_size = 100000}), 1);
  EXPECT_EQ(weft::run([] { return 2; }, {.workers = 1, .stack_size = 8 << 20}), 2);
}

}  // namespace
