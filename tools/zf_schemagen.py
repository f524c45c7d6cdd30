#!/usr/bin/env python3
"""zf_schemagen.py — turns schemas/*.schema into C struct typedefs and descriptor tables.

Usage: zf_schemagen.py --out-dir DIR FILE.schema...   (writes DIR/zf_msgs.h and DIR/zf_msgs.c)
       zf_schemagen.py --check FILE.schema...         (parses only; for editors and CI)

The schema format is documented at the top of schemas/core.schema. A bad schema is refused
with "FILE:LINE: message" and exit status 1, so a mistake never reaches the C compiler.
Every str and bin must declare max= and every list items=: nothing on the wire is unbounded.
An enum declares the words a str field may carry (enum=NAME on the field): a C enum, its
names and zf_NAME_name / zf_NAME_of are generated, and the codec holds the field to them.
Lines are split like a shell would: '#' starts a comment (even inside a word), so quote a
default that holds spaces or '#': default="two words".

Python 3 standard library only: it runs at build time on every developer machine. The parser
is importable (tools/zf_golden.py uses it) through load_schemas().
"""
import argparse
import os
import re
import shlex
import sys

SCALAR_KINDS = ("bool", "u64", "i64", "f64", "str", "bin")
C_TYPES = {
    "bool": "bool",
    "u64": "uint64_t",
    "i64": "int64_t",
    "f64": "double",
    "str": "char *",
    "bin": "zf_bytes_t",
}
FIELD_KIND_ENUM = {
    "bool": "ZF_FIELD_BOOL",
    "u64": "ZF_FIELD_U64",
    "i64": "ZF_FIELD_I64",
    "f64": "ZF_FIELD_F64",
    "str": "ZF_FIELD_STR",
    "bin": "ZF_FIELD_BIN",
}

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
INT_RE = re.compile(r"^-?[0-9]+$")
FLOAT_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")

TYPE_MAX = 64  # ZF_TYPE_MAX in bus/zf_envelope.h
MSGPACK_LENGTH_MAX = 2**32 - 1  # str, bin, array and map lengths are 32-bit
NAME_LEN_MAX = 48  # field and record names: keeps error paths readable
DEPTH_MAX = 12  # maps/arrays in a body, its own map included; ZF_SCHEMA_DEPTH_MAX is 16
U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1

# Field names become C struct members: refuse words the compiler already owns. GNU C
# (CMAKE_C_EXTENSIONS) predefines "linux" and "unix" as macros, so they are refused too.
C_RESERVED = set(
    """auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while bool true false asm typeof linux unix i386
    errno assert stdin stdout stderr NULL offsetof alignas alignof noreturn""".split()
)


class SchemaError(Exception):
    def __init__(self, path, line, message):
        super().__init__("%s:%d: %s" % (path, line, message))


class Field:
    def __init__(self, name, kind, is_list, where):
        self.name = name
        self.kind = kind  # scalar kind or record name
        self.is_list = is_list
        self.required = False
        self.max = None
        self.items = None
        self.default = None
        self.secret = None  # None; "" always; "FIELD:value|value" when a sibling says so
        self.enum = None  # enum name for a str field that carries only its members
        self.where = where  # (path, line) for later checks

    @property
    def is_record(self):
        return self.kind not in SCALAR_KINDS

    def spec(self):
        """The field's declaration as text, for the generated struct comment."""
        words = [("[]" if self.is_list else "") + self.kind]
        if self.required:
            words.append("required")
        if self.max is not None:
            words.append("max=%d" % self.max)
        if self.items is not None:
            words.append("items=%d" % self.items)
        if self.default is not None:
            words.append("default=%s" % self.default)
        if self.secret is not None:
            words.append("secret" + ("=" + self.secret if self.secret else ""))
        if self.enum is not None:
            words.append("enum=%s" % self.enum)
        return " ".join(words)


