/*  zf_upstream.c — what the [upstream] section's values become (see zf_upstream.h); the
    section's table is zf_upstream_config.c. */
#include "zf_upstream.h"
#include <strings.h>

const zf_upstream_config_t *zf_upstream_defaults (void)
{
    static const zf_upstream_config_t defaults = {.ca = "", .connect_timeout_ms = 10000};
    return &defaults;
}

//  Calls each (name, name_length, value, value_length) of the "NAME=VALUE" words of list;
//  stops when each returns false. The validator made sure every word has its '='.
typedef bool (pair_fn) (const char *name, size_t name_length, const char *value,
                        size_t value_length, void *arg);

static void s_each_pair (const zf_config_list_t *list, pair_fn *each, void *arg)
{
    for (size_t item = 0; item < list->count; item++) {
        const char *cursor = list->items[item];
        while (*cursor) {
            cursor += strspn (cursor, " \t");
            size_t length = strcspn (cursor, " \t");
            const char *equal = length ? memchr (cursor, '=', length) : NULL;
            if (equal
                && !each (cursor, (size_t) (equal - cursor), equal + 1,
                          length - (size_t) (equal - cursor) - 1, arg))
                return;
            if (length == 0)
                break;
            cursor += length;
        }
    }
}

static bool s_add_connect_to (const char *name, size_t name_length, const char *value,
                              size_t value_length, void *arg)
{
    struct curl_slist **list = arg;
    char *line = zf_asprintf ("%.*s::%.*s", (int) name_length, name, (int) value_length, value);
    *list = curl_slist_append (*list, line);
    ZF_ASSERT (*list);
    zf_free (line);
    return true;
}

struct curl_slist *zf_upstream_connect_to (const zf_upstream_config_t *config)
{
    struct curl_slist *list = NULL;
    s_each_pair (&config->hosts, s_add_connect_to, &list);
    return list;
}

typedef struct {
    const char *name;
    char *found;
} lookup_t;

static bool s_match_name (const char *name, size_t name_length, const char *value,
                          size_t value_length, void *arg)
{
    lookup_t *lookup = arg;
    if (strlen (lookup->name) != name_length || strncmp (lookup->name, name, name_length) != 0)
        return true;
    zf_free (lookup->found); //  the last pair for a name wins, as in a table
    lookup->found = zf_strndup (value, value_length);
    return true;
}

char *zf_upstream_host_lookup (const zf_upstream_config_t *config, const char *name)
{
    lookup_t lookup = {.name = name};
    s_each_pair (&config->hosts, s_match_name, &lookup);
    return lookup.found;
}

bool zf_upstream_is_public (const zf_upstream_config_t *config, const char *url)
{
    const char *host = strstr (url, "://");
    if (!host || config->public.count == 0)
        return false;
    host += 3;
    size_t host_length = strcspn (host, ":/?#");
    for (size_t item = 0; item < config->public.count; item++) {
        const char *cursor = config->public.items[item];
        while (*cursor) {
            cursor += strspn (cursor, " \t");
            size_t length = strcspn (cursor, " \t");
            if (length == 0)
                break;
            if (length == host_length && strncasecmp (cursor, host, length) == 0)
                return true;
            cursor += length;
        }
    }
    return false;
}

void zf_upstream_test (bool verbose)
{
    if (verbose)
        printf (" * zf_upstream: ");
    char *hosts[] = {"a.test=127.0.0.1:1 b.test=127.0.0.1:2", "a.test=127.0.0.1:3"};
    char *public[] = {"Registry-1.Docker.IO mirror.test"};
    zf_upstream_config_t config = {.hosts = {.items = hosts, .count = 2},
                                   .public = {.items = public, .count = 1}};
    struct curl_slist *list = zf_upstream_connect_to (&config);
    ZF_ASSERT (list && streq (list->data, "a.test::127.0.0.1:1"));
    ZF_ASSERT (streq (list->next->data, "b.test::127.0.0.1:2"));
    ZF_ASSERT (streq (list->next->next->data, "a.test::127.0.0.1:3") && !list->next->next->next);
    curl_slist_free_all (list);
    char *found = zf_upstream_host_lookup (&config, "a.test");
    ZF_ASSERT (found && streq (found, "127.0.0.1:3"));
    zf_free (found);
    ZF_ASSERT (!zf_upstream_host_lookup (&config, "c.test"));
    ZF_ASSERT (zf_upstream_is_public (&config, "https://registry-1.docker.io/v2/x/blobs/y"));
    ZF_ASSERT (zf_upstream_is_public (&config, "http://mirror.test:5000/v2/"));
    ZF_ASSERT (!zf_upstream_is_public (&config, "https://mirror.test.evil/v2/"));
    ZF_ASSERT (!zf_upstream_is_public (&config, "https://private.test/v2/"));
    if (verbose)
        printf ("OK\n");
}
