"""worker_pool: every job's result comes back, the longest Collatz chain is
right, and the per-worker counts add up."""
import re

from example_util import done, run


def steps(n):
    k = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        k += 1
    return k


best = max(range(1, 501), key=lambda n: (steps(n), -n))
for workers in ("1", "2"):
    out, _ = run("worker_pool", "--jobs", "500", "--pool", "5", "--workers", workers)
    lines = out.splitlines()
    m = re.match(r"500 results from 5 workers; longest chain: (\d+) \((\d+) steps", lines[0])
    assert m, out
    assert int(m.group(2)) == steps(best), out
    assert steps(int(m.group(1))) == steps(best), out
    counts = [int(re.fullmatch(r"  worker \d+: (\d+) jobs", line).group(1)) for line in lines[1:]]
    assert len(counts) == 5 and sum(counts) == 500, out
done("worker_pool")
