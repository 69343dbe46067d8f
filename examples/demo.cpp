// demo: a tour of weft's runtime in one program.
//   demo [--fibers N] [--workers W]
// Starts N fibers that each sleep a little and add to a shared total under a
// weft::Mutex, waits for them with a WaitGroup, then plays ping-pong between
// two fibers over a CondVar, and prints what it measured.
#include <weft/weft.hpp>

#include "args.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

int main(int argc, char** argv) {
  unsigned fibers = 100'000, workers = 0;
  Flags flags("A tour of the runtime: N fibers sleep and add to a total under a Mutex, a WaitGroup\n"
              "waits for them, then two fibers play ping-pong over a CondVar.\n");
  flags.number("--fibers", fibers, "fibers to start", 1, 10'000'000);
  flags.number("--workers", workers, "OS worker threads (0: one per core)", 0, 1024);
  flags.parse(argc, argv);
  using namespace std::chrono;
  return weft::run(
      [fibers] {
        auto t0 = steady_clock::now();
        weft::Mutex m;
        weft::WaitGroup wg;
        unsigned long long total = 0;
        for (unsigned i = 0; i < fibers; i++) {
          wg.add();
          weft::spawn([&, i] {
            weft::this_fiber::sleep_for(milliseconds(i % 50));  // parks the fiber, not the thread
            std::lock_guard<weft::Mutex> g(m);
            total += i;
            wg.done();
          });
        }
        wg.wait();
        double secs = duration<double>(steady_clock::now() - t0).count();
        unsigned long long expect = static_cast<unsigned long long>(fibers) * (fibers - 1) / 2;
        std::printf("%u fibers slept up to 49 ms each and summed to %llu (%s) in %.3f s\n", fibers, total,
                    total == expect ? "correct" : "WRONG", secs);

        // Ping-pong over a CondVar between two fibers.
        constexpr int rounds = 100'000;
        weft::CondVar cv;
        int turn = 0;
        auto player = [&](int me) {
          for (int r = 0; r < rounds; r++) {
            std::unique_lock<weft::Mutex> l(m);
            cv.wait(l, [&] { return turn == me; });
            turn = 1 - me;
            cv.notify_all();
          }
        };
        t0 = steady_clock::now();
        auto a = weft::go(player, 0);
        auto b = weft::go(player, 1);
        a.join();
        b.join();
        secs = duration<double>(steady_clock::now() - t0).count();
        std::printf("%d CondVar ping-pong rounds in %.3f s (%.0f ns per hand-off)\n", rounds, secs,
                    secs * 1e9 / (2.0 * rounds));
        auto h = weft::go([] { return std::string("fibers return values through JoinHandle::join()"); });
        std::printf("%s; this_fiber::id() of main is %llu\n", h.join().c_str(),
                    static_cast<unsigned long long>(weft::this_fiber::id()));
        return total == expect ? 0 : 1;
      },
      weft::Options{.workers = workers});
}
