#!/usr/bin/python3
"""One parent to one child, as in a datacenter (issue 15): node B pulls a large file from node
A's storage over tcp:// with CURVE (the default) with `zfly-get --parent`, from real zfly
processes and nginx as the origin. Checks the bytes B wrote and their digest, that every byte
came from the parent (B's task counts, A's served pieces, nginx's access log), and that a
piece a parent serves damaged is refused by the child and taken from another parent, never
passed on. Timing is docs/benchmarks.md's ("Datacenter speed", tools/bench/parentchild.py)."""
import ctypes
import glob
import hashlib
import os
import re
import struct
import subprocess

import msgpack

import zflytest
from zflytest import (Nginx, ZflyTestCase, free_port, keygen, main, metadata_slots,
                      sha256_file)

BUILD = os.environ.get("ZF_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "build"))
ZFLY_GET = os.path.join(BUILD, "zfly-get")
MiB = 1024 * 1024
GiB = 1024 * MiB


def make_file(path, size):
    """size random bytes at path; their SHA-256 (hex)."""
    digest = hashlib.sha256()
    block = 16 * MiB
    with open(path, "wb") as handle:
        for offset in range(0, size, block):
            data = os.urandom(min(block, size - offset))
            digest.update(data)
            handle.write(data)
    return digest.hexdigest()


def xxh3(data):
    """XXH3-64 of data with libxxhash, the library storage uses."""
    library = ctypes.CDLL("libxxhash.so.0")
    library.XXH3_64bits.restype = ctypes.c_uint64
    library.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return library.XXH3_64bits(data, len(data))


def xxh3_64(data):
    """A piece's checksum as storage records it."""
    return xxh3(data) or 1  # zf_store_checksum: 0 means "none recorded"


def rewrite_newest_slot(task_dir, change):
    """Applies change(record) to the task's newest metadata record and writes it back in its
    slot, framed as storage frames it (actors/storage/zf_meta_slot.h), checksum included."""
    name, sequence, record = metadata_slots(task_dir)[0]
    change(record)
    payload = msgpack.packb(record, use_bin_type=True)
    header = zflytest.SLOT_MAGIC + struct.pack("<QII", sequence, len(payload), 0)
    trailer = struct.pack("<Q", xxh3(header + payload))
    with open(os.path.join(task_dir, name), "r+b") as handle:
        handle.write(header + payload + trailer)


class ParentChildTest(ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.www = self.path("www")
        os.makedirs(self.www)
        self.nginx = Nginx(self.workdir, self.www)
        self.keys = {}
        self.ports = {}

    def tearDown(self):
        self.nginx.stop()
        super().tearDown()

    def node_ini(self, name, parents=(), piece_length="", bus_extra=""):
        """A node with storage and fetcher; a parent ("a...") also serves its storage over
        tcp:// with CURVE to the keys in its allow directory (the child's)."""
        bind = f"ipc://{self.path(name + '-storage.sock')}"
        bus = f"cert = {self.keys[name][0]}\n{bus_extra}"
        if name in self.ports:
            bind += f" tcp://127.0.0.1:{self.ports[name]}"
            bus += f"allow = {self.path('allow-' + name)}\n"
        endpoints = "".join(f"storage@{parent} = tcp://127.0.0.1:{self.ports[parent]} "
                            f"cert={self.keys[parent][1]}\n" for parent in parents)
        return (f"[node]\nname = {name}\nhttp = 127.0.0.1:0\n[bus]\n{bus}"
                + (f"[endpoints]\n{endpoints}" if endpoints else "")
                + "[upstream]\npublic = 127.0.0.1\n"
                + f"[storage]\ndir = {self.path('cache-' + name)}\nbind = {bind}\n"
                + f"[fetcher]\nbind = ipc://{self.path(name + '-fetcher.sock')}\n"
                + f"events_bind = ipc://{self.path(name + '-fetcher-events.sock')}\n"
                + piece_length)

    def start_node(self, name, parents=(), serves=(), piece_length="", bus_extra=""):
        """serves: the nodes this one lets in over tcp:// (its children)."""
        for node in (name, *serves):  # once each: a node restarted keeps its keys, and the
            if node not in self.keys:  # keys already in allow-lists stay the ones in use
                self.keys[node] = keygen(self.workdir, node)
        if serves:
            self.ports.setdefault(name, free_port())
            os.makedirs(self.path("allow-" + name), exist_ok=True)
            for child in serves:
                target = self.path("allow-" + name, child + ".pub")
                if not os.path.exists(target):
                    os.link(self.keys[child][1], target)
        ini = self.node_ini(name, parents, piece_length, bus_extra)
        with open(self.path(name + ".ini"), "w") as handle:
            handle.write(ini)
        node = self.start(name, ini)
        node.wait_ready()
        return node

    def start_get(self, node, url, output, sha, *args):
        """zfly-get on node, running."""
        command = [ZFLY_GET, url, "-O", output, "-c", self.path(node + ".ini"),
                   "--digest", "sha256:" + sha, *args]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)

    def end_get(self, get, output, sha, timeout=600):
        """Waits for a zfly-get of start_get and checks it: its stderr text."""
        try:
            _, errors = get.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            get.kill()  # as subprocess.run does: no zfly-get outlives its test
            get.wait()
            raise
        for marker in zflytest.SANITIZER_MARKERS:
            self.assertNotIn(marker, errors)
        self.assertEqual(get.returncode, 0, errors)
        self.assertEqual(sha256_file(output), sha, errors)  # the test's own hash
        return errors

    def get_ok(self, node, url, output, sha, *args, timeout=600):
        """zfly-get on node to the end, checked: its stderr text."""
        return self.end_get(self.start_get(node, url, output, sha, *args), output, sha, timeout)

    def task_status(self, node, text):
        task_id = re.search(r"zfly-get: task ([0-9a-f]{64})", text).group(1)
        client = zflytest.BusClient(f"ipc://{self.path(node + '-fetcher.sock')}", to="fetcher")
        try:
            reply, _ = client.request("task.query", {"task_id": task_id})
        finally:
            client.close()
        self.assertEqual(reply["type"], "task.status", reply)
        return reply["body"]

    def test_a_gib_from_one_parent_over_curve_byte_exact_and_from_the_parent_only(self):
        size = GiB + 12345  # the last piece short
        sha = make_file(os.path.join(self.www, "model.bin"), size)
        url = self.nginx.url("model.bin")
        parent = self.start_node("a", serves=["b"])
        self.get_ok("a", url, self.path("out-a"), sha)
        origin_before = self.nginx.body_bytes()
        self.start_node("b", parents=["a"])
        text = self.get_ok("b", url, self.path("out-b"), sha, "--parent", "storage@a")
        self.assertEqual(self.nginx.body_bytes(), origin_before, "B went to the origin")
        status = self.task_status("b", text)
        self.assertEqual(status["state"], "complete", status)
        self.assertEqual(status["bytes_from_parents"], size, status)
        self.assertEqual(status["bytes_from_source"], 0, status)
        self.assertEqual(parent.metric("zfly_storage_pieces_served_total", peer="remote"),
                         status["piece_count"])

    def io_threads(self, node):
        """The names of libzmq's I/O threads in node's process."""
        names = []
        for comm in glob.glob(f"/proc/{node.process.pid}/task/*/comm"):
            with open(comm) as handle:
                name = handle.read().strip()
            if name.startswith("ZMQbg/IO/"):
                names.append(name)
        return sorted(names)

    def test_a_parent_with_two_io_threads_serves_two_children_at_once(self):
        """[bus] io_threads: a parent whose connections are spread over two I/O threads (each
        encrypts its own connections' bytes) serves two children at once, byte-exact, from its
        cache alone; a node without the key has one per two CPUs it may run on, 1 to 4."""
        size = 64 * MiB + 777
        sha = make_file(os.path.join(self.www, "layer.bin"), size)
        url = self.nginx.url("layer.bin")
        parent = self.start_node("a", serves=["b", "c"], bus_extra="io_threads = 2\n")
        self.assertEqual(self.io_threads(parent), ["ZMQbg/IO/0", "ZMQbg/IO/1"])
        self.get_ok("a", url, self.path("out-a"), sha)
        origin_before = self.nginx.body_bytes()
        children = [self.start_node(name, parents=["a"]) for name in ("b", "c")]
        expected = min(max(len(os.sched_getaffinity(0)) // 2, 1), 4)
        for child in children:
            self.assertEqual(len(self.io_threads(child)), expected)
        gets = [self.start_get(name, url, self.path("out-" + name), sha, "--parent", "storage@a")
                for name in ("b", "c")]
        for name, get in zip(("b", "c"), gets):
            errors = self.end_get(get, self.path("out-" + name), sha)
            self.assertEqual(self.task_status(name, errors)["bytes_from_source"], 0)
        self.assertEqual(self.nginx.body_bytes(), origin_before, "a child went to the origin")

    def test_a_piece_damaged_at_a_parent_is_refused_and_taken_from_another_parent(self):
        """A's pieces changed after they were checked, and their checksums were made to match
        the changed bytes (a parent whose own check cannot see the damage): the child's
        SHA-256 check refuses what A sends, drops A, and takes every piece from A2."""
        size = 48 * MiB
        piece = MiB
        pieces = "piece_length_min = 1M\npiece_length_max = 1M\n"
        sha = make_file(os.path.join(self.www, "blob.bin"), size)
        url = self.nginx.url("blob.bin")
        self.start_node("a2", serves=["a", "b"], piece_length=pieces)
        self.get_ok("a2", url, self.path("out-a2"), sha)
        # A takes the file from A2: its fetcher checks every piece's SHA-256 and storage
        # records the digests, so A answers with the true digest of each piece.
        parent = self.start_node("a", parents=["a2"], serves=["b"], piece_length=pieces)
        self.get_ok("a", url, self.path("out-a"), sha, "--parent", "storage@a2", "--copy")
        origin_before = self.nginx.body_bytes()
        parent.stop()
        task_dirs = glob.glob(self.path("cache-a", "tasks", "*", "*"))
        self.assertEqual(len(task_dirs), 1, task_dirs)
        with open(os.path.join(task_dirs[0], "data"), "r+b") as handle:
            damaged = {}
            for index in range(size // piece):  # whichever piece the child asks A for
                handle.seek(index * piece)
                data = bytearray(handle.read(piece))
                data[4321] ^= 0xFF
                handle.seek(index * piece)
                handle.write(data)
                damaged[index] = xxh3_64(bytes(data))

        def forge(record):
            checksums = bytearray(record["piece_checksums"])
            for index, checksum in damaged.items():
                struct.pack_into("<Q", checksums, index * 8, checksum)
            record["piece_checksums"] = bytes(checksums)

        rewrite_newest_slot(task_dirs[0], forge)
        parent = self.start_node("a", parents=["a2"], serves=["b"], piece_length=pieces)
        child = self.start_node("b", parents=["a", "a2"], piece_length=pieces)
        text = self.get_ok("b", url, self.path("out-b"), sha, "--parent", "storage@a",
                           "--parent", "storage@a2")
        status = self.task_status("b", text)
        self.assertEqual(status["bytes_from_source"], 0, status)
        self.assertEqual(status["bytes_from_parents"], size, status)
        self.assertEqual(self.nginx.body_bytes(), origin_before, "B went to the origin")
        # Every piece was taken once and good; A's first answer was refused and A dropped.
        self.assertEqual(child.metric("zfly_fetcher_parent_requests_total", actor="fetcher",
                                      result="ok"), status["piece_count"])
        child.log.wait_for(r"parent failed task=\S+ parent=storage@a\b.*digest mismatch")


if __name__ == "__main__":
    main()
