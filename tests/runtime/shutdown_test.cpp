// shutdown_test.cpp: fibers still alive when run()'s main returns are
// unwound (WakeReason::Cancel, FiberUnwind): every destructor runs, nothing
// leaks (the fixture checks the runtime's teardown accounting; ASan builds
// run LeakSanitizer at exit).
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::Probe;
using weft_test::WorkersTest;

class Shutdown : public WorkersTest {
 protected:
  void SetUp() override {
    WorkersTest::SetUp();
    Probe::reset();
  }
};

// Fibers parked on every kind of wait when main returns: each holds RAII
// probes (and heap memory, for LeakSanitizer). All are destroyed by the
// time run() returns.
TEST_P(Shutdown, ParkedFibersAreUnwound) {
  struct Shared {
    weft::Mutex m, held;
    weft::CondVar cv;
    weft::WaitGroup wg;
  };
  auto shared = std::make_shared<Shared>();
  weft::run([shared] {
    auto& s = *shared;
    s.wg.add(1);
    s.held.lock();  // never unlocked: fibers queue on it forever
    weft::WaitGroup parked;
    const int per_kind = 20;
    parked.add(6 * per_kind);
    for (int i = 0; i < per_kind; i++) {
      weft::spawn([shared, &parked] {  // CondVar, never notified
        Probe p;
        auto heap = std::make_unique<std::string>("cv");
        std::unique_lock<weft::Mutex> l(shared->m);
        parked.done();
        shared->cv.wait(l);
        ADD_FAILURE() << "woken normally";
      });
      weft::spawn([&parked] {  // a long sleep
        Probe p;
        auto heap = std::make_unique<std::vector<int>>(100);
        parked.done();
        weft::this_fiber::sleep_for(1h);
        ADD_FAILURE() << "slept an hour";
      });
      weft::spawn([shared, &parked] {  // the Mutex
        Probe p;
        parked.done();
        std::lock_guard<weft::Mutex> l(shared->held);
        ADD_FAILURE() << "got a mutex nobody unlocks";
      });
      weft::spawn([shared, &parked] {  // the WaitGroup
        Probe p;
        parked.done();
        shared->wg.wait();
        ADD_FAILURE() << "WaitGroup reached zero";
      });
      weft::spawn([&parked] {  // join of a fiber that sleeps forever
        Probe p;
        auto h = weft::go([] {
          Probe inner;
          weft::this_fiber::sleep_for(1h);
        });
        parked.done();
        h.join();
        ADD_FAILURE() << "joined a fiber that sleeps an hour";
      });
      weft::spawn([&parked] {  // runnable, never parks: unwound at its next yield
        Probe p;
        parked.done();
        for (;;) weft::this_fiber::yield();
      });
    }
    parked.wait();
    weft::this_fiber::sleep_for(2ms);  // let them reach their waits
    EXPECT_EQ(Probe::destroyed.load(), 0);
  }, opts());
  EXPECT_EQ(Probe::made.load(), 6 * 20 + 20);
  EXPECT_EQ(Probe::destroyed.load(), Probe::made.load());
}

// A destructor that parks while its fiber unwinds (locks a Mutex, sleeps,
// joins): the unwinding fiber parks normally and finishes its cleanup.
TEST_P(Shutdown, DestructorsMayParkWhileUnwinding) {
  static std::atomic<int> cleaned{0};
  cleaned = 0;
  struct ParkingCleanup {
    weft::Mutex* m;
    ~ParkingCleanup() {
      { std::lock_guard<weft::Mutex> l(*m); }
      weft::this_fiber::sleep_for(1ms);
      weft::go([] { return 1; }).join();
      cleaned++;
    }
  };
  auto m = std::make_shared<weft::Mutex>();
  weft::run([m] {
    for (int i = 0; i < 10; i++) {
      weft::spawn([m] {
        ParkingCleanup c{m.get()};
        weft::this_fiber::sleep_for(1h);
      });
    }
    weft::this_fiber::yield();
  }, opts());
  EXPECT_EQ(cleaned.load(), 10);
}

// catch (const std::exception&) does not swallow the unwind marker, and a
// catch (...) that rethrows is fine.
TEST_P(Shutdown, UnwindPassesStdExceptionHandlers) {
  static std::atomic<int> swallowed{0}, rethrown{0};
  swallowed = rethrown = 0;
  weft::run([] {
    for (int i = 0; i < 10; i++) {
      weft::spawn([] {
        Probe p;
        try {
          weft::this_fiber::sleep_for(1h);
        } catch (const std::exception&) {
          swallowed++;
        }
      });
      weft::spawn([] {
        try {
          weft::this_fiber::sleep_for(1h);
        } catch (...) {
          rethrown++;
          throw;
        }
      });
    }
    weft::this_fiber::sleep_for(1ms);
  }, opts());
  EXPECT_EQ(swallowed.load(), 0);
  EXPECT_EQ(rethrown.load(), 10);
  EXPECT_EQ(Probe::destroyed.load(), 10);
}

// main throws while other fibers are parked: they are unwound, then run()
// rethrows main's exception.
TEST_P(Shutdown, MainThrowsWhileOthersParked) {
  EXPECT_THROW(weft::run([]() -> int {
    for (int i = 0; i < 10; i++)
      weft::spawn([] {
        Probe p;
        weft::this_fiber::sleep_for(1h);
      });
    throw std::runtime_error("main failed");
  }, opts()),
               std::runtime_error);
  EXPECT_EQ(Probe::destroyed.load(), 10);
}

// Many short runs in a row, each leaving parked fibers behind.
TEST_P(Shutdown, RepeatedRuns) {
  for (int r = 0; r < 20; r++) {
    weft::run([] {
      for (int i = 0; i < 20; i++)
        weft::spawn([] {
          Probe p;
          weft::this_fiber::sleep_for(1h);
        });
    }, opts());
  }
  EXPECT_EQ(Probe::destroyed.load(), 400);
  EXPECT_EQ(Probe::made.load(), 400);
}

INSTANTIATE_TEST_SUITE_P(Workers, Shutdown, ::testing::ValuesIn(weft_test::kWorkerCounts), weft_test::workers_name);

}  // namespace