class Enum:
    """enum NAME [default=MEMBER]: the words a str field with enum=NAME may carry. In C,
    value 0 is ZF_NAME_NONE (the empty string: absent) and members follow in order."""

    what = "enum"

    def __init__(self, name, default, path, line):
        self.name = name
        self.default = default  # member an undeclared word decodes to; None: refuse it
        self.members = []  # (name, line)
        self.path = path
        self.line = line

    @property
    def c_type(self):
        return "zf_%s_t" % self.name

    @property
    def c_desc(self):
        return "zf_enum_%s" % self.name

    def c_constant(self, member):
        return "ZF_%s_%s" % (self.name.upper(), (member or "none").upper())

    @property
    def names(self):
        return [member for member, _ in self.members]


class Decl:
    def __init__(self, what, name, version, path, line):
        self.what = what  # "record" or "message"
        self.name = name  # record name or message type
        self.version = version
        self.fields = []
        self.path = path
        self.line = line

    @property
    def c_name(self):
        return self.name.replace(".", "_")

    @property
    def c_type(self):
        prefix = "zf_rec_" if self.what == "record" else "zf_msg_"
        return prefix + self.c_name + "_t"

    @property
    def c_desc(self):
        """The descriptor object: zf_record_desc_t for records, zf_msg_desc_t for messages."""
        prefix = "zf_rec_" if self.what == "record" else "zf_msg_"
        return prefix + self.c_name

    @property
    def c_body_desc(self):
        """The zf_record_desc_t describing the struct (for a message, its body)."""
        return self.c_desc if self.what == "record" else "s_body_" + self.c_name


def _parse_count(text, option, fail):
    if not re.match(r"^[0-9]+$", text):
        fail("%s needs a positive integer, got '%s'" % (option, text))
    value = int(text)
    if value < 1 or value > U64_MAX:
        fail("%s must be between 1 and %d, got %s" % (option, U64_MAX, text))
    return value


def _parse_field(tokens, path, line, fail):
    name, kind_text = tokens[0], tokens[1] if len(tokens) > 1 else None
    if not NAME_RE.match(name) or len(name) > NAME_LEN_MAX:
        fail("bad field name '%s': want snake_case [a-z][a-z0-9_]*, at most %d chars"
             % (name, NAME_LEN_MAX))
    if name in C_RESERVED:
        fail("field name '%s' is reserved in C" % name)
    if kind_text is None:
        fail("field '%s' has no kind" % name)
    is_list = kind_text.startswith("[]")
    kind = kind_text[2:] if is_list else kind_text
    if kind.startswith("[]"):
        fail("field '%s': lists of lists are not supported" % name)
    if kind not in SCALAR_KINDS and not NAME_RE.match(kind):
        fail("field '%s': unknown kind '%s'" % (name, kind_text))
    field = Field(name, kind, is_list, (path, line))
    seen = set()
    for option in tokens[2:]:
        key = option.split("=", 1)[0]
        if key in seen:
            fail("field '%s': '%s' given twice" % (name, key))
        seen.add(key)
        if option == "required":
            field.required = True
        elif option.startswith("max="):
            field.max = _parse_count(option[4:], "max=", fail)
        elif option.startswith("items="):
            field.items = _parse_count(option[6:], "items=", fail)
        elif option.startswith("default="):
            field.default = option[8:]
        elif option == "secret":
            field.secret = ""
        elif option.startswith("secret="):
            field.secret = option[7:]
            if not re.match(r"^[a-z][a-z0-9_]*:[A-Za-z0-9_-]+(\|[A-Za-z0-9_-]+)*$", field.secret):
                fail("field '%s': secret= wants FIELD:value|value…, got '%s'"
                     % (name, field.secret))
            field.secret = field.secret.split(":", 1)[0] + ":" + field.secret.split(":", 1)[1].lower()
        elif option.startswith("enum="):
            field.enum = option[5:]
            if not NAME_RE.match(field.enum):
                fail("field '%s': bad enum name '%s'" % (name, field.enum))
        else:
            fail("field '%s': unknown option '%s'" % (name, option))
    _check_field_options(field, fail)
    return field


