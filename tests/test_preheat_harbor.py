#!/usr/bin/python3
"""Harbor's Dragonfly preheat providers against zfly, request for request.

Harbor's requests are replayed byte for byte on a raw socket, as Go's net/http writes them
(goharbor/harbor src/pkg/p2p/preheat/provider/dragonfly.go and client/http_client.go): the
headers Harbor sets (Accept, Content-Type, Authorization: Bearer <personal access token>),
Go's User-Agent and Accept-Encoding, and the body json.Marshal makes of Harbor's structs (every
field, in declaration order). Each answer is then read the way Go's encoding/json reads it
into Harbor's types: an integer id, RFC 3339 times, lists that are lists (or null) with no null
entry, strings that are strings, an unsigned cluster id. Harbor's job flow is followed as it
runs: /healthy twice, the create, then polls until SUCCESS or FAILURE.

- Current provider (Harbor 2.13 on): a job with Harbor's registry pull token ends SUCCESS with
  every blob of the image among success_tasks, on the seed peer; the same as Harbor 2.12 sends
  it (scope single_peer, no cluster ids) and with Harbor's defaults (scope "", ids null); an
  unknown tag ends FAILURE with the reason in job_states[].error.
- Legacy provider (Harbor 2.8-2.11): /_ping, POST /preheats -> {"ID": "<string>"}, GET
  /preheats/{ID} until SUCCESS.
- Auth: without a token the job routes answer 401, a read-only token 403 on create; /healthy
  and /_ping answer without one.
"""
import datetime
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "registry"))
import preheattest as ph  # noqa: E402
import zflytest  # noqa: E402

REPO = "private/app"


def go_json(value):
    """json.Marshal's text: compact, and <, >, & escaped as \\u003c, \\u003e, \\u0026."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def harbor_request(port, method, path, token, body=None):
    """Go's net/http request bytes for Harbor's provider client."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "User-Agent: Go-http-client/1.1"]
    data = body.encode() if body is not None else b""
    if body is not None:
        lines.append(f"Content-Length: {len(data)}")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    lines += [f"{name}: {headers[name]}" for name in sorted(headers)]  # Header.Write sorts
    lines.append("Accept-Encoding: gzip")  # the transport's, last
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def replay(port, raw):
    """(status, parsed JSON or None) of one raw request."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        status, headers, body, complete = zflytest.recv_http_response(sock)
    assert complete, "the answer was cut short"
    return status, json.loads(body) if body else None


class GoTypeError(AssertionError):
    pass


def go_string(value, where):
    if value is not None and not isinstance(value, str):
        raise GoTypeError(f"{where}: {value!r} is not a string")


def go_time(value, where):
    if value is None:
        return
    go_string(value, where)
    try:  # Go's time.Time: RFC 3339, Z or an offset
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GoTypeError(f"{where}: {value!r} is not RFC 3339")
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value):
        raise GoTypeError(f"{where}: {value!r} is not RFC 3339")


def go_list(value, where):
    if value is None:
        return []
    if not isinstance(value, list):
        raise GoTypeError(f"{where}: {value!r} is not a list")
    return value


def go_task(task, where, fields):
    if task is None:  # a *struct entry: Harbor dereferences it and its job crashes
        raise GoTypeError(f"{where}: a null entry")
    if not isinstance(task, dict):
        raise GoTypeError(f"{where}: not an object")
    for name in fields:
        go_string(task.get(name), f"{where}.{name}")


def go_parse_job(answer):
    """dragonflyJobResponse as Go reads it; raises GoTypeError where Go's Unmarshal fails."""
    if not isinstance(answer, dict):
        raise GoTypeError("not an object")
    if not isinstance(answer.get("id"), int) or isinstance(answer.get("id"), bool):
        raise GoTypeError(f"id: {answer.get('id')!r} is not an integer")
    go_time(answer.get("created_at"), "created_at")
    go_time(answer.get("updated_at"), "updated_at")
    go_string(answer.get("state"), "state")
    result = answer.get("result")
    if result is not None and not isinstance(result, dict):
        raise GoTypeError("result: not an object")
    for index, job_state in enumerate(go_list((result or {}).get("job_states"), "job_states")):
        if not isinstance(job_state, dict):
            raise GoTypeError(f"job_states[{index}]: not an object")
        go_string(job_state.get("error"), f"job_states[{index}].error")
        for position, item in enumerate(go_list(job_state.get("results"), "results")):
            where = f"job_states[{index}].results[{position}]"
            if not isinstance(item, dict):
                raise GoTypeError(f"{where}: not an object")
            cluster = item.get("scheduler_cluster_id")
            if cluster is not None and (not isinstance(cluster, int) or cluster < 0):
                raise GoTypeError(f"{where}.scheduler_cluster_id: {cluster!r} is not a uint")
            for task_index, task in enumerate(go_list(item.get("success_tasks"), where)):
                go_task(task, f"{where}.success_tasks[{task_index}]", ("url", "hostname", "ip"))
            for task_index, task in enumerate(go_list(item.get("failure_tasks"), where)):
                go_task(task, f"{where}.failure_tasks[{task_index}]",
                        ("url", "hostname", "ip", "description"))
    return answer


