/*  zf_schema.c — the table-driven codec for every message body.

    The generated descriptors (gen/zf_msgs.c) say where each field lives in its C struct and
    what bounds it has; this file walks them. Decoding is defensive in the Fluent Bit way: the
    raw bytes are first scanned once (s_scan) so truncation, trailing bytes, invalid bytes and
    absurd nesting are refused before msgpack-c allocates anything, and then every value's
    msgpack type and bound is checked explicitly, each failure with its own code and the path
    of the offending field. Nothing here asserts on input. */
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
//  Init and clear

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
//  Whole-buffer decode. msgpack-c allocates an array's or map's slots as soon as it reads the
//  count, so five bytes claiming four billion items would ask for 100 GB. s_scan walks the
//  bytes first, without allocating, and proves every container's items are really there.

//  The msgpack formats 0xc0..0xdf (the others carry their size in the type byte).
typedef struct {
    uint8_t length_size; //  bytes of a big-endian length or count after the type byte
    uint8_t payload;     //  fixed bytes after that; ext's type byte counts here
    uint8_t per_count;   //  containers: objects per counted item (array 1, map 2)
} s_format_t;

static const s_format_t s_formats[0x20] = {
    [0xc4 - 0xc0] = {1, 0, 0},  //  bin8
    [0xc5 - 0xc0] = {2, 0, 0},  //  bin16
    [0xc6 - 0xc0] = {4, 0, 0},  //  bin32
    [0xc7 - 0xc0] = {1, 1, 0},  //  ext8
    [0xc8 - 0xc0] = {2, 1, 0},  //  ext16
    [0xc9 - 0xc0] = {4, 1, 0},  //  ext32
    [0xca - 0xc0] = {0, 4, 0},  //  float32
    [0xcb - 0xc0] = {0, 8, 0},  //  float64
    [0xcc - 0xc0] = {0, 1, 0},  //  uint8
    [0xcd - 0xc0] = {0, 2, 0},  //  uint16
    [0xce - 0xc0] = {0, 4, 0},  //  uint32
    [0xcf - 0xc0] = {0, 8, 0},  //  uint64
    [0xd0 - 0xc0] = {0, 1, 0},  //  int8
    [0xd1 - 0xc0] = {0, 2, 0},  //  int16
    [0xd2 - 0xc0] = {0, 4, 0},  //  int32
    [0xd3 - 0xc0] = {0, 8, 0},  //  int64
    [0xd4 - 0xc0] = {0, 2, 0},  //  fixext1
    [0xd5 - 0xc0] = {0, 3, 0},  //  fixext2
    [0xd6 - 0xc0] = {0, 5, 0},  //  fixext4
    [0xd7 - 0xc0] = {0, 9, 0},  //  fixext8
    [0xd8 - 0xc0] = {0, 17, 0}, //  fixext16
    [0xd9 - 0xc0] = {1, 0, 0},  //  str8
    [0xda - 0xc0] = {2, 0, 0},  //  str16
    [0xdb - 0xc0] = {4, 0, 0},  //  str32
    [0xdc - 0xc0] = {2, 0, 1},  //  array16
    [0xdd - 0xc0] = {4, 0, 1},  //  array32
    [0xde - 0xc0] = {2, 0, 2},  //  map16
    [0xdf - 0xc0] = {4, 0, 2},  //  map32
    //  0xc0 nil, 0xc2 false, 0xc3 true: nothing follows; 0xc1 is never used
};

static uint64_t s_read_be (const uint8_t *data, size_t size)
{
    uint64_t number = 0;
    for (size_t index = 0; index < size; index++)
        number = (number << 8) | data[index];
    return number;
}

static zf_status_t s_truncated (size_t size, const char *where, zf_error_t *err)
{
    return zf_error_set (err, ZF_E_TRUNCATED, where, "input ends inside a value at byte %zu", size);
}

//  Steps over the object at *offset, checking its bytes are there; a container's items are
//  not stepped over but counted into *items, for the caller to visit.
static zf_status_t s_scan_one (const uint8_t *data, size_t size, size_t *offset, uint64_t *items,
                               const char *where, zf_error_t *err)
{
    if (*offset >= size)
        return s_truncated (size, where, err);
    uint8_t byte = data[(*offset)++];
    uint64_t payload = 0;
    *items = 0;
    if (byte <= 0x7f || byte >= 0xe0)
        return ZF_OK; //  fixint
    else if (byte <= 0x8f)
        *items = 2u * (byte & 0x0f); //  fixmap
    else if (byte <= 0x9f)
        *items = byte & 0x0f; //  fixarray
    else if (byte <= 0xbf)
        payload = byte & 0x1f; //  fixstr
    else if (byte == 0xc1)
        return zf_error_set (err, ZF_E_INVALID, where, "byte 0xc1 at offset %zu is not msgpack",
                             *offset - 1);
    else {
        s_format_t format = s_formats[byte - 0xc0];
        if (size - *offset < format.length_size)
            return s_truncated (size, where, err);
        uint64_t length = s_read_be (data + *offset, format.length_size);
        *offset += format.length_size;
        if (format.per_count)
            *items = length * format.per_count;
        else
            payload = format.payload + length;
    }
    if (payload > size - *offset)
        return s_truncated (size, where, err);
    *offset += (size_t) payload;
    return ZF_OK;
}

