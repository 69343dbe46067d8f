// rwmutex_test.cpp: weft::RWMutex (sync.hpp/sync.cpp), over worker counts 1
// and 2, with fibers and plain std::threads. Ports of Go's
// sync/rwmutex_test.go (TestParallelReaders, TestRWMutex's try-lock checks
// and its hammer, TestRLocker with std::shared_lock), plus the writer
// preference rules (a waiting writer is not starved, readers that arrived
// during a hold go before the next writer), the lifetime rule (API.md: the
// last party to use it frees it while its waker may still be inside), and
// the shutdown path of parks that are not cancellation points.
//
// Verdicts are about order and exclusion, never timing; "eventually" is a
// failure bound of 10 s (kBound).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <regex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using weft::Chan;
using weft::Clock;
using weft_test::scaled;
using weft_test::since;
using weft_test::WorkersTest;

constexpr auto kBound = 10s;

using weft_test::wait_parked;

// Receives from ch, failing (instead of hanging) after kBound.
bool recv_within(Chan<int>& ch, int* out = nullptr) {
  bool got = false;
  weft::select(weft::recv(ch, [&](std::optional<int> v) {
                 got = v.has_value();
                 if (got && out) *out = *v;
               }),
               weft::after(kBound, [] {}));
  return got;
}

class RWMutexTest : public WorkersTest {};
class RWMutexOrder : public weft_test::RuntimeTest {};

// Go's TestRWMutex, first part: try_lock and try_lock_shared against each
// mode, on a fiber and on a plain thread.
TEST_P(RWMutexTest, TryLockSemantics) {
  auto body = [] {
    weft::RWMutex m;
    m.lock();
    EXPECT_FALSE(m.try_lock()) << "try_lock succeeded with the mutex locked";
    EXPECT_FALSE(m.try_lock_shared()) << "try_lock_shared succeeded with the mutex locked";
    m.unlock();
    EXPECT_TRUE(m.try_lock()) << "try_lock failed with the mutex unlocked";
    m.unlock();
    EXPECT_TRUE(m.try_lock_shared()) << "try_lock_shared failed with the mutex unlocked";
    EXPECT_TRUE(m.try_lock_shared()) << "try_lock_shared failed with the mutex read-locked";
    EXPECT_FALSE(m.try_lock()) << "try_lock succeeded with the mutex read-locked";
    m.unlock_shared();
    m.unlock_shared();
    EXPECT_TRUE(m.try_lock());
    m.unlock();
  };
  weft::run(body, opts());
  std::thread(body).join();
}

// Go's TestParallelReaders: n readers hold the read lock at once (each
// reports it holds it, then waits for permission to unlock).
TEST_P(RWMutexTest, ParallelReaders) {
  for (int n : {1, 3, 4, 50}) {
    weft::run([n] {
      weft::RWMutex m;
      Chan<int> locked(0), unlock(0), done(0);
      for (int i = 0; i < n; i++) {
        weft::spawn([&] {
          m.lock_shared();
          locked.send(1);
          (void)unlock.recv();
          m.unlock_shared();
          done.send(1);
        });
      }
      for (int i = 0; i < n; i++) ASSERT_TRUE(recv_within(locked)) << "reader " << i << " of " << n << " never got in";
      EXPECT_FALSE(m.try_lock()) << "a writer got in while readers hold the lock";
      for (int i = 0; i < n; i++) unlock.send(1);
      for (int i = 0; i < n; i++) ASSERT_TRUE(recv_within(done));
      EXPECT_TRUE(m.try_lock());
      m.unlock();
    }, opts());
  }
}

