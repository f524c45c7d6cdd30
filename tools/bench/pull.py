#!/usr/bin/python3
"""Pull benchmark: a multi-layer image pulled with skopeo and with ctr, directly from a
token-auth registry and through zfly, cold through one node and through a second node that
takes the blobs from the first; and, on loopback, the time to the first byte of a cold blob.

    tools/bench/pull.py [--layers 4] [--layer-size 12M] [--reps 5] [--build build]
    sudo tools/bench/pull.py --testbed [--rate 100mbit] [--layers 4] [--layer-size 12M] ...

Loopback (the default): docker-registry (distribution 2.8) with token auth and its token
server (tests/registry/), one image pushed to it; a zfly scheduler and nodes A and B, each with
storage (tcp:// with CURVE), fetcher and proxy (a registry mirror with the registry as its
default) (proxy.py's SwarmPair).

Testbed (--testbed, needs root): tools/testbed/zfly-testbed's network of namespaces (a prefix
of this run's own, removed at the end; no host has a route out), every link shaped to --rate
both ways. The origin host runs the registry and its token server (preheat.py's Origin); the
sched host the manager and a scheduler; hosts A and B (the testbed's peer1 and peer2) each a
node as deploy/edge.ini has it, joined to the manager, its proxy on 127.0.0.1:65001 in the
host's namespace (preheat.py's start_cluster), at the shipped settings. The clients run on the
node's host, in its namespace, as with a node-local mirror: direct is the client on A pulling
from the registry over A's link; via A through A's mirror; via B through B's mirror, B's
fetcher taking the blobs from A (A's upload, B's download). No first-byte measurement there:
its target is on loopback.

In both, the access check is on, as by default: a cold blob through A costs no HEAD (A's
first range, sent with the client's token, is the proof), one through B a HEAD (B takes the
bytes from A). Each rep, for each client:
  - direct: the client pulls from the registry itself (skopeo with --src-creds; ctr with
    --plain-http and --user);
  - via A, cold: nodes A and B start with empty caches; the client pulls through A's mirror
    (skopeo: registries.conf with the mirror, credentials stored under the mirror's address;
    ctr: hosts.toml);
  - via B: then the same through B, whose fetcher takes every blob from A.
ctr runs against its own containerd instance (tests/containerdtest.py; a fresh content store
per pull, in the pulling host's namespace; needs root). Times are wall clock of the client
command; medians. skopeo's copy is checked blob by blob against the digests afterwards
(containerd checks its own). The registry's blob bytes are the body bytes of the blob GETs in
its access log during each pull (HEADs carry none): direct and via A should be one copy of
the image, via B none.

On loopback, the cold time to first byte is from sending a layer GET (with a token) to the
first byte of its body (not of its head, which a proxy sends earlier), every layer once per
rep: directly, through A with a fresh cache, then through B, which takes each layer from
A (`--clients ""` measures only that). With
--timeline, A logs at debug level and the report shows the proxy's timeline of each cold blob
(ms after the request: the fetcher's first answer, the layout known, the first piece, the end)
from its "p2p timeline" lines, and the fetcher's "task timeline" (ms after the task was made:
storage's STAT answer, the scheduler's "source", the layout, storage open, the origin's first
byte, the first piece written).

On loopback, each pull's CPU time is counted too (user + system, every thread): the client
(skopeo; ctr and its containerd), the registry with its token server (which runs in this
script), and zfly's daemons. Everything shares this machine's cores, so total CPU over the
cores is a floor under the wall time of a pull here: when that floor through a node is above
1.1 x the direct pull's time, the machine cannot meet that target on loopback, whatever zfly's
waits.

Prints a Markdown report (docs/benchmarks.md "Pull" has them, with their command lines). Run
it alone: /work/quiet.sh tools/bench/pull.py ...
"""
import argparse
import base64
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "registry"))
import containerdtest  # noqa: E402
import registry as reg  # noqa: E402
import swarmtest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import preheat  # noqa: E402
from dataplane import parse_size  # noqa: E402
from proxy import SwarmPair  # noqa: E402

REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the mirrors serve it
REPO, TAG = "test/app", "v1"
RUN_TIMEOUT = 600


def log(*parts):
    print("pull.py:", *parts, file=sys.stderr, flush=True)