//  Checks data holds exactly one complete msgpack object nested at most ZF_SCHEMA_DEPTH_MAX deep.
static zf_status_t s_scan (const uint8_t *data, size_t size, const char *where, zf_error_t *err)
{
    uint64_t pending[ZF_SCHEMA_DEPTH_MAX + 1]; //  objects still to read, per open container
    size_t depth = 0;
    size_t offset = 0;
    pending[0] = 1;
    while (true) {
        while (depth > 0 && pending[depth] == 0)
            depth--;
        if (depth == 0 && pending[0] == 0)
            break;
        pending[depth]--;
        uint64_t items;
        zf_status_t rc = s_scan_one (data, size, &offset, &items, where, err);
        if (rc != ZF_OK)
            return rc;
        if (items == 0)
            continue;
        if (depth == ZF_SCHEMA_DEPTH_MAX)
            return zf_error_set (err, ZF_E_TOO_LARGE, where, "msgpack nested deeper than %d levels",
                                 ZF_SCHEMA_DEPTH_MAX);
        pending[++depth] = items;
    }
    if (offset != size)
        return zf_error_set (err, ZF_E_TRAILING, where, "%zu byte(s) left over after the value",
                             size - offset);
    return ZF_OK;
}

zf_status_t zf_schema_unpack (const uint8_t *data, size_t size, msgpack_unpacked *result,
                              const char *where, zf_error_t *err)
{
    ZF_ASSERT (result);
    msgpack_unpacked_init (result);
    if (!data && size > 0)
        return zf_error_set (err, ZF_E_INTERNAL, where, "no data for %zu bytes", size);
    zf_status_t rc = s_scan (data, size, where, err);
    if (rc != ZF_OK)
        return rc;
    //  The scan proved the shape; these checks only guard against a disagreement with it.
    size_t offset = 0;
    msgpack_unpack_return ret = msgpack_unpack_next (result, (const char *) data, size, &offset);
    if (ret == MSGPACK_UNPACK_CONTINUE)
        rc = zf_error_set (err, ZF_E_TRUNCATED, where, "input ends inside a value");
    else if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = zf_error_set (err, ZF_E_TOO_LARGE, where, "msgpack ran out of memory");
    else if (ret != MSGPACK_UNPACK_SUCCESS)
        rc = zf_error_set (err, ZF_E_INVALID, where, "msgpack parse error");
    else if (offset != size)
        rc = zf_error_set (err, ZF_E_TRAILING, where, "%zu byte(s) left over after the value",
                           size - offset);
    if (rc != ZF_OK)
        msgpack_unpacked_destroy (result);
    return rc;
}

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

zf_status_t zf_schema_decode_buffer (const zf_record_desc_t *desc, const uint8_t *data, size_t size,
                                     void *value, zf_error_t *err)
{
    ZF_ASSERT (desc && value);
    memset (value, 0, desc->size); //  the failure contract: value cleared
    msgpack_unpacked result;
    zf_status_t rc = zf_schema_unpack (data, size, &result, "", err);
    if (rc == ZF_OK)
        rc = zf_schema_decode (desc, &result.data, value, "", err);
    msgpack_unpacked_destroy (&result);
    return rc;
}

//  --------------------------------------------------------------------------------------------
//  Hand-made msgpack for tests

static void s_build_one (msgpack_packer *pk, msgpack_sbuffer *buffer, char letter, va_list *args)
{
    switch (letter) {
    case 's': {
        const char *text = va_arg (*args, const char *);
        msgpack_pack_str_with_body (pk, text, strlen (text));
        break;
    }
    case 'S': {
        const char *text = va_arg (*args, const char *);
        msgpack_pack_str_with_body (pk, text, va_arg (*args, size_t));
        break;
    }
    case 'B': {
        const void *data = va_arg (*args, const void *);
        msgpack_pack_bin_with_body (pk, data, va_arg (*args, size_t));
        break;
    }
    case 'r': {
        const void *data = va_arg (*args, const void *);
        msgpack_sbuffer_write (buffer, data, va_arg (*args, size_t));
        break;
    }
    case 'u': msgpack_pack_uint64 (pk, va_arg (*args, uint64_t)); break;
    case 'i': msgpack_pack_int64 (pk, va_arg (*args, int64_t)); break;
    case 'f': msgpack_pack_double (pk, va_arg (*args, double)); break;
    case 't': msgpack_pack_true (pk); break;
    case 'F': msgpack_pack_false (pk); break;
    case 'n': msgpack_pack_nil (pk); break;
    default: ZF_ASSERT (!"zf_schema_build: unknown format letter");
    }
}

//  "M3" and "A2": a map or array header with the count written after the letter.
static const char *s_build_header (msgpack_packer *pk, const char *letter)
{
    char *end = NULL;
    unsigned long count = strtoul (letter + 1, &end, 10);
    ZF_ASSERT (end != letter + 1 && "zf_schema_build: M and A need a count");
    if (*letter == 'M')
        msgpack_pack_map (pk, count);
    else
        msgpack_pack_array (pk, count);
    return end - 1;
}

