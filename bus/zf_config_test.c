/*  zf_config_test.c — the selftest of the configuration reader (zf_config.h): values of every
    kind, good files and every refusal with its exact message, long lines, list keys,
    validators and deprecated names, overrides, and the reference loading back.

    Separate from zf_config.c because it is as long as the reader itself; it uses only the
    public API, as a component would. */
#include "zf_config.h"

#include <unistd.h>

//  A component's view: its struct, its key table, its section. [bus] is optional with a
//  default for every kind; [node] is required with a required key; [endpoints] is free-form.
typedef struct {
    char *name;
    int log_level;
    char *storage_dir;
    char *motd;
} test_node_t;

typedef struct {
    int64_t hwm;
    bool curve;
    uint64_t piece_size;
    int64_t timeout_ms;
    double disk_high;
} test_bus_t;

static const zf_config_key_t s_test_node_keys[] = {
    {.key = "name",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (test_node_t, name),
     .required = true,
     .help = "unique name of this node"},
    {.key = "log_level",
     .kind = ZF_CONFIG_ENUM,
     .offset = offsetof (test_node_t, log_level),
     .default_text = "notice",
     .choices = "error|warning|notice|info|debug",
     .help = "least severe level logged"},
    {.key = "storage_dir",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (test_node_t, storage_dir),
     .default_text = "/var/lib/zfly",
     .help = "where pieces are kept"},
    {.key = "motd",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (test_node_t, motd),
     .help = "banner logged at start"},
};

static const zf_config_key_t s_test_bus_keys[] = {
    {.key = "hwm",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (test_bus_t, hwm),
     .default_text = "1000",
     .min = 1,
     .max = 1000000,
     .help = "messages queued per peer"},
    {.key = "curve",
     .kind = ZF_CONFIG_BOOL,
     .offset = offsetof (test_bus_t, curve),
     .default_text = "off",
     .help = "encrypt tcp:// links"},
    {.key = "piece_size",
     .kind = ZF_CONFIG_SIZE,
     .offset = offsetof (test_bus_t, piece_size),
     .default_text = "4M",
     .min = 4096,
     .max = 1 << 30,
     .help = "bytes per piece"},
    {.key = "timeout",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (test_bus_t, timeout_ms),
     .default_text = "5s",
     .min = 100,
     .max = 3600000,
     .help = "request deadline"},
    {.key = "disk_high",
     .kind = ZF_CONFIG_PERCENT,
     .offset = offsetof (test_bus_t, disk_high),
     .default_text = "80%",
     .min = 0,
     .max = 100,
     .help = "disk use that starts eviction"},
};

static const zf_config_section_t s_test_node = {
    .name = "node",
    .help = "this process",
    .keys = s_test_node_keys,
    .key_count = ZF_ARRAY_LEN (s_test_node_keys),
    .struct_size = sizeof (test_node_t),
    .required = true,
};

static const zf_config_section_t s_test_bus = {
    .name = "bus",
    .help = "the message bus",
    .keys = s_test_bus_keys,
    .key_count = ZF_ARRAY_LEN (s_test_bus_keys),
    .struct_size = sizeof (test_bus_t),
};

static const zf_config_section_t s_test_endpoints = {
    .name = "endpoints",
    .help = "actors of other processes",
    .free_form = true,
    .free_form_help = "ACTOR@NODE = ENDPOINT",
};

static const zf_config_section_t *const s_test_sections[] = {&s_test_node, &s_test_bus,
                                                             &s_test_endpoints};
#define TEST_SECTIONS s_test_sections, ZF_ARRAY_LEN (s_test_sections)

//  Writes a file under /tmp; the caller unlinks and frees the returned path.
static char *s_test_write (const char *content, size_t length)
{
    char *path = zf_strdup ("/tmp/zf_config_test_XXXXXX");
    int fd = mkstemp (path);
    ZF_ASSERT (fd >= 0);
    FILE *file = fdopen (fd, "w");
    ZF_ASSERT (file);
    ZF_ASSERT (fwrite (content, 1, length, file) == length);
    ZF_ASSERT (fclose (file) == 0);
    return path;
}

static void s_test_free_string (void **item)
{
    zf_free (*item);
    *item = NULL;
}

