/*  zf_envelope.c — the envelope every bus message travels in.

    The envelope is the only part of a message not described by a schema file, so its checks
    are written out here; the body goes through the schema codec (zf_schema.c) with the path
    prefix "body". The encoder refuses whatever the decoder would refuse (names too long or with
    control bytes, bodies over their bounds), so a message zfly sends is one zfly accepts. */
#include "zf_envelope.h"
#include <inttypes.h>

//  Envelope keys, in the order zf_envelope_encode writes them.
typedef enum {
    S_KEY_TYPE,
    S_KEY_VERSION,
    S_KEY_ID,
    S_KEY_FROM,
    S_KEY_TO,
    S_KEY_RE,
    S_KEY_BODY,
    S_KEY_COUNT
} s_key_t;

static const char *const s_key_names[S_KEY_COUNT] = {"type", "v", "id", "from", "to", "re", "body"};

//  --------------------------------------------------------------------------------------------
//  Checks shared by encoder and decoder

//  Actor names are routed on and logged: refuse control bytes (and so NUL) outright.
static zf_status_t s_check_name (const char *key, const char *name, size_t len, zf_error_t *err)
{
    if (len > ZF_NAME_MAX)
        return zf_error_set (err, ZF_E_TOO_LARGE, key, "name of %zu bytes is over max %d", len,
                             ZF_NAME_MAX);
    for (size_t index = 0; index < len; index++) {
        uint8_t byte = (uint8_t) name[index];
        if (byte < 0x20 || byte == 0x7f)
            return zf_error_set (err, ZF_E_INVALID, key,
                                 "name has control byte 0x%02x at offset %zu", byte, index);
    }
    return ZF_OK;
}

//  Errors from the body codec name the field inside the body; the envelope's reader wants the
//  whole path ("body.seq").
static void s_prefix_body (zf_error_t *err)
{
    if (!err)
        return;
    char where[sizeof "body." + sizeof err->where]; //  room for the prefix; cut when copied back
    snprintf (where, sizeof where, "body%s%s", err->where[0] ? "." : "", err->where);
    zf_strlcpy (err->where, where, sizeof err->where);
}

//  --------------------------------------------------------------------------------------------
//  Encode

static int s_pack_key (msgpack_packer *pk, s_key_t key)
{
    size_t len = strlen (s_key_names[key]);
    return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, s_key_names[key], len);
}

static int s_pack_text (msgpack_packer *pk, s_key_t key, const char *text)
{
    size_t len = strlen (text);
    return s_pack_key (pk, key) || msgpack_pack_str (pk, len)
           || msgpack_pack_str_body (pk, text, len);
}

static zf_status_t s_pack_envelope (msgpack_packer *pk, const zf_msg_desc_t *desc, uint64_t id,
                                    uint64_t re, const char *from, const char *to, const void *body,
                                    zf_error_t *err)
{
    bool has_to = to && *to;
    size_t entries = 5 + (has_to ? 1 : 0) + (re ? 1 : 0);
    if (msgpack_pack_map (pk, entries) || s_pack_text (pk, S_KEY_TYPE, desc->type)
        || s_pack_key (pk, S_KEY_VERSION) || msgpack_pack_uint32 (pk, desc->version)
        || s_pack_key (pk, S_KEY_ID) || msgpack_pack_uint64 (pk, id)
        || s_pack_text (pk, S_KEY_FROM, from) || (has_to && s_pack_text (pk, S_KEY_TO, to))
        || (re && (s_pack_key (pk, S_KEY_RE) || msgpack_pack_uint64 (pk, re)))
        || s_pack_key (pk, S_KEY_BODY))
        return zf_error_set (err, ZF_E_IO, "frame", "msgpack writer failed");
    zf_status_t rc = zf_schema_encode (desc->body, body, pk, err);
    if (rc != ZF_OK)
        s_prefix_body (err);
    return rc;
}

