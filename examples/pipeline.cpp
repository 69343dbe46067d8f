// pipeline: fan-out / fan-in with cancellation by closing a done channel
// (the pattern of Go's "Pipelines and cancellation" article).
//   pipeline [--numbers N] [--squarers K] [--take T] [--workers W]
// gen sends 1..N; K squarer fibers read from it (fan-out) and each sends the
// squares on its own channel; merge forwards all of them into one channel
// (fan-in). main takes the first T results, then closes `done`: every stage
// selects on done in each send, so all of them return promptly even though
// nobody reads their remaining output. main then waits for every stage.
#include <weft/weft.hpp>

#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

using weft::Chan;

// Sends 1..n on the returned channel until done is closed.
Chan<long> gen(Chan<int> done, long n, weft::WaitGroup& wg) {
  Chan<long> out(0);
  wg.add();
  weft::spawn([done, out, n, &wg] {
    for (long i = 1; i <= n; i++) {
      bool stop = false;
      weft::select(weft::send(out, i), weft::recv(done, [&] { stop = true; }));
      if (stop) break;
    }
    out.close();
    wg.done();
  });
  return out;
}

// Squares what it receives, until its input ends or done is closed.
Chan<long> square(Chan<int> done, Chan<long> in, weft::WaitGroup& wg) {
  Chan<long> out(0);
  wg.add();
  weft::spawn([done, in, out, &wg] {
    for (long v : in) {
      bool stop = false;
      weft::select(weft::send(out, v * v), weft::recv(done, [&] { stop = true; }));
      if (stop) break;
    }
    out.close();
    wg.done();
  });
  return out;
}

// Forwards every input channel into one output; closes it when all ended.
Chan<long> merge(Chan<int> done, const std::vector<Chan<long>>& ins, weft::WaitGroup& wg) {
  Chan<long> out(0);
  auto live = std::make_shared<weft::WaitGroup>();
  for (const Chan<long>& in : ins) {
    live->add();
    wg.add();
    weft::spawn([done, in, out, live, &wg] {
      for (long v : in) {
        bool stop = false;
        weft::select(weft::send(out, v), weft::recv(done, [&] { stop = true; }));
        if (stop) break;
      }
      live->done();
      wg.done();
    });
  }
  wg.add();
  weft::spawn([out, live, &wg] {
    live->wait();
    out.close();
    wg.done();
  });
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long numbers = 1000, squarers = 4, take = 10, workers = 0;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--numbers N] [--squarers K] [--take T] [--workers W]\n"
                  "Squares 1..N with K fibers, merges their outputs, prints the first T results,\n"
                  "then cancels the whole pipeline by closing a done channel.\n",
                  argv[0]);
      return 0;
    }
    unsigned long* dst = a == "--numbers" ? &numbers : a == "--squarers" ? &squarers
                       : a == "--take"    ? &take    : a == "--workers"  ? &workers : nullptr;
    if (dst && i + 1 < argc) {
      if (!parse_count(argv[0], a, argv[++i], *dst, 100'000'000)) return 2;
    } else {
      std::fprintf(stderr, "%s: unknown argument %s (try --help)\n", argv[0], a.c_str());
      return 2;
    }
  }
  return weft::run(
      [=] {
        weft::WaitGroup wg;
        Chan<int> done(0);
        Chan<long> nums = gen(done, static_cast<long>(numbers), wg);
        std::vector<Chan<long>> squares;
        for (unsigned long k = 0; k < squarers; k++) squares.push_back(square(done, nums, wg));
        Chan<long> results = merge(done, squares, wg);
        unsigned long got = 0;
        long sum = 0;
        for (long v : results) {
          std::printf("%ld\n", v);
          sum += v;
          if (++got == take) break;
        }
        done.close();  // cancel: every stage sees it in its select and returns
        wg.wait();
        std::printf("took %lu results (sum %ld); all %lu stages stopped\n", got, sum, squarers + 2 + squarers);
        return 0;
      },
      {.workers = static_cast<unsigned>(workers)});
}
