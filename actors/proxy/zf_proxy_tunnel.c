/*  zf_proxy_tunnel.c — a blind CONNECT tunnel (see zf_proxy_tunnel.h). */
#include "zf_proxy_tunnel.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#define TUNNEL_OUT 65536 //  upstream->client bytes queued before upstream is read again

struct zf_proxy_tunnel_s {
    zloop_t *loop;
    zf_proxy_conn_t *conn;
    zf_proxy_tunnel_fn *callback;
    void *arg;
    int client_events; //  what zloop watches on the client's socket, -1 nothing
    int fd;            //  upstream
    int fd_events;
    bool connecting;
    bool upstream_eof;
    char *target; //  "host:port", for logs
};

bool zf_proxy_split_authority (const char *authority, char *host, size_t host_size, char *port,
                               size_t port_size)
{
    const char *colon;
    if (*authority == '[') {
        const char *close = strchr (authority, ']');
        if (!close || (size_t) (close - authority) >= host_size)
            return false;
        memcpy (host, authority + 1, (size_t) (close - authority - 1));
        host[close - authority - 1] = 0;
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr (authority, ':');
        size_t length = colon ? (size_t) (colon - authority) : strlen (authority);
        if (length == 0 || length >= host_size)
            return false;
        memcpy (host, authority, length);
        host[length] = 0;
    }
    zf_strlcpy (port, colon ? colon + 1 : "443", port_size);
    char *end;
    long number = strtol (port, &end, 10);
    return *port && !*end && number > 0 && number < 65536;
}

static int s_on_client (zloop_t *loop, zmq_pollitem_t *item, void *arg);
static int s_on_upstream (zloop_t *loop, zmq_pollitem_t *item, void *arg);

//  What each socket is watched for, from the state of both directions.
static void s_update (zf_proxy_tunnel_t *self)
{
    zf_proxy_conn_t *conn = self->conn;
    zf_proxy_out_t *out = zf_proxy_conn_out (conn);
    size_t pending_in;
    zf_proxy_conn_input (conn, &pending_in);
    int client = 0;
    if (!zf_proxy_conn_input_full (conn) && !zf_proxy_conn_client_eof (conn) && !self->connecting)
        client |= ZMQ_POLLIN;
    if (zf_proxy_out_pending (out) > 0)
        client |= ZMQ_POLLOUT;
    int upstream = 0;
    if (self->connecting || pending_in > 0)
        upstream |= ZMQ_POLLOUT;
    if (!self->connecting && zf_proxy_out_memory (out) < TUNNEL_OUT && !self->upstream_eof)
        upstream |= ZMQ_POLLIN;
    zf_proxy_poll (self->loop, self->fd, &self->fd_events, upstream, s_on_upstream, self);
    zf_proxy_poll (self->loop, zf_proxy_conn_fd (conn), &self->client_events, client, s_on_client,
                   self);
}

//  Sends what the client may take; false after telling the owner the tunnel is over.
static bool s_flush_client (zf_proxy_tunnel_t *self)
{
    bool file_failed;
    char why[256];
    if (zf_proxy_conn_flush (self->conn, &file_failed, why, sizeof why) == ZF_PROXY_CONN_OK)
        return true;
    self->callback (self, ZF_PROXY_TUNNEL_CLOSED, why, self->arg);
    return false;
}

//  Ends the tunnel when upstream closed and everything it sent has left; false if so.
static bool s_go_on (zf_proxy_tunnel_t *self)
{
    if (self->upstream_eof && zf_proxy_out_pending (zf_proxy_conn_out (self->conn)) == 0) {
        self->callback (self, ZF_PROXY_TUNNEL_CLOSED, "tunnel closed by upstream", self->arg);
        return false;
    }
    s_update (self);
    return true;
}

static int s_on_client (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    zf_proxy_tunnel_t *self = arg;
    zf_proxy_conn_t *conn = self->conn;
    if (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
        const char *why = NULL;
        if (zf_proxy_conn_read_raw (conn, &why) != ZF_PROXY_CONN_OK)
            zf_proxy_conn_set_client_eof (conn);
        size_t pending;
        zf_proxy_conn_input (conn, &pending);
        if (zf_proxy_conn_client_eof (conn) && pending == 0)
            shutdown (self->fd, SHUT_WR);
    }
    if ((item->revents & ZMQ_POLLOUT) && !s_flush_client (self))
        return 0;
    s_go_on (self);
    return 0;
}

//  The upstream connection is up (answer the CONNECT) or failed (tell the owner); false when
//  the tunnel is over.
static bool s_connected (zf_proxy_tunnel_t *self, zmq_pollitem_t *item)
{
    int error = 0;
    socklen_t size = sizeof error;
    getsockopt (self->fd, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error) {
        zf_notice ("proxy", "connect: tunnel conn=%" PRIu64 " to %s failed: %s",
                   zf_proxy_conn_id (self->conn), self->target, strerror (error));
        self->callback (self, ZF_PROXY_TUNNEL_UNREACHABLE, strerror (error), self->arg);
        return false;
    }
    if (!(item->revents & ZMQ_POLLOUT))
        return true;
    self->connecting = false;
    zf_proxy_out_printf (zf_proxy_conn_out (self->conn),
                         "HTTP/1.1 200 Connection Established\r\n\r\n");
    return true;
}