static void s_test_remove (char **path_p)
{
    unlink (*path_p);
    zf_free (*path_p);
    *path_p = NULL;
}

static void s_test_expect_message (const zf_error_t *err, const char *expected)
{
    if (!streq (err->message, expected))
        fprintf (stderr, "expected: %s\n     got: %s\n", expected, err->message);
    ZF_ASSERT (streq (err->message, expected));
}

//  Loads length bytes of content and checks the exact message: the file's path followed by
//  suffix, or suffix alone for override errors (which do not name the file).
static void s_test_fails (const char *content, size_t length, const char *const *overrides,
                          size_t override_count, const char *suffix, bool verbose)
{
    char *path = s_test_write (content, length);
    zf_error_t err;
    zf_config_t *config = zf_config_load (TEST_SECTIONS, path, overrides, override_count, &err);
    ZF_ASSERT (!config);
    ZF_ASSERT (err.code == ZF_E_CONFIG);
    if (verbose)
        printf ("  %s\n", err.message);
    char *expected = override_count && suffix[0] == '-' ? zf_strdup (suffix)
                                                        : zf_asprintf ("%s%s", path, suffix);
    s_test_expect_message (&err, expected);
    //  where is the message up to the ": " that follows the location
    size_t where_length = strlen (err.where);
    ZF_ASSERT (strncmp (err.message, err.where, where_length) == 0);
    ZF_ASSERT (strncmp (err.message + where_length, ": ", 2) == 0);
    zf_free (expected);
    s_test_remove (&path);
}

static void s_test_file_fails (const char *content, const char *suffix, bool verbose)
{
    s_test_fails (content, strlen (content), NULL, 0, suffix, verbose);
}

static void s_test_set_fails (const char *override, const char *expected, bool verbose)
{
    const char *overrides[] = {"node.name=edge-1", override};
    const char *content = "[bus]\nhwm = 5\n";
    s_test_fails (content, strlen (content), overrides, 2, expected, verbose);
}

static zf_config_t *s_test_load (const char *content, const char *const *overrides,
                                 size_t override_count, char **path_p)
{
    *path_p = s_test_write (content, strlen (content));
    zf_error_t err;
    zf_config_t *config = zf_config_load (TEST_SECTIONS, *path_p, overrides, override_count, &err);
    if (!config)
        fprintf (stderr, "unexpected: %s\n", err.message);
    ZF_ASSERT (config);
    return config;
}

