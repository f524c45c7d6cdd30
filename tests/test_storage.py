#!/usr/bin/python3
"""Storage actor against a real zfly process: crash safety (kill -9 keeps exactly the
acknowledged pieces), the upload limit (a remote read beyond upload_concurrency is answered
"busy", local reads are never limited), piece.locate (this host only, checked on disk), and
metadata that cannot be trusted is quarantined while the daemon starts anyway."""
import hashlib
import os
import re
import signal
import time

import msgpack

import zflytest
from zflytest import BusClient, ZflyTestCase

NODE = "n1"
LOCAL = f"zfly-get@{NODE}"
REMOTE = "fetcher@elsewhere"
TASK = "ab" * 32


def content(length, seed):
    return bytes((index * 31 + seed * 7 + index // 251) & 0xFF for index in range(length))


class StorageClient(BusClient):
    """The storage actor's inbox, as local readers (zfly-get) and other nodes speak to it."""

    def __init__(self, endpoint):
        super().__init__(endpoint, sender=LOCAL, to="storage")

    def call(self, type_, body, frames=(), sender=LOCAL):
        return self.request(type_, body, frames=frames, sender=sender)

    def open(self, task, length, piece_length):
        return self.call("storage.open", {"task_id": task, "content_length": length,
                                          "piece_length": piece_length, "create": True})

    def write(self, task, piece, data):
        return self.call("piece.write", {"task_id": task, "piece": piece,
                                         "digest": hashlib.sha256(data).digest()}, [data])

    def stat(self, task):
        return self.call("storage.stat", {"task_id": task})


def finished_pieces(bitmap, count):
    return {index for index in range(count) if bitmap[index // 8] >> (index % 8) & 1}


class StorageTest(ZflyTestCase):
    def start_node(self, name="n1", **storage):
        """A node whose storage listens on ipc:// (this host) and on plain tcp:// (the network:
        insecure here so that the test client needs no CURVE keys; the transport alone tells
        storage that the sender is remote)."""
        self.endpoint = "ipc://" + self.path("storage.sock")
        self.network_endpoint = f"tcp://127.0.0.1:{zflytest.free_port()}"
        keys = {"dir": self.path("cache"), "bind": f"{self.endpoint} {self.network_endpoint}",
                **storage}
        lines = "".join(f"{key} = {value}\n" for key, value in keys.items())
        node = self.start(name, f"[node]\nname = {NODE}\nhttp = 127.0.0.1:0\n"
                                f"[bus]\ninsecure = true\n[storage]\n{lines}")
        node.wait_ready()
        return node

    def client(self, network=False):
        client = StorageClient(self.network_endpoint if network else self.endpoint)
        self.addCleanup(client.close)
        return client

    def test_bad_cache_dir_names_the_key_and_the_path(self):
        """A [storage] dir that cannot be a cache stops the daemon with a line that names the
        file, the key, the path that failed and the system's reason."""
        blocker = self.path("a-file")
        with open(blocker, "w") as handle:
            handle.write("not a directory\n")
        missing_parent = self.path("no", "such", "cache")
        for cache, failed, reason in ((blocker, blocker + "/tasks", "Not a directory"),
                                      (missing_parent, missing_parent, "No such file or directory")):
            node = self.start("bad", f"[node]\nname = {NODE}\nhttp =\n[storage]\ndir = {cache}\n")
            self.assertEqual(node.wait_exit(timeout=20), 1)
            node.log.wait_for(rf"zfly: {node.config_path}: storage could not start: "
                              rf"\[storage\] dir: cannot create directory {failed}: {reason}$")
            self.assertNotIn("zfly: ready", node.log.text())
        self.assertFalse(os.path.exists(self.path("no")))  # no tree invented

    def test_shift_clock_moves_forward_only(self):
        """storage.shift_clock (for tests of GC and TTL): an absolute offset, so a resend is
        harmless; the clock never goes back."""
        node = self.start_node()
        client = self.client()
        reply, _ = client.call("storage.shift_clock", {"offset_ms": 86_400_000})
        self.assertEqual(reply["type"], "storage.clock", reply)
        self.assertEqual(reply["body"]["offset_ms"], 86_400_000)
        self.assertGreater(reply["body"]["now_ms"], time.time() * 1000 + 86_000_000)
        reply, _ = client.call("storage.shift_clock", {"offset_ms": 86_400_000})
        self.assertEqual(reply["type"], "storage.clock", reply)
        reply, _ = client.call("storage.shift_clock", {"offset_ms": 1000})
        self.assertEqual((reply["body"]["code"], reply["body"]["field"]), ("invalid", "offset_ms"))
        self.assertIn("never goes back", reply["body"]["message"])
        node.log.wait_for(r"storage: clock shifted offset_ms=86400000 by=zfly-get@n1")
        self.assertEqual(len(re.findall("clock shifted", node.log.text())), 1)

    def test_measure_tells_how_full_the_cache_is(self):
        """storage.measure (sent with every join, for the console's hosts page): the bytes of
        finished pieces, the tasks, and what GC measures against (here the quota)."""
        self.start_node(quota="64MiB")
        client = self.client()
        reply, _ = client.call("storage.measure", {})
        self.assertEqual(reply["type"], "storage.usage", reply)
        self.assertEqual(reply["body"], {"bytes": 0, "tasks": 0, "used": 0,
                                         "capacity": 64 * 1024 * 1024})
        piece_length = 16384
        data = content(piece_length * 3 - 10, 4)
        self.assertEqual(client.open(TASK, len(data), piece_length)[0]["type"], "storage.task")
        for piece in range(2):  # two of three pieces: only finished bytes count
            chunk = data[piece * piece_length:(piece + 1) * piece_length]
            self.assertEqual(client.write(TASK, piece, chunk)[0]["type"], "piece.written")
        reply, _ = client.call("storage.measure", {})
        self.assertEqual(reply["body"], {"bytes": 2 * piece_length, "tasks": 1,
                                         "used": 2 * piece_length,
                                         "capacity": 64 * 1024 * 1024})
        # Another node may ask too: measuring changes nothing.
        remote = self.client(network=True)
        reply, _ = remote.call("storage.measure", {}, sender=REMOTE)
        self.assertEqual(reply["body"]["bytes"], 2 * piece_length)

    def kill_9_mid_writes(self, **storage):
        """Writes 4 pieces (acknowledged) and sends a 5th, kills the node with SIGKILL and
        starts it again: (the pieces it claims, the pieces' bytes)."""
        node = self.start_node(**storage)
        client = self.client()
        piece_length, count = 16384, 6
        data = content(piece_length * count - 100, 1)
        pieces = [data[i:i + piece_length] for i in range(0, len(data), piece_length)]
        reply, _ = client.open(TASK, len(data), piece_length)
        self.assertEqual(reply["type"], "storage.task", reply)
        for index in range(4):
            reply, _ = client.write(TASK, index, pieces[index])
            self.assertEqual(reply["type"], "piece.written", reply)
            self.assertEqual(reply["body"]["finished_count"], index + 1)
        # One write in flight, never acknowledged, when the daemon dies.
        client.send("piece.write", {"task_id": TASK, "piece": 4,
                                    "digest": hashlib.sha256(pieces[4]).digest()}, [pieces[4]])
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

        self.start_node("n1-again", **storage)
        client = self.client()
        reply, raw = client.stat(TASK)
        self.assertEqual(reply["type"], "storage.task", reply)
        finished = finished_pieces(raw[0], count)
        self.assertEqual(reply["body"]["finished_count"], len(finished))
        self.assertEqual(reply["body"]["state"], "running")
        # Never a claim of bytes it does not have: every claimed piece reads back exactly.
        self.assertLessEqual(finished, {0, 1, 2, 3, 4})
        for index in sorted(finished):
            reply, raw = client.call("piece.read", {"task_id": TASK, "piece": index})
            self.assertEqual(reply["type"], "piece.data", reply)
            self.assertEqual(raw[0], pieces[index])
        # The download resumes: the missing pieces can be written and the task completed.
        for index in set(range(count)) - finished:
            reply, _ = client.write(TASK, index, pieces[index])
            self.assertEqual(reply["type"], "piece.written", reply)
        reply, _ = client.call("storage.complete", {"task_id": TASK})
        self.assertEqual(reply["body"]["state"], "complete", reply)
        return finished

    def test_kill_9_claims_only_written_pieces(self):
        # By default piece.written goes out once the bytes are written, and the metadata
        # that claims them follows within 100 ms: after kill -9 nothing unwritten is claimed.
        self.kill_9_mid_writes()

    def test_durable_mode_keeps_acknowledged_pieces_across_kill_9(self):
        # With fsync = true piece.written waits for the (synced) record that claims it.
        self.assertLessEqual({0, 1, 2, 3}, self.kill_9_mid_writes(fsync="true"))

    def test_upload_limit_answers_busy_and_spares_local_readers(self):
        node = self.start_node(upload_rate="1K", upload_concurrency=1)
        client = self.client()
        piece = content(65536, 2)
        client.open(TASK, len(piece), len(piece))
        reply, _ = client.write(TASK, 0, piece)
        self.assertEqual(reply["type"], "piece.written", reply)
        read = {"task_id": TASK, "piece": 0}
        # The remote client even claims to be local in its envelope: the transport decides.
        remote = self.client(network=True)
        first = remote.send("piece.read", read, sender=LOCAL)   # served: the bucket starts full
        second = remote.send("piece.read", read, sender=LOCAL)  # waits ~64 s for tokens
        third = remote.send("piece.read", read, sender=LOCAL)   # beyond upload_concurrency
        replies = {}
        while len(replies) < 2:
            reply, raw = remote.receive()
            replies[reply["re"]] = (reply, raw)
        local = client.send("piece.read", read, sender=REMOTE)   # this host: never limited
        reply, raw = client.receive()
        replies[reply["re"]] = (reply, raw)
        self.assertNotIn(second, replies)
        self.assertEqual(replies[first][0]["type"], "piece.data")
        self.assertEqual(replies[first][1][0], piece)
        self.assertEqual(replies[third][0]["type"], "error")
        self.assertEqual(replies[third][0]["body"]["code"], "busy")
        self.assertEqual(replies[local][0]["type"], "piece.data")
        self.assertEqual(node.metric("zfly_storage_busy_total"), 1)
        self.assertEqual(node.metric("zfly_storage_pieces_served_total", peer="remote"), 1)
        self.assertEqual(node.metric("zfly_storage_pieces_served_total", peer="local"), 1)
        self.assertEqual(node.metric("zfly_storage_upload_bytes_total"), len(piece))

    def test_other_nodes_cannot_change_the_cache(self):
        self.start_node()
        remote = self.client(network=True)
        piece = content(4096, 3)
        reply, _ = remote.open(TASK, len(piece), len(piece))
        self.assertEqual((reply["type"], reply["body"]["code"]), ("error", "refused"), reply)
        self.assertIn("from this host only", reply["body"]["message"])
        reply, _ = remote.write(TASK, 0, piece)
        self.assertEqual(reply["body"]["code"], "refused", reply)
        for type_ in ("storage.complete", "storage.remove"):
            reply, _ = remote.call(type_, {"task_id": TASK})
            self.assertEqual(reply["body"]["code"], "refused", reply)
        reply, _ = remote.call("storage.shift_clock", {"offset_ms": 3600_000})
        self.assertEqual(reply["body"]["code"], "refused", reply)
        # Nothing was created; this host can still do all of it.
        reply, _ = remote.stat(TASK)
        self.assertEqual(reply["body"]["code"], "not_found", reply)
        reply, _ = self.client().open(TASK, len(piece), len(piece))
        self.assertEqual(reply["type"], "storage.task", reply)

    def test_piece_locate_for_this_host_only(self):
        self.start_node()
        client = self.client()
        piece_length = 8192
        data = content(piece_length * 2 + 500, 4)
        client.open(TASK, len(data), piece_length)
        # A writer on this host is not trusted with the digest: a wrong one is refused.
        reply, _ = client.call("piece.write", {"task_id": TASK, "piece": 0,
                                               "digest": hashlib.sha256(b"other").digest()},
                               [data[:piece_length]])
        self.assertEqual((reply["type"], reply["body"]["field"]), ("error", "digest"), reply)
        reply, _ = client.call("piece.locate", {"task_id": TASK, "piece": 0})
        self.assertEqual(reply["body"]["code"], "not_finished", reply)
        for index in range(3):
            reply, _ = client.write(TASK, index, data[index * piece_length:][:piece_length])
            self.assertEqual(reply["type"], "piece.written", reply)

        reply, _ = client.call("piece.locate", {"task_id": TASK, "piece": 2})
        self.assertEqual(reply["type"], "piece.located", reply)
        located = reply["body"]
        self.assertEqual(located["path"], os.path.realpath(
            self.path("cache", "tasks", TASK[:2], TASK, "data")))
        self.assertEqual((located["offset"], located["size"]), (2 * piece_length, 500))
        self.assertEqual(located["digest"], hashlib.sha256(data[2 * piece_length:]).digest())
        with open(located["path"], "rb") as handle:
            handle.seek(located["offset"])
            self.assertEqual(handle.read(located["size"]), data[2 * piece_length:])

        # Other nodes are never told where files are, whatever their envelope claims.
        remote = self.client(network=True)
        reply, _ = remote.call("piece.locate", {"task_id": TASK, "piece": 2}, sender=LOCAL)
        self.assertEqual((reply["type"], reply["body"]["code"]), ("error", "forbidden"), reply)

        # Damage on disk is found before the location is given out.
        zflytest.flip_byte(located["path"], piece_length + 7, 0x10)
        reply, _ = client.call("piece.locate", {"task_id": TASK, "piece": 1})
        self.assertEqual(reply["body"]["code"], "corrupt", reply)
        reply, _ = client.call("piece.locate", {"task_id": TASK, "piece": 1})
        self.assertEqual(reply["body"]["code"], "not_finished", reply)
        reply, _ = client.call("piece.locate", {"task_id": "cd" * 32, "piece": 0})
        self.assertEqual(reply["body"]["code"], "not_found", reply)

    def test_a_torn_metadata_slot_falls_back_to_the_older_record(self):
        node = self.start_node()
        client = self.client()
        piece_length, count = 16384, 5
        data = content(piece_length * count, 5)
        pieces = [data[i:i + piece_length] for i in range(0, len(data), piece_length)]
        client.open(TASK, len(data), piece_length)
        for index in range(3):
            reply, _ = client.write(TASK, index, pieces[index])
            self.assertEqual(reply["type"], "piece.written", reply)
        node.stop()  # SIGTERM: every write is committed
        task_dir = self.path("cache", "tasks", TASK[:2], TASK)
        self.assertFalse(os.path.exists(os.path.join(task_dir, "meta")))
        (newest, sequence, record), (older, older_sequence, older_record) = \
            zflytest.metadata_slots(task_dir)
        self.assertEqual(older_sequence, sequence - 1)
        self.assertEqual(zflytest.bitmap_set(record["finished"], count), {0, 1, 2})
        expected = zflytest.bitmap_set(older_record["finished"], count)
        self.assertLessEqual(expected, {0, 1, 2})

        # A crash while the newest record was written in place: its tail never made it.
        zflytest.flip_byte(os.path.join(task_dir, newest), 100)
        node = self.start_node("n1-again")
        node.log.wait_for(rf"storage: task={TASK} {newest} not usable \(checksum mismatch")
        client = self.client()
        reply, raw = client.stat(TASK)
        self.assertEqual(finished_pieces(raw[0], count), expected, reply)
        for index in sorted(expected):
            reply, raw = client.call("piece.read", {"task_id": TASK, "piece": index})
            self.assertEqual(raw[0], pieces[index], reply)
        for index in set(range(count)) - expected:
            reply, _ = client.write(TASK, index, pieces[index])
            self.assertEqual(reply["type"], "piece.written", reply)
        reply, _ = client.call("storage.complete", {"task_id": TASK})
        self.assertEqual(reply["body"]["state"], "complete", reply)
        node.stop()
        # Records went on from the older one's sequence, the first into the torn slot (not
        # over the only good record), and both slots hold whole records again.
        slots = zflytest.metadata_slots(task_dir)
        self.assertEqual([slot[1] for slot in slots], [slots[0][1], slots[0][1] - 1])
        self.assertGreaterEqual(slots[1][1], older_sequence + 1)
        self.assertEqual(slots[0][2]["state"], "complete")

        # Both slots damaged: nothing can be trusted, the task is quarantined.
        for name in ("meta.0", "meta.1"):
            zflytest.flip_byte(os.path.join(task_dir, name), 30)
        node = self.start_node("n1-third")
        node.log.wait_for(rf"storage: quarantined task={TASK} bad metadata: meta")
        reply, _ = self.client().stat(TASK)
        self.assertEqual(reply["body"]["code"], "not_found", reply)

    def test_bad_metadata_is_quarantined_and_the_daemon_starts(self):
        bad = "ee" * 32
        task_dir = self.path("cache", "tasks", "ee", bad)
        os.makedirs(task_dir)
        with open(os.path.join(task_dir, "meta"), "wb") as handle:
            handle.write(msgpack.packb({"task_id": bad, "content_length": "lots"}))
        with open(os.path.join(task_dir, "data"), "wb") as handle:
            handle.write(b"x" * 10)
        node = self.start_node()
        node.log.wait_for(rf"storage: quarantined task={bad}")
        client = self.client()
        reply, _ = client.stat(bad)
        self.assertEqual(reply["body"]["code"], "not_found", reply)
        self.assertEqual(node.metric("zfly_storage_quarantined_total"), 1)
        self.assertFalse(os.path.exists(task_dir))
        reply, _ = client.stat("../../etc/passwd")
        self.assertEqual(reply["body"]["code"], "invalid", reply)


if __name__ == "__main__":
    zflytest.main()