def go_field(answer, name):
    """encoding/json matches keys case-insensitively when no exact match exists."""
    if name in answer:
        return answer[name]
    for key, value in answer.items():
        if key.lower() == name.lower():
            return value
    return None


class HarborTest(ph.RegistryCase):
    seeds = 1

    @classmethod
    def push_images(cls):
        cls.images, cls.digests = {}, {}
        for name in ("harbor", "harbor-212", "harbor-legacy"):
            layout = ph.build_multiarch(cls.shared, name, layers=1, layer_bytes=256 << 10)
            ph.push_multiarch(layout, name, cls.registry, REPO)
            cls.images[name] = ph.image_blobs(layout, name)["linux/amd64"]
            cls.digests[name] = ph.index_digest(layout, name)

    def setUp(self):
        super().setUp()
        self.port = self.cluster.manager.api_port
        self.pat = self.cluster.manager.token

    def manifest_url(self, tag):
        return f"http://{self.registry.address}/v2/{REPO}/manifests/{tag}"

    def harbor_create(self, tag, scope="single_seed_peer", clusters=(1,), harbor_212=False):
        """Harbor's POST /oapi/v1/jobs; returns the parsed answer."""
        pull = ph.pull_token(self.token, REPO)
        # dragonflyCreateJobRequest: its fields, in order, always present (2.12: no ids)
        body = '{"type":"preheat","args":' + go_json({
            "type": "image", "url": self.manifest_url(tag), "tag": "",
            "filtered_query_params": "", "headers": {"Authorization": f"Bearer {pull}"},
            "scope": scope, "concurrent_count": 0, "timeout": 0})
        if not harbor_212:
            body += ',"scheduler_cluster_ids":' + go_json(list(clusters) if clusters else None)
        body += "}"
        for _ in range(2):  # Harbor checks health twice per job
            status, _ = replay(self.port, harbor_request(self.port, "GET", "/healthy", self.pat))
            self.assertTrue(200 <= status < 300, status)
        status, answer = replay(self.port, harbor_request(self.port, "POST", "/oapi/v1/jobs",
                                                          self.pat, body))
        self.assertTrue(200 <= status < 300 and status != 208, (status, answer))
        return go_parse_job(answer)

    def harbor_poll(self, job_id, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            status, answer = replay(self.port, harbor_request(
                self.port, "GET", f"/oapi/v1/jobs/{job_id}", self.pat))
            self.assertEqual(status, 200, answer)
            answer = go_parse_job(answer)
            self.assertIn(answer["state"], ("PENDING", "SUCCESS", "FAILURE"))
            if answer["state"] != "PENDING":
                return answer
            self.assertLess(time.monotonic(), deadline, "the job stays PENDING")
            time.sleep(0.2)  # Harbor polls every 10 s; the test, faster

    def check_success(self, answer, tag):
        self.assertEqual(answer["state"], "SUCCESS", answer)
        states = answer["result"]["job_states"]
        tasks = [task for state in states for result in state["results"]
                 for task in result["success_tasks"]]
        failures = [task for state in states for result in state["results"]
                    for task in result["failure_tasks"]]
        self.assertEqual(failures, [])
        self.assertEqual({task["url"].rsplit("/", 1)[1] for task in tasks}, set(self.images[tag]))
        self.assertEqual({task["hostname"] for task in tasks}, {"seed-1"})
        self.assertEqual({task["ip"] for task in tasks}, {"127.0.0.1"})
        self.assertEqual({result["scheduler_cluster_id"] for state in states
                          for result in state["results"]}, {1})

    def test_current_provider(self):
        start = self.registry.mark()
        created = self.harbor_create("harbor")
        self.assertIsInstance(created["id"], int)
        self.check_success(self.harbor_poll(created["id"]), "harbor")
        served = ph.registry_blob_bodies(self.registry, start)
        self.assertEqual(set(served), set(self.images["harbor"]))
        # Harbor 2.12's body, and Harbor's defaults
        self.check_success(self.harbor_poll(self.harbor_create(
            "harbor-212", scope="single_peer", harbor_212=True)["id"]), "harbor-212")
        self.check_success(self.harbor_poll(self.harbor_create(
            "harbor", scope="", clusters=None)["id"]), "harbor")
        # An unknown tag: FAILURE, and the reason where Harbor reads it
        failed = self.harbor_poll(self.harbor_create("no-such-tag")["id"])
        self.assertEqual(failed["state"], "FAILURE")
        errors = [state["error"] for state in failed["result"]["job_states"]]
        self.assertTrue(errors and all(errors), failed)
        self.assertIn("not found", " ".join(errors))

    def test_legacy_provider(self):
        status, _ = replay(self.port, harbor_request(self.port, "GET", "/_ping", self.pat))
        self.assertEqual(status, 200)
        pull = ph.pull_token(self.token, REPO)
        # PreheatImage: type, url, headers, image and tag (left out when empty), digest
        body = go_json({"type": "image", "url": self.manifest_url("harbor-legacy"),
                        "headers": {"Authorization": f"Bearer {pull}"},
                        "image": REPO, "tag": "harbor-legacy",
                        "digest": self.digests["harbor-legacy"]})
        status, answer = replay(self.port, harbor_request(self.port, "POST", "/preheats",
                                                          self.pat, body))
        self.assertTrue(200 <= status < 300 and status != 208, (status, answer))
        task_id = go_field(answer, "ID")
        self.assertIsInstance(task_id, str)  # a number fails Harbor's decoder
        deadline = time.monotonic() + 60
        while True:
            status, info = replay(self.port, harbor_request(self.port, "GET",
                                                            f"/preheats/{task_id}", self.pat))
            self.assertEqual(status, 200, info)
            for name in ("ID", "startTime", "finishTime", "errorMsg", "Status"):
                self.assertIsInstance(go_field(info, name), str, name)
            if go_field(info, "Status") in ("SUCCESS", "FAILED"):
                break
            self.assertIn(go_field(info, "Status"), ("WAITING", "RUNNING"))
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)
        self.assertEqual(go_field(info, "Status"), "SUCCESS", info)
        self.assertEqual(go_field(info, "ID"), task_id)
        job = self.cluster.job(int(task_id))
        self.assertEqual({blob["digest"] for blob in job["blobs"]},
                         set(self.images["harbor-legacy"]))

    def test_auth(self):
        body = '{"type":"preheat","args":{"type":"image","url":"' + self.manifest_url("x") + '"}}'
        for method, path, data in (("POST", "/oapi/v1/jobs", body), ("GET", "/oapi/v1/jobs/1", None),
                                   ("POST", "/preheats", body), ("GET", "/preheats/1", None)):
            status, _ = replay(self.port, harbor_request(self.port, method, path, None, data))
            self.assertEqual(status, 401, path)
        for path in ("/healthy", "/_ping"):
            status, _ = replay(self.port, harbor_request(self.port, "GET", path, None))
            self.assertEqual(status, 200, path)
        reader = self.cluster.manager.ok("POST", "/api/v1/personal-access-tokens", {"name": "harbor-ro"})["token"]
        status, answer = replay(self.port, harbor_request(self.port, "POST", "/oapi/v1/jobs",
                                                          reader, body))
        self.assertEqual(status, 403, answer)


if __name__ == "__main__":
    zflytest.main()
