/*  zf_node.h — what every actor of one zfly process shares about the bus: the node's name,
    where each actor name lives, the node's CURVE keypair and allow-list, the tap endpoint.

    Built once by the daemon from the INI file before any actor starts, then read-only, so
    actor threads may read it without locks. Names resolve as follows:
      - an actor registered as local -> inproc://zfly/NODE/NAME (and NAME.events),
      - otherwise the [endpoints] entry for the name:
            NAME = ENDPOINT [events=ENDPOINT] [key=Z85-PUBLIC-KEY | cert=PUBLIC-CERT-FILE]
        tcp:// endpoints need the server's public key unless the node is insecure.
    A tcp:// bind is a CURVE server that accepts only keys in the allow-list directory (and the
    node's own key); ipc:// and inproc:// rely on file permissions and the process boundary. */
#ifndef ZF_NODE_H_INCLUDED
#define ZF_NODE_H_INCLUDED

#include "zf_error.h"

typedef struct zf_node_s zf_node_t;

typedef struct {
    const char *name;      //  required: this node's name, unique in the cluster
    const char *cert_path; //  secret certificate from `zfly keygen`; NULL: none (no CURVE)
    const char *allow_dir; //  directory of public certificates allowed to connect
    bool insecure;         //  plain TCP without CURVE: only when asked for explicitly
    int hwm;               //  high-water mark of every bus socket, in messages
    const char *tap;       //  tap PUB endpoint, NULL or "" for none
    int tap_hwm;           //  tap queue bound; beyond it mirrored messages are dropped, counted
    bool tap_secrets;      //  the tap shows secret fields in clear (else redacted)
    int64_t request_timeout_ms; //  default deadline of a request, all attempts together
    int request_retries;        //  default number of resends after a per-attempt timeout
    //  TCP congestion control set on every tcp:// connection ("bbr"); NULL or "": the system's.
    //  BBR paces a sender at the rate the path delivers and keeps the bottleneck's queue short,
    //  so what a node uploads does not delay its own downloads' ACKs and requests.
    const char *congestion;
} zf_node_options_t;

typedef struct {
    const char *name;
    const char *endpoint;   //  requests go here (ROUTER)
    const char *events;     //  events come from here (PUB); may be NULL
    const char *server_key; //  Z85 public key of the node serving it; NULL for local/insecure
    bool local;
    const char *where; //  where a remote route was declared ("FILE:LINE"); NULL when local
} zf_route_t;

zf_node_t *zf_node_new (const zf_node_options_t *options, zf_error_t *err);
void zf_node_destroy (zf_node_t **self_p);

//  Adds a remote route from an [endpoints] line; where is "FILE:LINE" for the error message.
zf_status_t zf_node_add_route (zf_node_t *self, const char *name, const char *spec,
                               const char *where, zf_error_t *err);

//  Declares an actor that runs in this process: its name resolves to inproc endpoints.
void zf_node_add_local (zf_node_t *self, const char *actor);

//  Resolves an actor name; returns ZF_E_UNREACHABLE with a message when nothing is known.
zf_status_t zf_node_resolve (zf_node_t *self, const char *actor, zf_route_t *route,
                             zf_error_t *err);

//  The inproc endpoints of a local actor (owned by the node).
const char *zf_node_inproc_endpoint (zf_node_t *self, const char *actor, bool events);

//  Security applied to sockets:
//  binds a server socket to endpoint, as a CURVE server on tcp:// unless insecure.
zf_status_t zf_node_bind (zf_node_t *self, zsock_t *sock, const char *endpoint, zf_error_t *err);
//  connects a client socket to a route's endpoint (events: the events endpoint).
zf_status_t zf_node_connect (zf_node_t *self, zsock_t *sock, const zf_route_t *route, bool events,
                             zf_error_t *err);

const char *zf_node_name (zf_node_t *self);
const zf_node_options_t *zf_node_options (zf_node_t *self);
//  The inproc endpoint actors push tap records to, or NULL when the node has no tap.
const char *zf_node_tap_inbox (zf_node_t *self);
//  The node's public key in Z85, or NULL without a certificate.
const char *zf_node_public_key (zf_node_t *self);

//  Starts the process-wide ZAP handler that checks CURVE clients against the allow-list. The
//  daemon calls it once before any actor binds; tests with one node per process likewise.
zf_status_t zf_node_start_auth (zf_node_t *self, zf_error_t *err);

void zf_node_test (bool verbose);

#endif
