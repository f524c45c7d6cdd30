/*  zf_bus_message.c — a bus's messages on the wire (see zf_bus_internal.h): envelopes encoded
    and sent (one-way messages, replies, error replies, events), and received ones decoded,
    refused when malformed, and dispatched to handlers, pending requests or subscribers. */
#include "zf_bus_internal.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include "zf_sock.h"

//  ---------------------------------------------------------------------------------------------
//  Sending

uint64_t zf_bus_take_id (zf_bus_t *self)
{
    uint64_t id = self->next_id++;
    if (self->next_id == 0)
        self->next_id = 1;
    return id;
}

//  Sends envelope (+ a copy of raw, when given) on sock; routing frame first for a ROUTER.
//  raw frames are moved into the message when take_raw (raw is left empty: bulk bytes are
//  never copied on their way out), copied otherwise (a request kept for resending).
zf_status_t zf_bus_send_envelope (zf_bus_t *self, zsock_t *sock, const char *socket_label,
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
    zf_bus_counters_t *counters = zf_bus_counters (self, type);
    zf_status_t status = zf_sock_send_nowait (sock, &msg);
    zf_counter_add (status == ZF_OK ? counters->sent : counters->dropped, 1);
    return status;
}

zf_status_t zf_bus_send (zf_bus_t *self, const char *to, const zf_msg_desc_t *desc,
                         const void *body, zmsg_t **raw, zf_error_t *err)
{
    zmsg_t *raw_msg = raw ? *raw : NULL;
    if (raw)
        *raw = NULL;
    zf_bus_link_t *link = zf_bus_link_get (self, to, false, err);
    zframe_t *envelope =
        link ? zf_envelope_encode (desc, zf_bus_take_id (self), 0, self->address, to, body, err)
             : NULL;
    zf_status_t status = !link       ? ZF_E_UNREACHABLE
                         : !envelope ? (err ? err->code : ZF_E_INVALID)
                                     : ZF_OK;
    if (status == ZF_OK) {
        status = zf_bus_send_envelope (self, link->sock, link->label, NULL, desc->type, envelope,
                                       raw_msg, true);
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
    zframe_t *envelope = zf_envelope_encode (desc, zf_bus_take_id (self), ret->id, self->address,
                                             ret->from, body, &err);
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
    status = zf_bus_send_envelope (self, self->inbox, "router", ret, desc->type, envelope, raw_msg,
                                   true);
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
    zframe_t *envelope = zf_envelope_encode (&zf_msg_error, zf_bus_take_id (self), ret->id,
                                             self->address, ret->from, &body, &err);
    ZF_ASSERT (envelope); //  bounded above, so it always encodes
    zf_status_t status =
        zf_bus_send_envelope (self, self->inbox, "router", ret, "error", envelope, NULL, false);
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
        zf_envelope_encode (desc, zf_bus_take_id (self), 0, self->address, NULL, body, &err);
    if (!envelope) {
        zf_error_log ("bus", "%s: invalid %s event: %s: %s", self->actor, desc->type, err.where,
                      err.message);
        return err.code;
    }
    zf_status_t status =
        zf_bus_send_envelope (self, self->outlet, "pub", NULL, desc->type, envelope, NULL, false);
    zframe_destroy (&envelope);
    return status;
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
    //  A dual-stack listener (zf_bus_process_init) names an IPv4 peer ::ffff:a.b.c.d.
    if (address && strncmp (address, "::ffff:", 7) == 0 && strchr (address + 7, '.'))
        address += 7;
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
        zf_bus_count_refused (self, msg->env.type, status);
        zf_warning_limited (&limit, "bus", "%s: refused message on %s: %s type=%s from=%s: %s: %s",
                            self->actor, socket_label, zf_status_name (status),
                            *msg->env.type ? msg->env.type : "?",
                            *msg->env.from ? msg->env.from : "?", err->where, err->message);
        return status;
    }
    zf_counter_add (zf_bus_counters (self, msg->env.type)->received, 1);
    msg->raw = raw;
    s_read_origin (envelope, msg);
    return ZF_OK;
}

