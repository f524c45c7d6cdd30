/*  zf_bus.c — requests, replies and events for one actor. */
#include "zf_bus.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_monitor.h"
#include "zf_msgs.h"
#include "zf_sock.h"
#include "zf_tap.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#define TIMER_INTERVAL_MS 10 //  resolution of request deadlines and retries
//  ZMTP heartbeats on connections that leave the process: a peer whose I/O thread answers no
//  ping for HEARTBEAT_TIMEOUT_MS is disconnected, which is what tells a patient request that
//  the other side is gone rather than busy. Pings are answered by libzmq's I/O thread, not
//  by the actor, so a busy or CPU-starved actor stays connected.
#define HEARTBEAT_IVL_MS     2000
#define HEARTBEAT_TIMEOUT_MS 10000

typedef struct {
    zf_counter_t *sent;
    zf_counter_t *received;
    zf_counter_t *dropped;
} type_counters_t;

typedef struct {
    zf_bus_handler_fn *handler;
    void *arg;
} handler_entry_t;

//  A socket we connected to another actor: a DEALER for requests or a SUB for events.
typedef struct {
    zf_bus_t *bus;
    char *actor;           //  the other actor's name
    const char *label;     //  "dealer:echo", "sub:echo", "router", "pub" (tap and logs)
    bool local;            //  the other actor runs in this process (inproc://)
    bool up;               //  connected (handshake done); always for local links
    bool was_up;           //  has been connected before: a new connection is a reconnection
    int64_t up_changed_ms; //  when up last changed (or the link was made)
    zsock_t *sock;
    zsock_t *monitor;         //  PAIR, only for sockets that leave the process
    zlistx_t *event_handlers; //  SUB only: event_handler_t
    zf_route_t route;         //  where it is connected
    uint64_t routes_version;  //  the node's learned-routes version when last checked
} link_t;

typedef struct {
    char *prefix;
    zf_bus_event_fn *handler;
    void *arg;
} event_handler_t;

typedef struct {
    uint64_t id;
    link_t *link;
    zframe_t *envelope; //  kept to resend with the same id
    zmsg_t *raw;        //  kept to resend; NULL when there is none
    const zf_msg_desc_t *desc;
    int64_t attempt_deadline;
    int64_t final_deadline;
    int64_t attempt_ms;
    int64_t timeout_ms; //  patient: how long the peer may stay unreachable
    int64_t sent_ms;
    int attempts;
    int retries_left;
    bool patient;     //  waits while the link is up (zf_bus_call_t)
    bool no_deadline; //  to an actor of this process, with no explicit timeout
    zf_bus_reply_fn *callback;
    void *arg;
} pending_t;

struct zf_bus_s {
    zf_node_t *node;
    char *actor;
    char *address;      //  actor@node
    zsock_t *inbox;     //  ROUTER
    zsock_t *outlet;    //  PUB
    link_t inbox_link;  //  monitor of the inbox (label "router"), when bound outside inproc
    link_t outlet_link; //  monitor of the outlet (label "pub")
    zhashx_t *handlers; //  type -> handler_entry_t
    zhashx_t *links;    //  "dealer:NAME" / "sub:NAME" -> link_t
    zhashx_t *pending;  //  request id (hex) -> pending_t
    zhashx_t *counters; //  type -> type_counters_t
    uint64_t next_id;
    zloop_t *loop;
    int timer_id;
    zf_tap_t *tap;
    zf_counter_t *late_replies;
    zf_counter_t *timeouts;
};

static int s_inbox_ready (zloop_t *loop, zsock_t *reader, void *arg);
static int s_link_ready (zloop_t *loop, zsock_t *reader, void *arg);
static int s_monitor_ready (zloop_t *loop, zsock_t *reader, void *arg);
static int s_timer (zloop_t *loop, int timer_id, void *arg);

//  ---------------------------------------------------------------------------------------------
//  Counters, one set per message type, looked up once and then bumped without locks. The type
//  label only takes schema-defined types, so a flood of invented types cannot grow /metrics.

static type_counters_t *s_counters (zf_bus_t *self, const char *type)
{
    if (!type || !zf_schema_find (type, strlen (type)))
        type = "unknown";
    type_counters_t *counters = zhashx_lookup (self->counters, type);
    if (!counters) {
        counters = zf_calloc (1, sizeof *counters);
        counters->sent = zf_metrics_counter ("zfly_bus_messages_sent_total", "Bus messages sent",
                                             "actor", self->actor, "type", type, NULL);
        counters->received = zf_metrics_counter ("zfly_bus_messages_received_total",
                                                 "Bus messages received and decoded", "actor",
                                                 self->actor, "type", type, NULL);
        counters->dropped = zf_metrics_counter (
            "zfly_bus_messages_dropped_total",
            "Bus messages dropped at a high-water mark or for an unreachable peer", "actor",
            self->actor, "type", type, NULL);
        zhashx_insert (self->counters, type, counters);
    }
    return counters;
}

static void s_count_refused (zf_bus_t *self, const char *type, zf_status_t reason)
{
    if (!type || !zf_schema_find (type, strlen (type)))
        type = "unknown";
    //  Refusals are rare; a registry lookup each time keeps this simple.
    zf_counter_add (zf_metrics_counter ("zfly_bus_messages_refused_total",
                                        "Bus messages refused as malformed or unexpected", "actor",
                                        self->actor, "type", type, "reason",
                                        zf_status_name (reason), NULL),
                    1);
}

//  ---------------------------------------------------------------------------------------------
//  Construction

static void s_link_destroy (link_t **link_p)
{
    link_t *link = *link_p;
    if (!link)
        return;
    if (link->bus->loop) {
        zloop_reader_end (link->bus->loop, link->sock);
        if (link->monitor)
            zloop_reader_end (link->bus->loop, link->monitor);
    }
    zf_monitor_detach (link->sock, &link->monitor);
    zsock_destroy (&link->sock);
    zlistx_destroy (&link->event_handlers);
    zf_free (link->actor);
    zf_free ((char *) link->label);
    zf_free (link);
    *link_p = NULL;
}

static void s_pending_destroy (pending_t **pending_p)
{
    pending_t *pending = *pending_p;
    if (!pending)
        return;
    zframe_destroy (&pending->envelope);
    zmsg_destroy (&pending->raw);
    zf_free (pending);
    *pending_p = NULL;
}

static void s_event_handler_destroy (event_handler_t **handler_p)
{
    event_handler_t *handler = *handler_p;
    if (handler) {
        zf_free (handler->prefix);
        zf_free (handler);
        *handler_p = NULL;
    }
}

static zsock_t *s_socket_new (zf_bus_t *self, int type)
{
    zsock_t *sock = zsock_new (type);
    ZF_ASSERT (sock);
    int hwm = zf_node_options (self->node)->hwm;
    zsock_set_sndhwm (sock, hwm);
    zsock_set_rcvhwm (sock, hwm);
    zsock_set_linger (sock, 0);
    return sock;
}

static bool s_leaves_process (const char *endpoint)
{
    return endpoint && *endpoint && strncmp (endpoint, "inproc://", 9) != 0;
}

//  Binds every endpoint of a blank-separated list, e.g. an ipc:// one for clients on this
//  host and a tcp:// one (CURVE) for other nodes.
//  The first tcp:// endpoint of a blank-separated list ("" when none), for zf_node_advertise.
static void s_first_tcp (const char *endpoints, char *buffer, size_t size)
{
    *buffer = '\0';
    const char *found = strstr (endpoints, "tcp://");
    if (found)
        zf_strlcpy (buffer, found,
                    size < strcspn (found, " \t") + 1 ? size : strcspn (found, " \t") + 1);
}

