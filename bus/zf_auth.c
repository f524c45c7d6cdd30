/*  zf_auth.c — ZAP handler (ZeroMQ RFC 27) with an allow-list of CURVE public keys. */
#include "zf_auth.h"
#include "zf_log.h"
#include "zf_metrics.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

typedef struct {
    zsock_t *pipe;
    zsock_t *handler;      //  REP bound at the ZAP endpoint
    zcertstore_t *allowed; //  NULL when there is no allow_dir
    char *allow_dir;
    char *own_key;
    zf_node_t *node;
    zf_counter_t *accepted;
    zf_counter_t *refused_revoked;
    zf_counter_t *refused_key;
    zf_counter_t *refused_mechanism;
} self_t;

static void s_reply (self_t *self, const char *request_id, const char *status, const char *text,
                     const char *user)
{
    zstr_sendx (self->handler, "1.0", request_id, status, text, user, "", NULL);
}

//  Frames: version, request id, domain, address, routing id, mechanism, credentials…
static void s_handle_request (self_t *self)
{
    zmsg_t *request = zmsg_recv (self->handler);
    if (!request)
        return;
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
        s_reply (self, request_id ? request_id : "", "500", "malformed request", "");
    } else if (!streq (mechanism, "CURVE") || !credentials || zframe_size (credentials) != 32) {
        zf_counter_add (self->refused_mechanism, 1);
        zf_warning_limited (&limit, "bus",
                            "auth: refused connection address=%s mechanism=%s (CURVE required)",
                            address ? address : "?", mechanism);
        s_reply (self, request_id, "400", "CURVE required", "");
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
            s_reply (self, request_id, "400", "key revoked", "");
        } else if (own || open || member || cert) {
            zf_counter_add (self->accepted, 1);
            zf_debug ("bus", "auth: accepted key=%s address=%s", client_key,
                      address ? address : "?");
            s_reply (self, request_id, "200", "OK", client_key);
        } else {
            zf_counter_add (self->refused_key, 1);
            zf_warning_limited (&limit, "bus",
                                "auth: refused CURVE client key=%s address=%s: not in the "
                                "allow-list %s nor a member of the cluster",
                                client_key, address ? address : "?",
                                self->allow_dir ? self->allow_dir : "(none configured)");
            s_reply (self, request_id, "400", "key not allowed", "");
        }
    }
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

    self.handler = zsock_new (ZMQ_REP);
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
        void *which = zpoller_wait (poller, -1);
        if (which == self.handler)
            s_handle_request (&self);
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
    zcertstore_destroy (&self.allowed);
    zsock_destroy (&self.handler);
    zf_free (self.allow_dir);
    zf_free (self.own_key);
}
