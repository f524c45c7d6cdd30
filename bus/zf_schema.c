/*  zf_schema.c — the table-driven codec for every message body: init, clear, validate, encode,
    and decode from a msgpack object.

    The generated descriptors (gen/zf_msgs.c) say where each field lives in its C struct and
    what bounds it has; this file walks them. Decoding is defensive in the Fluent Bit way: the
    raw bytes are first scanned once (zf_schema_unpack.c) so truncation, trailing bytes,
    invalid bytes and absurd nesting are refused before msgpack-c allocates anything, and then
    every value's msgpack type and bound is checked explicitly here, each failure with its own
    code and the path of the offending field. Nothing here asserts on input. */
#include "zf_schema.h"
#include <inttypes.h>

//  --------------------------------------------------------------------------------------------
//  Field paths for error messages ("body.groups[2].name"), kept as a chain of stack frames and
//  rendered only when an error is reported, so a successful decode pays nothing for them.

typedef struct s_path_s {
    const struct s_path_s *parent;
    const char *name; //  field name; NULL for a list index
    size_t index;
} s_path_t;

static void s_path_render (const s_path_t *path, char *out, size_t out_size, size_t *len)
{
    if (!path)
        return;
    s_path_render (path->parent, out, out_size, len);
    if (*len >= out_size)
        return;
    int added;
    if (!path->name)
        added = snprintf (out + *len, out_size - *len, "[%zu]", path->index);
    else if (*len == 0)
        added = snprintf (out + *len, out_size - *len, "%s", path->name);
    else
        added = snprintf (out + *len, out_size - *len, ".%s", path->name);
    if (added > 0)
        *len += (size_t) added;
}

static zf_status_t s_fail (zf_error_t *err, zf_status_t code, const s_path_t *path, const char *fmt,
                           ...) __attribute__ ((format (printf, 4, 5)));

static zf_status_t s_fail (zf_error_t *err, zf_status_t code, const s_path_t *path, const char *fmt,
                           ...)
{
    if (!err)
        return code;
    char where[sizeof err->where] = "";
    size_t len = 0;
    s_path_render (path, where, sizeof where, &len);
    char message[sizeof err->message];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    return zf_error_set (err, code, where, "%s", message);
}

const char *zf_schema_object_name (const msgpack_object *object)
{
    switch (object->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "a bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "a non-negative integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "a negative integer";
    case MSGPACK_OBJECT_FLOAT32: return "a float32";
    case MSGPACK_OBJECT_FLOAT64: return "a float64";
    case MSGPACK_OBJECT_STR: return "a string";
    case MSGPACK_OBJECT_ARRAY: return "an array";
    case MSGPACK_OBJECT_MAP: return "a map";
    case MSGPACK_OBJECT_BIN: return "a binary";
    case MSGPACK_OBJECT_EXT: return "an ext";
    }
    return "an unknown msgpack type";
}

static zf_status_t s_wrong_type (zf_error_t *err, const s_path_t *path, const char *expected,
                                 const msgpack_object *object)
{
    return s_fail (err, ZF_E_TYPE, path, "expected %s, got %s", expected,
                   zf_schema_object_name (object));
}

//  --------------------------------------------------------------------------------------------
//  Layout helpers

size_t zf_schema_value_size (const zf_field_desc_t *field)
{
    switch (field->kind) {
    case ZF_FIELD_BOOL: return sizeof (bool);
    case ZF_FIELD_U64: return sizeof (uint64_t);
    case ZF_FIELD_I64: return sizeof (int64_t);
    case ZF_FIELD_F64: return sizeof (double);
    case ZF_FIELD_STR: return sizeof (char *);
    case ZF_FIELD_BIN: return sizeof (zf_bytes_t);
    case ZF_FIELD_RECORD: return field->record->size;
    }
    ZF_ASSERT (!"unknown field kind");
    return 0;
}

static void *s_slot (const zf_field_desc_t *field, const void *value)
{
    return (char *) value + field->offset;
}

static void *s_element (const zf_field_desc_t *field, const zf_list_t *list, size_t index)
{
    return (char *) list->items + index * zf_schema_value_size (field);
}

//  The magnitude of an i64 as a u64, without overflowing on INT64_MIN.
static uint64_t s_magnitude (int64_t number)
{
    return number < 0 ? (uint64_t) (-(number + 1)) + 1 : (uint64_t) number;
}

//  --------------------------------------------------------------------------------------------
//  Enums: a handful of short words each, so a linear scan is as fast as anything.

