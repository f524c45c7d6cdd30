/*  zf_config_reference.c — the annotated reference of the section tables (`zfly config
    reference`, deploy/reference.ini): every section and key with its help, kind, range and
    default, as an INI file that loads to the defaults (zf_config.h says its form).

    Separate from loading: it reads only the tables, never a file. */
#include "zf_config_internal.h"

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
    if (zf_config_has_range (spec)) {
        char range[80];
        zf_config_format_range (spec, range, sizeof range);
        zf_config_append (buffer, size, spec->max == INT64_MAX ? "; " : "; range ");
        zf_config_append (buffer, size, range);
    }
    if (spec->required)
        zf_config_append (buffer, size, "; required");
    else if (!spec->default_text)
        zf_config_append (buffer, size, "; unset by default");
}

static void s_write_key (const zf_config_key_t *spec, FILE *out)
{
    char kind[ZF_CONFIG_MESSAGE_MAX];
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
    zf_config_assert_tables (sections, section_count);
    fputs (REFERENCE_INTRO, out);
    for (size_t index = 0; index < section_count; index++)
        s_write_section (sections[index], out);
}
