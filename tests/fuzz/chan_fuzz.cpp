// chan_fuzz.cpp: a libFuzzer target that runs a random program of channel
// operations in one of two modes: strict, on one worker, checking every
// observable outcome against a reference model of Go's channel semantics;
// loose, on two workers, checking what holds under any schedule.
//
// Built two ways (tests/fuzz/meson.build): with -DWEFT_LIBFUZZER and
// -fsanitize=fuzzer (clang) it is the fuzzer; without, its own main() replays
// every file of the directories (or files) named on its command line, which is
// how the seed corpus runs as a plain test (`fuzz-corpus`).
//
// ---- The program ------------------------------------------------------------
// The input is a byte string: byte 0 picks the element type (bit 0: int, or
// the move-only std::unique_ptr<int>) and, for the fuzzer, the mode (bit 1:
// strict or loose; the replay runs every input in both); then each step is an opcode byte
// (value % 12) and its operands (a missing byte reads as 0; at most 200 steps):
//   0 make     cap (byte % 5)                 a new channel (at most 4)
//   1 send     actor, chan                    actor sends a fresh value
//   2 recv     actor, chan                    actor receives once
//   3 select   actor, spec                    actor runs a select
//   4 range    actor, chan                    actor runs for (v : ch) until closed
//   5 sendn    actor, chan, n (1 + byte % 4)  actor sends n fresh values in a row
//   6 try_send chan                           the driver (main fiber)
//   7 try_recv chan                           the driver
//   8 close    chan                           the driver
//   9 select   spec                           the driver; always with otherwise()
//                                             unless it has an after(0)
//  10 sleep                                   the driver sleeps 1 ms (lets
//                                             after(1 ms) fire; once per input)
//  11 cancel   actor                          the driver: JoinHandle::cancel()
//                                             (late when (byte / 6) is odd)
// actor byte: slot = byte % 6; a new actor is started with weft::go when
// (byte / 6) is odd, else with weft::spawn. A step for a busy actor (parked
// in an operation) is skipped. cancel: an actor started with spawn has no
// handle (skipped); one not started yet is started with go, idle, and
// cancelled before it first runs. A late cancel (strict mode) is issued
// right after the next step's operation if that step is a try_send,
// try_recv or close, before anything that operation woke has run (else
// before the next step, or at the end, as a plain cancel). Cancellation is
// sticky: every later cancellation point of the actor throws. Opcodes were
// value % 11 before cancel: gen_seeds.py --upgrade rewrites such inputs.
// chan byte: v = byte % 9; 8 (or no channel yet) is the nil channel, else
// channel v % channels. select spec: a byte n
// (cases = 1 + n % 4; after = n / 4 % 4: none / after(0) / after(1 h) /
// after(1 ms); otherwise() when n / 16 is odd), then per case a byte c: a
// send case when c is odd, on chan byte c / 2. Every value sent is a fresh unique id (1, 2,
// ...), so a value lost, duplicated or misrouted shows.
//
// ---- How it runs (strict mode) ---------------------------------------------
// weft::run(..., {.workers = 1, .spare_workers = 0}): one worker thread and
// never a spare, so the schedule is deterministic enough to predict. The
// driver executes the non-blocking operations itself; blocking ones go to
// actor fibers, which park on a condition variable while idle and take one
// command at a time. Each actor appends what it observes (send ok, value
// received, case chosen, cancelled, ...) to its own report queue. Only the
// channel operation runs unshielded: the idle wait and the reporting run
// in a CancelShield, so a cancelled actor lives on and takes commands; a
// Cancelled thrown by the operation is its outcome "cancelled" and ends
// the command (a sendn sends no more, a range stops). After each step the
// driver settles: it yields until every other fiber is parked
// (weft::stats().fibers_parked + 1 == fibers_live), i.e. every actor is idle
// or parked in its operation and nothing is runnable. That is a condition
// on the state, not a count of rounds or a delay: the monitor may move
// woken fibers to the global queue (the driver "ran for 10 ms" under ASan),
// which a yielding worker reaches only every 61st pick, and the settle just
// yields on until they have run. Nothing but an after(1 ms) timer can wake
// a fiber while the driver computes (one worker), and the model accepts
// that timer's outcome at any time. Then the model replays the step,
// consuming the reports: a report it did not predict, or a prediction with
// no report, is a mismatch.
//
// ---- How it runs (loose mode) -----------------------------------------------
// The same program on two workers: actors run in parallel with the driver
// and each other, so the exact model does not apply. The driver does not
// wait after a step (a command for an actor still busy is skipped), and
// commands that could park forever even on closed channels (nil channels;
// a select of only nil cases without a finite after or otherwise) are
// skipped. Checked, whatever the schedule:
//   - on the spot: a send's ChanClosed, a recv's nullopt, a range's end only
//     on a channel the driver has begun to close; try_send throws exactly
//     when the channel is closed and close exactly on a second close (only
//     the driver closes); a select's handler and unchosen values (as strict);
//   - cancel (never late) at any time. "cancelled" only from an actor the
//     driver has cancelled; once an actor knows it is cancelled (an earlier
//     operation threw Cancelled, or the driver's cancel() returned before
//     it handed the command over), every command that is a cancellation
//     point throws Cancelled at entry (checked by the actor, in both modes);
//     a cancelled select ran no handler and left every value intact.
//     Commands that could park forever run in actors started with go (the
//     end cancels them), and are skipped in the others;
//   - at the end the driver closes every channel, drains it, cancels the
//     actors parked forever, and waits for every actor to finish (20 s: only
//     a lost wake gets near it) and joins those with a handle, then:
//     every value reported sent was received exactly once, from the channel
//     it was sent on; no value whose send (or select) threw Cancelled was
//     received; nothing received that nobody sent; and per-sender FIFO
//     per channel: each receive is stamped from one seq_cst counter before
//     the call and after it returns, and if one sender sent u before v on a
//     channel, the receive of v must not have returned before the receive of
//     u began (a linearizable FIFO channel orders them the other way).
//
// ---- The model (Go's semantics, as weft promises them in API.md) ------------
// A channel: capacity, closed flag, FIFO buffer, FIFO queues of parked
// receivers and senders. A parked select has one entry per non-nil case in
// the queue of that case's channel and direction.
//   send: closed -> ChanClosed. Else the first parked receiver gets the value
//     directly. Else it is buffered if there is room. Else the sender parks.
//   recv: a buffered value first (the buffer's head; if a sender is parked,
//     its value moves to the buffer's tail and it completes). Else
//     (unbuffered) the first parked sender's value. Else closed -> nullopt.
//     Else the receiver parks.
//   close: nil or closed -> ChanClosed. Else every parked receiver gets
//     nullopt and every parked sender throws ChanClosed.
//   try_send / try_recv: as send / recv, but "would park" is false / nullopt;
//     on nil: false / nullopt. A value try_send refused is left intact.
//   select: a recv case is ready if a value is buffered, a sender is parked
//     or the channel is closed; a send case if the channel is closed, a
//     receiver is parked or the buffer has room; after(0) is always ready,
//     after(1 h) and nil cases never. after(1 ms) depends on the clock: the
//     model accepts "select after" from such a select at any time, before
//     or after it parked (see timed-out selects below). If some case is
//     ready, the one the implementation chose must be among them, and the
//     model then follows that one (a send case on a closed channel throws ChanClosed: the model
//     accepts it if any ready send case is on a closed channel). otherwise()
//     only when nothing is ready. Else the select parks in every queue. Its
//     handler runs once, for the chosen case only; a send case not chosen
//     leaves its value intact (checked with the move-only type).
//   Waking a parked select: whoever matches its first entry in a queue wins
//   the select, and the select's other entries are void at once. When the
//   select has several entries in that channel's queues (the same channel in
//   several cases), any of them may win, as in Go: the woken select's report
//   says which, and the model follows it (on close, that includes its send
//   cases on the channel: they throw).
//   Blocking operations in actors complete in the model only when a peer
//   completes them, in FIFO order of the queues.
//   Timed-out selects (after(1 ms)): the timer wakes the select, which then
//   claims itself unless a peer's operation claimed a case first (the
//   peer then wins, even if the timer had already fired). Its report tells
//   which happened. So a parked entry whose actor has reported "select
//   after" is dead: the model drops it (and the actor's other entries)
//   wherever it meets one (readiness, dequeue), and at the end of each step.
//   Cancel (JoinHandle::cancel; the API's rule: an operation either
//   completed, because a peer completed it before the cancel won, or did
//   nothing). Every command but a select with otherwise() is a cancellation
//   point; try_*, close and the driver's selects are never affected.
//   - A cancelled actor's later commands that are cancellation points
//     report "cancelled" at once and touch no channel (sticky; a nil or
//     closed channel, a ready case, after(0) alike); a range or sendn woken
//     and continuing throws at its next recv / send.
//   - A plain cancel happens with every other fiber parked (the driver
//     settled), so no peer can complete the actor's parked operation in
//     that step: it must withdraw every entry (all of a select's) and
//     report "cancelled", with no effect on any channel; only an
//     after(1 ms) timer may have won first ("select after"). An idle
//     actor just becomes cancelled.
//   - A late cancel comes right after the driver's operation: whatever that
//     operation completed stays completed (it won over the cancel: the
//     woken actor reports its outcome, and a woken range or sendn then
//     throws at its next recv / send); an operation it did not complete
//     withdraws, as for a plain cancel. (The fibers that operation woke
//     run in the same settle as the cancelled one; were one of them to
//     meet the cancelled actor's entry before it withdrew, the peer would
//     win. The model allows it as for a timer, by the report: a parked
//     entry whose cancelled actor reported "cancelled" is dead, dropped
//     wherever the model meets it. With these opcodes it cannot happen: a
//     woken range / sendn goes on on the same channel in the same
//     direction, and a channel never holds parked entries of both.)
//   After each step no cancelled actor is still parked.
// Free-running actors (range, sendn) continue after a wake without waiting
// for the driver: the model runs the actor that is running until it parks,
// then the woken ones in the order woken. That order is a scheduling choice
// Go leaves open, so the program keeps it irrelevant: at most one range and
// one sendn run per channel at once (a later one is skipped), so each step
// has at most one woken actor that will act again.
// After each step: every report consumed, and size() equals the model's
// buffer. At the end the driver drains every channel with try_recv (checked
// as above) and the set of values sent equals the set received. Actors still
// parked then are unwound by run() at shutdown (never caught here).
//
// On a mismatch: the step trace, the step, expected and got go to stderr,
// then abort() (libFuzzer saves the input).
#include <weft/weft.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using Val = std::uint32_t;  // a value's unique id; 0: no value (or moved-from)
constexpr int kMaxChans = 4, kActors = 6, kMaxCases = 4, kMaxSteps = 200;
// Bounds a wait that a correct run ends in microseconds: only a livelock or
// a lost wake reaches it (./dev's libFuzzer -timeout is above it).
constexpr std::chrono::seconds kSettleLimit{20};

