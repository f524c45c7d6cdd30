#!/usr/bin/python3
"""The durable job queue: Redis Streams with two preheat workers, and failures mid-job.

Real processes on loopback: redis-server (append-only file, started by the test), a manager
queueing in Redis, two preheat worker processes (the manager's keypair), a scheduler and a
seed peer that join the manager, and tests/origin.py serving files. Each job preheats a file
whose last byte the origin holds back until the test opens its gate, so the job is surely
mid-way when something dies:

- a worker killed with SIGKILL: the other worker reclaims the job once the lease passed
  (XAUTOCLAIM), the manager hands it over (attempt 2) only then, and the job completes; the
  origin sent the file once (the seed's download went on, the second worker joined it);
- redis-server restarted: the job completes and its stream entry is acknowledged and gone;
- the manager killed and restarted: the worker's reports reach the new manager, the job
  completes;
- a worker frozen (SIGSTOP) past its lease: the other worker takes the job over; thawed, the
  frozen one learns the job is not its own any more and stops, so the job never ran on two
  workers at once;
- without Redis (the manager's own queue, the worker in the manager's process): the manager
  killed and restarted mid-job finds the job in its database, runs it again and completes it;
- the manager's own queue, more jobs waiting than it reads from its database at once (100)
  when it is killed: restarted, it queues every one of them again, and a worker runs them all;
- with `[preheat] poll = 60s`, jobs of a small file end long before a poll: a task just sent
  is asked after 100 ms, then twice as long each time, up to the poll (small jobs used to
  wait a whole poll for the question that found them done).
"""
import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import preheattest as ph  # noqa: E402
import zflytest  # noqa: E402
from managertest import ManagerCase  # noqa: E402

SIZE = 3 << 20
LEASE = "2s"
SEED_FETCHER = "stall_timeout = 60s\n"


