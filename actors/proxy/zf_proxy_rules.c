/*  zf_proxy_rules.c — where a request goes (see zf_proxy_rules.h). */
#include "zf_proxy_rules.h"
#include <ctype.h>
#include "zf_regex.h"

typedef struct {
    regex_t regex;
    zf_proxy_route_t route;
    bool use_https;
} rule_t;

struct zf_proxy_rules_s {
    rule_t *rules;
    size_t rule_count;
    zhashx_t *registry_map; //  NAME -> HOST
    char *default_registry;
};

static const char *s_default_rules[] = {
    "/v2/.+/blobs/sha256:[0-9a-f]{64}([?]|$) p2p",
    ".* direct",
};

//  "REGEX ACTION [use_https]": the action words are the last one or two. False with why.
static bool s_rule_parse (const char *text, rule_t *rule, char *why, size_t why_size)
{
    char *copy = zf_strdup (text);
    size_t length = strlen (copy);
    while (length && isspace ((unsigned char) copy[length - 1]))
        copy[--length] = 0;
    bool use_https = false;
    char *space = strrchr (copy, ' ');
    if (space && streq (space + 1, "use_https")) {
        use_https = true;
        *space = 0;
        while (space > copy && space[-1] == ' ')
            *--space = 0;
        space = strrchr (copy, ' ');
    }
    if (!space || (!streq (space + 1, "p2p") && !streq (space + 1, "direct"))) {
        snprintf (why, why_size, "\"%s\": expected REGEX p2p|direct [use_https]", text);
        zf_free (copy);
        return false;
    }
    rule->route = streq (space + 1, "p2p") ? ZF_PROXY_ROUTE_P2P : ZF_PROXY_ROUTE_DIRECT;
    rule->use_https = use_https;
    *space = 0;
    char *pattern = copy;
    while (*pattern == ' ')
        pattern++;
    char reason[256];
    bool compiled = zf_regex_compile (&rule->regex, pattern, 0, reason, sizeof reason);
    if (!compiled)
        snprintf (why, why_size, "\"%s\": %s", text, reason);
    zf_free (copy);
    return compiled;
}

bool zf_proxy_rule_check (const char *text, char *why, size_t why_size)
{
    rule_t rule;
    if (!s_rule_parse (text, &rule, why, why_size))
        return false;
    regfree (&rule.regex);
    return true;
}

static void s_string_free (void **item_p)
{
    zf_free (*item_p);
    *item_p = NULL;
}

zf_proxy_rules_t *zf_proxy_rules_new (const zf_config_list_t *rules,
                                      const zf_config_list_t *registry_map,
                                      const char *default_registry, zf_error_t *err)
{
    zf_proxy_rules_t *self = zf_calloc (1, sizeof *self);
    self->default_registry = zf_strdup (default_registry);
    self->registry_map = zhashx_new ();
    zhashx_set_destructor (self->registry_map, s_string_free);
    size_t count = rules && rules->count ? rules->count : ZF_ARRAY_LEN (s_default_rules);
    self->rules = zf_calloc (count, sizeof *self->rules);
    char why[256];
    for (size_t index = 0; index < count; index++) {
        const char *text = rules && rules->count ? rules->items[index] : s_default_rules[index];
        if (!s_rule_parse (text, &self->rules[index], why, sizeof why)) {
            //  the config validator checked it already: only a caller without one gets here
            zf_error_set (err, ZF_E_CONFIG, "rule", "%s", why);
            zf_proxy_rules_destroy (&self);
            return NULL;
        }
        self->rule_count++;
    }
    if (!zf_config_pairs_into (registry_map, self->registry_map, err)) {
        zf_proxy_rules_destroy (&self);
        return NULL;
    }
    return self;
}

void zf_proxy_rules_destroy (zf_proxy_rules_t **self_p)
{
    zf_proxy_rules_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->rule_count; index++)
        regfree (&self->rules[index].regex);
    zf_free (self->rules);
    zhashx_destroy (&self->registry_map);
    zf_free (self->default_registry);
    zf_free (self);
    *self_p = NULL;
}

size_t zf_proxy_rules_count (zf_proxy_rules_t *self)
{
    return self->rule_count;
}

//  Value of query parameter name in url (caller frees), or NULL; removes it from url when
//  strip is set.
static char *s_query_take (char *url, const char *name, bool strip)
{
    char *query = strchr (url, '?');
    if (!query)
        return NULL;
    size_t name_len = strlen (name);
    char *param = query + 1;
    while (*param) {
        char *end = strchr (param, '&');
        size_t length = end ? (size_t) (end - param) : strlen (param);
        if (length > name_len && strncmp (param, name, name_len) == 0 && param[name_len] == '=') {
            char *value = zf_strndup (param + name_len + 1, length - name_len - 1);
            if (strip) {
                char *rest = end ? end + 1 : param + length;
                memmove (param, rest, strlen (rest) + 1);
                size_t total = strlen (url);
                if (total && (url[total - 1] == '&' || url[total - 1] == '?'))
                    url[total - 1] = 0;
            }
            return value;
        }
        if (!end)
            break;
        param = end + 1;
    }
    return NULL;
}

