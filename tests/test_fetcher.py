#!/usr/bin/python3
"""The piece fetcher back to source: a real zfly with [storage] and [fetcher], and
tests/origin.py serving one random content under several names. Checks the bytes storage ends up with and their digest, the origin's request
count, and the error a user sees: ranges, an origin ignoring Range, 404, a digest mismatch, a
second fetch of a complete task, and two concurrent fetches sharing one download."""
import hashlib
import os
import time

import zflytest
from zflytest import ZflyTestCase

CONTENT = os.urandom(3 * 1024 * 1024 + 12345)  # not a multiple of any piece length
CONTENT_DIGEST = "sha256:" + hashlib.sha256(CONTENT).hexdigest()
PIECE_MIN = 64 * 1024


HALF = len(CONTENT) // 2
# Request paths on tests/origin.py: one content under several names, each with its faults.
BLOB_PATH = f"/v2/lib/blobs/{CONTENT_DIGEST}"
FLAKY_PATH = "/fail-ranges/2/flaky"  # two piece requests answered 503, the probe served
HALF_PATH = f"/missing-from/{HALF}/healed/half"  # 404 past HALF until ROOT/healed exists
FILES = ("file", "file2", "file3", "flaky", "half", "target", BLOB_PATH.lstrip("/"))


class FetcherTest(ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.origin = zflytest.Origin(self.path("origin"), self.path("origin.log"),
                                      files={name: CONTENT for name in FILES})
        self.fetcher_endpoint = "ipc://" + self.path("fetcher.sock")
        self.storage_endpoint = "ipc://" + self.path("storage.sock")
        self.node = self.start_node()
        self.connect()

    def start_node(self, name="a"):
        node = self.start(name, f"""[node]
name = a
http = 127.0.0.1:0
[storage]
dir = {self.path("cache")}
bind = {self.storage_endpoint}
[upstream]
public = 127.0.0.1
[fetcher]
bind = {self.fetcher_endpoint}
piece_length_min = 64K
piece_length_max = 1M
piece_count_target = 16
retry_backoff = 50ms
retries = 2
""")
        node.wait_ready()
        return node

    def tearDown(self):
        self.disconnect()
        self.origin.stop()
        super().tearDown()

    def connect(self):
        """Bus clients to the node's fetcher and storage."""
        self.fetcher = zflytest.BusClient(self.fetcher_endpoint, to="fetcher")
        self.storage = zflytest.BusClient(self.storage_endpoint, to="storage")

    def disconnect(self):
        self.fetcher.close()
        self.storage.close()

    def fetch(self, url, **fields):
        reply, _ = self.fetcher.request("task.fetch", {"url": url, **fields})
        self.assertEqual(reply["type"], "task.status", reply)
        return reply["body"]

    def wait_finished(self, task_id, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply, _ = self.fetcher.request("task.query", {"task_id": task_id})
            self.assertEqual(reply["type"], "task.status", reply)
            if reply["body"]["state"] != "running":
                return reply["body"]
            time.sleep(0.05)  # polling a status, not synchronising on time
        self.fail(f"task {task_id} still running after {timeout}s")

    def stored_content(self, task_id):
        reply, _ = self.storage.request("storage.stat", {"task_id": task_id})
        self.assertEqual(reply["type"], "storage.task", reply)
        self.assertEqual(reply["body"]["state"], "complete")
        data = b""
        for piece in range(reply["body"]["piece_count"]):
            answer, raw = self.storage.request("piece.read", {"task_id": task_id, "piece": piece})
            self.assertEqual(answer["type"], "piece.data", answer)
            data += raw[0]
        return data

    def assert_fetched(self, url, path, **fields):
        status = self.wait_finished(self.fetch(url, **fields)["task_id"])
        self.assertEqual(status["state"], "complete", status)
        self.assertEqual(status["content_length"], len(CONTENT))
        data = self.stored_content(status["task_id"])
        self.assertEqual(hashlib.sha256(data).hexdigest(), CONTENT_DIGEST[7:])
        self.assertEqual(data, CONTENT)
        return status

    def test_ranges_give_exact_bytes(self):
        status = self.assert_fetched(self.origin.url("/file"), "/file")
        self.assertEqual(status["piece_length"], 256 * 1024)
        # one probe plus one request per piece, nothing more
        self.assertEqual(self.origin.count("/file"), 1 + status["piece_count"])
        self.assertEqual(self.node.metric("zfly_fetcher_source_requests_total", actor="fetcher",
                                          status="206"), 1 + status["piece_count"])

    def test_digest_verified_and_second_fetch_needs_no_origin(self):
        path = BLOB_PATH
        self.assert_fetched(self.origin.url(path), path)
        before = self.origin.count(path)
        # another mirror, same digest: same task, complete at once
        status = self.fetch(self.origin.url("/mirror" + path))
        self.assertEqual(status["state"], "complete", status)
        self.assertEqual(self.origin.count(path), before)
        self.assertEqual(self.origin.count("/mirror" + path), 0)

    def test_origin_ignoring_range_is_read_as_one_stream(self):
        status = self.assert_fetched(self.origin.url("/ignore-range/file"), "/ignore-range/file",
                                     digest=CONTENT_DIGEST)
        self.assertEqual(status["bytes_from_source"] >= len(CONTENT), True)
        # the probe (aborted at its 200) and one stream
        self.assertEqual(self.origin.count("/ignore-range/file"), 2)

    def test_not_found_fails_with_source_error(self):
        status = self.wait_finished(self.fetch(self.origin.url("/missing"))["task_id"])
        self.assertEqual(status["state"], "failed")
        self.assertEqual(status["error_code"], "source")
        self.assertIn("HTTP 404", status["error_message"])
        self.assertIn("/missing", status["error_message"])
        self.assertEqual(self.origin.count("/missing"), 1)  # 404 is final: no retry

    def test_digest_mismatch_fails_and_leaves_nothing(self):
        wrong = "sha256:" + "0" * 64
        status = self.wait_finished(self.fetch(self.origin.url("/file2"),
                                               digest=wrong)["task_id"])
        self.assertEqual(status["state"], "failed", status)
        self.assertEqual(status["error_code"], "digest")
        self.assertIn(wrong, status["error_message"])
        self.assertIn(CONTENT_DIGEST, status["error_message"])
        reply, _ = self.storage.request("storage.stat", {"task_id": status["task_id"]})
        self.assertEqual(reply["type"], "error", reply)
        self.assertEqual(reply["body"]["code"], "not_found")

    def test_concurrent_fetches_share_one_download(self):
        url = self.origin.url("/file3")
        first = self.fetch(url)
        second = self.fetch(url + "?X-Amz-Signature=abc&X-Amz-Date=1")
        self.assertEqual(first["task_id"], second["task_id"])
        status = self.wait_finished(first["task_id"])
        self.assertEqual(status["state"], "complete", status)
        self.assertEqual(self.origin.count("/file3"), 1 + status["piece_count"])

    def test_bad_requests_are_refused(self):
        reply, _ = self.fetcher.request("task.fetch", {"url": "ftp://example/x"})
        self.assertEqual(reply["type"], "error")
        reply, _ = self.fetcher.request("task.fetch", {
            "url": self.origin.url("/file"),
            "headers": [{"name": "X-A", "value": "1\r\nHost: evil"}]})
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply["body"]["field"], "headers")

    def test_server_errors_are_retried(self):
        status = self.assert_fetched(self.origin.url(FLAKY_PATH), FLAKY_PATH)
        self.assertEqual(self.node.metric("zfly_fetcher_piece_retries_total", actor="fetcher"), 2)
        # the probe, every piece, and the two answered 503
        self.assertEqual(self.origin.count(FLAKY_PATH), 1 + status["piece_count"] + 2)

    def test_redirect_across_hosts_drops_authorization(self):
        # origin.py's /redirect/ goes to its second listener under another host name.
        status = self.wait_finished(self.fetch(
            self.origin.url("/redirect/target"), digest=CONTENT_DIGEST,
            headers=[{"name": "Authorization", "value": "Bearer secret"},
                     {"name": "Range", "value": "bytes=5-9"}])["task_id"])
        self.assertEqual(status["state"], "complete", status)
        records = self.origin.records()
        redirected = [r for r in records if r["path"] == "/redirect/target"]
        followed = [r for r in records if r["path"] == "/target"]
        self.assertTrue(redirected and followed, records)
        self.assertTrue(all(r["auth"] for r in redirected), redirected)
        self.assertFalse(any(r["auth"] for r in followed), followed)
        self.assertEqual({r["port"] for r in followed}, {self.origin.second_port})
        self.assertEqual(self.stored_content(status["task_id"]), CONTENT)

    def test_resume_after_restart_fetches_only_missing_pieces(self):
        url = self.origin.url(HALF_PATH)
        status = self.wait_finished(self.fetch(url, digest=CONTENT_DIGEST)["task_id"])
        self.assertEqual(status["state"], "failed", status)
        self.assertIn("HTTP 404", status["error_message"])
        self.node.stop()
        self.disconnect()  # requests queued for the old process go with the sockets
        self.connect()
        self.origin.open_gate("healed")
        self.node = self.start_node("a2")
        before = self.origin.count(HALF_PATH)
        status = self.wait_finished(self.fetch(url, digest=CONTENT_DIGEST)["task_id"])
        self.assertEqual(status["state"], "complete", status)
        # pieces finished before the restart are not downloaded again (how many finished
        # depends on which transfers were in flight when the 404 failed the first run)
        self.assertLess(self.origin.count(HALF_PATH) - before, 1 + status["piece_count"])
        self.assertLess(status["bytes_from_source"], len(CONTENT))
        self.assertEqual(self.stored_content(status["task_id"]), CONTENT)


if __name__ == "__main__":
    zflytest.main()