def _check_field_options(field, fail):
    name, kind = field.name, field.kind
    if field.is_list and field.items is None:
        fail("list field '%s' needs items=N" % name)
    if not field.is_list and field.items is not None:
        fail("field '%s': items= is only for lists" % name)
    if kind in ("str", "bin") and field.max is None:
        fail("%s field '%s' needs max=N (nothing on the wire is unbounded)" % (kind, name))
    # msgpack lengths are 32-bit. (Bus messages are held to ZF_ENVELOPE_MAX when encoded and
    # decoded; records that never ride the bus, such as storage metadata, may be larger.)
    if kind in ("str", "bin") and field.max > MSGPACK_LENGTH_MAX:
        fail("field '%s': max=%d is over msgpack's %d" % (name, field.max, MSGPACK_LENGTH_MAX))
    if field.items is not None and field.items > MSGPACK_LENGTH_MAX:
        fail("field '%s': items=%d is over msgpack's %d" % (name, field.items,
                                                            MSGPACK_LENGTH_MAX))
    if field.max is not None and (kind == "bool" or field.is_record):
        fail("field '%s': max= is only for numbers, str and bin" % name)
    if field.secret is not None and (kind not in ("str", "bin") or field.is_list):
        fail("field '%s': secret is only for str and bin fields" % name)
    if field.enum is not None and (kind != "str" or field.is_list):
        fail("field '%s': enum= is only for str fields" % name)
    if field.default is not None:
        if field.required:
            fail("field '%s': a required field cannot have a default" % name)
        if field.is_list or kind in ("bin",) or field.is_record:
            fail("field '%s': default= is only for bool, numbers and str" % name)
        _check_default(field, fail)


def _check_default(field, fail):
    text, kind, name = field.default, field.kind, field.name
    if kind == "bool":
        if text not in ("true", "false"):
            fail("field '%s': bool default must be true or false, got '%s'" % (name, text))
    elif kind in ("u64", "i64"):
        if not INT_RE.match(text):
            fail("field '%s': %s default must be an integer, got '%s'" % (name, kind, text))
        value = int(text)
        low, high = (0, U64_MAX) if kind == "u64" else (-I64_MAX - 1, I64_MAX)
        if value < low or value > high:
            fail("field '%s': default %s is out of %s range" % (name, text, kind))
        if field.max is not None and abs(value) > field.max:
            fail("field '%s': default %s is over max=%d" % (name, text, field.max))
    elif kind == "f64":
        if not FLOAT_RE.match(text):
            fail("field '%s': f64 default must be a decimal number, got '%s'" % (name, text))
        if field.max is not None and abs(float(text)) > field.max:
            fail("field '%s': default %s is over max=%d" % (name, text, field.max))
    elif kind == "str":
        size = len(text.encode("utf-8"))
        if size > field.max:
            fail("field '%s': default of %d bytes is over max=%d" % (name, size, field.max))
        if any(ord(ch) < 0x20 for ch in text):
            fail("field '%s': default contains a control character" % name)


#  Enum names whose generated names would collide with others: ZF_MSG_*, ZF_FIELD_*, ZF_E_*,
#  zf_rec_*, zf_enum_*, zf_schema_*, zf_status_t, zf_error_t.
ENUM_NAMES_TAKEN = ("msg", "rec", "field", "e", "enum", "schema", "status", "error")


