#!/usr/bin/python3
"""A cluster that grows by itself, on the testbed (network namespaces, shaped links): the
manager, schedulers that join it, a seed and peers started from one edge template that names
only the node's keypair, cache, the manager and a join-token file (no [endpoints], no allow
directory). Real zfly processes, nginx as the origin, zfly-get on every peer.

- Growth: 4 peers download a file; while they do, 16 more nodes join with the same template
  and download it too; no earlier node restarts or changes. Every copy is exact, every peer
  got its bytes from parents (none from the origin), the origin sends at most 1.05 F.
- Two schedulers that joined the manager, the one that holds the task killed mid-download:
  the task moves on the ring, the manager marks the dead one inactive, downloads complete.
- Manager outage and revocation: the manager is killed mid-download and the downloads go on;
  it comes back; a peer revoked through the API leaves the scheduler's parent graph.
The first two run on SQLite, the third on MariaDB (the manager's other tests run every case
on both; here a swarm per database would double the suite's longest test).

Needs root (network namespaces, tc), nginx and mariadb-server; skipped with a message
otherwise."""
import os
import shutil
import sys
import tempfile
import time
import unittest

import mariadb
from swarmtest import Bus, SwarmTestbed, skip_reason
from zflytest import BUILD_DIR, ZFLY

ZFLY_GET = os.path.join(BUILD_DIR, "zfly-get")
PEERS = 20
FIRST = 4
# Twenty nodes share two cores here (each has its own CPU in a real cluster): under the
# sanitizers, which cost several times the CPU, the file is halved.
FILE_SIZE = "32M" if os.environ.get("ZF_SANITIZED") else "64M"
# zfly-get's own deadline for an answer from its daemon (10 s in the testbed's runs): twenty
# daemons on two cores can take longer to answer than a lone host ever would.
ZFLY_GET_TIMEOUT = "60s"
LINK = "100mbit"  # newcomers join while the first peers still download; slower links
#                   queue more than ZMTP heartbeats tolerate behind a busy seed
RUN_TIMEOUT = 240


