/*  zf_proxy.c — the proxy actor (see zf_proxy.h): its rules and TLS set up from its
    configuration (zf_proxy_config.c has the keys), the listener, each client's
    requests in turn, and the timeouts. The work of answering is done by the parts. */
#include "zf_proxy.h"
#include "zf_bus.h"
#include "zf_curl_loop.h"
#include "zf_http_request.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include "zf_proxy_conn.h"
#include "zf_proxy_direct.h"
#include "zf_proxy_files.h"
#include "zf_proxy_p2p.h"
#include "zf_proxy_rules.h"
#include "zf_proxy_tls.h"
#include "zf_proxy_tunnel.h"
#include "zf_regex.h"
#include "zf_task_id.h"
#include "zf_task_reader.h"
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define SWEEP_MS         250
#define FILE_IDLE_MS     2000 //  a data file no response used for this long is closed
#define LOCATE_WINDOW    3    //  pieces located ahead: the one being sent and two more
#define P2P_STAT_WAIT_MS 1000 //  how long storage may hold the proxy's storage.stat

//  ---------------------------------------------------------------------------------------------
//  State

typedef struct self_s self_t;
typedef struct client_s client_t;

//  One request being answered: what every answer shares, and the path answering it.
typedef enum { EXCHANGE_DIRECT, EXCHANGE_P2P } exchange_kind_t;

typedef struct {
    zf_proxy_request_t request;
    exchange_kind_t kind;
    union {
        zf_proxy_direct_t *direct;
        zf_proxy_p2p_t *p2p;
    } as;
} exchange_t;

struct client_s {
    self_t *self;
    zf_proxy_conn_t *conn;
    zf_http_request_t *req;
    exchange_t *ex;            //  the request being answered, one at a time
    zf_proxy_tunnel_t *tunnel; //  after a CONNECT not intercepted
    int events;                //  what zloop watches on the socket, -1 nothing
    bool dead;                 //  killed: freed by the next sweep
    bool closing;              //  close once everything queued has left
    int64_t head_started_ms;   //  a request head is being read since
    void *handle;              //  in self->clients or self->graveyard
};

struct self_s {
    const char *name;
    const zf_proxy_config_t *config;
    const zf_upstream_config_t *upstream_config;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_curl_loop_t *curl;
    zf_proxy_upstream_t upstream; //  how direct transfers reach upstream
    zf_proxy_tls_t *tls;
    zf_proxy_rules_t *rules;
    zf_task_readers_t *readers;
    zf_proxy_files_t *files; //  data files of local tasks, for sendfile
    int listen_fd;
    zlistx_t *clients;
    zlistx_t *graveyard;
    regex_t hijack;
    bool has_hijack;
    uint64_t next_id;
    zf_http_limits_t limits;
    zf_gauge_t *connections;
    zf_counter_t *refused_full, *refused_bad, *timeouts, *fallbacks, *denied;
    zf_counter_t *sent_copied, *sent_sendfile;
};

static void s_client_kill (client_t *client, const char *why);
static void s_update_events (client_t *client);
static void s_progress (client_t *client);
static void s_exchange_end (client_t *client);
static void s_direct_start (client_t *client);

//  ---------------------------------------------------------------------------------------------
//  Sending and watching a client

//  Sends what can be sent now; false when the connection died (the client is killed).
static bool s_flush (client_t *client)
{
    bool file_failed;
    char why[512];
    if (zf_proxy_conn_flush (client->conn, &file_failed, why, sizeof why) == ZF_PROXY_CONN_OK)
        return true;
    if (file_failed)
        zf_notice (client->self->name,
                   "conn=%" PRIu64 " peer=%s: cannot send a cached piece: %s; closing the "
                   "connection so the client retries",
                   zf_proxy_conn_id (client->conn), zf_proxy_conn_peer (client->conn), why);
    s_client_kill (client, why);
    return false;
}

static int s_on_client (zloop_t *loop, zmq_pollitem_t *item, void *arg);

