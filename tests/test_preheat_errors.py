#!/usr/bin/python3
"""Preheat jobs that cannot succeed, and zfly-preheat's exit codes: real processes on loopback.

A docker-registry with token auth holds a multi-arch image (linux/amd64, linux/arm64/v8) under
private/. A manager runs its preheat worker; a scheduler and one seed peer join it. Each of
these ends in FAILURE with a reason that names the cause, in the API (`error`), in Harbor's
view (`job_states[].error`) and in zfly-preheat (exit status 5, the reason on stdout):

- a wrong password ("wrong username or password");
- an unknown tag ("not found");
- a platform the index does not have (names the platforms it has);
- a registry nobody listens on (after the worker's retries).

zfly-preheat: --wait on a pipe prints lines and ends 0 with every blob on the seed; --json is
the job as the API shows it; --platform all takes both platforms' blobs; 2 for bad usage and
for a job the manager refuses (400), 3 when the manager is unreachable, 4 for a wrong token.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import preheattest as ph  # noqa: E402
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REPO = "private/app"
EXIT_USAGE, EXIT_UNREACHABLE, EXIT_UNAUTHORISED, EXIT_JOB_FAILED = 2, 3, 4, 5


class PreheatErrorsTest(ph.RegistryCase):
    seeds = 1

    @classmethod
    def push_images(cls):
        layout = ph.build_multiarch(cls.shared, "app", layers=1, layer_bytes=128 << 10)
        ph.push_multiarch(layout, "app", cls.registry, REPO)
        cls.blobs = ph.image_blobs(layout, "app")

    def image(self, tag="app", address=None):
        return f"{address or self.registry.address}/{REPO}:{tag}"

    def failed_job(self, reference, password=reg.PASSWORD, platform="linux/amd64"):
        """Submits through the API; returns the job once it ended."""
        job = self.cluster.submit({"type": "image", "url": reference, "platform": platform,
                                   "username": reg.USER, "password": password})
        job = self.cluster.wait_job(job["id"])
        self.assertEqual(job["state"], "failure", job)
        self.assertNotIn(reg.PASSWORD, json.dumps(job))
        harbor = self.cluster.manager.ok("GET", f"/oapi/v1/jobs/{job['id']}")
        self.assertEqual(harbor["state"], "FAILURE")
        self.assertEqual([state["error"] for state in harbor["result"]["job_states"]],
                         [job["error"]])
        return job

    def failed_tool(self, reference, password=reg.PASSWORD, platform="linux/amd64"):
        """zfly-preheat --wait on the same: exit 5, the reason on stdout."""
        status, out, err = self.cluster.preheat_tool(
            reference, "--platform", platform, "--username", reg.USER, "--password-stdin",
            "--wait", stdin=password + "\n")
        self.assertEqual(status, EXIT_JOB_FAILED, (out, err))
        return out + err

    def test_failures(self):
        unreachable = f"127.0.0.1:{zflytest.free_port()}"
        cases = (
            ("wrong password", dict(reference=self.image(), password="not-the-password"),
             ["wrong username or password"]),
            ("unknown tag", dict(reference=self.image("no-such-tag")), ["not found", "no-such-tag"]),
            ("missing platform", dict(reference=self.image(), platform="linux/s390x"),
             ["no linux/s390x image", "linux/amd64", "linux/arm64/v8"]),
            ("unreachable registry", dict(reference=f"http://{unreachable}/v2/{REPO}/manifests/app"),
             [unreachable]),
        )
        start = self.registry.mark()
        for name, arguments, words in cases:
            with self.subTest(case=name):
                job = self.failed_job(**arguments)
                for word in words:
                    self.assertIn(word, job["error"])
                self.assertEqual(job.get("blobs", []), [])
                text = self.failed_tool(**arguments)
                for word in words:
                    self.assertIn(word, text)
        # Nothing was preheated: not one blob request reached the registry.
        self.assertEqual(self.registry.blob_requests(start=start), [])
        manager = self.cluster.manager.process
        # the gauges follow the database on the manager's timer
        ph.wait_until(lambda: ph.metric(manager, "zfly_preheat_jobs", state="failure")
                      == 2 * len(cases), 10, f"the metrics count {2 * len(cases)} failures")
        manager.log.wait_for(r"manager: job \d+ failure: .*wrong username or password", timeout=5,
                             start=0)

    def on_terminal(self, args, stdin):
        """zfly-preheat with stderr on a pseudo-terminal: what it drew there (exit 0)."""
        import pty
        import select
        import subprocess
        master, slave = pty.openpty()
        process = subprocess.Popen([ph.ZFLY_PREHEAT, *args], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        process.stdin.write(stdin.encode())
        process.stdin.close()
        drawn = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            self.assertTrue(ready, "zfly-preheat drew nothing for 60 s")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed its side
                break
            if not chunk:
                break
            drawn += chunk
        os.close(master)
        self.assertEqual(process.wait(timeout=30), 0, drawn)
        return drawn.decode(errors="replace")

    def test_tool(self):
        # --wait on a pipe: lines, exit 0, the end on stdout
        status, out, err = self.cluster.preheat_tool(
            self.image(), "--username", reg.USER, "--password-stdin", "--wait",
            stdin=reg.PASSWORD + "\n")
        self.assertEqual(status, 0, (out, err))
        self.assertNotIn("\r", out + err)  # no redrawn bar on a pipe
        self.assertRegex(out, r"success")
        # on a terminal: one redrawn bar ending with the job's state
        bar = self.on_terminal(["--manager", self.cluster.manager.url, "--token-file",
                                self.cluster.manager.token_file, self.image(), "--username",
                                reg.USER, "--password-stdin", "--wait"], reg.PASSWORD + "\n")
        self.assertIn("\r", bar)
        self.assertRegex(bar, r"job \d+ success .*2/2 blobs")
        # --json: the job as the API shows it; --platform all: both platforms
        status, out, err = self.cluster.preheat_tool(
            self.image(), "--platform", "all", "--username", reg.USER, "--password-stdin",
            "--wait", "--json", stdin=reg.PASSWORD + "\n")
        self.assertEqual(status, 0, (out, err))
        job = json.loads(out)
        self.assertEqual(job["state"], "success")
        both = set(self.blobs["linux/amd64"]) | set(self.blobs["linux/arm64"])
        self.assertEqual({blob["digest"] for blob in job["blobs"]}, both)
        self.assertEqual(ph.host_blobs(job), {"seed-1": {digest: "success" for digest in both}})
        self.assertEqual(job, self.cluster.job(job["id"]))
        # without --wait: submitted, the id printed, exit 0
        status, out, err = self.cluster.preheat_tool(self.image(), "--username", reg.USER,
                                                     "--password-stdin", "--json",
                                                     stdin=reg.PASSWORD + "\n")
        self.assertEqual(status, 0, err)
        self.cluster.wait_job(json.loads(out)["id"])

        # bad usage, and a job the manager refuses
        for arguments in ((), (self.image(), "--scope", "everywhere"),
                          (self.image(), "--username", reg.USER),  # no --password-stdin
                          (self.image(), "--cluster", "x")):
            with self.subTest(usage=arguments):
                status, out, err = self.cluster.preheat_tool(*arguments)
                self.assertEqual(status, EXIT_USAGE, (out, err))
                self.assertIn("zfly-preheat", err)
        status, out, err = self.cluster.preheat_tool(self.image(), "--platform", "Linux")
        self.assertEqual(status, EXIT_USAGE, (out, err))
        self.assertIn("platform", err)
        # a wrong token; a manager nobody listens on
        bad = self.write("bad-token", "zfly_not_a_token\n")
        status, out, err = ph.run_preheat(["--manager", self.cluster.manager.url, "--token-file",
                                           bad, self.image()])
        self.assertEqual(status, EXIT_UNAUTHORISED, (out, err))
        status, out, err = ph.run_preheat(["--manager", f"http://127.0.0.1:{zflytest.free_port()}",
                                           "--token-file", self.cluster.manager.token_file,
                                           self.image()])
        self.assertEqual(status, EXIT_UNREACHABLE, (out, err))


if __name__ == "__main__":
    zflytest.main()
