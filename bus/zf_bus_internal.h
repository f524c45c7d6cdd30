/*  zf_bus_internal.h — one actor's bus as its parts share it; nothing outside the bus includes
    it.

    zf_bus.h is one class in five files, cut by job:
      zf_bus.c          the bus's life: its inbox and outlet bound (plain endpoints, then CURVE
                        ones) and advertised, attached to the loop, destroyed; handlers,
                        per-type counters
      zf_bus_link.c     links to other actors: a DEALER or SUB made on first use, following a
                        route that moved, subscriptions, and the sockets' monitor events
                        (handshakes, connections up and down, TCP tuning)
      zf_bus_request.c  requests and what becomes of them: the pending table, deadlines,
                        retries, patient requests sent again after a reconnection, replies
                        matched to their request, forgetting
      zf_bus_message.c  messages on the wire: envelopes encoded and sent (one-way, replies,
                        error replies, events), received, decoded and refused, dispatched to
                        handlers, pending requests or subscribers
      zf_bus_test.c     the selftest
    The struct below is the one bus all four work on; each field says which part owns it (sets
    it and decides what it means). */
#ifndef ZF_BUS_INTERNAL_H_INCLUDED
#define ZF_BUS_INTERNAL_H_INCLUDED

#include "zf_bus.h"
#include "zf_metrics.h"
#include "zf_tap.h"

typedef struct {
    zf_counter_t *sent;
    zf_counter_t *received;
    zf_counter_t *dropped;
} zf_bus_counters_t;

typedef struct {
    zf_bus_handler_fn *handler;
    void *arg;
} zf_bus_handler_entry_t;

//  A socket we connected to another actor: a DEALER for requests or a SUB for events. Made and
//  kept up to date by zf_bus_link.c; zf_bus_request.c reads actor, up, was_up and up_changed_ms
//  of a pending request's link, zf_bus_message.c sends and receives on sock.
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
    zlistx_t *event_handlers; //  SUB only: zf_bus_event_handler_t
    zf_route_t route;         //  where it is connected
    uint64_t routes_version;  //  the node's learned-routes version when last checked
} zf_bus_link_t;

//  A subscription's handler (zf_bus_subscribe), on its SUB link.
typedef struct {
    char *prefix;
    zf_bus_event_fn *handler;
    void *arg;
} zf_bus_event_handler_t;

struct zf_bus_s {
    //  zf_bus.c: made by zf_bus_new, read by every part
    zf_node_t *node;
    char *actor;
    char *address;             //  actor@node
    zsock_t *inbox;            //  ROUTER
    zsock_t *outlet;           //  PUB
    zf_bus_link_t inbox_link;  //  monitor of the inbox (label "router"), when bound outside inproc
    zf_bus_link_t outlet_link; //  monitor of the outlet (label "pub")
    zhashx_t *handlers;        //  type -> zf_bus_handler_entry_t (zf_bus_message.c calls them)
    zhashx_t *counters;        //  type -> zf_bus_counters_t
    zloop_t *loop;             //  set by zf_bus_attach
    bool timer_armed;          //  zf_bus_request.c's deadline timer: one is armed
    int timer_id;              //  its zloop id
    int64_t timer_at_ms;       //  when it fires (monotonic)
    zf_tap_t *tap;             //  zf_bus_message.c mirrors every message, zf_bus_link.c events
    bool bulk;                 //  TCP connections queue as bulk (zf_bus_set_bulk)
    //  zf_bus_link.c
    zhashx_t *links; //  "dealer:NAME" / "sub:NAME" -> zf_bus_link_t
    //  zf_bus_request.c
    zhashx_t *pending; //  request id (hex) -> its record, private to zf_bus_request.c
    zf_counter_t *late_replies;
    zf_counter_t *timeouts;
    //  zf_bus_message.c: every envelope takes the next id (zf_bus_take_id)
    uint64_t next_id;
};

//  ---------------------------------------------------------------------------------------------
//  zf_bus.c: sockets and counters

//  A socket with the node's high-water marks, linger 0.
zsock_t *zf_bus_socket_new (zf_bus_t *self, int type);
//  Counters, one set per message type, looked up once and then bumped without locks. The type
//  label only takes schema-defined types, so a flood of invented types cannot grow /metrics.
zf_bus_counters_t *zf_bus_counters (zf_bus_t *self, const char *type);
//  A message refused as malformed or unexpected, by type and reason.
void zf_bus_count_refused (zf_bus_t *self, const char *type, zf_status_t reason);

//  ---------------------------------------------------------------------------------------------
//  zf_bus_link.c: links to other actors

//  The link to actor (events: its outlet, else its inbox), made on first use; NULL and err
//  when the actor has no route.
zf_bus_link_t *zf_bus_link_get (zf_bus_t *self, const char *actor, bool events, zf_error_t *err);
void zf_bus_link_destroy (zf_bus_link_t **link_p);
//  Registers a link's socket (and monitor) with the bus's loop.
void zf_bus_link_attach (zf_bus_t *self, zf_bus_link_t *link);
//  A monitor event of a socket (zloop reader; arg: its link).
int zf_bus_monitor_ready (zloop_t *loop, zsock_t *reader, void *arg);

//  ---------------------------------------------------------------------------------------------
//  zf_bus_request.c: requests and what becomes of them

//  Arms the deadline timer for the requests already pending (zf_bus_attach).
void zf_bus_arm_deadlines (zf_bus_t *self);
//  A reply came: its request's callback runs, or it is counted as late.
void zf_bus_deliver_reply (zf_bus_t *self, zf_bus_msg_t *msg);
//  The link came up again after a connection was lost: its patient requests are sent again.
void zf_bus_resend_patient (zf_bus_t *self, zf_bus_link_t *link);
//  Frees every pending request (their callbacks never run, their drop functions do) and the
//  table.
void zf_bus_requests_destroy (zf_bus_t *self);

//  ---------------------------------------------------------------------------------------------
//  zf_bus_message.c: messages on the wire

//  The next message id (never 0).
uint64_t zf_bus_take_id (zf_bus_t *self);
//  Sends envelope (+ raw) on sock, mirrored to the tap and counted; see the definition for who
//  keeps what.
zf_status_t zf_bus_send_envelope (zf_bus_t *self, zsock_t *sock, const char *socket_label,
                                  const zf_bus_return_t *ret, const char *type, zframe_t *envelope,
                                  zmsg_t *raw, bool take_raw);
//  Requests on the inbox (zloop reader; arg: the bus), and replies or events on a link
//  (arg: the link).
int zf_bus_inbox_ready (zloop_t *loop, zsock_t *reader, void *arg);
int zf_bus_link_ready (zloop_t *loop, zsock_t *reader, void *arg);

#endif