// Go's TestRLocker, with std::shared_lock as the read locker: a fiber takes
// two read locks, then asks for the write lock; the main fiber releases the
// read locks one by one and checks that the writer gets in only after both.
TEST_P(RWMutexTest, SharedLockAndUniqueLock) {
  weft::run([] {
    weft::RWMutex wl;
    Chan<int> wlocked(1), rlocked(1);
    const int n = 10;
    std::shared_lock<weft::RWMutex> r1(wl, std::defer_lock), r2(wl, std::defer_lock);
    std::unique_lock<weft::RWMutex> w(wl, std::defer_lock);
    auto h = weft::go([&] {
      for (int i = 0; i < n; i++) {
        r1.lock();
        r2.lock();
        rlocked.send(1);
        w.lock();
        wlocked.send(1);
      }
    });
    for (int i = 0; i < n; i++) {
      ASSERT_TRUE(recv_within(rlocked));
      r1.unlock();
      weft::this_fiber::sleep_for(200us);  // give a wrongly admitted writer time to show
      EXPECT_FALSE(wlocked.try_recv()) << "the writer got in while a read lock was held";
      r2.unlock();
      ASSERT_TRUE(recv_within(wlocked));
      EXPECT_FALSE(rlocked.try_recv()) << "a reader got in while the write lock was held";
      w.unlock();
    }
    h.join();
  }, opts());
}

// Go's HammerRWMutex: two writers and numReaders readers; `activity` is
// readers inside + 10000 per writer inside, so any overlap of a writer with
// anyone shows. Writers and readers yield inside sometimes.
void hammer(weft::Options o, int readers, int iters) {
  std::atomic<int> activity{0};
  std::atomic<int> bad{0};
  weft::run([&] {
    weft::RWMutex m;
    weft::WaitGroup wg;
    auto writer = [&] {
      for (int i = 0; i < iters; i++) {
        std::lock_guard<weft::RWMutex> l(m);
        if (activity.fetch_add(10000) + 10000 != 10000) bad++;
        if (i % 7 == 0) weft::this_fiber::yield();
        activity.fetch_sub(10000);
      }
      wg.done();
    };
    auto reader = [&] {
      for (int i = 0; i < iters; i++) {
        std::shared_lock<weft::RWMutex> l(m);
        int n = activity.fetch_add(1) + 1;
        if (n < 1 || n >= 10000) bad++;
        if (i % 5 == 0) weft::this_fiber::yield();
        activity.fetch_sub(1);
      }
      wg.done();
    };
    wg.add(2 + readers);
    weft::go(writer).detach();
    int i = 0;
    for (; i < readers / 2; i++) weft::go(reader).detach();
    weft::go(writer).detach();
    for (; i < readers; i++) weft::go(reader).detach();
    ASSERT_TRUE(wg.wait_for(60s)) << "the hammer did not finish (a lost wake?)";
  }, o);
  EXPECT_EQ(bad.load(), 0) << "a writer overlapped with a reader or another writer";
  EXPECT_EQ(activity.load(), 0);
}

TEST_P(RWMutexTest, Hammer) {
  const int iters = static_cast<int>(scaled(1000));
  for (int readers : {1, 3, 10, 5, 100}) hammer(opts(), readers, iters);
}

// The hammer with plain threads among the fibers (threads block on their
// futex); writers on both sides.
TEST_P(RWMutexTest, HammerWithPlainThreads) {
  const int iters = static_cast<int>(scaled(2000));
  std::atomic<int> activity{0}, bad{0};
  weft::RWMutex m;
  auto writer = [&] {
    for (int i = 0; i < iters; i++) {
      std::lock_guard<weft::RWMutex> l(m);
      if (activity.fetch_add(10000) + 10000 != 10000) bad++;
      activity.fetch_sub(10000);
    }
  };
  auto reader = [&] {
    for (int i = 0; i < iters; i++) {
      std::shared_lock<weft::RWMutex> l(m);
      int n = activity.fetch_add(1) + 1;
      if (n < 1 || n >= 10000) bad++;
      activity.fetch_sub(1);
    }
  };
  weft::run([&] {
    std::thread tw(writer), tr(reader);
    std::vector<weft::JoinHandle<void>> hs;
    hs.push_back(weft::go(writer));
    for (int i = 0; i < 6; i++) hs.push_back(weft::go(reader));
    for (auto& h : hs) h.join();
    tw.join();  // blocks this worker: fine, the threads need no fiber to finish
    tr.join();
  }, opts());
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(activity.load(), 0);
}