static void s_update_events (client_t *client)
{
    if (client->dead || client->tunnel)
        return;
    zf_proxy_conn_t *conn = client->conn;
    int wanted = 0;
    //  read ahead only while there is room and no request is being answered (one at a time);
    //  always read during the TLS handshake, and watch for a hang-up while answering
    if (!zf_proxy_conn_client_eof (conn) && !client->closing && !zf_proxy_conn_input_full (conn)
        && (!client->ex || zf_proxy_conn_handshaking (conn)))
        wanted |= ZMQ_POLLIN;
    if (client->ex && !zf_proxy_conn_client_eof (conn))
        wanted |= ZMQ_POLLIN;
    if (!zf_proxy_conn_all_sent (conn) || client->closing)
        wanted |= ZMQ_POLLOUT;
    zf_proxy_poll (client->self->loop, zf_proxy_conn_fd (conn), &client->events, wanted,
                   s_on_client, client);
}

static void s_respond_error (client_t *client, int status, bool registry, const char *code,
                             const char *message, bool close_after)
{
    zf_proxy_out_error (zf_proxy_conn_out (client->conn), status, registry, code, message,
                        close_after);
    if (close_after)
        client->closing = true;
}

//  ---------------------------------------------------------------------------------------------
//  Exchanges

static void s_exchange_free (exchange_t *ex)
{
    if (ex->kind == EXCHANGE_DIRECT)
        zf_proxy_direct_destroy (&ex->as.direct);
    else
        zf_proxy_p2p_destroy (&ex->as.p2p);
    zf_free (ex->request.method);
    zf_free (ex->request.url);
    zf_free (ex->request.path);
    zf_free (ex);
}

static void s_on_direct (zf_proxy_direct_t *direct, zf_proxy_direct_event_t event, void *arg)
{
    (void) direct;
    client_t *client = arg;
    if (event == ZF_PROXY_DIRECT_MORE) //  inside curl: only say what to watch
        s_update_events (client);
    else if (event == ZF_PROXY_DIRECT_ABORTED)
        s_client_kill (client, "upstream failed after the head");
    else
        s_exchange_end (client);
}

static void s_direct_start (client_t *client)
{
    exchange_t *ex = client->ex;
    ex->kind = EXCHANGE_DIRECT;
    ex->as.direct = zf_proxy_direct_new (&client->self->upstream, &ex->request, client->req,
                                         zf_proxy_conn_out (client->conn), s_on_direct, client);
}

//  P2P could not serve this request before its first byte: it goes direct, so a pull never
//  fails because P2P did, and a client the origin refuses gets the origin's own answer.
static void s_p2p_to_direct (client_t *client, const char *why, bool denied)
{
    exchange_t *ex = client->ex;
    self_t *self = client->self;
    if (denied) {
        zf_notice (self->name,
                   "p2p: access refused id=%" PRIu64 " url=%s peer=%s: %s; the origin answers "
                   "the client itself",
                   ex->request.id, ex->request.url, zf_proxy_conn_peer (client->conn), why);
        zf_counter_add (self->denied, 1);
    } else {
        zf_notice (self->name, "p2p: falling back to direct id=%" PRIu64 " url=%s why=%s",
                   ex->request.id, ex->request.url, why);
        zf_counter_add (self->fallbacks, 1);
    }
    zf_proxy_p2p_destroy (&ex->as.p2p);
    s_direct_start (client);
}

static void s_on_p2p (zf_proxy_p2p_t *p2p, zf_proxy_p2p_event_t event, const char *why, void *arg)
{
    client_t *client = arg;
    switch (event) {
    case ZF_PROXY_P2P_HEAD:
        //  sent at once, before the first piece is asked for (docs/benchmarks.md "Proxy")
        if (s_flush (client))
            s_update_events (client);
        return;
    case ZF_PROXY_P2P_MORE: s_update_events (client); return;
    case ZF_PROXY_P2P_DONE: s_exchange_end (client); return;
    case ZF_PROXY_P2P_FALLBACK: s_p2p_to_direct (client, why, false); return;
    case ZF_PROXY_P2P_DENIED: s_p2p_to_direct (client, why, true); return;
    case ZF_PROXY_P2P_ABORTED:
        zf_notice (client->self->name,
                   "p2p: task failed after %" PRIu64 " bytes id=%" PRIu64 " task=%.16s why=%s; "
                   "closing the client connection so it retries",
                   client->ex->request.body_sent, client->ex->request.id, zf_proxy_p2p_task (p2p),
                   why);
        s_client_kill (client, "p2p failed after the head");
        return;
    }
}

