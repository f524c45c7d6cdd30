/*  zf_node.c — name resolution and socket security shared by the actors of one process. */
#include "zf_node.h"
#include "zf_auth.h"
#include "zf_log.h"

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

//  NAME = ENDPOINT [events=ENDPOINT] [key=Z85 | cert=PATH]
zf_status_t zf_node_add_route (zf_node_t *self, const char *name, const char *spec,
                               const char *where, zf_error_t *err)
{
    if (s_routes_find (self->routes, self->route_count, name))
        return zf_error_set (err, ZF_E_CONFIG, where, "%s: [endpoints] %s: given twice", where,
                             name);
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
    s_routes_append (&self->routes, &self->route_count, route);
    return ZF_OK;
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
    route->name = actor;
    const route_entry_t *local = s_routes_find (self->locals, self->local_count, actor);
    if (local) {
        route->endpoint = local->endpoint;
        route->events = local->events;
        route->local = true;
        return ZF_OK;
    }
    const route_entry_t *entry = s_routes_find (self->routes, self->route_count, actor);
    if (entry) {
        route->endpoint = entry->endpoint;
        route->events = entry->events;
        route->server_key = entry->server_key;
        route->where = entry->where;
        return ZF_OK;
    }
    return zf_error_set (err, ZF_E_UNREACHABLE, actor,
                         "no endpoint for actor '%s': it does not run in this process and "
                         "[endpoints] has no '%s' entry",
                         actor, actor);
}

zf_status_t zf_node_bind (zf_node_t *self, zsock_t *sock, const char *endpoint, zf_error_t *err)
{
    if (s_is_tcp (endpoint) && !self->options.insecure) {
        if (!self->cert)
            return zf_error_set (err, ZF_E_CONFIG, endpoint,
                                 "cannot bind %s with CURVE: [bus] cert is not set (create one "
                                 "with `zfly keygen`, or set insecure = true)",
                                 endpoint);
        zcert_apply (self->cert, sock);
        zsock_set_curve_server (sock, 1);
        zsock_set_zap_domain (sock, "zfly");
    } else
        //  CURVE options stick to the socket and apply to every later bind: a plain endpoint
        //  after a CURVE one would demand keys. Callers bind plain endpoints first.
        ZF_ASSERT (!zsock_curve_server (sock));
    if (zsock_bind (sock, "%s", endpoint) < 0)
        return zf_error_set (err, ZF_E_IO, endpoint, "cannot bind %s: %s", endpoint,
                             zmq_strerror (zmq_errno ()));
    return ZF_OK;
}

zf_status_t zf_node_connect (zf_node_t *self, zsock_t *sock, const zf_route_t *route, bool events,
                             zf_error_t *err)
{
    const char *endpoint = events ? route->events : route->endpoint;
    if (!endpoint)
        return zf_error_set (err, ZF_E_UNREACHABLE, route->name,
                             "actor '%s' has no events endpoint ([endpoints] %s = … events=…)",
                             route->name, route->name);
    if (s_is_tcp (endpoint) && !self->options.insecure) {
        if (!self->cert)
            return zf_error_set (err, ZF_E_CONFIG, endpoint,
                                 "cannot connect to %s with CURVE: [bus] cert is not set",
                                 endpoint);
        ZF_ASSERT (route->server_key); //  checked when the route was added
        zcert_apply (self->cert, sock);
        zsock_set_curve_serverkey (sock, route->server_key);
    }
    if (zsock_connect (sock, "%s", endpoint) < 0)
        return zf_error_set (err, ZF_E_IO, endpoint, "cannot connect to actor '%s' at %s%s%s%s: %s",
                             route->name, endpoint, route->where ? " (" : "",
                             route->where ? route->where : "", route->where ? ")" : "",
                             zmq_strerror (zmq_errno ()));
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
    zf_auth_args_t args = {.allow_dir = self->allow_dir, .own_key = zf_node_public_key (self)};
    self->auth = zactor_new (zf_auth_actor, &args);
    char *answer = zstr_recv (self->auth);
    zf_status_t status = ZF_OK;
    if (!answer || !streq (answer, "OK"))
        status = zf_error_set (err, ZF_E_IO, "auth", "cannot start the CURVE authenticator: %s",
                               answer ? answer : "no answer");
    zstr_free (&answer);
    return status;
}