static zf_status_t s_bind_all (zf_node_t *node, zsock_t *sock, const char *endpoints, bool open,
                               zf_error_t *err)
{
    //  Plain endpoints first: the CURVE options a tcp:// bind sets on the socket would also
    //  apply to every bind after it.
    zf_status_t status = ZF_OK;
    for (int pass = 0; pass < 2 && status == ZF_OK; pass++) {
        char *list = zf_strdup (endpoints);
        char *saveptr = NULL;
        for (char *endpoint = strtok_r (list, " \t", &saveptr); endpoint && status == ZF_OK;
             endpoint = strtok_r (NULL, " \t", &saveptr))
            if ((strncmp (endpoint, "tcp://", 6) == 0) == (pass == 1))
                status = open ? zf_node_bind_open (node, sock, endpoint, err)
                              : zf_node_bind (node, sock, endpoint, err);
        zf_free (list);
    }
    return status;
}

static zf_bus_t *s_new (zf_node_t *node, const char *actor, const char *bind,
                        const char *events_bind, bool open, zf_error_t *err)
{
    zf_bus_t *self = zf_calloc (1, sizeof *self);
    self->node = node;
    self->actor = zf_strdup (actor);
    self->address = zf_asprintf ("%s@%s", actor, zf_node_name (node));
    self->handlers = zhashx_new ();
    zhashx_set_destructor (self->handlers, (zhashx_destructor_fn *) zstr_free);
    self->links = zhashx_new ();
    zhashx_set_destructor (self->links, (zhashx_destructor_fn *) s_link_destroy);
    //  No destructor: entries leave the table before their callback runs (see s_unlink).
    self->pending = zhashx_new ();
    self->counters = zhashx_new ();
    zhashx_set_destructor (self->counters, (zhashx_destructor_fn *) zstr_free);
    //  Ids start at a random point so a restarted actor does not reuse its predecessor's ids
    //  while old replies may still be in flight.
    self->next_id = ((uint64_t) randof (0x7fffffff) << 20) + 1;
    self->tap = zf_tap_new (node, actor);
    self->late_replies = zf_metrics_counter ("zfly_bus_late_replies_total",
                                             "Replies that arrived after their request gave up",
                                             "actor", actor, NULL);
    self->timeouts = zf_metrics_counter ("zfly_bus_request_timeouts_total",
                                         "Requests that got no reply before their deadline",
                                         "actor", actor, NULL);

    self->inbox = s_socket_new (self, ZMQ_ROUTER);
    zsock_set_router_mandatory (self->inbox, 1); //  a reply to a vanished peer is an error
    self->outlet = s_socket_new (self, ZMQ_PUB);
    zf_status_t status =
        zf_node_bind (node, self->inbox, zf_node_inproc_endpoint (node, actor, false), err);
    if (status == ZF_OK)
        status =
            zf_node_bind (node, self->outlet, zf_node_inproc_endpoint (node, actor, true), err);
    self->inbox_link = (link_t){.bus = self, .label = "router"};
    self->outlet_link = (link_t){.bus = self, .label = "pub"};
    if (status == ZF_OK && bind && *bind) {
        self->inbox_link.monitor = zf_monitor_attach (self->inbox);
        status = s_bind_all (node, self->inbox, bind, open, err);
        if (status != ZF_OK)
            zf_error_prefix (err, "[%s] bind", actor);
    }
    if (status == ZF_OK && events_bind && *events_bind) {
        self->outlet_link.monitor = zf_monitor_attach (self->outlet);
        status = s_bind_all (node, self->outlet, events_bind, open, err);
        if (status != ZF_OK)
            zf_error_prefix (err, "[%s] events_bind", actor);
    }
    if (status != ZF_OK) {
        zf_bus_destroy (&self);
        return NULL;
    }
    //  What other nodes reach us at: the join actor tells the manager.
    char endpoint[ZF_ENDPOINT_MAX];
    s_first_tcp (bind ? bind : "", endpoint, sizeof endpoint);
    if (*endpoint)
        zf_node_advertise (node, actor, endpoint);
    s_first_tcp (events_bind ? events_bind : "", endpoint, sizeof endpoint);
    if (*endpoint) {
        char key[ZF_NAME_MAX + 8];
        snprintf (key, sizeof key, "%s.events", actor);
        zf_node_advertise (node, key, endpoint);
    }
    return self;
}

zf_bus_t *zf_bus_new (zf_node_t *node, const char *actor, const char *bind, const char *events_bind,
                      zf_error_t *err)
{
    return s_new (node, actor, bind, events_bind, false, err);
}

zf_bus_t *zf_bus_new_open (zf_node_t *node, const char *actor, const char *bind,
                           const char *events_bind, zf_error_t *err)
{
    return s_new (node, actor, bind, events_bind, true, err);
}

void zf_bus_destroy (zf_bus_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_bus_t *self = *self_p;
    if (!self)
        return;
    if (self->loop) {
        zloop_timer_end (self->loop, self->timer_id);
        zloop_reader_end (self->loop, self->inbox);
        if (self->inbox_link.monitor)
            zloop_reader_end (self->loop, self->inbox_link.monitor);
        if (self->outlet_link.monitor)
            zloop_reader_end (self->loop, self->outlet_link.monitor);
    }
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending))
        s_pending_destroy (&pending);
    zhashx_destroy (&self->pending);
    zhashx_destroy (&self->links);
    zhashx_destroy (&self->handlers);
    zhashx_destroy (&self->counters);
    zf_monitor_detach (self->inbox, &self->inbox_link.monitor);
    zf_monitor_detach (self->outlet, &self->outlet_link.monitor);
    zsock_destroy (&self->inbox);
    zsock_destroy (&self->outlet);
    zf_tap_destroy (&self->tap);
    zf_free (self->actor);
    zf_free (self->address);
    zf_free (self);
    *self_p = NULL;
}

static void s_link_attach (zf_bus_t *self, link_t *link)
{
    zloop_reader (self->loop, link->sock, s_link_ready, link);
    if (link->monitor)
        zloop_reader (self->loop, link->monitor, s_monitor_ready, link);
}

void zf_bus_attach (zf_bus_t *self, zloop_t *loop)
{
    ZF_ASSERT (!self->loop);
    self->loop = loop;
    zloop_reader (loop, self->inbox, s_inbox_ready, self);
    if (self->inbox_link.monitor)
        zloop_reader (loop, self->inbox_link.monitor, s_monitor_ready, &self->inbox_link);
    if (self->outlet_link.monitor)
        zloop_reader (loop, self->outlet_link.monitor, s_monitor_ready, &self->outlet_link);
    self->timer_id = zloop_timer (loop, TIMER_INTERVAL_MS, 0, s_timer, self);
    for (link_t *link = zhashx_first (self->links); link; link = zhashx_next (self->links))
        s_link_attach (self, link);
}

void zf_bus_handle (zf_bus_t *self, const char *type, zf_bus_handler_fn *handler, void *arg)
{
    ZF_ASSERT (zf_schema_find (type, strlen (type))); //  handlers exist only for schema types
    handler_entry_t *entry = zf_calloc (1, sizeof *entry);
    entry->handler = handler;
    entry->arg = arg;
    zhashx_update (self->handlers, type, entry);
}

const char *zf_bus_actor (zf_bus_t *self)
{
    return self->actor;
}

const char *zf_bus_address (zf_bus_t *self)
{
    return self->address;
}

size_t zf_bus_pending (zf_bus_t *self)
{
    return zhashx_size (self->pending);
}

//  ---------------------------------------------------------------------------------------------
//  Links to other actors

