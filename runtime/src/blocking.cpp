// blocking.cpp: the blocking pool behind weft::blocking().
//
// A process-wide pool of plain threads (never destroyed: detached threads
// may outlive static destructors). It grows by one thread whenever a job is
// queued and no thread is idle, up to kMaxThreads; a thread idle for
// kIdleExit leaves. Jobs wait in FIFO order when all threads are busy.
//
// A job (weft/blocking.hpp) is shared by the calling fiber and the pool
// thread that runs it, refcounted. The fiber parks until the job is done.
// If the fiber is cancelled meanwhile it marks the job abandoned and leaves
// (the job owns f and its result; the pool drops them). If the runtime
// asks it to unwind at shutdown it keeps waiting (marked unwinding, so it
// is not cancelled again), then unwinds: f may still refer to its frames.
//
// Shared state: Pool::mu guards queue, idle, threads. Job::lock guards done,
// abandoned and parker; the pool thread copies the parker under it (pinning
// the fiber's runtime: DeferredWake) and unparks after releasing it, so the
// fiber's side is never touched once `done` is visible.
// Lock order: Pool::mu and Job::lock are never held together.
#include <weft/blocking.hpp>
#include <weft/runtime.hpp>
#include <weft/sync.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace weft::detail {

namespace {

using Job = BlockingJob;

class Pool {
 public:
  static constexpr unsigned kMaxThreads = 256;
  static constexpr auto kIdleExit = std::chrono::seconds(10);

  void submit(Job* j) {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(j);
    if (idle_ > 0) {
      cv_.notify_one();
    } else if (threads_ < kMaxThreads) {
      threads_++;
      std::thread([this] { loop(); }).detach();
    }
  }

 private:
  void loop() {
    rt::mark_internal_thread();  // not a possible waker for the deadlock check
    std::unique_lock<std::mutex> g(mu_);
    for (;;) {
      while (queue_.empty()) {
        idle_++;
        bool timed_out = !cv_.wait_for(g, kIdleExit, [this] { return !queue_.empty(); });
        idle_--;
        if (timed_out) {
          threads_--;
          return;
        }
      }
      Job* j = queue_.front();
      queue_.pop_front();
      g.unlock();
      try {
        j->run(j);
      } catch (...) {
        j->error = std::current_exception();
      }
      // The wake is decided under j->lock and carried out after it: pin
      // the fiber's runtime meanwhile (park.hpp: DeferredWake). Without the
      // pin: a fiber cancelled at shutdown sees `done` under the lock right
      // after we release it, returns, unwinds, lets run() end and free the
      // sync table, and our late unpark of its old parker reads freed memory.
      rt::DeferredWake wake;
      {
        std::lock_guard<weft::detail::SpinLock> jl(j->lock);
        j->done = true;
        if (!j->abandoned) wake.set(j->parker);
      }
      wake.fire();
      blocking_release(j);  // an abandoned job's last reference: f and its result go here
      g.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;  // guarded by mu_
  unsigned idle_ = 0;       // guarded by mu_
  unsigned threads_ = 0;    // guarded by mu_
};

Pool& pool() {
  static Pool* p = new Pool;  // immortal, see above
  return *p;
}

}  // namespace

void blocking_release(BlockingJob* j) noexcept {
  if (j->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) j->destroy(j);
}

void run_blocking(BlockingJob* j) {
  try {
    rt::cancellation_point();
  } catch (...) {
    j->refs.store(1, std::memory_order_relaxed);  // never submitted: ours alone
    blocking_release(j);
    throw;
  }
  j->parker = rt::prepare_park(WaitKind::Blocking, j);
  try {
    pool().submit(j);
  } catch (...) {
    j->refs.store(1, std::memory_order_relaxed);
    blocking_release(j);
    throw;
  }
  bool unwinding = false;
  for (;;) {
    WakeReason r = rt::park(j->parker);
    std::unique_lock<weft::detail::SpinLock> g(j->lock);
    if (j->done) break;
    if (r == WakeReason::Cancel && !unwinding) {
      if (!rt::shutting_down()) {
        j->abandoned = true;  // the pool drops the job when f returns
        g.unlock();
        blocking_release(j);
        rt::throw_unwind();
      }
      unwinding = true;
      rt::begin_unwinding();  // f may refer to our frames: wait for it, uncancellable
    }
    j->parker = rt::prepare_park(WaitKind::Blocking, j);
  }
  if (unwinding) {
    blocking_release(j);
    rt::throw_unwind();
  }
}

}  // namespace weft::detail
