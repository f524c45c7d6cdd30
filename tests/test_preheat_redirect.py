#!/usr/bin/python3
"""Preheat through registries that redirect blobs to a CDN, ask for Basic auth, or serve
nested indexes; and cancelling a running job. Real processes on loopback.

A docker-registry with token auth holds a multi-arch image under private/. In front of it
(preheattest.RegistryFront) a front answers blob GETs with 307 to a CDN under another host
name with a signed URL; a second front asks for Basic credentials itself. A manager runs its
preheat worker; a scheduler, a seed peer and an edge join it.

- CDN: the job succeeds, every blob came from the CDN once, the registry's Authorization
  reached the front with every blob GET and never the CDN. An edge then pulls each blob
  through its proxy from the real registry's address: the task is keyed by the digest, so it
  comes from the seed, and neither the registry nor the CDN sends a blob byte.
- Basic auth and a nested index (an index whose entry is an index): the job takes the
  platform's blobs through both levels; --platform all takes both platforms'; a wrong
  password fails with the reason.
- Cancel: while the CDN holds the seed's download, POST /api/v1/jobs/{id}/cancel ends the
  job cancelled at once (Harbor sees FAILURE, zfly-preheat --follow exits 5 saying so); a
  second cancel answers 409; the job stays cancelled when the download is let go.
"""
import hashlib
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import preheattest as ph  # noqa: E402
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REPO = "private/app"


class PreheatRedirectTest(ph.RegistryCase):
    seeds = 1

    @classmethod
    def push_images(cls):
        cls.layout = ph.build_multiarch(cls.shared, "app", layers=2, layer_bytes=512 << 10)
        ph.push_multiarch(cls.layout, "app", cls.registry, REPO)
        cls.blobs = ph.image_blobs(cls.layout, "app")
        cls.cdn = ph.RegistryFront(cls.registry, cls.token, cls.layout, REPO)
        cls.basic = ph.RegistryFront(cls.registry, cls.token, cls.layout, REPO, basic=True)
        index = ph.index_digest(cls.layout, "app")
        cls.basic.nested["nested"] = (index, ph.layout_blob_size(cls.layout, index))

    @classmethod
    def tearDownClass(cls):
        cls.cdn.stop()
        cls.basic.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        del self.cdn.blob_gets[:], self.cdn.cdn_requests[:]
        del self.basic.blob_gets[:], self.basic.cdn_requests[:]

    def submit(self, url, password=reg.PASSWORD, platform="linux/amd64"):
        return self.cluster.submit({"type": "image", "url": url, "platform": platform,
                                    "username": reg.USER, "password": password})

    def edge_get(self, edge, digest):
        """A blob through the edge's proxy, as a runtime asks the mirror for it."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.cluster.port(edge + '.proxy')}/v2/{REPO}/blobs/{digest}")
        request.add_header("Authorization", "Bearer " + ph.pull_token(self.token, REPO))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=60) as response:
            return response.read()

    def test_cdn_redirect(self):
        amd64 = self.blobs["linux/amd64"]
        start = self.registry.mark()
        job = self.cluster.wait_job(self.submit(self.cdn.manifest_url("app"))["id"])
        self.assertEqual(job["state"], "success", job)
        self.assertEqual({blob["digest"] for blob in job["blobs"]}, set(amd64))
        # every blob went through the redirect, with the registry's token at the front ...
        self.assertEqual({digest for digest, _ in self.cdn.blob_gets}, set(amd64))
        self.assertTrue(all(had_auth for _, had_auth in self.cdn.blob_gets), self.cdn.blob_gets)
        # ... and without it at the CDN
        self.assertEqual({digest for digest, _, _ in self.cdn.cdn_requests}, set(amd64))
        self.assertEqual([auth for _, auth, _ in self.cdn.cdn_requests if auth], [])
        self.assertEqual(ph.registry_blob_gets(self.registry, start), [])

        # An edge pulls from the registry's own address: the same tasks (keyed by digest),
        # served by the seed; no blob byte from the registry or the CDN.
        self.cluster.edge("edge-1")
        cdn_before = len(self.cdn.cdn_requests)
        start = self.registry.mark()
        for digest in amd64:
            data = self.edge_get("edge-1", digest)
            self.assertEqual("sha256:" + hashlib.sha256(data).hexdigest(), digest)
        self.assertEqual(ph.registry_blob_gets(self.registry, start), [])
        self.assertEqual(len(self.cdn.cdn_requests), cdn_before)

    def test_basic_auth_nested_index(self):
        job = self.cluster.wait_job(self.submit(self.basic.manifest_url("nested"))["id"])
        self.assertEqual(job["state"], "success", job)
        self.assertEqual({blob["digest"] for blob in job["blobs"]},
                         set(self.blobs["linux/amd64"]))
        job = self.cluster.wait_job(self.submit(self.basic.manifest_url("nested"),
                                                platform="all")["id"])
        self.assertEqual(job["state"], "success", job)
        self.assertEqual({blob["digest"] for blob in job["blobs"]},
                         set(self.blobs["linux/amd64"]) | set(self.blobs["linux/arm64"]))
        job = self.cluster.wait_job(self.submit(self.basic.manifest_url("nested"),
                                                password="wrong")["id"])
        self.assertEqual(job["state"], "failure", job)
        self.assertIn("wrong username or password", job["error"])

    def test_cancel(self):
        self.cdn.hold.clear()
        try:
            job = self.submit(self.cdn.manifest_url("app"))
            ph.wait_until(lambda: self.cdn.cdn_waiting > 0, 30, "the seed asks the CDN")
            self.assertEqual(self.cluster.job(job["id"])["state"], "running")
            cancelled = self.cluster.manager.ok("POST", f"/api/v1/jobs/{job['id']}/cancel",
                                                status=200)
            self.assertEqual(cancelled["state"], "cancelled")
            self.assertIn("cancelled by admin", cancelled["error"])
            code, answer, _ = self.cluster.manager.api("POST", f"/api/v1/jobs/{job['id']}/cancel")
            self.assertEqual(code, 409, answer)
            harbor = self.cluster.manager.ok("GET", f"/oapi/v1/jobs/{job['id']}")
            self.assertEqual(harbor["state"], "FAILURE")
            status, out, err = self.cluster.preheat_tool("--follow", str(job["id"]))
            self.assertEqual(status, 5, (out, err))
            self.assertIn("cancelled", out)
            self.cluster.manager.process.log.wait_for(
                rf"preheat: job {job['id']} (stopped|released|ended)", timeout=30)
        finally:
            self.cdn.hold.set()
        self.assertEqual(self.cluster.job(job["id"])["state"], "cancelled")
        # The worker is free again: the next job runs to its end.
        self.assertEqual(self.cluster.wait_job(
            self.submit(self.cdn.manifest_url("app"))["id"])["state"], "success")
        self.assertEqual(self.cluster.job(job["id"])["state"], "cancelled")


if __name__ == "__main__":
    zflytest.main()
