#!/usr/bin/env python3
"""zf_golden.py — keeps schemas/golden/TYPE.golden, the exact bytes of every message type.

A golden file pins the wire format of one message type so that a change to the encoder, the
envelope or a schema that alters bytes on the wire cannot pass unnoticed:

    # golden encoding of echo.request version 1: regenerate with tools/zf_golden.py --write
    envelope: {"id": 1, "from": "golden", "to": "echo"}
    json: {"seq": 7, "text": "hello", "fail": false}
    hex: 87a474797065...

"envelope" holds the header fields (id, from, optional to and re), "json" the body (bin values
as hex strings), "hex" the whole envelope frame. tests/golden_check.c (ctest unit.golden)
decodes every hex line with the C decoder, compares the body with the json line, re-encodes
and requires identical bytes, and fails when a message type has no golden file.

This script is a second, independent msgpack encoder (Python stdlib only) that follows the
choices of msgpack-c: integers in their shortest form, every f64 as float64, str8 for strings
of 32..255 bytes. That the two agree is the point of the check.

Usage:
    tools/zf_golden.py            check that every golden file matches its json (exit 1 if not)
    tools/zf_golden.py --write    after a deliberate wire change or a new message type:
                                  re-encodes every file from its envelope and json lines
                                  (fields added to a schema get their defaults), and creates
                                  a file with sample values for each type that has none. Edit
                                  the json line of a new file to something meaningful and run
                                  --write again. Review the diff before committing it.
    tools/zf_golden.py --seeds DIR
                                  writes fuzz seeds: DIR/envelope/*.bin (whole frames),
                                  DIR/schema/*.bin (selftest.sample bodies) and DIR/bus.dict.
"""
import argparse
import glob
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zf_schemagen  # noqa: E402  (the parser, shared so both read schemas the same way)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ENVELOPE = {"id": 1, "from": "golden", "to": "peer"}
SEED_TYPE = "selftest.sample"


class GoldenError(Exception):
    pass


# ---- msgpack, the msgpack-c way -----------------------------------------------------------------

def pack_uint(number):
    if number < 0x80:
        return bytes([number])
    for marker, fmt, limit in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16),
                               (0xCE, ">I", 1 << 32), (0xCF, ">Q", 1 << 64)):
        if number < limit:
            return bytes([marker]) + struct.pack(fmt, number)
    raise GoldenError("integer %d is over the u64 range" % number)


def pack_int(number):
    if number >= 0:
        return pack_uint(number)
    if number >= -32:
        return struct.pack(">b", number)
    for marker, fmt, limit in ((0xD0, ">b", 1 << 7), (0xD1, ">h", 1 << 15),
                               (0xD2, ">i", 1 << 31), (0xD3, ">q", 1 << 63)):
        if number >= -limit:
            return bytes([marker]) + struct.pack(fmt, number)
    raise GoldenError("integer %d is under the i64 range" % number)


def pack_header(size, fix_marker, fix_limit, markers):
    if fix_marker is not None and size < fix_limit:
        return bytes([fix_marker | size])
    for marker, fmt, limit in markers:
        if size < limit:
            return bytes([marker]) + struct.pack(fmt, size)
    raise GoldenError("size %d is too large for msgpack" % size)


def pack_str(text):
    data = text.encode("utf-8")
    return pack_header(len(data), 0xA0, 32,
                       ((0xD9, ">B", 1 << 8), (0xDA, ">H", 1 << 16), (0xDB, ">I", 1 << 32))) + data


def pack_bin(data):
    return pack_header(len(data), None, 0,
                       ((0xC4, ">B", 1 << 8), (0xC5, ">H", 1 << 16), (0xC6, ">I", 1 << 32))) + data


def pack_array_header(count):
    return pack_header(count, 0x90, 16, ((0xDC, ">H", 1 << 16), (0xDD, ">I", 1 << 32)))


def pack_map_header(count):
    return pack_header(count, 0x80, 16, ((0xDE, ">H", 1 << 16), (0xDF, ">I", 1 << 32)))


# ---- bodies: json values checked against the schema and packed --------------------------------

