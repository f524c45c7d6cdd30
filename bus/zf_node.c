/*  zf_node.c — name resolution and socket security shared by the actors of one process. */
#include "zf_node.h"
#include "zf_auth.h"
#include "zf_log.h"
#include <pthread.h>

typedef struct {
    char *name;
    char *endpoint;
    char *events;
    char *server_key;
    char *where; //  where the route was declared ("FILE:LINE"), for later errors
} route_entry_t;

struct zf_node_s {
    zf_node_options_t options; //  strings below are owned copies
    char *name;
    char *cert_path;
    char *allow_dir;
    char *tap;
    char *tap_inbox; //  inproc endpoint of the tap actor's inbox
    zcert_t *cert;   //  NULL without CURVE
    //  Plain arrays, not zhashx/zlistx: czmq containers move a cursor even on lookup, and
    //  actor threads read these concurrently. Both are small (one entry per actor name).
    route_entry_t *routes;
    size_t route_count;
    route_entry_t *locals; //  endpoint = inproc://zfly/NODE/NAME, events = ….events
    size_t local_count;
    zactor_t *auth;
    //  What the control plane says at run time, under the lock: learned routes, member keys,
    //  revoked keys. Lookups go through zhashx under the lock (its cursor is not shared).
    pthread_mutex_t lock;
    zhashx_t *learned;    //  name -> route_entry_t
    zhashx_t *members;    //  key -> "" (present)
    zhashx_t *revoked;    //  key -> ""
    zhashx_t *advertised; //  what -> value (strings owned)
    atomic_uint_fast64_t routes_version;
    atomic_size_t revoked_count; //  lets the per-message check skip the lock when zero
    atomic_bool follows_cluster;
};

static void s_route_clear (route_entry_t *route)
{
    zf_free (route->name);
    zf_free (route->endpoint);
    zf_free (route->events);
    zf_free (route->server_key);
    zf_free (route->where);
    memset (route, 0, sizeof *route);
}

static void s_routes_free (route_entry_t **routes, size_t count)
{
    for (size_t index = 0; index < count; index++)
        s_route_clear (&(*routes)[index]);
    zf_free (*routes);
    *routes = NULL;
}

static const route_entry_t *s_routes_find (const route_entry_t *routes, size_t count,
                                           const char *name)
{
    for (size_t index = 0; index < count; index++)
        if (streq (routes[index].name, name))
            return &routes[index];
    return NULL;
}

static void s_routes_append (route_entry_t **routes, size_t *count, const route_entry_t *route)
{
    *routes = zf_realloc (*routes, (*count + 1) * sizeof **routes);
    (*routes)[(*count)++] = *route;
}

static void s_route_entry_destroy (void **item)
{
    route_entry_t *route = *item;
    s_route_clear (route);
    zf_free (route);
    *item = NULL;
}

