#!/usr/bin/python3
"""The web console in a real browser: Debian's headless Chromium, driven by playwright-core
(tests/console/drive.mjs), against a real manager with real nodes that joined it.

The cluster: a manager (SQLite), a scheduler, a seed peer and two edges on loopback, plus
10,000 hosts written into the manager's database (the host list must stay one page in the
DOM). Two edges download one file through the swarm, so the swarm page has a task to draw.
The manager runs the preheat worker; a docker-registry with token auth holds a private image.
Then the browser logs in, creates and edits a cluster, deletes one with confirmation, pages
and filters the hosts (cache use included) and revokes one, reads the schedulers and seed
peers, draws the swarm with bytes on its edges, creates a preheat job for the private image
with the registry's credentials and watches it reach SUCCESS on the job page (layers, bytes,
the seed peer's result), cancels a job stuck on a registry that never answers, creates tokens
(the secret shown once) and revokes one, looks at every page at phone width, and logs in
again with the read-only token it made: it sees every page, every control that changes
something is disabled, and the API answers 403 anyway. Each step is checked in the DOM,
runs axe-core on every page it shows (no serious violation), fails on any error on the
page's console (a refused CSP included), and leaves screenshots in
build/console-screenshots/. Afterwards the API shows what the browser did, and the registry
password appears in no answer of the API."""
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.request

import socket
import sys
import threading

import managertest
from managertest import node_ini
from zflytest import BUILD_DIR, SOURCE_DIR, Origin, free_port, main, wait_until_true

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "registry"))
import registry as reg  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node") or "/usr/bin/node"
DRIVER = os.path.join(SOURCE_DIR, "tests", "console", "drive.mjs")
NODE_MODULES = os.path.join(SOURCE_DIR, "tests", "console", "node_modules")
ZFLY_GET = os.path.join(BUILD_DIR, "zfly-get")
SCREENSHOTS = os.path.join(BUILD_DIR, "console-screenshots")
BULK_HOSTS = 10_000
FILE_SIZE = 12 * 1024 * 1024
REPO = "private/app"
GIB = 1024 ** 3


def missing():
    if not os.access(CHROMIUM, os.X_OK):
        return "no /usr/bin/chromium (tools/setup.sh installs chromium)"
    if not os.access(NODE, os.X_OK):
        return "no node"
    for package in ("playwright-core", "axe-core"):
        if not os.path.isdir(os.path.join(NODE_MODULES, package)):
            return f"no {package} in tests/console/node_modules (tools/setup.sh runs npm ci)"
    return None


