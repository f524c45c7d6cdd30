"""Private blobs stay private: the registry decides, per client, who may read a blob, also when
every node of the swarm holds it.

Real programs only: docker-registry with token auth and its token server (tests/registry/),
zfly nodes with storage, fetcher and proxy (the mirror), a scheduler, zfly-get, skopeo. An
image is pushed to private/app (anonymous clients get no token for private/ repositories) and
another to private/other. Node A pulls a layer of private/app for a client with a valid token,
so A holds it. Then, through A's mirror:

- a valid client gets the blob from the cache: exact bytes, and the registry sends no blob
  bytes (one access question, a HEAD with the client's token, within the TTL not even that);
- no credentials: the registry's 401 with its WWW-Authenticate challenge, not one byte of the
  blob; a bogus token: 401; a token for private/other asking for a blob of private/app: the
  registry's own answer (401, insufficient scope), not the blob;
- after [fetcher] access_ttl the same client is asked about again;
- node B, which takes the blob only from A (scheduler, storage over CURVE), behaves the same:
  no credentials, 401 and no bytes; a valid client, the blob from A, the registry sending no
  blob bytes to B;
- zfly-get (the fetcher API with a URL and headers) follows the same rule: without the token,
  exit status 4 and nothing written; with it, the file.

Part 3 of issue 14: skopeo through registries.conf does not send --src-creds to a mirror; it
looks credentials up by the mirror's own address. A private image pulls through the mirror
once the credentials are stored under that address (an auth file, as `podman login
127.0.0.1:PORT` writes it), and is refused without them.
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the mirror serves it
TTL = "4s"  # long enough that a request right after another finds the answer kept


def token_for(token_server, repo, user=True):
    """A pull token for repo from the registry's token server (as USER when user is set)."""
    url = f"{token_server.realm}?service={reg.SERVICE}&scope=repository:{repo}:pull"
    request = urllib.request.Request(url)
    if user:
        basic = base64.b64encode(f"{reg.USER}:{reg.PASSWORD}".encode()).decode()
        request.add_header("Authorization", "Basic " + basic)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return json.load(response)["token"]