uint8_t *zf_schema_build (size_t *size, const char *format, ...)
{
    ZF_ASSERT (size && format);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    va_list args;
    va_start (args, format);
    for (const char *letter = format; *letter; letter++) {
        if (*letter == 'M' || *letter == 'A')
            letter = s_build_header (&pk, letter);
        else if (*letter != ' ')
            s_build_one (&pk, &buffer, *letter, &args);
    }
    va_end (args);
    *size = buffer.size;
    return (uint8_t *) msgpack_sbuffer_release (&buffer);
}

//  --------------------------------------------------------------------------------------------
//  Selftest. Uses selftest.sample (schemas/selftest.schema), which has a field of every kind.

#include "zf_msgs.h"

#define S_SAMPLE (zf_msg_selftest_sample.body)

//  Decodes data as a selftest.sample body and requires exactly this failure; on failure the
//  value must be left zeroed.
static void s_test_refuses (const uint8_t *data, size_t size, zf_status_t code, const char *where,
                            const char *message)
{
    zf_msg_selftest_sample_t sample;
    zf_msg_selftest_sample_t zeroed;
    memset (&zeroed, 0, sizeof zeroed);
    zf_error_t err;
    zf_error_clear (&err);
    zf_status_t rc = zf_schema_decode_buffer (S_SAMPLE, data, size, &sample, &err);
    if (rc != code || !streq (err.where, where) || (message && !streq (err.message, message)))
        fprintf (stderr, "zf_schema_test: expected %s '%s' '%s', got %s '%s' '%s'\n",
                 zf_status_name (code), where, message ? message : "*", zf_status_name (rc),
                 err.where, err.message);
    ZF_ASSERT (rc == code);
    ZF_ASSERT (streq (err.where, where));
    ZF_ASSERT (!message || streq (err.message, message));
    ZF_ASSERT (memcmp (&sample, &zeroed, sizeof sample) == 0);
}

//  A body with the three required fields, where key (if required) is replaced by, or (if not)
//  joins them with, the value already packed in value/value_size.
static uint8_t *s_test_body_with (size_t *size, const char *key, const void *value,
                                  size_t value_size)
{
    const char *required[] = {"flag", "count", "name"};
    const uint8_t required_values[][4] = {{0xc3}, {0x05}, {0xa1, 'x'}};
    const size_t required_sizes[] = {1, 1, 2};
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    bool replaces = false;
    for (size_t index = 0; index < 3; index++)
        replaces |= streq (key, required[index]);
    msgpack_pack_map (&pk, replaces ? 3 : 4);
    for (size_t index = 0; index < 3; index++) {
        if (streq (key, required[index]))
            continue;
        msgpack_pack_str_with_body (&pk, required[index], strlen (required[index]));
        msgpack_sbuffer_write (&buffer, (const char *) required_values[index],
                               required_sizes[index]);
    }
    msgpack_pack_str_with_body (&pk, key, strlen (key));
    msgpack_sbuffer_write (&buffer, value, value_size);
    *size = buffer.size;
    return (uint8_t *) msgpack_sbuffer_release (&buffer);
}

//  s_test_body_with, the value given as a zf_schema_build format.
static void s_test_field_refuses (const char *key, const uint8_t *value, size_t value_size,
                                  zf_status_t code, const char *where, const char *message)
{
    size_t size;
    uint8_t *data = s_test_body_with (&size, key, value, value_size);
    s_test_refuses (data, size, code, where, message);
    zf_free (data);
}

static void *s_test_array (size_t count, size_t item_size, const void *items)
{
    void *copy = zf_malloc (count * item_size);
    memcpy (copy, items, count * item_size);
    return copy;
}

//  Fills every field of a sample, every list with items, as a caller building a message would.
static void s_test_fill (zf_msg_selftest_sample_t *sample)
{
    zf_schema_init (S_SAMPLE, sample);
    sample->flag = true;
    sample->count = 1000000;
    zf_free (sample->name);
    sample->name = zf_strdup ("sample");
    sample->delta = -1000;
    sample->ratio = -2.25;
    sample->big = UINT64_MAX;
    sample->skew = INT64_MIN;
    sample->blob.data = s_test_array (3, 1, "\x00\xff\x10");
    sample->blob.size = 3;
    sample->origin.x = -7;
    sample->origin.tags.items = s_test_array (2, sizeof (uint64_t), (uint64_t[]){1, 1000});
    sample->origin.tags.count = 2;
    sample->numbers.items = s_test_array (3, sizeof (uint64_t), (uint64_t[]){0, 255, 65536});
    sample->numbers.count = 3;
    sample->offsets.items = s_test_array (2, sizeof (int64_t), (int64_t[]){-100, 100});
    sample->offsets.count = 2;
    sample->weights.items = s_test_array (2, sizeof (double), (double[]){0.5, -1e300});
    sample->weights.count = 2;
    sample->switches.items = s_test_array (2, sizeof (bool), (bool[]){true, false});
    sample->switches.count = 2;
    char **words = zf_calloc (2, sizeof (char *));
    words[0] = zf_strdup ("a");
    words[1] = zf_strdup ("12345678");
    sample->words.items = words;
    sample->words.count = 2;
    zf_bytes_t *chunks = zf_calloc (1, sizeof (zf_bytes_t));
    chunks[0].data = s_test_array (4, 1, "\xde\xad\xbe\xef");
    chunks[0].size = 4;
    sample->chunks.items = chunks;
    sample->chunks.count = 1;
    zf_rec_selftest_group_t *groups = zf_calloc (1, sizeof (zf_rec_selftest_group_t));
    zf_schema_init (&zf_rec_selftest_group, &groups[0]);
    zf_free (groups[0].name);
    groups[0].name = zf_strdup ("g1");
    zf_rec_selftest_point_t *points = zf_calloc (1, sizeof (zf_rec_selftest_point_t));
    zf_schema_init (&zf_rec_selftest_point, &points[0]);
    points[0].x = -1000000;
    groups[0].points.items = points;
    groups[0].points.count = 1;
    sample->groups.items = groups;
    sample->groups.count = 1;
}