static void s_p2p_start (client_t *client, const char *digest)
{
    exchange_t *ex = client->ex;
    self_t *self = client->self;
    zf_http_request_t *req = client->req;
    zf_proxy_p2p_params_t params = {
        .digest = digest,
        .authorization = zf_http_request_header (req, "Authorization"),
        .accept = zf_http_request_header (req, "Accept"),
        .range = zf_http_request_header (req, "Range"),
        //  TLS needs the bytes in memory to encrypt them: the bus frame brings them there
        .sendfile = !zf_proxy_conn_is_tls (client->conn),
    };
    ex->kind = EXCHANGE_P2P;
    zf_error_t err;
    ex->as.p2p = zf_proxy_p2p_new (self->readers, self->files, &ex->request, &params,
                                   zf_proxy_conn_out (client->conn), s_on_p2p, client, &err);
    if (!ex->as.p2p)
        s_p2p_to_direct (client, err.message, false);
}

//  The request is answered: on to the next one on this connection (pipelined), or closing.
static void s_exchange_end (client_t *client)
{
    exchange_t *ex = client->ex;
    ZF_ASSERT (ex);
    bool close_after = ex->request.close_after;
    client->ex = NULL;
    s_exchange_free (ex);
    zf_proxy_conn_touch (client->conn);
    client->head_started_ms = 0;
    zf_http_request_next (client->req);
    if (close_after)
        client->closing = true;
    else
        s_progress (client);
    s_update_events (client);
}

//  ---------------------------------------------------------------------------------------------
//  Requests

static void s_on_tunnel (zf_proxy_tunnel_t *tunnel, zf_proxy_tunnel_event_t event, const char *why,
                         void *arg)
{
    (void) tunnel;
    client_t *client = arg;
    if (event == ZF_PROXY_TUNNEL_CLOSED) {
        s_client_kill (client, why);
        return;
    }
    zf_proxy_tunnel_destroy (&client->tunnel);
    s_respond_error (client, 502, false, "UNREACHABLE", "cannot reach the CONNECT target", true);
    s_update_events (client);
}

static void s_intercept (client_t *client, const char *host, const char *port)
{
    self_t *self = client->self;
    zf_proxy_conn_t *conn = client->conn;
    SSL *ssl = zf_proxy_tls_server (self->tls, host);
    if (!ssl) {
        s_respond_error (client, 502, false, "TLS", "cannot make a certificate", true);
        return;
    }
    zf_proxy_out_printf (zf_proxy_conn_out (conn), "HTTP/1.1 200 Connection Established\r\n\r\n");
    //  the 200 goes out in clear before the TLS session starts
    if (!s_flush (client))
        return;
    if (!zf_proxy_conn_all_sent (conn)) {
        //  rare: the 200 did not fit in the socket buffer; keep it simple and refuse
        SSL_free (ssl);
        s_client_kill (client, "connect: could not send 200");
        return;
    }
    char *authority = streq (port, "443") ? zf_strdup (host) : zf_asprintf ("%s:%s", host, port);
    zf_proxy_conn_start_tls (conn, ssl, authority);
    zf_free (authority);
    zf_counter_add (zf_metrics_counter ("zfly_proxy_requests_total", "Client requests by route",
                                        "route", "intercept", NULL),
                    1);
    zf_info (self->name, "connect: intercepting conn=%" PRIu64 " host=%s", zf_proxy_conn_id (conn),
             zf_proxy_conn_authority (conn));
    zf_http_request_next (client->req);
    const char *why = NULL;
    if (zf_proxy_conn_decrypt (conn, &why) != ZF_PROXY_CONN_OK)
        s_client_kill (client, why);
}

