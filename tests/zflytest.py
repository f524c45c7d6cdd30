"""zflytest — helpers for zfly's integration tests: real processes, real sockets, no sleeps.

Each test script imports this module, starts zfly processes with INI files it writes into a
fresh temporary directory, and waits on their log lines (or replies) with a deadline that fails
the test instead of hanging. Everything a test starts is stopped when it ends.
"""
import contextlib
import hashlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

BUILD_DIR = os.environ.get("ZF_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "build"))
SOURCE_DIR = os.environ.get("ZF_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
ZFLY = os.path.join(BUILD_DIR, "zfly")
ZFLY_TAP = os.path.join(BUILD_DIR, "zfly-tap")

DEFAULT_TIMEOUT = 20.0
#  Lines that AddressSanitizer, LeakSanitizer and UBSan print: any of them fails the test.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


_PORTS_GIVEN = set()


def free_port():
    """A TCP port on loopback that nothing listens on right now, and never one this process
    was given before.

    Chosen at random below the kernel's ephemeral range (32768 and up): the kernel hands out
    ephemeral ports to every outgoing connection of every test running in parallel, so a
    port it just gave us (bind to port 0) is the one most likely to be taken again before the
    process under test binds it. A port handed out earlier is free until its process binds
    it, so without the record two picks of one test could meet (a seed's storage and fetcher
    were once given the same port)."""
    import random
    for _ in range(200):
        port = random.randint(10000, 32000)
        if port in _PORTS_GIVEN:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no free port in 10000-32000")


class LineReader:
    """Collects a stream's lines on a thread so tests can wait for one with a deadline."""

    def __init__(self, stream, echo_prefix=None):
        self.lines = []
        self.closed = False
        self._queue = queue.Queue()
        self._echo_prefix = echo_prefix
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self._echo_prefix and os.environ.get("ZF_TEST_VERBOSE"):
                sys.stderr.write(f"{self._echo_prefix}{line}\n")
            self._queue.put(line)
        self._queue.put(None)

    def _drain(self, timeout):
        if self.closed:
            return None
        item = self._queue.get(timeout=timeout)
        if item is None:
            self.closed = True
        else:
            self.lines.append(item)
        return item

    def wait_for(self, pattern, timeout=DEFAULT_TIMEOUT, start=0):
        """Returns the first line (from index start) matching pattern; fails on the deadline
        or when the stream ends first."""
        return self.lines[self.wait_for_index(pattern, timeout, start)]

    def wait_for_index(self, pattern, timeout=DEFAULT_TIMEOUT, start=0):
        """Like wait_for, but returns the index of the line in self.lines."""
        regex = re.compile(pattern)
        index = start
        deadline = time.monotonic() + timeout
        closed = self.closed
        while True:
            while index < len(self.lines):
                if regex.search(self.lines[index]):
                    return index
                index += 1
            remaining = deadline - time.monotonic()
            if closed or remaining <= 0:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout}s"
                    f"{' (stream ended)' if closed else ''}; got:\n" + "\n".join(self.lines[-40:]))
            try:
                if self._drain(remaining) is None:
                    closed = True
            except queue.Empty:
                pass

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("stream did not end in time")
            try:
                if self._drain(remaining) is None:
                    return
            except queue.Empty:
                pass

    def received(self):
        """Every line received so far, as a list (lines wait in the queue until something reads
        them: self.lines alone holds only those up to the last wait)."""
        try:
            while self._drain(0) is not None:
                pass
        except queue.Empty:
            pass
        return list(self.lines)

    def text(self):
        return "\n".join(self.received())


