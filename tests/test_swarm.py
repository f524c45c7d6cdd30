#!/usr/bin/python3
"""The swarm on the testbed: a scheduler, a seed and 5 peers, each a real zfly process in its
own network namespace at the default settings (tools/testbed/zfly-testbed writes topology and
keys only), download one 100 MiB file from an nginx origin with zfly-get at the same instant.

Checks what a user relies on: every copy is exact (sha256), the origin sends about one copy
(nginx's body bytes), a peer never restarts from zero (bytes from the origin plus bytes from
parents stay near the file size), no node is its own parent; and that downloads still complete
when a parent, the seed or the scheduler is killed with SIGKILL mid-transfer (the scheduler:
on slower links, and the origin still sends about one copy), when the origin dies (every
download ends with its error, none waits forever), when no
scheduler runs at all, and when the task's scheduler of two is killed (its task moves to the
other one); and that a scheduler frozen for a few seconds (SIGSTOP: connected, but answering
nothing) is waited for, not taken for dead. "Mid-transfer" is found by polling task.query and scheduler.state with a deadline,
never by sleeping. The harness is tests/swarmtest.py."""
import os
import signal
import sys
import time

from swarmtest import ORIGIN_LIMIT, RUN_TIMEOUT, ZFLY_GET, SwarmCase
from zflytest import main


class SwarmTest(SwarmCase):
    # --- scenarios ---------------------------------------------------------------------------

    def test_1_seed_and_peers(self):
        """5 peers and a seed: exact copies, the origin sends at most 1.05 F."""
        task_id, statuses = self.download_everywhere()
        from_parents = sum(s["bytes_from_parents"] for s in statuses.values())
        self.assertGreaterEqual(from_parents, (self.PEERS - ORIGIN_LIMIT) * self.file_size)
        self.assert_sane_graph("s1", task_id)

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
        self.assert_sane_graph("s1", task_id)

    def test_3_seed_killed(self):
        """The seed dies mid-transfer: every peer still completes. The seed was the task's
        origin fetcher, and a peer takes that over once the children report the seed failed
        (it is marked bad), not when its announces stop counting: the scheduler here keeps a
        silent host for 10 minutes, longer than the test may run."""
        self.start(scheduler_extra="heartbeat = 1s\nhost_timeout = 600s\n")
        task_id = self.launch()
        self.wait_for(lambda: 0.2 <= self.progress("seed1", task_id) < 0.9,
                      "seed mid-transfer", timeout=60)
        self.swarm.kill("seed1")
        statuses, _ = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assert_sane_graph("s1", task_id)
        metrics = self.scheduler_metrics("s1")
        self.assertGreaterEqual(metrics.get("zfly_scheduler_hosts_marked_bad_total", 0), 1)
        self.assertEqual(metrics.get("zfly_scheduler_hosts_expired_total", 0), 0, metrics)
        self.assertGreater(sum(s["bytes_from_source"] for s in statuses.values()), 0,
                           "no peer took over the origin fetch")

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
            if len(holding) == 1 and len(dumps[holding[0]]["peers"]) == self.PEERS + 1:
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
        self.assert_sane_graph(other, task_id)

    def test_7_scheduler_frozen(self):
        """The scheduler stops answering for longer than a report's deadline (3 s) while its
        connections stay up (SIGSTOP, shorter than the bus's 10 s heartbeat timeout): a slow
        scheduler is not a dead one, so no peer marks it dead or turns to the origin, and the
        origin still sends one copy."""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.1 <= self.progress("peer1", task_id) < 0.8,
                      "peer1 mid-transfer", timeout=60)
        scheduler = self.swarm.daemons["s1"].proc
        os.killpg(scheduler.pid, signal.SIGSTOP)
        try:
            time.sleep(FROZEN_S)  # the scenario itself: frozen this long, not a wait for an event
        finally:
            os.killpg(scheduler.pid, signal.SIGCONT)
        statuses, body_bytes = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assert_origin_sent_one_copy(body_bytes)
        for name in self.swarm.daemons:
            dead = [line for line in self.daemon_log(name).splitlines()
                    if "scheduler dead" in line or "no scheduler reachable" in line]
            self.assertEqual(dead, [], f"{name} gave the frozen scheduler up")


FROZEN_S = 5  # past the scheduler client's report deadline, inside the heartbeat timeout


