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
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402

HOST = "registry.zfly.test"


class Containerd:
    def __init__(self, directory, name):
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir)
        self.socket = os.path.join(self.dir, "c.sock")
        config = os.path.join(self.dir, "config.toml")
        with open(config, "w") as handle:
            handle.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                         'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                         f'[grpc]\n  address = "{self.socket}"\n'
                         f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
                         '[debug]\n  level = "info"\n')
        self.process = subprocess.Popen(["containerd", "--config", config],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=reg.skopeo_env())
        self.log = zflytest.LineReader(self.process.stdout, echo_prefix=f"[{name}] ")
        self.log.wait_for(r"containerd successfully booted", timeout=60)

    def ctr(self, *args, check=True):
        return subprocess.run(["ctr", "-a", self.socket, *args], capture_output=True, text=True,
                              env=reg.skopeo_env(), timeout=180, check=check)

    def stop(self):
        zflytest.stop_process(self.process, self.log, timeout=15)


@unittest.skipUnless(os.geteuid() == 0, "containerd needs root")
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

    def hosts_dir(self, proxy_port, directory_name=HOST):
        hosts = self.path("certs.d")
        os.makedirs(os.path.join(hosts, directory_name), exist_ok=True)
        template = os.path.join(zflytest.SOURCE_DIR, "deploy", "containerd", "hosts.toml")
        with open(template) as handle:
            text = handle.read()
        text = text.replace("https://registry-1.docker.io", f"https://{HOST}")
        text = text.replace("127.0.0.1:65001", f"127.0.0.1:{proxy_port}")
        with open(os.path.join(hosts, directory_name, "hosts.toml"), "w") as handle:
            handle.write(text)
        return hosts

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
        containerd = Containerd(self.workdir, "containerd")
        self.containerds.append(containerd)
        result = containerd.ctr("images", "pull", "--hosts-dir", hosts, "--snapshotter",
                                "native", image, check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(expected[0], containerd.ctr("images", "ls").stdout)
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
            containerd = Containerd(self.workdir, f"containerd{round_number}")
            self.containerds.append(containerd)
            result = containerd.ctr("images", "pull", "--hosts-dir", hosts, "--snapshotter",
                                    "native", image, check=False)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            listing = containerd.ctr("images", "ls").stdout
            line = [entry for entry in listing.splitlines() if entry.startswith(image)][0]
            self.assertIn(expected[0], line)
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
