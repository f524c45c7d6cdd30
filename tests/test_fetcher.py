#!/usr/bin/python3
"""The piece fetcher back to source: a real zfly with [storage] and [fetcher], and
tests/origin.py serving one random content under several names. Checks the bytes storage ends
up with and their digest, what the origin sent (its ranges cover the content once, however
many pieces each asks for; faults cost only what they force), and the error a user sees:
ranges, an origin ignoring Range, 404, a digest mismatch, a second fetch of a complete task,
two concurrent fetches sharing one download, a resume that fetches only what is missing, and a
fresh task that runs while storage opens it (a storage of the test's own that holds the
open)."""
import hashlib
import os
import time

import msgpack
import zmq

import zflytest
from zflytest import ZflyTestCase

CONTENT = os.urandom(3 * 1024 * 1024 + 12345)  # not a multiple of any piece length
CONTENT_DIGEST = "sha256:" + hashlib.sha256(CONTENT).hexdigest()
PIECE_MIN = 64 * 1024


HALF = len(CONTENT) // 2
PIECE_LENGTH = 256 * 1024  # what [fetcher] below makes of CONTENT's length
# Request paths on tests/origin.py: one content under several names, each with its faults.
BLOB_PATH = f"/v2/lib/blobs/{CONTENT_DIGEST}"
FLAKY_PATH = "/fail-ranges/2/flaky"  # two piece requests answered 503, the probe served
HALF_PATH = f"/pause-at/{HALF}/later/half"  # sends bytes up to HALF, then holds the rest
STALL_AFTER = 5 * PIECE_LENGTH + 12345  # an answer longer than this stalls in its 6th piece
STALL_PATH = f"/stall/{STALL_AFTER}/stalling"
FILES = ("file", "file2", "file3", "flaky", "half", "stalling", "target",
         BLOB_PATH.lstrip("/"))


