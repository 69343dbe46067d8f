#!/usr/bin/env python3
"""End-to-end test of examples/http_hello's graceful shutdown.

usage: http_hello_test.py PATH/TO/http_hello

Loopback only (127.0.0.1, an ephemeral port), every wait bounded, the server
stopped by its PID if a check fails. Checks:
  1. SIGTERM: the listener closes, an idle keep-alive connection is closed at
     once, a request in flight finishes (answered with Connection: close)
     and the server exits with status 0.
  2. A second SIGINT while a request holds the shutdown up exits at once
     with status 130 (128 + SIGINT).
  3. A request that never completes is cancelled when --grace runs out, and
     the exit status is still 0.
  4. --help documents the shutdown; a bad --grace is refused (status 2).

"In flight" without timing guesses: the client sends a complete request and
the beginning of the next one in a single write; once it has the answer to
the first, the server has read the second's first bytes with it (one
loopback segment, one read) and counts the connection busy until that
request is answered.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

BIN = sys.argv[1]
LIMIT = 30.0  # bound on any single wait (generous: sanitizer builds on a loaded machine)

REQ = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
PARTIAL = b"GET / HTTP/1.1\r\nHost: t\r\n"  # the head is missing its blank line
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return cond


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", "--workers", "2", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err = []
        self.err_cv = threading.Condition()
        threading.Thread(target=self._read_err, daemon=True).start()
        line = self._line_with_limit()
        prefix = "http_hello listening on http://"
        if not line.startswith(prefix):
            self.stop()
            raise SystemExit("http_hello did not start: %r %r" % (line, self.err))
        self.addr = line[len(prefix):].strip().rstrip("/")
        host, port = self.addr.rsplit(":", 1)
        self.hostport = (host, int(port))

    def _line_with_limit(self):
        out = []
        t = threading.Thread(target=lambda: out.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(LIMIT)
        return out[0] if out else ""

    def _read_err(self):
        for line in self.p.stderr:
            with self.err_cv:
                self.err.append(line)
                self.err_cv.notify_all()

    def wait_err(self, needle):
        deadline = time.monotonic() + LIMIT
        with self.err_cv:
            while not any(needle in l for l in self.err):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.err_cv.wait(left)
        return True

    def signal(self, sig):
        os.kill(self.p.pid, sig)

    def wait(self, limit=LIMIT):
        try:
            return self.p.wait(limit)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()  # by PID (Popen keeps it)
            self.p.wait(LIMIT)

    def connect(self):
        s = socket.create_connection(self.hostport, timeout=LIMIT)
        s.settimeout(LIMIT)
        return s


def read_response(s):
    """Reads one response (head and Content-Length body); None at EOF first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(body) < n:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return head.decode(), body.decode()


def closed_by_server(s):
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def busy_connection(srv):
    """A connection with a request in flight (see the module's docstring)."""
    s = srv.connect()
    s.sendall(REQ + PARTIAL)
    r = read_response(s)
    check(r is not None and "200 OK" in r[0], "first pipelined request answered")
    return s


def test_graceful_sigterm():
    srv = Server("--grace", "20s")
    try:
        idle = srv.connect()
        idle.sendall(REQ)
        r = read_response(idle)
        check(r is not None and r[1] == "Hello, World!", "a normal request is answered")
        busy = busy_connection(srv)

        srv.signal(signal.SIGTERM)
        check(srv.wait_err("shutting down"), "the server reports the shutdown")
        check(closed_by_server(idle), "an idle keep-alive connection is closed at once")
        refused = False
        try:
            srv.connect().close()
        except OSError:
            refused = True
        check(refused, "no new connections after the signal")
        check(srv.p.poll() is None, "the server waits for the request in flight")

        busy.sendall(b"\r\n")  # completes the request in flight
        r = read_response(busy)
        check(r is not None and r[1] == "Hello, World!", "the request in flight completes")
        check(r is not None and "connection: close" in r[0].lower(), "its answer closes the connection")
        check(closed_by_server(busy), "then the server closes it")
        rc = srv.wait()
        check(rc == 0, "exit status 0 after a graceful shutdown (got %r)" % rc)
        check(srv.wait_err("stopped"), "the server reports it stopped")
    finally:
        srv.stop()


def test_second_signal_exits_at_once():
    srv = Server("--grace", "120s")
    try:
        busy = busy_connection(srv)  # holds the shutdown up for up to 120 s
        srv.signal(signal.SIGINT)
        check(srv.wait_err("shutting down"), "first SIGINT starts the shutdown")
        check(srv.p.poll() is None, "still running after the first signal")
        srv.signal(signal.SIGINT)
        rc = srv.wait()
        check(rc == 128 + signal.SIGINT, "a second signal exits at once with 130 (got %r)" % rc)
        busy.close()
    finally:
        srv.stop()


def test_grace_runs_out():
    srv = Server("--grace", "300ms")
    try:
        busy = busy_connection(srv)  # never completed
        srv.signal(signal.SIGTERM)
        rc = srv.wait()
        check(rc == 0, "exit status 0 once the grace period is over (got %r)" % rc)
        check(srv.wait_err("grace period over"), "the server says it cancelled what was left")
        check(closed_by_server(busy), "the unfinished connection is closed")
    finally:
        srv.stop()


def test_help_and_bad_flag():
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=LIMIT)
    check(r.returncode == 0 and "--grace" in r.stdout and "SIGTERM" in r.stdout, "--help documents the shutdown")
    r = subprocess.run([BIN, "--grace", "soon"], capture_output=True, text=True, timeout=LIMIT)
    check(r.returncode == 2 and "--grace" in r.stderr, "a bad --grace is refused")


tests = [test_graceful_sigterm, test_second_signal_exits_at_once, test_grace_runs_out, test_help_and_bad_flag]
passed = 0
for t in tests:
    before = len(failures)
    t()
    ok = len(failures) == before
    passed += ok
    print("%s %s" % ("ok  " if ok else "FAIL", t.__name__), flush=True)
print("%d passed, %d failed" % (passed, len(tests) - passed))
sys.exit(0 if passed == len(tests) else 1)