zf_node_t *zf_node_new (const zf_node_options_t *options, zf_error_t *err)
{
    ZF_ASSERT (options && options->name);
    zf_node_t *self = zf_calloc (1, sizeof *self);
    self->options = *options;
    self->name = zf_strdup (options->name);
    self->options.name = self->name;
    self->cert_path = options->cert_path ? zf_strdup (options->cert_path) : NULL;
    self->options.cert_path = self->cert_path;
    self->allow_dir = options->allow_dir ? zf_strdup (options->allow_dir) : NULL;
    self->options.allow_dir = self->allow_dir;
    self->tap = options->tap && *options->tap ? zf_strdup (options->tap) : NULL;
    self->options.tap = self->tap;
    if (self->options.hwm <= 0)
        self->options.hwm = 1000;
    if (self->options.tap_hwm <= 0)
        self->options.tap_hwm = 10000;
    if (self->options.request_timeout_ms <= 0)
        self->options.request_timeout_ms = 5000;
    if (self->options.request_retries < 0)
        self->options.request_retries = 0;
    if (self->tap)
        self->tap_inbox = zf_asprintf ("inproc://zfly/%s/tap-inbox", self->name);
    pthread_mutex_init (&self->lock, NULL);
    self->learned = zhashx_new ();
    zhashx_set_destructor (self->learned, s_route_entry_destroy);
    self->members = zhashx_new ();
    self->revoked = zhashx_new ();
    self->advertised = zhashx_new ();
    zhashx_set_destructor (self->advertised, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator (self->advertised, (zhashx_duplicator_fn *) strdup);
    atomic_init (&self->routes_version, 1);
    atomic_init (&self->revoked_count, 0);
    atomic_init (&self->follows_cluster, false);

    if (self->cert_path) {
        if (!zsys_file_exists (self->cert_path)) {
            zf_error_set (err, ZF_E_CONFIG, self->cert_path,
                          "[bus] cert: %s: no such certificate; create one with `zfly keygen %s`",
                          self->cert_path, self->cert_path);
            zf_node_destroy (&self);
            return NULL;
        }
        self->cert = zcert_load (self->cert_path);
        if (!self->cert
            || streq (zcert_secret_txt (self->cert), "0000000000000000000000000000000000000000")) {
            zf_error_set (err, ZF_E_CONFIG, self->cert_path,
                          "[bus] cert: %s: not a secret certificate written by `zfly keygen`",
                          self->cert_path);
            zf_node_destroy (&self);
            return NULL;
        }
    }
    if (self->allow_dir && !zsys_file_exists (self->allow_dir)) {
        zf_error_set (err, ZF_E_CONFIG, self->allow_dir,
                      "[bus] allow: %s: allow-list directory not found", self->allow_dir);
        zf_node_destroy (&self);
        return NULL;
    }
    return self;
}

void zf_node_destroy (zf_node_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_node_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->auth);
    zcert_destroy (&self->cert);
    zhashx_destroy (&self->learned);
    zhashx_destroy (&self->members);
    zhashx_destroy (&self->revoked);
    zhashx_destroy (&self->advertised);
    pthread_mutex_destroy (&self->lock);
    s_routes_free (&self->routes, self->route_count);
    s_routes_free (&self->locals, self->local_count);
    zf_free (self->name);
    zf_free (self->cert_path);
    zf_free (self->allow_dir);
    zf_free (self->tap);
    zf_free (self->tap_inbox);
    zf_free (self);
    *self_p = NULL;
}

static bool s_is_tcp (const char *endpoint)
{
    return strncmp (endpoint, "tcp://", 6) == 0;
}

static bool s_endpoint_valid (const char *endpoint)
{
    return strncmp (endpoint, "tcp://", 6) == 0 || strncmp (endpoint, "ipc://", 6) == 0
           || strncmp (endpoint, "inproc://", 9) == 0;
}

static bool s_key_valid (const char *key)
{
    uint8_t decoded[32];
    return strlen (key) == 40 && zmq_z85_decode (decoded, key) != NULL;
}

//  Reads the public key of a zcert public file.
static char *s_key_from_cert (const char *path)
{
    zcert_t *cert = zcert_load (path);
    if (!cert)
        return NULL;
    char *key = zf_strdup (zcert_public_txt (cert));
    zcert_destroy (&cert);
    return key;
}

static void s_route_copy (zf_route_t *route, const route_entry_t *entry)
{
    zf_strlcpy (route->endpoint, entry->endpoint, sizeof route->endpoint);
    zf_strlcpy (route->events, entry->events ? entry->events : "", sizeof route->events);
    zf_strlcpy (route->server_key, entry->server_key ? entry->server_key : "",
                sizeof route->server_key);
    zf_strlcpy (route->where, entry->where ? entry->where : "", sizeof route->where);
}