int zf_schema_enum_find (const zf_enum_desc_t *e, const char *word, size_t word_len)
{
    ZF_ASSERT (e);
    if (!word || word_len == 0)
        return 0;
    for (size_t value = 1; value < e->count; value++) {
        const char *name = e->names[value];
        if (strlen (name) == word_len && memcmp (name, word, word_len) == 0)
            return (int) value;
    }
    return -1;
}

int zf_schema_enum_of (const zf_enum_desc_t *e, const char *word)
{
    int value = zf_schema_enum_find (e, word, word ? strlen (word) : 0);
    return value < 0 ? e->default_value : value;
}

const char *zf_schema_enum_name (const zf_enum_desc_t *e, int value)
{
    ZF_ASSERT (e && value >= 0 && (size_t) value < e->count);
    return e->names[value];
}

//  --------------------------------------------------------------------------------------------
//  Init and clear

//  Defaults were checked by zf_schemagen.py, so a default that does not parse is a bug in the
//  generator. Parsing assumes the "C" locale, which zfly never changes.
static void s_init_scalar (const zf_field_desc_t *field, void *slot)
{
    const char *text = field->default_text;
    char *end = NULL;
    switch (field->kind) {
    case ZF_FIELD_BOOL: *(bool *) slot = text && streq (text, "true"); return;
    case ZF_FIELD_U64: *(uint64_t *) slot = text ? strtoull (text, &end, 10) : 0; break;
    case ZF_FIELD_I64: *(int64_t *) slot = text ? strtoll (text, &end, 10) : 0; break;
    case ZF_FIELD_F64: *(double *) slot = text ? strtod (text, &end) : 0.0; break;
    case ZF_FIELD_STR: *(char **) slot = zf_strdup (text ? text : ""); return;
    case ZF_FIELD_BIN: return; //  zeroed: no data
    case ZF_FIELD_RECORD: zf_schema_init (field->record, slot); return;
    }
    ZF_ASSERT (!text || (end && *end == '\0'));
}

void zf_schema_init (const zf_record_desc_t *desc, void *value)
{
    ZF_ASSERT (desc && value);
    memset (value, 0, desc->size);
    for (size_t index = 0; index < desc->field_count; index++) {
        const zf_field_desc_t *field = &desc->fields[index];
        if (!field->is_list) //  lists start empty: zeroed above
            s_init_scalar (field, s_slot (field, value));
    }
}

static void s_clear_value (const zf_field_desc_t *field, void *slot)
{
    if (field->kind == ZF_FIELD_STR)
        zf_free (*(char **) slot);
    else if (field->kind == ZF_FIELD_BIN)
        zf_free (((zf_bytes_t *) slot)->data);
    else if (field->kind == ZF_FIELD_RECORD)
        zf_schema_clear (field->record, slot);
}

void zf_schema_clear (const zf_record_desc_t *desc, void *value)
{
    ZF_ASSERT (desc);
    if (!value)
        return;
    for (size_t index = 0; index < desc->field_count; index++) {
        const zf_field_desc_t *field = &desc->fields[index];
        void *slot = s_slot (field, value);
        if (field->is_list) {
            zf_list_t *list = slot;
            for (size_t item = 0; list->items && item < list->count; item++)
                s_clear_value (field, s_element (field, list, item));
            zf_free (list->items);
        } else
            s_clear_value (field, slot);
    }
    memset (value, 0, desc->size);
}

//  --------------------------------------------------------------------------------------------
//  Validate: the bounds a decoder would enforce, applied to a value built in C.

static zf_status_t s_validate_record (const zf_record_desc_t *desc, const void *value,
                                      const s_path_t *path, zf_error_t *err);

static zf_status_t s_validate_number (const zf_field_desc_t *field, const void *slot,
                                      const s_path_t *path, zf_error_t *err)
{
    if (field->max == 0)
        return ZF_OK;
    if (field->kind == ZF_FIELD_U64) {
        uint64_t number = *(const uint64_t *) slot;
        if (number > field->max)
            return s_fail (err, ZF_E_TOO_LARGE, path, "value %" PRIu64 " is over max %" PRIu64,
                           number, field->max);
    } else if (field->kind == ZF_FIELD_I64) {
        int64_t number = *(const int64_t *) slot;
        if (s_magnitude (number) > field->max)
            return s_fail (err, ZF_E_TOO_LARGE, path,
                           "value %" PRId64 " is over max magnitude %" PRIu64, number, field->max);
    } else if (field->kind == ZF_FIELD_F64) {
        double number = *(const double *) slot;
        //  Written so that NaN fails too: it is no magnitude at all.
        if (!((number < 0 ? -number : number) <= (double) field->max))
            return s_fail (err, ZF_E_TOO_LARGE, path, "value %g is over max magnitude %" PRIu64,
                           number, field->max);
    }
    return ZF_OK;
}