// A waiting writer is not starved: readers keep the read lock held without
// a gap (each takes it again before the others have let go), yet a writer
// that asks gets it, since new readers queue behind it.
TEST_P(RWMutexTest, WriterNotStarvedByOverlappingReaders) {
  weft::run([] {
    weft::RWMutex m;
    std::atomic<bool> stop{false};
    std::atomic<long> reads{0};
    weft::WaitGroup wg;
    const int readers = 8;
    wg.add(readers);
    for (int i = 0; i < readers; i++) {
      weft::spawn([&] {
        while (!stop.load()) {
          std::shared_lock<weft::RWMutex> l(m);
          reads++;
          weft::this_fiber::sleep_for(50us);  // overlap with the other readers
        }
        wg.done();
      });
    }
    while (reads.load() < 100) weft::this_fiber::sleep_for(100us);
    Chan<int> got(1);
    weft::spawn([&] {
      m.lock();
      got.send(1);
      m.unlock();
    });
    EXPECT_TRUE(recv_within(got)) << "the writer was starved by overlapping readers";
    stop = true;
    EXPECT_TRUE(wg.wait_for(kBound));
  }, opts());
}

// The order rules, step by step on one worker (deterministic):
//   reader A holds; writer W asks (pending); new reader B must queue behind
//   W (try_lock_shared fails too); A leaves -> W gets it; readers C, D
//   arrive during W's hold and writer W2 queues; W unlocks -> B, C, D get in
//   before W2; they leave -> W2.
TEST_F(RWMutexOrder, ReadersAndWriters) {
  weft::run([] {
    weft::RWMutex m;
    std::vector<std::string> log;
    weft::Mutex log_mu;
    auto note = [&](const char* s) {
      std::lock_guard<weft::Mutex> l(log_mu);
      log.push_back(s);
    };
    m.lock_shared();  // A (this fiber)
    auto w = weft::go([&] {
      m.lock();
      note("W");
      weft::this_fiber::sleep_for(1ms);
      m.unlock();
    });
    wait_parked(1);
    EXPECT_FALSE(m.try_lock_shared()) << "a new reader got past a waiting writer";
    Chan<int> b_in(0), b_out(0);
    auto b = weft::go([&] {
      m.lock_shared();
      note("B");
      (void)b_in.recv();
      m.unlock_shared();
    });
    wait_parked(2);
    m.unlock_shared();  // A leaves: W gets in
    auto t0 = Clock::now();
    while (true) {
      {
        std::lock_guard<weft::Mutex> l(log_mu);
        if (!log.empty()) break;
      }
      ASSERT_LT(since(t0), kBound);
      weft::this_fiber::yield();
    }
    // W holds (sleeping): C, D and W2 queue.
    auto c = weft::go([&] {
      m.lock_shared();
      note("C");
      m.unlock_shared();
    });
    auto d = weft::go([&] {
      m.lock_shared();
      note("D");
      m.unlock_shared();
    });
    auto w2 = weft::go([&] {
      m.lock();
      note("W2");
      m.unlock();
    });
    w.join();
    c.join();
    d.join();
    // B still holds its read lock: W2 waits for it.
    weft::this_fiber::sleep_for(1ms);
    {
      std::lock_guard<weft::Mutex> l(log_mu);
      EXPECT_EQ(log.size(), 4u);
    }
    b_in.send(1);
    b.join();
    w2.join();
    ASSERT_EQ(log.size(), 5u);
    EXPECT_EQ(log[0], "W");
    EXPECT_EQ(log[4], "W2") << "the next writer got in before readers that arrived during the hold";
    std::vector<std::string> mid(log.begin() + 1, log.begin() + 4);
    std::sort(mid.begin(), mid.end());
    EXPECT_EQ(mid, (std::vector<std::string>{"B", "C", "D"}));
  }, weft::Options{.workers = 1});
}

// Writers queue in FIFO order behind a holder.
TEST_P(RWMutexTest, WritersServedInOrder) {
  weft::run([] {
    weft::RWMutex m;
    std::vector<int> order;
    m.lock();
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 5; i++) {
      hs.push_back(weft::go([&, i] {
        m.lock();
        order.push_back(i);  // under the write lock
        m.unlock();
      }));
      wait_parked(static_cast<std::uint64_t>(i) + 1);
    }
    m.unlock();
    for (auto& h : hs) h.join();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  }, opts());
}

