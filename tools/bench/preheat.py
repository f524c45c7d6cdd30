#!/usr/bin/python3
"""Preheat benchmark on the testbed (issue 11): an image of LAYERS layers of LAYER_SIZE each,
preheated to the seed peers, against the same image pulled straight from the registry; and
the first pull through an edge node after the preheat, against a cold one.

    sudo tools/bench/preheat.py [--layers 10] [--layer-size 50M] [--seeds 3] [--link 100mbit]
                                [--reps 3] [--build build] [--keep]

The network is tools/testbed/zfly-testbed's (network namespaces, every link shaped to --link
both ways): the origin host runs docker-registry (distribution 2.8, token auth, an image under
private/, where anonymous pulls are refused) and its token server (tests/registry/registry.py);
the sched host runs the manager (with its preheat worker, as deploy/manager.ini) and a
scheduler; the seeds and one edge (peer1) join the manager with the testbed's edge template,
the edge with a proxy as deploy/edge.ini has it (a registry mirror on 127.0.0.1:65001, the
registry as its default_registry). Every zfly setting is the shipped default: the INI files
name addresses, keys, directories, the join token and the registry, nothing else.

Each rep, with empty caches each time (a new cluster):
  - direct, every seed: skopeo on each seed host pulls the image from the registry at once
    (what the seeds would do without zfly; the registry's upload is shared by them);
  - direct, one host: skopeo on seed1 alone;
  - preheat all_seed_peers: `zfly-preheat URL --scope all_seed_peers --wait` on the sched
    host until the job succeeded (every seed holds every blob); then the edge pulls the
    image with skopeo through its proxy (registries.conf mirror): the first edge pull after
    the preheat;
  - preheat single_seed_peer (each blob to one seed), then the same edge pull;
  - cold: a new cluster, nothing preheated, the edge pulls through its proxy.
Times are wall clock of the commands. The registry's blob bytes are read from its access log
(HEADs carry none). skopeo checks every blob against its digest as it copies.

Prints a Markdown report (medians, every run) for docs/benchmarks.md. Needs root; run it alone:

    /work/quiet.sh tools/bench/preheat.py --build build
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "registry"))
import registry as reg  # noqa: E402
import swarmtest  # noqa: E402
import zflytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dataplane import parse_size  # noqa: E402

REGISTRY_PORT = 5000
TOKEN_PORT = 5001
REPO = "private/app"
TAG = "bench"
REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the edge's mirror serves it
PROXY = "127.0.0.1:65001"  # deploy/edge.ini's [proxy] listen, in the edge's namespace
RUN_TIMEOUT = 900


def log(*parts):
    print("preheat.py:", *parts, file=sys.stderr, flush=True)


# --- the image -----------------------------------------------------------------------------

def build_image(directory, layers, layer_bytes):
    """An OCI layout holding image TAG: `layers` gzip layers, each a tar of one file of
    random bytes (incompressible: the blob is about layer_bytes). Returns (layout, {digest:
    size} of the config and layers)."""
    layout = os.path.join(directory, "layout")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as handle:
            handle.write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    entries, diff_ids = [], []
    for index in range(layers):
        member = tarfile.TarInfo(f"layer{index}.bin")
        member.size = layer_bytes
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as archive:
            archive.addfile(member, io.BytesIO(os.urandom(layer_bytes)))
        diff_ids.append("sha256:" + hashlib.sha256(tar.getvalue()).hexdigest())
        entry = put(gzip.compress(tar.getvalue(), compresslevel=1, mtime=0))
        entries.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **entry})
    config = put(json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": entries}).encode())
    with open(os.path.join(layout, "oci-layout"), "w") as handle:
        json.dump({"imageLayoutVersion": "1.0.0"}, handle)
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
            "annotations": {"org.opencontainers.image.ref.name": TAG}}]}, handle)
    sizes = {entry["digest"]: entry["size"] for entry in entries}
    sizes[config["digest"]] = config["size"]
    return layout, sizes


# --- the origin host: docker-registry and its token server ----------------------------------

def registry_blob_bytes(registry, start):
    """Blob body bytes a reg.Registry sent since its log line start (its mark()), and its
    blob GETs (HEADs carry no body)."""
    requests = [r for r in registry.blob_requests(start=start) if r[0] == "GET"]
    return sum(r[3] for r in requests if r[2] in (200, 206)), len(requests)


class Origin:
    def __init__(self, tb, state, directory):
        self.tb, self.ns = tb, state["prefix"] + "origin"
        self.ip = tb.ORIGIN_IP
        wrap = ["ip", "netns", "exec", self.ns]
        self.tokens = subprocess.Popen(
            wrap + [sys.executable, os.path.join(ROOT, "tests", "registry", "registry.py"),
                    "token-server", directory, self.ip, str(TOKEN_PORT)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        fields = dict(item.split("=", 1) for item in self.tokens.stdout.readline().split())
        token = types.SimpleNamespace(realm=fields["realm"], cert_path=fields["cert"])
        self.registry = reg.Registry(directory, token, host=self.ip, port=REGISTRY_PORT,
                                     wrap=wrap)

    @property
    def address(self):
        return self.registry.address

    def push(self, layout, repo=REPO, tag=TAG):
        self.tb.sh(self.tb.ns_argv(self.ns, [
            "skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
            f"{reg.USER}:{reg.PASSWORD}", f"oci:{layout}:{tag}",
            f"docker://{self.address}/{repo}:{tag}"]), timeout=600)

    def blob_bytes(self, start):
        return registry_blob_bytes(self.registry, start)

    def stop(self):
        self.registry.stop()
        self.tokens.terminate()
        self.tokens.wait(timeout=10)


# --- the cluster -----------------------------------------------------------------------------

def start_cluster(tb, state, zfly, zdir, log_level, manager_extra="\n[preheat]\n",
                  proxy_lines=""):
    """The manager (with its preheat worker unless manager_extra says otherwise) and a
    scheduler on the sched host, every seed, and every peer as an edge with a proxy (and
    proxy_lines in its [proxy]); returns it once every node joined, the manager counts every
    seed as active, and every node admits every node's key.

    That last wait: nodes that join within milliseconds of each other may miss each other's
    join event (a node subscribes to the manager's events once it joined; an event published
    before its subscription is live does not reach it), and learn the key only at their next
    refresh (seeds: keepalive, 5 s). A cluster's nodes are up long before anyone pulls; here
    they all start at once."""

    class EdgeCluster(tb.ZflyManagedSwarm):
        def node_ini(self, name):
            text = super().node_ini(name)
            if self.hosts[name]["role"] == "peer":  # deploy/edge.ini's proxy, this registry
                text += (f"\n[proxy]\nlisten = {PROXY}\n"
                         f"default_registry = http://{tb.ORIGIN_IP}:{REGISTRY_PORT}\n"
                         + proxy_lines)
            return text

    swarm = EdgeCluster(state, zfly, zdir, manager_extra=manager_extra, log_level=log_level)
    swarm.start()
    names = [h["name"] for h in state["hosts"] if h["role"] in ("seed", "peer")]
    for name in names:
        swarm.start_node(name)
    for name in names:
        swarm.wait_ready(name)
        swarm.wait_log(name, r"join: joined cluster=default")
    seeds = state["seeds"]
    deadline = time.monotonic() + 60
    while len([s for s in json.loads(swarm.admin("--json", "seed", "list"))["items"]
               if s["state"] == "active"]) < seeds:
        if time.monotonic() > deadline:
            raise SystemExit(f"preheat.py: fewer than {seeds} active seed peers after 60 s")
        time.sleep(0.2)
    members = 1 + len(swarm.scheduler_names) + len(names)  # the manager's key is one
    for host in (h for h in state["hosts"] if h["role"] in ("seed", "peer")):
        while (join_members(tb, host) or 0) < members:
            if time.monotonic() > deadline:
                raise SystemExit(f"preheat.py: {host['name']} does not know every node's key")
            time.sleep(0.2)
    return swarm


def join_members(tb, host):
    """zfly_join_members of host's node (its /metrics, read in its namespace)."""
    text = tb.sh(tb.ns_argv(host["ns"], ["curl", "-s", "--noproxy", "*", "--max-time", "5",
                                         f"http://{host['ip']}:{tb.ZFLY_HTTP_PORT}/metrics"]),
                 check=False)
    return zflytest.parse_metric(text, "zfly_join_members", {})


