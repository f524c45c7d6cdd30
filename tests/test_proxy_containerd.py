"""containerd pulls through zfly as a registry mirror: `ctr images pull --hosts-dir` with a
hosts.toml like deploy/containerd/ (the same files containerd's CRI plugin reads).

containerd runs as its own instance (own config, root, state and socket in the test's
directory, native snapshotter). Requests arrive with ?ns=registry.zfly.test; the proxy maps
that name to the test registry (registry_map). The pulled image's digest must match the
registry's, blobs go P2P, and a second containerd pulling the same image sends no blob GET to
the registry (the node's storage serves them). The same file as `_default/hosts.toml` (for
registries without a directory of their own) is pulled through as well.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import containerdtest  # noqa: E402
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

HOST = "registry.zfly.test"


@unittest.skipIf(containerdtest.skip_reason(), containerdtest.skip_reason())
class ProxyContainerdTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.token = reg.TokenServer(self.workdir)
        self.registry = reg.Registry(self.workdir, self.token)
        layout = reg.build_image(self.workdir, "v1", layers=3, layer_bytes=5 << 20)
        reg.push(layout, "v1", self.registry, "test/app")
        self.containerds = []

    def tearDown(self):
        for instance in self.containerds:
            instance.stop()
        self.registry.stop()
        self.token.stop()
        super().tearDown()

    def hosts_dir(self, proxy_port, directory_name=None):
        return containerdtest.hosts_dir(self.workdir, HOST, proxy_port, directory_name)

    def start_node(self, port):
        node = self.start("edge", zflytest.proxy_node_ini(
            "edge", port, f"{self.workdir}/cache",
            proxy=f"registry_map = {HOST}=http://{self.registry.address}\n"))
        node.wait_ready()
        return node

    def test_ctr_pull_through_default_hosts_toml(self):
        """The same file as certs.d/_default/hosts.toml: containerd uses it for a registry
        that has no directory of its own, and the layers come through zfly."""
        port = zflytest.free_port()
        node = self.start_node(port)
        hosts = self.hosts_dir(port, "_default")
        expected = reg.registry_digests(self.registry, "test/app", "v1")
        image = f"{HOST}/test/app:v1"
        containerd = containerdtest.Containerd(self.workdir, "containerd")
        self.containerds.append(containerd)
        result = containerd.pull(hosts, image)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(containerd.image_digest(image), expected[0])
        for digest in expected[1]:
            node.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200")

    def test_ctr_pull_through_hosts_toml(self):
        port = zflytest.free_port()
        node = self.start_node(port)
        hosts = self.hosts_dir(port)
        expected = reg.registry_digests(self.registry, "test/app", "v1")
        image = f"{HOST}/test/app:v1"
        for round_number in (1, 2):
            start = self.registry.mark()
            containerd = containerdtest.Containerd(self.workdir, f"containerd{round_number}")
            self.containerds.append(containerd)
            result = containerd.pull(hosts, image)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertEqual(containerd.image_digest(image), expected[0])
            gets = self.registry.blob_gets(start=start)
            if round_number == 1:
                node.log.wait_for(r"HEAD http://127\.0\.0\.1:\d+/v2/test/app/manifests/v1 "
                                  r"route=direct status=200")
                for digest in expected[1]:
                    node.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200")
            else:
                self.assertEqual([g for g in gets if g[0] in expected[1]], [],
                                 "second containerd: layers came from zfly's storage")


if __name__ == "__main__":
    zflytest.main()