static void s_test_parsers (void)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } sizes[] = {{"512", 512},
                 {"64K", 65536},
                 {"4M", 4 << 20},
                 {"2G", 2ULL << 30},
                 {"1T", 1ULL << 40},
                 {"4MiB", 4 << 20},
                 {"4mb", 4 << 20},
                 {" 1 K ", 1024},
                 {"7B", 7},
                 {"0", 0},
                 {"16EiB", 0},
                 {"12Q", 0},
                 {"-1", 0},
                 {"", 0},
                 {"K", 0},
                 {"1.5G", 0},
                 {"4Mi", 0},
                 {"5iB", 0},
                 {"99999999999999999999", 0}};
    for (size_t index = 0; index < ZF_ARRAY_LEN (sizes); index++) {
        uint64_t bytes = 1;
        zf_error_t err;
        zf_status_t rc = zf_config_parse_size (sizes[index].text, &bytes, &err);
        bool valid = sizes[index].bytes || streq (sizes[index].text, "0");
        ZF_ASSERT (valid ? rc == ZF_OK && bytes == sizes[index].bytes : rc == ZF_E_INVALID);
    }
    zf_error_t err;
    uint64_t bytes;
    ZF_ASSERT (zf_config_parse_size ("12Q", &bytes, &err) == ZF_E_INVALID);
    s_test_expect_message (
        &err, "'12Q' is not a size (whole bytes, or with K, M, G or T: powers of 1024)");
    ZF_ASSERT (zf_config_parse_size ("16EiB", &bytes, &err) == ZF_E_INVALID);
    s_test_expect_message (&err, "'16EiB' is not a size (whole bytes, or with K, M, G or T: "
                                 "powers of 1024)");
    ZF_ASSERT (zf_config_parse_size ("16777216T", &bytes, &err) == ZF_E_INVALID);
    s_test_expect_message (&err, "'16777216T' is too large for a size");

    static const struct {
        const char *text;
        int64_t ms;
    } durations[] = {{"250ms", 250},      {"5s", 5000},   {"2m", 120000}, {"1h", 3600000},
                     {"30d", 2592000000}, {"1500", 1500}, {"0", 0},       {" 3 s ", 3000},
                     {"5x", -1},          {"s", -1},      {"1.5s", -1},   {"-5s", -1},
                     {"5S", -1},          {"5 m s", -1},  {"", -1},       {"106751991168d", -1}};
    for (size_t index = 0; index < ZF_ARRAY_LEN (durations); index++) {
        int64_t ms = -7;
        zf_status_t rc = zf_config_parse_duration (durations[index].text, &ms, &err);
        bool valid = durations[index].ms >= 0;
        ZF_ASSERT (valid ? rc == ZF_OK && ms == durations[index].ms : rc == ZF_E_INVALID);
    }
    int64_t ms;
    ZF_ASSERT (zf_config_parse_duration ("5x", &ms, &err) == ZF_E_INVALID);
    s_test_expect_message (&err, "'5x' is not a duration (a whole number with ms, s, m, h or d; "
                                 "a bare number is milliseconds)");

    static const char *const truths[] = {"true", "YES", "on", "1", " True "};
    static const char *const falsehoods[] = {"false", "no", "OFF", "0"};
    bool value;
    for (size_t index = 0; index < ZF_ARRAY_LEN (truths); index++)
        ZF_ASSERT (zf_config_parse_bool (truths[index], &value, &err) == ZF_OK && value);
    for (size_t index = 0; index < ZF_ARRAY_LEN (falsehoods); index++)
        ZF_ASSERT (zf_config_parse_bool (falsehoods[index], &value, &err) == ZF_OK && !value);
    ZF_ASSERT (zf_config_parse_bool ("maybe", &value, &err) == ZF_E_INVALID);
    s_test_expect_message (&err, "'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)");
    ZF_ASSERT (zf_config_parse_bool ("", &value, &err) == ZF_E_INVALID);
}

//  A good file with CRLF line endings, a byte order mark, comments of both kinds, an inline
//  comment, an indented first key and no newline at the end.
static void s_test_good_file (void)
{
    const char *content = "\xEF\xBB\xBF[node]\r\n"
                          "  name = edge-1   ; inline comment\r\n"
                          "log_level=debug\r\n"
                          "# a comment\r\n"
                          "; another\r\n"
                          "\r\n"
                          "[ bus ]\r\n"
                          "hwm = 250\r\n"
                          "curve = yes\r\n"
                          "piece_size = 16MiB\r\n"
                          "timeout = 2m\r\n"
                          "disk_high = 12.5%\r\n"
                          "[endpoints]\r\n"
                          "storage@edge-7 = tcp://10.0.0.7:7001\r\n"
                          "scheduler=tcp://10.0.0.1:7002;not-a-comment";
    char *path;
    zf_config_t *config = s_test_load (content, NULL, 0, &path);
    ZF_ASSERT (streq (zf_config_path (config), path));
    const test_node_t *node = zf_config_section (config, "node");
    ZF_ASSERT (node && streq (node->name, "edge-1"));
    ZF_ASSERT (node->log_level == 4);
    ZF_ASSERT (streq (node->storage_dir, "/var/lib/zfly"));
    ZF_ASSERT (node->motd == NULL);
    const test_bus_t *bus = zf_config_section (config, "bus");
    ZF_ASSERT (bus && bus->hwm == 250 && bus->curve);
    ZF_ASSERT (bus->piece_size == 16 << 20 && bus->timeout_ms == 120000);
    ZF_ASSERT (bus->disk_high == 12.5);
    size_t count;
    const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &count);
    ZF_ASSERT (count == 2);
    ZF_ASSERT (streq (entries[0].key, "storage@edge-7"));
    ZF_ASSERT (streq (entries[0].value, "tcp://10.0.0.7:7001"));
    char *where = zf_asprintf ("%s:14", path);
    ZF_ASSERT (streq (entries[0].where, where));
    zf_free (where);
    ZF_ASSERT (streq (entries[1].key, "scheduler"));
    ZF_ASSERT (streq (entries[1].value, "tcp://10.0.0.1:7002;not-a-comment"));
    zf_config_destroy (&config);
    ZF_ASSERT (config == NULL);
    s_test_remove (&path);
}

