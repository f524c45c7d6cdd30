/*  zf_config.c — INI configuration into one typed struct per component: the loaded
    configuration, its sections and how one key = value is assigned (lists, deprecated names,
    free-form entries), --set overrides, required sections and keys, and the accessors.

    The other parts of the class (zf_config_internal.h): values by kind in zf_config_value.c,
    the file's lines in zf_config_reader.c, the reference in zf_config_reference.c, stock
    validators in zf_config_validators.c.

    Every value, each default included, goes through the same parser: the reference prints the
    default text exactly, and a bad default fails the first load of its table. */
#include "zf_config_internal.h"

#include <ctype.h>
#include <errno.h>

#define NO_FILE_NAME "(no configuration file)"

struct zf_config_s {
    char *path;
    zf_config_section_state_t *sections;
    size_t section_count;
    char **warnings;
    size_t warning_count;
};

//  --------------------------------------------------------------------------------------------
//  Errors: every configuration error starts with where it comes from.

zf_status_t zf_config_vfail (zf_error_t *err, const char *where, const char *fmt, va_list args)
{
    char detail[ZF_CONFIG_MESSAGE_MAX];
    vsnprintf (detail, sizeof detail, fmt, args);
    return zf_error_set (err, ZF_E_CONFIG, where, "%s: %s", where, detail);
}

zf_status_t zf_config_fail (zf_error_t *err, const char *where, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    zf_status_t rc = zf_config_vfail (err, where, fmt, args);
    va_end (args);
    return rc;
}

void zf_config_append (char *buffer, size_t size, const char *text)
{
    size_t used = strlen (buffer);
    if (used + 1 < size)
        zf_strlcpy (buffer + used, text, size - used);
}

