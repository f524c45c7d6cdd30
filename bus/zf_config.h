/*  zf_config.h — INI configuration into one typed struct per component.

    Each component declares its section as data: a table of keys with kind, default, bounds and
    a one-line help. The reader (inih underneath) fills a struct per section and refuses, with
    "FILE:LINE: [section] key: what is wrong" in err->message, "FILE:LINE" in err->where and
    ZF_E_CONFIG as the code:
      - unknown sections ("FILE:LINE: unknown section [foo] (known sections: …)") and unknown
        keys ("… unknown key (known keys: …)"),
      - values that do not parse or are out of range ("… hwm: 0 is out of range (1..1000000)"),
      - missing required sections ("FILE: missing required section [node]") and keys
        ("FILE: [node] name: required key is missing"); required keys are checked only in
        sections that are present,
      - values a key's validator refuses ("… rule: \"[ p2p\": bad regular expression: …"),
      - lines longer than ZF_CONFIG_LINE_MAX bytes (64 KiB: far above any real value; lines
        longer than inih's own buffer are split into key and value here, by inih's rules),
        lines with a NUL byte, inih syntax errors ("FILE:LINE: syntax error: expected
        [section] or key = value"),
      - a key given twice in one section (list keys excepted: each line adds an item), a key
        before any [section] header, and an indented line after a key (inih would append it to
        that key's value as a continuation).
    The first error in file order wins. A file that cannot be opened or read is ZF_E_IO.
    Lines end in LF or CRLF; a UTF-8 byte order mark is skipped; ';' after a blank starts an
    inline comment, ';' or '#' at the start of a line a comment line. Values are trimmed.

    `--set SECTION.KEY=VALUE` overrides are applied after the file, in order, with the same
    checks. The argument is split at its first '=', and the part before it at its first '.':
    section names never contain dots, keys of free-form sections may contain anything else
    ("endpoints.storage@edge-7=tcp://10.0.0.7:7001"). An override replaces the file's value
    (it is not a duplicate), a later override replaces an earlier one, and a section named only
    in overrides counts as present. Override errors start with "--set SECTION.KEY=VALUE: "
    instead of "FILE:LINE: ". For a list key the first override replaces the file's items and
    later ones add to it.

    A deprecated key names the key that replaced it (alias_of = "SECTION.KEY", possibly in
    another section): its value goes there, and zf_config_warnings says so. Set under both
    names, the values must agree (a list gains the items it lacks).

    Value syntax by kind (also what zf_config_write_reference prints):
      STR       anything, verbatim; "" is a value. A key without default is NULL until set.
      INT       decimal with optional sign (strtoll; the whole value must parse).
      BOOL      true/false, yes/no, on/off, 1/0, any case.
      SIZE      whole number with optional K, M, G, T (powers of 1024, any case) and optional
                "B" or "iB": "512", "64K", "4MiB", "2GB".
      DURATION  whole number with ms, s, m, h or d; a bare number is milliseconds.
      ENUM      one of `choices`, exactly; stored as its index.
      PERCENT   decimal, optional '%': "80", "12.5%".
      LIST      STR, one item per line: the key repeats (a default is one item).
    Defaults are text read by the same parsers, so a default that does not parse or is out of
    range is a programming error: it fails an assertion on the first load of its table.

    The same tables print the annotated reference (`zfly config reference`), so every key is
    documented with its default in deploy/ and tests check the samples against it. */
#ifndef ZF_CONFIG_H_INCLUDED
#define ZF_CONFIG_H_INCLUDED

#include "zf_error.h"

#define ZF_CONFIG_LINE_MAX 65536 //  bytes of one line, without its end

typedef enum {
    ZF_CONFIG_STR,      //  char *; value kept verbatim (surrounding blanks trimmed)
    ZF_CONFIG_INT,      //  int64_t; decimal, range [min, max]
    ZF_CONFIG_BOOL,     //  bool; true/false/yes/no/on/off/1/0
    ZF_CONFIG_SIZE,     //  uint64_t bytes; "512", "64K", "4M", "2G", "1T" (powers of 1024)
    ZF_CONFIG_DURATION, //  int64_t milliseconds; "250ms", "5s", "2m", "1h", "30d"; bare = ms
    ZF_CONFIG_ENUM,     //  int; index of the value in `choices` ("a|b|c")
    ZF_CONFIG_PERCENT,  //  double in [min, max] percent; "80" or "80%"
    ZF_CONFIG_LIST,     //  zf_config_list_t; the key may repeat, each line one item
} zf_config_kind_t;

//  A list key's items, in file order; owned by the config object.
typedef struct {
    char **items;
    size_t count;
} zf_config_list_t;

//  A key's validator (STR and LIST items): false refuses the value, why says what is wrong.
typedef bool (zf_config_check_fn) (const char *value, char *why, size_t why_size);

