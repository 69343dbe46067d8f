#!/usr/bin/env python3
"""Runs weft's benchmarks and their Go twins side by side and prints ratios.

For every pair in PAIRS it alternates, `reps` times, one run of the weft
benchmark (Google Benchmark, one repetition, JSON) and one run of the Go
twin, so both see the same machine noise; it then prints the medians and
the weft/Go ratio as a Markdown table. Lower is better for every counter.

usage: compare.py --build BUILD_DIR [--reps 3] [--filter REGEX] [--go-only] [--list]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (weft binary, weft benchmark name, counter, go package dir, go args, go counter, target ratio or None)
PAIRS = [
    ("runtime_bench", "spawn/join/workers:1", "ns_per_fiber", "runtime", ["-bench", "spawn", "-procs", "1"], "ns_per_fiber", 0.4),
    ("runtime_bench", "spawn/join/workers:2", "ns_per_fiber", "runtime", ["-bench", "spawn", "-procs", "2"], "ns_per_fiber", 0.4),
    ("runtime_bench", "spawn/waitgroup/workers:1", "ns_per_fiber", "runtime", ["-bench", "spawn", "-procs", "1"], "ns_per_fiber", 0.4),
    ("runtime_bench", "spawn/waitgroup/workers:2", "ns_per_fiber", "runtime", ["-bench", "spawn", "-procs", "2"], "ns_per_fiber", 0.4),
    ("runtime_bench", "yield", "ns_per_switch", "runtime", ["-bench", "yield", "-procs", "1"], "ns_per_switch", 0.3),
    ("runtime_bench", "parked/condvar/workers:2", "bytes_per_fiber", "runtime", ["-bench", "parked_cond", "-procs", "2"], "bytes_per_fiber", None),
    ("runtime_bench", "parked/condvar/workers:2", "spawn_s", "runtime", ["-bench", "parked_cond", "-procs", "2"], "spawn_s", None),
    ("runtime_bench", "parked/sleep/workers:2", "bytes_per_fiber", "runtime", ["-bench", "parked_sleep", "-procs", "2"], "bytes_per_fiber", None),
    ("runtime_bench", "parked/sleep/workers:2", "spawn_s", "runtime", ["-bench", "parked_sleep", "-procs", "2"], "spawn_s", None),
    ("runtime_bench", "mutex/workers:2", "ns_per_lock", "runtime", ["-bench", "mutex", "-procs", "2"], "ns_per_lock", None),
    ("runtime_bench", "waitgroup/workers:2", "ns_per_fiber", "runtime", ["-bench", "waitgroup", "-procs", "2"], "ns_per_fiber", None),
    ("runtime_bench", "scope/workers:1", "ns_per_child", "runtime", ["-bench", "scope", "-procs", "1"], "ns_per_child", 0.5),
    ("runtime_bench", "scope/workers:2", "ns_per_child", "runtime", ["-bench", "scope", "-procs", "2"], "ns_per_child", 0.5),
    ("runtime_bench", "cancel_latency/workers:1", "median_ns", "runtime", ["-bench", "cancel_latency", "-procs", "1"], "median_ns", None),
    ("runtime_bench", "cancel_latency/workers:1", "p99_ns", "runtime", ["-bench", "cancel_latency", "-procs", "1"], "p99_ns", None),
    ("runtime_bench", "cancel_latency/workers:2", "median_ns", "runtime", ["-bench", "cancel_latency", "-procs", "2"], "median_ns", None),
    ("runtime_bench", "cancel_latency/workers:2", "p99_ns", "runtime", ["-bench", "cancel_latency", "-procs", "2"], "p99_ns", None),
]

# Benchmarks with no Go twin, reported alone (baselines in the same binary).
SOLO = [
    ("runtime_bench", "yield/bare_jump_fcontext", "ns_per_switch"),
    ("runtime_bench", "spawn/std_thread", "ns_per_fiber"),
    ("runtime_bench", "mutex/std_thread", "ns_per_lock"),
]

# Other parts register theirs in bench/pairs_*.json (same fields as PAIRS).
for name in sorted(os.listdir(HERE)):
    if name.startswith("pairs_") and name.endswith(".json"):
        with open(os.path.join(HERE, name)) as f:
            extra = json.load(f)
        PAIRS += [tuple(p) for p in extra.get("pairs", [])]
        SOLO += [tuple(s) for s in extra.get("solo", [])]


def run_weft(build, binary, name, counter):
    exe = os.path.join(build, "bench", binary)
    out = subprocess.run(
        [exe, "--benchmark_filter=^" + re.escape(name) + "(/iterations:1)?(/manual_time)?$",
         "--benchmark_format=json"],
        check=True, capture_output=True, text=True).stdout
    for b in json.loads(out)["benchmarks"]:
        if counter in b:
            return float(b[counter])
    raise RuntimeError(f"{binary}: no counter {counter} in {name}")


_go_built = {}


def go_binary(pkg):
    if pkg not in _go_built:
        src = os.path.join(HERE, "go", pkg)
        exe = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"weft-go-twin-{pkg}")
        subprocess.run(["go", "build", "-o", exe, "."], cwd=src, check=True)
        _go_built[pkg] = exe
    return _go_built[pkg]


def run_go(pkg, args, counter):
    out = subprocess.run([go_binary(pkg)] + args, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("RESULT"):
            for kv in line.split()[2:]:
                k, v = kv.split("=")
                if k == counter:
                    return float(v)
    raise RuntimeError(f"go twin {pkg} {args}: no {counter}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--filter", default="")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    rx = re.compile(a.filter)
    if a.list:
        for p in PAIRS:
            print(p[1], p[2])
        return
    print(f"| benchmark | counter | weft median | Go median | weft/Go | target | runs |")
    print(f"|---|---|---|---|---|---|---|")
    sys.stdout.flush()
    for binary, name, counter, pkg, args, gcounter, target in PAIRS:
        if not rx.search(name):
            continue
        w, g = [], []
        for _ in range(a.reps):
            w.append(run_weft(a.build, binary, name, counter))
            g.append(run_go(pkg, args, gcounter))
        wm, gm = statistics.median(w), statistics.median(g)
        ratio = wm / gm if gm else float("nan")
        verdict = "" if target is None else (f"<= {target}: " + ("met" if ratio <= target else "MISSED"))
        runs = " / ".join(f"{x:.4g}:{y:.4g}" for x, y in zip(w, g))
        print(f"| {name} | {counter} | {wm:.4g} | {gm:.4g} | {ratio:.3f} | {verdict} | {runs} |")
        sys.stdout.flush()
    for binary, name, counter in SOLO:
        if not rx.search(name):
            continue
        v = [run_weft(a.build, binary, name, counter) for _ in range(a.reps)]
        print(f"| {name} | {counter} | {statistics.median(v):.4g} | (baseline) | | | {' / '.join(f'{x:.4g}' for x in v)} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
