"""Two "hosts" on this machine: network namespaces PREFIXa and PREFIXb joined by one veth pair,
unshaped (no tc), each end eth0 with an address from 198.18.0.0/15 (RFC 2544 benchmarking
range, as tools/testbed/zfly-testbed uses). Neither namespace has a link to the root namespace
or a default route, so no benchmark traffic can leave them. Both share this machine's CPUs: a
run here differs from one on loopback by the network path (veth and a namespace's routing
instead of lo), not by the CPU each side has.

Processes started through argv() run in a namespace; filesystem sockets (ipc://) and files
stay shared with the caller, which drives the daemons from the root namespace. Needs root and
iproute2."""
import json
import os
import signal
import subprocess
import time

ADDRESSES = {"a": "198.18.0.1", "b": "198.18.0.2"}
PREFIXLEN = 30


def ip(*argv):
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True,
                          timeout=30).stdout


class HostPair:
    def __init__(self, prefix):
        self.prefix = prefix
        self.namespaces = []
        try:
            for host in ADDRESSES:
                ip("netns", "add", prefix + host)
                self.namespaces.append(prefix + host)
                ip("-n", prefix + host, "link", "set", "lo", "up")
            # Made inside a, its peer moved straight into b: nothing appears in the root
            # namespace, and deleting the namespaces deletes the pair.
            ip("-n", prefix + "a", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
               "netns", prefix + "b")
            for host, address in ADDRESSES.items():
                ip("-n", prefix + host, "addr", "add", f"{address}/{PREFIXLEN}", "dev", "eth0")
                ip("-n", prefix + host, "link", "set", "eth0", "up")
            self.wait_reachable()
        except BaseException:
            self.remove()
            raise

    def address(self, host):
        return ADDRESSES[host]

    def argv(self, host, argv):
        """argv run inside host's namespace (ip netns exec runs it in place: same pid)."""
        return ["ip", "netns", "exec", self.prefix + host, *argv]

    def wait_reachable(self, timeout=10):
        """Waits until a reaches b's address (the link is up on both ends)."""
        deadline = time.monotonic() + timeout
        while subprocess.run(self.argv("a", ["ping", "-c", "1", "-W", "1", ADDRESSES["b"]]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.prefix}a cannot reach {ADDRESSES['b']} over the veth")
            time.sleep(0.1)

    def describe(self):
        """The link as the report states it: MTU, the largest GSO packet, qdisc."""
        link = json.loads(ip("-n", self.prefix + "a", "-d", "-j", "link", "show", "dev",
                             "eth0"))[0]
        return (f"veth between namespaces {self.prefix}a ({ADDRESSES['a']}) and "
                f"{self.prefix}b ({ADDRESSES['b']}), MTU {link['mtu']}, gso_max_size "
                f"{link.get('gso_max_size', '?')}, qdisc {link.get('qdisc', '?')}, unshaped")

    def remove(self):
        """Ends what still runs in the namespaces (only processes this pair's owner started
        there can be in them) and deletes them with their veth pair."""
        for ns in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self.namespaces = []