//  Absent optional sections: NULL from zf_config_section, defaults from _or_defaults; an
//  empty [bus] header is enough to be present.
static void s_test_sections_present (void)
{
    char *path;
    zf_config_t *config = s_test_load ("[node]\nname = a\n", NULL, 0, &path);
    ZF_ASSERT (!zf_config_has_section (config, "bus"));
    ZF_ASSERT (zf_config_section (config, "bus") == NULL);
    const test_bus_t *bus = zf_config_section_or_defaults (config, "bus");
    ZF_ASSERT (bus->hwm == 1000 && !bus->curve && bus->piece_size == 4 << 20);
    ZF_ASSERT (bus->timeout_ms == 5000 && bus->disk_high == 80);
    size_t count = 7;
    zf_config_entries (config, "endpoints", &count);
    ZF_ASSERT (count == 0);
    zf_config_destroy (&config);
    s_test_remove (&path);

    config = s_test_load ("[node]\nname = a\n[bus]\n[endpoints]\n", NULL, 0, &path);
    ZF_ASSERT (zf_config_has_section (config, "bus"));
    ZF_ASSERT (zf_config_has_section (config, "endpoints"));
    ZF_ASSERT (zf_config_section (config, "bus") == zf_config_section_or_defaults (config, "bus"));
    zf_config_destroy (&config);
    s_test_remove (&path);
}

//  Every refusal of a file, with its exact message.
static void s_test_file_errors (bool verbose)
{
    s_test_file_fails ("[node]\nname = a\n[bus]\nhwmm = 5\n",
                       ":4: [bus] hwmm: unknown key (known keys: hwm, curve, piece_size, "
                       "timeout, disk_high)",
                       verbose);
    s_test_file_fails ("[node]\nname = a\n[foo]\n",
                       ":3: unknown section [foo] (known sections: node, bus, endpoints)", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\nhwm = 12x\n",
                       ":4: [bus] hwm: '12x' is not a whole number", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\nhwm = 0x10\n",
                       ":4: [bus] hwm: '0x10' is not a whole number", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\nhwm = 0\n",
                       ":4: [bus] hwm: 0 is out of range (1..1000000)", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\nhwm = 99999999999999999999\n",
                       ":4: [bus] hwm: '99999999999999999999' does not fit in 64 bits", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\npiece_size = 2G\n",
                       ":4: [bus] piece_size: 2G is out of range (4K..1G)", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\ntimeout = 50\n",
                       ":4: [bus] timeout: 50 is out of range (100ms..1h)", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\ncurve = maybe\n",
                       ":4: [bus] curve: 'maybe' is not a boolean (true/false, yes/no, on/off, "
                       "1/0)",
                       verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\ndisk_high = 101%\n",
                       ":4: [bus] disk_high: 101% is out of range (0..100)", verbose);
    s_test_file_fails ("[node]\nname = a\n[bus]\ndisk_high = inf\n",
                       ":4: [bus] disk_high: 'inf' is not a percentage (such as 80 or 12.5%)",
                       verbose);
    s_test_file_fails ("[node]\nname = a\nlog_level = verbose\n",
                       ":3: [node] log_level: 'verbose' is not one of "
                       "error|warning|notice|info|debug",
                       verbose);
    s_test_file_fails ("[bus]\nhwm = 5\n", ": missing required section [node]", verbose);
    s_test_file_fails ("[node]\nlog_level = info\n", ": [node] name: required key is missing",
                       verbose);
    s_test_file_fails ("[node]\nname = a\nname = b\n",
                       ":3: [node] name: duplicate key (first set on line 2)", verbose);
    s_test_file_fails ("[node]\nname = a\n[endpoints]\nx = 1\n[node]\n[endpoints]\nx = 2\n",
                       ":7: [endpoints] x: duplicate key (first set on line 4)", verbose);
    s_test_file_fails ("[node]\nname = a\njunk\n",
                       ":3: syntax error: expected [section] or key = value", verbose);
    s_test_file_fails ("[node\nname = a\n", ":1: syntax error: expected [section] or key = value",
                       verbose);
    //  inih goes on after a syntax error; the earlier error is the one reported
    s_test_file_fails ("[node]\nname = a\njunk\n[nope]\n",
                       ":3: syntax error: expected [section] or key = value", verbose);
    s_test_file_fails ("name = a\n[node]\n", ":1: name: key before any [section] header", verbose);
    s_test_file_fails ("[node]\nname = a\n  log_level = info\n",
                       ":3: indented line would continue the value above (inih multi-line "
                       "values); remove the leading blanks",
                       verbose);
    s_test_file_fails ("[node]\n= a\n", ":2: [node] key is empty", verbose);
    s_test_fails ("[node]\nna\0me = a\n", 16, NULL, 0,
                  ":2: line contains a NUL byte; is this a text file?", verbose);
}