class ConsoleTest(managertest.ManagerCase):
    backend = "sqlite"

    def setUp(self):
        reason = missing()
        if reason:
            self.skipTest(reason)
        super().setUp()
        self.origin = None
        # The test registry: token auth, a private image (anonymous pulls refused), two layers.
        os.makedirs(self.path("registry"), exist_ok=True)
        self.token_server = reg.TokenServer(self.path("registry"))
        self.addCleanup(self.token_server.stop)
        self.addCleanup(self.token_server.hold.set)
        self.registry = reg.Registry(self.path("registry"), self.token_server)
        self.addCleanup(self.registry.stop)
        self.layout = reg.build_image(self.path("registry"), "v1", layers=2,
                                      layer_bytes=3 << 20)
        reg.push(self.layout, "v1", self.registry, REPO)
        # A "registry" that takes connections and never answers: a job against it stays
        # running until cancelled (the worker's request_timeout is far longer than the test).
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(8)
        self.addCleanup(self.silent.close)

    def tearDown(self):
        if self.origin:
            self.origin.stop()
        super().tearDown()

    def preheat_section(self):
        return (f"job_lease = 5s\n\n[preheat]\nlease = 5s\nretries = 1\nretry_delay = 200ms\n"
                f"poll = 100ms\nrequest_timeout = 120s\nplain_http = {self.registry.address}\n")

    def node(self, manager, name, token_file, sections):
        process = self.start(name, node_ini(self, name, manager, token_file, sections))
        process.wait_ready()
        process.log.wait_for(r"join: joined")
        return process

    def storage(self, name, seed=False):
        fetcher_bind = (f"tcp://127.0.0.1:{free_port()}" if seed
                        else f"ipc://{self.path(name + '-fetcher.sock')}")
        return (f"[storage]\ndir = {self.path(name + '-cache')}\n"
                f"bind = tcp://127.0.0.1:{free_port()}\n"
                f"[fetcher]\nbind = {fetcher_bind}\n" + ("seed = true\n" if seed else ""))

    def bulk_hosts(self):
        """10,000 hosts as if they had joined: rows in the manager's own database."""
        now = int(time.time() * 1000)
        database = sqlite3.connect(self.database[len("sqlite:"):], timeout=30)
        with database:
            database.executemany(
                "INSERT INTO hosts (name, public_key, cluster_id, state, address, idc, location, "
                "labels, first_seen, last_seen, cache_bytes, cache_tasks, cache_capacity) "
                "VALUES (?, ?, 1, 'active', ?, 'fra1', 'eu|de', ?, ?, ?, ?, ?, ?)",
                [(f"bulk-{index:05d}", f"{index:040d}", f"10.9.{index // 250}.{index % 250}",
                  json.dumps({"rack": f"r{index % 10}"}), now - 86_400_000, now - index * 1000,
                  (index % 100) * GIB, (index % 100) * 3, 100 * GIB)
                 for index in range(BULK_HOSTS)])
        database.close()

    def test_console(self):
        manager = managertest.Manager(self, extra="keepalive = 1s\nrefresh = 5s\n"
                                      + self.preheat_section())
        token = self.write("join-token", manager.join_token(name="console"))
        self.node(manager, "sched-1", token, f"[scheduler]\nbind = tcp://127.0.0.1:{free_port()}\n")
        seed = self.node(manager, "seed-1", token, self.storage("seed-1", seed=True))
        edges = [self.node(manager, name, token, self.storage(name)) for name in ("edge-a", "edge-b")]
        for process in [seed] + edges:
            process.log.wait_for(r"scheduler joined the ring scheduler=scheduler@sched-1")

        # A file through the swarm: the seed from the origin, the edges from the seed and
        # from each other. The digest names the task.
        payload = hashlib.sha256(b"console").digest() * (FILE_SIZE // 32)
        digest = hashlib.sha256(payload).hexdigest()
        self.origin = Origin(self.path("origin"), self.path("origin.log"), {"layer": payload})
        for name in ("edge-a", "edge-b"):
            result = subprocess.run(
                [ZFLY_GET, self.origin.url("layer"), "-O", self.path(f"{name}.out"), "--digest",
                 f"sha256:{digest}", "-c", self.path(f"{name}.ini")],
                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            self.assertEqual(result.returncode, 0, result.stderr)

        # The swarm through the API, as the page reads it: every peer finished, the origin
        # sent to the seed, and every edge counted at least the file's bytes.
        def swarm_done():
            status, swarm, _ = manager.api("GET", f"/api/v1/tasks/sha256:{digest}/swarm")
            self.assertEqual(status, 200, swarm)
            return swarm if all(p["state"] == "finished" for p in swarm["peers"]) else None
        swarm = wait_until_true(swarm_done, "every peer finished in the scheduler's view",
                                timeout=30)
        peers = {p["host_id"]: p for p in swarm["peers"]}
        self.assertEqual(sorted(peers), ["edge-a", "edge-b", "seed-1"])
        self.assertEqual(swarm["scheduler"], "scheduler@sched-1")
        self.assertEqual(swarm["content_length"], len(payload))
        self.assertTrue(peers["seed-1"]["seed"])
        self.assertGreaterEqual(sum(r["bytes"] for r in peers["seed-1"]["received"]
                                    if r["from"] == "source"), len(payload))
        for name in ("edge-a", "edge-b"):
            self.assertGreaterEqual(sum(r["bytes"] for r in peers[name]["received"]),
                                    len(payload), peers[name])
        # The task id names it too; an unknown task is 404, a malformed id 400.
        self.assertEqual(manager.ok("GET", f"/api/v1/tasks/{swarm['task_id']}/swarm")["peers"],
                         swarm["peers"])
        self.assertEqual(manager.api("GET", "/api/v1/tasks/" + "0" * 64 + "/swarm")[0], 404)
        self.assertEqual(manager.api("GET", "/api/v1/tasks/nothex/swarm")[0], 400)

        # Each edge's cache use reaches the manager with its next join (storage measures it
        # first): the file's bytes in one task, of the filesystem's capacity.
        def cache_reported():
            host = manager.ok("GET", "/api/v1/hosts?name=edge-a")["items"][0]
            return host if (host["cache_bytes"] or 0) >= len(payload) else None
        edge = wait_until_true(cache_reported, "edge-a's cache use in the manager", timeout=30)
        self.assertEqual(edge["cache_tasks"], 1)
        self.assertGreater(edge["cache_capacity"], edge["cache_bytes"])
        self.assertIsNone(manager.ok("GET", "/api/v1/hosts?name=sched-1")["items"][0]
                          ["cache_capacity"])  # no storage, nothing reported

        self.bulk_hosts()
        hosts = manager.ok("GET", "/api/v1/hosts?per_page=1")
        _, layers = reg.layout_digests(self.layout, "v1")
        plan = {
            "url": manager.url, "admin_token": manager.token, "chromium": CHROMIUM,
            # How long one browser action may wait: the daemons run under ASan in CI too.
            "timeout_ms": 60_000 if os.environ.get("ZF_SANITIZED") else 30_000,
            "screenshots": SCREENSHOTS, "host_total": hosts["total"],
            "default_hosts": hosts["total"], "filter_name": "bulk-0004", "filter_matches": 10,
            "revoke_host": "bulk-00042", "revoke_label": "rack=r2",
            "revoke_cache": "42 GiB of 100 GiB, 126 tasks", "edge_host": "edge-a",
            "edge_cache": "12 MiB of", "scheduler": "sched-1",
            "seed": "seed-1", "task_id": "sha256:" + digest, "swarm_hosts": ["source", "seed-1", "edge-a",
                                                                 "edge-b"],
            "preheat": {"image": f"{self.registry.address}/{REPO}:v1",
                        "username": reg.USER, "password": reg.PASSWORD, "layers": layers,
                        "cluster": "default", "seed": "seed-1",
                        "silent": f"127.0.0.1:{self.silent.getsockname()[1]}/{REPO}:v1"},
        }
        plan_path = self.write("plan.json", json.dumps(plan))
        shutil.rmtree(SCREENSHOTS, ignore_errors=True)
        # The registry's token realm holds the preheat job the browser starts until the job
        # page has shown it running: the page must then follow it to SUCCESS by itself.
        self.token_server.hold.clear()
        lines = []
        with open(self.path("drive.stderr"), "w+") as stderr:
            drive = subprocess.Popen([NODE, DRIVER, plan_path], stdout=subprocess.PIPE,
                                     stderr=stderr, text=True, cwd=os.path.dirname(DRIVER))
            watchdog = threading.Timer(480, drive.kill)
            watchdog.start()
            try:
                for raw in drive.stdout:
                    if not raw.startswith("{"):
                        continue
                    lines.append(json.loads(raw))
                    if lines[-1].get("event") == "job-shown-running":
                        self.token_server.hold.set()
                returncode = drive.wait()
            finally:
                watchdog.cancel()
                self.token_server.hold.set()
            stderr.seek(0)
            errors = stderr.read()
        steps = [line for line in lines if "step" in line]
        for line in steps:
            print("console:", json.dumps(line)[:2000])
        self.assertEqual(returncode, 0, errors[-4000:] + "\n"
                         + "\n".join(s.get("error", "") for s in steps if not s["ok"]))
        self.assertEqual([s["step"] for s in steps if s["ok"]],
                         ["01-login", "02-clusters", "03-cluster-created", "04-cluster-delete",
                          "05-hosts-10000", "06-host-revoked", "07-schedulers", "08-swarm",
                          "09-preheat-form", "10-preheat-success", "11-preheat-cancel",
                          "12-tokens", "13-phone", "14-readonly"])
        result = lines[-1]["result"]
        for step in [s["step"] for s in steps]:
            self.assertTrue(os.path.getsize(os.path.join(SCREENSHOTS, step + ".png")) > 0)

        # What the browser did, as the API sees it.
        cluster = manager.ok("GET", f"/api/v1/clusters/{result['cluster_id']}")
        self.assertEqual((cluster["name"], cluster["description"]), ("eu-west", "Frankfurt racks"))
        self.assertEqual(cluster["scopes"], {"idc": "fra1|fra2", "location": "eu|de",
                                             "cidrs": ["10.9.0.0/16"], "hostnames": ["^eu-"]})
        self.assertEqual(cluster["client_config"], {"refresh": "30s"})
        names = [c["name"] for c in manager.ok("GET", "/api/v1/clusters")["items"]]
        self.assertEqual(names, ["default", "eu-west"])
        revoked = manager.ok("GET", "/api/v1/hosts?name=bulk-00042")["items"]
        self.assertEqual([(h["name"], h["state"]) for h in revoked], [("bulk-00042", "revoked")])
        self.assertEqual(manager.api("GET", "/api/v1/clusters", token=result["revoked_token"])[0],
                         401)
        joins = {t["name"]: t for t in manager.ok("GET", "/api/v1/join-tokens")["items"]}
        self.assertEqual(joins["rollout"]["state"], "revoked")
        self.assertEqual(joins["rollout"]["prefix"], result["join_token"][:12])
        viewer = result["readonly_token"]
        self.assertEqual(manager.api("GET", "/api/v1/hosts", token=viewer)[0], 200)
        self.assertEqual(manager.api("DELETE", "/api/v1/hosts/5", token=viewer)[0], 403)
        manager.process.log.wait_for(r"api: POST /api/v1/clusters 403 .*principal=admin")

        # The preheat jobs the browser made: one that brought the image's layers into the seed
        # peer, one cancelled; the password went to the manager once and comes back nowhere.
        done = manager.ok("GET", f"/api/v1/jobs/{result['success_job']}")
        self.assertEqual(done["state"], "success", done)
        self.assertEqual(done["args"]["urls"], [plan["preheat"]["image"]])
        self.assertTrue(done["args"]["credentials"])
        self.assertEqual(done["scheduler_cluster_ids"], [1])
        self.assertTrue(set(layers) <= {blob["digest"] for blob in done["blobs"]}, done["blobs"])
        for blob in done["blobs"]:
            self.assertEqual([(h["host"], h["state"]) for h in blob["hosts"]],
                             [("seed-1", "success")])
        cancelled = manager.ok("GET", f"/api/v1/jobs/{result['cancelled_job']}")
        self.assertEqual(cancelled["state"], "cancelled", cancelled)
        self.assertIn("cancelled by admin", cancelled["error"])
        for path in ("/api/v1/jobs", f"/api/v1/jobs/{result['success_job']}"):
            self.assertNotIn(f'"{reg.PASSWORD}"', json.dumps(manager.ok("GET", path)))

        # The console's files: embedded, with a CSP that allows nothing from elsewhere.
        with urllib.request.urlopen(manager.url + "/console/app.js", timeout=10) as response:
            self.assertEqual(response.headers["Content-Type"], "text/javascript; charset=utf-8")
            self.assertIn("script-src 'self'", response.headers["Content-Security-Policy"])
            with open(os.path.join(SOURCE_DIR, "console", "app.js"), "rb") as handle:
                self.assertEqual(response.read(), handle.read())
        self.assertEqual(manager.api("GET", "/console/nothing.js", token="")[0], 404)


if __name__ == "__main__":
    main()
