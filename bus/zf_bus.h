/*  zf_bus.h — one actor's connection to the bus.

    An actor creates one zf_bus_t, attaches it to its zloop, and from then on:
      - serves requests of the types it registered with zf_bus_handle (ROUTER inbox),
      - sends requests to other actors by name with zf_bus_request and gets exactly one
        callback per request: the reply, an error reply, or a local timeout/unreachable error
        (or, for a request still pending when the bus is destroyed, its drop function),
      - publishes events with zf_bus_publish (PUB) and receives others' with zf_bus_subscribe.
    Whether the other actor runs in this process (inproc://) or on another host (tcp:// with
    CURVE) is the node's business (zf_node), never the actor's.

    Delivery and limits. Every socket has a deliberate high-water mark; a send that would
    block is dropped, counted in zfly_bus_messages_dropped_total and reported to the caller as
    ZF_E_OVERLOAD. A request is resent with the same id after each per-attempt timeout until
    its retries are spent, so handlers must be idempotent; a reply that arrives after its
    request gave up is dropped and counted as "late". Malformed input is refused: counted in
    zfly_bus_messages_refused_total{reason}, logged (rate-limited), answered with an error
    reply when the sender and id could be read, and the actor keeps serving.

    Bulk bytes ride as raw frames after the envelope (zmsg_t *raw), never inside msgpack. */
#ifndef ZF_BUS_H_INCLUDED
#define ZF_BUS_H_INCLUDED

#include "zf_envelope.h"
#include "zf_msgs.h"
#include "zf_node.h"

typedef struct zf_bus_s zf_bus_t;

//  Where a reply goes: copy it out of a request to answer after the callback returned.
typedef struct {
    uint8_t routing_id[256];
    size_t routing_id_size;
    uint64_t id;
    char from[ZF_NAME_MAX + 1];
} zf_bus_return_t;

//  Where a message came from, as the transport says (not as the envelope's `from` claims,
//  which the sender writes itself): this process (inproc://), this host (ipc://, guarded by
//  file permissions), or the network (tcp://, with the sender's CURVE key when it has one).
//  Actors decide by it what a sender may do, e.g. storage lets only this host write its cache.
typedef enum {
    ZF_BUS_FROM_PROCESS,
    ZF_BUS_FROM_HOST,
    ZF_BUS_FROM_NETWORK,
} zf_bus_origin_t;

//  A received message. Valid only during the callback; keep a zf_bus_return_t to answer
//  later, and take raw frames with zmsg_pop if you need them afterwards.
typedef struct {
    zf_envelope_t env;
    zmsg_t *raw;               //  frames after the envelope; may be empty, never NULL
    zf_bus_return_t return_to; //  requests only
    zf_bus_origin_t origin;
    char peer_key[41];     //  Z85 CURVE key of a network sender, "" otherwise
    char peer_address[64]; //  IP address of a network sender ("10.0.0.7"), "" otherwise
} zf_bus_msg_t;

typedef void (zf_bus_handler_fn) (zf_bus_t *bus, zf_bus_msg_t *request, void *arg);

//  status ZF_OK: reply holds the answer. ZF_E_REMOTE: the peer sent an error reply (err says
//  what; reply holds the "error" message). ZF_E_TIMEOUT / ZF_E_UNREACHABLE / ZF_E_OVERLOAD:
//  local failures, reply is NULL.
typedef void (zf_bus_reply_fn) (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                                const zf_error_t *err, void *arg);

typedef void (zf_bus_event_fn) (zf_bus_t *bus, zf_bus_msg_t *event, void *arg);

//  A request's arg let go of without its callback: see zf_bus_call_t.drop.
typedef void (zf_bus_drop_fn) (void *arg);

//  How long a request waits for its reply.
//  - An actor of this process always answers while the process lives (inproc:// loses
//    nothing, and a dead actor stops the daemon), so a request to it with timeout_ms 0 waits
//    as long as it takes: a busy actor makes its callers slower, never fails them. An explicit
//    timeout_ms is honoured.
//  - To another process: timeout_ms is the whole deadline over all attempts (0: the node's
//    default), each attempt resent after timeout / (retries + 1).
//  - patient: wait as long as the other side is connected, however long it takes; timeout_ms
//    then bounds only how long it may stay unreachable (never connected, or gone and not
//    back). An actor of this process is always there: no deadline at all. After a
//    reconnection (the peer restarted) the request is sent again: handlers are idempotent.
//    Heartbeats on the connection tell a silent peer from a busy one.
//  What becomes of arg when the callback never comes:
//  - drop: called with arg, once, for each request still pending when zf_bus_destroy runs (its
//    callback never ran and never will), so a caller that allocates arg per request frees it
//    here instead of keeping its own list of requests in flight. Never called when the
//    callback ran, when zf_bus_request did not return ZF_OK, or for a request zf_bus_forget
//    dropped (that caller still holds arg and decides). It runs while the bus is being
//    destroyed: it must not use the bus. NULL: nothing to do (arg outlives the bus).
typedef struct {
    int64_t timeout_ms;
    int retries; //  resends after a per-attempt timeout; -1: the node's default
    bool patient;
    zf_bus_drop_fn *drop;
} zf_bus_call_t;

#define ZF_BUS_CALL_DEFAULT ((zf_bus_call_t){.timeout_ms = 0, .retries = -1})
#define ZF_BUS_CALL_PATIENT ((zf_bus_call_t){.timeout_ms = 0, .retries = 0, .patient = true})

//  The drop function for an arg that is one block from zf_malloc / zf_calloc: frees it.
void zf_bus_drop_free (void *arg);

