"""Two nodes behind their own proxies: the second pull of an image comes from the first node.

Real programs only: docker-registry with token auth (tests/registry/), a zfly scheduler, and
nodes A and B, each a zfly process with storage, fetcher and proxy on loopback (their storage
bound on tcp:// with CURVE, keys from `zfly keygen`, one allow directory). skopeo pulls the
image through A's mirror, then through B's. Checked:

- both copies are exact (skopeo's layout digests match the registry's);
- the registry sent each blob once in total: B's pull sent no blob GET at all, only one access
  question per blob (a HEAD with the client's token, zfly_fetch_access.h: the registry says
  whether this client may read it; no body), and the body bytes the registry served per blob
  add up to one copy (plus the 1-byte size probe);
- B computed the same task ids (the blob digest keys them) and took every byte from A: its
  fetcher's final task status ("task complete … from_source=0 from_parents=LENGTH") and its
  zfly_fetcher_parent_bytes_total / _source_bytes_total metrics say so.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

REGISTRY_NAME = "registry.zfly.test"  # resolved by nobody: only the mirrors serve it


class ProxySwarmTest(reg.RegistryMixin, zflytest.ZflyTestCase):
    @classmethod
    def push_images(cls):
        cls.layout = reg.build_image(cls.shared, "v1", layers=3, layer_bytes=9 << 20)
        reg.push(cls.layout, "v1", cls.registry, "test/app")

    def keys(self, *names):
        kdir, allow = self.path("keys"), self.path("allow")
        os.makedirs(kdir, exist_ok=True)
        os.makedirs(allow, exist_ok=True)
        keys = {}
        for name in names:
            keys[name] = zflytest.keygen(kdir, name)
            with open(keys[name][1]) as src, open(os.path.join(allow, name + ".pub"), "w") as dst:
                dst.write(src.read())
        return keys

    def start_scheduler(self, keys, port):
        node = self.start("sched", f"""[node]
name = sched
log_level = info
http = 127.0.0.1:0

[bus]
cert = {keys['sched'][0]}
allow = {self.path('allow')}

[scheduler]
bind = tcp://127.0.0.1:{port}
heartbeat = 1s
host_timeout = 5s
""")
        node.wait_ready()
        return node

    def start_node(self, name, other, keys, ports):
        node = self.start(name, f"""[node]
name = {name}
log_level = info
http = 127.0.0.1:0

[bus]
cert = {keys[name][0]}
allow = {self.path('allow')}

[storage]
dir = {self.path(name + '-cache')}
bind = tcp://127.0.0.1:{ports[name + '.storage']}

[fetcher]
bind = ipc://{self.path(name + '-fetcher.sock')}
schedulers = scheduler@sched

[proxy]
listen = 127.0.0.1:{ports[name + '.proxy']}
default_registry = http://{self.registry.address}

