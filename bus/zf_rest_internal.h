/*  zf_rest_internal.h — the request as the parts of the REST server share it.

    zf_rest.h is one class in three files: zf_rest.c runs the server (libmicrohttpd's thread,
    the hand-over to the owner's loop, routing, auth, answers), zf_rest_request.c is what a
    handler reads from a request, and zf_rest_test.c its selftest. This header holds the request
    (and the route it matched), which both of the first two touch. Every field is zf_rest.c's:
    it fills the request from libmicrohttpd, routes and authorizes it, hands it to the owner
    and sets the answer (zf_rest_reply_*, zf_rest_add_header); zf_rest_request.c only reads
    it, on the owner's thread inside a handler. */
#ifndef ZF_REST_INTERNAL_H_INCLUDED
#define ZF_REST_INTERNAL_H_INCLUDED

#include "zf_rest.h"
#include <arpa/inet.h>

#define ZF_REST_HEADERS_OUT_MAX 8
#define ZF_REST_SEGMENTS_MAX    16

typedef struct {
    char *name;
    char *value;
} zf_rest_pair_t;

typedef struct {
    char *method;
    char *pattern;
    char *segments[ZF_REST_SEGMENTS_MAX];
    size_t segment_count;
    zf_rest_access_t access;
    zf_rest_handler_fn *handler;
    void *arg;
} zf_rest_route_entry_t;

typedef enum {
    ZF_REST_READING,  //  libmicrohttpd is reading it
    ZF_REST_QUEUED,   //  handed to the owner (connection suspended)
    ZF_REST_ANSWERED, //  the answer is set; libmicrohttpd sends it
} zf_rest_request_state_t;

struct zf_rest_request_s {
    zf_rest_t *rest;
    struct MHD_Connection *connection;
    zf_rest_request_state_t state;
    char *method;
    char *path;
    zf_rest_pair_t *headers;
    size_t header_count;
    zf_rest_pair_t *args;
    size_t arg_count;
    zf_rest_pair_t params[ZF_REST_PARAMS_MAX];
    size_t param_count;
    char *body;
    size_t body_size;
    bool too_large;
    char peer[INET6_ADDRSTRLEN];
    const zf_rest_route_entry_t *route;
    char principal[128];
    zf_rest_access_t granted;
    void *open_handle; //  in rest->open while the owner holds it
    bool drained;      //  answered by zf_rest_destroy: counted in rest->draining
    int64_t started_us;
    //  the answer
    unsigned int status;
    char *content_type;
    char *answer;
    size_t answer_size;
    zf_rest_pair_t out_headers[ZF_REST_HEADERS_OUT_MAX];
    size_t out_header_count;
};

#endif