def _parse_enum_header(tokens, path, line, fail):
    if len(tokens) not in (2, 3):
        fail("want 'enum NAME [default=MEMBER]'")
    name = tokens[1]
    if not NAME_RE.match(name) or len(name) > NAME_LEN_MAX:
        fail("bad enum name '%s': want [a-z][a-z0-9_]*, at most %d chars" % (name, NAME_LEN_MAX))
    if name in ENUM_NAMES_TAKEN:
        fail("enum name '%s' would collide with other generated names" % name)
    default = None
    if len(tokens) == 3:
        if not tokens[2].startswith("default="):
            fail("enum '%s': unknown option '%s'" % (name, tokens[2]))
        default = tokens[2][len("default="):]
    return Enum(name, default, path, line)


def _parse_enum_member(tokens, decl, line, fail):
    if len(tokens) != 1:
        fail("enum '%s': one member per line, got '%s'" % (decl.name, " ".join(tokens)))
    member = tokens[0]
    if not NAME_RE.match(member) or len(member) > NAME_LEN_MAX:
        fail("bad enum member '%s': want [a-z][a-z0-9_]*, at most %d chars"
             % (member, NAME_LEN_MAX))
    if member in ("none", "count"):
        fail("enum '%s': '%s' is taken (ZF_%s_NONE is the empty string, ZF_%s_COUNT the "
             "number of values)" % (decl.name, member, decl.name.upper(), decl.name.upper()))
    if member in decl.names:
        fail("duplicate member '%s' in enum %s" % (member, decl.name))
    decl.members.append((member, line))


def _parse_header(tokens, path, line, fail):
    what = tokens[0]
    if what == "enum":
        return _parse_enum_header(tokens, path, line, fail)
    if what == "record":
        if len(tokens) != 2:
            fail("want 'record NAME'")
        name = tokens[1]
        if not NAME_RE.match(name) or len(name) > NAME_LEN_MAX:
            fail("bad record name '%s': want [a-z][a-z0-9_]*, at most %d chars"
                 % (name, NAME_LEN_MAX))
        if name in SCALAR_KINDS:
            fail("record name '%s' is a field kind" % name)
        return Decl("record", name, None, path, line)
    if what == "message":
        if len(tokens) != 3:
            fail("want 'message TYPE VERSION'")
        name, version_text = tokens[1], tokens[2]
        if not TYPE_RE.match(name) or len(name) > TYPE_MAX:
            fail("bad message type '%s': want lowercase dotted like 'piece.request', at most "
                 "%d chars" % (name, TYPE_MAX))
        if not re.match(r"^[0-9]+$", version_text) or not 1 <= int(version_text) <= 2**32 - 1:
            fail("message '%s': version must be an integer from 1, got '%s'"
                 % (name, version_text))
        return Decl("message", name, int(version_text), path, line)
    fail("expected 'record NAME', 'message TYPE VERSION' or 'enum NAME', got '%s'" % what)


def parse_file(path, text=None):
    """Parses one schema file into a list of Decl; raises SchemaError."""
    if text is None:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    decls = []
    current = None
    for line_no, raw in enumerate(text.splitlines(), start=1):

        def fail(message, line_no=line_no):
            raise SchemaError(path, line_no, message)

        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            fail("indent with spaces, not tabs")
        try:
            tokens = shlex.split(raw, comments=True)
        except ValueError as error:
            fail("cannot split line: %s" % error)
        if not tokens:
            continue
        indented = raw[0] == " "
        if not indented:
            current = _parse_header(tokens, path, line_no, fail)
            decls.append(current)
            continue
        if current is None:
            fail("field outside a record or message")
        if current.what == "enum":
            _parse_enum_member(tokens, current, line_no, fail)
            continue
        field = _parse_field(tokens, path, line_no, fail)
        if any(other.name == field.name for other in current.fields):
            fail("duplicate field '%s' in %s" % (field.name, current.name))
        current.fields.append(field)
    for decl in decls:
        for field in getattr(decl, "fields", []):  # enums have members, not fields
            if not field.secret:
                continue
            other = field.secret.split(":", 1)[0]
            sibling = [f for f in decl.fields if f.name == other]
            if not sibling or sibling[0].kind != "str" or sibling[0].is_list:
                raise SchemaError(*field.where, "field '%s': secret= names '%s', which is not a "
                                  "str field of %s" % (field.name, other, decl.name))
    return decls


