/*  zf_redact.c — secrets redacted for people reading bus traffic (see zf_redact.h). */
#include "zf_redact.h"
#include "zf_msgs.h"
#include <ctype.h>
#include <openssl/evp.h>
#include <strings.h>

void zf_redact_text (const char *value, size_t length, char *out, size_t size)
{
    size_t scheme = 0; //  "Bearer ", "Basic ": says what kind of credential, hides nothing
    while (scheme < length && scheme < 16 && isalpha ((unsigned char) value[scheme]))
        scheme++;
    if (scheme == 0 || scheme >= length || value[scheme] != ' ')
        scheme = 0;
    else
        scheme++;
    uint8_t hash[32];
    unsigned int hash_size = 0;
    EVP_Digest (value + scheme, length - scheme, hash, &hash_size, EVP_sha256 (), NULL);
    snprintf (out, size, "%.*s<redacted, %zu bytes, sha256:%02x%02x\u2026>", (int) scheme, value,
              length - scheme, hash[0], hash[1]);
}

static bool s_key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name)
           && memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

//  Whether field's secret is in force in map: always, or by its sibling's value.
static bool s_secret_in_force (const zf_field_desc_t *field, const msgpack_object *map)
{
    if (!field->secret)
        return false;
    const char *colon = strchr (field->secret, ':');
    if (!colon)
        return true;
    const msgpack_object_map *entries = &map->via.map;
    for (uint32_t index = 0; index < entries->size; index++) {
        const msgpack_object *key = &entries->ptr[index].key;
        const msgpack_object *value = &entries->ptr[index].val;
        if (key->type != MSGPACK_OBJECT_STR || key->via.str.size != (size_t) (colon - field->secret)
            || memcmp (key->via.str.ptr, field->secret, key->via.str.size) != 0
            || value->type != MSGPACK_OBJECT_STR)
            continue;
        for (const char *choice = colon + 1; *choice;) {
            size_t choice_length = strcspn (choice, "|");
            if (choice_length == value->via.str.size
                && strncasecmp (choice, value->via.str.ptr, choice_length) == 0)
                return true;
            choice += choice_length + (choice[choice_length] == '|');
        }
        return false;
    }
    return false;
}

static void s_pack_redacted (const msgpack_object *value, msgpack_packer *pk)
{
    char text[160];
    if (value->type == MSGPACK_OBJECT_STR)
        zf_redact_text (value->via.str.ptr, value->via.str.size, text, sizeof text);
    else if (value->type == MSGPACK_OBJECT_BIN)
        zf_redact_text (value->via.bin.ptr, value->via.bin.size, text, sizeof text);
    else {
        msgpack_pack_object (pk, *value); //  not a string: nothing readable to hide
        return;
    }
    size_t length = strlen (text);
    msgpack_pack_str (pk, length);
    msgpack_pack_str_body (pk, text, length);
}

static void s_redact_value (const zf_field_desc_t *field, const msgpack_object *value,
                            const msgpack_object *map, msgpack_packer *pk)
{
    if (field->kind == ZF_FIELD_RECORD && field->is_list && value->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_pack_array (pk, value->via.array.size);
        for (uint32_t index = 0; index < value->via.array.size; index++)
            zf_redact_pack (field->record, &value->via.array.ptr[index], pk);
    } else if (field->kind == ZF_FIELD_RECORD && !field->is_list)
        zf_redact_pack (field->record, value, pk);
    else if (s_secret_in_force (field, map))
        s_pack_redacted (value, pk);
    else
        msgpack_pack_object (pk, *value);
}

void zf_redact_pack (const zf_record_desc_t *desc, const msgpack_object *object, msgpack_packer *pk)
{
    if (object->type != MSGPACK_OBJECT_MAP) {
        msgpack_pack_object (pk, *object);
        return;
    }
    const msgpack_object_map *map = &object->via.map;
    msgpack_pack_map (pk, map->size);
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr[index].key;
        const msgpack_object *value = &map->ptr[index].val;
        msgpack_pack_object (pk, *key);
        const zf_field_desc_t *field = NULL;
        for (size_t at = 0; key->type == MSGPACK_OBJECT_STR && at < desc->field_count; at++)
            if (s_key_is (key, desc->fields[at].name))
                field = &desc->fields[at];
        if (field)
            s_redact_value (field, value, object, pk);
        else
            msgpack_pack_object (pk, *value);
    }
}

bool zf_redact_has_secrets (const zf_record_desc_t *desc)
{
    for (size_t index = 0; index < desc->field_count; index++) {
        const zf_field_desc_t *field = &desc->fields[index];
        if (field->secret || (field->record && zf_redact_has_secrets (field->record)))
            return true;
    }
    return false;
}

//  ---------------------------------------------------------------------------------------------

void zf_redact_test (bool verbose)
{
    if (verbose)
        printf (" * zf_redact: ");
    zf_rec_http_header_t headers[] = {{.name = "authorization", .value = "Bearer abc"},
                                      {.name = "Accept", .value = "text/plain"},
                                      {.name = "Cookie", .value = "s=1"}};
    zf_msg_task_fetch_t fetch = {.url = "http://o/x", .headers = {.items = headers, .count = 3}};
    zf_error_t err;
    ZF_ASSERT (zf_redact_has_secrets (zf_msg_task_fetch.body));
    ZF_ASSERT (!zf_redact_has_secrets (zf_msg_task_query.body));

    size_t size;
    uint8_t *data = zf_schema_encode_alloc (zf_msg_task_fetch.body, &fetch, &size);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    ZF_ASSERT (zf_schema_unpack (data, size, &unpacked, "test", &err) == ZF_OK);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    zf_redact_pack (zf_msg_task_fetch.body, &unpacked.data, &pk);
    zf_msg_task_fetch_t redacted;
    ZF_ASSERT (zf_schema_decode_buffer (zf_msg_task_fetch.body, (uint8_t *) buffer.data,
                                        buffer.size, &redacted, &err)
               == ZF_OK);
    const zf_rec_http_header_t *got = redacted.headers.items;
    char expected[160];
    zf_redact_text ("Bearer abc", 10, expected, sizeof expected);
    ZF_ASSERT (strncmp (expected, "Bearer <redacted, 3 bytes, sha256:", 34) == 0);
    ZF_ASSERT (streq (got[0].value, expected));
    ZF_ASSERT (streq (got[1].value, "text/plain"));
    ZF_ASSERT (strncmp (got[2].value, "<redacted, 3 bytes, sha256:", 27) == 0);
    ZF_ASSERT (streq (redacted.url, "http://o/x"));
    zf_schema_clear (zf_msg_task_fetch.body, &redacted);
    msgpack_sbuffer_destroy (&buffer);
    msgpack_unpacked_destroy (&unpacked);
    zf_free (data);
    if (verbose)
        printf ("OK\n");
}
