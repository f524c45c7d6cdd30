#!/usr/bin/env python3
"""schemagen_check.py — tools/zf_schemagen.py refuses bad schemas, and its output compiles.

Usage: schemagen_check.py ZF_SCHEMAGEN [CC BUS_INCLUDE_DIR]   (ctest unit.schemagen)

Each bad schema below must exit 1 with "FILE:LINE: message" on stderr, naming the right line.
With CC, an unusual but valid schema (an empty message, nested records, quoted defaults with
escapes and UTF-8) is generated and compiled with the project's warnings and -Werror.
"""
import os
import subprocess
import sys
import tempfile

HEADER = "message ok.thing 1\n    seq u64\n"

# (schema text, line the error is on, words the message must contain)
BAD = [
    ("message a.b 1\n    x int\n", 2, "unknown kind 'int'"),
    ("message a.b 1\n    x u64\n    x str max=3\n", 3, "duplicate field 'x'"),
    ("message a.b 1\n    x u64\nmessage a.b 1\n    y u64\n", 3, "duplicate message 'a.b'"),
    ("record r\n    x u64\nrecord r\n    y u64\n", 3, "duplicate record 'r'"),
    ("message a.b 1\n    x []u64\n", 2, "needs items=N"),
    ("message a.b 1\n    x str\n", 2, "needs max=N"),
    ("message a.b 1\n    x bin\n", 2, "needs max=N"),
    ("message a.b 1\n    x []str items=3\n", 2, "needs max=N"),
    ("message A.b 1\n    x u64\n", 1, "bad message type 'A.b'"),
    ("message a..b 1\n    x u64\n", 1, "bad message type"),
    ("message a.b- 1\n    x u64\n", 1, "bad message type"),
    ("message a.b 0\n    x u64\n", 1, "version must be"),
    ("message a.b\n    x u64\n", 1, "want 'message TYPE VERSION'"),
    ("message a.b 1\n    Bad u64\n", 2, "bad field name 'Bad'"),
    ("message a.b 1\n    int u64\n", 2, "reserved in C"),
    ("record Point\n    x u64\n", 1, "bad record name"),
    ("message a.b 1\n    x u64 max=ten\n", 2, "max= needs a positive integer"),
    ("message a.b 1\n    x u64 max=0\n", 2, "max= must be between"),
    ("message a.b 1\n    x u64 items=3\n", 2, "items= is only for lists"),
    ("message a.b 1\n    x bool max=3\n", 2, "max= is only for"),
    ("message a.b 1\n    x u64 secret\n", 2, "secret is only for str and bin"),
    ("message a.b 1\n    x str max=3 secret=y\n", 2, "secret= wants FIELD:value"),
    ("message a.b 1\n    x str max=3 secret=y:z\n", 2, "names 'y', which is not a str field"),
    ("message a.b 1\n    x u64 required default=3\n", 2, "cannot have a default"),
    ("message a.b 1\n    x u64 default=-1\n", 2, "out of u64 range"),
    ("message a.b 1\n    x u64 max=5 default=6\n", 2, "over max=5"),
    ("message a.b 1\n    x bool default=yes\n", 2, "true or false"),
    ("message a.b 1\n    x f64 default=nan\n", 2, "decimal number"),
    ("message a.b 1\n    x str max=2 default=abc\n", 2, "over max=2"),
    ("message a.b 1\n    x u64 colour=red\n", 2, "unknown option 'colour=red'"),
    ("message a.b 1\n    x [][]u64 items=2\n", 2, "lists of lists"),
    ("message a.b 1\n    x point\n", 2, "unknown kind 'point'"),
    ("record r\n    s r\nmessage a.b 1\n    x r\n", 1, "contains itself"),
    ("    x u64\n", 1, "field outside"),
    ("widget a\n", 1, "expected 'record NAME', 'message TYPE VERSION' or 'enum NAME'"),
    ("message a.b 1\n\tx u64\n", 2, "spaces, not tabs"),
    ("message a.b 1\n    x str max=5000000000\n", 2, "over msgpack's"),
    ("message a.b 1\n    x []u64 items=5000000000\n", 2, "over msgpack's"),
    ("message a.b 1\n    x str max=3 default=\"open\n", 2, "cannot split line"),
    ("message a_b.c 1\n    x u64\nmessage a.b_c 1\n    y u64\n", 3, "both become C type"),
    # enums
    ("enum e_x\n    a b\n", 2, "one member per line"),
    ("enum e_x\n    a\n    a\n", 3, "duplicate member 'a'"),
    ("enum e_x\n    Bad\n", 2, "bad enum member 'Bad'"),
    ("enum e_x\n    none\n", 2, "'none' is taken"),
    ("enum e_x\n    count\n", 2, "'count' is taken"),
    ("enum msg\n    a\n", 1, "would collide"),
    ("enum e_x colour=red\n    a\n", 1, "unknown option 'colour=red'"),
    ("enum e_x default=b\n    a\n", 1, "default 'b' is not a member"),
    ("enum e_x\nmessage a.b 1\n    x u64\n", 1, "enum 'e_x' has no members"),
    ("enum e_x\n    a\nenum e_x\n    b\n", 3, "duplicate enum 'e_x'"),
    ("message a.b 1\n    x str max=8 enum=nope\n", 2, "unknown enum 'nope'"),
    ("message a.b 1\n    x u64 enum=e_x\nenum e_x\n    a\n", 2, "enum= is only for str"),
    ("message a.b 1\n    x []str items=2 max=8 enum=e_x\nenum e_x\n    a\n", 2,
     "enum= is only for str"),
    ("enum e_x\n    longword\nmessage a.b 1\n    x str max=4 enum=e_x\n", 4,
     "member 'longword' of enum e_x is over max=4"),
    ("enum e_x\n    a\nmessage a.b 1\n    x str max=4 default=b enum=e_x\n", 4,
     "default 'b' is not a member of enum e_x"),
]

