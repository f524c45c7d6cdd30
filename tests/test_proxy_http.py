"""The proxy's HTTP/1.1 server against hostile and unusual clients, and as a forward proxy.

Malformed request lines, oversize headers, bad chunk sizes and slow-loris clients are refused
with the right status while other connections go on being served; pipelined requests are
answered in order; hundreds of connections are held by the one proxy thread; absolute-form
requests are forwarded, redirects followed by the node with Authorization dropped on the hop
to another host.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import zflytest  # noqa: E402


def recv_all(sock, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def recv_response(sock, timeout=10):
    """One response with a Content-Length body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body[:length], body[length:]


class ProxyHttpTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.root = self.path("files")
        os.makedirs(self.root)
        self.payload = os.urandom(300000)
        with open(os.path.join(self.root, "file.bin"), "wb") as handle:
            handle.write(self.payload)
        self.origin_log = self.path("origin.log")
        self.origin = zflytest.Origin(self.root, self.origin_log)
        self.origin_port = self.origin.port
        self.port = zflytest.free_port()
        self.node = self.start("edge", f"""[node]
name = edge
log_level = info
http = 127.0.0.1:0

[upstream]
hosts = origin.zfly.test=127.0.0.1:{self.origin_port}

[proxy]
listen = 127.0.0.1:{self.port}
fetcher =
header_max = 4K
header_timeout = 1s
max_connections = 600
""")
        self.node.wait_ready()

    def tearDown(self):
        self.origin.stop()
        super().tearDown()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def good_request(self):
        return (b"GET http://origin.zfly.test/file.bin HTTP/1.1\r\nHost: origin.zfly.test\r\n"
                b"\r\n")

    def assert_serves(self):
        with self.connect() as sock:
            sock.sendall(self.good_request())
            response, _ = recv_response(sock)
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:200])
        self.assertTrue(response.endswith(self.payload))

    def test_forward_proxy_and_pipelining(self):
        with self.connect() as sock:
            sock.sendall(self.good_request() + b"HEAD http://origin.zfly.test/file.bin HTTP/1.1\r\n"
                         b"Host: origin.zfly.test\r\n\r\n" + self.good_request())
            first, rest = recv_response(sock)
            self.assertTrue(first.endswith(self.payload))
            data = rest + recv_all(sock, timeout=2)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:100])
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: 300000", head)  # HEAD: length, no body
        self.assertTrue(body.startswith(b"HTTP/1.1 200 ") and body.endswith(self.payload))

    def test_redirect_drops_authorization_across_hosts(self):
        with self.connect() as sock:
            sock.sendall(b"GET http://origin.zfly.test/redirect/file.bin HTTP/1.1\r\n"
                         b"Host: origin.zfly.test\r\nAuthorization: Bearer secret\r\n\r\n")
            response, _ = recv_response(sock)
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response[:300])
        self.assertTrue(response.endswith(self.payload))
        entries = self.origin.records()
        redirect = [e for e in entries if e["path"].startswith("/redirect/")][0]
        target = [e for e in entries if e["path"] == "/file.bin" and e["status"] == 200][-1]
        self.assertTrue(redirect["auth"])
        self.assertFalse(target["auth"], "Authorization must not follow a redirect to another host")

    def test_malformed_requests_refused(self):
        cases = [
            (b"BLAH / HTTP/1.1\r\n\r\n", b"400"),
            (b"GET /x HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n", b"431"),
            (b"POST http://origin.zfly.test/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
             b"\r\n\r\nzz\r\nabc\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"400"),
        ]
        for request, status in cases:
            with self.connect() as sock:
                sock.sendall(request)
                data = recv_all(sock)
            self.assertTrue(data.startswith(b"HTTP/1.1 " + status), (request[:40], data[:100]))
        self.node.log.wait_for(r"request refused .*status=431")
        self.node.log.wait_for(r"a TLS handshake on the plain HTTP port")
        self.assert_serves()

    def test_slow_loris_does_not_disturb_others(self):
        slow = self.connect()
        slow.sendall(b"GET http://origin.zfly.test/file.bin HTTP/1.1\r\nHost: origin")
        self.assert_serves()  # while the slow one dawdles
        data = recv_all(slow, timeout=5)
        slow.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data[:100])
        self.node.log.wait_for(r"request timeout conn=\d+ .*slow client")

    def test_hundreds_of_connections(self):
        sockets = [self.connect() for _ in range(400)]
        try:
            for sock in sockets:
                sock.sendall(b"GET http://origin.zfly.test/file.bin HTTP/1.1\r\n"
                             b"Host: origin.zfly.test\r\nRange: bytes=0-99\r\n\r\n")
            for sock in sockets:
                response, _ = recv_response(sock, timeout=30)
                self.assertTrue(response.startswith(b"HTTP/1.1 206 "), response[:100])
                self.assertTrue(response.endswith(self.payload[:100]))
            self.assertEqual(self.node.metric("zfly_proxy_connections"), 400.0)
        finally:
            for sock in sockets:
                sock.close()


if __name__ == "__main__":
    zflytest.main()