class Schema:
    def __init__(self, paths):
        records, messages, enums = zf_schemagen.load_all(paths)
        self.records = {r.name: r for r in records}
        self.messages = {m.name: m for m in messages}
        self.enums = {e.name: e for e in enums}

    def canonical(self, decl, body, path):
        """The body with every field, in schema order, defaults filled in; checked."""
        if not isinstance(body, dict):
            raise GoldenError("%s: expected an object" % (path or "body"))
        names = {f.name for f in decl.fields}
        for key in body:
            if key not in names:
                raise GoldenError("%s: %s has no field '%s'" % (path or "body", decl.name, key))
        result = {}
        for field in decl.fields:
            where = "%s.%s" % (path, field.name) if path else field.name
            if field.name not in body:
                if field.required:
                    raise GoldenError("%s: required field missing" % where)
                result[field.name] = self.default(field)
            elif field.is_list:
                items = body[field.name]
                if not isinstance(items, list) or len(items) > field.items:
                    raise GoldenError("%s: expected a list of at most %d" % (where, field.items))
                result[field.name] = [self.value(field, item, "%s[%d]" % (where, index))
                                      for index, item in enumerate(items)]
            else:
                result[field.name] = self.value(field, body[field.name], where)
        return result

    def default(self, field):
        if field.is_list:
            return []
        if field.is_record:  # what zf_schema_init gives: required fields zeroed too
            return {f.name: self.default(f) for f in self.records[field.kind].fields}
        text = field.default
        if field.kind == "bool":
            return text == "true"
        if field.kind in ("u64", "i64"):
            return int(text or 0)
        if field.kind == "f64":
            return float(text or 0)
        return text or ""  # str; bin has no default: empty

    def value(self, field, value, where):
        kind, bound = field.kind, field.max
        if field.is_record:
            return self.canonical(self.records[kind], value, where)
        ok = {
            "bool": isinstance(value, bool),
            "u64": isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64,
            "i64": isinstance(value, int) and not isinstance(value, bool)
            and -(2**63) <= value < 2**63,
            "f64": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "bin": isinstance(value, str) and _is_hex(value),
        }[kind]
        if not ok:
            raise GoldenError("%s: %r is not a valid %s" % (where, value, kind))
        size = {"str": lambda: len(value.encode("utf-8")), "bin": lambda: len(value) // 2,
                "u64": lambda: value, "i64": lambda: abs(value), "f64": lambda: abs(value)}
        if bound is not None and kind in size and size[kind]() > bound:
            raise GoldenError("%s: %r is over max=%d" % (where, value, bound))
        if field.enum is not None and value and value not in self.enums[field.enum].names:
            raise GoldenError("%s: %r is not a declared %s" % (where, value, field.enum))
        return float(value) if kind == "f64" else value

    def pack_body(self, decl, body):
        out = pack_map_header(len(decl.fields))
        for field in decl.fields:
            out += pack_str(field.name)
            value = body[field.name]
            if field.is_list:
                out += pack_array_header(len(value))
                out += b"".join(self.pack_value(field, item) for item in value)
            else:
                out += self.pack_value(field, value)
        return out

    def pack_value(self, field, value):
        if field.is_record:
            return self.pack_body(self.records[field.kind], value)
        if field.kind == "bool":
            return b"\xc3" if value else b"\xc2"
        if field.kind == "u64":
            return pack_uint(value)
        if field.kind == "i64":
            return pack_int(value)
        if field.kind == "f64":
            return b"\xcb" + struct.pack(">d", value)
        if field.kind == "str":
            return pack_str(value)
        return pack_bin(bytes.fromhex(value))

    def pack_envelope(self, message, envelope, body):
        entries = [("type", pack_str(message.name)), ("v", pack_uint(message.version)),
                   ("id", pack_uint(envelope["id"])), ("from", pack_str(envelope["from"]))]
        if envelope.get("to"):
            entries.append(("to", pack_str(envelope["to"])))
        if envelope.get("re"):
            entries.append(("re", pack_uint(envelope["re"])))
        entries.append(("body", self.pack_body(message, body)))
        return pack_map_header(len(entries)) + b"".join(pack_str(k) + v for k, v in entries)

    def sample(self, decl):
        """A body for a new golden file: sample values for required fields, defaults else."""
        samples = {"bool": True, "u64": 1, "i64": -1, "f64": 1.5, "str": "sample", "bin": "00"}
        body = {}
        for field in decl.fields:
            if not field.required:
                continue
            if field.is_list:
                body[field.name] = []
            elif field.is_record:
                body[field.name] = self.sample(self.records[field.kind])
            else:
                value = samples[field.kind]
                if field.kind == "str" and field.enum is not None:
                    value = self.enums[field.enum].names[0]
                elif field.kind == "str":
                    value = value[: field.max]
                body[field.name] = value
        return body


def _is_hex(text):
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return len(text) % 2 == 0


# ---- golden files ------------------------------------------------------------------------------

