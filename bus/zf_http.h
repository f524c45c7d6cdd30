/*  zf_http.h — the small HTTP endpoint every zfly process serves (libmicrohttpd underneath).

    GET /healthz : 200 "ok\n" once the daemon reported ready, 503 "starting\n" or
                   "stopping\n" otherwise.
    GET /metrics : zf_metrics_render () as text/plain; version=0.0.4.
    Anything else: 404; methods other than GET/HEAD on those two paths: 405 with Allow.
    HEAD answers like GET without the body. Every answer is counted in
    zfly_http_requests_total{path="/healthz"|"/metrics"|"other",code}.

    libmicrohttpd serves from its own thread (at most 64 connections, idle ones closed after
    10 s); the setters below are atomic and may be called from any thread. Destroy the server
    before zf_metrics_shutdown. */
#ifndef ZF_HTTP_H_INCLUDED
#define ZF_HTTP_H_INCLUDED

#include "zf_error.h"
#include "zf_log.h"

typedef struct zf_http_s zf_http_t;

//  listen: "HOST:PORT" ("127.0.0.1:65080", "[::1]:65080", "0.0.0.0:0" for any free port),
//  numeric hosts only. On failure returns NULL with err filled: ZF_E_CONFIG for a malformed
//  address, ZF_E_IO with the system's reason when the port cannot be bound ("cannot listen on
//  127.0.0.1:65080: bind: Address already in use"); err->where is the listen string.
zf_http_t *zf_http_new (const char *listen, zf_error_t *err);
void zf_http_destroy (zf_http_t **self_p);

//  A listening TCP socket (non-blocking, close-on-exec) for "HOST:PORT" as above, for other
//  libmicrohttpd servers (zf_rest); *port gets the bound port. Returns -1 with err filled.
int zf_http_listen_socket (const char *listen, int *port, zf_error_t *err);

//  libmicrohttpd's error log (MHD_OPTION_EXTERNAL_LOGGER) as rate-limited warnings of the
//  subsystem named by its zf_http_log_t (the logger's cls), one per server kind:
//      static zf_http_log_t s_log = ZF_HTTP_LOG_INIT ("api");
//      ... MHD_OPTION_EXTERNAL_LOGGER, zf_http_mhd_log, &s_log, ...
typedef struct {
    const char *subsystem;
    zf_ratelimit_t limit;
} zf_http_log_t;
#define ZF_HTTP_LOG_INIT(subsystem_)                                                               \
    {                                                                                              \
        (subsystem_), ZF_RATELIMIT_INIT (10, 60000)                                                \
    }
void zf_http_mhd_log (void *cls, const char *fmt, va_list args)
    __attribute__ ((format (printf, 2, 0)));

//  The bound port (useful when listen asked for port 0).
int zf_http_port (zf_http_t *self);

//  /healthz turns 200 once ready; set_ready (false) turns it back to 503 "starting". Stopping
//  is final: a later set_ready does not undo it.
void zf_http_set_ready (zf_http_t *self, bool ready);
void zf_http_set_stopping (zf_http_t *self);

void zf_http_test (bool verbose);

#endif