//  A learned route may have moved since the link connected (a scheduler restarted elsewhere,
//  a parent with a new key): connect the same socket to the new place, so requests in flight
//  keep their socket and their replies.
static void s_link_follow (zf_bus_t *self, link_t *link, bool events)
{
    uint64_t version = zf_node_routes_version (self->node);
    if (link->local || link->routes_version == version)
        return;
    link->routes_version = version;
    zf_route_t route;
    if (zf_node_resolve (self->node, link->actor, &route, NULL) != ZF_OK
        || (streq (route.endpoint, link->route.endpoint) && streq (route.events, link->route.events)
            && streq (route.server_key, link->route.server_key)))
        return;
    const char *old = events ? link->route.events : link->route.endpoint;
    if (*old)
        zsock_disconnect (link->sock, "%s", old);
    zf_error_t err;
    if (zf_node_connect (self->node, link->sock, &route, events, &err) != ZF_OK)
        zf_warning ("bus", "%s: cannot follow %s to its new route: %s", self->actor, link->actor,
                    err.message);
    else
        zf_info ("bus", "%s: %s moved to %s", self->actor, link->actor,
                 events ? route.events : route.endpoint);
    link->route = route;
}

static link_t *s_link_get (zf_bus_t *self, const char *actor, bool events, zf_error_t *err)
{
    char key[ZF_NAME_MAX + 16];
    snprintf (key, sizeof key, "%s:%s", events ? "sub" : "dealer", actor);
    link_t *link = zhashx_lookup (self->links, key);
    if (link) {
        s_link_follow (self, link, events);
        return link;
    }
    uint64_t routes_version = zf_node_routes_version (self->node);
    zf_route_t route;
    if (zf_node_resolve (self->node, actor, &route, err) != ZF_OK)
        return NULL;
    link = zf_calloc (1, sizeof *link);
    link->bus = self;
    link->actor = zf_strdup (actor);
    link->label = zf_strdup (key);
    link->local = route.local;
    link->route = route;
    link->routes_version = routes_version;
    link->up = route.local;
    link->up_changed_ms = zf_clock_mono_ms ();
    link->sock = s_socket_new (self, events ? ZMQ_SUB : ZMQ_DEALER);
    if (s_leaves_process (events ? route.events : route.endpoint)) {
        link->monitor = zf_monitor_attach (link->sock);
        if (!events) {
            zsock_set_heartbeat_ivl (link->sock, HEARTBEAT_IVL_MS);
            zsock_set_heartbeat_timeout (link->sock, HEARTBEAT_TIMEOUT_MS);
        }
    } else
        link->up = true; //  inproc: no connection to wait for
    if (events) {
        link->event_handlers = zlistx_new ();
        zlistx_set_destructor (link->event_handlers,
                               (zlistx_destructor_fn *) s_event_handler_destroy);
    }
    if (zf_node_connect (self->node, link->sock, &route, events, err) != ZF_OK) {
        s_link_destroy (&link);
        return NULL;
    }
    zhashx_insert (self->links, key, link);
    if (self->loop)
        s_link_attach (self, link);
    return link;
}

//  ---------------------------------------------------------------------------------------------
//  Sending

static uint64_t s_take_id (zf_bus_t *self)
{
    uint64_t id = self->next_id++;
    if (self->next_id == 0)
        self->next_id = 1;
    return id;
}

//  Sends envelope (+ a copy of raw, when given) on sock; routing frame first for a ROUTER.
//  raw frames are moved into the message when take_raw (raw is left empty: bulk bytes are
//  never copied on their way out), copied otherwise (a request kept for resending).
static zf_status_t s_send (zf_bus_t *self, zsock_t *sock, const char *socket_label,
                           const zf_bus_return_t *ret, const char *type, zframe_t *envelope,
                           zmsg_t *raw, bool take_raw)
{
    zf_tap_message (self->tap, "out", socket_label, type, envelope, raw, NULL);
    zmsg_t *msg = zmsg_new ();
    if (ret)
        zmsg_addmem (msg, ret->routing_id, ret->routing_id_size);
    else if (sock == self->outlet)
        zmsg_addstr (msg, type); //  the topic, so subscribers filter by type prefix
    zmsg_append (msg, &(zframe_t *){zframe_dup (envelope)});
    if (raw && take_raw) {
        zframe_t *frame;
        while ((frame = zmsg_pop (raw)))
            zmsg_append (msg, &frame);
    } else if (raw)
        for (zframe_t *frame = zmsg_first (raw); frame; frame = zmsg_next (raw))
            zmsg_append (msg, &(zframe_t *){zframe_dup (frame)});
    type_counters_t *counters = s_counters (self, type);
    zf_status_t status = zf_sock_send_nowait (sock, &msg);
    zf_counter_add (status == ZF_OK ? counters->sent : counters->dropped, 1);
    return status;
}

zf_status_t zf_bus_request (zf_bus_t *self, const char *to, const zf_msg_desc_t *desc,
                            const void *body, zmsg_t **raw, zf_bus_call_t call,
                            zf_bus_reply_fn *callback, void *arg, zf_error_t *err)
{
    ZF_ASSERT (callback);
    zmsg_t *raw_msg = raw ? *raw : NULL;
    if (raw)
        *raw = NULL;
    zf_status_t status = ZF_OK;
    link_t *link = s_link_get (self, to, false, err);
    uint64_t id = s_take_id (self);
    zframe_t *envelope =
        link ? zf_envelope_encode (desc, id, 0, self->address, to, body, err) : NULL;
    const zf_node_options_t *options = zf_node_options (self->node);
    int retries = call.retries >= 0 ? call.retries : options->request_retries;
    //  inproc:// loses nothing (a full queue fails the send at once), so resending to an actor
    //  of this process would only make it do the work twice.
    if (link && link->local)
        retries = 0;
    if (!link)
        status = ZF_E_UNREACHABLE;
    else if (!envelope)
        status = err ? err->code : ZF_E_INVALID;
    else {
        bool keep_raw = retries > 0 || (call.patient && !link->local);
        status =
            s_send (self, link->sock, link->label, NULL, desc->type, envelope, raw_msg, !keep_raw);
        if (status != ZF_OK)
            zf_error_set (err, status, to,
                          status == ZF_E_OVERLOAD ? "queue to '%s' is full (high-water mark)"
                                                  : "cannot send to '%s'",
                          to);
    }
    if (status != ZF_OK) {
        zframe_destroy (&envelope);
        zmsg_destroy (&raw_msg);
        return status;
    }
    int64_t timeout = call.timeout_ms > 0 ? call.timeout_ms : options->request_timeout_ms;
    bool patient = call.patient && !link->local;
    if (patient)
        retries = 0; //  resent on reconnection instead
    pending_t *pending = zf_calloc (1, sizeof *pending);
    pending->id = id;
    pending->link = link;
    pending->envelope = envelope;
    //  A patient request keeps its frames to send them again after a reconnection.
    pending->raw = retries > 0 || patient ? raw_msg : NULL;
    if (!pending->raw)
        zmsg_destroy (&raw_msg);
    pending->desc = desc;
    pending->attempt_ms = timeout / (retries + 1);
    if (pending->attempt_ms < 1)
        pending->attempt_ms = 1;
    int64_t now = zf_clock_mono_ms ();
    pending->sent_ms = now;
    pending->timeout_ms = timeout;
    pending->patient = patient;
    pending->no_deadline = link->local && (call.timeout_ms <= 0 || call.patient);
    pending->attempt_deadline = now + pending->attempt_ms;
    pending->final_deadline = now + timeout;
    pending->attempts = 1;
    pending->retries_left = retries;
    pending->callback = callback;
    pending->arg = arg;
    char key[17];
    snprintf (key, sizeof key, "%016" PRIx64, id);
    zhashx_insert (self->pending, key, pending);
    return ZF_OK;
}

