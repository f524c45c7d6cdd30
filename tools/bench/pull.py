#!/usr/bin/python3
"""Pull benchmark: a multi-layer image pulled with skopeo and with ctr, directly from a
token-auth registry and through zfly, cold through one node and through a second node that
takes the blobs from the first; and the time to the first byte of a cold blob.

    tools/bench/pull.py [--layers 4] [--layer-size 12M] [--reps 5] [--build build]

Everything runs on loopback: docker-registry (distribution 2.8) with token auth and its token
server (tests/registry/), one image pushed to it; a zfly scheduler and nodes A and B, each with
storage (tcp:// with CURVE), fetcher and proxy (a registry mirror with the registry as its
default). The access check is on, as by default: every blob costs one HEAD per client.

Each rep, for each client:
  - direct: the client pulls from the registry itself (skopeo with --src-creds; ctr with
    --plain-http and --user);
  - via A, cold: nodes A and B start with empty caches; the client pulls through A's mirror
    (skopeo: registries.conf with the mirror, credentials stored under the mirror's address;
    ctr: hosts.toml);
  - via B: then the same through B, whose fetcher takes every blob from A.
ctr runs against its own containerd instance (fresh content store per pull; needs root). Times
are wall clock of the client command; medians. The cold time to first byte is from sending a
layer GET (with a token) to the first byte of its body (not of its head, which a proxy sends
earlier), every layer once per rep: directly, and through A with a fresh cache
(`--clients ""` measures only that). With --timeline, A logs at debug level and the report shows the proxy's timeline of
each cold blob (ms after the request: the fetcher's first answer, the layout known, the first
piece, the end) from its "p2p timeline" lines, and the fetcher's "task timeline" (ms after
the task was made: storage's STAT answer, the scheduler's "source", the layout, storage
open, the origin's first byte, the first piece written).

Prints a Markdown report (docs/benchmarks.md "Pull" has one, with its command line).
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
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
import registry as reg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dataplane import parse_size  # noqa: E402
from proxy import SwarmPair  # noqa: E402

REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the mirrors serve it


def start_nodes(workdir, build, registry, log_level):
    """A scheduler and nodes a and b (storage on tcp:// with CURVE), fresh caches each time,
    the registry their default and mapped to REGISTRY_NAME; the access check on, as by
    default (no [upstream] public)."""
    return SwarmPair(workdir, build, f"http://{registry.address}",
                     node_lines=f"log_level = {log_level}\n",
                     proxy_lines=f"registry_map = {REGISTRY_NAME}=http://{registry.address}\n",
                     timeout=20)


class Skopeo:
    def __init__(self, workdir, registry):
        self.workdir = workdir
        self.registry = registry
        self.creds = f"{reg.USER}:{reg.PASSWORD}"

    def pull(self, mirror_port=None):
        out = tempfile.mkdtemp(dir=self.workdir, prefix="skopeo-")
        if mirror_port is None:
            command = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--src-creds",
                       self.creds, f"docker://{self.registry.address}/test/app:v1",
                       f"oci:{out}:v1"]
        else:
            conf = os.path.join(out, "registries.conf")
            with open(os.path.join(ROOT, "deploy", "podman", "registries.conf")) as handle:
                text = handle.read()
            text = text.replace('"docker.io"', f'"{REGISTRY_NAME}"')
            text = text.replace("127.0.0.1:65001", f"127.0.0.1:{mirror_port}")
            with open(conf, "w") as handle:
                handle.write(text)
            auth = os.path.join(out, "auth.json")  # credentials under the mirror's address
            with open(auth, "w") as handle:
                json.dump({"auths": {f"127.0.0.1:{mirror_port}": {
                    "auth": base64.b64encode(self.creds.encode()).decode()}}}, handle)
            command = ["skopeo", "--registries-conf", conf, "copy", "--quiet", "--authfile",
                       auth, f"docker://{REGISTRY_NAME}/test/app:v1", f"oci:{out}/layout:v1"]
        start = time.monotonic()
        run(command, env=reg.skopeo_env(), timeout=300)
        elapsed = time.monotonic() - start
        shutil.rmtree(out, ignore_errors=True)
        return elapsed


class Ctr:
    """ctr against a fresh containerd per pull (an empty content store)."""

    def __init__(self, workdir, registry):
        self.workdir = workdir
        self.registry = registry

    def pull(self, mirror_port=None):
        work = tempfile.mkdtemp(dir=self.workdir, prefix="ctr-")
        sock = os.path.join(work, "c.sock")
        config = os.path.join(work, "config.toml")
        with open(config, "w") as handle:
            handle.write(f'version = 2\nroot = "{work}/root"\nstate = "{work}/state"\n'
                         'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                         f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n')
        containerd = subprocess.Popen(["containerd", "--config", config],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env=reg.skopeo_env())
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(sock):
                if time.monotonic() > deadline or containerd.poll() is not None:
                    raise RuntimeError("containerd did not start")
                time.sleep(0.05)
            user = f"{reg.USER}:{reg.PASSWORD}"
            if mirror_port is None:
                command = ["ctr", "-a", sock, "images", "pull", "--plain-http", "--user", user,
                           "--snapshotter", "native", f"{self.registry.address}/test/app:v1"]
            else:
                hosts = os.path.join(work, "certs.d", REGISTRY_NAME)
                os.makedirs(hosts)
                with open(os.path.join(ROOT, "deploy", "containerd", "hosts.toml")) as handle:
                    text = handle.read()
                text = text.replace("https://registry-1.docker.io", f"https://{REGISTRY_NAME}")
                text = text.replace("127.0.0.1:65001", f"127.0.0.1:{mirror_port}")
                with open(os.path.join(hosts, "hosts.toml"), "w") as handle:
                    handle.write(text)
                command = ["ctr", "-a", sock, "images", "pull", "--user", user, "--hosts-dir",
                           os.path.join(work, "certs.d"), "--snapshotter", "native",
                           f"{REGISTRY_NAME}/test/app:v1"]
            start = time.monotonic()
            run(command, env=reg.skopeo_env(), timeout=300)
            return time.monotonic() - start
        finally:
            containerd.send_signal(signal.SIGTERM)
            containerd.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)


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
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    workdir = tempfile.mkdtemp(prefix="zfly-pull-")
    token = reg.TokenServer(workdir)
    registry = reg.Registry(workdir, token)
    results, timelines, first_byte_timelines = {}, [], []
    try:
        layout = reg.build_image(workdir, "v1", layers=args.layers, layer_bytes=args.layer_size)
        reg.push(layout, "v1", registry, "test/app")
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                              f"{reg.USER}:{reg.PASSWORD}",
                              f"docker://{registry.address}/test/app:v1"], check=True,
                             capture_output=True, env=reg.skopeo_env(), timeout=60).stdout
        manifest = json.loads(raw)
        total = sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]
        layers = [layer["digest"] for layer in manifest["layers"]]
        clients = {"skopeo": Skopeo(workdir, registry), "ctr": Ctr(workdir, registry)}
        log_level = "debug" if args.timeline else "info"
        client_names = [name for name in args.clients.split(",") if name]
        for rep in range(args.reps):
            for name in client_names:
                client = clients[name]
                results.setdefault((name, "direct"), []).append(client.pull())
                nodes = start_nodes(workdir, build, registry, log_level)
                try:
                    results.setdefault((name, "via A"), []).append(
                        client.pull(nodes.ports["a"]))
                    results.setdefault((name, "via B"), []).append(
                        client.pull(nodes.ports["b"]))
                    if args.timeline:
                        timelines += re.findall(r"(?:p2p|task) timeline .*",
                                                nodes.log_text("a"))
                finally:
                    nodes.stop()
            # every layer once, cold through fresh nodes: one sample per layer and rep
            pull_token = token_for(token, "test/app")
            for layer in layers:
                results.setdefault(("first byte", "direct"), []).append(first_byte_ms(
                    f"http://{registry.address}/v2/test/app/blobs/{layer}", pull_token))
            nodes = start_nodes(workdir, build, registry, log_level)
            try:
                for layer in layers:
                    results.setdefault(("first byte", "via A"), []).append(first_byte_ms(
                        f"http://127.0.0.1:{nodes.ports['a']}/v2/test/app/blobs/{layer}",
                        pull_token))
                if args.timeline:
                    first_byte_timelines += re.findall(r"(?:p2p|task) timeline .*",
                                                       nodes.log_text("a"))
            finally:
                nodes.stop()
    finally:
        registry.stop()
        token.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"Image {args.layers} layers of {args.layer_size >> 20} MiB ({total / (1 << 20):.1f} "
          f"MiB with the config), {args.reps} reps, loopback, access check on; load average "
          f"{load:.1f} at the end.\n")
    print("| client | direct | via A (cold) | via B (from A) | A / direct | B / direct | all "
          "times (direct; A; B) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in client_names:
        direct = median(results[(name, "direct")])
        via_a = median(results[(name, "via A")])
        via_b = median(results[(name, "via B")])
        spread = "; ".join(", ".join(f"{value:.2f}" for value in results[(name, where)])
                           for where in ("direct", "via A", "via B"))
        print(f"| {name} | {direct:.2f} s | {via_a:.2f} s | {via_b:.2f} s | "
              f"{via_a / direct:.2f} | {via_b / direct:.2f} | {spread} |")
    direct = median(results[("first byte", "direct")])
    via_a = median(results[("first byte", "via A")])
    samples = len(results[("first byte", "via A")])
    print(f"\nTime to first byte of a cold layer (median of {samples}: each layer, each rep): "
          f"direct {direct:.2f} ms, through A {via_a:.2f} ms (+{via_a - direct:.2f} ms); all: "
          "direct " + ", ".join(f"{v:.1f}" for v in results[("first byte", "direct")])
          + "; A " + ", ".join(f"{v:.1f}" for v in results[("first byte", "via A")]) + ".")
    if first_byte_timelines:
        print("\nA's timelines of the first-byte requests (ms after the request or the task):\n")
        for line in first_byte_timelines:
            print("    " + line)
    if timelines:
        print("\nA's timelines of cold blobs (ms after the request):\n")
        for line in timelines:
            print("    " + line)


if __name__ == "__main__":
    main()
