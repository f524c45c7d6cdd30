#!/usr/bin/python3
"""What one range GET costs at a registry: docker-registry (distribution 2.8, filesystem
storage) with token auth on loopback, one blob of 12 MiB, range GETs of 1, 2, 4 and 8 MiB
(sizes interleaved, each at another offset), each on a new connection with a valid token.
Reports, per size, the medians from sending the request to the head, to the first body byte
and to the last. It says what the fetcher's range length should weigh: the wait every
request pays before its first byte against the body's time (docs/benchmarks.md "Pull").

    tools/bench/registry_ranges.py [--reps 40]

Run it alone: /work/quiet.sh tools/bench/registry_ranges.py
"""
import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "registry"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry as reg  # noqa: E402
from pull import token_for  # noqa: E402
from zflytest import recv_http_head  # noqa: E402

REPO = "test/app"
SIZES = (1 << 20, 2 << 20, 4 << 20, 8 << 20)


def range_get(address, path, token, first, last):
    """(head, first body byte, end) in ms of one GET of bytes first-last on a new connection."""
    host, port = address
    with socket.create_connection(address, timeout=30) as sock:
        began = time.monotonic()
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Authorization: Bearer {token}\r\nRange: bytes={first}-{last}\r\n"
                      "Connection: close\r\n\r\n").encode())
        status, headers, body = recv_http_head(sock)
        head_at = time.monotonic()
        if status != 206:
            raise AssertionError(f"not a 206: {status} {headers}")
        received = len(body) or len(sock.recv(65536))
        body_at = time.monotonic()
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += len(chunk)
        end_at = time.monotonic()
    if received != last - first + 1:
        raise AssertionError(f"{received} bytes for bytes={first}-{last}")
    return tuple((moment - began) * 1000 for moment in (head_at, body_at, end_at))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="zfly-registry-ranges-")
    token_server = reg.TokenServer(workdir)
    registry = reg.Registry(workdir, token_server)
    try:
        layout = reg.build_image(workdir, "v1", layers=1, layer_bytes=12 << 20)
        reg.push(layout, "v1", registry, REPO)
        layer = reg.layout_digests(layout, "v1")[1][0]
        size = os.path.getsize(os.path.join(layout, "blobs", *layer.split(":")))
        token = token_for(token_server, REPO)
        path = f"/v2/{REPO}/blobs/{layer}"
        times = {length: [] for length in SIZES}
        for rep in range(args.reps):
            for length in SIZES:
                first = (rep << 20) % (size - length)
                first -= first % (1 << 20)
                times[length].append(range_get((registry.host, registry.port), path, token,
                                               first, first + length - 1))
    finally:
        registry.stop()
        token_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"docker-registry on loopback, token auth, a blob of {size} bytes; {args.reps} GETs "
          f"per range length, each on a new connection; medians in ms after the request; load "
          f"average {os.getloadavg()[0]:.1f} at the end.\n")
    print("| range | head | first body byte | last byte |")
    print("|---|---:|---:|---:|")
    for length in SIZES:
        heads, bodies, ends = zip(*times[length])
        print(f"| {length >> 20} MiB | {statistics.median(heads):.2f} | "
              f"{statistics.median(bodies):.2f} | {statistics.median(ends):.2f} |")


if __name__ == "__main__":
    main()