// ---- values ---------------------------------------------------------------------

template <class T>
T make_val(Val v) {
  if constexpr (std::is_same_v<T, int>) return static_cast<int>(v);
  else return std::make_unique<int>(static_cast<int>(v));
}
Val val_of(int v) { return static_cast<Val>(v); }
Val val_of(const std::unique_ptr<int>& p) { return p ? static_cast<Val>(*p) : 0; }

// ---- observations ---------------------------------------------------------------

enum class Ev : std::uint8_t {
  SendOk, SendClosed, RecvVal, RecvClosed, SelCase, SelThrow, SelAfter, SelDefault, RangeVal, RangeEnd, Cancelled
};

struct Obs {
  Ev ev;
  int idx = -1;  // SelCase: the case index
  Val val = 0;   // RecvVal, RangeVal, SelCase of a recv case: the value (0: closed)
  bool operator==(const Obs&) const = default;
};

std::string str(const Obs& o) {
  static const char* const names[] = {"send ok", "send threw ChanClosed", "recv", "recv nullopt",
                                      "select case", "select threw ChanClosed", "select after",
                                      "select otherwise", "range value", "range end", "cancelled"};
  std::string s = names[static_cast<int>(o.ev)];
  if (o.ev == Ev::SelCase) s += " " + std::to_string(o.idx);
  if (o.ev == Ev::RecvVal || o.ev == Ev::RangeVal || o.ev == Ev::SelCase)
    s += o.val ? " value " + std::to_string(o.val) : std::string(" no value");
  return s;
}

// ---- commands -------------------------------------------------------------------

enum class Op : std::uint8_t { Send, Recv, Select, Range, SendN };

struct CaseSpec {
  bool send = false;
  int ch = -1;  // -1: nil
  Val val = 0;  // send: the value offered
};

struct SelSpec {
  int n = 0;
  CaseSpec c[kMaxCases];
  int after = 0;  // 0 none, 1 after(0), 2 after(1 h), 3 after(1 ms)
  bool dflt = false;
};

template <class T>
struct Cmd {
  Op op = Op::Send;
  weft::Chan<T> ch[kMaxCases];  // copies: the channels outlive a parked actor's frame
  SelSpec sel;
  std::vector<Val> vals;  // Send, SendN
  int chi = -1;           // Send, SendN, Recv, Range: ch[0]'s index (-1: nil)
  bool precancelled = false;  // the driver's cancel() of the actor returned before it handed this over
};

// Every command is a cancellation point (it throws Cancelled at entry in a
// cancelled actor) but a select with otherwise().
template <class T>
bool cancel_point(const Cmd<T>& c) {
  return !(c.op == Op::Select && c.sel.dflt);
}

// ---- select with a runtime list of cases -----------------------------------------

template <class T>
struct SelRun {
  const SelSpec* spec;
  weft::Chan<T> ch[kMaxCases];
  T vals[kMaxCases];
  int fires = 0, fired = -1;  // handler calls; the case whose handler ran
  Val got = 0;
};
constexpr int kFiredAfter = 100, kFiredDefault = 101;

template <class T>
struct RecvH {
  SelRun<T>* r;
  int i;
  void operator()(std::optional<T> v) const {
    r->fires++;
    r->fired = i;
    r->got = v ? val_of(*v) : 0;
  }
};
template <class T>
struct FireH {
  SelRun<T>* r;
  int i;
  void operator()() const {
    r->fires++;
    r->fired = i;
  }
};

template <class T, class... Cs>
std::size_t sel_finish(SelRun<T>& r, Cs&&... cs) {
  using namespace std::chrono_literals;
  FireH<T> a{&r, kFiredAfter}, d{&r, kFiredDefault};
  static constexpr std::chrono::nanoseconds kAfter[] = {0ns, 0ns, 1h, 1ms};
  std::chrono::nanoseconds t = kAfter[r.spec->after];
  switch ((r.spec->after ? 2 : 0) + (r.spec->dflt ? 1 : 0)) {
    case 0: return weft::select(std::forward<Cs>(cs)...);
    case 1: return weft::select(std::forward<Cs>(cs)..., weft::otherwise(d));
    case 2: return weft::select(std::forward<Cs>(cs)..., weft::after(t, a));
    default: return weft::select(std::forward<Cs>(cs)..., weft::after(t, a), weft::otherwise(d));
  }
}

// Appends case I (recv or send, as the spec says) to the cases built so far,
// until spec->n cases: 2 + 4 + 8 + 16 instantiations of sel_finish.
template <class T, int I, class... Cs>
std::size_t sel_build(SelRun<T>& r, Cs&&... cs) {
  if constexpr (I == kMaxCases) {
    return sel_finish(r, std::forward<Cs>(cs)...);
  } else {
    if constexpr (I > 0)
      if (I >= r.spec->n) return sel_finish(r, std::forward<Cs>(cs)...);
    if (r.spec->c[I].send)  // an rvalue T: the case refers to vals[I] and moves only if chosen
      return sel_build<T, I + 1>(r, std::forward<Cs>(cs)..., weft::send(r.ch[I], std::move(r.vals[I]), FireH<T>{&r, I}));
    return sel_build<T, I + 1>(r, std::forward<Cs>(cs)..., weft::recv(r.ch[I], RecvH<T>{&r, I}));
  }
}

[[noreturn]] void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fflush(stderr);
  std::abort();
}

