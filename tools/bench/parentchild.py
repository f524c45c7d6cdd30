#!/usr/bin/python3
"""Datacenter benchmark: one parent to one child (and to several children at once) on one host,
over tcp:// loopback with CURVE (the default) and without (`insecure = true`).

    tools/bench/parentchild.py [--size 4G] [--reps 3] [--modes curve,plain] [--children 1,4]
                               [--build build] [--perf DIR] [--set SECTION.KEY=VALUE]...
                               [--bound piecebench.json] [--hosts 1|2]

Node A (storage bound on tcp://127.0.0.1 with CURVE, fetcher) takes a random file from nginx
once. Each run starts fresh children (storage, fetcher; A's storage in [endpoints] with its
key) and sends each child's fetcher task.fetch with parents = [storage@a] at the same moment;
the run ends when every child's task is complete. Nothing else moves: no zfly-get output file,
no origin request (checked: every byte from parents). The child's fetcher checks every piece's
SHA-256; with --digest the task also names the content digest (the whole content is hashed
once more, as for every OCI blob).

Reported per run: the time from task.fetch to the last child's completion, the rate in Gbit/s
(the children's bytes over that time), user + system CPU seconds of each daemon, and each
daemon's peak memory during the transfer (VmHWM, reset before each run). With --bound (the JSON
of tools/bench/zfly-piecebench) each rate is also given as a fraction of the bound the machine
allows for that mode. --perf DIR records `perf record -g` of both daemons during the first run
of each mode into DIR/MODE-CHILDREN.data and prints the top symbols by thread.

--hosts 2 (root) puts node A and nginx in one network namespace and the children in another,
joined by an unshaped veth pair the run makes and removes (tools/bench/hostpair.py, names
zfpcPID-a and -b): the parent's storage and nginx listen on A's veth address, and every piece
crosses the veth (a child's only request to the origin is its HEAD asking whether it may read
the URL). Both namespaces share this machine's CPUs, so the run differs from the default one only
by the network path; × bound is then still over the one-host bound.

Needs nginx (Debian package) and the build's zfly. By default runs everything on loopback."""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, "/usr/lib/python3/dist-packages")  # Debian's pyzmq and msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from dataplane import Nginx, free_port, make_file, parse_size, thread_cpu  # noqa: E402
from hostpair import HostPair  # noqa: E402
from zflytest import BusClient  # noqa: E402

SENDER = "bench@parentchild"


class Node:
    """A zfly daemon with storage and fetcher, driven over its ipc:// sockets."""

    def __init__(self, build, workdir, name, mode, keys, storage_bind="", endpoints="",
                 overrides=(), wrap=()):
        self.name = name
        self.workdir = workdir
        self.cache = os.path.join(workdir, "cache-" + name)
        self.fetcher_endpoint = f"ipc://{workdir}/{name}-fetcher.sock"
        bus = "insecure = true\n" if mode == "plain" else f"cert = {keys[name][0]}\n"
        if mode != "plain" and name == "a":
            bus += f"allow = {workdir}/allow-a\n"
        ini = (f"[node]\nname = {name}\nhttp =\n[bus]\n{bus}"
               f"[storage]\ndir = {self.cache}\nbind = ipc://{workdir}/{name}-storage.sock"
               f"{' ' + storage_bind if storage_bind else ''}\n"
               f"[fetcher]\nbind = {self.fetcher_endpoint}\n")
        if endpoints:
            ini += "[endpoints]\n" + endpoints
        self.ini = os.path.join(workdir, name + ".ini")
        with open(self.ini, "w") as handle:
            handle.write(ini)
        argv = [os.path.join(build, "zfly"), "-c", self.ini]
        for override in overrides:
            argv += ["--set", override]
        self.log_path = os.path.join(workdir, name + ".log")
        self.log = open(self.log_path, "w+")
        self.process = subprocess.Popen([*wrap, *argv], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "zfly: ready" not in open(self.log_path).read():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"zfly {name} did not start:\n" + open(self.log_path).read())
            time.sleep(0.02)
        self.bus = BusClient(self.fetcher_endpoint, sender=SENDER, to="fetcher")

    def request(self, type_, body):
        reply, _ = self.bus.request(type_, body, timeout=60)
        if reply["type"] != "task.status":
            raise RuntimeError(f"{self.name}: {type_}: {reply}")
        return reply["body"]

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self):
        """{thread name: CPU seconds} summed over threads of the same name."""
        return thread_cpu(self.process.pid)

    def reset_peak(self):
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as handle:
            handle.write("5")  # VmHWM := VmRSS

    def rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as handle:
            return int(re.search(r"VmRSS:\s+(\d+)", handle.read()).group(1)) / 1024

    def peak_mib(self):
        with open(f"/proc/{self.process.pid}/status") as handle:
            return int(re.search(r"VmHWM:\s+(\d+)", handle.read()).group(1)) / 1024

    def stop(self, remove_cache=True):
        self.bus.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        if remove_cache:
            shutil.rmtree(self.cache, ignore_errors=True)