//  Lines of any length up to ZF_CONFIG_LINE_MAX pass whole, split by inih's rules whether
//  inih or we split them (199 bytes fit inih's buffer, 200 do not); longer ones fail.
static void s_test_long_lines (bool verbose)
{
    static const size_t lengths[] = {198, 199, 200, 1000, ZF_CONFIG_LINE_MAX - 100};
    static const char *const endings[] = {"\n", "\r\n", ""};
    size_t prefix = strlen ("name = ");
    for (size_t size = 0; size < ZF_ARRAY_LEN (lengths); size++) {
        size_t length = lengths[size];
        char *line = zf_malloc (length + 1);
        memcpy (line, "name = ", prefix);
        memset (line + prefix, 'x', length - prefix);
        line[length] = '\0';
        for (size_t index = 0; index < ZF_ARRAY_LEN (endings); index++) {
            char *content = zf_asprintf ("[node]\n%s%s", line, endings[index]);
            char *path;
            zf_config_t *config = s_test_load (content, NULL, 0, &path);
            const test_node_t *node = zf_config_section (config, "node");
            ZF_ASSERT (strlen (node->name) == length - prefix);
            zf_config_destroy (&config);
            s_test_remove (&path);
            zf_free (content);
        }
        //  the same rules as inih's: ':' separates, an inline comment ends the value, blanks
        //  are trimmed; a long comment line is a comment; the next line keeps its number
        char *content = zf_asprintf ("[node]\n  motd : %s   ; a comment\n# %s\nname = a\n",
                                     line + prefix, line);
        char *path;
        zf_config_t *config = s_test_load (content, NULL, 0, &path);
        const test_node_t *node = zf_config_section (config, "node");
        ZF_ASSERT (strlen (node->motd) == length - prefix && streq (node->name, "a"));
        zf_config_destroy (&config);
        s_test_remove (&path);
        zf_free (content);
        content = zf_asprintf ("[node]\nname = a\n%s\nname = b\n", line + prefix);
        s_test_file_fails (content, ":3: syntax error: expected [section] or key = value", verbose);
        zf_free (content);
        content = zf_asprintf ("[node]\nname = a\nmotd = %s\nmotd = b\n", line);
        s_test_file_fails (content, ":4: [node] motd: duplicate key (first set on line 3)",
                           verbose);
        zf_free (content);
        zf_free (line);
    }
    char *content = zf_asprintf ("[node]\nname = a\n# %0*d\n", ZF_CONFIG_LINE_MAX, 0);
    s_test_file_fails (content, ":3: line longer than 65536 bytes; is this a configuration file?",
                       verbose);
    zf_free (content);
}

//  List keys repeat; a validator refuses a value with the file's line; a deprecated key sets
//  its replacement (in another section), with a warning, and must agree with it.
typedef struct {
    zf_config_list_t hosts;
    char *pattern;
} test_list_t;

typedef struct {
    zf_config_list_t hosts;
    char *pattern;
} test_shared_t;

static const zf_config_key_t s_test_shared_keys[] = {
    {.key = "hosts",
     .kind = ZF_CONFIG_LIST,
     .offset = offsetof (test_shared_t, hosts),
     .default_text = "a=1",
     .check = zf_config_check_pairs,
     .help = "NAME=VALUE pairs"},
    {.key = "pattern",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (test_shared_t, pattern),
     .default_text = "",
     .check = zf_config_check_regex,
     .help = "a regular expression"},
};

