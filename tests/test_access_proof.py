"""A cold blob's access proof is the registry's own answer to the node's first range, sent with
the client's credentials: no HEAD before it, and still no byte for a client the registry refuses.

Real programs only: docker-registry with token auth and its token server (tests/registry/),
zfly nodes with storage, fetcher and proxy (the mirror), a scheduler. The registry's access log
counts what reached it, by method.

- A cold pull with a valid token: the blob, byte-exact, sent once by the registry, and not one
  HEAD (the registry's 206 to the node's first range, asked with the client's token, is the
  proof; zfly_fetcher_access_proofs_total{result="allowed"} counts it).
- A cold pull with no credentials, then with a bogus token: the registry's 401 with its
  challenge, not one blob byte from anyone, no HEAD either (the refused range was the answer);
  a valid client after them still gets the blob.
- Callers that do not send the request that fetches: a second client (its own token) reading
  the blob node A now holds, and node B taking it from A's pieces, are asked about with a HEAD
  each, as before; B's registry traffic has no blob bytes.
- A second client joining a task while it runs (tests/origin.py holds the first range
  inside its body until the test opens a gate) is asked about with a HEAD carrying its own
  Authorization; the first client's request made none. Both get the blob, sent once.
"""
import hashlib
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402
from test_proxy_access import get, start_two_nodes, token_for  # noqa: E402

TTL = "30s"


