/*  golden_check.c — holds the C codec to the golden encodings in schemas/golden/.

    Usage: golden_check DIR        (ctest unit.golden runs it on schemas/golden)

    For every DIR/TYPE.golden (format and regeneration: tools/zf_golden.py) it decodes the hex
    line with zf_envelope_decode, requires the type to be TYPE, the header to match the envelope
    line and the body to match the json line, re-encodes with zf_envelope_encode and requires
    identical bytes. It fails when a registered message type has no golden file, so a new type
    cannot ship without its wire format pinned. */
#include "zf_envelope.h"
#include "zf_msgs.h"
#include <ctype.h>
#include <dirent.h>
#include <jansson.h>

typedef struct {
    char *envelope; //  the text after "envelope:"
    char *json;
    char *hex;
} golden_t;

static int s_failures = 0;

static void s_fail (const char *path, const char *what)
{
    fprintf (stderr, "golden_check: %s: %s\n", path, what);
    s_failures++;
}

//  --------------------------------------------------------------------------------------------
//  Reading golden files

static void s_golden_clear (golden_t *golden)
{
    zf_free (golden->envelope);
    zf_free (golden->json);
    zf_free (golden->hex);
    memset (golden, 0, sizeof *golden);
}

static char *s_trimmed (const char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t len = strlen (text);
    while (len > 0 && strchr (" \t\r\n", text[len - 1]))
        len--;
    return zf_strndup (text, len);
}

static bool s_take_line (const char *line, const char *key, char **slot)
{
    size_t key_len = strlen (key);
    if (strncmp (line, key, key_len) != 0 || line[key_len] != ':')
        return false;
    zf_free (*slot);
    *slot = s_trimmed (line + key_len + 1);
    return true;
}

static bool s_golden_read (const char *path, golden_t *golden)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    char *line = NULL;
    size_t line_size = 0;
    while (getline (&line, &line_size, file) >= 0) {
        if (!s_take_line (line, "envelope", &golden->envelope)
            && !s_take_line (line, "json", &golden->json))
            s_take_line (line, "hex", &golden->hex);
    }
    free (line);
    fclose (file);
    return golden->envelope && golden->json && golden->hex;
}

static int s_hex_digit (char digit)
{
    if (digit >= '0' && digit <= '9')
        return digit - '0';
    if (digit >= 'a' && digit <= 'f')
        return digit - 'a' + 10;
    if (digit >= 'A' && digit <= 'F')
        return digit - 'A' + 10;
    return -1;
}

//  Returns a heap buffer of *size bytes, or NULL when hex is not an even run of hex digits.
static uint8_t *s_hex_decode (const char *hex, size_t *size)
{
    size_t len = strlen (hex);
    if (len % 2)
        return NULL;
    uint8_t *bytes = zf_malloc (len / 2);
    for (size_t index = 0; index < len / 2; index++) {
        int high = s_hex_digit (hex[2 * index]);
        int low = s_hex_digit (hex[2 * index + 1]);
        if (high < 0 || low < 0) {
            zf_free (bytes);
            return NULL;
        }
        bytes[index] = (uint8_t) (high << 4 | low);
    }
    *size = len / 2;
    return bytes;
}

//  --------------------------------------------------------------------------------------------
//  A decoded body as JSON, the way tools/zf_golden.py writes it (bin as hex)

static json_t *s_record_json (const zf_record_desc_t *desc, const void *value);

static json_t *s_bin_json (const zf_bytes_t *bytes)
{
    char *hex = zf_malloc (bytes->size * 2 + 1);
    for (size_t index = 0; index < bytes->size; index++)
        snprintf (hex + 2 * index, 3, "%02x", bytes->data[index]);
    hex[bytes->size * 2] = '\0';
    json_t *json = json_string (hex);
    zf_free (hex);
    return json;
}

static json_t *s_value_json (const zf_field_desc_t *field, const void *slot)
{
    switch (field->kind) {
    case ZF_FIELD_BOOL: return json_boolean (*(const bool *) slot);
    case ZF_FIELD_U64: return json_integer ((json_int_t) * (const uint64_t *) slot);
    case ZF_FIELD_I64: return json_integer ((json_int_t) * (const int64_t *) slot);
    case ZF_FIELD_F64: return json_real (*(const double *) slot);
    case ZF_FIELD_STR: return json_string (*(char *const *) slot);
    case ZF_FIELD_BIN: return s_bin_json (slot);
    case ZF_FIELD_RECORD: return s_record_json (field->record, slot);
    }
    return json_null ();
}

static json_t *s_record_json (const zf_record_desc_t *desc, const void *value)
{
    json_t *object = json_object ();
    for (size_t index = 0; index < desc->field_count; index++) {
        const zf_field_desc_t *field = &desc->fields[index];
        const char *slot = (const char *) value + field->offset;
        json_t *json;
        if (field->is_list) {
            const zf_list_t *list = (const zf_list_t *) slot;
            json = json_array ();
            for (size_t item = 0; item < list->count; item++)
                json_array_append_new (
                    json, s_value_json (field, (char *) list->items
                                                   + item * zf_schema_value_size (field)));
        } else
            json = s_value_json (field, slot);
        json_object_set_new (object, field->name, json);
    }
    return object;
}