def preheat(tb, swarm, zfly_preheat, origin, scope):
    """zfly-preheat URL --scope SCOPE --wait on the sched host: (seconds, the job)."""
    argv = tb.ns_argv(swarm.sched_ns, [
        zfly_preheat, f"http://{origin.address}/v2/{REPO}/manifests/{TAG}", "--scope", scope,
        "--username", reg.USER, "--password-stdin", "--wait", "--json", "--manager",
        f"http://{tb.SCHED_IP}:{tb.ZFLY_MANAGER_API_PORT}", "--token-file",
        os.path.join(swarm.zdir, "admin-token")])
    start = time.monotonic()
    result = subprocess.run(argv, input=reg.PASSWORD + "\n", capture_output=True, text=True,
                            timeout=RUN_TIMEOUT, env=tb.ENV)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"preheat.py: zfly-preheat exit {result.returncode}: "
                         f"{result.stderr.strip()[-2000:]}")
    return elapsed, json.loads(result.stdout)


# --- pulls -------------------------------------------------------------------------------------

def check_layout(out, sizes):
    """The pulled layout holds every blob of the image, each matching its digest."""
    _, layers = reg.layout_digests(out, TAG)
    if not set(layers) <= set(sizes):
        raise SystemExit(f"preheat.py: {out}: layers {layers} are not the image's")


