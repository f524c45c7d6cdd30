#!/usr/bin/python3
"""The data plane end to end: zfly-get asks a real zfly daemon (fetcher + storage) for files
that a real HTTP origin (tests/origin.py) serves, and the bytes that land are checked against
the files' SHA-256, the origin's own log says what it sent, and exit codes and error text are
the ones a user relies on.

Scenarios: a 300 MB file arrives exactly and the second copy comes from the cache; two signed
URLs of one blob are one task; kill -9 mid-download resumes from the finished pieces; a piece
damaged on disk is refused and fetched again; zfly-get copies pieces from the cache file, or
reads them over the bus when it cannot see that file; a digest mismatch fails cleanly and leaves
nothing in the cache; GC evicts least-recently-used tasks but not one being read; a full disk
(a task too large refused, room made, a failed download's space freed); node B gets
a task entirely from node A's storage over CURVE; origin errors and an origin ignoring Range;
zfly-get's own errors (no daemon, bad arguments)."""
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
import unittest

import zflytest
from zflytest import BusClient, ZflyTestCase, free_port, keygen, sha256_file

ZFLY_GET = os.path.join(zflytest.BUILD_DIR, "zfly-get")
MiB = 1 << 20
PIECE = 1 * MiB  # piece length the tests configure, so damage and progress are per MiB


