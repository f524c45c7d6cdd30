/*  zf_rest.h — a JSON API server whose handlers run on an actor's own thread.

    The manager's REST API (/api/v1/…) and the endpoints other modules add to it (preheat's
    /api/v1/jobs, Harbor's /healthy and /oapi/v1/jobs, …) register routes in one table:

        zf_rest_route (rest, "GET", "/api/v1/hosts/{id}", ZF_REST_READ, s_host_get, self);

    libmicrohttpd reads requests on its own thread; once a request is complete (headers, query,
    body up to ZF_REST_BODY_MAX) its connection is suspended and the request is handed to the
    owner's zloop (zf_rest_attach), where it is routed, authenticated and given to the handler.
    So handlers run on the thread that owns the database and the bus, with no lock in sight.
    A handler answers exactly once with zf_rest_reply_*: at once, or later from the same
    thread (after a bus reply, say) — a request is never dropped, and zf_rest_destroy answers
    any still open with 503.

    Access. Every route says who may call it: ZF_REST_PUBLIC (anyone), ZF_REST_READ (any valid
    bearer token) or ZF_REST_WRITE (a token that may change things). The auth callback turns
    `Authorization: Bearer TOKEN` into the access it grants; no token or an unknown one is 401
    with `WWW-Authenticate: Bearer`, a read-only token on a write route is 403. Errors are JSON
    {"code": "...", "message": "..."}; unknown paths are 404, a known path with another method
    405 with Allow. Every answer is counted in zfly_api_requests_total{route,method,code}, the
    route being the pattern, so the label set is bounded by the table. */
#ifndef ZF_REST_H_INCLUDED
#define ZF_REST_H_INCLUDED

#include "zf_error.h"
#include <jansson.h>

#define ZF_REST_BODY_MAX     (1024 * 1024) //  request bodies beyond this are refused (413)
#define ZF_REST_PARAMS_MAX   4             //  {name} segments in one pattern
#define ZF_REST_PER_PAGE     50            //  default page size of lists
#define ZF_REST_PER_PAGE_MAX 1000

typedef struct zf_rest_s zf_rest_t;
typedef struct zf_rest_request_s zf_rest_request_t;

typedef enum {
    ZF_REST_NONE = 0,   //  (auth result) no valid token
    ZF_REST_PUBLIC = 1, //  (route) no token needed
    ZF_REST_READ = 2,   //  any valid token
    ZF_REST_WRITE = 3,  //  a token that may write
} zf_rest_access_t;

typedef void (zf_rest_handler_fn) (zf_rest_request_t *request, void *arg);

//  Returns the access a bearer token grants (ZF_REST_NONE when it is unknown, expired or
//  revoked) and may name who it is in principal (for logs and handlers). Runs on the owner's
//  thread.
typedef zf_rest_access_t (zf_rest_auth_fn) (const char *token, char *principal,
                                            size_t principal_size, void *arg);

//  listen: "HOST:PORT" as zf_http_new takes it (numeric host; port 0 picks a free one).
zf_rest_t *zf_rest_new (const char *listen, zf_error_t *err);
//  Answers open requests with 503, then stops the server. Call from the owner's thread.
void zf_rest_destroy (zf_rest_t **self_p);
int zf_rest_port (zf_rest_t *self);

//  Registers a route. pattern is an absolute path whose segments are literal or {name} (one
//  non-empty segment, read with zf_rest_param); "GET" routes also answer HEAD. Registering the
//  same method and pattern twice is a programming error.
void zf_rest_route (zf_rest_t *self, const char *method, const char *pattern,
                    zf_rest_access_t access, zf_rest_handler_fn *handler, void *arg);
void zf_rest_set_auth (zf_rest_t *self, zf_rest_auth_fn *auth, void *arg);
//  Requests are dispatched on this loop's thread from now on.
void zf_rest_attach (zf_rest_t *self, zloop_t *loop);

//  The request, valid until it is answered.
const char *zf_rest_method (zf_rest_request_t *request);
const char *zf_rest_path (zf_rest_request_t *request);
//  The route's pattern ("/api/v1/hosts/{id}").
const char *zf_rest_route_pattern (zf_rest_request_t *request);
//  A {name} segment of the path, or NULL.
const char *zf_rest_param (zf_rest_request_t *request, const char *name);
//  A query argument (the first when repeated), or NULL.
const char *zf_rest_query (zf_rest_request_t *request, const char *name);
//  A request header, case-insensitive, or NULL.
const char *zf_rest_header (zf_rest_request_t *request, const char *name);
const char *zf_rest_body (zf_rest_request_t *request, size_t *size);
//  Who the token belongs to ("" for public routes), and the access it was granted.
const char *zf_rest_principal (zf_rest_request_t *request);
zf_rest_access_t zf_rest_granted (zf_rest_request_t *request);
//  The client's address ("127.0.0.1").
const char *zf_rest_peer (zf_rest_request_t *request);

//  The body as a JSON object. On failure (none, not JSON, not an object, too deep) it answers
//  400 itself with what is wrong and returns NULL: the handler just returns.
json_t *zf_rest_json_body (zf_rest_request_t *request);
//  page and per_page from the query (defaults 1 and ZF_REST_PER_PAGE); answers 400 and returns
//  false on values that are not numbers in range.
bool zf_rest_page (zf_rest_request_t *request, int64_t *page, int64_t *per_page);
//  A {name} segment as a positive integer; answers 404 and returns false otherwise.
bool zf_rest_param_id (zf_rest_request_t *request, const char *name, int64_t *id);

//  Answers. Each takes what it is given; the request is gone afterwards.
void zf_rest_reply_json (zf_rest_request_t *request, unsigned int status, json_t *body);
void zf_rest_reply_error (zf_rest_request_t *request, unsigned int status, const char *code,
                          const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));
void zf_rest_reply_text (zf_rest_request_t *request, unsigned int status, const char *content_type,
                         const char *body, size_t size);
//  Adds a response header before the answer (at most 8).
void zf_rest_add_header (zf_rest_request_t *request, const char *name, const char *value);

//  A page of a list: {"items": [...], "page": P, "per_page": N, "total": T}; takes items.
json_t *zf_rest_page_json (json_t *items, int64_t page, int64_t per_page, int64_t total);

void zf_rest_test (bool verbose);

#endif
