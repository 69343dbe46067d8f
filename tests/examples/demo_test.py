"""demo: the fibers' sum is right and every part of the tour ran."""
from example_util import done, run

out, _ = run("demo", "--fibers", "2000", "--workers", "2")
assert "summed to 1999000 (correct)" in out, out
assert "CondVar ping-pong rounds" in out, out
assert "JoinHandle::join()" in out, out
done("demo")