// Runs the select and reports what happened. Checks what only this side can
// see: one handler call, for the case returned; a chosen send case's value
// moved out, the others' left intact (move-only T).
template <class T>
Obs run_select(const SelSpec& s, const weft::Chan<T>* ch) {
  SelRun<T> r{&s, {}, {}, 0, -1, 0};
  for (int i = 0; i < s.n; i++) {
    r.ch[i] = ch[i];
    if (s.c[i].send) r.vals[i] = make_val<T>(s.c[i].val);
  }
  std::size_t idx;
  try {
    idx = sel_build<T, 0>(r);
  } catch (const weft::ChanClosed&) {
    if (r.fires != 0) die("chan_fuzz: select threw ChanClosed after running a handler (case %d)\n", r.fired);
    return {Ev::SelThrow};
  } catch (const weft::Cancelled&) {  // it did nothing: no handler, every send case's value intact
    if (r.fires != 0) die("chan_fuzz: select threw Cancelled after running a handler (case %d)\n", r.fired);
    for (int i = 0; i < s.n; i++)
      if (s.c[i].send && val_of(r.vals[i]) != s.c[i].val)
        die("chan_fuzz: select threw Cancelled; send case %d's value is %u afterwards, expected %u\n", i,
            val_of(r.vals[i]), s.c[i].val);
    return {Ev::Cancelled};
  }
  int n = s.n;
  int want = idx < static_cast<std::size_t>(n) ? static_cast<int>(idx)
             : s.after && idx == static_cast<std::size_t>(n) ? kFiredAfter
                                                             : kFiredDefault;
  if (r.fires != 1 || r.fired != want)
    die("chan_fuzz: select returned %zu but %d handler(s) ran (last: %d)\n", idx, r.fires, r.fired);
  for (int i = 0; i < n; i++) {
    if (!s.c[i].send) continue;
    Val left = val_of(r.vals[i]);
    bool moved = i == want && std::is_same_v<T, std::unique_ptr<int>>;
    if (left != (moved ? 0 : s.c[i].val))
      die("chan_fuzz: select returned %zu; send case %d's value is %u afterwards, expected %u\n", idx, i, left,
          moved ? 0u : s.c[i].val);
  }
  if (want == kFiredAfter) return {Ev::SelAfter};
  if (want == kFiredDefault) return {Ev::SelDefault};
  return {Ev::SelCase, want, s.c[want].send ? 0 : r.got};
}

// ---- actors ---------------------------------------------------------------------

// What the loose mode logs of each completed operation (see the top).
struct LogEv {
  int who;        // actor, or -1: the driver
  Obs o;
  Val val = 0;    // SendOk / SendClosed: the value offered
  int ch = -1;    // the channel it happened on (-1: none, e.g. select after)
  std::uint64_t t0 = 0, t1 = 0;  // stamps taken before the call and after it returned
};

template <class T>
struct Box {
  bool has_cmd = false;
  bool busy = false;     // a command handed over and not finished (loose mode)
  Cmd<T> cmd;
  std::deque<Obs> obs;   // reports not yet consumed by the model (strict mode)
  bool exited = false;
  bool saw_cancel = false;  // the actor's own: one of its operations threw Cancelled
  weft::CondVar cv;      // has_cmd or stop
};

// Shared by the driver and the actors; each actor holds a reference, so a
// parked actor unwound after the driver returned still finds it. mu guards
// every field but the atomics.
template <class T>
struct World {
  bool loose = false;
  weft::Mutex mu;
  Box<T> box[kActors];
  bool stop = false;
  int running = 0;          // loose: actors started and not exited
  weft::CondVar exited_cv;  // loose: running dropped
  std::vector<LogEv> log;   // loose
  std::atomic<bool> closed[kMaxChans] = {};  // set by the driver just before close()
  std::atomic<bool> cancel_req[kActors] = {};  // set by the driver just before JoinHandle::cancel()
  std::atomic<std::uint64_t> clock{1};       // loose: stamps (seq_cst)
  std::uint64_t stamp() { return clock.fetch_add(1, std::memory_order_seq_cst); }
};

// The log entry of a select's outcome: the channel and value it involves.
inline LogEv sel_event(int who, const SelSpec& s, Obs o, std::uint64_t t0, std::uint64_t t1) {
  if (o.ev == Ev::SelAfter && s.after != 1 && s.after != 3)
    die("chan_fuzz: MISMATCH: a select whose after() cannot fire took it\n");
  LogEv e{who, o};
  if (o.ev == Ev::SelCase) {
    e.ch = s.c[o.idx].ch;
    e.val = s.c[o.idx].send ? s.c[o.idx].val : 0;
    e.t0 = t0;
    e.t1 = t1;
  } else if (o.ev == Ev::SelThrow) {
    e.ch = -2;  // some send case's channel must be closed: record() checks with send_closed()
  }
  return e;
}

// Records one outcome: a report for the model (strict), or a log entry
// (loose), after checking what the loose mode can check on the spot: a
// closed-channel outcome (ChanClosed, nullopt) on a channel the driver had
// not begun to close is invented.
template <class T>
bool send_closed(World<T>& w, const SelSpec& s) {
  for (int i = 0; i < s.n; i++)
    if (s.c[i].send && s.c[i].ch >= 0 && w.closed[s.c[i].ch].load()) return true;
  return false;
}

template <class T>
void record(World<T>& w, int who, LogEv e, const SelSpec* sel = nullptr) {
  weft::CancelShield shield;  // the harness's own bookkeeping never throws Cancelled
  if (e.o.ev == Ev::Cancelled && (who < 0 || !w.cancel_req[who].load()))
    die("chan_fuzz: MISMATCH: %s %d: an operation threw Cancelled, but nobody cancelled it\n",
        who < 0 ? "driver" : "actor", who);
  if (w.loose) {
    bool closed_outcome = e.o.ev == Ev::SendClosed || e.o.ev == Ev::RecvClosed || e.o.ev == Ev::RangeEnd ||
                          (e.o.ev == Ev::SelCase && e.ch >= 0 && e.o.val == 0 && e.val == 0);
    if (e.o.ev == Ev::SelThrow && (!sel || !send_closed(w, *sel)))
      die("chan_fuzz: MISMATCH (loose): %s %d: select threw ChanClosed, but none of its send cases' channels "
          "is being closed\n", who < 0 ? "driver" : "actor", who);
    if (closed_outcome && e.ch >= 0 && !w.closed[e.ch].load())
      die("chan_fuzz: MISMATCH (loose): %s %d: '%s' on c%d, which nobody has closed\n", who < 0 ? "driver" : "actor",
          who, str(e.o).c_str(), e.ch);
  }
  std::lock_guard<weft::Mutex> g(w.mu);
  if (w.loose) w.log.push_back(e);
  else if (who >= 0) w.box[who].obs.push_back(e.o);
}

