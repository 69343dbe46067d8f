"""prime_sieve: the first N primes, one a line, with 1 and 2 workers."""
from example_util import done, run


def primes(n):
    found, k = [], 2
    while len(found) < n:
        if all(k % p for p in found):
            found.append(k)
        k += 1
    return found


for workers in ("1", "2"):
    out, _ = run("prime_sieve", "--count", "50", "--workers", workers)
    assert [int(x) for x in out.split()] == primes(50), out
done("prime_sieve")