typedef struct {
    const char *key;
    zf_config_kind_t kind;
    size_t offset;             //  offsetof in the section struct
    const char *default_text;  //  NULL: no default (required keys); parsed like file values
    int64_t min, max;          //  INT, SIZE, DURATION, PERCENT bounds (both 0: unbounded;
                               //  max INT64_MAX: no upper bound); SIZE bytes, DURATION ms
    const char *choices;       //  ENUM: "error|warning|notice|info|debug"
    bool required;             //  must be set when the section is present; needs no default
    const char *help;          //  one line, for the reference and the samples
    zf_config_check_fn *check; //  STR, LIST: refuses a value at load; NULL: any
    const char *alias_of;      //  deprecated: "SECTION.KEY" this key sets instead (offset,
                               //  kind and default unused; left out of the reference)
} zf_config_key_t;

typedef struct {
    const char *name; //  "node", "bus", "echo"
    const char *help; //  one line shown above the section in the reference
    const zf_config_key_t *keys;
    size_t key_count;
    size_t struct_size; //  sizeof the section struct
    bool required;      //  the file must have this section
    //  Free-form sections (such as [endpoints]) accept any key; their entries are collected
    //  in order and read with zf_config_entries. keys/struct_size are then unused.
    bool free_form;
    const char *free_form_help; //  what a key and value mean in a free-form section
} zf_config_section_t;

typedef struct zf_config_s zf_config_t;

//  Loads path (may be NULL: no file, only defaults and --set) against the given sections,
//  then applies overrides ("SECTION.KEY=VALUE" strings). Returns NULL with err filled.
//  The section tables must outlive the returned object.
zf_config_t *zf_config_load (const zf_config_section_t *const *sections, size_t section_count,
                             const char *path, const char *const *overrides, size_t override_count,
                             zf_error_t *err);

//  The same from an open stream (read, not closed), named `name` in messages and in
//  zf_config_path: for tests and fuzzers over fmemopen. file may be NULL: no file.
zf_config_t *zf_config_load_stream (const zf_config_section_t *const *sections,
                                    size_t section_count, FILE *file, const char *name,
                                    const char *const *overrides, size_t override_count,
                                    zf_error_t *err);

void zf_config_destroy (zf_config_t **self_p);

//  The typed struct of a section, or NULL when the section was absent from the file and from
//  the overrides. Absent non-required sections still get defaults with
//  zf_config_section_or_defaults. Naming a section not in the tables, or a free-form one, is
//  a programming error (assertion), as in the accessors below. Strings in the struct belong
//  to the config object.
const void *zf_config_section (zf_config_t *self, const char *name);

//  The struct of a section whether or not it appeared: defaults where it did not.
const void *zf_config_section_or_defaults (zf_config_t *self, const char *name);

bool zf_config_has_section (zf_config_t *self, const char *name);

//  Free-form section entries in file order; count may be 0. Keys are unique: an override
//  replaces the entry with its key in place, or is appended.
typedef struct {
    const char *key;
    const char *value;
    const char *where; //  "FILE:LINE" or "--set SECTION.KEY=VALUE", for errors found later
} zf_config_entry_t;
const zf_config_entry_t *zf_config_entries (zf_config_t *self, const char *section, size_t *count);

//  The path the configuration came from ("" when none), for relative paths and messages.
const char *zf_config_path (zf_config_t *self);

//  What was accepted but should change (deprecated keys), one message each, for the log.
const char *const *zf_config_warnings (zf_config_t *self, size_t *count);

//  Stock validators: blank-separated NAME=VALUE words; an extended regular expression.
bool zf_config_check_pairs (const char *text, char *why, size_t why_size);
bool zf_config_check_regex (const char *text, char *why, size_t why_size);
//  The NAME=VALUE words of every item into table (NAME -> a copy of VALUE, which the table
//  must free: zhashx_set_destructor); list may be NULL. False, with err, on a malformed word.
bool zf_config_pairs_into (const zf_config_list_t *list, zhashx_t *table, zf_error_t *err);

//  Writes the annotated reference of the given sections, itself a valid INI file that changes
//  nothing: loading it gives the defaults, like an empty file with the required sections.
//      # …                      explanation: section or key help, then the key's kind and range
//      [node]                   a required section's header
//      ; [bus]                  an optional section's header, commented out: for actor
//                               sections, being present means "run this actor"
//      ; hwm = 1000             a key at its default, commented out so that changing a default
//                               in the code reaches files copied from the reference
//      ; name =                 a key without default (its kind line says "required" or
//                               "unset by default")
//  Removing the "; " from a line sets that key (or enables that section); the reference with
//  every "; " removed loads too once required keys without default are given a value.
void zf_config_write_reference (const zf_config_section_t *const *sections, size_t section_count,
                                FILE *out);

//  Parsers shared with the command line; return ZF_OK or ZF_E_INVALID with err->message
//  (which quotes the text). Blanks around the text and before the unit are allowed.
zf_status_t zf_config_parse_size (const char *text, uint64_t *bytes, zf_error_t *err);
zf_status_t zf_config_parse_duration (const char *text, int64_t *ms, zf_error_t *err);
zf_status_t zf_config_parse_bool (const char *text, bool *value, zf_error_t *err);

void zf_config_test (bool verbose);

#endif