// Runs one command. Only the channel operations themselves run unshielded:
// a Cancelled they throw is reported as the outcome "cancelled" and ends the
// command (a sendn sends no more, a range stops). Checked here, in both
// modes: once the actor's cancellation is known to it (an earlier operation
// threw Cancelled, or the driver's cancel() returned before it handed this
// command over), a command that is a cancellation point throws Cancelled
// at entry: its first outcome is "cancelled" (sticky cancellation).
template <class T>
void run_cmd(World<T>& w, int a, Cmd<T>& c) {
  Box<T>& b = w.box[a];
  bool must_throw = cancel_point(c) && (c.precancelled || b.saw_cancel);
  auto rec = [&](LogEv e) {
    if (must_throw && e.o.ev != Ev::Cancelled)
      die("chan_fuzz: MISMATCH: actor %d is cancelled (%s), but its %s reported '%s' instead of throwing "
          "Cancelled at entry\n", a, b.saw_cancel ? "an earlier operation threw Cancelled" : "cancel() returned before",
          c.op == Op::Select ? "select" : "operation", str(e.o).c_str());
    if (e.o.ev == Ev::Cancelled) b.saw_cancel = true;
    record(w, a, e, c.op == Op::Select ? &c.sel : nullptr);
  };
  switch (c.op) {
    case Op::Send:
    case Op::SendN:
      for (Val v : c.vals) {
        try {
          c.ch[0].send(make_val<T>(v));
        } catch (const weft::ChanClosed&) {
          rec({a, {Ev::SendClosed}, v, c.chi});
          break;
        } catch (const weft::Cancelled&) {
          rec({a, {Ev::Cancelled}, v, c.chi});  // the value was not delivered (loose_end checks it)
          break;
        }
        rec({a, {Ev::SendOk}, v, c.chi});
      }
      break;
    case Op::Recv: {
      std::uint64_t t0 = w.stamp();
      std::optional<T> v;
      try {
        v = c.ch[0].recv();
      } catch (const weft::Cancelled&) {
        rec({a, {Ev::Cancelled}, 0, c.chi});
        break;
      }
      std::uint64_t t1 = w.stamp();
      rec({a, v ? Obs{Ev::RecvVal, -1, val_of(*v)} : Obs{Ev::RecvClosed}, 0, c.chi, t0, t1});
      break;
    }
    case Op::Range: {
      std::uint64_t t0 = w.stamp();
      try {
        for (T v : c.ch[0]) {  // each iteration's recv starts after the previous body ends
          rec({a, {Ev::RangeVal, -1, val_of(v)}, 0, c.chi, t0, w.stamp()});
          t0 = w.stamp();
        }
      } catch (const weft::Cancelled&) {
        rec({a, {Ev::Cancelled}, 0, c.chi});
        break;
      }
      rec({a, {Ev::RangeEnd}, 0, c.chi});
      break;
    }
    case Op::Select: {
      std::uint64_t t0 = w.stamp();
      Obs o = run_select<T>(c.sel, c.ch);
      if (o.ev == Ev::Cancelled && w.loose) {  // loose_end checks that none of its values arrives
        weft::CancelShield shield;
        std::lock_guard<weft::Mutex> g(w.mu);
        for (int i = 0; i < c.sel.n; i++)
          if (c.sel.c[i].send) w.log.push_back({a, {Ev::Cancelled}, c.sel.c[i].val, c.sel.c[i].ch});
      }
      rec(sel_event(a, c.sel, o, t0, w.stamp()));
      break;
    }
  }
}

// An actor: idle, it parks on its box's condition variable until the driver
// hands it a command or tells it to stop (an idle actor is parked, so the
// strict mode's settle can wait for "every fiber parked"). The idle wait is
// shielded (CancelShield): a cancelled actor stays an actor, and only its
// channel operations throw. FiberUnwind (shutdown) passes through untouched.
template <class T>
void actor_main(std::shared_ptr<World<T>> w, int a) {
  Box<T>& b = w->box[a];
  for (;;) {
    Cmd<T> cmd;
    {
      weft::CancelShield shield;
      std::unique_lock<weft::Mutex> lk(w->mu);
      b.busy = false;
      b.cv.wait(lk, [&] { return b.has_cmd || w->stop; });
      if (!b.has_cmd) {
        b.exited = true;
        w->running--;
        w->exited_cv.notify_all();
        return;
      }
      cmd = std::move(b.cmd);
      b.has_cmd = false;
    }
    run_cmd(*w, a, cmd);
  }
}

// ---- the reference model ----------------------------------------------------------

enum class Ready : std::uint8_t { No, Done, Closed };

struct Entry {
  int actor;
  int cidx;  // select case index; -1: a plain operation
  Val val;   // a sender's value
};

struct MChan {
  std::size_t cap = 0;
  bool closed = false;
  std::deque<Val> buf;
  std::deque<Entry> recvq, sendq;
  int ranger = -1, sendner = -1;  // the range / sendn actor running on it
};

enum class St : std::uint8_t { Absent, Idle, Busy };

struct MActor {
  St st = St::Absent;
  Op op = Op::Send;
  int ch = -1;
  std::deque<Val> todo;  // Send, SendN: values still to send, current first
  SelSpec sel;
  bool cancelled = false;  // the model's: cancel() applies from here on (sticky)
};

struct Reader {
  const std::uint8_t* p;
  std::size_t n, i = 0;
  bool empty() const { return i >= n; }
  std::uint8_t u8() { return i < n ? p[i++] : 0; }
};

template <class T>
class Interp {
 public:
  Interp(Reader in, bool loose) : in_(in), loose_(loose), w_(std::make_shared<World<T>>()) { w_->loose = loose; }

  void run() {
    for (step_ = 0; step_ < kMaxSteps && !in_.empty(); step_++) do_step();
    if (loose_) return loose_end();
    if (late_ >= 0) flush_late();
    // Drain what is left (parked senders refill buffers; sendn actors go on).
    for (int c = 0; c < static_cast<int>(ch_.size()); c++) {
      for (int guard = 0; !m_[c].buf.empty() || !m_[c].sendq.empty(); guard++, step_++) {
        if (guard > 1000) fail("drain of channel %d does not end", c);
        try_recv(c);
      }
    }
    if (sent_ != received_) fail("values sent (%zu) and received (%zu) differ", sent_.size(), received_.size());
    stop_actors();
    settle();
    for (int a = 0; a < kActors; a++)
      if (withdrew(a)) reap(a);
    for (int a = 0; a < kActors; a++) {
      if (act_[a].st == St::Idle && !w_->box[a].exited) fail("idle actor %d did not stop", a);
      if (act_[a].st == St::Busy && w_->box[a].exited) fail("parked actor %d exited", a);
      if (handle_[a].joinable() && act_[a].st == St::Idle) join(a);
    }
    // Returning unwinds the actors still parked (their handles detach).
  }

 private:
  // ---- failures and trace ----
  [[noreturn]] void fail(const char* fmt, ...) {
    std::fprintf(stderr, "chan_fuzz: MISMATCH (value type %s)\n", std::is_same_v<T, int> ? "int" : "unique_ptr<int>");
    for (std::size_t i = 0; i < trace_.size(); i++) std::fprintf(stderr, "  step %zu: %s\n", i, trace_[i].c_str());
    std::fprintf(stderr, "chan_fuzz: at step %d (%s): ", step_, trace_.empty() ? "-" : trace_.back().c_str());
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
    std::abort();
  }
  void note(const char* fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    trace_.emplace_back(buf);
    if (std::getenv("CHAN_FUZZ_TRACE")) std::fprintf(stderr, "step %zu: %s\n", trace_.size() - 1, buf);
  }
  std::string sel_str(const SelSpec& s) const {
    std::string r = "select(";
    for (int i = 0; i < s.n; i++) {
      if (i) r += ", ";
      r += s.c[i].send ? "send(" : "recv(";
      r += s.c[i].ch < 0 ? "nil" : "c" + std::to_string(s.c[i].ch);
      if (s.c[i].send) r += ", " + std::to_string(s.c[i].val);
      r += ")";
    }
    static const char* const afters[] = {"", ", after(0)", ", after(1h)", ", after(1ms)"};
    r += afters[s.after];
    if (s.dflt) r += ", otherwise";
    return r + ")";
  }

  // ---- decoding ----
  int chan_ref() {
    std::uint8_t b = in_.u8();
    if (ch_.empty() || b % 9 == 8) return -1;
    return b % 9 % static_cast<int>(ch_.size());
  }
  SelSpec sel_spec(bool driver) {
    SelSpec s;
    std::uint8_t n = in_.u8();
    s.n = 1 + n % kMaxCases;
    s.after = n / 4 % 4;
    s.dflt = n / 16 % 2 == 1 || (driver && s.after != 1);  // the driver never parks
    for (int i = 0; i < s.n; i++) {
      std::uint8_t c = in_.u8();
      s.c[i].send = c % 2 == 1;
      s.c[i].ch = c / 2 % 9 == 8 || ch_.empty() ? -1 : c / 2 % 9 % static_cast<int>(ch_.size());
      if (s.c[i].send) s.c[i].val = next_val_++;
    }
    return s;
  }
  weft::Chan<T> chan(int c) const { return c < 0 ? weft::Chan<T>() : ch_[c]; }