def _check_records(decls):
    """Resolves record kinds, refuses cycles and nesting too deep; orders records so each
    is declared after the records it embeds."""
    records = {d.name: d for d in decls if d.what == "record"}
    for decl in decls:
        for field in decl.fields:
            if field.is_record and field.kind not in records:
                raise SchemaError(*field.where, "field '%s': unknown kind '%s'"
                                  % (field.name, field.kind))
    ordered, state = [], {}

    def visit(record, chain):
        if state.get(record.name) == "done":
            return
        if state.get(record.name) == "visiting":
            raise SchemaError(record.path, record.line, "record '%s' contains itself (%s)"
                              % (record.name, " -> ".join(chain + [record.name])))
        state[record.name] = "visiting"
        for field in record.fields:
            if field.is_record:
                visit(records[field.kind], chain + [record.name])
        state[record.name] = "done"
        ordered.append(record)

    for decl in decls:
        if decl.what == "record":
            visit(decl, [])
    for decl in decls:
        depth = _depth(decl, records)
        if depth > DEPTH_MAX:
            raise SchemaError(decl.path, decl.line, "%s nests %d levels deep, over %d"
                              % (decl.name, depth, DEPTH_MAX))
    return ordered


def _depth(decl, records):
    """Levels of msgpack maps and arrays in a value of decl, counting decl's own map."""
    deepest = 0
    for field in decl.fields:
        below = _depth(records[field.kind], records) if field.is_record else 0
        deepest = max(deepest, below + (1 if field.is_list else 0))
    return deepest + 1


def load_schemas(paths):
    """Parses and cross-checks schema files; returns (records in dependency order, messages
    sorted by type). Raises SchemaError."""
    records, messages, _ = load_all(paths)
    return records, messages


def _check_enums(decls):
    """Every enum is complete and every enum= field names one whose words fit the field."""
    enums = {d.name: d for d in decls if d.what == "enum"}
    for decl in enums.values():
        if not decl.members:
            raise SchemaError(decl.path, decl.line, "enum '%s' has no members" % decl.name)
        if decl.default is not None and decl.default not in decl.names:
            raise SchemaError(decl.path, decl.line, "enum '%s': default '%s' is not a member"
                              % (decl.name, decl.default))
    for decl in decls:
        for field in getattr(decl, "fields", []):
            if field.enum is None:
                continue
            enum = enums.get(field.enum)
            if enum is None:
                raise SchemaError(*field.where, "field '%s': unknown enum '%s'"
                                  % (field.name, field.enum))
            longest = max(enum.names, key=len)
            if len(longest) > field.max:
                raise SchemaError(*field.where, "field '%s': member '%s' of enum %s is over "
                                  "max=%d" % (field.name, longest, enum.name, field.max))
            if field.default is not None and field.default not in enum.names:
                raise SchemaError(*field.where, "field '%s': default '%s' is not a member of "
                                  "enum %s" % (field.name, field.default, enum.name))
    return sorted(enums.values(), key=lambda d: d.name)


def load_all(paths):
    """Like load_schemas, plus the enums sorted by name: (records, messages, enums)."""
    decls = []
    for path in paths:
        decls.extend(parse_file(path))
    seen_names, seen_c = {}, {}
    for decl in decls:
        key = (decl.what, decl.name)
        if key in seen_names:
            first = seen_names[key]
            raise SchemaError(decl.path, decl.line, "duplicate %s '%s' (first at %s:%d)"
                              % (decl.what, decl.name, first.path, first.line))
        seen_names[key] = decl
        if decl.c_type in seen_c:
            first = seen_c[decl.c_type]
            raise SchemaError(decl.path, decl.line, "'%s' and '%s' (%s:%d) both become C type %s"
                              % (decl.name, first.name, first.path, first.line, decl.c_type))
        seen_c[decl.c_type] = decl
    enums = _check_enums(decls)
    records = _check_records([d for d in decls if d.what != "enum"])
    messages = sorted((d for d in decls if d.what == "message"), key=lambda d: d.name)
    return records, messages, enums