//  NAME = ENDPOINT [events=ENDPOINT] [key=Z85 | cert=PATH]
static zf_status_t s_parse_route (zf_node_t *self, const char *name, const char *spec,
                                  const char *where, route_entry_t *out, zf_error_t *err)
{
    route_entry_t entry = {.name = zf_strdup (name), .where = zf_strdup (where ? where : "")};
    route_entry_t *route = &entry;
    char *copy = zf_strdup (spec);
    char *saveptr = NULL;
    zf_status_t status = ZF_OK;
    for (char *word = strtok_r (copy, " \t", &saveptr); word && status == ZF_OK;
         word = strtok_r (NULL, " \t", &saveptr)) {
        if (!route->endpoint && !strchr (word, '=')) {
            if (!s_endpoint_valid (word))
                status = zf_error_set (err, ZF_E_CONFIG, where,
                                       "%s: [endpoints] %s: '%s' is not a tcp://, ipc:// or "
                                       "inproc:// endpoint",
                                       where, name, word);
            route->endpoint = zf_strdup (word);
        } else if (strncmp (word, "events=", 7) == 0 && !route->events) {
            if (!s_endpoint_valid (word + 7))
                status = zf_error_set (err, ZF_E_CONFIG, where,
                                       "%s: [endpoints] %s: events '%s' is not an endpoint", where,
                                       name, word + 7);
            route->events = zf_strdup (word + 7);
        } else if (strncmp (word, "key=", 4) == 0 && !route->server_key) {
            if (!s_key_valid (word + 4))
                status = zf_error_set (err, ZF_E_CONFIG, where,
                                       "%s: [endpoints] %s: key must be a 40-character Z85 "
                                       "public key (see `zfly keygen`)",
                                       where, name);
            route->server_key = zf_strdup (word + 4);
        } else if (strncmp (word, "cert=", 5) == 0 && !route->server_key) {
            route->server_key = s_key_from_cert (word + 5);
            if (!route->server_key)
                status = zf_error_set (err, ZF_E_CONFIG, where,
                                       "%s: [endpoints] %s: cannot read public certificate %s",
                                       where, name, word + 5);
        } else
            status = zf_error_set (err, ZF_E_CONFIG, where,
                                   "%s: [endpoints] %s: unexpected '%s' (expected ENDPOINT "
                                   "[events=ENDPOINT] [key=Z85 | cert=PATH])",
                                   where, name, word);
    }
    zf_free (copy);
    if (status == ZF_OK && !route->endpoint)
        status = zf_error_set (err, ZF_E_CONFIG, where, "%s: [endpoints] %s: no endpoint given",
                               where, name);
    bool needs_key = s_is_tcp (route->endpoint ? route->endpoint : "")
                     || (route->events && s_is_tcp (route->events));
    if (status == ZF_OK && needs_key && !self->options.insecure && !route->server_key)
        status = zf_error_set (err, ZF_E_CONFIG, where,
                               "%s: [endpoints] %s: tcp:// needs the server's key=Z85 or "
                               "cert=PATH for CURVE (or insecure = true in [bus])",
                               where, name);
    if (status != ZF_OK) {
        s_route_clear (route);
        return status;
    }
    *out = entry;
    return ZF_OK;
}

zf_status_t zf_node_add_route (zf_node_t *self, const char *name, const char *spec,
                               const char *where, zf_error_t *err)
{
    if (s_routes_find (self->routes, self->route_count, name))
        return zf_error_set (err, ZF_E_CONFIG, where, "%s: [endpoints] %s: given twice", where,
                             name);
    route_entry_t entry;
    zf_status_t status = s_parse_route (self, name, spec, where, &entry, err);
    if (status == ZF_OK)
        s_routes_append (&self->routes, &self->route_count, &entry);
    return status;
}

zf_status_t zf_node_parse_route (zf_node_t *self, const char *name, const char *spec,
                                 const char *where, zf_route_t *route, zf_error_t *err)
{
    route_entry_t entry;
    zf_status_t status = s_parse_route (self, name, spec, where, &entry, err);
    if (status == ZF_OK) {
        memset (route, 0, sizeof *route);
        zf_strlcpy (route->name, name, sizeof route->name);
        s_route_copy (route, &entry);
        s_route_clear (&entry);
    }
    return status;
}

//  Called before actors start: afterwards the node is read-only and shared without locks.
void zf_node_add_local (zf_node_t *self, const char *actor)
{
    if (s_routes_find (self->locals, self->local_count, actor))
        return;
    route_entry_t local = {
        .name = zf_strdup (actor),
        .endpoint = zf_asprintf ("inproc://zfly/%s/%s", self->name, actor),
        .events = zf_asprintf ("inproc://zfly/%s/%s.events", self->name, actor),
    };
    s_routes_append (&self->locals, &self->local_count, &local);
}

const char *zf_node_inproc_endpoint (zf_node_t *self, const char *actor, bool events)
{
    const route_entry_t *local = s_routes_find (self->locals, self->local_count, actor);
    ZF_ASSERT (local); //  only local actors have inproc endpoints
    return events ? local->events : local->endpoint;
}