zframe_t *zf_envelope_encode (const zf_msg_desc_t *desc, uint64_t id, uint64_t re, const char *from,
                              const char *to, const void *body, zf_error_t *err)
{
    ZF_ASSERT (desc && desc->body && from && body);
    if (s_check_name ("from", from, strlen (from), err) != ZF_OK
        || (to && s_check_name ("to", to, strlen (to), err) != ZF_OK))
        return NULL;
    if (!*from) {
        zf_error_set (err, ZF_E_INVALID, "from", "sender name is empty");
        return NULL;
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    zframe_t *frame = NULL;
    zf_status_t rc = s_pack_envelope (&pk, desc, id, re, from, to, body, err);
    if (rc == ZF_OK && buffer.size > ZF_ENVELOPE_MAX)
        zf_error_set (err, ZF_E_TOO_LARGE, "frame", "%s message of %zu bytes is over max %d",
                      desc->type, buffer.size, ZF_ENVELOPE_MAX);
    else if (rc == ZF_OK)
        frame = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return frame;
}

//  --------------------------------------------------------------------------------------------
//  Decode

//  Picks out the envelope keys; unknown keys are skipped for forward compatibility.
static zf_status_t s_collect_keys (const msgpack_object *root,
                                   const msgpack_object *values[S_KEY_COUNT], zf_error_t *err)
{
    if (root->type != MSGPACK_OBJECT_MAP)
        return zf_error_set (err, ZF_E_TYPE, "frame", "expected a map, got %s",
                             zf_schema_object_name (root));
    for (uint32_t index = 0; index < root->via.map.size; index++) {
        const msgpack_object_kv *entry = &root->via.map.ptr[index];
        if (entry->key.type != MSGPACK_OBJECT_STR)
            return zf_error_set (err, ZF_E_TYPE, "frame", "expected string keys, got %s",
                                 zf_schema_object_name (&entry->key));
        const msgpack_object_str *name = &entry->key.via.str;
        for (size_t key = 0; key < S_KEY_COUNT; key++) {
            if (strlen (s_key_names[key]) != name->size
                || memcmp (s_key_names[key], name->ptr, name->size) != 0)
                continue;
            if (values[key])
                return zf_error_set (err, ZF_E_INVALID, s_key_names[key], "duplicate key");
            values[key] = &entry->val;
        }
    }
    return ZF_OK;
}

static zf_status_t s_read_uint (const msgpack_object *values[S_KEY_COUNT], s_key_t key,
                                bool required, uint64_t *number, zf_error_t *err)
{
    const msgpack_object *value = values[key];
    if (!value)
        return required ? zf_error_set (err, ZF_E_MISSING, s_key_names[key],
                                        "required envelope key is missing")
                        : ZF_OK;
    if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return zf_error_set (err, ZF_E_TYPE, s_key_names[key],
                             "expected a non-negative integer, got %s",
                             zf_schema_object_name (value));
    *number = value->via.u64;
    return ZF_OK;
}

static zf_status_t s_read_str (const msgpack_object *values[S_KEY_COUNT], s_key_t key,
                               bool required, const msgpack_object_str **text, zf_error_t *err)
{
    const msgpack_object *value = values[key];
    *text = NULL;
    if (!value)
        return required ? zf_error_set (err, ZF_E_MISSING, s_key_names[key],
                                        "required envelope key is missing")
                        : ZF_OK;
    if (value->type != MSGPACK_OBJECT_STR)
        return zf_error_set (err, ZF_E_TYPE, s_key_names[key], "expected a string, got %s",
                             zf_schema_object_name (value));
    *text = &value->via.str;
    return ZF_OK;
}

static zf_status_t s_read_name (const msgpack_object *values[S_KEY_COUNT], s_key_t key,
                                bool required, char *name, zf_error_t *err)
{
    const msgpack_object_str *text;
    zf_status_t rc = s_read_str (values, key, required, &text, err);
    if (rc == ZF_OK && text)
        rc = s_check_name (s_key_names[key], text->ptr, text->size, err);
    if (rc == ZF_OK && text) {
        memcpy (name, text->ptr, text->size);
        name[text->size] = '\0';
    }
    if (rc == ZF_OK && required && !name[0])
        rc = zf_error_set (err, ZF_E_INVALID, s_key_names[key], "name is empty");
    return rc;
}

//  Copies the type for log lines, with bytes a type cannot hold shown as '?': the type of a
//  refused message comes from whoever sent it.
static zf_status_t s_read_type (const msgpack_object *values[S_KEY_COUNT], zf_envelope_t *env,
                                const zf_msg_desc_t **desc, zf_error_t *err)
{
    const msgpack_object_str *text;
    zf_status_t rc = s_read_str (values, S_KEY_TYPE, true, &text, err);
    if (rc != ZF_OK)
        return rc;
    size_t shown = text->size < ZF_TYPE_MAX ? text->size : ZF_TYPE_MAX;
    for (size_t index = 0; index < shown; index++) {
        char byte = text->ptr[index];
        env->type[index] = (byte >= 0x20 && byte < 0x7f) ? byte : '?';
    }
    env->type[shown] = '\0';
    if (text->size > ZF_TYPE_MAX)
        return zf_error_set (err, ZF_E_TOO_LARGE, "type",
                             "type of %" PRIu32 " bytes is over max %d", text->size, ZF_TYPE_MAX);
    *desc = zf_schema_find (text->ptr, text->size);
    if (!*desc)
        return zf_error_set (err, ZF_E_UNKNOWN_TYPE, "type", "unknown message type '%s'",
                             env->type);
    return ZF_OK;
}

static zf_status_t s_read_version (const msgpack_object *values[S_KEY_COUNT],
                                   const zf_msg_desc_t *desc, zf_envelope_t *env, zf_error_t *err)
{
    uint64_t version = 0;
    zf_status_t rc = s_read_uint (values, S_KEY_VERSION, true, &version, err);
    if (rc != ZF_OK)
        return rc;
    if (version == 0)
        return zf_error_set (err, ZF_E_INVALID, "v", "version 0 is not a schema version");
    //  Older versions decode: compatible changes only add optional fields.
    if (version > desc->version)
        return zf_error_set (err, ZF_E_VERSION, "v",
                             "%s version %" PRIu64 " is newer than this build's %" PRIu32,
                             desc->type, version, desc->version);
    env->version = (uint32_t) version;
    return ZF_OK;
}

static zf_status_t s_read_body (const msgpack_object *values[S_KEY_COUNT],
                                const zf_msg_desc_t *desc, zf_envelope_t *env, zf_error_t *err)
{
    if (!values[S_KEY_BODY])
        return zf_error_set (err, ZF_E_MISSING, "body", "required envelope key is missing");
    void *body = zf_malloc (desc->body->size);
    zf_status_t rc = zf_schema_decode (desc->body, values[S_KEY_BODY], body, "body", err);
    if (rc != ZF_OK) {
        zf_free (body);
        return rc;
    }
    env->desc = desc;
    env->body = body;
    return ZF_OK;
}

//  Reads the sender and id first, so that a log line about a refused message can say who sent
//  it; then the type, which the version and body depend on.
static zf_status_t s_decode_envelope (const msgpack_object *root, zf_envelope_t *env,
                                      zf_error_t *err)
{
    const msgpack_object *values[S_KEY_COUNT] = {NULL};
    const zf_msg_desc_t *desc = NULL;
    zf_status_t rc = s_collect_keys (root, values, err);
    if (rc == ZF_OK)
        rc = s_read_name (values, S_KEY_FROM, true, env->from, err);
    if (rc == ZF_OK)
        rc = s_read_uint (values, S_KEY_ID, true, &env->id, err);
    if (rc == ZF_OK)
        rc = s_read_name (values, S_KEY_TO, false, env->to, err);
    if (rc == ZF_OK)
        rc = s_read_uint (values, S_KEY_RE, false, &env->re, err);
    if (rc == ZF_OK)
        rc = s_read_type (values, env, &desc, err);
    if (rc == ZF_OK)
        rc = s_read_version (values, desc, env, err);
    if (rc == ZF_OK)
        rc = s_read_body (values, desc, env, err);
    return rc;
}

zf_status_t zf_envelope_decode (const uint8_t *data, size_t size, zf_envelope_t *env,
                                zf_error_t *err)
{
    ZF_ASSERT (env);
    memset (env, 0, sizeof *env);
    if (size > ZF_ENVELOPE_MAX)
        return zf_error_set (err, ZF_E_TOO_LARGE, "frame", "frame of %zu bytes is over max %d",
                             size, ZF_ENVELOPE_MAX);
    msgpack_unpacked result;
    zf_status_t rc = zf_schema_unpack (data, size, &result, "frame", err);
    if (rc == ZF_OK)
        rc = s_decode_envelope (&result.data, env, err);
    msgpack_unpacked_destroy (&result);
    return rc;
}

void zf_envelope_clear (zf_envelope_t *env)
{
    if (env && env->body) {
        ZF_ASSERT (env->desc);
        zf_schema_clear (env->desc->body, env->body);
        zf_free (env->body);
        env->body = NULL;
    }
}

//  --------------------------------------------------------------------------------------------
//  Selftest

#include "zf_msgs.h"

//  Decodes data and requires exactly this failure, with nothing left to free.
static void s_test_refuses (const uint8_t *data, size_t size, zf_status_t code, const char *where,
                            const char *message)
{
    zf_envelope_t env;
    zf_error_t err;
    zf_error_clear (&err);
    zf_status_t rc = zf_envelope_decode (data, size, &env, &err);
    if (rc != code || !streq (err.where, where) || (message && !streq (err.message, message)))
        fprintf (stderr, "zf_envelope_test: expected %s '%s' '%s', got %s '%s' '%s'\n",
                 zf_status_name (code), where, message ? message : "*", zf_status_name (rc),
                 err.where, err.message);
    ZF_ASSERT (rc == code);
    ZF_ASSERT (streq (err.where, where));
    ZF_ASSERT (!message || streq (err.message, message));
    ZF_ASSERT (env.body == NULL);
    zf_envelope_clear (&env);
}

//  zf_schema_build, then s_test_refuses.
#define S_TEST_BUILD_REFUSES(code, where, message, ...)                                            \
    do {                                                                                           \
        size_t size_;                                                                              \
        uint8_t *data_ = zf_schema_build (&size_, __VA_ARGS__);                                    \
        s_test_refuses (data_, size_, code, where, message);                                       \
        zf_free (data_);                                                                           \
    } while (0)

static zframe_t *s_test_request (uint64_t seq, const char *text)
{
    zf_msg_echo_request_t request = {.seq = seq, .text = (char *) text};
    zf_error_t err;
    zframe_t *frame =
        zf_envelope_encode (&zf_msg_echo_request, 42, 0, "probe@edge-1", "echo", &request, &err);
    ZF_ASSERT (frame);
    return frame;
}

static void s_test_round_trip (void)
{
    //  A reply: addressed, with re.
    zf_msg_echo_reply_t reply;
    zf_schema_init (zf_msg_echo_reply.body, &reply);
    reply.seq = 7;
    zf_free (reply.served_by);
    reply.served_by = zf_strdup ("echo@edge-2");
    zf_error_t err;
    zframe_t *frame =
        zf_envelope_encode (&zf_msg_echo_reply, 43, 42, "echo@edge-2", "probe", &reply, &err);
    ZF_ASSERT (frame);
    zf_schema_clear (zf_msg_echo_reply.body, &reply);

    zf_envelope_t env;
    ZF_ASSERT (zf_envelope_decode (zframe_data (frame), zframe_size (frame), &env, &err) == ZF_OK);
    ZF_ASSERT (streq (env.type, "echo.reply") && env.desc == &zf_msg_echo_reply);
    ZF_ASSERT (env.version == 1 && env.id == 43 && env.re == 42);
    ZF_ASSERT (streq (env.from, "echo@edge-2") && streq (env.to, "probe"));
    zf_msg_echo_reply_t *body = env.body;
    ZF_ASSERT (body->seq == 7 && streq (body->served_by, "echo@edge-2") && streq (body->text, ""));

    //  Every proper prefix is truncated; one byte more is trailing.
    size_t size = zframe_size (frame);
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *prefix = zf_malloc (cut ? cut : 1);
        memcpy (prefix, zframe_data (frame), cut);
        s_test_refuses (prefix, cut, ZF_E_TRUNCATED, "frame", NULL);
        zf_free (prefix);
    }
    uint8_t *longer = zf_malloc (size + 1);
    memcpy (longer, zframe_data (frame), size);
    longer[size] = 0x00;
    s_test_refuses (longer, size + 1, ZF_E_TRAILING, "frame",
                    "1 byte(s) left over after the value");
    zf_free (longer);
    zf_envelope_clear (&env);
    ZF_ASSERT (env.body == NULL);
    zf_envelope_clear (&env); //  twice is harmless
    zframe_destroy (&frame);

    //  An event: no "to", no "re".
    zf_msg_echo_seen_t seen = {.seq = 9, .ok = true};
    frame = zf_envelope_encode (&zf_msg_echo_seen, 44, 0, "echo", NULL, &seen, &err);
    ZF_ASSERT (frame);
    ZF_ASSERT (zf_envelope_decode (zframe_data (frame), zframe_size (frame), &env, &err) == ZF_OK);
    ZF_ASSERT (streq (env.to, "") && env.re == 0 && ((zf_msg_echo_seen_t *) env.body)->ok);
    zf_envelope_clear (&env);
    zframe_destroy (&frame);
}

