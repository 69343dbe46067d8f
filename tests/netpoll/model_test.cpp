// model_test.cpp: a randomized socket-lifecycle model test. Client fibers
// run random sequences (from a seeded PRNG) of connect / write / read /
// try_read / close / set-deadline / use-after-close / close-while-another-
// fiber-reads against an echo server with several acceptor fibers queued
// on one listener, with 1 and 2 workers. Checked, whatever the interleaving:
// - no cross-talk: connection N's bytes are a stream that only N produces
//   (its id, then bytes derived from (N, offset)); the server checks every
//   byte it reads, the client every byte echoed back;
// - a passed deadline fails the call (Timeout), nothing read or written;
// - a read with nothing in flight and a short deadline times out;
// - use after close always throws SocketClosed (std::system_error with
//   errc::bad_file_descriptor), also for a fiber parked in read meanwhile;
// - no descriptor leak: /proc/self/fd counts equal before and after run();
// - no hang: every wait has a deadline, and a watchdog thread aborts with
//   the seed if one run takes a minute.
// Size scales with WEFT_STRESS_SCALE; WEFT_MODEL_SEED=<n> runs one seed.
// A failure prints the seed and the worker count.
#include <gtest/gtest.h>

#include "net_util.hpp"
#include <weft/weft.hpp>

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>


using namespace std::chrono_literals;
using weft::Clock;
using weft::net::SocketClosed;
using weft::net::TcpListener;
using weft::net::TcpStream;