static zf_status_t s_validate_value (const zf_field_desc_t *field, const void *slot,
                                     const s_path_t *path, zf_error_t *err)
{
    switch (field->kind) {
    case ZF_FIELD_BOOL: return ZF_OK;
    case ZF_FIELD_U64:
    case ZF_FIELD_I64:
    case ZF_FIELD_F64: return s_validate_number (field, slot, path, err);
    case ZF_FIELD_STR: {
        const char *text = *(char *const *) slot;
        if (!text) //  an optional NULL string encodes as "": a {0}-initialised struct works
            return field->required && !field->is_list
                       ? s_fail (err, ZF_E_MISSING, path, "required string is NULL")
                       : ZF_OK;
        size_t len = strlen (text);
        if (field->max && len > field->max)
            return s_fail (err, ZF_E_TOO_LARGE, path, "string of %zu bytes is over max %" PRIu64,
                           len, field->max);
        if (field->enumeration && zf_schema_enum_find (field->enumeration, text, len) < 0)
            return s_fail (err, ZF_E_INVALID, path, "'%s' is not a declared %s", text,
                           field->enumeration->name);
        return ZF_OK;
    }
    case ZF_FIELD_BIN: {
        const zf_bytes_t *bytes = slot;
        if (!bytes->data && bytes->size > 0)
            return s_fail (err, ZF_E_INVALID, path, "binary of %zu bytes has no data", bytes->size);
        if (field->max && bytes->size > field->max)
            return s_fail (err, ZF_E_TOO_LARGE, path, "binary of %zu bytes is over max %" PRIu64,
                           bytes->size, field->max);
        return ZF_OK;
    }
    case ZF_FIELD_RECORD: return s_validate_record (field->record, slot, path, err);
    }
    return s_fail (err, ZF_E_INTERNAL, path, "unknown field kind %d", (int) field->kind);
}

static zf_status_t s_validate_list (const zf_field_desc_t *field, const zf_list_t *list,
                                    const s_path_t *path, zf_error_t *err)
{
    if (list->count > field->max_items)
        return s_fail (err, ZF_E_TOO_LARGE, path, "list of %zu items is over max %" PRIu64,
                       list->count, field->max_items);
    if (!list->items && list->count > 0)
        return s_fail (err, ZF_E_INVALID, path, "list of %zu items has no items", list->count);
    for (size_t index = 0; index < list->count; index++) {
        s_path_t item_path = {path, NULL, index};
        zf_status_t rc = s_validate_value (field, s_element (field, list, index), &item_path, err);
        if (rc != ZF_OK)
            return rc;
    }
    return ZF_OK;
}

static zf_status_t s_validate_record (const zf_record_desc_t *desc, const void *value,
                                      const s_path_t *path, zf_error_t *err)
{
    for (size_t index = 0; index < desc->field_count; index++) {
        const zf_field_desc_t *field = &desc->fields[index];
        s_path_t field_path = {path, field->name, 0};
        const void *slot = s_slot (field, value);
        zf_status_t rc = field->is_list ? s_validate_list (field, slot, &field_path, err)
                                        : s_validate_value (field, slot, &field_path, err);
        if (rc != ZF_OK)
            return rc;
    }
    return ZF_OK;
}

zf_status_t zf_schema_validate (const zf_record_desc_t *desc, const void *value, zf_error_t *err)
{
    ZF_ASSERT (desc && value);
    return s_validate_record (desc, value, NULL, err);
}

//  --------------------------------------------------------------------------------------------
//  Encode. Integers take msgpack-c's shortest form and every f64 is a float64, so one value has
//  one encoding: the golden files depend on it.

static int s_encode_record (const zf_record_desc_t *desc, const void *value, msgpack_packer *pk);

