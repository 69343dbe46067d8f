"""pipeline: T squares come out (in merge order), then the whole pipeline is
cancelled and says so."""
import re

from example_util import done, run

for workers in ("1", "2"):
    out, _ = run("pipeline", "--numbers", "1000", "--squarers", "4", "--take", "7", "--workers", workers)
    lines = out.splitlines()
    nums = [int(x) for x in lines[:7]]
    squares = {k * k for k in range(1, 1001)}
    assert len(set(nums)) == 7 and all(n in squares for n in nums), out
    m = re.fullmatch(r"took 7 results \(sum (\d+)\); all (\d+) stages stopped", lines[7])
    assert m and int(m.group(1)) == sum(nums), out
    assert len(lines) == 8, out
done("pipeline")
