/*  zf_proxy_p2p.h — a blob (or a file a rule names) answered peer to peer, from the local
    cache as the task arrives.

    A task reader (bus/zf_task_reader.h) asks the fetcher for the task (the blob digest
    keys it, else the URL; the client's Authorization and Accept go along, for the origin and
    for the fetcher's access check) and reads its pieces in order as storage finishes them.
    The head goes out as soon as the length is known, and the client gets bytes while the
    download runs. A Range is served from the pieces that cover it, 206 with Content-Range
    (416 past the end). Plain-HTTP clients get pieces from storage's data file with sendfile
    (piece.locate, file ranges in the output queue, up to LOCATE_AHEAD pieces beyond the one
    being sent); TLS clients need the bytes in memory to encrypt them and read pieces over
    the bus. A piece the fetcher is still filling from the origin is not waited for: its
    bytes come from the fetcher's buffer as they arrive (piece.peek) and go out at once.
    Those bytes are checked against the blob digest only when the task completes, so a
    response that ends with the blob's last byte holds that byte until the fetcher said
    "complete": a digest mismatch closes the connection one byte short, and a client never
    has a whole body of wrong bytes.

    A failure before the head (the fetcher refused, the task failed, the fetcher's access
    check found the client may not read the blob) tells the owner to answer directly: a pull
    never fails because P2P did, and a client the registry refuses gets the registry's own
    answer (401 with its WWW-Authenticate challenge, 403, 404). A failure after the head
    tells the owner to close the connection, so the client retries. */
#ifndef ZF_PROXY_P2P_H_INCLUDED
#define ZF_PROXY_P2P_H_INCLUDED

#include "zf_proxy_files.h"
#include "zf_proxy_out.h"
#include "zf_proxy_request.h"
#include "zf_task_reader.h"

typedef struct zf_proxy_p2p_s zf_proxy_p2p_t;

typedef struct {
    const char *digest;        //  "sha256:…" from the URL, "" when it names none
    const char *authorization; //  the client's header, or NULL
    const char *accept;        //  the client's header, or NULL
    const char *range;         //  the client's header, or NULL
    bool sendfile;             //  a plain-HTTP client: pieces go from storage's files
} zf_proxy_p2p_params_t;

typedef enum {
    ZF_PROXY_P2P_HEAD,     //  the head was queued: worth sending at once
    ZF_PROXY_P2P_MORE,     //  body bytes were queued
    ZF_PROXY_P2P_DONE,     //  the response is queued whole
    ZF_PROXY_P2P_FALLBACK, //  nothing was queued: answer this request directly (why says why)
    ZF_PROXY_P2P_DENIED,   //  the same, because the origin refused this client (why says how)
    ZF_PROXY_P2P_ABORTED,  //  failed after the head: close the connection (why says why)
} zf_proxy_p2p_event_t;

//  The owner may destroy the exchange from inside the callback.
typedef void (zf_proxy_p2p_fn) (zf_proxy_p2p_t *p2p, zf_proxy_p2p_event_t event, const char *why,
                                void *arg);

//  Starts the exchange; NULL with err when task.fetch could not even be sent (answer
//  directly). request, out and files are borrowed until the exchange is destroyed.
zf_proxy_p2p_t *zf_proxy_p2p_new (zf_task_readers_t *readers, zf_proxy_files_t *files,
                                  zf_proxy_request_t *request, const zf_proxy_p2p_params_t *params,
                                  zf_proxy_out_t *out, zf_proxy_p2p_fn *callback, void *arg,
                                  zf_error_t *err);
void zf_proxy_p2p_destroy (zf_proxy_p2p_t **self_p);

//  The client took bytes: more pieces may be queued.
void zf_proxy_p2p_drained (zf_proxy_p2p_t *self);

//  The first 16 characters of the task id, for logs ("" before the fetcher named it).
const char *zf_proxy_p2p_task (zf_proxy_p2p_t *self);

void zf_proxy_p2p_test (bool verbose);

#endif
