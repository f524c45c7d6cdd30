#!/usr/bin/python3
"""Large files on one quiet node: zfly-get back to source against curl, alternating, in the
same runs, with every run's success, the daemon's peak memory and where the CPU went.

    tools/bench/largefile.py [--size 8G] [--reps 10] [--build build] [--dir /var/tmp]
                             [--copy] [--threads]

nginx (Debian package) serves a file of --size pseudo-random bytes (AES-CTR of zeros, made
with openssl) from a directory under --dir, on loopback; a zfly daemon with [storage] and
[fetcher] at their defaults caches it; zfly-get writes it to a file beside it. Each repetition
runs curl -o, then zfly-get against a fresh daemon and cache; before each contender the
previous one's output (and cache) is deleted and `sync` waits for the disk, so every contender
starts with as little dirty memory as the one before. --copy makes zfly-get copy the cache
file instead of hard-linking it (zfly-get --copy): the two ways of writing the output.
--threads prints the CPU seconds of each of the daemon's threads (last run).

Prints a Markdown report: medians, every run's time, the ratio of each zfly-get run to the
curl run before it, failures, peak daemon memory (VmHWM). Everything made is deleted at the
end (the served file too).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataplane  # noqa: E402  (nginx, the daemon, sizes)

ROOT = dataplane.ROOT


def make_file(path, size):
    """size bytes of AES-128-CTR keystream: incompressible, made at disk speed."""
    with open(path, "wb") as handle:
        openssl = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-pass",
                                    "pass:zfly-bench", "-in", "/dev/zero"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        head = subprocess.run(["head", "-c", str(size)], stdin=openssl.stdout, stdout=handle,
                              check=True)
        openssl.stdout.close()
        openssl.kill()
        openssl.wait()
    assert os.path.getsize(path) == size, head


def settle():
    """Waits for the disk to take what the previous contender left dirty."""
    subprocess.run(["sync"], check=True)


def thread_cpu(pid):
    """{thread name: CPU seconds} of a process."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        result[name] = result.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return result


def run_curl(url, out):
    start = time.monotonic()
    result = subprocess.run(["curl", "-sf", "-o", out, url], timeout=1800)
    return time.monotonic() - start, result.returncode == 0


def run_zfly_get(args, url, out, workdir, copy):
    daemon = dataplane.Daemon(args.build, workdir)
    extra = ["--copy"] if copy else []
    try:
        start = time.monotonic()
        cpu_before = dataplane.children_cpu()
        result = subprocess.run([os.path.join(args.build, "zfly-get"), "-c", daemon.ini, url,
                                 "-O", out, "--progress", "none", *extra], timeout=1800,
                                stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - start
        get_cpu = dataplane.children_cpu() - cpu_before
        threads = thread_cpu(daemon.process.pid)
        peak = daemon.peak_rss_kib()
        error = result.stderr.strip().splitlines()[-1:] if result.returncode else []
    finally:
        daemon.stop()
    return wall, result.returncode == 0, peak, get_cpu, threads, error


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=dataplane.parse_size, default=dataplane.parse_size("8G"))
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--dir", default="/var/tmp", help="where the files go (not a tmpfs)")
    parser.add_argument("--copy", action="store_true", help="zfly-get copies, no hard link")
    parser.add_argument("--threads", action="store_true", help="CPU per daemon thread")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="zfly-largefile-", dir=args.dir)
    nginx = None
    try:
        served = os.path.join(workdir, "www")
        os.makedirs(served)
        make_file(os.path.join(served, "large.bin"), args.size)
        settle()
        nginx = dataplane.Nginx(workdir, served)
        url = f"http://127.0.0.1:{nginx.port}/large.bin"
        out = os.path.join(workdir, "out.bin")
        curl, zfly, failures, peaks, cpus = [], [], [], [], []
        threads = {}
        for rep in range(args.reps):
            settle()
            wall, ok = run_curl(url, out)
            curl.append(wall)
            if not ok:
                failures.append(f"curl run {rep + 1}")
            if os.path.exists(out):
                os.unlink(out)
            settle()
            wall, ok, peak, cpu, threads, error = run_zfly_get(args, url, out, workdir, args.copy)
            zfly.append(wall)
            peaks.append(peak)
            cpus.append(cpu)
            if not ok:
                failures.append(f"zfly-get run {rep + 1}: {' '.join(error)}")
            if os.path.exists(out):
                os.unlink(out)
            print(f"run {rep + 1}: curl {curl[-1]:.2f} s, zfly-get {zfly[-1]:.2f} s "
                  f"({'ok' if ok else 'FAILED'}), peak {peak / 1024:.1f} MiB", file=sys.stderr)

        size_mib = args.size / (1 << 20)
        ratios = [z / c for z, c in zip(zfly, curl)]
        mode = "copy (--copy)" if args.copy else "hard link where possible"
        print(f"Command: `{' '.join(sys.argv)}` — {size_mib:,.0f} MiB, {args.reps} runs "
              f"alternating, zfly-get output: {mode}\n")
        print("| what | median | rate | all times |")
        print("|---|---|---|---|")
        for name, times in (("curl -o", curl), ("zfly-get back to source", zfly)):
            median = statistics.median(times)
            print(f"| {name} | {median:.2f} s | {size_mib / median:,.0f} MiB/s | "
                  f"{', '.join(f'{t:.2f}' for t in times)} |")
        print(f"\nzfly-get / curl, run by run: {', '.join(f'{r:.2f}' for r in ratios)} "
              f"(median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}); "
              f"median of zfly-get over median of curl: "
              f"{statistics.median(zfly) / statistics.median(curl):.2f}")
        print(f"Succeeded: {args.reps * 2 - len(failures)} of {args.reps * 2}"
              + (f"; failures: {'; '.join(failures)}" if failures else ""))
        print(f"Peak daemon memory (VmHWM): {max(peaks) / 1024:.1f} MiB; zfly-get's own CPU "
              f"(median): {statistics.median(cpus):.2f} s")
        if args.threads:
            print("\n| daemon thread (last run) | CPU seconds |\n|---|---|")
            for name, seconds in sorted(threads.items(), key=lambda item: -item[1]):
                print(f"| {name} | {seconds:.2f} |")
    finally:
        if nginx:
            nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
