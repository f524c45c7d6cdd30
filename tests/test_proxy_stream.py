"""A cold blob streams to the client as the origin sends it, and a wrong one never arrives whole.

tests/origin.py serves a blob of four pieces (256 KiB each, the last one short) under a
registry-like path, with /pause-at/: it sends the first 100,000 bytes of the content and then
nothing more until the test opens a gate. The proxy, used as a forward proxy, sends the blob
P2P by its default rule; its fetcher is the blob's only downloader (no scheduler), so the
first piece is still being filled from the origin when the client must already have bytes:
the fetcher passes the origin's bytes to the proxy before the piece is complete (piece.peek),
not after it was stored.

- A cold blob: the client holds at least 64 KiB of the body while the origin is paused and
  has sent less than the first piece; once the gate opens, the whole body arrives, byte-exact.
  The origin saw no HEAD and no probe: the fetcher's first request, a first range sent with
  the client's headers, was both the access proof and the length (zf_fetch_access.h), and
  went on as the first range transfer; range GETs of whole pieces sent the blob once.
- A blob whose content does not match its digest: the client gets the head and bytes as they
  arrive, but the connection closes before the end of the body (the response's last byte
  waits for the fetcher's word that the content digest matched), the bytes it got are the
  origin's, and the fetcher logs the digest failure. A client never gets a complete body of
  wrong bytes.
- The first peek goes with the task.fetch: while the origin has not answered at all (held
  before its head), the node's tap already shows the proxy's piece.peek of piece 0, held by
  the fetcher; once the origin answers, that peek brings the first bytes and the whole body
  arrives, byte-exact. (Before, the reader peeked only after the layout, behind the first
  range's bytes pouring into the fetcher.)
"""
import hashlib
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import zflytest  # noqa: E402

PIECE = 256 << 10
SIZE = 3 * PIECE + 54321
PAUSE_AT = 100000
EARLY_BYTES = 64 << 10


class ProxyStreamTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.root = self.path("files")
        os.makedirs(self.root)
        self.origin = zflytest.Origin(self.root, self.path("origin.log"))
        self.tap_endpoint = "ipc://" + self.path("tap.sock")
        self.node, self.port = self.start_proxy_node(
            fetcher="piece_length_min = 256K\npiece_length_max = 256K\n",
            node=f"tap = {self.tap_endpoint}\n")
        self.tap = None

    def tearDown(self):
        if self.tap:
            self.tap.kill()
            self.tap.wait()
        self.origin.stop()
        super().tearDown()

    def request(self, digest, gate, hold=f"pause-at/{PAUSE_AT}"):
        """Sends the GET through the proxy; returns the socket. hold: the origin's pause (see
        tests/origin.py), by default inside the first piece."""
        url = f"http://127.0.0.1:{self.origin.port}/{hold}/{gate}/v2/test/blobs/{digest}"
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{self.origin.port}\r\n"
                     "Connection: close\r\n\r\n".encode())
        return sock

    @staticmethod
    def read_until(sock, body, count, deadline_s=30):
        """Reads until body has count bytes or the connection ends; returns the body."""
        deadline = time.monotonic() + deadline_s
        while len(body) < count and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            body += chunk
        return body

    def test_cold_blob_streams_before_its_first_piece_is_complete(self):
        payload = os.urandom(SIZE)
        digest = zflytest.write_blob(self.root, payload)
        with self.request(digest, "go") as sock:
            status, headers, body = zflytest.recv_http_head(sock)
            self.assertEqual(status, 200)
            self.assertEqual(int(headers["content-length"]), SIZE)
            self.assertEqual(headers["docker-content-digest"], digest)
            body = self.read_until(sock, body, EARLY_BYTES)
            # The origin is paused inside the first piece: these bytes came before it was
            # complete, let alone stored.
            self.assertGreaterEqual(len(body), EARLY_BYTES)
            self.assertLess(self.origin.stats()["bytes_sent"], PIECE)
            self.assertEqual(body, payload[:len(body)])
            self.origin.open_gate("go")
            body = self.read_until(sock, body, SIZE)
        self.assertEqual(len(body), SIZE)
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])
        self.node.log.wait_for(rf"task complete task=\S+ content_length={SIZE} ")
        # The first range (4 MiB asked, before the length was known) proved the client's
        # access and stated the length: no HEAD, no probe, only ranges of whole pieces that
        # cover the blob once.
        records = self.origin.records()
        self.assertEqual([r["method"] for r in records if r["method"] == "HEAD"], [])
        gets = [r for r in records if r["method"] == "GET"]
        self.assertEqual(gets[0]["range"], f"bytes=0-{(4 << 20) - 1}")
        self.assertNotIn("bytes=0-0", [r["range"] for r in gets])
        path = gets[0]["path"]
        self.assertEqual({r["path"] for r in gets}, {path})
        zflytest.assert_sent_once(self.origin.ranges(path), 0, SIZE, PIECE)
        self.assertEqual(self.origin.stats()["bytes_sent"], SIZE)

    def test_digest_mismatch_ends_the_body_early(self):
        payload = os.urandom(SIZE)
        wrong = "sha256:" + hashlib.sha256(b"other content").hexdigest()
        blobs = os.path.join(self.root, "v2", "test", "blobs")
        os.makedirs(blobs, exist_ok=True)
        with open(os.path.join(blobs, wrong), "wb") as handle:
            handle.write(payload)
        with self.request(wrong, "open") as sock:
            status, headers, body = zflytest.recv_http_head(sock)
            self.assertEqual(status, 200)
            self.assertEqual(int(headers["content-length"]), SIZE)
            body = self.read_until(sock, body, EARLY_BYTES)
            self.assertGreaterEqual(len(body), EARLY_BYTES)  # streamed while paused
            self.origin.open_gate("open")
            body = self.read_until(sock, body, SIZE)  # until the proxy closes it
        self.assertLess(len(body), SIZE)
        self.assertEqual(body, payload[:len(body)])
        self.node.log.wait_for(r"task failed task=\S+ code=digest")
        self.node.log.wait_for(r"p2p: task failed after \d+ bytes .*closing the client "
                               r"connection")

    def start_tap(self):
        """zfly-tap on the node's tap, once it shows traffic: a subscription takes effect
        asynchronously, so blobs are asked for until the tap shows their task.fetch."""
        self.tap = subprocess.Popen([zflytest.ZFLY_TAP, self.tap_endpoint, "--actor", "proxy"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines = zflytest.LineReader(self.tap.stdout, echo_prefix="[tap] ")
        deadline = time.monotonic() + 20
        while True:
            payload = os.urandom(1000)
            digest = zflytest.write_blob(self.root, payload)
            with self.request(digest, "open", hold="pause-at/0") as sock:
                self.origin.open_gate("open")
                status, headers, body = zflytest.recv_http_head(sock)
                self.assertEqual(status, 200)
                self.assertEqual(self.read_until(sock, body, len(payload)), payload)
            try:
                lines.wait_for(r'"type":"task\.fetch"', timeout=1)
                return lines
            except AssertionError:
                self.assertLess(time.monotonic(), deadline, "the tap showed no task.fetch")

    def test_first_peek_goes_with_the_task_fetch(self):
        lines = self.start_tap()
        start = len(lines.lines)
        payload = os.urandom(SIZE)
        digest = zflytest.write_blob(self.root, payload)
        # A task named by its digest has the id zf_task_id.h describes.
        task_id = hashlib.sha256(b"\0".join([b"zfly-task-v1", b"digest", digest.encode(), b"tag",
                                             b"", b"application", b"", b""])).hexdigest()
        with self.request(digest, "head", hold="gate-from/0") as sock:
            # The origin holds its whole answer, head included: the fetcher knows no length,
            # yet the proxy's peek of piece 0 is out, right behind its task.fetch.
            fetch = lines.wait_for_index(rf'^(?=.*"type":"task\.fetch")(?=.*"{digest}")',
                                       start=start)
            peek = lines.wait_for_index(rf'^(?=.*"type":"piece\.peek")(?=.*"{task_id}")',
                                      start=fetch)
            self.assertRegex(lines.lines[peek], r'"piece":0\b')
            self.assertRegex(lines.lines[peek], r'"from":0\b')
            path = f"/gate-from/0/head/v2/test/blobs/{digest}"
            self.assertEqual(self.origin.stats()["paths"].get(path, {}).get("bytes", 0), 0)
            self.origin.open_gate("head")
            status, headers, body = zflytest.recv_http_head(sock)
            self.assertEqual(status, 200)
            self.assertEqual(int(headers["content-length"]), SIZE)
            body = self.read_until(sock, body, SIZE)
        self.assertEqual(len(body), SIZE)
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])


if __name__ == "__main__":
    zflytest.main()
