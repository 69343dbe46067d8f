// signal_test.cpp: notify_signals / stop_signals (weft/signal.hpp). Its own
// executable ('signals'): signal dispositions are process-wide, so nothing
// else may run beside it. Go's os/signal/signal_test.go inspired several of
// these (each names the Go test it follows); the code is our own.
//
// Determinism: raise() and pthread_kill(pthread_self()) run the handler on
// the calling thread before they return (TSan too: it handles a signal a
// thread sends itself at once), so the count is recorded when they return;
// fence() then waits until the relay has offered it (see there). kill() to
// the process is asynchronous: those tests wait for each expected value with
// a generous bound and never count on timing.
//
// Every test leaves the process as it found it: Watch (RAII) stops its
// channel even when an assertion fails, and a test only stops a channel once
// every signal it sent has arrived, so no stray delivery meets a restored
// SIG_DFL (which would end the test process for SIGUSR1, SIGTERM...). The
// stress tests, whose last kill()s may still be in flight, install a
// harmless handler of their own first (UserHandler), which stop_signals
// restores. (sigpending() cannot tell: it shows blocked signals only.)
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using weft::Chan;

namespace {

// Stops ch when it goes out of scope.
struct Watch {
  Chan<int> ch;
  Watch(Chan<int> c, std::initializer_list<int> sigs) : ch(std::move(c)) { weft::notify_signals(ch, sigs); }
  ~Watch() { weft::stop_signals(ch); }
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
};

// The next value on c, or -1 after `limit` (a bound for a broken build, not a
// timing expectation). Works on fibers and plain threads.
int wait_sig(const Chan<int>& c, std::chrono::nanoseconds limit = 20s) {
  Chan<int> ch = c;
  int got = -1;
  weft::select(weft::recv(ch, [&](std::optional<int> v) { got = v ? *v : -2; }), weft::after(limit));
  return got;
}

// Returns once the relay has offered every delivery counted before the call
// (of a signal below SIGRTMAX). Why that holds: fence registers a channel
// (taking the registry lock, so any relay pass running when it was called
// has ended), then raises SIGRTMAX; the pass that offers SIGRTMAX started
// after that lock, so it read every earlier count, and it offers signals in
// increasing number, SIGRTMAX last.
void fence() {
  Chan<int> f(1);
  Watch w(f, {SIGRTMAX});
  raise(SIGRTMAX);
  ASSERT_EQ(wait_sig(f), SIGRTMAX);
}

// Values buffered in c now, drained.
std::vector<int> drain(const Chan<int>& c) {
  std::vector<int> out;
  while (auto v = c.try_recv()) out.push_back(*v);
  return out;
}

struct sigaction current(int sig) {
  struct sigaction sa {};
  sigaction(sig, nullptr, &sa);
  return sa;
}

int threads_now() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') n++;
    closedir(d);
  }
  return n;
}

// A program's own handler, to check that stop_signals gives it back.
std::atomic<int> g_user_hits{0};
std::atomic<int> g_user_sig{0};
extern "C" void user_handler(int sig, siginfo_t*, void*) {
  g_user_sig.store(sig);
  g_user_hits.fetch_add(1);
}

// Installs user_handler for sig now and the saved disposition back at scope exit.
struct UserHandler {
  int sig;
  struct sigaction saved {};
  explicit UserHandler(int s) : sig(s) {
    struct sigaction sa {};
    sa.sa_sigaction = user_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sigaction(sig, &sa, &saved);
    g_user_hits = 0;
  }
  ~UserHandler() { sigaction(sig, &saved, nullptr); }
};

bool is_ours(int sig) {
  struct sigaction sa = current(sig);
  return (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction != user_handler && sa.sa_handler != SIG_DFL &&
         sa.sa_handler != SIG_IGN;
}

class Signals : public chantest::WorkersTest {};
INSTANTIATE_TEST_SUITE_P(W, Signals, ::testing::Values(1u, 2u), chantest::workers_name);

// ---- bad input --------------------------------------------------------------

void expect_refused(std::initializer_list<int> sigs, const char* needle) {
  Chan<int> c(1);
  try {
    weft::notify_signals(c, sigs);
    ADD_FAILURE() << "accepted, expected std::invalid_argument mentioning " << needle;
    weft::stop_signals(c);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::strstr(e.what(), needle), nullptr) << e.what();
  }
}

