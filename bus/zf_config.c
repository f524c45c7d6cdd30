/*  zf_config.c — INI configuration into one typed struct per component.

    inih splits lines into section, key and value; the rest is ours. Debian's inih gives its
    handler no line number and silently cuts lines over 199 bytes, so it reads through
    s_reader, which reads each physical line itself, counts it, refuses what inih would
    misread, and follows [section] headers (inih reports a section only through its keys, and
    an empty [section] must still count as present). inih calls the handler for a line before
    it asks the reader for the next one, so the reader's count is the handler's line number.
    A key line too long for inih's buffer is split here by inih's own rules (s_split_line) and
    handled at once; inih gets an empty line in its place, so its count stays right.

    Every value, each default included, goes through the same parser: the reference prints the
    default text exactly, and a bad default fails the first load of its table. */
#include "zf_config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <regex.h>
#include <inttypes.h>
#include <strings.h>
#include <unistd.h>

#define WHERE_MAX          sizeof (((zf_error_t *) NULL)->where)
#define MESSAGE_MAX        sizeof (((zf_error_t *) NULL)->message)
#define NO_FILE_NAME       "(no configuration file)"
#define MSG_SYNTAX_ERROR   "syntax error: expected [section] or key = value"
#define MSG_LINE_TOO_LONG  "line longer than %zu bytes; is this a configuration file?"
#define MSG_KEY_BEFORE_ANY "%s: key before any [section] header"
#define MSG_CONTINUATION                                                                           \
    "indented line would continue the value above (inih multi-line values); remove the leading "   \
    "blanks"

typedef struct {
    const zf_config_section_t *table;
    bool present;               //  a header, a key or an override named it
    void *values;               //  the component's struct: defaults, then file, then overrides
    int *set_on_line;           //  per key: 0 default, > 0 the file line, -1 an override
    bool *by_alias;             //  per key: set under a deprecated name (values must agree)
    zf_config_entry_t *entries; //  free-form sections: owned key, value and where
    int *entry_lines;           //  ... and the file line of each (-1: an override)
    size_t entry_count;
    size_t entry_capacity;
} section_t;

struct zf_config_s {
    char *path;
    section_t *sections;
    size_t section_count;
    char **warnings;
    size_t warning_count;
};

//  A parsed value before it is stored; each kind's member sits at offset 0, so the first
//  s_kind_size bytes are the field's bytes.
typedef union {
    char *str;
    int64_t integer; //  INT and DURATION
    bool boolean;
    uint64_t size;
    int choice;
    double percent;
} value_t;

//  --------------------------------------------------------------------------------------------
//  Errors: every configuration error starts with where it comes from.

__attribute__ ((format (printf, 3, 0))) static zf_status_t
s_vfail (zf_error_t *err, const char *where, const char *fmt, va_list args)
{
    char detail[MESSAGE_MAX];
    vsnprintf (detail, sizeof detail, fmt, args);
    return zf_error_set (err, ZF_E_CONFIG, where, "%s: %s", where, detail);
}

__attribute__ ((format (printf, 3, 4))) static zf_status_t
s_fail (zf_error_t *err, const char *where, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    zf_status_t rc = s_vfail (err, where, fmt, args);
    va_end (args);
    return rc;
}

static void s_append (char *buffer, size_t size, const char *text)
{
    size_t used = strlen (buffer);
    if (used + 1 < size)
        zf_strlcpy (buffer + used, text, size - used);
}

static void s_append_name (char *buffer, size_t size, const char *name)
{
    if (*buffer)
        s_append (buffer, size, ", ");
    s_append (buffer, size, name);
}

//  --------------------------------------------------------------------------------------------
//  Value parsers: each says what is wrong with the text, quoted; the caller adds where.

static bool s_is_blank (char c)
{
    return c == ' ' || c == '\t';
}

static bool s_is_digit (char c)
{
    return c >= '0' && c <= '9';
}

static bool s_is_letter (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static const char *s_skip_blanks (const char *text)
{
    while (s_is_blank (*text))
        text++;
    return text;
}

typedef enum { DIGITS_NONE, DIGITS_OK, DIGITS_OVERFLOW } digits_t;

//  Reads decimal digits at *cursor. No sign: sizes and durations are never negative.
static digits_t s_parse_digits (const char **cursor, uint64_t *number)
{
    const char *digit = *cursor;
    bool overflow = false;
    *number = 0;
    for (; s_is_digit (*digit); digit++) {
        unsigned value = (unsigned) (*digit - '0');
        if (*number > (UINT64_MAX - value) / 10)
            overflow = true;
        else
            *number = *number * 10 + value;
    }
    if (digit == *cursor)
        return DIGITS_NONE;
    *cursor = digit;
    return overflow ? DIGITS_OVERFLOW : DIGITS_OK;
}

//  K, M, G or T in any case, then an optional "B" or "iB": "4M", "4MB" and "4MiB" all mean
//  4 << 20, because people write all three and mean the same.
static bool s_parse_size_unit (const char **cursor, unsigned *shift)
{
    static const char multipliers[] = "kmgt";
    const char *unit = *cursor;
    const char *multiplier = *unit ? strchr (multipliers, tolower ((unsigned char) *unit)) : NULL;
    *shift = 0;
    if (multiplier) {
        *shift = 10 * (unsigned) (multiplier - multipliers + 1);
        unit++;
        if (tolower ((unsigned char) *unit) == 'i' && tolower ((unsigned char) unit[1]) != 'b')
            return false;
        if (tolower ((unsigned char) *unit) == 'i')
            unit++;
    }
    if (tolower ((unsigned char) *unit) == 'b')
        unit++;
    *cursor = unit;
    return true;
}

zf_status_t zf_config_parse_size (const char *text, uint64_t *bytes, zf_error_t *err)
{
    const char *cursor = s_skip_blanks (text);
    uint64_t number = 0;
    unsigned shift = 0;
    digits_t digits = s_parse_digits (&cursor, &number);
    cursor = s_skip_blanks (cursor);
    if (digits == DIGITS_NONE || !s_parse_size_unit (&cursor, &shift) || *s_skip_blanks (cursor))
        return zf_error_set (err, ZF_E_INVALID, "",
                             "'%s' is not a size (whole bytes, or with K, M, G or T: powers of "
                             "1024)",
                             text);
    if (digits == DIGITS_OVERFLOW || number > (UINT64_MAX >> shift))
        return zf_error_set (err, ZF_E_INVALID, "", "'%s' is too large for a size", text);
    *bytes = number << shift;
    return ZF_OK;
}

typedef struct {
    const char *suffix;
    int64_t ms;
} duration_unit_t;

//  Largest first, so formatting can take the first unit that divides a value.
static const duration_unit_t s_duration_units[] = {
    {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}, {"", 1},
};

static const duration_unit_t *s_find_duration_unit (const char *suffix, size_t length)
{
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_duration_units); index++) {
        const duration_unit_t *unit = &s_duration_units[index];
        if (strlen (unit->suffix) == length && memcmp (unit->suffix, suffix, length) == 0)
            return unit;
    }
    return NULL;
}

