/*  zf_auth.h — the ZAP handler: decides which CURVE clients may talk to this process.

    libzmq asks a ZAP handler at inproc://zeromq.zap.01 about every handshake on a socket with
    a ZAP domain. We answer ourselves rather than use zauth so that each refusal is logged with
    the client's key and address and counted in zfly_bus_auth_refused_total. A client is
    accepted when its public key is in the allow-list directory (zcert public files, reloaded
    when the directory changes), is the node's own key, or is one of the cluster's members
    the manager announced (zf_node_is_member); a key the manager revoked is refused even when
    the allow directory has it. Sockets bound in the open domain (ZF_NODE_OPEN_DOMAIN: the
    manager's join endpoint) accept any CURVE key and leave the decision to the actor. Other
    mechanisms (NULL, PLAIN) are refused: a CURVE server never accepts them anyway, this is belt
    and braces. */
#ifndef ZF_AUTH_H_INCLUDED
#define ZF_AUTH_H_INCLUDED

#include "zf_node.h"

typedef struct {
    const char *allow_dir; //  may be NULL: only own_key is accepted
    const char *own_key;   //  Z85 public key of this node, may be NULL
    zf_node_t *node;       //  members and revoked keys; may be NULL
} zf_auth_args_t;

//  zactor body; args is a zf_auth_args_t, borrowed until the actor signals the pipe.
//  After the signal it answers "OK" or "ERROR <why>" on the pipe once (bind of the ZAP
//  endpoint may fail if another handler runs in the process).
void zf_auth_actor (zsock_t *pipe, void *args);

#endif
