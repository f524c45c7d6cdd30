/*  zf_proxy.h — the proxy actor: container runtimes' HTTP door into zfly.

    One thread, one zloop, non-blocking sockets: hundreds of client connections and their
    upstream transfers (libcurl multi on the same loop) without a thread each. Three ways in:
      - forward HTTP proxy: absolute-form requests (`GET http://host/v2/… HTTP/1.1`);
      - registry mirror: origin-form `/v2/…` requests; the upstream is the X-Dragonfly-Registry
        header, else containerd's `ns` query parameter, else default_registry (registry_map
        turns docker.io into registry-1.docker.io);
      - CONNECT: hosts matching `hijack` get TLS interception (leaf certificates signed by
        ca_cert/ca_key) and their requests are routed like the others; other hosts get a blind
        tunnel.
    Rules (rule1..rule16, first match wins, on the upstream URL): `REGEX p2p|direct
    [use_https]`. Without rules: blobs by sha256 digest go to P2P, everything else direct. A
    request header `X-Zfly-Route: p2p|direct` overrides the rules.

    Direct: Accept, Authorization, Range and every other end-to-end header go upstream; the
    answer (401 and WWW-Authenticate included) comes back as it is, streamed with
    backpressure. Redirects are followed by the node; libcurl drops Authorization on a hop to
    another host. P2P (GET of a blob): task.fetch to the local fetcher, then the pieces are
    sent in order from local storage as they finish (a Range is served from the pieces that
    cover it, 206 with Content-Range): to plain-HTTP clients with sendfile from storage's data
    file (piece.locate, zf_proxy_out.h), to TLS clients from the piece.read frame. A P2P
    failure before the first byte falls back to direct; after it, the client connection is
    closed so the client retries. */
#ifndef ZF_PROXY_H_INCLUDED
#define ZF_PROXY_H_INCLUDED

#include "zf_actor.h"

#define ZF_PROXY_RULES_MAX 16

typedef struct {
    char *listen;                    //  HOST:PORT for clients
    char *fetcher;                   //  name of the local fetcher actor, "" for no P2P
    char *storage;                   //  name of the local storage actor
    char *rules[ZF_PROXY_RULES_MAX]; //  rule1..rule16
    char *default_registry;          //  upstream of mirror requests without header or ns
    char *registry_map;              //  "NAME=HOST …": registry names to the hosts serving them
    char *hosts;             //  "NAME=ADDR:PORT …": connect NAME to ADDR:PORT (tests, split DNS)
    char *hijack;            //  extended regex on CONNECT host names to intercept; "" none
    char *ca_cert;           //  PEM CA certificate signing leaf certificates
    char *ca_key;            //  its PEM private key
    char *upstream_ca;       //  CA bundle for upstream TLS; "" for the system's
    int64_t max_connections; //  clients at once; more are answered 503 and closed
    uint64_t header_max;     //  request line + headers, bytes
    uint64_t body_max;       //  request body kept in memory, bytes
    int64_t header_timeout_ms;  //  a request head must arrive within this
    int64_t client_timeout_ms;  //  idle keep-alive or stalled client, then close
    int64_t connect_timeout_ms; //  upstream connect
    int64_t p2p_poll_ms;        //  how often a streaming P2P request looks at new pieces
} zf_proxy_config_t;

extern const zf_config_section_t zf_proxy_section;

void zf_proxy_actor (zsock_t *pipe, void *args);

//  Rule parsing and matching, exposed for the selftest.
void zf_proxy_test (bool verbose);

#endif
