// introspect.cpp: weft::dump() (the fiber dump), weft::stats(), the wait
// describers, and backtraces of parked fibers.
//
// The dump finds live fibers by sweeping the side table of sync words (a
// slot whose word has kLive set holds a fiber) and reads each fiber's
// control block without synchronisation while it may be running: it reads
// the sync word, then the fields, then the sync word again, and drops the
// entry if the generation moved meanwhile (the fiber parked, woke or ended:
// its fields may be torn). Control blocks live in stack slots that stay
// mapped for the runtime's life, so such reads never fault. These functions
// are therefore exempt from TSan (best-effort reads, as Go's dump of a
// running program); when every fiber is parked (the deadlock report, or a
// test's prepared set) nothing moves and the dump is exact.
//
// Backtraces: a parked fiber's saved context (Boost.Context's fcontext on
// x86-64: r12-r15, rbx, rbp, then the return address, see jump_fcontext)
// gives its last frame pointer and return address; the walk follows the
// frame-pointer chain while it stays inside the fiber's stack and strictly
// ascends. weft itself is built with frame pointers (meson.build); frames
// of user code built without them end the walk early.
#include <dlfcn.h>

#include <cxxabi.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <sstream>
#include <unordered_map>
#include <string>

#include <weft/blocking.hpp>
#include <weft/cancel.hpp>

#include "switch.hpp"
#include "symbolize.hpp"

namespace weft::rt {

namespace {

std::atomic<WaitDescriber> g_describers[32];

const char* kind_name(WaitKind k) noexcept {
  switch (k) {
    case WaitKind::None: return "nothing";
    case WaitKind::Join: return "join";
    case WaitKind::Mutex: return "mutex lock";
    case WaitKind::CondVar: return "condvar wait";
    case WaitKind::WaitGroup: return "waitgroup wait";
    case WaitKind::Sleep: return "sleep";
    case WaitKind::ChanSend: return "chan send";
    case WaitKind::ChanRecv: return "chan recv";
    case WaitKind::Select: return "select";
    case WaitKind::Io: return "io wait";
    case WaitKind::IoRead: return "socket read";
    case WaitKind::IoWrite: return "socket write";
    case WaitKind::Blocking: return "blocking() call";
    case WaitKind::Other: return "other";
    case WaitKind::RWMutex: return "rwmutex lock";
    case WaitKind::Semaphore: return "semaphore acquire";
    case WaitKind::Once: return "once wait";
  }
  return "?";
}

// Return addresses of a switched-out fiber, innermost first.
__attribute__((no_sanitize("thread", "address"), noinline)) int backtrace_of(const Runtime& r, const Fiber* f, const void** out,
                                                             int max) noexcept {
#if defined(__x86_64__)
  auto lo = reinterpret_cast<std::uintptr_t>(r.arena.slot_base(f->slot) + r.arena.guard_bytes());
  auto hi = reinterpret_cast<std::uintptr_t>(f);
  auto ctx = reinterpret_cast<std::uintptr_t>(f->ctx);
  if (ctx < lo || ctx + 0x40 > hi) return 0;
  const auto* saved = reinterpret_cast<const std::uintptr_t*>(ctx);
  int n = 0;
  out[n++] = reinterpret_cast<const void*>(saved[7]);
  std::uintptr_t fp = saved[6];
  while (n < max && fp > ctx && fp + 16 <= hi && fp % 8 == 0) {
    const auto* frame = reinterpret_cast<const std::uintptr_t*>(fp);
    if (frame[1] == 0) break;
    out[n++] = reinterpret_cast<const void*>(frame[1]);
    if (frame[0] <= fp) break;
    fp = frame[0];
  }
  return n;
#else
  (void)r, (void)f, (void)out, (void)max;
  return 0;
#endif
}

WEFT_RACY_READER std::string wait_text(WaitKind k, const void* obj) {
  std::string s = kind_name(k);
  char buf[96] = {};
  if (WaitDescriber d = g_describers[static_cast<unsigned>(k) % 32].load(std::memory_order_acquire); d && obj) {
    d(k, obj, buf, sizeof buf);
    return s + " " + buf;
  }
  switch (k) {
    case WaitKind::Join:
      if (obj) std::snprintf(buf, sizeof buf, " fiber %" PRIu64, static_cast<const detail::JoinStateBase*>(obj)->fiber_id);
      break;
    case WaitKind::Sleep:
      if (obj) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*static_cast<const Clock::time_point*>(obj) -
                                                                          Clock::now());
        std::snprintf(buf, sizeof buf, " (wakes in %lld ms)", static_cast<long long>(left.count()));
      }
      break;
    case WaitKind::ChanSend:
    case WaitKind::ChanRecv:
      if (!obj) {
        std::snprintf(buf, sizeof buf, " on a nil channel (forever)");
        break;
      }
      [[fallthrough]];
    default:
      if (obj) std::snprintf(buf, sizeof buf, " %p", obj);
  }
  return s + buf;
}

