#!/usr/bin/python3
"""Large files on one node, and a node starved of CPU, against a real nginx origin.

- A file of more than 4 GiB goes back to source through a daemon at its default settings and
  arrives byte-exact (its SHA-256), the origin sending one copy; then a copy of it from the
  cache (zfly-get --copy) arrives exact too. The file is sparse, so no 4 GiB fixture sits on
  disk: zeros but for distinct random blocks at scattered offsets, across piece boundaries
  and past 2 and 4 GiB, so that a byte put at a wrong offset (a 32-bit overflow, a piece
  written at another's place) changes the digest.
- The daemon in a cgroup with a CPU quota of 1% (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us)
  while zfly-get downloads: the download is slower, and succeeds byte-exact. (Before zfly-get's
  requests to the daemon were patient, this failed with "stopped answering".)

Needs nginx (tools/setup.sh installs it); the CPU test needs root and a writable cgroup
hierarchy with the cpu controller. Each is skipped with a message otherwise."""
import hashlib
import os
import random
import shutil
import subprocess
import unittest

import zflytest
from zflytest import ZflyTestCase, sha256_file

ZFLY_GET = os.path.join(zflytest.BUILD_DIR, "zfly-get")
MiB = 1 << 20
GiB = 1 << 30
LARGE = 4 * GiB + 3 * MiB + 4321  # over 4 GiB, not a whole number of pieces
BLOCK = 64 * 1024


