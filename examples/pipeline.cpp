// pipeline: fan-out / fan-in with early termination (the pattern of Go's
// "Pipelines and cancellation" article), written with a weft::Scope instead
// of a hand-made done channel.
//   pipeline [--numbers N] [--squarers K] [--take T] [--workers W]
// gen sends 1..N; K squarer fibers read from it (fan-out) and each sends the
// squares on its own channel; merge forwards all of them into one channel
// (fan-in). Every stage is a child of one Scope. main takes the first T
// results and cancels the scope: every stage is parked in a send nobody
// will receive, and that send throws weft::Cancelled, so all of them return
// promptly; the scope waits for them. No stage selects on anything but its
// own work.
#include <weft/weft.hpp>

#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

using weft::Chan;

// Sends 1..n on the returned channel.
Chan<long> gen(weft::Scope& scope, long n) {
  Chan<long> out(0);
  scope.spawn([out, n] {
    for (long i = 1; i <= n; i++) out.send(i);
    out.close();
  });
  return out;
}

// Squares what it receives until its input ends.
Chan<long> square(weft::Scope& scope, Chan<long> in) {
  Chan<long> out(0);
  scope.spawn([in, out] {
    for (long v : in) out.send(v * v);
    out.close();
  });
  return out;
}

// Forwards every input channel into one output; closes it when all ended.
Chan<long> merge(weft::Scope& scope, const std::vector<Chan<long>>& ins) {
  Chan<long> out(0);
  auto live = std::make_shared<weft::WaitGroup>();
  for (const Chan<long>& in : ins) {
    live->add();
    scope.spawn([in, out, live] {
      for (long v : in) out.send(v);
      live->done();
    });
  }
  scope.spawn([out, live] {
    live->wait();
    out.close();
  });
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long numbers = 1000, squarers = 4, take = 10, workers = 0;
  Flags flags("Squares 1..N with K fibers, merges their outputs, prints the first T results,\n"
              "then cancels the whole pipeline (a weft::Scope).\n");
  flags.number("--numbers", numbers, "numbers to square (N)", 1, 100'000'000);
  flags.number("--squarers", squarers, "squaring fibers (K)", 1, 100'000);
  flags.number("--take", take, "results to print (T)", 1, 100'000'000);
  flags.number("--workers", workers, "OS worker threads (0: one per core)", 0, 1024);
  flags.parse(argc, argv);
  return weft::run(
      [=] {
        weft::Scope scope;
        Chan<long> nums = gen(scope, static_cast<long>(numbers));
        std::vector<Chan<long>> squares;
        for (unsigned long k = 0; k < squarers; k++) squares.push_back(square(scope, nums));
        Chan<long> results = merge(scope, squares);
        unsigned long got = 0;
        long sum = 0;
        for (long v : results) {
          std::printf("%ld\n", v);
          sum += v;
          if (++got == take) break;
        }
        scope.cancel();  // every stage parked in a send throws Cancelled and returns
        scope.wait();
        std::printf("took %lu results (sum %ld); all %lu stages stopped\n", got, sum, squarers + 2 + squarers);
        return 0;
      },
      {.workers = static_cast<unsigned>(workers)});
}