//  What every zfly program sets before its first socket: no linger at close, and IPv6 on, so
//  tcp:// endpoints may name IPv6 addresses (tcp://[fd00::7]:65002; libzmq keeps a socket
//  IPv4-only unless asked, and such a bind failed with "No such device"). A socket with IPv6
//  on still takes IPv4 peers (as ::ffff:a.b.c.d, which the bus reads as a.b.c.d), and libzmq
//  falls back to IPv4 on a host without IPv6.
void zf_bus_process_init (void);

//  Creates the actor's inbox (ROUTER) and event outlet (PUB) on inproc, plus the external
//  binds given: NULL or "" for none, or blank-separated endpoints ("ipc://… tcp://…"). The actor
//  name must have been declared local. The binds come from the actor's section, so a failure
//  names the key and the endpoint: "[storage] bind: cannot bind tcp://…:7001: Address already
//  in use".
zf_bus_t *zf_bus_new (zf_node_t *node, const char *actor, const char *bind, const char *events_bind,
                      zf_error_t *err);
//  The same with tcp:// binds open to any CURVE key (zf_node_bind_open): the manager's join
//  endpoint, where a node's key becomes known only by joining. Decide by request->peer_key.
zf_bus_t *zf_bus_new_open (zf_node_t *node, const char *actor, const char *bind,
                           const char *events_bind, zf_error_t *err);
//  Requests still pending are dropped: their callbacks never run, their drop functions do.
void zf_bus_destroy (zf_bus_t **self_p);

//  Registers the bus sockets and its timer with the actor's loop. Destroy the bus before the
//  loop: zf_bus_destroy unregisters from it.
void zf_bus_attach (zf_bus_t *self, zloop_t *loop);

//  This actor uploads pieces to other hosts (the storage actor): its TCP connections are
//  queued as bulk on this host, behind the host's own downloads (zf_bus_link.c). Set before
//  zf_bus_attach; off by default.
void zf_bus_set_bulk (zf_bus_t *self, bool bulk);

void zf_bus_handle (zf_bus_t *self, const char *type, zf_bus_handler_fn *handler, void *arg);

//  Sends a request; on ZF_OK the callback runs exactly once later, unless the bus is destroyed
//  first (then call.drop runs instead, if given) or zf_bus_forget drops it (then neither runs).
//  On any other status neither runs, arg stays the caller's and err says why. raw (may be
//  NULL) is taken and NULLed.
zf_status_t zf_bus_request (zf_bus_t *self, const char *to, const zf_msg_desc_t *desc,
                            const void *body, zmsg_t **raw, zf_bus_call_t call,
                            zf_bus_reply_fn *callback, void *arg, zf_error_t *err);

//  One-way message: no reply expected, no retry.
zf_status_t zf_bus_send (zf_bus_t *self, const char *to, const zf_msg_desc_t *desc,
                         const void *body, zmsg_t **raw, zf_error_t *err);

//  Forgets every pending request whose callback argument is arg: their callbacks never run
//  and a late reply is dropped. For a caller that lets go of the state its callbacks need (a
//  parent dropped from a task). Their drop functions do not run either: arg may be shared
//  state the caller keeps or frees itself. Returns how many were forgotten. Safe inside any
//  callback.
size_t zf_bus_forget (zf_bus_t *self, const void *arg);

void zf_bus_return_of (const zf_bus_msg_t *request, zf_bus_return_t *ret);
zf_status_t zf_bus_reply (zf_bus_t *self, const zf_bus_return_t *ret, const zf_msg_desc_t *desc,
                          const void *body, zmsg_t **raw);
zf_status_t zf_bus_reply_error (zf_bus_t *self, const zf_bus_return_t *ret, zf_status_t code,
                                const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));
//  The same with any declared code (enum code in schemas/core.schema), for the answers a
//  zf_status_t does not name: ZF_CODE_NOT_FOUND, ZF_CODE_BUSY, ZF_CODE_CORRUPT, ….
zf_status_t zf_bus_reply_code (zf_bus_t *self, const zf_bus_return_t *ret, zf_code_t code,
                               const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));
//  Deprecated: the code as its word ("busy"), for callers not yet on zf_bus_reply_code. The
//  word must be a declared code; anything else asserts, since no decoder would accept it.
zf_status_t zf_bus_reply_error_code (zf_bus_t *self, const zf_bus_return_t *ret, const char *code,
                                     const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

//  What a reply callback's peer answered: for status ZF_E_REMOTE, the error reply's code
//  (ZF_CODE_UNKNOWN when the peer sent a word this build does not declare); ZF_CODE_NONE for
//  any other status (a reply, or a local failure such as ZF_E_TIMEOUT), so
//      if (zf_bus_error_code (status, reply) == ZF_CODE_BUSY)
//  is all a caller writes.
zf_code_t zf_bus_error_code (zf_status_t status, const zf_bus_msg_t *reply);

zf_status_t zf_bus_publish (zf_bus_t *self, const zf_msg_desc_t *desc, const void *body);

//  Receives events of `actor` whose type starts with type_prefix ("" for all).
zf_status_t zf_bus_subscribe (zf_bus_t *self, const char *actor, const char *type_prefix,
                              zf_bus_event_fn *handler, void *arg, zf_error_t *err);

const char *zf_bus_actor (zf_bus_t *self);
//  "actor@node", the sender name in envelopes.
const char *zf_bus_address (zf_bus_t *self);
size_t zf_bus_pending (zf_bus_t *self);

void zf_bus_test (bool verbose);

#endif
