#!/usr/bin/python3
"""Malformed bus input — truncated, trailing bytes, wrong types, missing fields, huge strings,
unknown types, newer versions — is refused with the right error, counted per reason, answered
with an error reply when the sender could be identified, and the actor keeps serving."""
import msgpack

import zflytest
from zflytest import ZflyTestCase

SENDER = "tester@outside"


def envelope(type_="echo.request", body=None, version=1, msg_id=7, sender=SENDER, **extra):
    # Keys in the order zfly writes them, body last: header fields are read before the body.
    value = {"type": type_, "v": version, "id": msg_id, "from": sender, "to": "echo"}
    value.update(extra)
    value["body"] = {"seq": 1, "text": "hi"} if body is None else body
    return value


class MalformedTest(ZflyTestCase):
    def setUp(self):
        super().setUp()
        endpoint = "ipc://" + self.path("echo.sock")
        self.node = self.start("a", f"[node]\nname = a\nhttp = 127.0.0.1:0\n"
                                    f"[echo]\nbind = {endpoint}\n")
        self.node.wait_ready()
        self.bus = zflytest.BusClient(endpoint)

    def tearDown(self):
        self.bus.close()
        super().tearDown()

    def send_raw(self, *frames):
        self.bus.send_raw(*frames)

    def receive(self):
        return self.bus.receive()[0]

    def assert_still_serving(self, seq):
        """A valid request after the bad one gets its reply: the actor kept serving, and any
        error reply for the bad input arrived before it (one DEALER, one ROUTER: in order)."""
        self.send_raw(msgpack.packb(envelope(body={"seq": seq, "text": "ok?"}, msg_id=1000 + seq)))
        while True:
            reply = self.receive()
            if reply["re"] == 1000 + seq:
                self.assertEqual(reply["type"], "echo.reply")
                self.assertEqual(reply["body"]["text"], "ok?")
                return

    def refused(self, reason, type_="unknown"):
        return self.node.metric("zfly_bus_messages_refused_total", actor="echo", type=type_,
                                reason=reason) or 0

    def expect_error_reply(self, frame, code, field, message_part, msg_id=7):
        self.send_raw(frame)
        reply = self.receive()
        self.assertEqual(reply["type"], "error")
        self.assertEqual(reply["re"], msg_id)
        self.assertEqual(reply["to"], SENDER)
        self.assertEqual(reply["body"]["code"], code, reply)
        self.assertEqual(reply["body"]["field"], field, reply)
        self.assertIn(message_part, reply["body"]["message"])

    def test_truncated_envelope(self):
        good = msgpack.packb(envelope())
        for cut in (1, len(good) // 2, len(good) - 1):
            self.send_raw(good[:cut])
        self.assert_still_serving(1)
        self.assertEqual(self.refused("truncated"), 3)

    def test_no_envelope_frame_at_all(self):
        self.send_raw(b"")
        self.assert_still_serving(1)
        self.assertGreaterEqual(self.refused("truncated") + self.refused("invalid"), 1)

    def test_trailing_bytes(self):
        self.send_raw(msgpack.packb(envelope()) + b"\xc0")
        self.assert_still_serving(1)
        self.assertEqual(self.refused("trailing", "echo.request") + self.refused("trailing"), 1)

    def test_envelope_not_a_map(self):
        self.send_raw(msgpack.packb([1, 2, 3]))
        self.assert_still_serving(1)
        self.assertEqual(self.refused("wrong_type"), 1)

    def test_wrong_body_field_type(self):
        self.expect_error_reply(msgpack.packb(envelope(body={"seq": "one"})), "wrong_type",
                                "body.seq", "")
        self.assert_still_serving(2)
        self.assertEqual(self.refused("wrong_type", "echo.request"), 1)

    def test_missing_required_body_field(self):
        self.expect_error_reply(msgpack.packb(envelope(body={"text": "no seq"})), "missing",
                                "body.seq", "")
        self.assert_still_serving(3)
        self.assertEqual(self.refused("missing", "echo.request"), 1)

    def test_missing_envelope_field(self):
        value = envelope()
        del value["type"]
        self.send_raw(msgpack.packb(value))
        self.assert_still_serving(4)
        self.assertEqual(self.refused("missing"), 1)

    def test_oversize_field_is_refused(self):
        self.expect_error_reply(msgpack.packb(envelope(body={"seq": 1, "text": "x" * 70000})),
                                "too_large", "body.text", "")
        self.assert_still_serving(5)

    def test_ten_megabyte_string(self):
        self.send_raw(msgpack.packb(envelope(body={"seq": 1, "text": "x" * (10 << 20)})))
        self.assert_still_serving(6)
        self.assertEqual(self.refused("too_large"), 1)

    def test_unknown_type(self):
        self.expect_error_reply(msgpack.packb(envelope(type_="no.such.type")), "unknown_type",
                                "type", "no.such.type")
        self.assert_still_serving(7)
        self.assertEqual(self.refused("unknown_type"), 1)

    def test_newer_version(self):
        self.expect_error_reply(msgpack.packb(envelope(version=99)), "version", "v", "99")
        self.assert_still_serving(8)

    def test_reply_sent_to_an_inbox(self):
        self.expect_error_reply(msgpack.packb(envelope(re=5)), "invalid", "re", "reply")
        self.assert_still_serving(9)

    def test_unknown_fields_are_accepted(self):
        """Forward compatibility: a newer sender's extra fields are skipped, not refused."""
        self.send_raw(msgpack.packb(envelope(body={"seq": 11, "text": "new", "colour": "red"},
                                             trace="abc")))
        reply = self.receive()
        self.assertEqual(reply["type"], "echo.reply")
        self.assertEqual(reply["body"]["seq"], 11)


if __name__ == "__main__":
    zflytest.main()
