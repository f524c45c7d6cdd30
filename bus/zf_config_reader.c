/*  zf_config_reader.c — reading a configuration file line by line, around inih.

    inih splits lines into section, key and value; the rest is ours. Debian's inih gives its
    handler no line number and silently cuts lines over 199 bytes, so it reads through
    s_reader, which reads each physical line itself, counts it, refuses what inih would
    misread, and follows [section] headers (inih reports a section only through its keys, and
    an empty [section] must still count as present). inih calls the handler for a line before
    it asks the reader for the next one, so the reader's count is the handler's line number.
    A key line too long for inih's buffer is split here by inih's own rules (s_split_line) and
    handled at once; inih gets an empty line in its place, so its count stays right.

    Separate from zf_config.c, which decides what a key = value means: this file only finds
    the lines, their numbers and their sections, and hands each key to zf_config_assign. */
#include "zf_config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>

#define MSG_SYNTAX_ERROR   "syntax error: expected [section] or key = value"
#define MSG_LINE_TOO_LONG  "line longer than %zu bytes; is this a configuration file?"
#define MSG_KEY_BEFORE_ANY "%s: key before any [section] header"
#define MSG_CONTINUATION                                                                           \
    "indented line would continue the value above (inih multi-line values); remove the leading "   \
    "blanks"

typedef struct {
    zf_config_t *config;
    FILE *file;
    const char *source;                 //  the file's name in messages
    int line_number;                    //  the line inih works on: the last one the reader returned
    char *line;                         //  ZF_CONFIG_LINE_MAX bytes, a '\r' and the NUL
    zf_config_section_state_t *section; //  after the last [header]; NULL before the first
    bool after_key; //  inih would append an indented next line to the last key's value
    int error_line; //  of our first error; 0 while there is none
    int read_errno; //  when reading failed
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
    char where[ZF_CONFIG_WHERE_MAX];
    s_where (parser, where, sizeof where);
    va_list args;
    va_start (args, fmt);
    zf_status_t rc = zf_config_vfail (parser->err, where, fmt, args);
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
    const char *name = zf_config_skip_blanks (after_bracket);
    size_t length = (size_t) (close - name);
    while (length > 0 && zf_config_is_blank (name[length - 1]))
        length--;
    char where[ZF_CONFIG_WHERE_MAX];
    s_where (parser, where, sizeof where);
    zf_config_section_state_t *section = zf_config_find_section (parser->config, name, length);
    if (!section) {
        parser->error_line = parser->line_number;
        return zf_config_unknown_section (parser->config, where, name, length, parser->err);
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
    char where[ZF_CONFIG_WHERE_MAX];
    s_where (parser, where, sizeof where);
    zf_status_t rc = parser->section
                         ? zf_config_assign (parser->config, parser->section, key, value, where,
                                             parser->line_number, parser->err)
                         : zf_config_fail (parser->err, where, MSG_KEY_BEFORE_ANY, key);
    if (rc != ZF_OK)
        parser->error_line = parser->line_number;
    return rc == ZF_OK;
}

zf_status_t zf_config_parse_file (zf_config_t *self, FILE *file, const char *source,
                                  zf_error_t *err)
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
