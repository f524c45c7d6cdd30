#!/usr/bin/python3
"""A cold pull of a private image through an edge, in a cluster with a seed peer.

Real processes on loopback: a token-auth docker-registry with an image under private/, where
anonymous pulls are refused; a manager, a scheduler, a seed peer and an edge node that join it.
skopeo pulls the image through the edge's proxy (a registry mirror) with the registry's
credentials, nothing preheated. The scheduler triggers the seed for each blob, but a seed
triggered by the scheduler has no credentials (they stay with the client), so the registry
refuses it. Checked:

- the pull succeeds and the copy is exact;
- each blob is refused to the seed at most once: the scheduler triggers no seed again for a
  task a seed failed at the origin, and the edge fetches the blob from the registry itself at
  once (before, the scheduler triggered the seed again and again, about 30 times a second, and
  the edge took the blob from the registry only when its sched_fallback, 10 s, ran out);
- the edge took every blob from the registry (its fetcher's source bytes), the seed none.
(tools/bench/preheat.py found it: a cold pull of 10 MiB took 21 s on 100 Mbit/s links.)
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import preheattest as ph  # noqa: E402
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REPO = "private/app"
REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the edge's mirror serves it


class SeedPrivateTest(ph.RegistryCase):
    seeds = 1

    def test_cold_private_pull(self):
        layout = reg.build_image(self.workdir, "v1", layers=2, layer_bytes=3 << 20)
        reg.push(layout, "v1", self.registry, REPO)
        edge = self.cluster.edge("edge-1")
        seed = self.cluster.nodes["seed-1"]
        conf, authfile = reg.skopeo_mirror_files(
            self.workdir, REGISTRY_NAME, f"127.0.0.1:{self.cluster.port('edge-1.proxy')}")
        out = self.path("pulled")
        start = self.registry.mark()
        result = subprocess.run(["skopeo", "--registries-conf", conf, "copy", "--quiet",
                                 "--authfile", authfile, f"docker://{REGISTRY_NAME}/{REPO}:v1",
                                 f"oci:{out}:v1"], capture_output=True, text=True,
                                env=reg.skopeo_env(), timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        manifest, layers = reg.layout_digests(out, "v1")  # every blob checked
        self.assertEqual((manifest, layers), reg.layout_digests(layout, "v1"))

        refused = {}
        for method, digest, status, _, _ in self.registry.blob_requests(start=start):
            if method == "GET" and status == 401:
                refused[digest] = refused.get(digest, 0) + 1
        self.assertTrue(all(count == 1 for count in refused.values()), refused)
        for digest in layers:  # the log read up to each layer's answer
            edge.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200")
        self.assertNotRegex(edge.log.text(), r"no parent to use")
        blob_bytes = sum(ph.layout_blob_size(layout, digest) for digest in layers)
        self.assertGreaterEqual(ph.metric(edge, "zfly_fetcher_source_bytes_total"), blob_bytes)
        self.assertEqual(ph.metric(seed, "zfly_fetcher_source_bytes_total"), 0)


if __name__ == "__main__":
    zflytest.main()
