// exhaustion_test.cpp: running out of stacks or descriptors is an error, not
// a crash. A burst of parked fibers that exhausts the stack arena ends with a
// std::system_error naming the limits; the fibers already started finish, no
// slot or JoinState leaks (RuntimeTest's teardown accounting; LSan under
// ASan), and spawning works again once slots are free. Socket creation under
// RLIMIT_NOFILE throws EMFILE and the runtime carries on.
//
// Two ways to exhaust the arena:
// - StackArena::fail_maps_for_testing (every build): new chunks fail as if
//   mmap returned ENOMEM; in-process, nothing else is limited.
// - a real RLIMIT_AS in a child process (plain builds only: ASan and TSan
//   reserve terabytes of shadow address space, so no RLIMIT_AS leaves room
//   to start them).
// Limits are only ever lowered in child processes (gtest death tests in the
// "threadsafe" style re-execute the binary), so they never leak into other
// tests.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "internal.hpp"
#include "stack.hpp"
#include "test_util.hpp"

namespace {

using weft::rt::StackArena;
using weft_test::WorkersTest;

#if defined(__SANITIZE_ADDRESS__) || defined(WEFT_TEST_TSAN)
#define WEFT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_TEST_SANITIZED 1
#endif
#endif

// Fibers started by a burst, parked on `gate` until it is released, and the
// error that ended the burst.
struct Burst {
  std::vector<weft::JoinHandle<int>> handles;
  std::error_code code;
  std::string what;
};

// Starts up to `max` fibers that park on gate (a WaitGroup at 1) and then
// return their index; stops at the first std::system_error. `b.handles`
// must have capacity for max (no allocation here under a lowered limit).
void burst(Burst& b, weft::WaitGroup& gate, std::size_t max) {
  try {
    for (std::size_t i = b.handles.size(); i < max; i++)
      b.handles.push_back(weft::go([&gate, i] {
        gate.wait();
        return static_cast<int>(i);
      }));
  } catch (const std::system_error& e) {
    b.code = e.code();
    b.what = e.what();
  }
}

// Joins a burst's fibers: true when every one returned its index.
bool join_all(Burst& b) {
  bool ok = true;
  for (std::size_t i = 0; i < b.handles.size(); i++) ok &= b.handles[i].join() == static_cast<int>(i);
  b.handles.clear();
  return ok;
}

// Starts n parked fibers, releases and joins them: true when all ran.
bool parked_round(std::size_t n) {
  weft::WaitGroup gate;
  gate.add(1);
  Burst b;
  b.handles.reserve(n);
  burst(b, gate, n);
  gate.done();
  bool ok = b.handles.size() == n && join_all(b);
  if (!b.what.empty()) std::fprintf(stderr, "round of %zu: %s\n", n, b.what.c_str());
  return ok;
}

bool names_the_limits(const std::string& what) {
  return what.find("cannot map a fiber stack arena") != std::string::npos &&
         what.find("RLIMIT_AS") != std::string::npos && what.find("vm.max_map_count") != std::string::npos &&
         what.find("mappings in use") != std::string::npos;
}

// Slots a worker may hold back from other workers after fibers end: its hot
// cache (16) and its unflushed trim batch (up to 31). Tests run at most 2
// workers, so a second round may find that many fewer slots than the first.
constexpr std::size_t kHeldByWorkers = 2 * (16 + 31);

class Exhaustion : public WorkersTest {};

// The arena may not map a second chunk: the burst fills the first (1024
// slots, one of them main's) and the next go() throws. Then:
// - spawn() and a go() with a heap closure throw too (neither leaks);
// - the parked fibers finish with their values once released;
// - new fibers reuse the freed slots while mapping still fails (minus the
//   slots a worker holds in its cache and trim batch: 16 + 31 each);
// - once mapping works again, a burst larger than a chunk succeeds.
TEST_P(Exhaustion, StackArenaFullIsASystemErrorAndSpawningRecovers) {
  weft::run(
      [] {
        const std::size_t chunk = StackArena::kChunkSlots;
        weft::WaitGroup gate;
        gate.add(1);
        Burst b;
        b.handles.reserve(4 * chunk);
        StackArena::fail_maps_for_testing(true);
        struct Unhook {
          ~Unhook() { StackArena::fail_maps_for_testing(false); }
        } unhook;
        burst(b, gate, 4 * chunk);
        EXPECT_EQ(b.code, std::make_error_code(std::errc::not_enough_memory)) << b.what;
        EXPECT_TRUE(names_the_limits(b.what)) << b.what;
        EXPECT_LT(b.handles.size(), chunk);
        EXPECT_GE(b.handles.size(), chunk - 64);
        std::fprintf(stderr, "burst: %zu fibers, then: %s\n", b.handles.size(), b.what.c_str());

        EXPECT_THROW(weft::spawn([] {}), std::system_error);
        struct Big {
          char bytes[8192] = {};
        } big;
        EXPECT_THROW(weft::go([big] { return big.bytes[0] + 0; }), std::system_error);

        const std::size_t n = b.handles.size();
        gate.done();
        EXPECT_TRUE(join_all(b));
        EXPECT_TRUE(parked_round(n - kHeldByWorkers)) << "freed slots were not reused";
        StackArena::fail_maps_for_testing(false);
        EXPECT_TRUE(parked_round(chunk + 200)) << "a new chunk was not mapped once mapping works again";
      },
      opts());
}

// Resident memory and address space of the arena (for weft::stats()).
class Arena : public weft_test::RuntimeTest {};

TEST_F(Arena, ReservedAndCommittedBytes) {
  weft::run(
      [] {
        auto& arena = weft::rt::current_fiber()->rt->arena;
        const std::size_t chunk_bytes = StackArena::kChunkSlots * arena.slot_bytes();
        EXPECT_EQ(arena.reserved_bytes(), chunk_bytes);
        std::size_t idle = arena.committed_bytes();
        EXPECT_GT(idle, 0u);  // main's own frames, in the only slot carved yet
        EXPECT_LE(idle, arena.slot_bytes());
        // 256 fibers parked with 32 KiB of touched stack each: at least
        // 8 MiB more resident, at most their whole slots.
        constexpr std::size_t kFibers = 256, kTouch = 32 * 1024;
        weft::WaitGroup gate, parked;
        gate.add(1);
        parked.add(kFibers);
        std::vector<weft::JoinHandle<void>> hs;
        for (std::size_t i = 0; i < kFibers; i++)
          hs.push_back(weft::go([&] {
            auto* p = static_cast<volatile char*>(__builtin_alloca(kTouch));
            for (std::size_t k = 0; k < kTouch; k += 512) p[k] = 1;
            parked.done();
            gate.wait();
          }));
        parked.wait();
        std::size_t busy = arena.committed_bytes();
        EXPECT_GE(busy, idle + kFibers * kTouch);
        EXPECT_LE(busy, idle + kFibers * arena.slot_bytes());
        // A second chunk adds to the reservation.
        Burst b;
        b.handles.reserve(StackArena::kChunkSlots + 1);
        weft::WaitGroup gate2;
        gate2.add(1);
        burst(b, gate2, StackArena::kChunkSlots + 1);
        EXPECT_TRUE(b.what.empty()) << b.what;
        EXPECT_EQ(arena.reserved_bytes(), 2 * chunk_bytes);
        gate.done();
        gate2.done();
        for (auto& h : hs) h.join();
        EXPECT_TRUE(join_all(b));
      },
      {.workers = 2});
}

// Address space in use (VmSize) in bytes.
std::size_t vm_size() {
  std::ifstream f("/proc/self/statm");
  std::size_t pages = 0;
  f >> pages;
  return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// The same burst against a real RLIMIT_AS, in a child process: the limit
// leaves 96 MiB of address space free, less than one more chunk (256 MiB).
TEST_P(Exhaustion, RlimitAsEndsTheBurstWithANamedError) {
#ifdef WEFT_TEST_SANITIZED
  GTEST_SKIP() << "sanitizers reserve terabytes of shadow address space, so no RLIMIT_AS leaves room to start "
                  "them; StackArenaFullIsASystemErrorAndSpawningRecovers covers this path with the mapping hook";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const unsigned workers = GetParam();
  EXPECT_EXIT(
      {
        int rc = weft::run(
            [] {
              const std::size_t chunk = StackArena::kChunkSlots;
              weft::WaitGroup gate;
              gate.add(1);
              Burst b;
              b.handles.reserve(4 * chunk);
              b.what.reserve(1024);
              rlimit old{};
              getrlimit(RLIMIT_AS, &old);
              rlimit low = old;
              low.rlim_cur = vm_size() + (96u << 20);
              if (setrlimit(RLIMIT_AS, &low) != 0) return 10;
              burst(b, gate, 4 * chunk);
              const std::size_t n = b.handles.size();
              std::fprintf(stderr, "burst: %zu fibers, then: %s\n", n, b.what.c_str());
              if (b.code != std::make_error_code(std::errc::not_enough_memory)) return 11;
              if (!names_the_limits(b.what) || b.what.find("MiB in use") == std::string::npos) return 12;
              if (n >= chunk || n < chunk - 64) return 13;
              gate.done();
              if (!join_all(b)) return 14;
              // Freed slots serve new fibers under the same limit.
              if (!parked_round(n - kHeldByWorkers)) return 15;
              if (setrlimit(RLIMIT_AS, &old) != 0) return 16;
              if (!parked_round(chunk + 200)) return 17;
              return 0;
            },
            {.workers = workers});
        if (rc == 0 && weft::rt::teardown_stats().leaked_slots != 0) rc = 18;
        std::fflush(stderr);
        std::_Exit(rc);
      },
      ::testing::ExitedWithCode(0), "burst: [0-9]+ fibers, then: weft: cannot map a fiber stack arena");
}

INSTANTIATE_TEST_SUITE_P(Workers, Exhaustion, ::testing::Values(1u, 2u), weft_test::workers_name);

// ---- descriptors ---------------------------------------------------------------

// Opens /dev/null until EMFILE; returns the descriptors.
std::vector<int> hog_fds() {
  std::vector<int> fds;
  fds.reserve(256);
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fds.push_back(fd);
  return fds;
}

void release_fds(std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
  fds.clear();
}

template <class F>
bool throws_emfile(F f, const char* what) {
  try {
    f();
  } catch (const std::system_error& e) {
    if (e.code().value() == EMFILE) return true;
    std::fprintf(stderr, "%s: %s\n", what, e.what());
    return false;
  }
  std::fprintf(stderr, "%s: no error\n", what);
  return false;
}

#ifdef __linux__  // PinnedToOneCpu
// Startup under a limit. Found as "Fatal glibc error: failed to register
// TLS destructor: out of memory" from RlimitAsEndsTheBurstWithANamedError
// (w2), once in a full suite on a loaded machine: main's fiber lowered
// RLIMIT_AS and exhausted the address space before the second worker's
// thread had first run. That thread's setup (its thread_local marks and
// alternate signal stack) then had nothing to allocate from, and glibc
// aborts a thread that cannot register a thread_local destructor. main's
// fiber was queued before the threads started, so on one CPU the first
// worker to run sets itself up, takes main and runs it while the others
// have not run at all. Now run() queues main's fiber once every worker and
// the monitor are set up (thread_stack_size is the last thing a worker
// sets; threads_ready counts the monitor too).
TEST(Startup, EveryRuntimeThreadIsSetUpBeforeMainRuns) {
  weft_test::PinnedToOneCpu pin;  // the runtime's threads inherit it
  ASSERT_TRUE(pin.ok());
  int late = 0;
  for (int i = 0; i < 20; i++)
    weft::run(
        [&] {
          weft::rt::Runtime& r = *weft::rt::current_fiber()->rt;
          for (unsigned k = 0; k < r.nworkers; k++) late += r.workers[k]->thread_stack_size == 0;
          late += r.threads_ready.load() < r.nworkers + 1;
        },
        {.workers = 4});
  EXPECT_EQ(late, 0) << "runtime threads not set up when main's fiber ran";
}
#endif

class FdExhaustion : public WorkersTest {};

// In a child with RLIMIT_NOFILE at 64, every descriptor taken: listen,
// connect and UDP bind throw EMFILE (the first of them also while the
// netpoller itself cannot be created yet), fibers keep running, and all
// three work once descriptors are free.
TEST_P(FdExhaustion, SocketsThrowEmfileAndTheRuntimeContinues) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const unsigned workers = GetParam();
  EXPECT_EXIT(
      {
        int rc = weft::run(
            [] {
              using weft::net::TcpListener;
              using weft::net::TcpStream;
              using weft::net::UdpSocket;
              rlimit rl{};
              getrlimit(RLIMIT_NOFILE, &rl);
              rl.rlim_cur = 64;
              if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
              // One descriptor left: socket() gets it, then the netpoller
              // (epoll + eventfd, made on first use) cannot be.
              std::vector<int> hog = hog_fds();
              ::close(hog.back());
              hog.pop_back();
              if (!throws_emfile([] { TcpListener::listen("127.0.0.1:0"); }, "first listen")) return 11;
              release_fds(hog);
              auto ln = TcpListener::listen("127.0.0.1:0");  // the netpoller exists from here on
              std::string addr = ln.local_addr();
              hog = hog_fds();
              if (!throws_emfile([] { TcpListener::listen("127.0.0.1:0"); }, "listen")) return 12;
              if (!throws_emfile([&] { TcpStream::connect(addr); }, "connect")) return 13;
              if (!throws_emfile([] { UdpSocket::bind("127.0.0.1:0"); }, "udp bind")) return 14;
              // The runtime carries on: fibers run, sleep and join.
              if (weft::go([] {
                    weft::this_fiber::sleep_for(std::chrono::milliseconds(1));
                    return 7;
                  }).join() != 7)
                return 15;
              release_fds(hog);
              auto client = weft::go([&] {
                auto c = TcpStream::connect(addr);
                c.write_all("hi");
                char buf[2];
                return c.read(buf) == 2 ? 0 : 1;
              });
              auto s = ln.accept();
              char buf[2];
              if (s.read(buf) != 2) return 16;
              s.write_all({buf, 2});
              if (client.join() != 0) return 17;
              auto u = UdpSocket::bind("127.0.0.1:0");
              if (u.send_to(std::string_view("x"), u.local_addr()) != 1 || u.recv_from(buf) != 1) return 18;
              return 0;
            },
            {.workers = workers});
        std::fflush(stderr);
        std::_Exit(rc);
      },
      ::testing::ExitedWithCode(0), "");
}

INSTANTIATE_TEST_SUITE_P(Workers, FdExhaustion, ::testing::Values(1u, 2u), weft_test::workers_name);

}  // namespace
