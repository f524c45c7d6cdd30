#!/usr/bin/python3
"""Nodes that join the manager, with real processes, on SQLite and on MariaDB.

- A node whose INI names only the manager and a token file joins; it shows in the host list
  with the key that authenticated it; refreshes are recognised by the key.
- Bad credentials: no token, an unknown token, a used-up, a revoked and an expired token, a
  name another host holds: refused with a clear log line on both sides and counted.
- Members and revocation: a node admits the keys of its cluster's members (and no other);
  revoking a host makes every member refuse it within 5 s, on its open connection and on new
  ones, and the manager refuses its next join.
- Schedulers register and keep alive: a node's view follows a scheduler that appears and one
  that dies (marked inactive after keepalive_timeout), without restarts; a wildcard bind is
  announced with the address the manager saw. One stopped cleanly tells the manager as it
  stops (manager.leave): inactive at once, and the nodes' views follow.
- A missed change: a node whose events connection was down while another node joined learns
  the newcomer from the manager's announced members version, not at its refresh.
- Manager outage: a node restarted while the manager is down works from its cached view; a
  node started while it is down joins when it comes back."""
import calendar
import json
import re
import time

import managertest
from managertest import node_ini
from zflytest import (BusClient, NoReply, TcpRelay, free_port, keygen, main, read_cert,
                      wait_until_true)

EXPIRY_DEADLINE = 5.0  # seconds a revocation may take to reach every member


class CurveClient(BusClient):
    """The test speaking as a node: a bus client with a node's keypair, to an echo actor."""

    def __init__(self, cert, server_key, port):
        public, secret = read_cert(cert)
        super().__init__(f"tcp://127.0.0.1:{port}", curve=(public, secret, server_key.encode()))

    def echo(self, timeout_ms=1000):
        """The reply's type ("echo.reply" or "error") and body, or None without one."""
        try:
            reply, _ = self.request("echo.request", {"seq": 1, "text": "hi"},
                                    timeout=timeout_ms / 1000)
        except NoReply:
            return None
        return reply["type"], reply["body"]


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