static uint8_t *s_test_encode (const zf_record_desc_t *desc, const void *value, size_t *size)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    zf_error_t err;
    zf_status_t rc = zf_schema_encode (desc, value, &pk, &err);
    if (rc != ZF_OK)
        fprintf (stderr, "zf_schema_test: encode: %s: %s\n", err.where, err.message);
    ZF_ASSERT (rc == ZF_OK);
    *size = buffer.size;
    return (uint8_t *) msgpack_sbuffer_release (&buffer);
}

static void s_test_round_trip (bool verbose)
{
    zf_msg_selftest_sample_t sample;
    s_test_fill (&sample);
    size_t size;
    uint8_t *data = s_test_encode (S_SAMPLE, &sample, &size);

    zf_msg_selftest_sample_t copy;
    zf_error_t err;
    ZF_ASSERT (zf_schema_decode_buffer (S_SAMPLE, data, size, &copy, &err) == ZF_OK);
    ZF_ASSERT (copy.flag && copy.count == 1000000 && streq (copy.name, "sample"));
    ZF_ASSERT (copy.enabled && copy.limit == 42); //  defaults travel like any value
    ZF_ASSERT (copy.delta == -1000 && copy.ratio == -2.25);
    ZF_ASSERT (copy.big == UINT64_MAX && copy.skew == INT64_MIN);
    ZF_ASSERT (streq (copy.note, "hello world"));
    ZF_ASSERT (copy.blob.size == 3 && memcmp (copy.blob.data, "\x00\xff\x10", 3) == 0);
    ZF_ASSERT (copy.origin.x == -7 && streq (copy.origin.label, "origin"));
    ZF_ASSERT (copy.origin.tags.count == 2 && ((uint64_t *) copy.origin.tags.items)[1] == 1000);
    ZF_ASSERT (copy.numbers.count == 3 && ((uint64_t *) copy.numbers.items)[2] == 65536);
    ZF_ASSERT (copy.offsets.count == 2 && ((int64_t *) copy.offsets.items)[0] == -100);
    ZF_ASSERT (copy.weights.count == 2 && ((double *) copy.weights.items)[1] == -1e300);
    ZF_ASSERT (copy.switches.count == 2 && ((bool *) copy.switches.items)[0]);
    ZF_ASSERT (copy.words.count == 2 && streq (((char **) copy.words.items)[1], "12345678"));
    ZF_ASSERT (copy.chunks.count == 1 && ((zf_bytes_t *) copy.chunks.items)[0].size == 4);
    zf_rec_selftest_group_t *group = copy.groups.items;
    ZF_ASSERT (copy.groups.count == 1 && streq (group->name, "g1"));
    zf_rec_selftest_point_t *point = group->points.items;
    ZF_ASSERT (group->points.count == 1 && point->x == -1000000);
    ZF_ASSERT (streq (point->label, "origin") && point->tags.count == 0);

    //  One value, one encoding: the decoded copy encodes to the same bytes.
    size_t again_size;
    uint8_t *again = s_test_encode (S_SAMPLE, &copy, &again_size);
    ZF_ASSERT (again_size == size && memcmp (again, data, size) == 0);
    if (verbose)
        printf ("zf_schema_test: selftest.sample round trip in %zu bytes\n", size);

    //  Every proper prefix is truncated input, refused without reading past it.
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *prefix = s_test_array (cut, 1, data); //  exact size, so ASan sees overreads
        s_test_refuses (prefix, cut, ZF_E_TRUNCATED, "", NULL);
        zf_free (prefix);
    }
    //  One byte more is trailing.
    uint8_t *longer = zf_malloc (size + 1);
    memcpy (longer, data, size);
    longer[size] = 0xc0;
    s_test_refuses (longer, size + 1, ZF_E_TRAILING, "", "1 byte(s) left over after the value");
    zf_free (longer);

    zf_free (again);
    zf_free (data);
    zf_schema_clear (S_SAMPLE, &copy);
    zf_schema_clear (S_SAMPLE, &sample);
}

