#!/usr/bin/python3
"""Preheat queue throughput: JOBS small jobs through Redis Streams with WORKERS workers.

Real processes on loopback, as tests/test_preheat_queue.py starts them: redis-server
(append-only, fsync every second: Redis's default), a manager queueing in Redis (SQLite), a
scheduler and a seed peer that join it, WORKERS preheat worker processes (each runs
`[preheat] jobs` = 2 jobs at once), and tests/origin.py serving a 4 KiB file. Each job preheats
that file under its own URL (?job=N, so each is its own task) to the seed peer. All jobs are
submitted through the API at once from one client; the manager's log gives, per job, when it
was created (`job N pending`) and when a worker started it (`job N running`), in ms.

Prints jobs per second (first submit to last end), the submit rate, and submit-to-start
latency (p50, p99, max), plus a markdown row for docs/benchmarks.md. Run it alone:

    /work/quiet.sh tools/bench/preheat_queue.py [--jobs 1000] [--workers 2]
"""
import argparse
import datetime
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
import preheattest as ph  # noqa: E402
import zflytest  # noqa: E402
from managertest import ManagerCase  # noqa: E402

LOG_TIME = re.compile(r"^(\S+Z) ")


class Bench(ManagerCase):
    backend = "sqlite"

    def runTest(self):
        pass


def stamp(line):
    text = LOG_TIME.match(line).group(1)
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()

    case = Bench()
    case.setUp()
    redis = origin = None
    try:
        origin = zflytest.Origin(case.path("origin"), case.path("origin.log"),
                                 files={"small": os.urandom(4096)})
        redis = ph.Redis(case.workdir)
        cluster = ph.Cluster(case, queue=redis.url, in_process_worker=False, lease="15s")
        cluster.scheduler()
        cluster.seed("seed-1")
        cluster.wait_seeds(1)
        for index in range(1, options.workers + 1):
            cluster.worker(f"worker-{index}")
        manager = cluster.manager.process
        start = time.time()
        ids = [cluster.submit({"type": "file", "url": origin.url(f"/small?job={index}")})["id"]
               for index in range(options.jobs)]
        submitted = time.time()
        while any(cluster.manager.ok("GET", f"/api/v1/jobs?per_page=1&state={state}")["total"]
                  for state in ("pending", "running")):  # until the last job ended
            time.sleep(0.2)
        ended = time.time()
        states = {}
        for page in range(1, options.jobs // 100 + 2):
            for job in cluster.manager.ok("GET", f"/api/v1/jobs?per_page=100&page={page}")[
                    "items"]:
                states[job["state"]] = states.get(job["state"], 0) + 1
        created, started = {}, {}
        for line in manager.log.text().splitlines():
            match = re.search(r"manager: job (\d+) (pending|running) ", line)
            if match:
                target = created if match.group(2) == "pending" else started
                target.setdefault(int(match.group(1)), stamp(line))
        waits = [started[job] - created[job] for job in ids if job in started and job in created]
        rate = options.jobs / (ended - start)
        print(f"jobs={options.jobs} workers={options.workers} states={states}")
        print(f"throughput: {rate:.1f} jobs/s ({ended - start:.1f} s first submit to last end); "
              f"submits {options.jobs / (submitted - start):.0f}/s")
        print(f"submit to start: p50 {percentile(waits, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(waits, 0.99) * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms "
              f"({len(waits)} jobs)")
        print(f"| {options.jobs} | {options.workers} | {rate:.1f} | "
              f"{options.jobs / (submitted - start):.0f} | {percentile(waits, 0.5) * 1000:.0f} | "
              f"{percentile(waits, 0.99) * 1000:.0f} | {max(waits) * 1000:.0f} |")
    finally:
        case.tearDown()
        if redis:
            redis.stop()
        if origin:
            origin.stop()


if __name__ == "__main__":
    main()
