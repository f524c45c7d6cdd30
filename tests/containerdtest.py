"""containerdtest — a private containerd for the tests that pull through zfly with ctr.

Each instance has its own config, root, state and socket in the test's directory (the CRI
plugin off, nothing shared with a containerd the host may run), started by the test and
stopped by it. Pulls use `ctr images pull --hosts-dir DIR`, which reads the same hosts.toml
files as the CRI plugin's config_path: hosts_dir() writes deploy/containerd/hosts.toml as a
user would, pointed at a test's registry name and proxy port. Needs root and the containerd
package (tools/setup.sh)."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import registry as reg  # noqa: E402
import zflytest  # noqa: E402


def skip_reason():
    """None when containerd can run here, else why not (for skip messages)."""
    if os.geteuid() != 0:
        return "containerd needs root"
    for program in ("containerd", "ctr"):
        if not shutil.which(program):
            return f"{program} not installed (tools/setup.sh installs containerd)"
    return None


class Containerd:
    def __init__(self, directory, name, wrap=()):
        """wrap: a command prefix that containerd and ctr run under (such as `ip netns exec
        NS`, where ctr's pulls then go out of namespace NS)."""
        self.wrap = list(wrap)
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
        self.process = subprocess.Popen([*self.wrap, "containerd", "--config", config],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=reg.skopeo_env())
        self.log = zflytest.LineReader(self.process.stdout, echo_prefix=f"[{name}] ")
        self.log.wait_for(r"containerd successfully booted", timeout=60)

    def ctr(self, *args, check=True, timeout=180):
        return subprocess.run([*self.wrap, "ctr", "-a", self.socket, *args], capture_output=True,
                              text=True, env=reg.skopeo_env(), timeout=timeout, check=check)

    def pull(self, hosts, image, *options):
        """ctr images pull through the mirrors of hosts (a --hosts-dir), native snapshotter."""
        return self.ctr("images", "pull", "--hosts-dir", hosts, "--snapshotter", "native",
                        *options, image, check=False)

    def image_digest(self, image):
        """The digest `ctr images ls` shows for image (what the registry served for its tag)."""
        for line in self.ctr("images", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == image:
                return next(field for field in fields if field.startswith("sha256:"))
        return None

    def stop(self):
        zflytest.stop_process(self.process, self.log, timeout=15)


def hosts_dir(directory, registry_host, proxy_port, directory_name=None):
    """A certs.d directory holding deploy/containerd/hosts.toml for registry_host (in its own
    directory, or in directory_name such as _default), mirrored by the proxy on proxy_port."""
    hosts = os.path.join(directory, "certs.d")
    os.makedirs(os.path.join(hosts, directory_name or registry_host), exist_ok=True)
    template = os.path.join(zflytest.SOURCE_DIR, "deploy", "containerd", "hosts.toml")
    with open(template) as handle:
        text = handle.read()
    text = text.replace("https://registry-1.docker.io", f"https://{registry_host}")
    text = text.replace("127.0.0.1:65001", f"127.0.0.1:{proxy_port}")
    with open(os.path.join(hosts, directory_name or registry_host, "hosts.toml"), "w") as handle:
        handle.write(text)
    return hosts