TEST(SignalsBadInput, RefusedSignalsAndNilChannels) {
  expect_refused({0}, "1..64");
  expect_refused({-1}, "1..64");
  expect_refused({NSIG}, "1..64");
  expect_refused({1000}, "1..64");
  expect_refused({SIGKILL}, "SIGKILL");
  expect_refused({SIGSTOP}, "cannot be caught");
  expect_refused({SIGSEGV}, "stack-overflow");
  expect_refused({SIGBUS}, "synchronous fault");
  expect_refused({SIGFPE}, "synchronous fault");
  expect_refused({SIGILL}, "synchronous fault");
  expect_refused({SIGQUIT}, "dump_on_sigquit");
  if (SIGRTMIN > 32) expect_refused({32}, "reserves");
  expect_refused({}, "no signals");

  EXPECT_THROW(weft::notify_signals(Chan<int>(), {SIGUSR1}), std::invalid_argument);
  EXPECT_THROW(weft::stop_signals(Chan<int>()), std::invalid_argument);
}

// One refused signal in the list: nothing changes, not even for the good ones.
TEST(SignalsBadInput, AllOrNothing) {
  struct sigaction before = current(SIGUSR1);
  int threads = threads_now();
  expect_refused({SIGUSR1, SIGKILL}, "SIGKILL");
  struct sigaction after = current(SIGUSR1);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
  EXPECT_EQ(threads_now(), threads);  // no relay started
}

// Stopping a channel that was never registered does nothing.
TEST(SignalsBadInput, StopUnknownChannel) {
  Chan<int> c(1);
  EXPECT_NO_THROW(weft::stop_signals(c));
  EXPECT_NO_THROW(weft::stop_signals(c));
}

// ---- delivery ---------------------------------------------------------------

// signal_test.go TestSignal: one channel for SIGHUP, then a second for
// SIGWINCH and SIGHUP; a full channel (the first) does not hold up the other.
TEST_P(Signals, GoTestSignal) {
  weft::run([] {
    Chan<int> c(1);
    Watch w(c, {SIGHUP});
    kill(getpid(), SIGHUP);
    EXPECT_EQ(wait_sig(c), SIGHUP);

    Chan<int> c1(10);
    Watch w1(c1, {SIGWINCH, SIGHUP});
    kill(getpid(), SIGWINCH);
    EXPECT_EQ(wait_sig(c1), SIGWINCH);
    kill(getpid(), SIGHUP);
    EXPECT_EQ(wait_sig(c1), SIGHUP);
    kill(getpid(), SIGHUP);
    EXPECT_EQ(wait_sig(c1), SIGHUP);
    // The first of those two SIGHUPs waits on c; the second found it full.
    EXPECT_EQ(wait_sig(c), SIGHUP);
    fence();
    EXPECT_TRUE(drain(c).empty());
    EXPECT_TRUE(drain(c1).empty());
  }, opts());
}

// SIGTERM and SIGINT do not end the process while relayed, and get SIG_DFL back after.
TEST_P(Signals, TermAndIntAreRelayedNotFatal) {
  ASSERT_EQ(current(SIGTERM).sa_handler, SIG_DFL);
  weft::run([] {
    Chan<int> c(4);
    {
      Watch w(c, {SIGTERM, SIGINT});
      EXPECT_TRUE(is_ours(SIGTERM));
      kill(getpid(), SIGTERM);
      EXPECT_EQ(wait_sig(c), SIGTERM);
      raise(SIGINT);
      EXPECT_EQ(wait_sig(c), SIGINT);
    }
    EXPECT_EQ(current(SIGTERM).sa_handler, SIG_DFL);
    EXPECT_EQ(current(SIGINT).sa_handler, SIG_DFL);
  }, opts());
}

// Several channels watching one signal each get every delivery; a channel
// watching another signal gets none of it.
TEST_P(Signals, MultipleChannels) {
  weft::run([] {
    Chan<int> a(4), b(4), other(4);
    Watch wa(a, {SIGUSR1}), wb(b, {SIGUSR1, SIGUSR2}), wo(other, {SIGUSR2});
    raise(SIGUSR1);
    EXPECT_EQ(wait_sig(a), SIGUSR1);
    EXPECT_EQ(wait_sig(b), SIGUSR1);
    raise(SIGUSR2);
    EXPECT_EQ(wait_sig(b), SIGUSR2);
    EXPECT_EQ(wait_sig(other), SIGUSR2);
    fence();
    EXPECT_TRUE(drain(a).empty());
    EXPECT_TRUE(drain(b).empty());
    EXPECT_TRUE(drain(other).empty());
  }, opts());
}

