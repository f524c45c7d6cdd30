#!/usr/bin/python3
"""Preheat queue throughput: JOBS small jobs through Redis Streams with WORKERS workers.

Real processes on loopback, as tests/test_preheat_queue.py starts them: redis-server
(append-only, fsync always, as the tests run it), a manager queueing in Redis (SQLite), a
scheduler and a seed peer that join it, WORKERS preheat worker processes, and tests/origin.py
serving a 4 KiB file. Each job preheats that file under its own URL (?job=N, so each is its own
task) to the seed peer. The jobs are submitted through the API from one client, all at once
(a burst: the last waits for the 999 before it, so p99 submit-to-start is the time the queue
takes to drain), or with --rate R, R a second (below the workers' throughput, the wait is the
queue's own latency).

Settings are the shipped ones: the manager, scheduler and seed at their defaults (INI: names,
addresses, keys, the database and the queue), log level notice; each worker is
deploy/preheat-worker.ini's [preheat] (jobs = 4 at once, lease 15 s) with the test's Redis.

The manager's log gives, per job, when it was created (`job N pending`), when a worker started
it (`job N running … attempt=A`) and when it ended (`job N success`), in ms. Prints jobs per
second (first created to last ended), the submit rate, submit-to-start latency (p50, p99,
max, nearest rank), whether every job succeeded and ran exactly once, and a Markdown row for
docs/benchmarks.md. Run it alone:

    /work/quiet.sh tools/bench/preheat_queue.py [--jobs 1000] [--workers 2] [--reps 3]
                                                [--rate R]
"""
import argparse
import configparser
import datetime
import math
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
import preheattest as ph  # noqa: E402
import zflytest  # noqa: E402
from managertest import ManagerCase  # noqa: E402

LOG_TIME = re.compile(r"^(\S+Z) ")
JOB_LINE = re.compile(r" manager: job (\d+) (pending|running|success|failure|cancelled)\b(.*)")


class Bench(ManagerCase):
    backend = "sqlite"

    def runTest(self):
        pass


def stamp(line):
    text = LOG_TIME.match(line).group(1)
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def percentile(values, fraction):
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def shipped_worker_keys():
    """deploy/preheat-worker.ini's [preheat] keys, but where the queue and manager are."""
    parser = configparser.ConfigParser(inline_comment_prefixes=None)
    parser.read(os.path.join(ROOT, "deploy", "preheat-worker.ini"))
    return "".join(f"{key} = {value}\n" for key, value in parser["preheat"].items()
                   if key not in ("queue", "manager"))


def run(jobs, workers, rate=0, log_level="notice", keep=False):
    case = Bench()
    case.setUp()
    redis = origin = None
    try:
        origin = zflytest.Origin(case.path("origin"), case.path("origin.log"),
                                 files={"small": os.urandom(4096)})
        redis = ph.Redis(case.workdir)
        cluster = ph.Cluster(case, queue=redis.url, in_process_worker=False, shipped=True,
                             log_level=log_level, fetcher_extra="")
        cluster.scheduler()
        cluster.seed("seed-1")
        cluster.wait_seeds(1)
        worker_keys = shipped_worker_keys()
        for index in range(1, workers + 1):
            cluster.worker(f"worker-{index}", extra=worker_keys)
        start = time.time()
        ids = []
        for index in range(jobs):
            if rate:  # the index-th job is due index / rate seconds after the first
                time.sleep(max(0.0, start + index / rate - time.time()))
            ids.append(cluster.submit({"type": "file",
                                       "url": origin.url(f"/small?job={index}")})["id"])
        submitted = time.time()
        while any(cluster.manager.ok("GET", f"/api/v1/jobs?per_page=1&state={state}")["total"]
                  for state in ("pending", "running")):  # until the last job ended
            time.sleep(0.2)
        states = {}
        for page in range(1, jobs // 100 + 2):
            for job in cluster.manager.ok("GET", f"/api/v1/jobs?per_page=100&page={page}")[
                    "items"]:
                states[job["state"]] = states.get(job["state"], 0) + 1
        manager = cluster.manager.process
        manager.stop()
        manager.log.wait_closed(30)  # every line read
        created, started, ended, runs = {}, {}, {}, {}
        for line in manager.log.lines:
            match = JOB_LINE.search(line)
            if not match:
                continue
            job, what = int(match.group(1)), match.group(2)
            if what == "pending" and "type=" in match.group(3):
                created.setdefault(job, stamp(line))
            elif what == "running":
                started.setdefault(job, stamp(line))
                runs[job] = runs.get(job, 0) + 1
            elif what != "pending":
                ended[job] = stamp(line)
        waits = [started[job] - created[job] for job in ids if job in started and job in created]
        span = max(ended.values()) - min(created.values())
        return {"jobs": jobs, "workers": workers, "rate_asked": rate, "states": states,
                "rate": jobs / span, "span": span, "submit_rate": jobs / (submitted - start),
                "p50": percentile(waits, 0.5), "p99": percentile(waits, 0.99),
                "max": max(waits), "measured": len(waits),
                "ran_once": sum(1 for job in ids if runs.get(job) == 1),
                "worker_keys": worker_keys.strip().replace("\n", ", ")}
    finally:
        if keep:
            os.environ["ZF_KEEP_TEST_DIRS"] = "1"
        case.tearDown()  # stops every process and reads its log to the end
        if keep:
            for process in case.processes:
                with open(case.path(process.name + ".log"), "w") as handle:
                    handle.write(process.log.text())
        if redis:
            redis.stop()
        if origin:
            origin.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0,
                        help="jobs submitted a second (default 0: all at once)")
    parser.add_argument("--log-level", default="notice", help="of every process (shipped: "
                        "notice; info or debug to see a job's steps)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the directory")
    options = parser.parse_args()
    results = []
    for rep in range(options.reps):
        result = run(options.jobs, options.workers, options.rate, options.log_level,
                     options.keep)
        results.append(result)
        print(f"run {rep + 1}: jobs={result['jobs']} workers={result['workers']} "
              f"({result['worker_keys']}) states={result['states']} ran once: "
              f"{result['ran_once']}/{result['jobs']}; {result['rate']:.1f} jobs/s "
              f"({result['span']:.1f} s first created to last ended), submits "
              f"{result['submit_rate']:.0f}/s; submit to start p50 {result['p50'] * 1000:.0f} "
              f"ms, p99 {result['p99'] * 1000:.0f} ms, max {result['max'] * 1000:.0f} ms "
              f"({result['measured']} jobs)", flush=True)
    every_ok = all(r["states"] == {"success": r["jobs"]} and r["ran_once"] == r["jobs"]
                   for r in results)

    rates = ", ".join(f"{r['rate']:.1f}" for r in results)

    def med(key, scale=1):
        return statistics.median(r[key] * scale for r in results)
    submitted = f"{options.rate:g}/s" if options.rate else "at once"
    print(f"\n| jobs | submitted | workers | jobs/s (median) | submit→start p50 | p99 | max | "
          f"every job succeeded, ran once | runs (jobs/s) |\n|---|---|---|---|---|---|---|---|---|\n"
          f"| {options.jobs} | {submitted} | {options.workers} | {med('rate'):.1f} | "
          f"{med('p50', 1000):.0f} ms "
          f"| {med('p99', 1000):.0f} ms | {med('max', 1000):.0f} ms | "
          f"{'yes' if every_ok else 'NO'} | {rates} |")


if __name__ == "__main__":
    main()
