#!/usr/bin/python3
"""The bus end to end: two actors exchanging requests, replies and events behave the same
colocated in one zfly process (inproc://) and split across two processes (tcp:// + CURVE);
a key outside the allow-list cannot exchange a single message; taps see the traffic."""
import ctypes
import json
import os
import socket
import subprocess

import zflytest
from zflytest import BusClient, ZflyTestCase, free_port, keygen, read_cert

PROBE_COUNT = 200


def node_section(name, http="127.0.0.1:0", tap=""):
    return f"[node]\nname = {name}\nlog_level = info\nhttp = {http}\ntap = {tap}\n"


def probe_section(report, count=PROBE_COUNT, connect_timeout="20s"):
    return (f"[probe]\ntarget = echo\ncount = {count}\nfail_every = 10\ntext_size = 100\n"
            f"report = {report}\nexit = true\nconnect_timeout = {connect_timeout}\n")


class BusTest(ZflyTestCase):
    def make_echo_node(self, tap="", storage_port=None):
        """Node A serves echo over tcp:// with CURVE (and storage, given a port); returns
        (process, A's public cert, request endpoint, events endpoint, allow dir)."""
        os.makedirs(self.path("allow-a"))
        key_a, pub_a, _ = keygen(self.workdir, "a")
        request_port, events_port = free_port(), free_port()
        ini = (node_section("a", tap=tap)
               + f"[bus]\ncert = {key_a}\nallow = {self.path('allow-a')}\n"
               + f"[echo]\nbind = tcp://127.0.0.1:{request_port}\n"
               + f"events_bind = tcp://127.0.0.1:{events_port}\n")
        if storage_port:
            ini += (f"[storage]\ndir = {self.path('a-cache')}\n"
                    f"bind = tcp://127.0.0.1:{storage_port}\n")
        node_a = self.start("a", ini)
        node_a.wait_ready()
        return node_a, pub_a, request_port, events_port

    def probe_ini(self, name, key, pub_a, request_port, events_port, report, **probe):
        return (node_section(name)
                + f"[bus]\ncert = {key}\n"
                + f"[endpoints]\necho = tcp://127.0.0.1:{request_port} "
                + f"events=tcp://127.0.0.1:{events_port} cert={pub_a}\n"
                + probe_section(report, **probe))

    def run_probe(self, name, ini):
        probe = self.start(name, ini)
        code = probe.wait_exit(timeout=60)
        return probe, code

    @staticmethod
    def comparable(report_path):
        with open(report_path) as handle:
            report = json.load(handle)
        report.pop("elapsed_ms")
        report["error_log"].sort(key=lambda entry: json.dumps(entry, sort_keys=True))
        return report

    def test_colocated_and_split_behave_the_same(self):
        # Colocated: echo and probe in one process, over inproc://. The node is named "a" in
        # both runs so that the names inside replies and errors match.
        colocated_report = self.path("colocated.json")
        colocated, code = self.run_probe(
            "colocated", node_section("a") + "[echo]\n" + probe_section(colocated_report))
        self.assertEqual(code, 0, colocated.log.text())

        # Split: echo in process A, probe in process B, over tcp:// with CURVE.
        node_a, pub_a, request_port, events_port = self.make_echo_node()
        key_b, pub_b, _ = keygen(self.workdir, "b")
        os.link(pub_b, self.path("allow-a", "b.pub"))
        split_report = self.path("split.json")
        probe, code = self.run_probe("b", self.probe_ini("b", key_b, pub_a, request_port,
                                                         events_port, split_report))
        self.assertEqual(code, 0, probe.log.text())

        colocated_result = self.comparable(colocated_report)
        split_result = self.comparable(split_report)
        self.assertTrue(colocated_result["ok"], colocated_result)
        self.assertEqual(colocated_result["replies"], PROBE_COUNT - PROBE_COUNT // 10)
        self.assertEqual(colocated_result["errors"], PROBE_COUNT // 10)
        self.assertEqual(colocated_result["events"], PROBE_COUNT)
        self.assertTrue(colocated_result["unhandled_type_refused"])
        self.assertEqual(split_result, colocated_result)
        # The errors carry the serving actor's words, the same both ways.
        messages = {entry["message"] for entry in split_result["error_log"]}
        self.assertIn("echo@a: failure requested by seq 10 (invalid)", messages)
        self.assertIn("echo@a: actor 'echo' does not handle 'echo.seen' (unknown_type)", messages)

        # A counted what it served, per type.
        self.assertGreaterEqual(node_a.metric("zfly_bus_messages_received_total", actor="echo",
                                              type="echo.request"), PROBE_COUNT)
        self.assertGreaterEqual(node_a.metric("zfly_bus_auth_accepted_total"), 1)
        # After real traffic, with every family in use, /metrics still passes promtool.
        status, _, body = node_a.http_get("/metrics")
        check = subprocess.run(["promtool", "check", "metrics"], input=body, text=True,
                               capture_output=True)
        self.assertEqual((check.returncode, check.stdout + check.stderr), (0, ""))

    def test_key_outside_allow_list_exchanges_nothing(self):
        node_a, pub_a, request_port, events_port = self.make_echo_node()
        key_c, _, z85_c = keygen(self.workdir, "c")  # never added to A's allow-list
        report = self.path("refused.json")
        probe, code = self.run_probe("c", self.probe_ini("c", key_c, pub_a, request_port,
                                                         events_port, report, count=5,
                                                         connect_timeout="2s"))
        self.assertEqual(code, 1, probe.log.text())
        with open(report) as handle:
            result = json.load(handle)
        self.assertFalse(result["ok"])
        self.assertEqual(result["replies"] + result["errors"] + result["events"], 0)
        # A logged the refusal with the client's key, counted it, and received nothing.
        node_a.log.wait_for(rf"auth: refused CURVE client key={re_escape(z85_c)}")
        self.assertGreaterEqual(node_a.metric("zfly_bus_auth_refused_total",
                                              reason="unknown_key"), 1)
        self.assertIsNone(node_a.metric("zfly_bus_messages_received_total", actor="echo",
                                        type="echo.request"))
        # C saw its handshakes fail and said what to do about it.
        probe.log.wait_for(r"handshake_failed_auth .*add our public key to its allow-list")

    def test_tap_sees_every_message_and_socket_events(self):
        tap_endpoint = "ipc://" + self.path("tap.sock")
        node_a, pub_a, request_port, events_port = self.make_echo_node(tap=tap_endpoint)
        key_b, pub_b, _ = keygen(self.workdir, "b")
        os.link(pub_b, self.path("allow-a", "b.pub"))
        tap = subprocess.Popen([zflytest.ZFLY_TAP, tap_endpoint], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        # Filtered taps, started with the first so that the warm-up covers them too.
        replies_only = subprocess.Popen(
            [zflytest.ZFLY_TAP, tap_endpoint, "--type", "echo.reply", "--count", "5"],
            stdout=subprocess.PIPE, text=True)
        probe_only = subprocess.Popen(
            [zflytest.ZFLY_TAP, tap_endpoint, "--actor", "probe", "--count", "5"],
            stdout=subprocess.PIPE, text=True)
        self.addCleanup(replies_only.kill)
        self.addCleanup(probe_only.kill)
        try:
            lines = zflytest.LineReader(tap.stdout, echo_prefix="[tap] ")
            # PUB/SUB subscriptions take effect asynchronously: run a one-request probe until
            # the tap prints its first line, then start counting.
            for attempt in range(10):
                self.run_probe(f"warmup{attempt}",
                               self.probe_ini(f"warmup{attempt}", key_b, pub_a, request_port,
                                              events_port, self.path("warmup.json"), count=1))
                try:
                    lines.wait_for(r'"kind":"message"', timeout=2)
                    break
                except AssertionError:
                    continue
            count = 50
            probe, code = self.run_probe("b", self.probe_ini("b", key_b, pub_a, request_port,
                                                             events_port,
                                                             self.path("tapped.json"),
                                                             count=count))
            self.assertEqual(code, 0, probe.log.text())
            # B's traffic, then B's disconnection, as seen from A.
            start = lines.wait_for_index(r'"from":"probe@b"')
            lines.wait_for(r'"event":"disconnected"', start=start)
            # Every request of the run went in, and every answer went out, with decoded bodies.
            requests_in, replies_out, errors_out = set(), set(), 0
            for line in lines.received()[start:]:
                record = json.loads(line)
                if record.get("kind") != "message":
                    continue
                if record.get("from", "").startswith("probe@b") and record["dir"] == "in":
                    requests_in.add((record["type"], record["body"]["seq"]))
                elif record.get("to", "").startswith("probe@b") and record["dir"] == "out":
                    if record["type"] == "error":
                        errors_out += 1
                    else:
                        replies_out.add((record["type"], record["body"]["seq"]))
            for seq in range(1, count + 1):
                self.assertIn(("echo.request", seq), requests_in)
                if seq % 10:
                    self.assertIn(("echo.reply", seq), replies_out)
            # count // 10 requested failures plus the unhandled type
            self.assertEqual(errors_out, count // 10 + 1)
            # Connections of the warm-up probes and of B: accepted, handshake, disconnected.
            events = [json.loads(line) for line in lines.received()]
            names = {event.get("event") for event in events if event.get("kind") == "socket"}
            self.assertIn("accepted", names)
            self.assertIn("handshake_succeeded", names)
            self.assertIn("disconnected", names)
            # --type keeps only messages of that type; --actor only those from or to it.
            output, _ = replies_only.communicate(timeout=20)
            records = [json.loads(line) for line in output.splitlines()]
            self.assertEqual(len(records), 5)
            self.assertTrue(all(record["type"] == "echo.reply" for record in records), records)
            output, _ = probe_only.communicate(timeout=20)
            records = [json.loads(line) for line in output.splitlines()]
            self.assertEqual(len(records), 5)
            for record in records:
                self.assertEqual(record["kind"], "message")
                self.assertTrue(record["from"].startswith("probe@")
                                or record.get("to", "").startswith("probe@"), record)
        finally:
            tap.terminate()
            tap.wait(timeout=10)

    def test_ipc_next_to_curve_tcp_needs_no_keys(self):
        """One actor bound on tcp:// (CURVE) and ipc:// (this host): a client on the host uses
        the ipc:// endpoint without keys, whatever the order of the binds."""
        key_a, _, _ = keygen(self.workdir, "a")
        ipc = "ipc://" + self.path("echo.sock")
        node = self.start("a", node_section("a") + f"[bus]\ncert = {key_a}\n"
                               f"[echo]\nbind = tcp://127.0.0.1:{free_port()} {ipc}\n")
        node.wait_ready()
        client = BusClient(ipc, sender="t@host")
        try:
            reply, _ = client.request("echo.request", {"seq": 1, "text": "over ipc"})
            self.assertEqual((reply["type"], reply["body"]["text"]), ("echo.reply", "over ipc"))
        finally:
            client.close()

    def test_storage_connections_queue_as_bulk(self):
        """The storage actor's TCP connections carry pieces for other peers: they are marked
        bulk (SO_PRIORITY 2), so a queue that knows priorities (pfifo_fast, the kernel's
        default) sends the host's own traffic first: a seed's requests and ACKs to its origin,
        a peer's piece requests and ACKs to its parents. Every other actor's connections (echo
        here; the fetcher's to parents) and the node's HTTP socket keep the default 0."""
        storage_port = free_port()
        node_a, pub_a, request_port, _ = self.make_echo_node(storage_port=storage_port)
        key_b, pub_b, _ = keygen(self.workdir, "b")
        os.link(pub_b, self.path("allow-a", "b.pub"))
        public, secret = read_cert(key_b)
        curve = (public, secret, read_cert(pub_a)[0])
        echo = BusClient(f"tcp://127.0.0.1:{request_port}", sender="t@b", curve=curve)
        storage = BusClient(f"tcp://127.0.0.1:{storage_port}", sender="t@b", curve=curve)
        try:
            reply, _ = echo.request("echo.request", {"seq": 1, "text": "control"})
            self.assertEqual(reply["type"], "echo.reply")
            reply, _ = storage.request("storage.stat", {"task_id": "0" * 64})
            self.assertEqual(reply["type"], "error")  # no such task: answered all the same

            # A sets the priority when its monitor reports the accepted connection, which its
            # loop may read after the reply went out.
            def accepted(port):
                return [prio for (local, peer), prio in
                        socket_priorities(node_a.process.pid).items()
                        if local == port and peer]
            zflytest.wait_until_true(lambda: accepted(storage_port) == [2],
                                     "the storage connection marked bulk", timeout=10)
            self.assertEqual(accepted(storage_port), [2])  # TC_PRIO_BULK
            # Echo's monitor reported its connection long before this second request, and the
            # loop reads both in one turn: had echo marked it, it would show by now.
            reply, _ = echo.request("echo.request", {"seq": 2, "text": "control"})
            self.assertEqual(reply["type"], "echo.reply")
            self.assertEqual(accepted(request_port), [0])
            self.assertEqual([prio for (local, peer), prio in
                              socket_priorities(node_a.process.pid).items()
                              if local == node_a.http_port and not peer], [0])
        finally:
            echo.close()
            storage.close()

    def test_metrics_pass_promtool_and_health_reports_ready(self):
        node_a, *_ = self.make_echo_node()
        status, headers, body = node_a.http_get("/healthz")
        self.assertEqual(status, 200)
        status, headers, body = node_a.http_get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("text/plain", headers.get("Content-Type", ""))
        check = subprocess.run(["promtool", "check", "metrics"], input=body, text=True,
                               capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual(check.stdout + check.stderr, "")


def socket_priorities(pid):
    """{(local port, peer port or 0): SO_PRIORITY} of the TCP sockets of process pid, read
    through copies of its descriptors (pidfd_getfd; needs root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd_getfd = 438  # the system call's number on x86_64 and arm64
    pidfd = os.pidfd_open(pid)
    found = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except FileNotFoundError:
                continue
            fd = libc.syscall(pidfd_getfd, pidfd, int(name), 0)
            if fd < 0:
                continue
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)
                continue
            try:
                if sock.family not in (socket.AF_INET, socket.AF_INET6) \
                        or sock.type != socket.SOCK_STREAM:
                    continue
                try:
                    peer = sock.getpeername()[1]
                except OSError:
                    peer = 0
                found[(sock.getsockname()[1], peer)] = sock.getsockopt(socket.SOL_SOCKET,
                                                                       socket.SO_PRIORITY)
            finally:
                sock.close()
    finally:
        os.close(pidfd)
    return found


def re_escape(text):
    import re
    return re.escape(text)


if __name__ == "__main__":
    zflytest.main()