namespace {

using net_test::scaled;

using net_test::open_fds;

// Byte `off` of connection `id`'s stream: 4 bytes of id, then a pattern of
// (id, offset) that differs between ids at almost every offset.
char stream_byte(std::uint32_t id, std::uint64_t off) {
  if (off < 4) return static_cast<char>((id >> (8 * off)) & 0xff);
  std::uint64_t x = (std::uint64_t{id} * 0x9E3779B97F4A7C15ull) ^ (off * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 29;
  return static_cast<char>(x & 0xff);
}

struct Run {
  std::uint64_t seed;
  unsigned workers;
  std::atomic<int> errors{0};
  std::atomic<std::uint32_t> next_id{1};

  void fail(const char* who, const std::string& what) {
    if (errors++ < 10)
      std::fprintf(stderr, "model: seed %llu workers %u: %s: %s\n", static_cast<unsigned long long>(seed), workers, who,
                   what.c_str());
  }
};

// f() must throw SocketClosed with errc::bad_file_descriptor.
template <class F>
void expect_closed(Run& run, const char* what, F&& f) {
  try {
    f();
    run.fail(what, "no exception on a closed socket");
  } catch (const SocketClosed& e) {
    if (e.code() != std::make_error_code(std::errc::bad_file_descriptor)) run.fail(what, e.what());
  } catch (const std::exception& e) {
    run.fail(what, std::string("wrong exception: ") + e.what());
  }
}

// The server: echo, checking that every byte belongs to one connection.
void serve(Run& run, TcpStream s) {
  s.set_deadline(Clock::now() + 20s);  // bounded; the clients close long before
  char buf[4096];
  std::uint64_t off = 0;
  std::uint32_t id = 0;
  try {
    while (std::size_t n = s.read(buf)) {
      for (std::size_t i = 0; i < n; i++, off++) {
        if (off < 4) id |= std::uint32_t{static_cast<unsigned char>(buf[i])} << (8 * off);
        else if (buf[i] != stream_byte(id, off)) {
          run.fail("server", "cross-talk: connection " + std::to_string(id) + " offset " + std::to_string(off));
          return;
        }
      }
      s.write_all({buf, n});
    }
  } catch (const weft::Timeout&) {
    run.fail("server", "a connection stayed open 20 s");
  } catch (const std::system_error&) {
    // reset by a client that closed with echo unread: fine
  }
}

struct Conn {
  TcpStream s;
  std::uint32_t id = 0;
  std::uint64_t sent = 0;  // stream offset written
  std::uint64_t got = 0;   // stream offset read back
};

class Client {
 public:
  Client(Run& run, std::string addr, std::uint64_t seed) : run_(run), addr_(std::move(addr)), rng_(seed) {}

  void go(int ops) {
    for (int i = 0; i < ops && run_.errors == 0; i++) step();
    for (auto& c : live_) c.s.close();
    for (auto& z : zombies_) z.close();
  }

 private:
  static constexpr std::size_t kMaxLive = 2, kMaxZombies = 4;
  static constexpr std::uint64_t kMaxInFlight = 32 * 1024;  // well within the socket buffers

  unsigned pick(unsigned n) { return static_cast<unsigned>(rng_() % n); }

  void step() {
    unsigned op = pick(100);
    if (live_.empty() || (op < 10 && live_.size() < kMaxLive)) return do_connect();
    Conn& c = live_[pick(static_cast<unsigned>(live_.size()))];
    if (op < 35) return do_write(c);
    if (op < 60) return do_read(c);
    if (op < 66) return do_try_read(c);
    if (op < 72) return do_past_deadline(c);
    if (op < 77) return do_short_deadline(c);
    if (op < 84) return do_close(c);
    if (op < 88) return do_close_while_reading(c);
    return do_use_after_close();
  }

  void do_connect() {
    Conn c;
    try {
      c.s = TcpStream::connect(addr_, 5s);
    } catch (const std::exception& e) {
      return run_.fail("connect", e.what());
    }
    c.s.set_deadline(Clock::now() + 10s);  // nothing here may block forever
    c.id = run_.next_id++;
    live_.push_back(std::move(c));
    write_bytes(live_.back(), 4);
  }

  void write_bytes(Conn& c, std::uint64_t n) {
    std::string out(n, '\0');
    for (std::uint64_t i = 0; i < n; i++) out[i] = stream_byte(c.id, c.sent + i);
    try {
      c.s.write_all(out);
      c.sent += n;
    } catch (const std::exception& e) {
      run_.fail("write", e.what());
    }
  }

  void do_write(Conn& c) {
    std::uint64_t room = kMaxInFlight - (c.sent - c.got);
    if (room == 0) return do_read(c);
    write_bytes(c, 1 + rng_() % std::min<std::uint64_t>(room, 3000));
  }

  bool check(Conn& c, const char* buf, std::size_t n) {
    for (std::size_t i = 0; i < n; i++, c.got++) {
      if (c.got >= c.sent || buf[i] != stream_byte(c.id, c.got)) {
        run_.fail("client", "cross-talk: connection " + std::to_string(c.id) + " offset " + std::to_string(c.got));
        return false;
      }
    }
    return true;
  }

  void do_read(Conn& c) {
    if (c.got == c.sent) return do_short_deadline(c);
    char buf[2048];
    std::size_t want = 1 + pick(static_cast<unsigned>(std::min<std::uint64_t>(sizeof buf, c.sent - c.got)));
    try {
      std::size_t n = c.s.read({buf, want});
      if (n == 0) return run_.fail("read", "EOF with echo outstanding");
      check(c, buf, n);
    } catch (const std::exception& e) {
      run_.fail("read", e.what());
    }
  }

  void do_try_read(Conn& c) {
    char buf[512];
    try {
      auto n = c.s.try_read(buf);
      if (!n) return;
      if (*n == 0) return run_.fail("try_read", "EOF");
      check(c, buf, *n);
    } catch (const std::exception& e) {
      run_.fail("try_read", e.what());
    }
  }

  // A passed deadline fails the call even with data there or room to write.
  void do_past_deadline(Conn& c) {
    char buf[64];
    bool read_side = pick(2) == 0;
    if (read_side) c.s.set_read_deadline(Clock::now() - 1ms);
    else c.s.set_write_deadline(Clock::now() - 1ms);
    try {
      if (read_side) c.s.read(buf);
      else c.s.write_all("z");  // must not be written: it would break the stream
      run_.fail("past deadline", "the call did not time out");
    } catch (const weft::Timeout&) {
    } catch (const std::exception& e) {
      run_.fail("past deadline", e.what());
    }
    c.s.set_deadline(Clock::now() + 10s);
  }

  // Nothing in flight: a read with a short deadline times out.
  void do_short_deadline(Conn& c) {
    if (c.got != c.sent) return do_read(c);
    c.s.set_read_deadline(Clock::now() + std::chrono::microseconds(200 + pick(2000)));
    char buf[64];
    try {
      c.s.read(buf);
      run_.fail("short deadline", "read returned with nothing sent");
    } catch (const weft::Timeout&) {
    } catch (const std::exception& e) {
      run_.fail("short deadline", e.what());
    }
    c.s.set_read_deadline(Clock::now() + 10s);
  }

  void retire(Conn& c) {
    std::size_t i = static_cast<std::size_t>(&c - live_.data());
    if (zombies_.size() == kMaxZombies) zombies_.erase(zombies_.begin());
    zombies_.push_back(std::move(c.s));
    live_.erase(live_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  void do_close(Conn& c) {
    c.s.close();
    if (c.s.fd() != -1) run_.fail("close", "fd() after close");
    expect_closed(run_, "read after close", [&] {
      char b[8];
      c.s.read(b);
    });
    retire(c);
  }

  // Another fiber reads (parked, most likely) while this one closes.
  void do_close_while_reading(Conn& c) {
    if (c.got != c.sent) return do_read(c);
    auto reader = weft::go([this, &c] {
      expect_closed(run_, "parked read, closed by another fiber", [&] {
        char b[8];
        c.s.read(b);
      });
    });
    if (pick(2)) weft::this_fiber::sleep_for(std::chrono::microseconds(pick(1500)));
    else weft::this_fiber::yield();
    c.s.close();
    reader.join();
    retire(c);
  }

  void do_use_after_close() {
    if (zombies_.empty()) return;
    TcpStream& z = zombies_[pick(static_cast<unsigned>(zombies_.size()))];
    char b[8];
    switch (pick(8)) {
      case 0: return expect_closed(run_, "read", [&] { z.read(b); });
      case 1: return expect_closed(run_, "write", [&] { z.write_all("q"); });
      case 2: return expect_closed(run_, "try_read", [&] { z.try_read(b); });
      case 3: return expect_closed(run_, "try_write", [&] { z.try_write(std::string_view("q")); });
      case 4: return expect_closed(run_, "wait_readable", [&] { z.wait_readable(); });
      case 5: return expect_closed(run_, "set_deadline", [&] { z.set_deadline(Clock::now() + 1s); });
      case 6: return expect_closed(run_, "peer_addr", [&] { (void)z.peer_addr(); });
      default: z.close(); return;  // closing twice does nothing
    }
  }

  Run& run_;
  std::string addr_;
  std::mt19937_64 rng_;
  std::vector<Conn> live_;
  std::vector<TcpStream> zombies_;
};

// Aborts with the seed if a run does not end within the limit.
class Watchdog {
 public:
  Watchdog(std::uint64_t seed, unsigned workers) : t_([this, seed, workers] {
      std::unique_lock<std::mutex> g(mu_);
      if (!cv_.wait_for(g, 60s, [this] { return done_; })) {
        std::fprintf(stderr, "model: seed %llu workers %u: hung for 60 s\n", static_cast<unsigned long long>(seed),
                     workers);
        std::abort();
      }
    }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
    }
    cv_.notify_one();
    t_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread t_;
};

void run_seed(std::uint64_t seed, unsigned workers) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", workers " + std::to_string(workers) +
               " (rerun: WEFT_MODEL_SEED=" + std::to_string(seed) + ")");
  Run run{seed, workers};
#ifdef WEFT_LIBKQUEUE
  // libkqueue keeps two descriptors of its own for the process's life from
  // the first kqueue on, and frees a closed kqueue's on its monitor thread,
  // later: count from after a first kqueue, once the counts settled.
  static const bool warmed = [] {
    weft::run([] { TcpListener::listen("127.0.0.1:0"); }, {.workers = 1});
    return true;
  }();
  (void)warmed;
#endif
  const std::size_t fds_before = net_test::stable_fds();
  {
    Watchdog dog(seed, workers);
    weft::run(
        [&run, seed] {
          auto ln = TcpListener::listen("127.0.0.1:0");
          const std::string addr = ln.local_addr();
          weft::WaitGroup handlers;
          std::vector<weft::JoinHandle<void>> acceptors;
          for (int i = 0; i < 3; i++) {  // several fibers queued in accept()
            acceptors.push_back(weft::go([&] {
              try {
                for (;;) {
                  auto s = ln.accept();
                  handlers.add();
                  weft::spawn([&run, &handlers, s = std::move(s)]() mutable {
                    serve(run, std::move(s));
                    handlers.done();
                  });
                }
              } catch (const SocketClosed&) {
                // the listener closed: done
              } catch (const std::exception& e) {
                run.fail("accept", e.what());
              }
            }));
          }
          std::mt19937_64 seeder(seed);
          constexpr int kClients = 4;
          std::vector<weft::JoinHandle<void>> clients;
          for (int i = 0; i < kClients; i++) {
            clients.push_back(weft::go([&run, addr, s = seeder()] {
              Client c(run, addr, s);
              c.go(scaled(150, 20));
            }));
          }
          for (auto& c : clients) c.join();
          ln.close();
          for (auto& a : acceptors) a.join();
          handlers.wait();
        },
        {.workers = workers});
  }
  EXPECT_EQ(run.errors.load(), 0);
  EXPECT_EQ(net_test::settled_fds(fds_before), fds_before) << "descriptor leak";
}

class Model : public ::testing::TestWithParam<unsigned> {};

TEST_P(Model, RandomSocketLifecycles) {
  if (const char* one = std::getenv("WEFT_MODEL_SEED")) {
    run_seed(std::strtoull(one, nullptr, 10), GetParam());
    return;
  }
  const int seeds = scaled(60, 3);
  for (int i = 0; i < seeds && !HasFailure(); i++) run_seed(0x5eed0000u + static_cast<std::uint64_t>(i), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Workers, Model, ::testing::Values(1u, 2u), [](const auto& info) {
  return std::string("w") + std::to_string(info.param);
});

}  // namespace
