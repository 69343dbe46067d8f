"""fetch: concurrent GETs against a loopback HTTP server of this driver (200
and 404 both count as fetched), a refused port and a server that never
answers (a deadline): those fail, and fetch exits 1."""
import http.server
import re
import socket
import threading
import time

from example_util import done, run


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/missing":
            self.send_error(404)
            return
        body = (self.path * 100).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
base = "http://127.0.0.1:%d" % httpd.server_address[1]
try:
    urls = [f"{base}/a", f"{base}/bb", f"{base}/missing"]
    out, _ = run("fetch", "--timeout", "10000", *urls)
    lines = out.splitlines()
    assert len(lines) == 3, out
    for u in urls:
        line = next(l for l in lines if l.startswith(u + " "))
        status = "404" if u.endswith("missing") else "200"
        assert re.search(r"\d+ B  HTTP/1\.[01] " + status, line), line

    # A refused port and a server that accepts (in the kernel) but never
    # answers: both fail; the deadline bounds the second.
    silent = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    t0 = time.monotonic()
    out, _ = run("fetch", "--timeout", "2000", "http://127.0.0.1:%d/" % silent.getsockname()[1],
                 "http://127.0.0.1:%d/" % closed_port, expect_rc=1)
    elapsed = time.monotonic() - t0
    silent.close()
    assert re.search(r"error: .*(timed out|deadline exceeded)", out, re.I), out
    assert re.search(r"error: .*refused", out, re.I), out
    assert elapsed < 30, f"fetch with a 2 s deadline took {elapsed:.1f} s"
finally:
    httpd.shutdown()
done("fetch")
