/*  zf_sock.h — socket helpers shared by the bus and the tap. */
#ifndef ZF_SOCK_H_INCLUDED
#define ZF_SOCK_H_INCLUDED

#include "zf_error.h"

//  Sends every frame of *msg_p without blocking and destroys the message either way.
//  libzmq checks the high-water mark on the first frame of a multipart message only, so the
//  message goes whole or not at all. Returns ZF_E_OVERLOAD when the socket's queue is full
//  (or, on a ROUTER, the peer is gone), ZF_E_IO on other errors.
zf_status_t zf_sock_send_nowait (zsock_t *sock, zmsg_t **msg_p);

#endif
