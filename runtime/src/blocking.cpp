// blocking.cpp: the blocking pool behind weft::blocking().
//
// A process-wide pool of plain threads (never destroyed: detached threads
// may outlive static destructors). It grows by one thread whenever a job is
// queued and no thread is idle, up to kMaxThreads; a thread idle for
// kIdleExit leaves. Jobs wait in FIFO order when all threads are busy.
//
// A job record lives on the calling fiber's stack. The fiber parks until the
// job is done; if the runtime asks it to unwind meanwhile it keeps waiting
// (marked unwinding, so it is not cancelled again) because the job still
// writes into its stack, then unwinds.
//
// Shared state: Pool::mu guards queue, idle, threads. Job::lock guards done
// and parker; the pool thread copies the parker under it (pinning the
// fiber's runtime: DeferredWake) and unparks after releasing it, so the
// record is never touched once `done` is visible.
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

struct Job {
  void (*fn)(void*);
  void* arg;
  std::exception_ptr error;
  weft::detail::SpinLock lock;
  bool done = false;      // guarded by lock
  rt::Parker parker;      // guarded by lock
};

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
        j->fn(j->arg);
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
        wake.set(j->parker);
      }
      wake.fire();
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

void run_blocking(void (*fn)(void*), void* arg) {
  if (!in_fiber()) {
    fn(arg);  // a plain thread may block itself
    return;
  }
  Job j{fn, arg, nullptr, {}, false, {}};
  j.parker = rt::prepare_park(WaitKind::Blocking, &j);
  pool().submit(&j);
  bool cancelled = false;
  for (;;) {
    if (rt::park(j.parker) == WakeReason::Cancel && !cancelled) {
      cancelled = true;
      rt::begin_unwinding();  // the job still owns our stack: wait for it, uncancellable
    }
    std::lock_guard<weft::detail::SpinLock> g(j.lock);
    if (j.done) break;
    j.parker = rt::prepare_park(WaitKind::Blocking, &j);
  }
  if (cancelled) rt::throw_unwind();
  if (j.error) std::rethrow_exception(j.error);
}

}  // namespace weft::detail