zf_status_t zf_config_parse_duration (const char *text, int64_t *ms, zf_error_t *err)
{
    const char *cursor = s_skip_blanks (text);
    uint64_t number = 0;
    digits_t digits = s_parse_digits (&cursor, &number);
    cursor = s_skip_blanks (cursor);
    size_t suffix_length = 0;
    while (s_is_letter (cursor[suffix_length]))
        suffix_length++;
    const duration_unit_t *unit =
        digits == DIGITS_NONE ? NULL : s_find_duration_unit (cursor, suffix_length);
    if (!unit || *s_skip_blanks (cursor + suffix_length))
        return zf_error_set (err, ZF_E_INVALID, "",
                             "'%s' is not a duration (a whole number with ms, s, m, h or d; "
                             "a bare number is milliseconds)",
                             text);
    if (digits == DIGITS_OVERFLOW || number > (uint64_t) INT64_MAX / (uint64_t) unit->ms)
        return zf_error_set (err, ZF_E_INVALID, "", "'%s' is too long for a duration", text);
    *ms = (int64_t) number * unit->ms;
    return ZF_OK;
}

static size_t s_trimmed_length (const char *text)
{
    size_t length = strlen (text);
    while (length > 0 && s_is_blank (text[length - 1]))
        length--;
    return length;
}

static bool s_word_equals (const char *text, size_t length, const char *word)
{
    return strlen (word) == length && strncasecmp (text, word, length) == 0;
}

zf_status_t zf_config_parse_bool (const char *text, bool *value, zf_error_t *err)
{
    static const char *const truths[] = {"true", "yes", "on", "1"};
    static const char *const falsehoods[] = {"false", "no", "off", "0"};
    const char *start = s_skip_blanks (text);
    size_t length = s_trimmed_length (start);
    for (size_t index = 0; index < ZF_ARRAY_LEN (truths); index++) {
        if (s_word_equals (start, length, truths[index])
            || s_word_equals (start, length, falsehoods[index])) {
            *value = s_word_equals (start, length, truths[index]);
            return ZF_OK;
        }
    }
    return zf_error_set (err, ZF_E_INVALID, "",
                         "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", text);
}

static zf_status_t s_parse_integer (const char *text, int64_t *value, zf_error_t *err)
{
    char *end = NULL;
    errno = 0;
    long long number = strtoll (text, &end, 10);
    if (end == text || *s_skip_blanks (end))
        return zf_error_set (err, ZF_E_INVALID, "", "'%s' is not a whole number", text);
    if (errno == ERANGE)
        return zf_error_set (err, ZF_E_INVALID, "", "'%s' does not fit in 64 bits", text);
    *value = number;
    return ZF_OK;
}

//  A plain decimal only: strtod alone would also take "inf", "nan", hex and exponents.
static zf_status_t s_parse_percent (const char *text, double *value, zf_error_t *err)
{
    const char *start = s_skip_blanks (text);
    size_t number_length = strspn (start, "+-.0123456789");
    char *end = NULL;
    double number = number_length ? strtod (start, &end) : 0;
    const char *rest = end == start + number_length ? s_skip_blanks (end) : NULL;
    if (rest && *rest == '%')
        rest = s_skip_blanks (rest + 1);
    if (!rest || *rest)
        return zf_error_set (err, ZF_E_INVALID, "",
                             "'%s' is not a percentage (such as 80 or 12.5%%)", text);
    *value = number;
    return ZF_OK;
}

static zf_status_t s_parse_choice (const char *choices, const char *text, int *index,
                                   zf_error_t *err)
{
    size_t length = strlen (text);
    const char *choice = choices;
    for (int position = 0;; position++) {
        const char *bar = strchr (choice, '|');
        size_t choice_length = bar ? (size_t) (bar - choice) : strlen (choice);
        if (choice_length == length && memcmp (choice, text, length) == 0) {
            *index = position;
            return ZF_OK;
        }
        if (!bar)
            return zf_error_set (err, ZF_E_INVALID, "", "'%s' is not one of %s", text, choices);
        choice = bar + 1;
    }
}

//  --------------------------------------------------------------------------------------------
//  Ranges, and how sizes and durations are shown in messages and in the reference

static void s_format_size (uint64_t bytes, char *buffer, size_t size)
{
    static const char units[] = "TGMK";
    for (unsigned index = 0; bytes && index < 4; index++) {
        unsigned shift = 10 * (4 - index);
        if (bytes % ((uint64_t) 1 << shift) == 0) {
            snprintf (buffer, size, "%" PRIu64 "%c", bytes >> shift, units[index]);
            return;
        }
    }
    snprintf (buffer, size, "%" PRIu64, bytes);
}

static void s_format_duration (int64_t ms, char *buffer, size_t size)
{
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_duration_units); index++) {
        const duration_unit_t *unit = &s_duration_units[index];
        if ((ms != 0 || unit->ms == 1) && ms % unit->ms == 0) {
            snprintf (buffer, size, "%" PRId64 "%s", ms / unit->ms, unit->suffix);
            return;
        }
    }
}

static void s_format_bound (zf_config_kind_t kind, int64_t value, char *buffer, size_t size)
{
    if (kind == ZF_CONFIG_SIZE && value >= 0)
        s_format_size ((uint64_t) value, buffer, size);
    else if (kind == ZF_CONFIG_DURATION)
        s_format_duration (value, buffer, size);
    else
        snprintf (buffer, size, "%" PRId64, value);
}

static bool s_has_range (const zf_config_key_t *spec)
{
    bool ranged_kind = spec->kind == ZF_CONFIG_INT || spec->kind == ZF_CONFIG_SIZE
                       || spec->kind == ZF_CONFIG_DURATION || spec->kind == ZF_CONFIG_PERCENT;
    return ranged_kind && !(spec->min == 0 && spec->max == 0);
}

