#!/usr/bin/python3
"""The swarm on the testbed: a scheduler, a seed and 5 peers, each a real zfly process in its
own network namespace (tools/testbed/zfly-testbed), download one 100 MiB file from an nginx
origin with zfly-get at the same instant.

Checks what a user relies on: every copy is exact (sha256), the origin sends about one copy
(nginx's body bytes), a peer never restarts from zero (bytes from the origin plus bytes from
parents stay near the file size), the parent graph in the scheduler is acyclic; and that
downloads still complete when a parent, the seed or the scheduler is killed with SIGKILL
mid-transfer, when no scheduler runs at all, and when the task's scheduler of two is killed
(its task moves to the other one). "Mid-transfer" is found by polling task.query and
scheduler.state with a deadline, never by sleeping.

Needs root (network namespaces, tc) and nginx; skipped with a message otherwise."""
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

import msgpack
import zmq

import zflytest
from zflytest import BUILD_DIR, ZFLY

TESTBED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "testbed",
                            "zfly-testbed")
ZFLY_GET = os.path.join(BUILD_DIR, "zfly-get")
PEERS = 5
FILE_SIZE = "100M"
LINK = "250mbit"  # fast enough for a short test, slow enough to catch a transfer midway
RUN_TIMEOUT = 120
SENDER = "tester@outside"
ORIGIN_LIMIT = 1.05  # origin body bytes / F with a seed and a scheduler
RESTART_LIMIT = 1.10  # bytes a peer received / F: a restart from zero would be about 2


