#!/usr/bin/python3
"""Page-cache write cost by write size: why storage writes pieces in 32 KiB calls.

    tools/bench/pagecache_writes.py [--size 1G] [--sizes 16K,32K,64K,256K,1M,4M] [--reps 2]
                                    [--dir /var/tmp] [--pause 4]

Writes SIZE bytes into a fresh file (sparse, as storage's data files are) with pwrite calls
of each size in turn, deletes it, and prints the seconds each took. Linux (6.x) sizes new
page-cache folios by the length of the write; on a VM whose balloon hands free memory back to
the host, large folios land on memory the host must fault in again, and large writes cost
several times more. The pause between runs (default 4 s, longer than the kernel's 2 s
page-reporting delay) lets freed memory go back to the host, as it does between downloads.
"""
import argparse
import os
import re
import statistics
import sys
import time

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text):
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 32K, 4M, 1G)")
    return int(match.group(1)) * UNITS.get(match.group(2), 1)


def write_file(path, total, chunk):
    buffer = os.urandom(chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, total)
        start = time.monotonic()
        for offset in range(0, total, chunk):
            os.pwrite(fd, buffer[: min(chunk, total - offset)], offset)
        return time.monotonic() - start
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"))
    parser.add_argument("--sizes", default="16K,32K,64K,256K,1M,4M")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--pause", type=float, default=4.0)
    args = parser.parse_args()
    chunks = [parse_size(text) for text in args.sizes.split(",")]
    path = os.path.join(args.dir, f"zfly-pagecache-{os.getpid()}.bin")
    times = {chunk: [] for chunk in chunks}
    for _ in range(args.reps):
        for chunk in chunks:  # interleaved, so host state drifts alike for every size
            time.sleep(args.pause)
            times[chunk].append(write_file(path, args.size, chunk))
    print(f"Command: `{' '.join(sys.argv)}` — {args.size >> 20} MiB per run, "
          f"{args.reps} runs per size, medians\n")
    print("| write size | time | rate | all times |")
    print("|---|---|---|---|")
    for chunk in chunks:
        median = statistics.median(times[chunk])
        every = ", ".join(f"{value:.2f}" for value in times[chunk])
        print(f"| {chunk >> 10} KiB | {median:.2f} s | {(args.size >> 20) / median:,.0f} MiB/s | "
              f"{every} |")


if __name__ == "__main__":
    main()