//  "1..1000000", "4K..1G", or "at least 1" when there is no upper bound.
static void s_format_range (const zf_config_key_t *spec, char *buffer, size_t size)
{
    char low[32], high[32];
    s_format_bound (spec->kind, spec->min, low, sizeof low);
    s_format_bound (spec->kind, spec->max, high, sizeof high);
    if (spec->max == INT64_MAX)
        snprintf (buffer, size, "at least %s", low);
    else
        snprintf (buffer, size, "%s..%s", low, high);
}

static bool s_in_range (const zf_config_key_t *spec, const value_t *value)
{
    switch (spec->kind) {
    case ZF_CONFIG_INT:
    case ZF_CONFIG_DURATION: return value->integer >= spec->min && value->integer <= spec->max;
    case ZF_CONFIG_SIZE:
        return value->size <= (uint64_t) INT64_MAX && (int64_t) value->size >= spec->min
               && (int64_t) value->size <= spec->max;
    case ZF_CONFIG_PERCENT:
        return value->percent >= (double) spec->min && value->percent <= (double) spec->max;
    default: return true;
    }
}

static zf_status_t s_check_range (const zf_config_key_t *spec, const char *text,
                                  const value_t *value, zf_error_t *err)
{
    if (!s_has_range (spec) || s_in_range (spec, value))
        return ZF_OK;
    char range[80];
    s_format_range (spec, range, sizeof range);
    return zf_error_set (err, ZF_E_INVALID, "", "%s is out of range (%s)", text, range);
}

//  On success a STR value is a fresh copy that the caller stores or frees.
static zf_status_t s_parse_value (const zf_config_key_t *spec, const char *text, value_t *value,
                                  zf_error_t *err)
{
    zf_status_t rc = ZF_OK;
    memset (value, 0, sizeof *value);
    switch (spec->kind) {
    case ZF_CONFIG_STR:
    case ZF_CONFIG_LIST: value->str = zf_strdup (text); return ZF_OK;
    case ZF_CONFIG_BOOL: return zf_config_parse_bool (text, &value->boolean, err);
    case ZF_CONFIG_ENUM: return s_parse_choice (spec->choices, text, &value->choice, err);
    case ZF_CONFIG_INT: rc = s_parse_integer (text, &value->integer, err); break;
    case ZF_CONFIG_SIZE: rc = zf_config_parse_size (text, &value->size, err); break;
    case ZF_CONFIG_DURATION: rc = zf_config_parse_duration (text, &value->integer, err); break;
    case ZF_CONFIG_PERCENT: rc = s_parse_percent (text, &value->percent, err); break;
    }
    return rc == ZF_OK ? s_check_range (spec, text, value, err) : rc;
}

//  --------------------------------------------------------------------------------------------
//  Section tables and the structs they describe

static size_t s_kind_size (zf_config_kind_t kind)
{
    switch (kind) {
    case ZF_CONFIG_STR: return sizeof (char *);
    case ZF_CONFIG_INT: return sizeof (int64_t);
    case ZF_CONFIG_BOOL: return sizeof (bool);
    case ZF_CONFIG_SIZE: return sizeof (uint64_t);
    case ZF_CONFIG_DURATION: return sizeof (int64_t);
    case ZF_CONFIG_ENUM: return sizeof (int);
    case ZF_CONFIG_PERCENT: return sizeof (double);
    case ZF_CONFIG_LIST: return sizeof (zf_config_list_t);
    }
    return 0;
}

//  Fields may be unaligned in packed structs; memcpy is correct either way.
static char *s_read_str (const void *values, const zf_config_key_t *spec)
{
    char *text;
    memcpy (&text, (const char *) values + spec->offset, sizeof text);
    return text;
}

static zf_config_list_t *s_list (void *values, const zf_config_key_t *spec)
{
    return (zf_config_list_t *) ((char *) values + spec->offset);
}

static void s_list_clear (zf_config_list_t *list)
{
    for (size_t index = 0; index < list->count; index++)
        zf_free (list->items[index]);
    zf_free (list->items);
    list->items = NULL;
    list->count = 0;
}

static bool s_list_has (const zf_config_list_t *list, const char *item)
{
    for (size_t index = 0; index < list->count; index++)
        if (streq (list->items[index], item))
            return true;
    return false;
}

//  Stores a parsed value; a list takes it as one more item (the string is the list's now).
static void s_store (void *values, const zf_config_key_t *spec, const value_t *value)
{
    if (spec->kind == ZF_CONFIG_LIST) {
        zf_config_list_t *list = s_list (values, spec);
        list->items = zf_realloc (list->items, (list->count + 1) * sizeof *list->items);
        list->items[list->count++] = value->str;
        return;
    }
    if (spec->kind == ZF_CONFIG_STR)
        zf_free (s_read_str (values, spec));
    memcpy ((char *) values + spec->offset, value, s_kind_size (spec->kind));
}

static void s_check_keys (const zf_config_section_t *table)
{
    ZF_ASSERT (table->key_count == 0 || table->keys);
    for (size_t index = 0; index < table->key_count; index++) {
        const zf_config_key_t *spec = &table->keys[index];
        ZF_ASSERT (spec->key && *spec->key);
        if (spec->alias_of) { //  "SECTION.KEY"; the target is found when the alias is used
            ZF_ASSERT (strchr (spec->alias_of, '.') && !spec->required);
            continue;
        }
        ZF_ASSERT (s_kind_size (spec->kind) > 0);
        ZF_ASSERT (!spec->check || spec->kind == ZF_CONFIG_STR || spec->kind == ZF_CONFIG_LIST);
        ZF_ASSERT (spec->offset + s_kind_size (spec->kind) <= table->struct_size);
        ZF_ASSERT (!(spec->required && spec->default_text));
        ZF_ASSERT (spec->kind != ZF_CONFIG_ENUM || spec->choices);
        ZF_ASSERT (spec->min <= spec->max);
        for (size_t other = 0; other < index; other++)
            ZF_ASSERT (!streq (table->keys[other].key, spec->key));
    }
}

//  Mistakes in tables are programming errors, caught on the first load.
static void s_check_tables (const zf_config_section_t *const *tables, size_t count)
{
    ZF_ASSERT (count == 0 || tables);
    for (size_t index = 0; index < count; index++) {
        const zf_config_section_t *table = tables[index];
        ZF_ASSERT (table && table->name && *table->name);
        ZF_ASSERT (!strchr (table->name, '.')); //  --set splits at the first dot
        for (size_t other = 0; other < index; other++)
            ZF_ASSERT (!streq (tables[other]->name, table->name));
        if (!table->free_form)
            s_check_keys (table);
    }
}

