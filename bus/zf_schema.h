/*  zf_schema.h — bus message bodies, declared as data.

    The files schemas/NAME.schema define every message once. At build time
    tools/zf_schemagen.py turns them into C struct typedefs plus descriptor tables
    (gen/zf_msgs.h, gen/zf_msgs.c); this file is the table-driven codec that encodes, decodes
    and validates any described record. So the wire format of a message is written in exactly
    one place, and every decoder shares the same defensive checks (Fluent Bit style: explicit
    shape checks, one error code per failure).

    Generated names, for "record endpoint" and "message echo.request 1":
        zf_rec_endpoint_t, zf_rec_endpoint (its zf_record_desc_t)
        zf_msg_echo_request_t (the body), zf_msg_echo_request (its zf_msg_desc_t),
        ZF_MSG_ECHO_REQUEST ("echo.request")
    and for "enum code default=unknown" with members busy, unknown:
        zf_code_t with ZF_CODE_NONE (0, the empty string), ZF_CODE_BUSY, ZF_CODE_UNKNOWN;
        ZF_CODE_COUNT; zf_enum_code (its zf_enum_desc_t); zf_code_name (ZF_CODE_BUSY) is
        "busy"; zf_code_of ("busy") is ZF_CODE_BUSY.

    Enums. A str field declared with enum=NAME carries only NAME's words (or "", absent).
    Encoding a word the enum does not declare is refused (ZF_E_INVALID): a sender cannot put an
    undeclared code on the wire. Decoding one is refused too, unless the enum has a default=:
    then the field reads as the default word, so a newer peer's new code still decodes, as the
    catch-all the receiver already handles (for error codes: "unknown").

    C representation of each field kind:
        bool  -> bool          u64 -> uint64_t      i64 -> int64_t     f64 -> double
        str   -> char *        (heap, NUL-terminated, never NULL after init/decode)
        bin   -> zf_bytes_t    (heap copy)
        record-> the record's struct, embedded by value
        []T   -> zf_list_t     (heap array of T's C representation)

    Decoding copies everything it keeps, so a decoded struct does not point into the frame
    and outlives it; zf_schema_clear frees it. Unknown keys in a map are skipped: compatible
    schema changes add optional fields, and older readers must accept them. A struct built in
    C may leave optional strings NULL (they encode as ""), so `{.seq = 7}` is a valid body. */
#ifndef ZF_SCHEMA_H_INCLUDED
#define ZF_SCHEMA_H_INCLUDED

#include "zf_error.h"

typedef struct {
    uint8_t *data;
    size_t size;
} zf_bytes_t;

typedef struct {
    void *items; //  count elements of the field's element C type
    size_t count;
} zf_list_t;

typedef enum {
    ZF_FIELD_BOOL,
    ZF_FIELD_U64,
    ZF_FIELD_I64,
    ZF_FIELD_F64,
    ZF_FIELD_STR,
    ZF_FIELD_BIN,
    ZF_FIELD_RECORD,
} zf_field_kind_t;

typedef struct zf_record_desc_s zf_record_desc_t;

//  The words of a schema enum: names[value], names[0] "" (ZF_NAME_NONE).
typedef struct {
    const char *name; //  schema name ("code")
    const char *const *names;
    size_t count;      //  values, NONE included
    int default_value; //  what an undeclared word decodes to; 0: it is refused
} zf_enum_desc_t;

typedef struct {
    const char *name;     //  snake_case key in the msgpack map
    zf_field_kind_t kind; //  element kind when is_list
    bool is_list;         //  a msgpack array of `kind`
    bool required;        //  absent -> ZF_E_MISSING; otherwise the default applies
    size_t offset;        //  offsetof the field in the record's struct
    uint64_t max;         //  str/bin: max bytes; u64: max value; i64: max |value|; 0 = none
    uint64_t max_items;   //  lists: max element count (always set for lists)
    const zf_record_desc_t *record; //  for ZF_FIELD_RECORD
    const char *default_text;       //  default as text ("42", "true", "hello"); NULL = zero/empty
    //  Carries a secret (a credential): shown redacted in taps and logs (zf_redact.h).
    //  NULL: no; "": always; "FIELD:value|value": when the sibling str FIELD is one of the
    //  values (any case), as a header's value is when its name is Authorization
    const char *secret;
    const zf_enum_desc_t *enumeration; //  str: the only words allowed (plus ""); NULL = any
} zf_field_desc_t;

struct zf_record_desc_s {
    const char *name; //  schema name ("endpoint", or the message type for message bodies)
    size_t size;      //  sizeof the C struct
    const zf_field_desc_t *fields;
    size_t field_count;
};

typedef struct {
    const char *type;             //  lowercase dotted, "echo.request"
    uint32_t version;             //  schema version of this message type
    const zf_record_desc_t *body; //  the body record
} zf_msg_desc_t;

