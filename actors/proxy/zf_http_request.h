/*  zf_http_request.h — HTTP/1.x requests from untrusted clients, on nodejs' http-parser.

    A thin, bounded wrapper: the proxy feeds it whatever bytes arrived, and it says "more",
    "a whole request is here" or "refused, answer STATUS". Bounds: the request line plus all
    headers together at most header_max bytes (431 beyond; 414 when the URL alone is over),
    at most headers_max header lines (431), a body (Content-Length or chunked, decoded) of at
    most body_max bytes (413). Malformed syntax, bad chunk sizes and conflicting lengths are
    http-parser's errors: 400, with its error name as the reason. The parser stops after each
    complete request (pipelining is handled one request at a time: the bytes of the next stay
    with the caller until zf_http_request_next); CONNECT and Upgrade stop it after the head,
    and what follows belongs to the tunnel. */
#ifndef ZF_HTTP_REQUEST_H_INCLUDED
#define ZF_HTTP_REQUEST_H_INCLUDED

#include "zf_prelude.h"

typedef struct zf_http_request_s zf_http_request_t;

typedef struct {
    size_t header_max;  //  request line + headers, bytes
    size_t headers_max; //  header lines
    size_t body_max;    //  decoded body bytes kept
} zf_http_limits_t;

typedef enum {
    ZF_HTTP_MORE = 0,  //  all bytes consumed, request not complete
    ZF_HTTP_DONE = 1,  //  a request is complete; bytes after it were not consumed
    ZF_HTTP_ERROR = 2, //  refused: zf_http_request_error_status and _reason say why
} zf_http_feed_t;

typedef struct {
    const char *name;
    const char *value;
} zf_http_header_t;

zf_http_request_t *zf_http_request_new (const zf_http_limits_t *limits);
void zf_http_request_destroy (zf_http_request_t **self_p);

//  Parses data; *consumed says how many bytes were used (the rest belongs to the next
//  request, or to the tunnel after CONNECT). After DONE or ERROR, further feeds return the
//  same result until zf_http_request_next.
zf_http_feed_t zf_http_request_feed (zf_http_request_t *self, const char *data, size_t size,
                                     size_t *consumed);
//  Forgets the request just served and gets ready for the next one on the connection.
void zf_http_request_next (zf_http_request_t *self);
//  True once any byte of the current request arrived (a connection idle between requests
//  is not "inside a request").
bool zf_http_request_started (zf_http_request_t *self);

int zf_http_request_error_status (zf_http_request_t *self);
const char *zf_http_request_error_reason (zf_http_request_t *self);

//  The complete request (after DONE).
const char *zf_http_request_method (zf_http_request_t *self);
const char *zf_http_request_url (zf_http_request_t *self);
int zf_http_request_version_minor (zf_http_request_t *self);
bool zf_http_request_keep_alive (zf_http_request_t *self);
bool zf_http_request_is_connect (zf_http_request_t *self);
bool zf_http_request_is_upgrade (zf_http_request_t *self);
size_t zf_http_request_header_count (zf_http_request_t *self);
const zf_http_header_t *zf_http_request_header_at (zf_http_request_t *self, size_t index);
//  First header of that name (case-insensitive), or NULL.
const char *zf_http_request_header (zf_http_request_t *self, const char *name);
const char *zf_http_request_body (zf_http_request_t *self, size_t *size);

void zf_http_request_test (bool verbose);

#endif