//  "https://host" for a registry name given by a header, ns, or the default.
static char *s_registry_base (zf_proxy_rules_t *self, const char *registry)
{
    const char *host = registry;
    const char *mapped = zhashx_lookup (self->registry_map, registry);
    if (mapped)
        host = mapped; //  may carry its scheme
    const char *scheme = "https://";
    if (strncmp (host, "http://", 7) == 0 || strncmp (host, "https://", 8) == 0)
        scheme = "";
    char *base = zf_asprintf ("%s%s", scheme, host);
    size_t length = strlen (base);
    while (length && base[length - 1] == '/')
        base[--length] = 0;
    return base;
}

char *zf_proxy_rules_mirror_url (zf_proxy_rules_t *self, const char *target, const char *registry)
{
    char *path = zf_strdup (target);
    char *ns = s_query_take (path, "ns", true);
    if (!registry || !*registry)
        registry = ns && *ns ? ns : self->default_registry;
    char *base = s_registry_base (self, registry);
    char *url = zf_asprintf ("%s%s", base, path);
    zf_free (base);
    zf_free (path);
    zf_free (ns);
    return url;
}

zf_proxy_route_t zf_proxy_rules_route (zf_proxy_rules_t *self, char **url_p)
{
    for (size_t index = 0; index < self->rule_count; index++) {
        const rule_t *rule = &self->rules[index];
        if (regexec (&rule->regex, *url_p, 0, NULL, 0) != 0)
            continue;
        if (rule->use_https && strncasecmp (*url_p, "http://", 7) == 0) {
            char *secure = zf_asprintf ("https://%s", *url_p + 7);
            zf_free (*url_p);
            *url_p = secure;
        }
        return rule->route;
    }
    return ZF_PROXY_ROUTE_DIRECT;
}

//  ---------------------------------------------------------------------------------------------

void zf_proxy_rules_test (bool verbose)
{
    if (verbose)
        printf (" * zf_proxy_rules: ");
    char why[256];
    ZF_ASSERT (zf_proxy_rule_check (s_default_rules[0], why, sizeof why));
    ZF_ASSERT (zf_proxy_rule_check ("^http://mirror/  direct  use_https", why, sizeof why));
    ZF_ASSERT (!zf_proxy_rule_check ("[ p2p", why, sizeof why));
    ZF_ASSERT (strstr (why, "bad regular expression"));
    ZF_ASSERT (!zf_proxy_rule_check ("abc", why, sizeof why));
    ZF_ASSERT (!zf_proxy_rule_check ("abc fast", why, sizeof why));
    ZF_ASSERT (streq (why, "\"abc fast\": expected REGEX p2p|direct [use_https]"));

    //  the default rules: blobs by digest P2P, the rest direct
    zf_error_t err;
    char *map_items[] = {"docker.io=registry-1.docker.io", "local=http://127.0.0.1:5000"};
    zf_config_list_t map = {.items = map_items, .count = 2};
    zf_proxy_rules_t *rules = zf_proxy_rules_new (NULL, &map, "https://default.test", &err);
    ZF_ASSERT (rules && zf_proxy_rules_count (rules) == 2);
    char *url = zf_strdup ("https://r/v2/a/b/blobs/sha256:"
                           "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    ZF_ASSERT (zf_proxy_rules_route (rules, &url) == ZF_PROXY_ROUTE_P2P);
    zf_free (url);
    url = zf_strdup ("https://r/v2/a/manifests/latest");
    ZF_ASSERT (zf_proxy_rules_route (rules, &url) == ZF_PROXY_ROUTE_DIRECT);
    zf_free (url);

    //  mirror URLs: ns is taken out and mapped, the header wins, else the default
    url = zf_proxy_rules_mirror_url (rules, "/v2/lib/manifests/1?ns=docker.io&x=1", NULL);
    ZF_ASSERT (streq (url, "https://registry-1.docker.io/v2/lib/manifests/1?x=1"));
    zf_free (url);
    url = zf_proxy_rules_mirror_url (rules, "/v2/lib/manifests/1?ns=docker.io", "local");
    ZF_ASSERT (streq (url, "http://127.0.0.1:5000/v2/lib/manifests/1"));
    zf_free (url);
    url = zf_proxy_rules_mirror_url (rules, "/v2/", "");
    ZF_ASSERT (streq (url, "https://default.test/v2/"));
    zf_free (url);
    zf_proxy_rules_destroy (&rules);

    //  configured rules replace the defaults; use_https rewrites the URL
    char *rule_items[] = {"^http://mirror/ direct use_https", "blobs p2p"};
    zf_config_list_t list = {.items = rule_items, .count = 2};
    rules = zf_proxy_rules_new (&list, NULL, "default.test", &err);
    ZF_ASSERT (rules && zf_proxy_rules_count (rules) == 2);
    url = zf_strdup ("http://mirror/v2/x/blobs/y");
    ZF_ASSERT (zf_proxy_rules_route (rules, &url) == ZF_PROXY_ROUTE_DIRECT);
    ZF_ASSERT (streq (url, "https://mirror/v2/x/blobs/y"));
    zf_free (url);
    url = zf_strdup ("http://other/v2/x/blobs/y");
    ZF_ASSERT (zf_proxy_rules_route (rules, &url) == ZF_PROXY_ROUTE_P2P);
    zf_free (url);
    url = zf_strdup ("http://other/v2/x/manifests/y");
    ZF_ASSERT (zf_proxy_rules_route (rules, &url) == ZF_PROXY_ROUTE_DIRECT);
    zf_free (url);
    zf_proxy_rules_destroy (&rules);
    if (verbose)
        printf ("OK\n");
}