static int s_encode_value (const zf_field_desc_t *field, const void *slot, msgpack_packer *pk)
{
    switch (field->kind) {
    case ZF_FIELD_BOOL:
        return *(const bool *) slot ? msgpack_pack_true (pk) : msgpack_pack_false (pk);
    case ZF_FIELD_U64: return msgpack_pack_uint64 (pk, *(const uint64_t *) slot);
    case ZF_FIELD_I64: return msgpack_pack_int64 (pk, *(const int64_t *) slot);
    case ZF_FIELD_F64: return msgpack_pack_double (pk, *(const double *) slot);
    case ZF_FIELD_STR: {
        const char *text = *(char *const *) slot ? *(char *const *) slot : "";
        size_t len = strlen (text);
        return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, text, len);
    }
    case ZF_FIELD_BIN: {
        const zf_bytes_t *bytes = slot;
        return msgpack_pack_bin (pk, bytes->size)
               || (bytes->size > 0 && msgpack_pack_bin_body (pk, bytes->data, bytes->size));
    }
    case ZF_FIELD_RECORD: return s_encode_record (field->record, slot, pk);
    }
    return -1;
}

static int s_encode_list (const zf_field_desc_t *field, const zf_list_t *list, msgpack_packer *pk)
{
    if (msgpack_pack_array (pk, list->count))
        return -1;
    for (size_t index = 0; index < list->count; index++)
        if (s_encode_value (field, s_element (field, list, index), pk))
            return -1;
    return 0;
}

static int s_encode_record (const zf_record_desc_t *desc, const void *value, msgpack_packer *pk)
{
    if (msgpack_pack_map (pk, desc->field_count))
        return -1;
    for (size_t index = 0; index < desc->field_count; index++) {
        const zf_field_desc_t *field = &desc->fields[index];
        size_t name_len = strlen (field->name);
        const void *slot = s_slot (field, value);
        if (msgpack_pack_str (pk, name_len) || msgpack_pack_str_body (pk, field->name, name_len))
            return -1;
        if (field->is_list ? s_encode_list (field, slot, pk) : s_encode_value (field, slot, pk))
            return -1;
    }
    return 0;
}

zf_status_t zf_schema_encode (const zf_record_desc_t *desc, const void *value, msgpack_packer *pk,
                              zf_error_t *err)
{
    ZF_ASSERT (desc && value && pk);
    zf_status_t rc = zf_schema_validate (desc, value, err);
    if (rc != ZF_OK)
        return rc;
    if (s_encode_record (desc, value, pk))
        return zf_error_set (err, ZF_E_IO, desc->name, "msgpack writer failed");
    return ZF_OK;
}

uint8_t *zf_schema_encode_alloc (const zf_record_desc_t *desc, const void *value, size_t *size)
{
    ZF_ASSERT (size);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    zf_error_t err;
    zf_status_t rc = zf_schema_encode (desc, value, &packer, &err);
    if (rc != ZF_OK)
        fprintf (stderr, "zf_schema_encode_alloc: %s: %s: %s\n", desc->name, err.where,
                 err.message);
    ZF_ASSERT (rc == ZF_OK);
    *size = buffer.size;
    return (uint8_t *) msgpack_sbuffer_release (&buffer); //  from malloc: zf_free frees it
}

//  --------------------------------------------------------------------------------------------
//  Decode from a msgpack object. The value was initialised (defaults) before any of these run,
//  so a failure part way leaves it in a state zf_schema_clear can free.

static zf_status_t s_decode_map (const zf_record_desc_t *desc, const msgpack_object *object,
                                 void *value, const s_path_t *path, zf_error_t *err);

static zf_status_t s_decode_u64 (const zf_field_desc_t *field, const msgpack_object *object,
                                 uint64_t *slot, const s_path_t *path, zf_error_t *err)
{
    if (object->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return s_wrong_type (err, path, "a non-negative integer", object);
    if (field->max && object->via.u64 > field->max)
        return s_fail (err, ZF_E_TOO_LARGE, path, "value %" PRIu64 " is over max %" PRIu64,
                       object->via.u64, field->max);
    *slot = object->via.u64;
    return ZF_OK;
}

static zf_status_t s_decode_i64 (const zf_field_desc_t *field, const msgpack_object *object,
                                 int64_t *slot, const s_path_t *path, zf_error_t *err)
{
    int64_t number;
    if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (object->via.u64 > INT64_MAX)
            return s_fail (err, ZF_E_TOO_LARGE, path, "value %" PRIu64 " is over the i64 range",
                           object->via.u64);
        number = (int64_t) object->via.u64;
    } else if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        number = object->via.i64;
    else
        return s_wrong_type (err, path, "an integer", object);
    if (field->max && s_magnitude (number) > field->max)
        return s_fail (err, ZF_E_TOO_LARGE, path,
                       "value %" PRId64 " is over max magnitude %" PRIu64, number, field->max);
    *slot = number;
    return ZF_OK;
}

