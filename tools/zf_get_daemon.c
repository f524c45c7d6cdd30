/*  zf_get_daemon.c — where zfly-get finds the daemon: the fetcher's and storage's bind
    addresses in the daemon's INI file ([fetcher] bind, [storage] bind, [fetcher] events_bind;
    or [endpoints] when they run in another process), turned into routes on zfly-get's node,
    with the node's certificate for tcp:// endpoints. And what to say when nobody answers.

    Separate from the command line and the download: it reads only the configuration. */
#include "zf_get.h"
#include "zf_sections.h"
#include <sys/stat.h>

//  The string value of SECTION.KEY from the loaded file, found through the section's key
//  table, so zfly-get needs no actor's private config struct. NULL when the section is absent.
static const char *s_config_string (zf_config_t *config, const char *section_name,
                                    const char *key_name)
{
    size_t count;
    const zf_config_section_t *const *sections = zf_all_sections (&count);
    for (size_t index = 0; index < count; index++) {
        const zf_config_section_t *section = sections[index];
        if (!streq (section->name, section_name) || section->free_form)
            continue;
        const void *values = zf_config_section (config, section_name);
        if (!values)
            return NULL;
        for (size_t key = 0; key < section->key_count; key++)
            if (streq (section->keys[key].key, key_name)
                && section->keys[key].kind == ZF_CONFIG_STR)
                return *(char *const *) ((const char *) values + section->keys[key].offset);
        return NULL;
    }
    return NULL;
}

static bool s_is_known_section (const char *name)
{
    size_t count;
    const zf_config_section_t *const *sections = zf_all_sections (&count);
    for (size_t index = 0; index < count; index++)
        if (streq (sections[index]->name, name))
            return true;
    return false;
}

//  A bind address turned into one we can connect to: wildcard hosts become loopback.
static char *s_connectable (const char *bind)
{
    if (strncmp (bind, "tcp://", 6) == 0) {
        const char *host = bind + 6;
        const char *port = strrchr (host, ':');
        if (port) {
            size_t host_len = (size_t) (port - host);
            if ((host_len == 1 && host[0] == '*')
                || (host_len == 7 && !strncmp (host, "0.0.0.0", 7)))
                return zf_asprintf ("tcp://127.0.0.1%s", port);
            if (host_len == 4 && !strncmp (host, "[::]", 4))
                return zf_asprintf ("tcp://[::1]%s", port);
        }
    }
    return zf_strdup (bind);
}

//  The endpoint of a bind list ("ipc://… tcp://…") a client on this host should use: the
//  first ipc:// one (no CURVE, file permissions), else the first tcp:// one; NULL if neither.
static char *s_client_endpoint (const char *bind)
{
    char *list = zf_strdup (bind ? bind : "");
    char *saveptr = NULL, *chosen = NULL;
    for (char *word = strtok_r (list, " \t", &saveptr); word;
         word = strtok_r (NULL, " \t", &saveptr)) {
        if (strncmp (word, "ipc://", 6) == 0) {
            zf_free (chosen);
            chosen = zf_strdup (word);
            break;
        }
        if (!chosen && strncmp (word, "tcp://", 6) == 0)
            chosen = zf_strdup (word);
    }
    zf_free (list);
    return chosen;
}

bool zf_get_needs_cert (zf_config_t *config)
{
    char *fetcher_endpoint = s_client_endpoint (
        s_is_known_section ("fetcher") ? s_config_string (config, "fetcher", "bind") : NULL);
    char *storage_endpoint = s_client_endpoint (
        s_is_known_section ("storage") ? s_config_string (config, "storage", "bind") : NULL);
    bool needs_cert = (fetcher_endpoint && strncmp (fetcher_endpoint, "tcp://", 6) == 0)
                      || (storage_endpoint && strncmp (storage_endpoint, "tcp://", 6) == 0);
    zf_free (fetcher_endpoint);
    zf_free (storage_endpoint);
    size_t entry_count;
    const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &entry_count);
    for (size_t index = 0; index < entry_count; index++)
        if ((streq (entries[index].key, "fetcher") || streq (entries[index].key, "storage"))
            && strstr (entries[index].value, "tcp://"))
            needs_cert = true;
    return needs_cert;
}