static const zf_config_key_t s_test_old_keys[] = {
    {.key = "hosts", .alias_of = "shared.hosts", .help = "old name"},
    {.key = "pattern", .alias_of = "shared.pattern", .help = "old name"},
    {.key = "gone", .alias_of = "absent.key", .help = "old name of a section not loaded"},
};

static const zf_config_section_t s_test_shared = {
    .name = "shared",
    .help = "shared",
    .keys = s_test_shared_keys,
    .key_count = ZF_ARRAY_LEN (s_test_shared_keys),
    .struct_size = sizeof (test_shared_t),
};

static const zf_config_section_t s_test_old = {
    .name = "old",
    .help = "old",
    .keys = s_test_old_keys,
    .key_count = ZF_ARRAY_LEN (s_test_old_keys),
    .struct_size = 1,
};

static zf_config_t *s_test_lists_load (const char *content, const char *const *overrides,
                                       size_t override_count, zf_error_t *err)
{
    const zf_config_section_t *sections[] = {&s_test_shared, &s_test_old};
    FILE *file = fmemopen ((void *) content, strlen (content), "r");
    zf_config_t *config =
        zf_config_load_stream (sections, 2, file, "lists.ini", overrides, override_count, err);
    fclose (file);
    return config;
}

static void s_test_lists (void)
{
    zf_error_t err;
    zf_config_t *config = s_test_lists_load ("[shared]\n", NULL, 0, &err);
    const test_shared_t *shared = zf_config_section (config, "shared");
    ZF_ASSERT (shared->hosts.count == 1 && streq (shared->hosts.items[0], "a=1"));
    zf_config_destroy (&config);

    config = s_test_lists_load ("[shared]\nhosts = b=2 c=3\nhosts = d=4\n", NULL, 0, &err);
    shared = zf_config_section (config, "shared");
    ZF_ASSERT (shared->hosts.count == 2 && streq (shared->hosts.items[0], "b=2 c=3"));
    ZF_ASSERT (streq (shared->hosts.items[1], "d=4"));
    zhashx_t *table = zhashx_new ();
    zhashx_set_destructor (table, s_test_free_string);
    ZF_ASSERT (zf_config_pairs_into (&shared->hosts, table, &err));
    ZF_ASSERT (zhashx_size (table) == 3 && streq (zhashx_lookup (table, "c"), "3"));
    zhashx_destroy (&table);
    zf_config_destroy (&config);

    //  the first override replaces the file's items, the next ones add
    const char *overrides[] = {"shared.hosts=x=9", "shared.hosts=y=8"};
    config = s_test_lists_load ("[shared]\nhosts = b=2\n", overrides, 2, &err);
    shared = zf_config_section (config, "shared");
    ZF_ASSERT (shared->hosts.count == 2 && streq (shared->hosts.items[0], "x=9"));
    zf_config_destroy (&config);

    ZF_ASSERT (!s_test_lists_load ("[shared]\nhosts = b=2\nhosts = oops\n", NULL, 0, &err));
    s_test_expect_message (&err, "lists.ini:3: [shared] hosts: \"oops\": expected NAME=VALUE "
                                 "pairs");
    ZF_ASSERT (!s_test_lists_load ("[shared]\npattern = [x\n", NULL, 0, &err));
    ZF_ASSERT (strstr (err.message, "lists.ini:2: [shared] pattern: \"[x\": bad regular "
                                    "expression: "));

    //  deprecated names: the value goes to the new key, with a warning; both must agree
    config = s_test_lists_load ("[old]\nhosts = b=2\npattern = ^a\n[shared]\nhosts = b=2\n"
                                "pattern = ^a\n",
                                NULL, 0, &err);
    if (!config)
        fprintf (stderr, "unexpected: %s\n", err.message);
    ZF_ASSERT (config);
    shared = zf_config_section (config, "shared");
    ZF_ASSERT (shared->hosts.count == 1 && streq (shared->pattern, "^a"));
    size_t count;
    const char *const *warnings = zf_config_warnings (config, &count);
    ZF_ASSERT (count == 2);
    ZF_ASSERT (streq (warnings[0], "lists.ini:2: [old] hosts is deprecated: set [shared] hosts "
                                   "instead (same value)"));
    zf_config_destroy (&config);
    ZF_ASSERT (!s_test_lists_load ("[shared]\npattern = ^a\n[old]\npattern = ^b\n", NULL, 0, &err));
    s_test_expect_message (&err, "lists.ini:4: [old] pattern: differs from [shared] pattern, set "
                                 "already (in the file)");
    ZF_ASSERT (!s_test_lists_load ("[old]\ngone = 1\n", NULL, 0, &err));
    s_test_expect_message (&err, "lists.ini:2: [old] gone: an old name of [absent] key, which "
                                 "this program does not read");

    //  the reference shows lists, and leaves deprecated names out
    const zf_config_section_t *sections[] = {&s_test_shared, &s_test_old};
    char *text = NULL;
    size_t size;
    FILE *out = open_memstream (&text, &size);
    zf_config_write_reference (sections, 2, out);
    fclose (out);
    ZF_ASSERT (strstr (text, "# list: repeat the key, one item per line\n; hosts = a=1\n"));
    ZF_ASSERT (!strstr (text, "old name"));
    zf_free (text);
}

