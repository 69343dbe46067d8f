// pollfd.cpp: the descriptor pool, the runtime's idle poller, waits and
// deadlines. Invariants and lock order: see pollfd.hpp.
#include "pollfd.hpp"

#include <cstdio>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include <weft/net.hpp>

#include "poller.hpp"

namespace weft::net::detail {

namespace {

// ---- the descriptor pool (process-wide, immortal) ---------------------------------

class Pool {
 public:
  static constexpr std::uint32_t kChunk = 256;
  static constexpr std::uint32_t kMaxChunks = 65536;

  PollDesc* get() {
    std::lock_guard<std::mutex> g(mu_);
    if (free_.empty()) {
      std::uint32_t n = nchunks_.load(std::memory_order_relaxed);
      if (n == kMaxChunks)
        throw std::system_error(std::make_error_code(std::errc::too_many_files_open), "weft: too many sockets");
      auto* c = new PollDesc[kChunk];
      for (std::uint32_t i = 0; i < kChunk; i++) {
        c[i].index = n * kChunk + i;
        free_.push_back(&c[kChunk - 1 - i]);
      }
      chunks_[n] = c;
      nchunks_.store(n + 1, std::memory_order_release);
    }
    PollDesc* pd = free_.back();
    free_.pop_back();
    return pd;
  }
  void put(PollDesc* pd) {
    std::lock_guard<std::mutex> g(mu_);
    free_.push_back(pd);
  }
  // Any thread, no lock: chunks are never freed and published with release.
  PollDesc* at(std::uint32_t index) const noexcept {
    std::uint32_t c = index / kChunk;
    if (c >= nchunks_.load(std::memory_order_acquire)) return nullptr;
    return &chunks_[c][index % kChunk];
  }

 private:
  std::mutex mu_;
  std::vector<PollDesc*> free_;        // guarded by mu_
  PollDesc* chunks_[kMaxChunks] = {};  // append-only
  std::atomic<std::uint32_t> nchunks_{0};
};

Pool& pool() {
  static Pool* p = new Pool;  // immortal: late timers and events may still look
  return *p;
}

Slot& slot(PollDesc* pd, Dir d) { return d == Dir::Read ? pd->rd : pd->wr; }

// Wakes the fiber waiting on s, if any. Requires pd->lock.
void wake_slot(Slot& s, WakeReason r) noexcept {
  if (!s.waiting) return;
  s.waiting = false;
  rt::unpark(s.parker, r);
}

// ---- the runtime's idle poller ------------------------------------------------------

class Netpoller final : public rt::IdlePoller {
 public:
  void poll(Clock::time_point deadline) override {
    int n = backend_.wait(deadline, events_, Backend::kMaxEvents);
    for (int i = 0; i < n; i++) dispatch(events_[i]);
  }
  void wake() noexcept override { backend_.wake(); }
  Backend& backend() noexcept { return backend_; }

 private:
  static void dispatch(const PollEvent& ev) noexcept {
    PollDesc* pd = pool().at(static_cast<std::uint32_t>(ev.key));
    if (!pd) return;
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    if (pd->seq.load(std::memory_order_relaxed) != static_cast<std::uint32_t>(ev.key >> 32)) return;  // stale
    if (ev.readable) {
      pd->rd.ready = true;
      wake_slot(pd->rd, WakeReason::Event);
    }
    if (ev.writable) {
      pd->wr.ready = true;
      wake_slot(pd->wr, WakeReason::Event);
    }
  }
  Backend backend_;
  PollEvent events_[Backend::kMaxEvents];  // only the one polling thread uses it
};

// Dump entries of fibers parked on a socket name its fd.
void describe_io(WaitKind, const void* obj, char* buf, std::size_t size) noexcept {
  std::snprintf(buf, size, "fd %d", static_cast<const PollDesc*>(obj)->fd);
}

Netpoller& netpoller() {
  static const bool described = [] {
    rt::set_wait_describer(WaitKind::IoRead, describe_io);
    rt::set_wait_describer(WaitKind::IoWrite, describe_io);
    return true;
  }();
  (void)described;
  return *static_cast<Netpoller*>(rt::install_idle_poller([]() -> rt::IdlePoller* { return new Netpoller; }));
}

// Deadline timer callback: a = descriptor, seq = descriptor seq << 32 |
// timer generation << 1 | direction.
void on_deadline(void* a, void*, std::uint64_t seq) {
  auto* pd = static_cast<PollDesc*>(a);
  std::lock_guard<weft::detail::SpinLock> g(pd->lock);
  if (pd->seq.load(std::memory_order_relaxed) != static_cast<std::uint32_t>(seq >> 32)) return;
  Slot& s = slot(pd, (seq & 1) ? Dir::Write : Dir::Read);
  if (s.timer_gen != static_cast<std::uint32_t>(seq >> 1) % (1u << 31)) return;  // superseded
  s.expired = true;
  wake_slot(s, WakeReason::Timeout);
}

void final_close(PollDesc* pd) noexcept {
  // Closing a dup does not unregister it while the caller's fd refers to the
  // same file: remove it from the poller first.
  if (pd->foreign) {
    if (auto* p = static_cast<Netpoller*>(rt::current_idle_poller())) p->backend().disarm(pd->fd);
  }
  ::close(pd->fd);
  pd->fd = -1;
  pool().put(pd);
}

}  // namespace

[[noreturn]] void throw_closed(const char* op) {
  throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor),
                          std::string("weft: ") + op + ": use of closed socket");
}

