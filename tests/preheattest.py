"""preheattest — a cluster on loopback for the preheat tests: a manager (with or without its
own preheat worker), a scheduler, seed peers and edge nodes that join it, a token-auth
registry holding a multi-arch image, a Redis server, zfly-preheat.

Every process is real and started by the test: zfly daemons from INI texts, docker-registry
with its token realm (tests/registry/), redis-server with an append-only file in the test's
directory (so a restart keeps the stream). Ports are picked at run time."""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import managertest  # noqa: E402
import registry as reg  # noqa: E402
from managertest import node_ini  # noqa: E402
from zflytest import BUILD_DIR, LineReader, free_port, stop_process, wait_until_true  # noqa: E402

ZFLY_PREHEAT = os.path.join(BUILD_DIR, "zfly-preheat")
PLATFORMS = (("amd64", ""), ("arm64", "v8"))


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate (a state that another process changes) with a deadline."""
    return wait_until_true(predicate, what, timeout=timeout, interval=interval)


# --- images --------------------------------------------------------------------------------

def build_multiarch(directory, name, layers=2, layer_bytes=1 << 20):
    """An OCI layout with an index NAME: one image per platform of PLATFORMS, each with its
    own layers (different bytes). Returns the layout path."""
    layout = os.path.join(directory, "layout")
    entries = []
    for arch, variant in PLATFORMS:
        tag = f"{name}-{arch}"
        reg.build_image(directory, tag, layers=layers, layer_bytes=layer_bytes,
                        seed=f"{name}/{arch}".encode())
        subprocess.run(["umoci", "config", "--image", f"{layout}:{tag}", "--architecture", arch,
                        "--os", "linux"], check=True, capture_output=True)
        with open(os.path.join(layout, "index.json")) as handle:
            index = json.load(handle)
        entry = [m for m in index["manifests"]
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": entry["digest"], "size": entry["size"], "platform": platform})
    document = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": entries}).encode()
    digest = hashlib.sha256(document).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as handle:
        handle.write(document)
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                               "digest": "sha256:" + digest, "size": len(document),
                               "annotations": {"org.opencontainers.image.ref.name": name}})
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump(index, handle)
    return layout


def push_multiarch(layout, name, registry, repo):
    subprocess.run(["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
                    "--dest-creds", f"{reg.USER}:{reg.PASSWORD}", f"oci:{layout}:{name}",
                    f"docker://{registry.address}/{repo}:{name}"],
                   check=True, env=reg.skopeo_env(), timeout=120)


def image_blobs(layout, name):
    """{platform: {digest: size}} of the config and layers of each image of index NAME."""
    def read(digest):
        with open(os.path.join(layout, "blobs", *digest.split(":")), "rb") as handle:
            return json.loads(handle.read())
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    entry = [m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name][0]
    found = {}
    for child in read(entry["digest"])["manifests"]:
        manifest = read(child["digest"])
        platform = child["platform"]
        key = f"{platform['os']}/{platform['architecture']}"
        blobs = {manifest["config"]["digest"]: manifest["config"]["size"]}
        blobs.update({layer["digest"]: layer["size"] for layer in manifest["layers"]})
        found[key] = blobs
    return found


def index_digest(layout, name):
    """The digest of index NAME (what the registry serves for the tag)."""
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    return [m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name][0][
        "digest"]


def pull_token(token_server, repo):
    """A registry pull token for repo, as Harbor hands it to its preheat provider."""
    import base64
    import urllib.request
    request = urllib.request.Request(
        f"{token_server.realm}?service={reg.SERVICE}&scope=repository:{repo}:pull")
    request.add_header("Authorization", "Basic " + base64.b64encode(
        f"{reg.USER}:{reg.PASSWORD}".encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["token"]


class RegistryCase(reg.RegistryMixin, managertest.ManagerCase):
    """A test class with a token-auth docker-registry of its own (cls.token, cls.registry, in
    cls.shared: reg.RegistryMixin), its images pushed once by the class's push_images(), and a
    seed-peer cluster per test when setUp is given seeds: self.cluster (a scheduler and
    seed-1..seed-N)."""
    backend = "sqlite"
    seeds = 0

    def setUp(self):
        super().setUp()
        if self.seeds:
            self.cluster = Cluster(self, self.registry)
            self.cluster.scheduler()
            for index in range(1, self.seeds + 1):
                self.cluster.seed(f"seed-{index}")
            self.cluster.wait_seeds(self.seeds)


# --- Redis ---------------------------------------------------------------------------------

class Redis:
    """redis-server on loopback, persisting to an append-only file in directory: a restart
    on the same port finds the stream, its group and the pending entries again."""

    def __init__(self, directory):
        self.directory = os.path.join(directory, "redis")
        os.makedirs(self.directory, exist_ok=True)
        self.port = free_port()
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             self.directory, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = LineReader(self.process.stdout, echo_prefix="[redis] ")
        self.log.wait_for(r"Ready to accept connections", timeout=30)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()

    def stop(self):
        if self.process:
            stop_process(self.process, self.log)
            self.process = None


def redis_skip_reason():
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        return "redis-server not installed (tools/setup.sh installs it)"
    return None


# --- the cluster ---------------------------------------------------------------------------

class Cluster:
    """A manager and the nodes that join it, all on loopback. Nodes: "sched" (a scheduler),
    seeds (storage and fetcher on tcp://, seed = true) and edges (storage, fetcher on tcp://,
    a proxy mirroring the registry).

    The tests' timers are short (a lease of seconds, fast refreshes, polls and retries), so
    what takes a lease happens within a test; shipped=True leaves every timer at its shipped
    default instead (benchmarks), and log_level sets the manager's and the nodes' level."""

    def __init__(self, case, registry=None, queue="", in_process_worker=True, lease="2s",
                 preheat_extra="", manager_extra="", fetcher_extra="stall_timeout = 60s\n",
                 seed_extra="", shipped=False, log_level="info"):
        self.case = case
        self.seed_extra = seed_extra
        self.fetcher_extra = fetcher_extra
        self.registry = registry
        self.queue = queue
        self.lease = lease
        self.preheat_extra = preheat_extra
        self.shipped = shipped
        self.log_level = log_level
        self.nodes = {}
        self.ports = {}
        extra = "" if shipped else f"refresh = 1s\nkeepalive = 500ms\njob_lease = {lease}\n"
        if queue:
            extra += f"queue = {queue}\n"
        extra += manager_extra
        if in_process_worker:
            extra += "\n" + self.preheat_section()
        self.manager = managertest.Manager(case, extra=extra, log_level=log_level)
        self.token_file = case.write("join-token", self.manager.join_token())

    def preheat_section(self):
        plain = f"plain_http = {self.registry.address}\n" if self.registry else ""
        queue = f"queue = {self.queue}\n" if self.queue else ""
        timers = {} if self.shipped else {"lease": self.lease, "retries": "1",
                                          "retry_delay": "200ms", "poll": "100ms",
                                          "request_timeout": "5s"}
        given = {line.split("=")[0].strip() for line in self.preheat_extra.splitlines()}
        timers = "".join(f"{key} = {value}\n" for key, value in timers.items()
                         if key not in given)  # preheat_extra sets these itself
        return f"[preheat]\n{queue}{timers}{plain}{self.preheat_extra}"

    def port(self, key):
        if key not in self.ports:
            self.ports[key] = free_port()
        return self.ports[key]

    def start_node(self, name, sections, wait_joined=True):
        process = self.case.start(name, node_ini(self.case, name, self.manager, self.token_file,
                                                 sections, log_level=self.log_level))
        process.wait_ready()
        if wait_joined:
            process.log.wait_for(r"join: joined cluster=default")
        self.nodes[name] = process
        return process

    def scheduler(self, name="sched"):
        timers = "" if self.shipped else "heartbeat = 1s\nhost_timeout = 5s\n"
        return self.start_node(name, f"[scheduler]\nbind = tcp://127.0.0.1:{self.port(name)}\n"
                                     + timers)

    def seed(self, name):
        return self.start_node(name, (
            f"[storage]\ndir = {self.case.path(name + '-cache')}\n"
            f"bind = tcp://127.0.0.1:{self.port(name + '.storage')}\n\n"
            f"[fetcher]\nbind = tcp://127.0.0.1:{self.port(name + '.fetcher')}\nseed = true\n"
            f"{self.fetcher_extra}\n{self.seed_extra}"))

    def edge(self, name, proxy_extra=""):
        registry = f"default_registry = http://{self.registry.address}\n" if self.registry else ""
        return self.start_node(name, (
            f"[storage]\ndir = {self.case.path(name + '-cache')}\n"
            f"bind = tcp://127.0.0.1:{self.port(name + '.storage')}\n\n"
            f"[fetcher]\nbind = tcp://127.0.0.1:{self.port(name + '.fetcher')}\n"
            f"{self.fetcher_extra}\n"
            f"[proxy]\nlisten = 127.0.0.1:{self.port(name + '.proxy')}\n{registry}{proxy_extra}"))

    def worker(self, name, extra=""):
        """A preheat worker process of its own, with the manager's keypair; extra: more
        [preheat] lines."""
        route = (f"tcp://127.0.0.1:{self.manager.bind_port} "
                 f"events=tcp://127.0.0.1:{self.manager.events_port} key={self.manager.key}")
        process = self.case.start(name, (
            f"[node]\nname = {name}\nlog_level = {self.log_level}\nhttp = 127.0.0.1:0\n\n"
            f"[bus]\ncert = {self.manager.cert}\n\n[endpoints]\nmanager = {route}\n\n"
            + self.preheat_section() + extra))
        process.wait_ready()
        self.nodes[name] = process
        return process

    def wait_seeds(self, count):
        wait_until(lambda: len([s for s in self.manager.ok("GET", "/api/v1/seed-peers")["items"]
                                if s["state"] == "active"]) >= count, 20, f"{count} seed peers")

    # --- jobs ---

    def submit(self, args, clusters=None, expect=201):
        code, answer, _ = self.manager.api("POST", "/api/v1/jobs", {
            "type": "preheat", "args": args, "scheduler_cluster_ids": clusters})
        self.case.assertEqual(code, expect, answer)
        return answer

    def job(self, job_id):
        return self.manager.ok("GET", f"/api/v1/jobs/{job_id}")

    def wait_job(self, job_id, timeout=60):
        """The job once it ended (success, failure, cancelled)."""
        return wait_until(lambda: (lambda job: job if job["state"] in (
            "success", "failure", "cancelled") else None)(self.job(job_id)), timeout,
            f"job {job_id} ends", interval=0.1)

    def preheat_tool(self, *args, stdin=None, timeout=120):
        """zfly-preheat against this manager: (exit status, stdout, stderr)."""
        return run_preheat(["--manager", self.manager.url, "--token-file",
                            self.manager.token_file, *args], stdin=stdin, timeout=timeout)


def run_preheat(args, stdin=None, timeout=120):
    """zfly-preheat with args, on pipes: (exit status, stdout, stderr)."""
    result = subprocess.run([ZFLY_PREHEAT, *args], input=stdin, capture_output=True, text=True,
                            timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def registry_blob_bodies(registry, start):
    """{digest: blob bytes the registry sent} for blob GETs from log line start. Error answers
    (a 401 whose token had to be fetched again: its body is the registry's error JSON) carry
    no blob byte."""
    served = {}
    for method, digest, status, size, agent in registry.blob_requests(start=start):
        if method == "GET" and status in (200, 206):
            served[digest] = served.get(digest, 0) + size
    return served


def registry_blob_gets(registry, start):
    """Blob GETs the registry logged from line start. HEADs are left out: they are the
    fetchers' access questions (may this client read the blob?), which carry no blob byte."""
    return [request for request in registry.blob_requests(start=start) if request[0] == "GET"]


def host_blobs(job):
    """{host: {digest: state}} from a job's per-blob, per-host tasks."""
    found = {}
    for blob in job.get("blobs", []):
        for host in blob["hosts"]:
            found.setdefault(host["host"], {})[blob["digest"]] = host["state"]
    return found


def metric(process, name, **labels):
    return process.metric(name, **labels) or 0


# --- a registry behind a front ------------------------------------------------------------

class RegistryFront:
    """The registry as object-storage-backed registries show it, in front of the real one.

    Manifest and HEAD requests pass through to the registry unchanged (Authorization,
    WWW-Authenticate and the body included). A blob GET is answered 307 to a "CDN" listener
    under another host name (localhost, not 127.0.0.1) with a signed-looking URL; the CDN
    serves the bytes from the OCI layout (one Range honoured) and records every Authorization
    header it was sent: the registry's credentials must not follow the redirect.

    basic=True: the front asks for Basic USER:PASSWORD itself (401 WWW-Authenticate: Basic)
    and reaches the registry with a pull token of its own. nested[TAG] = (digest, size): TAG
    is served as an index whose only entry (no platform) is the index DIGEST. hold: while
    cleared, the CDN waits (up to 60 s) before it answers."""

    def __init__(self, registry, token_server, layout, repo, basic=False):
        import http.client
        import http.server
        import threading
        self.registry, self.token_server, self.layout, self.repo = (registry, token_server,
                                                                    layout, repo)
        self.basic = basic
        self.nested = {}
        self.hold = threading.Event()
        self.hold.set()
        self.blob_gets = []     # (digest, had Authorization) at the front
        self.cdn_requests = []  # (digest, Authorization or None, Range or None)
        self.cdn_waiting = 0
        front = self

        class Front(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, headers, body=b""):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def handle_any(self):
                auth = self.headers.get("Authorization")
                if front.basic:
                    expected = "Basic " + base64.b64encode(
                        f"{reg.USER}:{reg.PASSWORD}".encode()).decode()
                    if auth != expected:
                        return self.reply(401, [("WWW-Authenticate", 'Basic realm="front"')])
                    auth = "Bearer " + pull_token(front.token_server, front.repo)
                match = re.match(r"/v2/(.+)/(manifests|blobs)/([^/?]+)", self.path)
                if match and match.group(2) == "manifests" and match.group(3) in front.nested:
                    digest, size = front.nested[match.group(3)]
                    body = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX,
                                       "manifests": [{"mediaType": MEDIA_OCI_INDEX,
                                                      "digest": digest, "size": size}]}).encode()
                    return self.reply(200, [("Content-Type", MEDIA_OCI_INDEX)], body)
                if match and match.group(2) == "blobs" and self.command == "GET":
                    digest = match.group(3)
                    front.blob_gets.append((digest, auth is not None))
                    location = (f"http://localhost:{front.cdn_port}/cdn/{digest}"
                                "?X-Amz-Signature=abc123&Expires=9999999999")
                    return self.reply(307, [("Location", location)])
                connection = http.client.HTTPConnection("127.0.0.1", front.registry.port,
                                                        timeout=30)
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() not in ("host", "authorization", "connection")}
                if auth:
                    headers["Authorization"] = auth
                connection.request(self.command, self.path, headers=headers)
                answer = connection.getresponse()
                body = answer.read()
                connection.close()
                self.reply(answer.status, [(name, value) for name, value in answer.getheaders()
                                           if name.lower() not in ("content-length",
                                                                   "connection",
                                                                   "transfer-encoding")],
                           body)

            do_GET = do_HEAD = handle_any

        class Cdn(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                digest = self.path.split("?")[0].rsplit("/", 1)[1]
                front.cdn_requests.append((digest, self.headers.get("Authorization"),
                                           self.headers.get("Range")))
                front.cdn_waiting += 1
                front.hold.wait(60)
                front.cdn_waiting -= 1
                with open(os.path.join(front.layout, "blobs", *digest.split(":")), "rb") as f:
                    data = f.read()
                status, first = 200, 0
                match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
                headers = []
                if match:
                    first = int(match.group(1))
                    last = min(int(match.group(2) or len(data) - 1), len(data) - 1)
                    headers.append(("Content-Range", f"bytes {first}-{last}/{len(data)}"))
                    data, status = data[first:last + 1], 206
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.front_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
        self.cdn_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cdn)
        self.port = self.front_server.server_address[1]
        self.cdn_port = self.cdn_server.server_address[1]
        for server in (self.front_server, self.cdn_server):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def manifest_url(self, tag):
        return f"http://{self.address}/v2/{self.repo}/manifests/{tag}"

    def stop(self):
        self.hold.set()
        for server in (self.front_server, self.cdn_server):
            server.shutdown()
            server.server_close()


MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def layout_blob_size(layout, digest):
    return os.path.getsize(os.path.join(layout, "blobs", *digest.split(":")))
