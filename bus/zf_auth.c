/*  zf_auth.c — ZAP handler (ZeroMQ RFC 27) with an allow-list of CURVE public keys.

    The handler listens on a ROUTER (libzmq's sessions ask with REQ sockets), so it can answer
    out of order: a key it does not know yet, on a node that follows a cluster, is held for up
    to HOLD_MS and checked again as member updates arrive, because a node that just joined
    connects to its parents and schedulers at once, often before the manager's word about its
    key has reached them. Its handshake then takes a moment longer instead of failing. */
#include "zf_auth.h"
#include "zf_log.h"
#include "zf_clock.h"
#include "zf_metrics.h"

//  How long an unknown key's handshake waits for the manager to name it a member: the
//  manager publishes a join within milliseconds, but a node under load may take a few seconds
//  to read it; libzmq's own handshake deadline is 30 s.
#define HOLD_MS    3000
#define RECHECK_MS 50

//  A held ZAP request: the envelope to answer it through and the key it asked about.
typedef struct {
    zframe_t *routing; //  the REQ session's identity
    char request_id[64];
    char key[41];
    char address[64];
    int64_t deadline_ms;
} held_t;

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

typedef struct {
    zsock_t *pipe;
    zsock_t *handler;      //  ROUTER bound at the ZAP endpoint
    zlistx_t *held;        //  held_t: unknown keys waiting for a member update
    zcertstore_t *allowed; //  NULL when there is no allow_dir
    char *allow_dir;
    char *own_key;
    zf_node_t *node;
    zf_counter_t *accepted;
    zf_counter_t *refused_revoked;
    zf_counter_t *refused_key;
    zf_counter_t *refused_mechanism;
} self_t;

//  Answers through the ROUTER: the session's identity, the empty delimiter, the ZAP reply.
static void s_reply_to (self_t *self, zframe_t *routing, const char *request_id, const char *status,
                        const char *text, const char *user)
{
    zmsg_t *reply = zmsg_new ();
    zmsg_append (reply, &(zframe_t *){zframe_dup (routing)});
    zmsg_addstr (reply, "");
    zmsg_addstr (reply, "1.0");
    zmsg_addstr (reply, request_id);
    zmsg_addstr (reply, status);
    zmsg_addstr (reply, text);
    zmsg_addstr (reply, user);
    zmsg_addmem (reply, "", 0);
    zmsg_send (&reply, self->handler);
}

static bool s_known (self_t *self, const char *key)
{
    return self->node
           && (zf_node_is_member (self->node, key) || zf_node_is_revoked (self->node, key));
}

static void s_refuse_unknown (self_t *self, zframe_t *routing, const char *request_id,
                              const char *key, const char *address)
{
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 10000);
    zf_counter_add (self->refused_key, 1);
    zf_warning_limited (&limit, "bus",
                        "auth: refused CURVE client key=%s address=%s: not in the allow-list %s "
                        "nor a member of the cluster",
                        key, address, self->allow_dir ? self->allow_dir : "(none configured)");
    s_reply_to (self, routing, request_id, "400", "key not allowed", "");
}

static void s_accept (self_t *self, zframe_t *routing, const char *request_id, const char *key,
                      const char *address)
{
    zf_counter_add (self->accepted, 1);
    zf_debug ("bus", "auth: accepted key=%s address=%s", key, address);
    s_reply_to (self, routing, request_id, "200", "OK", key);
}

//  Held keys: admitted when they became members, refused when revoked or out of time.
static void s_check_held (self_t *self)
{
    int64_t now = zf_clock_mono_ms ();
    held_t *held = zlistx_first (self->held);
    while (held) {
        void *handle = zlistx_cursor (self->held);
        held_t *next = zlistx_next (self->held);
        bool member = zf_node_is_member (self->node, held->key);
        bool revoked = zf_node_is_revoked (self->node, held->key);
        if (member || revoked || now >= held->deadline_ms) {
            if (member)
                s_accept (self, held->routing, held->request_id, held->key, held->address);
            else
                s_refuse_unknown (self, held->routing, held->request_id, held->key, held->address);
            zframe_destroy (&held->routing);
            zf_free (held);
            zlistx_delete (self->held, handle);
        }
        held = next;
    }
}