// RWMutex locks are not cancellation points: a cancelled fiber parked in
// lock() or lock_shared() still gets the lock.
TEST_P(RWMutexTest, LocksAreNotCancellationPoints) {
  weft::run([] {
    weft::RWMutex m;
    m.lock();
    auto w = weft::go([&] {
      m.lock();
      m.unlock();
      return 1;
    });
    auto r = weft::go([&] {
      m.lock_shared();
      m.unlock_shared();
      return 2;
    });
    wait_parked(2);
    w.cancel();
    r.cancel();
    weft::this_fiber::sleep_for(1ms);
    EXPECT_FALSE(w.done());
    EXPECT_FALSE(r.done());
    m.unlock();
    EXPECT_EQ(w.join(), 1);
    EXPECT_EQ(r.join(), 2);
    // A fiber cancelled before it asks still gets both locks, contended.
    m.lock_shared();
    std::atomic<bool> go_on{false};
    auto late = weft::go([&] {
      while (!go_on.load()) weft::this_fiber::yield();  // yield is no cancellation point
      m.lock();  // parks behind our read lock
      m.unlock();
      m.lock_shared();
      m.unlock_shared();
      return weft::this_fiber::cancelled();
    });
    late.cancel();
    go_on = true;
    wait_parked(1);
    m.unlock_shared();
    EXPECT_TRUE(late.join());
  }, opts());
}

// Stress: many fibers, few writers, both workers, tiny critical sections;
// a counter protected by the write lock and read under the read lock must
// never be seen torn (two halves written in one write section).
TEST_P(RWMutexTest, StressManyFibers) {
  const int fibers = static_cast<int>(weft_test::live_fiber_cap(scaled(2000)));
  const int iters = 50;
  std::atomic<int> torn{0};
  long a = 0, b = 0;  // written under the write lock as a pair
  weft::run([&] {
    weft::RWMutex m;
    weft::WaitGroup wg;
    wg.add(fibers);
    for (int f = 0; f < fibers; f++) {
      weft::spawn([&, f] {
        for (int i = 0; i < iters; i++) {
          if ((f + i) % 16 == 0) {
            std::lock_guard<weft::RWMutex> l(m);
            a++;
            if (i % 3 == 0) weft::this_fiber::yield();
            b++;
          } else {
            std::shared_lock<weft::RWMutex> l(m);
            long x = a;
            if (i % 4 == 0) weft::this_fiber::yield();
            if (x != a || a != b) torn++;
          }
        }
        wg.done();
      });
    }
    ASSERT_TRUE(wg.wait_for(120s));
  }, opts());
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(a, b);
}

// ---- lifetime (API.md) ------------------------------------------------------

// Waits on done; a fiber stuck on a freed mutex never sends: abort with a
// message rather than hang.
void expect_done(Chan<int>& done, const char* what) {
  if (!recv_within(done)) {
    std::fprintf(stderr, "FAILED: %s: a fiber never finished (it touched the freed RWMutex?)\n", what);
    std::abort();
  }
}

// Each woken party's last act is freeing the mutex while its waker may
// still be inside unlock()/unlock_shared() (heap-allocated: ASan sees a
// touch after delete; TSan sees the race):
//  1. writer W holds; reader R parks; W unlocks (hands R a unit); R
//     unlocks and deletes.
//  2. reader R holds; writer W parks (pending); R's unlock_shared hands W
//     the lock; W unlocks and deletes.
//  3. writer W1 holds; W2 parks; W1's unlock hands W2 the lock; W2 unlocks
//     and deletes.
TEST_P(RWMutexTest, FreedByWokenParty) {
  const int rounds = static_cast<int>(scaled(300));
  weft::run([&] {
    for (int i = 0; i < rounds; i++) {
      for (int kind = 0; kind < 3; kind++) {
        auto* m = new weft::RWMutex;
        Chan<int> done(1);
        if (kind == 0 || kind == 2) m->lock(); else m->lock_shared();
        weft::spawn([m, kind, done]() mutable {
          if (kind == 0) {
            m->lock_shared();
            m->unlock_shared();
          } else {
            m->lock();
            m->unlock();
          }
          delete m;
          done.send(1);
        });
        if (i % 2) wait_parked(1); else weft::this_fiber::yield();
        if (kind == 1) m->unlock_shared(); else m->unlock();
        // m may be freed from here on.
        expect_done(done, "RWMutex freed by the woken party");
      }
    }
  }, opts());
}