static int s_on_upstream (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    zf_proxy_tunnel_t *self = arg;
    zf_proxy_conn_t *conn = self->conn;
    if (self->connecting && (!s_connected (self, item) || self->connecting))
        return 0;
    size_t pending;
    char *data = zf_proxy_conn_input (conn, &pending);
    if ((item->revents & ZMQ_POLLOUT) && pending > 0) {
        ssize_t sent = send (self->fd, data, pending, MSG_NOSIGNAL);
        if (sent > 0) {
            zf_proxy_conn_consume (conn, (size_t) sent);
            zf_proxy_conn_touch (conn);
            if ((size_t) sent == pending && zf_proxy_conn_client_eof (conn))
                shutdown (self->fd, SHUT_WR);
        } else if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            self->callback (self, ZF_PROXY_TUNNEL_CLOSED, "tunnel upstream send failed", self->arg);
            return 0;
        }
    }
    if (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
        char buffer[16384];
        ssize_t got = recv (self->fd, buffer, sizeof buffer, 0);
        if (got > 0) {
            zf_proxy_out_append (zf_proxy_conn_out (conn), buffer, (size_t) got);
            zf_proxy_conn_touch (conn);
        } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            self->upstream_eof = true;
    }
    if (!s_flush_client (self))
        return 0;
    s_go_on (self);
    return 0;
}

//  NOTE: a blocking name lookup; blind tunnels are for the rare hosts not intercepted.
static int s_connect (const char *host, const char *port, zf_error_t *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo (host, port, &hints, &found);
    if (rc != 0) {
        zf_error_set (err, ZF_E_UNREACHABLE, "connect", "%s", gai_strerror (rc));
        return -1;
    }
    int fd = socket (found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect (fd, found->ai_addr, found->ai_addrlen) != 0 && errno != EINPROGRESS) {
        close (fd);
        fd = -1;
    }
    if (fd < 0)
        zf_error_set (err, ZF_E_UNREACHABLE, "connect", "%s", strerror (errno));
    freeaddrinfo (found);
    return fd;
}

zf_proxy_tunnel_t *zf_proxy_tunnel_new (zloop_t *loop, zf_proxy_conn_t *conn, const char *host,
                                        const char *port, const zf_upstream_config_t *upstream,
                                        zf_proxy_tunnel_fn *callback, void *arg, zf_error_t *err)
{
    char target_host[256], target_port[8];
    zf_strlcpy (target_host, host, sizeof target_host);
    zf_strlcpy (target_port, port, sizeof target_port);
    char *mapped = zf_upstream_host_lookup (upstream, host);
    if (mapped)
        zf_proxy_split_authority (mapped, target_host, sizeof target_host, target_port,
                                  sizeof target_port);
    zf_free (mapped);
    int fd = s_connect (target_host, target_port, err);
    if (fd < 0) {
        zf_notice ("proxy", "connect: cannot reach %s:%s (%s)", host, port, err->message);
        return NULL;
    }
    zf_proxy_tunnel_t *self = zf_calloc (1, sizeof *self);
    self->loop = loop;
    self->conn = conn;
    self->callback = callback;
    self->arg = arg;
    self->fd = fd;
    self->fd_events = -1;
    self->client_events = -1;
    self->connecting = true;
    self->target = zf_asprintf ("%s:%s", host, port);
    zf_proxy_conn_touch (conn);
    zf_counter_add (zf_metrics_counter ("zfly_proxy_requests_total", "Client requests by route",
                                        "route", "tunnel", NULL),
                    1);
    zf_info ("proxy", "connect: tunnel conn=%" PRIu64 " to %s", zf_proxy_conn_id (conn),
             self->target);
    s_update (self);
    return self;
}

void zf_proxy_tunnel_destroy (zf_proxy_tunnel_t **self_p)
{
    zf_proxy_tunnel_t *self = *self_p;
    if (!self)
        return;
    zf_proxy_poll (self->loop, self->fd, &self->fd_events, -1, NULL, NULL);
    zf_proxy_poll (self->loop, zf_proxy_conn_fd (self->conn), &self->client_events, -1, NULL, NULL);
    close (self->fd);
    zf_free (self->target);
    zf_free (self);
    *self_p = NULL;
}

void zf_proxy_tunnel_test (bool verbose)
{
    if (verbose)
        printf (" * zf_proxy_tunnel: ");
    char host[256], port[8];
    ZF_ASSERT (zf_proxy_split_authority ("reg.test:5000", host, sizeof host, port, sizeof port));
    ZF_ASSERT (streq (host, "reg.test") && streq (port, "5000"));
    ZF_ASSERT (zf_proxy_split_authority ("reg.test", host, sizeof host, port, sizeof port));
    ZF_ASSERT (streq (port, "443"));
    ZF_ASSERT (zf_proxy_split_authority ("[::1]:8443", host, sizeof host, port, sizeof port));
    ZF_ASSERT (streq (host, "::1") && streq (port, "8443"));
    ZF_ASSERT (!zf_proxy_split_authority ("reg.test:99999", host, sizeof host, port, sizeof port));
    if (verbose)
        printf ("OK\n");
}
