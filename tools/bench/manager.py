#!/usr/bin/python3
"""The manager under a join storm, and its host list at 10,000 hosts, on SQLite and MariaDB.

For each database: a fresh manager (its own process, loopback), a join token, then
zfly-joinbench with NODES new nodes at once (each its own CURVE key and connection): joins per
second, p99 join latency, the manager's RSS. Then the cluster is grown to HOSTS hosts and the
API's host list (GET /api/v1/hosts, random pages of 50) is timed LIST times, one request after
another. Prints one line per measurement and a markdown table (docs/benchmarks.md).

    tools/bench/manager.py [--build build] [--nodes 2000] [--hosts 10000] [--list 2000]
                           [--backends sqlite,mariadb]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
import mariadb  # noqa: E402  (tests/mariadb.py: a private server)


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def bench_backend(build, backend, nodes, hosts, requests):
    work = tempfile.mkdtemp(prefix=f"zfly-bench-manager-{backend}-")
    server = None
    manager = None
    try:
        if backend == "mariadb":
            server = mariadb.MariaDB()
            database = server.new_database("bench")
        else:
            database = f"sqlite:{work}/manager.db"
        zfly = os.path.join(build, "zfly")
        key = re.search(r"public key z85: (\S+)", run([zfly, "keygen", f"{work}/manager"])).group(1)
        bind, events, api = free_port(), free_port(), free_port()
        ini = f"{work}/manager.ini"
        with open(ini, "w") as f:
            f.write(f"[node]\nname = manager\nlog_level = notice\nhttp = 127.0.0.1:0\n"
                    f"[bus]\ncert = {work}/manager.key\n"
                    f"[manager]\nbind = tcp://127.0.0.1:{bind}\n"
                    f"events_bind = tcp://127.0.0.1:{events}\napi = 127.0.0.1:{api}\n"
                    f"database = {database}\n")
        admin_token = run([zfly, "manager", "init", "-c", ini]).strip().splitlines()[-1]
        with open(f"{work}/admin-token", "w") as f:
            f.write(admin_token + "\n")
        log = open(f"{work}/manager.log", "w")
        manager = subprocess.Popen([zfly, "-c", ini], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "zfly: ready" not in open(f"{work}/manager.log").read():
            if time.monotonic() > deadline or manager.poll() is not None:
                raise SystemExit(f"manager did not start: {open(f'{work}/manager.log').read()}")
            time.sleep(0.05)
        join_token = run([os.path.join(build, "zfly-admin"), "--server",
                          f"http://127.0.0.1:{api}", "--token-file", f"{work}/admin-token",
                          "token", "create", "--name", "bench"]).strip()
        with open(f"{work}/join-token", "w") as f:
            f.write(join_token + "\n")
        bench = os.path.join(build, "zfly-joinbench")
        common = ["--connect", f"tcp://127.0.0.1:{bind}", "--server-key", key,
                  "--token-file", f"{work}/join-token", "--pid", str(manager.pid),
                  "--timeout", "120"]
        storm = run([bench, *common, "--nodes", str(nodes), "--prefix", "storm"])
        print(f"{backend}: {storm.strip()}", flush=True)
        # Grow to `hosts` in storms of 2000 (a steady join load), then time the host list.
        grown, batch = nodes, 0
        while grown < hosts:
            count = min(2000, hosts - grown)
            run([bench, *common, "--nodes", str(count), "--prefix", f"grow{batch}"])
            grown += count
            batch += 1
        listing = run([bench, *common, "--nodes", "1", "--prefix", "probe", "--api",
                       f"http://127.0.0.1:{api}", "--api-token-file", f"{work}/admin-token",
                       "--list", str(requests)])
        host_list = [line for line in listing.splitlines() if line.startswith("host list")][0]
        print(f"{backend}: hosts={grown + 1} {host_list}", flush=True)
        return storm, host_list
    finally:
        if manager and manager.poll() is None:
            manager.terminate()
            manager.wait(timeout=30)
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--list", type=int, default=2000)
    parser.add_argument("--backends", default="sqlite,mariadb")
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        storm, host_list = bench_backend(args.build, backend, args.nodes, args.hosts, args.list)
        rows.append((backend, dict(re.findall(r"(\w+)=([\d.]+)", storm)),
                     dict(re.findall(r"(\w+)=([\d.]+)", host_list))))
    print("\n| database | joins | seconds | joins/s | p99 join ms | manager RSS after (MiB) "
          "| host list p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for backend, storm, listing in rows:
        print(f"| {backend} | {storm.get('joined')} | {storm.get('seconds')} | "
              f"{storm.get('joins_per_s')} | {storm.get('p99')} | "
              f"{int(storm.get('after', 0)) / 1024:.0f} | {listing.get('p50')} | "
              f"{listing.get('p99')} |")


if __name__ == "__main__":
    main()
