#!/usr/bin/python3
"""The daemon's contract: bad configuration stops it before anything starts, with file and
line; it reports readiness to systemd; SIGTERM stops it cleanly; an actor that cannot run
takes the process down with a line saying which and why."""
import os
import signal
import socket
import subprocess

import zflytest
from zflytest import ZflyTestCase, free_port


class DaemonTest(ZflyTestCase):
    def check_bad_config(self, text, expected):
        path = self.path("bad.ini")
        with open(path, "w") as handle:
            handle.write(text)
        result = subprocess.run([zflytest.ZFLY, "-c", path], capture_output=True, text=True,
                                timeout=30)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn(expected.replace("FILE", path), result.stderr)
        # Nothing started: no readiness line, no actor.
        self.assertNotIn("ready", result.stderr)
        self.assertNotIn("started", result.stderr)

    def test_unknown_key(self):
        self.check_bad_config("[node]\nname = a\ncolour = blue\n", "FILE:3: [node] colour: unknown key")

    def test_bad_number(self):
        self.check_bad_config("[node]\nname = a\n[bus]\nhwm = lots\n", "FILE:4: [bus] hwm:")

    def test_out_of_range(self):
        self.check_bad_config("[node]\nname = a\n[bus]\nhwm = 0\n", "FILE:4: [bus] hwm:")

    def test_missing_section(self):
        self.check_bad_config("[echo]\n", "missing required section [node]")

    def test_line_too_long(self):
        self.check_bad_config("[node]\nname = a\n# " + "x" * 70000 + "\n",
                              "FILE:3: line longer than 65536 bytes")

    def test_long_values_and_checked_lists(self):
        """Values longer than inih's 200-byte line pass whole; a list key repeats; a rule that
        does not compile stops `zfly check` with its file and line; deprecated names warn."""
        path = self.path("long.ini")
        long_rule = "^http://" + "a" * 300 + "/ direct"
        with open(path, "w") as handle:
            handle.write(f"[node]\nname = a\n[proxy]\nrule = {long_rule}\nrule = .* direct\n"
                         "hosts = x.test=127.0.0.1:1\n")
        result = subprocess.run([zflytest.ZFLY, "check", "-c", path], capture_output=True,
                                text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"{path}:6: [proxy] hosts is deprecated: set [upstream] hosts instead",
                      result.stderr)
        self.check_bad_config("[node]\nname = a\n[proxy]\nrule = .* direct\nrule = [ p2p\n",
                              'FILE:5: [proxy] rule: "[ p2p": bad regular expression')
        self.check_bad_config("[node]\nname = a\n[proxy]\nrule = x" + "+" * 40 + " p2p\n",
                              "FILE:4: [proxy] rule: \"x+++")
        self.check_bad_config("[node]\nname = a\n[proxy]\nhijack = (a{100}){100}\n",
                              "FILE:4: [proxy] hijack: \"(a{100}){100}\": regular expression "
                              "too large once its repetitions are expanded")
        self.check_bad_config("[node]\nname = a\n[upstream]\nhosts = a=1 b\n",
                              'FILE:4: [upstream] hosts: "b": expected NAME=VALUE pairs')

    def test_unknown_section(self):
        self.check_bad_config("[node]\nname = a\n[nosuch]\n", "FILE:3: unknown section [nosuch]")

    def test_set_override_error_names_the_option(self):
        path = self.path("good.ini")
        with open(path, "w") as handle:
            handle.write("[node]\nname = a\n")
        result = subprocess.run([zflytest.ZFLY, "check", "-c", path, "--set", "bus.hwm=-1"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--set bus.hwm=-1", result.stderr)
        result = subprocess.run([zflytest.ZFLY, "check", "-c", path, "--set", "bus.hwm=5"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_ready_notification_and_clean_stop(self):
        notify_path = self.path("notify.sock")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(notify_path)
        receiver.settimeout(20)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        node = self.start("a", "[node]\nname = a\nhttp = 127.0.0.1:0\n[echo]\n", env=env)
        node.wait_ready()
        messages = receiver.recv(4096).decode()
        self.assertIn("READY=1", messages)
        status, _, body = node.http_get("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        node.process.send_signal(signal.SIGTERM)
        # The contract is "within 5 seconds": the deadline is the assertion.
        self.assertEqual(node.wait_exit(timeout=5), 0)
        node.log.wait_for(r"zfly: stopped exit=0")
        receiver.close()

    def test_sigint_stops_too(self):
        node = self.start("a", "[node]\nname = a\nhttp =\n[echo]\n")
        node.wait_ready()
        node.process.send_signal(signal.SIGINT)
        self.assertEqual(node.wait_exit(timeout=5), 0)

    def port_in_use(self):
        """A loopback port this test listens on (closed when the test ends)."""
        port = free_port()
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        return port

    def test_actor_that_cannot_start_takes_the_process_down(self):
        port = self.port_in_use()
        node = self.start("a", f"[node]\nname = a\nhttp =\n[bus]\ninsecure = true\n"
                               f"[echo]\nbind = tcp://127.0.0.1:{port}\n")
        self.assertEqual(node.wait_exit(timeout=20), 1)
        # The line names the file, the key and the endpoint, and the system's reason.
        node.log.wait_for(rf"zfly: {node.config_path}: echo could not start: \[echo\] bind: "
                          rf"cannot bind tcp://127.0.0.1:{port}: Address already in use$")
        node.log.wait_for(r"insecure = true")

    def test_two_nodes_with_one_http_port(self):
        """The second node on a host with the same [node] http says which key, which address
        and which file, not only "Address already in use"."""
        port = free_port()
        first = self.start("a", f"[node]\nname = a\nhttp = 127.0.0.1:{port}\n[echo]\n")
        first.wait_ready()
        second = self.start("b", f"[node]\nname = b\nhttp = 127.0.0.1:{port}\n[echo]\n")
        self.assertEqual(second.wait_exit(timeout=20), 1)
        second.log.wait_for(rf"error +zfly: {second.config_path}: \[node\] http: cannot listen "
                            rf"on 127.0.0.1:{port}: bind: Address already in use$")
        self.assertNotIn("zfly: ready", second.log.text())
        # The first node is untouched.
        status, _, body = first.http_get("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))

    def test_bad_http_address_names_the_key(self):
        node = self.start("a", "[node]\nname = a\nhttp = localhost:80\n[echo]\n")
        self.assertEqual(node.wait_exit(timeout=20), 1)
        node.log.wait_for(r"\[node\] http: 'localhost' is not a numeric IPv4 address")

    def test_missing_certificate_names_the_key_and_path(self):
        missing = self.path("nowhere", "a.key")
        node = self.start("a", f"[node]\nname = a\nhttp =\n[bus]\ncert = {missing}\n[echo]\n")
        self.assertEqual(node.wait_exit(timeout=20), 1)
        node.log.wait_for(rf"\[bus\] cert: {missing}: no such certificate")

    def test_tap_endpoint_in_use_names_the_key(self):
        port = self.port_in_use()
        node = self.start("a", f"[node]\nname = a\nhttp =\ntap = tcp://127.0.0.1:{port}\n"
                               f"[bus]\ninsecure = true\n[echo]\n")
        self.assertEqual(node.wait_exit(timeout=20), 1)
        node.log.wait_for(rf"tap could not start: \[node\] tap: cannot bind "
                          rf"tcp://127.0.0.1:{port}: Address already in use")

    def test_tcp_without_cert_is_refused_with_the_fix(self):
        node = self.start("a", f"[node]\nname = a\nhttp =\n[echo]\nbind = tcp://127.0.0.1:{free_port()}\n")
        self.assertEqual(node.wait_exit(timeout=20), 1)
        node.log.wait_for(r"\[bus\] cert is not set")

    def test_help_and_reference(self):
        result = subprocess.run([zflytest.ZFLY, "--help"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0)
        self.assertIn("usage: zfly -c FILE", result.stdout)
        reference = subprocess.run([zflytest.ZFLY, "config-reference"], capture_output=True,
                                   text=True).stdout
        for key in ("[node]", "[bus]", "request_timeout", "[echo]", "[probe]"):
            self.assertIn(key, reference)


if __name__ == "__main__":
    zflytest.main()
