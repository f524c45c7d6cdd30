#!/usr/bin/python3
"""Pieces from parents: a fetcher on node B pulls a task's pieces from node A's storage over
tcp:// with CURVE, verifies them and completes the task without the origin. Real zfly
processes (A, sometimes A2, and B), and tests/origin.py logging its requests.
Checks the bytes B's storage ends up with and their digest, what the origin sent (one copy to
the node that fetched from it, nothing to the one its parents served), and
what happens when a parent serves a corrupt piece, dies mid-transfer, or shares the work with
a second parent."""
import glob
import hashlib
import os
import time

from zflytest import (BusClient, Origin, ZflyTestCase, assert_sent_once, flip_byte, free_port,
                      keygen, main, sent_spans)

CONTENT = os.urandom(4 * 1024 * 1024 + 777)  # 65 pieces of 64K, the last one short
CONTENT_DIGEST = "sha256:" + hashlib.sha256(CONTENT).hexdigest()
PIECE_LENGTH = 64 * 1024
PIECE_COUNT = (len(CONTENT) + PIECE_LENGTH - 1) // PIECE_LENGTH
GATED_BYTES = 16 * PIECE_LENGTH  # /gated serves these, then waits for the test's go


# Request paths on tests/origin.py, which serves CONTENT under each name. /gated sends the
# bytes before GATED_BYTES and holds the rest until the test opens the gate (ROOT/go).
GATED_PATH = f"/pause-at/{GATED_BYTES}/go/gated"
FILES = ("blob", "gated", "other")


FETCHER = """[upstream]
public = 127.0.0.1
[fetcher]
bind = ipc://{workdir}/{name}-fetcher.sock
piece_length_min = 64K
piece_length_max = 64K
retry_backoff = 50ms
retries = 2
parent_timeout = {parent_timeout}
parent_refresh = {parent_refresh}
"""