zf_status_t zf_node_resolve (zf_node_t *self, const char *actor, zf_route_t *route, zf_error_t *err)
{
    memset (route, 0, sizeof *route);
    zf_strlcpy (route->name, actor, sizeof route->name);
    const route_entry_t *local = s_routes_find (self->locals, self->local_count, actor);
    if (local) {
        s_route_copy (route, local);
        route->local = true;
        return ZF_OK;
    }
    const route_entry_t *entry = s_routes_find (self->routes, self->route_count, actor);
    if (entry) {
        s_route_copy (route, entry);
        return ZF_OK;
    }
    pthread_mutex_lock (&self->lock);
    entry = zhashx_lookup (self->learned, actor);
    if (entry)
        s_route_copy (route, entry);
    pthread_mutex_unlock (&self->lock);
    if (entry)
        return ZF_OK;
    return zf_error_set (err, ZF_E_UNREACHABLE, actor,
                         "no endpoint for actor '%s': it does not run in this process, "
                         "[endpoints] has no '%s' entry and the control plane named none",
                         actor, actor);
}

zf_status_t zf_node_learn_route (zf_node_t *self, const char *name, const char *endpoint,
                                 const char *events, const char *key, zf_error_t *err)
{
    if (s_routes_find (self->locals, self->local_count, name)
        || s_routes_find (self->routes, self->route_count, name))
        return zf_error_set (err, ZF_E_INVALID, name,
                             "route '%s' is set by this node's configuration", name);
    if (!endpoint || !s_endpoint_valid (endpoint) || strlen (endpoint) >= ZF_ENDPOINT_MAX
        || (events && *events
            && (!s_endpoint_valid (events) || strlen (events) >= ZF_ENDPOINT_MAX)))
        return zf_error_set (err, ZF_E_INVALID, name, "route '%s': '%s' is not an endpoint", name,
                             endpoint ? endpoint : "");
    bool needs_key = s_is_tcp (endpoint) || (events && s_is_tcp (events));
    if (key && *key && !s_key_valid (key))
        return zf_error_set (err, ZF_E_INVALID, name, "route '%s': the key is not a Z85 key", name);
    if (needs_key && !self->options.insecure && !(key && *key))
        return zf_error_set (err, ZF_E_INVALID, name,
                             "route '%s': tcp:// needs the server's key for CURVE", name);
    pthread_mutex_lock (&self->lock);
    route_entry_t *entry = zhashx_lookup (self->learned, name);
    bool same = entry && streq (entry->endpoint, endpoint)
                && streq (entry->events ? entry->events : "", events ? events : "")
                && streq (entry->server_key ? entry->server_key : "", key ? key : "");
    if (!same) {
        entry = zf_calloc (1, sizeof *entry);
        entry->name = zf_strdup (name);
        entry->endpoint = zf_strdup (endpoint);
        entry->events = events && *events ? zf_strdup (events) : NULL;
        entry->server_key = key && *key ? zf_strdup (key) : NULL;
        zhashx_update (self->learned, name, entry);
        atomic_fetch_add (&self->routes_version, 1);
    }
    pthread_mutex_unlock (&self->lock);
    return ZF_OK;
}

char *zf_node_endpoint_for_peer (const char *endpoint, const char *peer_address)
{
    static const char *wildcards[] = {"tcp://*:", "tcp://0.0.0.0:", "tcp://[::]:"};
    for (size_t index = 0; index < ZF_ARRAY_LEN (wildcards); index++) {
        size_t len = strlen (wildcards[index]);
        if (strncmp (endpoint, wildcards[index], len) == 0 && peer_address && *peer_address)
            return zf_asprintf (strchr (peer_address, ':') ? "tcp://[%s]:%s" : "tcp://%s:%s",
                                peer_address, endpoint + len);
    }
    return zf_strdup (endpoint);
}

uint64_t zf_node_routes_version (zf_node_t *self)
{
    return atomic_load (&self->routes_version);
}

//  ---------------------------------------------------------------------------------------------
//  Members and revoked keys