class AccessProofTest(reg.RegistryMixin, zflytest.ZflyTestCase):
    @classmethod
    def push_images(cls):
        app = reg.build_image(os.path.join(cls.shared, "app"), "v1", layers=3,
                              layer_bytes=6 << 20, seed=b"proof")
        reg.push(app, "v1", cls.registry, "private/app")
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                              f"{reg.USER}:{reg.PASSWORD}",
                              f"docker://{cls.registry.address}/private/app:v1"], check=True,
                             capture_output=True, env=reg.skopeo_env(), timeout=60).stdout
        layers = json.loads(raw)["layers"]
        cls.layers = [layer["digest"] for layer in layers]
        cls.sizes = {layer["digest"]: layer["size"] for layer in layers}

    # --- helpers ------------------------------------------------------------------------------

    def start_edge(self, name="edge"):
        return self.start_proxy_node(
            name, storage=f"bind = ipc://{self.path(name + '-storage.sock')}\n",
            fetcher=f"bind = ipc://{self.path(name + '-fetcher.sock')}\naccess_ttl = {TTL}\n",
            proxy=f"default_registry = http://{self.registry.address}\n")

    def blob_path(self, digest):
        return f"/v2/private/app/blobs/{digest}"

    def requests(self, start, digest, method):
        return [r for r in self.registry.blob_requests(start=start)
                if r[0] == method and r[1] == digest]

    def blob_bytes_sent(self, start, digest):
        """Body bytes of the registry's 200/206 answers to GETs of digest since start."""
        return sum(r[3] for r in self.requests(start, digest, "GET") if r[2] in (200, 206))

    def assert_blob(self, port, digest, authorization):
        status, _, body, complete = get(port, self.blob_path(digest), authorization)
        self.assertEqual((status, complete), (200, True), body[:200])
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest[7:])

    def assert_refused(self, port, digest, authorization):
        status, headers, body, _ = get(port, self.blob_path(digest), authorization)
        self.assertEqual(status, 401, body[:200])
        self.assertTrue(headers.get("www-authenticate", "").startswith("Bearer realm="),
                        headers)
        self.assertLess(len(body), 4096)  # the registry's JSON error, not the blob
        self.assertIn(b"errors", body)

    # --- tests -------------------------------------------------------------------------------

    def test_cold_pull_makes_no_head(self):
        node, port = self.start_edge()
        digest = self.layers[0]
        good = "Bearer " + token_for(self.token, "private/app")
        start = self.registry.mark()
        self.assert_blob(port, digest, good)
        served = node.log.wait_for_index(rf"GET \S+/blobs/{digest} route=p2p status=200 ")
        self.assertEqual(self.requests(start, digest, "HEAD"), [])
        self.assertEqual(self.blob_bytes_sent(start, digest), self.sizes[digest])
        self.assertEqual(node.metric("zfly_fetcher_access_proofs_total", result="allowed"), 1)
        # the proof is kept like a question's answer: the same client again, nothing asked
        start = self.registry.mark()
        self.assert_blob(port, digest, good)
        node.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200 ", start=served + 1)
        self.assertEqual(self.registry.blob_requests(start=start), [])

    def test_cold_pull_refused_gets_the_registrys_401(self):
        node, port = self.start_edge()
        digest = self.layers[1]
        start = self.registry.mark()
        self.assert_refused(port, digest, None)
        self.assert_refused(port, digest, "Bearer not.a.token")
        self.assertEqual(self.blob_bytes_sent(start, digest), 0)
        self.assertEqual(self.requests(start, digest, "HEAD"), [])
        self.assertEqual(node.metric("zfly_fetcher_access_proofs_total", result="refused"), 2)
        self.assertEqual(node.metric("zfly_proxy_p2p_denied_total"), 2)
        node.log.wait_for(rf"fetcher: access refused url=\S+/blobs/{digest} status=401")
        # a valid client after them: the blob, sent once by the registry
        start = self.registry.mark()
        self.assert_blob(port, digest, "Bearer " + token_for(self.token, "private/app"))
        self.assertEqual(self.blob_bytes_sent(start, digest), self.sizes[digest])
        self.assertEqual(self.requests(start, digest, "HEAD"), [])

    def test_other_callers_still_ask(self):
        nodes, ports, _ = start_two_nodes(self, TTL)
        digest = self.layers[2]
        first = "Bearer " + token_for(self.token, "private/app")
        second = "Bearer " + token_for(self.token, "private/app")
        self.assertNotEqual(first, second)  # two clients: two credentials

        # the client whose request A sends to the registry: no HEAD
        start = self.registry.mark()
        self.assert_blob(ports["a"], digest, first)
        self.assertEqual(self.requests(start, digest, "HEAD"), [])
        self.assertEqual(self.blob_bytes_sent(start, digest), self.sizes[digest])

        # another client of A: A's copy was not fetched with its token, so A asks
        start = self.registry.mark()
        self.assert_blob(ports["a"], digest, second)
        self.assertEqual(len(self.requests(start, digest, "HEAD")), 1)
        self.assertEqual(self.blob_bytes_sent(start, digest), 0)

        # node B takes the pieces from A and never asks the registry for bytes: it asks
        start = self.registry.mark()
        self.assert_blob(ports["b"], digest, first)
        self.assertEqual(len(self.requests(start, digest, "HEAD")), 1)
        self.assertEqual(self.blob_bytes_sent(start, digest), 0)
        self.assertEqual([r for r in self.requests(start, digest, "GET")], [])
        nodes["b"].log.wait_for(rf"task complete task=\S+ content_length={self.sizes[digest]} "
                                rf"from_source=0 from_parents={self.sizes[digest]}")
        self.assertEqual(nodes["b"].metric("zfly_fetcher_access_checks_total",
                                           result="allowed"), 1)


    def test_second_client_joining_a_running_task_asks(self):
        root = self.path("files")
        os.makedirs(root)
        origin = zflytest.Origin(root, self.path("origin.log"))
        self.addCleanup(origin.stop)
        node, port = self.start_proxy_node()
        payload = os.urandom(3 << 20)
        digest = zflytest.write_blob(root, payload)
        url = origin.url(f"/pause-at/100000/go/v2/test/blobs/{digest}")

        def request(authorization):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            auth = f"Authorization: {authorization}\r\n" if authorization else ""
            sock.sendall(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n{auth}"
                         "Connection: close\r\n\r\n".encode())
            self.addCleanup(sock.close)
            status, _, body = zflytest.recv_http_head(sock)
            self.assertEqual(status, 200)
            return sock, body

        def read_all(sock, body):
            while len(body) < len(payload):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                body += chunk
            return body

        first, first_body = request(None)  # the task's first range is held by the origin
        second, second_body = request("Bearer second")  # joins the running task
        self.assertEqual(node.metric("zfly_fetcher_access_checks_total", result="allowed"), 1)
        self.assertEqual(node.metric("zfly_fetcher_access_proofs_total", result="allowed"), 1)
        origin.open_gate("go")
        self.assertEqual(read_all(first, first_body), payload)
        self.assertEqual(read_all(second, second_body), payload)
        node.log.wait_for(rf"task complete task=\S+ content_length={len(payload)} ")
        records = origin.records()
        heads = [r for r in records if r["method"] == "HEAD"]
        self.assertEqual([(r["status"], r["auth"]) for r in heads], [(200, True)])
        self.assertEqual(origin.stats()["bytes_sent"], len(payload))


if __name__ == "__main__":
    zflytest.main()