GOOD = r"""
record inner
    n           u64     required
    tags        []str   items=2 max=4
record outer
    inner       inner
    inners      []inner items=2
message empty.thing 1
message edge.case 3
    quoted      str     max=64 default="say \"hi\" \\ #not a comment"
    utf         str     max=16 default=hé
    low         i64     default=-9223372036854775808
    high        u64     default=18446744073709551615
    ratio       f64     default=-1.5e-3
    nested      outer
    many        []outer items=3
message single 1
    ok          bool
record single
    ok          bool
record edge_case
    also        single
enum colour default=other
    red
    other
enum shape
    round
message coded.thing 1
    colour      str     max=8 enum=colour required
    shape       str     max=8 enum=shape default=round
"""

WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Wformat=2", "-Wstrict-prototypes",
            "-Wmissing-prototypes", "-Wvla", "-Werror", "-std=gnu11"]


def run_generator(generator, schema_text, workdir, name="bad.schema"):
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(schema_text)
    core = os.path.join(workdir, "core.schema")
    with open(core, "w", encoding="utf-8") as handle:
        handle.write(HEADER)
    out_dir = os.path.join(workdir, "gen")
    result = subprocess.run([sys.executable, generator, "--out-dir", out_dir, core, path],
                            capture_output=True, text=True, check=False)
    return result, path, out_dir


def check_bad(generator):
    failures = 0
    for text, line, words in BAD:
        with tempfile.TemporaryDirectory() as workdir:
            result, path, _ = run_generator(generator, text, workdir)
            expected = "%s:%d: " % (path, line)
            if result.returncode != 1 or expected not in result.stderr or words not in result.stderr:
                print("FAIL: %r\n  want exit 1 and '%s...%s'\n  got exit %d: %s"
                      % (text, expected, words, result.returncode, result.stderr.strip()))
                failures += 1
    return failures


def check_good(generator, compiler, include_dir):
    with tempfile.TemporaryDirectory() as workdir:
        result, _, out_dir = run_generator(generator, GOOD, workdir, "good.schema")
        if result.returncode != 0:
            print("FAIL: good schema refused: %s" % result.stderr.strip())
            return 1
        source = os.path.join(out_dir, "zf_msgs.c")
        header = open(os.path.join(out_dir, "zf_msgs.h"), encoding="utf-8").read()
        for needle in ("zf_msg_edge_case_t", "zf_rec_outer_t", "ZF_MSG_EMPTY_THING",
                       "extern const zf_msg_desc_t zf_msg_single;", "do not edit",
                       "ZF_COLOUR_NONE = 0,", "ZF_COLOUR_OTHER = 2,", "} zf_colour_t;",
                       "#define ZF_SHAPE_COUNT 2", "zf_shape_t zf_shape_of (const char *text);",
                       "const char *zf_colour_name (zf_colour_t value);"):
            if needle not in header:
                print("FAIL: zf_msgs.h lacks %s" % needle)
                return 1
        if not compiler:
            return 0
        flags = subprocess.run(["pkg-config", "--cflags", "libczmq", "msgpack"],
                               capture_output=True, text=True, check=False).stdout.split()
        command = [compiler, *WARNINGS, "-I", include_dir, "-I", out_dir, *flags,
                   "-fsyntax-only", source]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print("FAIL: generated code does not compile:\n%s" % result.stderr)
            return 1
    return 0


def main():
    if len(sys.argv) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    generator = sys.argv[1]
    compiler, include_dir = (sys.argv[2], sys.argv[3]) if len(sys.argv) == 4 else (None, None)
    failures = check_bad(generator) + check_good(generator, compiler, include_dir)
    print("schemagen_check: %d bad schemas, %d failures" % (len(BAD), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