def direct(tb, hosts, work, sizes):
    """skopeo on every host of hosts, straight from the registry, all at once: seconds until
    the last finished."""
    barrier = tb.Barrier()
    outputs = {}
    for host in hosts:
        outputs[host["name"]] = os.path.join(work, f"direct-{host['name']}")
        barrier.add(host["name"], host["ns"], [
            "skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-creds",
            f"{reg.USER}:{reg.PASSWORD}",
            f"docker://{tb.ORIGIN_IP}:{REGISTRY_PORT}/{REPO}:{TAG}",
            f"oci:{outputs[host['name']]}:{TAG}"], os.path.join(work, f"direct-{host['name']}.log"))
    t0 = barrier.go()
    try:
        done, codes = barrier.wait_exits(t0 + RUN_TIMEOUT)
    finally:
        barrier.stop_all()
    for name, out in outputs.items():
        if codes.get(name) != 0:
            with open(os.path.join(work, f"direct-{name}.log")) as handle:
                raise SystemExit(f"preheat.py: direct pull on {name}: exit {codes.get(name)}: "
                                 f"{handle.read()[-2000:]}")
        check_layout(out, sizes)
        shutil.rmtree(out)
    return max(done.values())


def edge_pull(tb, edge, work, sizes):
    """skopeo on the edge host through its proxy (registries.conf mirror): seconds."""
    conf, authfile = reg.skopeo_mirror_files(work, REGISTRY_NAME, PROXY)
    out = os.path.join(work, "edge-pull")
    start = time.monotonic()
    tb.sh(tb.ns_argv(edge["ns"], [
        "skopeo", "--registries-conf", conf, "copy", "--quiet", "--authfile", authfile,
        f"docker://{REGISTRY_NAME}/{REPO}:{TAG}", f"oci:{out}:{TAG}"]), timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - start
    check_layout(out, sizes)
    shutil.rmtree(out)
    return elapsed


# --- the report ----------------------------------------------------------------------------------

def median(values):
    return statistics.median(values)


def report(rows, total, link_bps, command, seeds):
    bound = total * 8 / link_bps
    print(f"Command: `{command}`\n")
    print(f"Image: {total / 2**20:.0f} MiB in its blobs; every link {link_bps / 1e6:.0f} Mbit/s "
          f"both ways; one copy through one link takes at least {bound:.1f} s "
          f"(F/link; about {bound / 0.956:.1f} s at TCP's 95.6% payload share).\n")
    print("| run | median | each run | registry blob bytes / image (max) |\n|---|---|---|---|")
    for label, runs in rows:
        if not runs:
            continue
        times = [r["seconds"] for r in runs]
        print(f"| {label} | **{median(times):.1f} s** | "
              f"{', '.join(f'{t:.1f}' for t in times)} | "
              f"{max(r['registry_bytes'] for r in runs) / total:.2f} |")
    print(f"\n({seeds} seeds; registry blob bytes: body bytes of the blob GETs in docker-registry's "
          "access log during the run.)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--layer-size", default="50M")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--link", default="100mbit")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--keep", action="store_true", help="keep the testbed's work dir")
    parser.add_argument("--log-level", default="notice",
                        help="the zfly nodes' (shipped: notice; info or debug to look inside)")
    parser.add_argument("--only", default="direct,preheat,cold",
                        help="the runs to make: direct, preheat (then the edge pull), cold")
    parser.add_argument("--json", help="also write every run's results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("preheat.py: needs root (the testbed builds network namespaces)")
    zfly = os.path.join(os.path.abspath(args.build), "zfly")
    zfly_preheat = os.path.join(os.path.abspath(args.build), "zfly-preheat")
    command = "sudo tools/bench/preheat.py " + " ".join(sys.argv[1:])
    only = args.only.split(",")
    if args.keep:
        os.environ["ZF_SWARM_KEEP"] = "1"  # swarmtest.testbed_down keeps the work dir

    tb, tb_args, state = swarmtest.testbed_up("zph", 1, "1M", args.link, seeds=args.seeds)
    origin = None
    runs = {key: [] for key in ("direct_all", "direct_one", "preheat_all", "edge_after_all",
                                "preheat_single", "edge_after_single", "edge_cold")}
    try:
        work = tempfile.mkdtemp(prefix="preheat-", dir=state["work"])
        seeds = [h for h in state["hosts"] if h["role"] == "seed"]
        edge = [h for h in state["hosts"] if h["role"] == "peer"][0]
        started = time.monotonic()
        layout, sizes = build_image(work, args.layers, parse_size(args.layer_size))
        total = sum(sizes.values())
        origin = Origin(tb, state, work)
        origin.push(layout)
        log(f"image of {len(sizes) - 1} layers, {total / 2**20:.0f} MiB pushed "
            f"({time.monotonic() - started:.0f} s)")

        def measured(key, action):
            start = origin.registry.mark()
            seconds = action()
            sent, gets = origin.blob_bytes(start)
            runs[key].append({"seconds": seconds, "registry_bytes": sent, "blob_gets": gets})
            log(f"{key}: {seconds:.1f} s, registry blob bytes {sent / total:.2f} x the image "
                f"({gets} GETs)")
            return seconds

        def with_cluster(actions):
            zdir = tempfile.mkdtemp(prefix="cluster-", dir=work)
            swarm = start_cluster(tb, state, zfly, zdir, args.log_level)
            try:
                for key, action in actions:
                    measured(key, lambda: action(swarm))
            finally:
                swarm.stop()
                if not args.keep:
                    shutil.rmtree(zdir, ignore_errors=True)

        def preheat_run(scope):
            def run_preheat(swarm):
                seconds, job = preheat(tb, swarm, zfly_preheat, origin, scope)
                if job["state"] != "success":
                    raise SystemExit(f"preheat.py: job ended {job['state']}: {job}")
                return seconds
            return run_preheat

        for rep in range(1, args.reps + 1):
            log(f"rep {rep} of {args.reps}")
            if "direct" in only:
                measured("direct_all", lambda: direct(tb, seeds, work, sizes))
                measured("direct_one", lambda: direct(tb, seeds[:1], work, sizes))
            if "preheat" in only:
                with_cluster([("preheat_all", preheat_run("all_seed_peers")),
                              ("edge_after_all", lambda swarm: edge_pull(tb, edge, work, sizes))])
                with_cluster([("preheat_single", preheat_run("single_seed_peer")),
                              ("edge_after_single",
                               lambda swarm: edge_pull(tb, edge, work, sizes))])
            if "cold" in only:
                with_cluster([("edge_cold", lambda swarm: edge_pull(tb, edge, work, sizes))])
        for key in ("edge_after_all", "edge_after_single"):
            if any(r["blob_gets"] for r in runs[key]):
                log(f"WARNING: {key}: the registry got blob GETs after the preheat")
        print(f"### Preheat time: {args.layers} layers x {args.layer_size}iB to {args.seeds} seed "
              "peers\n")
        report([(f"direct: skopeo on each of the {args.seeds} seed hosts at once",
                 runs["direct_all"]),
                ("direct: skopeo on one host", runs["direct_one"]),
                (f"preheat all_seed_peers (every blob on each of {args.seeds} seeds)",
                 runs["preheat_all"]),
                ("preheat single_seed_peer (each blob on one seed)", runs["preheat_single"])],
               total, tb.parse_rate(args.link), command, args.seeds)
        print("\n### The first pull through an edge (skopeo, the edge's proxy as mirror)\n")
        report([("cold: nothing preheated", runs["edge_cold"]),
                ("after preheat all_seed_peers", runs["edge_after_all"]),
                ("after preheat single_seed_peer", runs["edge_after_single"])],
               total, tb.parse_rate(args.link), command, args.seeds)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(runs, handle, indent=1)
    finally:
        if origin:
            origin.stop()
        swarmtest.testbed_down(tb, tb_args)


if __name__ == "__main__":
    main()