[endpoints]
scheduler@sched = tcp://127.0.0.1:{ports['sched']} cert={keys['sched'][1]}
storage@{other} = tcp://127.0.0.1:{ports[other + '.storage']} cert={keys[other][1]}
""")
        node.wait_ready()
        node.log.wait_for(r"proxy: started listen=")
        return node

    def pull(self, proxy_port, out):
        conf = self.path(f"registries-{proxy_port}.conf")
        with open(os.path.join(zflytest.SOURCE_DIR, "deploy", "podman", "registries.conf")) as f:
            text = f.read()
        text = text.replace('"docker.io"', f'"{REGISTRY_NAME}"')
        text = text.replace("127.0.0.1:65001", f"127.0.0.1:{proxy_port}")
        with open(conf, "w") as handle:
            handle.write(text)
        return subprocess.run(["skopeo", "--registries-conf", conf, "copy", "--quiet",
                               f"docker://{REGISTRY_NAME}/test/app:v1", f"oci:{out}:v1"],
                              capture_output=True, text=True, env=reg.skopeo_env(), timeout=180)

    def wait_metric(self, node, name, want, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            value = node.metric(name) or 0
            if value >= want or time.monotonic() > deadline:
                return value
            time.sleep(0.05)  # polling a counter with a deadline, not synchronisation

    def test_second_node_pulls_from_the_first(self):
        keys = self.keys("sched", "a", "b")
        ports = {k: zflytest.free_port() for k in
                 ("sched", "a.storage", "b.storage", "a.proxy", "b.proxy")}
        sched = self.start_scheduler(keys, ports["sched"])
        node_a = self.start_node("a", "b", keys, ports)
        node_b = self.start_node("b", "a", keys, ports)
        expected = reg.registry_digests(self.registry, "test/app", "v1")
        manifest = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                   f"docker://{self.registry.address}/test/app:v1"], check=True,
                                  capture_output=True, env=reg.skopeo_env(), timeout=60).stdout
        import json
        document = json.loads(manifest)
        blobs = {layer["digest"]: layer["size"] for layer in document["layers"]}
        blobs[document["config"]["digest"]] = document["config"]["size"]

        start = self.registry.mark()
        result = self.pull(ports["a.proxy"], self.path("out-a"))
        self.assertEqual(result.returncode, 0, result.stderr + node_a.log.text())
        self.assertEqual(reg.layout_digests(self.path("out-a"), "v1"), expected)
        middle = self.registry.mark()

        result = self.pull(ports["b.proxy"], self.path("out-b"))
        self.assertEqual(result.returncode, 0, result.stderr + node_b.log.text())
        self.assertEqual(reg.layout_digests(self.path("out-b"), "v1"), expected)
        for digest in expected[1]:
            node_b.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200 ", timeout=5)

        # the registry: for B's pull only the access questions (one HEAD per blob, no body),
        # one copy of each blob for A's
        asked = set()
        for method, digest, status, size, agent in self.registry.blob_requests(start=middle):
            self.assertEqual((method, status, size), ("HEAD", 200, 0), (digest, agent))
            self.assertTrue(agent.startswith("zfly-fetcher/"), agent)
            asked.add(digest)
        self.assertEqual(asked, set(blobs))
        served = {}
        for method, digest, status, size, agent in self.registry.blob_requests(start=start):
            if method == "HEAD":  # A's access questions
                self.assertEqual((status, size), (200, 0), digest)
                continue
            self.assertEqual(method, "GET")
            self.assertIn(status, (200, 206), (digest, status, agent))
            self.assertTrue(agent.startswith("zfly-fetcher/"), agent)
            served[digest] = served.get(digest, 0) + size
        self.assertEqual(set(served), set(blobs))
        for digest, size in blobs.items():
            # the body once, and nothing more: A's access HEAD stated the length, so A's
            # fetcher sent no probe (Range: bytes=0-0) of its own
            self.assertEqual(served[digest], size, digest)

        # B: same task ids as A (the digest keys them), every byte from A. The fetcher
        # forgets finished tasks, so their final task.status is read from its log line.
        total = 0
        for digest, size in blobs.items():
            started = rf"task started task=([0-9a-f]{{16}}) digest={digest}"
            task = re.search(started, node_a.log.wait_for(started, timeout=5)).group(1)
            self.assertEqual(re.search(started, node_b.log.wait_for(started, timeout=5)).group(1),
                             task)
            node_a.log.wait_for(rf"task complete task={task} content_length={size} "
                                rf"from_source={size} from_parents=0", timeout=5)
            node_b.log.wait_for(rf"task complete task={task} content_length={size} "
                                rf"from_source=0 from_parents={size}", timeout=5)
            total += size
        self.assertEqual(self.wait_metric(node_b, "zfly_fetcher_parent_bytes_total", total),
                         total)
        self.assertEqual(node_b.metric("zfly_fetcher_source_bytes_total") or 0, 0)
        self.assertIsNotNone(sched)


if __name__ == "__main__":
    zflytest.main()
