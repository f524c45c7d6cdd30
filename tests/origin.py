#!/usr/bin/python3
"""origin.py — a small HTTP/1.1 origin server for zfly's data-plane tests.

Serves the files of a directory on 127.0.0.1 with Range (one range, 206 + Content-Range),
HEAD and keep-alive, logs one JSON line per request, counts what it sent, and misbehaves on
request. It starts two listeners on the same files and state; the second one is where
/redirect/ points, under another host name (localhost instead of 127.0.0.1), so a client that
follows a redirect to another host must drop its Authorization header.

    origin.py --root DIR [--port 0] [--log FILE]
    -> prints "origin: listening on PORT second=PORT2" once both listeners accept connections

A request path is zero or more fault prefixes followed by the file name; the query string is
ignored for the lookup (signed-URL style) but logged. Prefixes compose left to right:

    /status/CODE/NAME        answers CODE (404, 500, …) with a short body
    /fail-first/N/NAME       500 for the first N requests of this exact path, then serves
    /fail-ranges/N/NAME      503 for the first N requests of this exact path that ask for a
                             range of more than one byte (pieces; a client's one-byte probe
                             is served), then serves
    /ignore-range/NAME       always 200 with the whole body, whatever Range says
    /reset-after/N/NAME      sends N body bytes, then resets the connection (RST)
    /stall/N/NAME            sends headers and N body bytes, then sends nothing more
    /rate/BPS/NAME           sends the body at about BPS bytes per second
    /pause-at/OFFSET/MARKER/NAME  sends the body up to content byte OFFSET, then nothing more
                             until ROOT/MARKER exists (at most 60 s), then the rest
    /gate/MARKER/NAME        holds an answer that includes the file's last byte until the
                             file ROOT/MARKER exists (the test opens the gate; at most 60 s)
    /gate-from/OFFSET/MARKER/NAME   the same for an answer reaching byte OFFSET or beyond
    /missing-from/OFFSET/MARKER/NAME  404 for a range starting at OFFSET or beyond until
                             ROOT/MARKER exists (a file that is half there until the test
                             says otherwise)
    /auth/TOKEN/NAME         401 unless "Authorization: Bearer TOKEN" is present
    /redirect/REST           307 to http://localhost:PORT2/REST (the second listener)

GET /_stats answers JSON: {"requests": n, "bytes_sent": n, "paths": {PATH: {"requests",
"bytes", "statuses"}}}, counting every request except /_stats itself. The log (--log, default
stderr) has {"method","path","query","range","status","bytes","auth","port"} per request,
written when the response ends (for a stall: when the client goes away).
"""
import argparse
import email.utils
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 1 << 20


class State:
    """What both listeners share: the file root, counters, the log."""

    def __init__(self, root, log):
        self.root = os.path.realpath(root)
        self.log = log
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes_sent = 0
        self.paths = {}
        self.fail_counts = {}
        self.second_port = None
        self.stopping = threading.Event()

    def count_request(self, path):
        with self.lock:
            self.requests += 1
            entry = self.paths.setdefault(path, {"requests": 0, "bytes": 0, "statuses": {}})
            entry["requests"] += 1

    def count_status(self, path, status):
        with self.lock:
            statuses = self.paths[path]["statuses"]
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    def count_bytes(self, path, count):
        with self.lock:
            self.bytes_sent += count
            self.paths[path]["bytes"] += count

    def fail_first(self, path, limit):
        """True while this path has been asked for at most `limit` times."""
        with self.lock:
            seen = self.fail_counts.get(path, 0) + 1
            self.fail_counts[path] = seen
            return seen <= limit

    def marker_exists(self, marker):
        return os.path.exists(os.path.join(self.root, marker))

    def stats(self):
        with self.lock:
            return json.dumps({"requests": self.requests, "bytes_sent": self.bytes_sent,
                               "paths": self.paths})

    def write_log(self, record):
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.lock:
            self.log.write(line)
            self.log.flush()


