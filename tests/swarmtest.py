#!/usr/bin/python3
"""swarmtest: the harness of the swarm tests (tests/test_swarm*.py). A testbed of real zfly
processes in network namespaces (tools/testbed/zfly-testbed), built once per test class from
its class attributes (PEERS, FILE_SIZE, LINK, SEED_LINK, RATES), with helpers to start a swarm
at the default settings, launch zfly-get on every peer at one instant, watch progress over the
nodes' ipc:// sockets, and check copies, origin bytes and daemon logs.

Needs root (network namespaces, tc) and nginx; a class is skipped with a message otherwise."""
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from zflytest import BUILD_DIR, ZFLY, BusClient, NoReply

TESTBED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "testbed",
                            "zfly-testbed")
ZFLY_GET = os.path.join(BUILD_DIR, "zfly-get")
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
        self.clients = {}

    def close(self):
        for client in self.clients.values():
            client.close()

    def request(self, endpoint, type_, body, timeout_ms=5000):
        """The reply envelope, or None when the actor did not answer in time."""
        client = self.clients.get(endpoint)
        if client is None:
            client = self.clients[endpoint] = BusClient(endpoint, sender=SENDER)
        try:
            return client.request(type_, body, timeout=timeout_ms / 1000)[0]
        except NoReply:
            # a dead actor: forget the socket, its queue would hold stale requests
            client.close()
            del self.clients[endpoint]
            return None


def testbed_up(tag, peers, file_size, link, seed_link=None, rates=None, seeds=1):
    """Builds a testbed of `peers` peers, `seeds` seeds, an origin and the sched namespace (for
    schedulers, and a manager), under a prefix of `tag` and this process's id; returns the
    testbed module, its arguments and its state. Torn down on failure."""
    tb = load_testbed()
    argv = ["up", "--prefix", f"{tag}{os.getpid() % 10000}-", "--peers", str(peers), "--seeds",
            str(seeds), "--file-size", file_size, "--link", link]
    if seed_link:
        argv += ["--seed-link", seed_link]
    if rates:
        argv += ["--rates", rates]
    args = tb.build_parser().parse_args(argv)
    args.file_size = tb.parse_size(file_size)
    args.origin_link = args.link
    args.seed_link = args.seed_link or args.link
    args.scheduler = True
    tb.check_up_allowed(args)
    try:
        state = tb.cmd_up(args)
    except BaseException:
        tb.cmd_down(args)
        raise
    return tb, args, state


def testbed_down(tb, args):
    args.keep = bool(os.environ.get("ZF_SWARM_KEEP"))  # keep logs and copies for a look
    tb.cmd_down(args)


@unittest.skipIf(skip_reason(), skip_reason())
class SwarmTestbed:
    """What SwarmCase and test_cluster's ClusterTest share: a testbed for the class (TAG
    names its namespaces; PEERS peers and a seed, FILE_SIZE, every link LINK unless SEED_LINK
    or RATES say otherwise), and the questions a test asks the daemons over the bus
    (self.bus and self.swarm are the test's)."""
    TAG = "zs"
    SEED_LINK = None
    RATES = None

    @classmethod
    def setUpClass(cls):
        cls.tb, cls.args, cls.state = testbed_up(cls.TAG, cls.PEERS, cls.FILE_SIZE, cls.LINK,
                                                 cls.SEED_LINK, cls.RATES)
        cls.prefix = cls.args.prefix
        cls.file_size = cls.state["file_size"]

    @classmethod
    def tearDownClass(cls):
        testbed_down(cls.tb, cls.args)

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

    def assert_origin_sent_one_copy(self, body_bytes):
        """The origin's body bytes stay within ORIGIN_LIMIT copies of the file."""
        self.assertLessEqual(body_bytes, ORIGIN_LIMIT * self.file_size,
                             f"origin sent {body_bytes / self.file_size:.2f} F")

    def wait_for(self, predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)  # polling a status, not synchronising on time
        self.fail(f"not {what} after {timeout}s")


