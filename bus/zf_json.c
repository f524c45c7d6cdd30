/*  zf_json.c — msgpack to JSON conversion. */
#include "zf_json.h"

#define MAX_DEPTH   32
#define HEX_PREVIEW 32

static json_t *s_convert (const msgpack_object *object, int depth);

static json_t *s_bin (const msgpack_object_bin *bin)
{
    static const char digits[] = "0123456789abcdef";
    size_t shown = bin->size < HEX_PREVIEW ? bin->size : HEX_PREVIEW;
    char hex[2 * HEX_PREVIEW + 1];
    for (size_t index = 0; index < shown; index++) {
        uint8_t byte = (uint8_t) bin->ptr[index];
        hex[2 * index] = digits[byte >> 4];
        hex[2 * index + 1] = digits[byte & 15];
    }
    hex[2 * shown] = '\0';
    return json_pack ("{s:I, s:s}", "bin_size", (json_int_t) bin->size, "hex", hex);
}

static json_t *s_map (const msgpack_object_map *map, int depth)
{
    json_t *result = json_object ();
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr[index].key;
        json_t *value = s_convert (&map->ptr[index].val, depth + 1);
        if (key->type == MSGPACK_OBJECT_STR) {
            char *name = zf_strndup (key->via.str.ptr, key->via.str.size);
            json_object_set_new (result, name, value);
            zf_free (name);
        } else {
            json_t *key_json = s_convert (key, depth + 1);
            char *name = json_dumps (key_json, JSON_ENCODE_ANY | JSON_COMPACT);
            json_object_set_new (result, name ? name : "?", value);
            free (name);
            json_decref (key_json);
        }
    }
    return result;
}

static json_t *s_convert (const msgpack_object *object, int depth)
{
    if (depth > MAX_DEPTH)
        return json_string ("…");
    switch (object->type) {
    case MSGPACK_OBJECT_NIL: return json_null ();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean (object->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        //  JSON integers are signed 64-bit in jansson; larger ones are shown as text.
        if (object->via.u64 > (uint64_t) INT64_MAX) {
            char text[32];
            snprintf (text, sizeof text, "%" PRIu64, object->via.u64);
            return json_string (text);
        }
        return json_integer ((json_int_t) object->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer ((json_int_t) object->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real (object->via.f64);
    case MSGPACK_OBJECT_STR: {
        json_t *text = json_stringn (object->via.str.ptr, object->via.str.size);
        return text ? text
                    : json_pack ("{s:I}", "invalid_utf8_size", (json_int_t) object->via.str.size);
    }
    case MSGPACK_OBJECT_BIN: return s_bin (&object->via.bin);
    case MSGPACK_OBJECT_EXT: return json_pack ("{s:i}", "ext_type", object->via.ext.type);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *array = json_array ();
        for (uint32_t index = 0; index < object->via.array.size; index++)
            json_array_append_new (array, s_convert (&object->via.array.ptr[index], depth + 1));
        return array;
    }
    case MSGPACK_OBJECT_MAP: return s_map (&object->via.map, depth);
    }
    return json_null ();
}

json_t *zf_json_from_msgpack (const msgpack_object *object)
{
    return s_convert (object, 0);
}