static void s_test_defaults (void)
{
    zf_msg_selftest_sample_t sample;
    zf_schema_init (S_SAMPLE, &sample);
    ZF_ASSERT (!sample.flag && sample.count == 0 && streq (sample.name, ""));
    ZF_ASSERT (sample.enabled && sample.limit == 42 && sample.delta == -5 && sample.ratio == 0.5);
    ZF_ASSERT (streq (sample.note, "hello world") && streq (sample.origin.label, "origin"));
    ZF_ASSERT (sample.blob.size == 0 && !sample.blob.data && sample.numbers.count == 0);
    zf_schema_clear (S_SAMPLE, &sample);
    ZF_ASSERT (!sample.name && !sample.note); //  cleared is zeroed, not re-initialised

    //  A body with only the required fields decodes with every default in place.
    size_t size;
    uint8_t *data =
        zf_schema_build (&size, "M3 s t s u s s", "flag", "count", (uint64_t) 5, "name", "x");
    zf_error_t err;
    ZF_ASSERT (zf_schema_decode_buffer (S_SAMPLE, data, size, &sample, &err) == ZF_OK);
    ZF_ASSERT (sample.flag && sample.count == 5 && streq (sample.name, "x"));
    ZF_ASSERT (sample.limit == 42 && sample.delta == -5 && streq (sample.note, "hello world"));
    ZF_ASSERT (sample.origin.x == 0 && streq (sample.origin.label, "origin"));
    zf_schema_clear (S_SAMPLE, &sample);
    zf_free (data);
}

//  The msgpack type each field refuses nil with, named as the error names it.
static const char *s_test_expected (const zf_field_desc_t *field)
{
    if (field->is_list)
        return "an array";
    switch (field->kind) {
    case ZF_FIELD_BOOL: return "a bool";
    case ZF_FIELD_U64: return "a non-negative integer";
    case ZF_FIELD_I64: return "an integer";
    case ZF_FIELD_F64: return "a number";
    case ZF_FIELD_STR: return "a string";
    case ZF_FIELD_BIN: return "a binary";
    case ZF_FIELD_RECORD: return "a map";
    }
    return "?";
}

static void s_test_wrong_types (void)
{
    //  nil where each field of the body wants something else.
    const uint8_t nil = 0xc0;
    for (size_t index = 0; index < S_SAMPLE->field_count; index++) {
        const zf_field_desc_t *field = &S_SAMPLE->fields[index];
        char message[80];
        snprintf (message, sizeof message, "expected %s, got nil", s_test_expected (field));
        s_test_field_refuses (field->name, &nil, 1, ZF_E_TYPE, field->name, message);
    }
    //  The near misses: a negative u64, a string for a bin and a bin for a string, a float
    //  for an integer, and the same mistakes deep inside lists of records.
    s_test_field_refuses ("count", (const uint8_t *) "\xff", 1, ZF_E_TYPE, "count",
                          "expected a non-negative integer, got a negative integer");
    s_test_field_refuses ("blob", (const uint8_t *) "\xa1x", 2, ZF_E_TYPE, "blob",
                          "expected a binary, got a string");
    s_test_field_refuses ("name", (const uint8_t *) "\xc4\x01x", 3, ZF_E_TYPE, "name",
                          "expected a string, got a binary");
    s_test_field_refuses ("skew", (const uint8_t *) "\xca\x3f\x80\x00\x00", 5, ZF_E_TYPE, "skew",
                          "expected an integer, got a float32");
    size_t size;
    uint8_t *groups = zf_schema_build (&size, "A2 M1 s s M2 s s s A1 M1 s s", "name", "g1", "name",
                                       "g2", "points", "x", "not a number");
    s_test_field_refuses ("groups", groups, size, ZF_E_TYPE, "groups[1].points[0].x",
                          "expected an integer, got a string");
    zf_free (groups);
    uint8_t *words = zf_schema_build (&size, "A2 s u", "a", (uint64_t) 1);
    s_test_field_refuses ("words", words, size, ZF_E_TYPE, "words[1]",
                          "expected a string, got a non-negative integer");
    zf_free (words);
    uint8_t *keys = zf_schema_build (&size, "M1 u t", (uint64_t) 1);
    s_test_refuses (keys, size, ZF_E_TYPE, "", "expected string keys, got a non-negative integer");
    zf_free (keys);
    uint8_t *array = zf_schema_build (&size, "A0");
    s_test_refuses (array, size, ZF_E_TYPE, "", "expected a map, got an array");
    zf_free (array);
}

