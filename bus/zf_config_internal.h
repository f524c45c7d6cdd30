/*  zf_config_internal.h — what the parts of the configuration reader share, and nobody else.

    zf_config.h is one class written in several files, each with one job: zf_config.c holds the
    loaded configuration (sections, assigning a key, overrides, the accessors);
    zf_config_value.c parses and formats values by kind; zf_config_reader.c reads a file line by
    line around inih; zf_config_reference.c prints the annotated reference;
    zf_config_validators.c holds the stock validators. This header is the seam between them:
    the state of one loaded section, a parsed value, and the few functions one part calls in
    another. */
#ifndef ZF_CONFIG_INTERNAL_H_INCLUDED
#define ZF_CONFIG_INTERNAL_H_INCLUDED

#include "zf_config.h"

#define ZF_CONFIG_WHERE_MAX   sizeof (((zf_error_t *) NULL)->where)
#define ZF_CONFIG_MESSAGE_MAX sizeof (((zf_error_t *) NULL)->message)

//  One section of the tables and what was read for it.
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
} zf_config_section_state_t;

//  A parsed value before it is stored; each kind's member sits at offset 0, so the first
//  s_kind_size bytes are the field's bytes.
typedef union {
    char *str;
    int64_t integer; //  INT and DURATION
    bool boolean;
    uint64_t size;
    int choice;
    double percent;
} zf_config_value_t;

//  --------------------------------------------------------------------------------------------
//  zf_config.c: errors, the loaded configuration, assigning one key

//  err filled as ZF_E_CONFIG with "WHERE: detail": every configuration error starts with where
//  it comes from.
zf_status_t zf_config_fail (zf_error_t *err, const char *where, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
zf_status_t zf_config_vfail (zf_error_t *err, const char *where, const char *fmt, va_list args)
    __attribute__ ((format (printf, 3, 0)));

//  Appends text to the NUL-terminated buffer, as much as fits.
void zf_config_append (char *buffer, size_t size, const char *text);

//  Mistakes in tables are programming errors: asserts on the first load (and reference).
void zf_config_assert_tables (const zf_config_section_t *const *tables, size_t count);

//  The section named by length bytes of name, or NULL.
zf_config_section_state_t *zf_config_find_section (zf_config_t *self, const char *name,
                                                   size_t length);

//  The "unknown section" error, listing the known ones.
zf_status_t zf_config_unknown_section (zf_config_t *self, const char *where, const char *name,
                                       size_t length, zf_error_t *err);

//  Assigns key = value in section, from the file (line > 0, where "FILE:LINE") or from an
//  override (line -1).
zf_status_t zf_config_assign (zf_config_t *config, zf_config_section_state_t *section,
                              const char *key, const char *value, const char *where, int line,
                              zf_error_t *err);

//  --------------------------------------------------------------------------------------------
//  zf_config_value.c: values by kind

bool zf_config_is_blank (char c);
const char *zf_config_skip_blanks (const char *text);

//  Parses text as spec's kind and checks its range; on success a STR or LIST value is a fresh
//  copy that the caller stores or frees.
zf_status_t zf_config_parse_value (const zf_config_key_t *spec, const char *text,
                                   zf_config_value_t *value, zf_error_t *err);

//  Whether spec has a range, and the range as text: "1..1000000", "4K..1G", "at least 1".
bool zf_config_has_range (const zf_config_key_t *spec);
void zf_config_format_range (const zf_config_key_t *spec, char *buffer, size_t size);

//  --------------------------------------------------------------------------------------------
//  zf_config_reader.c: a file, line by line

//  Reads file (named source in messages) into self, stopping at the first error.
zf_status_t zf_config_parse_file (zf_config_t *self, FILE *file, const char *source,
                                  zf_error_t *err);

#endif
