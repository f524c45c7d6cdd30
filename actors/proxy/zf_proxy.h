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
    Rules (`rule = REGEX p2p|direct [use_https]`, repeatable, first match wins, on the upstream
    URL; zf_proxy_rules.h): without rules, blobs by sha256 digest go to P2P, everything else
    direct. A request header `X-Zfly-Route: p2p|direct` overrides the rules.

    The parts, each a class the actor calls (one way; they answer through callbacks):
      zf_proxy_conn     a client connection's bytes: socket, TLS, input, output queue
      zf_proxy_rules    the upstream URL and the route of a request
      zf_proxy_direct   a request answered straight from upstream (libcurl)
      zf_proxy_p2p      a blob answered from the local cache as the task arrives
                        (bus/zf_task_reader.h), falling back to direct before the first byte
      zf_proxy_tunnel   a blind CONNECT tunnel
    This file is the actor: configuration, the listener, each connection's requests in turn
    (one exchange at a time, pipelined requests wait), timeouts. How upstream is reached
    (hosts, CA, connect timeout) is [upstream]'s (zf_upstream.h), shared with the fetcher. */
#ifndef ZF_PROXY_H_INCLUDED
#define ZF_PROXY_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *listen;                  //  HOST:PORT for clients
    char *fetcher;                 //  name of the local fetcher actor, "" for no P2P
    char *storage;                 //  name of the local storage actor
    zf_config_list_t rules;        //  "REGEX p2p|direct [use_https]", in order
    char *default_registry;        //  upstream of mirror requests without header or ns
    zf_config_list_t registry_map; //  "NAME=HOST …": registry names to the hosts serving them
    char *hijack;                  //  extended regex on CONNECT host names to intercept; "" none
    char *ca_cert;                 //  PEM CA certificate signing leaf certificates
    char *ca_key;                  //  its PEM private key
    int64_t max_connections;       //  clients at once; more are answered 503 and closed
    uint64_t header_max;           //  request line + headers, bytes
    uint64_t body_max;             //  request body kept in memory, bytes
    int64_t header_timeout_ms;     //  a request head must arrive within this
    int64_t client_timeout_ms;     //  idle keep-alive or stalled client, then close
    int64_t p2p_poll_ms;           //  how often a P2P response asks a storage that does not hold
} zf_proxy_config_t;

extern const zf_config_section_t zf_proxy_section;

void zf_proxy_actor (zsock_t *pipe, void *args);

//  The selftests of the parts that can be tested without sockets.
void zf_proxy_test (bool verbose);

#endif