void zf_node_set_members (zf_node_t *self, const char *const *keys, size_t count, zlistx_t *revoked)
{
    zhashx_t *members = zhashx_new ();
    for (size_t index = 0; index < count; index++)
        zhashx_update (members, keys[index], (void *) "");
    pthread_mutex_lock (&self->lock);
    //  A key that was a member and is not any more was revoked (or its host deleted).
    for (void *item = zhashx_first (self->members); item; item = zhashx_next (self->members)) {
        const char *key = zhashx_cursor (self->members);
        if (!zhashx_lookup (members, key) && !zhashx_lookup (self->revoked, key)) {
            zhashx_update (self->revoked, key, (void *) "");
            atomic_fetch_add (&self->revoked_count, 1);
            if (revoked)
                zlistx_add_end (revoked, (void *) key);
        }
    }
    for (size_t index = 0; index < count; index++)
        if (zhashx_lookup (self->revoked, keys[index])) { //  re-admitted by the manager
            zhashx_delete (self->revoked, keys[index]);
            atomic_fetch_sub (&self->revoked_count, 1);
        }
    zhashx_destroy (&self->members);
    self->members = members;
    pthread_mutex_unlock (&self->lock);
}

void zf_node_add_member (zf_node_t *self, const char *key)
{
    pthread_mutex_lock (&self->lock);
    zhashx_update (self->members, key, (void *) "");
    if (zhashx_lookup (self->revoked, key)) {
        zhashx_delete (self->revoked, key);
        atomic_fetch_sub (&self->revoked_count, 1);
    }
    pthread_mutex_unlock (&self->lock);
}

void zf_node_revoke (zf_node_t *self, const char *key)
{
    pthread_mutex_lock (&self->lock);
    zhashx_delete (self->members, key);
    if (!zhashx_lookup (self->revoked, key)) {
        zhashx_update (self->revoked, key, (void *) "");
        atomic_fetch_add (&self->revoked_count, 1);
    }
    pthread_mutex_unlock (&self->lock);
}

bool zf_node_is_member (zf_node_t *self, const char *key)
{
    pthread_mutex_lock (&self->lock);
    bool member = zhashx_lookup (self->members, key) != NULL;
    pthread_mutex_unlock (&self->lock);
    return member;
}

void zf_node_follow_cluster (zf_node_t *self)
{
    atomic_store (&self->follows_cluster, true);
}

bool zf_node_follows_cluster (zf_node_t *self)
{
    return atomic_load (&self->follows_cluster);
}

bool zf_node_is_revoked (zf_node_t *self, const char *key)
{
    if (atomic_load (&self->revoked_count) == 0)
        return false;
    pthread_mutex_lock (&self->lock);
    bool revoked = zhashx_lookup (self->revoked, key) != NULL;
    pthread_mutex_unlock (&self->lock);
    return revoked;
}

void zf_node_advertise (zf_node_t *self, const char *what, const char *value)
{
    pthread_mutex_lock (&self->lock);
    zhashx_update (self->advertised, what, (void *) value);
    pthread_mutex_unlock (&self->lock);
}

void zf_node_advertised (zf_node_t *self, const char *what, char *buffer, size_t size)
{
    pthread_mutex_lock (&self->lock);
    const char *value = zhashx_lookup (self->advertised, what);
    zf_strlcpy (buffer, value ? value : "", size);
    pthread_mutex_unlock (&self->lock);
}

size_t zf_node_member_count (zf_node_t *self)
{
    pthread_mutex_lock (&self->lock);
    size_t count = zhashx_size (self->members);
    pthread_mutex_unlock (&self->lock);
    return count;
}

static zf_status_t s_bind (zf_node_t *self, zsock_t *sock, const char *endpoint, const char *domain,
                           zf_error_t *err)
{
    if (s_is_tcp (endpoint) && !self->options.insecure) {
        if (!self->cert)
            return zf_error_set (err, ZF_E_CONFIG, endpoint,
                                 "cannot bind %s with CURVE: [bus] cert is not set (create one "
                                 "with `zfly keygen`, or set insecure = true)",
                                 endpoint);
        zcert_apply (self->cert, sock);
        zsock_set_curve_server (sock, 1);
        zsock_set_zap_domain (sock, domain);
    } else
        //  CURVE options stick to the socket and apply to every later bind: a plain endpoint
        //  after a CURVE one would demand keys. Callers bind plain endpoints first.
        ZF_ASSERT (!zsock_curve_server (sock));
    if (zsock_bind (sock, "%s", endpoint) < 0)
        return zf_error_set (err, ZF_E_IO, endpoint, "cannot bind %s: %s", endpoint,
                             zmq_strerror (zmq_errno ()));
    return ZF_OK;
}