static void s_apply_defaults (section_t *section)
{
    const zf_config_section_t *table = section->table;
    for (size_t index = 0; index < table->key_count; index++) {
        const zf_config_key_t *spec = &table->keys[index];
        if (!spec->default_text || spec->alias_of
            || (spec->kind == ZF_CONFIG_LIST && !*spec->default_text))
            continue;
        value_t value;
        zf_error_t problem;
        if (s_parse_value (spec, spec->default_text, &value, &problem) != ZF_OK) {
            fprintf (stderr, "zf_config: [%s] %s: bad default: %s\n", table->name, spec->key,
                     problem.message);
            ZF_ASSERT (!"a default must parse and be in range");
        }
        s_store (section->values, spec, &value);
    }
}

static void s_section_init (section_t *section, const zf_config_section_t *table)
{
    section->table = table;
    if (table->free_form)
        return;
    section->values = zf_calloc (1, table->struct_size);
    section->set_on_line = zf_calloc (table->key_count, sizeof (int));
    section->by_alias = zf_calloc (table->key_count, sizeof (bool));
    s_apply_defaults (section);
}

static void s_section_free (section_t *section)
{
    const zf_config_section_t *table = section->table;
    for (size_t index = 0; section->values && index < table->key_count; index++) {
        const zf_config_key_t *spec = &table->keys[index];
        if (spec->alias_of)
            continue;
        if (spec->kind == ZF_CONFIG_STR)
            zf_free (s_read_str (section->values, spec));
        else if (spec->kind == ZF_CONFIG_LIST)
            s_list_clear (s_list (section->values, spec));
    }
    for (size_t index = 0; index < section->entry_count; index++) {
        zf_free ((char *) section->entries[index].key);
        zf_free ((char *) section->entries[index].value);
        zf_free ((char *) section->entries[index].where);
    }
    zf_free (section->entries);
    zf_free (section->entry_lines);
    zf_free (section->values);
    zf_free (section->set_on_line);
    zf_free (section->by_alias);
}

static section_t *s_find_section (zf_config_t *self, const char *name, size_t length)
{
    for (size_t index = 0; index < self->section_count; index++) {
        const char *candidate = self->sections[index].table->name;
        if (strlen (candidate) == length && memcmp (candidate, name, length) == 0)
            return &self->sections[index];
    }
    return NULL;
}

static section_t *s_require_section (zf_config_t *self, const char *name)
{
    ZF_ASSERT (self && name);
    section_t *section = s_find_section (self, name, strlen (name));
    ZF_ASSERT (section); //  a name not in the tables is a typo in the caller
    return section;
}

static void s_list_sections (zf_config_t *self, char *buffer, size_t size)
{
    buffer[0] = '\0';
    for (size_t index = 0; index < self->section_count; index++)
        s_append_name (buffer, size, self->sections[index].table->name);
}

static void s_list_keys (const zf_config_section_t *table, char *buffer, size_t size)
{
    buffer[0] = '\0';
    for (size_t index = 0; index < table->key_count; index++)
        if (!table->keys[index].alias_of)
            s_append_name (buffer, size, table->keys[index].key);
}

static zf_status_t s_unknown_section (zf_config_t *self, const char *where, const char *name,
                                      size_t length, zf_error_t *err)
{
    char known[MESSAGE_MAX];
    s_list_sections (self, known, sizeof known);
    return s_fail (err, where, "unknown section [%.*s] (known sections: %s)", (int) length, name,
                   known);
}

//  --------------------------------------------------------------------------------------------
//  Assigning one key = value, from the file (line > 0) or from an override (line -1)

static zf_config_entry_t *s_find_entry (section_t *section, const char *key, size_t *index)
{
    for (*index = 0; *index < section->entry_count; (*index)++)
        if (streq (section->entries[*index].key, key))
            return &section->entries[*index];
    return NULL;
}

static void s_append_entry (section_t *section, const char *key, const char *value,
                            const char *where, int line)
{
    if (section->entry_count == section->entry_capacity) {
        section->entry_capacity = section->entry_capacity ? 2 * section->entry_capacity : 8;
        section->entries =
            zf_realloc (section->entries, section->entry_capacity * sizeof *section->entries);
        section->entry_lines =
            zf_realloc (section->entry_lines, section->entry_capacity * sizeof (int));
    }
    section->entries[section->entry_count] = (zf_config_entry_t){
        .key = zf_strdup (key), .value = zf_strdup (value), .where = zf_strdup (where)};
    section->entry_lines[section->entry_count++] = line;
}

static zf_status_t s_assign_entry (section_t *section, const char *key, const char *value,
                                   const char *where, int line, zf_error_t *err)
{
    size_t index;
    zf_config_entry_t *entry = s_find_entry (section, key, &index);
    if (entry && line > 0)
        return s_fail (err, where, "[%s] %s: duplicate key (first set on line %d)",
                       section->table->name, key, section->entry_lines[index]);
    if (!entry) {
        s_append_entry (section, key, value, where, line);
        return ZF_OK;
    }
    zf_free ((char *) entry->value);
    zf_free ((char *) entry->where);
    entry->value = zf_strdup (value);
    entry->where = zf_strdup (where);
    section->entry_lines[index] = line;
    return ZF_OK;
}

static const zf_config_key_t *s_find_key (const zf_config_section_t *table, const char *key,
                                          size_t *index)
{
    for (*index = 0; *index < table->key_count; (*index)++)
        if (streq (table->keys[*index].key, key))
            return &table->keys[*index];
    return NULL;
}

//  Parses and checks one value for spec: ZF_OK with value filled (a STR or LIST value is the
//  caller's), else why in problem.
static zf_status_t s_parse_checked (const zf_config_key_t *spec, const char *text, value_t *value,
                                    zf_error_t *problem)
{
    zf_status_t rc = s_parse_value (spec, text, value, problem);
    if (rc != ZF_OK || !spec->check)
        return rc;
    char why[MESSAGE_MAX - 64];
    if (spec->check (value->str, why, sizeof why))
        return ZF_OK;
    zf_free (value->str);
    return zf_error_set (problem, ZF_E_INVALID, "", "%s", why);
}

//  A list key: the first line (or override) replaces the default (the file's items), the
//  next ones add items.
static void s_store_item (section_t *section, size_t index, const value_t *value, int line)
{
    const zf_config_key_t *spec = &section->table->keys[index];
    int before = section->set_on_line[index];
    if (before == 0 || (line < 0 && before > 0))
        s_list_clear (s_list (section->values, spec));
    s_store (section->values, spec, value);
    section->set_on_line[index] = line;
}