//  Bytes one value of the field's element kind takes in its C struct (a list's item stride).
size_t zf_schema_value_size (const zf_field_desc_t *field);

//  The value of word in e: 0 for NULL or "", -1 when e does not declare it.
int zf_schema_enum_find (const zf_enum_desc_t *e, const char *word, size_t word_len);

//  What the generated zf_NAME_of returns: as find, but an undeclared word gives e's default
//  (0 when e has none).
int zf_schema_enum_of (const zf_enum_desc_t *e, const char *word);

//  What the generated zf_NAME_name returns: names[value]; a value out of range asserts.
const char *zf_schema_enum_name (const zf_enum_desc_t *e, int value);

//  Sets every field of value to its default (strings to "" or their default text).
void zf_schema_init (const zf_record_desc_t *desc, void *value);

//  Frees everything value owns and leaves it zeroed (not re-initialised).
void zf_schema_clear (const zf_record_desc_t *desc, void *value);

//  Checks bounds and required strings of a value built in C. Encode calls it first.
zf_status_t zf_schema_validate (const zf_record_desc_t *desc, const void *value, zf_error_t *err);

//  Packs value as a msgpack map with one entry per field (defaults included).
zf_status_t zf_schema_encode (const zf_record_desc_t *desc, const void *value, msgpack_packer *pk,
                              zf_error_t *err);

//  Encodes a value that is valid by construction into a heap buffer of *size bytes (free it
//  with zf_free): an invalid value is a programming error, which asserts after naming the
//  field and why. For values from outside, use zf_schema_encode and handle its error.
uint8_t *zf_schema_encode_alloc (const zf_record_desc_t *desc, const void *value, size_t *size);

//  Decodes a msgpack map into value (which must be uninitialised or cleared). path prefixes
//  field names in errors ("body"). On failure value is cleared and err names the field.
zf_status_t zf_schema_decode (const zf_record_desc_t *desc, const msgpack_object *object,
                              void *value, const char *path, zf_error_t *err);

//  A deep copy of value into copy (uninitialised or cleared), by encoding and decoding it:
//  for a request kept beyond its callback. Fails as encode does (an invalid value).
zf_status_t zf_schema_copy (const zf_record_desc_t *desc, const void *value, void *copy,
                            zf_error_t *err);

//  Whole-buffer decode: unpacks exactly one msgpack object from data and refuses truncated
//  input (ZF_E_TRUNCATED), trailing bytes (ZF_E_TRAILING), bytes that are not msgpack
//  (ZF_E_INVALID) and nesting deeper than ZF_SCHEMA_DEPTH_MAX (ZF_E_TOO_LARGE), then decodes
//  it like zf_schema_decode with an empty path ("groups[2].name"). On failure value is zeroed.
zf_status_t zf_schema_decode_buffer (const zf_record_desc_t *desc, const uint8_t *data, size_t size,
                                     void *value, zf_error_t *err);

//  Maps and arrays nested in one buffer, counting the outermost: an envelope (1) and a body
//  with everything inside it (at most 12: zf_schemagen.py refuses deeper schemas), plus slack
//  for unknown fields that a newer schema added.
#define ZF_SCHEMA_DEPTH_MAX 16

//  The checked unpack under zf_schema_decode_buffer, for decoders of other shapes (the
//  envelope). Scans the bytes first, without allocating, so a container that claims more items
//  than the buffer holds is refused before msgpack-c reserves memory for them. Always call
//  msgpack_unpacked_destroy (result) afterwards; after a failure there is nothing in it.
//  where names the input in errors ("frame").
zf_status_t zf_schema_unpack (const uint8_t *data, size_t size, msgpack_unpacked *result,
                              const char *where, zf_error_t *err);

//  Builds msgpack by hand, for tests that need input no encoder would write (wrong types,
//  truncation, junk). Each format letter packs one item from the arguments; spaces are ignored:
//      M3 map header of 3 entries       A2 array header of 2 items (counts in the format)
//      s string (const char *)          S string with length (const char *, size_t)
//      B binary (const void *, size_t)  r raw bytes, unchecked (const void *, size_t)
//      u uint64_t    i int64_t    f double    t true    F false    n nil
//  Returns a heap buffer (free it) and its size; a bad format letter asserts.
//      uint8_t *data = zf_schema_build (&size, "M1 s u", "seq", (uint64_t) 7);
uint8_t *zf_schema_build (size_t *size, const char *format, ...);

//  What a msgpack object is, for error messages: "a string", "an array", "nil", …
const char *zf_schema_object_name (const msgpack_object *object);

//  The generated registry of message types (gen/zf_msgs.c).
const zf_msg_desc_t *zf_schema_find (const char *type, size_t type_len);
const zf_msg_desc_t *const *zf_schema_all (size_t *count);

void zf_schema_test (bool verbose);

#endif