static void s_test_encode_refuses (void)
{
    zf_error_t err;
    zf_msg_echo_request_t request = {.seq = 1, .text = NULL};
    char long_name[ZF_NAME_MAX + 2];
    memset (long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ZF_ASSERT (!zf_envelope_encode (&zf_msg_echo_request, 1, 0, long_name, NULL, &request, &err));
    ZF_ASSERT (err.code == ZF_E_TOO_LARGE && streq (err.where, "from"));
    ZF_ASSERT (streq (err.message, "name of 129 bytes is over max 128"));
    ZF_ASSERT (!zf_envelope_encode (&zf_msg_echo_request, 1, 0, "a", "b\nc", &request, &err));
    ZF_ASSERT (err.code == ZF_E_INVALID && streq (err.where, "to"));
    ZF_ASSERT (streq (err.message, "name has control byte 0x0a at offset 1"));
    ZF_ASSERT (!zf_envelope_encode (&zf_msg_echo_request, 1, 0, "", NULL, &request, &err));
    ZF_ASSERT (err.code == ZF_E_INVALID && streq (err.where, "from"));

    //  Body errors carry the body path.
    char *text = zf_malloc (65538);
    memset (text, 't', 65537);
    text[65537] = '\0';
    request.text = text;
    ZF_ASSERT (!zf_envelope_encode (&zf_msg_echo_request, 1, 0, "a", NULL, &request, &err));
    ZF_ASSERT (err.code == ZF_E_TOO_LARGE && streq (err.where, "body.text"));
    ZF_ASSERT (streq (err.message, "string of 65537 bytes is over max 65536"));
    zf_free (text);
    zf_msg_error_t error = {.code = NULL, .message = "m"};
    ZF_ASSERT (!zf_envelope_encode (&zf_msg_error, 1, 0, "a", NULL, &error, &err));
    ZF_ASSERT (err.code == ZF_E_MISSING && streq (err.where, "body.code"));
}

static void s_test_decode_refuses (void)
{
    //  The frame itself: oversize (checked before unpacking), not a map, not msgpack.
    size_t huge_size = ZF_ENVELOPE_MAX + 1;
    uint8_t *huge = zf_calloc (huge_size, 1);
    s_test_refuses (huge, huge_size, ZF_E_TOO_LARGE, "frame",
                    "frame of 1048577 bytes is over max 1048576");
    zf_free (huge);
    //  A 10 MB string, inside a frame that announces it honestly.
    huge_size = 10 * 1024 * 1024;
    huge = zf_malloc (huge_size);
    memset (huge, 's', huge_size);
    size_t frame_size;
    uint8_t *frame = zf_schema_build (&frame_size, "M1 s S", "junk", huge, huge_size);
    s_test_refuses (frame, frame_size, ZF_E_TOO_LARGE, "frame",
                    "frame of 10485771 bytes is over max 1048576");
    zf_free (frame);
    zf_free (huge);
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "frame", "expected a map, got an array", "A0");
    S_TEST_BUILD_REFUSES (ZF_E_INVALID, "frame", "byte 0xc1 at offset 0 is not msgpack", "r",
                          "\xc1", (size_t) 1);
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "frame", "expected string keys, got nil", "M1 n n");

    //  Missing keys, each named.
    const char *type = "echo.seen";
    S_TEST_BUILD_REFUSES (ZF_E_MISSING, "from", "required envelope key is missing",
                          "M4 ss su su s M0", "type", type, "v", (uint64_t) 1, "id", (uint64_t) 1,
                          "body");
    S_TEST_BUILD_REFUSES (ZF_E_MISSING, "id", "required envelope key is missing",
                          "M4 ss su ss s M0", "type", type, "v", (uint64_t) 1, "from", "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_MISSING, "type", "required envelope key is missing",
                          "M4 su su ss s M0", "v", (uint64_t) 1, "id", (uint64_t) 1, "from", "a",
                          "body");
    S_TEST_BUILD_REFUSES (ZF_E_MISSING, "v", "required envelope key is missing", "M4 ss su ss s M0",
                          "type", type, "id", (uint64_t) 1, "from", "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_MISSING, "body", "required envelope key is missing",
                          "M4 ss su su ss", "type", type, "v", (uint64_t) 1, "id", (uint64_t) 1,
                          "from", "a");

    //  Wrong types, each named.
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "from", "expected a string, got a non-negative integer",
                          "M5 ss su su su s M0", "type", type, "v", (uint64_t) 1, "id",
                          (uint64_t) 1, "from", (uint64_t) 1, "body");
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "id",
                          "expected a non-negative integer, got a negative integer",
                          "M5 ss su si ss s M0", "type", type, "v", (uint64_t) 1, "id",
                          (int64_t) -1, "from", "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "type", "expected a string, got a binary",
                          "M5 sB su su ss s M0", "type", "x", (size_t) 1, "v", (uint64_t) 1, "id",
                          (uint64_t) 1, "from", "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "v", "expected a non-negative integer, got a string",
                          "M5 ss ss su ss s M0", "type", type, "v", "1", "id", (uint64_t) 1, "from",
                          "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "re", "expected a non-negative integer, got a float64",
                          "M6 ss su su ss sf s M0", "type", type, "v", (uint64_t) 1, "id",
                          (uint64_t) 1, "from", "a", "re", 1.0, "body");
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "to", "expected a string, got nil", "M6 ss su su ss sn s M0",
                          "type", type, "v", (uint64_t) 1, "id", (uint64_t) 1, "from", "a", "to",
                          "body");
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "body", "expected a map, got nil", "M5 ss su su ss sn", "type",
                          type, "v", (uint64_t) 1, "id", (uint64_t) 1, "from", "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_INVALID, "id", "duplicate key", "M6 ss su su ss su s M0", "type",
                          type, "v", (uint64_t) 1, "id", (uint64_t) 1, "from", "a", "id",
                          (uint64_t) 2, "body");
    S_TEST_BUILD_REFUSES (ZF_E_INVALID, "from", "name has control byte 0x1b at offset 0",
                          "M5 ss su su ss s M0", "type", type, "v", (uint64_t) 1, "id",
                          (uint64_t) 1, "from", "\x1b[31m", "body");
    S_TEST_BUILD_REFUSES (ZF_E_INVALID, "from", "name is empty", "M5 ss su su ss s M0", "type",
                          type, "v", (uint64_t) 1, "id", (uint64_t) 1, "from", "", "body");
}