zf_status_t zf_bus_send (zf_bus_t *self, const char *to, const zf_msg_desc_t *desc,
                         const void *body, zmsg_t **raw, zf_error_t *err)
{
    zmsg_t *raw_msg = raw ? *raw : NULL;
    if (raw)
        *raw = NULL;
    link_t *link = s_link_get (self, to, false, err);
    zframe_t *envelope =
        link ? zf_envelope_encode (desc, s_take_id (self), 0, self->address, to, body, err) : NULL;
    zf_status_t status = !link       ? ZF_E_UNREACHABLE
                         : !envelope ? (err ? err->code : ZF_E_INVALID)
                                     : ZF_OK;
    if (status == ZF_OK) {
        status = s_send (self, link->sock, link->label, NULL, desc->type, envelope, raw_msg, true);
        if (status != ZF_OK)
            zf_error_set (err, status, to, "cannot send to '%s': %s", to, zf_status_name (status));
    }
    zframe_destroy (&envelope);
    zmsg_destroy (&raw_msg);
    return status;
}

void zf_bus_return_of (const zf_bus_msg_t *request, zf_bus_return_t *ret)
{
    *ret = request->return_to;
}

zf_status_t zf_bus_reply (zf_bus_t *self, const zf_bus_return_t *ret, const zf_msg_desc_t *desc,
                          const void *body, zmsg_t **raw)
{
    zmsg_t *raw_msg = raw ? *raw : NULL;
    if (raw)
        *raw = NULL;
    zf_error_t err;
    zframe_t *envelope =
        zf_envelope_encode (desc, s_take_id (self), ret->id, self->address, ret->from, body, &err);
    zf_status_t status = ZF_OK;
    if (!envelope) {
        //  Our own reply failed validation: a bug in this actor, but the requester still
        //  deserves an answer rather than a timeout.
        zf_error_log ("bus", "%s: invalid %s reply to %s: %s: %s", self->actor, desc->type,
                      ret->from, err.where, err.message);
        zmsg_destroy (&raw_msg);
        return zf_bus_reply_error (self, ret, ZF_E_INTERNAL, err.where, "invalid reply: %s",
                                   err.message);
    }
    status = s_send (self, self->inbox, "router", ret, desc->type, envelope, raw_msg, true);
    if (status != ZF_OK) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 10000);
        zf_warning_limited (&limit, "bus", "%s: reply %s to %s dropped: %s", self->actor,
                            desc->type, ret->from,
                            status == ZF_E_OVERLOAD ? "peer gone or its queue is full"
                                                    : zmq_strerror (zmq_errno ()));
    }
    zframe_destroy (&envelope);
    zmsg_destroy (&raw_msg);
    return status;
}

//  The shared body of the error replies: a message in words, a declared code for programs.
static zf_status_t s_reply_error_text (zf_bus_t *self, const zf_bus_return_t *ret, zf_code_t code,
                                       const char *field, const char *message)
{
    ZF_ASSERT (code != ZF_CODE_NONE);
    zf_msg_error_t body = {
        .code = (char *) zf_code_name (code),
        .message = (char *) message,
        .field = (char *) (field ? field : ""),
    };
    char field_copy[161];
    if (strlen (body.field) > 160) { //  keep the reply valid even for absurd field paths
        zf_strlcpy (field_copy, body.field, sizeof field_copy);
        body.field = field_copy;
    }
    zf_error_t err;
    zframe_t *envelope = zf_envelope_encode (&zf_msg_error, s_take_id (self), ret->id,
                                             self->address, ret->from, &body, &err);
    ZF_ASSERT (envelope); //  bounded above, so it always encodes
    zf_status_t status = s_send (self, self->inbox, "router", ret, "error", envelope, NULL, false);
    zframe_destroy (&envelope);
    return status;
}

static zf_status_t s_reply_error_va (zf_bus_t *self, const zf_bus_return_t *ret, zf_code_t code,
                                     const char *field, const char *fmt, va_list args)
    __attribute__ ((format (printf, 5, 0)));

static zf_status_t s_reply_error_va (zf_bus_t *self, const zf_bus_return_t *ret, zf_code_t code,
                                     const char *field, const char *fmt, va_list args)
{
    char message[1024];
    vsnprintf (message, sizeof message, fmt, args);
    return s_reply_error_text (self, ret, code, field, message);
}

zf_status_t zf_bus_reply_error (zf_bus_t *self, const zf_bus_return_t *ret, zf_status_t code,
                                const char *field, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    zf_status_t status =
        s_reply_error_va (self, ret, zf_code_of (zf_status_name (code)), field, fmt, args);
    va_end (args);
    return status;
}

zf_status_t zf_bus_reply_code (zf_bus_t *self, const zf_bus_return_t *ret, zf_code_t code,
                               const char *field, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    zf_status_t status = s_reply_error_va (self, ret, code, field, fmt, args);
    va_end (args);
    return status;
}

zf_status_t zf_bus_reply_error_code (zf_bus_t *self, const zf_bus_return_t *ret, const char *code,
                                     const char *field, const char *fmt, ...)
{
    ZF_ASSERT (code && zf_schema_enum_find (&zf_enum_code, code, strlen (code)) > 0);
    va_list args;
    va_start (args, fmt);
    zf_status_t status = s_reply_error_va (self, ret, zf_code_of (code), field, fmt, args);
    va_end (args);
    return status;
}

zf_code_t zf_bus_error_code (zf_status_t status, const zf_bus_msg_t *reply)
{
    if (status != ZF_E_REMOTE || !reply || reply->env.desc != &zf_msg_error)
        return ZF_CODE_NONE;
    const zf_msg_error_t *body = reply->env.body;
    return zf_code_of (body->code);
}

zf_status_t zf_bus_publish (zf_bus_t *self, const zf_msg_desc_t *desc, const void *body)
{
    zf_error_t err;
    zframe_t *envelope =
        zf_envelope_encode (desc, s_take_id (self), 0, self->address, NULL, body, &err);
    if (!envelope) {
        zf_error_log ("bus", "%s: invalid %s event: %s: %s", self->actor, desc->type, err.where,
                      err.message);
        return err.code;
    }
    zf_status_t status =
        s_send (self, self->outlet, "pub", NULL, desc->type, envelope, NULL, false);
    zframe_destroy (&envelope);
    return status;
}

zf_status_t zf_bus_subscribe (zf_bus_t *self, const char *actor, const char *type_prefix,
                              zf_bus_event_fn *handler, void *arg, zf_error_t *err)
{
    link_t *link = s_link_get (self, actor, true, err);
    if (!link)
        return err ? err->code : ZF_E_UNREACHABLE;
    event_handler_t *entry = zf_calloc (1, sizeof *entry);
    entry->prefix = zf_strdup (type_prefix ? type_prefix : "");
    entry->handler = handler;
    entry->arg = arg;
    zlistx_add_end (link->event_handlers, entry);
    zsock_set_subscribe (link->sock, entry->prefix);
    return ZF_OK;
}

//  ---------------------------------------------------------------------------------------------
//  Receiving

