#!/usr/bin/python3
"""The sample files under deploy/ stay true: each loads, the reference lists every key with
its default exactly as the code declares them, and the all-in-one profile starts."""
import glob
import os
import subprocess

import zflytest
from zflytest import ZflyTestCase

DEPLOY = os.path.join(zflytest.SOURCE_DIR, "deploy")


class DeployTest(ZflyTestCase):
    def test_reference_matches_the_code(self):
        generated = subprocess.run([zflytest.ZFLY, "config-reference"], check=True,
                                   capture_output=True, text=True).stdout
        with open(os.path.join(DEPLOY, "reference.ini")) as handle:
            self.assertEqual(handle.read(), generated,
                             "deploy/reference.ini is stale: regenerate it with "
                             "`build/zfly config-reference > deploy/reference.ini`")

    def test_every_sample_loads(self):
        samples = glob.glob(os.path.join(DEPLOY, "*.ini"))
        self.assertIn(os.path.join(DEPLOY, "allinone.ini"), samples)
        for sample in samples:
            # The reference leaves required keys unset; every other sample must load as is.
            extra = ["--set", "node.name=check"] if sample.endswith("reference.ini") else []
            result = subprocess.run([zflytest.ZFLY, "check", "-c", sample, *extra],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, f"{sample}: {result.stderr}")

    def test_systemd_unit_passes_systemd_analyze(self):
        with open(os.path.join(DEPLOY, "systemd", "zfly.service")) as handle:
            unit = handle.read()
        self.assertIn("Type=notify", unit)
        # verify insists that ExecStart exists: point it at the binary just built.
        unit = unit.replace("/usr/local/bin/zfly", os.path.abspath(zflytest.ZFLY))
        path = self.path("zfly.service")
        with open(path, "w") as handle:
            handle.write(unit)
        result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True,
                                text=True, timeout=60)
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_allinone_starts(self):
        tap = "ipc://" + self.path("tap")
        # The profile as shipped, with every place it touches moved into the test directory.
        overrides = {"node.http": "127.0.0.1:0", "node.tap": tap,
                     "storage.dir": self.path("cache"),
                     "storage.bind": "ipc://" + self.path("storage"),
                     "fetcher.bind": "ipc://" + self.path("fetcher"),
                     "proxy.listen": f"127.0.0.1:{zflytest.free_port()}"}
        args = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
        with open(os.path.join(DEPLOY, "allinone.ini")) as handle:
            node = zflytest.Zfly(self.workdir, "allinone", handle.read(), extra_args=args)
        self.processes.append(node)
        node.wait_ready()
        status, _, body = node.http_get("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))


if __name__ == "__main__":
    zflytest.main()