def wait_complete(nodes_tasks, timeout, from_parents=True):
    """Polls task.query until every (node, task id) is complete; returns {node: seconds}.
    With from_parents, a task that took any byte from the origin is an error."""
    start = time.monotonic()
    done = {}
    while len(done) < len(nodes_tasks):
        for node, task_id in nodes_tasks:
            if node.name in done:
                continue
            status = node.request("task.query", {"task_id": task_id})
            if status["state"] == "failed":
                raise RuntimeError(f"{node.name}: task failed: {status}")
            if status["state"] == "complete":
                if from_parents and status["bytes_from_source"] != 0:
                    raise RuntimeError(f"{node.name}: went to the origin: {status}")
                done[node.name] = time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise RuntimeError("transfer timed out")
        time.sleep(0.005)  # polling a status: the resolution of the measurement
    return done


def perf_top(data_path, limit=40):
    out = subprocess.run(["perf", "report", "-i", data_path, "--no-children", "--stdio",
                          "--sort", "pid,comm,dso,symbol", "--percent-limit", "0.7"],
                         capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.strip() and not line.startswith("#")
             and "%" in line.split()[0]]
    return "\n".join(lines[:limit])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("4G"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", default="curve,plain")
    parser.add_argument("--children", default="1,4")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--digest", action="store_true", help="tasks name the content digest")
    parser.add_argument("--perf", help="record perf of both daemons into this directory")
    parser.add_argument("--bound", help="zfly-piecebench --json output: report x bound")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="SECTION.KEY=VALUE for every daemon")
    parser.add_argument("--workdir", default="/var/tmp", help="where caches and the file go")
    parser.add_argument("--hosts", type=int, choices=(1, 2), default=1,
                        help="2: parent and children in two network namespaces joined by veth")
    args = parser.parse_args()
    # A TERM (a timeout, quiet.sh's caller) unwinds through the finally blocks: daemons stopped,
    # namespaces and files removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    build = os.path.abspath(args.build)
    bound = json.load(open(args.bound)) if args.bound else None
    workdir = tempfile.mkdtemp(prefix="zfly-pc-", dir=args.workdir)
    counts = [int(text) for text in args.children.split(",")]
    keys = {}
    for name in ["a"] + [f"b{index}" for index in range(max(counts))]:
        base = os.path.join(workdir, name)
        subprocess.run([os.path.join(build, "zfly"), "keygen", base], check=True,
                       stdout=subprocess.DEVNULL)
        keys[name] = (base + ".key", base + ".pub")
    os.makedirs(os.path.join(workdir, "allow-a"))
    for name in keys:
        if name != "a":
            os.link(keys[name][1], os.path.join(workdir, "allow-a", name + ".pub"))
    if args.perf:
        os.makedirs(args.perf, exist_ok=True)
    nginx = None
    pair = None
    results = []
    try:
        if args.hosts == 2:
            pair = HostPair(f"zfpc{os.getpid()}-")
            network = pair.describe()
            parent_wrap, child_wrap = pair.argv("a", []), pair.argv("b", [])
            address = pair.address("a")
        else:
            network = "loopback (tcp://127.0.0.1)"
            parent_wrap, child_wrap = [], []
            address = "127.0.0.1"
        served = os.path.join(workdir, "www")
        os.makedirs(served)
        source = os.path.join(served, "blob.bin")
        make_file(source, args.size)
        digest = ""
        if args.digest:
            digest = "sha256:" + subprocess.run(["sha256sum", source], capture_output=True,
                                                text=True, check=True).stdout.split()[0]
        # The children ask the origin whether they may read the URL (one HEAD per task): in
        # two namespaces it listens on A's veth address.
        nginx = Nginx(workdir, served, address, wrap=parent_wrap)
        url = f"http://{address}:{nginx.port}/blob.bin"
        for mode in args.modes.split(","):
            port = free_port()
            parent = Node(build, workdir, "a", mode, keys, f"tcp://{address}:{port}",
                          overrides=args.overrides, wrap=parent_wrap)
            try:
                task_id = parent.request("task.fetch", {"url": url, "digest": digest})["task_id"]
                wait_complete([(parent, task_id)], 600, from_parents=False)
                endpoint = f"storage@a = tcp://{address}:{port}"
                if mode != "plain":
                    endpoint += f" cert={keys['a'][1]}"
                for count in counts:
                    for rep in range(args.reps):
                        results.append(run(args, build, workdir, mode, keys, parent, endpoint,
                                           url, digest, count, rep, child_wrap))
                        print(json.dumps(results[-1]), file=sys.stderr)
            finally:
                parent.stop()
    finally:
        if nginx:
            nginx.stop()
        if pair:
            pair.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, results, bound, network)