class Zfly:
    """One zfly process started from an INI text."""

    def __init__(self, workdir, name, ini_text, extra_args=(), env=None):
        self.name = name
        self.config_path = os.path.join(workdir, f"{name}.ini")
        with open(self.config_path, "w") as handle:
            handle.write(ini_text)
        self.args = [ZFLY, "-c", self.config_path, *extra_args]
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env=env)
        self.log = LineReader(self.process.stdout, echo_prefix=f"[{name}] ")
        self.http_port = None

    def wait_ready(self, timeout=DEFAULT_TIMEOUT):
        line = self.log.wait_for(r"zfly: ready ", timeout)
        match = re.search(r"http_port=(\d+)", line)
        self.http_port = int(match.group(1)) if match else None
        return line

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s:\n{self.log.text()}")
        self.log.wait_closed(timeout)
        return code

    def stop(self, timeout=10):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def close(self):
        """Releases the output pipe once the log reader has seen its end."""
        self.log.wait_closed()
        self.process.stdout.close()

    def http_get(self, path):
        """(status, headers, body text) of GET http://127.0.0.1:PORT/path."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def metric(self, name, **labels):
        """Value of one series in /metrics, or None when absent."""
        status, _, body = self.http_get("/metrics")
        assert status == 200, status
        return parse_metric(body, name, labels)


def parse_metric(text, name, labels):
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(key) == str(value) for key, value in labels.items()):
            return float(match.group(4))
    return None


def keygen(directory, name):
    """Writes NAME.key and NAME.pub with `zfly keygen`; returns (secret path, public path, z85)."""
    base = os.path.join(directory, name)
    output = subprocess.run([ZFLY, "keygen", base], check=True, capture_output=True,
                            text=True).stdout
    z85 = re.search(r"public key z85: (\S+)", output).group(1)
    return base + ".key", base + ".pub", z85


def read_cert(path):
    """(public, secret) Z85 keys of a zcert file as bytes (secret is None for a .pub)."""
    with open(path) as handle:
        text = handle.read()
    public = re.search(r'public-key = "(.{40})"', text).group(1)
    secret = re.search(r'secret-key = "(.{40})"', text)
    return public.encode(), secret.group(1).encode() if secret else None


def write_blob(root, payload, repo="test"):
    """Stores payload under root as a registry serves a blob (v2/REPO/blobs/sha256:HEX), for
    tests/origin.py; returns its digest."""
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    blobs = os.path.join(root, "v2", repo, "blobs")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(blobs, digest), "wb") as handle:
        handle.write(payload)
    return digest


def sha256_file(path, block=4 << 20):
    """The hex SHA-256 of a file, read in blocks (files of gigabytes stay out of memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


class NoReply(AssertionError):
    """A bus request got no reply before its deadline."""


class BusClient:
    """A DEALER speaking the zfly envelope to one actor's endpoint, as other nodes and zfly-get
    do: ipc:// on this host, or tcp:// with a node's CURVE keys (curve=(public, secret, server
    public), Z85 bytes). Every request of the test process gets its own id; a reply that is not
    the one awaited is kept until it is asked for."""

    _ids = itertools.count(1000)

    def __init__(self, endpoint, sender="tester@outside", to=None, curve=None, hwm=None):
        import zmq
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if hwm:  # many requests in flight (a storm) without blocking or dropping
            self.socket.setsockopt(zmq.RCVHWM, hwm)
            self.socket.setsockopt(zmq.SNDHWM, hwm)
        if curve:
            public, secret, server = curve
            self.socket.curve_publickey, self.socket.curve_secretkey = public, secret
            self.socket.curve_serverkey = server
        self.socket.connect(endpoint)
        self.sender, self.to = sender, to
        self.early = {}

    def send(self, type_, body, frames=(), to=None, sender=None):
        """Sends one request (body frames after the envelope); returns its id."""
        import msgpack
        msg_id = next(self._ids)
        envelope = {"type": type_, "v": 1, "id": msg_id, "from": sender or self.sender,
                    "body": body}
        if to or self.to:
            envelope["to"] = to or self.to
        self.socket.send_multipart([msgpack.packb(envelope), *frames])
        return msg_id

    def send_raw(self, *frames):
        """Sends frames as they are (malformed input)."""
        self.socket.send_multipart(list(frames))

    def receive(self, msg_id=None, timeout=10.0):
        """(reply envelope, the raw frames after it): the reply to msg_id, or with None the next
        message whatever it answers. Raises NoReply after timeout seconds."""
        import msgpack
        if msg_id in self.early or (msg_id is None and self.early):
            return self.early.pop(msg_id if msg_id is not None else next(iter(self.early)))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.socket.poll(max(1, int(remaining * 1000))):
                raise NoReply(f"no reply{'' if msg_id is None else f' to request {msg_id}'} "
                              f"within {timeout}s")
            frames = self.socket.recv_multipart()
            reply = msgpack.unpackb(frames[0], raw=False)
            if msg_id is None or reply.get("re") == msg_id:
                return reply, frames[1:]
            self.early[reply.get("re")] = (reply, frames[1:])

    def request(self, type_, body, timeout=10.0, **fields):
        """(reply envelope, raw frames) of one request (fields: to, frames, sender)."""
        return self.receive(self.send(type_, body, **fields), timeout)

    def close(self):
        self.socket.close()
        self.context.term()


def stop_process(process, reader=None, timeout=10):
    """SIGTERM, then SIGKILL after timeout; with reader (its stdout's LineReader), waits for
    the output to end and closes the pipe."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if reader:
        reader.wait_closed()
        process.stdout.close()


def recv_http_head(sock):
    """The head of an HTTP/1.1 response: (status, headers with lowercased names, the body
    bytes that came with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before the head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def recv_http_response(sock, timeout=30):
    """One HTTP/1.1 response with a Content-Length body: (status, headers with lowercased
    names, body, complete); complete is False when the connection closed before
    Content-Length bytes arrived."""
    sock.settimeout(timeout)
    status, headers, body = recv_http_head(sock)
    length = int(headers.get("content-length", "0"))
    received = bytearray(body)  # bytes += would copy the whole body at every chunk
    while len(received) < length:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        received += chunk
    return status, headers, bytes(received), len(received) == length


def proxy_get(port, url, extra_headers="", host=None):
    """(status, headers, body, complete) of one GET of an absolute URL through the forward
    proxy at port (Host: the URL's, unless host names another); extra_headers are whole
    lines, each ending in CRLF."""
    host = host or url.split("/")[2]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}"
                     "Connection: close\r\n\r\n".encode())
        return recv_http_response(sock)