zf_status_t zf_node_bind (zf_node_t *self, zsock_t *sock, const char *endpoint, zf_error_t *err)
{
    return s_bind (self, sock, endpoint, "zfly", err);
}

zf_status_t zf_node_bind_open (zf_node_t *self, zsock_t *sock, const char *endpoint,
                               zf_error_t *err)
{
    return s_bind (self, sock, endpoint, ZF_NODE_OPEN_DOMAIN, err);
}

zf_status_t zf_node_connect (zf_node_t *self, zsock_t *sock, const zf_route_t *route, bool events,
                             zf_error_t *err)
{
    const char *endpoint = events ? route->events : route->endpoint;
    if (!*endpoint)
        return zf_error_set (err, ZF_E_UNREACHABLE, route->name,
                             "actor '%s' has no events endpoint ([endpoints] %s = … events=…)",
                             route->name, route->name);
    if (s_is_tcp (endpoint) && !self->options.insecure) {
        if (!self->cert)
            return zf_error_set (err, ZF_E_CONFIG, endpoint,
                                 "cannot connect to %s with CURVE: [bus] cert is not set",
                                 endpoint);
        ZF_ASSERT (*route->server_key); //  checked when the route was added or learned
        zcert_apply (self->cert, sock);
        zsock_set_curve_serverkey (sock, route->server_key);
    }
    if (zsock_connect (sock, "%s", endpoint) < 0)
        return zf_error_set (err, ZF_E_IO, endpoint, "cannot connect to actor '%s' at %s%s%s%s: %s",
                             route->name, endpoint, *route->where ? " (" : "", route->where,
                             *route->where ? ")" : "", zmq_strerror (zmq_errno ()));
    return ZF_OK;
}

const char *zf_node_name (zf_node_t *self)
{
    return self->name;
}

const zf_node_options_t *zf_node_options (zf_node_t *self)
{
    return &self->options;
}

const char *zf_node_tap_inbox (zf_node_t *self)
{
    return self->tap_inbox;
}

const char *zf_node_public_key (zf_node_t *self)
{
    return self->cert ? zcert_public_txt (self->cert) : NULL;
}

zf_status_t zf_node_start_auth (zf_node_t *self, zf_error_t *err)
{
    if (self->auth || self->options.insecure || !self->cert)
        return ZF_OK;
    zf_auth_args_t args = {
        .allow_dir = self->allow_dir, .own_key = zf_node_public_key (self), .node = self};
    self->auth = zactor_new (zf_auth_actor, &args);
    char *answer = zstr_recv (self->auth);
    zf_status_t status = ZF_OK;
    if (!answer || !streq (answer, "OK"))
        status = zf_error_set (err, ZF_E_IO, "auth", "cannot start the CURVE authenticator: %s",
                               answer ? answer : "no answer");
    zstr_free (&answer);
    return status;
}

//  ---------------------------------------------------------------------------------------------
//  Selftest: names from the file, names learned at run time, member and revoked keys.