static void s_handle_connect (client_t *client)
{
    self_t *self = client->self;
    zf_proxy_conn_t *conn = client->conn;
    const char *authority = zf_http_request_url (client->req);
    char host[256], port[8];
    if (zf_proxy_conn_is_tls (conn)
        || !zf_proxy_split_authority (authority, host, sizeof host, port, sizeof port)) {
        zf_notice (self->name, "connect: refused conn=%" PRIu64 " authority=%.100s",
                   zf_proxy_conn_id (conn), authority);
        s_respond_error (client, 400, false, "BAD_REQUEST", "bad CONNECT authority", true);
        return;
    }
    if (self->has_hijack && regexec (&self->hijack, host, 0, NULL, 0) == 0) {
        if (self->tls) {
            s_intercept (client, host, port);
            return;
        }
        zf_notice (self->name, "connect: %s matches hijack but no ca_cert/ca_key: tunnel", host);
    }
    //  the tunnel watches the socket from now on (zloop keys pollers by descriptor)
    zf_proxy_poll (self->loop, zf_proxy_conn_fd (conn), &client->events, -1, NULL, NULL);
    zf_error_t err;
    client->tunnel = zf_proxy_tunnel_new (self->loop, conn, host, port, self->upstream_config,
                                          s_on_tunnel, client, &err);
    if (!client->tunnel) {
        s_respond_error (client, 502, false, "UNREACHABLE", "cannot reach the CONNECT target",
                         true);
        return;
    }
    zf_http_request_next (client->req);
}

//  The upstream URL of a request, and the path the client asked for; NULL when the request
//  target is not understood.
static char *s_upstream_url (client_t *client, const char *target, char **path)
{
    if (strncasecmp (target, "http://", 7) == 0 || strncasecmp (target, "https://", 8) == 0) {
        const char *slash = strchr (target + 8, '/');
        *path = zf_strdup (slash ? slash : "/");
        return zf_strdup (target); //  forward proxy
    }
    if (*target != '/')
        return NULL;
    *path = zf_strdup (target);
    const char *authority = zf_proxy_conn_authority (client->conn);
    if (authority) //  intercepted
        return zf_asprintf ("https://%s%s", authority, target);
    //  registry mirror
    return zf_proxy_rules_mirror_url (client->self->rules, target,
                                      zf_http_request_header (client->req, "X-Dragonfly-Registry"));
}

//  The exchange of a request just parsed: upstream URL, route, then direct or P2P.
static void s_dispatch (client_t *client)
{
    self_t *self = client->self;
    zf_http_request_t *req = client->req;
    const char *method = zf_http_request_method (req);
    const char *target = zf_http_request_url (req);
    if (zf_http_request_is_connect (req)) {
        s_handle_connect (client);
        return;
    }
    if (zf_http_request_is_upgrade (req)) {
        s_respond_error (client, 501, false, "UNSUPPORTED", "protocol upgrades are not supported",
                         true);
        return;
    }
    exchange_t *ex = zf_calloc (1, sizeof *ex);
    zf_proxy_request_t *request = &ex->request;
    request->id = ++self->next_id;
    request->started_ms = zclock_mono ();
    request->method = zf_strdup (method);
    request->is_head = streq (method, "HEAD");
    request->close_after = !zf_http_request_keep_alive (req);
    request->http_minor = zf_http_request_version_minor (req);
    client->ex = ex;
    char *url = s_upstream_url (client, target, &request->path);
    if (!url) {
        zf_notice (self->name, "request refused conn=%" PRIu64 " peer=%s: bad target %.100s",
                   zf_proxy_conn_id (client->conn), zf_proxy_conn_peer (client->conn), target);
        zf_counter_add (self->refused_bad, 1);
        request->head_sent = true;
        request->close_after = true;
        request->path = request->path ? request->path : zf_strdup ("");
        s_respond_error (client, 400, false, "BAD_REQUEST", "request target not understood", true);
        s_exchange_end (client);
        return;
    }
    request->registry_path =
        strncmp (request->path, "/v2/", 4) == 0 || streq (request->path, "/v2");
    zf_proxy_route_t route = zf_proxy_rules_route (self->rules, &url);
    request->url = url;
    const char *forced = zf_http_request_header (req, "X-Zfly-Route");
    if (forced && strcasecmp (forced, "direct") == 0)
        route = ZF_PROXY_ROUTE_DIRECT;
    else if (forced && strcasecmp (forced, "p2p") == 0)
        route = ZF_PROXY_ROUTE_P2P;
    zf_debug (self->name, "request id=%" PRIu64 " conn=%" PRIu64 " %s %s -> %s route=%s",
              request->id, zf_proxy_conn_id (client->conn), method, target, url,
              route == ZF_PROXY_ROUTE_P2P ? "p2p" : "direct");
    //  A URL that names no blob digest (a file a rule sends P2P) is a task keyed by the URL
    //  itself (zf_task_id.h), its bytes as the origin gives them, as zfly-get's.
    char digest[ZF_DIGEST_TEXT_SIZE + 1] = "";
    if (route == ZF_PROXY_ROUTE_P2P && streq (method, "GET") && self->readers) {
        if (!zf_task_digest_from_url (url, digest))
            digest[0] = '\0';
        s_p2p_start (client, digest);
    } else
        s_direct_start (client);
}