static void s_test_numbers (void)
{
    zf_msg_selftest_sample_t sample;
    zf_error_t err;
    size_t size;
    //  f64 accepts integers of either sign and float32.
    size_t value_size;
    uint8_t *value = zf_schema_build (&value_size, "i", (int64_t) -2);
    uint8_t *data = s_test_body_with (&size, "ratio", value, value_size);
    ZF_ASSERT (zf_schema_decode_buffer (S_SAMPLE, data, size, &sample, &err) == ZF_OK);
    ZF_ASSERT (sample.ratio == -2.0);
    zf_schema_clear (S_SAMPLE, &sample);
    zf_free (data);
    zf_free (value);
    data = s_test_body_with (&size, "ratio", "\xca\x3f\xc0\x00\x00", 5);
    ZF_ASSERT (zf_schema_decode_buffer (S_SAMPLE, data, size, &sample, &err) == ZF_OK);
    ZF_ASSERT (sample.ratio == 1.5);
    zf_schema_clear (S_SAMPLE, &sample);
    zf_free (data);
    //  i64 accepts positive integers, up to INT64_MAX.
    data = s_test_body_with (&size, "skew", "\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9);
    ZF_ASSERT (zf_schema_decode_buffer (S_SAMPLE, data, size, &sample, &err) == ZF_OK);
    ZF_ASSERT (sample.skew == INT64_MAX);
    zf_schema_clear (S_SAMPLE, &sample);
    zf_free (data);

    s_test_field_refuses ("skew", (const uint8_t *) "\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9,
                          ZF_E_TOO_LARGE, "skew",
                          "value 9223372036854775808 is over the i64 range");
    s_test_field_refuses ("count", (const uint8_t *) "\xce\x00\x0f\x42\x41", 5, ZF_E_TOO_LARGE,
                          "count", "value 1000001 is over max 1000000");
    s_test_field_refuses ("delta", (const uint8_t *) "\xd1\xfc\x17", 3, ZF_E_TOO_LARGE, "delta",
                          "value -1001 is over max magnitude 1000");
    s_test_field_refuses ("offsets", (const uint8_t *) "\x92\x00\x65", 3, ZF_E_TOO_LARGE,
                          "offsets[1]", "value 101 is over max magnitude 100");
}

static void s_test_bounds (void)
{
    size_t size;
    //  A 10 MB string is refused by its bound, before anything is copied.
    size_t huge_size = 10 * 1024 * 1024;
    char *huge = zf_malloc (huge_size);
    memset (huge, 'z', huge_size);
    uint8_t *value = zf_schema_build (&size, "S", huge, huge_size);
    s_test_field_refuses ("note", value, size, ZF_E_TOO_LARGE, "note",
                          "string of 10485760 bytes is over max 32");
    zf_free (value);
    zf_free (huge);

    value = zf_schema_build (&size, "s", "seventeen bytes!!");
    s_test_field_refuses ("name", value, size, ZF_E_TOO_LARGE, "name",
                          "string of 17 bytes is over max 16");
    zf_free (value);
    value = zf_schema_build (&size, "B", "123456789", (size_t) 9);
    s_test_field_refuses ("blob", value, size, ZF_E_TOO_LARGE, "blob",
                          "binary of 9 bytes is over max 8");
    zf_free (value);
    value = zf_schema_build (&size, "A9 uuuuuuuuu", (uint64_t) 1, (uint64_t) 2, (uint64_t) 3,
                             (uint64_t) 4, (uint64_t) 5, (uint64_t) 6, (uint64_t) 7, (uint64_t) 8,
                             (uint64_t) 9);
    s_test_field_refuses ("numbers", value, size, ZF_E_TOO_LARGE, "numbers",
                          "list of 9 items is over max 8");
    zf_free (value);
    value = zf_schema_build (&size, "A2 ss", "ok", "ninebytes");
    s_test_field_refuses ("words", value, size, ZF_E_TOO_LARGE, "words[1]",
                          "string of 9 bytes is over max 8");
    zf_free (value);
    value = zf_schema_build (&size, "M1 s A5 uuuuu", "tags", (uint64_t) 1, (uint64_t) 1,
                             (uint64_t) 1, (uint64_t) 1, (uint64_t) 1);
    //  (a point's tags hold four; that the point also lacks x is never reached)
    s_test_field_refuses ("origin", value, size, ZF_E_TOO_LARGE, "origin.tags",
                          "list of 5 items is over max 4");
    zf_free (value);

    //  A container claiming four billion items is truncated input, found without allocating.
    s_test_field_refuses ("future", (const uint8_t *) "\xdd\xff\xff\xff\xff", 5, ZF_E_TRUNCATED, "",
                          "input ends inside a value at byte 33");
    //  Nesting past ZF_SCHEMA_DEPTH_MAX, even under a key nobody reads.
    uint8_t deep[ZF_SCHEMA_DEPTH_MAX + 1];
    memset (deep, 0x91, sizeof deep - 1);
    deep[sizeof deep - 1] = 0xc0;
    s_test_field_refuses ("future", deep, sizeof deep, ZF_E_TOO_LARGE, "",
                          "msgpack nested deeper than 16 levels");
    //  0xc1 is no msgpack at all.
    s_test_field_refuses ("future", (const uint8_t *) "\xc1", 1, ZF_E_INVALID, "",
                          "byte 0xc1 at offset 28 is not msgpack");
}

static void s_test_invalid_and_missing (void)
{
    size_t size;
    uint8_t *value = zf_schema_build (&size, "S", "a\0b", (size_t) 3);
    s_test_field_refuses ("name", value, size, ZF_E_INVALID, "name",
                          "string has a NUL byte at offset 1");
    zf_free (value);
    uint8_t *data = zf_schema_build (&size, "M4 s t s u s s s F", "flag", "count", (uint64_t) 5,
                                     "name", "x", "flag");
    s_test_refuses (data, size, ZF_E_INVALID, "flag", "duplicate key");
    zf_free (data);
    data = zf_schema_build (&size, "M2 s t s s", "flag", "name", "x");
    s_test_refuses (data, size, ZF_E_MISSING, "count", "required field is missing");
    zf_free (data);
    s_test_field_refuses ("origin", (const uint8_t *) "\x80", 1, ZF_E_MISSING, "origin.x",
                          "required field is missing");
    size_t value_size;
    value = zf_schema_build (&value_size, "A1 M1 s s", "name", "g");
    data = s_test_body_with (&size, "groups", value, value_size);
    zf_msg_selftest_sample_t sample;
    zf_error_t err;
    ZF_ASSERT (zf_schema_decode_buffer (S_SAMPLE, data, size, &sample, &err) == ZF_OK);
    zf_schema_clear (S_SAMPLE, &sample);
    zf_free (data);
    zf_free (value);
    value = zf_schema_build (&size, "A1 M0");
    s_test_field_refuses ("groups", value, size, ZF_E_MISSING, "groups[0].name",
                          "required field is missing");
    zf_free (value);
    //  Unknown keys are skipped, whatever they hold: a newer schema added them.
    value = zf_schema_build (&value_size, "M2 s A2 n f s B", "a", 1.5, "b", "xy", (size_t) 2);
    data = s_test_body_with (&size, "future", value, value_size);
    ZF_ASSERT (zf_schema_decode_buffer (S_SAMPLE, data, size, &sample, &err) == ZF_OK);
    ZF_ASSERT (sample.count == 5);
    zf_schema_clear (S_SAMPLE, &sample);
    zf_free (data);
    zf_free (value);
}

static void s_test_validate (void)
{
    zf_msg_selftest_sample_t sample;
    zf_error_t err;
    //  A {0} struct is fine to encode once its required strings are set: NULL optional strings
    //  go out as "".
    memset (&sample, 0, sizeof sample);
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_E_MISSING);
    ZF_ASSERT (streq (err.where, "name") && streq (err.message, "required string is NULL"));
    sample.name = "x";
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_OK);

    s_test_fill (&sample);
    sample.count = 1000001;
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_E_TOO_LARGE);
    ZF_ASSERT (streq (err.where, "count"));
    sample.count = 1;
    zf_free (((char **) sample.words.items)[0]);
    ((char **) sample.words.items)[0] = zf_strdup ("ninebytes");
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_E_TOO_LARGE);
    ZF_ASSERT (streq (err.where, "words[0]"));
    ZF_ASSERT (streq (err.message, "string of 9 bytes is over max 8"));
    ((char **) sample.words.items)[0][0] = '\0';
    sample.numbers.count = 9;
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_E_TOO_LARGE);
    ZF_ASSERT (streq (err.where, "numbers")
               && streq (err.message, "list of 9 items is over max 8"));
    sample.numbers.count = 3;
    ((zf_rec_selftest_group_t *) sample.groups.items)[0].points.count = 4;
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_E_TOO_LARGE);
    ZF_ASSERT (streq (err.where, "groups[0].points"));
    ((zf_rec_selftest_group_t *) sample.groups.items)[0].points.count = 1;
    sample.blob.size = 9;
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_E_TOO_LARGE);
    ZF_ASSERT (streq (err.message, "binary of 9 bytes is over max 8"));
    sample.blob.size = 3;
    sample.delta = INT64_MIN;
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_E_TOO_LARGE);
    ZF_ASSERT (streq (err.message, "value -9223372036854775808 is over max magnitude 1000"));
    sample.delta = 0;
    ZF_ASSERT (zf_schema_validate (S_SAMPLE, &sample, &err) == ZF_OK);
    zf_schema_clear (S_SAMPLE, &sample);
}