struct Entry {
  std::uint64_t id;
  std::string name, state;
  const void* site;
  std::vector<std::string> frames;
};

// One fiber's entry, or false if the slot changed while we read it.
WEFT_RACY_READER bool read_entry(Runtime& r, std::uint32_t slot, std::int64_t now_ms,
                                                const std::vector<Fiber*>& running, Entry& e) {
  std::uint64_t v = r.arena.sync(slot).load(std::memory_order_acquire);
  if (!(v & kLive)) return false;
  Fiber* f = fiber_of_slot(r.arena.slot_top(slot));
  e.id = f->id;
  char name[sizeof f->name];
  std::memcpy(name, f->name, sizeof name);
  name[sizeof name - 1] = 0;
  e.name = name;
  e.site = f->spawn_pc;
  e.frames.clear();
  if ((v & (kSwitched | kWoken)) == kSwitched) {
    WaitKind k = f->wait_kind;
    const void* obj = f->wait_obj;
    std::int64_t since = f->park_ms;
    e.state = "parked " + std::to_string(std::max<std::int64_t>(0, now_ms - since)) + " ms: " + wait_text(k, obj);
    const void* pcs[32];
    int n = backtrace_of(r, f, pcs, 32);
    for (int i = 0; i < n; i++) e.frames.push_back(symbolize(pcs[i]));
  } else if (std::find(running.begin(), running.end(), f) != running.end()) {
    e.state = "running";
    for (std::size_t i = 0; i < running.size(); i++)
      if (running[i] == f) e.state += " on worker " + std::to_string(i);
  } else {
    e.state = "runnable";
  }
  return r.arena.sync(slot).load(std::memory_order_acquire) == v;
}

Runtime& current_runtime(const char* what) {
  Worker* w = current_worker();
  if (!w || !w->current.load(std::memory_order_relaxed))
    throw std::logic_error(std::string("weft::") + what + "() must be called on a fiber of a running runtime");
  return *w->rt;
}

}  // namespace

void set_wait_describer(WaitKind kind, WaitDescriber fn) noexcept {
  g_describers[static_cast<unsigned>(kind) % 32].store(fn, std::memory_order_release);
}

