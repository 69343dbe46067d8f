#!/usr/bin/env python3
"""Network benchmarks: weft's example servers against their Go twins, a
hand-written C epoll reactor (echo) and nginx (http), driven by the same
load generators on loopback, side by side, medians of --reps runs.

echo: bench/loadgen (C, one core) with 64-byte messages; the fair figure on
a 2-core machine is the *server's CPU time per round trip* (utime+stime of
the server process over the run, from /proc/PID/stat), plus round trips/s
and p99 latency.
http: wrk -t1 against each server; requests/s.
memory: RSS of the server per idle connection at 10,000 connections.
hogs: echo with one CPU-bound spinning fiber (goroutine) per worker (P), weft
against Go (which preempts): round trips/s and p50/p99/p99.9 latency. A
server that serves nothing in the run is reported as stalled.
churn: echo where each connection makes one round trip and is closed and
replaced (loadgen --churn, --churn-conns at a time): server CPU per
connection served (accept, a fiber, read, write, close).

Every server is started here and stopped by its PID; every run is bounded
in time. bench/ab.py imports run_echo and build_loadgen from here.
--kqueue-build DIR adds weft built with -Dpoller=kqueue (on Linux: on
libkqueue) to the echo and http runs, interleaved with the rest, and a
kqueue/epoll ratio line (an emulation's cost, recorded, not a target).
usage: net_bench.py --build BUILD [--reps 3] [--seconds 5] [--only echo|http|memory|hogs|churn]
                    [--hog-workers 2] [--hog-conns 50] [--churn-conns 50] [--kqueue-build DIR]
"""
import argparse
import atexit
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def wait_port(port, timeout=5.0, proc=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited before listening on port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server on port {port} did not come up in {timeout:g} s")


class Server:
    def __init__(self, argv, port):
        self.err = tempfile.TemporaryFile()  # its stderr, for the error messages
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.err)
        self.port = port
        try:
            wait_port(port, proc=self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}{self.died() or ''}") from None

    def died(self):
        """None while the server runs, else how it ended and its last stderr."""
        rc = self.proc.poll()
        if rc is None:
            return None
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        self.err.seek(0)
        tail = self.err.read()[-300:].decode(errors="replace").strip()
        return f" ({how}{': ' + tail if tail else ''})"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)  # by PID, never by name
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def weft_stats(self):
        """The counters a stopped `echo_server --stats` printed, or None."""
        self.err.seek(0)
        for line in self.err.read().decode(errors="replace").splitlines():
            if line.startswith("weft stats: "):
                return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[2:])}
        return None


def servers_echo(build, gobin, reactor):
    return {
        "weft w=1": lambda p: [f"{build}/examples/echo_server", "--listen", f"127.0.0.1:{p}", "--workers", "1"],
        "weft w=2": lambda p: [f"{build}/examples/echo_server", "--listen", f"127.0.0.1:{p}", "--workers", "2"],
        "go P=1": lambda p: [gobin, "-mode", "echo", "-listen", f"127.0.0.1:{p}", "-procs", "1"],
        "go P=2": lambda p: [gobin, "-mode", "echo", "-listen", f"127.0.0.1:{p}", "-procs", "2"],
        "reactor t=1": lambda p: [reactor, "--listen", f"127.0.0.1:{p}", "--threads", "1"],
        "reactor t=2": lambda p: [reactor, "--listen", f"127.0.0.1:{p}", "--threads", "2"],
    }


def build_loadgen(tmp):
    """Compiles bench/loadgen.c into tmp; returns its path."""
    exe = f"{tmp}/loadgen"
    subprocess.run(["cc", "-O2", "-o", exe, f"{HERE}/loadgen.c"], check=True)
    return exe