# ---- C emission -------------------------------------------------------------------------------

def _c_string(text):
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    # Non-ASCII as octal escapes keeps the generated file ASCII and the bytes exact.
    out = []
    for byte in escaped.encode("utf-8"):
        out.append(chr(byte) if 0x20 <= byte < 0x7F else "\\%03o" % byte)
    return '"' + "".join(out) + '"'


def _c_member_type(field, records):
    if field.is_list:
        return "zf_list_t"
    if field.is_record:
        return records[field.kind].c_type
    return C_TYPES[field.kind]


def _emit_struct(decl, records, out):
    title = "record %s" % decl.name if decl.what == "record" else \
        "message %s version %d" % (decl.name, decl.version)
    out.append("//  %s (%s:%d)" % (title, os.path.basename(decl.path), decl.line))
    out.append("typedef struct {")
    for field in decl.fields:
        c_type = _c_member_type(field, records)
        sep = "" if c_type.endswith("*") else " "
        comment = field.spec()
        if field.is_list:
            element = records[field.kind].c_type if field.is_record else C_TYPES[field.kind]
            comment += "; items are %s" % element
        out.append("    %s%s%s; //  %s" % (c_type, sep, field.name, comment))
    if not decl.fields:
        out.append("    uint8_t unused_; //  ISO C has no empty structs")
    out.append("} %s;" % decl.c_type)
    out.append("")


def _emit_enum_type(enum, out):
    if enum.default is None:
        rule = "a decoder refuses any other word"
    else:
        rule = "a decoder reads any other word as %s" % enum.c_constant(enum.default)
    out.append("//  enum %s (%s:%d): %s is \"\" (absent);"
               % (enum.name, os.path.basename(enum.path), enum.line, enum.c_constant(None)))
    out.append("//  %s." % rule)
    out.append("typedef enum {")
    out.append("    %s = 0," % enum.c_constant(None))
    for value, member in enumerate(enum.names, start=1):
        out.append("    %s = %d," % (enum.c_constant(member), value))
    out.append("} %s;" % enum.c_type)
    out.append("#define ZF_%s_COUNT %d //  values, NONE included" % (enum.name.upper(),
                                                                     len(enum.members) + 1))
    out.append("")


def _emit_enum_functions(enum, out):
    upper = enum.name.upper()
    other = ("ZF_%s_NONE for a word not declared" % upper if enum.default is None
             else "%s for a word not declared" % enum.c_constant(enum.default))
    out.append("extern const zf_enum_desc_t %s;" % enum.c_desc)
    out.append("//  The word of a value (\"\" for ZF_%s_NONE); a value out of range asserts."
               % upper)
    out.append("const char *zf_%s_name (%s value);" % (enum.name, enum.c_type))
    out.append("//  The value of a word: ZF_%s_NONE for NULL or \"\", %s." % (upper, other))
    out.append("%s zf_%s_of (const char *text);" % (enum.c_type, enum.name))
    out.append("")