  void do_step() {
    std::uint8_t op = in_.u8() % 12;
    if (late_ >= 0 && (op < 6 || op > 8)) flush_late();  // only try_send, try_recv, close carry it
    if (op == 11) return cancel_step();
    if (op == 10) {
      if (++sleeps_ > 1) return note("sleep (skipped: one per input)");
      note("sleep 1 ms");
      weft::this_fiber::sleep_for(std::chrono::milliseconds(1));
      if (loose_) return;
      settle();
      return end_step();
    }
    if (op == 0) {
      std::size_t cap = in_.u8() % 5;
      if (ch_.size() >= kMaxChans) return note("make (skipped: %d channels)", kMaxChans);
      ch_.emplace_back(cap);
      m_.emplace_back().cap = cap;
      return note("make c%zu cap %zu", ch_.size() - 1, cap);
    }
    if (op >= 6) {
      int c = op == 9 ? 0 : chan_ref();
      switch (op) {
        case 6: return try_send(c);
        case 7: return try_recv(c);
        case 8: return close(c);
        default: return driver_select(sel_spec(true));
      }
    }
    std::uint8_t ab = in_.u8();
    int a = ab % kActors;
    bool use_go = ab / kActors % 2 == 1;
    Cmd<T> cmd;
    MActor m;
    m.st = St::Busy;
    cmd.op = m.op = static_cast<Op>(op - 1);
    if (m.op == Op::Select) {
      m.sel = cmd.sel = sel_spec(false);
      for (int i = 0; i < m.sel.n; i++) cmd.ch[i] = chan(m.sel.c[i].ch);
    } else {
      m.ch = chan_ref();
      cmd.ch[0] = chan(m.ch);
      cmd.chi = m.ch;
      int k = m.op == Op::Send ? 1 : m.op == Op::SendN ? 1 + in_.u8() % 4 : 0;
      for (int i = 0; i < k; i++) m.todo.push_back(next_val_++);
      cmd.vals.assign(m.todo.begin(), m.todo.end());
    }
    static const char* const names[] = {"send", "recv", "select", "range", "sendn"};
    std::string what = m.op == Op::Select ? sel_str(m.sel) : std::string(names[op - 1]) + " " +
                       (m.ch < 0 ? std::string("nil") : "c" + std::to_string(m.ch));
    for (Val v : m.todo) what += " " + std::to_string(v);
    cmd.precancelled = cancel_sent_[a];
    if (loose_) return loose_actor(a, use_go, std::move(cmd), m, what);
    if (act_[a].st == St::Busy) return note("actor %d: %s (skipped: busy)", a, what.c_str());
    if (m.ch >= 0 && m.op == Op::Range && m_[m.ch].ranger >= 0)
      return note("actor %d: %s (skipped: a range runs)", a, what.c_str());
    if (m.ch >= 0 && m.op == Op::SendN && m_[m.ch].sendner >= 0)
      return note("actor %d: %s (skipped: a sendn runs)", a, what.c_str());
    note("actor %d%s: %s", a, act_[a].st == St::Absent ? use_go ? " (go)" : " (spawn)" : "", what.c_str());
    if (act_[a].st == St::Absent) start_actor(a, use_go);
    if (m.ch >= 0 && m.op == Op::Range) m_[m.ch].ranger = a;
    if (m.ch >= 0 && m.op == Op::SendN) m_[m.ch].sendner = a;
    m.cancelled = act_[a].cancelled;
    act_[a] = m;
    hand(a, std::move(cmd));
    settle();
    advance(a);
    end_step();
  }

  // ---- driver operations: act, settle, then replay in the model ----
  void try_send(int c) {
    Val v = next_val_++;
    note("try_send %s %u", c < 0 ? "nil" : ("c" + std::to_string(c)).c_str(), v);
    T x = make_val<T>(v);
    bool ok = false, threw = false;
    try {
      ok = chan(c).try_send(x);
    } catch (const weft::ChanClosed&) {
      threw = true;
    }
    bool moved = ok && std::is_same_v<T, std::unique_ptr<int>>;
    if (val_of(x) != (moved ? 0 : v)) fail("try_send's value is %u afterwards, expected %u", val_of(x), moved ? 0 : v);
    if (loose_) {  // only the driver closes: whether it throws is known
      bool closed = c >= 0 && closed_[c];
      if (threw != closed) fail("try_send: %s on a channel that is%s closed", threw ? "ChanClosed" : "no ChanClosed", closed ? "" : " not");
      origin_[v] = {-1, c};
      if (ok) record(*w_, -1, {-1, {Ev::SendOk}, v, c});
      return;
    }
    int lc = late_issue();
    settle();
    Ready r = m_send(c, v);
    const char* got = ok ? "true" : threw ? "ChanClosed" : "false";
    if (r == Ready::Done && !ok) fail("try_send: expected true, got %s", got);
    if (r == Ready::Closed && !threw) fail("try_send: expected ChanClosed, got %s", got);
    if (r == Ready::No && (ok || threw)) fail("try_send: expected false, got %s", got);
    late_apply(lc);
    end_step();
  }
  void try_recv(int c) {
    note("try_recv %s", c < 0 ? "nil" : ("c" + std::to_string(c)).c_str());
    std::uint64_t t0 = w_->stamp();
    std::optional<T> v = chan(c).try_recv();
    std::uint64_t t1 = w_->stamp();
    Val gotv = v ? val_of(*v) : 0;
    if (v && !gotv) fail("try_recv returned a moved-from value");
    if (loose_) {
      if (v) record(*w_, -1, {-1, {Ev::RecvVal, -1, gotv}, 0, c, t0, t1});
      return;
    }
    int lc = late_issue();
    settle();
    Val want = 0;
    Ready r = m_recv(c, &want);
    if (r != Ready::Done) want = 0;
    if (gotv != want) fail("try_recv: expected %u, got %u (0: nullopt)", want, gotv);
    late_apply(lc);
    end_step();
  }
  void close(int c) {
    note("close %s", c < 0 ? "nil" : ("c" + std::to_string(c)).c_str());
    bool threw = false;
    if (c >= 0) w_->closed[c].store(true);  // before close(): see record()
    try {
      chan(c).close();
    } catch (const weft::ChanClosed&) {
      threw = true;
    }
    if (loose_) {
      bool want = c < 0 || closed_[c];
      if (threw != want) fail("close: expected %s, got %s", want ? "ChanClosed" : "no throw", threw ? "ChanClosed" : "no throw");
      if (c >= 0) closed_[c] = true;
      return;
    }
    int lc = late_issue();
    settle();
    bool want = c < 0 || m_[c].closed;
    if (threw != want) fail("close: expected %s, got %s", want ? "ChanClosed" : "no throw", threw ? "ChanClosed" : "no throw");
    if (!want) m_close(c);
    late_apply(lc);
    end_step();
  }
  void driver_select(const SelSpec& s) {
    note("driver %s", sel_str(s).c_str());
    weft::Chan<T> chs[kMaxCases];
    for (int i = 0; i < s.n; i++) chs[i] = chan(s.c[i].ch);
    std::uint64_t t0 = w_->stamp();
    Obs o = run_select<T>(s, chs);
    if (loose_) {
      for (int i = 0; i < s.n; i++)
        if (s.c[i].send) origin_[s.c[i].val] = {-1, s.c[i].ch};
      return record(*w_, -1, sel_event(-1, s, o, t0, w_->stamp()), &s);
    }
    settle();
    m_select(-1, s, &o);
    end_step();
  }

  // ---- cancel (opcode 11; see the top) ----
  void cancel_step() {
    std::uint8_t b = in_.u8();
    int a = b % kActors;
    bool late = b / kActors % 2 == 1 && !loose_;  // loose: no settling, so no "late"
    const char* how = late ? "cancel (late)" : "cancel";
    if (act_[a].st == St::Absent) {
      note("%s actor %d (go: started idle, cancelled before it runs)", how, a);
      start_actor(a, true);
      act_[a].st = St::Idle;
    } else if (!handle_[a].joinable()) {
      return note("%s actor %d (skipped: started with spawn, no handle)", how, a);
    } else {
      note("%s actor %d", how, a);
    }
    if (late) {
      late_ = a;
      return;
    }
    issue_cancel(a);
    if (loose_) return;
    settle();
    act_[a].cancelled = true;  // end_step: a parked actor must have withdrawn
    end_step();
  }
  void issue_cancel(int a) {
    cancel_sent_[a] = true;
    w_->cancel_req[a].store(true);  // before cancel(): record() checks it
    handle_[a].cancel();
  }
  // A late cancel whose next step is not a try_send, try_recv or close (or
  // that ends the program): issued now, as a plain cancel.
  void flush_late() {
    int a = std::exchange(late_, -1);
    note("cancel actor %d now (the late cancel is not followed by try_send, try_recv or close)", a);
    issue_cancel(a);
    settle();
    act_[a].cancelled = true;
    end_step();
  }
  // Strict: the late cancel, issued right after the driver's operation,
  // before the settle (whatever the operation woke has not run yet); the
  // model applies it after replaying the operation (late_apply).
  int late_issue() {
    if (late_ < 0) return -1;
    int a = std::exchange(late_, -1);
    note("  then cancel actor %d (before anything it woke runs)", a);
    issue_cancel(a);
    return a;
  }
  void late_apply(int a) {
    if (a >= 0) act_[a].cancelled = true;
  }
  void join(int a) {
    try {
      handle_[a].join();
    } catch (const weft::Cancelled&) {
      fail("join of actor %d threw Cancelled, but the actor returned normally", a);
    }
  }