//  Stores a value for a key that may be set under two names (a deprecated one and its
//  replacement): set already, it must be the same value (a list gains the items it lacks).
//  other_section/other_key name the other name, for the error.
static zf_status_t s_store_agreeing (section_t *section, size_t index, value_t *value, int line,
                                     const char *where, const char *other_section,
                                     const char *other_key, zf_error_t *err)
{
    const zf_config_key_t *spec = &section->table->keys[index];
    bool set = section->set_on_line[index] != 0;
    if (spec->kind == ZF_CONFIG_LIST) {
        if (set && s_list_has (s_list (section->values, spec), value->str)) {
            zf_free (value->str);
            return ZF_OK;
        }
        s_store_item (section, index, value, line);
        return ZF_OK;
    }
    if (set) {
        value_t current;
        memcpy (&current, (char *) section->values + spec->offset, s_kind_size (spec->kind));
        bool same = spec->kind == ZF_CONFIG_STR
                        ? streq (current.str ? current.str : "", value->str)
                        : memcmp (&current, value, s_kind_size (spec->kind)) == 0;
        if (spec->kind == ZF_CONFIG_STR)
            zf_free (value->str);
        if (same)
            return ZF_OK;
        return s_fail (err, where, "[%s] %s: differs from [%s] %s, set already (%s)", other_section,
                       other_key, section->table->name, spec->key,
                       section->set_on_line[index] > 0 ? "in the file" : "by --set");
    }
    s_store (section->values, spec, value);
    section->set_on_line[index] = line;
    return ZF_OK;
}

static zf_status_t s_assign_alias (zf_config_t *config, section_t *section,
                                   const zf_config_key_t *alias, const char *text,
                                   const char *where, int line, zf_error_t *err);

static zf_status_t s_assign_key (zf_config_t *config, section_t *section, const char *key,
                                 const char *text, const char *where, int line, zf_error_t *err)
{
    const zf_config_section_t *table = section->table;
    size_t index;
    const zf_config_key_t *spec = s_find_key (table, key, &index);
    if (!spec) {
        char known[MESSAGE_MAX];
        s_list_keys (table, known, sizeof known);
        return s_fail (err, where, "[%s] %s: unknown key (known keys: %s)", table->name, key,
                       known);
    }
    if (spec->alias_of)
        return s_assign_alias (config, section, spec, text, where, line, err);
    if (line > 0 && section->set_on_line[index] > 0 && spec->kind != ZF_CONFIG_LIST
        && !section->by_alias[index])
        return s_fail (err, where, "[%s] %s: duplicate key (first set on line %d)", table->name,
                       key, section->set_on_line[index]);
    value_t value;
    zf_error_t problem;
    if (s_parse_checked (spec, text, &value, &problem) != ZF_OK)
        return s_fail (err, where, "[%s] %s: %s", table->name, key, problem.message);
    if (section->by_alias[index] && line > 0) //  set under its deprecated name before
        return s_store_agreeing (section, index, &value, line, where, table->name, key, err);
    if (spec->kind == ZF_CONFIG_LIST) {
        s_store_item (section, index, &value, line);
        return ZF_OK;
    }
    s_store (section->values, spec, &value);
    section->set_on_line[index] = line;
    return ZF_OK;
}

static void s_warn (zf_config_t *config, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void s_warn (zf_config_t *config, const char *fmt, ...)
{
    char text_buffer[MESSAGE_MAX];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text_buffer, sizeof text_buffer, fmt, args);
    va_end (args);
    char *text = zf_strdup (text_buffer);
    config->warnings =
        zf_realloc (config->warnings, (config->warning_count + 1) * sizeof *config->warnings);
    config->warnings[config->warning_count++] = text;
}

//  A deprecated key sets the key that replaced it. Under both names the values must agree;
//  a list gains the items it lacks.
static zf_status_t s_assign_alias (zf_config_t *config, section_t *section,
                                   const zf_config_key_t *alias, const char *text,
                                   const char *where, int line, zf_error_t *err)
{
    const char *dot = strchr (alias->alias_of, '.');
    section_t *target = s_find_section (config, alias->alias_of, (size_t) (dot - alias->alias_of));
    size_t index;
    const zf_config_key_t *spec = target ? s_find_key (target->table, dot + 1, &index) : NULL;
    if (!spec)
        return s_fail (err, where,
                       "[%s] %s: an old name of [%.*s] %s, which this program does not read",
                       section->table->name, alias->key, (int) (dot - alias->alias_of),
                       alias->alias_of, dot + 1);
    s_warn (config, "%s: [%s] %s is deprecated: set [%s] %s instead (same value)", where,
            section->table->name, alias->key, target->table->name, spec->key);
    target->present = true;
    value_t value;
    zf_error_t problem;
    if (s_parse_checked (spec, text, &value, &problem) != ZF_OK)
        return s_fail (err, where, "[%s] %s: %s", section->table->name, alias->key,
                       problem.message);
    target->by_alias[index] = true;
    return s_store_agreeing (target, index, &value, line, where, section->table->name, alias->key,
                             err);
}

static zf_status_t s_assign (zf_config_t *config, section_t *section, const char *key,
                             const char *value, const char *where, int line, zf_error_t *err)
{
    section->present = true;
    if (!*key)
        return s_fail (err, where, "[%s] key is empty", section->table->name);
    if (section->table->free_form)
        return s_assign_entry (section, key, value, where, line, err);
    return s_assign_key (config, section, key, value, where, line, err);
}

//  --------------------------------------------------------------------------------------------
//  Reading the file: our line reader around inih

typedef struct {
    zf_config_t *config;
    FILE *file;
    const char *source; //  the file's name in messages
    int line_number;    //  the line inih works on: the last one the reader returned
    char *line;         //  ZF_CONFIG_LINE_MAX bytes, a '\r' and the NUL
    section_t *section; //  after the last [header]; NULL before the first
    bool after_key;     //  inih would append an indented next line to the last key's value
    int error_line;     //  of our first error; 0 while there is none
    int read_errno;     //  when reading failed
    zf_error_t *err;
} parser_t;

typedef enum { LINE_OK, LINE_END, LINE_TOO_LONG, LINE_HAS_NUL } line_status_t;

//  Reads one physical line into line (capacity bytes with the NUL) without its "\n" or
//  "\r\n". A line that does not fit is not consumed further: reading stops there anyway.
static line_status_t s_read_line (FILE *file, char *line, size_t capacity, size_t *length)
{
    size_t count = 0;
    bool has_nul = false;
    int c;
    while ((c = getc (file)) != EOF && c != '\n') {
        if (count + 1 >= capacity)
            return LINE_TOO_LONG;
        has_nul |= c == '\0';
        line[count++] = (char) c;
    }
    if (c == EOF && count == 0)
        return LINE_END;
    if (count > 0 && line[count - 1] == '\r')
        count--;
    line[count] = '\0';
    *length = count;
    return has_nul ? LINE_HAS_NUL : LINE_OK;
}