//  libzmq attaches connection metadata to received frames: no "Peer-Address" over inproc,
//  "localhost:…" (the peer's credentials) over ipc, the peer's IP over tcp, and "User-Id" set
//  by our ZAP handler to the CURVE key it accepted.
static void s_read_origin (zframe_t *envelope, zf_bus_msg_t *msg)
{
    const char *address = zframe_meta (envelope, "Peer-Address");
    if (!address)
        msg->origin = ZF_BUS_FROM_PROCESS;
    else if (strncmp (address, "localhost:", 10) == 0)
        msg->origin = ZF_BUS_FROM_HOST;
    else
        msg->origin = ZF_BUS_FROM_NETWORK;
    const char *user = zframe_meta (envelope, "User-Id");
    zf_strlcpy (msg->peer_key, user ? user : "", sizeof msg->peer_key);
    zf_strlcpy (msg->peer_address, msg->origin == ZF_BUS_FROM_NETWORK ? address : "",
                sizeof msg->peer_address);
}

//  Decodes the envelope frame of an incoming message; refusals are counted, logged and
//  mirrored here so every socket treats bad input the same way.
static zf_status_t s_decode (zf_bus_t *self, const char *socket_label, zframe_t *envelope,
                             zmsg_t *raw, zf_bus_msg_t *msg, zf_error_t *err)
{
    memset (msg, 0, sizeof *msg);
    zf_status_t status;
    if (!envelope)
        status = zf_error_set (err, ZF_E_TRUNCATED, "envelope", "message has no envelope frame");
    else
        status =
            zf_envelope_decode (zframe_data (envelope), zframe_size (envelope), &msg->env, err);
    zf_tap_message (self->tap, "in", socket_label, msg->env.type, envelope, raw,
                    status == ZF_OK ? NULL : zf_status_name (status));
    if (status != ZF_OK) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 10000);
        s_count_refused (self, msg->env.type, status);
        zf_warning_limited (&limit, "bus", "%s: refused message on %s: %s type=%s from=%s: %s: %s",
                            self->actor, socket_label, zf_status_name (status),
                            *msg->env.type ? msg->env.type : "?",
                            *msg->env.from ? msg->env.from : "?", err->where, err->message);
        return status;
    }
    zf_counter_add (s_counters (self, msg->env.type)->received, 1);
    msg->raw = raw;
    s_read_origin (envelope, msg);
    return ZF_OK;
}

static int s_inbox_ready (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    zf_bus_t *self = arg;
    zmsg_t *incoming = zmsg_recv (reader);
    if (!incoming)
        return 0;
    zframe_t *routing = zmsg_pop (incoming);
    zframe_t *envelope = zmsg_pop (incoming);
    zf_bus_msg_t msg;
    zf_error_t err;
    zf_status_t status = s_decode (self, "router", envelope, incoming, &msg, &err);
    if (status == ZF_OK)
        incoming = NULL; //  now msg.raw: a handler may take it (zf_bus_reply (…, &msg->raw))

    zf_bus_return_t *ret = &msg.return_to;
    ret->routing_id_size = zframe_size (routing);
    ZF_ASSERT (ret->routing_id_size <= sizeof ret->routing_id); //  libzmq caps it at 255
    memcpy (ret->routing_id, zframe_data (routing), ret->routing_id_size);
    ret->id = msg.env.id;
    zf_strlcpy (ret->from, msg.env.from, sizeof ret->from);

    if (status != ZF_OK) {
        //  Answer when we know whom and what: the sender then fails fast with the reason.
        if (ret->id && *ret->from)
            zf_bus_reply_error (self, ret, status, err.where, "%s", err.message);
    } else if (msg.origin == ZF_BUS_FROM_NETWORK && *msg.peer_key
               && zf_node_is_revoked (self->node, msg.peer_key)) {
        //  The manager revoked this key after its connection was made: the handshake passed
        //  then, its messages do not now.
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 10000);
        s_count_refused (self, msg.env.type, ZF_E_REFUSED);
        zf_warning_limited (&limit, "bus", "%s: refused %s from revoked key=%s", self->actor,
                            msg.env.type, msg.peer_key);
        zf_bus_reply_error (self, ret, ZF_E_REFUSED, "key", "key %s was revoked by the manager",
                            msg.peer_key);
    } else if (msg.env.re) {
        s_count_refused (self, msg.env.type, ZF_E_INVALID);
        zf_bus_reply_error (self, ret, ZF_E_INVALID, "re", "%s received a reply (%s) on its inbox",
                            self->actor, msg.env.type);
    } else {
        handler_entry_t *entry = zhashx_lookup (self->handlers, msg.env.type);
        if (entry)
            entry->handler (self, &msg, entry->arg);
        else {
            s_count_refused (self, msg.env.type, ZF_E_UNKNOWN_TYPE);
            zf_bus_reply_error (self, ret, ZF_E_UNKNOWN_TYPE, "type",
                                "actor '%s' does not handle '%s'", self->actor, msg.env.type);
        }
    }
    zf_envelope_clear (&msg.env);
    zmsg_destroy (&msg.raw);
    zframe_destroy (&routing);
    zframe_destroy (&envelope);
    zmsg_destroy (&incoming);
    return 0;
}

static void s_deliver_reply (zf_bus_t *self, zf_bus_msg_t *msg)
{
    char key[17];
    snprintf (key, sizeof key, "%016" PRIx64, msg->env.re);
    pending_t *pending = zhashx_lookup (self->pending, key);
    if (!pending) {
        zf_counter_add (self->late_replies, 1);
        zf_debug ("bus", "%s: late or unknown reply %s re=%" PRIu64 " from %s", self->actor,
                  msg->env.type, msg->env.re, msg->env.from);
        return;
    }
    //  Unlink first: the callback may send new requests, or destroy state it owns.
    zhashx_delete (self->pending, key);
    if (streq (msg->env.type, "error")) {
        const zf_msg_error_t *body = msg->env.body;
        zf_error_t err;
        zf_error_set (&err, ZF_E_REMOTE, *body->field ? body->field : msg->env.from, "%s: %s (%s)",
                      msg->env.from, body->message, body->code);
        pending->callback (self, ZF_E_REMOTE, msg, &err, pending->arg);
    } else
        pending->callback (self, ZF_OK, msg, NULL, pending->arg);
    s_pending_destroy (&pending);
}

static void s_deliver_event (link_t *link, zf_bus_msg_t *msg)
{
    for (event_handler_t *entry = zlistx_first (link->event_handlers); entry;
         entry = zlistx_next (link->event_handlers))
        if (strncmp (msg->env.type, entry->prefix, strlen (entry->prefix)) == 0)
            entry->handler (link->bus, msg, entry->arg);
}

