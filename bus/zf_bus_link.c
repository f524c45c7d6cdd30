/*  zf_bus_link.c — a bus's links to other actors (see zf_bus_internal.h): a DEALER for
    requests or a SUB for events, made on first use and moved when the actor's route moves,
    subscriptions, and what the sockets' monitors report. */
#include "zf_bus_internal.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_monitor.h"
#include <linux/pkt_sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

//  ZMTP heartbeats on connections that leave the process: a peer whose I/O thread answers no
//  ping for HEARTBEAT_TIMEOUT_MS is disconnected, which is what tells a patient request that
//  the other side is gone rather than busy. Pings are answered by libzmq's I/O thread, not
//  by the actor, so a busy or CPU-starved actor stays connected.
#define HEARTBEAT_IVL_MS     2000
#define HEARTBEAT_TIMEOUT_MS 10000

void zf_bus_link_destroy (zf_bus_link_t **link_p)
{
    zf_bus_link_t *link = *link_p;
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

static void s_event_handler_destroy (zf_bus_event_handler_t **handler_p)
{
    zf_bus_event_handler_t *handler = *handler_p;
    if (handler) {
        zf_free (handler->prefix);
        zf_free (handler);
        *handler_p = NULL;
    }
}

void zf_bus_link_attach (zf_bus_t *self, zf_bus_link_t *link)
{
    zloop_reader (self->loop, link->sock, zf_bus_link_ready, link);
    if (link->monitor)
        zloop_reader (self->loop, link->monitor, zf_bus_monitor_ready, link);
}

static bool s_leaves_process (const char *endpoint)
{
    return endpoint && *endpoint && strncmp (endpoint, "inproc://", 9) != 0;
}

//  ---------------------------------------------------------------------------------------------
//  Links to other actors

//  A learned route may have moved since the link connected (a scheduler restarted elsewhere,
//  a parent with a new key): connect the same socket to the new place, so requests in flight
//  keep their socket and their replies.
static void s_link_follow (zf_bus_t *self, zf_bus_link_t *link, bool events)
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

zf_bus_link_t *zf_bus_link_get (zf_bus_t *self, const char *actor, bool events, zf_error_t *err)
{
    char key[ZF_NAME_MAX + 16];
    snprintf (key, sizeof key, "%s:%s", events ? "sub" : "dealer", actor);
    zf_bus_link_t *link = zhashx_lookup (self->links, key);
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
    link->sock = zf_bus_socket_new (self, events ? ZMQ_SUB : ZMQ_DEALER);
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
        zf_bus_link_destroy (&link);
        return NULL;
    }
    zhashx_insert (self->links, key, link);
    if (self->loop)
        zf_bus_link_attach (self, link);
    return link;
}

//  A subscription: events of actor whose type starts with type_prefix go to handler.
zf_status_t zf_bus_subscribe (zf_bus_t *self, const char *actor, const char *type_prefix,
                              zf_bus_event_fn *handler, void *arg, zf_error_t *err)
{
    zf_bus_link_t *link = zf_bus_link_get (self, actor, true, err);
    if (!link)
        return err ? err->code : ZF_E_UNREACHABLE;
    zf_bus_event_handler_t *entry = zf_calloc (1, sizeof *entry);
    entry->prefix = zf_strdup (type_prefix ? type_prefix : "");
    entry->handler = handler;
    entry->arg = arg;
    zlistx_add_end (link->event_handlers, entry);
    zsock_set_subscribe (link->sock, entry->prefix);
    return ZF_OK;
}

//  A link's connection came up or went down. Patient requests on a link that comes up again
//  are sent again: whatever was in flight on the old connection may be lost.
static void s_link_up (zf_bus_t *self, zf_bus_link_t *link, bool up)
{
    if (link->up == up)
        return;
    link->up = up;
    link->up_changed_ms = zf_clock_mono_ms ();
    if (!up)
        return;
    if (link->was_up)
        zf_bus_resend_patient (self, link);
    link->was_up = true;
}

//  ---------------------------------------------------------------------------------------------
//  Socket events

//  A new TCP connection (the monitor names its descriptor) gets the node's congestion control,
//  and on an actor that uploads pieces (zf_bus_set_bulk: storage) the bulk priority: pieces for
//  other peers should wait behind the host's own traffic in a queue that knows priorities
//  (pfifo_fast, the kernel's default qdisc, and prio keep three bands; fq_codel isolates flows
//  anyway). Above all behind the host's own downloads: from an origin, and from parents, whose
//  requests and ACKs the fetcher sends on its own connections; queued behind a full uplink of
//  pieces for children they waited a median of 64 ms at N = 16 (docs/benchmarks.md "Every
//  holder its share of children"). The priority is local to this host: it changes no byte on
//  the wire (no DSCP). The descriptor belongs to libzmq's I/O thread; setting an option on it
//  from here is safe, and should it have been closed and reused meanwhile the worst is another
//  socket with our congestion control, perhaps queued as bulk.
static void s_tune_tcp (zf_bus_t *self, int fd)
{
    if (fd < 0)
        return;
    int bulk = TC_PRIO_BULK;
    if (self->bulk && setsockopt (fd, SOL_SOCKET, SO_PRIORITY, &bulk, sizeof bulk) != 0
        && errno != EBADF && errno != ENOTSOCK)
        zf_debug ("bus", "%s: SO_PRIORITY: %s", self->actor, strerror (errno));
    const char *congestion = zf_node_options (self->node)->congestion;
    static bool warned = false;
    if (!congestion || !*congestion)
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

int zf_bus_monitor_ready (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    zf_bus_link_t *link = arg;
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