WEFT_RACY_READER void dump_runtime(Runtime& r, std::ostream& out) {
  std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r.start_time).count();
  std::vector<Fiber*> running;
  for (unsigned i = 0; i < r.started_workers(); i++) running.push_back(r.workers[i]->current.load(std::memory_order_relaxed));
  std::uint32_t n = r.arena.slot_count();
  std::vector<Entry> entries;
  Entry e;
  for (std::uint32_t i = 0; i < n; i++)
    if (read_entry(r, i, now_ms, running, e)) entries.push_back(e);
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.id < b.id; });
  std::ostringstream head;
  head << "weft: fiber dump: " << entries.size() << " fibers, " << r.started_workers() << " workers";
  if (unsigned sp = r.started_workers() - r.nworkers) head << " (" << sp << " spare)";
  head << ", " << now_ms << " ms since start\n";
  std::vector<const void*> pcs;
  for (auto& x : entries) pcs.push_back(x.site);
  // Symbolizing may run addr2line for a second: on a fiber, in the
  // blocking pool (the fiber parks, its worker runs on).
  std::unordered_map<const void*, std::string> sites;
  if (in_fiber()) {
    CancelShield shield;
    sites = blocking([&pcs] { return spawn_sites(pcs); });
  } else {
    sites = spawn_sites(pcs);
  }
  out << head.str();
  for (auto& x : entries) {
    out << "fiber " << x.id;
    if (!x.name.empty()) out << " \"" << x.name << "\"";
    out << " [" << x.state << "]\n";
    if (x.site) out << "    spawned at " << sites[x.site] << "\n";
    for (std::size_t i = 0; i < x.frames.size(); i++) out << "    #" << i << " " << x.frames[i] << "\n";
  }
  out.flush();
}

WEFT_RACY_READER Stats stats_of(Runtime& r) {
  Stats s;
  s.fibers_live = r.live_fibers();
  for (std::uint32_t i = 0, n = r.arena.slot_count(); i < n; i++) {
    std::uint64_t v = r.arena.sync(i).load(std::memory_order_acquire);
    if ((v & (kLive | kSwitched | kWoken)) == (kLive | kSwitched)) s.fibers_parked++;
  }
  s.fibers_spawned = r.ext_spawned.load(std::memory_order_relaxed);
  s.polls = r.polls.load(std::memory_order_relaxed);
  s.wakes_futex = r.wakes_futex.load(std::memory_order_relaxed);
  s.wakes_poller = r.wakes_poller.load(std::memory_order_relaxed);
  s.stuck_reports = r.stuck_reports.load(std::memory_order_relaxed);
  s.stack_reserved = r.arena.reserved_bytes();
  s.stack_committed = r.arena.committed_bytes();
  unsigned nw = r.started_workers();
  s.spare_workers = nw - r.nworkers;
  for (unsigned i = 0; i < nw; i++) {
    Worker& w = *r.workers[i];
    s.fibers_spawned += w.spawned.load(std::memory_order_relaxed);
    s.switches += w.switches.load(std::memory_order_relaxed);
    s.steals += w.steals.load(std::memory_order_relaxed);
    s.parks += w.parks.load(std::memory_order_relaxed);
    s.budget_yields += w.budget_yields.load(std::memory_order_relaxed);
    s.polls_busy += w.polls_busy.load(std::memory_order_relaxed);
    s.polls_spinning += w.polls_spinning.load(std::memory_order_relaxed);
    s.polls_blocking += w.polls_blocking.load(std::memory_order_relaxed);
    s.spin_rounds += w.spin_rounds.load(std::memory_order_relaxed);
    s.spins_fruitless += w.spins_fruitless.load(std::memory_order_relaxed);
    s.futex_sleeps += w.futex_sleeps.load(std::memory_order_relaxed);
    s.wakes_kept += w.wakes_kept.load(std::memory_order_relaxed);
    Stats::Worker ws;
    ws.switches = w.switches.load(std::memory_order_relaxed);
    ws.spare = i >= r.nworkers;
    ws.stuck = w.reported.load(std::memory_order_relaxed);
    {
      std::lock_guard<detail::SpinLock> g(r.idle_lock);
      if (w.in_idle_list) ws.state = w.in_poller ? Stats::WorkerState::Polling : Stats::WorkerState::Idle;
      else ws.state = Stats::WorkerState::Searching;
    }
    if (Fiber* f = w.current.load(std::memory_order_relaxed)) {
      ws.state = Stats::WorkerState::Running;
      ws.fiber = f->id;
    }
    s.workers.push_back(ws);
  }
  return s;
}

}  // namespace weft::rt

namespace weft {

Stats stats() { return rt::stats_of(rt::current_runtime("stats")); }

void dump(std::ostream& out) { rt::dump_runtime(rt::current_runtime("dump"), out); }

}  // namespace weft