static int s_link_ready (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    link_t *link = arg;
    zf_bus_t *self = link->bus;
    zmsg_t *incoming = zmsg_recv (reader);
    if (!incoming)
        return 0;
    if (link->event_handlers)
        zframe_destroy (&(zframe_t *){zmsg_pop (incoming)}); //  the topic
    zframe_t *envelope = zmsg_pop (incoming);
    zf_bus_msg_t msg;
    zf_error_t err;
    if (s_decode (self, link->label, envelope, incoming, &msg, &err) == ZF_OK) {
        incoming = NULL; //  now msg.raw
        if (link->event_handlers)
            s_deliver_event (link, &msg);
        else if (msg.env.re)
            s_deliver_reply (self, &msg);
        else
            s_count_refused (self, msg.env.type, ZF_E_INVALID); //  a request on a DEALER
    }
    zf_envelope_clear (&msg.env);
    zmsg_destroy (&msg.raw);
    zframe_destroy (&envelope);
    zmsg_destroy (&incoming);
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  Deadlines and retries

//  A patient request expires after its peer was unreachable for its timeout. When the link has
//  never been up, this node could not reach the peer at all (ZF_E_UNREACHABLE), which callers
//  treat as their own problem (a parent one child cannot reach is not a bad parent for
//  everyone); a peer that was connected and went away timed out like any other (ZF_E_TIMEOUT).
static void s_expire (zf_bus_t *self, pending_t *pending)
{
    zf_error_t err;
    zf_status_t status =
        pending->patient && !pending->link->was_up ? ZF_E_UNREACHABLE : ZF_E_TIMEOUT;
    if (pending->patient)
        zf_error_set (&err, status, pending->link->actor,
                      "no connection to '%s' for %s within %" PRId64 " ms", pending->link->actor,
                      pending->desc->type, pending->timeout_ms);
    else
        zf_error_set (&err, ZF_E_TIMEOUT, pending->link->actor,
                      "no reply from '%s' to %s within %" PRId64 " ms (%d attempt%s)",
                      pending->link->actor, pending->desc->type,
                      pending->attempt_ms * pending->attempts, pending->attempts,
                      pending->attempts == 1 ? "" : "s");
    zf_counter_add (self->timeouts, 1);
    pending->callback (self, status, NULL, &err, pending->arg);
}

//  A patient request gives up only when its peer has been unreachable for its timeout: not
//  connected since it was sent, or since the connection dropped.
static bool s_patient_expired (pending_t *pending, int64_t now)
{
    link_t *link = pending->link;
    if (link->up)
        return false;
    int64_t since = link->up_changed_ms > pending->sent_ms ? link->up_changed_ms : pending->sent_ms;
    return now - since >= pending->timeout_ms;
}

static void s_resend (zf_bus_t *self, pending_t *pending)
{
    s_send (self, pending->link->sock, pending->link->label, NULL, pending->desc->type,
            pending->envelope, pending->raw, false);
}

static int s_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_bus_t *self = arg;
    if (zhashx_size (self->pending) == 0)
        return 0;
    int64_t now = zf_clock_mono_ms ();
    //  Collect first: callbacks may add, complete or forget requests while we walk.
    zlistx_t *expired = zlistx_new ();
    zlistx_set_destructor (expired, (zlistx_destructor_fn *) zstr_free);
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending)) {
        if (pending->no_deadline)
            continue;
        if (pending->patient) {
            if (s_patient_expired (pending, now))
                zlistx_add_end (expired, zf_strdup (zhashx_cursor (self->pending)));
        } else if (now >= pending->final_deadline
                   || (now >= pending->attempt_deadline && pending->retries_left == 0))
            zlistx_add_end (expired, zf_strdup (zhashx_cursor (self->pending)));
        else if (now >= pending->attempt_deadline) {
            pending->retries_left--;
            pending->attempts++;
            pending->attempt_deadline = now + pending->attempt_ms;
            s_resend (self, pending);
        }
    }
    for (const char *key = zlistx_first (expired); key; key = zlistx_next (expired)) {
        //  An earlier callback of this round may have completed or forgotten this one.
        pending_t *pending = zhashx_lookup (self->pending, key);
        if (!pending)
            continue;
        zhashx_delete (self->pending, key);
        s_expire (self, pending);
        s_pending_destroy (&pending);
    }
    zlistx_destroy (&expired);
    return 0;
}

size_t zf_bus_forget (zf_bus_t *self, const void *arg)
{
    zlistx_t *keys = zlistx_new ();
    zlistx_set_destructor (keys, (zlistx_destructor_fn *) zstr_free);
    for (pending_t *pending = zhashx_first (self->pending); pending;
         pending = zhashx_next (self->pending))
        if (pending->arg == arg)
            zlistx_add_end (keys, zf_strdup (zhashx_cursor (self->pending)));
    size_t count = zlistx_size (keys);
    for (const char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        pending_t *pending = zhashx_lookup (self->pending, key);
        zhashx_delete (self->pending, key);
        s_pending_destroy (&pending);
    }
    zlistx_destroy (&keys);
    return count;
}

//  A link's connection came up or went down. Patient requests on a link that comes up again
//  are sent again: whatever was in flight on the old connection may be lost.
static void s_link_up (zf_bus_t *self, link_t *link, bool up)
{
    if (link->up == up)
        return;
    link->up = up;
    link->up_changed_ms = zf_clock_mono_ms ();
    if (!up)
        return;
    if (link->was_up)
        for (pending_t *pending = zhashx_first (self->pending); pending;
             pending = zhashx_next (self->pending))
            if (pending->link == link && pending->patient)
                s_resend (self, pending);
    link->was_up = true;
}

//  ---------------------------------------------------------------------------------------------
//  Socket events

//  A new TCP connection (the monitor names its descriptor) gets the node's congestion control.
//  The descriptor belongs to libzmq's I/O thread; setting an option on it from here is safe, and
//  should it have been closed and reused meanwhile the worst is another socket paced by BBR.
static void s_tune_tcp (zf_bus_t *self, int fd)
{
    const char *congestion = zf_node_options (self->node)->congestion;
    static bool warned = false;
    if (!congestion || !*congestion || fd < 0)
        return;
    if (setsockopt (fd, IPPROTO_TCP, TCP_CONGESTION, congestion, (socklen_t) strlen (congestion))
            != 0
        && errno != EBADF && errno != ENOTSOCK && !warned) {
        warned = true; //  the same for every connection: said once
        zf_warning (
            "bus",
            "%s: TCP congestion control '%s' not available (%s): using the "
            "system's ([bus] congestion; see sysctl net.ipv4.tcp_allowed_congestion_control)",
            self->actor, congestion, strerror (errno));
    }
}

static int s_monitor_ready (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    link_t *link = arg;
    zf_bus_t *self = link->bus;
    zf_monitor_event_t event;
    if (!zf_monitor_read (reader, &event))
        return 0;
    const char *name = zf_monitor_event_name (event.event);
    zf_tap_socket_event (self->tap, link->label, name, event.endpoint, event.value);
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 10000);
    switch (event.event) {
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        zf_counter_add (zf_metrics_counter ("zfly_bus_handshake_failures_total",
                                            "Bus connections whose handshake failed", "actor",
                                            self->actor, "event", name, NULL),
                        1);
        zf_warning_limited (&limit, "bus", "%s: %s on %s %s (status %" PRId64 ")%s", self->actor,
                            name, link->label, event.endpoint, event.value,
                            event.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                                ? ": the other side refused our key; add our public key to "
                                  "its allow-list"
                                : "");
        break;
    case ZMQ_EVENT_DISCONNECTED:
        zf_info ("bus", "%s: disconnected %s %s", self->actor, link->label, event.endpoint);
        if (link->actor)
            s_link_up (self, link, false);
        break;
    case ZMQ_EVENT_CONNECTED:
    case ZMQ_EVENT_ACCEPTED:
        if (strncmp (event.endpoint, "tcp://", 6) == 0)
            s_tune_tcp (self, (int) event.value);
        zf_debug ("bus", "%s: %s %s %s", self->actor, name, link->label, event.endpoint);
        break;
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        if (link->actor)
            s_link_up (self, link, true);
        zf_debug ("bus", "%s: %s %s %s", self->actor, name, link->label, event.endpoint);
        break;
    default: zf_debug ("bus", "%s: %s %s %s", self->actor, name, link->label, event.endpoint);
    }
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  Selftest: two actors' buses on one loop, over inproc. Shows requests, replies, error
//  replies, events, unknown types, timeouts with retries, late replies and high-water drops.

typedef struct {
    int replies, remote_errors, timeouts, events, overloads;
    char last_error[512];
    zf_code_t last_code; //  zf_bus_error_code of the last answer
    bool hold_replies;   //  the server keeps requests unanswered (for timeouts / late replies)
    zf_bus_return_t held;
    bool has_held;
} s_test_state_t;

