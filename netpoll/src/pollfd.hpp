// pollfd.hpp: poll descriptors, the per-socket state the netpoller and the
// socket's fibers share (Go's pollDesc).
//
// One PollDesc per open socket, from a process-wide pool whose memory is
// never freed (type-stable): the poller, deadline timers and late wakers may
// touch a descriptor after its socket closed, and must then find that it is
// no longer theirs. Identity is (index, seq): `seq` is bumped when the
// socket starts closing, and every poller event, deadline timer and waiting
// fiber carries the seq it belongs to.
//
// Fields and guards:
//   lock        guards seq (writes), rd, wr (all their fields).
//   seq         written under lock; read under lock, or relaxed as a hint.
//   refs        atomic: bit 31 = closing, low bits = system calls in flight
//               on fd. The fd is closed, and the descriptor returned to the
//               pool, by whoever brings refs to exactly "closing, 0 in
//               flight" (the close() call or the last in-flight operation),
//               so an fd number is never reused under a running call.
//   fd, index   written once before the descriptor is shared.
// Per direction (Slot): `ready` is set by the poller on an edge and consumed
// by a waiter; at most one fiber waits per direction (`parker` valid while
// `waiting`); `expired` is set once the deadline passed; `timer_gen` is
// bumped whenever the deadline changes, so a stale deadline timer is ignored.
// Lock order: PollDesc::lock -> (runtime) idle lock via unpark; the timer heap
// lock is never held while taking PollDesc::lock (callbacks run unlocked).
#pragma once

#include <atomic>
#include <cstdint>

#include <weft/park.hpp>
#include <weft/sync.hpp>

namespace weft::net::detail {

struct Slot {
  bool ready = false;
  bool waiting = false;
  bool expired = false;
  rt::Parker parker;
  Clock::time_point deadline = Clock::time_point::max();
  std::uint32_t timer_gen = 0;
  rt::Timer timer;
};

struct PollDesc {
  weft::detail::SpinLock lock;
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> refs{0};
  std::uint32_t index = 0;
  int fd = -1;
  bool foreign = false;  // a dup of a caller's fd: unregister explicitly on close
  Slot rd, wr;

  static constexpr std::uint32_t kClosing = 1u << 31;
  std::uint64_t key() const noexcept { return (std::uint64_t{seq.load(std::memory_order_relaxed)} << 32) | index; }
};

enum class Dir : std::uint8_t { Read, Write };

// Registers a non-blocking fd with the current runtime's poller and returns
// its descriptor. Throws std::system_error (and closes nothing) on failure.
PollDesc* open_desc(int fd, bool foreign = false);
// Starts closing: wakes the waiters with an error, cancels the timers, and
// closes the fd now or when the last in-flight call ends. Idempotent.
void close_desc(PollDesc* pd, std::uint32_t seq) noexcept;

// Brackets a system call on pd->fd. begin() throws the "use of closed
// socket" error if the socket is closed or closing.
void op_begin(PollDesc* pd, std::uint32_t seq);
void op_end(PollDesc* pd) noexcept;

// Parks until the direction is ready (after an EAGAIN). Throws weft::Timeout
// once the deadline has passed, the closed-socket error if the socket closes.
void wait(PollDesc* pd, std::uint32_t seq, Dir d, const char* op);
void set_deadline(PollDesc* pd, std::uint32_t seq, Dir d, Clock::time_point t);

[[noreturn]] void throw_closed(const char* op);

}  // namespace weft::net::detail