static void s_where (const parser_t *parser, char *where, size_t size)
{
    snprintf (where, size, "%s:%d", parser->source, parser->line_number);
}

__attribute__ ((format (printf, 2, 3))) static zf_status_t s_line_fail (parser_t *parser,
                                                                        const char *fmt, ...)
{
    char where[WHERE_MAX];
    s_where (parser, where, sizeof where);
    va_list args;
    va_start (args, fmt);
    zf_status_t rc = s_vfail (parser->err, where, fmt, args);
    va_end (args);
    parser->error_line = parser->line_number;
    return rc;
}

//  inih's own scan: up to one of chars, or to a ';' after a blank (an inline comment).
static const char *s_find_chars_or_comment (const char *text, const char *chars)
{
    bool was_space = false;
    while (*text && !strchr (chars, *text) && !(was_space && *text == ';')) {
        was_space = isspace ((unsigned char) *text);
        text++;
    }
    return text;
}

static zf_status_t s_track_header (parser_t *parser, const char *after_bracket)
{
    const char *close = s_find_chars_or_comment (after_bracket, "]");
    if (*close != ']')
        return ZF_OK; //  inih reports the syntax error
    const char *name = s_skip_blanks (after_bracket);
    size_t length = (size_t) (close - name);
    while (length > 0 && s_is_blank (name[length - 1]))
        length--;
    char where[WHERE_MAX];
    s_where (parser, where, sizeof where);
    section_t *section = s_find_section (parser->config, name, length);
    if (!section) {
        parser->error_line = parser->line_number;
        return s_unknown_section (parser->config, where, name, length, parser->err);
    }
    section->present = true;
    parser->section = section;
    parser->after_key = false;
    return ZF_OK;
}

//  Classifies the line the way inih will (same tests, same order) to see what inih only
//  reports through keys or does silently: section headers and continuation lines.
static zf_status_t s_track_line (parser_t *parser, const char *line)
{
    const char *start = line;
    while (*start && isspace ((unsigned char) *start))
        start++;
    if (*start == '\0' || *start == ';' || *start == '#')
        return ZF_OK;
    if (parser->after_key && start > line)
        return s_line_fail (parser, MSG_CONTINUATION);
    if (*start == '[')
        return s_track_header (parser, start + 1);
    const char *separator = s_find_chars_or_comment (start, "=:");
    if (*separator == '=' || *separator == ':')
        parser->after_key = true;
    return ZF_OK;
}

static void s_strip_bom (char *line, size_t *length)
{
    if (*length >= 3 && memcmp (line, "\xEF\xBB\xBF", 3) == 0) {
        memmove (line, line + 3, *length - 3 + 1);
        *length -= 3;
    }
}

static int s_handler (void *user, const char *inih_section, const char *key, const char *value);

static char *s_lskip (char *text)
{
    while (*text && isspace ((unsigned char) *text))
        text++;
    return text;
}

static void s_rstrip (char *text)
{
    size_t length = strlen (text);
    while (length > 0 && isspace ((unsigned char) text[length - 1]))
        text[--length] = '\0';
}

//  inih's split of a "name = value" line (ini_parse_stream, with inline comments): the name
//  ends at the first '=' or ':', the value at an inline comment; both trimmed. False when the
//  line has no separator (a syntax error).
static bool s_split_line (char *line, char **key, char **value)
{
    char *start = s_lskip (line);
    char *separator = (char *) s_find_chars_or_comment (start, "=:");
    if (*separator != '=' && *separator != ':')
        return false;
    *separator = '\0';
    s_rstrip (start);
    char *text = separator + 1;
    char *comment = (char *) s_find_chars_or_comment (text, "");
    *comment = '\0';
    text = s_lskip (text);
    s_rstrip (text);
    *key = start;
    *value = text;
    return true;
}

//  A line longer than inih's buffer, handled here: a key line is split and assigned, a header
//  was followed by s_track_line already, comments and blank lines say nothing. False on error.
static bool s_long_line (parser_t *parser, char *line)
{
    char *start = s_lskip (line);
    if (*start == '\0' || *start == ';' || *start == '#')
        return true;
    if (*start == '[') {
        if (*s_find_chars_or_comment (start + 1, "]") == ']')
            return true;
        s_line_fail (parser, MSG_SYNTAX_ERROR);
        return false;
    }
    char *key, *value;
    if (!s_split_line (line, &key, &value)) {
        s_line_fail (parser, MSG_SYNTAX_ERROR);
        return false;
    }
    return s_handler (parser, NULL, key, value) != 0;
}

//  The ini_reader: one physical line per call, never cut. Returning NULL ends inih's loop,
//  which is how parsing stops at our first error.
static char *s_reader (char *buffer, int buffer_size, void *stream)
{
    parser_t *parser = stream;
    char *line = parser->line;
    size_t length = 0;
    if (parser->error_line || buffer_size < 2)
        return NULL;
    line_status_t status = s_read_line (parser->file, line, ZF_CONFIG_LINE_MAX + 3, &length);
    if (status == LINE_END) {
        parser->read_errno = ferror (parser->file) ? errno : 0;
        return NULL;
    }
    parser->line_number++;
    if (parser->line_number == 1 && status != LINE_TOO_LONG)
        s_strip_bom (line, &length);
    zf_status_t rc = ZF_OK;
    if (status == LINE_TOO_LONG || length > ZF_CONFIG_LINE_MAX)
        rc = s_line_fail (parser, MSG_LINE_TOO_LONG, (size_t) ZF_CONFIG_LINE_MAX);
    else if (status == LINE_HAS_NUL)
        rc = s_line_fail (parser, "line contains a NUL byte; is this a text file?");
    else
        rc = s_track_line (parser, line);
    if (rc != ZF_OK)
        return NULL;
    //  inih takes lines that fit its buffer with their newline (later inih releases read a
    //  full buffer without one as a line cut short); longer ones are ours, inih sees a blank
    if (length + 1 >= (size_t) buffer_size) {
        if (!s_long_line (parser, line))
            return NULL;
        length = 0;
    }
    memcpy (buffer, line, length);
    buffer[length++] = '\n';
    buffer[length] = '\0';
    return buffer;
}