static void s_test_overrides (bool verbose)
{
    const char *overrides[] = {
        "bus.hwm=7",
        " bus . curve = on ",
        "endpoints.x=tcp://a:1",
        "endpoints.storage@edge-7=tcp://10.0.0.7:7001",
        "node.motd=hello = world",
        "bus.hwm=9",
    };
    char *path;
    zf_config_t *config = s_test_load ("[node]\nname = a\n[bus]\nhwm = 5\n[endpoints]\nx = 1\n"
                                       "y = 2\n",
                                       overrides, ZF_ARRAY_LEN (overrides), &path);
    const test_bus_t *bus = zf_config_section (config, "bus");
    ZF_ASSERT (bus->hwm == 9 && bus->curve);
    const test_node_t *node = zf_config_section (config, "node");
    ZF_ASSERT (streq (node->motd, "hello = world"));
    size_t count;
    const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &count);
    ZF_ASSERT (count == 3);
    ZF_ASSERT (streq (entries[0].key, "x") && streq (entries[0].value, "tcp://a:1"));
    ZF_ASSERT (streq (entries[0].where, "--set endpoints.x=tcp://a:1"));
    ZF_ASSERT (streq (entries[1].key, "y") && streq (entries[1].value, "2"));
    ZF_ASSERT (streq (entries[2].key, "storage@edge-7"));
    zf_config_destroy (&config);
    s_test_remove (&path);

    //  No file at all: a section named only by an override is present
    const char *only[] = {"node.name=b"};
    zf_error_t err;
    config = zf_config_load (TEST_SECTIONS, NULL, only, 1, &err);
    ZF_ASSERT (config && streq (zf_config_path (config), ""));
    node = zf_config_section (config, "node");
    ZF_ASSERT (streq (node->name, "b"));
    zf_config_destroy (&config);
    ZF_ASSERT (!zf_config_load (TEST_SECTIONS, NULL, NULL, 0, &err));
    s_test_expect_message (&err, "(no configuration file): missing required section [node]");

    s_test_set_fails ("bus.hwm=0", "--set bus.hwm=0: [bus] hwm: 0 is out of range (1..1000000)",
                      verbose);
    s_test_set_fails ("bushwm=1", "--set bushwm=1: expected SECTION.KEY=VALUE", verbose);
    s_test_set_fails ("bus.hwm", "--set bus.hwm: expected SECTION.KEY=VALUE", verbose);
    s_test_set_fails ("nope.x=1",
                      "--set nope.x=1: unknown section [nope] (known sections: node, bus, "
                      "endpoints)",
                      verbose);
    s_test_set_fails ("bus.hwmm=1",
                      "--set bus.hwmm=1: [bus] hwmm: unknown key (known keys: hwm, curve, "
                      "piece_size, timeout, disk_high)",
                      verbose);
    s_test_set_fails ("bus.=1", "--set bus.=1: [bus] key is empty", verbose);
}