@unittest.skipIf(ph.redis_skip_reason(), ph.redis_skip_reason())
class QueueTest(ManagerCase):
    backend = "sqlite"

    def setUp(self):
        super().setUp()
        self.origin = zflytest.Origin(self.path("origin"), self.path("origin.log"), files={
            f"file-{index}": os.urandom(SIZE) for index in range(4)})
        self.redis = None

    def tearDown(self):
        super().tearDown()
        self.origin.stop()
        if self.redis:
            self.redis.stop()

    def cluster(self, redis=True, workers=2, in_process_worker=None, preheat_extra=""):
        if redis:
            self.redis = ph.Redis(self.workdir)
        # The file origin is public: the seed asks it no access question (a HEAD, which the
        # origin's gate would hold like any answer that reaches the file's end).
        cluster = ph.Cluster(self, queue=self.redis.url if redis else "",
                             in_process_worker=not redis if in_process_worker is None
                             else in_process_worker, lease=LEASE, preheat_extra=preheat_extra,
                             seed_extra="[upstream]\npublic = 127.0.0.1\n")
        cluster.scheduler()
        seed = cluster.seed("seed-1")
        # stalled on the gate for longer than the default stall timeout: not a failure here
        cluster.wait_seeds(1)
        self.assertIsNotNone(seed)
        if redis:
            for index in range(1, workers + 1):
                cluster.worker(f"worker-{index}")
        return cluster

    def gated_job(self, cluster, marker, name="file-0"):
        job = cluster.submit({"type": "file", "url": self.origin.url(f"/gate/{marker}/{name}"),
                              "scope": "single_seed_peer"})
        return job["id"]

    def holder(self, cluster, job_id, attempt=1, timeout=20):
        """The worker name the manager gave the job to (attempt), from its log."""
        line = cluster.manager.process.log.wait_for(
            rf"job {job_id} running worker=(\S+) attempt={attempt} ", timeout=timeout)
        return re.search(r"worker=(\S+)", line).group(1)

    def worker_process(self, cluster, worker):
        name = re.search(r"@(worker-\d+)#", worker).group(1)
        return cluster.nodes[name]

    def wait_running_on_seed(self, cluster, job_id):
        """The seed's fetcher has the file's task running (its request waits on the gate)."""
        ph.wait_until(lambda: cluster.job(job_id)["progress"]["tasks_running"] >= 1, 20,
                      "the task runs on the seed")
        cluster.nodes["seed-1"].log.wait_for(r"fetcher: task started ", timeout=20)

    def held_job(self, cluster, gate):
        """A job gated at the origin that a worker holds and the seed runs: (job id, worker)."""
        job_id = self.gated_job(cluster, gate)
        worker = self.holder(cluster, job_id)
        self.wait_running_on_seed(cluster, job_id)
        return job_id, worker

    def finished(self, cluster, job_id, gate):
        """Opens the origin's gate; the job once it ended, which must be a success."""
        self.origin.open_gate(gate)
        job = cluster.wait_job(job_id)
        self.assertEqual(job["state"], "success", job)
        return job

    def origin_bodies(self, name):
        return sum(record["bytes"] for record in self.origin.records()
                   if record["path"].endswith("/" + name) and record["method"] == "GET")

    def test_worker_killed_mid_job(self):
        cluster = self.cluster()
        job_id, first = self.held_job(cluster, "gate-kill")
        victim = self.worker_process(cluster, first)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        second = self.holder(cluster, job_id, attempt=2)
        self.assertNotEqual(second, first)
        survivor = self.worker_process(cluster, second)
        survivor.log.wait_for(rf"job {job_id} reclaimed from a silent worker", timeout=5)
        job = self.finished(cluster, job_id, "gate-kill")
        self.assertEqual(job["attempt"], 2)
        self.assertEqual(job["worker"], second)
        # the seed's download went on under the new worker: one copy from the origin
        self.assertIn(self.origin_bodies("file-0"), (SIZE, SIZE + 1))
        # and the stream is empty: the entry was acknowledged and deleted
        ph.wait_until(lambda: self.redis.cli("XLEN", "zfly:preheat:jobs") == "0", 10,
                      "the stream entry goes")

    def test_redis_restarted_mid_job(self):
        cluster = self.cluster(workers=1)
        job_id, _ = self.held_job(cluster, "gate-redis")
        self.redis.stop()
        self.redis.start()
        self.finished(cluster, job_id, "gate-redis")
        ph.wait_until(lambda: self.redis.cli("XLEN", "zfly:preheat:jobs") == "0", 10,
                      "the stream entry goes")
        # A job queued after the restart runs too: the group survived it.
        second = cluster.submit({"type": "file", "url": self.origin.url("/file-1")})
        self.assertEqual(cluster.wait_job(second["id"])["state"], "success")

    def test_manager_restarted_mid_job(self):
        cluster = self.cluster(workers=1)
        job_id, worker = self.held_job(cluster, "gate-manager")
        cluster.manager.kill()
        cluster.manager.start()
        job = self.finished(cluster, job_id, "gate-manager")
        self.assertEqual((job["worker"], job["attempt"]), (worker, 1))

    def test_frozen_worker_loses_the_job(self):
        cluster = self.cluster()
        job_id, first = self.held_job(cluster, "gate-freeze")
        frozen = self.worker_process(cluster, first)
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            second = self.holder(cluster, job_id, attempt=2)
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        self.assertNotEqual(second, first)
        # Thawed, the first worker finds its entry gone to another and stops the job.
        frozen.log.wait_for(rf"job {job_id} released: (its queue entry belongs to another "
                            r"worker now|lost: the manager gave it to another worker|Redis out)",
                            timeout=10)
        job = self.finished(cluster, job_id, "gate-freeze")
        self.assertEqual((job["worker"], job["attempt"]), (second, 2))
        # the manager refused every report of the first worker after the hand-over
        log = cluster.manager.process.log.text()
        handed = log.index(f"job {job_id} running worker={second} attempt=2")
        self.assertNotRegex(log[handed:], rf"job {job_id} (success|failure).*worker={first}")

    def test_queue_waits_for_workers(self):
        """Jobs wait in Redis while no worker runs (the metrics show how many and how old),
        and every one runs once when workers come: a job per worker at a time, none twice."""
        cluster = self.cluster(workers=0)
        manager = cluster.manager.process
        ids = [cluster.submit({"type": "file", "url": self.origin.url(f"/file-{index}")})["id"]
               for index in range(3)]
        ph.wait_until(lambda: ph.metric(manager, "zfly_preheat_queue_depth") == 3, 10,
                      "three jobs wait")
        ph.wait_until(lambda: ph.metric(manager, "zfly_preheat_queue_oldest_seconds") >= 0.5, 10,
                      "the oldest job's age grows")
        self.assertEqual(self.redis.cli("XLEN", "zfly:preheat:jobs"), "3")
        for index in (1, 2):
            cluster.worker(f"worker-{index}")
        for job_id in ids:
            job = cluster.wait_job(job_id)
            self.assertEqual((job["state"], job["attempt"]), ("success", 1), job)
        # the gauges follow the database on the manager's timer
        ph.wait_until(lambda: ph.metric(manager, "zfly_preheat_jobs", state="success") == 3, 10,
                      "the metrics count three successes")
        self.assertEqual(ph.metric(manager, "zfly_preheat_queue_depth"), 0)
        ph.wait_until(lambda: self.redis.cli("XLEN", "zfly:preheat:jobs") == "0", 10,
                      "the stream entries go")
        for index in range(3):  # each file came from the origin once
            self.assertIn(self.origin_bodies(f"file-{index}"), (SIZE, SIZE + 1))

    def test_own_queue_manager_restarted(self):
        cluster = self.cluster(redis=False)
        job_id, _ = self.held_job(cluster, "gate-own")
        cluster.manager.kill()
        cluster.manager.start()
        # Its worker died with it: the job goes back to the queue after a lease, and the new
        # worker runs it again.
        self.holder(cluster, job_id, attempt=2, timeout=30)
        job = self.finished(cluster, job_id, "gate-own")
        self.assertEqual(job["attempt"], 2)

    def test_own_queue_restart_keeps_every_job(self):
        """More jobs wait than the manager reads from its database in one go (100): killed
        and restarted, it queues every one again, and a worker process (the manager's own
        queue, over the bus) runs each once."""
        cluster = self.cluster(redis=False, workers=0, in_process_worker=False)
        ids = [cluster.submit({"type": "file", "url": self.origin.url(f"/file-0?job={index}")})[
            "id"] for index in range(120)]
        cluster.manager.kill()
        cluster.manager.start()
        cluster.manager.process.log.wait_for(r"preheat: 120 pending jobs queued again")
        cluster.worker("worker-1", extra="jobs = 8\n")
        for job_id in ids:
            job = cluster.wait_job(job_id)
            self.assertEqual((job["state"], job["attempt"]), ("success", 1), job)

    def test_small_jobs_wait_for_no_poll(self):
        cluster = self.cluster(redis=False, preheat_extra="poll = 60s\n")
        for index in (1, 2, 3):
            job = cluster.submit({"type": "file", "url": self.origin.url(f"/file-{index}")})
            # a deadline well under the poll: a job that waited for one would miss it
            job = cluster.wait_job(job["id"], timeout=30)
            self.assertEqual(job["state"], "success", job)
            self.assertEqual(job["progress"]["bytes_done"], SIZE)


if __name__ == "__main__":
    zflytest.main()
