/*  zf_monitor.h — ZeroMQ socket-monitor events read inside the owning actor's loop.

    zmq_socket_monitor publishes a socket's events on an inproc PAIR; attaching one to each bus
    socket lets the bus log disconnects, count handshake failures and mirror events to the tap
    without a monitor thread per socket (czmq's zmonitor would start one each). */
#ifndef ZF_MONITOR_H_INCLUDED
#define ZF_MONITOR_H_INCLUDED

#include "zf_prelude.h"

typedef struct {
    int event;          //  ZMQ_EVENT_*
    int64_t value;      //  fd, errno, reconnect interval or ZAP status, by event
    char endpoint[256]; //  local or remote endpoint the event is about
} zf_monitor_event_t;

//  Starts monitoring sock; returns the PAIR socket to read events from (caller owns it).
zsock_t *zf_monitor_attach (zsock_t *sock);

//  Stops monitoring sock and destroys *pair_p, draining events still queued on it: libzmq
//  leaks a monitor event that is left in flight when either end closes first.
void zf_monitor_detach (zsock_t *sock, zsock_t **pair_p);

//  Reads one event; false when the frames were not a monitor event.
bool zf_monitor_read (zsock_t *pair, zf_monitor_event_t *event);

//  "connected", "disconnected", "handshake_failed_auth", … (lowercase, stable: used in taps
//  and as a metrics label).
const char *zf_monitor_event_name (int event);

#endif