class FetcherTest(ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.origin = zflytest.Origin(self.path("origin"), self.path("origin.log"),
                                      files={name: CONTENT for name in FILES})
        self.fetcher_endpoint = "ipc://" + self.path("fetcher.sock")
        self.storage_endpoint = "ipc://" + self.path("storage.sock")
        self.node = self.start_node()
        self.connect()

    def start_node(self, name="a", fetcher=""):
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
{fetcher}""")
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
        return self.wait_finished_at(self.fetcher, task_id, timeout)

    def wait_finished_at(self, fetcher, task_id, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply, _ = fetcher.request("task.query", {"task_id": task_id})
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

    def assert_one_copy(self, path):
        """The origin sent path's content once: its ranges cover it exactly once, on piece
        boundaries, and its only other byte was the probe's."""
        zflytest.assert_sent_once(self.origin.ranges(path), 0, len(CONTENT), PIECE_LENGTH)
        self.assertEqual(self.origin.path_stats(path)[1], len(CONTENT) + 1)

    def test_ranges_give_exact_bytes(self):
        status = self.assert_fetched(self.origin.url("/file"), "/file")
        self.assertEqual(status["piece_length"], PIECE_LENGTH)
        self.assertEqual(status["bytes_from_source"], len(CONTENT) + 1)  # the probe's byte
        self.assert_one_copy("/file")
        # every request was answered 206, and the fetcher counted each one
        self.assertEqual(self.node.metric("zfly_fetcher_source_requests_total", actor="fetcher",
                                          status="206"), self.origin.count("/file"))

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
        self.assert_one_copy("/file3")

    def test_bad_requests_are_refused(self):
        reply, _ = self.fetcher.request("task.fetch", {"url": "ftp://example/x"})
        self.assertEqual(reply["type"], "error")
        reply, _ = self.fetcher.request("task.fetch", {
            "url": self.origin.url("/file"),
            "headers": [{"name": "X-A", "value": "1\r\nHost: evil"}]})
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply["body"]["field"], "headers")

    def test_server_errors_are_retried(self):
        self.assert_fetched(self.origin.url(FLAKY_PATH), FLAKY_PATH)
        self.assertEqual(self.node.metric("zfly_fetcher_piece_retries_total", actor="fetcher"), 2)
        # the two ranges answered 503 were asked again, and the content still came once
        ranges = self.origin.ranges(FLAKY_PATH)
        self.assertEqual([r[2] for r in ranges].count(503), 2, ranges)
        zflytest.assert_sent_once(ranges, 0, len(CONTENT), PIECE_LENGTH)
        self.assertEqual(self.node.metric("zfly_fetcher_source_requests_total", actor="fetcher",
                                          status="503"), 2)

    def test_a_cut_range_keeps_the_pieces_it_delivered(self):
        # An answer longer than STALL_AFTER stalls inside its sixth piece and is given up
        # after stall_timeout (curl averages the rate over a few seconds: this takes about
        # 7 s). What it delivered whole stays; only the rest is asked again, from the piece
        # it was cut in.
        self.node.stop()
        self.disconnect()
        self.connect()
        self.node = self.start_node("a2", fetcher="stall_timeout = 1s\n")
        self.assert_fetched(self.origin.url(STALL_PATH), STALL_PATH)
        delivered, forced = [], 0
        for first, last, status, sent in self.origin.ranges(STALL_PATH):
            self.assertEqual(status, 206)
            end = first + sent
            if end <= last:  # cut: the bytes of its last piece were sent in vain
                forced += end % PIECE_LENGTH
                end -= end % PIECE_LENGTH
            delivered.append((first, last, status, end - first))
        self.assertGreater(forced, 0, "no range was cut")
        zflytest.assert_sent_once(delivered, 0, len(CONTENT), PIECE_LENGTH)
        self.assertEqual(self.origin.path_stats(STALL_PATH)[1], len(CONTENT) + 1 + forced)
        self.assertGreater(self.node.metric("zfly_fetcher_piece_retries_total", actor="fetcher"),
                           0)

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
        # The origin sends the pieces before HALF and holds the rest: the node stops with
        # those stored. Restarted, it fetches the task (named by its digest) from another
        # URL of the same content, and the origin sends only the pieces it did not store.
        stored = HALF // PIECE_LENGTH
        task_id = self.fetch(self.origin.url(HALF_PATH), digest=CONTENT_DIGEST)["task_id"]
        deadline = time.monotonic() + 30
        while self.fetcher.request("task.query", {"task_id": task_id})[0]["body"][
                "finished_count"] < stored:
            self.assertLess(time.monotonic(), deadline, "the pieces before HALF never came")
            time.sleep(0.05)  # polling a status, not synchronising on time
        self.node.stop()
        self.origin.open_gate("later")  # the held answer ends (its client is gone)
        self.disconnect()  # requests queued for the old process go with the sockets
        self.connect()
        self.node = self.start_node("a2")
        status = self.wait_finished(self.fetch(self.origin.url("/half"),
                                               digest=CONTENT_DIGEST)["task_id"])
        self.assertEqual(status["state"], "complete", status)
        self.assertEqual(status["task_id"], task_id)
        self.assertEqual(self.stored_content(task_id), CONTENT)
        # only what was not stored came again, once, and the probe's byte
        zflytest.assert_sent_once(self.origin.ranges("/half"), stored * PIECE_LENGTH,
                                  len(CONTENT), PIECE_LENGTH)
        self.assertEqual(status["bytes_from_source"], len(CONTENT) - stored * PIECE_LENGTH + 1)

    def test_fresh_task_runs_while_storage_opens_it(self):
        """A task storage holds nothing of does not wait for storage's answer to storage.open:
        the origin's first bytes answer a piece.peek while the open is held (the first byte of
        a cold blob, docs/architecture.md), and the first piece's bytes stay to answer peeks
        until storage wrote it. Its piece.write requests reach storage after the open, and an
        open that fails fails the task. Storage is a ROUTER of the test's own,
        which holds the open."""
        endpoint = "ipc://" + self.path("held-storage.sock")
        context = zmq.Context()
        storage = context.socket(zmq.ROUTER)
        storage.setsockopt(zmq.LINGER, 0)
        storage.bind(endpoint)
        fetcher_endpoint = "ipc://" + self.path("fetcher-b.sock")
        fetcher = None
        try:
            self.start("b", f"""[node]
name = b
http = 127.0.0.1:0
[endpoints]
heldstore = {endpoint}
[upstream]
public = 127.0.0.1
[fetcher]
bind = {fetcher_endpoint}
storage = heldstore
piece_length_min = 64K
piece_length_max = 1M
piece_count_target = 16
""").wait_ready()
            fetcher = zflytest.BusClient(fetcher_endpoint, to="fetcher")
            received = []  # (type, envelope, identity) of every request storage got, in order

            def serve(wanted, piece=None):
                """Takes storage's requests until one of type wanted (for piece) came
                (storage.stat is answered "not found", the rest held); returns it."""
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if not storage.poll(100):
                        continue
                    identity, frame, *_ = storage.recv_multipart()
                    request = msgpack.unpackb(frame, raw=False)
                    received.append((request["type"], request, identity))
                    if request["type"] == "storage.stat":
                        storage.send_multipart([identity, msgpack.packb({
                            "type": "error", "v": 1, "id": 1, "re": request["id"],
                            "from": "heldstore", "to": request["from"],
                            "body": {"code": "not_found", "message": "no such task"}})])
                    if request["type"] == wanted and piece in (None, request["body"].get("piece")):
                        return request, identity
                self.fail(f"storage got no {wanted}: {[kind for kind, *_ in received]}")

            fetch_id = fetcher.send("task.fetch", {"url": self.origin.url("/file")})
            serve("storage.stat")
            task_id = fetcher.receive(fetch_id)[0]["body"]["task_id"]
            opened, identity = serve("storage.open")
            peek, raw = fetcher.request("piece.peek", {"task_id": task_id, "piece": 0, "from": 0,
                                                       "wait_ms": 3000})
            self.assertEqual(peek["type"], "piece.partial", peek)
            self.assertGreater(peek["body"]["size"], 0, "no byte before storage.open's answer")
            self.assertEqual(raw[0], CONTENT[:peek["body"]["size"]])
            serve("piece.write", 0)  # piece 0 filled: on its way to storage, after the open
            kinds = [kind for kind, *_ in received]
            self.assertLess(kinds.index("storage.open"), kinds.index("piece.write"), kinds)
            # Filled and not written yet: a reader's peek still gets its bytes from memory.
            peek, raw = fetcher.request("piece.peek", {"task_id": task_id, "piece": 0, "from": 0,
                                                       "wait_ms": 3000})
            self.assertEqual(peek["body"]["size"], PIECE_LENGTH, peek)
            self.assertTrue(peek["body"]["complete"], peek)
            self.assertEqual(raw[0], CONTENT[:PIECE_LENGTH])
            storage.send_multipart([identity, msgpack.packb({
                "type": "error", "v": 1, "id": 2, "re": opened["id"], "from": "heldstore",
                "to": opened["from"], "body": {"code": "io", "message": "cannot create task"}})])
            status = self.wait_finished_at(fetcher, task_id)
            self.assertEqual(status["state"], "failed", status)
            self.assertEqual(status["error_code"], "storage", status)
            self.assertIn("storage.open", status["error_message"])
        finally:
            if fetcher:
                fetcher.close()
            storage.close()
            context.term()


if __name__ == "__main__":
    zflytest.main()
