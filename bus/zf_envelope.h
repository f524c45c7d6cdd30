/*  zf_envelope.h — the one envelope every bus message travels in.

    Wire form: frame 1 is a msgpack map
        { "type": str, "v": uint, "id": uint, "from": str, ["to": str], ["re": uint], "body": map }
    and any further ZeroMQ frames are raw bulk bytes (a piece), never inside msgpack, so they
    are never copied to be encoded. "re" is set on replies: the id of the request answered.
    An error reply is an ordinary message of type "error" (schemas/core.schema).

    Decoding refuses, each with its own code and a message naming the field: a frame over
    ZF_ENVELOPE_MAX, truncated msgpack, trailing bytes, a non-map, missing or mistyped envelope
    keys, an unknown type, a newer schema version, and any body error (schema decoder). */
#ifndef ZF_ENVELOPE_H_INCLUDED
#define ZF_ENVELOPE_H_INCLUDED

#include "zf_schema.h"

#define ZF_ENVELOPE_MAX (1024 * 1024) //  bytes of frame 1; bulk data goes in raw frames
#define ZF_TYPE_MAX     64            //  "piece.request"
#define ZF_NAME_MAX     128           //  "storage@edge-7"

typedef struct {
    char type[ZF_TYPE_MAX + 1];
    uint32_t version;
    uint64_t id;
    uint64_t re; //  0 unless this is a reply
    char from[ZF_NAME_MAX + 1];
    char to[ZF_NAME_MAX + 1]; //  "" when not addressed (events)
    const zf_msg_desc_t *desc;
    void *body; //  decoded body struct of desc->body, heap, owned by the envelope
} zf_envelope_t;

//  Encodes header fields and body (of type desc->body) into a new frame. to NULL or "" and re 0
//  are left out of the map. The body is validated first (errors say "body.FIELD"), and from/to
//  get the checks the decoder applies; on failure returns NULL and fills err.
zframe_t *zf_envelope_encode (const zf_msg_desc_t *desc, uint64_t id, uint64_t re, const char *from,
                              const char *to, const void *body, zf_error_t *err);

//  Decodes frame bytes into env (zeroed by the call). On failure env holds nothing to free,
//  but env->type/from/id keep whatever was read before the error, for the log line.
zf_status_t zf_envelope_decode (const uint8_t *data, size_t size, zf_envelope_t *env,
                                zf_error_t *err);

//  Frees the body; safe on a zeroed or failed envelope.
void zf_envelope_clear (zf_envelope_t *env);

void zf_envelope_test (bool verbose);

#endif