def parse_range(header, size):
    """(start, end inclusive) for a single "bytes=" range, None for no usable range header,
    or "unsatisfiable"."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or (not match.group(1) and not match.group(2)):
        return None  # multiple ranges or junk: RFC 9110 lets us ignore it and send 200
    if match.group(1):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
        if start >= size or end < start:
            return "unsatisfiable"
        return start, min(end, size - 1)
    suffix = int(match.group(2))
    if suffix == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zfly-test-origin/1"

    def log_message(self, *args):  # the JSON log replaces http.server's
        pass

    @property
    def state(self):
        return self.server.state

    def do_HEAD(self):
        self.handle_one(head=True)

    def do_GET(self):
        self.handle_one(head=False)

    def handle_one(self, head):
        url = urlsplit(self.path)
        path, query = url.path, url.query
        if path == "/_stats":
            body = self.state.stats().encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        self.state.count_request(path)
        self.record = {"method": self.command, "path": path, "query": query,
                       "range": self.headers.get("Range"), "status": None, "bytes": 0,
                       "auth": self.headers.get("Authorization") is not None,
                       "port": self.server.server_address[1]}
        try:
            self.serve(path, head)
        except (BrokenPipeError, ConnectionResetError, socket.timeout) as error:
            self.record["error"] = type(error).__name__
            self.close_connection = True
        finally:
            self.state.write_log(self.record)

    def reply_simple(self, status, text, extra_headers=()):
        body = (text + "\n").encode()
        self.record["status"] = status
        self.state.count_status(self.record["path"], status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self.record["bytes"] = len(body)
            self.state.count_bytes(self.record["path"], len(body))

    def serve(self, path, head):
        parts = [part for part in path.split("/") if part]
        ignore_range = False
        reset_after = stall_after = rate = gate = missing_from = fail_ranges = None
        pause_at = None
        while parts:
            word = parts[0]
            if word == "status" and len(parts) >= 2:
                return self.reply_simple(int(parts[1]), f"status {parts[1]} as requested")
            if word == "fail-first" and len(parts) >= 2:
                if self.state.fail_first(path, int(parts[1])):
                    return self.reply_simple(500, "failing as requested")
                parts = parts[2:]
            elif word == "fail-ranges" and len(parts) >= 2:
                fail_ranges = int(parts[1])
                parts = parts[2:]
            elif word == "gate-from" and len(parts) >= 3:
                gate = (int(parts[1]), parts[2])
                parts = parts[3:]
            elif word == "missing-from" and len(parts) >= 3:
                missing_from = (int(parts[1]), parts[2])
                parts = parts[3:]
            elif word == "ignore-range":
                ignore_range = True
                parts = parts[1:]
            elif word == "reset-after" and len(parts) >= 2:
                reset_after = int(parts[1])
                parts = parts[2:]
            elif word == "stall" and len(parts) >= 2:
                stall_after = int(parts[1])
                parts = parts[2:]
            elif word == "pause-at" and len(parts) >= 3:
                pause_at = (int(parts[1]), parts[2])
                parts = parts[3:]
            elif word == "rate" and len(parts) >= 2:
                rate = int(parts[1])
                parts = parts[2:]
            elif word == "gate" and len(parts) >= 2:
                gate = (None, parts[1])  # None: the last byte
                parts = parts[2:]
            elif word == "auth" and len(parts) >= 2:
                if self.headers.get("Authorization") != f"Bearer {parts[1]}":
                    return self.reply_simple(401, "unauthorized")
                parts = parts[2:]
            elif word == "redirect":
                rest = "/".join(parts[1:])
                query = urlsplit(self.path).query
                target = f"http://localhost:{self.state.second_port}/{rest}"
                if query:
                    target += "?" + query
                return self.reply_simple(307, "moved", [("Location", target)])
            else:
                break
        file_path = os.path.realpath(os.path.join(self.state.root, *parts))
        if not parts or not file_path.startswith(self.state.root + os.sep) \
                or not os.path.isfile(file_path):
            return self.reply_simple(404, "not found")
        with open(file_path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            size = stat.st_size
            wanted = None if ignore_range else parse_range(self.headers.get("Range"), size)
            if wanted == "unsatisfiable":
                return self.reply_simple(416, "range not satisfiable",
                                         [("Content-Range", f"bytes */{size}")])
            start, end = wanted if wanted else (0, size - 1)
            length = max(0, end - start + 1)
            if (missing_from and wanted and start >= missing_from[0]
                    and not self.state.marker_exists(missing_from[1])):
                return self.reply_simple(404, "not there yet")
            if (fail_ranges is not None and length > 1
                    and self.state.fail_first(path, fail_ranges)):
                return self.reply_simple(503, "failing as requested")
            if gate and end >= (size - 1 if gate[0] is None else gate[0]):
                self.wait_for_gate(gate[1])
            status = 206 if wanted else 200
            self.record["status"] = status
            self.state.count_status(path, status)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "none" if ignore_range else "bytes")
            self.send_header("ETag", f'"{stat.st_ino:x}-{size:x}-{int(stat.st_mtime):x}"')
            self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if head:
                return
            if pause_at and start < pause_at[0] <= end:
                self.send_body(handle, start, pause_at[0] - start, None, None, rate)
                self.wait_for_gate(pause_at[1])
                start, length = pause_at[0], end - pause_at[0] + 1
            elif pause_at and start >= pause_at[0]:
                self.wait_for_gate(pause_at[1])
            self.send_body(handle, start, length, reset_after, stall_after, rate)

    def wait_for_gate(self, marker):
        """Holds the answer until ROOT/MARKER exists, at most 60 s."""
        deadline = time.monotonic() + 60
        while not self.state.marker_exists(marker) and time.monotonic() < deadline:
            if self.state.stopping.wait(0.02):
                return

    def send_body(self, handle, start, length, reset_after, stall_after, rate):
        limit = length
        if reset_after is not None:
            limit = min(limit, reset_after)
        if stall_after is not None:
            limit = min(limit, stall_after)
        sent = 0
        already = self.record["bytes"]  # a paused answer sends its body in two calls
        began = time.monotonic()
        out_fd = self.connection.fileno()
        while sent < limit:
            chunk = min(CHUNK, limit - sent)
            if rate:
                chunk = min(chunk, max(1, rate // 20))
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0 and self.state.stopping.wait(ahead):
                    break
            count = os.sendfile(out_fd, handle.fileno(), start + sent, chunk)
            if count == 0:
                break
            sent += count
            self.record["bytes"] = already + sent
            self.state.count_bytes(self.record["path"], count)
        if reset_after is not None and sent < length:
            # SO_LINGER 0: close() sends RST, the client sees "connection reset" mid-body.
            self.record["error"] = "reset"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        elif stall_after is not None and sent < length:
            self.record["error"] = "stalled"
            self.close_connection = True
            # Send nothing more; wait until the client gives up (EOF) or the server stops.
            while not self.state.stopping.is_set():
                readable, _, _ = select.select([self.connection], [], [], 0.2)
                if readable:
                    try:
                        if not self.connection.recv(4096):
                            break
                    except OSError:
                        break


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port, state):
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="JSON-lines request log (default: stderr)")
    options = parser.parse_args()
    log = open(options.log, "a") if options.log else sys.stderr
    state = State(options.root, log)
    first = Server(options.port, state)
    second = Server(0, state)
    state.second_port = second.server_address[1]
    threads = [threading.Thread(target=server.serve_forever, daemon=True)
               for server in (first, second)]
    for thread in threads:
        thread.start()
    print(f"origin: listening on {first.server_address[1]} second={state.second_port}",
          flush=True)
    # Runs until SIGTERM or SIGINT (the test ends the process).
    signal.signal(signal.SIGTERM, lambda *_: state.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: state.stopping.set())
    while not state.stopping.wait(1.0):
        pass
    first.shutdown()
    second.shutdown()


if __name__ == "__main__":
    main()
