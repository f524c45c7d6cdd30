"""The proxy through CONNECT: TLS interception with the zfly CA, and blind tunnels.

skopeo pulls from an HTTPS docker-registry (token auth) by a host name only the proxy
resolves, with HTTPS_PROXY pointing at zfly. With the interception CA trusted, the pull
succeeds and the digests match the registry's; with another CA, skopeo refuses the
certificate and the proxy log says why. Intercepted blobs go P2P: the fetcher
reaches the registry as the proxy does ([upstream] hosts and ca, shared by both), so it
reaches the registry by that host name and trusts its private CA. A host not listed for
interception gets a blind tunnel (the client sees the registry's own certificate).
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402


class ProxyInterceptTest(reg.RegistryMixin, zflytest.ZflyTestCase):
    @classmethod
    def registry_tls(cls):
        cls.upstream_ca = reg.make_ca(cls.shared, "upstream-ca")
        cls.tls = reg.make_server_cert(cls.shared, "registry", cls.upstream_ca[2],
                                       cls.upstream_ca[3],
                                       ["registry.zfly.test", "tunnel.zfly.test"], ["127.0.0.1"])
        return cls.tls

    @classmethod
    def push_images(cls):
        cls.layout = reg.build_image(cls.shared, "v1", layers=3, layer_bytes=5 << 20)
        reg.push(cls.layout, "v1", cls.registry, "test/app")
        cls.zfly_ca = reg.make_ca(cls.shared, "zfly-ca")

    def start_node(self):
        hosts = (f"registry.zfly.test={self.registry.address} "
                 f"tunnel.zfly.test={self.registry.address}")
        return self.start_proxy_node(
            upstream=f"hosts = {hosts}\nca = {self.upstream_ca[0]}\n",
            proxy=f"hijack = ^registry[.]zfly[.]test$\nca_cert = {self.zfly_ca[0]}\n"
                  f"ca_key = {self.zfly_ca[1]}\n")

    def cert_dir(self, name, ca_path):
        directory = self.path(name)
        os.makedirs(directory)
        with open(ca_path) as source, open(os.path.join(directory, "ca.crt"), "w") as target:
            target.write(source.read())
        return directory

    def pull(self, port, host, certs, out):
        env = reg.skopeo_env(HTTPS_PROXY=f"http://127.0.0.1:{port}")
        return subprocess.run(["skopeo", "copy", "--quiet", "--src-cert-dir", certs,
                               f"docker://{host}/test/app:v1", f"oci:{out}:v1"],
                              capture_output=True, text=True, env=env, timeout=180)

    def test_intercepted_pull_with_trusted_ca(self):
        node, port = self.start_node()
        result = self.pull(port, "registry.zfly.test", self.cert_dir("trust", self.zfly_ca[0]),
                           self.path("out"))
        self.assertEqual(result.returncode, 0, result.stderr + node.log.text())
        expected = reg.registry_digests(self.registry, "test/app", "v1")
        self.assertEqual(reg.layout_digests(self.path("out"), "v1"), expected)
        node.log.wait_for(r"connect: intercepting conn=\d+ host=registry\.zfly\.test")
        node.log.wait_for(r"GET https://registry\.zfly\.test/v2/test/app/manifests/v1 "
                          r"route=direct status=200")
        # blobs go P2P: the fetcher reaches the host name through its own [fetcher] hosts and
        # trusts the registry's private CA through upstream_ca, so nothing falls back to direct
        for digest in expected[1]:
            node.log.wait_for(rf"GET https://registry\.zfly\.test/v2/test/app/blobs/{digest} "
                              r"route=p2p status=200")
            node.log.wait_for(rf"fetcher: task started task=[0-9a-f]+ digest={digest}")
        self.assertNotIn("p2p: falling back to direct", node.log.text())
        layers = sum(os.path.getsize(os.path.join(self.path("out"), "blobs", *d.split(":")))
                     for d in expected[1])
        self.assertGreaterEqual(node.metric("zfly_fetcher_source_bytes_total"), layers)

    def test_wrong_ca_is_refused_and_logged(self):
        node, port = self.start_node()
        other = reg.make_ca(self.workdir, "other-ca")
        result = self.pull(port, "registry.zfly.test", self.cert_dir("wrong", other[0]),
                           self.path("out"))
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("x509: certificate signed by unknown authority", result.stderr)
        node.log.wait_for(r"tls: handshake failed .*host=registry\.zfly\.test .*"
                          r"does the client trust the proxy's ca_cert")

    def test_blind_tunnel_for_other_hosts(self):
        node, port = self.start_node()
        result = self.pull(port, "tunnel.zfly.test",
                           self.cert_dir("upstream", self.upstream_ca[0]), self.path("out"))
        self.assertEqual(result.returncode, 0, result.stderr + node.log.text())
        expected = reg.registry_digests(self.registry, "test/app", "v1")
        self.assertEqual(reg.layout_digests(self.path("out"), "v1"), expected)
        node.log.wait_for(r"connect: tunnel conn=\d+ to tunnel\.zfly\.test:443")


if __name__ == "__main__":
    zflytest.main()