def run(args, build, workdir, mode, keys, parent, endpoint, url, digest, count, rep, wrap):
    children = [Node(build, workdir, f"b{index}", mode, keys, endpoints=endpoint + "\n",
                     overrides=args.overrides, wrap=wrap) for index in range(count)]
    perf = None
    try:
        # The parent gives the heap of its last burst back once idle (zf_daemon.c, every 5 s):
        # the peak measured is then what this transfer needs, not what the last one left.
        deadline = time.monotonic() + 15
        while parent.rss_mib() > 24 and time.monotonic() < deadline:
            time.sleep(0.2)
        for node in [parent] + children:
            node.reset_peak()
        rss_start = {node.name: node.rss_mib() for node in [parent] + children}
        cpu_before = {node.name: node.cpu_seconds() for node in [parent] + children}
        threads_before = {node.name: node.thread_cpu() for node in [parent] + children}
        if args.perf and rep == 0:
            data = os.path.join(args.perf, f"{mode}-{count}.data")
            pids = ",".join(str(node.process.pid) for node in [parent] + children)
            perf = subprocess.Popen(["perf", "record", "-q", "-F", "499", "-g", "-p", pids,
                                     "-o", data], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # perf attaches before the transfer starts
        start = time.monotonic()
        tasks = [(node, node.request("task.fetch", {"url": url, "digest": digest,
                                                    "parents": ["storage@a"]})["task_id"])
                 for node in children]
        times = wait_complete(tasks, 900)
        wall = time.monotonic() - start
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        result = {
            "mode": mode, "hosts": args.hosts, "children": count, "seconds": wall,
            "gbit": count * args.size * 8 / wall / 1e9,
            "per_child_s": times,
            "cpu_s": {node.name: node.cpu_seconds() - cpu_before[node.name]
                      for node in [parent] + children},
            "peak_mib": {node.name: node.peak_mib() for node in [parent] + children},
            "rss_start_mib": rss_start,
            "threads_s": {node.name: {name: round(seconds - threads_before[node.name].get(name, 0),
                                                  2)
                                      for name, seconds in node.thread_cpu().items()}
                          for node in [parent] + children},
        }
        if perf:
            result["perf"] = data
        return result
    finally:
        for node in children:
            node.stop()


def report(args, results, bound, network):
    size_gib = args.size / (1 << 30)
    print(f"Command: `tools/bench/parentchild.py {' '.join(sys.argv[1:])}` — {size_gib:g} GiB, "
          f"{args.reps} runs each, medians\n")
    print(f"Network: {network}.")
    if bound:
        print("× bound: the rate over zfly-piecebench's one-host bound for the mode (both ends "
              "share this machine's cores"
              + (", in both namespaces: the two-host bound assumes 2 cores a side" if
                 args.hosts == 2 else "") + ").")
    print()
    print("| mode | children | time | total rate | × bound | CPU parent / children | "
          "peak memory parent / child (max) | every run |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for count in [int(text) for text in args.children.split(",")]:
            runs = [r for r in results if r["mode"] == mode and r["children"] == count]
            if not runs:
                continue
            wall = statistics.median(r["seconds"] for r in runs)
            gbit = statistics.median(r["gbit"] for r in runs)
            ratio = "-"
            if bound and mode in bound.get("bound_gbit", {}):
                ratio = f"{gbit / bound['bound_gbit'][mode]['one_host']:.2f}"
            cpu_parent = statistics.median(r["cpu_s"]["a"] for r in runs)
            cpu_children = statistics.median(
                sum(v for k, v in r["cpu_s"].items() if k != "a") for r in runs)
            peak_parent = max(r["peak_mib"]["a"] for r in runs)
            peak_child = max(max(v for k, v in r["peak_mib"].items() if k != "a") for r in runs)
            every = ", ".join(f"{r['seconds']:.2f} s" for r in runs)
            print(f"| {mode} | {count} | {wall:.2f} s | {gbit:.2f} Gbit/s | {ratio} | "
                  f"{cpu_parent:.2f} / {cpu_children:.2f} s | {peak_parent:.1f} / "
                  f"{peak_child:.1f} MiB | {every} |")
    for r in results:
        if "perf" in r:
            print(f"\nperf, {r['mode']}, {r['children']} child(ren): {r['perf']}\n")
            print("```\n" + perf_top(r["perf"]) + "\n```")


if __name__ == "__main__":
    main()