// Shutdown reaches fibers parked in lock() and lock_shared() (not
// cancellation points, but the runtime unwinds them): run() returns, and
// the mutex, unlocked by the holder's unwinding, is consistent afterwards.
TEST_P(RWMutexTest, ShutdownUnwindsParkedLockers) {
  weft::RWMutex m;
  weft::run([&] {
    weft::spawn([&] {
      std::unique_lock<weft::RWMutex> l(m);
      weft::this_fiber::sleep_for(1h);
    });
    weft::this_fiber::sleep_for(1ms);
    for (int i = 0; i < 3; i++) {
      weft::spawn([&] { std::shared_lock<weft::RWMutex> l(m); });
      weft::spawn([&] { std::unique_lock<weft::RWMutex> l(m); });
    }
    wait_parked(7);
  }, opts());
  // Everyone unwound; whatever got the lock on the way gave it back.
  EXPECT_TRUE(m.try_lock());
  m.unlock();
  EXPECT_TRUE(m.try_lock_shared());
  m.unlock_shared();
}

// ---- dumps and deadlocks ------------------------------------------------------

// A fiber dump names what fibers parked in the new primitives wait on.
TEST_F(RWMutexOrder, DumpNamesRWMutexSemaphoreOnce) {
  std::string out;
  weft::run([&] {
    weft::RWMutex m;
    weft::Semaphore s(0);
    weft::Once once;
    Chan<int> release(0);
    m.lock();
    weft::spawn(weft::Named{"writer"}, [&] { std::lock_guard<weft::RWMutex> l(m); });
    weft::spawn(weft::Named{"reader"}, [&] { std::shared_lock<weft::RWMutex> l(m); });
    weft::spawn(weft::Named{"acquirer"}, [&] { s.acquire(); });
    weft::spawn(weft::Named{"runner"}, [&] { once.call([&] { (void)release.recv(); }); });
    weft::spawn(weft::Named{"caller"}, [&] { once.call([] {}); });
    wait_parked(5);
    std::ostringstream o;
    weft::dump(o);
    out = o.str();
    m.unlock();
    s.release();
    release.send(1);
    EXPECT_TRUE(weft_test::only_caller_left());
  }, weft::Options{.workers = 1});
  auto has = [&](const char* re) { return std::regex_search(out, std::regex(re)); };
  EXPECT_TRUE(has(R"(fiber \d+ "writer" \[parked \d+ ms: rwmutex lock 0x)")) << out;
  EXPECT_TRUE(has(R"(fiber \d+ "reader" \[parked \d+ ms: rwmutex lock 0x)")) << out;
  EXPECT_TRUE(has(R"(fiber \d+ "acquirer" \[parked \d+ ms: semaphore acquire 0x)")) << out;
  EXPECT_TRUE(has(R"(fiber \d+ "runner" \[parked \d+ ms: chan recv 0x)")) << out;
  EXPECT_TRUE(has(R"(fiber \d+ "caller" \[parked \d+ ms: once wait 0x)")) << out;
}

// Go's classic RWMutex deadlock: a fiber holding a read lock asks for the
// write lock. The deadlock report names it, and the runtime unwinds.
TEST_F(RWMutexOrder, ReadThenWriteInOneFiberIsADeadlock) {
  WEFT_SKIP_WITHOUT_DEADLOCK_DETECTION();
  testing::internal::CaptureStderr();
  EXPECT_THROW(weft::run([] {
    weft::RWMutex m;
    m.lock_shared();
    m.lock();
  }, weft::Options{.workers = 1}), weft::Deadlock);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("weft: all fibers are asleep - deadlock!"), std::string::npos) << err;
  EXPECT_NE(err.find("rwmutex lock"), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(Workers, RWMutexTest, ::testing::Values(1u, 2u), weft_test::workers_name);

}  // namespace
