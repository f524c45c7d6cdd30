/*  zf_tap.c — tap outlets of the actors and the tap actor that republishes them. */
#include "zf_tap.h"
#include "zf_clock.h"
#include "zf_envelope.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_redact.h"
#include "zf_sock.h"

struct zf_tap_s {
    zsock_t *outlet; //  PUSH to the tap actor's inbox
    char *node;
    char *actor;
    zf_counter_t *dropped;
};

zf_tap_t *zf_tap_new (zf_node_t *node, const char *actor)
{
    const char *inbox = zf_node_tap_inbox (node);
    if (!inbox)
        return NULL;
    zf_tap_t *self = zf_calloc (1, sizeof *self);
    self->outlet = zsock_new (ZMQ_PUSH);
    ZF_ASSERT (self->outlet);
    zsock_set_sndhwm (self->outlet, zf_node_options (node)->tap_hwm);
    int rc = zsock_connect (self->outlet, "%s", inbox);
    ZF_ASSERT (rc == 0); //  inproc connect cannot fail for a well-formed name
    self->node = zf_strdup (zf_node_name (node));
    self->actor = zf_strdup (actor);
    self->dropped = zf_metrics_counter ("zfly_tap_dropped_total",
                                        "Tap records dropped because the tap queue was full",
                                        "actor", actor, NULL);
    return self;
}

void zf_tap_destroy (zf_tap_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_tap_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->outlet);
    zf_free (self->node);
    zf_free (self->actor);
    zf_free (self);
    *self_p = NULL;
}

static void s_pack_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, text, len);
}

//  Sends a record (topic, meta, envelope if any) and releases meta.
static void s_send (zf_tap_t *self, const char *topic, msgpack_sbuffer *meta, zframe_t *envelope)
{
    zmsg_t *record = zmsg_new ();
    zmsg_addstr (record, topic);
    zmsg_addmem (record, meta->data, meta->size);
    msgpack_sbuffer_destroy (meta);
    if (envelope)
        zmsg_append (record, &envelope);
    //  Never block an actor for the tap: drop and count instead.
    if (zf_sock_send_nowait (self->outlet, &record) != ZF_OK)
        zf_counter_add (self->dropped, 1);
}

//  Starts a record's metadata in meta (for s_send): a map with the fields every record has;
//  `extra` more pairs must follow.
static void s_pack_header (zf_tap_t *self, msgpack_sbuffer *meta, msgpack_packer *pk,
                           const char *socket, size_t extra)
{
    msgpack_sbuffer_init (meta);
    msgpack_packer_init (pk, meta, msgpack_sbuffer_write);
    msgpack_pack_map (pk, 4 + extra);
    s_pack_str (pk, "time_ms");
    msgpack_pack_uint64 (pk, (uint64_t) zf_clock_wall_ms ());
    s_pack_str (pk, "node");
    s_pack_str (pk, self->node);
    s_pack_str (pk, "actor");
    s_pack_str (pk, self->actor);
    s_pack_str (pk, "socket");
    s_pack_str (pk, socket);
}

void zf_tap_message (zf_tap_t *self, const char *dir, const char *socket, const char *type,
                     zframe_t *envelope, zmsg_t *raw, const char *refused)
{
    if (!self)
        return;
    msgpack_sbuffer meta;
    msgpack_packer pk;
    s_pack_header (self, &meta, &pk, socket, refused ? 3 : 2);
    s_pack_str (&pk, "dir");
    s_pack_str (&pk, dir);
    s_pack_str (&pk, "raw");
    msgpack_pack_array (&pk, raw ? zmsg_size (raw) : 0);
    if (raw)
        for (zframe_t *frame = zmsg_first (raw); frame; frame = zmsg_next (raw))
            msgpack_pack_uint64 (&pk, zframe_size (frame));
    if (refused) {
        s_pack_str (&pk, "refused");
        s_pack_str (&pk, refused);
    }
    char topic[ZF_TYPE_MAX + 3];
    snprintf (topic, sizeof topic, "m:%s", type && *type ? type : "?");
    s_send (self, topic, &meta, envelope ? zframe_dup (envelope) : zframe_new_empty ());
}

void zf_tap_socket_event (zf_tap_t *self, const char *socket, const char *event,
                          const char *endpoint, int64_t value)
{
    if (!self)
        return;
    msgpack_sbuffer meta;
    msgpack_packer pk;
    s_pack_header (self, &meta, &pk, socket, 3);
    s_pack_str (&pk, "event");
    s_pack_str (&pk, event);
    s_pack_str (&pk, "endpoint");
    s_pack_str (&pk, endpoint);
    s_pack_str (&pk, "value");
    msgpack_pack_int64 (&pk, value);
    char topic[96];
    snprintf (topic, sizeof topic, "s:%s", event);
    s_send (self, topic, &meta, NULL);
}

