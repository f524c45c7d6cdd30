/*  zf_proxy_direct.h — a request answered straight from upstream, with libcurl.

    End-to-end headers go as the client sent them (Accept, Authorization, Range, …); the
    answer (401 and WWW-Authenticate included) comes back as it is, streamed into the
    connection's output queue with backpressure: the transfer pauses while more than
    OUT_HIGH bytes wait for the client and goes on when zf_proxy_direct_drained says the
    queue went down. Redirects are followed by the node; libcurl drops Authorization on a hop
    to another host. A failure before the head is answered 502 (504 on a timeout) with the
    reason; after it, the owner is told to close the connection so the client retries. */
#ifndef ZF_PROXY_DIRECT_H_INCLUDED
#define ZF_PROXY_DIRECT_H_INCLUDED

#include "zf_curl_loop.h"
#include "zf_http_request.h"
#include "zf_proxy_out.h"
#include "zf_proxy_request.h"

typedef struct zf_proxy_direct_s zf_proxy_direct_t;

//  How upstream is reached (from [upstream]); borrowed for the life of every transfer.
typedef struct {
    zf_curl_loop_t *curl;
    struct curl_slist *connect_to; //  hosts as CURLOPT_CONNECT_TO, may be NULL
    const char *ca;                //  CA bundle, "" for the system's
    int64_t connect_timeout_ms;
} zf_proxy_upstream_t;

typedef enum {
    ZF_PROXY_DIRECT_MORE,    //  bytes were queued: let the client's socket take them
    ZF_PROXY_DIRECT_DONE,    //  the response is queued whole (an error response too)
    ZF_PROXY_DIRECT_ABORTED, //  upstream failed after the head: close the connection
} zf_proxy_direct_event_t;

//  MORE comes from inside curl's callbacks: the owner must not destroy the transfer then.
//  DONE and ABORTED come last: the owner may destroy it in the callback.
typedef void (zf_proxy_direct_fn) (zf_proxy_direct_t *direct, zf_proxy_direct_event_t event,
                                   void *arg);

//  Starts the transfer for request (headers and body from req, which only needs to live
//  until this returns). request and out are borrowed until the transfer is destroyed.
zf_proxy_direct_t *zf_proxy_direct_new (const zf_proxy_upstream_t *upstream,
                                        zf_proxy_request_t *request, zf_http_request_t *req,
                                        zf_proxy_out_t *out, zf_proxy_direct_fn *callback,
                                        void *arg);
void zf_proxy_direct_destroy (zf_proxy_direct_t **self_p);

//  The output queue went down: a paused transfer goes on.
void zf_proxy_direct_drained (zf_proxy_direct_t *self);

//  The curl loop's done callback hands finished transfers here (easy_private is the
//  zf_proxy_direct_t).
void zf_proxy_direct_curl_done (CURL *easy, CURLcode result, void *easy_private);

#endif