def emit_header(records, messages, sources, enums=()):
    by_name = {r.name: r for r in records}
    out = [
        "/*  zf_msgs.h — generated from %s" % ", ".join(sources),
        "    by tools/zf_schemagen.py, do not edit.",
        "",
        "    One struct per record (zf_rec_NAME_t) and per message body (zf_msg_TYPE_t), with the",
        "    descriptors bus/zf_schema.c encodes and decodes them by; one C enum per schema enum",
        "    (zf_NAME_t, ZF_NAME_MEMBER) with its words. */",
        "#ifndef ZF_MSGS_H_INCLUDED",
        "#define ZF_MSGS_H_INCLUDED",
        "",
        '#include "zf_schema.h"',
        "",
    ]
    for enum in enums:
        _emit_enum_type(enum, out)
    for enum in enums:
        _emit_enum_functions(enum, out)
    for record in records:
        _emit_struct(record, by_name, out)
    for message in messages:
        _emit_struct(message, by_name, out)
    for record in records:
        out.append("extern const zf_record_desc_t %s;" % record.c_desc)
    if records:
        out.append("")
    width = max([len(m.c_name) for m in messages] + [1])
    for message in messages:
        out.append("#define ZF_MSG_%-*s %s" % (width, message.c_name.upper(),
                                              _c_string(message.name)))
    if messages:
        out.append("")
    for message in messages:
        out.append("extern const zf_msg_desc_t %s;" % message.c_desc)
    out += ["", "#endif", ""]
    return "\n".join(out)


def _emit_fields(decl, records, out):
    if not decl.fields:
        return "NULL"
    # A record and a message may share a C name (record echo_request, message echo.request).
    table = "s_fields_%s_%s" % ("rec" if decl.what == "record" else "msg", decl.c_name)
    out.append("static const zf_field_desc_t %s[] = {" % table)
    for field in decl.fields:
        kind = "ZF_FIELD_RECORD" if field.is_record else FIELD_KIND_ENUM[field.kind]
        record = "&" + records[field.kind].c_desc if field.is_record else "NULL"
        default = _c_string(field.default) if field.default is not None else "NULL"
        enumeration = "&zf_enum_" + field.enum if field.enum is not None else "NULL"
        out.append("    {.name = %s," % _c_string(field.name))
        out.append("     .kind = %s," % kind)
        out.append("     .is_list = %s," % ("true" if field.is_list else "false"))
        out.append("     .required = %s," % ("true" if field.required else "false"))
        out.append("     .offset = offsetof (%s, %s)," % (decl.c_type, field.name))
        out.append("     .max = UINT64_C (%d)," % (field.max or 0))
        out.append("     .max_items = UINT64_C (%d)," % (field.items or 0))
        out.append("     .record = %s," % record)
        out.append("     .default_text = %s," % default)
        secret = _c_string(field.secret) if field.secret is not None else "NULL"
        out.append("     .secret = %s," % secret)
        out.append("     .enumeration = %s}," % enumeration)
    out.append("};")
    return table


def _emit_record_desc(decl, records, out, storage):
    table = _emit_fields(decl, records, out)
    count = "ZF_ARRAY_LEN (%s)" % table if decl.fields else "0"
    out.append("%sconst zf_record_desc_t %s = {" % (storage, decl.c_body_desc))
    out.append("    .name = %s," % _c_string(decl.name))
    out.append("    .size = sizeof (%s)," % decl.c_type)
    out.append("    .fields = %s," % table)
    out.append("    .field_count = %s," % count)
    out.append("};")
    out.append("")


def _emit_enum_source(enum, out):
    names = "s_names_%s" % enum.name
    out.append("static const char *const %s[] = {" % names)
    out.append('    "",')
    for member in enum.names:
        out.append("    %s," % _c_string(member))
    out.append("};")
    default = enum.names.index(enum.default) + 1 if enum.default is not None else 0
    out.append("const zf_enum_desc_t %s = {" % enum.c_desc)
    out.append("    .name = %s," % _c_string(enum.name))
    out.append("    .names = %s," % names)
    out.append("    .count = ZF_ARRAY_LEN (%s)," % names)
    out.append("    .default_value = %d," % default)
    out.append("};")
    out.append("")
    out.append("const char *zf_%s_name (%s value)" % (enum.name, enum.c_type))
    out.append("{")
    out.append("    return zf_schema_enum_name (&%s, (int) value);" % enum.c_desc)
    out.append("}")
    out.append("")
    out.append("%s zf_%s_of (const char *text)" % (enum.c_type, enum.name))
    out.append("{")
    out.append("    return (%s) zf_schema_enum_of (&%s, text);" % (enum.c_type, enum.c_desc))
    out.append("}")
    out.append("")