//  Parses buffered bytes into requests while none is being answered.
static void s_progress (client_t *client)
{
    self_t *self = client->self;
    zf_proxy_conn_t *conn = client->conn;
    while (!client->dead && !client->ex && !client->closing && !client->tunnel) {
        const char *why = NULL;
        if (zf_proxy_conn_decrypt (conn, &why) != ZF_PROXY_CONN_OK) {
            client->closing = true;
            break;
        }
        size_t length;
        char *input = zf_proxy_conn_input (conn, &length);
        if (length == 0)
            break;
        size_t used = 0;
        zf_http_feed_t fed = zf_http_request_feed (client->req, input, length, &used);
        bool tls_hello = used == 0 && (unsigned char) input[0] == 0x16;
        zf_proxy_conn_consume (conn, used);
        if (zf_http_request_started (client->req) && !client->head_started_ms)
            client->head_started_ms = zclock_mono ();
        if (fed == ZF_HTTP_MORE) {
            if (zf_proxy_conn_input_full (conn))
                zf_proxy_conn_input_clear (conn); //  cannot happen: the parser takes it all
            break;
        }
        if (fed == ZF_HTTP_ERROR) {
            int status = zf_http_request_error_status (client->req);
            const char *reason = zf_http_request_error_reason (client->req);
            zf_notice (self->name, "request refused conn=%" PRIu64 " peer=%s status=%d why=%s%s",
                       zf_proxy_conn_id (conn), zf_proxy_conn_peer (conn), status, reason,
                       tls_hello ? " (a TLS handshake on the plain HTTP port: configure the "
                                   "mirror as http://, or reach HTTPS registries through "
                                   "HTTPS_PROXY with CONNECT)"
                                 : "");
            zf_counter_add (self->refused_bad, 1);
            s_respond_error (client, status, false, "BAD_REQUEST", reason, true);
            zf_proxy_conn_input_clear (conn);
            break;
        }
        client->head_started_ms = 0;
        s_dispatch (client);
    }
    if (!client->dead)
        s_update_events (client);
}

//  ---------------------------------------------------------------------------------------------
//  Clients

static void s_client_kill (client_t *client, const char *why)
{
    if (client->dead)
        return;
    self_t *self = client->self;
    zf_debug (self->name, "conn closed id=%" PRIu64 " peer=%s why=%s",
              zf_proxy_conn_id (client->conn), zf_proxy_conn_peer (client->conn), why);
    client->dead = true;
    if (client->ex) {
        if (client->ex->request.head_sent && client->ex->kind == EXCHANGE_P2P)
            zf_info (self->name, "p2p: client left id=%" PRIu64 " sent=%" PRIu64,
                     client->ex->request.id, client->ex->request.body_sent);
        s_exchange_free (client->ex); //  a task reader waiting for replies stays with its set
        client->ex = NULL;
    }
    zf_proxy_tunnel_destroy (&client->tunnel);
    zf_proxy_poll (self->loop, zf_proxy_conn_fd (client->conn), &client->events, -1, NULL, NULL);
    zf_proxy_conn_close (client->conn);
    zlistx_delete (self->clients, client->handle);
    client->handle = zlistx_add_end (self->graveyard, client);
    zf_gauge_set (self->connections, (double) zlistx_size (self->clients));
}

static void s_client_free (client_t *client)
{
    zf_http_request_destroy (&client->req);
    zf_proxy_conn_destroy (&client->conn); //  closes the socket
    zf_free (client);
}

