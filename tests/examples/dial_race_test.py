"""dial_race: against its own loopback servers, and against addresses given
(loopback listeners of this driver: one greets, one never answers, one port
refuses)."""
import re
import socket
import threading

from example_util import WAIT, done, run

out, _ = run("dial_race", "--servers", "3", "--workers", "2")
m = re.search(r'(127\.0\.0\.1:\d+) won in [\d.]+ ms: "hello from server (\d)"; 2 dials cancelled, 0 failed', out)
assert m, out
assert m.group(1) in re.findall(r"server (127\.0\.0\.1:\d+) greets", out), out

# Given addresses: a greeter, a silent server (accepted by the kernel, never
# answered) and a closed port.
greeter = socket.create_server(("127.0.0.1", 0))
silent = socket.create_server(("127.0.0.1", 0))
closed = socket.create_server(("127.0.0.1", 0))
closed_addr = closed.getsockname()
closed.close()
greeter.settimeout(WAIT)


def greet():
    try:
        c, _ = greeter.accept()
        c.sendall(b"hi from the driver\n")
        c.close()
    except OSError:
        pass


t = threading.Thread(target=greet)
t.start()
addr = lambda s: "%s:%d" % s.getsockname()
out, _ = run("dial_race", "--workers", "2", addr(silent), addr(greeter), "%s:%d" % closed_addr)
t.join(WAIT)
greeter_addr = addr(greeter)
greeter.close()
silent.close()
m = re.search(r'(127\.0\.0\.1:\d+) won in [\d.]+ ms: "hi from the driver"; (\d) dials cancelled, (\d) failed', out)
assert m and m.group(1) == greeter_addr, out
# The silent dial is cancelled; the refused one failed, or was cancelled first.
assert int(m.group(2)) >= 1 and int(m.group(2)) + int(m.group(3)) == 2, out
done("dial_race")
