/*  zf_redact.h — secrets (credentials) redacted for people reading bus traffic.

    Fields that carry credentials are marked in schemas/ (`secret`, or `secret=FIELD:values`:
    an HTTP header's value when its name is Authorization, Cookie, …; zf_schema.h). The tap
    (zf_tap.c) re-packs every envelope whose type has such a field with zf_redact_pack, so
    taps show `Bearer <redacted, 21 bytes, sha256:ab12…>` instead of the credential; anything
    else that prints bus bodies for people should do the same. Kept apart from the codec
    (zf_schema.c), which needs no hashing and is fuzzed on its own. */
#ifndef ZF_REDACT_H_INCLUDED
#define ZF_REDACT_H_INCLUDED

#include "zf_schema.h"

//  Packs object, a msgpack value of desc as decoded off the wire, with the text of every
//  secret field in force replaced by zf_redact_text; everything else, unknown keys included,
//  as it is.
void zf_redact_pack (const zf_record_desc_t *desc, const msgpack_object *object,
                     msgpack_packer *pk);

//  Whether desc (or a record in it) has any secret field at all.
bool zf_redact_has_secrets (const zf_record_desc_t *desc);

//  "Bearer <redacted, 21 bytes, sha256:ab12…>": a leading scheme word (Bearer, Basic) is kept,
//  the rest hidden; its length and a short hash let a reader tell two values apart.
void zf_redact_text (const char *value, size_t length, char *out, size_t size);

void zf_redact_test (bool verbose);

#endif
