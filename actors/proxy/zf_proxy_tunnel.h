/*  zf_proxy_tunnel.h — a blind CONNECT tunnel: bytes both ways between a client and the host
    it named, for hosts not intercepted (no hijack rule matches them).

    The tunnel takes over the client connection's socket from the proxy: it watches both
    sockets, moves the client's bytes (the connection's input buffer) upstream and upstream's
    bytes into the connection's output queue, each side bounded, and answers the CONNECT with
    200 once the upstream connection is up. [upstream] hosts can point a name elsewhere. */
#ifndef ZF_PROXY_TUNNEL_H_INCLUDED
#define ZF_PROXY_TUNNEL_H_INCLUDED

#include "zf_proxy_conn.h"
#include "zf_upstream.h"

typedef struct zf_proxy_tunnel_s zf_proxy_tunnel_t;

typedef enum {
    ZF_PROXY_TUNNEL_UNREACHABLE, //  the connection to upstream failed: answer 502 and close
    ZF_PROXY_TUNNEL_CLOSED,      //  the tunnel is over (either side): close the client
} zf_proxy_tunnel_event_t;

//  The owner may destroy the tunnel from inside the callback (it is the last thing done).
typedef void (zf_proxy_tunnel_fn) (zf_proxy_tunnel_t *tunnel, zf_proxy_tunnel_event_t event,
                                   const char *why, void *arg);

//  Starts connecting to host:port; NULL with err when that fails at once (answer 502). The
//  owner must stop watching the client's socket: the tunnel does from now on. conn is
//  borrowed until the tunnel is destroyed.
zf_proxy_tunnel_t *zf_proxy_tunnel_new (zloop_t *loop, zf_proxy_conn_t *conn, const char *host,
                                        const char *port, const zf_upstream_config_t *upstream,
                                        zf_proxy_tunnel_fn *callback, void *arg, zf_error_t *err);
//  Stops watching both sockets and closes the upstream one.
void zf_proxy_tunnel_destroy (zf_proxy_tunnel_t **self_p);

//  "host" and "port" of an authority ("host[:port]", "[v6]:port"; the port defaults to 443).
bool zf_proxy_split_authority (const char *authority, char *host, size_t host_size, char *port,
                               size_t port_size);

void zf_proxy_tunnel_test (bool verbose);

#endif
