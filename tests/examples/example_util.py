"""Helpers for the example drivers (tests/examples/*_test.py).

A driver is run as `python3 DRIVER EXAMPLES_BUILD_DIR`. It fails by raising
(AssertionError or a timeout), which exits non-zero. Everything is on
loopback, every wait is bounded, and a server is stopped by its own PID.
"""
import os
import re
import select
import socket
import subprocess
import sys
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.getcwd(), "examples")
WAIT = 20  # seconds: the bound on any single wait (generous: sanitizer builds on a loaded machine)


def exe(name):
    path = os.path.join(BIN, name)
    assert os.access(path, os.X_OK), f"{path}: not built"
    return path


def run(name, *args, timeout=60, expect_rc=0):
    """Runs an example to its end; returns its stdout."""
    r = subprocess.run([exe(name), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    assert r.returncode == expect_rc, (
        f"{name} {' '.join(args)}: exit {r.returncode}, wanted {expect_rc}\n"
        f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
    return r.stdout, r.stderr


def check_help(name, *words):
    """--help exits 0 with a usage line naming each of words."""
    out, _ = run(name, "--help")
    assert out.startswith("usage: "), f"{name} --help printed:\n{out}"
    for w in words:
        assert w in out, f"{name} --help does not mention {w}:\n{out}"
    return out


class Server:
    """A server example on 127.0.0.1:0 (context manager). Reads the address
    from its first line ("... listening on HOST:PORT ...") and stops it by
    PID on exit."""

    def __init__(self, name, *args):
        self.name = name
        self.proc = subprocess.Popen([exe(name), "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], WAIT)
        line = self.proc.stdout.readline() if ready else ""
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if not m:
            self.stop()
            raise AssertionError(f"{name} did not say where it listens: {line!r}, "
                                 f"stderr: {self.proc.stderr.read()}")
        self.addr = m.group(1)
        host, port = self.addr.rsplit(":", 1)
        self.hostport = (host, int(port))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this PID only
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def assert_running(self):
        assert self.proc.poll() is None, f"{self.name} exited {self.proc.returncode}"


class LineConn:
    """A loopback client that sends and receives lines."""

    def __init__(self, hostport):
        self.sock = socket.create_connection(hostport, timeout=WAIT)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        """The next line without its newline; None at the end of the stream."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest.decode() if rest else None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def closed_by_peer(self):
        """True when the peer closed: the end of the stream, or a reset (a
        server that closes with unread input sends one)."""
        try:
            return self.line() is None
        except ConnectionResetError:
            return True

    def local(self):
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def close(self):
        self.sock.close()


def done(name):
    print(f"{name}: ok")