def make_sparse_file(path, size, seed):
    """A sparse file of size bytes: zeros, and distinct random blocks at the offsets below.
    Returns its SHA-256 hex (holes read as zeros without touching the disk)."""
    rng = random.Random(seed)
    offsets = {0, size - BLOCK, 2 * GiB - BLOCK // 2, 4 * GiB - BLOCK // 2, 4 * GiB + 12345}
    for boundary in range(4 * MiB, size, 4 * MiB * 37):  # straddling piece boundaries
        offsets.add(boundary - 1000)
    while len(offsets) < 120:
        offsets.add(rng.randrange(0, size - BLOCK))
    with open(path, "wb") as handle:
        handle.truncate(size)
        for offset in sorted(offsets):
            handle.seek(offset)
            handle.write(rng.randbytes(BLOCK))
    return sha256_file(path)


class CpuQuota:
    """A cgroup holding processes to a share of one CPU: v2 (cpu.max) when /sys/fs/cgroup is
    the unified hierarchy, else v1's cpu controller (cpu.cfs_quota_us). skip_reason says
    why none can be made here (not root, read-only or missing hierarchy)."""

    PERIOD_US = 100000

    def __init__(self, name, quota_us):
        self.path = self.procs = None
        self.skip_reason = None
        if os.geteuid() != 0:
            self.skip_reason = "needs root to make a cgroup"
            return
        try:
            if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as handle:
                    handle.write("+cpu")
                self.path = os.path.join("/sys/fs/cgroup", name)
                os.mkdir(self.path)
                with open(os.path.join(self.path, "cpu.max"), "w") as handle:
                    handle.write(f"{quota_us} {self.PERIOD_US}")
            elif os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
                self.path = os.path.join("/sys/fs/cgroup/cpu", name)
                os.mkdir(self.path)
                with open(os.path.join(self.path, "cpu.cfs_period_us"), "w") as handle:
                    handle.write(str(self.PERIOD_US))
                with open(os.path.join(self.path, "cpu.cfs_quota_us"), "w") as handle:
                    handle.write(str(quota_us))
            else:
                self.skip_reason = "no cgroup cpu controller under /sys/fs/cgroup"
                return
        except OSError as error:
            self.skip_reason = f"cannot make a cgroup with a CPU quota: {error}"
            self.remove()
            return
        self.procs = os.path.join(self.path, "cgroup.procs")

    def add(self, pid):
        with open(self.procs, "w") as handle:
            handle.write(str(pid))

    def throttled(self):
        """How many periods the cgroup was held back (cpu.stat nr_throttled)."""
        with open(os.path.join(self.path, "cpu.stat")) as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == "nr_throttled":
                    return int(value)
        return 0

    def remove(self):
        """Moves whatever is left back to the parent and removes the cgroup."""
        if not self.path or not os.path.isdir(self.path):
            return
        parent = os.path.join(os.path.dirname(self.path), "cgroup.procs")
        with open(os.path.join(self.path, "cgroup.procs")) as handle:
            for pid in handle.read().split():
                try:
                    with open(parent, "w") as out:
                        out.write(pid)
                except OSError:
                    pass  # gone meanwhile
        os.rmdir(self.path)


@unittest.skipUnless(shutil.which("nginx"), "needs nginx (tools/setup.sh installs it)")
class LargeFileTest(ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.www = self.path("www")
        os.makedirs(self.www)
        self.nginx = None

    def tearDown(self):
        if self.nginx:
            self.nginx.stop()
        super().tearDown()

    def start_node(self):
        """A daemon with storage and fetcher at their defaults: what a user's INI has."""
        node = self.start("n", f"[node]\nname = n\nlog_level = info\nhttp = 127.0.0.1:0\n"
                               f"[storage]\ndir = {self.path('cache')}\n"
                               f"bind = ipc://{self.path('storage.sock')}\n"
                               f"[fetcher]\nbind = ipc://{self.path('fetcher.sock')}\n")
        node.wait_ready()
        return node

    def get(self, url, output, *args, timeout=900):
        result = subprocess.run([ZFLY_GET, url, "-O", output, "-c", self.path("n.ini"),
                                 "--progress", "lines", *args], capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        for marker in zflytest.SANITIZER_MARKERS:
            self.assertNotIn(marker, result.stderr)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stderr

    def test_a_file_over_4_gib_arrives_exactly(self):
        sha = make_sparse_file(os.path.join(self.www, "large.bin"), LARGE, seed=4)
        self.nginx = zflytest.Nginx(self.workdir, self.www)
        self.start_node()
        url = self.nginx.url("large.bin")
        output = self.path("out")
        self.get(url, output)
        self.assertEqual(os.path.getsize(output), LARGE)
        self.assertEqual(sha256_file(output), sha)
        os.unlink(output)
        # One copy from the origin (and the length probe).
        zflytest.wait_until_true(lambda: self.nginx.body_bytes()[0] >= LARGE,
                                 "nginx logged the whole transfer")
        sent, _ = self.nginx.body_bytes()
        self.assertLessEqual(sent, LARGE + 1)
        # From the cache, copied (offsets past 4 GiB in zfly-get's own writes).
        text = self.get(url, output, "--copy")
        self.assertIn("from source 0 B", text)
        self.assertEqual(os.stat(output).st_nlink, 1)
        self.assertEqual(sha256_file(output), sha)
        self.assertEqual(self.nginx.body_bytes()[0], sent)

    def test_a_daemon_starved_of_cpu_is_slower_not_failed(self):
        quota = CpuQuota(f"zfly-test-{os.getpid()}", 1000)  # 1 ms of CPU per 100 ms
        if quota.skip_reason:
            self.skipTest(quota.skip_reason)
        self.addCleanup(quota.remove)
        size = 32 * MiB + 999
        with open(os.path.join(self.www, "starved.bin"), "wb") as handle:
            data = random.Random(7).randbytes(size)
            handle.write(data)
        sha = hashlib.sha256(data).hexdigest()
        self.nginx = zflytest.Nginx(self.workdir, self.www)
        node = self.start_node()
        quota.add(node.process.pid)  # every thread of the daemon, and any it starts later
        output = self.path("out")
        self.get(self.nginx.url("starved.bin"), output)
        self.assertEqual(sha256_file(output), sha)
        self.assertGreater(quota.throttled(), 0, "the daemon was never held back")


if __name__ == "__main__":
    zflytest.main()
