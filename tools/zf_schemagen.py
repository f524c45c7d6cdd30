#!/usr/bin/env python3
"""Placeholder until the real generator lands: emits an empty registry."""
import argparse, os
ap = argparse.ArgumentParser()
ap.add_argument("--out-dir", required=True)
ap.add_argument("schemas", nargs="*")
a = ap.parse_args()
os.makedirs(a.out_dir, exist_ok=True)
open(os.path.join(a.out_dir, "zf_msgs.h"), "w").write('#include "zf_schema.h"\n')
open(os.path.join(a.out_dir, "zf_msgs.c"), "w").write('''#include "zf_msgs.h"
const zf_msg_desc_t *zf_schema_find (const char *type, size_t type_len)
{ (void) type; (void) type_len; return NULL; }
const zf_msg_desc_t *const *zf_schema_all (size_t *count) { *count = 0; return NULL; }
''')