static void s_test_registry (void)
{
    ZF_ASSERT (zf_schema_find ("echo.request", 12) == &zf_msg_echo_request);
    ZF_ASSERT (zf_schema_find ("echo.request.extra", 12) == &zf_msg_echo_request);
    ZF_ASSERT (zf_schema_find ("echo", 4) == NULL);
    ZF_ASSERT (zf_schema_find ("echo.requests", 13) == NULL);
    ZF_ASSERT (zf_schema_find ("", 0) == NULL);
    ZF_ASSERT (zf_schema_find (NULL, 0) == NULL);
    ZF_ASSERT (zf_schema_find (ZF_MSG_ERROR, strlen (ZF_MSG_ERROR)) == &zf_msg_error);
    size_t count;
    const zf_msg_desc_t *const *all = zf_schema_all (&count);
    ZF_ASSERT (count >= 5);
    for (size_t index = 0; index < count; index++) {
        const char *type = all[index]->type;
        ZF_ASSERT (zf_schema_find (type, strlen (type)) == all[index]);
        ZF_ASSERT (index == 0 || strcmp (all[index - 1]->type, type) < 0);
    }
}

//  A copy (zf_schema_copy) is exact and owns its strings and lists.
static void s_test_copy (void)
{
    zf_rec_http_header_t headers[] = {{.name = "authorization", .value = "Bearer abc"},
                                      {.name = "Accept", .value = "text/plain"}};
    zf_msg_task_fetch_t fetch = {.url = "http://o/x", .headers = {.items = headers, .count = 2}};
    zf_msg_task_fetch_t copy;
    zf_error_t err;
    ZF_ASSERT (zf_schema_copy (zf_msg_task_fetch.body, &fetch, &copy, &err) == ZF_OK);
    ZF_ASSERT (copy.headers.count == 2 && streq (copy.url, "http://o/x"));
    const zf_rec_http_header_t *copied = copy.headers.items;
    ZF_ASSERT (copied != headers && streq (copied[0].value, "Bearer abc"));
    ZF_ASSERT (copied[1].value != headers[1].value && streq (copied[1].value, "text/plain"));
    zf_schema_clear (zf_msg_task_fetch.body, &copy);
}