//  Messages a ready socket gives one callback before the loop polls again. zloop polls every
//  socket of the actor between callbacks (a fetcher with 16 parents: 20-odd descriptors and
//  ZMQ_EVENTS reads per poll), which cost more than a small message itself: at N = 16 on the
//  testbed the poll took a sixth to a quarter of the fetcher thread's time (perf). Taking what is
//  queued, up to this many, keeps the other sockets' turn.
#define READY_BATCH 32

//  Hands each message reader has queued to one (the first is the one zloop saw), up to
//  READY_BATCH.
typedef void (s_one_fn) (void *arg, zmsg_t *incoming);
static void s_take_ready (zsock_t *reader, s_one_fn *one, void *arg)
{
    int taken = 0;
    do {
        zmsg_t *incoming = zmsg_recv (reader);
        if (!incoming)
            return;
        one (arg, incoming);
    } while (++taken < READY_BATCH && (zsock_events (reader) & ZMQ_POLLIN));
}

static void s_inbox_one (void *arg, zmsg_t *incoming)
{
    zf_bus_t *self = arg;
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
        zf_bus_count_refused (self, msg.env.type, ZF_E_REFUSED);
        zf_warning_limited (&limit, "bus", "%s: refused %s from revoked key=%s", self->actor,
                            msg.env.type, msg.peer_key);
        zf_bus_reply_error (self, ret, ZF_E_REFUSED, "key", "key %s was revoked by the manager",
                            msg.peer_key);
    } else if (msg.env.re) {
        zf_bus_count_refused (self, msg.env.type, ZF_E_INVALID);
        zf_bus_reply_error (self, ret, ZF_E_INVALID, "re", "%s received a reply (%s) on its inbox",
                            self->actor, msg.env.type);
    } else {
        zf_bus_handler_entry_t *entry = zhashx_lookup (self->handlers, msg.env.type);
        if (entry)
            entry->handler (self, &msg, entry->arg);
        else {
            zf_bus_count_refused (self, msg.env.type, ZF_E_UNKNOWN_TYPE);
            zf_bus_reply_error (self, ret, ZF_E_UNKNOWN_TYPE, "type",
                                "actor '%s' does not handle '%s'", self->actor, msg.env.type);
        }
    }
    zf_envelope_clear (&msg.env);
    zmsg_destroy (&msg.raw);
    zframe_destroy (&routing);
    zframe_destroy (&envelope);
    zmsg_destroy (&incoming);
}

int zf_bus_inbox_ready (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    s_take_ready (reader, s_inbox_one, arg);
    return 0;
}

static void s_deliver_event (zf_bus_link_t *link, zf_bus_msg_t *msg)
{
    for (zf_bus_event_handler_t *entry = zlistx_first (link->event_handlers); entry;
         entry = zlistx_next (link->event_handlers))
        if (strncmp (msg->env.type, entry->prefix, strlen (entry->prefix)) == 0)
            entry->handler (link->bus, msg, entry->arg);
}

//  Links live as long as their bus (zf_bus_link_destroy runs only when the bus goes), so a
//  handler cannot take the socket away under zf_bus_link_ready's loop.
static void s_link_one (void *arg, zmsg_t *incoming)
{
    zf_bus_link_t *link = arg;
    zf_bus_t *self = link->bus;
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
            zf_bus_deliver_reply (self, &msg);
        else
            zf_bus_count_refused (self, msg.env.type, ZF_E_INVALID); //  a request on a DEALER
    }
    zf_envelope_clear (&msg.env);
    zmsg_destroy (&msg.raw);
    zframe_destroy (&envelope);
    zmsg_destroy (&incoming);
}

int zf_bus_link_ready (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    s_take_ready (reader, s_link_one, arg);
    return 0;
}
