#!/usr/bin/env python3
"""Soak test (not in CI): one weft example server under churning load for N
minutes, its RSS and open descriptors sampled all along; at the end both
must be flat.

The server (examples/echo_server or examples/http_hello, release build) is
driven by bench/loadgen in runs of a few seconds each, cycling through
connection counts, so connections keep opening and closing. Every
--sample seconds the script reads the server's VmRSS (/proc/PID/status)
and its descriptor count (/proc/PID/fd).

Verdict (exit status 0 when both hold):
- descriptors: once the load stops, the count returns to its baseline (the
  count measured before the first load) within 10 s;
- memory: the peak RSS of the second half of the run is within --rss-bound
  (default 5%) of the peak RSS of the second quarter (the first quarter is
  warm-up: allocator caches and stack caches fill there). A leak shows as
  a second half that keeps climbing.

Every process started here is stopped by its PID.
usage: soak.py [--build DIR] [--server echo|http] [--minutes 10] [--workers 2]
"""
import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from net_bench import build_loadgen, free_port, rss_kib, wait_port  # noqa: E402


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def ensure_build(build):
    """Configures a release build in `build` if there is none; builds the two servers."""
    if not os.path.exists(os.path.join(build, "build.ninja")):
        subprocess.run(["meson", "setup", build, "--buildtype=release", "-Dtests=false", "-Dbench=false"],
                       cwd=ROOT, check=True)
    subprocess.run(["ninja", "-C", build, "-j2", "examples/echo_server", "examples/http_hello"], cwd=ROOT, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-soak"), help="release build dir (made if missing)")
    ap.add_argument("--server", default="echo", choices=["echo", "http"])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--run-seconds", type=float, default=3, help="length of one loadgen run")
    ap.add_argument("--conns", default="10,200,1000", help="connection counts the runs cycle through")
    ap.add_argument("--sample", type=float, default=5, help="seconds between samples")
    ap.add_argument("--rss-bound", type=float, default=5.0, help="allowed RSS growth over the second half, %%")
    a = ap.parse_args()

    build = os.path.abspath(a.build)
    ensure_build(build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the server and loadgen
    tmp = tempfile.mkdtemp(prefix="weft-soak-")
    loadgen = build_loadgen(tmp)
    conns_cycle = [int(c) for c in a.conns.split(",")]
    port = free_port()
    exe = f"{build}/examples/{'echo_server' if a.server == 'echo' else 'http_hello'}"
    errlog = open(f"{tmp}/server.stderr", "w")
    server = subprocess.Popen([exe, "--listen", f"127.0.0.1:{port}", "--workers", str(a.workers)],
                              stdout=subprocess.DEVNULL, stderr=errlog)
    samples = []  # (seconds since start, rss KiB, fds, connections of the current run)
    runs = []     # (connections, round trips/s, errors)
    current = {"conns": 0}
    stop = threading.Event()
    loadgen_proc = None
    try:
        wait_port(port)
        time.sleep(1)
        pid = server.pid
        base_fds, base_rss = fd_count(pid), rss_kib(pid)
        t_start = time.time()
        duration = a.minutes * 60

        def sampler():
            while not stop.is_set():
                if server.poll() is not None:
                    return
                samples.append((time.time() - t_start, rss_kib(pid), fd_count(pid), current["conns"]))
                stop.wait(a.sample)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        i = 0
        while time.time() - t_start < duration:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with status {server.returncode}")
            conns = conns_cycle[i % len(conns_cycle)]
            i += 1
            current["conns"] = conns
            loadgen_proc = subprocess.Popen(
                [loadgen, "--addr", f"127.0.0.1:{port}", "--conns", str(conns), "--seconds", str(a.run_seconds),
                 "--mode", a.server], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = loadgen_proc.communicate(timeout=a.run_seconds + 30)
            loadgen_proc = None
            if not out.startswith("RESULT"):
                raise RuntimeError(f"loadgen failed: {err.strip()}")
            kv = dict(x.split("=") for x in out.split()[1:])
            runs.append((conns, float(kv["rps"]), int(kv["errors"])))
        current["conns"] = 0
        stop.set()
        th.join()
        # After the load: descriptors back to the baseline (the server closes
        # each connection when it reads the client's EOF).
        t_idle = time.time()
        fds_after = fd_count(pid)
        while fds_after != base_fds and time.time() - t_idle < 10:
            time.sleep(0.2)
            fds_after = fd_count(pid)
        rss_after = rss_kib(pid)
        alive = server.poll() is None
    finally:
        stop.set()
        if loadgen_proc is not None:
            loadgen_proc.kill()  # by PID
            loadgen_proc.wait()
        server.send_signal(signal.SIGTERM)  # by PID, never by name
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    errlog.close()
    if not alive:
        with open(f"{tmp}/server.stderr") as f:
            print("server stderr:", f.read()[-2000:])

    # ---- verdict ----
    under_load = [s for s in samples if s[0] <= duration]
    q2 = [s[1] for s in under_load if duration / 4 <= s[0] < duration / 2]
    h2 = [s[1] for s in under_load if s[0] >= duration / 2]
    growth = (max(h2) - max(q2)) * 100.0 / max(q2) if q2 and h2 else float("nan")
    # The same comparison per connection count (informational: RSS follows
    # the load, so a leak shows best at a fixed level).
    levels = []
    for c in sorted(set(conns_cycle)):
        a2 = [s[1] for s in under_load if s[3] == c and duration / 4 <= s[0] < duration / 2]
        b2 = [s[1] for s in under_load if s[3] == c and s[0] >= duration / 2]
        if a2 and b2:
            levels.append(f"{c} conns {max(a2) / 1024:.1f} -> {max(b2) / 1024:.1f} MiB")
    fds_ok = fds_after == base_fds
    rss_ok = growth == growth and growth < a.rss_bound
    total_rt = sum(r[1] * a.run_seconds for r in runs)
    errors = sum(r[2] for r in runs)

    print(f"\n## soak: {a.server} server, {a.workers} workers, {a.minutes:g} min, {len(runs)} loadgen runs of "
          f"{a.run_seconds:g} s cycling {a.conns} connections")
    print(f"round trips: {total_rt:.0f} ({total_rt / max(1.0, duration):.0f}/s), loadgen errors: {errors}")
    print("\n| t (s) | conns | RSS (MiB) | fds |")
    print("|---|---|---|---|")
    print(f"| baseline | 0 | {base_rss / 1024:.1f} | {base_fds} |")
    step = max(1, len(under_load) // 12)
    for s in under_load[::step]:
        print(f"| {s[0]:.0f} | {s[3]} | {s[1] / 1024:.1f} | {s[2]} |")
    print(f"| after load | 0 | {rss_after / 1024:.1f} | {fds_after} |")
    print(f"\nRSS peak, 2nd quarter: {max(q2) / 1024 if q2 else float('nan'):.1f} MiB; "
          f"2nd half: {max(h2) / 1024 if h2 else float('nan'):.1f} MiB; growth {growth:+.2f}% "
          f"(bound {a.rss_bound:g}%)")
    if levels:
        print("peaks per load level, 2nd quarter -> 2nd half: " + "; ".join(levels))
    print(f"descriptors: baseline {base_fds}, after the load {fds_after}, "
          f"peak {max(s[2] for s in samples) if samples else 0}")
    verdict = fds_ok and rss_ok and alive
    reasons = [] if verdict else [r for r, bad in [("descriptors not back to baseline", not fds_ok),
                                                    ("RSS grew beyond the bound", not rss_ok),
                                                    ("the server died", not alive)] if bad]
    print(f"VERDICT: {'PASS' if verdict else 'FAIL: ' + '; '.join(reasons)}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
