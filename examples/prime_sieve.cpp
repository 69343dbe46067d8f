// prime_sieve: Go's classic concurrent prime sieve over weft channels.
//   prime_sieve [--count N] [--workers W]
// A generator fiber sends 2, 3, 4, ... into a channel; each prime found
// starts a filter fiber that passes on only the numbers its prime does not
// divide, so the chain of filters grows by one fiber per prime. Prints the
// first N primes. When main returns, the runtime unwinds the filters still
// parked in recv/send.
#include <weft/weft.hpp>

#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  unsigned count = 100, workers = 0;
  Flags flags("Prints the first N primes found by a chain of filter fibers.\n");
  flags.number("--count", count, "primes to print (N)", 1, 1'000'000);
  flags.number("--workers", workers, "OS worker threads (0: one per core)", 0, 1024);
  flags.parse(argc, argv);
  return weft::run(
      [count] {
        weft::Chan<unsigned long> ch(0);
        weft::spawn([ch] {  // the generator
          for (unsigned long i = 2;; i++) ch.send(i);
        });
        for (unsigned n = 0; n < count; n++) {
          unsigned long prime = *ch.recv();
          std::printf("%lu\n", prime);
          weft::Chan<unsigned long> next(0);
          weft::spawn([in = ch, out = next, prime] {  // a filter
            for (;;) {
              unsigned long v = *in.recv();
              if (v % prime != 0) out.send(v);
            }
          });
          ch = next;
        }
        return 0;
      },
      {.workers = workers});
}