def proxy_node_ini(name, proxy_port, cache_dir, fetcher="", proxy="", upstream="", storage="",
                   node=""):
    """The INI of a node running storage, fetcher and proxy, as most proxy tests want one;
    fetcher, proxy, upstream, storage and node are extra lines for those sections."""
    return (f"[node]\nname = {name}\nlog_level = info\nhttp = 127.0.0.1:0\n{node}\n"
            f"[upstream]\n{upstream}\n"
            f"[storage]\ndir = {cache_dir}\n{storage}\n[fetcher]\n{fetcher}\n"
            f"[proxy]\nlisten = 127.0.0.1:{proxy_port}\n{proxy}")


def flip_byte(path, offset, mask=0xFF):
    """Damages one byte of a file (a cache's data file, behind the daemon's back)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ mask]))


def wait_until_true(predicate, what, timeout=DEFAULT_TIMEOUT, interval=0.05):
    """Polls predicate until it returns something true (returned); fails on the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


SLOT_MAGIC = b"zfmeta\x00\x01"


def metadata_slots(task_dir):
    """The records in a task's two metadata slots (actors/storage/zf_meta_slot.h), newest
    first: [(file name, sequence, decoded storage_meta record)]. Slots that are empty or
    whose header does not add up are left out (the checksum is storage's to check)."""
    import msgpack
    import struct
    found = []
    for name in ("meta.0", "meta.1"):
        try:
            with open(os.path.join(task_dir, name), "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            continue
        if len(data) < 32 or data[:8] != SLOT_MAGIC:
            continue
        sequence, length = struct.unpack_from("<QI", data, 8)
        if 24 + length + 8 > len(data):
            continue
        found.append((name, sequence, msgpack.unpackb(data[24:24 + length], raw=False)))
    return sorted(found, key=lambda slot: -slot[1])


def bitmap_set(bitmap, count):
    """The indexes of the bits set in a bitmap of count bits (bit i: byte i/8, LSB first)."""
    return {index for index in range(count) if bitmap[index // 8] >> (index % 8) & 1}


class Origin:
    """tests/origin.py as a subprocess: files under root, JSON request log, /_stats.

    files ({name: bytes}) are written under root first, so a test that serves one content
    under several names (each with its own fault prefixes and request count) says so in one
    line; the same bytes object is written once and hard-linked to its other names."""

    def __init__(self, root, log_path, files=None):
        self.root = root
        written = {}
        for name, content in (files or {}).items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if id(content) in written:
                os.link(written[id(content)], path)
                continue
            with open(path, "wb") as handle:
                handle.write(content)
            written[id(content)] = path
        self.log_path = log_path
        self.process = subprocess.Popen(["/usr/bin/python3", os.path.join(SOURCE_DIR, "tests", "origin.py"), "--root", root, "--log",
                                         log_path], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self.output = LineReader(self.process.stdout, echo_prefix="[origin] ")
        line = self.output.wait_for(r"origin: listening on \d+")
        match = re.search(r"listening on (\d+) second=(\d+)", line)
        self.port, self.second_port = int(match.group(1)), int(match.group(2))

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def stats(self):
        # Straight to the origin, whatever proxy the environment names.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url("/_stats"), timeout=10) as response:
            return json.load(response)

    def records(self, timeout=DEFAULT_TIMEOUT):
        """Every request's log record. The origin logs a request after its last byte went out,
        so a client can hold the whole body before the record exists: wait until every
        request counted so far has been logged."""
        deadline = time.monotonic() + timeout
        while True:
            counted = self.stats()["requests"]
            with open(self.log_path) as handle:
                logged = [json.loads(line) for line in handle if line.strip()]
            if len(logged) >= counted:
                return logged
            if time.monotonic() > deadline:
                raise AssertionError(f"origin: {counted - len(logged)} requests still not "
                                     f"finished after {timeout}s")
            time.sleep(0.02)

    def path_stats(self, path):
        """(requests, bytes) the origin counted for one request path."""
        entry = self.stats()["paths"].get(path, {"requests": 0, "bytes": 0})
        return entry["requests"], entry["bytes"]

    def count(self, path):
        """Requests the origin counted for one request path (query string not included)."""
        return self.path_stats(path)[0]

    def ranges(self, path, start=0):
        """(first, last, status, body bytes sent) of every GET of path that asked for a byte
        range, in the order the origin ended them, from its start-th request on
        (len(records()) before a step: that step's ranges); a fetcher's one-byte probe
        (bytes=0-0) is left out."""
        found = []
        for record in self.records()[start:]:
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", record["range"] or "")
            if record["path"] != path or record["method"] != "GET" or not match:
                continue
            first, last = int(match.group(1)), int(match.group(2))
            if (first, last) != (0, 0):
                found.append((first, last, record["status"], record["bytes"]))
        return found

    def open_gate(self, marker):
        """Creates ROOT/MARKER: lets /gate/, /gate-from/ and /missing-from/ answers through."""
        open(os.path.join(self.root, marker), "w").close()

    def stop(self):
        stop_process(self.process, self.output)


def sent_spans(ranges):
    """The content bytes an origin sent, as sorted [first, end) spans, one per 206 answer of
    Origin.ranges (an answer cut short by a fault counts for what it sent); an error answer's
    body is not content. Fails when two answers sent one byte twice: a range that overlaps
    another, or a piece fetched again."""
    spans = sorted((first, first + sent) for first, _, status, sent in ranges
                   if status == 206 and sent > 0)
    for (_, end), (first, _) in zip(spans, spans[1:]):
        if first < end:
            raise AssertionError(f"the origin sent bytes {first}-{end - 1} twice: {spans}")
    return spans


def assert_sent_once(ranges, begin, end, piece_length=None):
    """The origin's 206 answers (Origin.ranges) sent bytes [begin, end) of the content exactly
    once: none twice, none missing, none outside. With piece_length, every range starts on a
    piece boundary (a piece is checked whole)."""
    spans = sent_spans(ranges)
    covered = begin
    for first, span_end in spans:
        if first != covered:
            raise AssertionError(f"bytes {min(first, covered)}-{max(first, covered) - 1} not "
                                 f"sent, or sent outside [{begin}, {end}): {spans}")
        covered = span_end
    if covered != end:
        raise AssertionError(f"bytes {covered}-{end - 1} never sent: {spans}")
    if piece_length:
        unaligned = [r for r in ranges if r[0] % piece_length]
        if unaligned:
            raise AssertionError(f"ranges not on a piece boundary ({piece_length}): {unaligned}")


class Nginx:
    """nginx (Debian package) serving root on a loopback port, with an access log of body
    bytes: a real, fast origin for large files (tests/origin.py streams through Python)."""

    def __init__(self, workdir, root):
        self.port = free_port()
        self.dir = os.path.join(workdir, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "access.log")
        conf = os.path.join(self.dir, "nginx.conf")
        temp = self.dir
        with open(conf, "w") as handle:
            handle.write(f"""daemon off; master_process off; worker_processes 1;
pid {self.dir}/nginx.pid; error_log {self.dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  log_format bytes '$status $body_bytes_sent "$request"';
  access_log {self.log_path} bytes;
  sendfile on; tcp_nopush on; default_type application/octet-stream;
  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
  uwsgi_temp_path {temp}; scgi_temp_path {temp};
  server {{ listen 127.0.0.1:{self.port}; root {root}; }}
}}
""")
        self.process = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while True:  # the listening socket, not a fixed wait
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("nginx did not start: "
                                         + self.process.stderr.read().decode(errors="replace"))
                time.sleep(0.02)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def body_bytes(self):
        """(body bytes sent, requests) so far, from the access log."""
        total = requests = 0
        with open(self.log_path) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    total += int(parts[1])
                    requests += 1
        return total, requests

    def stop(self):
        stop_process(self.process)
        self.process.stderr.close()


class TcpRelay:
    """A TCP relay on loopback to target_port that the test can cut and restore: a network
    path that fails and comes back, for a connection the test does not own. Cut, it closes
    every relayed connection and drops new ones at once (the client sees resets and retries)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = True
        self.closed = False
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                if not self.open:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                except OSError:
                    client.close()
                    continue
                self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self):
        with self.lock:
            self.open = False
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets = []

    def restore(self):
        with self.lock:
            self.open = True

    def close(self):
        self.cut()
        self.listener.close()


class ZflyTestCase(unittest.TestCase):
    """Gives each test a temporary directory and stops every process it started."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="zfly-test-")
        self.processes = []

    def tearDown(self):
        # Last started first, as a cluster is stopped: nodes before the scheduler they leave.
        for process in reversed(self.processes):
            process.stop()
        for process in self.processes:
            process.close()
            for marker in SANITIZER_MARKERS:
                if marker in process.log.text():
                    self.fail(f"{process.name}: sanitizer report:\n{process.log.text()}")
        if os.environ.get("ZF_KEEP_TEST_DIRS"):
            print(f"kept {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self, name, ini_text, extra_args=(), env=None):
        process = Zfly(self.workdir, name, ini_text, extra_args, env)
        self.processes.append(process)
        return process

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def start_proxy_node(self, name="edge", **sections):
        """A node of proxy_node_ini (sections: its extra lines) on a free port, with its cache
        in NAME-cache, started and listening; returns (node, proxy port)."""
        port = free_port()
        node = self.start(name, proxy_node_ini(name, port, self.path(name + "-cache"), **sections))
        node.wait_ready()
        node.log.wait_for(r"proxy: started listen=")
        return node, port


#  The exit status of a test script whose every test was skipped (CTest's SKIP_RETURN_CODE in
#  tests/CMakeLists.txt), so CTest shows it as "Skipped" instead of "Passed"; 77 is automake's.
SKIP_RETURN_CODE = 77
#  Set by .ci/run: CI runs as root with every package, so a skip there means something the
#  suite needs is missing, and it fails the test instead.
NO_SKIP_VARIABLE = "ZF_TEST_NO_SKIP"


def exit_status(result):
    """The script's exit status for a unittest result: 1 on any failure; SKIP_RETURN_CODE when
    every test was skipped; 1 for any skip when ZF_TEST_NO_SKIP is set; else 0. A script where
    only some tests were skipped passes (CTest has one status per script), but says which."""
    if not result.wasSuccessful():
        return 1
    if result.skipped:
        print(f"zflytest: {len(result.skipped)} of {result.testsRun} tests skipped:",
              file=sys.stderr)
        for test, reason in result.skipped:
            print(f"  {test.id()}: {reason}", file=sys.stderr)
        if os.environ.get(NO_SKIP_VARIABLE):
            print(f"zflytest: {NO_SKIP_VARIABLE} is set (CI has every package and root): "
                  "a skipped test fails", file=sys.stderr)
            return 1
        if len(result.skipped) >= result.testsRun:
            return SKIP_RETURN_CODE
    if result.testsRun == 0:
        print("zflytest: no test ran", file=sys.stderr)
        return 1
    return 0


def main():
    program = unittest.main(verbosity=2, exit=False)
    sys.exit(exit_status(program.result))