static void s_test_serve (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    s_test_state_t *state = arg;
    const zf_msg_echo_request_t *body = request->env.body;
    if (state->hold_replies) {
        state->held = request->return_to;
        state->has_held = true;
        return;
    }
    if (body->fail && streq (body->text, "busy"))
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_BUSY, NULL, "asked to be busy");
    else if (body->fail && streq (body->text, "not_found"))
        zf_bus_reply_error_code (bus, &request->return_to, "not_found", "text", "the old form");
    else if (body->fail)
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "fail", "asked to fail");
    else {
        zf_msg_echo_reply_t reply = {.seq = body->seq, .text = body->text, .served_by = "server"};
        zf_bus_reply (bus, &request->return_to, &zf_msg_echo_reply, &reply, &request->raw);
        zf_msg_echo_seen_t seen = {.seq = body->seq, .ok = true};
        zf_bus_publish (bus, &zf_msg_echo_seen, &seen);
    }
}

static void s_test_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    s_test_state_t *state = arg;
    state->last_code = zf_bus_error_code (status, reply);
    if (status == ZF_OK) {
        state->replies++;
        ZF_ASSERT (zmsg_size (reply->raw) == 1); //  the raw frame came back with the reply
    } else if (status == ZF_E_REMOTE) {
        state->remote_errors++;
        zf_strlcpy (state->last_error, err->message, sizeof state->last_error);
    } else if (status == ZF_E_TIMEOUT || status == ZF_E_UNREACHABLE) {
        state->timeouts++;
        zf_strlcpy (state->last_error, err->message, sizeof state->last_error);
    }
}

static void s_test_on_event (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    (void) event;
    ((s_test_state_t *) arg)->events++;
}

//  Runs the loop until the condition holds (checked every 5 ms) or 5 s pass (a failure).
typedef bool (s_test_condition_fn) (s_test_state_t *state);
typedef struct {
    s_test_condition_fn *condition;
    s_test_state_t *state;
    int64_t deadline;
} s_test_wait_t;

static int s_test_check (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_test_wait_t *wait = arg;
    ZF_ASSERT (zf_clock_mono_ms () < wait->deadline);
    return wait->condition (wait->state) ? -1 : 0;
}

static void s_test_run_until (zloop_t *loop, s_test_state_t *state, s_test_condition_fn *condition)
{
    s_test_wait_t wait = {condition, state, zf_clock_mono_ms () + 5000};
    int timer = zloop_timer (loop, 5, 0, s_test_check, &wait);
    zloop_start (loop);
    zloop_timer_end (loop, timer);
}

static bool s_test_four_answers (s_test_state_t *state)
{
    return state->replies + state->remote_errors == 4 && state->events >= 3;
}

static bool s_test_one_timeout (s_test_state_t *state)
{
    return state->timeouts == 1;
}

static bool s_test_one_reply (s_test_state_t *state)
{
    return state->replies == 1;
}

static bool s_test_one_error (s_test_state_t *state)
{
    return state->remote_errors == 1;
}

static int s_test_stop_after (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

static void s_test_run_for (zloop_t *loop, size_t ms)
{
    zloop_timer (loop, ms, 1, s_test_stop_after, NULL);
    zloop_start (loop);
}

//  Two requests that expire in the same timer round, each callback forgetting the other: the
//  timer must not look the forgotten one up again (it crashed on a NULL pending).
typedef struct {
    zf_bus_t *bus;
    void *other;
    int *timeouts;
} s_test_forget_t;

static void s_test_on_forget (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err, void *arg)
{
    (void) reply;
    (void) err;
    s_test_forget_t *self = arg;
    ZF_ASSERT (status == ZF_E_TIMEOUT);
    (*self->timeouts)++;
    zf_bus_forget (bus, self->other);
}

//  Patient requests over ipc:// to a server that holds them: no deadline while connected, sent
//  again after the server came back on the same endpoint, "no connection" when nobody listens.
static void s_test_patient (zf_node_t *node, zloop_t *loop, zf_bus_t *client,
                            const char *ipc_endpoint, s_test_state_t *state)
{
    zf_error_t err;
    //  Actor names of their own: an inproc:// name is free again only once libzmq's reaper has
    //  closed the old socket, which happens a moment after zf_bus_destroy.
    zf_bus_t *server = zf_bus_new (node, "server2", ipc_endpoint, NULL, &err);
    ZF_ASSERT (server);
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_serve, state);
    zf_bus_attach (server, loop);
    state->hold_replies = true;
    state->has_held = false;
    state->replies = state->timeouts = 0;
    //  Long enough for the reconnection to the new server (libzmq retries every 100 ms).
    zf_bus_call_t patient = {.timeout_ms = 500, .patient = true};
    zf_msg_echo_request_t request = {.seq = 20, .text = "patient"};
    zmsg_t *raw = zmsg_new (); //  kept, and sent again with the request
    zmsg_addstr (raw, "bulk bytes");
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &request, &raw, patient,
                               s_test_on_reply, state, &err)
               == ZF_OK);
    s_test_run_for (loop, 1200); //  more than twice its timeout, connected all along
    ZF_ASSERT (state->timeouts == 0 && state->has_held);
    //  The server restarts: what it held is lost, the request reaches the new one.
    zf_bus_destroy (&server);
    state->has_held = false;
    server = zf_bus_new (node, "server3", ipc_endpoint, NULL, &err);
    ZF_ASSERT (server);
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_serve, state);
    zf_bus_attach (server, loop);
    state->hold_replies = false;
    s_test_run_until (loop, state, s_test_one_reply);
    ZF_ASSERT (state->timeouts == 0 && zf_bus_pending (client) == 0);
    //  Nobody listens: "no connection" after the timeout.
    zf_bus_destroy (&server);
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &request, NULL, patient,
                               s_test_on_reply, state, &err)
               == ZF_OK);
    s_test_run_until (loop, state, s_test_one_timeout);
    ZF_ASSERT (strstr (state->last_error, "no connection to 'far-server' for echo.request"));
}

