// cancel.cpp: cancelling a fiber (cancel_fiber), the calling fiber's side of
// it (cancelled, check_cancelled, stop_token, CancelShield) and deadline
// frames (with_timeout). The wake protocol and its memory-ordering argument:
// fiber.hpp, "Cancellation".
//
// Shared state: a fiber's CancelState::word (atomic; set by cancellers,
// cleared by the fiber); its `frames` list and the stop sources in it and in
// `stop_src`, guarded by the fiber's cancel_lock (a spin lock, the innermost
// lock: nothing is called while it is held but copying stop_source handles).
// A DeadlineFrame lives on its fiber's stack: its timer callback is the only
// other thread that touches it, and close() waits until that callback's
// last touch (`fired`) before the frame goes away.
#include <weft/cancel.hpp>

#include <thread>
#include <vector>

#include "switch.hpp"

namespace weft::rt {

namespace {

struct CancelLock {
  explicit CancelLock(Fiber* f) noexcept : f_(f) {
    while (f_->cancel_lock.exchange(true, std::memory_order_acquire))
      while (f_->cancel_lock.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  ~CancelLock() { f_->cancel_lock.store(false, std::memory_order_release); }
  CancelLock(const CancelLock&) = delete;
  CancelLock& operator=(const CancelLock&) = delete;

 private:
  Fiber* f_;
};

// Does `word` cancel a frame at `depth` (0: the fiber's base level)?
bool cancels(std::uint32_t word, std::uint32_t depth) noexcept {
  if (word & 1) return true;
  std::uint32_t d = word >> 1;
  return d != 0 && depth != 0 && d <= depth;
}

}  // namespace

// Requests stop on the stop sources of f that its cancel word cancels:
// copied out under cancel_lock, stopped after it. Called by the canceller
// (after its wake) and by the fiber itself before a cancellation point
// throws. The canceller stops them only after its wake (cancel_fiber), so a
// fiber woken on another worker, or one that reaches a cancellation point
// while running, could otherwise catch Cancelled while its token still said
// no stop (cancel_test: StopCallbackFiresOnCancel, CpuLoopSeesCancelFrom-
// PlainThread). request_stop() is idempotent: whoever requests first runs
// the callbacks (here, on the fiber, if we win; a callback the canceller
// runs may still be running when we throw, as std allows).
void stop_tokens(Fiber* f) noexcept {
  std::stop_source one{std::nostopstate};
  std::vector<std::stop_source> more;
  {
    CancelLock g(f);
    std::uint32_t w = cancel_word(f).load(std::memory_order_relaxed);
    if (cancels(w, 0) && f->stop_src.stop_possible() && !f->stop_src.stop_requested()) one = f->stop_src;
    for (DeadlineFrame* fr = f->frames; fr; fr = fr->outer)
      if (fr->src.stop_possible() && !fr->src.stop_requested() && cancels(w, fr->depth)) more.push_back(fr->src);
  }
  if (one.stop_possible()) one.request_stop();
  for (auto& s : more) s.request_stop();
}

void throw_cancelled() {
  if (Fiber* f = current_fiber()) stop_tokens(f);
  throw Cancelled();
}

__attribute__((visibility("hidden"))) std::atomic<bool> g_cancel_seen{false};

void cancellation_point_slow() {
  Fiber* f = current_fiber();
  if (f && cancel_word(f).load(std::memory_order_relaxed) != 0 && f->shield == 0) throw_cancelled();
}

void cancel_fiber(Fiber* f, std::uint32_t deadline_depth) noexcept {
  if (!g_cancel_seen.load(std::memory_order_relaxed)) g_cancel_seen.store(true, std::memory_order_relaxed);
  std::atomic<std::uint32_t>& word = cancel_word(f);
  if (deadline_depth == 0) {
    word.fetch_or(1, std::memory_order_seq_cst);
  } else {
    std::uint32_t cur = word.load(std::memory_order_relaxed);
    do {
      std::uint32_t d = cur >> 1;
      if (d != 0 && d <= deadline_depth) return;  // an outer deadline already cancelled all of it
    } while (!word.compare_exchange_weak(cur, (cur & 1) | (deadline_depth << 1), std::memory_order_seq_cst,
                                         std::memory_order_relaxed));
  }
  // Dekker with the scheduler's switch-out (fiber.hpp): our RMW above, then
  // this load; its kSwitched RMW, then its load of the word.
  std::uint64_t v = f->sync->load(std::memory_order_seq_cst);
  if ((v & (kSwitched | kWoken | kCancellable)) == (kSwitched | kCancellable))
    unpark(Parker{f, f->sync, v >> kGenShift}, WakeReason::Cancel);
  // Stop tokens (callbacks run here and may do anything but park). The wake comes first on purpose: a
  // callback that ends what the fiber waits for (a blocking() job waiting
  // on the token) would otherwise complete the operation before the Cancel
  // wake, and blocking() would return instead of throwing. The fiber, when
  // it throws Cancelled, requests the stop itself if we have not yet
  // (stop_tokens), so its tokens report the stop by then.
  stop_tokens(f);
}

// Called by the scheduler after the switch-out of a parked fiber whose park
// is cancellable and whose cancel word it found set (switch.hpp): claims the
// park with Cancel and queues the fiber here. If a waker claimed it first,
// that waker saw kSwitched and queues it.
void cancel_parked(Worker* w, Fiber* f, std::uint64_t v) noexcept {
  std::uint64_t nv = v | kWoken | (static_cast<std::uint64_t>(WakeReason::Cancel) << kReasonShift);
  if (f->sync->compare_exchange_strong(v, nv, std::memory_order_acq_rel, std::memory_order_acquire))
    push_local(w, f);
}

DeadlineFrame::DeadlineFrame(Clock::time_point deadline) {
  fiber = current_fiber();
  if (!fiber) throw std::logic_error("weft: with_timeout()/with_deadline() must be called on a fiber");
  {
    CancelLock g(fiber);
    outer = fiber->frames;
    fiber->frames = this;
  }
  depth = outer ? outer->depth + 1 : 1;
  effective = outer && outer->effective < deadline ? outer->effective : deadline;
  if (outer && effective == outer->effective) return;  // the outer frame's timer ends us too
  if (deadline == Clock::time_point::max()) return;
  if (deadline <= Clock::now()) {
    cancel_fiber(fiber, depth);  // due already: the first cancellation point throws
    return;
  }
  timer.when = deadline;
  timer.fn = [](void* a, void*, std::uint64_t) {
    auto* fr = static_cast<DeadlineFrame*>(a);
    cancel_fiber(fr->fiber, fr->depth);
    fr->fired.store(true, std::memory_order_release);  // last touch: the frame may go now
  };
  timer.a = this;
  armed = true;
  timer_start(timer);
}

bool DeadlineFrame::close() noexcept {
  if (closed) return mine;
  closed = true;
  if (armed && !timer_cancel(timer))
    while (!fired.load(std::memory_order_acquire)) std::this_thread::yield();  // its callback is running
  {
    CancelLock g(fiber);
    fiber->frames = outer;
  }
  std::atomic<std::uint32_t>& word = cancel_word(fiber);
  std::uint32_t cur = word.load(std::memory_order_relaxed);
  while ((cur >> 1) == depth && !word.compare_exchange_weak(cur, cur & 1, std::memory_order_relaxed)) {
  }
  mine = (cur >> 1) == depth && !(cur & 1);
  return mine;
}

}  // namespace weft::rt

namespace weft {

using namespace weft::rt;

bool this_fiber::cancelled() noexcept {
  Fiber* f = current_fiber();
  return f && cancel_word(f).load(std::memory_order_relaxed) != 0;
}

void this_fiber::check_cancelled() { cancellation_point(); }

std::stop_token this_fiber::stop_token() {
  Fiber* f = current_fiber();
  if (!f) return {};
  std::stop_source src{std::nostopstate};
  bool stop;
  {
    CancelLock g(f);
    DeadlineFrame* fr = f->frames;
    std::stop_source& s = fr ? fr->src : f->stop_src;
    if (!s.stop_possible()) s = std::stop_source();  // allocates its shared state
    src = s;
    // A cancellation before the source existed did not see it: stop it here.
    stop = cancels(cancel_word(f).load(std::memory_order_relaxed), fr ? fr->depth : 0);
  }
  if (stop) src.request_stop();
  return src.get_token();
}

CancelShield::CancelShield() noexcept : f_(current_fiber()) {
  if (!f_) return;
  f_->shield++;
  refresh_park_flags(f_);
}

CancelShield::~CancelShield() {
  if (!f_) return;
  f_->shield--;
  refresh_park_flags(f_);
}

}  // namespace weft
