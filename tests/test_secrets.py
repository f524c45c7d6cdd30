"""Secrets stay out of taps and logs.

A node with storage, fetcher, proxy and a tap endpoint; zfly-tap reads the tap. Credentials
cross the bus the way users send them: zfly-get with `--header 'Authorization: Bearer …'` and
a Cookie, and a client of the proxy with `Authorization: Basic …` (each becomes the headers of
a task.fetch). Then:

- the tap shows those header values redacted ("Bearer <redacted, N bytes, sha256:…>"), the
  header names and everything else as they were;
- no secret of the test (the token, the cookie, the Basic credentials, the password) appears
  in any tap line, in the daemon's log, or in zfly-get's output;
- with `[node] tap_secrets = true` the tap shows them in clear (so the redaction is what hid
  them), and the daemon warns about it at start.
"""
import base64
import json
import os
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import zflytest  # noqa: E402


class SecretsTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        root = self.path("files")
        self.payload = os.urandom(300 * 1024)
        self.digest = zflytest.write_blob(root, self.payload)
        self.origin = zflytest.Origin(root, self.path("origin.log"))
        self.token = "tok" + secrets.token_hex(16)
        self.cookie = "session=" + secrets.token_hex(12)
        self.password = "pw" + secrets.token_hex(8)
        self.basic = base64.b64encode(f"puller:{self.password}".encode()).decode()
        self.taps = []

    def tearDown(self):
        for tap in self.taps:
            tap.kill()
            tap.wait()
        self.origin.stop()
        super().tearDown()

    def start_node(self, name, tap_secrets=False):
        port = zflytest.free_port()
        tap = "ipc://" + self.path(name + "-tap.sock")
        ini = zflytest.proxy_node_ini(
            name, port, self.path(name + "-cache"),
            storage=f"bind = ipc://{self.path(name + '-storage.sock')}\n",
            fetcher=f"bind = ipc://{self.path(name + '-fetcher.sock')}\n")
        ini = ini.replace("http = 127.0.0.1:0\n",
                          f"http = 127.0.0.1:0\ntap = {tap}\n"
                          f"tap_secrets = {'true' if tap_secrets else 'false'}\n", 1)
        node = self.start(name, ini)
        node.wait_ready()
        node.log.wait_for(r"proxy: started listen=")
        process = subprocess.Popen([zflytest.ZFLY_TAP, tap, "--type", "task.fetch"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.taps.append(process)
        return node, port, zflytest.LineReader(process.stdout, echo_prefix=f"[tap {name}] ")

    def zfly_get(self, node, out):
        return subprocess.run(
            [os.path.join(zflytest.BUILD_DIR, "zfly-get"), "-c", node.config_path,
             self.origin.url(f"/v2/test/blobs/{self.digest}"), "-O", out, "--progress",
             "lines", "-v", "-H", f"Authorization: Bearer {self.token}", "-H",
             f"Cookie: {self.cookie}"], capture_output=True, text=True, timeout=60)

    def proxy_get(self, port):
        return zflytest.proxy_get(port, self.origin.url(f"/v2/test/blobs/{self.digest}"),
                                  f"Authorization: Basic {self.basic}\r\n")

    def tapped_fetches(self, node, port, tap):
        """Runs zfly-get and a proxy request until the tap has shown a task.fetch from each
        (its subscription takes effect asynchronously); returns (tap lines, zfly-get output)."""
        outputs = []
        deadline = time.monotonic() + 20
        attempt = 0
        while True:
            attempt += 1
            result = self.zfly_get(node, self.path(f"out{attempt}"))
            self.assertEqual(result.returncode, 0, result.stderr)
            outputs.append(result.stdout + result.stderr)
            status, _, body, complete = self.proxy_get(port)
            self.assertEqual((status, complete, body), (200, True, self.payload))
            try:
                tap.wait_for(r'"from":"get-\d+@', timeout=1)
                tap.wait_for(r'"from":"proxy@', timeout=1)
                return tap.received(), "\n".join(outputs)
            except AssertionError:
                self.assertLess(time.monotonic(), deadline, "the tap showed no task.fetch")

    def header_values(self, lines):
        values = {}
        for line in lines:
            record = json.loads(line)
            for header in (record.get("body") or {}).get("headers", []):
                values.setdefault(header["name"], set()).add(header["value"])
        return values

    def test_secrets_are_redacted_in_taps_and_absent_from_logs(self):
        node, port, tap = self.start_node("edge")
        lines, output = self.tapped_fetches(node, port, tap)
        values = self.header_values(lines)
        self.assertEqual(values["Authorization"] & {f"Bearer {self.token}", f"Basic {self.basic}"},
                         set())
        for value in values["Authorization"] | values["Cookie"]:
            self.assertRegex(value, r"^(Bearer |Basic )?<redacted, \d+ bytes, sha256:[0-9a-f]{4}…>$")
        self.assertIn(f"Bearer <redacted, {len(self.token)} bytes, sha256:",
                      " ".join(values["Authorization"]))
        node.stop()
        everything = {"tap": "\n".join(lines), "daemon log": node.log.text(),
                      "zfly-get": output}
        for secret in (self.token, self.cookie, self.basic, self.password):
            for where, text in everything.items():
                self.assertNotIn(secret, text, f"a secret in the {where}")

    def test_tap_secrets_shows_them_and_warns(self):
        node, port, tap = self.start_node("debug", tap_secrets=True)
        node.log.wait_for(r"warning +zfly: \[node\] tap_secrets = true: credentials")
        lines, _ = self.tapped_fetches(node, port, tap)
        values = self.header_values(lines)
        self.assertIn(f"Bearer {self.token}", values["Authorization"])
        self.assertIn(f"Basic {self.basic}", values["Authorization"])
        self.assertIn(self.cookie, values["Cookie"])


if __name__ == "__main__":
    zflytest.main()