void zf_bus_test (bool verbose)
{
    (void) verbose;
    zsys_set_linger (0);
    zf_node_options_t options = {.name = "selftest", .hwm = 4, .request_timeout_ms = 2000};
    zf_node_t *node = zf_node_new (&options, NULL);
    ZF_ASSERT (node);
    zf_node_add_local (node, "server");
    zf_node_add_local (node, "client");
    zf_node_add_local (node, "silent"); //  declared, but nobody ever reads its inbox
    zf_node_add_local (node, "server2");
    zf_node_add_local (node, "server3");
    zf_error_t err;
    //  The server also listens on ipc://, reached by the name "far-server" as if it lived in
    //  another process: requests over it are resent, requests over inproc:// are not.
    char ipc_endpoint[64];
    snprintf (ipc_endpoint, sizeof ipc_endpoint, "ipc:///tmp/zf-bus-test-%d", (int) getpid ());
    ZF_ASSERT (zf_node_add_route (node, "far-server", ipc_endpoint, "selftest", &err) == ZF_OK);
    zf_bus_t *server = zf_bus_new (node, "server", ipc_endpoint, NULL, &err);
    zf_bus_t *client = zf_bus_new (node, "client", NULL, NULL, &err);
    zf_bus_t *silent = zf_bus_new (node, "silent", NULL, NULL, &err);
    ZF_ASSERT (server && client && silent);
    ZF_ASSERT (streq (zf_bus_address (client), "client@selftest"));
    s_test_state_t state = {0};
    zf_bus_handle (server, ZF_MSG_ECHO_REQUEST, s_test_serve, &state);
    zloop_t *loop = zloop_new ();
    zloop_set_nonstop (loop, true);
    zf_bus_attach (server, loop);
    zf_bus_attach (client, loop);
    ZF_ASSERT (zf_bus_subscribe (client, "server", "echo.", s_test_on_event, &state, &err)
               == ZF_OK);
    //  Subscriptions travel separately: let the SUB connect before the events matter.
    zloop_timer (loop, 50, 1, s_test_stop_after, NULL);
    zloop_start (loop);

    //  Replies (with a raw frame riding along), an error reply, an unknown type.
    for (uint64_t seq = 1; seq <= 3; seq++) {
        zf_msg_echo_request_t request = {.seq = seq, .text = "hello"};
        zmsg_t *raw = zmsg_new ();
        zmsg_addstr (raw, "bulk bytes");
        ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &request, &raw,
                                   ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
                   == ZF_OK);
        ZF_ASSERT (raw == NULL);
    }
    zf_msg_echo_request_t failing = {.seq = 4, .text = "", .fail = true};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &failing, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_four_answers);
    ZF_ASSERT (state.replies == 3 && state.remote_errors == 1);
    ZF_ASSERT (strstr (state.last_error, "server@selftest: asked to fail (invalid)"));
    ZF_ASSERT (state.last_code == ZF_CODE_INVALID);

    //  Declared codes: the caller compares constants, whichever form the server used.
    const char *coded[] = {"busy", "not_found"};
    const zf_code_t expected[] = {ZF_CODE_BUSY, ZF_CODE_NOT_FOUND};
    for (size_t index = 0; index < ZF_ARRAY_LEN (coded); index++) {
        zf_msg_echo_request_t request = {.seq = 5, .text = (char *) coded[index], .fail = true};
        state.remote_errors = 0;
        ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &request, NULL,
                                   ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
                   == ZF_OK);
        s_test_run_until (loop, &state, s_test_one_error);
        ZF_ASSERT (state.last_code == expected[index]);
        ZF_ASSERT (strstr (state.last_error, coded[index]));
    }

    zf_msg_echo_seen_t unhandled = {.seq = 1};
    state.remote_errors = 0;
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_seen, &unhandled, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_error);
    ZF_ASSERT (strstr (state.last_error, "does not handle 'echo.seen'"));
    ZF_ASSERT (state.last_code == ZF_CODE_UNKNOWN_TYPE);

    //  No route: refused at once, the callback never runs.
    ZF_ASSERT (zf_bus_request (client, "nobody", &zf_msg_echo_request, &failing, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_E_UNREACHABLE);
    ZF_ASSERT (strstr (err.message, "no endpoint for actor 'nobody'"));

    //  Invalid body: refused before sending, naming the field.
    char *oversize = zf_calloc (1, 70000);
    memset (oversize, 'x', 69999);
    zf_msg_echo_request_t too_long = {.seq = 9, .text = oversize};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &too_long, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_E_TOO_LARGE);
    ZF_ASSERT (strstr (err.where, "text"));
    zf_free (oversize);

    //  A server that holds the request: two resends, then one timeout; the late reply that
    //  follows is counted and dropped.
    state.hold_replies = true;
    zf_bus_call_t quick = {.timeout_ms = 150, .retries = 2};
    zf_msg_echo_request_t held = {.seq = 10, .text = "late"};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &held, NULL, quick,
                               s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_timeout);
    ZF_ASSERT (strstr (state.last_error, "no reply from 'server' to echo.request"));
    ZF_ASSERT (strstr (state.last_error, "(1 attempt)")); //  inproc: never resent
    state.timeouts = 0;
    ZF_ASSERT (zf_bus_request (client, "far-server", &zf_msg_echo_request, &held, NULL, quick,
                               s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_until (loop, &state, s_test_one_timeout);
    ZF_ASSERT (strstr (state.last_error, "no reply from 'far-server' to echo.request"));
    ZF_ASSERT (strstr (state.last_error, "(3 attempts)"));
    ZF_ASSERT (state.has_held);
    uint64_t late_before = zf_counter_value (client->late_replies);
    zf_msg_echo_reply_t late = {.seq = 10, .text = "late", .served_by = "server"};
    zf_bus_reply (server, &state.held, &zf_msg_echo_reply, &late, NULL);
    zloop_timer (loop, 50, 1, s_test_stop_after, NULL);
    zloop_start (loop);
    ZF_ASSERT (zf_counter_value (client->late_replies) == late_before + 1);
    ZF_ASSERT (zf_bus_pending (client) == 0);

    //  To an actor of this process with no explicit timeout: no deadline at all (the node's
    //  default, 2 s here, passes), the reply comes when the busy actor gets to it.
    state.replies = state.timeouts = 0;
    state.has_held = false;
    zf_msg_echo_request_t busy = {.seq = 11, .text = "busy"};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &busy, NULL,
                               ZF_BUS_CALL_DEFAULT, s_test_on_reply, &state, &err)
               == ZF_OK);
    s_test_run_for (loop, (size_t) options.request_timeout_ms + 200);
    ZF_ASSERT (state.timeouts == 0 && state.has_held);
    zf_msg_echo_reply_t answer = {.seq = 11, .text = "busy", .served_by = "server"};
    zmsg_t *frame = zmsg_new ();
    zmsg_addstr (frame, "bulk bytes");
    zf_bus_reply (server, &state.held, &zf_msg_echo_reply, &answer, &frame);
    s_test_run_until (loop, &state, s_test_one_reply);

    //  Two requests expiring in one round, each callback forgetting the other: one callback.
    int forget_timeouts = 0;
    s_test_forget_t first = {client, NULL, &forget_timeouts},
                    second = {client, &first, &forget_timeouts};
    first.other = &second;
    zf_msg_echo_request_t forgotten = {.seq = 12, .text = "forget"};
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &forgotten, NULL,
                               (zf_bus_call_t){.timeout_ms = 101, .retries = 0}, s_test_on_forget,
                               &first, &err)
               == ZF_OK);
    ZF_ASSERT (zf_bus_request (client, "server", &zf_msg_echo_request, &forgotten, NULL,
                               (zf_bus_call_t){.timeout_ms = 100, .retries = 0}, s_test_on_forget,
                               &second, &err)
               == ZF_OK);
    s_test_run_for (loop, 300);
    ZF_ASSERT (forget_timeouts == 1 && zf_bus_pending (client) == 0);
    state.hold_replies = false;

    zf_bus_destroy (&server);
    s_test_patient (node, loop, client, ipc_endpoint, &state);

    //  High-water mark: nobody reads "silent", so after hwm messages (send and receive
    //  queues of the inproc pipe) sends are dropped, counted and reported, never blocking.
    int dropped = 0;
    for (uint64_t seq = 0; seq < 64; seq++) {
        zf_msg_echo_request_t request = {.seq = seq, .text = "x"};
        if (zf_bus_request (client, "silent", &zf_msg_echo_request, &request, NULL,
                            (zf_bus_call_t){.timeout_ms = 60000, .retries = 0}, s_test_on_reply,
                            &state, &err)
            == ZF_E_OVERLOAD)
            dropped++;
    }
    ZF_ASSERT (dropped > 0 && dropped < 64);
    ZF_ASSERT (strstr (err.message, "queue to 'silent' is full"));
    ZF_ASSERT (zf_counter_value (s_counters (client, "echo.request")->dropped)
               == (uint64_t) dropped);

    zf_bus_destroy (&silent);
    zf_bus_destroy (&client);
    zloop_destroy (&loop);
    zf_node_destroy (&node);
}