# --- where it runs: the registry, the nodes, the hosts the clients run on -------------------

class Loopback:
    """Everything on loopback: the registry and its token server here, a scheduler and nodes a
    and b (storage on tcp:// with CURVE), fresh caches for each start_nodes(), the registry
    their default and mapped to REGISTRY_NAME; the access check on, as by default (no
    [upstream] public). The clients run here too."""
    name = "loopback"

    def __init__(self, build, log_level):
        self.build, self.log_level = build, log_level
        self.workdir = tempfile.mkdtemp(prefix="zfly-pull-")
        self.token = reg.TokenServer(self.workdir)
        self.registry = reg.Registry(self.workdir, self.token)

    def push(self, layout):
        reg.push(layout, TAG, self.registry, REPO)

    def wrap(self, node):
        return []

    def cpu_pids(self, nodes):
        """The processes whose CPU a pull counts, by group (the token server is this script's
        thread, counted with the client's Pull)."""
        zfly = [process.pid for process, _ in nodes.processes.values()] if nodes else []
        return {"registry": [self.registry.process.pid], "zfly": zfly}

    def start_nodes(self):
        return SwarmPair(self.workdir, self.build, f"http://{self.registry.address}",
                         node_lines=f"log_level = {self.log_level}\n",
                         proxy_lines=f"registry_map = {REGISTRY_NAME}="
                                     f"http://{self.registry.address}\n", timeout=20)

    def mirror(self, nodes, node):
        return f"127.0.0.1:{nodes.ports[node]}"

    def log_text(self, nodes, node):
        return nodes.log_text(node)

    def stop_nodes(self, nodes):
        nodes.stop()

    def stop(self):
        self.registry.stop()
        self.token.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Testbed:
    """The testbed's namespaces (see the module's doc): the registry on the origin host, a
    new cluster (manager, scheduler, nodes on A and B, empty caches) for each start_nodes(),
    the clients in A's or B's namespace."""
    name = "testbed"

    def __init__(self, build, rate, log_level):
        self.zfly, self.log_level = os.path.join(build, "zfly"), log_level
        self.tb, self.tb_args, self.state = swarmtest.testbed_up("zpl", 2, "1M", rate, seeds=0)
        self.origin = None
        try:
            peers = [h for h in self.state["hosts"] if h["role"] == "peer"]
            self.hosts = {"a": peers[0], "b": peers[1]}
            self.workdir = tempfile.mkdtemp(prefix="pull-", dir=self.state["work"])
            self.origin = preheat.Origin(self.tb, self.state, self.workdir)
        except BaseException:
            self.stop()
            raise
        self.registry = self.origin.registry

    def push(self, layout):
        self.origin.push(layout, REPO, TAG)

    def wrap(self, node):
        return self.tb.ns_argv(self.hosts[node]["ns"], [])

    def cpu_pids(self, nodes):
        """Not counted here: the links, not the CPU, bound a pull on the testbed."""
        return {}

    def start_nodes(self):
        zdir = tempfile.mkdtemp(prefix="cluster-", dir=self.workdir)
        return preheat.start_cluster(
            self.tb, self.state, self.zfly, zdir, self.log_level,
            proxy_lines=f"registry_map = {REGISTRY_NAME}=http://{self.registry.address}\n")

    def mirror(self, nodes, node):
        return preheat.PROXY

    def log_text(self, nodes, node):
        with open(nodes.log_path(self.hosts[node]["name"]), errors="replace") as handle:
            return handle.read()

    def stop_nodes(self, nodes):
        nodes.stop()
        shutil.rmtree(nodes.zdir, ignore_errors=True)

    def stop(self):
        try:
            if self.origin:
                self.origin.stop()
        finally:
            swarmtest.testbed_down(self.tb, self.tb_args)


# --- the clients ------------------------------------------------------------------------------

class Pull:
    """One client command: its wall time, and the CPU its processes used meanwhile (the
    command and a daemon of the client's own, such as containerd) and this script (the
    token server's thread)."""

    def __init__(self, seconds, client_cpu, script_cpu):
        self.seconds, self.client_cpu, self.script_cpu = seconds, client_cpu, script_cpu