PollDesc* open_desc(int fd, bool foreign) {
  Netpoller& np = netpoller();
  PollDesc* pd = pool().get();
  {
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    pd->fd = fd;
    pd->foreign = foreign;
    pd->refs.store(0, std::memory_order_relaxed);
    for (Slot* s : {&pd->rd, &pd->wr}) {
      s->ready = s->waiting = s->expired = false;
      s->deadline = Clock::time_point::max();
      s->timer_gen = (s->timer_gen + 1) % (1u << 31);
    }
  }
  try {
    np.backend().arm(fd, pd->key());
  } catch (...) {
    pd->seq.fetch_add(1, std::memory_order_relaxed);
    pool().put(pd);
    throw;
  }
  return pd;
}

void close_desc(PollDesc* pd, std::uint32_t seq) noexcept {
  {
    std::lock_guard<weft::detail::SpinLock> g(pd->lock);
    if (pd->seq.load(std::memory_order_relaxed) != seq) return;  // already closed
    pd->seq.store(seq + 1, std::memory_order_relaxed);
    for (Slot* s : {&pd->rd, &pd->wr}) {
      rt::timer_cancel(s->timer);
      wake_slot(*s, WakeReason::Event);  // the waiter sees the new seq and throws
    }
  }
  if (pd->refs.fetch_or(PollDesc::kClosing, std::memory_order_acq_rel) == 0) final_close(pd);
}

void op_begin(PollDesc* pd, std::uint32_t seq) {
  std::uint32_t v = pd->refs.fetch_add(1, std::memory_order_acquire);
  if ((v & PollDesc::kClosing) || pd->seq.load(std::memory_order_relaxed) != seq) {
    op_end(pd);
    throw_closed("I/O");
  }
}

void op_end(PollDesc* pd) noexcept {
  if (pd->refs.fetch_sub(1, std::memory_order_acq_rel) == (PollDesc::kClosing | 1)) final_close(pd);
}

void wait(PollDesc* pd, std::uint32_t seq, Dir d, const char* op) {
  Slot& s = slot(pd, d);
  std::unique_lock<weft::detail::SpinLock> g(pd->lock);
  for (;;) {
    if (pd->seq.load(std::memory_order_relaxed) != seq) {
      g.unlock();
      throw_closed(op);
    }
    if (s.expired) {
      g.unlock();
      throw Timeout(std::string("weft: ") + op + ": deadline exceeded");
    }
    if (s.ready) {
      s.ready = false;
      return;
    }
    if (s.waiting) {
      g.unlock();
      throw std::system_error(std::make_error_code(std::errc::device_or_resource_busy),
                              std::string("weft: ") + op + ": another fiber is already waiting in this direction");
    }
    s.parker = rt::prepare_park(d == Dir::Read ? WaitKind::IoRead : WaitKind::IoWrite, pd);
    s.waiting = true;
    rt::Parker p = s.parker;
    g.unlock();
    WakeReason r = rt::park(p);
    g.lock();
    if (r == WakeReason::Cancel) {
      if (s.waiting && s.parker.token == p.token) s.waiting = false;
      g.unlock();
      rt::throw_unwind();
    }
  }
}

void set_deadline(PollDesc* pd, std::uint32_t seq, Dir d, Clock::time_point t) {
  Slot& s = slot(pd, d);
  std::lock_guard<weft::detail::SpinLock> g(pd->lock);
  if (pd->seq.load(std::memory_order_relaxed) != seq) throw_closed("set_deadline");
  rt::timer_cancel(s.timer);
  s.timer_gen = (s.timer_gen + 1) % (1u << 31);
  s.deadline = t;
  s.expired = false;
  if (t == Clock::time_point::max()) return;
  if (t <= Clock::now()) {
    s.expired = true;
    wake_slot(s, WakeReason::Timeout);
    return;
  }
  s.timer.when = t;
  s.timer.fn = on_deadline;
  s.timer.a = pd;
  s.timer.b = nullptr;
  s.timer.seq = (std::uint64_t{seq} << 32) | (std::uint64_t{s.timer_gen} << 1) | (d == Dir::Write ? 1 : 0);
  rt::timer_start(s.timer);
}

}  // namespace weft::net::detail
