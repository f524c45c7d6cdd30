#!/usr/bin/python3
"""Swarm benchmark: zfly on the testbed at the default settings (INI files with topology and
keys only), against aria2c (BitTorrent) on the same network, in the scenarios issue 9 names:

    equal    N = 8, one seed, every link 100 Mbit/s, 256 MiB (zfly and aria2c, alternating)
    scaling  N = 2, 4, 8, 16 at 50 Mbit/s, 64 MiB: the ratio to T_min stays flat
    mixed    N = 8, peers at 20, 50, 50, 200, 200 Mbit/s and the rest at 100, 256 MiB: each
             peer against its own bound max(F/d_i, F/u_origin, N*F/(u_origin + sum_u))
    kill     N = 8, 100 Mbit/s, 256 MiB: peer3 (a parent of others: in a mesh every peer is) is
             killed at 30% of the undisturbed median; the others against that median
    pieces   the equal run with 512 KiB and 4 MiB pieces set by hand (the default is 1 MiB)

    sudo tools/bench/swarm.py [--scenario equal,scaling,mixed,kill] [--repeat 3]
                              [--qdisc htb|tbf] [--build build] [--json out.json]

Prints a Markdown report (medians, every run listed) for docs/benchmarks.md, with the command.
Every run also checks every copy byte for byte (the testbed's sha256): a wrong copy fails it.
Runs take minutes each; the testbed cleans up after every run, also on Ctrl-C."""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TESTBED = os.path.join(ROOT, "tools", "testbed", "zfly-testbed")
MIXED_RATES = "20mbit,50mbit,50mbit,200mbit,200mbit"


def bench(args, extra):
    """One testbed bench (up + run + down); returns its results."""
    argv = [sys.executable, TESTBED, "bench", "--prefix", "zbs-", "--json", "--qdisc",
            args.qdisc, "--zfly-build", args.build] + extra
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"swarm.py: testbed failed: {' '.join(argv)}")
    return json.loads(out.stdout)["results"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2, unit=""):
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def row(label, runs, key="ratio"):
    ok = all(r["ok"] for r in runs)
    times = [r["t_last_s"] for r in runs]
    return (f"| {label} | {fmt(median(times), 1, ' s')} | {fmt(median([r[key] for r in runs]))} "
            f"| {fmt(max(r['origin_tx_over_f'] for r in runs))} | "
            f"{', '.join(fmt(r[key]) for r in runs)} | {'yes' if ok else 'NO'} |")


HEADER = ("| run | last peer (median) | × bound (median) | origin / F (max) | every run × bound "
          "| all copies exact |\n|---|---|---|---|---|---|")


def equal(args, report):
    runs = bench(args, ["--peers", "8", "--seeds", "1", "--file-size", "256M", "--link",
                        "100mbit", "--mode", "zfly,bittorrent", "--repeat", str(args.repeat)])
    report.append("### N = 8, one seed, 100 Mbit/s, 256 MiB\n\n" + HEADER)
    for mode in ("zfly", "bittorrent"):
        report.append(row(mode if mode == "zfly" else "aria2c (bittorrent)",
                          [r for r in runs if r["mode"] == mode]))
    args.undisturbed_runs = [r for r in runs if r["mode"] == "zfly"]  # kill's baseline
    return runs


def scaling(args, report):
    report.append("### Scaling: N = 2, 4, 8, 16 at 50 Mbit/s, 64 MiB\n\n" + HEADER)
    every = []
    for peers in (2, 4, 8, 16):
        runs = bench(args, ["--peers", str(peers), "--seeds", "1", "--file-size", "64M",
                            "--link", "50mbit", "--mode", "zfly", "--repeat", str(args.repeat)])
        report.append(row(f"zfly, N = {peers}", runs))
        every += runs
    return every


def mixed(args, report):
    runs = bench(args, ["--peers", "8", "--seeds", "1", "--file-size", "256M", "--link",
                        "100mbit", "--rates", MIXED_RATES, "--mode", "zfly", "--repeat",
                        str(args.repeat)])
    report.append(f"### Mixed links ({MIXED_RATES}, the rest 100 Mbit/s), N = 8, 256 MiB\n\n"
                  "Each peer against its own bound; the worst peer of each run counts.\n\n"
                  + HEADER)
    report.append(row("zfly (worst peer)", runs, key="worst_own_ratio"))
    per_peer = {}
    for r in runs:
        for name, ratio in r.get("per_peer_ratio", {}).items():
            per_peer.setdefault(name, []).append(ratio)
    report.append("\nPer peer (median × own bound): "
                  + ", ".join(f"{n} {fmt(median(v))}" for n, v in sorted(per_peer.items())))
    return runs


def kill(args, report):
    # The undisturbed runs: those of "equal" when it ran in this invocation, else new ones.
    base = getattr(args, "undisturbed_runs", None) or bench(
        args, ["--peers", "8", "--seeds", "1", "--file-size", "256M", "--link", "100mbit",
               "--mode", "zfly", "--repeat", str(args.repeat)])
    undisturbed = median([r["t_last_s"] for r in base])
    at = round(0.3 * undisturbed, 1)
    runs = bench(args, ["--peers", "8", "--seeds", "1", "--file-size", "256M", "--link",
                        "100mbit", "--mode", "zfly", "--repeat", str(args.repeat), "--kill",
                        f"peer3@{at}"])
    for r in runs:
        r["vs_undisturbed"] = r["t_last_s"] / undisturbed if r["t_last_s"] else None
    report.append(f"### A parent killed at 30% of the run (peer3 at {at} s), N = 8, 100 Mbit/s, "
                  f"256 MiB\n\nThe survivors against the undisturbed median ({undisturbed:.1f} s, "
                  f"{len(base)} runs).\n\n" + HEADER.replace("× bound", "× undisturbed"))
    report.append(row("zfly, peer3 killed", runs, key="vs_undisturbed"))
    return runs


def pieces(args, report):
    """The default piece length against others, on the equal-links run: the evidence for
    piece_length_min (1 MiB: what a 256 MiB file gets by default)."""
    report.append("### Piece length, N = 8, 100 Mbit/s, 256 MiB (fixed by --zfly-ini; the "
                  "default row is zfly in \"equal\")\n\n" + HEADER)
    every = []
    for length in ("512K", "4M"):
        runs = bench(args, ["--peers", "8", "--seeds", "1", "--file-size", "256M", "--link",
                            "100mbit", "--mode", "zfly", "--repeat", str(args.repeat),
                            "--zfly-ini", f"fetcher.piece_length_min={length}",
                            "--zfly-ini", f"fetcher.piece_length_max={length}"])
        report.append(row(f"zfly, {length} pieces (hand-set)", runs))
        every += runs
    return every


SCENARIOS = {"equal": equal, "scaling": scaling, "mixed": mixed, "kill": kill, "pieces": pieces}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="equal,scaling,mixed,kill")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--qdisc", choices=("htb", "tbf"), default="htb")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--json", help="also write every run's results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("swarm.py: needs root (the testbed builds network namespaces)")
    report, every = [], {}
    command = "sudo tools/bench/swarm.py " + " ".join(sys.argv[1:])
    for name in args.scenario.split(","):
        if name not in SCENARIOS:
            raise SystemExit(f"swarm.py: unknown scenario {name!r} ({', '.join(SCENARIOS)})")
        every[name] = SCENARIOS[name](args, report)
        report.append("")
    print(f"Command: `{command}` — shaper {args.qdisc}, default settings, {args.repeat} runs "
          f"each\n")
    print("\n".join(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(every, f, indent=1)


if __name__ == "__main__":
    main()