  // Strict mode: lets every woken fiber run until every fiber but the
  // driver is parked (in a channel operation, or idle on its box) and so
  // nothing is runnable: on one worker, with the driver running, nothing
  // can then move but a select's after(1 ms) timer, which the model accepts
  // at any time. A deterministic condition, whatever the monitor did (it may
  // move woken fibers to the global queue, which a yielding driver reaches
  // only every 61st pick). The time limit only turns a livelock into a
  // failure: a correct run settles in a few yields.
  void settle() {
    hog();
    auto give_up = std::chrono::steady_clock::now() + kSettleLimit;
    for (;;) {
      weft::Stats st = weft::stats();
      if (st.fibers_parked + 1 >= st.fibers_live) return;
      if (std::chrono::steady_clock::now() > give_up) {
        weft::dump(std::cerr);
        fail("fibers never settle (livelock?): %llu of %llu other fibers parked",
             static_cast<unsigned long long>(st.fibers_parked), static_cast<unsigned long long>(st.fibers_live - 1));
      }
      weft::this_fiber::yield();
    }
  }

  // CHAN_FUZZ_HOG_MS=n (replay only): the driver burns n ms of CPU after each
  // operation, before it settles, as a slow model step under ASan did in CI:
  // the monitor then finds the worker stuck and moves the fibers woken by
  // the operation to the global queue. The verdict must not change.
  void hog() {
    static const long ms = [] {
      const char* e = std::getenv("CHAN_FUZZ_HOG_MS");
      return e ? std::atol(e) : 0L;
    }();
    if (ms <= 0) return;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
    }
  }

  // ---- actors ----
  void start_actor(int a, bool use_go) {
    {
      std::lock_guard<weft::Mutex> g(w_->mu);
      w_->running++;
    }
    if (use_go) handle_[a] = weft::go(&actor_main<T>, w_, a);
    else weft::spawn(&actor_main<T>, w_, a);
  }
  void hand(int a, Cmd<T> cmd) {
    std::lock_guard<weft::Mutex> g(w_->mu);
    Box<T>& b = w_->box[a];
    b.cmd = std::move(cmd);
    b.has_cmd = b.busy = true;
    b.cv.notify_one();
  }
  void stop_actors() {
    std::lock_guard<weft::Mutex> g(w_->mu);
    w_->stop = true;
    for (Box<T>& b : w_->box) b.cv.notify_one();
  }

  // ---- the loose mode (two workers; see the top) ----
  void loose_actor(int a, bool use_go, Cmd<T> cmd, const MActor& m, const std::string& what) {
    // What could park forever even once every channel is closed runs only
    // in an actor with a handle (started with go), which the end cancels;
    // else it is skipped: the end must find every actor able to finish.
    bool forever = m.op != Op::Select ? m.ch < 0 : m.sel.after != 1 && m.sel.after != 3 && !m.sel.dflt;
    for (int i = 0; m.op == Op::Select && i < m.sel.n; i++) forever = forever && m.sel.c[i].ch < 0;
    bool has_handle = act_[a].st == St::Absent ? use_go : handle_[a].joinable();
    if (forever && !has_handle) return note("actor %d: %s (skipped: would park forever)", a, what.c_str());
    bool busy;
    {
      std::lock_guard<weft::Mutex> g(w_->mu);
      busy = w_->box[a].busy;
    }
    if (busy) return note("actor %d: %s (skipped: busy)", a, what.c_str());
    note("actor %d%s: %s", a, act_[a].st == St::Absent ? use_go ? " (go)" : " (spawn)" : "", what.c_str());
    for (Val v : m.todo) origin_[v] = {a, m.ch};
    for (int i = 0; m.op == Op::Select && i < m.sel.n; i++)
      if (m.sel.c[i].send) origin_[m.sel.c[i].val] = {a, m.sel.c[i].ch};
    if (act_[a].st == St::Absent) start_actor(a, use_go);
    act_[a].st = St::Idle;  // started
    if (forever) forever_[a] = true;
    hand(a, std::move(cmd));
  }

  // Closes every channel, drains it, waits (bounded) for every actor to
  // finish, then checks the log: conservation, no invention, per-sender
  // FIFO per channel.
  void loose_end() {
    for (int c = 0; c < static_cast<int>(ch_.size()); c++) {
      if (!closed_[c]) close(c);
      for (;;) {
        std::uint64_t t0 = w_->stamp();
        std::optional<T> v = ch_[c].recv();  // closed: never parks for good
        if (!v) break;
        record(*w_, -1, {-1, {Ev::RecvVal, -1, val_of(*v)}, 0, c, t0, w_->stamp()});
      }
    }
    for (int a = 0; a < kActors; a++)  // what parks forever ends only so (cancelled already: no matter)
      if (forever_[a]) issue_cancel(a);
    stop_actors();
    {
      std::unique_lock<weft::Mutex> lk(w_->mu);
      if (!w_->exited_cv.wait_for(lk, kSettleLimit, [&] { return w_->running == 0; })) {
        int left = w_->running;
        lk.unlock();
        weft::dump(std::cerr);
        fail("lost wake? %d actor(s) still running %lld s after every channel was closed and drained", left,
             static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kSettleLimit).count()));
      }
    }
    for (int a = 0; a < kActors; a++)
      if (handle_[a].joinable()) join(a);
    note("end: every channel closed and drained, every actor finished");
    std::vector<LogEv> log;
    {
      std::lock_guard<weft::Mutex> g(w_->mu);
      log.swap(w_->log);
    }
    struct Got {
      int ch;
      std::uint64_t t0, t1;
    };
    std::map<Val, Got> got;
    std::set<Val> sent, cancelled;  // cancelled: offered by a send or select that threw Cancelled
    for (const LogEv& e : log)
      if (e.o.ev == Ev::Cancelled && e.val) cancelled.insert(e.val);
    for (const LogEv& e : log) {
      bool rv = e.o.ev == Ev::RecvVal || e.o.ev == Ev::RangeVal || (e.o.ev == Ev::SelCase && e.val == 0 && e.o.val);
      if (e.o.ev == Ev::SendOk || (e.o.ev == Ev::SelCase && e.val)) {
        if (!sent.insert(e.val).second) fail("value %u sent twice", e.val);
      }
      if (!rv) continue;
      Val v = e.o.val;
      auto o = origin_.find(v);
      if (v == 0 || o == origin_.end()) fail("received value %u, which nobody offered", v);
      if (o->second.ch != e.ch) fail("value %u was sent on c%d but received from c%d", v, o->second.ch, e.ch);
      if (!got.emplace(v, Got{e.ch, e.t0, e.t1}).second) fail("value %u received twice", v);
    }
    for (Val v : cancelled) {
      if (sent.count(v)) fail("value %u: its send threw Cancelled, yet it was reported sent", v);
      if (got.count(v)) fail("value %u: its send threw Cancelled (it delivered nothing), yet it was received", v);
    }
    for (Val v : sent)
      if (!got.count(v)) fail("value %u was sent (send ok) but never received, and no channel holds it", v);
    for (const auto& [v, g] : got)
      if (!sent.count(v)) fail("value %u was received, but its sender did not report it sent", v);
    // Per-sender FIFO per channel: u sent before v by one sender on one
    // channel (ids grow in each sender's program order) cannot be received
    // by an operation that began after the one receiving v had returned.
    for (auto i = got.begin(); i != got.end(); ++i)
      for (auto j = std::next(i); j != got.end(); ++j) {
        const auto& [u, gu] = *i;
        const auto& [v, gv] = *j;
        if (origin_[u].who == origin_[v].who && gu.ch == gv.ch && gv.t1 < gu.t0)
          fail("c%d: %s sent %u before %u, but %u was received before %u was", gu.ch,
               origin_[u].who < 0 ? "the driver" : ("actor " + std::to_string(origin_[u].who)).c_str(), u, v, v, u);
      }
  }

  void end_step() {
    while (!pending_.empty()) {
      int a = pending_.front();
      pending_.pop_front();
      advance(a);
    }
    for (int a = 0; a < kActors; a++)
      if (withdrew(a)) reap(a);
    for (int a = 0; a < kActors; a++)
      if (!w_->box[a].obs.empty())
        fail("actor %d reported '%s', which the model did not predict (it should be %s)", a,
             str(w_->box[a].obs.front()).c_str(),
             act_[a].st != St::Busy ? "idle" : act_[a].cancelled ? "cancelled" : "parked");
    for (int a = 0; a < kActors; a++)  // a parked operation withdraws once cancelled; none parks after
      if (act_[a].st == St::Busy && act_[a].cancelled)
        fail("actor %d is cancelled, but is still parked in its operation (no report)", a);
    for (std::size_t c = 0; c < ch_.size(); c++) {
      if (ch_[c].size() != m_[c].buf.size())
        fail("c%zu.size() is %zu, expected %zu", c, ch_[c].size(), m_[c].buf.size());
      if (ch_[c].capacity() != m_[c].cap) fail("c%zu.capacity() is %zu, expected %zu", c, ch_[c].capacity(), m_[c].cap);
    }
  }

  // ---- the model proper ----
  Obs take_obs(int a, const std::string& want) {
    auto& q = w_->box[a].obs;
    if (q.empty()) fail("actor %d should have reported '%s' but has not (still parked?)", a, want.c_str());
    Obs o = q.front();
    q.pop_front();
    return o;
  }
  void expect_obs(int a, Obs want) {
    Obs o = take_obs(a, str(want));
    if (!(o == want)) fail("actor %d: expected '%s', got '%s'", a, str(want).c_str(), str(o).c_str());
  }
  void finish(int a) {
    MActor& m = act_[a];
    m.st = St::Idle;
    if (m.ch >= 0 && m_[m.ch].ranger == a) m_[m.ch].ranger = -1;
    if (m.ch >= 0 && m_[m.ch].sendner == a) m_[m.ch].sendner = -1;
  }
  void park(int a) {
    MActor& m = act_[a];
    switch (m.op) {
      case Op::Send:
      case Op::SendN:
        if (m.ch >= 0) m_[m.ch].sendq.push_back({a, -1, m.todo.front()});
        break;
      case Op::Recv:
      case Op::Range:
        if (m.ch >= 0) m_[m.ch].recvq.push_back({a, -1, 0});
        break;
      case Op::Select:
        for (int i = 0; i < m.sel.n; i++) {
          const CaseSpec& cs = m.sel.c[i];
          if (cs.ch >= 0) (cs.send ? m_[cs.ch].sendq : m_[cs.ch].recvq).push_back({a, i, cs.val});
        }
        break;
    }
  }

  // Unlinks the first waiter of c's recvq (or sendq) and every other waiter
  // of its actor everywhere (a select's other cases are void once one wins).
  // Returns the actor, or -1; *es gets its entries from that queue (from both
  // of c's queues when `both`: close).
  int dequeue(int c, bool sendq, bool both, std::vector<Entry>* es) {
    std::deque<Entry>& q = sendq ? m_[c].sendq : m_[c].recvq;
    while (!q.empty() && withdrew(q.front().actor)) reap(q.front().actor);
    if (q.empty()) return -1;
    int a = q.front().actor;
    for (std::deque<Entry>* qq : {&m_[c].recvq, &m_[c].sendq})
      if (qq == &q || both)
        for (const Entry& e : *qq)
          if (e.actor == a) es->push_back(e);
    unlink(a);
    return a;
  }
  void unlink(int a) {
    for (MChan& mc : m_)
      for (std::deque<Entry>* qq : {&mc.recvq, &mc.sendq})
        qq->erase(std::remove_if(qq->begin(), qq->end(), [a](const Entry& e) { return e.actor == a; }), qq->end());
  }

  // Actor a was parked and left its queues by itself: a select with
  // after(1 ms) whose timer won, or an operation of a cancelled actor that
  // withdrew (nobody completed it first). Its report says so. Its entries
  // are dead.
  bool withdrew(int a) const {
    const MActor& m = act_[a];
    const auto& q = w_->box[a].obs;
    if (m.st != St::Busy || q.empty()) return false;
    if (m.op == Op::Select && m.sel.after == 3 && q.front().ev == Ev::SelAfter) return true;
    return m.cancelled && q.front().ev == Ev::Cancelled;
  }
  void reap(int a) {
    w_->box[a].obs.pop_front();
    unlink(a);
    finish(a);
  }
  bool live(const std::deque<Entry>& q) const {
    for (const Entry& e : q)
      if (!withdrew(e.actor)) return true;
    return false;
  }

  enum class How { Hand, Take, Close };  // a gets value v / a's value is taken / c closed

  // Completes parked actor a, matched through entries es. Consumes its
  // report, which must be one of the outcomes those entries allow, and
  // returns the value moved out of it (Take).
  Val wake(int a, const std::vector<Entry>& es, How how, Val v) {
    MActor& m = act_[a];
    struct Alt {
      Obs o;
      Val moved;
    };
    std::vector<Alt> alts;
    switch (m.op) {
      case Op::Recv:
        alts.push_back({how == How::Close ? Obs{Ev::RecvClosed} : Obs{Ev::RecvVal, -1, v}, 0});
        break;
      case Op::Range:
        alts.push_back({how == How::Close ? Obs{Ev::RangeEnd} : Obs{Ev::RangeVal, -1, v}, 0});
        break;
      case Op::Send:
      case Op::SendN:
        alts.push_back({how == How::Close ? Obs{Ev::SendClosed} : Obs{Ev::SendOk}, m.todo.front()});
        break;
      case Op::Select:
        for (const Entry& e : es) {
          if (m.sel.c[e.cidx].send) alts.push_back({how == How::Close ? Obs{Ev::SelThrow} : Obs{Ev::SelCase, e.cidx, 0}, e.val});
          else alts.push_back({Obs{Ev::SelCase, e.cidx, how == How::Close ? 0 : v}, 0});
        }
        break;
    }
    Obs o = take_obs(a, str(alts[0].o));
    const Alt* hit = nullptr;
    for (const Alt& x : alts)
      if (x.o == o) hit = &x;
    if (!hit) {
      std::string all;
      for (const Alt& x : alts) all += (all.empty() ? "'" : " or '") + str(x.o) + "'";
      fail("actor %d woken: expected %s, got '%s'", a, all.c_str(), str(o).c_str());
    }
    Val moved = hit->moved;
    bool more = false;
    if (how != How::Close) {
      if (m.op == Op::Range) more = true;
      if (m.op == Op::SendN) {
        m.todo.pop_front();
        more = !m.todo.empty();
      }
    }
    if (more) pending_.push_back(a);  // it acts again, after the running fiber parks
    else finish(a);
    return moved;
  }

  Ready m_send(int c, Val v) {
    if (c < 0) return Ready::No;
    MChan& mc = m_[c];
    if (mc.closed) return Ready::Closed;
    std::vector<Entry> es;
    if (int a = dequeue(c, false, false, &es); a >= 0) {
      wake(a, es, How::Hand, v);
      if (!received_.insert(v).second) fail("value %u received twice", v);
    } else if (mc.buf.size() < mc.cap) {
      mc.buf.push_back(v);
    } else {
      return Ready::No;
    }
    if (!sent_.insert(v).second) fail("value %u sent twice", v);
    return Ready::Done;
  }

  Ready m_recv(int c, Val* got) {
    if (c < 0) return Ready::No;
    MChan& mc = m_[c];
    std::vector<Entry> es;
    if (!mc.buf.empty()) {
      *got = mc.buf.front();
      mc.buf.pop_front();
      if (int a = dequeue(c, true, false, &es); a >= 0) {  // the buffer was full
        Val v = wake(a, es, How::Take, 0);
        mc.buf.push_back(v);
        if (!sent_.insert(v).second) fail("value %u sent twice", v);
      }
    } else if (int a = dequeue(c, true, false, &es); a >= 0) {
      *got = wake(a, es, How::Take, 0);
      if (!sent_.insert(*got).second) fail("value %u sent twice", *got);
    } else {
      return mc.closed ? Ready::Closed : Ready::No;
    }
    if (!received_.insert(*got).second) fail("value %u received twice", *got);
    return Ready::Done;
  }

  void m_close(int c) {
    m_[c].closed = true;
    for (bool sq : {false, true}) {
      std::vector<Entry> es;
      for (int a; (a = dequeue(c, sq, true, &es)) >= 0; es.clear()) wake(a, es, How::Close, 0);
    }
  }

  bool case_ready(const CaseSpec& cs) const {
    if (cs.ch < 0) return false;
    const MChan& mc = m_[cs.ch];
    if (cs.send) return mc.closed || live(mc.recvq) || mc.buf.size() < mc.cap;
    return mc.closed || !mc.buf.empty() || live(mc.sendq);
  }

  // A select by actor a (its report is the observation) or by the driver
  // (a == -1, observation *seen).
  void m_select(int a, const SelSpec& s, const Obs* seen) {
    bool any = s.after == 1;
    for (int i = 0; i < s.n; i++) any = any || case_ready(s.c[i]);
    if (!any && !s.dflt) {
      if (a < 0) fail("driver select would park");
      park(a);
      if (withdrew(a)) reap(a);  // it parked, and its after(1 ms) fired already
      return;
    }
    Obs o = a >= 0 ? take_obs(a, any ? "select to complete at once" : "select otherwise") : *seen;
    auto bad = [&](const char* why) { fail("select: got '%s', but %s", str(o).c_str(), why); };
    switch (o.ev) {
      case Ev::SelDefault:
        if (any) bad("a case was ready");
        break;
      case Ev::SelAfter:  // after(0), or after(1 ms) if that passed during the select
        if (s.after != 1 && s.after != 3) bad("its after() cannot have fired");
        break;
      case Ev::SelThrow: {
        bool ok = false;
        for (int i = 0; i < s.n; i++) ok = ok || (s.c[i].send && s.c[i].ch >= 0 && m_[s.c[i].ch].closed);
        if (!ok) bad("no send case is on a closed channel");
        break;
      }
      case Ev::SelCase: {
        if (o.idx < 0 || o.idx >= s.n || !case_ready(s.c[o.idx])) bad("that case was not ready");
        const CaseSpec& cs = s.c[o.idx];
        if (cs.send) {
          if (m_send(cs.ch, cs.val) != Ready::Done) bad("the channel is closed (expected ChanClosed)");
        } else {
          Val got = 0;
          Ready r = m_recv(cs.ch, &got);
          if (r != Ready::Done) got = 0;
          if (o.val != got) fail("select: case %d received %u, expected %u (0: nullopt)", o.idx, o.val, got);
        }
        break;
      }
      default:
        bad("that is not a select outcome");
    }
    if (a >= 0) finish(a);
  }

  // Runs actor a's operation in the model until it parks or finishes (its
  // first step, or its continuation after a wake).
  void advance(int a) {
    MActor& m = act_[a];
    if (m.cancelled && !(m.op == Op::Select && m.sel.dflt)) {  // a cancellation point: throws at entry
      expect_obs(a, {Ev::Cancelled});
      return finish(a);
    }
    for (;;) {
      switch (m.op) {
        case Op::Send:
        case Op::SendN: {
          Ready r = m_send(m.ch, m.todo.front());
          if (r == Ready::No) return park(a);
          expect_obs(a, {r == Ready::Done ? Ev::SendOk : Ev::SendClosed});
          if (r == Ready::Done) m.todo.pop_front();
          if (r == Ready::Closed || m.todo.empty()) return finish(a);
          break;
        }
        case Op::Recv:
        case Op::Range: {
          Val got = 0;
          Ready r = m_recv(m.ch, &got);
          if (r == Ready::No) return park(a);
          bool range = m.op == Op::Range;
          if (r == Ready::Done) expect_obs(a, {range ? Ev::RangeVal : Ev::RecvVal, -1, got});
          else expect_obs(a, {range ? Ev::RangeEnd : Ev::RecvClosed});
          if (!range || r == Ready::Closed) return finish(a);
          break;
        }
        case Op::Select:
          return m_select(a, m.sel, nullptr);
      }
    }
  }

  Reader in_;
  bool loose_;
  std::shared_ptr<World<T>> w_;
  bool closed_[kMaxChans] = {};  // loose: closed by the driver
  struct Origin {
    int who = -2;  // the sending actor, -1: the driver
    int ch = -1;
  };
  std::map<Val, Origin> origin_;  // loose: every value offered
  std::vector<weft::Chan<T>> ch_;
  std::vector<MChan> m_;
  MActor act_[kActors];
  weft::JoinHandle<void> handle_[kActors];
  std::deque<int> pending_;  // woken free-running actors that will act again
  bool cancel_sent_[kActors] = {};  // the driver called cancel() on the actor
  bool forever_[kActors] = {};      // loose: handed a command that parks until cancelled
  int late_ = -1;                   // strict: the actor of a late cancel not yet issued
  std::set<Val> sent_, received_;
  std::vector<std::string> trace_;
  Val next_val_ = 1;
  int step_ = 0, sleeps_ = 0;
};

