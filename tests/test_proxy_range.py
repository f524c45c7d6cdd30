"""Range through the P2P route while the content is still downloading.

tests/origin.py serves a 4 MiB file slowly (/rate/: about 256 KiB/s per stream, so the
fetcher's download takes seconds) under a blob-like path (/v2/test/blobs/sha256:DIGEST), so
the proxy, used as a forward proxy, sends it P2P by its default rule; pieces of 64 KiB. A client asks for a range early in the file: it gets
206, the exact Content-Range and the right bytes as soon as the origin sent them (the fetcher
passes them on while it fills the pieces: piece.peek), while the origin has not yet sent the
whole file (its /_stats, read right after the
answer, counts fewer bytes than the file: the task cannot be complete). A second range at the
end of the file waits for its pieces, and its last byte for the task's completion (the content
digest checked), and is right too; the task completes once.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import zflytest  # noqa: E402

SIZE = 4 << 20
RATE = 256 << 10


class ProxyRangeTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.root = self.path("files")
        os.makedirs(self.root)
        self.payload = os.urandom(SIZE)
        self.digest = zflytest.write_blob(self.root, self.payload)
        self.origin = zflytest.Origin(self.root, self.path("origin.log"))
        self.origin_port = self.origin.port
        self.node, self.port = self.start_proxy_node(
            fetcher="piece_length_min = 64K\npiece_length_max = 64K\nsource_concurrency = 2\n")

    def tearDown(self):
        self.origin.stop()
        super().tearDown()

    def get_range(self, first, last):
        url = (f"http://127.0.0.1:{self.origin_port}/rate/{RATE}/v2/test/blobs/"
               f"{self.digest}")
        status, headers, body, _ = zflytest.proxy_get(self.port, url,
                                                      f"Range: bytes={first}-{last}\r\n")
        return status, headers, body

    def test_range_while_downloading(self):
        first, last = 100000, 199999  # pieces 1..3 of 64
        status, headers, body = self.get_range(first, last)
        sent = self.origin.stats()["bytes_sent"]
        self.assertEqual(status, 206, (headers, body[:200]))
        self.assertEqual(headers["content-range"], f"bytes {first}-{last}/{SIZE}")
        self.assertEqual(int(headers["content-length"]), last - first + 1)
        self.assertEqual(body, self.payload[first:last + 1])
        # answered from the pieces that cover it, before the origin sent the whole file
        self.assertLess(sent, SIZE, "the origin had sent everything: the task was complete")
        self.assertNotIn("task complete", self.node.log.text())
        self.node.log.wait_for(r"route=p2p status=206 ")

        # the end of the file: served once its pieces arrive; one task, completed once
        first, last = SIZE - 1000, SIZE - 1
        status, headers, body = self.get_range(first, last)
        self.assertEqual(status, 206)
        self.assertEqual(headers["content-range"], f"bytes {first}-{last}/{SIZE}")
        self.assertEqual(body, self.payload[first:])
        self.node.log.wait_for(rf"task complete task=\S+ content_length={SIZE} ", timeout=30)
        self.assertEqual(len([line for line in self.node.log.received()
                              if "fetcher: task started" in line]), 1)


if __name__ == "__main__":
    zflytest.main()