def read_golden(path):
    lines = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition(":")
            if not sep or key not in ("envelope", "json", "hex") or key in lines:
                raise GoldenError("%s:%d: expected one each of 'envelope:', 'json:', 'hex:'"
                                  % (path, line_no))
            lines[key] = value.strip()
    try:
        envelope = json.loads(lines.get("envelope", "null"))
        body = json.loads(lines.get("json", "null"))
    except ValueError as error:
        raise GoldenError("%s: bad JSON: %s" % (path, error))
    if not isinstance(envelope, dict) or not isinstance(body, dict):
        raise GoldenError("%s: needs an 'envelope: {...}' and a 'json: {...}' line" % path)
    return envelope, body, lines.get("hex", "")


def check_envelope(envelope, path):
    allowed = {"id", "from", "to", "re"}
    if set(envelope) - allowed or not {"id", "from"} <= set(envelope):
        raise GoldenError("%s: envelope needs id and from, may have to and re" % path)


def render_golden(message, envelope, body, frame):
    return "".join([
        "# golden encoding of %s version %d: regenerate with tools/zf_golden.py --write\n"
        % (message.name, message.version),
        "envelope: %s\n" % json.dumps(envelope),
        "json: %s\n" % json.dumps(body, ensure_ascii=False),
        "hex: %s\n" % frame.hex(),
    ])


def golden_path(golden_dir, type_name):
    return os.path.join(golden_dir, type_name + ".golden")


def build(schema, message, path):
    """(envelope, canonical body, frame) for a golden file, or a sample if it is missing."""
    if os.path.exists(path):
        envelope, body, _ = read_golden(path)
        check_envelope(envelope, path)
    else:
        envelope, body = dict(DEFAULT_ENVELOPE), schema.sample(message)
    try:
        body = schema.canonical(message, body, "")
    except GoldenError as error:
        raise GoldenError("%s: %s" % (path, error))
    return envelope, body, schema.pack_envelope(message, envelope, body)


def run(schema, golden_dir, write):
    problems = []
    for type_name, message in sorted(schema.messages.items()):
        path = golden_path(golden_dir, type_name)
        exists = os.path.exists(path)
        try:
            envelope, body, frame = build(schema, message, path)
        except GoldenError as error:
            problems.append(str(error))
            continue
        text = render_golden(message, envelope, body, frame)
        current = None
        if exists:
            with open(path, encoding="utf-8") as handle:
                current = handle.read()
        if current == text:
            continue
        if write:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            print("zf_golden: %s %s" % ("updated" if exists else "created", path))
        else:
            problems.append("%s: %s (run tools/zf_golden.py --write and review the diff)"
                            % (path, "out of date" if exists else "missing"))
    for path in sorted(glob.glob(os.path.join(golden_dir, "*.golden"))):
        if os.path.basename(path)[: -len(".golden")] not in schema.messages:
            problems.append("%s: no schema defines this type (delete it by hand if it is gone)"
                            % path)
    for problem in problems:
        print("zf_golden: %s" % problem, file=sys.stderr)
    return 1 if problems else 0


def write_seeds(schema, golden_dir, seeds_dir):
    """Fuzz seeds from the golden files, plus a dictionary of every key and type name."""
    for sub in ("envelope", "schema"):
        os.makedirs(os.path.join(seeds_dir, sub), exist_ok=True)
    words = {"type", "v", "id", "from", "to", "re", "body"}
    for type_name, message in sorted(schema.messages.items()):
        envelope, body, frame = build(schema, message, golden_path(golden_dir, type_name))
        with open(os.path.join(seeds_dir, "envelope", type_name + ".bin"), "wb") as handle:
            handle.write(frame)
        if type_name == SEED_TYPE:
            with open(os.path.join(seeds_dir, "schema", type_name + ".bin"), "wb") as handle:
                handle.write(schema.pack_body(message, body))
        words.add(type_name)
    for decl in list(schema.messages.values()) + list(schema.records.values()):
        words.update(field.name for field in decl.fields)
    with open(os.path.join(seeds_dir, "bus.dict"), "w", encoding="ascii") as handle:
        for word in sorted(words):
            handle.write('"%s"\n' % "".join("\\x%02x" % b for b in pack_str(word)))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite and create golden files")
    parser.add_argument("--seeds", metavar="DIR", help="write fuzz seeds into DIR")
    parser.add_argument("--schemas", default=os.path.join(ROOT, "schemas"))
    parser.add_argument("--golden", default=None, help="default: SCHEMAS/golden")
    args = parser.parse_args(argv)
    golden_dir = args.golden or os.path.join(args.schemas, "golden")
    try:
        schema = Schema(sorted(glob.glob(os.path.join(args.schemas, "*.schema"))))
        if args.seeds:
            return write_seeds(schema, golden_dir, args.seeds)
        if args.write:
            os.makedirs(golden_dir, exist_ok=True)
        return run(schema, golden_dir, args.write)
    except (zf_schemagen.SchemaError, GoldenError, OSError) as error:
        print("zf_golden: %s" % error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