class CpuMeter:
    """Started before a client's command, stopped after it: a Pull."""

    def __init__(self, daemon_pid=None):
        self.daemon_pid = daemon_pid
        self.daemon = process_cpu(daemon_pid) if daemon_pid else 0.0
        self.children, self.own = children_cpu(), own_cpu()
        self.start = time.monotonic()

    def stop(self):
        seconds = time.monotonic() - self.start
        daemon = process_cpu(self.daemon_pid) - self.daemon if self.daemon_pid else 0.0
        return Pull(seconds, children_cpu() - self.children + daemon, own_cpu() - self.own)


class Skopeo:
    def __init__(self, workdir):
        self.workdir = workdir

    def pull(self, wrap, registry=None, mirror=None):
        """A Pull of `skopeo copy` run under wrap, from registry (HOST:PORT) itself or
        through mirror (HOST:PORT); then every blob copied is checked against its digest."""
        out = tempfile.mkdtemp(dir=self.workdir, prefix="skopeo-")
        layout = f"oci:{out}/layout:{TAG}"
        if mirror is None:
            command = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-creds",
                       f"{reg.USER}:{reg.PASSWORD}", f"docker://{registry}/{REPO}:{TAG}", layout]
        else:  # deploy/podman/registries.conf, credentials under the mirror's address
            conf, auth = reg.skopeo_mirror_files(out, REGISTRY_NAME, mirror)
            command = ["skopeo", "--registries-conf", conf, "copy", "--quiet", "--authfile",
                       auth, f"docker://{REGISTRY_NAME}/{REPO}:{TAG}", layout]
        meter = CpuMeter()
        run([*wrap, *command], env=reg.skopeo_env(), timeout=RUN_TIMEOUT)
        result = meter.stop()
        reg.layout_digests(os.path.join(out, "layout"), TAG)
        shutil.rmtree(out, ignore_errors=True)
        return result


class Ctr:
    """ctr against a fresh containerd per pull (an empty content store), both under wrap."""

    def __init__(self, workdir):
        self.workdir = workdir

    def pull(self, wrap, registry=None, mirror=None):
        """A Pull of `ctr images pull` (native snapshotter), from registry (HOST:PORT) itself
        or through mirror (127.0.0.1:PORT) with deploy/containerd/hosts.toml."""
        work = tempfile.mkdtemp(dir=self.workdir, prefix="ctr-")
        containerd = containerdtest.Containerd(work, "containerd", wrap=wrap)
        try:
            user = f"{reg.USER}:{reg.PASSWORD}"
            meter = CpuMeter(containerd.process.pid)
            if mirror is None:
                result = containerd.ctr("images", "pull", "--plain-http", "--user", user,
                                        "--snapshotter", "native", f"{registry}/{REPO}:{TAG}",
                                        check=False, timeout=RUN_TIMEOUT)
            else:
                hosts = containerdtest.hosts_dir(work, REGISTRY_NAME,
                                                 int(mirror.rpartition(":")[2]))
                result = containerd.pull(hosts, f"{REGISTRY_NAME}/{REPO}:{TAG}", "--user", user)
            pulled = meter.stop()
            if result.returncode != 0:
                raise RuntimeError(f"ctr pull failed ({result.returncode}):\n"
                                   f"{result.stdout}{result.stderr}")
            return pulled
        finally:
            containerd.stop()
            shutil.rmtree(work, ignore_errors=True)


def image_blobs(layout):
    """(bytes of the config and the layers, [layer digests]) of image TAG in an OCI layout."""
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    entry = next(m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == TAG)
    with open(os.path.join(layout, "blobs", *entry["digest"].split(":"))) as handle:
        manifest = json.load(handle)
    total = sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
    return total, [layer["digest"] for layer in manifest["layers"]]


def token_for(token_server, repo):
    import urllib.request
    url = f"{token_server.realm}?service={reg.SERVICE}&scope=repository:{repo}:pull"
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(
        f"{reg.USER}:{reg.PASSWORD}".encode()).decode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.load(response)["token"]