def load_testbed():
    loader = importlib.machinery.SourceFileLoader("zfly_testbed", TESTBED_PATH)
    spec = importlib.util.spec_from_loader("zfly_testbed", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def skip_reason():
    if os.geteuid() != 0:
        return "needs root: the testbed builds network namespaces and tc shapers"
    missing = [tool for tool in ("ip", "tc", "nginx", "curl") if not shutil.which(tool)]
    if missing:
        return f"testbed tools missing: {' '.join(missing)} (run tools/setup.sh)"
    if not os.access(ZFLY_GET, os.X_OK):
        return f"{ZFLY_GET} is not built"
    return None


class Bus:
    """Requests to actors over their ipc:// sockets (they live in the filesystem, so the test
    reaches them from the root namespace)."""

    def __init__(self):
        self.context = zmq.Context()
        self.sockets = {}
        self.next_id = 1

    def close(self):
        for socket in self.sockets.values():
            socket.close()
        self.context.term()

    def request(self, endpoint, type_, body, timeout_ms=5000):
        socket = self.sockets.get(endpoint)
        if socket is None:
            socket = self.context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(endpoint)
            self.sockets[endpoint] = socket
        self.next_id += 1
        socket.send(msgpack.packb({"type": type_, "v": 1, "id": self.next_id, "from": SENDER,
                                   "body": body}))
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            if socket.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                reply = msgpack.unpackb(socket.recv_multipart()[0], raw=False)
                if reply.get("re") == self.next_id:
                    return reply
        # a dead actor: forget the socket, its queue would hold stale requests
        socket.close()
        del self.sockets[endpoint]
        return None


@unittest.skipIf(skip_reason(), skip_reason())
class SwarmTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tb = load_testbed()
        cls.prefix = f"zs{os.getpid() % 10000}-"
        args = cls.tb.build_parser().parse_args(
            ["up", "--prefix", cls.prefix, "--peers", str(PEERS), "--seeds", "1",
             "--file-size", FILE_SIZE, "--link", LINK])
        args.file_size = cls.tb.parse_size(FILE_SIZE)
        args.origin_link = args.seed_link = args.link
        args.scheduler = True
        cls.args = args
        cls.tb.check_up_allowed(args)
        try:
            cls.state = cls.tb.cmd_up(args)
        except BaseException:
            cls.tb.cmd_down(args)
            raise
        cls.file_size = cls.state["file_size"]

    @classmethod
    def tearDownClass(cls):
        cls.args.keep = bool(os.environ.get("ZF_SWARM_KEEP"))
        cls.tb.cmd_down(cls.args)

    def setUp(self):
        self.bus = Bus()
        self.zdir = tempfile.mkdtemp(prefix="swarm-", dir=self.state["work"])
        self.swarm = None
        self.barrier = None

    def tearDown(self):
        if self.barrier:
            self.barrier.stop_all()
        if self.swarm:
            self.swarm.stop()
        self.bus.close()
        if not os.environ.get("ZF_SWARM_KEEP"):
            shutil.rmtree(self.zdir, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------

    def start(self, **options):
        options.setdefault("fetcher_extra", "sched_fallback = 6s\n")
        self.swarm = self.tb.ZflySwarm(self.state, ZFLY, self.zdir, **options).start()
        return self.swarm

    def peers(self):
        return [h["name"] for h in self.state["hosts"] if h["role"] == "peer"]

    def launch(self):
        """zfly-get on every peer at one instant; returns the task id."""
        self.barrier = self.tb.Barrier()
        self.outputs = {}
        self.log0 = self.tb.nginx_log_size(self.state)
        for host in self.state["hosts"]:
            if host["role"] != "peer":
                continue
            name = host["name"]
            self.outputs[name] = os.path.join(self.zdir, name, "blob.bin")
            self.barrier.add(name, host["ns"], self.tb.zfly_get_argv(
                self.state, {"zfly-get": ZFLY_GET},
                os.path.join(self.zdir, name, "zfly-get.ini"), self.outputs[name]),
                os.path.join(self.zdir, name, "zfly-get.log"))
        self.t0 = self.barrier.go()
        status = self.fetch("peer1")  # joins the task zfly-get started (or starts it)
        return status["task_id"]

    def fetch(self, host):
        reply = self.bus.request(self.swarm.socket(host, "fetcher"), "task.fetch",
                                 {"url": self.state["url"],
                                  "digest": "sha256:" + self.state["sha256"]})
        self.assertIsNotNone(reply, f"{host}: fetcher does not answer")
        self.assertEqual(reply["type"], "task.status", reply)
        return reply["body"]

    def query(self, host, task_id):
        reply = self.bus.request(self.swarm.socket(host, "fetcher"), "task.query",
                                 {"task_id": task_id}, timeout_ms=2000)
        return reply["body"] if reply and reply["type"] == "task.status" else None

    def dump(self, scheduler, task_id):
        reply = self.bus.request(self.swarm.socket(scheduler, "scheduler"), "scheduler.state",
                                 {"task_id": task_id}, timeout_ms=2000)
        if reply and reply["type"] != "scheduler.dump":
            print(f"scheduler.state at {scheduler}: {reply}", file=sys.stderr)
        return reply["body"] if reply and reply["type"] == "scheduler.dump" else None

    def progress(self, host, task_id):
        status = self.query(host, task_id)
        if not status or not status.get("piece_count"):
            return 0.0
        return status["finished_count"] / status["piece_count"]

    def wait_for(self, predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)  # polling a status, not synchronising on time
        self.fail(f"not {what} after {timeout}s")

    def finish(self, task_id, expect):
        """Waits for zfly-get on every peer; checks exit status and sha256 for those in
        expect; returns (per-peer task.status, origin body bytes)."""
        done, codes = self.barrier.wait_exits(self.t0 + RUN_TIMEOUT)
        body_bytes, _ = self.tb.nginx_body_bytes(self.state, self.log0)
        statuses = {name: self.query(name, task_id) for name in expect}
        for name in expect:
            with open(os.path.join(self.zdir, name, "zfly-get.log"), errors="replace") as f:
                log = f.read()[-2000:]
            self.assertEqual(codes.get(name), 0, f"{name}: zfly-get exit {codes.get(name)}: "
                                                 f"{log}")
            self.assertEqual(self.tb.sha256_file(self.outputs[name]), self.state["sha256"],
                             f"{name}: wrong content")
        return statuses, body_bytes

    def assert_no_restart(self, statuses):
        for name, status in statuses.items():
            self.assertIsNotNone(status, f"{name}: no task.status")
            received = status["bytes_from_source"] + status["bytes_from_parents"]
            self.assertLessEqual(received, RESTART_LIMIT * self.file_size,
                                 f"{name}: received {received} bytes for a file of "
                                 f"{self.file_size}: {status}")

    def assert_acyclic(self, scheduler, task_id):
        dump = self.dump(scheduler, task_id)
        self.assertIsNotNone(dump, f"{scheduler}: scheduler.state unanswered")
        self.assertTrue(dump["found"], f"{scheduler}: task unknown: {dump}")
        parents = {peer["host_id"]: list(peer.get("parents") or []) for peer in dump["peers"]}
        state = {}

        def visit(node, path):
            if state.get(node) == "done":
                return
            self.assertNotEqual(state.get(node), "open",
                                f"cycle in the parent graph: {' -> '.join(path + [node])}")
            state[node] = "open"
            for parent in parents.get(node, []):
                visit(parent, path + [node])
            state[node] = "done"

        for node in parents:
            visit(node, [])
        return dump

    def children_of(self, dump):
        children = {}
        for peer in dump["peers"]:
            for parent in peer.get("parents") or []:
                children.setdefault(parent, []).append(peer["host_id"])
        return children

    # --- scenarios ---------------------------------------------------------------------------

    def test_1_seed_and_peers(self):
        """5 peers and a seed: exact copies, the origin sends at most 1.05 F."""
        self.start()
        task_id = self.launch()
        statuses, body_bytes = self.finish(task_id, self.peers())
        self.assertLessEqual(body_bytes, ORIGIN_LIMIT * self.file_size,
                             f"origin sent {body_bytes / self.file_size:.2f} F")
        self.assert_no_restart(statuses)
        from_parents = sum(s["bytes_from_parents"] for s in statuses.values())
        self.assertGreaterEqual(from_parents, (PEERS - ORIGIN_LIMIT) * self.file_size)
        self.assert_acyclic("s1", task_id)

    def test_2_parent_killed(self):
        """A peer that serves others is killed (SIGKILL) mid-transfer: its children finish
        with exact bytes and without starting over."""
        self.start()
        task_id = self.launch()

        def serving_peer():
            dump = self.dump("s1", task_id)
            self.last_dump = dump
            if not dump or not dump["found"]:
                return None
            finished = {peer["host_id"]: peer["finished_count"] for peer in dump["peers"]}
            pieces = dump["piece_count"] or 1
            for parent, children in self.children_of(dump).items():
                if parent.startswith("peer") and 0 < finished.get(parent, 0) < pieces * 0.8 \
                        and any(finished.get(child, 0) < pieces * 0.8 for child in children):
                    return parent
            return None

        try:
            victim = self.wait_for(serving_peer, "a peer serving others mid-transfer")
        except AssertionError:
            print(f"last scheduler.state: {self.last_dump}", file=sys.stderr)
            raise
        self.swarm.kill(victim)
        survivors = [name for name in self.peers() if name != victim]
        statuses, _ = self.finish(task_id, survivors)
        self.assert_no_restart(statuses)
        self.assert_acyclic("s1", task_id)

    def test_3_seed_killed(self):
        """The seed dies mid-transfer: every peer still completes."""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.2 <= self.progress("seed1", task_id) < 0.9,
                      "seed mid-transfer", timeout=60)
        self.swarm.kill("seed1")
        statuses, _ = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assert_acyclic("s1", task_id)

    def test_4_scheduler_killed(self):
        """The scheduler dies mid-transfer: downloads complete (back to source)."""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.1 <= self.progress("peer1", task_id) < 0.8,
                      "peer1 mid-transfer", timeout=60)
        self.swarm.kill("s1")
        statuses, _ = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)

    def test_5_no_scheduler(self):
        """Schedulers configured, none running: every peer goes back to source."""
        self.start(start_schedulers=False)
        task_id = self.launch()
        statuses, body_bytes = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assertGreaterEqual(body_bytes, self.file_size)

    def test_6_two_schedulers(self):
        """Two schedulers: every peer of the task registers at the same one; killed, the task
        moves to the other."""
        self.start(schedulers=("s1", "s2"))
        task_id = self.launch()

        def owner():
            dumps = {name: self.dump(name, task_id) for name in ("s1", "s2")}
            holding = [name for name, dump in dumps.items() if dump and dump["found"]]
            if len(holding) == 1 and len(dumps[holding[0]]["peers"]) == PEERS + 1:
                return holding[0], dumps
            self.assertLessEqual(len(holding), 1, f"task at both schedulers: {dumps}")
            return None

        owner_name, dumps = self.wait_for(owner, "every peer registered at one scheduler")
        other = "s2" if owner_name == "s1" else "s1"
        self.assertEqual(sorted(p["host_id"] for p in dumps[owner_name]["peers"]),
                         sorted(self.peers() + ["seed1"]))
        self.assertTrue(any(self.progress(name, task_id) < 0.9 for name in self.peers()),
                        "the download ended before the scheduler could be stopped")
        self.swarm.kill(owner_name)
        moved = self.wait_for(lambda: (self.dump(other, task_id) or {}).get("found"),
                              f"task moved to {other}", timeout=30)
        self.assertTrue(moved)
        statuses, _ = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assert_acyclic(other, task_id)


if __name__ == "__main__":
    zflytest.main()