class ParentsTest(ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.origin = Origin(self.path("origin"), self.path("origin.log"),
                             files={name: CONTENT for name in FILES})
        self.clients = {}
        self.keys = {}
        for name in ("a", "a2", "b"):
            os.makedirs(self.path("allow-" + name))
            self.keys[name] = keygen(self.workdir, name)
        for parent in ("a", "a2"):  # parents let the child in
            os.link(self.keys["b"][1], self.path("allow-" + parent, "b.pub"))
        self.ports = {}

    def tearDown(self):
        for client in self.clients.values():
            client.close()
        self.origin.stop()
        super().tearDown()

    # --- processes ---------------------------------------------------------------------------

    def node_ini(self, name, storage_bind, extra="", parent_timeout="2s", parent_refresh="200ms"):
        return (f"[node]\nname = {name}\nhttp = 127.0.0.1:0\n"
                f"[bus]\ncert = {self.keys[name][0]}\nallow = {self.path('allow-' + name)}\n"
                f"[storage]\ndir = {self.path('cache-' + name)}\nbind = {storage_bind}\n{extra}"
                + FETCHER.format(workdir=self.workdir, name=name, parent_timeout=parent_timeout,
                                 parent_refresh=parent_refresh))

    def start_parent(self, name, storage_extra=""):
        """A node whose storage serves other nodes over tcp:// with CURVE."""
        self.ports[name] = free_port()
        bind = f"ipc://{self.path(name + '-storage.sock')} tcp://127.0.0.1:{self.ports[name]}"
        node = self.start(name, self.node_ini(name, bind, storage_extra))
        node.wait_ready()
        return node

    def start_child(self, parents, parent_timeout="2s", parent_refresh="200ms"):
        endpoints = "".join(
            f"storage@{parent} = tcp://127.0.0.1:{self.ports[parent]} cert={self.keys[parent][1]}\n"
            for parent in parents)
        ini = self.node_ini("b", "ipc://" + self.path("b-storage.sock"),
                            parent_timeout=parent_timeout, parent_refresh=parent_refresh)
        node = self.start("b", ini + "[endpoints]\n" + endpoints)
        node.wait_ready()
        return node

    # --- bus clients -------------------------------------------------------------------------

    def request(self, node, actor, type_, body):
        """(reply envelope, raw frames) of one request to node's actor over ipc://."""
        endpoint = f"ipc://{self.path(node + '-' + actor + '.sock')}"
        if endpoint not in self.clients:
            self.clients[endpoint] = BusClient(endpoint, to=actor)
        return self.clients[endpoint].request(type_, body)

    def fetch(self, node, url, **fields):
        reply, _ = self.request(node, "fetcher", "task.fetch",
                                {"url": url, "digest": CONTENT_DIGEST, **fields})
        self.assertEqual(reply["type"], "task.status", reply)
        return reply["body"]

    def query(self, node, task_id):
        reply, _ = self.request(node, "fetcher", "task.query", {"task_id": task_id})
        self.assertEqual(reply["type"], "task.status", reply)
        return reply["body"]

    def wait_until(self, node, task_id, predicate, what, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.query(node, task_id)
            if predicate(status):
                return status
            time.sleep(0.02)  # polling a status, not synchronising on time
        self.fail(f"{node}: task {task_id}: not {what} after {timeout}s: {status}")

    def wait_finished(self, node, task_id, timeout=30):
        return self.wait_until(node, task_id, lambda status: status["state"] != "running",
                               "finished", timeout)

    def fetch_complete(self, node, url, **fields):
        status = self.wait_finished(node, self.fetch(node, url, **fields)["task_id"])
        self.assertEqual(status["state"], "complete", status)
        return status

    def stored_content(self, node, task_id):
        reply, _ = self.request(node, "storage", "storage.stat", {"task_id": task_id})
        self.assertEqual(reply["type"], "storage.task", reply)
        self.assertEqual(reply["body"]["state"], "complete")
        data = b""
        for piece in range(reply["body"]["piece_count"]):
            answer, raw = self.request(node, "storage", "piece.read",
                                       {"task_id": task_id, "piece": piece})
            self.assertEqual(answer["type"], "piece.data", answer)
            data += raw[0]
        return data

    def assert_exact(self, node, task_id):
        data = self.stored_content(node, task_id)
        self.assertEqual(hashlib.sha256(data).hexdigest(), CONTENT_DIGEST[7:])
        self.assertEqual(data, CONTENT)

    def parent_results(self, node):
        return {result: node.metric("zfly_fetcher_parent_requests_total", actor="fetcher",
                                    result=result) or 0
                for result in ("ok", "corrupt", "timeout", "busy", "error", "digest",
                               "not_found", "duplicate")}

    def assert_one_copy(self, path):
        """The origin sent path's content once (its ranges cover it exactly once, on piece
        boundaries) and the probe's byte."""
        assert_sent_once(self.origin.ranges(path), 0, len(CONTENT), PIECE_LENGTH)
        self.assertEqual(self.origin.path_stats(path)[1], len(CONTENT) + 1)

    # --- tests -------------------------------------------------------------------------------

    def test_child_takes_every_piece_from_a_parent_without_the_origin(self):
        parent = self.start_parent("a")
        url = self.origin.url("/blob")
        seeded = self.fetch_complete("a", url)
        self.assert_one_copy("/blob")
        before = self.origin.count("/blob")
        child = self.start_child(["a"])
        status = self.fetch_complete("b", url, parents=["storage@a"])
        self.assertEqual(status["task_id"], seeded["task_id"])
        self.assertEqual(status["bytes_from_parents"], len(CONTENT))
        self.assertEqual(status["bytes_from_source"], 0)
        self.assertEqual(self.origin.count("/blob"), before)  # not one more request
        self.assert_exact("b", status["task_id"])
        self.assertEqual(child.metric("zfly_fetcher_parent_bytes_total", actor="fetcher"),
                         len(CONTENT))
        self.assertEqual(self.parent_results(child)["ok"], PIECE_COUNT)
        self.assertEqual(parent.metric("zfly_storage_pieces_served_total", peer="remote"),
                         PIECE_COUNT)

    def test_child_follows_a_parent_that_is_still_downloading(self):
        """B asks A while A's origin holds back everything past 16 pieces: B takes those 16,
        then A holds B's storage.stat (a long poll) instead of B polling; the origin lets go,
        and every further piece reaches B from A as A finishes it, none from the origin.
        B's refresh is 10 minutes: the long poll starts with B's first answer from A, not
        after a refresh (B once waited a refresh before it, a second behind a fresh seed)."""
        parent = self.start_parent("a")
        url = self.origin.url(GATED_PATH)
        task_id = self.fetch("a", url)["task_id"]
        self.wait_until("a", task_id, lambda status: status["finished_count"] >= 16,
                        "16 pieces in")
        child = self.start_child(["a"], parent_timeout="5s", parent_refresh="10m")
        self.fetch("b", url, parents=["storage@a"])
        self.wait_until("b", task_id, lambda status: status["finished_count"] >= 16,
                        "16 pieces in")
        deadline = time.monotonic() + 10
        while not parent.metric("zfly_storage_stats_held_total"):
            self.assertLess(time.monotonic(), deadline, "A never held a storage.stat of B")
            time.sleep(0.02)  # polling a metric, not synchronising on time
        self.origin.open_gate("go")
        status = self.wait_finished("b", task_id)
        self.assertEqual(status["state"], "complete", status)
        self.assertEqual(status["bytes_from_parents"], len(CONTENT))
        self.assertEqual(status["bytes_from_source"], 0)
        self.assert_exact("b", task_id)
        self.assert_one_copy(GATED_PATH)  # to A, once
        self.assertEqual(self.parent_results(child)["ok"], PIECE_COUNT)

    def test_corrupt_piece_at_the_parent_comes_from_the_origin(self):
        self.start_parent("a")
        url = self.origin.url("/blob")
        seeded = self.fetch_complete("a", url)
        data_files = glob.glob(self.path("cache-a", "**", seeded["task_id"], "data"),
                               recursive=True)
        self.assertEqual(len(data_files), 1, data_files)
        flip_byte(data_files[0], 5 * PIECE_LENGTH + 1000)  # inside piece 5
        before = self.origin.count("/blob")
        child = self.start_child(["a"])
        status = self.fetch_complete("b", url, parents=["storage@a"])
        self.assert_exact("b", status["task_id"])
        self.assertEqual(self.origin.count("/blob"), before + 1)  # piece 5 only, no probe
        self.assertEqual(status["bytes_from_source"], PIECE_LENGTH)
        self.assertEqual(status["bytes_from_parents"], len(CONTENT) - PIECE_LENGTH)
        results = self.parent_results(child)
        self.assertEqual(results["corrupt"], 1, results)
        self.assertEqual(results["ok"], PIECE_COUNT - 1, results)

    def test_parent_killed_mid_transfer_child_finishes_from_the_origin(self):
        # A serves other nodes at 1 MiB/s: the transfer takes seconds, room to kill A in it.
        parent = self.start_parent("a", "upload_rate = 1M\n")
        url = self.origin.url("/blob")
        self.fetch_complete("a", url)
        before = len(self.origin.records())
        #  The product's default: a slow parent is only dropped after 20 s, so what fails A
        #  here is its death (no connection for 2 s), never the slowness of a busy machine.
        child = self.start_child(["a"], parent_timeout="20s")
        task_id = self.fetch("b", url, parents=["storage@a"])["task_id"]
        self.wait_until("b", task_id, lambda status: status["finished_count"] >= 8,
                        "8 pieces in")
        parent.process.kill()  # kill -9: no goodbye on the bus
        parent.process.wait()
        status = self.wait_finished("b", task_id)
        self.assertEqual(status["state"], "complete", status)
        self.assert_exact("b", task_id)
        child.log.wait_for(r"parent failed task=\S+ parent=storage@a")
        # every piece came exactly once: finished pieces were not fetched again
        self.assertGreaterEqual(status["bytes_from_parents"], 8 * PIECE_LENGTH)
        self.assertGreater(status["bytes_from_source"], 0)
        self.assertEqual(status["bytes_from_parents"] + status["bytes_from_source"], len(CONTENT))
        # what the parents did not give came from the origin once, in whole pieces, no probe
        ranges = self.origin.ranges("/blob", start=before)
        spans = sent_spans(ranges)
        self.assertEqual(sum(end - first for first, end in spans), status["bytes_from_source"])
        self.assertTrue(all(first % PIECE_LENGTH == 0 for first, _ in spans), spans)
        self.assertEqual(len(self.origin.records()) - before, len(ranges))

    def test_two_parents_share_the_work(self):
        parent_a = self.start_parent("a")
        parent_a2 = self.start_parent("a2")
        url = self.origin.url("/blob")
        self.fetch_complete("a", url)
        self.fetch_complete("a2", url)
        before = self.origin.count("/blob")
        child = self.start_child(["a", "a2"])
        status = self.fetch_complete("b", url, parents=["storage@a", "storage@a2"])
        self.assert_exact("b", status["task_id"])
        self.assertEqual(self.origin.count("/blob"), before)
        self.assertEqual(status["bytes_from_parents"], len(CONTENT))
        served_a = parent_a.metric("zfly_storage_pieces_served_total", peer="remote") or 0
        served_a2 = parent_a2.metric("zfly_storage_pieces_served_total", peer="remote") or 0
        self.assertGreater(served_a, 0)
        self.assertGreater(served_a2, 0)
        results = self.parent_results(child)
        self.assertEqual(results["ok"], PIECE_COUNT, results)
        # end-game duplicates, if any, are the only pieces served twice
        self.assertGreaterEqual(served_a + served_a2, PIECE_COUNT)
        self.assertLessEqual(served_a + served_a2, PIECE_COUNT + results["duplicate"] + 4)

    def test_parent_without_the_task_leaves_it_to_the_origin(self):
        self.start_parent("a")  # holds nothing
        child = self.start_child(["a"])
        status = self.fetch_complete("b", self.origin.url("/other"), parents=["storage@a"])
        self.assert_exact("b", status["task_id"])
        self.assertEqual(status["bytes_from_source"], len(CONTENT) + 1)  # the probe's byte
        self.assertEqual(status["bytes_from_parents"], 0)
        self.assert_one_copy("/other")
        child.log.wait_for(r"parent failed task=\S+ parent=storage@a: storage.stat")


if __name__ == "__main__":
    main()