def emit_source(records, messages, sources, enums=()):
    by_name = {r.name: r for r in records}
    out = [
        "/*  zf_msgs.c — generated from %s" % ", ".join(sources),
        "    by tools/zf_schemagen.py, do not edit. */",
        '#include "zf_msgs.h"',
        "",
    ]
    for enum in enums:
        _emit_enum_source(enum, out)
    for record in records:
        _emit_record_desc(record, by_name, out, "")
    for message in messages:
        _emit_record_desc(message, by_name, out, "static ")
        out.append("const zf_msg_desc_t %s = {" % message.c_desc)
        out.append("    .type = %s," % _c_string(message.name))
        out.append("    .version = %d," % message.version)
        out.append("    .body = &%s," % message.c_body_desc)
        out.append("};")
        out.append("")
    out.append("//  Sorted by type (bytewise), for the binary search in zf_schema_find.")
    if messages:
        out.append("static const zf_msg_desc_t *const s_messages[] = {")
        for message in messages:
            out.append("    &%s," % message.c_desc)
        out.append("};")
        count = "ZF_ARRAY_LEN (s_messages)"
        table = "s_messages"
    else:
        out.append("static const zf_msg_desc_t *const *const s_messages = NULL;")
        count = "0"
        table = "s_messages"
    out += [
        "",
        "const zf_msg_desc_t *zf_schema_find (const char *type, size_t type_len)",
        "{",
        "    size_t low = 0, high = %s;" % count,
        "    if (!type)",
        "        return NULL;",
        "    while (low < high) {",
        "        size_t middle = low + (high - low) / 2;",
        "        const char *name = %s[middle]->type;" % table,
        "        size_t name_len = strlen (name);",
        "        int order = memcmp (name, type, name_len < type_len ? name_len : type_len);",
        "        if (order == 0)",
        "            order = name_len < type_len ? -1 : name_len > type_len ? 1 : 0;",
        "        if (order == 0)",
        "            return %s[middle];" % table,
        "        if (order < 0)",
        "            low = middle + 1;",
        "        else",
        "            high = middle;",
        "    }",
        "    return NULL;",
        "}",
        "",
        "const zf_msg_desc_t *const *zf_schema_all (size_t *count)",
        "{",
        "    if (count)",
        "        *count = %s;" % count,
        "    return %s;" % table,
        "}",
        "",
    ]
    return "\n".join(out)


def _write(path, text):
    """Writes through a temporary file, so an interrupted build never leaves half a file."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", help="where to write zf_msgs.h and zf_msgs.c")
    parser.add_argument("--check", action="store_true", help="parse only, write nothing")
    parser.add_argument("schemas", nargs="+", help="schema files")
    args = parser.parse_args(argv)
    if not args.check and not args.out_dir:
        parser.error("--out-dir is required unless --check")
    # Sorted, so the output does not depend on the order a glob happened to return.
    paths = sorted(args.schemas, key=os.path.basename)
    try:
        records, messages, enums = load_all(paths)
    except SchemaError as error:
        print("zf_schemagen: %s" % error, file=sys.stderr)
        return 1
    except OSError as error:
        print("zf_schemagen: %s" % error, file=sys.stderr)
        return 1
    if args.check:
        return 0
    sources = ["schemas/" + os.path.basename(p) for p in paths]
    os.makedirs(args.out_dir, exist_ok=True)
    _write(os.path.join(args.out_dir, "zf_msgs.h"),
           emit_header(records, messages, sources, enums))
    _write(os.path.join(args.out_dir, "zf_msgs.c"),
           emit_source(records, messages, sources, enums))
    return 0


if __name__ == "__main__":
    sys.exit(main())