//  Frames: routing id, empty, version, request id, domain, address, identity, mechanism,
//  credentials…
static void s_handle_request (self_t *self)
{
    zmsg_t *request = zmsg_recv (self->handler);
    if (!request)
        return;
    zframe_t *routing = zmsg_pop (request);
    zframe_destroy (&(zframe_t *){zmsg_pop (request)}); //  the empty delimiter
    char *version = zmsg_popstr (request);
    char *request_id = zmsg_popstr (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    char *routing_id = zmsg_popstr (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *credentials = zmsg_pop (request);
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 10000);

    if (!version || !streq (version, "1.0") || !request_id || !mechanism) {
        //  Malformed ZAP request: only libzmq talks here, so this is a bug, but answer anyway.
        zf_warning_limited (&limit, "bus", "auth: malformed ZAP request");
        s_reply_to (self, routing, request_id ? request_id : "", "500", "malformed request", "");
    } else if (!streq (mechanism, "CURVE") || !credentials || zframe_size (credentials) != 32) {
        zf_counter_add (self->refused_mechanism, 1);
        zf_warning_limited (&limit, "bus",
                            "auth: refused connection address=%s mechanism=%s (CURVE required)",
                            address ? address : "?", mechanism);
        s_reply_to (self, routing, request_id, "400", "CURVE required", "");
    } else {
        char client_key[41];
        zmq_z85_encode (client_key, zframe_data (credentials), 32);
        bool own = self->own_key && streq (client_key, self->own_key);
        bool open = domain && streq (domain, ZF_NODE_OPEN_DOMAIN);
        bool revoked = !own && self->node && zf_node_is_revoked (self->node, client_key);
        bool member = !own && !revoked && self->node && zf_node_is_member (self->node, client_key);
        zcert_t *cert = (!own && !revoked && !member && self->allowed)
                            ? zcertstore_lookup (self->allowed, client_key)
                            : NULL;
        if (revoked && !open) {
            zf_counter_add (self->refused_revoked, 1);
            zf_warning_limited (&limit, "bus",
                                "auth: refused CURVE client key=%s address=%s: revoked by the "
                                "manager",
                                client_key, address ? address : "?");
            s_reply_to (self, routing, request_id, "400", "key revoked", "");
        } else if (own || open || member || cert)
            s_accept (self, routing, request_id, client_key, address ? address : "?");
        else if (self->node && zf_node_follows_cluster (self->node) && !s_known (self, client_key)
                 && strlen (request_id) < 64) {
            held_t *held = zf_calloc (1, sizeof *held);
            held->routing = zframe_dup (routing);
            zf_strlcpy (held->request_id, request_id, sizeof held->request_id);
            zf_strlcpy (held->key, client_key, sizeof held->key);
            zf_strlcpy (held->address, address ? address : "?", sizeof held->address);
            held->deadline_ms = zf_clock_mono_ms () + HOLD_MS;
            zlistx_add_end (self->held, held);
        } else
            s_refuse_unknown (self, routing, request_id, client_key, address ? address : "?");
    }
    zframe_destroy (&routing);
    zframe_destroy (&credentials);
    zstr_free (&version);
    zstr_free (&request_id);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&routing_id);
    zstr_free (&mechanism);
    zmsg_destroy (&request);
}

void zf_auth_actor (zsock_t *pipe, void *args)
{
    const zf_auth_args_t *auth_args = args;
    self_t self = {.pipe = pipe};
    self.allow_dir = auth_args->allow_dir ? zf_strdup (auth_args->allow_dir) : NULL;
    self.own_key = auth_args->own_key ? zf_strdup (auth_args->own_key) : NULL;
    self.node = auth_args->node;
    self.accepted = zf_metrics_counter ("zfly_bus_auth_accepted_total",
                                        "CURVE handshakes accepted by the allow-list", NULL);
    self.refused_key = zf_metrics_counter ("zfly_bus_auth_refused_total",
                                           "Bus connections refused by authentication", "reason",
                                           "unknown_key", NULL);
    self.refused_revoked =
        zf_metrics_counter ("zfly_bus_auth_refused_total",
                            "Bus connections refused by authentication", "reason", "revoked", NULL);
    self.refused_mechanism = zf_metrics_counter ("zfly_bus_auth_refused_total",
                                                 "Bus connections refused by authentication",
                                                 "reason", "not_curve", NULL);
    zsock_signal (pipe, 0); //  args are no longer used after this

    self.handler = zsock_new (ZMQ_ROUTER);
    self.held = zlistx_new ();
    ZF_ASSERT (self.handler);
    if (zsock_bind (self.handler, "%s", ZAP_ENDPOINT) != 0) {
        zstr_sendf (pipe, "ERROR cannot bind %s: %s", ZAP_ENDPOINT, zmq_strerror (zmq_errno ()));
        goto done;
    }
    if (self.allow_dir)
        self.allowed = zcertstore_new (self.allow_dir);
    zstr_send (pipe, "OK");

    zpoller_t *poller = zpoller_new (pipe, self.handler, NULL);
    while (true) {
        void *which = zpoller_wait (poller, zlistx_size (self.held) ? RECHECK_MS : -1);
        if (which == self.handler)
            s_handle_request (&self);
        if (zlistx_size (self.held) && !zpoller_terminated (poller))
            s_check_held (&self);
        else if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool stop = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (stop)
                break;
        } else if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
done:
    for (held_t *held = zlistx_first (self.held); held; held = zlistx_next (self.held)) {
        zframe_destroy (&held->routing);
        zf_free (held);
    }
    zlistx_destroy (&self.held);
    zcertstore_destroy (&self.allowed);
    zsock_destroy (&self.handler);
    zf_free (self.allow_dir);
    zf_free (self.own_key);
}