def run_echo(loadgen, argv_of, conns, seconds, size=64, syscalls=False, churn=False):
    """One loadgen run of `seconds` against a fresh server (argv_of(port)).
    Returns cpu_us (server CPU per round trip), rps, p50, p99, p999 (us),
    errors, cores (server CPU time / wall time) and threads (the server's
    OS threads at the end). loadgen stops by itself after `seconds` even if the server
    answers nothing (rps 0); the timeout is a guard against a wedged loadgen."""
    port = free_port()
    srv = Server(argv_of(port), port)
    perf = None
    try:
        if syscalls:  # the server's system calls during the run (all its threads), by PID
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p",
                                     str(srv.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        c0 = cpu_seconds(srv.proc.pid)
        out = subprocess.run([loadgen, "--addr", f"127.0.0.1:{port}", "--conns", str(conns), "--seconds",
                              str(seconds), "--size", str(size)] + (["--churn"] if churn else []),
                             check=True, capture_output=True, text=True,
                             timeout=seconds + 30).stdout
        died = srv.died()
        if died:
            raise RuntimeError(f"server died during the run{died}")
        c1 = cpu_seconds(srv.proc.pid)
        nthreads = threads(srv.proc.pid)
        nsys = None
        if perf:
            perf.send_signal(signal.SIGINT)
            err = perf.communicate(timeout=10)[1]
            perf = None
            nsys = next(int(l.split(",")[0]) for l in err.splitlines() if "raw_syscalls:sys_enter" in l)
    finally:
        if perf:
            perf.kill()
            perf.wait()
        srv.stop()
    kv = dict(x.split("=") for x in out.split()[1:])
    rps = float(kv["rps"])
    st = srv.weft_stats()  # the server's whole life: startup adds a handful
    return {"stats": {k: v / max(1.0, rps * seconds) for k, v in st.items()} if st else None,
            "cpu_us": (c1 - c0) * 1e6 / max(1.0, rps * seconds), "rps": rps, "p50": float(kv["p50_us"]),
            "sys_rt": nsys / max(1.0, rps * seconds) if nsys is not None else float("nan"),
            "p99": float(kv["p99_us"]), "p999": float(kv["p999_us"]), "errors": int(kv["errors"]),
            "cores": (c1 - c0) / seconds, "threads": nthreads}


def hogs_servers(build, gobin, workers):
    """weft and Go echo servers with one CPU hog per worker / P."""
    w = str(workers)
    return {
        f"weft w={w} hogs={w}": lambda p: [f"{build}/examples/echo_server", "--listen", f"127.0.0.1:{p}",
                                            "--workers", w, "--hogs", w],
        f"go P={w} hogs={w}": lambda p: [gobin, "-mode", "echo", "-listen", f"127.0.0.1:{p}", "-procs", w,
                                          "-hogs", w],
    }


def run_hogs(loadgen, build, gobin, workers, conns, seconds, reps):
    """Echo while every worker runs a CPU hog, weft and Go alternated run by
    run; prints a Markdown table of medians. A run in which the server
    completed no round trip is stalled; one in which it did not come up or
    died has failed. Both are left out of the medians, and counted."""
    print(f"\n### echo with CPU hogs: {workers} worker(s), one spinning fiber/goroutine per worker, "
          f"{conns} conns, 64-byte messages, {seconds} s, medians of {reps}")
    print("| server | round trips/s | p50 us | p99 us | p99.9 us | errors | server CPU cores | server threads "
          "| stalled / failed runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    sys.stdout.flush()
    srvs = hogs_servers(build, gobin, workers)
    results = {name: [] for name in srvs}
    stalled = {name: [] for name in srvs}
    failed = {name: [] for name in srvs}
    for _ in range(reps):
        for name, argv_of in srvs.items():  # interleaved: same noise for both
            try:
                r = run_echo(loadgen, argv_of, conns, seconds)
            except (RuntimeError, subprocess.SubprocessError) as e:
                failed[name].append(f"{type(e).__name__}: {e}")
                continue
            if r["rps"] <= 0:
                stalled[name].append(f"0 round trips in {seconds} s ({conns} connections open, none answered)")
            else:
                results[name].append(r)
    for name in srvs:
        rs, ns, nf = results[name], len(stalled[name]), len(failed[name])
        if rs:
            print(f"| {name} | {med([r['rps'] for r in rs]):.0f} | {med([r['p50'] for r in rs]):.0f} | "
                  f"{med([r['p99'] for r in rs]):.0f} | {med([r['p999'] for r in rs]):.0f} | "
                  f"{sum(r['errors'] for r in rs)} | {med([r['cores'] for r in rs]):.2f} | "
                  f"{med([r['threads'] for r in rs]):.0f} | {ns} / {nf} of {reps} |")
        else:
            what = "STALLED" if not nf else "FAILED" if not ns else "STALLED / FAILED"
            print(f"| {name} | {what} | - | - | - | - | - | - | {ns} / {nf} of {reps} |")
    for name in srvs:
        if stalled[name]:
            print(f"- {name}: stalled in {len(stalled[name])} of {reps} runs: {stalled[name][0]}")
        if failed[name]:
            print(f"- {name}: failed in {len(failed[name])} of {reps} runs: {failed[name][0]}")
    sys.stdout.flush()
    return results, stalled, failed


NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  fastcgi_temp_path {dir};
  uwsgi_temp_path {dir};
  scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "Hello, World!"; }}
  }}
}}
"""


def run_http(argv_of, conns, seconds, tmp):
    port = free_port()
    argv = argv_of(port)
    if argv[0] == "nginx":
        d = tempfile.mkdtemp(dir=tmp)
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(dir=d, port=port))
        argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-c", f"{d}/nginx.conf", "-p", d]
    srv = Server(argv, port)
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        srv.stop()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1, "ms": 1000, "s": 1e6}[p99.group(2)] if p99 else 0
    return {"rps": rps, "p99": float(p99.group(1)) * scale if p99 else float("nan")}


def idle_memory(argv_of, n):
    """RSS growth of a server per idle connection, for n connections."""
    port = free_port()
    srv = Server(argv_of(port), port)
    socks = []
    try:
        time.sleep(0.2)
        before = rss_kib(srv.proc.pid)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"x")  # make each server fiber/goroutine read and park again
            socks.append(s)
        for s in socks:
            s.recv(1)
        time.sleep(0.5)
        after = rss_kib(srv.proc.pid)
    finally:
        for s in socks:
            s.close()
        srv.stop()
    return (after - before) * 1024.0 / n


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--only", default="", choices=["", "echo", "http", "memory", "hogs", "churn"])
    ap.add_argument("--churn-conns", type=int, default=50, help="churn: loadgen connection slots")
    ap.add_argument("--hog-workers", type=int, default=2, help="hogs: weft --workers / Go GOMAXPROCS, and hogs")
    ap.add_argument("--hog-conns", type=int, default=50, help="hogs: loadgen connections")
    ap.add_argument("--kqueue-build", default="", help="echo/http: also weft built with -Dpoller=kqueue from this dir")
    ap.add_argument("--uring", action="store_true", help="echo/http/memory: also weft with WEFT_POLLER=io_uring")
    ap.add_argument("--syscalls", action="store_true", help="echo: count the servers' system calls (perf stat)")
    ap.add_argument("--conns", default="100,1000", help="echo/http: connection counts")
    ap.add_argument("--stats", action="store_true",
                    help="echo: also the weft servers' scheduler counters (weft::stats()) per round trip")
    a = ap.parse_args()
    conn_list = [int(c) for c in a.conns.split(",")]

    def uring(argv_of):  # the same server on an io_uring runtime (env execs it: same PID)
        return lambda p: ["env", "WEFT_POLLER=io_uring"] + argv_of(p)

    def echo_servers():  # the echo servers, and with --uring weft on io_uring too
        srvs = servers_echo(a.build, gobin, reactor)
        if a.uring:
            for w in ("1", "2"):
                srvs[f"weft-uring w={w}"] = uring(srvs[f"weft w={w}"])
        return srvs
    kq = a.kqueue_build
    tmp = tempfile.mkdtemp(prefix="weft-netbench-")
    atexit.register(shutil.rmtree, tmp, True)
    reactor, gobin = f"{tmp}/reactor_echo", f"{tmp}/gonet"
    loadgen = build_loadgen(tmp)
    subprocess.run(["cc", "-O2", "-pthread", "-o", reactor, f"{HERE}/reactor_echo.c"], check=True)
    subprocess.run(["go", "build", "-o", gobin, "."], cwd=f"{HERE}/go/net", check=True)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    if a.only in ("", "echo"):
        print("\n### echo: 64-byte round trips, loadgen on loopback, medians of", a.reps)
        print("| server | conns | server CPU us/rt | round trips/s | p99 us | errors | syscalls/rt |")
        print("|---|---|---|---|---|---|---|")
        srvs = echo_servers()
        if kq:
            for w in ("1", "2"):
                srvs[f"weft-kqueue w={w}"] = (lambda w: lambda p: [f"{kq}/examples/echo_server", "--listen",
                                                                     f"127.0.0.1:{p}", "--workers", w])(w)
        if a.stats:
            for name in [n for n in srvs if n.startswith("weft")]:
                srvs[name] = (lambda f: lambda p: f(p) + ["--stats"])(srvs[name])
        stat_rows = []
        for conns in conn_list:
            results = {name: [] for name in srvs}
            for _ in range(a.reps):
                for name, argv_of in srvs.items():  # interleaved: same noise for all
                    results[name].append(run_echo(loadgen, argv_of, conns, a.seconds, syscalls=a.syscalls))
            for name, rs in results.items():
                if rs[0]["stats"]:
                    keys = rs[0]["stats"].keys()
                    stat_rows.append((name, conns, {k: med([r["stats"][k] for r in rs]) for k in keys}))
            for name, rs in results.items():
                print(f"| {name} | {conns} | {med([r['cpu_us'] for r in rs]):.2f} | {med([r['rps'] for r in rs]):.0f} | "
                      f"{med([r['p99'] for r in rs]):.0f} | {sum(r['errors'] for r in rs)} | {med([r['sys_rt'] for r in rs]):.2f} |")
            for w in ("1", "2"):
                for kind in ["weft"] + (["weft-uring"] if a.uring else []):
                    wc = med([r["cpu_us"] for r in results[f"{kind} w={w}"]])
                    print(f"| ratio w={w} | {conns} | {kind}/reactor {wc / med([r['cpu_us'] for r in results[f'reactor t={w}']]):.3f}, "
                          f"{kind}/Go {wc / med([r['cpu_us'] for r in results[f'go P={w}']]):.3f} | | | | |")
                wc = med([r["cpu_us"] for r in results[f"weft w={w}"]])
                if kq:
                    k = results[f"weft-kqueue w={w}"]
                    e = results[f"weft w={w}"]
                    print(f"| kqueue/epoll w={w} | {conns} | {med([r['cpu_us'] for r in k]) / wc:.3f} | "
                          f"{med([r['rps'] for r in k]) / med([r['rps'] for r in e]):.3f} | "
                          f"{med([r['p99'] for r in k]) / med([r['p99'] for r in e]):.3f} | |")
            sys.stdout.flush()
        if stat_rows:
            keys = list(stat_rows[0][2].keys())
            print("\n### echo: weft's scheduler counters per round trip (weft::stats(), medians)")
            print("| server | conns | " + " | ".join(keys) + " |")
            print("|---|---|" + "---|" * len(keys))
            for name, conns, st in stat_rows:
                print(f"| {name} | {conns} | " + " | ".join(f"{st[k]:.3f}" for k in keys) + " |")

    if a.only in ("", "churn"):
        # Connection churn: each loadgen connection makes one 64-byte round
        # trip and is closed and replaced (accept, read, write, close per
        # connection). The cost a multishot accept would cut.
        print(f"\n### churn: connect, one 64-byte round trip, close; {a.churn_conns} at a time, medians of", a.reps)
        print("| server | server CPU us/conn | conns/s | p99 us (from connect) | errors | / reactor | / Go |")
        print("|---|---|---|---|---|---|---|")
        srvs = echo_servers()
        results = {name: [] for name in srvs}
        for _ in range(a.reps):
            for name, argv_of in srvs.items():  # interleaved: same noise for all
                results[name].append(run_echo(loadgen, argv_of, a.churn_conns, a.seconds, churn=True))
        cpu = {name: med([r["cpu_us"] for r in rs]) for name, rs in results.items()}
        for name, rs in results.items():
            w = name.split("=")[-1]
            print(f"| {name} | {cpu[name]:.2f} | {med([r['rps'] for r in rs]):.0f} | {med([r['p99'] for r in rs]):.0f} | "
                  f"{sum(r['errors'] for r in rs)} | {cpu[name] / cpu[f'reactor t={w}']:.3f} | {cpu[name] / cpu[f'go P={w}']:.3f} |")
        sys.stdout.flush()

    if a.only in ("", "http"):
        if not shutil.which("wrk"):
            print("wrk not installed: skipping http")
        else:
            print("\n### http: wrk -t1 against hello servers, requests/s, medians of", a.reps)
            print("| server | conns | requests/s | p99 us |")
            print("|---|---|---|---|")
            srvs = {
                "weft w=1": lambda p: [f"{a.build}/examples/http_hello", "--listen", f"127.0.0.1:{p}", "--workers", "1"],
                "weft w=2": lambda p: [f"{a.build}/examples/http_hello", "--listen", f"127.0.0.1:{p}", "--workers", "2"],
                "go P=2": lambda p: [gobin, "-mode", "http", "-listen", f"127.0.0.1:{p}", "-procs", "2"],
                "nginx 1 worker": lambda p: ["nginx"],
            }
            if a.uring:
                for w in ("1", "2"):
                    srvs[f"weft-uring w={w}"] = uring(srvs[f"weft w={w}"])
            if kq:
                for w in ("1", "2"):
                    srvs[f"weft-kqueue w={w}"] = (lambda w: lambda p: [f"{kq}/examples/http_hello", "--listen",
                                                                         f"127.0.0.1:{p}", "--workers", w])(w)
            for conns in conn_list:
                results = {name: [] for name in srvs}
                for _ in range(a.reps):
                    for name, argv_of in srvs.items():
                        results[name].append(run_http(argv_of, conns, a.seconds, tmp))
                for name, rs in results.items():
                    print(f"| {name} | {conns} | {med([r['rps'] for r in rs]):.0f} | {med([r['p99'] for r in rs]):.0f} |")
                ng = med([r["rps"] for r in results["nginx 1 worker"]])
                for name in [n for n in srvs if n.startswith("weft")]:
                    print(f"| {name}/nginx | {conns} | {med([r['rps'] for r in results[name]]) / ng:.3f} | |")
                if kq:
                    for w in ("1", "2"):
                        k, e = results[f"weft-kqueue w={w}"], results[f"weft w={w}"]
                        print(f"| kqueue/epoll w={w} | {conns} | {med([r['rps'] for r in k]) / med([r['rps'] for r in e]):.3f} | "
                              f"{med([r['p99'] for r in k]) / med([r['p99'] for r in e]):.3f} |")
                sys.stdout.flush()

    if a.only in ("", "memory"):
        n = 10000
        print(f"\n### memory: server RSS per idle connection at {n} connections")
        print("| server | bytes per connection |")
        print("|---|---|")
        weft2 = lambda p: [f"{a.build}/examples/echo_server", "--listen", f"127.0.0.1:{p}", "--workers", "2"]
        for name, argv_of in [("weft w=2", weft2)] + ([("weft-uring w=2", uring(weft2))] if a.uring else []) + [
                              ("go P=2", lambda p: [gobin, "-mode", "echo", "-listen", f"127.0.0.1:{p}", "-procs", "2"])]:
            print(f"| {name} | {med([idle_memory(argv_of, n) for _ in range(a.reps)]):.0f} |")
            sys.stdout.flush()

    if a.only in ("", "hogs"):
        run_hogs(loadgen, a.build, gobin, a.hog_workers, a.hog_conns, a.seconds, a.reps)


if __name__ == "__main__":
    main()