//  The ini_handler, for the line the reader just returned. inih's section argument is unused:
//  the reader follows headers itself, and inih cuts section names at 49 bytes.
static int s_handler (void *user, const char *inih_section, const char *key, const char *value)
{
    parser_t *parser = user;
    (void) inih_section;
    char where[WHERE_MAX];
    s_where (parser, where, sizeof where);
    zf_status_t rc = parser->section ? s_assign (parser->config, parser->section, key, value, where,
                                                 parser->line_number, parser->err)
                                     : s_fail (parser->err, where, MSG_KEY_BEFORE_ANY, key);
    if (rc != ZF_OK)
        parser->error_line = parser->line_number;
    return rc == ZF_OK;
}

static zf_status_t s_parse_file (zf_config_t *self, FILE *file, const char *source, zf_error_t *err)
{
    parser_t parser = {.config = self,
                       .file = file,
                       .source = source,
                       .err = err,
                       .line = zf_malloc (ZF_CONFIG_LINE_MAX + 3)};
    int first_error = ini_parse_stream (s_reader, &parser, s_handler, &parser);
    zf_free (parser.line);
    //  inih keeps going after a syntax error and returns its line; ours stop the reading. The
    //  earlier of the two is the one to report.
    if (first_error > 0 && (!parser.error_line || first_error < parser.error_line)) {
        parser.line_number = first_error;
        return s_line_fail (&parser, MSG_SYNTAX_ERROR);
    }
    if (parser.error_line)
        return ZF_E_CONFIG;
    if (first_error < 0)
        return zf_error_set (err, ZF_E_INTERNAL, source, "%s: inih failed (%d)", source,
                             first_error);
    if (parser.read_errno)
        return zf_error_set (err, ZF_E_IO, source, "%s: cannot read: %s", source,
                             strerror (parser.read_errno));
    return ZF_OK;
}

//  --------------------------------------------------------------------------------------------
//  Overrides and the checks after everything is read

static void s_trim (const char **text, size_t *length)
{
    while (*length > 0 && isspace ((unsigned char) **text)) {
        (*text)++;
        (*length)--;
    }
    while (*length > 0 && isspace ((unsigned char) (*text)[*length - 1]))
        (*length)--;
}

static zf_status_t s_apply_override (zf_config_t *self, const char *text, zf_error_t *err)
{
    char where[WHERE_MAX];
    snprintf (where, sizeof where, "--set %s", text);
    const char *equals = strchr (text, '=');
    const char *dot = equals ? memchr (text, '.', (size_t) (equals - text)) : NULL;
    if (!dot)
        return s_fail (err, where, "expected SECTION.KEY=VALUE");
    const char *name = text, *key = dot + 1, *value = equals + 1;
    size_t name_length = (size_t) (dot - text), key_length = (size_t) (equals - key),
           value_length = strlen (value);
    s_trim (&name, &name_length);
    s_trim (&key, &key_length);
    s_trim (&value, &value_length);
    section_t *section = s_find_section (self, name, name_length);
    if (!section)
        return s_unknown_section (self, where, name, name_length, err);
    char *key_copy = zf_strndup (key, key_length);
    char *value_copy = zf_strndup (value, value_length);
    zf_status_t rc = s_assign (self, section, key_copy, value_copy, where, -1, err);
    zf_free (key_copy);
    zf_free (value_copy);
    return rc;
}

static zf_status_t s_check_required_keys (const section_t *section, const char *source,
                                          zf_error_t *err)
{
    const zf_config_section_t *table = section->table;
    for (size_t index = 0; index < table->key_count; index++)
        if (table->keys[index].required && section->set_on_line[index] == 0
            && !table->keys[index].alias_of)
            return s_fail (err, source, "[%s] %s: required key is missing", table->name,
                           table->keys[index].key);
    return ZF_OK;
}

static zf_status_t s_check_required (zf_config_t *self, const char *source, zf_error_t *err)
{
    for (size_t index = 0; index < self->section_count; index++) {
        const section_t *section = &self->sections[index];
        if (section->table->required && !section->present)
            return s_fail (err, source, "missing required section [%s]", section->table->name);
        if (section->present && !section->table->free_form) {
            zf_status_t rc = s_check_required_keys (section, source, err);
            if (rc != ZF_OK)
                return rc;
        }
    }
    return ZF_OK;
}

//  --------------------------------------------------------------------------------------------
//  Public API

static zf_config_t *s_new (const zf_config_section_t *const *sections, size_t section_count,
                           const char *path)
{
    s_check_tables (sections, section_count);
    zf_config_t *self = zf_calloc (1, sizeof *self);
    self->path = zf_strdup (path ? path : "");
    self->section_count = section_count;
    self->sections = zf_calloc (section_count, sizeof *self->sections);
    for (size_t index = 0; index < section_count; index++)
        s_section_init (&self->sections[index], sections[index]);
    return self;
}

zf_config_t *zf_config_load_stream (const zf_config_section_t *const *sections,
                                    size_t section_count, FILE *file, const char *name,
                                    const char *const *overrides, size_t override_count,
                                    zf_error_t *err)
{
    ZF_ASSERT (!file || name);
    ZF_ASSERT (override_count == 0 || overrides);
    zf_config_t *self = s_new (sections, section_count, file ? name : NULL);
    const char *source = file ? name : NO_FILE_NAME;
    zf_status_t rc = file ? s_parse_file (self, file, source, err) : ZF_OK;
    for (size_t index = 0; rc == ZF_OK && index < override_count; index++)
        rc = s_apply_override (self, overrides[index], err);
    if (rc == ZF_OK)
        rc = s_check_required (self, source, err);
    if (rc != ZF_OK)
        zf_config_destroy (&self);
    else
        zf_error_clear (err);
    return self;
}

zf_config_t *zf_config_load (const zf_config_section_t *const *sections, size_t section_count,
                             const char *path, const char *const *overrides, size_t override_count,
                             zf_error_t *err)
{
    FILE *file = NULL;
    if (path && !(file = fopen (path, "r"))) {
        zf_error_set (err, ZF_E_IO, path, "%s: cannot open: %s", path, strerror (errno));
        return NULL;
    }
    zf_config_t *self =
        zf_config_load_stream (sections, section_count, file, path, overrides, override_count, err);
    if (file)
        fclose (file);
    return self;
}

void zf_config_destroy (zf_config_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_config_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->section_count; index++)
        s_section_free (&self->sections[index]);
    for (size_t index = 0; index < self->warning_count; index++)
        zf_free (self->warnings[index]);
    zf_free (self->warnings);
    zf_free (self->sections);
    zf_free (self->path);
    zf_free (self);
    *self_p = NULL;
}