class SwarmCase(SwarmTestbed, unittest.TestCase):
    """A testbed for the class (SwarmTestbed; RATES: peer1, peer2, … in order) and the swarm
    tests' common steps and checks."""
    PEERS = 5
    FILE_SIZE = "100M"
    LINK = "250mbit"  # fast enough for a short test, slow enough to catch a transfer midway

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
        #  A scheduler that notices dead hosts within seconds: the kill scenarios would
        #  otherwise wait out the default heartbeat timeout (15 s).
        options.setdefault("scheduler_extra", "heartbeat = 1s\nhost_timeout = 5s\n")
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

    def scheduler_metrics(self, name):
        """A scheduler's /metrics as {family: value summed over labels}."""
        port = self.tb.ZFLY_HTTP_PORT + self.swarm.scheduler_port(name) - self.tb.ZFLY_SCHED_PORT
        return self._metrics(name, self.prefix + "sched", self.tb.SCHED_IP, port)

    def node_metrics(self, host):
        """A node's /metrics as {series: value}, each series with its labels."""
        record = next(h for h in self.state["hosts"] if h["name"] == host)
        return self._metrics(host, record["ns"], record["ip"], self.tb.ZFLY_HTTP_PORT,
                             by_series=True)

    def _metrics(self, name, ns, ip, port, by_series=False):
        out = subprocess.run(
            self.tb.ns_argv(ns, ["curl", "-s", "--max-time", "5", "--noproxy", "*",
                                 f"http://{ip}:{port}/metrics"]),
            capture_output=True, text=True, timeout=10, env=self.tb.ENV).stdout
        self.assertTrue(out, f"{name}: no /metrics answer")
        families = {}
        for line in out.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            series, value = line.rsplit(" ", 1)
            key = series if by_series else series.split("{", 1)[0]
            families[key] = families.get(key, 0) + float(value)
        return families

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

    def assert_sane_graph(self, scheduler, task_id):
        """Every parent edge joins two different peers of the task (peers may feed each other:
        the graph is a mesh, not a tree)."""
        dump = self.dump(scheduler, task_id)
        self.assertIsNotNone(dump, f"{scheduler}: scheduler.state unanswered")
        self.assertTrue(dump["found"], f"{scheduler}: task unknown: {dump}")
        hosts = {peer["host_id"] for peer in dump["peers"]}
        for peer in dump["peers"]:
            for parent in peer.get("parents") or []:
                self.assertNotEqual(parent, peer["host_id"], f"{parent} is its own parent")
                self.assertIn(parent, hosts, f"{peer['host_id']}'s parent {parent} is no peer")
        return dump

    def children_of(self, dump):
        children = {}
        for peer in dump["peers"]:
            for parent in peer.get("parents") or []:
                children.setdefault(parent, []).append(peer["host_id"])
        return children

    def download_everywhere(self, **options):
        """Starts the swarm (options for ZflySwarm), downloads on every peer at one instant and
        checks what every scenario relies on: exact copies, the origin sending at most
        ORIGIN_LIMIT copies, no peer starting over. Returns the task id and each peer's
        task.status."""
        self.start(**options)
        task_id = self.launch()
        statuses, body_bytes = self.finish(task_id, self.peers())
        self.assert_origin_sent_one_copy(body_bytes)
        self.assert_no_restart(statuses)
        return task_id, statuses

    def daemon_log(self, name):
        """The text of a daemon's log so far (a host, or a scheduler such as s1)."""
        with open(self.swarm.daemons[name].record["log"], errors="replace") as f:
            return f.read()

    def assert_daemons_clean(self, stopped=()):
        """Every daemon of the swarm is still running (none died of a crash), those the test
        stopped exited with status 0, and no log shows a sanitizer report or an assertion."""
        for name, daemon in self.swarm.daemons.items():
            if name in stopped:
                self.assertEqual(daemon.proc.returncode, 0, f"{name}: see {daemon.record['log']}")
            else:
                self.assertTrue(daemon.alive(), f"{name} died: see {daemon.record['log']}")
            log = self.daemon_log(name)
            for mark in ("AddressSanitizer", "runtime error:", "assertion failed", "LeakSanitizer"):
                self.assertNotIn(mark, log, f"{name}: {mark} in {daemon.record['log']}")
