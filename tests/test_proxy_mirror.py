"""The proxy as a registry mirror, with real skopeo and a real docker-registry (token auth).

An image of several layers built with umoci is pushed by skopeo to docker-registry; skopeo
then pulls it through zfly configured as a registries.conf mirror. Blobs go P2P (fetcher and
storage in the same node), everything else direct. Checked: digests match the registry's,
a second pull sends no blob GET to the registry, a moved tag is seen at once, Range and HEAD
answers, and the error cases answer what the registry itself answers.
"""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the mirror can serve it


def token_for(token_server, repo, actions="pull"):
    url = f"{token_server.realm}?service={reg.SERVICE}&scope=repository:{repo}:{actions}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["token"]


def fetch(url, headers=None, method="GET"):
    """(status, headers, body) without raising on HTTP errors and without any proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class ProxyMirrorTest(reg.RegistryMixin, zflytest.ZflyTestCase):
    @classmethod
    def push_images(cls):
        cls.layout = reg.build_image(cls.shared, "v1", layers=3, layer_bytes=7 << 20)
        reg.build_image(cls.shared, "v2", layers=2, layer_bytes=1 << 20, seed=b"other")
        reg.push(cls.layout, "v1", cls.registry, "test/app")

    def start_node(self, name="edge", extra="", default_registry=None):
        base = default_registry or f"http://{self.registry.address}"
        return self.start_proxy_node(name, proxy=f"default_registry = {base}\n{extra}\n")

    def pull(self, proxy_port, repo, tag, out):
        conf = reg.registries_conf(self.workdir, REGISTRY_NAME, f"127.0.0.1:{proxy_port}")
        return subprocess.run(["skopeo", "--registries-conf", conf, "copy", "--quiet",
                               f"docker://{REGISTRY_NAME}/{repo}:{tag}", f"oci:{out}:{tag}"],
                              capture_output=True, text=True, env=reg.skopeo_env(), timeout=180)

    def test_pull_through_mirror_p2p_then_cached(self):
        node, port = self.start_node()
        start = self.registry.mark()
        result = self.pull(port, "test/app", "v1", self.path("out1"))
        self.assertEqual(result.returncode, 0, result.stderr)
        expected = reg.registry_digests(self.registry, "test/app", "v1")
        self.assertEqual(reg.layout_digests(self.path("out1"), "v1"), expected)
        for digest in expected[1]:
            node.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200 ", timeout=5)
        first_gets = self.registry.blob_gets(start=start)
        self.assertTrue(first_gets, "the first pull fetched blobs from the registry")

        # the same node again: every blob from its storage, none from the registry
        second = self.registry.mark()
        result = self.pull(port, "test/app", "v1", self.path("out2"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(reg.layout_digests(self.path("out2"), "v1"), expected)
        self.assertEqual(self.registry.blob_gets(start=second), [])

        # Range from cached pieces, HEAD with digest and length
        layer = expected[1][0]
        auth = {"Authorization": "Bearer " + token_for(self.token, "test/app")}
        status, headers, whole = fetch(f"http://{self.registry.address}/v2/test/app/blobs/{layer}",
                                       auth)
        self.assertEqual(status, 200)
        status, headers, part = fetch(f"http://127.0.0.1:{port}/v2/test/app/blobs/{layer}",
                                      dict(auth, Range="bytes=5000000-5000099"))
        self.assertEqual(status, 206)
        self.assertEqual(headers["Content-Range"], f"bytes 5000000-5000099/{len(whole)}")
        self.assertEqual(part, whole[5000000:5000100])
        status, headers, body = fetch(f"http://127.0.0.1:{port}/v2/test/app/blobs/{layer}", auth,
                                      method="HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Docker-Content-Digest"], layer)
        self.assertEqual(int(headers["Content-Length"]), len(whole))

    def test_moved_tag_and_header_choice(self):
        node, port = self.start_node(default_registry="http://127.0.0.1:1")  # never used
        reg.push(self.layout, "v1", self.registry, "test/moving")
        header = {"X-Dragonfly-Registry": f"http://{self.registry.address}"}
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        token = {"Authorization": "Bearer " + token_for(self.token, "test/moving")}
        url = f"http://127.0.0.1:{port}/v2/test/moving/manifests/latest-moving"

        def move_tag_to(tag):
            """latest-moving: the manifest of tag, copied in the registry."""
            subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                            "--dest-tls-verify=false", "--dest-creds",
                            f"{reg.USER}:{reg.PASSWORD}",
                            f"docker://{self.registry.address}/test/moving:{tag}",
                            f"docker://{self.registry.address}/test/moving:latest-moving"],
                           check=True, env=reg.skopeo_env(), timeout=120)

        move_tag_to("v1")
        status, headers, first = fetch(url, dict(header, **accept, **token))
        self.assertEqual(status, 200, first)
        reg.push(os.path.join(self.shared, "layout"), "v2", self.registry, "test/moving")
        move_tag_to("v2")
        status, headers, second = fetch(url, dict(header, **accept, **token))
        self.assertEqual(status, 200)
        self.assertNotEqual(first, second)
        self.assertEqual(headers["Docker-Content-Digest"],
                         reg.registry_digests(self.registry, "test/moving", "latest-moving")[0])

    def test_errors_match_the_registry(self):
        node, port = self.start_node()
        direct = f"http://{self.registry.address}"
        proxy = f"http://127.0.0.1:{port}"
        # 401 without credentials: same status, same challenge
        path = "/v2/private/app/manifests/v1"
        want = fetch(direct + path)
        got = fetch(proxy + path)
        self.assertEqual(got[0], 401)
        self.assertEqual(got[0], want[0])
        self.assertEqual(got[1]["WWW-Authenticate"], want[1]["WWW-Authenticate"])
        # a blob that 404s (P2P route: the fetcher's access question is answered 404, so the
        # proxy asks the registry directly and its own 404 passes back)
        missing = "/v2/test/app/blobs/sha256:" + "0" * 64
        auth = {"Authorization": "Bearer " + token_for(self.token, "test/app")}
        want = fetch(direct + missing, auth)
        got = fetch(proxy + missing, auth)
        self.assertEqual(want[0], 404)
        self.assertEqual(got[0], 404, got[2])
        self.assertEqual(json.loads(got[2])["errors"][0]["code"], "BLOB_UNKNOWN")
        node.log.wait_for(r"p2p: access refused id=\d+ url=\S+/blobs/sha256:0{64} .*404")
        # skopeo without credentials on a private repository fails the same way
        result = self.pull(port, "private/app", "v1", self.path("denied"))
        self.assertNotEqual(result.returncode, 0)
        self.assertRegex(result.stderr, r"(?i)unauthorized|authentication required|denied")

    def test_upstream_down(self):
        dead = zflytest.free_port()
        node, port = self.start_node(default_registry=f"http://127.0.0.1:{dead}")
        status, headers, body = fetch(f"http://127.0.0.1:{port}/v2/test/app/manifests/v1")
        self.assertEqual(status, 502)
        error = json.loads(body)["errors"][0]
        self.assertEqual(error["code"], "UNAVAILABLE")
        node.log.wait_for(r"upstream http://127\.0\.0\.1:%d/v2/test/app/manifests/v1 failed" % dead)


if __name__ == "__main__":
    zflytest.main()
