"""Test helpers for the proxy tests: certificates, a token server, a real docker-registry,
and OCI images built with umoci and pushed with skopeo.

Everything runs on loopback with ports picked at run time; every process is stopped by the
test that started it (Registry.stop, TokenServer.stop). Benchmarks on the testbed run both in a
network namespace instead: Registry(host=…, port=…, wrap=["ip", "netns", "exec", NS]), and the
token server as a process of its own there (`registry.py token-server DIR HOST PORT`).
"""
import base64
import datetime
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import zflytest  # noqa: E402

USER, PASSWORD = "pusher", "secret"
SERVICE = "zfly-test-registry"
ISSUER = "zfly-test-issuer"


def _write_pem(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def _write_cert_and_key(directory, name, cert, key):
    """NAME.crt and NAME.key (PKCS8, unencrypted) in directory; returns their paths."""
    cert_path = _write_pem(os.path.join(directory, f"{name}.crt"),
                           cert.public_bytes(serialization.Encoding.PEM))
    key_path = _write_pem(os.path.join(directory, f"{name}.key"), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


def make_ca(directory, name):
    """A CA certificate and key; returns (cert_path, key_path, cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return (*_write_cert_and_key(directory, name, cert, key), cert, key)


def make_server_cert(directory, name, ca_cert, ca_key, dns_names, ips=()):
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    names = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(i))
                                                      for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _write_cert_and_key(directory, name, cert, key)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The registry's token realm: RS256 JWTs with an x5c chain the registry trusts.

    GET with Basic USER:PASSWORD, or POST with the OAuth2 password grant (username and
    password in a form, as containerd does), gets every action asked for; anonymous callers get pull, except on
    repositories under private/, where they get nothing (so the registry answers 401)."""

    def __init__(self, directory, listen=("127.0.0.1", 0)):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.utcnow()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zfly test token signer")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = _write_pem(os.path.join(directory, "token-signer.crt"),
                                    self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests = []
        # A test clears it to hold every token request (and so the pulls and preheats that
        # need one) until it sets it again; a held request waits at most 120 s.
        self.hold = threading.Event()
        self.hold.set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hold.wait(120)
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    given = base64.b64decode(auth[6:]).decode()
                    if given != f"{USER}:{PASSWORD}":
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = USER
                server.requests.append((self.path, user))
                self.answer(server.issue(query.get("scope", []), user))

            def do_POST(self):
                # OAuth2 password grant (containerd sends its --user credentials this way):
                # a form with username, password and scope
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                user = form.get("username", [None])[0]
                if user is not None and (user, form.get("password", [""])[0]) != (USER, PASSWORD):
                    self.send_response(401)
                    self.end_headers()
                    return
                server.requests.append((self.path, user))
                self.answer(server.issue(form.get("scope", []), user))

            def answer(self, token):
                body = json.dumps(token).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(listen, Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://{listen[0]}:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def issue(self, scopes, user):
        access = []
        for scope in scopes:
            for item in scope.split(" "):
                parts = item.split(":")
                if len(parts) < 3:
                    continue
                kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
                if user is None:
                    actions = [] if name.startswith("private/") else [a for a in actions
                                                                       if a == "pull"]
                access.append({"type": kind, "name": name, "actions": actions})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(
                      serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + 600,
                  "nbf": now - 60, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (_b64(json.dumps(header).encode()) + "." +
                         _b64(json.dumps(claims).encode())).encode()
        signature = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        token = signing_input.decode() + "." + _b64(signature)
        return {"token": token, "access_token": token, "expires_in": 600}

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Registry:
    """docker-registry (distribution 2.8) with filesystem storage and token auth; TLS when
    cert/key are given. Its access log is kept to count requests."""

    def __init__(self, directory, token, tls=None, name="registry", host="127.0.0.1", port=None,
                 wrap=()):
        """token: what the registry trusts (a TokenServer, or any object with its realm and
        cert_path); wrap: a command prefix to run docker-registry under."""
        self.host = host
        self.port = port or zflytest.free_port()
        self.root = os.path.join(directory, f"{name}-data")
        os.makedirs(self.root, exist_ok=True)
        config = os.path.join(directory, f"{name}.yml")
        with open(config, "w") as handle:
            handle.write("version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
                         f"storage:\n  filesystem:\n    rootdirectory: {self.root}\n"
                         "  delete:\n    enabled: true\n"
                         f"http:\n  addr: {host}:{self.port}\n")
            if tls:
                handle.write(f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n")
            handle.write(f"auth:\n  token:\n    realm: {token.realm}\n    service: {SERVICE}\n"
                         f"    issuer: {ISSUER}\n    rootcertbundle: {token.cert_path}\n")
        self.scheme = "https" if tls else "http"
        env = dict(os.environ)
        env.pop("HTTPS_PROXY", None)
        env.pop("HTTP_PROXY", None)
        self.process = subprocess.Popen([*wrap, "docker-registry", "serve", config],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=env)
        self.log = zflytest.LineReader(self.process.stdout, echo_prefix=f"[{name}] ")
        self.log.wait_for(r"listening on", timeout=30)

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def mark(self):
        """Index of the next log line: collects what the registry logged so far."""
        import queue
        try:
            while self.log._drain(0.2) is not None:
                pass
        except queue.Empty:
            pass
        return len(self.log.lines)

    def blob_gets(self, digest=None, start=0):
        """Access-log lines of GETs of blobs (of one digest when given) from line start."""
        self.mark()
        pattern = re.compile(r'"GET /v2/[^ ]*/blobs/(sha256:[0-9a-f]{64})[^ ]* HTTP/1\.1" (\d+)')
        found = []
        for line in self.log.lines[start:]:
            match = pattern.search(line)
            if match and (digest is None or match.group(1) == digest):
                found.append((match.group(1), int(match.group(2))))
        return found

    def blob_requests(self, start=0):
        """(method, digest, status, body bytes, user agent) of every blob request in the
        access log (combined format) from line start."""
        self.mark()
        pattern = re.compile(r'"(GET|HEAD) /v2/[^ ]*/blobs/(sha256:[0-9a-f]{64})[^ ]* HTTP/1\.1" '
                             r'(\d+) (\d+|-) "[^"]*" "([^"]*)"')
        found = []
        for line in self.log.lines[start:]:
            match = pattern.search(line)
            if match:
                size = 0 if match.group(4) == "-" else int(match.group(4))
                found.append((match.group(1), match.group(2), int(match.group(3)), size,
                              match.group(5)))
        return found

    def stop(self):
        zflytest.stop_process(self.process)


class RegistryMixin:
    """For a test class with a token-auth docker-registry of its own, started once for the
    class: cls.shared (its directory), cls.token, cls.registry (over TLS with the (cert, key)
    the class's registry_tls() returns, if any) holding what its push_images() pushes; all
    stopped and removed after the class. Put it before the TestCase base:
        class ProxyMirrorTest(reg.RegistryMixin, zflytest.ZflyTestCase)"""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.shared = tempfile.mkdtemp(prefix=f"zfly-{cls.__name__.lower()}-")
        cls.token = TokenServer(cls.shared)
        cls.registry = Registry(cls.shared, cls.token, tls=cls.registry_tls())
        cls.push_images()

    @classmethod
    def registry_tls(cls):
        return None

    @classmethod
    def push_images(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()
        cls.token.stop()
        shutil.rmtree(cls.shared, ignore_errors=True)
        super().tearDownClass()


def build_image(directory, tag="v1", layers=3, layer_bytes=6 << 20, seed=b"zfly"):
    """An OCI image layout with `layers` layers of incompressible bytes, built with umoci.
    Returns the layout path."""
    layout = os.path.join(directory, "layout")
    if not os.path.exists(layout):
        subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:{tag}"], check=True)
    bundle = os.path.join(directory, f"bundle-{tag}")
    for index in range(layers):
        subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}", bundle],
                       check=True, capture_output=True)
        data = bytearray()
        block = hashlib.sha256(seed + tag.encode() + bytes([index])).digest()
        while len(data) < layer_bytes:
            block = hashlib.sha256(block).digest()
            data += block * 1  # 32 bytes, chained: incompressible enough for gzip
        with open(os.path.join(bundle, "rootfs", f"layer{index}.bin"), "wb") as handle:
            handle.write(bytes(data[:layer_bytes]))
        subprocess.run(["umoci", "repack", "--image", f"{layout}:{tag}", bundle], check=True,
                       capture_output=True)
        shutil.rmtree(bundle)
    return layout


def skopeo_env(**extra):
    env = {key: value for key, value in os.environ.items()
           if key.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")}
    env.update(extra)
    return env


def registries_conf(directory, registry_name, mirror):
    """deploy/podman/registries.conf, for registry_name with the mirror at mirror (HOST:PORT),
    written into directory; returns its path, for `skopeo --registries-conf CONF`."""
    with open(os.path.join(zflytest.SOURCE_DIR, "deploy", "podman", "registries.conf")) as f:
        text = f.read()
    text = text.replace('"docker.io"', f'"{registry_name}"')
    text = text.replace("127.0.0.1:65001", mirror)
    conf = os.path.join(directory, f"registries-{mirror.replace(':', '-')}.conf")
    with open(conf, "w") as handle:
        handle.write(text)
    return conf


def auth_file(path, *names):
    """An auth file (podman login's) with the registry's credentials under each of names;
    returns path."""
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with open(path, "w") as handle:
        json.dump({"auths": {name: {"auth": auth} for name in names}}, handle)
    return path


def skopeo_mirror_files(directory, registry_name, mirror):
    """registries.conf (registries_conf) and an auth file with the registry's credentials under
    both names (skopeo looks them up by the address it talks to: the mirror's); returns their
    paths, for `skopeo --registries-conf CONF copy --authfile AUTH docker://REGISTRY_NAME/…`."""
    authfile = os.path.join(directory, f"auth-{mirror.replace(':', '-')}.json")
    return (registries_conf(directory, registry_name, mirror),
            auth_file(authfile, mirror, registry_name))


def push(layout, tag, registry, repo, tls_verify=False):
    subprocess.run(["skopeo", "copy", "--quiet", f"--dest-tls-verify={str(tls_verify).lower()}",
                    "--dest-creds", f"{USER}:{PASSWORD}", f"oci:{layout}:{tag}",
                    f"docker://{registry.address}/{repo}:{tag}"],
                   check=True, env=skopeo_env(), timeout=120)


def registry_digests(registry, repo, tag):
    """(manifest digest, [layer digests]) as the registry serves them."""
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{registry.address}/{repo}:{tag}"], check=True,
                         capture_output=True, env=skopeo_env(), timeout=60).stdout
    manifest = json.loads(raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest(), [layer["digest"]
                                                         for layer in manifest["layers"]]


def layout_digests(layout, tag):
    """(manifest digest, [layer digests]) of an OCI layout written by skopeo copy, with every
    blob's bytes checked against its digest."""
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    entry = [m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]

    def blob(digest):
        with open(os.path.join(layout, "blobs", *digest.split(":")), "rb") as handle:
            data = handle.read()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, digest
        return data

    manifest = json.loads(blob(entry["digest"]))
    for layer in manifest["layers"]:
        blob(layer["digest"])
    return entry["digest"], [layer["digest"] for layer in manifest["layers"]]


def serve_tokens(argv):
    """`registry.py token-server DIR HOST PORT`: a TokenServer on HOST:PORT until SIGTERM; its
    first line of output is `realm=URL cert=PATH` (what a Registry needs)."""
    import signal
    directory, host, port = argv
    server = TokenServer(directory, listen=(host, int(port)))
    print(f"realm={server.realm} cert={server.cert_path}", flush=True)
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    signal.pause()


if __name__ == "__main__":
    if sys.argv[1:2] != ["token-server"] or len(sys.argv) != 5:
        sys.exit("usage: registry.py token-server DIR HOST PORT")
    serve_tokens(sys.argv[2:])