static int s_on_client (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    client_t *client = arg;
    zf_proxy_conn_t *conn = client->conn;
    if (client->dead || item->fd != zf_proxy_conn_fd (conn))
        return 0;
    if (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
        const char *why = NULL;
        if (zf_proxy_conn_read (conn, &why) != ZF_PROXY_CONN_OK) {
            s_client_kill (client, why);
            return 0;
        }
        if (zf_proxy_conn_client_eof (conn) && client->ex) {
            //  the client hung up while we answered: stop the upstream side
            s_client_kill (client, "client closed during a response");
            return 0;
        }
    }
    if (((item->revents & ZMQ_POLLOUT) || zf_proxy_conn_is_tls (conn)) && !s_flush (client))
        return 0;
    //  a source waiting for room may go on
    exchange_t *ex = client->ex;
    if (ex && ex->kind == EXCHANGE_DIRECT)
        zf_proxy_direct_drained (ex->as.direct);
    else if (ex && ex->kind == EXCHANGE_P2P)
        zf_proxy_p2p_drained (ex->as.p2p);
    if (client->dead)
        return 0;
    bool idle = !client->ex && zf_proxy_conn_all_sent (conn);
    if (client->closing && idle) {
        s_client_kill (client, "response done, closing");
        return 0;
    }
    size_t pending;
    zf_proxy_conn_input (conn, &pending);
    if (zf_proxy_conn_client_eof (conn) && idle && pending == 0) {
        s_client_kill (client, "client closed");
        return 0;
    }
    s_progress (client);
    if (!client->dead && zf_proxy_conn_client_eof (conn) && !client->ex && !client->tunnel
        && zf_proxy_conn_all_sent (conn))
        s_client_kill (client, "client closed");
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  Listener, sweeper

static void s_accept_one (self_t *self, int fd, const struct sockaddr_storage *address)
{
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char host[INET6_ADDRSTRLEN] = "?";
    if (address->ss_family == AF_INET)
        inet_ntop (AF_INET, &((const struct sockaddr_in *) address)->sin_addr, host, sizeof host);
    else if (address->ss_family == AF_INET6)
        inet_ntop (AF_INET6, &((const struct sockaddr_in6 *) address)->sin6_addr, host,
                   sizeof host);
    client_t *client = zf_calloc (1, sizeof *client);
    client->self = self;
    client->events = -1;
    client->conn =
        zf_proxy_conn_new (fd, ++self->next_id, host, self->sent_copied, self->sent_sendfile);
    client->req = zf_http_request_new (&self->limits);
    client->handle = zlistx_add_end (self->clients, client);
    zf_gauge_set (self->connections, (double) zlistx_size (self->clients));
    s_update_events (client);
}

static int s_on_accept (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    (void) item;
    self_t *self = arg;
    for (int round = 0; round < 64; round++) {
        struct sockaddr_storage address;
        socklen_t size = sizeof address;
        int fd = accept4 (self->listen_fd, (struct sockaddr *) &address, &size,
                          SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        if (zlistx_size (self->clients) >= (size_t) self->config->max_connections) {
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n";
            ssize_t ignored = send (fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
            (void) ignored;
            close (fd);
            zf_counter_add (self->refused_full, 1);
            static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 1000);
            zf_warning_limited (&limit, self->name,
                                "connection refused: max_connections=%" PRId64 " reached",
                                self->config->max_connections);
            continue;
        }
        s_accept_one (self, fd, &address);
    }
    return 0;
}

static void s_sweep_client (self_t *self, client_t *client, int64_t now)
{
    const zf_proxy_config_t *config = self->config;
    zf_proxy_conn_t *conn = client->conn;
    int64_t idle_ms = now - zf_proxy_conn_last_activity (conn);
    if (client->head_started_ms && !client->ex && !client->closing
        && now - client->head_started_ms > config->header_timeout_ms) {
        zf_notice (self->name,
                   "request timeout conn=%" PRIu64 " peer=%s: head not complete after %" PRId64
                   " ms (slow client)",
                   zf_proxy_conn_id (conn), zf_proxy_conn_peer (conn),
                   now - client->head_started_ms);
        zf_counter_add (self->timeouts, 1);
        client->head_started_ms = 0;
        s_respond_error (client, 408, false, "TIMEOUT", "request head too slow", true);
        if (s_flush (client))
            s_update_events (client);
    } else if (idle_ms > config->client_timeout_ms
               && (!client->ex || zf_proxy_out_pending (zf_proxy_conn_out (conn)) > 0)) {
        zf_info (self->name, "conn=%" PRIu64 " peer=%s idle for %" PRId64 " ms: closing",
                 zf_proxy_conn_id (conn), zf_proxy_conn_peer (conn), idle_ms);
        zf_counter_add (self->timeouts, 1);
        s_client_kill (client, "idle");
    }
}

static int s_on_sweep (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    client_t *client;
    while ((client = zlistx_detach (self->graveyard, NULL)))
        s_client_free (client);
    int64_t now = zclock_mono ();
    zf_proxy_files_sweep (self->files, now, FILE_IDLE_MS);
    client = zlistx_first (self->clients);
    while (client) {
        client_t *next = zlistx_next (self->clients);
        s_sweep_client (self, client, now);
        client = next;
    }
    return 0;
}

static int s_listen (self_t *self, zf_error_t *err)
{
    char host[256], port[8];
    if (!zf_proxy_split_authority (self->config->listen, host, sizeof host, port, sizeof port)) {
        zf_error_set (err, ZF_E_CONFIG, "listen", "\"%s\" is not HOST:PORT", self->config->listen);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo (host, port, &hints, &found);
    if (rc != 0) {
        zf_error_set (err, ZF_E_CONFIG, "listen", "%s: %s", self->config->listen,
                      gai_strerror (rc));
        return -1;
    }
    int fd = socket (found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind (fd, found->ai_addr, found->ai_addrlen) != 0 || listen (fd, 1024) != 0) {
        zf_error_set (err, ZF_E_IO, "listen", "cannot listen on %s ([proxy] listen): %s",
                      self->config->listen, strerror (errno));
        if (fd >= 0)
            close (fd);
        freeaddrinfo (found);
        return -1;
    }
    freeaddrinfo (found);
    self->listen_fd = fd;
    return 0;
}

static int s_setup (self_t *self, zf_error_t *err)
{
    const zf_proxy_config_t *config = self->config;
    self->rules =
        zf_proxy_rules_new (&config->rules, &config->registry_map, config->default_registry, err);
    if (!self->rules)
        return -1;
    self->upstream = (zf_proxy_upstream_t){
        .connect_to = zf_upstream_connect_to (self->upstream_config),
        .ca = self->upstream_config->ca,
        .connect_timeout_ms = self->upstream_config->connect_timeout_ms,
    };
    if (*config->hijack) {
        char why[256]; //  checked when the configuration was loaded
        ZF_ASSERT (zf_regex_compile (&self->hijack, config->hijack, REG_ICASE, why, sizeof why));
        self->has_hijack = true;
    }
    if (*config->ca_cert || *config->ca_key) {
        self->tls = zf_proxy_tls_new (config->ca_cert, config->ca_key, err);
        if (!self->tls)
            return -1;
    }
    if (self->has_hijack && !self->tls) {
        zf_error_set (err, ZF_E_CONFIG, "hijack", "hijack needs ca_cert and ca_key");
        return -1;
    }
    return s_listen (self, err);
}

static void s_metrics_init (self_t *self)
{
    const char *refused_help = "Client connections or requests refused";
    self->connections =
        zf_metrics_gauge ("zfly_proxy_connections", "Open client connections", NULL);
    self->refused_full = zf_metrics_counter ("zfly_proxy_refused_total", refused_help, "reason",
                                             "max_connections", NULL);
    self->refused_bad = zf_metrics_counter ("zfly_proxy_refused_total", refused_help, "reason",
                                            "bad_request", NULL);
    self->timeouts =
        zf_metrics_counter ("zfly_proxy_refused_total", refused_help, "reason", "timeout", NULL);
    self->fallbacks = zf_metrics_counter ("zfly_proxy_p2p_fallbacks_total",
                                          "P2P requests served directly after a P2P failure", NULL);
    self->denied = zf_metrics_counter ("zfly_proxy_p2p_denied_total",
                                       "P2P requests the origin refused this client: answered "
                                       "directly, with the origin's own answer",
                                       NULL);
    const char *sent_help = "Bytes written to client sockets, by system call";
    self->sent_copied =
        zf_metrics_counter ("zfly_proxy_sent_bytes_total", sent_help, "via", "send", NULL);
    self->sent_sendfile =
        zf_metrics_counter ("zfly_proxy_sent_bytes_total", sent_help, "via", "sendfile", NULL);
}

static void s_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg)
{
    (void) arg;
    zf_proxy_direct_curl_done (easy, result, easy_private);
}

static void s_start_loop (self_t *self, zsock_t *pipe)
{
    self->clients = zlistx_new ();
    self->graveyard = zlistx_new ();
    s_metrics_init (self);
    self->files = zf_proxy_files_new ();
    //  cached pieces go out with sendfile, which cannot be told MSG_NOSIGNAL
    zf_proxy_out_block_sigpipe ();
    self->loop = zloop_new ();
    zloop_set_nonstop (self->loop, true);
    zloop_reader (self->loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (self->bus, self->loop);
    self->curl = zf_curl_loop_new (self->loop, s_curl_done, self);
    self->upstream.curl = self->curl;
    if (*self->config->fetcher) {
        zf_task_readers_options_t options = {.fetcher = self->config->fetcher,
                                             .storage = self->config->storage,
                                             .poll_ms = self->config->p2p_poll_ms,
                                             .stat_wait_ms = P2P_STAT_WAIT_MS,
                                             .read_window_bytes = ZF_PROXY_OUT_HIGH,
                                             .read_window_min = 1,
                                             .locate_window = LOCATE_WINDOW};
        self->readers = zf_task_readers_new (self->bus, self->loop, self->name, &options);
    }
    zmq_pollitem_t item = {.socket = NULL, .fd = self->listen_fd, .events = ZMQ_POLLIN};
    zloop_poller (self->loop, &item, s_on_accept, self);
    zloop_poller_set_tolerant (self->loop, &item);
    zloop_timer (self->loop, SWEEP_MS, 0, s_on_sweep, self);
}

void zf_proxy_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    self_t self = {.name = actor->name,
                   .config = actor->config,
                   .upstream_config = actor->upstream ? actor->upstream : zf_upstream_defaults (),
                   .listen_fd = -1};
    zf_error_t err;
    self.bus = zf_bus_new (actor->node, actor->name, "", "", &err);
    zsock_signal (pipe, 0);
    if (!self.bus) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        return;
    }
    self.limits = (zf_http_limits_t){.header_max = self.config->header_max,
                                     .headers_max = 100,
                                     .body_max = self.config->body_max};
    if (s_setup (&self, &err) != 0) {
        zf_actor_fatal (pipe, self.name, "[proxy] %s: %s", err.where, err.message);
        goto cleanup;
    }
    s_start_loop (&self, pipe);
    zf_notice (self.name, "started listen=%s rules=%zu fetcher=%s hijack=%s default_registry=%s",
               self.config->listen, zf_proxy_rules_count (self.rules),
               *self.config->fetcher ? self.config->fetcher : "-",
               *self.config->hijack ? self.config->hijack : "-", self.config->default_registry);
    zstr_send (pipe, "READY");
    zloop_start (self.loop);
    client_t *client;
    while ((client = zlistx_first (self.clients)))
        s_client_kill (client, "stopping");
    while ((client = zlistx_detach (self.graveyard, NULL)))
        s_client_free (client);
    zf_curl_loop_destroy (&self.curl);
    zf_info (self.name, "stopped");
cleanup:
    zf_bus_destroy (&self.bus);
    zf_task_readers_destroy (&self.readers); //  after the bus: it frees readers left waiting
    zf_proxy_files_destroy (&self.files);
    zloop_destroy (&self.loop);
    zlistx_destroy (&self.clients);
    zlistx_destroy (&self.graveyard);
    if (self.listen_fd >= 0)
        close (self.listen_fd);
    if (self.has_hijack)
        regfree (&self.hijack);
    zf_proxy_tls_destroy (&self.tls);
    zf_proxy_rules_destroy (&self.rules);
    curl_slist_free_all (self.upstream.connect_to);
}

//  ---------------------------------------------------------------------------------------------

void zf_proxy_test (bool verbose)
{
    zf_proxy_rules_test (verbose);
    zf_proxy_p2p_test (verbose);
    zf_proxy_tunnel_test (verbose);
}
