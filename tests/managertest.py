"""managertest — a manager process and the nodes that join it, for the manager's tests.

Every manager test runs twice, against SQLite and against a real MariaDB server: a test module
writes its tests once in a mixin and derives one TestCase per backend from ManagerCase
(backend = "sqlite" | "mariadb"). The MariaDB server is started once per class (tests/mariadb.py)
and each test gets a fresh database on it; SQLite gets a fresh file in the test's directory."""
import json
import os
import re
import subprocess
import unittest
import urllib.error
import urllib.request

import mariadb
from zflytest import BUILD_DIR, ZFLY, ZflyTestCase, free_port, keygen

ZFLY_ADMIN = os.path.join(BUILD_DIR, "zfly-admin")


def manager_ini(cert, database, bind_port, events_port, extra="", log_level="info"):
    return (f"[node]\nname = manager\nlog_level = {log_level}\nhttp = 127.0.0.1:0\n\n"
            f"[bus]\ncert = {cert}\n\n"
            f"[manager]\nbind = tcp://127.0.0.1:{bind_port}\n"
            f"events_bind = tcp://127.0.0.1:{events_port}\napi = 127.0.0.1:0\n"
            f"database = {database}\n{extra}\n")


class Manager:
    """A running manager: its process, API port, admin token, bus endpoints and key."""

    def __init__(self, case, name="manager", extra="", log_level="info"):
        self.case = case
        self.cert, self.pub, self.key = keygen(case.workdir, name)
        self.bind_port, self.events_port = free_port(), free_port()
        self.ini = manager_ini(self.cert, case.database, self.bind_port, self.events_port, extra,
                               log_level)
        self.name = name
        self.config_path = case.path(f"{name}.ini")
        with open(self.config_path, "w") as handle:
            handle.write(self.ini)
        init = subprocess.run([ZFLY, "manager", "init", "-c", self.config_path],
                              capture_output=True, text=True, timeout=60)
        case.assertEqual(init.returncode, 0, init.stderr)
        self.token = init.stdout.strip().splitlines()[-1]
        case.assertTrue(self.token.startswith("zfp_"), init.stdout)
        self.token_file = case.path(f"{name}-admin-token")
        with open(self.token_file, "w") as handle:
            handle.write(self.token + "\n")
        self.process = None
        self.start()

    def start(self):
        self.process = self.case.start(self.name, self.ini)
        line = self.process.log.wait_for(r"manager: started .* api_port=\d+", timeout=30)
        self.api_port = int(re.search(r"api_port=(\d+)", line).group(1))
        self.process.wait_ready()
        return self.process

    def kill(self):
        """SIGKILL: a manager that dies, not one that says goodbye."""
        self.process.process.kill()
        self.process.process.wait()

    def route(self):
        """What a node's [join] manager key says."""
        return (f"tcp://127.0.0.1:{self.bind_port} events=tcp://127.0.0.1:{self.events_port} "
                f"key={self.key}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.api_port}"

    def api(self, method, path, body=None, token=None):
        """(status, parsed JSON or None, headers) of one API call; token None: the admin's,
        "" for none."""
        token = self.token if token is None else token
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None, dict(error.headers)

    def ok(self, method, path, body=None, status=None):
        code, answer, _ = self.api(method, path, body)
        expected = status or {"POST": 201, "DELETE": 204}.get(method, 200)
        self.case.assertEqual(code, expected, f"{method} {path}: {answer}")
        return answer

    def join_token(self, **fields):
        answer = self.ok("POST", "/api/v1/join-tokens", fields)
        return answer["token"]

    def admin(self, *args, token_file=None):
        """Runs zfly-admin against this manager: (exit status, stdout, stderr)."""
        result = subprocess.run([ZFLY_ADMIN, "--server", self.url, "--token-file",
                                 token_file or self.token_file, *args],
                                capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout, result.stderr


def node_ini(case, name, manager, token_file, sections="", join_extra="", log_level="info",
             key_name=None, route=None):
    """A node that joins: its own keypair (node-KEY_NAME.key, KEY_NAME defaulting to the
    name, kept across restarts), the manager's route (or route), a token file, a cache."""
    cert = case.path(f"node-{key_name or name}.key")
    if not os.path.exists(cert):
        cert, _, _ = keygen(case.workdir, f"node-{key_name or name}")
    return (f"[node]\nname = {name}\nlog_level = {log_level}\nhttp = 127.0.0.1:0\n\n"
            f"[bus]\ncert = {cert}\n\n"
            f"[join]\nmanager = {route or manager.route()}\ntoken_file = {token_file}\n"
            f"cache = {case.path(name + '-cluster.json')}\nretry = 100ms\nretry_max = 500ms\n"
            f"timeout = 2s\n{join_extra}\n{sections}")


class ManagerCase(ZflyTestCase):
    """Base of a backend's test case: self.database is a fresh database URL per test."""
    backend = None
    server = None

    @classmethod
    def setUpClass(cls):
        if cls.backend == "mariadb":
            reason = mariadb.available()
            if reason:
                raise unittest.SkipTest(reason)
            cls.server = mariadb.MariaDB()

    @classmethod
    def tearDownClass(cls):
        if cls.server:
            cls.server.stop()
            cls.server = None

    def setUp(self):
        super().setUp()
        if self.backend == "mariadb":
            self.database = self.server.new_database()
        else:
            self.database = f"sqlite:{self.path('manager.db')}"

    def write(self, name, text):
        path = self.path(name)
        with open(path, "w") as handle:
            handle.write(text + "\n")
        return path
