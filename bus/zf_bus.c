/*  zf_bus.c — one actor's bus (see zf_bus.h): its inbox and outlet, bound and advertised,
    attached to the actor's loop and destroyed; handlers and per-type counters. The rest is in
    the parts listed in zf_bus_internal.h. */
#include "zf_bus_internal.h"
#include "zf_monitor.h"

//  ---------------------------------------------------------------------------------------------
//  Counters, one set per message type, looked up once and then bumped without locks. The type
//  label only takes schema-defined types, so a flood of invented types cannot grow /metrics.

zf_bus_counters_t *zf_bus_counters (zf_bus_t *self, const char *type)
{
    if (!type || !zf_schema_find (type, strlen (type)))
        type = "unknown";
    zf_bus_counters_t *counters = zhashx_lookup (self->counters, type);
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

void zf_bus_count_refused (zf_bus_t *self, const char *type, zf_status_t reason)
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

zsock_t *zf_bus_socket_new (zf_bus_t *self, int type)
{
    zsock_t *sock = zsock_new (type);
    ZF_ASSERT (sock);
    int hwm = zf_node_options (self->node)->hwm;
    zsock_set_sndhwm (sock, hwm);
    zsock_set_rcvhwm (sock, hwm);
    zsock_set_linger (sock, 0);
    return sock;
}

//  The first tcp:// endpoint of a blank-separated list ("" when none), for zf_node_advertise.
static void s_first_tcp (const char *endpoints, char *buffer, size_t size)
{
    *buffer = '\0';
    const char *found = strstr (endpoints, "tcp://");
    if (found)
        zf_strlcpy (buffer, found,
                    size < strcspn (found, " \t") + 1 ? size : strcspn (found, " \t") + 1);
}

//  Binds every endpoint of a blank-separated list, e.g. an ipc:// one for clients on this
//  host and a tcp:// one (CURVE) for other nodes.
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
    zhashx_set_destructor (self->links, (zhashx_destructor_fn *) zf_bus_link_destroy);
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

    self->inbox = zf_bus_socket_new (self, ZMQ_ROUTER);
    zsock_set_router_mandatory (self->inbox, 1); //  a reply to a vanished peer is an error
    self->outlet = zf_bus_socket_new (self, ZMQ_PUB);
    zf_status_t status =
        zf_node_bind (node, self->inbox, zf_node_inproc_endpoint (node, actor, false), err);
    if (status == ZF_OK)
        status =
            zf_node_bind (node, self->outlet, zf_node_inproc_endpoint (node, actor, true), err);
    self->inbox_link = (zf_bus_link_t){.bus = self, .label = "router"};
    self->outlet_link = (zf_bus_link_t){.bus = self, .label = "pub"};
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
        if (self->timer_armed)
            zloop_timer_end (self->loop, self->timer_id);
        zloop_reader_end (self->loop, self->inbox);
        if (self->inbox_link.monitor)
            zloop_reader_end (self->loop, self->inbox_link.monitor);
        if (self->outlet_link.monitor)
            zloop_reader_end (self->loop, self->outlet_link.monitor);
    }
    zf_bus_requests_destroy (self);
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

void zf_bus_process_init (void)
{
    zsys_set_linger (0);
    zsys_set_ipv6 (1);
}

void zf_bus_attach (zf_bus_t *self, zloop_t *loop)
{
    ZF_ASSERT (!self->loop);
    self->loop = loop;
    zloop_reader (loop, self->inbox, zf_bus_inbox_ready, self);
    if (self->inbox_link.monitor)
        zloop_reader (loop, self->inbox_link.monitor, zf_bus_monitor_ready, &self->inbox_link);
    if (self->outlet_link.monitor)
        zloop_reader (loop, self->outlet_link.monitor, zf_bus_monitor_ready, &self->outlet_link);
    zf_bus_arm_deadlines (self);
    for (zf_bus_link_t *link = zhashx_first (self->links); link; link = zhashx_next (self->links))
        zf_bus_link_attach (self, link);
}

void zf_bus_set_bulk (zf_bus_t *self, bool bulk)
{
    ZF_ASSERT (!self->loop); //  no connection has been tuned yet
    self->bulk = bulk;
}

void zf_bus_handle (zf_bus_t *self, const char *type, zf_bus_handler_fn *handler, void *arg)
{
    ZF_ASSERT (zf_schema_find (type, strlen (type))); //  handlers exist only for schema types
    zf_bus_handler_entry_t *entry = zf_calloc (1, sizeof *entry);
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
