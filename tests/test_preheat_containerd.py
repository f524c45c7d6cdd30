#!/usr/bin/python3
"""Preheat, then containerd pulls through an edge: the pull takes every blob from zfly.

Real processes on loopback: a token-auth docker-registry holding a multi-arch image (an OCI
index of linux/amd64 and linux/arm64/v8 images with different layers) under private/, where
anonymous pulls are refused; a manager running the preheat worker in its own process; a
scheduler, a seed peer and an edge node that join it. A job preheats the image's linux/amd64
blobs to the seed. Then containerd (its own instance: config, root, state, socket in the
test's directory) pulls the image with `ctr images pull --hosts-dir` through the edge's proxy
as its registry mirror (deploy/containerd/hosts.toml; requests carry ?ns=registry.zfly.test,
which the edge maps to the registry) with the registry's credentials:

- the pull succeeds and containerd records the image under the index digest the registry
  serves for the tag (containerd checks every blob against its digest as it stores it);
- the registry sends zero blob bytes during the pull (its manifests still come from it: a
  tag is mutable and always goes upstream), and the edge's fetcher takes no byte from the
  origin: the seed serves every blob;
- each blob of the platform went through the edge's P2P route.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import containerdtest  # noqa: E402
import preheattest as ph  # noqa: E402
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REPO = "private/app"
TAG = "multi"
REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the edge's proxy maps it


@unittest.skipIf(containerdtest.skip_reason(), containerdtest.skip_reason())
class PreheatContainerdTest(ph.RegistryCase):
    seeds = 1

    @classmethod
    def push_images(cls):
        cls.layout = ph.build_multiarch(cls.shared, TAG, layers=3)
        ph.push_multiarch(cls.layout, TAG, cls.registry, REPO)
        cls.blobs = ph.image_blobs(cls.layout, TAG)

    def test_ctr_pull_after_preheat(self):
        amd64 = self.blobs["linux/amd64"]
        edge = self.cluster.edge(
            "edge-1", proxy_extra=f"registry_map = {REGISTRY_NAME}=http://{self.registry.address}\n")
        job = self.cluster.submit({"type": "image", "url": f"{self.registry.address}/{REPO}:{TAG}",
                                   "platform": "linux/amd64", "scope": "single_seed_peer",
                                   "username": reg.USER, "password": reg.PASSWORD})
        job = self.cluster.wait_job(job["id"])
        self.assertEqual(job["state"], "success", job)
        self.assertEqual({blob["digest"] for blob in job["blobs"]}, set(amd64))
        self.assertEqual(set(ph.host_blobs(job)), {"seed-1"})

        hosts = containerdtest.hosts_dir(self.workdir, REGISTRY_NAME,
                                         self.cluster.port("edge-1.proxy"))
        image = f"{REGISTRY_NAME}/{REPO}:{TAG}"
        start = self.registry.mark()
        containerd = containerdtest.Containerd(self.workdir, "containerd")
        try:  # stopped before the test's directory goes
            result = containerd.pull(hosts, image, "--platform", "linux/amd64", "--user",
                                     f"{reg.USER}:{reg.PASSWORD}")
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertEqual(containerd.image_digest(image), ph.index_digest(self.layout, TAG))
            content = containerd.ctr("content", "ls", "-q").stdout.split()
            self.assertTrue(set(amd64) <= set(content), content)
        finally:
            containerd.stop()

        self.assertEqual(ph.registry_blob_bodies(self.registry, start), {},
                         "the pull after the preheat took blob bytes from the registry")
        self.assertEqual(ph.registry_blob_gets(self.registry, start), [])
        self.assertEqual(ph.metric(edge, "zfly_fetcher_source_bytes_total"), 0)
        for digest in amd64:
            edge.log.wait_for(rf"GET \S+/blobs/{digest}\S* route=p2p status=200")


if __name__ == "__main__":
    zflytest.main()
