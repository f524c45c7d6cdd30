#!/usr/bin/python3
"""Large files on one quiet node: zfly-get back to source against curl, alternating, in the
same runs, with every run's success, the daemon's peak memory and where the CPU went.

    tools/bench/largefile.py [--size 8G] [--reps 10] [--build build] [--dir /var/tmp]
                             [--outputs link,copy] [--piece-length 8M] [--threads]

nginx (Debian package) serves a file of --size pseudo-random bytes (AES-CTR of zeros, made
with openssl) from a directory under --dir, on loopback; a zfly daemon with [storage] and
[fetcher] at their defaults caches it; zfly-get writes it to a file beside it. Each repetition
runs curl -o, then zfly-get against a fresh daemon and cache; before each contender the
previous one's output (and cache) is deleted and `sync` waits for the disk, so every contender
starts with as little dirty memory as the one before. --outputs says how zfly-get writes its
output, one run of each per repetition: link (the default: a hard link of the cache file
where possible), copy (zfly-get --copy). --threads prints the CPU seconds of each of the
daemon's threads (last run of each). --piece-length fixes the fetcher's piece length
(piece_length_min = piece_length_max) instead of its default choice.

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


def run_curl(url, out):
    start = time.monotonic()
    result = subprocess.run(["curl", "-sf", "-o", out, url], timeout=1800)
    return time.monotonic() - start, result.returncode == 0


def run_zfly_get(args, url, out, workdir, copy):
    daemon = dataplane.Daemon(args.build, workdir, piece_length=args.piece_length)
    extra = ["--copy"] if copy else []
    try:
        start = time.monotonic()
        cpu_before = dataplane.children_cpu()
        result = subprocess.run([os.path.join(args.build, "zfly-get"), "-c", daemon.ini, url,
                                 "-O", out, "--progress", "none", *extra], timeout=1800,
                                stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - start
        get_cpu = dataplane.children_cpu() - cpu_before
        threads = dataplane.thread_cpu(daemon.process.pid)
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
    parser.add_argument("--outputs", default="link", help="link, copy, or both: link,copy")
    parser.add_argument("--piece-length", help="e.g. 8M (default: the fetcher's choice)")
    parser.add_argument("--threads", action="store_true", help="CPU per daemon thread")
    args = parser.parse_args()
    outputs = args.outputs.split(",")
    assert all(output in ("link", "copy") for output in outputs), args.outputs
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
        curl, failures = [], []
        zfly = {output: [] for output in outputs}
        peaks = {output: [] for output in outputs}
        cpus = {output: [] for output in outputs}
        threads = {}
        for rep in range(args.reps):
            settle()
            wall, ok = run_curl(url, out)
            curl.append(wall)
            if not ok:
                failures.append(f"curl run {rep + 1}")
            if os.path.exists(out):
                os.unlink(out)
            line = f"run {rep + 1}: curl {wall:.2f} s"
            for output in outputs:
                settle()
                wall, ok, peak, cpu, threads[output], error = run_zfly_get(
                    args, url, out, workdir, output == "copy")
                zfly[output].append(wall)
                peaks[output].append(peak)
                cpus[output].append(cpu)
                if not ok:
                    failures.append(f"zfly-get ({output}) run {rep + 1}: {' '.join(error)}")
                if os.path.exists(out):
                    os.unlink(out)
                line += f", zfly-get {output} {wall:.2f} s ({'ok' if ok else 'FAILED'})"
            print(line, file=sys.stderr)

        size_mib = args.size / (1 << 20)
        print(f"Command: `{' '.join(sys.argv)}` — {size_mib:,.0f} MiB, {args.reps} runs, "
              f"contenders alternating\n")
        print("| what | median | rate | ratio to curl (run by run) | all times |")
        print("|---|---|---|---|---|")
        rows = [("curl -o", curl)] + [(f"zfly-get back to source, output by {output}",
                                       zfly[output]) for output in outputs]
        for name, times in rows:
            median = statistics.median(times)
            ratios = [t / c for t, c in zip(times, curl)]
            ratio = ("1.00" if times is curl else
                     f"median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}")
            print(f"| {name} | {median:.2f} s | {size_mib / median:,.0f} MiB/s | {ratio} | "
                  f"{', '.join(f'{t:.2f}' for t in times)} |")
        print(f"\nSucceeded: {args.reps * (1 + len(outputs)) - len(failures)} of "
              f"{args.reps * (1 + len(outputs))}"
              + (f"; failures: {'; '.join(failures)}" if failures else ""))
        for output in outputs:
            print(f"zfly-get ({output}): peak daemon memory (VmHWM) "
                  f"{max(peaks[output]) / 1024:.1f} MiB, zfly-get's own CPU (median) "
                  f"{statistics.median(cpus[output]):.2f} s")
        if args.threads:
            for output in outputs:
                print(f"\n| daemon thread, {output} (last run) | CPU seconds |\n|---|---|")
                for name, seconds in sorted(threads[output].items(), key=lambda item: -item[1]):
                    print(f"| {name} | {seconds:.2f} |")
    finally:
        if nginx:
            nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
