"""Files (not registry blobs) through the forward proxy, P2P by a rule.

A user who writes `rule = \\.bin$ p2p` sends large files through the swarm, as zfly-get does:
the URL names no content digest, so the task is keyed by the URL itself (volatile query
parameters removed, zf_task_id.h). Before, the proxy took the P2P route only for URLs that
named a blob digest, and sent such a file direct, silently, whatever the rule said.

tests/origin.py serves a 2 MiB file and pieces are 64 KiB. A GET through the proxy gets 200,
every byte exact and no Docker-Content-Digest (there is none); a second GET and a Range are
answered from the cache, so the origin sent one copy in all. A private file (/auth/TOKEN/…,
401 without the bearer token) goes to each client only once the origin accepted that client's
own credentials: no credentials and a wrong token get the origin's 401, the right token the
file, and a client without credentials is refused again once the file is cached.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import zflytest  # noqa: E402
from zflytest import proxy_get  # noqa: E402

PIECE = 64 << 10
SIZE = 32 * PIECE
TOKEN = "file-token"


class ProxyFilesTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.payload = os.urandom(SIZE)
        self.origin = zflytest.Origin(self.path("files"), self.path("origin.log"),
                                      files={"models/weights.bin": self.payload,
                                             "other/readme.txt": b"not a rule's file\n"})
        self.node, self.port = self.start_proxy_node(
            fetcher="piece_length_min = 64K\npiece_length_max = 64K\n",
            proxy="rule = \\.bin([?]|$) p2p\nrule = .* direct\n")

    def tearDown(self):
        self.origin.stop()
        super().tearDown()

    def body_bytes(self, name):
        """File bytes the origin sent (its 401 answers left out)."""
        return sum(record["bytes"] for record in self.origin.records()
                   if record["path"].endswith(name) and record["status"] in (200, 206))

    def test_file_by_rule_goes_p2p_and_is_cached(self):
        url = self.origin.url("/models/weights.bin")
        status, headers, body, complete = proxy_get(self.port, url)
        self.assertEqual(status, 200, (headers, body[:200]))
        self.assertTrue(complete)
        self.assertEqual(body, self.payload)
        self.assertNotIn("docker-content-digest", headers)
        self.node.log.wait_for(r"route=p2p status=200 bytes=%d " % SIZE)

        # Again, and a Range: from the cache, exact.
        status, _, body, _ = proxy_get(self.port, url + "?X-Amz-Signature=another")
        self.assertEqual((status, body == self.payload), (200, True))
        status, headers, body, _ = proxy_get(self.port, url, "Range: bytes=70000-70999\r\n")
        self.assertEqual(status, 206)
        self.assertEqual(headers["content-range"], f"bytes 70000-70999/{SIZE}")
        self.assertEqual(body, self.payload[70000:71000])
        self.assertLessEqual(self.body_bytes("weights.bin"), SIZE,
                             "the origin sent the file more than once")

        # What no rule sends P2P still goes direct, unchanged.
        status, _, body, _ = proxy_get(self.port, self.origin.url("/other/readme.txt"))
        self.assertEqual((status, body), (200, b"not a rule's file\n"))
        self.node.log.wait_for(r"route=direct status=200 ")

    def test_private_file_goes_only_to_clients_the_origin_accepts(self):
        url = self.origin.url(f"/auth/{TOKEN}/models/weights.bin")
        status, _, body, _ = proxy_get(self.port, url)
        self.assertEqual(status, 401, body[:200])
        status, _, body, _ = proxy_get(self.port, url, "Authorization: Bearer wrong\r\n")
        self.assertEqual(status, 401, body[:200])
        self.assertNotIn(self.payload[:4096], body)

        status, _, body, _ = proxy_get(self.port, url, f"Authorization: Bearer {TOKEN}\r\n")
        self.assertEqual(status, 200, body[:200])
        self.assertEqual(body, self.payload)
        self.node.log.wait_for(r"route=p2p status=200 bytes=%d " % SIZE)

        # Cached now: a client without the token is still refused, and gets no byte of it.
        status, _, body, _ = proxy_get(self.port, url)
        self.assertEqual(status, 401, body[:200])
        self.assertNotIn(self.payload[:4096], body)
        self.assertLessEqual(self.body_bytes("weights.bin"), SIZE)


if __name__ == "__main__":
    zflytest.main()