class SchedulerKilledTest(SwarmCase):
    """The scheduler dies mid-transfer, on links slow enough (64 MiB at 50 Mbit/s: about 11 s)
    that the peers notice it (a report's deadline, 3 s) well before they finish."""
    TAG = "zk"
    LINK = "50mbit"
    FILE_SIZE = "64M"

    def test_scheduler_killed(self):
        """Downloads complete, each peer going on with the parents it has while the seed still
        fetches, so the origin still sends about one copy (when a lost scheduler sent every
        task to the origin, each peer took the rest of the file from it: 5.3 F at N = 8)."""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.05 <= self.progress("peer1", task_id) < 0.3,
                      "peer1 early in its transfer", timeout=60)
        self.swarm.kill("s1")
        statuses, body_bytes = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assert_origin_sent_one_copy(body_bytes)
        self.assertTrue(any("goes on without a scheduler" in self.daemon_log(name)
                            for name in self.peers()),
                        "no peer noticed that its scheduler was gone")


class RestartTest(SwarmCase):
    """A daemon dies mid-download (kill -9: a crash, an OOM kill) and systemd starts it again
    at once, while the peers still have most of a 128 MiB file to fetch at 50 Mbit/s (about
    22 s): a scheduler comes back knowing nothing, a seed or a peer with its cache; or a peer
    is stopped cleanly."""
    TAG = "zr"
    LINK = "50mbit"
    FILE_SIZE = "128M"

    def test_scheduler_restarted(self):
        """Every peer registers again with all it holds: the restarted scheduler knows the
        whole swarm before the downloads end, and the origin still sends one copy. (Before,
        a task that had found no scheduler reachable never asked again, so a restarted
        scheduler knew none of the running downloads: each went on with the few parents it
        had, and a peer arriving later could use none of them.)"""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.02 <= self.progress("peer1", task_id) < 0.3,
                      "peer1 early in its transfer", timeout=60)
        self.swarm.kill("s1")
        self.wait_for(lambda: any("goes on without a scheduler" in self.daemon_log(name)
                                  for name in self.peers()),
                      "a peer noticing that its scheduler is gone", timeout=30)
        self.swarm.restart("s1")

        def known_peers():
            dump = self.dump("s1", task_id)
            if not dump or not dump["found"]:
                return set()
            return {peer["host_id"] for peer in dump["peers"]}
        self.wait_for(lambda: set(self.peers()) <= known_peers(),
                      "every peer known to the restarted scheduler", timeout=RUN_TIMEOUT)
        unfinished = [name for name in self.peers() if self.progress(name, task_id) < 1.0]
        self.assertTrue(unfinished, "the peers finished before they registered again: the "
                                    "test shows nothing")
        statuses, body_bytes = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assert_origin_sent_one_copy(body_bytes)
        self.assertTrue(any("task has a scheduler again" in self.daemon_log(name)
                            for name in self.peers()))
        self.assert_daemons_clean()

    def test_peer_restarted(self):
        """A peer (peer3) restarted midway, its zfly-get run again while the others go on
        pulling, some of them from it: it goes on from the pieces it had (it fetches about
        what it lacked, not the file again), every copy is exact, and the origin still sends
        one copy."""
        self.start()
        task_id = self.launch()

        def midway():
            progress = self.progress("peer3", task_id)
            return progress if 0.3 <= progress < 0.7 else None
        had = self.wait_for(midway, "peer3 midway", timeout=60)
        self.swarm.kill("peer3")
        self.swarm.restart("peer3")
        again = self.tb.Barrier()
        host = next(h for h in self.state["hosts"] if h["name"] == "peer3")
        again.add("peer3", host["ns"], self.tb.zfly_get_argv(
            self.state, {"zfly-get": ZFLY_GET}, os.path.join(self.zdir, "peer3", "zfly-get.ini"),
            self.outputs["peer3"]), os.path.join(self.zdir, "peer3", "zfly-get-again.log"))
        again.go()
        try:
            others = [name for name in self.peers() if name != "peer3"]
            statuses, body_bytes = self.finish(task_id, others)
            _, codes = again.wait_exits(time.monotonic() + RUN_TIMEOUT)
        finally:
            again.stop_all()
        self.assertEqual(codes.get("peer3"), 0, self.daemon_log("peer3")[-2000:])
        self.assertEqual(self.tb.sha256_file(self.outputs["peer3"]), self.state["sha256"])
        self.assert_no_restart(statuses)
        self.assert_origin_sent_one_copy(body_bytes)
        status = self.query("peer3", task_id)
        fetched = status["bytes_from_source"] + status["bytes_from_parents"]
        # At most 100 ms of claims die with a killed daemon (a few pieces): what it had
        # before stays, so it fetches little more than what it lacked.
        self.assertLessEqual(fetched, (1 - had) * self.file_size + 0.05 * self.file_size,
                             f"peer3 had {had:.0%} and fetched {fetched} bytes again: {status}")
        self.assert_daemons_clean()

    def test_peer_stopped(self):
        """A peer (peer3) stopped cleanly midway (systemctl stop, an upgrade): it tells its
        scheduler that it leaves before it exits, so the scheduler forgets it at once and
        gives no child a parent that is gone (before, it kept the host for host_timeout, 15
        s, and gave it out meanwhile); the others finish with exact copies and the origin
        sends one copy."""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.2 <= self.progress("peer3", task_id) < 0.7, "peer3 midway",
                      timeout=60)
        self.swarm.kill("peer3", signal.SIGTERM)  # returns once the daemon has exited
        dump = self.dump("s1", task_id)
        self.assertIsNotNone(dump)
        self.assertNotIn("peer3", {peer["host_id"] for peer in dump["peers"]},
                         "the scheduler still schedules a peer that has stopped")
        self.assertIn("host left id=peer3", self.daemon_log("s1"))
        others = [name for name in self.peers() if name != "peer3"]
        statuses, body_bytes = self.finish(task_id, others)
        self.assert_no_restart(statuses)
        self.assert_origin_sent_one_copy(body_bytes)
        self.assert_daemons_clean(stopped=("peer3",))

    def test_seed_restarted(self):
        """The seed restarted while it fetches the file from the origin (the scheduler hears
        the same host announce again): every peer finishes and the origin sends about one
        copy, since the scheduler tells the restart by the host's new incarnation and hands
        the flight on. (Before, it kept the restarted seed as the task's origin fetcher,
        which fetched nothing any more, and every peer waited forever.)"""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.05 <= self.progress("peer1", task_id) < 0.4,
                      "peer1 early in its transfer", timeout=60)
        self.swarm.kill("seed1")
        self.swarm.restart("seed1")
        statuses, body_bytes = self.finish(task_id, self.peers())
        self.assert_no_restart(statuses)
        self.assert_origin_sent_one_copy(body_bytes)
        self.assertIn("host restarted id=seed1", self.daemon_log("s1"))
        # The seed's fetcher, announced where the scheduler's [endpoints] has it, is no
        # warning, however often it comes back.
        self.assertNotIn("fetcher route not learned", self.daemon_log("s1"))
        self.assert_daemons_clean()