void zf_node_test (bool verbose)
{
    (void) verbose;
    zf_node_options_t options = {.name = "selftest"};
    zf_node_t *node = zf_node_new (&options, NULL);
    ZF_ASSERT (node);
    zf_error_t err;
    const char *key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    zf_node_add_local (node, "storage");
    ZF_ASSERT (zf_node_add_route (node, "scheduler", "ipc:///tmp/zf-sched", "test:1", &err)
               == ZF_OK);
    zf_route_t route;
    ZF_ASSERT (zf_node_resolve (node, "storage", &route, &err) == ZF_OK && route.local);
    ZF_ASSERT (streq (route.endpoint, "inproc://zfly/selftest/storage"));
    ZF_ASSERT (zf_node_resolve (node, "storage@edge-7", &route, &err) == ZF_E_UNREACHABLE);
    ZF_ASSERT (strstr (err.message, "the control plane named none"));

    //  Learned routes: new, the same again (no version change), moved, refused.
    uint64_t version = zf_node_routes_version (node);
    ZF_ASSERT (zf_node_learn_route (node, "storage@edge-7", "tcp://10.0.0.7:65002", NULL, key, &err)
               == ZF_OK);
    ZF_ASSERT (zf_node_routes_version (node) == version + 1);
    ZF_ASSERT (zf_node_resolve (node, "storage@edge-7", &route, &err) == ZF_OK && !route.local);
    ZF_ASSERT (streq (route.endpoint, "tcp://10.0.0.7:65002") && streq (route.server_key, key)
               && streq (route.events, ""));
    ZF_ASSERT (zf_node_learn_route (node, "storage@edge-7", "tcp://10.0.0.7:65002", NULL, key, &err)
               == ZF_OK);
    ZF_ASSERT (zf_node_routes_version (node) == version + 1);
    ZF_ASSERT (zf_node_learn_route (node, "storage@edge-7", "tcp://10.0.0.8:65002", "", key, &err)
               == ZF_OK);
    ZF_ASSERT (zf_node_routes_version (node) == version + 2);
    ZF_ASSERT (zf_node_resolve (node, "storage@edge-7", &route, &err) == ZF_OK
               && streq (route.endpoint, "tcp://10.0.0.8:65002"));
    ZF_ASSERT (zf_node_learn_route (node, "storage@edge-8", "tcp://10.0.0.8:65002", NULL, NULL,
                                    &err)
               == ZF_E_INVALID); //  CURVE needs the key
    ZF_ASSERT (
        zf_node_learn_route (node, "storage@edge-8", "tcp://10.0.0.8:65002", NULL, "short", &err)
        == ZF_E_INVALID);
    ZF_ASSERT (zf_node_learn_route (node, "storage@edge-8", "http://x", NULL, key, &err)
               == ZF_E_INVALID);
    ZF_ASSERT (zf_node_learn_route (node, "scheduler", "ipc:///tmp/elsewhere", NULL, NULL, &err)
               == ZF_E_INVALID); //  the file wins
    ZF_ASSERT (zf_node_learn_route (node, "storage", "ipc:///tmp/elsewhere", NULL, NULL, &err)
               == ZF_E_INVALID);

    //  Wildcard binds as others dial them.
    char *dial = zf_node_endpoint_for_peer ("tcp://*:65002", "10.0.0.7");
    ZF_ASSERT (streq (dial, "tcp://10.0.0.7:65002"));
    zf_free (dial);
    dial = zf_node_endpoint_for_peer ("tcp://0.0.0.0:65002", "fd00::7");
    ZF_ASSERT (streq (dial, "tcp://[fd00::7]:65002"));
    zf_free (dial);
    dial = zf_node_endpoint_for_peer ("tcp://10.1.1.1:65002", "10.0.0.7");
    ZF_ASSERT (streq (dial, "tcp://10.1.1.1:65002"));
    zf_free (dial);

    //  Members: a snapshot, an addition, a revocation, a snapshot without a former member.
    const char *keys[] = {"A123456789012345678901234567890123456789",
                          "B123456789012345678901234567890123456789",
                          "C123456789012345678901234567890123456789"};
    zf_node_set_members (node, keys, 2, NULL);
    ZF_ASSERT (zf_node_member_count (node) == 2);
    ZF_ASSERT (zf_node_is_member (node, keys[0]) && !zf_node_is_member (node, keys[2]));
    ZF_ASSERT (!zf_node_is_revoked (node, keys[0]));
    zf_node_add_member (node, keys[2]);
    ZF_ASSERT (zf_node_is_member (node, keys[2]));
    zf_node_revoke (node, keys[0]);
    ZF_ASSERT (!zf_node_is_member (node, keys[0]) && zf_node_is_revoked (node, keys[0]));
    //  B left the cluster: revoked too, and said (A was revoked already, so not again).
    zlistx_t *revoked = zlistx_new ();
    zlistx_set_duplicator (revoked, (zlistx_duplicator_fn *) strdup);
    zlistx_set_destructor (revoked, (zlistx_destructor_fn *) zstr_free);
    zf_node_set_members (node, keys + 2, 1, revoked);
    ZF_ASSERT (zf_node_is_revoked (node, keys[1]) && zf_node_is_member (node, keys[2]));
    ZF_ASSERT (zlistx_size (revoked) == 1 && streq (zlistx_first (revoked), keys[1]));
    zlistx_destroy (&revoked);
    zf_node_set_members (node, keys, 3, NULL); //  re-admitted by a later snapshot
    ZF_ASSERT (!zf_node_is_revoked (node, keys[0]) && !zf_node_is_revoked (node, keys[1]));
    zf_node_destroy (&node);
}
