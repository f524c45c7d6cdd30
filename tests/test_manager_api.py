#!/usr/bin/python3
"""The manager's REST API and zfly-admin, against a real manager process, on SQLite and on
MariaDB: bearer tokens (401 without or with a wrong token, 403 for a read-only token that
writes), clusters with scopes (CRUD, validation naming the field, conflicts), join tokens and
personal access tokens (secret shown once, revocation), paged lists, the OpenAPI document (each
route it lists answers), and the command line's tables, JSON and exit codes."""
import json
import subprocess
import unittest

import managertest
from zflytest import free_port, main


class ApiTests:
    def test_tokens_and_roles(self):
        manager = managertest.Manager(self)
        status, body, headers = manager.api("GET", "/api/v1/clusters", token="")
        self.assertEqual(status, 401)
        self.assertEqual(body["code"], "unauthorized")
        self.assertIn("Bearer", headers.get("WWW-Authenticate", ""))
        self.assertIn("zfly manager init", body["message"])
        status, body, _ = manager.api("GET", "/api/v1/clusters", token="zfp_" + "0" * 48)
        self.assertEqual(status, 401)
        self.assertIn("not valid", body["message"])

        # A read-only user: reads work, writes are 403, and it cannot mint a write token.
        user = manager.ok("POST", "/api/v1/users", {"name": "viewer", "role": "read-only"})
        self.assertEqual(user["role"], "read-only")
        status, body, _ = manager.api("POST", "/api/v1/personal-access-tokens",
                                      {"user_id": user["id"], "write": True})
        self.assertEqual(status, 400)
        self.assertIn("read-only", body["message"])
        created = manager.ok("POST", "/api/v1/personal-access-tokens",
                             {"user_id": user["id"], "name": "ci", "expires_in": "1h"})
        viewer = created["token"]
        self.assertTrue(viewer.startswith("zfp_"))
        self.assertEqual(created["scopes"], "read")
        status, body, _ = manager.api("GET", "/api/v1/clusters", token=viewer)
        self.assertEqual(status, 200)
        self.assertEqual(body["items"][0]["name"], "default")
        status, body, _ = manager.api("POST", "/api/v1/clusters", {"name": "x"}, token=viewer)
        self.assertEqual(status, 403)
        self.assertEqual(body["code"], "forbidden")
        # An admin's token without write scope is read-only too.
        admin_id = [u for u in manager.ok("GET", "/api/v1/users")["items"]
                    if u["name"] == "admin"][0]["id"]
        reader = manager.ok("POST", "/api/v1/personal-access-tokens",
                            {"user_id": admin_id, "write": False})["token"]
        self.assertEqual(manager.api("DELETE", "/api/v1/hosts/1", token=reader)[0], 403)
        # Lists show prefixes, never secrets; a revoked token stops working.
        tokens = manager.ok("GET", "/api/v1/personal-access-tokens")["items"]
        self.assertNotIn(viewer, json.dumps(tokens))
        self.assertIn(viewer[:12], [t["prefix"] for t in tokens])
        manager.ok("DELETE", f"/api/v1/personal-access-tokens/{created['id']}")
        self.assertEqual(manager.api("GET", "/api/v1/clusters", token=viewer)[0], 401)
        # The last admin cannot be deleted.
        status, body, _ = manager.api("DELETE", f"/api/v1/users/{admin_id}")
        self.assertEqual(status, 409)
        self.assertIn("last administrator", body["message"])
        manager.process.log.wait_for(r"api: POST /api/v1/clusters 403 .*principal=viewer")

    def test_clusters(self):
        manager = managertest.Manager(self)
        cluster = manager.ok("POST", "/api/v1/clusters", {
            "name": "eu", "description": "Europe",
            "scopes": {"idc": "fra1|fra2", "location": "eu|de", "cidrs": ["10.1.0.0/16"],
                       "hostnames": ["^eu-"]},
            "client_config": {"refresh": "30s"}})
        self.assertEqual(cluster["scopes"]["cidrs"], ["10.1.0.0/16"])
        self.assertEqual(cluster["client_config"], {"refresh": "30s"})
        self.assertFalse(cluster["is_default"])
        path = f"/api/v1/clusters/{cluster['id']}"
        self.assertEqual(manager.ok("GET", path)["scopes"]["idc"], "fra1|fra2")
        changed = manager.ok("PATCH", path, {"scopes": {"hostnames": ["^eu-", "^de-"]},
                                             "is_default": True})
        self.assertEqual(changed["scopes"]["hostnames"], ["^eu-", "^de-"])
        self.assertEqual(changed["scopes"]["cidrs"], ["10.1.0.0/16"])  # untouched
        self.assertTrue(changed["is_default"])
        clusters = manager.ok("GET", "/api/v1/clusters")["items"]
        self.assertEqual([c["name"] for c in clusters if c["is_default"]], ["eu"])

        # Bad input names the field; nothing is written.
        for body, words in [
                ({"name": "x", "scopes": {"cidrs": ["10.0.0/8"]}}, "scopes.cidrs[0]"),
                ({"name": "x", "scopes": {"hostnames": ["eu-("]}}, "scopes.hostnames[0]"),
                # glibc's regcomp needs gigabytes for this one: refused before it compiles
                ({"name": "x", "scopes": {"hostnames": ["^u-" + "+" * 120]}},
                 "is not a regex: regular expression repeats a repetition"),
                ({"name": "x", "scopes": {"zone": "a"}}, "scopes.zone: unknown"),
                ({"name": "x", "colour": "red"}, "colour: unknown field"),
                ({"name": ""}, "name: must not be empty"),
                ({"description": "no name"}, "name: required"),
                ({"name": "x", "client_config": [1]}, "client_config: must be an object")]:
            status, answer, _ = manager.api("POST", "/api/v1/clusters", body)
            self.assertEqual(status, 400, body)
            self.assertEqual(answer["code"], "invalid")
            self.assertIn(words, answer["message"])
        status, answer, _ = manager.api("POST", "/api/v1/clusters", {"name": "eu"})
        self.assertEqual(status, 409)
        self.assertIn("already exists", answer["message"])
        self.assertEqual(manager.ok("GET", "/api/v1/clusters")["total"], 2)

        # The default cluster cannot be deleted or un-defaulted; an empty one can go.
        status, answer, _ = manager.api("DELETE", path)
        self.assertEqual(status, 409)
        status, answer, _ = manager.api("PATCH", path, {"is_default": False})
        self.assertEqual(status, 400)
        manager.ok("PATCH", "/api/v1/clusters/1", {"is_default": True})
        manager.ok("DELETE", path)
        self.assertEqual(manager.api("GET", path)[0], 404)
        self.assertEqual(manager.api("GET", "/api/v1/clusters/abc")[0], 404)

    def test_join_tokens_and_paging(self):
        manager = managertest.Manager(self)
        tokens = [manager.ok("POST", "/api/v1/join-tokens", {"name": f"t{i}", "max_uses": i + 1})
                  for i in range(7)]
        self.assertTrue(all(t["token"].startswith("zfj_") for t in tokens))
        status, page, headers = manager.api("GET", "/api/v1/join-tokens?page=2&per_page=3")
        self.assertEqual(status, 200)
        self.assertEqual((page["page"], page["per_page"], page["total"]), (2, 3, 7))
        self.assertEqual([t["name"] for t in page["items"]], ["t3", "t4", "t5"])
        self.assertEqual(headers.get("X-Total-Count"), "7")
        self.assertNotIn(tokens[3]["token"], json.dumps(page))
        self.assertEqual(manager.api("GET", "/api/v1/join-tokens?per_page=0")[0], 400)
        self.assertEqual(manager.api("GET", "/api/v1/join-tokens?page=x")[0], 400)
        for body, words in [({"expires_in": "soon"}, "expires_in"),
                            ({"max_uses": -1}, "max_uses"),
                            ({"cluster_id": 99}, "no cluster 99")]:
            status, answer, _ = manager.api("POST", "/api/v1/join-tokens", body)
            self.assertEqual(status, 400, body)
            self.assertIn(words, answer["message"])
        manager.ok("DELETE", f"/api/v1/join-tokens/{tokens[0]['id']}")
        revoked = [t for t in manager.ok("GET", "/api/v1/join-tokens")["items"]
                   if t["id"] == tokens[0]["id"]][0]
        self.assertEqual(revoked["state"], "revoked")
        self.assertEqual(manager.api("DELETE", "/api/v1/join-tokens/999")[0], 404)

    def test_openapi_lists_every_route(self):
        manager = managertest.Manager(self)
        status, document, _ = manager.api("GET", "/api/v1/openapi.json", token="")
        self.assertEqual(status, 200)
        self.assertEqual(document["openapi"], "3.0.3")
        self.assertGreaterEqual(len(document["paths"]), 10)
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                concrete = path.replace("{id}", "999999")
                status, answer, _ = manager.api(method.upper(), concrete, {} if method in (
                    "post", "patch") else None)
                # Exists and is routed: never 404 for the collection, never 405.
                self.assertNotEqual(status, 405, f"{method} {path}")
                if "{id}" not in path:
                    self.assertNotEqual(status, 404, f"{method} {path}: {answer}")
                self.assertIn(operation["x-zfly-access"], ("read", "write"))
        status, answer, headers = manager.api("PUT", "/api/v1/clusters")
        self.assertEqual(status, 405)
        self.assertIn("GET", headers.get("Allow", ""))
        status, answer, _ = manager.api("GET", "/api/v1/nothing")
        self.assertEqual((status, answer["code"]), (404, "not_found"))

    def test_command_line(self):
        manager = managertest.Manager(self)
        code, out, err = manager.admin("token", "create", "--name", "rack-7", "--expires", "2h",
                                       "--max-uses", "5")
        self.assertEqual(code, 0, err)
        self.assertRegex(out.strip(), r"^zfj_[0-9a-f]{48}$")  # alone: `> token-file` works
        code, out, err = manager.admin("token", "list")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.splitlines()[0].split()[:3], ["ID", "NAME", "PREFIX"])
        self.assertIn("rack-7", out)
        code, out, err = manager.admin("--json", "cluster", "list")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["items"][0]["name"], "default")
        code, out, err = manager.admin("cluster", "create", "asia", "--cidr", "10.9.0.0/16",
                                       "--hostname", "^as-", "--idc", "sin1",
                                       "--config", '{"x": 1}')
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"name\s+asia")
        code, out, err = manager.admin("cluster", "create", "bad", "--cidr", "10.9/16")
        self.assertEqual(code, 6)
        self.assertIn("not a CIDR", err)
        code, _, err = manager.admin("host", "get", "42")
        self.assertEqual(code, 5)
        self.assertIn("no host 42", err)
        code, _, err = manager.admin("host", "list", token_file=self.write("none", "zfp_x"))
        self.assertEqual(code, 4)
        code, _, _ = manager.admin("frobnicate", "now")
        self.assertEqual(code, 2)
        result = subprocess.run([managertest.ZFLY_ADMIN, "--server",
                                 f"http://127.0.0.1:{free_port()}", "--token-file",
                                 manager.token_file, "host", "list"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 3)
        self.assertIn("cannot reach the manager", result.stderr)
        code, out, _ = manager.admin("--help")
        self.assertEqual(code, 0)
        self.assertIn("Exit status", out)


class ApiSqlite(ApiTests, managertest.ManagerCase):
    backend = "sqlite"


class ApiMariaDB(ApiTests, managertest.ManagerCase):
    backend = "mariadb"


if __name__ == "__main__":
    main()
