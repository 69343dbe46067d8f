// worker_pool: a fixed pool of worker fibers fed by a jobs channel, results
// collected over a results channel.
//   worker_pool [--jobs N] [--pool K] [--workers W]
// Each job is a number whose Collatz chain length a worker computes (and
// "works" on with a short sleep, to show that parked workers cost nothing).
// The producer closes `jobs` once everything is queued; workers range over it
// and end; the last one to finish closes `results`, which ends main's loop.
#include <weft/weft.hpp>

#include "args.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

struct Result {
  unsigned long job;
  unsigned steps;
  unsigned worker;
};

unsigned collatz(unsigned long n) {
  unsigned steps = 0;
  for (; n != 1; steps++) n = n % 2 ? 3 * n + 1 : n / 2;
  return steps;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long jobs_n = 1000, pool = 8, workers = 0;
  Flags flags("Runs N jobs on a pool of K worker fibers (over W OS threads) and collects\n"
              "the results over a channel; prints the longest Collatz chain found.\n");
  flags.number("--jobs", jobs_n, "jobs to run (N)", 1, 100'000'000);
  flags.number("--pool", pool, "worker fibers (K)", 1, 100'000);
  flags.number("--workers", workers, "OS worker threads (W; 0: one per core)", 0, 1024);
  flags.parse(argc, argv);
  return weft::run(
      [=] {
        weft::Chan<unsigned long> jobs(pool);  // a little slack for the producer
        weft::Chan<Result> results(pool);
        auto remaining = std::make_shared<std::atomic<unsigned long>>(pool);
        for (unsigned w = 0; w < pool; w++) {
          weft::spawn([jobs, results, remaining, w] {
            for (unsigned long job : jobs) {
              weft::this_fiber::sleep_for(std::chrono::microseconds(50));
              results.send({job, collatz(job), w});
            }
            if (remaining->fetch_sub(1) == 1) results.close();  // the last worker out
          });
        }
        weft::spawn([jobs, jobs_n] {
          for (unsigned long j = 1; j <= jobs_n; j++) jobs.send(j);
          jobs.close();
        });
        unsigned long n = 0;
        Result best{0, 0, 0};
        std::vector<unsigned long> per_worker(pool, 0);
        for (Result r : results) {
          n++;
          per_worker[r.worker]++;
          if (r.steps > best.steps) best = r;
        }
        std::printf("%lu results from %lu workers; longest chain: %lu (%u steps, by worker %u)\n", n, pool,
                    best.job, best.steps, best.worker);
        for (unsigned w = 0; w < pool; w++) std::printf("  worker %u: %lu jobs\n", w, per_worker[w]);
        return n == jobs_n ? 0 : 1;
      },
      {.workers = static_cast<unsigned>(workers)});
}
