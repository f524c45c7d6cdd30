#!/usr/bin/python3
"""Data-plane benchmark: back-to-source and cached serving of one large file, side by side with
curl and cp in the same run, the daemon's peak memory, and a piece-length sweep.

    tools/bench/dataplane.py [--size 1G] [--reps 3] [--piece-lengths 1M,4M,16M,64M] [--build build]

Everything runs on loopback: nginx (Debian package) serves a random file from a temporary
directory, a zfly daemon with [storage] and [fetcher] caches it, zfly-get asks for it: once
as it comes (its output a hard link of the cache file), once with --copy (a file of its own). Prints a
Markdown report (paste it into docs/benchmarks.md with the command line). Times are wall-clock
medians; the page cache is warm for every contender alike (the file was just written). Next to
them, the CPU seconds (user + system) the contender used, the daemon's included for zfly-get:
on a shared machine wall-clock times swing by 2x, CPU seconds much less.
"""
import argparse
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

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text):
    match = re.fullmatch(r"(\d+)([KMG]?)", text.upper())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 512M, 1G)")
    return int(match.group(1)) * UNITS.get(match.group(2), 1)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def thread_cpu(pid):
    """{thread name: CPU seconds} of a process."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                text = handle.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        result[name] = result.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return result


def timed(command, **kwargs):
    start = time.monotonic()
    subprocess.run(command, check=True, timeout=600, **kwargs)
    return time.monotonic() - start


def timed_cpu(command, daemon=None, **kwargs):
    """(wall seconds, CPU seconds of the command and of the daemon meanwhile)."""
    cpu, daemon_cpu = children_cpu(), daemon.cpu_seconds() if daemon else 0.0
    wall = timed(command, **kwargs)
    used = children_cpu() - cpu
    if daemon:
        used += daemon.cpu_seconds() - daemon_cpu
    return wall, used


def make_file(path, size):
    chunk = os.urandom(16 << 20)
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            part = chunk[: min(len(chunk), size - written)]
            handle.write(part)
            written += len(part)


class Nginx:
    """nginx serving root on address (127.0.0.1 unless told); with wrap (an argv prefix such as
    `ip netns exec NS`), started through it, and its port probed through it too (a namespace's
    addresses are not the caller's)."""

    def __init__(self, workdir, root, address="127.0.0.1", wrap=()):
        self.port = free_port()
        self.address = address
        self.conf = os.path.join(workdir, "nginx.conf")
        self.log = os.path.join(workdir, "access.log")
        with open(self.conf, "w") as handle:
            handle.write(f"""
daemon off; worker_processes 1; pid {workdir}/nginx.pid; error_log {workdir}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {self.log}; sendfile on; tcp_nopush on;
  client_body_temp_path {workdir}; proxy_temp_path {workdir}; fastcgi_temp_path {workdir};
  uwsgi_temp_path {workdir}; scgi_temp_path {workdir};
  server {{ listen {address}:{self.port}; root {root}; }}
}}
""")
        self.process = subprocess.Popen([*wrap, "nginx", "-c", self.conf, "-p", workdir],
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.listening(wrap):  # wait for the listening socket, not for a fixed time
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)

    def listening(self, wrap):
        if wrap:  # curl exits 7 while the connection is refused, 0 on any HTTP answer
            return subprocess.run([*wrap, "curl", "-s", "-o", "/dev/null", "--max-time", "1",
                                   f"http://{self.address}:{self.port}/"]).returncode == 0
        try:
            socket.create_connection((self.address, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


class Daemon:
    def __init__(self, build, workdir, piece_length=None, storage="", fetcher=""):
        self.cache = cache = tempfile.mkdtemp(dir=workdir, prefix="cache-")
        self.ini = os.path.join(workdir, "bench.ini")
        if piece_length:
            fetcher += f"piece_length_min = {piece_length}\npiece_length_max = {piece_length}\n"
        with open(self.ini, "w") as handle:
            handle.write(f"[node]\nname = bench\nhttp =\n[upstream]\npublic = 127.0.0.1\n"
                         f"[storage]\ndir = {cache}\nbind = ipc://{workdir}/storage.sock\n"
                         f"{storage}[fetcher]\nbind = ipc://{workdir}/fetcher.sock\n{fetcher}")
        self.process = subprocess.Popen([os.path.join(build, "zfly"), "-c", self.ini],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        for line in self.process.stdout:
            if "zfly: ready" in line:
                break
        else:
            raise RuntimeError("zfly did not start")

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as handle:
            return int(re.search(r"VmHWM:\s+(\d+)", handle.read()).group(1))

    def stop(self):
        """Stops the daemon and deletes its cache: the next contender then finds the page
        cache as the previous one left it (curl's output is deleted too), instead of 1 GiB
        less free memory per run, which a VM pays for with first-touch page faults."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        shutil.rmtree(self.cache, ignore_errors=True)


def median(values):
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--piece-lengths", default="1M,2M,4M,8M,16M,64M")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = parser.parse_args()
    zfly_get = os.path.join(args.build, "zfly-get")
    workdir = tempfile.mkdtemp(prefix="zfly-bench-")
    nginx = None
    try:
        served = os.path.join(workdir, "www")
        os.makedirs(served)
        source = os.path.join(served, "blob.bin")
        make_file(source, args.size)
        nginx = Nginx(workdir, served)
        url = f"http://127.0.0.1:{nginx.port}/blob.bin"
        out = os.path.join(workdir, "out.bin")
        size_mib = args.size / (1 << 20)

        # zfly-get's output: a hard link of the cache file where it can (the default), and a
        # copy of its own (--copy), each against a fresh daemon and cache.
        runs = {"curl": [], "get": [], "cached": [], "get_copy": [], "cached_copy": [],
                "cp": []}  # (wall, cpu) each
        peaks = []
        for _ in range(args.reps):
            runs["curl"].append(timed_cpu(["curl", "-sf", "-o", out, url]))
            os.unlink(out)
            for suffix, extra in (("", []), ("_copy", ["--copy"])):
                daemon = Daemon(args.build, workdir)
                try:
                    command = [zfly_get, "-c", daemon.ini, url, "-O", out, *extra]
                    runs["get" + suffix].append(timed_cpu(command, daemon,
                                                          stderr=subprocess.DEVNULL))
                    peaks.append(daemon.peak_rss_kib())
                    os.unlink(out)
                    runs["cached" + suffix].append(timed_cpu(command, daemon,
                                                             stderr=subprocess.DEVNULL))
                    os.unlink(out)
                finally:
                    daemon.stop()
            runs["cp"].append(timed_cpu(["cp", source, out]))
            os.unlink(out)

        sweep = []
        for text in args.piece_lengths.split(","):
            daemon = Daemon(args.build, workdir, piece_length=text)
            try:
                cold = timed([zfly_get, "-c", daemon.ini, url, "-O", out], stderr=subprocess.DEVNULL)
                os.unlink(out)
                warm = timed([zfly_get, "-c", daemon.ini, url, "-O", out], stderr=subprocess.DEVNULL)
                os.unlink(out)
                sweep.append((text, cold, warm, daemon.peak_rss_kib()))
            finally:
                daemon.stop()

        def rate(seconds):
            return f"{size_mib / seconds:,.0f} MiB/s"

        print(f"Command: `{' '.join(sys.argv)}` — file {size_mib:,.0f} MiB, {args.reps} runs, medians\n")
        print("| what | time | rate | ratio | CPU (user+sys) | all times |")
        print("|---|---|---|---|---|---|")

        def row(what, key, base_key, base_name):
            wall = median([run[0] for run in runs[key]])
            cpu = median([run[1] for run in runs[key]])
            base = median([run[0] for run in runs[base_key]])
            ratio = "1.00" if key == base_key else f"{wall / base:.2f} × {base_name}"
            every = ", ".join(f"{run[0]:.2f}" for run in runs[key])
            print(f"| {what} | {wall:.2f} s | {rate(wall)} | {ratio} | {cpu:.2f} s | {every} |")

        row("curl -o (origin, loopback)", "curl", "curl", "curl")
        row("zfly-get back to source (+ daemon CPU)", "get", "curl", "curl")
        row("zfly-get --copy back to source (+ daemon CPU)", "get_copy", "curl", "curl")
        row("cp (same file)", "cp", "cp", "cp")
        row("zfly-get from cache (+ daemon CPU)", "cached", "cp", "cp")
        row("zfly-get --copy from cache (+ daemon CPU)", "cached_copy", "cp", "cp")
        print(f"\nPeak daemon memory (VmHWM) while downloading: {max(peaks) / 1024:.1f} MiB\n")
        print("| piece length | back to source | from cache | peak memory |")
        print("|---|---|---|---|")
        for text, cold, warm, peak in sweep:
            print(f"| {text} | {cold:.2f} s ({rate(cold)}) | {warm:.2f} s ({rate(warm)}) | "
                  f"{peak / 1024:.1f} MiB |")
    finally:
        if nginx:
            nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
