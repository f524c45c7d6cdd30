/*  zf_config_validators.c — the stock validators of STR and LIST keys (NAME=VALUE words, an
    extended regular expression), and the reader of NAME=VALUE lists into a table.

    Separate from zf_config.c: a validator only judges one value's text, wherever it came
    from, and the components that read such lists call zf_config_pairs_into themselves. */
#include "zf_config.h"

#include "zf_regex.h"

//  The next blank-separated word at *cursor (its start and length), *cursor moved past it;
//  false at the end of the text.
static bool s_next_word (const char **cursor, const char **word, size_t *length)
{
    *cursor += strspn (*cursor, " \t");
    *word = *cursor;
    *length = strcspn (*cursor, " \t");
    *cursor += *length;
    return *length > 0;
}

bool zf_config_check_pairs (const char *text, char *why, size_t why_size)
{
    const char *cursor = text, *word;
    size_t length;
    while (s_next_word (&cursor, &word, &length)) {
        const char *equal = memchr (word, '=', length);
        if (!equal || equal == word || equal + 1 == word + length) {
            snprintf (why, why_size, "\"%.*s\": expected NAME=VALUE pairs", (int) length, word);
            return false;
        }
    }
    return true;
}

bool zf_config_check_regex (const char *text, char *why, size_t why_size)
{
    char reason[256];
    if (zf_regex_valid (text, reason, sizeof reason))
        return true;
    snprintf (why, why_size, "\"%s\": %s", text, reason);
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
        const char *cursor = list->items[item], *word;
        size_t length;
        while (s_next_word (&cursor, &word, &length)) {
            const char *equal = memchr (word, '=', length);
            char *name = zf_strndup (word, (size_t) (equal - word));
            zhashx_update (table, name,
                           zf_strndup (equal + 1, length - (size_t) (equal - word) - 1));
            zf_free (name);
        }
    }
    return true;
}