// One input in one mode: strict (one worker, the exact model) or loose (two
// workers, the scheduling-independent checks).
void run_input(const std::uint8_t* data, std::size_t size, bool loose) {
  Reader in{data + 1, size - 1};
  bool move_only = data[0] % 2 == 1;
  weft::run(
      [&] {
        if (move_only) Interp<std::unique_ptr<int>>(in, loose).run();
        else Interp<int>(in, loose).run();
      },
      {.workers = loose ? 2u : 1u, .spare_workers = 0});  // strict: never a second thread running fibers
}

}  // namespace

namespace {
unsigned long g_runs[2];  // inputs run per mode, printed at exit (./dev shows both were exercised)
void print_runs() { std::fprintf(stderr, "chan_fuzz: %lu strict and %lu loose runs\n", g_runs[0], g_runs[1]); }
}  // namespace

// The fuzzer: byte 0's bit 1 picks the mode.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  bool loose = (data[0] & 2) != 0;
  if (g_runs[0] + g_runs[1] == 0) std::atexit(print_runs);
  g_runs[loose]++;
  run_input(data, size, loose);
  return 0;
}

#ifndef WEFT_LIBFUZZER
// Replays inputs without libFuzzer: every file of each directory argument
// (in name order), or the file itself, in both modes whatever byte 0 says
// (CHAN_FUZZ_MODE=strict or loose: one of them).
int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const char* m = std::getenv("CHAN_FUZZ_MODE");
  std::string mode = m && *m ? m : "both";
  std::vector<fs::path> files;
  for (int i = 1; i < argc; i++) {
    if (fs::is_directory(argv[i])) {
      for (const auto& e : fs::directory_iterator(argv[i]))
        if (e.is_regular_file()) files.push_back(e.path());
    } else {
      files.emplace_back(argv[i]);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s corpus-dir-or-file...\n", argv[0]);
    return 2;
  }
  for (const fs::path& p : files) {
    std::ifstream f(p, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!f.good() && !f.eof()) {
      std::fprintf(stderr, "chan_fuzz: cannot read %s\n", p.c_str());
      return 2;
    }
    if (bytes.empty()) continue;
    const auto* d = reinterpret_cast<const std::uint8_t*>(bytes.data());
    for (bool loose : {false, true}) {
      if ((loose && mode == "strict") || (!loose && mode == "loose")) continue;
      if (std::getenv("CHAN_FUZZ_TRACE")) std::fprintf(stderr, "== %s (%s)\n", p.c_str(), loose ? "loose" : "strict");
      run_input(d, bytes.size(), loose);
    }
  }
  std::printf("chan_fuzz: replayed %zu inputs (%s)\n", files.size(), mode.c_str());
  return 0;
}
#endif
