/*  zf_proxy_request.h — what every answer to one client request shares: the request as the
    proxy understood it, and the outcome the answering path fills in (for the log line, the
    connection's keep-alive and the metrics).

    A plain record, made by the proxy for each request and lent to the path that answers it
    (zf_proxy_direct, zf_proxy_p2p); it outlives them. */
#ifndef ZF_PROXY_REQUEST_H_INCLUDED
#define ZF_PROXY_REQUEST_H_INCLUDED

#include "zf_prelude.h"

typedef struct {
    uint64_t id;        //  for logs: "request id=N"
    char *method;       //  "GET", …
    char *url;          //  the upstream URL
    char *path;         //  the path the client asked for (errors, logs)
    bool registry_path; //  /v2/…: errors in OCI distribution's JSON
    bool is_head;
    bool close_after;   //  the connection ends with this response
    int http_minor;     //  the client's HTTP/1.x
    int64_t started_ms; //  monotonic
    //  the outcome
    bool head_sent;
    int status;
    uint64_t body_sent;
} zf_proxy_request_t;

#endif