static zf_status_t s_decode_f64 (const zf_field_desc_t *field, const msgpack_object *object,
                                 double *slot, const s_path_t *path, zf_error_t *err)
{
    double number;
    if (object->type == MSGPACK_OBJECT_FLOAT32 || object->type == MSGPACK_OBJECT_FLOAT64)
        number = object->via.f64;
    else if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        number = (double) object->via.u64;
    else if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        number = (double) object->via.i64;
    else
        return s_wrong_type (err, path, "a number", object);
    *slot = number;
    return s_validate_number (field, slot, path, err);
}

static zf_status_t s_decode_str (const zf_field_desc_t *field, const msgpack_object *object,
                                 char **slot, const s_path_t *path, zf_error_t *err)
{
    if (object->type != MSGPACK_OBJECT_STR)
        return s_wrong_type (err, path, "a string", object);
    const msgpack_object_str *text = &object->via.str;
    if (field->max && text->size > field->max)
        return s_fail (err, ZF_E_TOO_LARGE, path,
                       "string of %" PRIu32 " bytes is over max %" PRIu64, text->size, field->max);
    const char *nul = text->size ? memchr (text->ptr, '\0', text->size) : NULL;
    if (nul)
        return s_fail (err, ZF_E_INVALID, path, "string has a NUL byte at offset %td",
                       nul - text->ptr);
    const char *word = text->ptr;
    size_t word_len = text->size;
    const zf_enum_desc_t *e = field->enumeration;
    if (e && zf_schema_enum_find (e, word, word_len) < 0) {
        if (e->default_value == 0)
            return s_fail (err, ZF_E_INVALID, path, "'%.*s' is not a declared %s",
                           (int) (word_len > 64 ? 64 : word_len), word, e->name);
        word = e->names[e->default_value]; //  a newer peer's word: the documented catch-all
        word_len = strlen (word);
    }
    char *copy = zf_malloc (word_len + 1);
    if (word_len)
        memcpy (copy, word, word_len);
    copy[word_len] = '\0';
    zf_free (*slot); //  the default from init, or NULL for a list item
    *slot = copy;
    return ZF_OK;
}

static zf_status_t s_decode_bin (const zf_field_desc_t *field, const msgpack_object *object,
                                 zf_bytes_t *slot, const s_path_t *path, zf_error_t *err)
{
    if (object->type != MSGPACK_OBJECT_BIN)
        return s_wrong_type (err, path, "a binary", object);
    const msgpack_object_bin *bin = &object->via.bin;
    if (field->max && bin->size > field->max)
        return s_fail (err, ZF_E_TOO_LARGE, path,
                       "binary of %" PRIu32 " bytes is over max %" PRIu64, bin->size, field->max);
    zf_free (slot->data);
    slot->data = NULL;
    slot->size = bin->size;
    if (bin->size) {
        slot->data = zf_malloc (bin->size);
        memcpy (slot->data, bin->ptr, bin->size);
    }
    return ZF_OK;
}

static zf_status_t s_decode_value (const zf_field_desc_t *field, const msgpack_object *object,
                                   void *slot, const s_path_t *path, zf_error_t *err)
{
    switch (field->kind) {
    case ZF_FIELD_BOOL:
        if (object->type != MSGPACK_OBJECT_BOOLEAN)
            return s_wrong_type (err, path, "a bool", object);
        *(bool *) slot = object->via.boolean;
        return ZF_OK;
    case ZF_FIELD_U64: return s_decode_u64 (field, object, slot, path, err);
    case ZF_FIELD_I64: return s_decode_i64 (field, object, slot, path, err);
    case ZF_FIELD_F64: return s_decode_f64 (field, object, slot, path, err);
    case ZF_FIELD_STR: return s_decode_str (field, object, slot, path, err);
    case ZF_FIELD_BIN: return s_decode_bin (field, object, slot, path, err);
    case ZF_FIELD_RECORD: return s_decode_map (field->record, object, slot, path, err);
    }
    return s_fail (err, ZF_E_INTERNAL, path, "unknown field kind %d", (int) field->kind);
}

