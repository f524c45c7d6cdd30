/*  zf_node.h — what every actor of one zfly process shares about the bus: the node's name,
    where each actor name lives, the node's CURVE keypair and allow-list, the tap endpoint.

    Built by the daemon from the INI file before any actor starts. What the file says (local
    actors, [endpoints]) is read-only from then on; what the control plane says at run time
    (routes learned from the manager and the scheduler, the cluster's member keys) changes
    under a lock, so every actor thread may resolve names and check keys at any time. Names
    resolve as follows:
      - an actor registered as local -> inproc://zfly/NODE/NAME (and NAME.events),
      - otherwise the [endpoints] entry for the name:
            NAME = ENDPOINT [events=ENDPOINT] [key=Z85-PUBLIC-KEY | cert=PUBLIC-CERT-FILE]
        tcp:// endpoints need the server's public key unless the node is insecure,
      - otherwise a route learned at run time (zf_node_learn_route): a scheduler the manager
        named, a parent's storage the scheduler named, each with its endpoint and key.
    A tcp:// bind is a CURVE server that accepts the keys in the allow-list directory, the
    node's own key and the cluster's current members (zf_node_set_members, from the manager),
    and refuses revoked keys (zf_node_revoke) even on connections made before the revocation;
    ipc:// and inproc:// rely on file permissions and the process boundary. */
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
    //  TCP congestion control set on every tcp:// connection ("cubic"); NULL or "": the
    //  system's. Named, so a host whose default is another algorithm runs what was measured.
    const char *congestion;
} zf_node_options_t;

#define ZF_ENDPOINT_MAX 256 //  "tcp://[fd00::1]:65002" and the like
#define ZF_KEY_TEXT     41  //  a Z85 public key and its NUL

//  A resolved name: copies, so a route learned anew meanwhile cannot pull them away.
typedef struct {
    char name[129];
    char endpoint[ZF_ENDPOINT_MAX]; //  requests go here (ROUTER)
    char events[ZF_ENDPOINT_MAX];   //  events come from here (PUB); "" for none
    char server_key[ZF_KEY_TEXT];   //  Z85 public key of the node serving it; "" local/insecure
    bool local;
    char where[160]; //  where a remote route was declared ("FILE:LINE"); "" local or learned
} zf_route_t;

zf_node_t *zf_node_new (const zf_node_options_t *options, zf_error_t *err);
void zf_node_destroy (zf_node_t **self_p);

//  Adds a remote route from an [endpoints] line; where is "FILE:LINE" for the error message.
zf_status_t zf_node_add_route (zf_node_t *self, const char *name, const char *spec,
                               const char *where, zf_error_t *err);

//  Parses an [endpoints]-style spec without adding it (for routes an actor's own section
//  names, such as [join] manager); the errors are zf_node_add_route's.
zf_status_t zf_node_parse_route (zf_node_t *self, const char *name, const char *spec,
                                 const char *where, zf_route_t *route, zf_error_t *err);

//  Declares an actor that runs in this process: its name resolves to inproc endpoints.
void zf_node_add_local (zf_node_t *self, const char *actor);

//  Learns (or replaces) a route at run time: name -> endpoint, events (may be NULL) and the
//  server's Z85 key (needed for tcp:// unless insecure). Names in [endpoints] and local actors
//  are not replaced (ZF_E_INVALID): the file wins. Safe from any thread; bumps
//  zf_node_routes_version when the route is new or different.
zf_status_t zf_node_learn_route (zf_node_t *self, const char *name, const char *endpoint,
                                 const char *events, const char *key, zf_error_t *err);
//  Counts changes of learned routes; a bus compares it to re-check its connections.
uint64_t zf_node_routes_version (zf_node_t *self);

//  Members: the keys the manager says belong to this node's cluster, admitted like the allow
//  directory. set_members replaces the set; keys that were members and are not any more
//  count as revoked, and are added to `revoked` when it is not NULL (a zlistx whose
//  duplicator copies strings). revoke takes one key out and refuses it from now on, on every
//  socket.
void zf_node_set_members (zf_node_t *self, const char *const *keys, size_t count,
                          zlistx_t *revoked);
void zf_node_add_member (zf_node_t *self, const char *key);
void zf_node_revoke (zf_node_t *self, const char *key);
bool zf_node_is_member (zf_node_t *self, const char *key);
//  Set by the join actor: this node follows a cluster, so a key not (yet) a member may be one
//  the manager is about to name (zf_auth holds its handshake a moment instead of refusing).
void zf_node_follow_cluster (zf_node_t *self);
bool zf_node_follows_cluster (zf_node_t *self);
bool zf_node_is_revoked (zf_node_t *self, const char *key);
size_t zf_node_member_count (zf_node_t *self);

//  What this process offers other nodes, for the join actor to tell the manager: each actor's
//  first tcp:// bind (recorded by zf_bus_new under the actor's name) and flags such as "seed"
//  (set by the fetcher). Safe from any thread; copies value into buffer ("" when unknown).
void zf_node_advertise (zf_node_t *self, const char *what, const char *value);
void zf_node_advertised (zf_node_t *self, const char *what, char *buffer, size_t size);

//  An endpoint as another node should dial it: "tcp://*:P", "tcp://0.0.0.0:P" and
//  "tcp://[::]:P" (every interface of the announcing node) get the address its message came
//  from; anything else is returned as it is. The string is the caller's.
char *zf_node_endpoint_for_peer (const char *endpoint, const char *peer_address);

//  Resolves an actor name; returns ZF_E_UNREACHABLE with a message when nothing is known.
zf_status_t zf_node_resolve (zf_node_t *self, const char *actor, zf_route_t *route,
                             zf_error_t *err);

//  The inproc endpoints of a local actor (owned by the node).
const char *zf_node_inproc_endpoint (zf_node_t *self, const char *actor, bool events);

//  Security applied to sockets:
//  binds a server socket to endpoint, as a CURVE server on tcp:// unless insecure.
zf_status_t zf_node_bind (zf_node_t *self, zsock_t *sock, const char *endpoint, zf_error_t *err);
//  The same, but any CURVE client may connect (the connection is still encrypted and its key
//  proven): for the manager's join endpoint, where the actor decides per message by the key.
#define ZF_NODE_OPEN_DOMAIN "zfly-open"
zf_status_t zf_node_bind_open (zf_node_t *self, zsock_t *sock, const char *endpoint,
                               zf_error_t *err);
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