static void s_append_name (char *buffer, size_t size, const char *name)
{
    if (*buffer)
        zf_config_append (buffer, size, ", ");
    zf_config_append (buffer, size, name);
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
static void s_store (void *values, const zf_config_key_t *spec, const zf_config_value_t *value)
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
void zf_config_assert_tables (const zf_config_section_t *const *tables, size_t count)
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

static void s_apply_defaults (zf_config_section_state_t *section)
{
    const zf_config_section_t *table = section->table;
    for (size_t index = 0; index < table->key_count; index++) {
        const zf_config_key_t *spec = &table->keys[index];
        if (!spec->default_text || spec->alias_of
            || (spec->kind == ZF_CONFIG_LIST && !*spec->default_text))
            continue;
        zf_config_value_t value;
        zf_error_t problem;
        if (zf_config_parse_value (spec, spec->default_text, &value, &problem) != ZF_OK) {
            fprintf (stderr, "zf_config: [%s] %s: bad default: %s\n", table->name, spec->key,
                     problem.message);
            ZF_ASSERT (!"a default must parse and be in range");
        }
        s_store (section->values, spec, &value);
    }
}

static void s_section_init (zf_config_section_state_t *section, const zf_config_section_t *table)
{
    section->table = table;
    if (table->free_form)
        return;
    section->values = zf_calloc (1, table->struct_size);
    section->set_on_line = zf_calloc (table->key_count, sizeof (int));
    section->by_alias = zf_calloc (table->key_count, sizeof (bool));
    s_apply_defaults (section);
}

static void s_section_free (zf_config_section_state_t *section)
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

zf_config_section_state_t *zf_config_find_section (zf_config_t *self, const char *name,
                                                   size_t length)
{
    for (size_t index = 0; index < self->section_count; index++) {
        const char *candidate = self->sections[index].table->name;
        if (strlen (candidate) == length && memcmp (candidate, name, length) == 0)
            return &self->sections[index];
    }
    return NULL;
}

static zf_config_section_state_t *s_require_section (zf_config_t *self, const char *name)
{
    ZF_ASSERT (self && name);
    zf_config_section_state_t *section = zf_config_find_section (self, name, strlen (name));
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

zf_status_t zf_config_unknown_section (zf_config_t *self, const char *where, const char *name,
                                       size_t length, zf_error_t *err)
{
    char known[ZF_CONFIG_MESSAGE_MAX];
    s_list_sections (self, known, sizeof known);
    return zf_config_fail (err, where, "unknown section [%.*s] (known sections: %s)", (int) length,
                           name, known);
}

//  --------------------------------------------------------------------------------------------
//  Assigning one key = value, from the file (line > 0) or from an override (line -1)

static zf_config_entry_t *s_find_entry (zf_config_section_state_t *section, const char *key,
                                        size_t *index)
{
    for (*index = 0; *index < section->entry_count; (*index)++)
        if (streq (section->entries[*index].key, key))
            return &section->entries[*index];
    return NULL;
}

static void s_append_entry (zf_config_section_state_t *section, const char *key, const char *value,
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

static zf_status_t s_assign_entry (zf_config_section_state_t *section, const char *key,
                                   const char *value, const char *where, int line, zf_error_t *err)
{
    size_t index;
    zf_config_entry_t *entry = s_find_entry (section, key, &index);
    if (entry && line > 0)
        return zf_config_fail (err, where, "[%s] %s: duplicate key (first set on line %d)",
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
static zf_status_t s_parse_checked (const zf_config_key_t *spec, const char *text,
                                    zf_config_value_t *value, zf_error_t *problem)
{
    zf_status_t rc = zf_config_parse_value (spec, text, value, problem);
    if (rc != ZF_OK || !spec->check)
        return rc;
    char why[ZF_CONFIG_MESSAGE_MAX - 64];
    if (spec->check (value->str, why, sizeof why))
        return ZF_OK;
    zf_free (value->str);
    return zf_error_set (problem, ZF_E_INVALID, "", "%s", why);
}

//  A list key: the first line (or override) replaces the default (the file's items), the
//  next ones add items.
static void s_store_item (zf_config_section_state_t *section, size_t index,
                          const zf_config_value_t *value, int line)
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
static zf_status_t s_store_agreeing (zf_config_section_state_t *section, size_t index,
                                     zf_config_value_t *value, int line, const char *where,
                                     const char *other_section, const char *other_key,
                                     zf_error_t *err)
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
        zf_config_value_t current;
        memcpy (&current, (char *) section->values + spec->offset, s_kind_size (spec->kind));
        bool same = spec->kind == ZF_CONFIG_STR
                        ? streq (current.str ? current.str : "", value->str)
                        : memcmp (&current, value, s_kind_size (spec->kind)) == 0;
        if (spec->kind == ZF_CONFIG_STR)
            zf_free (value->str);
        if (same)
            return ZF_OK;
        return zf_config_fail (err, where, "[%s] %s: differs from [%s] %s, set already (%s)",
                               other_section, other_key, section->table->name, spec->key,
                               section->set_on_line[index] > 0 ? "in the file" : "by --set");
    }
    s_store (section->values, spec, value);
    section->set_on_line[index] = line;
    return ZF_OK;
}

static zf_status_t s_assign_alias (zf_config_t *config, zf_config_section_state_t *section,
                                   const zf_config_key_t *alias, const char *text,
                                   const char *where, int line, zf_error_t *err);

static zf_status_t s_assign_key (zf_config_t *config, zf_config_section_state_t *section,
                                 const char *key, const char *text, const char *where, int line,
                                 zf_error_t *err)
{
    const zf_config_section_t *table = section->table;
    size_t index;
    const zf_config_key_t *spec = s_find_key (table, key, &index);
    if (!spec) {
        char known[ZF_CONFIG_MESSAGE_MAX];
        s_list_keys (table, known, sizeof known);
        return zf_config_fail (err, where, "[%s] %s: unknown key (known keys: %s)", table->name,
                               key, known);
    }
    if (spec->alias_of)
        return s_assign_alias (config, section, spec, text, where, line, err);
    if (line > 0 && section->set_on_line[index] > 0 && spec->kind != ZF_CONFIG_LIST
        && !section->by_alias[index])
        return zf_config_fail (err, where, "[%s] %s: duplicate key (first set on line %d)",
                               table->name, key, section->set_on_line[index]);
    zf_config_value_t value;
    zf_error_t problem;
    if (s_parse_checked (spec, text, &value, &problem) != ZF_OK)
        return zf_config_fail (err, where, "[%s] %s: %s", table->name, key, problem.message);
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
    char text_buffer[ZF_CONFIG_MESSAGE_MAX];
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
static zf_status_t s_assign_alias (zf_config_t *config, zf_config_section_state_t *section,
                                   const zf_config_key_t *alias, const char *text,
                                   const char *where, int line, zf_error_t *err)
{
    const char *dot = strchr (alias->alias_of, '.');
    zf_config_section_state_t *target =
        zf_config_find_section (config, alias->alias_of, (size_t) (dot - alias->alias_of));
    size_t index;
    const zf_config_key_t *spec = target ? s_find_key (target->table, dot + 1, &index) : NULL;
    if (!spec)
        return zf_config_fail (
            err, where, "[%s] %s: an old name of [%.*s] %s, which this program does not read",
            section->table->name, alias->key, (int) (dot - alias->alias_of), alias->alias_of,
            dot + 1);
    s_warn (config, "%s: [%s] %s is deprecated: set [%s] %s instead (same value)", where,
            section->table->name, alias->key, target->table->name, spec->key);
    target->present = true;
    zf_config_value_t value;
    zf_error_t problem;
    if (s_parse_checked (spec, text, &value, &problem) != ZF_OK)
        return zf_config_fail (err, where, "[%s] %s: %s", section->table->name, alias->key,
                               problem.message);
    target->by_alias[index] = true;
    return s_store_agreeing (target, index, &value, line, where, section->table->name, alias->key,
                             err);
}

zf_status_t zf_config_assign (zf_config_t *config, zf_config_section_state_t *section,
                              const char *key, const char *value, const char *where, int line,
                              zf_error_t *err)
{
    section->present = true;
    if (!*key)
        return zf_config_fail (err, where, "[%s] key is empty", section->table->name);
    if (section->table->free_form)
        return s_assign_entry (section, key, value, where, line, err);
    return s_assign_key (config, section, key, value, where, line, err);
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
    char where[ZF_CONFIG_WHERE_MAX];
    snprintf (where, sizeof where, "--set %s", text);
    const char *equals = strchr (text, '=');
    const char *dot = equals ? memchr (text, '.', (size_t) (equals - text)) : NULL;
    if (!dot)
        return zf_config_fail (err, where, "expected SECTION.KEY=VALUE");
    const char *name = text, *key = dot + 1, *value = equals + 1;
    size_t name_length = (size_t) (dot - text), key_length = (size_t) (equals - key),
           value_length = strlen (value);
    s_trim (&name, &name_length);
    s_trim (&key, &key_length);
    s_trim (&value, &value_length);
    zf_config_section_state_t *section = zf_config_find_section (self, name, name_length);
    if (!section)
        return zf_config_unknown_section (self, where, name, name_length, err);
    char *key_copy = zf_strndup (key, key_length);
    char *value_copy = zf_strndup (value, value_length);
    zf_status_t rc = zf_config_assign (self, section, key_copy, value_copy, where, -1, err);
    zf_free (key_copy);
    zf_free (value_copy);
    return rc;
}

static zf_status_t s_check_required_keys (const zf_config_section_state_t *section,
                                          const char *source, zf_error_t *err)
{
    const zf_config_section_t *table = section->table;
    for (size_t index = 0; index < table->key_count; index++)
        if (table->keys[index].required && section->set_on_line[index] == 0
            && !table->keys[index].alias_of)
            return zf_config_fail (err, source, "[%s] %s: required key is missing", table->name,
                                   table->keys[index].key);
    return ZF_OK;
}

static zf_status_t s_check_required (zf_config_t *self, const char *source, zf_error_t *err)
{
    for (size_t index = 0; index < self->section_count; index++) {
        const zf_config_section_state_t *section = &self->sections[index];
        if (section->table->required && !section->present)
            return zf_config_fail (err, source, "missing required section [%s]",
                                   section->table->name);
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
    zf_config_assert_tables (sections, section_count);
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
    zf_status_t rc = file ? zf_config_parse_file (self, file, source, err) : ZF_OK;
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
    zf_config_section_state_t *section = s_require_section (self, name);
    ZF_ASSERT (!section->table->free_form);
    return section->present ? section->values : NULL;
}

const void *zf_config_section_or_defaults (zf_config_t *self, const char *name)
{
    zf_config_section_state_t *section = s_require_section (self, name);
    ZF_ASSERT (!section->table->free_form);
    return section->values;
}

bool zf_config_has_section (zf_config_t *self, const char *name)
{
    return s_require_section (self, name)->present;
}

const zf_config_entry_t *zf_config_entries (zf_config_t *self, const char *name, size_t *count)
{
    zf_config_section_state_t *section = s_require_section (self, name);
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
