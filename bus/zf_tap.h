/*  zf_tap.h — mirror bus traffic and socket events to a tap endpoint for zfly-tap.

    When [node] tap is set, every zf_bus_t owns a zf_tap_t: a PUSH socket into the process's
    tap actor, which republishes on a PUB bound at the tap endpoint. Mirroring never blocks an
    actor: when the tap queue is full the record is dropped and counted
    (zfly_tap_dropped_total). Raw frames are not mirrored, only their sizes.

    Tap records (what zfly-tap reads), multipart:
      frame 1  topic: "m:" TYPE for a message ("m:?" when the type could not be read),
               "s:" EVENT for a socket event ("s:connected", "s:disconnected", …)
      frame 2  msgpack map of metadata: time_ms, node, actor, socket ("router", "pub",
               "dealer:NAME", "sub:NAME"); for messages dir ("in"/"out"), raw (array of frame
               sizes), refused (reason, only for refused input); for events endpoint, value
      frame 3  for messages only: the envelope bytes as on the wire, except that fields marked
               secret in schemas/ (credentials) are redacted ("Bearer <redacted, 21 bytes,
               sha256:ab12…>"; zf_redact.h) unless [node] tap_secrets = true, an envelope
               of a type the schemas do not know has its body replaced by nil, and one that
               does not decode at all is left out (an empty frame) */
#ifndef ZF_TAP_H_INCLUDED
#define ZF_TAP_H_INCLUDED

#include "zf_node.h"

typedef struct zf_tap_s zf_tap_t;

//  NULL when the node has no tap configured.
zf_tap_t *zf_tap_new (zf_node_t *node, const char *actor);
void zf_tap_destroy (zf_tap_t **self_p);

void zf_tap_message (zf_tap_t *self, const char *dir, const char *socket, const char *type,
                     zframe_t *envelope, zmsg_t *raw, const char *refused);
void zf_tap_socket_event (zf_tap_t *self, const char *socket, const char *event,
                          const char *endpoint, int64_t value);

//  The process's tap actor: args is the zf_node_t. Answers "OK" or "ERROR why" on the pipe
//  after the signal, like the other fallible actors.
void zf_tap_actor (zsock_t *pipe, void *args);

#endif
