"""Cached blobs go to plain-HTTP clients from storage's data file with sendfile, and a piece
damaged on disk is never passed on.

tests/origin.py serves a blob (1 MiB and a bit, pieces of 64 KiB) under a registry-like path;
the proxy, used as a forward proxy, sends it P2P by its default rule. Once the task is
complete, a GET and a Range GET through the proxy must return exactly the blob's bytes, and
zfly_proxy_sent_bytes_total{via="sendfile"} must grow by exactly the body sizes: the bytes came
from the file, not through the bus; a range past the end is answered 416. Then a piece is
damaged in the data file: storage answers "corrupt" when the proxy locates it, the task reader
asks the fetcher again (the rule every reader follows, zfly-get too), the fetcher fetches that
piece anew from the origin, and the next GET gets the whole blob, every byte right: the damaged
bytes are never sent. Last, a proxy whose storage
is another node's (over tcp:// with CURVE) is refused piece.locate ("forbidden": a path means
nothing on another host): it says so in its log once and sends the same exact bytes read over
the bus, none with sendfile.
"""
import glob
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import zflytest  # noqa: E402
from zflytest import proxy_get  # noqa: E402

PIECE = 64 << 10
SIZE = 16 * PIECE + 12345  # the last piece is short
DAMAGED_PIECE = 5


class ProxySendfileTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        root = self.path("files")
        self.payload = os.urandom(SIZE)
        self.digest = zflytest.write_blob(root, self.payload)
        self.origin = zflytest.Origin(root, self.path("origin.log"))
        self.origin_port = self.origin.port
        self.node, self.port = self.start_proxy_node(
            fetcher="piece_length_min = 64K\npiece_length_max = 64K\n")
        self.url = f"http://127.0.0.1:{self.origin_port}/v2/test/blobs/{self.digest}"
        self.host = f"127.0.0.1:{self.origin_port}"

    def tearDown(self):
        self.origin.stop()
        super().tearDown()

    def cache_blob(self):
        status, _, body, complete = proxy_get(self.port, self.url, host=self.host)
        self.assertEqual((status, complete), (200, True))
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.digest[7:])
        self.node.log.wait_for(rf"task complete task=\S+ content_length={SIZE} ")

    def sent_by_sendfile(self):
        return self.node.metric("zfly_proxy_sent_bytes_total", via="sendfile") or 0

    def test_cached_blob_is_sent_from_the_file(self):
        self.cache_blob()
        before = self.sent_by_sendfile()
        status, headers, body, complete = proxy_get(self.port, self.url, host=self.host)
        self.assertEqual((status, complete), (200, True))
        self.assertEqual(headers["docker-content-digest"], self.digest)
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.digest[7:])
        self.assertEqual(self.sent_by_sendfile() - before, SIZE)

        # a range across piece boundaries: only its bytes, also from the file
        first, last = PIECE - 10, 3 * PIECE + 9
        before = self.sent_by_sendfile()
        status, headers, body, complete = proxy_get(
            self.port, self.url, f"Range: bytes={first}-{last}\r\n", host=self.host)
        self.assertEqual((status, complete), (206, True))
        self.assertEqual(headers["content-range"], f"bytes {first}-{last}/{SIZE}")
        self.assertEqual(body, self.payload[first:last + 1])
        self.assertEqual(self.sent_by_sendfile() - before, last - first + 1)

        # a range past the end: 416 with the length, answered from the task's status alone
        status, headers, body, complete = proxy_get(
            self.port, self.url, f"Range: bytes={SIZE}-\r\n", host=self.host)
        self.assertEqual((status, complete, body), (416, True, b""))
        self.assertEqual(headers["content-range"], f"bytes */{SIZE}")

    def test_remote_storage_falls_back_to_the_bus(self):
        keys = {}
        allow = self.path("allow")
        os.makedirs(allow)
        for name in ("store", "edge2"):
            keys[name] = zflytest.keygen(self.workdir, name)
            with open(keys[name][1]) as src, open(os.path.join(allow, name + ".pub"), "w") as dst:
                dst.write(src.read())
        store_port, proxy_port = zflytest.free_port(), zflytest.free_port()
        store = self.start("store", f"""[node]
name = store
log_level = info

[bus]
cert = {keys['store'][0]}
allow = {allow}

[storage]
dir = {self.path('store-cache')}
bind = tcp://127.0.0.1:{store_port}

[fetcher]
bind = ipc://{self.path('store-fetcher.sock')}
""")
        store.wait_ready()
        edge = self.start("edge2", f"""[node]
name = edge2
log_level = info
http = 127.0.0.1:0

[bus]
cert = {keys['edge2'][0]}
allow = {allow}

[proxy]
listen = 127.0.0.1:{proxy_port}
fetcher = fetcher@store
storage = storage@store

[endpoints]
fetcher@store = ipc://{self.path('store-fetcher.sock')}
storage@store = tcp://127.0.0.1:{store_port} cert={keys['store'][1]}
""")
        edge.wait_ready()
        edge.log.wait_for(r"proxy: started listen=")
        for _ in range(2):  # the second request goes straight to piece.read
            status, _, body, complete = proxy_get(proxy_port, self.url, host=self.host)
            self.assertEqual((status, complete), (200, True))
            self.assertEqual(hashlib.sha256(body).hexdigest(), self.digest[7:])
        edge.log.wait_for(r"proxy: p2p: storage storage@store does not locate pieces .*forbidden")
        self.assertEqual(len([line for line in edge.log.received()
                              if "does not locate pieces" in line]), 1)
        self.assertEqual(edge.metric("zfly_proxy_sent_bytes_total", via="sendfile"), 0)
        self.assertGreater(edge.metric("zfly_proxy_sent_bytes_total", via="send"), 2 * SIZE)

    def test_damaged_piece_is_fetched_again(self):
        self.cache_blob()
        (data_file,) = glob.glob(self.path("edge-cache", "tasks", "*", "*", "data"))
        with open(data_file, "r+b") as handle:
            handle.seek(DAMAGED_PIECE * PIECE + 100)
            handle.write(b"\xff" * 16)
        path = f"/v2/test/blobs/{self.digest}"
        requests_before, bytes_before = self.origin.path_stats(path)

        status, headers, body, complete = proxy_get(self.port, self.url, host=self.host)
        self.assertEqual((status, complete), (200, True))
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.digest[7:])
        self.node.log.wait_for(rf"task reader: piece {DAMAGED_PIECE} of task=\S+: .*corrupt.*"
                               "asking the fetcher again")
        # the origin sent the damaged piece again, and not the whole blob
        requests_after, bytes_after = self.origin.path_stats(path)
        self.assertGreater(requests_after, requests_before)
        self.assertLessEqual(bytes_after - bytes_before, 2 * PIECE)


if __name__ == "__main__":
    zflytest.main()