const void *zf_config_section (zf_config_t *self, const char *name)
{
    section_t *section = s_require_section (self, name);
    ZF_ASSERT (!section->table->free_form);
    return section->present ? section->values : NULL;
}

const void *zf_config_section_or_defaults (zf_config_t *self, const char *name)
{
    section_t *section = s_require_section (self, name);
    ZF_ASSERT (!section->table->free_form);
    return section->values;
}

bool zf_config_has_section (zf_config_t *self, const char *name)
{
    return s_require_section (self, name)->present;
}

const zf_config_entry_t *zf_config_entries (zf_config_t *self, const char *name, size_t *count)
{
    section_t *section = s_require_section (self, name);
    ZF_ASSERT (section->table->free_form && count);
    *count = section->entry_count;
    return section->entries;
}

const char *zf_config_path (zf_config_t *self)
{
    ZF_ASSERT (self);
    return self->path;
}

const char *const *zf_config_warnings (zf_config_t *self, size_t *count)
{
    ZF_ASSERT (self && count);
    *count = self->warning_count;
    return (const char *const *) self->warnings;
}

bool zf_config_check_pairs (const char *text, char *why, size_t why_size)
{
    const char *cursor = text;
    while (*cursor) {
        cursor += strspn (cursor, " \t");
        size_t length = strcspn (cursor, " \t");
        if (length == 0)
            break;
        const char *equal = memchr (cursor, '=', length);
        if (!equal || equal == cursor || equal + 1 == cursor + length) {
            snprintf (why, why_size, "\"%.*s\": expected NAME=VALUE pairs", (int) length, cursor);
            return false;
        }
        cursor += length;
    }
    return true;
}

bool zf_config_check_regex (const char *text, char *why, size_t why_size)
{
    regex_t regex;
    int rc = regcomp (&regex, text, REG_EXTENDED | REG_NOSUB);
    if (rc == 0) {
        regfree (&regex);
        return true;
    }
    char reason[128];
    regerror (rc, &regex, reason, sizeof reason);
    snprintf (why, why_size, "\"%s\": bad regular expression: %s", text, reason);
    return false;
}

bool zf_config_pairs_into (const zf_config_list_t *list, zhashx_t *table, zf_error_t *err)
{
    for (size_t item = 0; list && item < list->count; item++) {
        char why[256];
        if (!zf_config_check_pairs (list->items[item], why, sizeof why)) {
            zf_error_set (err, ZF_E_CONFIG, "", "%s", why);
            return false;
        }
        const char *cursor = list->items[item];
        while (*cursor) {
            cursor += strspn (cursor, " \t");
            size_t length = strcspn (cursor, " \t");
            if (length == 0)
                break;
            const char *equal = memchr (cursor, '=', length);
            char *name = zf_strndup (cursor, (size_t) (equal - cursor));
            zhashx_update (table, name,
                           zf_strndup (equal + 1, length - (size_t) (equal - cursor) - 1));
            zf_free (name);
            cursor += length;
        }
    }
    return true;
}

//  --------------------------------------------------------------------------------------------
//  The reference

#define REFERENCE_INTRO                                                                            \
    "# zfly configuration reference: every section and key, with its default.\n"                   \
    "# Lines starting with '# ' explain. Lines starting with '; ' are settings, commented out:\n"  \
    "# keys show their default and optional sections are off. Remove the '; ' to set a key or\n"   \
    "# to use a section. Keys shown as '; key =' have no default; required ones must be set,\n"    \
    "# here or with --set SECTION.KEY=VALUE.\n"

static void s_write_comment (FILE *out, const char *text)
{
    while (text && *text) {
        size_t length = strcspn (text, "\n");
        fprintf (out, "# %.*s\n", (int) length, text);
        text += length + (text[length] == '\n');
    }
}

static void s_describe_kind (const zf_config_key_t *spec, char *buffer, size_t size)
{
    switch (spec->kind) {
    case ZF_CONFIG_STR: snprintf (buffer, size, "string"); break;
    case ZF_CONFIG_INT: snprintf (buffer, size, "integer"); break;
    case ZF_CONFIG_BOOL: snprintf (buffer, size, "boolean: true or false"); break;
    case ZF_CONFIG_SIZE:
        snprintf (buffer, size, "size in bytes, or with K, M, G or T (powers of 1024)");
        break;
    case ZF_CONFIG_DURATION:
        snprintf (buffer, size, "duration with ms, s, m, h or d (a bare number is ms)");
        break;
    case ZF_CONFIG_ENUM: snprintf (buffer, size, "one of %s", spec->choices); break;
    case ZF_CONFIG_PERCENT: snprintf (buffer, size, "percent"); break;
    case ZF_CONFIG_LIST: snprintf (buffer, size, "list: repeat the key, one item per line"); break;
    }
    if (s_has_range (spec)) {
        char range[80];
        s_format_range (spec, range, sizeof range);
        s_append (buffer, size, spec->max == INT64_MAX ? "; " : "; range ");
        s_append (buffer, size, range);
    }
    if (spec->required)
        s_append (buffer, size, "; required");
    else if (!spec->default_text)
        s_append (buffer, size, "; unset by default");
}

static void s_write_key (const zf_config_key_t *spec, FILE *out)
{
    char kind[MESSAGE_MAX];
    s_describe_kind (spec, kind, sizeof kind);
    fputc ('\n', out);
    s_write_comment (out, spec->help);
    s_write_comment (out, kind);
    if (spec->default_text && *spec->default_text)
        fprintf (out, "; %s = %s\n", spec->key, spec->default_text);
    else
        fprintf (out, "; %s =\n", spec->key);
}

static void s_write_section (const zf_config_section_t *table, FILE *out)
{
    fputc ('\n', out);
    s_write_comment (out, table->help);
    s_write_comment (out, table->required ? "required section" : "optional section");
    fprintf (out, "%s[%s]\n", table->required ? "" : "; ", table->name);
    if (table->free_form)
        s_write_comment (out, table->free_form_help ? table->free_form_help : "any key = value");
    for (size_t index = 0; !table->free_form && index < table->key_count; index++)
        if (!table->keys[index].alias_of) //  deprecated names are not shown
            s_write_key (&table->keys[index], out);
}

void zf_config_write_reference (const zf_config_section_t *const *sections, size_t section_count,
                                FILE *out)
{
    ZF_ASSERT (out);
    s_check_tables (sections, section_count);
    fputs (REFERENCE_INTRO, out);
    for (size_t index = 0; index < section_count; index++)
        s_write_section (sections[index], out);
}

//  --------------------------------------------------------------------------------------------
//  Selftest

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