// Notify twice with one channel (through two handles of it) adds signals and
// never doubles a delivery.
TEST_P(Signals, NotifyTwiceAdds) {
  weft::run([] {
    Chan<int> c(8);
    Chan<int> same = c;  // another handle of the same channel
    Watch w(c, {SIGUSR1});
    weft::notify_signals(same, {SIGUSR2, SIGUSR1});
    raise(SIGUSR1);
    raise(SIGUSR2);
    fence();
    std::vector<int> got = drain(c);
    EXPECT_EQ(got, (std::vector<int>{SIGUSR1, SIGUSR2}));
    // One stop (through either handle) ends both registrations.
    weft::stop_signals(same);
    EXPECT_EQ(current(SIGUSR2).sa_handler, SIG_DFL);
    weft::notify_signals(c, {SIGUSR1});  // Watch stops it again at the end
  }, opts());
}

// A full channel drops what does not fit; the relay goes on for the others.
TEST_P(Signals, FullChannelDrops) {
  weft::run([] {
    Chan<int> one(1), three(3), roomy(64);
    Watch w1(one, {SIGUSR1}), w3(three, {SIGUSR1}), wr(roomy, {SIGUSR1});
    for (int i = 0; i < 5; i++) raise(SIGUSR1);
    fence();
    EXPECT_EQ(drain(one).size(), 1u);
    EXPECT_EQ(drain(three).size(), 3u);
    EXPECT_EQ(drain(roomy).size(), 5u);
    // Room again: deliveries resume.
    raise(SIGUSR1);
    EXPECT_EQ(wait_sig(one), SIGUSR1);
  }, opts());
}

// Unbuffered: a delivery reaches a receiver already parked, and is dropped
// when nobody is receiving (try_send semantics).
TEST_P(Signals, UnbufferedChannel) {
  weft::run([] {
    Chan<int> c(0);
    Watch w(c, {SIGUSR1});
    raise(SIGUSR1);  // nobody receives: dropped
    fence();
    auto h = weft::go([c] { return *c.recv(); });
    chantest::wait_others_parked();
    raise(SIGUSR1);
    EXPECT_EQ(h.join(), SIGUSR1);
  }, {.workers = 1});
}

// raise() in one fiber, received by another, which acknowledges each one
// before the next is raised (so none meets a full channel).
TEST_P(Signals, RaiseFromAFiber) {
  weft::run([] {
    Chan<int> c(1), ack(0);
    Watch w(c, {SIGUSR2});
    const int n = 50;
    auto rx = weft::go([c, ack] {
      int k = 0;
      for (int i = 0; i < n; i++) {
        k += wait_sig(c) == SIGUSR2;
        ack.send(i);
      }
      return k;
    });
    auto tx = weft::go([ack] {
      for (int i = 0; i < n; i++) {
        raise(SIGUSR2);
        EXPECT_EQ(ack.recv(), i);
      }
    });
    tx.join();
    EXPECT_EQ(rx.join(), n);
  }, opts());
}

// pthread_kill to a plain thread weft did not create, blocked in a system
// call: the handler runs there, the call goes on, and a fiber gets the signal.
TEST_P(Signals, PthreadKillToAPlainThread) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  std::atomic<long> got{-1};
  std::thread plain([&] {
    // Blocked in poll(): under TSan, whose handlers of asynchronous signals
    // run only inside the calls it intercepts as blocking, read() is not one.
    pollfd pfd{p[0], POLLIN, 0};
    while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
    char b;
    got = ::read(p[0], &b, 1);
  });
  weft::run([&] {
    Chan<int> c(1);
    Watch w(c, {SIGUSR1});
    for (int i = 0; i < 5; i++) {
      ASSERT_EQ(pthread_kill(plain.native_handle(), SIGUSR1), 0);
      EXPECT_EQ(wait_sig(c), SIGUSR1);
    }
  }, opts());
  EXPECT_EQ(got.load(), -1);  // still blocked: the signal did not end its wait
  ASSERT_EQ(::write(p[1], "x", 1), 1);
  plain.join();
  EXPECT_EQ(got.load(), 1);
  close(p[0]);
  close(p[1]);
}

