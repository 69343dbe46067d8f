// signal.cpp: notify_signals / stop_signals (weft/signal.hpp; Go's
// os/signal and runtime/sigqueue.go for the model).
//
// Three pieces:
//   1. on_signal, the process-wide handler installed for each relayed signal.
//      Async-signal-safe only: it saves errno, adds one to the signal's
//      counter g_pending[sig] (a lock-free atomic), writes one byte to the
//      self-pipe's non-blocking write end (a full pipe drops the byte: a wake
//      is already pending), restores errno. No lock, no allocation.
//   2. The relay thread: blocks in read() on the pipe; on each wake it takes
//      Registry::mu, swaps every counter to 0 and offers each counted
//      delivery to each channel watching that signal with try_send, stopping
//      at the first one that does not fit (a full channel drops the rest,
//      as Go's relay does). try_send never parks, so the relay never blocks
//      on a channel; a closed channel (ChanClosed) is skipped.
//   3. The registry (notify_signals / stop_signals): which channels watch
//      which signals, how many channels watch each signal, and the
//      disposition each relayed signal had before weft's handler replaced it.
//
// Shared state and who guards it:
//   g_pending[sig]  written by on_signal (fetch_add) on any thread and by the
//                   relay / notify_signals (exchange, store) under mu.
//   g_wake_fd       the pipe's write end; written once, under mu, before any
//                   handler is installed (so a handler never sees -1 for a
//                   signal it counts, and a stale -1 only skips the wake).
//   Registry::mu    guards entries, watchers[], old[], relay_quit, and the
//                   sigaction() calls. Taken by notify/stop and by the relay;
//                   never by the handler. The relay calls try_send (a channel
//                   lock, then maybe an unpark) while holding it.
//   Registry::life  serialises notify_signals / stop_signals as a whole, so
//                   at most one relay thread exists; held across the relay's
//                   start and join (the relay never takes it).
// Lock order (HACKING.md): life -> mu -> a channel's lock.
//
// Invariants (under mu):
//   - watchers[s] == number of entries whose set holds s; weft's handler is
//     installed for s exactly when watchers[s] > 0, and old[s] then holds the
//     disposition it replaced.
//   - the relay thread runs exactly when entries is non-empty (outside
//     the calls themselves): so a runtime's deadlock check, which counts any
//     thread that is not weft's own as a possible waker, stays off while
//     signals are relayed and works again after the last stop_signals.
//
// Memory ordering: the handler's fetch_add happens before its write() to the
// pipe in program order; the relay's exchange happens after the read() that
// returned that byte. The pipe is a kernel object whose write/read pair
// orders them (the kernel takes the pipe's lock on both sides), so a drain
// after the read sees every count added before the byte was written; a count
// added later comes with its own byte and its own drain. The counters are
// seq_cst atomics anyway (TSan sees them; the cost is irrelevant here). A
// delivery counted after the last drain of a signal that stopped being
// relayed is dropped: the count is reset when the signal is relayed again.
//
// Rejected alternatives:
//   - signalfd with the signals blocked: the mask is per thread, so every
//     thread (workers, pool threads, the program's own threads, ones created
//     before notify_signals) would have to block them; issue 11 hit exactly
//     this.
//   - Relaying from a fiber of the runtime (Go runs signal.loop as a
//     goroutine): notify_signals must work before, between and without
//     runtimes, and from plain threads; a thread does not depend on one.
//   - A process-lifetime relay thread: simpler, but it would switch off
//     deadlock detection in every later runtime of the process, and it
//     shows up in leak and thread checks at exit.
#include <weft/signal.hpp>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>  // sigabbrev_np
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bitset>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace weft {
namespace {

constexpr int kNsig = NSIG;  // signals are 1 .. kNsig-1

std::atomic<std::uint32_t> g_pending[kNsig];
std::atomic<int> g_wake_fd{-1};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

extern "C" void on_signal(int sig, siginfo_t*, void*) {
  int saved = errno;
  if (sig > 0 && sig < kNsig) g_pending[sig].fetch_add(1, std::memory_order_seq_cst);
  int fd = g_wake_fd.load(std::memory_order_acquire);
  if (fd >= 0) {
    char b = 0;
    ssize_t r = ::write(fd, &b, 1);  // EAGAIN (pipe full): a wake is pending anyway
    (void)r;
  }
  errno = saved;
}

struct Entry {
  Chan<int> ch;
  std::bitset<kNsig> sigs;
};

struct Registry {
  std::mutex life;
  std::mutex mu;
  std::vector<Entry> entries;
  int watchers[kNsig] = {};
  struct sigaction old[kNsig] = {};
  int pipe_r = -1;
  std::thread relay;
  bool relay_quit = false;
};

// Immortal: a program may exit with signals still relayed (its relay thread
// still blocked in read), and nothing must be destroyed under it.
Registry& reg() {
  static Registry* r = new Registry;
  return *r;
}

// Offers what the handler counted to the channels (under mu).
void deliver_locked(Registry& r) {
  for (int s = 1; s < kNsig; s++) {
    std::uint32_t n = g_pending[s].exchange(0, std::memory_order_seq_cst);
    if (n == 0 || r.watchers[s] == 0) continue;
    for (Entry& e : r.entries) {
      if (!e.sigs.test(static_cast<std::size_t>(s))) continue;
      try {
        for (std::uint32_t i = 0; i < n; i++) {
          int v = s;
          if (!e.ch.try_send(v)) break;  // full: the rest are dropped
        }
      } catch (const ChanClosed&) {
        // closed while registered: it gets nothing more
      }
    }
  }
}

void relay_loop(Registry* r) {
  pthread_setname_np(pthread_self(), "weft-signals");
  for (;;) {
    char buf[64];
    ssize_t n = ::read(r->pipe_r, buf, sizeof buf);
    if (n < 0 && errno != EINTR && errno != EAGAIN) return;  // cannot happen on a pipe we own
    std::lock_guard<std::mutex> g(r->mu);
    deliver_locked(*r);
    if (r->relay_quit) {
      r->relay_quit = false;
      return;
    }
  }
}

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

void ensure_pipe_locked(Registry& r) {
  if (r.pipe_r >= 0) return;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("weft::notify_signals: pipe");
  if (::fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0) {
    int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    errno = e;
    throw_errno("weft::notify_signals: fcntl");
  }
  r.pipe_r = fds[0];  // both ends live as long as the process
  g_wake_fd.store(fds[1], std::memory_order_release);
}

void wake_relay(Registry& r) {
  char b = 1;
  ssize_t w = ::write(g_wake_fd.load(std::memory_order_acquire), &b, 1);
  (void)w;  // EAGAIN: the pipe is full, so the relay has a wake pending
  (void)r;
}

// With life held and mu held by `lk`: if no channel is left, stops the relay
// (releasing mu while joining it). mu is released on return either way.
void stop_relay_if_idle(Registry& r, std::unique_lock<std::mutex>& lk) {
  if (!r.entries.empty() || !r.relay.joinable()) {
    lk.unlock();
    return;
  }
  r.relay_quit = true;
  std::thread t = std::move(r.relay);
  lk.unlock();
  wake_relay(r);
  t.join();
}

std::string sig_text(int s) {
  std::string t = "signal " + std::to_string(s);
#ifdef __GLIBC__
  if (s > 0 && s < kNsig)
    if (const char* a = sigabbrev_np(s)) t += std::string(" (SIG") + a + ")";
#endif
  return t;
}

[[noreturn]] void refuse(int s, const std::string& why) {
  throw std::invalid_argument("weft::notify_signals: " + sig_text(s) + " cannot be relayed: " + why);
}

// Throws std::invalid_argument when s may not be relayed (weft/signal.hpp).
void check_signal(int s) {
  if (s <= 0 || s >= kNsig) refuse(s, "signal numbers are 1.." + std::to_string(kNsig - 1));
  switch (s) {
    case SIGKILL:
    case SIGSTOP:
      refuse(s, "it cannot be caught");
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
      refuse(s, "a synchronous fault signal (weft's stack-overflow report owns SIGSEGV)");
    case SIGQUIT:
      refuse(s, "weft owns it (Options::dump_on_sigquit)");
    default:
      break;
  }
#ifdef __SIGRTMIN
  // glibc keeps __SIGRTMIN .. SIGRTMIN-1 for its threads (cancellation, setxid).
  if (s >= __SIGRTMIN && s < SIGRTMIN) refuse(s, "the C library reserves it");
#endif
}

void check_chan(const Chan<int>& ch, const char* fn) {
  if (!ch) throw std::invalid_argument(std::string(fn) + ": nil channel");
}

}  // namespace

void notify_signals(Chan<int> ch, std::initializer_list<int> signals) {
  check_chan(ch, "weft::notify_signals");
  if (signals.size() == 0) throw std::invalid_argument("weft::notify_signals: no signals given (name them)");
  for (int s : signals) check_signal(s);

  Registry& r = reg();
  std::lock_guard<std::mutex> life(r.life);
  std::unique_lock<std::mutex> lk(r.mu);
  ensure_pipe_locked(r);
  if (!r.relay.joinable()) {
    r.relay_quit = false;
    r.relay = std::thread(relay_loop, &r);  // std::system_error if it cannot start
  }
  auto it = std::find_if(r.entries.begin(), r.entries.end(), [&](const Entry& e) { return e.ch == ch; });
  if (it == r.entries.end()) {
    r.entries.push_back(Entry{std::move(ch), {}});
    it = r.entries.end() - 1;
  }
  int err = 0;
  for (int s : signals) {
    auto bit = static_cast<std::size_t>(s);
    if (it->sigs.test(bit)) continue;
    if (r.watchers[s] == 0) {
      struct sigaction sa {};
      sa.sa_sigaction = on_signal;
      sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
      sigemptyset(&sa.sa_mask);
      g_pending[s].store(0, std::memory_order_seq_cst);  // drop counts left from an earlier relay of s
      if (::sigaction(s, &sa, &r.old[s]) != 0) {
        err = errno;
        break;
      }
    }
    r.watchers[s]++;
    it->sigs.set(bit);
  }
  if (err == 0) return;
  if (it->sigs.none()) r.entries.erase(it);
  stop_relay_if_idle(r, lk);
  throw std::system_error(err, std::generic_category(), "weft::notify_signals: sigaction");
}

void stop_signals(Chan<int> ch) {
  check_chan(ch, "weft::stop_signals");
  Registry& r = reg();
  std::lock_guard<std::mutex> life(r.life);
  std::unique_lock<std::mutex> lk(r.mu);
  auto it = std::find_if(r.entries.begin(), r.entries.end(), [&](const Entry& e) { return e.ch == ch; });
  if (it == r.entries.end()) return;
  for (int s = 1; s < kNsig; s++) {
    if (!it->sigs.test(static_cast<std::size_t>(s))) continue;
    if (--r.watchers[s] == 0) ::sigaction(s, &r.old[s], nullptr);  // valid: it was accepted before
  }
  r.entries.erase(it);  // releases the registry's handle (under mu: the relay may be using it)
  stop_relay_if_idle(r, lk);
}

}  // namespace weft
