"""echo_server: round trips of small and large messages from several clients
at once, with 1 and 2 workers."""
import threading

from example_util import WAIT, LineConn, Server, done


def client(hostport, i, errors):
    try:
        c = LineConn(hostport)
        for k in range(20):
            msg = f"client {i} message {k} " + "x" * (k * 997) + "\n"
            c.send(msg)
            got = c.line()
            if got != msg[:-1]:
                errors.append(f"client {i}: sent {len(msg)} bytes, got back {got!r:.80}")
                return
        big = bytes(range(256)) * 4096  # 1 MiB, written while reading
        sender = threading.Thread(target=c.sock.sendall, args=(big,))
        sender.start()
        back = b""
        while len(back) < len(big):
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            back += chunk
        sender.join(WAIT)
        if back != big:
            errors.append(f"client {i}: the 1 MiB block came back as {len(back)} bytes, or changed")
        c.close()
    except OSError as e:
        errors.append(f"client {i}: {e}")


for workers in ("1", "2"):
    with Server("echo_server", "--workers", workers) as srv:
        errors = []
        threads = [threading.Thread(target=client, args=(srv.hostport, i, errors)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 3)
        assert not any(t.is_alive() for t in threads), "a client is stuck"
        assert not errors, errors
        srv.assert_running()
done("echo_server")