def make_file(path, size, chunk=4 * MiB):
    """Writes size random bytes; returns their SHA-256 hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            digest.update(block)
            handle.write(block)
            left -= len(block)
    return digest.hexdigest()


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def has_ipv6_loopback():
    try:
        with open("/proc/net/if_inet6") as f:
            return any(line.split()[0] == "0" * 31 + "1" for line in f)
    except OSError:
        return False


class DataplaneTest(ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.files = self.path("files")
        os.makedirs(self.files)
        self.origin = zflytest.Origin(self.files, self.path("origin.log"))
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()
        self.origin.stop()
        super().tearDown()

    # --- helpers ------------------------------------------------------------------------------

    def node_ini(self, name, storage="", fetcher="", bus="", endpoints="", storage_bind=None,
                 piece_max=PIECE):
        storage_bind = storage_bind or "ipc://" + self.path(f"{name}-storage.sock")
        return (f"[node]\nname = {name}\nlog_level = info\nhttp = 127.0.0.1:0\n"
                + (f"[bus]\n{bus}" if bus else "")
                + (f"[endpoints]\n{endpoints}" if endpoints else "")
                + "[upstream]\nconnect_timeout = 2s\npublic = 127.0.0.1\n"
                + f"[storage]\ndir = {self.path(name + '-cache')}\nbind = {storage_bind}\n"
                + storage
                + f"[fetcher]\nbind = ipc://{self.path(name + '-fetcher.sock')}\n"
                + f"events_bind = ipc://{self.path(name + '-fetcher-events.sock')}\n"
                + f"piece_length_min = {PIECE}\npiece_length_max = {piece_max}\n"
                + "stall_timeout = 3s\nretries = 2\n"
                + "retry_backoff = 100ms\n" + fetcher)

    def start_node(self, name="a", **sections):
        node = self.start(name, self.node_ini(name, **sections))
        node.wait_ready()
        return node

    def fetcher_client(self, name="a"):
        client = BusClient("ipc://" + self.path(f"{name}-fetcher.sock"), to="fetcher")
        self.clients.append(client)
        return client

    def storage_client(self, name="a", sender=None):
        client = BusClient("ipc://" + self.path(f"{name}-storage.sock"),
                           sender=sender or f"reader@{name}", to="storage")
        self.clients.append(client)
        return client

    def get(self, url, output, *args, node="a", timeout=120):
        """Runs zfly-get to the end: (exit code, stderr text)."""
        command = [ZFLY_GET, url, "-O", output, "-c", self.path(f"{node}.ini"), *args]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as expired:
            raise AssertionError(f"zfly-get did not end within {timeout}s: {command}\n"
                                 f"{expired.stderr}")
        for marker in zflytest.SANITIZER_MARKERS:
            self.assertNotIn(marker, result.stderr)
        return result.returncode, result.stderr

    def get_ok(self, url, output, expected_sha, *args, **kwargs):
        code, text = self.get(url, output, *args, **kwargs)
        self.assertEqual(code, 0, text)
        self.assertEqual(sha256_file(output), expected_sha, text)
        self.assertFalse(os.path.exists(output + ".part"))
        return text

    @staticmethod
    def task_id(text):
        match = re.search(r"zfly-get: task ([0-9a-f]{64})", text)
        assert match, f"no task line in:\n{text}"
        return match.group(1)

    def task_dir(self, task_id, name="a"):
        return self.path(f"{name}-cache", "tasks", task_id[:2], task_id)

    def add_file(self, name, size):
        return make_file(os.path.join(self.files, name), size)

    def start_getter(self, url, output, *args):
        """zfly-get in the background: (process, its stderr as a LineReader, task id)."""
        getter = subprocess.Popen([ZFLY_GET, url, "-O", output, "-c", self.path("a.ini"),
                                   "--progress", "lines", *args], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        log = zflytest.LineReader(getter.stderr, echo_prefix="[zfly-get] ")
        return getter, log, self.task_id(log.wait_for(r"zfly-get: task "))

    def end_getter(self, getter, log, timeout=60):
        """Waits for a background zfly-get: (exit code, stderr text)."""
        try:
            code = getter.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            getter.kill()
            raise AssertionError(f"zfly-get did not end within {timeout}s")
        log.wait_closed()
        getter.stderr.close()
        for marker in zflytest.SANITIZER_MARKERS:
            self.assertNotIn(marker, log.text())
        return code, log.text()

    def wait_until(self, what, predicate, timeout=30.0, interval=0.05):
        """Polls predicate until it returns something true; fails on the deadline."""
        return zflytest.wait_until_true(predicate, what, timeout=timeout, interval=interval)

    # --- scenarios ----------------------------------------------------------------------------

    def test_large_file_then_cache_hit(self):
        size = 300 * 1000 * 1000 + 12345  # not a multiple of the piece length
        sha = self.add_file("big.bin", size)
        self.start_node(piece_max=16 * MiB)
        url = self.origin.url("big.bin")
        text = self.get_ok(url, self.path("out1"), sha, "--digest", "sha256:" + sha,
                           timeout=300)
        self.assertEqual(os.path.getsize(self.path("out1")), size)
        self.assertRegex(text, r"zfly-get: saved .*out1")
        requests, sent = self.origin.path_stats("/big.bin")
        self.assertGreater(requests, 0)
        self.assertGreaterEqual(sent, size)
        self.assertLess(sent, size * 1.05, "the origin sent much more than one copy")

        # The same command again is served from the cache: no new request reaches the origin.
        log_length = len(self.origin.records())
        self.get_ok(url, self.path("out2"), sha, "--digest", "sha256:" + sha, timeout=300)
        self.assertEqual(self.origin.path_stats("/big.bin"), (requests, sent))
        self.assertEqual(len(self.origin.records()), log_length)

    def test_signed_urls_and_mirrors_are_one_task(self):
        sha = self.add_file("blob", 6 * MiB)
        # zfly-get reads as a client of this node: other nodes' upload limit must not slow it
        # (at 16 KiB/s these reads would take minutes).
        self.start_node(storage="upload_rate = 16K\nupload_concurrency = 1\n")
        first = self.get_ok(self.origin.url("blob?X-Amz-Date=20260101T000000Z"
                                            "&X-Amz-Signature=aaaa&X-Amz-Expires=60"),
                            self.path("out1"), sha)
        requests = self.origin.path_stats("/blob")[0]
        self.assertGreater(requests, 0)
        second = self.get_ok(self.origin.url("blob?X-Amz-Date=20260101T010000Z"
                                             "&X-Amz-Signature=bbbb&X-Amz-Expires=60"),
                             self.path("out2"), sha)
        self.assertEqual(self.task_id(first), self.task_id(second))
        self.assertEqual(self.origin.path_stats("/blob")[0], requests)
        # A query parameter that is not volatile names other content: another task.
        third = self.get_ok(self.origin.url("blob?version=2"), self.path("out3"), sha)
        self.assertNotEqual(self.task_id(third), self.task_id(first))
        self.assertGreater(self.origin.path_stats("/blob")[0], requests)

        # One blob behind two mirror paths, named by its digest: one task.
        shutil.copy(os.path.join(self.files, "blob"), os.path.join(self.files, "mirror-copy"))
        digest = "sha256:" + sha
        one = self.get_ok(self.origin.url("blob"), self.path("out4"), sha, "--digest", digest)
        two = self.get_ok(self.origin.url("mirror-copy"), self.path("out5"), sha, "--digest",
                          digest)
        self.assertEqual(self.task_id(one), self.task_id(two))
        self.assertEqual(self.origin.path_stats("/mirror-copy")[0], 0)

    def test_kill_9_mid_download_resumes(self):
        size = 48 * MiB
        sha = self.add_file("resume.bin", size)
        # Two range requests at about 8 MB/s each: the download takes seconds, so it can be
        # caught halfway by watching the fetcher's own counters.
        node = self.start_node(fetcher="source_concurrency = 2\n")
        path = "/rate/8000000/resume.bin"
        url = self.origin.url(path)
        output = self.path("out")
        getter, getter_log, task_id = self.start_getter(url, output)
        fetcher = self.fetcher_client()

        def halfway():
            reply, _ = fetcher.request("task.query", {"task_id": task_id})
            body = reply["body"]
            self.assertEqual(reply["type"], "task.status", reply)
            self.assertEqual(body["state"], "running", body)
            return body if body["finished_count"] >= body["piece_count"] * 2 // 5 else None

        status = self.wait_until("the download is 40% done", halfway, timeout=60)
        self.assertLess(status["finished_count"], status["piece_count"])
        node.process.kill()  # SIGKILL: no chance to tidy up
        node.process.wait(timeout=10)

        # zfly-get notices, says so, and leaves no file behind.
        code, text = self.end_getter(getter, getter_log)
        self.assertEqual(code, 3, text)
        self.assertIn("stopped answering", text)
        self.assertFalse(os.path.exists(output))
        self.assertFalse(os.path.exists(output + ".part"))

        # The origin's connections died with the daemon; what it sent so far is final.
        self.origin.records()  # returns once every connection has ended
        _, sent_before = self.origin.path_stats(path)

        restarted = self.start("a-restarted", self.node_ini("a"))
        restarted.wait_ready()
        self.get_ok(url, output, sha)
        _, sent_total = self.origin.path_stats(path)
        sent_after = sent_total - sent_before
        finished_bytes = status["finished_count"] * PIECE
        # Only what was missing came again: at most the unfinished part plus a few pieces that
        # were in flight at the kill or finished too shortly before it to be claimed (records
        # are written every 100 ms: 1.6 pieces at this rate), far from a second copy.
        self.assertLessEqual(sent_after, size - finished_bytes + 4 * PIECE,
                             f"sent before kill {sent_before}, after restart {sent_after}")
        self.assertLess(sent_total, 1.7 * size)

    def test_zfly_get_streams_pieces_while_the_task_runs(self):
        size = 16 * MiB + 4321
        sha = self.add_file("stream.bin", size)
        # One range request at a time at about 4 MB/s: the download takes ~4 s, pieces of
        # 1 MiB finish one by one, and zfly-get should append each soon after it is stored.
        self.start_node(fetcher="source_concurrency = 1\n")
        url = self.origin.url("/rate/4000000/stream.bin")
        output = self.path("out")
        # --copy: a hard link of the cache file (the default) is made only at the end.
        getter, log, task_id = self.start_getter(url, output, "--digest", "sha256:" + sha,
                                                 "--copy")
        fetcher = self.fetcher_client()

        def part_size():
            try:
                return os.path.getsize(output + ".part")
            except FileNotFoundError:
                return 0

        def grown_while_running():
            # The size first, the state after: "running" then proves the file already held
            # that much before the task was complete.
            grown = part_size()
            if grown < PIECE:
                return None
            reply, _ = fetcher.request("task.query", {"task_id": task_id})
            self.assertEqual(reply["type"], "task.status", reply)
            return (grown, reply["body"])

        grown, status = self.wait_until("PATH.part holds a piece", grown_while_running,
                                        timeout=30)
        self.assertEqual(status["state"], "running", status)
        self.assertLess(status["finished_count"], status["piece_count"], status)
        self.assertFalse(os.path.exists(output), "PATH appeared before the task was complete")
        self.assertEqual(grown % PIECE, 0, "only whole pieces are appended")

        code, text = self.end_getter(getter, log)
        self.assertEqual(code, 0, text)
        self.assertEqual(sha256_file(output), sha)
        self.assertFalse(os.path.exists(output + ".part"))
        self.assertRegex(text, r"zfly-get: saved .*out")
        self.assertLess(self.origin.path_stats("/rate/4000000/stream.bin")[1], size * 1.05)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"),
                         "needs root and unshare(1) for a mount namespace")
    def test_zfly_get_reads_over_the_bus_when_the_cache_file_is_out_of_sight(self):
        # zfly-get copies pieces from the cache file that storage names, when it can open it;
        # a daemon in a container (here: a mount namespace hiding the cache directory) names
        # a path zfly-get cannot see, and the bytes then come over the bus.
        size = 5 * MiB + 77
        sha = self.add_file("hidden.bin", size)
        self.start_node()
        url = self.origin.url("hidden.bin")
        command = (f"mount -t tmpfs zfly-test {self.path('a-cache')} && exec {ZFLY_GET} {url} "
                   f"-O {self.path('out')} -c {self.path('a.ini')} --verbose")
        result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 command], capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("reading over the bus", result.stderr)
        self.assertEqual(sha256_file(self.path("out")), sha)
        self.assertFalse(os.path.exists(self.path("out.part")))

    def test_streaming_with_a_digest_mismatch_leaves_nothing(self):
        # The fetcher finds the mismatch only at the end, after zfly-get has appended pieces
        # to PATH.part: zfly-get must still exit 5 and remove it.
        self.add_file("liar-slow.bin", 6 * MiB)  # ~3 s at 2 MB/s
        self.start_node(fetcher="source_concurrency = 1\n")
        wrong = "sha256:" + hashlib.sha256(b"not this").hexdigest()
        output = self.path("out")
        getter, log, task_id = self.start_getter(
            self.origin.url("/rate/2000000/liar-slow.bin"), output, "--digest", wrong, "--copy")
        self.wait_until("PATH.part holds a piece",
                        lambda: os.path.exists(output + ".part")
                        and os.path.getsize(output + ".part") >= PIECE, timeout=30)
        code, text = self.end_getter(getter, log)
        self.assertEqual(code, 5, text)
        self.assertIn("digest mismatch", text)
        self.assertFalse(os.path.exists(output))
        self.assertFalse(os.path.exists(output + ".part"))
        self.wait_until("the task is gone from the cache",
                        lambda: not os.path.exists(self.task_dir(task_id)), timeout=10)

    def test_corrupt_piece_is_refused_and_fetched_again(self):
        size = 8 * MiB
        sha = self.add_file("fragile.bin", size)
        self.start_node()
        url = self.origin.url("fragile.bin")
        # A copy: the cache file keeps one name, so storage may write the damaged pieces
        # again (a linked one it drops instead: test_output_is_a_hard_link_of_the_cache_file).
        task_id = self.task_id(self.get_ok(url, self.path("out1"), sha, "--copy"))
        requests_before, sent_before = self.origin.path_stats("/fragile.bin")

        # Damage one byte of pieces 3 and 6 on disk, behind the daemon's back.
        data_path = os.path.join(self.task_dir(task_id), "data")
        for offset in (3 * PIECE + 12345, 6 * PIECE + 1):
            zflytest.flip_byte(data_path, offset)

        # Storage checks the piece before serving it: nobody gets the damaged bytes.
        storage = self.storage_client()
        reply, frames = storage.request("piece.read", {"task_id": task_id, "piece": 3})
        self.assertEqual(reply["type"], "error", reply)
        self.assertEqual(reply["body"]["code"], "corrupt", reply)
        self.assertEqual(frames, [])
        reply, frames = storage.request("piece.read", {"task_id": task_id, "piece": 2})
        self.assertEqual(reply["type"], "piece.data", reply)

        # zfly-get has the task completed again: piece 3 (known missing) before reading, and
        # piece 6 when storage refuses it during the read. Only those come from the origin.
        self.get_ok(url, self.path("out2"), sha)
        requests_after, sent_after = self.origin.path_stats("/fragile.bin")
        self.assertGreater(requests_after, requests_before)
        self.assertGreaterEqual(sent_after - sent_before, 2 * PIECE)
        self.assertLessEqual(sent_after - sent_before, 2 * PIECE + 16)
        ranges = [record["range"] for record in self.origin.records()[-(requests_after
                                                                         - requests_before):]]
        self.assertIn(f"bytes={3 * PIECE}-{4 * PIECE - 1}", ranges)
        self.assertIn(f"bytes={6 * PIECE}-{7 * PIECE - 1}", ranges)

    def test_output_is_a_hard_link_of_the_cache_file(self):
        # Cache and output on one filesystem, daemon and zfly-get as one user: PATH is a
        # second name of the cache file (nothing written twice), with a copy's mode.
        size = 5 * PIECE + 99
        sha = self.add_file("linked.bin", size)
        node = self.start_node()
        url = self.origin.url("linked.bin")
        first = self.path("out1")
        task_id = self.task_id(self.get_ok(url, first, sha))
        data_path = os.path.join(self.task_dir(task_id), "data")
        self.assertEqual(os.stat(first).st_ino, os.stat(data_path).st_ino)
        self.assertEqual(os.stat(first).st_nlink, 2)
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(os.stat(first).st_mode & 0o777, 0o666 & ~umask)
        # Again to the same PATH (already that file): nothing left behind.
        self.get_ok(url, first, sha)
        self.assertEqual(os.stat(first).st_nlink, 2)
        self.assertEqual(os.listdir(self.workdir).count("out1.part"), 0)

        # The user changes the file. Storage finds piece 2 changed when it is read next, and,
        # as the file has another name, drops the task instead of writing into the file.
        zflytest.flip_byte(first, 2 * PIECE + 5)
        with open(first, "rb") as handle:
            changed = handle.read()
        storage = self.storage_client()
        reply, _ = storage.request("piece.read", {"task_id": task_id, "piece": 2})
        self.assertEqual(reply["body"].get("code"), "corrupt", reply)
        node.log.wait_for(rf"storage: dropped task={task_id}")
        reply, _ = storage.request("storage.stat", {"task_id": task_id})
        self.assertEqual(reply["body"].get("code"), "not_found", reply)
        self.assertFalse(os.path.exists(self.task_dir(task_id)))

        # The next download makes a new cache file from the origin; the user's file keeps
        # the bytes the user wrote.
        requests = self.origin.path_stats("/linked.bin")[0]
        self.get_ok(url, self.path("out2"), sha)
        self.assertGreater(self.origin.path_stats("/linked.bin")[0], requests)
        with open(first, "rb") as handle:
            self.assertEqual(handle.read(), changed)
        self.assertEqual(os.stat(first).st_nlink, 1)
        # --copy: a file of its own.
        self.get_ok(url, self.path("out3"), sha, "--copy")
        self.assertEqual(os.stat(self.path("out3")).st_nlink, 1)

    def test_a_piece_lost_before_the_task_completes_is_fetched_again(self):
        # The origin holds back the last piece; meanwhile a stored piece is found damaged
        # on disk and dropped. storage.complete then counts one piece short: the fetcher
        # resumes for it instead of failing the task.
        size = 4 * PIECE
        sha = self.add_file("gated.bin", size)
        node = self.start_node()
        path = f"/pause-at/{3 * PIECE}/go/gated.bin"
        output = self.path("out")
        getter, getter_log, task_id = self.start_getter(self.origin.url(path), output)
        storage = self.storage_client()

        def three_stored():
            reply, _ = storage.request("storage.stat", {"task_id": task_id})
            return reply["type"] == "storage.task" and reply["body"]["finished_count"] == 3

        self.wait_until("the first three pieces are stored", three_stored)
        zflytest.flip_byte(os.path.join(self.task_dir(task_id), "data"), PIECE + 7)
        reply, _ = storage.request("piece.read", {"task_id": task_id, "piece": 1})
        # found damaged by this read, or (on a busy machine) by zfly-get's, which locates the
        # pieces as they land and may come to piece 1 only now: either way it is dropped
        self.assertIn(reply["body"].get("code"), ("corrupt", "not_finished"), reply)

        open(os.path.join(self.files, "go"), "w").close()  # the last piece may come now
        code, text = self.end_getter(getter, getter_log)
        self.assertEqual(code, 0, text)
        self.assertEqual(sha256_file(output), sha)
        node.log.wait_for(r"task lost a stored piece, resuming task=" + task_id[:16])
        # Piece 1 came from the origin twice, nothing else did: once in the ranges that
        # cover the file once, then on its own (and the probe's byte).
        ranges = self.origin.ranges(path)
        again = (PIECE, 2 * PIECE - 1, 206, PIECE)
        self.assertEqual(ranges[-1], again, ranges)
        zflytest.assert_sent_once(ranges[:-1], 0, size, PIECE)
        self.assertEqual(self.origin.path_stats(path)[1], size + PIECE + 1)

    def test_durable_mode_keeps_a_task_across_kill_9(self):
        # [storage] fsync = true (pieces synced before they are claimed) works end to end: the
        # download is exact, and after kill -9 the task is still complete, with no origin
        # request again. (A power cut, the case it is for, cannot be staged here.)
        size = 6 * PIECE + 333
        sha = self.add_file("durable.bin", size)
        node = self.start_node(storage="fsync = true\n")
        url = self.origin.url("durable.bin")
        self.get_ok(url, self.path("out1"), sha)
        requests = self.origin.path_stats("/durable.bin")[0]
        node.process.kill()
        node.process.wait(timeout=10)
        self.start("a-restarted", self.node_ini("a", storage="fsync = true\n")).wait_ready()
        self.get_ok(url, self.path("out2"), sha)
        self.assertEqual(self.origin.path_stats("/durable.bin")[0], requests)

    def test_digest_mismatch_fails_and_leaves_nothing(self):
        self.add_file("liar.bin", 3 * MiB + 17)
        self.start_node()
        wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
        output = self.path("out")
        code, text = self.get(self.origin.url("liar.bin"), output, "--digest", wrong)
        self.assertEqual(code, 5, text)
        self.assertIn("digest", text)
        self.assertIn(wrong[7:], text)  # the message names the expected digest
        self.assertFalse(os.path.exists(output))
        self.assertFalse(os.path.exists(output + ".part"))
        # Nothing of the task stays in the cache.
        task_id = self.task_id(text)
        self.wait_until("the task is gone from the cache",
                        lambda: not os.path.exists(self.task_dir(task_id)), timeout=10)
        storage = self.storage_client()
        reply, _ = storage.request("storage.stat", {"task_id": task_id})
        self.assertEqual((reply["type"], reply["body"].get("code")), ("error", "not_found"),
                         reply)

    def test_gc_evicts_least_recently_used_but_not_a_task_being_read(self):
        # quota 48 MiB: GC starts above 36 MiB (75%) and evicts down to 19.2 MiB (40%).
        grace_ms = 500
        storage = ("quota = 48M\nhigh_watermark = 75\nlow_watermark = 40\n"
                   f"gc_interval = 200ms\nbusy_grace = {grace_ms}ms\n")
        self.start_node(storage=storage)
        size = 8 * MiB
        shas, ids = {}, {}
        # Tasks age by storage's own clock, moved forward with storage.shift_clock instead of
        # waiting busy_grace out. The offset is absolute: a restarted storage is shifted to
        # it again, or the access times it persisted would lie in its future.
        clock = {"offset_ms": 0, "client": self.storage_client(sender="tester@a")}
        reads = {"ok": 0, "failed": [], "running": False}

        def shift_clock():
            reply, _ = clock["client"].request("storage.shift_clock",
                                               {"offset_ms": clock["offset_ms"]})
            self.assertEqual(reply["type"], "storage.clock", reply)
            self.assertEqual(reply["body"]["offset_ms"], clock["offset_ms"])

        def age_past_grace():
            """Every task is now older than busy_grace, except one the reader touches again:
            wait for a read that started after the shift (two more answers) before going on."""
            before = reads["ok"]
            clock["offset_ms"] += grace_ms + 1
            shift_clock()
            if reads["running"]:
                self.wait_until("a read of t1 after the clock moved",
                                lambda: reads["ok"] >= before + 2)

        def fetch(name, fresh=True, age=True):
            if fresh:
                shas[name] = self.add_file(name, size)
            before = self.origin.path_stats("/" + name)[0]
            text = self.get_ok(self.origin.url(name), self.path("out-" + name), shas[name])
            ids[name] = self.task_id(text)
            self.origin_requests = self.origin.path_stats("/" + name)[0] - before
            # Tasks used within busy_grace are protected: age this one out of it, so that
            # what GC does next depends on LRU order alone.
            if age:
                age_past_grace()

        for name in ("t1", "t2", "t3", "t4"):  # 32 MiB: below the high watermark
            fetch(name)
        fetch("t1", fresh=False)  # read again: now t2 is the least recently used
        self.assertEqual(self.origin_requests, 0)
        fetch("t5")  # 40 MiB > 36 MiB: evict t2, t3, t4 (LRU) down to 16 MiB
        evicted = ("t2", "t3", "t4")
        self.wait_until("GC evicted t2, t3, t4",
                        lambda: not any(os.path.exists(self.task_dir(ids[name]))
                                        for name in evicted))
        for name in ("t1", "t5"):
            self.assertTrue(os.path.exists(self.task_dir(ids[name])), name)
        self.assertLessEqual(dir_bytes(self.path("a-cache", "tasks")), 20 * MiB)
        fetch("t1", fresh=False)
        self.assertEqual(self.origin_requests, 0, "t1 should have survived GC")
        fetch("t2", fresh=False)
        self.assertGreater(self.origin_requests, 0, "t2 should have been evicted")

        # A task being read is not evicted, even when LRU order alone would take it: restart
        # with a low watermark of 1%, so GC would remove every task it may.
        for process in self.processes:
            process.stop()
        self.start("a-low", self.node_ini("a", storage=storage.replace(
            "low_watermark = 40", "low_watermark = 1")))
        self.processes[-1].wait_ready()
        clock["client"] = self.storage_client(sender="tester@a")
        shift_clock()
        # cache now: t5, t1, t2 (24 MiB). A reader keeps reading t1 (as a local actor would).
        reader = self.storage_client(sender="reader@a")
        stop = threading.Event()

        def read_loop():
            while not stop.is_set():
                reply, frames = reader.request("piece.read", {"task_id": ids["t1"], "piece": 0})
                if reply["type"] == "piece.data" and len(frames) == 1:
                    reads["ok"] += 1
                else:
                    reads["failed"].append(reply)
                stop.wait(0.05)

        thread = threading.Thread(target=read_loop, daemon=True)
        thread.start()
        reads["running"] = True
        try:
            fetch("t6")  # 32 MiB: below 36
            # 40 MiB > 36: evict everything out of grace and not being read. Not aged: the GC
            # that follows the download's last claim (up to 100 ms after its last write) would
            # meet the clock moved 501 ms before the reader's next read, when t1 looks idle too.
            fetch("t7", age=False)
            self.wait_until("GC evicted t5, t2 and t6",
                            lambda: not any(os.path.exists(self.task_dir(ids[name]))
                                            for name in ("t5", "t2", "t6")))
            self.assertTrue(os.path.exists(self.task_dir(ids["t1"])), "t1 was being read")
        finally:
            stop.set()
            thread.join(timeout=15)
            reads["running"] = False
        self.assertGreater(reads["ok"], 0)
        self.assertEqual(reads["failed"], [])
        fetch("t1", fresh=False)
        self.assertEqual(self.origin_requests, 0, "t1 should have survived GC")

    def small_cache(self, storage=""):
        """Node a with its cache on a 48 MiB tmpfs, GC's round and busy_grace an hour off (a
        task stays in use however slow the machine, until storage's clock is moved); returns
        the cache path and a function that ages every task past busy_grace."""
        cache = self.path("a-cache")
        os.makedirs(cache)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", cache], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", cache], check=False)
        grace_ms = 3_600_000
        self.start_node(storage=f"gc_interval = 1h\nbusy_grace = {grace_ms}ms\n{storage}")
        clock = self.storage_client(sender="tester@a")
        offset = [0]

        def age_past_grace():
            offset[0] += grace_ms + 1
            reply, _ = clock.request("storage.shift_clock", {"offset_ms": offset[0]})
            self.assertEqual(reply["type"], "storage.clock", reply)

        return cache, age_past_grace

    @unittest.skipIf(os.geteuid() != 0, "needs root to mount a small tmpfs for the cache")
    def test_a_full_disk_under_a_larger_quota_still_evicts(self):
        """A quota larger than the filesystem (GC measures the tasks' bytes against it, and
        sees no reason to evict): a write that meets ENOSPC evicts an unused task anyway, and
        is written again."""
        cache, age_past_grace = self.small_cache(storage="quota = 1G\n")
        sha1 = self.add_file("t1.bin", 20 * MiB)
        t1 = self.task_id(self.get_ok(self.origin.url("t1.bin"), self.path("out-t1"), sha1,
                                      "--copy"))
        age_past_grace()
        make_file(os.path.join(cache, "not-storage's"), 16 * MiB)
        sha2 = self.add_file("t2.bin", 20 * MiB)
        text = self.get_ok(self.origin.url("t2.bin"), self.path("out-t2"), sha2, "--copy")
        self.assertFalse(os.path.exists(self.task_dir(t1)), "t1 was not evicted")
        self.assertRegex(self.processes[-1].log.text(), r"write failed: .*No space left")
        self.assertNotIn("filesystem is full", text)

    @unittest.skipIf(os.geteuid() != 0, "needs root to mount a small tmpfs for the cache")
    def test_a_full_disk_makes_room_refuses_what_cannot_fit_and_stays_usable(self):
        """The cache on a 48 MiB filesystem: a task larger than it is refused before any byte
        is fetched; room for a new task is made at once by evicting unused tasks; a download
        the disk cannot hold (the rest in use, or files not storage's) fails with a clear
        error and leaves its space free, so the next download works (kept, its partial data
        held the disk full and every download after it failed until GC's next round)."""
        cache, age_past_grace = self.small_cache()
        self.add_file("huge.bin", 64 * MiB)
        code, text = self.get(self.origin.url("huge.bin"), self.path("out-huge"))
        self.assertNotEqual(code, 0, text)
        self.assertIn("a task of 67108864 bytes cannot fit in the cache's filesystem", text)
        self.assertLessEqual(self.origin.path_stats("/huge.bin")[1], 1,
                             "bytes fetched for nothing (beyond the probe's one byte)")

        sha1 = self.add_file("t1.bin", 20 * MiB)
        t1 = self.task_id(self.get_ok(self.origin.url("t1.bin"), self.path("out-t1"), sha1,
                                      "--copy"))
        age_past_grace()
        make_file(os.path.join(cache, "not-storage's"), 16 * MiB)
        sha2 = self.add_file("t2.bin", 20 * MiB)  # 36 + 20 MiB > 48: t1 must go, and does
        self.get_ok(self.origin.url("t2.bin"), self.path("out-t2"), sha2, "--copy")
        self.assertFalse(os.path.exists(self.task_dir(t1)), "t1 was not evicted")

        # t2 in use (not aged) and 16 MiB not storage's: 20 MiB more cannot fit.
        self.add_file("t3.bin", 20 * MiB)
        code, text = self.get(self.origin.url("t3.bin"), self.path("out-t3"), "--copy")
        self.assertNotEqual(code, 0, text)
        self.assertIn("the cache's filesystem is full", text)
        tasks = self.path("a-cache", "tasks")
        held = [name for bucket in os.listdir(tasks) for name in os.listdir(f"{tasks}/{bucket}")]
        self.assertEqual(len(held), 1, f"t3's partial data is still in the cache: {held}")
        sha4 = self.add_file("t4.bin", 8 * MiB)
        self.get_ok(self.origin.url("t4.bin"), self.path("out-t4"), sha4, "--copy")

    def test_node_b_gets_a_task_from_node_a_over_curve(self):
        self.node_b_from_node_a("127.0.0.1")

    @unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback (::1) on this host")
    def test_node_b_gets_a_task_from_node_a_over_ipv6(self):
        """The bus over IPv6: libzmq keeps sockets IPv4-only unless asked, and a bind of
        tcp://[::1] failed with "No such device"."""
        self.node_b_from_node_a("[::1]")

    def node_b_from_node_a(self, host):
        size = 12 * MiB
        sha = self.add_file("shared.bin", size)
        os.makedirs(self.path("allow-a"))
        key_a, pub_a, _ = keygen(self.workdir, "a")
        key_b, pub_b, _ = keygen(self.workdir, "b")
        os.link(pub_b, self.path("allow-a", "b.pub"))
        port_a = free_port()
        self.start_node("a", bus=f"cert = {key_a}\nallow = {self.path('allow-a')}\n",
                        storage_bind=f"tcp://{host}:{port_a}")
        self.start_node("b", bus=f"cert = {key_b}\n",
                        endpoints=f"storage@a = tcp://{host}:{port_a} cert={pub_a}\n")
        url = self.origin.url("shared.bin")
        self.get_ok(url, self.path("out-a"), sha, node="a")
        requests, sent = self.origin.path_stats("/shared.bin")
        text = self.get_ok(url, self.path("out-b"), sha, "--parent", "storage@a", node="b")
        self.assertEqual(self.origin.path_stats("/shared.bin"), (requests, sent),
                         "node B went to the origin")
        self.assertRegex(text, r"from source 0 B, from parents 12\.0 MiB")
        task_id = self.task_id(text)
        reply, _ = self.fetcher_client("b").request("task.query", {"task_id": task_id})
        self.assertEqual(reply["body"]["bytes_from_source"], 0, reply)
        self.assertEqual(reply["body"]["bytes_from_parents"], size, reply)

    def test_origin_errors_end_in_clear_errors_or_retries(self):
        self.add_file("x.bin", 4 * MiB)
        sha = self.add_file("y.bin", 4 * MiB)
        self.start_node()
        cases = [
            ("status/404/x.bin", r"404"),
            ("status/500/x.bin", r"500"),
            ("reset-after/100000/x.bin", r"(?i)reset|recv|receiv|partial|transfer|closed"),
            ("stall/100000/x.bin", r"(?i)stall|timeout|timed out|slow"),
        ]
        for path, pattern in cases:
            with self.subTest(path=path):
                started = time.monotonic()
                code, text = self.get(self.origin.url(path), self.path("out"), timeout=90)
                self.assertEqual(code, 4, text)
                self.assertIn("source error", text)
                self.assertRegex(text, pattern)
                self.assertFalse(os.path.exists(self.path("out")))
                self.assertFalse(os.path.exists(self.path("out.part")))
                self.assertLess(time.monotonic() - started, 60)
        # Nothing listening at all.
        code, text = self.get(f"http://127.0.0.1:{free_port()}/x.bin", self.path("out"))
        self.assertEqual(code, 4, text)
        # Two failures, then the origin recovers: retries make it a success.
        self.get_ok(self.origin.url("fail-first/2/y.bin"), self.path("out-y"), sha)
        statuses = self.origin.stats()["paths"]["/fail-first/2/y.bin"]["statuses"]
        self.assertEqual(statuses.get("500"), 2)

    def test_origin_ignoring_range_still_yields_exact_bytes(self):
        size = 10 * MiB + 3
        sha = self.add_file("norange.bin", size)
        self.start_node()
        self.get_ok(self.origin.url("ignore-range/norange.bin"), self.path("out"), sha)
        records = [r for r in self.origin.records() if r["path"] == "/ignore-range/norange.bin"]
        self.assertTrue(all(record["status"] == 200 for record in records), records)
        self.assertLess(self.origin.path_stats("/ignore-range/norange.bin")[1], 3 * size)

    def test_headers_reach_the_origin_and_do_not_follow_a_redirect_elsewhere(self):
        sha = self.add_file("private.bin", 2 * MiB)
        self.start_node()
        self.get_ok(self.origin.url("auth/s3cret/private.bin"), self.path("out"), sha,
                    "--header", "Authorization: Bearer s3cret")
        # Redirected to another host name, the credentials must not go along.
        code, text = self.get(self.origin.url("redirect/auth/s3cret/private.bin?v=2"),
                              self.path("out2"), "--header", "Authorization: Bearer s3cret")
        self.assertEqual(code, 4, text)
        self.assertIn("401", text)
        leaked = [r for r in self.origin.records()
                  if r["port"] == self.origin.second_port and r["auth"]]
        self.assertEqual(leaked, [])

    def test_zfly_get_errors(self):
        # No daemon: the ipc socket does not exist.
        with open(self.path("a.ini"), "w") as handle:
            handle.write(self.node_ini("a"))
        code, text = self.get(self.origin.url("x"), self.path("out"))
        self.assertEqual(code, 3, text)
        self.assertIn("no zfly daemon answered at ipc://", text)
        self.assertIn(f"start one with `zfly -c {self.path('a.ini')}`", text)
        # No daemon behind a tcp:// endpoint: the first request times out.
        key, _, _ = keygen(self.workdir, "k")
        with open(self.path("t.ini"), "w") as handle:
            handle.write(self.node_ini("t", bus=f"cert = {key}\n",
                                       storage_bind=f"tcp://127.0.0.1:{free_port()}")
                         .replace("bind = ipc://" + self.path("t-fetcher.sock"),
                                  f"bind = tcp://0.0.0.0:{free_port()}"))
        started = time.monotonic()
        code, text = self.get(self.origin.url("x"), self.path("out"), "--timeout", "1s",
                              node="t")
        self.assertEqual(code, 3, text)
        self.assertRegex(text, r"no zfly daemon answered at tcp://127\.0\.0\.1:\d+ ")
        self.assertLess(time.monotonic() - started, 10)
        self.assertFalse(os.path.exists(self.path("out.part")))
        # A file without a [fetcher] bind says which key to set.
        with open(self.path("nobind.ini"), "w") as handle:
            handle.write(self.node_ini("a").replace(
                "bind = ipc://" + self.path("a-fetcher.sock"), "bind ="))
        code, text = self.get(self.origin.url("x"), self.path("out"), node="nobind")
        self.assertEqual(code, 2, text)
        self.assertIn("[fetcher] bind", text)
        # Usage errors.
        for args, message in [
            (["--header", "no colon here"], "--header 'no colon here': expected 'Name: value'"),
            (["--header", "Bad Name: v"], "is not a valid header name"),
            (["--digest", "md5:abc"], "expected sha256: followed by 64 hex digits"),
            (["--timeout", "soon"], "--timeout 'soon'"),
        ]:
            code, text = self.get(self.origin.url("x"), self.path("out"), *args)
            self.assertEqual(code, 2, text)
            self.assertIn(message, text)
        result = subprocess.run([ZFLY_GET, self.origin.url("x")], capture_output=True, text=True)
        self.assertEqual((result.returncode, result.stderr.strip()),
                         (2, "zfly-get: no output file: use -O PATH"))
        result = subprocess.run([ZFLY_GET, "--help"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0)
        for line in ("3  no zfly daemon answered", "4  source error", "5  digest mismatch"):
            self.assertIn(line, result.stdout)
        # With a daemon, an output that cannot be written is exit 1, before any download.
        self.start_node()
        code, text = self.get(self.origin.url("x"), self.path("no-such-dir", "out"))
        self.assertEqual(code, 1, text)
        self.assertIn("cannot create", text)
        self.assertEqual(self.origin.stats()["requests"], 0)


if __name__ == "__main__":
    zflytest.main()
