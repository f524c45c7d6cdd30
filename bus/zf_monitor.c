/*  zf_monitor.c — socket monitors as PAIR sockets owned by the monitored socket's actor. */
#include "zf_monitor.h"

zsock_t *zf_monitor_attach (zsock_t *sock)
{
    static atomic_uint_fast64_t sequence = 0;
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://zfly-monitor-%" PRIu64,
              (uint64_t) atomic_fetch_add (&sequence, 1));
    int rc = zmq_socket_monitor (zsock_resolve (sock), endpoint, ZMQ_EVENT_ALL);
    ZF_ASSERT (rc == 0);
    zsock_t *pair = zsock_new (ZMQ_PAIR);
    ZF_ASSERT (pair);
    rc = zsock_connect (pair, "%s", endpoint);
    ZF_ASSERT (rc == 0);
    return pair;
}

void zf_monitor_detach (zsock_t *sock, zsock_t **pair_p)
{
    if (!*pair_p)
        return;
    zmq_socket_monitor (zsock_resolve (sock), NULL, 0);
    zsock_set_rcvtimeo (*pair_p, 0);
    zmsg_t *pending;
    while ((pending = zmsg_recv (*pair_p)))
        zmsg_destroy (&pending);
    zsock_destroy (pair_p);
}

//  libzmq 4.3 (v1 monitor format): frame 1 is a 16-bit event and a 32-bit value, native byte
//  order; frame 2 is the endpoint.
bool zf_monitor_read (zsock_t *pair, zf_monitor_event_t *event)
{
    zmsg_t *msg = zmsg_recv (pair);
    if (!msg)
        return false;
    zframe_t *head = zmsg_first (msg);
    zframe_t *where = zmsg_next (msg);
    bool valid = head && zframe_size (head) == 6;
    if (valid) {
        uint16_t number;
        uint32_t value;
        memcpy (&number, zframe_data (head), sizeof number);
        memcpy (&value, zframe_data (head) + 2, sizeof value);
        event->event = number;
        event->value = value;
        event->endpoint[0] = '\0';
        if (where) {
            size_t size = zframe_size (where);
            if (size >= sizeof event->endpoint)
                size = sizeof event->endpoint - 1;
            memcpy (event->endpoint, zframe_data (where), size);
            event->endpoint[size] = '\0';
        }
    }
    zmsg_destroy (&msg);
    return valid;
}

const char *zf_monitor_event_name (int event)
{
    switch (event) {
    case ZMQ_EVENT_CONNECTED: return "connected";
    case ZMQ_EVENT_CONNECT_DELAYED: return "connect_delayed";
    case ZMQ_EVENT_CONNECT_RETRIED: return "connect_retried";
    case ZMQ_EVENT_LISTENING: return "listening";
    case ZMQ_EVENT_BIND_FAILED: return "bind_failed";
    case ZMQ_EVENT_ACCEPTED: return "accepted";
    case ZMQ_EVENT_ACCEPT_FAILED: return "accept_failed";
    case ZMQ_EVENT_CLOSED: return "closed";
    case ZMQ_EVENT_CLOSE_FAILED: return "close_failed";
    case ZMQ_EVENT_DISCONNECTED: return "disconnected";
    case ZMQ_EVENT_MONITOR_STOPPED: return "monitor_stopped";
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return "handshake_failed";
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: return "handshake_succeeded";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: return "handshake_failed_protocol";
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: return "handshake_failed_auth";
    }
    return "unknown";
}