def run(command, **kwargs):
    """subprocess.run that says what the command printed when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])}… failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result


def first_byte_ms(url, token):
    """ms from sending the GET to the first byte of the body (not of the head: a proxy sends
    its head before the body's first byte exists), the whole body read."""
    parts = urllib.parse.urlsplit(url)
    start = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: "
                     f"Bearer {token}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError(f"{url}: connection closed before the body")
            data += chunk
            head, found, body = data.partition(b"\r\n\r\n")
            if found and body:
                elapsed = (time.monotonic() - start) * 1000
                break
        if head.split(b" ", 2)[1:2] != [b"200"]:
            raise RuntimeError(f"{url}: {head[:200]!r}")
        while sock.recv(1 << 20):  # the rest, as a client would
            pass
    return elapsed


def process_cpu(pid):
    """CPU seconds (user + system, all threads) process pid has used so far; 0 once gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    """CPU seconds of this script's waited-for children so far (the clients' commands)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu():
    """CPU seconds of this script so far: the token server is a thread of it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median(values):
    return statistics.median(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--layer-size", type=parse_size, default=parse_size("12M"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--clients", default="skopeo,ctr")
    parser.add_argument("--timeline", action="store_true")
    parser.add_argument("--testbed", action="store_true",
                        help="the registry and the nodes in namespaces behind shaped links")
    parser.add_argument("--rate", default="100mbit", help="every testbed link, both ways")
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    # loopback: info, as before; the testbed: the shipped notice
    log_level = "debug" if args.timeline else "notice" if args.testbed else "info"
    command = "tools/bench/pull.py " + " ".join(sys.argv[1:])
    site = Testbed(build, args.rate, log_level) if args.testbed else Loopback(build, log_level)
    results, sent, timelines, first_byte_timelines, b_timelines = {}, {}, [], [], []
    cpu = {}  # (client, mode): [{"client": s, "registry": s, "zfly": s}], loopback only
    client_names = [name for name in args.clients.split(",") if name]
    try:
        layout = reg.build_image(site.workdir, TAG, layers=args.layers,
                                 layer_bytes=args.layer_size)
        site.push(layout)
        total, layers = image_blobs(layout)
        clients = {"skopeo": Skopeo(site.workdir), "ctr": Ctr(site.workdir)}

        def measure(name, where, pull, nodes=None):
            start = site.registry.mark()
            pids = site.cpu_pids(nodes)
            before = {pid: process_cpu(pid) for group in pids.values() for pid in group}
            pulled = pull()
            used = {group: sum(process_cpu(pid) - before[pid] for pid in members)
                    for group, members in pids.items()}
            seconds = pulled.seconds
            if pids:
                cpu.setdefault((name, where), []).append({
                    "client": pulled.client_cpu,
                    "registry": used["registry"] + pulled.script_cpu,
                    "zfly": used["zfly"]})
            blob_bytes, gets = preheat.registry_blob_bytes(site.registry, start)
            results.setdefault((name, where), []).append(seconds)
            sent.setdefault((name, where), []).append(blob_bytes)
            log(f"{name} {where}: {seconds:.2f} s, registry blob bytes {blob_bytes / total:.2f} "
                f"x the image ({gets} GETs)")

        for rep in range(args.reps):
            log(f"rep {rep + 1} of {args.reps}")
            for name in client_names:
                client = clients[name]
                measure(name, "direct",
                        lambda: client.pull(site.wrap("a"), registry=site.registry.address))
                nodes = site.start_nodes()
                try:
                    for node, where in (("a", "via A"), ("b", "via B")):
                        measure(name, where, lambda: client.pull(
                            site.wrap(node), mirror=site.mirror(nodes, node)), nodes)
                    if args.timeline:
                        timelines += re.findall(r"(?:p2p|task) timeline .*",
                                                site.log_text(nodes, "a"))
                finally:
                    site.stop_nodes(nodes)
            if args.testbed:
                continue
            # every layer once, cold through fresh nodes: one sample per layer and rep
            pull_token = token_for(site.token, REPO)
            for layer in layers:
                results.setdefault(("first byte", "direct"), []).append(first_byte_ms(
                    f"http://{site.registry.address}/v2/{REPO}/blobs/{layer}", pull_token))
            nodes = site.start_nodes()
            try:
                # through A (cold), then through B, which takes each layer from A's pieces
                for node, kept in (("a", first_byte_timelines), ("b", b_timelines)):
                    for layer in layers:
                        results.setdefault(("first byte", f"via {node.upper()}"), []).append(
                            first_byte_ms(
                                f"http://{site.mirror(nodes, node)}/v2/{REPO}/blobs/{layer}",
                                pull_token))
                    if args.timeline:
                        kept.extend(re.findall(r"(?:p2p|task) timeline .*",
                                               site.log_text(nodes, node)))
            finally:
                site.stop_nodes(nodes)
    finally:
        site.stop()

    load = os.getloadavg()[0]
    print(f"Command: `{command}`\n")
    where = "loopback"
    if args.testbed:
        bound = total * 8 / swarmtest.load_testbed().parse_rate(args.rate)
        where = (f"testbed, every link (registry, scheduler, A, B) {args.rate} both ways; one "
                 f"copy through one link takes at least {bound:.2f} s")
    print(f"Image {args.layers} layers of {args.layer_size >> 20} MiB ({total / (1 << 20):.1f} "
          f"MiB with the config), {args.reps} reps, {where}; access check on; zfly log_level "
          f"{log_level}; load average {load:.1f} at the end.\n")
    print("| client | direct | via A (cold) | via B (from A) | A / direct | B / direct | all "
          "times (direct; A; B) | registry blob bytes / image, max (direct; A; B) |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    modes = ("direct", "via A", "via B")
    for name in client_names:
        direct, via_a, via_b = (median(results[(name, mode)]) for mode in modes)
        spread = "; ".join(", ".join(f"{value:.2f}" for value in results[(name, mode)])
                           for mode in modes)
        copies = "; ".join(f"{max(sent[(name, mode)]) / total:.2f}" for mode in modes)
        print(f"| {name} | {direct:.2f} s | {via_a:.2f} s | {via_b:.2f} s | "
              f"{via_a / direct:.2f} | {via_b / direct:.2f} | {spread} | {copies} |")
    if cpu:
        cores = os.cpu_count()
        print(f"\nCPU per pull (medians, s; user + system of every thread): the client (ctr: with "
              f"its containerd), the registry (with its token server), zfly's daemons. The "
              f"floor is the total over this machine's {cores} cores: no pull here can take "
              f"less wall time; floor / direct is the least ratio to direct a pull through a "
              f"node can reach on this machine.\n")
        print("| client | mode | wall | client | registry | zfly | total | floor | floor / "
              "direct |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in client_names:
            direct = median(results[(name, "direct")])
            for mode in modes:
                parts = {key: median([row[key] for row in cpu[(name, mode)]])
                         for key in ("client", "registry", "zfly")}
                total = median([sum(row.values()) for row in cpu[(name, mode)]])
                floor = total / cores
                print(f"| {name} | {mode} | {median(results[(name, mode)]):.2f} | "
                      f"{parts['client']:.2f} | {parts['registry']:.2f} | {parts['zfly']:.2f} | "
                      f"{total:.2f} | {floor:.2f} | {floor / direct:.2f} |")
    if ("first byte", "direct") in results:
        direct = median(results[("first byte", "direct")])
        via_a = median(results[("first byte", "via A")])
        via_b = median(results[("first byte", "via B")])
        samples = len(results[("first byte", "via A")])
        print(f"\nTime to first byte of a cold layer (median of {samples}: each layer, each "
              f"rep): direct {direct:.2f} ms, through A {via_a:.2f} ms (+{via_a - direct:.2f} "
              f"ms), through B from A {via_b:.2f} ms (+{via_b - direct:.2f} ms); all: direct "
              + ", ".join(f"{v:.1f}" for v in results[("first byte", "direct")])
              + "; A " + ", ".join(f"{v:.1f}" for v in results[("first byte", "via A")])
              + "; B " + ", ".join(f"{v:.1f}" for v in results[("first byte", "via B")]) + ".")
    if first_byte_timelines:
        print("\nA's timelines of the first-byte requests (ms after the request or the task):\n")
        for line in first_byte_timelines:
            print("    " + line)
    if b_timelines:
        print("\nB's timelines of the first-byte requests (ms after the request or the task):\n")
        for line in b_timelines:
            print("    " + line)
    if timelines:
        print("\nA's timelines of cold blobs (ms after the request):\n")
        for line in timelines:
            print("    " + line)


if __name__ == "__main__":
    main()
