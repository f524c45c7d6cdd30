#!/usr/bin/python3
"""Proxy benchmark: cached blob throughput through the zfly proxy next to nginx serving the same
file from disk, time to first byte (cached and uncached), and the daemon's memory with many idle
keep-alive connections.

    tools/bench/proxy.py [--size 64M] [--duration 6] [--rounds 5] [--idle 1000] [--build build]

Everything runs on loopback. nginx (one worker, sendfile on) serves a directory laid out like a
registry's blob URLs (/v2/bench/blobs/sha256:HEX) and is also the proxy's default_registry, so
the proxy's cache-miss path goes through the fetcher to that nginx. One zfly daemon runs
[storage], [fetcher] and [proxy]. The same client (wrk, one thread per 32 connections) loads
nginx and the proxy with the same URL path, in one run, one after the other:
  - throughput with 1 and with 64 concurrent streams, and the ratio proxy / nginx: --rounds
    pairs of back-to-back nginx and proxy runs each; the ratio is the median of the per-round
    ratios, all of which are shown (on a shared machine their spread says how far to trust
    it), and the servers' CPU time per GiB sent (nginx master and worker; the whole zfly
    daemon), which other load disturbs much less than throughput;
  - time to first byte (curl's time_starttransfer, median of --reps): a cached blob, and an
    uncached one (a fresh blob each time, through the fetcher from nginx);
  - VmRSS of the daemon before and with --idle keep-alive connections open and idle (each
    made one request first, so it holds whatever a served connection holds).
The proxy's /metrics says how many body bytes left with sendfile (a cache hit from the data
file) and how many with send(). Prints a Markdown report (docs/benchmarks.md "Proxy" has one,
with its command line).
"""
import argparse
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dataplane import ROOT, free_port, parse_size  # noqa: E402


def wait_listening(port, process, what, timeout=15):
    deadline = time.monotonic() + timeout
    while True:  # the listening socket, not a fixed time
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.05)


def make_blob(directory, size, seed):
    """A random blob stored under its digest; returns the URL path."""
    block = hashlib.sha256(seed).digest()
    chunk = os.urandom(1 << 20)
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as handle:
        digest = hashlib.sha256()
        written = 0
        while written < size:
            piece = (block + chunk)[: min(len(chunk) + len(block), size - written)]
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
            block = hashlib.sha256(block).digest()
    name = "sha256:" + digest.hexdigest()
    os.chmod(handle.name, 0o644)  # nginx's worker is not root
    os.rename(handle.name, os.path.join(directory, name))
    return f"/v2/bench/blobs/{name}"