class OriginKilledTest(SwarmCase):
    """The origin dies mid-transfer (nginx killed), on the same slower links: nobody can
    finish, and nobody may wait forever either. 8 peers: each then has 8 parents, the most it
    asks for, so none asks the scheduler again to fill its set."""
    TAG = "zo"
    PEERS = 8
    LINK = "50mbit"
    FILE_SIZE = "64M"

    def test_origin_killed(self):
        """Every peer's zfly-get ends with the origin's error: the seed's fetch fails after its
        retries, one peer takes the flight over and fails as well, then every other peer tries
        the origin itself at once. (Before, the peers waited on parents that would never get
        the missing pieces, forever: a child hears that the flight is free only with the ack
        of a report, and a child that receives nothing reports nothing.)"""
        self.start()
        task_id = self.launch()
        self.wait_for(lambda: 0.05 <= self.progress("peer1", task_id) < 0.5,
                      "peer1 early in its transfer", timeout=60)
        nginx = next(d for d in self.state["daemons"] if d["name"] == "nginx")
        os.killpg(nginx["pid"], signal.SIGKILL)
        _, codes = self.barrier.wait_exits(self.t0 + RUN_TIMEOUT)
        for name in self.peers():
            with open(os.path.join(self.zdir, name, "zfly-get.log"), errors="replace") as f:
                log = f.read()[-2000:]
            self.assertIn(name, codes, f"{name}: zfly-get still waiting after {RUN_TIMEOUT}s")
            self.assertNotEqual(codes[name], 0, f"{name}: {log}")
            self.assertIn("Couldn't connect to server", log, name)


if __name__ == "__main__":
    main()
