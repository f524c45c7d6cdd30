"""docker pulls through zfly as a registry mirror configured by deploy/docker/daemon.json.

dockerd runs as its own instance (own data root, exec root, socket and daemon.json in the
test's directory; no bridge, no iptables, the vfs storage driver: nothing outside the test
directory is touched). docker uses `registry-mirrors` for Docker Hub images only, so the image
is pulled as `docker.io/test/app:v1` and the proxy's `default_registry` is the test registry
(docker-registry with token authentication: docker fetches its token from the realm the 401
names and the proxy forwards Authorization). The pulled image's digest must match the
registry's and its layers must have gone P2P through the node.

The `proxies` half of daemon.json needs docker 23 or later; Debian 12 ships 20.10, whose
daemon refuses the key, so the second test gives dockerd the same proxy the way older dockers
take it (HTTPS_PROXY in its environment, deploy/docker/README.md): a TLS registry reached as
registry.zfly.test through CONNECT, intercepted with the zfly CA, which docker trusts from
/etc/docker/certs.d/registry.zfly.test/ca.crt (the one file outside the test directory, removed
afterwards). Its layers go P2P as well.
"""
import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402


class Dockerd:
    def __init__(self, directory, daemon_json, **env):
        self.dir = os.path.join(directory, "dockerd")
        os.makedirs(self.dir)
        self.socket = os.path.join(self.dir, "docker.sock")
        config = os.path.join(self.dir, "daemon.json")
        with open(config, "w") as handle:
            json.dump(daemon_json, handle)
        self.process = subprocess.Popen(
            ["dockerd", "--config-file", config, "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", os.path.join(self.dir, "exec"),
             "--pidfile", os.path.join(self.dir, "dockerd.pid"), "-H", f"unix://{self.socket}",
             "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=reg.skopeo_env(**env))
        self.log = zflytest.LineReader(self.process.stdout, echo_prefix="[dockerd] ")
        self.log.wait_for(r"API listen on", timeout=60)

    def docker(self, *args, check=True):
        return subprocess.run(["docker", "-H", f"unix://{self.socket}", *args],
                              capture_output=True, text=True, timeout=180, check=check,
                              env=reg.skopeo_env())

    def stop(self):
        zflytest.stop_process(self.process, self.log, timeout=20)


def start_node(test, port, fetcher="", proxy="", upstream=""):
    """A zfly node with storage, fetcher and proxy (on port); the sections' extra lines."""
    node = test.start("edge", zflytest.proxy_node_ini("edge", port, f"{test.workdir}/cache",
                                                      fetcher, proxy, upstream))
    node.wait_ready()
    return node


@unittest.skipUnless(os.geteuid() == 0, "dockerd needs root")
class ProxyDockerTest(zflytest.ZflyTestCase):
    def setUp(self):
        super().setUp()
        self.token = reg.TokenServer(self.workdir)
        self.registry = reg.Registry(self.workdir, self.token)
        layout = reg.build_image(self.workdir, "v1", layers=3, layer_bytes=4 << 20)
        reg.push(layout, "v1", self.registry, "test/app")
        self.dockerd = None

    def tearDown(self):
        if self.dockerd:
            self.dockerd.stop()
        self.registry.stop()
        self.token.stop()
        super().tearDown()

    def test_docker_pull_through_registry_mirror(self):
        port = zflytest.free_port()
        node = start_node(self, port, proxy=f"default_registry = http://{self.registry.address}\n")
        with open(os.path.join(zflytest.SOURCE_DIR, "deploy", "docker", "daemon.json")) as handle:
            shipped = json.load(handle)
        mirrors = [url.replace("127.0.0.1:65001", f"127.0.0.1:{port}")
                   for url in shipped["registry-mirrors"]]
        self.assertEqual(mirrors, [f"http://127.0.0.1:{port}"])
        self.dockerd = Dockerd(self.workdir, {"registry-mirrors": mirrors})

        start = self.registry.mark()
        result = self.dockerd.docker("pull", "docker.io/test/app:v1", check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        manifest_digest, layers = reg.registry_digests(self.registry, "test/app", "v1")
        inspect = self.dockerd.docker("image", "inspect", "--format", "{{json .RepoDigests}}",
                                      "test/app:v1").stdout
        self.assertIn(f"test/app@{manifest_digest}", inspect)
        for digest in layers:
            node.log.wait_for(rf"GET \S+/blobs/{digest} route=p2p status=200")
        # the layers (and the image config, a blob too) reached the registry through the
        # node's fetcher, never from dockerd
        requests = self.registry.blob_requests(start=start)
        fetched = {request[1] for request in requests if request[2] in (200, 206)}
        self.assertTrue(set(layers) <= fetched, requests)
        self.assertEqual([r for r in requests if "docker/" in r[4]], [], requests)


@unittest.skipUnless(os.geteuid() == 0, "dockerd needs root")
class ProxyDockerInterceptTest(zflytest.ZflyTestCase):
    HOST = "registry.zfly.test"

    def setUp(self):
        super().setUp()
        self.upstream_ca = reg.make_ca(self.workdir, "upstream-ca")
        tls = reg.make_server_cert(self.workdir, "registry", self.upstream_ca[2],
                                   self.upstream_ca[3], [self.HOST], ["127.0.0.1"])
        self.token = reg.TokenServer(self.workdir)
        self.registry = reg.Registry(self.workdir, self.token, tls=tls)
        layout = reg.build_image(self.workdir, "v1", layers=2, layer_bytes=4 << 20)
        reg.push(layout, "v1", self.registry, "test/app")
        self.zfly_ca = reg.make_ca(self.workdir, "zfly-ca")
        self.dockerd = None
        self.certs = f"/etc/docker/certs.d/{self.HOST}"
        os.makedirs(self.certs, exist_ok=True)
        shutil.copyfile(self.zfly_ca[0], os.path.join(self.certs, "ca.crt"))

    def tearDown(self):
        shutil.rmtree(self.certs, ignore_errors=True)
        if self.dockerd:
            self.dockerd.stop()
        self.registry.stop()
        self.token.stop()
        super().tearDown()

    def test_docker_pull_through_https_proxy_with_interception(self):
        port = zflytest.free_port()
        # the fetcher reaches the intercepted host as the proxy does, so its layers go P2P
        upstream = (f"hosts = {self.HOST}={self.registry.address}\n"
                    f"ca = {self.upstream_ca[0]}\n")
        node = start_node(self, port, upstream=upstream,
                          proxy=f"hijack = ^registry[.]zfly[.]test$\nca_cert = {self.zfly_ca[0]}\n"
                                f"ca_key = {self.zfly_ca[1]}\n")
        self.dockerd = Dockerd(self.workdir, {}, HTTPS_PROXY=f"http://127.0.0.1:{port}",
                               NO_PROXY="localhost,127.0.0.0/8")
        result = self.dockerd.docker("pull", f"{self.HOST}/test/app:v1", check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        manifest_digest, layers = reg.registry_digests(self.registry, "test/app", "v1")
        inspect = self.dockerd.docker("image", "inspect", "--format", "{{json .RepoDigests}}",
                                      f"{self.HOST}/test/app:v1").stdout
        self.assertIn(f"{self.HOST}/test/app@{manifest_digest}", inspect)
        node.log.wait_for(rf"connect: intercepting conn=\d+ host=registry\.zfly\.test")
        for digest in layers:
            node.log.wait_for(rf"GET https://registry\.zfly\.test/v2/test/app/blobs/{digest} "
                              r"route=p2p status=200")
        self.assertNotIn("p2p: falling back to direct", node.log.text())


if __name__ == "__main__":
    zflytest.main()