// kill(getpid()) while fibers keep every worker busy: each delivery arrives.
TEST_P(Signals, KillWhileFibersRun) {
  weft::run([] {
    Chan<int> c(1);
    Watch w(c, {SIGHUP});
    std::atomic<bool> stop{false};
    std::vector<weft::JoinHandle<void>> busy;
    for (int i = 0; i < 8; i++)
      busy.push_back(weft::go([&stop] {
        while (!stop.load(std::memory_order_relaxed)) weft::this_fiber::yield();
      }));
    const int n = static_cast<int>(chantest::scaled(200, 20));
    int k = 0;
    for (int i = 0; i < n; i++) {
      kill(getpid(), SIGHUP);
      k += wait_sig(c) == SIGHUP;
    }
    stop = true;
    for (auto& h : busy) h.join();
    EXPECT_EQ(k, n);
  }, opts());
}

// A fiber parked in recv on the signal channel can be cancelled; the channel
// and the relay go on working.
TEST_P(Signals, CancelAFiberParkedOnTheSignalChannel) {
  weft::run([] {
    Chan<int> c(1);
    Watch w(c, {SIGUSR1});
    auto h = weft::go([c] { return c.recv(); });
    chantest::wait_others_parked();
    h.cancel();
    EXPECT_THROW(h.join(), weft::Cancelled);
    raise(SIGUSR1);
    EXPECT_EQ(wait_sig(c), SIGUSR1);
    // And through a Scope.
    weft::Scope s;
    s.spawn([c] { (void)c.recv(); });
    s.spawn([c] { (void)c.recv(); });
    chantest::wait_others_parked();
    s.cancel();
    EXPECT_NO_THROW(s.wait());
  }, opts());
}

// A channel closed while still registered gets nothing (no crash, no throw
// anywhere); stop_signals then works as usual.
TEST_P(Signals, ClosedWhileRegistered) {
  weft::run([] {
    Chan<int> c(1), live(1);
    Watch wl(live, {SIGUSR1});
    weft::notify_signals(c, {SIGUSR1});
    c.close();
    raise(SIGUSR1);
    EXPECT_EQ(wait_sig(live), SIGUSR1);
    EXPECT_FALSE(c.recv().has_value());
    weft::stop_signals(c);
  }, opts());
}

// ---- dispositions -----------------------------------------------------------

// signal_test.go TestStop, with a program's own handler as the previous
// disposition: while relayed it is not called; after stop_signals it is back
// (same function, flags and mask) and a raised signal reaches it, not the channel.
TEST(SignalsStop, RestoresTheProgramsHandler) {
  UserHandler user(SIGUSR1);
  Chan<int> c(1);
  weft::notify_signals(c, {SIGUSR1});
  EXPECT_TRUE(is_ours(SIGUSR1));
  raise(SIGUSR1);
  EXPECT_EQ(wait_sig(c), SIGUSR1);
  EXPECT_EQ(g_user_hits.load(), 0);
  weft::stop_signals(c);
  struct sigaction now = current(SIGUSR1);
  EXPECT_EQ(now.sa_sigaction, user_handler);
  EXPECT_TRUE(now.sa_flags & SA_SIGINFO);
  EXPECT_EQ(sigismember(&now.sa_mask, SIGUSR2), 1);
  raise(SIGUSR1);
  EXPECT_EQ(g_user_hits.load(), 1);
  EXPECT_EQ(g_user_sig.load(), SIGUSR1);
  fence();
  EXPECT_TRUE(drain(c).empty());
}