def get(port, path, authorization=None):
    """(status, headers, body, complete) of a GET through the mirror at port."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
                     "Connection: close\r\n\r\n".encode())
        return zflytest.recv_http_response(sock)


def start_two_nodes(case, ttl=TTL):
    """A scheduler and nodes a and b (storage over tcp:// with CURVE, a proxy each, each the
    other's endpoint) for a test case with a registry: (nodes, their ports, the scheduler)."""
    kdir, allow = case.path("keys"), case.path("allow")
    os.makedirs(kdir)
    os.makedirs(allow)
    keys = {}
    for name in ("sched", "a", "b"):
        keys[name] = zflytest.keygen(kdir, name)
        with open(keys[name][1]) as src, open(os.path.join(allow, name + ".pub"), "w") as dst:
            dst.write(src.read())
    ports = {k: zflytest.free_port() for k in ("sched", "a.storage", "b.storage", "a", "b")}
    sched = case.start("sched", f"[node]\nname = sched\nhttp = 127.0.0.1:0\n[bus]\n"
                                f"cert = {keys['sched'][0]}\nallow = {allow}\n[scheduler]\n"
                                f"bind = tcp://127.0.0.1:{ports['sched']}\n")
    sched.wait_ready()
    nodes = {}
    for name, other in (("a", "b"), ("b", "a")):
        nodes[name] = case.start(name, f"""[node]
name = {name}
log_level = info
http = 127.0.0.1:0

[bus]
cert = {keys[name][0]}
allow = {allow}

[storage]
dir = {case.path(name + '-cache')}
bind = tcp://127.0.0.1:{ports[name + '.storage']}

[fetcher]
schedulers = scheduler@sched
access_ttl = {ttl}

[proxy]
listen = 127.0.0.1:{ports[name]}
default_registry = http://{case.registry.address}

[endpoints]
scheduler@sched = tcp://127.0.0.1:{ports['sched']} cert={keys['sched'][1]}
storage@{other} = tcp://127.0.0.1:{ports[other + '.storage']} cert={keys[other][1]}
""")
        nodes[name].wait_ready()
        nodes[name].log.wait_for(r"proxy: started listen=")
    return nodes, ports, sched


class ProxyAccessTest(reg.RegistryMixin, zflytest.ZflyTestCase):
    @classmethod
    def push_images(cls):
        app = reg.build_image(os.path.join(cls.shared, "app"), "v1", layers=2,
                              layer_bytes=3 << 20)
        reg.push(app, "v1", cls.registry, "private/app")
        other = reg.build_image(os.path.join(cls.shared, "other"), "v1", layers=1,
                                layer_bytes=1 << 20, seed=b"other")
        reg.push(other, "v1", cls.registry, "private/other")
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                              f"{reg.USER}:{reg.PASSWORD}",
                              f"docker://{cls.registry.address}/private/app:v1"], check=True,
                             capture_output=True, env=reg.skopeo_env(), timeout=60).stdout
        cls.manifest = "sha256:" + hashlib.sha256(raw).hexdigest()
        cls.layers = [layer["digest"] for layer in json.loads(raw)["layers"]]

    # --- helpers ------------------------------------------------------------------------------

    def start_edge(self, name="edge", extra_fetcher=""):
        return self.start_proxy_node(
            name, storage=f"bind = ipc://{self.path(name + '-storage.sock')}\n",
            fetcher=f"bind = ipc://{self.path(name + '-fetcher.sock')}\n"
                    f"access_ttl = {TTL}\n{extra_fetcher}",
            proxy=f"default_registry = http://{self.registry.address}\n")

    def blob_path(self, digest, repo="private/app"):
        return f"/v2/{repo}/blobs/{digest}"

    def assert_refused(self, port, digest, authorization, want_status=401):
        status, headers, body, _ = get(port, self.blob_path(digest), authorization)
        self.assertEqual(status, want_status, body[:200])
        if want_status == 401:
            self.assertTrue(headers.get("www-authenticate", "").startswith("Bearer realm="),
                            headers)
        self.assertLess(len(body), 4096)  # the registry's JSON error, no blob
        self.assertNotEqual(hashlib.sha256(body).hexdigest(), digest[7:])
        self.assertIn("errors", json.loads(body))

    def assert_no_blob_bytes(self, start):
        """The registry sent no blob body since log line start: HEADs (the access questions,
        whose answers have no body: the log's size of a refused one is its error text) and
        refused GETs only."""
        for method, digest, status, size, agent in self.registry.blob_requests(start=start):
            if method == "GET":
                self.assertNotIn(status, (200, 206), (digest, size, agent))

    def heads(self, start, digest):
        return [r for r in self.registry.blob_requests(start=start)
                if r[0] == "HEAD" and r[1] == digest]

    # --- tests -------------------------------------------------------------------------------

    def test_registry_decides_for_every_client(self):
        node, port = self.start_edge()
        digest = self.layers[0]
        good = "Bearer " + token_for(self.token, "private/app")

        # the first valid client brings the blob into A's cache
        status, _, body, complete = get(port, self.blob_path(digest), good)
        self.assertEqual((status, complete), (200, True))
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])

        # again, within the TTL: from the cache, and not even a question to the registry
        start = self.registry.mark()
        status, _, body, complete = get(port, self.blob_path(digest), good)
        self.assertEqual((status, complete), (200, True))
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])
        node.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200 ")
        self.assertEqual(self.registry.blob_requests(start=start), [])

        # no credentials, a bogus token, a token for another repository: the registry's answer
        start = self.registry.mark()
        self.assert_refused(port, digest, None)
        self.assert_refused(port, digest, "Bearer not.a.token")
        other = "Bearer " + token_for(self.token, "private/other")
        self.assert_refused(port, digest, other)
        self.assert_no_blob_bytes(start)
        self.assertEqual(len(self.heads(start, digest)), 3)  # one question per client
        self.assertEqual(node.metric("zfly_proxy_p2p_denied_total"), 3)
        self.assertGreaterEqual(node.metric("zfly_fetcher_access_checks_total",
                                            result="refused"), 3)
        self.assertGreaterEqual(node.metric("zfly_fetcher_access_cache_hits_total",
                                            verdict="allowed"), 1)
        node.log.wait_for(rf"fetcher: access refused url=\S+/blobs/{digest} status=401")

        # the TTL runs out: the same client is asked about again (no blob bytes either way)
        start = self.registry.mark()
        deadline = time.monotonic() + 20
        while not self.heads(start, digest):
            self.assertLess(time.monotonic(), deadline, "no new access question after the TTL")
            status, _, body, _ = get(port, self.blob_path(digest), good)
            self.assertEqual(status, 200)
            self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])
            time.sleep(0.2)  # a request every 200 ms until the TTL has passed
        self.assert_no_blob_bytes(start)

    def test_zfly_get_follows_the_same_rule(self):
        node, _ = self.start_edge()
        digest = self.layers[1]
        url = f"http://{self.registry.address}{self.blob_path(digest)}"
        zfly_get = os.path.join(zflytest.BUILD_DIR, "zfly-get")
        ini = self.path("edge.ini")
        out = self.path("blob")
        denied = subprocess.run([zfly_get, "-c", ini, url, "-O", out, "--progress", "none"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(denied.returncode, 4, denied.stderr)
        self.assertIn("401", denied.stderr)
        self.assertFalse(os.path.exists(out) or os.path.exists(out + ".part"))
        good = "Authorization: Bearer " + token_for(self.token, "private/app")
        done = subprocess.run([zfly_get, "-c", ini, url, "-O", out, "--progress", "none",
                               "--digest", digest, "-H", good],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + node.log.text())
        with open(out, "rb") as handle:
            self.assertEqual(hashlib.sha256(handle.read()).hexdigest(), digest[7:])

    def test_second_node_from_the_first_behaves_the_same(self):
        nodes, ports, _ = start_two_nodes(self)
        digest = self.layers[0]
        good = "Bearer " + token_for(self.token, "private/app")
        status, _, body, complete = get(ports["a"], self.blob_path(digest), good)
        self.assertEqual((status, complete), (200, True))
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])

        # B holds nothing; a client with nothing, or a wrong token, gets nothing through it
        start = self.registry.mark()
        self.assert_refused(ports["b"], digest, None)
        self.assert_refused(ports["b"], digest, "Bearer not.a.token")
        # a valid client gets the blob, every byte from A
        status, _, body, complete = get(ports["b"], self.blob_path(digest), good)
        self.assertEqual((status, complete), (200, True))
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])
        self.assert_no_blob_bytes(start)
        nodes["b"].log.wait_for(rf"task complete task=\S+ content_length={len(body)} "
                                rf"from_source=0 from_parents={len(body)}")

    def test_skopeo_with_credentials_stored_under_the_mirrors_address(self):
        node, port = self.start_edge()
        conf = reg.registries_conf(self.workdir, REGISTRY_NAME, f"127.0.0.1:{port}")

        def pull(authfile, out):
            return subprocess.run(
                ["skopeo", "--registries-conf", conf, "copy", "--quiet", "--authfile", authfile,
                 f"docker://{REGISTRY_NAME}/private/app:v1", f"oci:{out}:v1"],
                capture_output=True, text=True, env=reg.skopeo_env(), timeout=180)

        # credentials stored for the registry's name only: skopeo does not send them to the
        # mirror, the mirror passes the registry's 401 on, and the mirror is then skipped for
        # a registry nobody resolves: the pull fails
        wrong = reg.auth_file(self.path("auth-registry.json"), REGISTRY_NAME)
        result = pull(wrong, self.path("denied"))
        self.assertNotEqual(result.returncode, 0)

        # stored under the mirror's own address (what `podman login 127.0.0.1:PORT` writes)
        right = reg.auth_file(self.path("auth-mirror.json"), f"127.0.0.1:{port}")
        out = self.path("pulled")
        result = pull(right, out)
        self.assertEqual(result.returncode, 0, result.stderr + node.log.text())
        self.assertEqual(reg.layout_digests(out, "v1"), (self.manifest, self.layers))
        for digest in self.layers:
            node.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200 ")


if __name__ == "__main__":
    zflytest.main()