//  ---------------------------------------------------------------------------------------------
//  The tap actor: PULL from every actor's outlet, PUB to the tap endpoint.

//  The envelope as the tap shows it: the body's secret fields redacted (schemas/: secret).
//  An envelope that does not decode (refused input) may hold anything: only its size goes
//  out. NULL when it can go as it is (no secret field in its type).
static zframe_t *s_redacted (zframe_t *envelope)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    zf_error_t err;
    if (zframe_size (envelope) == 0)
        return NULL;
    if (zf_schema_unpack (zframe_data (envelope), zframe_size (envelope), &unpacked, "tap", &err)
            != ZF_OK
        || unpacked.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&unpacked);
        return zframe_new_empty ();
    }
    const msgpack_object_map *map = &unpacked.data.via.map;
    const zf_msg_desc_t *desc = NULL;
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr[index].key, *value = &map->ptr[index].val;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 4
            && memcmp (key->via.str.ptr, "type", 4) == 0 && value->type == MSGPACK_OBJECT_STR)
            desc = zf_schema_find (value->via.str.ptr, value->via.str.size);
    }
    if (desc && !zf_redact_has_secrets (desc->body)) {
        msgpack_unpacked_destroy (&unpacked);
        return NULL;
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, map->size);
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr[index].key, *value = &map->ptr[index].val;
        msgpack_pack_object (&pk, *key);
        bool is_body = key->type == MSGPACK_OBJECT_STR && key->via.str.size == 4
                       && memcmp (key->via.str.ptr, "body", 4) == 0;
        if (is_body && desc)
            zf_redact_pack (desc->body, value, &pk);
        else if (is_body) //  a type we do not know: nothing in it can be judged safe
            msgpack_pack_nil (&pk);
        else
            msgpack_pack_object (&pk, *value);
    }
    zframe_t *redacted = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    msgpack_unpacked_destroy (&unpacked);
    return redacted;
}

//  Redacts a message record's envelope frame (the third) in place.
static void s_redact_record (zmsg_t *record)
{
    if (zmsg_size (record) != 3)
        return; //  a socket event: nothing secret in it
    zframe_t *envelope = zmsg_last (record);
    zframe_t *redacted = s_redacted (envelope);
    if (!redacted)
        return;
    zmsg_remove (record, envelope);
    zframe_destroy (&envelope);
    zmsg_append (record, &redacted);
}

void zf_tap_actor (zsock_t *pipe, void *args)
{
    zf_node_t *node = args;
    const char *endpoint = zf_node_options (node)->tap;
    zsock_t *inbox = zsock_new (ZMQ_PULL);
    zsock_t *outlet = zsock_new (ZMQ_PUB);
    ZF_ASSERT (inbox && outlet);
    zsock_set_rcvhwm (inbox, zf_node_options (node)->tap_hwm);
    zsock_set_sndhwm (outlet, zf_node_options (node)->tap_hwm);
    zsock_signal (pipe, 0);

    zf_error_t err;
    if (zsock_bind (inbox, "%s", zf_node_tap_inbox (node)) != 0) {
        char why[256];
        snprintf (why, sizeof why, "cannot bind %s: %s", zf_node_tap_inbox (node),
                  zmq_strerror (zmq_errno ()));
        zstr_sendx (pipe, "ERROR", why, NULL);
        goto done;
    }
    if (zf_node_bind (node, outlet, endpoint, &err) != ZF_OK) {
        zf_error_prefix (&err, "[node] tap");
        zstr_sendx (pipe, "ERROR", err.message, NULL);
        goto done;
    }
    zf_notice ("tap", "publishing bus traffic on %s", endpoint);
    zstr_send (pipe, "OK");

    zpoller_t *poller = zpoller_new (pipe, inbox, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == inbox) {
            zmsg_t *record = zmsg_recv (inbox);
            if (record && !zf_node_options (node)->tap_secrets)
                s_redact_record (record);
            //  PUB drops by itself at its high-water mark; it never blocks.
            if (record)
                zmsg_send (&record, outlet);
        } else if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool stop = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (stop)
                break;
        } else
            break;
    }
    zpoller_destroy (&poller);
done:
    zsock_destroy (&inbox);
    zsock_destroy (&outlet);
}
