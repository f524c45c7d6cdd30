/*  zf_config.h — INI configuration into one typed struct per component.

    Each component declares its section as data: a table of keys with kind, default, bounds and
    a one-line help. The reader (inih underneath) fills a struct per section and refuses, with
    "FILE:LINE: [section] key: what is wrong":
      - unknown sections and unknown keys,
      - values that do not parse or are out of range,
      - missing required keys and missing required sections,
      - lines longer than ZF_CONFIG_LINE_MAX (inih would silently cut them),
      - a key given twice in one section.
    `--set SECTION.KEY=VALUE` overrides are applied after the file, with the same checks; their
    errors name "--set" and the argument instead of file and line. A section appearing only in
    --set counts as present.

    The same tables print the annotated reference (`zfly config reference`), so every key is
    documented with its default in deploy/ and tests check the samples against it. */
#ifndef ZF_CONFIG_H_INCLUDED
#define ZF_CONFIG_H_INCLUDED

#include "zf_error.h"

#define ZF_CONFIG_LINE_MAX 199 //  Debian's inih reads lines of at most 200 bytes with the newline

typedef enum {
    ZF_CONFIG_STR,      //  char *; value kept verbatim (surrounding blanks trimmed)
    ZF_CONFIG_INT,      //  int64_t; decimal, range [min, max]
    ZF_CONFIG_BOOL,     //  bool; true/false/yes/no/on/off/1/0
    ZF_CONFIG_SIZE,     //  uint64_t bytes; "512", "64K", "4M", "2G", "1T" (powers of 1024)
    ZF_CONFIG_DURATION, //  int64_t milliseconds; "250ms", "5s", "2m", "1h", "30d"; bare = ms
    ZF_CONFIG_ENUM,     //  int; index of the value in `choices` ("a|b|c")
    ZF_CONFIG_PERCENT,  //  double in [min, max] percent; "80" or "80%"
} zf_config_kind_t;

typedef struct {
    const char *key;
    zf_config_kind_t kind;
    size_t offset;       //  offsetof in the section struct
    const char *default_text; //  NULL: no default (required keys); parsed like file values
    int64_t min, max;    //  INT, SIZE, DURATION, PERCENT bounds (both 0: unbounded)
    const char *choices; //  ENUM: "error|warning|notice|info|debug"
    bool required;
    const char *help;    //  one line, for the reference and the samples
} zf_config_key_t;

typedef struct {
    const char *name;    //  "node", "bus", "echo"
    const char *help;    //  one line shown above the section in the reference
    const zf_config_key_t *keys;
    size_t key_count;
    size_t struct_size;  //  sizeof the section struct
    bool required;       //  the file must have this section
    //  Free-form sections (such as [endpoints]) accept any key; their entries are collected
    //  in order and read with zf_config_entries. keys/struct_size are then unused.
    bool free_form;
    const char *free_form_help; //  what a key and value mean in a free-form section
} zf_config_section_t;

typedef struct zf_config_s zf_config_t;

//  Loads path (may be NULL: no file, only defaults and --set) against the given sections,
//  then applies overrides ("SECTION.KEY=VALUE" strings). Returns NULL with err filled.
zf_config_t *zf_config_load (const zf_config_section_t *const *sections, size_t section_count,
                             const char *path, const char *const *overrides,
                             size_t override_count, zf_error_t *err);

void zf_config_destroy (zf_config_t **self_p);

//  The typed struct of a section, or NULL when the section was absent from the file and from
//  the overrides. Absent non-required sections still get defaults with zf_config_defaults.
const void *zf_config_section (zf_config_t *self, const char *name);

//  The struct of a section whether or not it appeared: defaults where it did not.
const void *zf_config_section_or_defaults (zf_config_t *self, const char *name);

bool zf_config_has_section (zf_config_t *self, const char *name);

//  Free-form section entries in file order (overrides appended); count may be 0.
typedef struct {
    const char *key;
    const char *value;
    const char *where; //  "FILE:LINE" or "--set", for errors found later by the caller
} zf_config_entry_t;
const zf_config_entry_t *zf_config_entries (zf_config_t *self, const char *section,
                                            size_t *count);

//  The path the configuration came from ("" when none), for relative paths and messages.
const char *zf_config_path (zf_config_t *self);

//  Writes the annotated reference of the given sections: every key, its default and help,
//  commented so the output is itself a valid INI file.
void zf_config_write_reference (const zf_config_section_t *const *sections, size_t section_count,
                                FILE *out);

//  Parsers shared with the command line; return ZF_OK or ZF_E_INVALID with err->message.
zf_status_t zf_config_parse_size (const char *text, uint64_t *bytes, zf_error_t *err);
zf_status_t zf_config_parse_duration (const char *text, int64_t *ms, zf_error_t *err);
zf_status_t zf_config_parse_bool (const char *text, bool *value, zf_error_t *err);

void zf_config_test (bool verbose);

#endif