// SIG_IGN and SIG_DFL come back as they were.
TEST(SignalsStop, RestoresIgnoreAndDefault) {
  struct sigaction ign {}, saved {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGUSR2, &ign, &saved);
  ASSERT_EQ(current(SIGWINCH).sa_handler, SIG_DFL);
  Chan<int> c(2);
  weft::notify_signals(c, {SIGUSR2, SIGWINCH});
  raise(SIGUSR2);  // ignored before: relayed now
  EXPECT_EQ(wait_sig(c), SIGUSR2);
  weft::stop_signals(c);
  EXPECT_EQ(current(SIGUSR2).sa_handler, SIG_IGN);
  EXPECT_EQ(current(SIGWINCH).sa_handler, SIG_DFL);
  raise(SIGUSR2);  // ignored again: nothing happens
  raise(SIGWINCH); // default: ignored
  fence();
  EXPECT_TRUE(drain(c).empty());
  sigaction(SIGUSR2, &saved, nullptr);
}

// "Previous" is the disposition before the first notify_signals of the
// signal: a second channel does not replace it, and it comes back only when
// the last channel stops.
TEST(SignalsStop, PreviousIsBeforeTheFirstNotify) {
  UserHandler user(SIGUSR1);
  Chan<int> a(1), b(1);
  weft::notify_signals(a, {SIGUSR1});
  weft::notify_signals(b, {SIGUSR1});
  weft::stop_signals(a);
  EXPECT_TRUE(is_ours(SIGUSR1));
  raise(SIGUSR1);
  EXPECT_EQ(wait_sig(b), SIGUSR1);
  EXPECT_EQ(g_user_hits.load(), 0);
  fence();
  EXPECT_TRUE(drain(a).empty());  // stopped: nothing for a
  weft::stop_signals(b);
  EXPECT_EQ(current(SIGUSR1).sa_sigaction, user_handler);
  raise(SIGUSR1);
  EXPECT_EQ(g_user_hits.load(), 1);
}

// After stop_signals returns, the channel gets nothing more, even while the
// signal is still relayed to others (Go's Stop guarantee: it may be closed).
TEST_P(Signals, NothingAfterStop) {
  weft::run([] {
    Chan<int> keep(64);
    Watch wk(keep, {SIGUSR1});
    for (int round = 0; round < 20; round++) {
      Chan<int> c(64);
      weft::notify_signals(c, {SIGUSR1});
      raise(SIGUSR1);
      weft::stop_signals(c);
      c.close();  // a send after this would throw in the relay and be lost: check below
      std::size_t before = c.size();
      raise(SIGUSR1);
      fence();
      EXPECT_EQ(c.size(), before);
      EXPECT_LE(before, 1u);
      drain(keep);
    }
  }, opts());
}

// ---- outside and across runtimes --------------------------------------------

// No runtime at all: a plain thread registers, receives (parking the thread) and stops.
TEST(SignalsPlain, FromAPlainThread) {
  Chan<int> c(1);
  Watch w(c, {SIGUSR1});
  raise(SIGUSR1);
  EXPECT_EQ(c.recv(), SIGUSR1);
  std::thread other([c] { kill(getpid(), SIGUSR1); });
  EXPECT_EQ(wait_sig(c), SIGUSR1);
  other.join();
}

// One registration, several runtimes in sequence, and plain code between them.
TEST(SignalsPlain, AcrossRuntimesInSequence) {
  Chan<int> c(1);
  Watch w(c, {SIGUSR2});
  for (unsigned workers : {1u, 2u, 1u}) {
    int got = weft::run([&] {
      auto h = weft::go([c] { return wait_sig(c); });
      raise(SIGUSR2);
      return h.join();
    }, {.workers = workers});
    EXPECT_EQ(got, SIGUSR2);
    raise(SIGUSR2);
    EXPECT_EQ(wait_sig(c), SIGUSR2);
  }
}

// The relay thread exists exactly while a channel is registered.
TEST(SignalsPlain, RelayThreadComesAndGoes) {
  int base = threads_now();
  {
    Chan<int> a(1), b(1);
    Watch wa(a, {SIGUSR1});
    EXPECT_EQ(threads_now(), base + 1);
    Watch wb(b, {SIGUSR2});
    EXPECT_EQ(threads_now(), base + 1);
  }
  EXPECT_EQ(threads_now(), base);
  Chan<int> c(1);
  Watch wc(c, {SIGUSR1});  // and again
  EXPECT_EQ(threads_now(), base + 1);
  raise(SIGUSR1);
  EXPECT_EQ(wait_sig(c), SIGUSR1);
}

// ---- the deadlock check ------------------------------------------------------