class Nginx:
    def __init__(self, workdir, root):
        self.port = free_port()
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as handle:
            handle.write(f"""
daemon off; worker_processes 1; pid {workdir}/nginx.pid; error_log {workdir}/error.log;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {workdir}; proxy_temp_path {workdir}; fastcgi_temp_path {workdir};
  uwsgi_temp_path {workdir}; scgi_temp_path {workdir};
  server {{ listen 127.0.0.1:{self.port}; root {root}; }}
}}
""")
        self.process = subprocess.Popen(["nginx", "-c", conf, "-p", workdir],
                                        stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.process, "nginx")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class Zfly:
    def __init__(self, workdir, build, origin_port):
        self.port = free_port()
        self.http_port = free_port()
        ini = os.path.join(workdir, "zfly.ini")
        with open(ini, "w") as handle:
            handle.write(f"""[node]
name = bench
log_level = notice
http = 127.0.0.1:{self.http_port}

[upstream]
public = 127.0.0.1

[storage]
dir = {workdir}/cache

[fetcher]

[proxy]
listen = 127.0.0.1:{self.port}
default_registry = http://127.0.0.1:{origin_port}
max_connections = 4096
""")
        self.log = open(os.path.join(workdir, "zfly.log"), "w")
        self.process = subprocess.Popen([os.path.join(build, "zfly"), "-c", ini],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_listening(self.port, self.process, "zfly")

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def sent_bytes(self):
        """zfly_proxy_sent_bytes_total by system call ("send", "sendfile")."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return {via: float(value) for via, value in re.findall(
            r'^zfly_proxy_sent_bytes_total\{via="(\w+)"\} (\S+)$', text, re.M)}

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=15)
        self.log.close()


class SwarmPair:
    """A scheduler and two nodes, a and b, each with storage (tcp:// with CURVE, keys from
    `zfly keygen`, one allow directory), fetcher and proxy, default_registry their origin: a
    blob pulled through a's proxy lands in a's cache, and b's fetcher then takes it from a
    (the scheduler gives a as b's parent). Here for the time to first byte of a blob that is
    not in the pulling node's cache but coming down the swarm; pull.py pulls images through
    it. node_lines go into [node], sections after [bus], proxy_lines into [proxy]; a fresh
    directory under workdir each time, removed by stop()."""

    def __init__(self, workdir, build, default_registry, node_lines="", sections="",
                 proxy_lines="", timeout=15):
        zfly = os.path.join(build, "zfly")
        self.dir = tempfile.mkdtemp(dir=workdir, prefix="swarm-")
        self.timeout = timeout
        allow = os.path.join(self.dir, "allow")
        os.makedirs(allow)
        keys = {}
        for name in ("sched", "a", "b"):
            base = os.path.join(self.dir, name)
            subprocess.run([zfly, "keygen", base], check=True, capture_output=True)
            keys[name] = (base + ".key", base + ".pub")
            shutil.copyfile(base + ".pub", os.path.join(allow, name + ".pub"))
        ports = {name: free_port() for name in ("sched", "a.storage", "b.storage", "a", "b")}
        self.ports = ports
        common = f"[bus]\ncert = {{cert}}\nallow = {allow}\n"
        self.processes = {}
        self._start(zfly, "sched", f"""[node]\nname = sched\nhttp =\n{common.format(cert=keys['sched'][0])}
[scheduler]
bind = tcp://127.0.0.1:{ports['sched']}
""", ports["sched"])
        for name, other in (("a", "b"), ("b", "a")):
            self._start(zfly, name, f"""[node]\nname = {name}\nhttp =\n{node_lines}{common.format(cert=keys[name][0])}
{sections}
[storage]
dir = {self.dir}/{name}-cache
bind = tcp://127.0.0.1:{ports[name + '.storage']}

[fetcher]
schedulers = scheduler@sched

[proxy]
listen = 127.0.0.1:{ports[name]}
default_registry = {default_registry}
{proxy_lines}
[endpoints]
scheduler@sched = tcp://127.0.0.1:{ports['sched']} cert={keys['sched'][1]}
storage@{other} = tcp://127.0.0.1:{ports[other + '.storage']} cert={keys[other][1]}
""", ports[name])

    def _start(self, zfly, name, ini_text, port):
        ini = os.path.join(self.dir, name + ".ini")
        with open(ini, "w") as handle:
            handle.write(ini_text)
        log = open(os.path.join(self.dir, name + ".log"), "w")
        process = subprocess.Popen([zfly, "-c", ini], stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = (process, log)
        wait_listening(port, process, "zfly " + name, timeout=self.timeout)

    def log_text(self, name):
        with open(os.path.join(self.dir, name + ".log")) as handle:
            return handle.read()

    def stop(self):
        for process, _ in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process, log in self.processes.values():
            process.wait(timeout=15)
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk(port, path, connections, duration):
    """Bytes per second and requests per second of wrk against 127.0.0.1:port/path."""
    threads = max(1, min(connections, 2))
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d",
                          f"{duration}s", f"http://127.0.0.1:{port}{path}"],
                         check=True, capture_output=True, text=True, timeout=duration + 60).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(transfer.group(1)) * scale[transfer.group(2)], requests / duration


def cpu_seconds(pid):
    """User + system CPU time of a process and its children (nginx's worker)."""
    total = 0
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        children = []
    for each in [pid] + children:
        with open(f"/proc/{each}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def measure(pid, port, path, connections, duration):
    """wrk's bytes/s and requests/s, and the server's CPU seconds per GiB sent."""
    before = cpu_seconds(pid)
    rate, requests = wrk(port, path, connections, duration)
    return rate, requests, (cpu_seconds(pid) - before) / (rate * duration / (1 << 30))


def ttfb(port, path):
    """curl's time to the first byte of GET path (curl reads the whole body before it returns)."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "--noproxy", "*", "-w",
                          "%{http_code} %{time_starttransfer}",
                          f"http://127.0.0.1:{port}{path}"], check=True, capture_output=True,
                         text=True, timeout=120).stdout.split()
    if out[0] != "200":
        raise RuntimeError(f"GET {path}: {out[0]}")
    return float(out[1])


def idle_connections(port, count, path):
    """Opens count keep-alive connections, one small request answered on each, then idle."""
    socks = []
    request = (f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(request)
        socks.append(sock)
    for sock in socks:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("proxy closed an idle connection")
            data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(data[:100])
    return socks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("64M"))
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5,
                        help="nginx/proxy run pairs per stream count (medians reported)")
    parser.add_argument("--reps", type=int, default=5, help="time-to-first-byte samples")
    parser.add_argument("--idle", type=int, default=1000, help="idle keep-alive connections")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install {tool})")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    workdir = tempfile.mkdtemp(prefix="zfly-bench-proxy-")
    os.chmod(workdir, 0o755)
    blobs = os.path.join(workdir, "www", "v2", "bench", "blobs")
    os.makedirs(blobs)
    nginx = zfly = None
    try:
        path = make_blob(blobs, args.size, b"cached")
        nginx = Nginx(workdir, os.path.join(workdir, "www"))
        zfly = Zfly(workdir, args.build, nginx.port)
        rss_start = zfly.rss_kib()

        uncached = []
        for index in range(args.reps):
            fresh = make_blob(blobs, args.size, b"fresh%d" % index)
            uncached.append(ttfb(zfly.port, fresh))
        ttfb(zfly.port, path)  # into the cache
        cached = [ttfb(zfly.port, path) for _ in range(args.reps)]
        nginx_ttfb = [ttfb(nginx.port, path) for _ in range(args.reps)]
        swarm = SwarmPair(workdir, args.build, f"http://127.0.0.1:{nginx.port}",
                          sections="[upstream]\npublic = 127.0.0.1\n")
        try:
            from_peer = []
            for index in range(args.reps):
                shared = make_blob(blobs, args.size, b"swarm%d" % index)
                ttfb(swarm.ports["a"], shared)  # the whole blob, into a's cache
                from_peer.append(ttfb(swarm.ports["b"], shared))
        finally:
            swarm.stop()

        load_before = os.getloadavg()[0]
        sent_before = zfly.sent_bytes()
        rows = []
        for connections in (1, 64):
            pairs = [(measure(nginx.process.pid, nginx.port, path, connections, args.duration),
                      measure(zfly.process.pid, zfly.port, path, connections, args.duration))
                     for _ in range(args.rounds)]
            rows.append((connections, pairs))
        load_after = os.getloadavg()[0]
        sent_after = zfly.sent_bytes()
        rss_loaded = zfly.rss_kib()

        rss_before_idle = zfly.rss_kib()
        socks = idle_connections(zfly.port, args.idle, path)
        rss_idle = zfly.rss_kib()
        for sock in socks:
            sock.close()

        mib = 1 << 20
        print(f"Blob {args.size // mib} MiB, wrk {args.duration} s per run, {args.rounds} rounds, "
              f"nproc {os.cpu_count()}, nginx 1 worker (sendfile), zfly proxy 1 thread; "
              f"load average {load_before:.1f} before, {load_after:.1f} after.\n")
        print("| streams | nginx MiB/s | proxy MiB/s | proxy / nginx | per-round ratios "
              "| nginx CPU s/GiB | zfly CPU s/GiB | proxy req/s |")
        print("|---:|---:|---:|---:|---|---:|---:|---:|")
        for connections, pairs in rows:
            base = statistics.median(pair[0][0] for pair in pairs)
            got = statistics.median(pair[1][0] for pair in pairs)
            ratios = sorted(pair[1][0] / pair[0][0] for pair in pairs)
            base_cpu = statistics.median(pair[0][2] for pair in pairs)
            got_cpu = statistics.median(pair[1][2] for pair in pairs)
            requests = statistics.median(pair[1][1] for pair in pairs)
            spread = " ".join(f"{ratio:.2f}" for ratio in ratios)
            print(f"| {connections} | {base / mib:.0f} | {got / mib:.0f} | "
                  f"{statistics.median(ratios):.2f} | {spread} | {base_cpu:.2f} | {got_cpu:.2f} "
                  f"| {requests:.1f} |")
        via = {key: sent_after.get(key, 0) - sent_before.get(key, 0) for key in sent_after}
        total = sum(via.values()) or 1
        print(f"\nBytes the proxy wrote during the throughput runs: "
              f"{via.get('sendfile', 0) / total:.1%} with sendfile, "
              f"{via.get('send', 0) / total:.1%} with send().\n")
        print("| time to first byte (median of %d) | ms |" % args.reps)
        print("|---|---:|")
        print(f"| nginx, from disk | {statistics.median(nginx_ttfb) * 1000:.2f} |")
        print(f"| proxy, cached blob | {statistics.median(cached) * 1000:.2f} |")
        print(f"| proxy, uncached blob (fetcher from nginx) | "
              f"{statistics.median(uncached) * 1000:.2f} |")
        print(f"| proxy, blob in another node's cache (down the swarm: scheduler, that node's "
              f"storage over CURVE) | {statistics.median(from_peer) * 1000:.2f} |")
        print()
        print("| daemon VmRSS | MiB |")
        print("|---|---:|")
        print(f"| at start | {rss_start / 1024:.1f} |")
        print(f"| after the throughput runs | {rss_loaded / 1024:.1f} |")
        print(f"| with {args.idle} idle keep-alive connections | {rss_idle / 1024:.1f} "
              f"(+{(rss_idle - rss_before_idle) / 1024:.1f}, "
              f"{(rss_idle - rss_before_idle) * 1024 / args.idle:.0f} B each) |")
    finally:
        if zfly:
            zfly.stop()
        if nginx:
            nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