static zf_status_t s_decode_list (const zf_field_desc_t *field, const msgpack_object *object,
                                  zf_list_t *list, const s_path_t *path, zf_error_t *err)
{
    if (object->type != MSGPACK_OBJECT_ARRAY)
        return s_wrong_type (err, path, "an array", object);
    size_t count = object->via.array.size;
    if (count > field->max_items)
        return s_fail (err, ZF_E_TOO_LARGE, path, "list of %zu items is over max %" PRIu64, count,
                       field->max_items);
    //  Set before decoding items, so a failure part way frees the ones already decoded.
    list->items = count ? zf_calloc (count, zf_schema_value_size (field)) : NULL;
    list->count = count;
    for (size_t index = 0; index < count; index++) {
        void *item = s_element (field, list, index);
        if (field->kind == ZF_FIELD_RECORD)
            zf_schema_init (field->record, item);
        s_path_t item_path = {path, NULL, index};
        zf_status_t rc =
            s_decode_value (field, &object->via.array.ptr[index], item, &item_path, err);
        if (rc != ZF_OK)
            return rc;
    }
    return ZF_OK;
}

static const zf_field_desc_t *s_find_field (const zf_record_desc_t *desc, const char *name,
                                            size_t name_len, size_t *index)
{
    for (*index = 0; *index < desc->field_count; (*index)++) {
        const zf_field_desc_t *field = &desc->fields[*index];
        if (strlen (field->name) == name_len && memcmp (field->name, name, name_len) == 0)
            return field;
    }
    return NULL;
}

static zf_status_t s_decode_entry (const zf_record_desc_t *desc, const msgpack_object_kv *entry,
                                   void *value, bool *seen, const s_path_t *path, zf_error_t *err)
{
    if (entry->key.type != MSGPACK_OBJECT_STR)
        return s_fail (err, ZF_E_TYPE, path, "expected string keys, got %s",
                       zf_schema_object_name (&entry->key));
    size_t index;
    const zf_field_desc_t *field =
        s_find_field (desc, entry->key.via.str.ptr, entry->key.via.str.size, &index);
    if (!field) //  added by a newer schema: compatible changes must be accepted
        return ZF_OK;
    s_path_t field_path = {path, field->name, 0};
    if (seen[index])
        return s_fail (err, ZF_E_INVALID, &field_path, "duplicate key");
    seen[index] = true;
    void *slot = s_slot (field, value);
    return field->is_list ? s_decode_list (field, &entry->val, slot, &field_path, err)
                          : s_decode_value (field, &entry->val, slot, &field_path, err);
}

static zf_status_t s_decode_map (const zf_record_desc_t *desc, const msgpack_object *object,
                                 void *value, const s_path_t *path, zf_error_t *err)
{
    if (object->type != MSGPACK_OBJECT_MAP)
        return s_wrong_type (err, path, "a map", object);
    bool *seen = zf_calloc (desc->field_count, sizeof (bool));
    zf_status_t rc = ZF_OK;
    for (uint32_t index = 0; rc == ZF_OK && index < object->via.map.size; index++)
        rc = s_decode_entry (desc, &object->via.map.ptr[index], value, seen, path, err);
    for (size_t index = 0; rc == ZF_OK && index < desc->field_count; index++) {
        s_path_t field_path = {path, desc->fields[index].name, 0};
        if (desc->fields[index].required && !seen[index])
            rc = s_fail (err, ZF_E_MISSING, &field_path, "required field is missing");
    }
    zf_free (seen);
    return rc;
}

zf_status_t zf_schema_decode (const zf_record_desc_t *desc, const msgpack_object *object,
                              void *value, const char *path, zf_error_t *err)
{
    ZF_ASSERT (desc && object && value);
    s_path_t root = {NULL, path ? path : "", 0};
    zf_schema_init (desc, value);
    zf_status_t rc = s_decode_map (desc, object, value, &root, err);
    if (rc != ZF_OK)
        zf_schema_clear (desc, value);
    return rc;
}

//  --------------------------------------------------------------------------------------------
//  Copies: encoded, then decoded again.

zf_status_t zf_schema_copy (const zf_record_desc_t *desc, const void *value, void *copy,
                            zf_error_t *err)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    zf_status_t status = zf_schema_encode (desc, value, &packer, err);
    if (status == ZF_OK)
        status =
            zf_schema_decode_buffer (desc, (const uint8_t *) buffer.data, buffer.size, copy, err);
    else
        memset (copy, 0, desc->size);
    msgpack_sbuffer_destroy (&buffer);
    return status;
}