static json_t *s_header_json (const zf_envelope_t *env)
{
    json_t *object = json_pack ("{s:I, s:s}", "id", (json_int_t) env->id, "from", env->from);
    if (env->to[0])
        json_object_set_new (object, "to", json_string (env->to));
    if (env->re)
        json_object_set_new (object, "re", json_integer ((json_int_t) env->re));
    return object;
}

//  --------------------------------------------------------------------------------------------
//  Checks

static bool s_json_matches (const char *path, const char *what, const char *expected_text,
                            json_t *actual)
{
    json_error_t error;
    json_t *expected = json_loads (expected_text, 0, &error);
    bool same = expected && json_equal (expected, actual);
    if (!same) {
        char *actual_text = json_dumps (actual, JSON_PRESERVE_ORDER | JSON_COMPACT);
        char *message = zf_asprintf ("%s line %s: decoded as %s", what,
                                     expected ? "differs" : "is not JSON", actual_text);
        s_fail (path, message);
        zf_free (message);
        free (actual_text);
    }
    json_decref (expected);
    json_decref (actual);
    return same;
}

static void s_check_reencode (const char *path, const zf_envelope_t *env, const uint8_t *bytes,
                              size_t size)
{
    zf_error_t err;
    zframe_t *frame =
        zf_envelope_encode (env->desc, env->id, env->re, env->from, env->to, env->body, &err);
    if (!frame) {
        char *message = zf_asprintf ("re-encode failed: %s: %s", err.where, err.message);
        s_fail (path, message);
        zf_free (message);
        return;
    }
    if (zframe_size (frame) != size || memcmp (zframe_data (frame), bytes, size) != 0) {
        char *hex = zframe_strhex (frame);
        for (char *digit = hex; *digit; digit++) //  lowercase, as in the golden files
            *digit = (char) tolower ((unsigned char) *digit);
        char *message = zf_asprintf ("re-encoding differs from the hex line: %s", hex);
        s_fail (path, message);
        zf_free (message);
        free (hex);
    }
    zframe_destroy (&frame);
}

static void s_check_decoded (const char *path, const char *type, const golden_t *golden,
                             const zf_envelope_t *env, const uint8_t *bytes, size_t size)
{
    if (!streq (env->type, type)) {
        char *message = zf_asprintf ("decoded type '%s', expected '%s'", env->type, type);
        s_fail (path, message);
        zf_free (message);
        return;
    }
    if (env->version != env->desc->version)
        s_fail (path, "golden encodings are of the current version");
    s_json_matches (path, "envelope", golden->envelope, s_header_json (env));
    s_json_matches (path, "json", golden->json, s_record_json (env->desc->body, env->body));
    s_check_reencode (path, env, bytes, size);
}

static void s_check_file (const char *path, const char *type)
{
    golden_t golden = {NULL, NULL, NULL};
    size_t size = 0;
    uint8_t *bytes = NULL;
    if (!s_golden_read (path, &golden))
        s_fail (path, "cannot read, or lacks an envelope:, json: or hex: line");
    else if (!(bytes = s_hex_decode (golden.hex, &size)))
        s_fail (path, "hex line is not hex");
    else {
        zf_envelope_t env;
        zf_error_t err;
        if (zf_envelope_decode (bytes, size, &env, &err) != ZF_OK) {
            char *message = zf_asprintf ("does not decode: %s: %s: %s", zf_status_name (err.code),
                                         err.where, err.message);
            s_fail (path, message);
            zf_free (message);
        } else
            s_check_decoded (path, type, &golden, &env, bytes, size);
        zf_envelope_clear (&env);
    }
    zf_free (bytes);
    s_golden_clear (&golden);
}

//  Every golden file checked; then every registered type must have had one.
int main (int argc, char *argv[])
{
    if (argc != 2) {
        fprintf (stderr, "usage: golden_check DIR\n");
        return 2;
    }
    size_t type_count;
    const zf_msg_desc_t *const *types = zf_schema_all (&type_count);
    bool *covered = zf_calloc (type_count, sizeof (bool));
    DIR *dir = opendir (argv[1]);
    if (!dir) {
        fprintf (stderr, "golden_check: cannot open %s\n", argv[1]);
        return 1;
    }
    struct dirent *entry;
    size_t checked = 0;
    while ((entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        if (len <= 7 || !streq (entry->d_name + len - 7, ".golden"))
            continue;
        char *type = zf_strndup (entry->d_name, len - 7);
        char *path = zf_asprintf ("%s/%s", argv[1], entry->d_name);
        const zf_msg_desc_t *desc = zf_schema_find (type, strlen (type));
        if (!desc)
            s_fail (path, "no schema defines this type");
        for (size_t index = 0; desc && index < type_count; index++)
            covered[index] |= types[index] == desc;
        s_check_file (path, type);
        checked++;
        zf_free (path);
        zf_free (type);
    }
    closedir (dir);
    for (size_t index = 0; index < type_count; index++) {
        if (!covered[index]) {
            char *message = zf_asprintf ("no golden file for message type %s (create it with "
                                         "tools/zf_golden.py --write)",
                                         types[index]->type);
            s_fail (argv[1], message);
            zf_free (message);
        }
    }
    zf_free (covered);
    printf ("golden_check: %zu files, %zu message types, %d failures\n", checked, type_count,
            s_failures);
    return s_failures ? 1 : 0;
}