static void s_test_types_and_versions (void)
{
    //  An unknown type is named (unprintable bytes as '?'), and the sender survives for the log.
    zf_envelope_t env;
    zf_error_t err;
    size_t size;
    uint8_t *data = zf_schema_build (&size, "M5 su ss ss su s M0", "id", (uint64_t) 77, "from",
                                     "peer", "type", "no.such\n", "v", (uint64_t) 1, "body");
    ZF_ASSERT (zf_envelope_decode (data, size, &env, &err) == ZF_E_UNKNOWN_TYPE);
    ZF_ASSERT (streq (err.where, "type"));
    ZF_ASSERT (streq (err.message, "unknown message type 'no.such?'"));
    ZF_ASSERT (env.id == 77 && streq (env.from, "peer") && !env.body);
    zf_free (data);
    char long_type[ZF_TYPE_MAX + 2];
    memset (long_type, 'a', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0';
    S_TEST_BUILD_REFUSES (ZF_E_TOO_LARGE, "type", "type of 65 bytes is over max 64",
                          "M5 ss su su ss s M0", "type", long_type, "v", (uint64_t) 1, "id",
                          (uint64_t) 1, "from", "a", "body");

    //  A newer version is refused; an older one (none exists yet) would decode.
    S_TEST_BUILD_REFUSES (ZF_E_VERSION, "v", "echo.seen version 2 is newer than this build's 1",
                          "M5 ss su su ss s M0", "type", "echo.seen", "v", (uint64_t) 2, "id",
                          (uint64_t) 1, "from", "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_VERSION, "v",
                          "echo.seen version 4294967296 is newer than this build's 1",
                          "M5 ss su su ss s M0", "type", "echo.seen", "v", (uint64_t) 1 << 32, "id",
                          (uint64_t) 1, "from", "a", "body");
    S_TEST_BUILD_REFUSES (ZF_E_INVALID, "v", "version 0 is not a schema version",
                          "M5 ss su su ss s M0", "type", "echo.seen", "v", (uint64_t) 0, "id",
                          (uint64_t) 1, "from", "a", "body");

    //  Body errors come from the schema decoder, under "body".
    S_TEST_BUILD_REFUSES (ZF_E_MISSING, "body.seq", "required field is missing",
                          "M5 ss su su ss s M1 st", "type", "echo.seen", "v", (uint64_t) 1, "id",
                          (uint64_t) 1, "from", "a", "body", "ok");
    S_TEST_BUILD_REFUSES (ZF_E_TYPE, "body.ok", "expected a bool, got a non-negative integer",
                          "M5 ss su su ss s M2 su su", "type", "echo.seen", "v", (uint64_t) 1, "id",
                          (uint64_t) 1, "from", "a", "body", "seq", (uint64_t) 1, "ok",
                          (uint64_t) 1);

    //  Unknown envelope keys and body keys are skipped.
    data = zf_schema_build (&size, "M7 s M0 ss su su ss s M3 su st sn ss", "trace", "type",
                            "echo.seen", "v", (uint64_t) 1, "id", (uint64_t) 5, "from", "a", "body",
                            "seq", (uint64_t) 3, "ok", "later", "zone", "eu");
    ZF_ASSERT (zf_envelope_decode (data, size, &env, &err) == ZF_OK);
    ZF_ASSERT (((zf_msg_echo_seen_t *) env.body)->seq == 3);
    zf_envelope_clear (&env);
    zf_free (data);
}

void zf_envelope_test (bool verbose)
{
    //  Usage: encode a request, decode the frame, read the typed body, clear.
    zframe_t *frame = s_test_request (7, "hello");
    zf_envelope_t env;
    zf_error_t err;
    if (zf_envelope_decode (zframe_data (frame), zframe_size (frame), &env, &err) != ZF_OK)
        fprintf (stderr, "refused from=%s: %s at %s: %s\n", env.from, zf_status_name (err.code),
                 err.where, err.message);
    ZF_ASSERT (env.desc == &zf_msg_echo_request);
    const zf_msg_echo_request_t *request = env.body;
    ZF_ASSERT (request->seq == 7 && streq (request->text, "hello"));
    if (verbose)
        printf ("zf_envelope_test: %s from %s to %s in %zu bytes\n", env.type, env.from, env.to,
                zframe_size (frame));
    zf_envelope_clear (&env);
    zframe_destroy (&frame);

    s_test_round_trip ();
    s_test_encode_refuses ();
    s_test_decode_refuses ();
    s_test_types_and_versions ();
}
