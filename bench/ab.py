#!/usr/bin/env python3
"""A/B cost of a runtime change, old code against new code (issue 5: the
monitor and the cooperative budget must cost <= 3% on yield, pingpong and
echo).

It checks out the baseline revision A and the new revision B into git
worktrees under a temporary directory, builds each in its own release build
directory (build-ab-A, build-ab-B, beside the worktrees), then runs, for
--reps rounds, every benchmark once on A and once on B, back to back, the
order flipping every round (A B, B A, A B, ...) so that both see the same
machine noise and neither always runs second. It prints the medians, the
ratio B/A of the medians, the quartiles of the per-round ratios, and a
verdict against --threshold: met when the ratio of the medians is within
it; a miss comes with a one-sided sign test over the rounds (p < 0.05: the
rounds agree; otherwise rerun with more --reps). Everything it creates
(worktrees, builds, servers) is removed or stopped at the end, servers by
their PID.

Benchmarks (lower is better for every metric, except round trips/s):
  spawn/join/workers:1|2  runtime_bench: spawn and join 1M empty fibers, ns_per_fiber
  yield                 runtime_bench "yield" (2 fibers, 1 worker), ns_per_switch
  pingpong/workers:1|2  chan_bench "pingpong/workers:N", ns_per_roundtrip
  echo w=1|2            examples/echo_server against bench/loadgen (64-byte
                        messages, --echo-conns connections, --seconds s):
                        server CPU us per round trip and p99, as net_bench.py
                        measures them (its run_echo is reused); with
                        --echo-churn each connection makes one round trip and
                        is replaced (net_bench.py --only churn): per connection;
                        --echo-poller io_uring runs the servers with
                        WEFT_POLLER=io_uring

usage: bench/ab.py [--base 6efba2f] [--new HEAD|WORKTREE] [--reps 15] [--echo-reps 5]
                   [--seconds 5] [--echo-conns 100] [--echo-workers 1,2]
                   [--echo-churn] [--echo-poller epoll|io_uring]
                   [--only micro|echo] [--threshold 3] [--keep] [--strict]
--new WORKTREE measures the current checkout as it is, uncommitted edits
included (built out of tree, in the temporary directory). Passing the same
revision as --base and --new gives the A/A noise floor of the machine.
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ in the checkout
import net_bench  # noqa: E402  (run_echo, build_loadgen: the echo measurement itself)

DEFAULT_BASE = "6efba2f"  # the last commit before the monitor/budget work

# (label, binary, Google Benchmark name, counter)
MICRO = [
    ("spawn/join/workers:1", "runtime_bench", "spawn/join/workers:1", "ns_per_fiber"),
    ("spawn/join/workers:2", "runtime_bench", "spawn/join/workers:2", "ns_per_fiber"),
    ("yield", "runtime_bench", "yield", "ns_per_switch"),
    ("pingpong/workers:1", "chan_bench", "pingpong/workers:1", "ns_per_roundtrip"),
    ("pingpong/workers:2", "chan_bench", "pingpong/workers:2", "ns_per_roundtrip"),
]
TARGETS = ["bench/runtime_bench", "bench/chan_bench", "examples/echo_server"]
BENCH_TIMEOUT = 120  # seconds for one benchmark process (they take < 1 s)


class Fatal(Exception):
    pass


def git(*args, cwd=TOP):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def resolve(rev):
    try:
        return git("rev-parse", "--verify", "--quiet", rev + "^{commit}")
    except subprocess.CalledProcessError:
        raise Fatal(f"not a git revision: {rev}")


def gbench_filter(name):
    # Same shape as compare.py: the name, then the suffixes Google Benchmark adds.
    return "^" + re.escape(name) + "(/iterations:1)?(/manual_time)?$"


def check_names(build, label):
    """Fails, naming what the binary does have, when a benchmark is missing
    (renamed between the revisions)."""
    listed = {}
    for _, binary, name, _ in MICRO:
        if binary not in listed:
            out = subprocess.run([f"{build}/bench/{binary}", "--benchmark_list_tests"], check=True,
                                 capture_output=True, text=True, timeout=60).stdout
            listed[binary] = out.split()
        if not any(re.match(gbench_filter(name), n) for n in listed[binary]):
            raise Fatal(f"revision {label}: {binary} has no benchmark named '{name}' (renamed?). "
                        f"It has: {', '.join(listed[binary])}. Update MICRO in bench/ab.py for both revisions.")


def run_micro(build, binary, name, counter):
    exe = f"{build}/bench/{binary}"
    try:
        p = subprocess.run([exe, "--benchmark_filter=" + gbench_filter(name), "--benchmark_format=json"],
                           capture_output=True, text=True, timeout=BENCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Fatal(f"{exe} {name}: no result within {BENCH_TIMEOUT} s (hung?)")
    if p.returncode != 0:
        raise Fatal(f"{exe} {name}: exit status {p.returncode}: {p.stderr.strip()[-500:]}")
    for b in json.loads(p.stdout)["benchmarks"]:
        if counter in b:
            return float(b[counter])
    raise Fatal(f"{exe}: benchmark {name} reported no counter {counter} (renamed?)")


def echo_argv(build, workers, poller="epoll"):
    return lambda port: ["env", f"WEFT_POLLER={poller}", f"{build}/examples/echo_server", "--listen",
                         f"127.0.0.1:{port}", "--workers", str(workers)]


def build_rev(src, build, label):
    for t in TARGETS:
        if not os.path.exists(f"{src}/{t}.cpp"):
            raise Fatal(f"revision {label} has no {t}.cpp: cannot compare it")
    print(f"== building {label} in {build}", flush=True)
    t0 = time.time()
    subprocess.run(["meson", "setup", build, src, "-Dbuildtype=release", "-Dtests=false"], check=True,
                   stdout=subprocess.DEVNULL)
    p = subprocess.run(["ninja", "-j2", "-C", build, *TARGETS], capture_output=True, text=True)
    if p.returncode != 0:
        raise Fatal(f"build of {label} failed:\n{p.stdout[-3000:]}{p.stderr[-2000:]}")
    print(f"   built in {time.time() - t0:.0f} s", flush=True)


def fmt(x):
    return f"{x:.4g}"


def quartiles(xs):
    if len(xs) < 4:
        return min(xs), statistics.median(xs), max(xs)
    q = statistics.quantiles(xs, n=4)
    return q[0], q[1], q[2]


def sign_test(k, n):
    """P(X >= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=DEFAULT_BASE, help="revision A (default %(default)s)")
    ap.add_argument("--new", default="HEAD", help="revision B, or WORKTREE for the checkout as it is (default HEAD)")
    ap.add_argument("--reps", type=int, default=15, help="rounds of the micro benchmarks (default 15)")
    ap.add_argument("--echo-reps", type=int, default=5, help="rounds of echo (default 5)")
    ap.add_argument("--seconds", type=float, default=5, help="echo: seconds per run (default 5)")
    ap.add_argument("--echo-conns", type=int, default=100)
    ap.add_argument("--echo-workers", default="1,2", help="echo: worker counts, comma-separated (default 1,2)")
    ap.add_argument("--echo-churn", action="store_true", help="echo: one round trip per connection (connection churn)")
    ap.add_argument("--echo-poller", choices=["epoll", "io_uring"], default="epoll", help="echo: the servers' poller")
    ap.add_argument("--only", choices=["micro", "echo"], help="run only one family")
    ap.add_argument("--threshold", type=float, default=3.0, help="allowed cost in percent (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the worktrees and builds (prints where)")
    ap.add_argument("--strict", action="store_true", help="exit status 4 when a verdict is missed")
    a = ap.parse_args()
    if a.reps < 1 or a.echo_reps < 1:
        ap.error("--reps and --echo-reps must be >= 1")
    echo_workers = [int(w) for w in a.echo_workers.split(",") if w]

    # SIGTERM/SIGHUP unwind like ^C, so the finally below cleans up.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    base = resolve(a.base)
    new = None if a.new == "WORKTREE" else resolve(a.new)
    work = tempfile.mkdtemp(prefix="weft-ab-")
    worktrees = []
    try:
        srcs = {}
        for label, sha in (("A", base), ("B", new)):
            if sha is None:
                srcs[label] = TOP
                continue
            wt = f"{work}/src-{label}"
            git("worktree", "add", "--detach", wt, sha)
            worktrees.append(wt)
            srcs[label] = wt
        desc = {"A": f"{a.base} ({base[:10]})",
                "B": f"{a.new} ({new[:10]})" if new else
                     f"the working tree (HEAD {resolve('HEAD')[:10]} with its uncommitted edits, if any)"}
        builds = {label: f"{work}/build-ab-{label}" for label in srcs}
        for label in ("A", "B"):
            build_rev(srcs[label], builds[label], f"{label} = {desc[label]}")
        if a.only != "echo":
            for label in ("A", "B"):
                check_names(builds[label], f"{label} = {desc[label]}")
        loadgen = net_bench.build_loadgen(work) if a.only != "micro" else None

        print(f"\nmachine: {os.cpu_count()} cores, {os.uname().release}, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
        print(f"A = {desc['A']}\nB = {desc['B']}")

        # rows: (label, metric, lower_is_better, verdict?) -> {"A": [...], "B": [...]}
        rows = {}

        def record(key, label, value):
            rows.setdefault(key, {"A": [], "B": []})[label].append(value)

        def order(i):
            return ("A", "B") if i % 2 == 0 else ("B", "A")

        if a.only != "echo":
            print(f"\n-- micro benchmarks, {a.reps} rounds", flush=True)
            for i in range(a.reps):
                for label, binary, name, counter in MICRO:
                    for side in order(i):
                        record((label, counter, True, True), side, run_micro(builds[side], binary, name, counter))
                print(f"   round {i + 1}/{a.reps} done", flush=True)
        if a.only != "micro":
            kind = "churn" if a.echo_churn else "echo"
            unit = "cpu_us_per_conn" if a.echo_churn else "cpu_us_per_rt"
            print(f"\n-- {kind} ({a.echo_poller}), {a.echo_reps} rounds of {a.seconds:g} s, {a.echo_conns} conns, workers "
                  f"{','.join(map(str, echo_workers))}", flush=True)
            for i in range(a.echo_reps):
                for w in echo_workers:
                    for side in order(i):
                        try:
                            r = net_bench.run_echo(loadgen, echo_argv(builds[side], w, a.echo_poller), a.echo_conns,
                                                   a.seconds, churn=a.echo_churn)
                        except (RuntimeError, subprocess.SubprocessError) as e:
                            raise Fatal(f"{kind} w={w} on {side}: {type(e).__name__}: {e}")
                        if r["rps"] <= 0:
                            raise Fatal(f"{kind} w={w} on {side}: no round trip in {a.seconds:g} s")
                        key = f"{kind} {a.echo_poller} w={w} c={a.echo_conns}"
                        record((key, unit, True, True), side, r["cpu_us"])
                        record((key, "p99_us", True, True), side, r["p99"])
                        record((key, "round_trips_per_s", False, False), side, r["rps"])
                print(f"   round {i + 1}/{a.echo_reps} done", flush=True)

        limit = 1 + a.threshold / 100
        print(f"\n| benchmark | metric | A median | B median | B/A | per-round B/A q1 / median / q3 (min / median / max under 4 rounds) | "
              f"verdict (cost <= {a.threshold:g}%) | runs A | runs B |")
        print("|---|---|---|---|---|---|---|---|---|")
        missed = []
        for (label, metric, lower_better, judged), v in rows.items():
            ma, mb = statistics.median(v["A"]), statistics.median(v["B"])
            ratio = mb / ma if ma else float("nan")
            # The rounds are paired (A and B back to back): their ratios show the noise.
            per_round = sorted(b / x for x, b in zip(v["A"], v["B"]) if x)
            q1, qm, q3 = quartiles(per_round)
            verdict = ""
            if judged:
                cost = ratio if lower_better else 1 / ratio
                costs = [r if lower_better else 1 / r for r in per_round]
                if cost <= limit:
                    verdict = "met"
                else:
                    # One-sided sign test: if the true cost were at the limit, a
                    # round would land above it half the time.
                    p = sign_test(sum(1 for c in costs if c > limit), len(costs))
                    verdict = f"MISSED (sign test p={p:.3f}" + (")" if p < 0.05 else ": not significant, rerun with more reps)")
                    missed.append(f"{label} {metric} ({ratio:.3f})")
            print(f"| {label} | {metric} | {fmt(ma)} | {fmt(mb)} | {ratio:.3f} | {q1:.3f} / {qm:.3f} / {q3:.3f} | "
                  f"{verdict} | {' '.join(fmt(x) for x in v['A'])} | {' '.join(fmt(x) for x in v['B'])} |")
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if missed:
            print(f"verdict: cost above {a.threshold:g}% on: " + "; ".join(missed))
        else:
            print(f"verdict: every cost within {a.threshold:g}%")
        return 4 if (missed and a.strict) else 0
    except Fatal as e:
        print(f"ab.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ab.py: interrupted", file=sys.stderr)
        return 130
    finally:
        if a.keep:
            print(f"kept: {work} (remove the worktrees with: git worktree remove --force <path>)", file=sys.stderr)
        else:
            for wt in worktrees:
                subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=TOP,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["git", "worktree", "prune"], cwd=TOP, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
