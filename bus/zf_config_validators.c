/*  zf_config_validators.c — the stock validators of STR and LIST keys (NAME=VALUE words, an
    extended regular expression), and the reader of NAME=VALUE lists into a table.

    Separate from zf_config.c: a validator only judges one value's text, wherever it came
    from, and the components that read such lists call zf_config_pairs_into themselves. */
#include "zf_config.h"

#include <regex.h>

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