@unittest.skipIf(skip_reason(), skip_reason())
class ClusterTest(SwarmTestbed, unittest.TestCase):
    TAG, PEERS, FILE_SIZE, LINK = "zc", PEERS, FILE_SIZE, LINK

    def setUp(self):
        self.bus = Bus()
        self.zdir = tempfile.mkdtemp(prefix="cluster-", dir=self.state["work"])
        self.swarm = None
        self.barriers = []
        self.outputs = {}
        self.database_server = None

    def tearDown(self):
        for barrier in self.barriers:
            barrier.stop_all()
        if self.swarm:
            self.swarm.stop()
        if self.database_server:
            self.database_server.stop()
        self.bus.close()
        if self.swarm and not os.environ.get("ZF_SWARM_KEEP"):
            for name in self.swarm.daemons:
                self.check_sanitizers(name)
        if not os.environ.get("ZF_SWARM_KEEP"):
            shutil.rmtree(self.zdir, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------

    def check_sanitizers(self, name):
        try:
            with open(self.swarm.log_path(name), errors="replace") as f:
                text = f.read()
        except OSError:
            return
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in text:
                print(f"{name}: sanitizer report:\n{text[-4000:]}", file=sys.stderr)
                self.fail(f"{name}: sanitizer report")

    def peers(self, count=PEERS):
        return [f"peer{index}" for index in range(1, count + 1)]

    def start(self, nodes, **options):
        options.setdefault("fetcher_extra", "sched_fallback = 20s\n")
        self.swarm = self.tb.ZflyManagedSwarm(self.state, ZFLY, self.zdir, **options).start()
        self.join(nodes)
        return self.swarm

    def join(self, nodes):
        for name in nodes:
            self.swarm.start_node(name)
        for name in nodes:
            self.swarm.wait_ready(name)
            self.swarm.wait_log(name, r"join: joined cluster=default")

    def launch(self, names):
        barrier = self.tb.Barrier()
        self.barriers.append(barrier)
        for name in names:
            self.outputs[name] = os.path.join(self.zdir, name, "blob.bin")
            host = self.swarm.hosts[name]
            argv = self.tb.zfly_get_argv(self.state, {"zfly-get": ZFLY_GET},
                                         os.path.join(self.zdir, name, "zfly-get.ini"),
                                         self.outputs[name])
            argv[argv.index("--timeout") + 1] = ZFLY_GET_TIMEOUT
            barrier.add(name, host["ns"], argv, os.path.join(self.zdir, name, "zfly-get.log"))
        barrier.go()
        return barrier

    def finish(self, task_id, names):
        """Waits for every launched zfly-get; checks exit status and content; returns the
        peers' task.status."""
        deadline = time.monotonic() + RUN_TIMEOUT
        codes = {}
        for barrier in self.barriers:
            _, barrier_codes = barrier.wait_exits(deadline)
            codes.update(barrier_codes)
        for name in names:
            with open(os.path.join(self.zdir, name, "zfly-get.log"), errors="replace") as f:
                log = f.read()[-2000:]
            self.assertEqual(codes.get(name), 0, f"{name}: zfly-get exit {codes.get(name)}: {log}")
            self.assertEqual(self.tb.sha256_file(self.outputs[name]), self.state["sha256"],
                             f"{name}: wrong content")
        return {name: self.query(name, task_id) for name in names}

    def templates_identical(self, names):
        """Every node's INI is the edge template: equal once its own name is taken out."""
        texts = set()
        for name in names:
            with open(self.swarm.ini(name)) as f:
                text = f.read()
            self.assertNotIn("[endpoints]", text)
            self.assertNotIn("allow", text)
            texts.add(text.replace(name, "NAME").replace(self.swarm.hosts[name]["ip"], "IP"))
        self.assertEqual(len(texts), 1, "node INIs differ beyond the name")

    # --- scenarios ---------------------------------------------------------------------------

    def test_1_growth_from_4_to_20(self):
        """4 peers download; 16 more join mid-download with the same file; nobody restarts."""
        self.start(["seed1"] + self.peers(FIRST))
        log0 = self.tb.nginx_log_size(self.state)
        self.launch(self.peers(FIRST))
        task_id = self.fetch("peer1")["task_id"]
        self.wait_for(lambda: 0.05 <= self.progress("peer1", task_id) < 0.6,
                      "peer1 mid-transfer", timeout=60)
        first_logs = {name: self.swarm.log_size(name) for name in ["seed1"] + self.peers(FIRST)}
        newcomers = self.peers()[FIRST:]
        still_running = False
        for name in newcomers:  # each starts downloading as soon as it has joined
            self.join([name])
            if name == newcomers[0]:
                still_running = any(self.progress(peer, task_id) < 1.0
                                    for peer in self.peers(FIRST))
            self.launch([name])
        self.assertTrue(still_running, "the first peers finished before the cluster grew")
        statuses = self.finish(task_id, self.peers())
        body_bytes, _ = self.tb.nginx_body_bytes(self.state, log0)
        self.assert_origin_sent_one_copy(body_bytes)
        for name, status in statuses.items():
            self.assertIsNotNone(status, f"{name}: no task.status")
            self.assertEqual(status["bytes_from_source"], 0, f"{name} went to the origin: {status}")
            self.assertGreaterEqual(status["bytes_from_parents"], self.file_size)
        # The first nodes kept running: no restart line after growth, and they learned the
        # newcomers' keys from the manager's events.
        for name, offset in first_logs.items():
            self.swarm.wait_log(name, r"zfly: ready", start=0)
            with open(self.swarm.log_path(name), errors="replace") as f:
                f.seek(offset)
                self.assertNotIn("zfly: ready", f.read(), f"{name} restarted")
        hosts = self.swarm.admin("--json", "host", "list", "--all")
        self.assertEqual(hosts.count('"state": "active"'), PEERS + 2)  # peers, seed, scheduler
        self.templates_identical(self.peers())  # the seed has its own (seed = true)

    def test_2_two_schedulers_one_killed(self):
        """Two schedulers joined the manager; the task's is killed: it moves on the ring."""
        names = self.peers(6)
        self.start(["seed1"] + names, schedulers=("s1", "s2"),
                   manager_extra="keepalive = 500ms\nkeepalive_timeout = 2s\n")
        for name in ["seed1"] + names:
            self.swarm.wait_log(name, r"join: (view|joined) cluster=default .*schedulers=2 ")
        self.launch(names)
        task_id = self.fetch("peer1")["task_id"]

        def owner():
            dumps = {name: self.dump(name, task_id) for name in ("s1", "s2")}
            holding = [name for name, dump in dumps.items() if dump and dump["found"]]
            self.assertLessEqual(len(holding), 1, f"task at both schedulers: {dumps}")
            if len(holding) == 1 and len(dumps[holding[0]]["peers"]) == len(names) + 1:
                return holding[0]
            return None

        owner_name = self.wait_for(owner, "every peer registered at one scheduler")
        other = "s2" if owner_name == "s1" else "s1"
        self.assertTrue(any(self.progress(name, task_id) < 0.9 for name in names),
                        "the download ended before the scheduler could be stopped")
        self.swarm.kill(owner_name)
        self.wait_for(lambda: (self.dump(other, task_id) or {}).get("found"),
                      f"task moved to {other}", timeout=30)
        self.swarm.wait_log("manager", r"manager: expired schedulers or seed peers", timeout=15)
        for name in names:
            self.swarm.wait_log(name, r"fetcher: scheduler left the ring scheduler=scheduler@"
                                + owner_name, timeout=15)
        statuses = self.finish(task_id, names)
        for name, status in statuses.items():
            received = status["bytes_from_source"] + status["bytes_from_parents"]
            self.assertLessEqual(received, 1.10 * self.file_size, f"{name} restarted: {status}")

    def test_3_manager_outage_and_revocation_mariadb(self):
        """On MariaDB: the manager is killed mid-download, downloads go on; back, it revokes a
        peer, which leaves the scheduler's parent graph."""
        reason = mariadb.available()
        if reason:
            self.skipTest(reason)
        self.database_server = mariadb.MariaDB()
        names = self.peers(6)
        self.start(["seed1"] + names, database=self.database_server.new_database(),
                   manager_extra="refresh = 1s\n")
        log0 = self.tb.nginx_log_size(self.state)
        self.launch(names)
        task_id = self.fetch("peer1")["task_id"]
        self.wait_for(lambda: 0.05 <= self.progress("peer1", task_id) < 0.7,
                      "peer1 mid-transfer", timeout=60)
        self.swarm.kill("manager")
        self.swarm.wait_log("peer1", r"join: manager unreachable", timeout=15)
        self.finish(task_id, names)
        # The manager is not on the data path: the swarm went on as if it were there.
        body_bytes, _ = self.tb.nginx_body_bytes(self.state, log0)
        self.assert_origin_sent_one_copy(body_bytes)
        # The log offset is taken before the restart: the node may join again (it retries
        # every 2 s at most here) before start_manager has seen the ports listening.
        rejoin_from = self.swarm.log_size("peer1")
        self.swarm.start_manager()
        self.swarm.wait_log("peer1", r"join: joined cluster=default", timeout=30,
                            start=rejoin_from)
        # Revocation: peer6 is out of the cluster; the scheduler drops it.
        host_id = [line.split()[0] for line in self.swarm.admin("host", "list").splitlines()
                   if " peer6 " in f" {line} "][0]
        self.swarm.admin("host", "revoke", host_id)
        self.swarm.wait_log("s1", r"scheduler: host revoked id=peer6", timeout=5)
        self.swarm.wait_log("peer1", r"join: member key=.* revoked", timeout=5)
        dump = self.dump("s1", task_id)
        self.assertNotIn("peer6", [p["host_id"] for p in dump["peers"]])
        for peer in dump["peers"]:
            self.assertNotIn("peer6", peer.get("parents") or [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