class JoinTests:
    def node(self, manager, name, token_file, sections="", join_extra="", key_name=None,
             route=None):
        process = self.start(key_name or name,
                             node_ini(self, name, manager, token_file, sections, join_extra,
                                      key_name=key_name, route=route))
        process.wait_ready()
        return process

    def test_join_and_refresh(self):
        manager = managertest.Manager(self, extra="refresh = 300ms")
        token = self.write("token", manager.join_token(name="edge"))
        node = self.node(manager, "edge-1", token, join_extra="idc = fra1\nlabels = rack=7")
        node.log.wait_for(r"join: joined cluster=default id=1 host=1 address=127\.0\.0\.1")
        hosts = manager.ok("GET", "/api/v1/hosts")["items"]
        self.assertEqual(len(hosts), 1)
        host = hosts[0]
        public, _ = read_cert(self.path("node-edge-1.key"))
        self.assertEqual(host["public_key"], public.decode())  # the key of the connection
        self.assertEqual((host["name"], host["idc"], host["labels"]), ("edge-1", "fra1",
                                                                      {"rack": "7"}))
        # Refreshes are recognised by the key: the token is spent once.
        wait_until(lambda: (manager.process.metric("zfly_manager_joins_total",
                                                    result="refreshed") or 0) >= 2, 10,
                   "two refreshes")
        tokens = manager.ok("GET", "/api/v1/join-tokens")["items"]
        self.assertEqual(tokens[0]["use_count"], 1)
        with open(self.path("edge-1-cluster.json")) as handle:
            cache = json.load(handle)
        self.assertEqual(cache["cluster"], "default")
        self.assertIn(public.decode(), cache["members"])

    def test_bad_credentials(self):
        manager = managertest.Manager(self)
        one_use = manager.join_token(max_uses=1)
        revoked = manager.ok("POST", "/api/v1/join-tokens", {})
        manager.ok("DELETE", f"/api/v1/join-tokens/{revoked['id']}")
        expiring = manager.ok("POST", "/api/v1/join-tokens", {"expires_in": "1s"})
        first = self.node(manager, "first", self.write("one-use", one_use))
        first.log.wait_for(r"join: joined cluster=default")
        cases = [("none", self.path("no-such-file"), "no join token given"),
                 ("wrong", self.write("wrong", "zfj_" + "0" * 48), "unknown token"),
                 ("reused", self.path("one-use"), "token used up"),
                 ("revoked", self.write("revoked", revoked["token"]), "token revoked")]
        for name, path, why in cases:
            node = self.node(manager, name, path)
            node.log.wait_for(rf"join: join refused by the manager: join refused: {why}")
            manager.process.log.wait_for(rf"manager: join refused name={name} .*: {why}")
        # Expired: wait for the clock to pass expires_at, then try.
        expires = calendar.timegm(time.strptime(expiring["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
        wait_until(lambda: time.time() > expires + 1, 5, "token expiry")
        late = self.node(manager, "late", self.write("expiring", expiring["token"]))
        late.log.wait_for(r"join refused by the manager: join refused: token expired")
        # The same name from another key.
        twin = self.node(manager, "first", self.write("fresh", manager.join_token()),
                         key_name="twin")
        twin.log.wait_for(r"join refused by the manager: another active host is named 'first'")
        self.assertGreaterEqual(manager.process.metric("zfly_manager_joins_total",
                                                       result="token_refused"), 5)
        self.assertGreaterEqual(manager.process.metric("zfly_manager_joins_total",
                                                       result="name_taken"), 1)
        self.assertGreaterEqual(late.metric("zfly_join_attempts_total", result="token_refused"), 1)
        self.assertEqual(manager.ok("GET", "/api/v1/hosts")["total"], 1)

    def test_members_and_revocation(self):
        manager = managertest.Manager(self, extra="refresh = 500ms")
        token = self.write("token", manager.join_token())
        echo_port = free_port()
        a = self.node(manager, "a", token, f"[echo]\nbind = tcp://127.0.0.1:{echo_port}\n")
        b = self.node(manager, "b", token)
        a.log.wait_for(r"join: joined")
        b.log.wait_for(r"join: joined")
        # A learns B's key: from its join reply, or from the event when B joined later. The
        # manager's own key is a member too (preheat workers run with it).
        wait_until(lambda: a.metric("zfly_join_members") == 3, 10, "a sees two members and the "
                   "manager")
        a_key = read_cert(self.path("node-a.key"))[0].decode()
        clients = []
        try:
            as_b = CurveClient(self.path("node-b.key"), a_key, echo_port)
            clients.append(as_b)
            self.assertEqual(as_b.echo(timeout_ms=5000)[0], "echo.reply")
            stranger_cert, _, stranger_key = keygen(self.workdir, "stranger")
            stranger = CurveClient(stranger_cert, a_key, echo_port)
            clients.append(stranger)
            self.assertIsNone(stranger.echo(timeout_ms=500))
            a.log.wait_for(rf"auth: refused CURVE client key={re.escape(stranger_key)}")

            b_id = [h["id"] for h in manager.ok("GET", "/api/v1/hosts")["items"]
                    if h["name"] == "b"][0]
            b_key = read_cert(self.path("node-b.key"))[0].decode()
            revoked_at = time.monotonic()
            manager.ok("DELETE", f"/api/v1/hosts/{b_id}", status=200)
            a.log.wait_for(rf"join: member key={re.escape(b_key)} revoked", timeout=EXPIRY_DEADLINE)
            # The open connection: refused now.
            answer = as_b.echo(timeout_ms=2000)
            self.assertEqual(answer[0], "error")
            self.assertEqual(answer[1]["code"], "refused")
            self.assertIn("revoked by the manager", answer[1]["message"])
            # A new connection: refused at the handshake.
            again = CurveClient(self.path("node-b.key"), a_key, echo_port)
            clients.append(again)
            self.assertIsNone(again.echo(timeout_ms=500))
            a.log.wait_for(rf"auth: refused CURVE client key={re.escape(b_key)} .*revoked")
            self.assertLess(time.monotonic() - revoked_at, EXPIRY_DEADLINE)
            # B's next refresh is refused, with what to do.
            b.log.wait_for(r"join refused by the manager: this node's key .* was revoked",
                           timeout=10)
            host = manager.ok("GET", f"/api/v1/hosts/{b_id}")
            self.assertEqual(host["state"], "revoked")
        finally:
            for client in clients:
                client.close()

    def test_missed_change_caught_up(self):
        # A refresh of an hour: only the announced version can tell A about B in this test.
        manager = managertest.Manager(self, extra="refresh = 1h")
        token = self.write("token", manager.join_token())
        relay = TcpRelay(manager.events_port)
        self.addCleanup(relay.close)
        route = manager.route().replace(f"events=tcp://127.0.0.1:{manager.events_port}",
                                        f"events=tcp://127.0.0.1:{relay.port}")
        echo_port = free_port()
        a = self.node(manager, "a", token, f"[echo]\nbind = tcp://127.0.0.1:{echo_port}\n",
                      route=route)
        a.log.wait_for(r"join: joined")
        self.assertEqual(a.metric("zfly_join_members"), 2)  # itself and the manager
        # A's events connection goes down; B joins meanwhile: its manager.changed reaches
        # every subscriber but A.
        relay.cut()
        b = self.node(manager, "b", token)
        b.log.wait_for(r"join: joined")
        b_key = read_cert(self.path("node-b.key"))[0].decode()
        manager.process.log.wait_for(rf"manager: changed cluster=1 .*added={re.escape(b_key)}")
        self.assertEqual(a.metric("zfly_join_members"), 2)
        relay.restore()
        wait_until(lambda: a.metric("zfly_join_members") == 3, 10,
                   "a admits b once its events connection is back")
        self.assertGreaterEqual(a.metric("zfly_join_resyncs_total"), 1)
        a.log.wait_for(r"join: members version \d+ announced, \d+ held: asking again")
        as_b = CurveClient(self.path("node-b.key"), read_cert(self.path("node-a.key"))[0].decode(),
                           echo_port)
        try:
            self.assertEqual(as_b.echo(timeout_ms=5000)[0], "echo.reply")
        finally:
            as_b.close()

    def test_schedulers_register_and_expire(self):
        manager = managertest.Manager(
            self, extra="keepalive = 200ms\nkeepalive_timeout = 1s\nrefresh = 30s")
        token = self.write("token", manager.join_token())
        edge = self.node(manager, "edge", token)
        edge.log.wait_for(r"join: view cluster=default schedulers=0")
        port = free_port()
        scheduler = self.node(manager, "sched-1", token,
                              f"[scheduler]\nbind = tcp://*:{port}\n")
        scheduler.log.wait_for(r"join: joined")
        # The edge follows at once (manager.changed), not at its 30 s refresh.
        edge.log.wait_for(r"join: view cluster=default schedulers=1", timeout=5)
        listed = manager.ok("GET", "/api/v1/schedulers")["items"]
        self.assertEqual(len(listed), 1)
        self.assertEqual(listed[0]["endpoint"], f"tcp://127.0.0.1:{port}")
        self.assertEqual(listed[0]["state"], "active")
        self.assertTrue(manager.ok("GET", "/api/v1/hosts")["items"][1]["is_scheduler"])
        # The view is logged as it is applied, then saved: wait for the file to follow.
        def cached_schedulers():
            with open(self.path("edge-cluster.json")) as handle:
                return [entry["name"] for entry in json.load(handle)["schedulers"]] or None
        self.assertEqual(wait_until_true(cached_schedulers, "the edge's cache to list sched-1",
                                         timeout=5), ["sched-1"])
        # Killed: no more keep-alives; inactive after the timeout, and the edge drops it.
        scheduler.process.kill()
        scheduler.process.wait()
        manager.process.log.wait_for(r"manager: expired schedulers or seed peers cluster=1",
                                     timeout=10)
        edge.log.wait_for(r"join: view cluster=default schedulers=0", timeout=5)
        self.assertEqual(manager.ok("GET", "/api/v1/schedulers")["items"][0]["state"],
                         "inactive")

    def test_a_scheduler_stopped_cleanly_leaves_at_once(self):
        # The shipped keep-alive timeout (15 s): a stopped scheduler is not left to expire.
        manager = managertest.Manager(self, extra="refresh = 30s")
        token = self.write("token", manager.join_token())
        edge = self.node(manager, "edge", token)
        scheduler = self.node(manager, "sched-1", token,
                              f"[scheduler]\nbind = tcp://*:{free_port()}\n")
        edge.log.wait_for(r"join: view cluster=default schedulers=1", timeout=10)
        scheduler.stop()  # SIGTERM, as systemctl stop: returns once the process has exited
        # Before it exited, it told the manager: the role ended then, not 15 s later.
        self.assertEqual(manager.ok("GET", "/api/v1/schedulers")["items"][0]["state"],
                         "inactive")
        manager.process.log.wait_for(r"manager: left name=sched-1 key=\S+ cluster=1 roles=1")
        edge.log.wait_for(r"join: view cluster=default schedulers=0", timeout=5)
        self.assertNotIn("expired schedulers", manager.process.log.text())
        # An edge without a role sends nothing when it stops: nothing in the view changes.
        edge.stop()
        self.assertEqual(len(re.findall(r"manager: left ", manager.process.log.text())), 1)

    def test_manager_outage(self):
        manager = managertest.Manager(self, extra="refresh = 300ms")
        token = self.write("token", manager.join_token())
        old = self.node(manager, "old", token)
        old.log.wait_for(r"join: joined")
        manager.kill()
        old.log.wait_for(r"join: manager unreachable .*working from the last view", timeout=10)
        # Restarted while the manager is down: the cached view, at once.
        old.stop()
        old.close()
        self.processes.remove(old)
        restarted = self.node(manager, "old", token)
        # members: itself and the manager's key
        restarted.log.wait_for(r"join: view cluster=default .*members=2 .*\(from the cache\)")
        self.assertEqual(restarted.metric("zfly_join_members"), 2)
        # A new node while the manager is down: it waits, and joins when it returns.
        newcomer = self.node(manager, "new", token)
        newcomer.log.wait_for(r"join: manager unreachable")
        manager.start()
        newcomer.log.wait_for(r"join: joined cluster=default", timeout=15)
        restarted.log.wait_for(r"join: joined cluster=default", timeout=15)
        names = sorted(h["name"] for h in manager.ok("GET", "/api/v1/hosts")["items"])
        self.assertEqual(names, ["new", "old"])


class JoinSqlite(JoinTests, managertest.ManagerCase):
    backend = "sqlite"


class JoinMariaDB(JoinTests, managertest.ManagerCase):
    backend = "mariadb"


if __name__ == "__main__":
    main()
