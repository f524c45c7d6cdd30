/*  zf_schema_test.c — the selftest of the message codec (zf_schema.h), on selftest.sample
    (schemas/selftest.schema), which has a field of every kind: round trips, defaults, wrong
    types, numbers and bounds, missing and duplicate keys, validation of values built in C, the
    registry of message types, copies and enums.

    Separate from zf_schema.c because it is as long as the codec; it uses only the public API. */
#include "zf_schema.h"

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

static void s_test_round_trip (bool verbose)
{
    zf_msg_selftest_sample_t sample;
    s_test_fill (&sample);
    size_t size;
    uint8_t *data = zf_schema_encode_alloc (S_SAMPLE, &sample, &size);

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
    uint8_t *again = zf_schema_encode_alloc (S_SAMPLE, &copy, &again_size);
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
    uint8_t *data = zf_schema_encode_alloc (zf_msg_echo_request.body, &request, &size);
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
