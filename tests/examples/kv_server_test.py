"""kv_server: the protocol line by line (SET, GET, DEL, QUIT, errors, CRLF,
the line limit), a store shared by connections, and many clients at once."""
import threading

from example_util import WAIT, LineConn, Server, done


def ask(conn, request):
    conn.send(request)
    return conn.line()


with Server("kv_server", "--workers", "2", "--max-line", "64") as srv:
    c = LineConn(srv.hostport)
    assert ask(c, "GET k\n") == "NOT_FOUND"
    assert ask(c, "SET k hello world\n") == "OK"
    assert ask(c, "GET k\n") == "VALUE hello world"
    assert ask(c, "SET k2 v2\r\n") == "OK"  # CRLF is a line end too
    assert ask(c, "GET k2\r\n") == "VALUE v2"
    assert ask(c, "SET empty\n") == "OK"
    assert ask(c, "GET empty\n") == "VALUE "
    assert ask(c, "DEL k2\n") == "DELETED"
    assert ask(c, "DEL k2\n") == "NOT_FOUND"
    assert ask(c, "PING\n").startswith("ERR unknown command")
    assert ask(c, "GET\n") == "ERR GET needs a key"
    assert ask(c, "GET a b\n") == "ERR GET takes only a key"
    # Requests split across writes, and two in one write.
    c.send("SE")
    c.send("T sp")
    c.send("lit va")
    c.send("lue\r")
    c.send("\nGET split\n")
    assert c.line() == "OK" and c.line() == "VALUE value"
    # Another connection sees the same store.
    d = LineConn(srv.hostport)
    assert ask(d, "GET k\n") == "VALUE hello world"
    assert ask(d, "QUIT\n") == "BYE"
    assert d.line() is None, "the server did not close after QUIT"
    # A line over --max-line: an error, then the server closes.
    assert ask(c, "SET long " + "z" * 100 + "\n") == "ERR line too long"
    assert c.closed_by_peer()
    c.close()

    # Many clients at once, each on its own keys.
    errors = []

    def client(i):
        try:
            conn = LineConn(srv.hostport)
            for k in range(30):
                if ask(conn, f"SET c{i}k{k} v{i * k}\n") != "OK":
                    errors.append(f"client {i}: SET failed")
            for k in range(30):
                got = ask(conn, f"GET c{i}k{k}\n")
                if got != f"VALUE v{i * k}":
                    errors.append(f"client {i}: GET c{i}k{k} -> {got}")
            conn.close()
        except OSError as e:
            errors.append(f"client {i}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
    assert not any(t.is_alive() for t in threads), "a client is stuck"
    assert not errors, errors[:5]
    srv.assert_running()
done("kv_server")
