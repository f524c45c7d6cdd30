/*  zf_config_value.c — configuration values by kind: parsing text into a number, a size, a
    duration, a boolean, a percentage or a choice, checking ranges, and showing sizes,
    durations and ranges in messages and in the reference.

    Separate from zf_config.c because it knows nothing of files, sections or keys' places:
    only what a value of each kind looks like. The command line uses the same parsers
    (zf_config_parse_size, _duration, _bool). */
#include "zf_config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>

//  --------------------------------------------------------------------------------------------
//  Value parsers: each says what is wrong with the text, quoted; the caller adds where.

bool zf_config_is_blank (char c)
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

const char *zf_config_skip_blanks (const char *text)
{
    while (zf_config_is_blank (*text))
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
    const char *cursor = zf_config_skip_blanks (text);
    uint64_t number = 0;
    unsigned shift = 0;
    digits_t digits = s_parse_digits (&cursor, &number);
    cursor = zf_config_skip_blanks (cursor);
    if (digits == DIGITS_NONE || !s_parse_size_unit (&cursor, &shift)
        || *zf_config_skip_blanks (cursor))
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
    const char *cursor = zf_config_skip_blanks (text);
    uint64_t number = 0;
    digits_t digits = s_parse_digits (&cursor, &number);
    cursor = zf_config_skip_blanks (cursor);
    size_t suffix_length = 0;
    while (s_is_letter (cursor[suffix_length]))
        suffix_length++;
    const duration_unit_t *unit =
        digits == DIGITS_NONE ? NULL : s_find_duration_unit (cursor, suffix_length);
    if (!unit || *zf_config_skip_blanks (cursor + suffix_length))
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
    while (length > 0 && zf_config_is_blank (text[length - 1]))
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
    const char *start = zf_config_skip_blanks (text);
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
    if (end == text || *zf_config_skip_blanks (end))
        return zf_error_set (err, ZF_E_INVALID, "", "'%s' is not a whole number", text);
    if (errno == ERANGE)
        return zf_error_set (err, ZF_E_INVALID, "", "'%s' does not fit in 64 bits", text);
    *value = number;
    return ZF_OK;
}

//  A plain decimal only: strtod alone would also take "inf", "nan", hex and exponents.
static zf_status_t s_parse_percent (const char *text, double *value, zf_error_t *err)
{
    const char *start = zf_config_skip_blanks (text);
    size_t number_length = strspn (start, "+-.0123456789");
    char *end = NULL;
    double number = number_length ? strtod (start, &end) : 0;
    const char *rest = end == start + number_length ? zf_config_skip_blanks (end) : NULL;
    if (rest && *rest == '%')
        rest = zf_config_skip_blanks (rest + 1);
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

bool zf_config_has_range (const zf_config_key_t *spec)
{
    bool ranged_kind = spec->kind == ZF_CONFIG_INT || spec->kind == ZF_CONFIG_SIZE
                       || spec->kind == ZF_CONFIG_DURATION || spec->kind == ZF_CONFIG_PERCENT;
    return ranged_kind && !(spec->min == 0 && spec->max == 0);
}

//  "1..1000000", "4K..1G", or "at least 1" when there is no upper bound.
void zf_config_format_range (const zf_config_key_t *spec, char *buffer, size_t size)
{
    char low[32], high[32];
    s_format_bound (spec->kind, spec->min, low, sizeof low);
    s_format_bound (spec->kind, spec->max, high, sizeof high);
    if (spec->max == INT64_MAX)
        snprintf (buffer, size, "at least %s", low);
    else
        snprintf (buffer, size, "%s..%s", low, high);
}

static bool s_in_range (const zf_config_key_t *spec, const zf_config_value_t *value)
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
                                  const zf_config_value_t *value, zf_error_t *err)
{
    if (!zf_config_has_range (spec) || s_in_range (spec, value))
        return ZF_OK;
    char range[80];
    zf_config_format_range (spec, range, sizeof range);
    return zf_error_set (err, ZF_E_INVALID, "", "%s is out of range (%s)", text, range);
}

//  On success a STR value is a fresh copy that the caller stores or frees.
zf_status_t zf_config_parse_value (const zf_config_key_t *spec, const char *text,
                                   zf_config_value_t *value, zf_error_t *err)
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
