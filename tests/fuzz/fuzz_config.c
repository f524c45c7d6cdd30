/*  fuzz_config.c — arbitrary bytes as an INI file, through zf_config_load_stream.

    The configuration file is outside input: whatever it holds, loading must end in a config
    or in an error that names file and line, never in a crash, a leak or an assertion. The
    section table has every kind of key, a required section and a free-form section. The first
    line of the input, when it starts with "--set ", is also tried as an override, and the
    input's first bytes go through the public value parsers.

    Run by hand: fuzz_config -max_len=4096 -dict=tests/fuzz/config.dict CORPUS_DIR */
#include "zf_config.h"

typedef struct {
    char *name;
    int log_level;
    int64_t hwm;
    bool curve;
    uint64_t piece_size;
    int64_t timeout_ms;
    double disk_high;
} fuzz_node_t;

static const zf_config_key_t s_node_keys[] = {
    {.key = "name",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (fuzz_node_t, name),
     .required = true,
     .help = "unique name"},
    {.key = "log_level",
     .kind = ZF_CONFIG_ENUM,
     .offset = offsetof (fuzz_node_t, log_level),
     .default_text = "notice",
     .choices = "error|warning|notice|info|debug",
     .help = "level"},
    {.key = "hwm",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (fuzz_node_t, hwm),
     .default_text = "1000",
     .min = 1,
     .max = 1000000,
     .help = "queue bound"},
    {.key = "curve",
     .kind = ZF_CONFIG_BOOL,
     .offset = offsetof (fuzz_node_t, curve),
     .default_text = "off",
     .help = "encryption"},
    {.key = "piece_size",
     .kind = ZF_CONFIG_SIZE,
     .offset = offsetof (fuzz_node_t, piece_size),
     .default_text = "4M",
     .min = 4096,
     .max = INT64_MAX,
     .help = "piece size"},
    {.key = "timeout",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (fuzz_node_t, timeout_ms),
     .default_text = "5s",
     .min = 1,
     .max = 3600000,
     .help = "deadline"},
    {.key = "disk_high",
     .kind = ZF_CONFIG_PERCENT,
     .offset = offsetof (fuzz_node_t, disk_high),
     .default_text = "80",
     .min = 0,
     .max = 100,
     .help = "watermark"},
};

static const zf_config_section_t s_node = {
    .name = "node",
    .help = "every kind of key",
    .keys = s_node_keys,
    .key_count = ZF_ARRAY_LEN (s_node_keys),
    .struct_size = sizeof (fuzz_node_t),
    .required = true,
};

static const zf_config_section_t s_endpoints = {
    .name = "endpoints",
    .help = "free-form",
    .free_form = true,
};

static const zf_config_section_t *const s_sections[] = {&s_node, &s_endpoints};

//  What a caller does with a loaded config: read every field and entry.
static void s_use (zf_config_t *config)
{
    const fuzz_node_t *node = zf_config_section (config, "node");
    ZF_ASSERT (node && node->name);
    ZF_ASSERT (node->hwm >= 1 && node->hwm <= 1000000);
    ZF_ASSERT (node->log_level >= 0 && node->log_level <= 4);
    size_t count;
    const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &count);
    for (size_t index = 0; index < count; index++)
        ZF_ASSERT (entries[index].key[0] && entries[index].value && entries[index].where);
}

static void s_fuzz_parsers (const uint8_t *data, size_t size)
{
    char text[64];
    size_t length = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy (text, data, length);
    text[length] = '\0';
    uint64_t bytes;
    int64_t ms;
    bool value;
    zf_error_t err;
    zf_config_parse_size (text, &bytes, &err);
    zf_config_parse_duration (text, &ms, &err);
    zf_config_parse_bool (text, &value, &err);
}

//  "--set node.hwm=5\n…": the first line minus "--set " becomes an override.
static char *s_override (const uint8_t *data, size_t size)
{
    if (size < 6 || memcmp (data, "--set ", 6) != 0)
        return NULL;
    const uint8_t *newline = memchr (data, '\n', size);
    size_t length = (newline ? (size_t) (newline - data) : size) - 6;
    return zf_strndup ((const char *) data + 6, length);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_fuzz_parsers (data, size);
    if (size == 0)
        return 0; //  fmemopen refuses an empty buffer
    FILE *file = fmemopen ((void *) data, size, "r");
    ZF_ASSERT (file);
    char *override = s_override (data, size);
    const char *overrides[] = {override};
    zf_error_t err;
    zf_config_t *config = zf_config_load_stream (s_sections, ZF_ARRAY_LEN (s_sections), file,
                                                 "fuzz.ini", overrides, override ? 1 : 0, &err);
    if (config)
        s_use (config);
    else
        ZF_ASSERT (err.code == ZF_E_CONFIG && err.message[0] && err.where[0]);
    zf_config_destroy (&config);
    zf_free (override);
    fclose (file);
    return 0;
}