//  Enum fields: error.code has a default (an undeclared code reads as "unknown"),
//  parent.failed reason has none (an undeclared reason is refused); both refuse to encode one.
static void s_test_enums (void)
{
    ZF_ASSERT (zf_code_of ("busy") == ZF_CODE_BUSY && streq (zf_code_name (ZF_CODE_BUSY), "busy"));
    ZF_ASSERT (zf_code_of ("") == ZF_CODE_NONE && zf_code_of (NULL) == ZF_CODE_NONE);
    ZF_ASSERT (zf_code_of ("no_such_code") == ZF_CODE_UNKNOWN);
    ZF_ASSERT (zf_parent_failure_of ("no_such_reason") == ZF_PARENT_FAILURE_NONE);
    ZF_ASSERT (streq (zf_code_name (ZF_CODE_NONE), ""));

    const zf_record_desc_t *error_desc = zf_msg_error.body;
    zf_msg_error_t error;
    zf_error_t err;
    size_t size;
    uint8_t *data = zf_schema_build (&size, "M2 s s s s", "code", "gone_fishing", "message", "m");
    ZF_ASSERT (zf_schema_decode_buffer (error_desc, data, size, &error, &err) == ZF_OK);
    ZF_ASSERT (streq (error.code, "unknown") && zf_code_of (error.code) == ZF_CODE_UNKNOWN);
    ZF_ASSERT (streq (error.message, "m"));
    zf_free (data);
    //  Encoding holds a C-built value to the declared words, default or not.
    zf_free (error.code);
    error.code = zf_strdup ("gone_fishing");
    ZF_ASSERT (zf_schema_validate (error_desc, &error, &err) == ZF_E_INVALID);
    ZF_ASSERT (streq (err.where, "code")
               && streq (err.message, "'gone_fishing' is not a declared code"));
    zf_schema_clear (error_desc, &error);

    const zf_record_desc_t *failed_desc = zf_msg_parent_failed.body;
    zf_msg_parent_failed_t failed;
    data = zf_schema_build (&size, "M4 s s s s s s s s", "task_id", "t", "host_id", "h", "parent",
                            "p", "reason", "bored");
    ZF_ASSERT (zf_schema_decode_buffer (failed_desc, data, size, &failed, &err) == ZF_E_INVALID);
    ZF_ASSERT (streq (err.where, "reason"));
    ZF_ASSERT (streq (err.message, "'bored' is not a declared parent_failure"));
    zf_free (data);
    data = zf_schema_build (&size, "M4 s s s s s s s s", "task_id", "t", "host_id", "h", "parent",
                            "p", "reason", "slow");
    ZF_ASSERT (zf_schema_decode_buffer (failed_desc, data, size, &failed, &err) == ZF_OK);
    ZF_ASSERT (zf_parent_failure_of (failed.reason) == ZF_PARENT_FAILURE_SLOW);
    zf_schema_clear (failed_desc, &failed);
    zf_free (data);
    //  Absent, the field takes its schema default, a member.
    data = zf_schema_build (&size, "M3 s s s s s s", "task_id", "t", "host_id", "h", "parent", "p");
    ZF_ASSERT (zf_schema_decode_buffer (failed_desc, data, size, &failed, &err) == ZF_OK);
    ZF_ASSERT (zf_parent_failure_of (failed.reason) == ZF_PARENT_FAILURE_FAILED);
    zf_schema_clear (failed_desc, &failed);
    zf_free (data);
}

void zf_schema_test (bool verbose)
{
    //  Usage: build a body in C, encode it, decode it back, free both.
    zf_msg_echo_request_t request;
    zf_schema_init (zf_msg_echo_request.body, &request);
    request.seq = 7;
    zf_free (request.text);
    request.text = zf_strdup ("hello");
    size_t size;
    uint8_t *data = s_test_encode (zf_msg_echo_request.body, &request, &size);
    zf_msg_echo_request_t decoded;
    zf_error_t err;
    if (zf_schema_decode_buffer (zf_msg_echo_request.body, data, size, &decoded, &err) != ZF_OK)
        fprintf (stderr, "refused: %s at %s: %s\n", zf_status_name (err.code), err.where,
                 err.message);
    ZF_ASSERT (decoded.seq == 7 && streq (decoded.text, "hello") && !decoded.fail);
    zf_schema_clear (zf_msg_echo_request.body, &decoded);
    zf_schema_clear (zf_msg_echo_request.body, &request);
    zf_free (data);

    s_test_round_trip (verbose);
    s_test_defaults ();
    s_test_enums ();
    s_test_wrong_types ();
    s_test_numbers ();
    s_test_bounds ();
    s_test_invalid_and_missing ();
    s_test_validate ();
    s_test_registry ();
    s_test_copy ();
}