// A Go program whose main waits on signal.Notify's channel is not deadlocked:
// neither is a runtime whose only fiber is parked in recv on a signal channel.
// The signal comes from a timer of the kernel (setitimer), so no thread of
// the test stands in as a possible waker; the deadlock check would fire
// within a few monitor ticks (milliseconds) if it counted this wait as stuck.
TEST_P(Signals, WaitingOnASignalIsNotADeadlock) {
  Chan<int> c(1);
  Watch w(c, {SIGALRM});
  struct Timer {
    Timer() {
      itimerval t{};
      t.it_value.tv_usec = 300'000;
      setitimer(ITIMER_REAL, &t, nullptr);
    }
    ~Timer() {
      itimerval off{};
      setitimer(ITIMER_REAL, &off, nullptr);
    }
  } timer;
  int got = 0;
  EXPECT_NO_THROW(got = weft::run([c] { return *c.recv(); }, opts()));
  EXPECT_EQ(got, SIGALRM);
}

// Once nothing is relayed the relay thread is gone, and a real deadlock is
// reported again.
TEST_P(Signals, DeadlockDetectedAgainAfterStop) {
  WEFT_SKIP_WITHOUT_DEADLOCK_DETECTION();
  {
    Chan<int> c(1);
    Watch w(c, {SIGUSR1});
  }
  testing::internal::CaptureStderr();
  EXPECT_THROW(weft::run([] {
    Chan<int> never(1);
    (void)never.recv();
  }, opts()), weft::Deadlock);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("deadlock"), std::string::npos);
}

// ---- stress -------------------------------------------------------------------

// signal_test.go TestStress: a fiber sends SIGUSR1 to the process as fast as
// it can while another receives; then Stop, and closing the channel is safe.
TEST_P(Signals, GoTestStress) {
  UserHandler late(SIGUSR1);  // the last kills may land after the last stop: harmless
  weft::run([] {
    Chan<int> sig(1);
    weft::notify_signals(sig, {SIGUSR1});
    const int n = static_cast<int>(chantest::scaled(3000, 200));
    std::atomic<int> k{0};
    auto sender = weft::go([sig, &k] {
      // kill() is asynchronous and the kernel merges a pending signal with a
      // new one: the burst may all land after it. Go on until one was received.
      auto give_up = std::chrono::steady_clock::now() + 20s;
      for (int i = 0; i < n || (k.load() == 0 && std::chrono::steady_clock::now() < give_up); i++) {
        kill(getpid(), SIGUSR1);
        weft::this_fiber::yield();
      }
      weft::stop_signals(sig);
      sig.close();  // safe: nothing is sent to sig after stop_signals returned
    });
    for (int v : sig) {
      EXPECT_EQ(v, SIGUSR1);
      k++;
    }
    sender.join();
    EXPECT_GT(k.load(), 0);
  }, opts());
}

// Many fibers register and stop their own channels concurrently while others
// send SIGUSR1 and SIGUSR2 to the process and to themselves; a channel
// watching all the while gets every signal raised (raise is synchronous),
// and each registration round sees the signals raised inside it.
TEST_P(Signals, StressManyChannels) {
  UserHandler late1(SIGUSR1), late2(SIGUSR2);  // late kills after the last stop: harmless
  weft::run([] {
    Chan<int> keep(1 << 16);
    Watch wk(keep, {SIGUSR1, SIGUSR2});
    const int rounds = static_cast<int>(chantest::scaled(200, 20));
    const int fibers = 8;
    std::atomic<int> raised{0}, mine_ok{0};
    weft::Scope s;
    for (int f = 0; f < fibers; f++)
      s.spawn([&, f] {
        int sig = f % 2 ? SIGUSR1 : SIGUSR2;
        for (int i = 0; i < rounds; i++) {
          Chan<int> c(4);
          weft::notify_signals(c, {sig});
          raise(sig);
          raised++;
          if (wait_sig(c) == sig) mine_ok++;
          weft::stop_signals(c);
          if (i % 16 == 0) kill(getpid(), sig);
        }
      });
    s.wait();
    fence();
    EXPECT_EQ(mine_ok.load(), fibers * rounds);
    std::size_t got = drain(keep).size();
    EXPECT_GE(got, static_cast<std::size_t>(raised.load()));  // plus the kills (some merged by the kernel)
  }, opts());
}

}  // namespace