static char *s_test_reference (size_t *size)
{
    char *text = NULL;
    FILE *out = open_memstream (&text, size);
    ZF_ASSERT (out);
    zf_config_write_reference (TEST_SECTIONS, out);
    ZF_ASSERT (fclose (out) == 0);
    return text;
}

//  The reference with every "; " setting uncommented, as a user enabling everything would.
static char *s_test_uncomment (const char *reference)
{
    char *text = zf_malloc (strlen (reference) + 1);
    size_t used = 0;
    for (const char *line = reference; *line;) {
        size_t length = strcspn (line, "\n") + 1;
        size_t skip = strncmp (line, "; ", 2) == 0 ? 2 : 0;
        memcpy (text + used, line + skip, length - skip);
        used += length - skip;
        line += length;
    }
    text[used] = '\0';
    return text;
}

//  The reference loads as is (changing nothing) and with every setting uncommented (giving
//  the defaults explicitly); both need the required key.
static void s_test_reference_round_trip (bool verbose)
{
    size_t size;
    char *reference = s_test_reference (&size);
    if (verbose)
        fputs (reference, stdout);
    ZF_ASSERT (strstr (reference, "\n# this process\n# required section\n[node]\n\n"
                                  "# unique name of this node\n# string; required\n; name =\n"));
    ZF_ASSERT (strstr (reference, "\n# the message bus\n# optional section\n; [bus]\n"));
    ZF_ASSERT (strstr (reference, "\n# messages queued per peer\n# integer; range 1..1000000\n"
                                  "; hwm = 1000\n"));
    ZF_ASSERT (strstr (reference,
                       "\n# size in bytes, or with K, M, G or T (powers of 1024); range 4K..1G\n"
                       "; piece_size = 4M\n"));
    ZF_ASSERT (strstr (reference, "\n# string; unset by default\n; motd =\n"));
    ZF_ASSERT (strstr (reference, "; [endpoints]\n# ACTOR@NODE = ENDPOINT\n"));
    s_test_file_fails (reference, ": [node] name: required key is missing", verbose);

    const char *name[] = {"node.name=edge-1"};
    char *path;
    zf_config_t *config = s_test_load (reference, name, 1, &path);
    ZF_ASSERT (!zf_config_has_section (config, "bus"));
    ZF_ASSERT (!zf_config_has_section (config, "endpoints"));
    zf_config_destroy (&config);
    s_test_remove (&path);

    char *uncommented = s_test_uncomment (reference);
    config = s_test_load (uncommented, name, 1, &path);
    zf_error_t err;
    zf_config_t *defaults = zf_config_load (TEST_SECTIONS, NULL, name, 1, &err);
    ZF_ASSERT (memcmp (zf_config_section (config, "bus"),
                       zf_config_section_or_defaults (defaults, "bus"), sizeof (test_bus_t))
               == 0);
    const test_node_t *node = zf_config_section (config, "node");
    ZF_ASSERT (streq (node->name, "edge-1") && node->log_level == 2);
    ZF_ASSERT (streq (node->storage_dir, "/var/lib/zfly") && streq (node->motd, ""));
    ZF_ASSERT (zf_config_has_section (config, "endpoints"));
    zf_config_destroy (&defaults);
    zf_config_destroy (&config);
    s_test_remove (&path);
    zf_free (uncommented);
    zf_free (reference);
}

void zf_config_test (bool verbose)
{
    s_test_parsers ();
    s_test_good_file ();
    s_test_sections_present ();
    s_test_file_errors (verbose);
    s_test_long_lines (verbose);
    s_test_lists ();
    s_test_overrides (verbose);
    s_test_reference_round_trip (verbose);

    zf_error_t err;
    ZF_ASSERT (!zf_config_load (TEST_SECTIONS, "/nonexistent/zfly.ini", NULL, 0, &err));
    ZF_ASSERT (err.code == ZF_E_IO);
    s_test_expect_message (&err, "/nonexistent/zfly.ini: cannot open: No such file or directory");
    ZF_ASSERT (!zf_config_load (TEST_SECTIONS, "/tmp", NULL, 0, &err));
    ZF_ASSERT (err.code == ZF_E_IO);
    s_test_expect_message (&err, "/tmp: cannot read: Is a directory");
}
