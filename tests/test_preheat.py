#!/usr/bin/python3
"""Preheat, then pull: real processes on loopback, the manager's own queue (no Redis).

A docker-registry with token auth holds multi-arch images (an OCI index of linux/amd64 and
linux/arm64/v8 images with different layers) under private/, where anonymous pulls are
refused. A manager runs the preheat worker in its own process; a scheduler, two seed peers
and three edge nodes join it. For each scope a job preheats one image, and skopeo then pulls
it through the three edges' proxies:

- single_seed_peer, all_seed_peers: the registry sends each blob of the platform once, and only
  to seed peers (the edges' fetchers took nothing from the origin); the arm64 blobs are never
  asked for. all_peers: every node holds every blob, still one copy from the registry.
- The pulls afterwards send zero registry blob bytes, and the images are exact.
- Preheating the same image again succeeds and moves no bytes.
- The job's API shows every blob on every host it went to; zfly-preheat follows a job to its
  end (lines on a pipe, --json).
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import preheattest as ph  # noqa: E402
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REPO = "private/app"
REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the mirrors serve it


class PreheatTest(ph.RegistryCase):

    @classmethod
    def push_images(cls):
        cls.images = {}
        for name in ("single", "seeds", "peers"):
            layout = ph.build_multiarch(cls.shared, name)
            ph.push_multiarch(layout, name, cls.registry, REPO)
            cls.images[name] = ph.image_blobs(layout, name)
        cls.layout = layout

    def cluster(self):
        cluster = ph.Cluster(self, self.registry)
        cluster.scheduler()
        for name in ("seed-1", "seed-2"):
            cluster.seed(name)
        for name in ("edge-1", "edge-2", "edge-3"):
            cluster.edge(name)
        cluster.wait_seeds(2)
        return cluster

    def pull(self, cluster, edge, tag, out):
        conf, authfile = reg.skopeo_mirror_files(
            self.workdir, REGISTRY_NAME, f"127.0.0.1:{cluster.port(edge + '.proxy')}")
        result = subprocess.run(["skopeo", "--registries-conf", conf, "copy", "--quiet",
                                 "--authfile", authfile,
                                 f"docker://{REGISTRY_NAME}/{REPO}:{tag}", f"oci:{out}:{tag}"],
                                capture_output=True, text=True, env=reg.skopeo_env(),
                                timeout=180)
        self.assertEqual(result.returncode, 0, result.stderr)
        return out

    def check_pulls(self, cluster, tag):
        """Pulls tag through every edge: exact images, zero registry blob requests."""
        start = self.registry.mark()
        for edge in ("edge-1", "edge-2", "edge-3"):
            out = self.pull(cluster, edge, tag, self.path(f"out-{tag}-{edge}"))
            with open(os.path.join(out, "index.json")) as handle:
                entry = json.load(handle)["manifests"][0]
            with open(os.path.join(out, "blobs", *entry["digest"].split(":")), "rb") as handle:
                manifest = json.loads(handle.read())
            pulled = {layer["digest"] for layer in manifest["layers"]}
            pulled.add(manifest["config"]["digest"])
            self.assertEqual(pulled, set(self.images[tag]["linux/amd64"]), edge)
            for digest in pulled:  # every blob's bytes match its digest
                with open(os.path.join(out, "blobs", *digest.split(":")), "rb") as handle:
                    import hashlib
                    self.assertEqual("sha256:" + hashlib.sha256(handle.read()).hexdigest(),
                                     digest)
        self.assertEqual(ph.registry_blob_gets(self.registry, start), [],
                         "the pulls after the preheat asked the registry for blobs")

    @staticmethod
    def origin_takers(cluster, digest):
        """What each node's log says of the blob's task and of its schedulers: which node went
        to the origin, and why (printed when the registry sent a blob more than once: seen
        under ASan with the whole suite running)."""
        texts = {name: node.log.text() for name, node in cluster.nodes.items()}
        ids = set(re.findall(rf"task=([0-9a-f]{{16}}) digest={digest}", "\n".join(texts.values())))
        return {name: [line for line in text.splitlines()
                       if any(task_id in line for task_id in ids) or "scheduler dead" in line]
                for name, text in texts.items()}

    def preheat(self, cluster, tag, scope, platform="linux/amd64"):
        job = cluster.submit({"type": "image",
                              "url": f"{self.registry.address}/{REPO}:{tag}",
                              "platform": platform, "scope": scope,
                              "username": reg.USER, "password": reg.PASSWORD})
        self.assertEqual(job["state"], "pending")
        self.assertNotIn(reg.PASSWORD, json.dumps(job))
        return cluster.wait_job(job["id"])

    def test_scopes_then_pulls(self):
        cluster = self.cluster()
        edges = [cluster.nodes[name] for name in ("edge-1", "edge-2", "edge-3")]
        seeds = [cluster.nodes[name] for name in ("seed-1", "seed-2")]
        expected_hosts = {"single": None, "seeds": {"seed-1", "seed-2"},
                          "peers": {"seed-1", "seed-2", "edge-1", "edge-2", "edge-3"}}
        for tag, scope in (("single", "single_seed_peer"), ("seeds", "all_seed_peers"),
                           ("peers", "all_peers")):
            with self.subTest(scope=scope):
                amd64 = self.images[tag]["linux/amd64"]
                start = self.registry.mark()
                edge_source = [ph.metric(e, "zfly_fetcher_source_bytes_total") for e in edges]
                job = self.preheat(cluster, tag, scope)
                self.assertEqual(job["state"], "success", job)
                # every blob of the platform, on the hosts the scope names
                self.assertEqual({blob["digest"] for blob in job["blobs"]}, set(amd64))
                hosts = ph.host_blobs(job)
                if expected_hosts[tag] is None:
                    self.assertTrue(set(hosts) <= {"seed-1", "seed-2"}, hosts)
                    for blob in job["blobs"]:
                        self.assertEqual(len(blob["hosts"]), 1, blob)
                else:
                    self.assertEqual(set(hosts), expected_hosts[tag])
                for host, blobs in hosts.items():
                    self.assertTrue(all(state == "success" for state in blobs.values()), host)
                progress = job["progress"]
                self.assertEqual(progress["tasks_succeeded"], progress["tasks_total"])
                self.assertEqual(progress["bytes_done"], progress["bytes_total"])
                # the registry: each blob once, arm64 never
                served = ph.registry_blob_bodies(self.registry, start)
                self.assertEqual(set(served), set(amd64), served)
                for digest, size in amd64.items():
                    if served[digest] in (size, size + 1):  # + the 1-byte probe
                        continue
                    # the registry's log and every node's, read only for the failure's message
                    requests = [r for r in self.registry.blob_requests(start=start)
                                if r[1] == digest]
                    self.fail(f"{digest}: {served[digest]} bytes served, not {size} (+ 1): "
                              f"{requests} {self.origin_takers(cluster, digest)}")
                if tag != "peers":  # seed scopes: the edges took nothing from the origin
                    self.assertEqual([ph.metric(e, "zfly_fetcher_source_bytes_total")
                                      for e in edges], edge_source)
                self.check_pulls(cluster, tag)
        # the registry's copies went to seeds (a seed may take a blob from the other seed)
        self.assertGreater(sum(ph.metric(s, "zfly_fetcher_source_bytes_total") for s in seeds), 0)

        # The same image again: success, no registry blob request at all.
        start = self.registry.mark()
        job = self.preheat(cluster, "seeds", "all_seed_peers")
        self.assertEqual(job["state"], "success", job)
        self.assertEqual(ph.registry_blob_gets(self.registry, start), [])
        manager = cluster.manager.process
        # the gauges follow the database on the manager's timer
        ph.wait_until(lambda: ph.metric(manager, "zfly_preheat_jobs", state="success") >= 4, 10,
                      "the metrics count four successes")
        self.assertGreater(ph.metric(manager, "zfly_preheat_tasks_total", result="success"), 0)
        self.assertGreater(ph.metric(manager, "zfly_preheat_bytes_total"), 0)


if __name__ == "__main__":
    zflytest.main()
