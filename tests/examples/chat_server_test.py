"""chat_server: two clients chat; each sees the other join, speak and leave.
A line over 4 KiB ends its sender's connection, not the server."""
from example_util import LineConn, Server, done


def wait_for(conn, suffix):
    """Reads lines until one ends with suffix; returns the lines read."""
    seen = []
    while True:
        line = conn.line()
        assert line is not None, f"connection ended before {suffix!r}; saw {seen}"
        seen.append(line)
        if line.endswith(suffix):
            return seen


with Server("chat_server", "--workers", "2") as srv:
    a = LineConn(srv.hostport)
    wait_for(a, f"* {a.local()} joined")  # a is in the hub
    b = LineConn(srv.hostport)
    wait_for(b, f"* {b.local()} joined")  # b is in the hub
    wait_for(a, f"* {b.local()} joined")
    a.send("hello from a\r\n")
    wait_for(b, f"{a.local()}: hello from a")
    wait_for(a, f"{a.local()}: hello from a")  # everyone, the sender too
    b.send("and from b\n")
    wait_for(a, f"{b.local()}: and from b")
    b_addr = b.local()
    b.close()
    wait_for(a, f"* {b_addr} left")
    # A line longer than the chat's 4 KiB: that client is dropped.
    c = LineConn(srv.hostport)
    wait_for(c, f"* {c.local()} joined")
    c_addr = c.local()
    c.send("y" * 5000 + "\n")
    wait_for(a, f"* {c_addr} left")
    a.send("still here\n")
    wait_for(a, f"{a.local()}: still here")
    a.close()
    c.close()
    srv.assert_running()
done("chat_server")