//  Finds where ACTOR (fetcher, storage) of the daemon listens and adds a route to it.
//  Returns -1 on success, else the exit status, having said why.
int zf_get_route (zf_config_t *config, zf_node_t *node, const char *actor, bool insecure,
                  char **endpoint_p)
{
    const char *path = zf_config_path (config);
    const char *bind = s_is_known_section (actor) ? s_config_string (config, actor, "bind") : NULL;
    bool has_section = s_is_known_section (actor) && zf_config_has_section (config, actor);
    zf_error_t err;
    if (!has_section) {
        //  The actor may run in another process that this file names in [endpoints].
        size_t count;
        const zf_config_entry_t *entries = zf_config_entries (config, "endpoints", &count);
        for (size_t index = 0; index < count; index++)
            if (streq (entries[index].key, actor)) {
                if (zf_node_add_route (node, actor, entries[index].value, entries[index].where,
                                       &err)
                    != ZF_OK) {
                    fprintf (stderr, "zfly-get: %s\n", err.message);
                    return ZF_GET_EXIT_USAGE;
                }
                zf_route_t route;
                zf_node_resolve (node, actor, &route, &err);
                *endpoint_p = zf_strdup (route.endpoint);
                return -1;
            }
        fprintf (stderr,
                 "zfly-get: %s has no [%s] section: this node runs no %s, so zfly-get cannot "
                 "use it (use the INI file of a node that runs fetcher and storage, with -c)\n",
                 path, actor, actor);
        return ZF_GET_EXIT_USAGE;
    }
    if (!bind || !*bind) {
        fprintf (stderr,
                 "zfly-get: %s: [%s] bind is not set, so only actors inside the daemon can "
                 "reach its %s; set for example  bind = ipc:///run/zfly/%s.sock  in [%s]\n",
                 path, actor, actor, actor, actor);
        return ZF_GET_EXIT_USAGE;
    }
    char *chosen = s_client_endpoint (bind);
    if (!chosen) {
        fprintf (stderr,
                 "zfly-get: %s: [%s] bind = %s: zfly-get needs an ipc:// or tcp:// "
                 "endpoint\n",
                 path, actor, bind);
        return ZF_GET_EXIT_USAGE;
    }
    char *endpoint = s_connectable (chosen);
    zf_free (chosen);
    //  where the actor publishes events (the fetcher's task.ended), when it does for us
    const char *events_bind = s_config_string (config, actor, "events_bind");
    char *events_chosen = s_client_endpoint (events_bind);
    char *events = events_chosen ? s_connectable (events_chosen) : NULL;
    zf_free (events_chosen);
    char *spec = NULL;
    if (strncmp (endpoint, "tcp://", 6) == 0 && !insecure) {
        //  The daemon's CURVE server accepts its own key: we use the node's certificate.
        const char *key = zf_node_public_key (node);
        if (!key) {
            fprintf (stderr,
                     "zfly-get: %s: [%s] bind is tcp:// but [bus] cert is not set; zfly-get "
                     "connects with the node's certificate\n",
                     path, actor);
            zf_free (endpoint);
            zf_free (events);
            return ZF_GET_EXIT_USAGE;
        }
        spec = zf_asprintf ("%s%s%s key=%s", endpoint, events ? " events=" : "",
                            events ? events : "", key);
    } else
        spec = zf_asprintf ("%s%s%s", endpoint, events ? " events=" : "", events ? events : "");
    zf_free (events);
    char *where = zf_asprintf ("%s: [%s] bind", path, actor);
    zf_status_t status = zf_node_add_route (node, actor, spec, where, &err);
    zf_free (where);
    zf_free (spec);
    if (status != ZF_OK) {
        fprintf (stderr, "zfly-get: %s\n", err.message);
        zf_free (endpoint);
        return ZF_GET_EXIT_USAGE;
    }
    *endpoint_p = endpoint;
    return -1;
}

void zf_get_no_daemon (zf_get_t *self, const char *endpoint, const char *detail)
{
    fprintf (stderr,
             "zfly-get: no zfly daemon answered at %s (%s); start one with `zfly -c %s` (e.g. "
             "tools/setup.sh && tools/build.sh && build/zfly -c deploy/allinone.ini)\n",
             endpoint, detail, self->config_path);
}

//  An ipc:// endpoint whose socket file does not exist has no daemon behind it.
bool zf_get_ipc_missing (const char *endpoint)
{
    if (strncmp (endpoint, "ipc://", 6) != 0 || endpoint[6] == '@')
        return false;
    struct stat info;
    return stat (endpoint + 6, &info) != 0;
}
