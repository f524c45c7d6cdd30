/*  zf_proxy.c — the proxy actor (see zf_proxy.h): connections, routing, direct and P2P. */
#include "zf_proxy.h"
#include "zf_curl_loop.h"
#include "zf_task_id.h"
#include "zf_bus.h"
#include "zf_http_request.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include "zf_proxy_files.h"
#include "zf_proxy_out.h"
#include "zf_proxy_tls.h"
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <regex.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_MAX              65536 //  client bytes read ahead of the parser (and tunnel client->upstream)
#define OUT_HIGH            262144 //  response bytes queued for a client before the source pauses
#define TUNNEL_OUT          65536  //  tunnel upstream->client bytes queued
#define WIRE_HIGH           65536  //  TLS records queued for a client
#define RESP_HEAD_MAX       65536  //  upstream response head
#define SWEEP_MS            250
#define LOCATE_AHEAD        2    //  pieces queued as file ranges beyond the one being sent
#define FILE_IDLE_MS        2000 //  a data file no response used for this long is closed
#define P2P_STAT_WAIT_MS    1000 //  how long storage may hold the proxy's storage.stat without news
#define P2P_STAT_TIMEOUT_MS 5000 //  plus this for its answer to come back

#define RULE_KEY(n)                                                                                \
    {                                                                                              \
        .key = "rule" #n, .kind = ZF_CONFIG_STR,                                                   \
        .offset = offsetof (zf_proxy_config_t, rules[(n) -1]), .default_text = "",                 \
        .help = "rule " #n ": REGEX p2p|direct [use_https], first match on the upstream URL wins"  \
    }

static const zf_config_key_t s_keys[] = {
    {.key = "listen",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, listen),
     .default_text = "127.0.0.1:65001",
     .help = "HOST:PORT where clients connect (HTTP proxy, registry mirror, CONNECT)"},
    {.key = "fetcher",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, fetcher),
     .default_text = "fetcher",
     .help = "name of the fetcher actor for P2P requests; empty: every request goes direct"},
    {.key = "storage",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, storage),
     .default_text = "storage",
     .help = "name of the storage actor the pieces are read from"},
    RULE_KEY (1),
    RULE_KEY (2),
    RULE_KEY (3),
    RULE_KEY (4),
    RULE_KEY (5),
    RULE_KEY (6),
    RULE_KEY (7),
    RULE_KEY (8),
    RULE_KEY (9),
    RULE_KEY (10),
    RULE_KEY (11),
    RULE_KEY (12),
    RULE_KEY (13),
    RULE_KEY (14),
    RULE_KEY (15),
    RULE_KEY (16),
    {.key = "default_registry",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, default_registry),
     .default_text = "https://registry-1.docker.io",
     .help = "upstream of mirror requests with neither X-Dragonfly-Registry nor ?ns="},
    {.key = "registry_map",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, registry_map),
     .default_text = "docker.io=registry-1.docker.io",
     .help = "NAME=HOST pairs, space separated: registry names (ns) to the hosts serving them"},
    {.key = "hosts",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, hosts),
     .default_text = "",
     .help = "NAME=ADDR:PORT pairs: connect to NAME at ADDR:PORT, for tests and split DNS"},
    {.key = "hijack",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, hijack),
     .default_text = "",
     .help = "extended regex on CONNECT host names to intercept with TLS; empty: tunnel all"},
    {.key = "ca_cert",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, ca_cert),
     .default_text = "",
     .help = "PEM CA certificate that signs interception certificates (clients must trust it)"},
    {.key = "ca_key",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, ca_key),
     .default_text = "",
     .help = "PEM private key of ca_cert"},
    {.key = "upstream_ca",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_proxy_config_t, upstream_ca),
     .default_text = "",
     .help = "CA bundle trusted for upstream HTTPS; empty: the system's"},
    {.key = "max_connections",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (zf_proxy_config_t, max_connections),
     .default_text = "1024",
     .min = 1,
     .max = 100000,
     .help = "client connections at once; more are answered 503 and closed"},
    {.key = "header_max",
     .kind = ZF_CONFIG_SIZE,
     .offset = offsetof (zf_proxy_config_t, header_max),
     .default_text = "16K",
     .min = 1024,
     .max = 1048576,
     .help = "request line plus headers; larger requests get 431"},
    {.key = "body_max",
     .kind = ZF_CONFIG_SIZE,
     .offset = offsetof (zf_proxy_config_t, body_max),
     .default_text = "1M",
     .min = 0,
     .max = 1073741824,
     .help = "request body kept in memory and sent upstream; larger get 413"},
    {.key = "header_timeout",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_proxy_config_t, header_timeout_ms),
     .default_text = "10s",
     .min = 100,
     .max = 3600000,
     .help = "a started request's head must be complete within this (slow clients get 408)"},
    {.key = "client_timeout",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_proxy_config_t, client_timeout_ms),
     .default_text = "60s",
     .min = 100,
     .max = 86400000,
     .help = "idle keep-alive connections, tunnels and clients that stop reading are closed"},
    {.key = "connect_timeout",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_proxy_config_t, connect_timeout_ms),
     .default_text = "10s",
     .min = 100,
     .max = 600000,
     .help = "upstream connection attempt"},
    {.key = "p2p_poll",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_proxy_config_t, p2p_poll_ms),
     .default_text = "50ms",
     .min = 5,
     .max = 10000,
     .help = "how often a P2P response asks for the task's state, and for finished pieces "
             "from a storage that answers at once (this one holds the question until a piece "
             "lands)"},
};

const zf_config_section_t zf_proxy_section = {
    .name = "proxy",
    .help = "HTTP proxy, registry mirror and CONNECT/TLS interception for container runtimes",
    .keys = s_keys,
    .key_count = ZF_ARRAY_LEN (s_keys),
    .struct_size = sizeof (zf_proxy_config_t),
};

//  ---------------------------------------------------------------------------------------------
//  Rules

typedef enum { ROUTE_DIRECT = 0, ROUTE_P2P = 1 } route_t;

typedef struct {
    regex_t regex;
    route_t route;
    bool use_https;
    char *text;
} rule_t;

static const char *s_default_rules[] = {
    "/v2/.+/blobs/sha256:[0-9a-f]{64}([?]|$) p2p",
    ".* direct",
};

//  "REGEX ACTION [use_https]": the action words are the last one or two.
static zf_status_t s_rule_parse (const char *text, rule_t *rule, zf_error_t *err)
{
    char *copy = zf_strdup (text);
    size_t length = strlen (copy);
    while (length && isspace ((unsigned char) copy[length - 1]))
        copy[--length] = 0;
    bool use_https = false;
    char *space = strrchr (copy, ' ');
    if (space && streq (space + 1, "use_https")) {
        use_https = true;
        *space = 0;
        while (space > copy && space[-1] == ' ')
            *--space = 0;
        space = strrchr (copy, ' ');
    }
    if (!space || (!streq (space + 1, "p2p") && !streq (space + 1, "direct"))) {
        zf_free (copy);
        return zf_error_set (err, ZF_E_CONFIG, "rule",
                             "\"%s\": expected REGEX p2p|direct [use_https]", text);
    }
    rule->route = streq (space + 1, "p2p") ? ROUTE_P2P : ROUTE_DIRECT;
    rule->use_https = use_https;
    *space = 0;
    char *pattern = copy;
    while (*pattern == ' ')
        pattern++;
    int rc = regcomp (&rule->regex, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror (rc, &rule->regex, why, sizeof why);
        zf_free (copy);
        return zf_error_set (err, ZF_E_CONFIG, "rule", "\"%s\": bad regular expression: %s", text,
                             why);
    }
    rule->text = zf_strdup (text);
    zf_free (copy);
    return ZF_OK;
}

//  ---------------------------------------------------------------------------------------------
//  State

typedef struct self_s self_t;
typedef struct conn_s conn_t;

typedef enum { EX_DIRECT, EX_P2P } exchange_kind_t;

typedef struct {
    conn_t *conn; //  NULL once the client went away (orphan waiting for bus replies)
    self_t *self;
    exchange_kind_t kind;
    uint64_t id;
    char *method;
    char *url;  //  upstream URL
    char *path; //  the path the client asked for (errors, logs)
    bool registry_path;
    bool is_head;
    bool close_after;
    bool head_sent;
    bool chunked;
    uint64_t body_sent;
    int status;
    int64_t started_ms;
    //  direct
    CURL *easy;
    struct curl_slist *request_headers;
    char *request_body;
    size_t request_body_len;
    char *resp_head;
    size_t resp_head_len;
    bool resp_has_length;
    bool resp_too_big;
    bool paused;
    char curl_error[CURL_ERROR_SIZE];
    //  P2P
    int bus_pending;
    char task_id[ZF_TASK_ID_SIZE + 1];
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    char *authorization;
    char *accept;
    char *range;
    uint64_t content_length;
    uint64_t piece_length;
    uint64_t piece_count;
    uint64_t range_first, range_last; //  inclusive, valid once the length is known
    uint64_t next_offset;
    zchunk_t *bitmap;
    bool task_complete; //  every piece is finished: no bitmap needed
    int timer_id;
    bool streaming;
    bool polling;
    uint64_t stat_finished; //  finished pieces storage last reported: what a long poll knows
    int64_t stat_sent_ms;
    bool stat_not_held; //  storage answered at once without news: poll every p2p_poll
} exchange_t;

struct conn_s {
    self_t *self;
    uint64_t id;
    int fd;
    int fd_events;
    bool dead;
    bool closing; //  close once out is flushed
    bool client_eof;
    char peer[64];
    //  TLS interception (memory BIOs: the socket always carries raw bytes)
    SSL *ssl;
    BIO *rbio, *wbio;
    bool handshake_done;
    char *wire;
    size_t wire_len, wire_pos;
    char *authority; //  "host[:port]" of an intercepted CONNECT
    //  request side
    char in[IN_MAX];
    size_t in_len;
    zf_http_request_t *req;
    int64_t head_started_ms;
    int64_t last_activity_ms;
    //  response side
    zf_proxy_out_t *out;
    exchange_t *ex;
    //  blind tunnel
    bool tunnel;
    int tfd;
    int tfd_events;
    bool tfd_connecting;
    bool upstream_eof;
    void *handle; //  in self->conns
};

struct self_s {
    const char *name;
    const zf_proxy_config_t *config;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_curl_loop_t *curl;
    zf_proxy_tls_t *tls;
    int listen_fd;
    zlistx_t *conns;
    zlistx_t *graveyard;
    zlistx_t *orphans; //  exchanges waiting for bus replies after their client left
    rule_t rules[ZF_PROXY_RULES_MAX + 2];
    size_t rule_count;
    regex_t hijack;
    bool has_hijack;
    struct curl_slist *connect_to;
    zhashx_t *hosts;        //  NAME -> "ADDR:PORT"
    zhashx_t *registry_map; //  NAME -> HOST
    uint64_t next_id;
    zf_http_limits_t limits;
    zf_gauge_t *connections;
    zf_counter_t *refused_full, *refused_bad, *timeouts, *fallbacks;
    zf_counter_t *sent_copied, *sent_sendfile;
    zf_proxy_files_t *files; //  data files of local tasks, for sendfile
    bool locate_refused;     //  storage does not answer piece.locate: read pieces over the bus
};

static int64_t s_now (void)
{
    return zclock_mono ();
}

static zf_counter_t *s_requests (const char *route)
{
    return zf_metrics_counter ("zfly_proxy_requests_total", "Client requests by route", "route",
                               route, NULL);
}

static void s_conn_kill (conn_t *conn, const char *why);
static void s_update_events (conn_t *conn);
static void s_progress (conn_t *conn);
static void s_exchange_end (conn_t *conn);
static void s_p2p_pump (exchange_t *ex);
static void s_direct_start (exchange_t *ex, zf_http_request_t *req);

//  ---------------------------------------------------------------------------------------------
//  Output

static const char *s_reason (int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

//  A response made here: JSON errors for registry paths, text otherwise.
static void s_respond_error (conn_t *conn, int status, bool registry, const char *code,
                             const char *message, bool close_after)
{
    char body[1024];
    int size;
    if (registry)
        size = snprintf (body, sizeof body,
                         "{\"errors\":[{\"code\":\"%s\",\"message\":\"zfly proxy: %s\","
                         "\"detail\":null}]}\n",
                         code, message);
    else
        size = snprintf (body, sizeof body, "zfly proxy: %s\n", message);
    if (size < 0 || (size_t) size >= sizeof body)
        size = (int) strlen (body);
    //  JSON-safe: messages made here carry no quotes or backslashes (checked by callers' text)
    zf_proxy_out_printf (conn->out,
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         "Connection: %s\r\n\r\n",
                         status, s_reason (status), registry ? "application/json" : "text/plain",
                         size, close_after ? "close" : "keep-alive");
    zf_proxy_out_append (conn->out, body, (size_t) size);
    if (close_after)
        conn->closing = true;
}

//  ---------------------------------------------------------------------------------------------
//  Socket I/O

static void s_wire_drain_bio (conn_t *conn)
{
    int pending;
    while ((pending = BIO_pending (conn->wbio)) > 0) {
        if (conn->wire_pos == conn->wire_len)
            conn->wire_pos = conn->wire_len = 0;
        conn->wire = zf_realloc (conn->wire, conn->wire_len + (size_t) pending);
        int got = BIO_read (conn->wbio, conn->wire + conn->wire_len, pending);
        if (got <= 0)
            break;
        conn->wire_len += (size_t) got;
    }
}

//  Encrypts queued bytes into TLS records and sends them; false when the connection died.
//  Intercepted connections never queue file ranges (they read pieces over the bus).
static bool s_flush_tls (conn_t *conn)
{
    while (true) {
        bool moved = false;
        while (conn->handshake_done && zf_proxy_out_pending (conn->out) > 0
               && conn->wire_len - conn->wire_pos < WIRE_HIGH) {
            size_t chunk;
            const void *data = zf_proxy_out_peek (conn->out, 16384, &chunk);
            int wrote = SSL_write (conn->ssl, data, (int) chunk);
            if (wrote <= 0)
                break;
            zf_proxy_out_consume (conn->out, (size_t) wrote);
            s_wire_drain_bio (conn);
            moved = true;
        }
        s_wire_drain_bio (conn);
        while (conn->wire_pos < conn->wire_len) {
            ssize_t sent = send (conn->fd, conn->wire + conn->wire_pos,
                                 conn->wire_len - conn->wire_pos, MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return true;
                s_conn_kill (conn, strerror (errno));
                return false;
            }
            zf_counter_add (conn->self->sent_copied, (uint64_t) sent);
            conn->wire_pos += (size_t) sent;
            conn->last_activity_ms = s_now ();
            moved = true;
        }
        if (!moved)
            return true;
    }
}

//  Sends what can be sent now; false when the connection died.
static bool s_flush (conn_t *conn)
{
    if (conn->ssl)
        return s_flush_tls (conn);
    uint64_t before = zf_proxy_out_pending (conn->out);
    zf_error_t err;
    zf_proxy_out_status_t status = zf_proxy_out_send (conn->out, conn->fd, &err);
    if (zf_proxy_out_pending (conn->out) != before)
        conn->last_activity_ms = s_now ();
    if (status == ZF_PROXY_OUT_DONE || status == ZF_PROXY_OUT_AGAIN)
        return true;
    if (status == ZF_PROXY_OUT_FILE_FAILED)
        zf_notice (conn->self->name,
                   "conn=%" PRIu64 " peer=%s: cannot send a cached piece: %s; closing the "
                   "connection so the client retries",
                   conn->id, conn->peer, err.message);
    s_conn_kill (conn, err.message);
    return false;
}

static bool s_all_sent (conn_t *conn)
{
    return zf_proxy_out_pending (conn->out) == 0
           && (!conn->ssl || conn->wire_pos == conn->wire_len);
}

//  Moves decrypted bytes into conn->in (no socket I/O); false when the TLS session failed.
static bool s_tls_read (conn_t *conn)
{
    if (!conn->handshake_done) {
        int rc = SSL_do_handshake (conn->ssl);
        s_wire_drain_bio (conn);
        if (rc == 1) {
            conn->handshake_done = true;
            zf_info (conn->self->name, "tls: intercepting conn=%" PRIu64 " host=%s version=%s",
                     conn->id, conn->authority, SSL_get_version (conn->ssl));
        } else {
            int code = SSL_get_error (conn->ssl, rc);
            if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE)
                return true;
            char why[256];
            ERR_error_string_n (ERR_peek_last_error (), why, sizeof why);
            ERR_clear_error ();
            zf_notice (conn->self->name,
                       "tls: handshake failed conn=%" PRIu64 " host=%s peer=%s error=%s "
                       "(does the client trust the proxy's ca_cert? see deploy/ for how)",
                       conn->id, conn->authority, conn->peer, why);
            return false;
        }
    }
    while (conn->in_len < IN_MAX) {
        int got = SSL_read (conn->ssl, conn->in + conn->in_len, (int) (IN_MAX - conn->in_len));
        if (got > 0) {
            conn->in_len += (size_t) got;
            continue;
        }
        int code = SSL_get_error (conn->ssl, got);
        s_wire_drain_bio (conn);
        if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE)
            return true;
        if (code == SSL_ERROR_ZERO_RETURN) {
            conn->client_eof = true;
            return true;
        }
        ERR_clear_error ();
        return false;
    }
    return true;
}

//  Reads what the socket has; false when the connection died.
static bool s_read (conn_t *conn)
{
    if (conn->ssl) {
        char buffer[16384];
        while (BIO_pending (conn->rbio) < 65536) {
            ssize_t got = recv (conn->fd, buffer, sizeof buffer, 0);
            if (got == 0) {
                conn->client_eof = true;
                break;
            }
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                s_conn_kill (conn, strerror (errno));
                return false;
            }
            BIO_write (conn->rbio, buffer, (int) got);
            conn->last_activity_ms = s_now ();
        }
        if (!s_tls_read (conn)) {
            s_conn_kill (conn, "tls failed");
            return false;
        }
        return true;
    }
    while (conn->in_len < IN_MAX) {
        ssize_t got = recv (conn->fd, conn->in + conn->in_len, IN_MAX - conn->in_len, 0);
        if (got == 0) {
            conn->client_eof = true;
            break;
        }
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            s_conn_kill (conn, strerror (errno));
            return false;
        }
        conn->in_len += (size_t) got;
        conn->last_activity_ms = s_now ();
    }
    return true;
}

//  ---------------------------------------------------------------------------------------------
//  Connections

static int s_on_client (zloop_t *loop, zmq_pollitem_t *item, void *arg);
static int s_on_tunnel (zloop_t *loop, zmq_pollitem_t *item, void *arg);

static void s_poller_set (self_t *self, int fd, int *current, int wanted, zloop_fn *handler,
                          void *arg)
{
    if (*current == wanted)
        return;
    zmq_pollitem_t item = {.socket = NULL, .fd = fd, .events = (short) wanted};
    if (*current != -1)
        zloop_poller_end (self->loop, &item);
    *current = -1;
    if (wanted == -1)
        return;
    ZF_ASSERT (zloop_poller (self->loop, &item, handler, arg) == 0);
    zloop_poller_set_tolerant (self->loop, &item);
    *current = wanted;
}

static void s_update_events (conn_t *conn)
{
    if (conn->dead)
        return;
    int wanted = 0;
    if (conn->tunnel) {
        if (conn->in_len < IN_MAX && !conn->client_eof && !conn->tfd_connecting)
            wanted |= ZMQ_POLLIN;
        if (zf_proxy_out_pending (conn->out) > 0)
            wanted |= ZMQ_POLLOUT;
        int twanted = 0;
        if (conn->tfd_connecting || conn->in_len > 0)
            twanted |= ZMQ_POLLOUT;
        if (!conn->tfd_connecting && zf_proxy_out_memory (conn->out) < TUNNEL_OUT
            && !conn->upstream_eof)
            twanted |= ZMQ_POLLIN;
        s_poller_set (conn->self, conn->tfd, &conn->tfd_events, twanted, s_on_tunnel, conn);
    } else {
        //  read ahead only while there is room and no request is being answered (one at a
        //  time); always read during the TLS handshake
        if (!conn->client_eof && !conn->closing && conn->in_len < IN_MAX
            && (!conn->ex || (conn->ssl && !conn->handshake_done)))
            wanted |= ZMQ_POLLIN;
        //  keep watching for a hang-up while answering
        if (conn->ex && !conn->client_eof)
            wanted |= ZMQ_POLLIN;
        if (!s_all_sent (conn) || conn->closing)
            wanted |= ZMQ_POLLOUT;
    }
    s_poller_set (conn->self, conn->fd, &conn->fd_events, wanted, s_on_client, conn);
}

static void s_exchange_free (exchange_t *ex)
{
    if (ex->easy) {
        zf_curl_loop_remove (ex->self->curl, ex->easy);
        curl_easy_cleanup (ex->easy);
    }
    if (ex->timer_id >= 0)
        zloop_timer_end (ex->self->loop, ex->timer_id);
    curl_slist_free_all (ex->request_headers);
    zchunk_destroy (&ex->bitmap);
    zf_free (ex->request_body);
    zf_free (ex->resp_head);
    zf_free (ex->method);
    zf_free (ex->url);
    zf_free (ex->path);
    zf_free (ex->authorization);
    zf_free (ex->accept);
    zf_free (ex->range);
    zf_free (ex);
}

//  The client side is gone: stop the exchange, or leave it to its pending bus replies.
static void s_exchange_detach (exchange_t *ex)
{
    ex->conn = NULL;
    if (ex->easy) {
        zf_curl_loop_remove (ex->self->curl, ex->easy);
        curl_easy_cleanup (ex->easy);
        ex->easy = NULL;
    }
    if (ex->timer_id >= 0) {
        zloop_timer_end (ex->self->loop, ex->timer_id);
        ex->timer_id = -1;
    }
    if (ex->bus_pending > 0)
        zlistx_add_end (ex->self->orphans, ex);
    else
        s_exchange_free (ex);
}

static void s_conn_kill (conn_t *conn, const char *why)
{
    if (conn->dead)
        return;
    self_t *self = conn->self;
    zf_debug (self->name, "conn closed id=%" PRIu64 " peer=%s why=%s", conn->id, conn->peer, why);
    if (conn->ex) {
        if (conn->ex->head_sent && conn->ex->kind == EX_P2P)
            zf_info (self->name, "p2p: client left id=%" PRIu64 " sent=%" PRIu64, conn->ex->id,
                     conn->ex->body_sent);
        s_exchange_detach (conn->ex);
        conn->ex = NULL;
    }
    s_poller_set (self, conn->fd, &conn->fd_events, -1, NULL, NULL);
    close (conn->fd);
    conn->fd = -1;
    if (conn->tunnel && conn->tfd >= 0) {
        s_poller_set (self, conn->tfd, &conn->tfd_events, -1, NULL, NULL);
        close (conn->tfd);
        conn->tfd = -1;
    }
    conn->dead = true;
    zlistx_delete (self->conns, conn->handle);
    conn->handle = zlistx_add_end (self->graveyard, conn);
    zf_gauge_set (self->connections, (double) zlistx_size (self->conns));
}

static void s_conn_free (conn_t *conn)
{
    zf_http_request_destroy (&conn->req);
    if (conn->ssl)
        SSL_free (conn->ssl); //  frees its BIOs
    zf_free (conn->wire);
    zf_proxy_out_destroy (&conn->out);
    zf_free (conn->authority);
    zf_free (conn);
}

//  ---------------------------------------------------------------------------------------------
//  Upstream selection

//  Value of query parameter name in url (caller frees), or NULL; removes it from url when
//  strip is set.
static char *s_query_take (char *url, const char *name, bool strip)
{
    char *query = strchr (url, '?');
    if (!query)
        return NULL;
    size_t name_len = strlen (name);
    char *param = query + 1;
    while (*param) {
        char *end = strchr (param, '&');
        size_t length = end ? (size_t) (end - param) : strlen (param);
        if (length > name_len && strncmp (param, name, name_len) == 0 && param[name_len] == '=') {
            char *value = zf_strndup (param + name_len + 1, length - name_len - 1);
            if (strip) {
                char *rest = end ? end + 1 : param + length;
                memmove (param, rest, strlen (rest) + 1);
                size_t total = strlen (url);
                if (total && (url[total - 1] == '&' || url[total - 1] == '?'))
                    url[total - 1] = 0;
            }
            return value;
        }
        if (!end)
            break;
        param = end + 1;
    }
    return NULL;
}

//  "https://host" for a registry name given by a header, ns, or the default.
static char *s_registry_base (self_t *self, const char *registry)
{
    const char *host = registry;
    const char *mapped = zhashx_lookup (self->registry_map, registry);
    if (mapped)
        host = mapped; //  may carry its scheme
    const char *scheme = "https://";
    if (strncmp (host, "http://", 7) == 0 || strncmp (host, "https://", 8) == 0)
        scheme = "";
    char *base = zf_asprintf ("%s%s", scheme, host);
    size_t length = strlen (base);
    while (length && base[length - 1] == '/')
        base[--length] = 0;
    return base;
}

static const rule_t *s_rule_match (self_t *self, const char *url)
{
    for (size_t index = 0; index < self->rule_count; index++)
        if (regexec (&self->rules[index].regex, url, 0, NULL, 0) == 0)
            return &self->rules[index];
    return NULL;
}

static bool s_hop_by_hop (const char *name, size_t length)
{
    static const char *names[] = {
        "connection",     "keep-alive", "proxy-connection",     "transfer-encoding",  "te",
        "trailer",        "upgrade",    "proxy-authorization",  "proxy-authenticate", "host",
        "content-length", "expect",     "x-dragonfly-registry", "x-zfly-route"};
    for (size_t index = 0; index < ZF_ARRAY_LEN (names); index++)
        if (strlen (names[index]) == length && strncasecmp (name, names[index], length) == 0)
            return true;
    return false;
}

//  ---------------------------------------------------------------------------------------------
//  Direct: libcurl

static void s_send_head (exchange_t *ex)
{
    conn_t *conn = ex->conn;
    ZF_ASSERT (!ex->head_sent);
    ex->head_sent = true;
    bool no_body = ex->is_head || ex->status == 204 || ex->status == 304
                   || (ex->status >= 100 && ex->status < 200);
    ex->chunked = !no_body && !ex->resp_has_length;
    if (ex->chunked && zf_http_request_version_minor (conn->req) == 0) {
        ex->chunked = false;
        ex->close_after = true; //  HTTP/1.0: the end of the body is the end of the connection
    }
    zf_proxy_out_printf (conn->out, "HTTP/1.1 %d %s\r\n", ex->status, s_reason (ex->status));
    zf_proxy_out_append (conn->out, ex->resp_head, ex->resp_head_len);
    if (ex->chunked)
        zf_proxy_out_printf (conn->out, "Transfer-Encoding: chunked\r\n");
    zf_proxy_out_printf (conn->out, "Connection: %s\r\n\r\n",
                         ex->close_after ? "close" : "keep-alive");
}

static size_t s_curl_header (char *data, size_t size, size_t count, void *arg)
{
    exchange_t *ex = arg;
    size_t length = size * count;
    if (length >= 5 && strncmp (data, "HTTP/", 5) == 0) {
        ex->resp_head_len = 0; //  a new response (after a redirect or a 100)
        ex->resp_has_length = false;
        const char *space = memchr (data, ' ', length);
        ex->status = space ? (int) strtol (space + 1, NULL, 10) : 502;
        return length;
    }
    const char *colon = memchr (data, ':', length);
    if (!colon)
        return length; //  the blank line
    size_t name_len = (size_t) (colon - data);
    if (s_hop_by_hop (data, name_len)) {
        if (name_len == 14 && strncasecmp (data, "content-length", 14) == 0) {
            ex->resp_has_length = true;
        } else
            return length;
    }
    if (ex->resp_head_len + length + 2 > RESP_HEAD_MAX) {
        ex->resp_too_big = true;
        return 0; //  aborts the transfer
    }
    ex->resp_head = zf_realloc (ex->resp_head, ex->resp_head_len + length + 2);
    size_t line = length;
    while (line && (data[line - 1] == '\r' || data[line - 1] == '\n'))
        line--;
    memcpy (ex->resp_head + ex->resp_head_len, data, line);
    memcpy (ex->resp_head + ex->resp_head_len + line, "\r\n", 2);
    ex->resp_head_len += line + 2;
    return length;
}

static size_t s_curl_write (char *data, size_t size, size_t count, void *arg)
{
    exchange_t *ex = arg;
    size_t length = size * count;
    conn_t *conn = ex->conn;
    if (!conn)
        return 0;
    if (zf_proxy_out_memory (conn->out) > OUT_HIGH) {
        ex->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (!ex->head_sent)
        s_send_head (ex);
    if (ex->is_head)
        return length;
    if (ex->chunked)
        zf_proxy_out_printf (conn->out, "%zx\r\n", length);
    zf_proxy_out_append (conn->out, data, length);
    if (ex->chunked)
        zf_proxy_out_append (conn->out, "\r\n", 2);
    ex->body_sent += length;
    s_update_events (conn);
    return length;
}

static void s_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg)
{
    (void) arg;
    exchange_t *ex = easy_private;
    curl_easy_cleanup (easy);
    ex->easy = NULL;
    conn_t *conn = ex->conn;
    ZF_ASSERT (conn);
    self_t *self = ex->self;
    if (result == CURLE_OK) {
        if (!ex->head_sent)
            s_send_head (ex);
        if (ex->chunked)
            zf_proxy_out_append (conn->out, "0\r\n\r\n", 5);
        zf_info (self->name,
                 "request id=%" PRIu64 " %s %s route=direct status=%d bytes=%" PRIu64
                 " ms=%" PRId64,
                 ex->id, ex->method, ex->url, ex->status, ex->body_sent, s_now () - ex->started_ms);
        s_exchange_end (conn);
        return;
    }
    const char *why = *ex->curl_error ? ex->curl_error : curl_easy_strerror (result);
    if (ex->resp_too_big)
        why = "upstream response head too large";
    if (ex->head_sent) {
        zf_notice (self->name,
                   "request id=%" PRIu64 " %s %s: upstream failed after %" PRIu64
                   " bytes (%s); closing the client connection so it retries",
                   ex->id, ex->method, ex->url, ex->body_sent, why);
        ex->close_after = true;
        conn->closing = true;
        s_exchange_end (conn);
        return;
    }
    int status = 502;
    const char *code = "UNAVAILABLE";
    if (result == CURLE_OPERATION_TIMEDOUT) {
        status = 504;
        code = "TIMEOUT";
    }
    char message[512];
    //  quotes and backslashes would break the JSON body
    snprintf (message, sizeof message, "upstream %s failed: %s", ex->url, why);
    for (char *scan = message; *scan; scan++)
        if (*scan == '"' || *scan == '\\' || (unsigned char) *scan < 0x20)
            *scan = '\'';
    zf_notice (self->name, "request id=%" PRIu64 " %s %s: %s -> %d", ex->id, ex->method, ex->url,
               message, status);
    ex->status = status;
    ex->head_sent = true;
    s_respond_error (conn, status, ex->registry_path, code, message, ex->close_after);
    s_exchange_end (conn);
}

static void s_direct_start (exchange_t *ex, zf_http_request_t *req)
{
    self_t *self = ex->self;
    ex->kind = EX_DIRECT;
    CURL *easy = curl_easy_init ();
    ZF_ASSERT (easy);
    ex->easy = easy;
    curl_easy_setopt (easy, CURLOPT_URL, ex->url);
    curl_easy_setopt (easy, CURLOPT_PRIVATE, ex);
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (easy, CURLOPT_PROXY, ""); //  never through the environment's proxy
    curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt (easy, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt (easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
    curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS, (long) self->config->connect_timeout_ms);
    curl_easy_setopt (easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt (easy, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, ex->curl_error);
    curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, s_curl_header);
    curl_easy_setopt (easy, CURLOPT_HEADERDATA, ex);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_curl_write);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, ex);
    curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    if (self->connect_to)
        curl_easy_setopt (easy, CURLOPT_CONNECT_TO, self->connect_to);
    if (*self->config->upstream_ca)
        curl_easy_setopt (easy, CURLOPT_CAINFO, self->config->upstream_ca);
    //  end-to-end headers go as the client sent them (Accept, Authorization, Range, …)
    for (size_t index = 0; index < zf_http_request_header_count (req); index++) {
        const zf_http_header_t *header = zf_http_request_header_at (req, index);
        if (s_hop_by_hop (header->name, strlen (header->name)))
            continue;
        char *line = *header->value ? zf_asprintf ("%s: %s", header->name, header->value)
                                    : zf_asprintf ("%s;", header->name);
        ex->request_headers = curl_slist_append (ex->request_headers, line);
        zf_free (line);
    }
    ex->request_headers = curl_slist_append (ex->request_headers, "Expect:");
    if (!zf_http_request_header (req, "accept"))
        ex->request_headers = curl_slist_append (ex->request_headers, "Accept:");
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, ex->request_headers);
    size_t body_len;
    const char *body = zf_http_request_body (req, &body_len);
    if (ex->is_head)
        curl_easy_setopt (easy, CURLOPT_NOBODY, 1L);
    else if (!streq (ex->method, "GET")) {
        curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, ex->method);
        if (body_len > 0 || streq (ex->method, "POST") || streq (ex->method, "PUT")
            || streq (ex->method, "PATCH")) {
            ex->request_body = zf_malloc (body_len + 1);
            memcpy (ex->request_body, body, body_len);
            ex->request_body_len = body_len;
            curl_easy_setopt (easy, CURLOPT_POSTFIELDS, ex->request_body);
            curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
        }
    }
    zf_counter_add (s_requests ("direct"), 1);
    zf_curl_loop_add (self->curl, easy);
}

//  ---------------------------------------------------------------------------------------------
//  P2P

static void s_p2p_fallback (exchange_t *ex, const char *why)
{
    conn_t *conn = ex->conn;
    zf_notice (ex->self->name, "p2p: falling back to direct id=%" PRIu64 " url=%s why=%s", ex->id,
               ex->url, why);
    zf_counter_add (ex->self->fallbacks, 1);
    if (ex->timer_id >= 0) {
        zloop_timer_end (ex->self->loop, ex->timer_id);
        ex->timer_id = -1;
    }
    s_direct_start (ex, conn->req);
}

static void s_p2p_fail_after_head (exchange_t *ex, const char *why)
{
    conn_t *conn = ex->conn;
    zf_notice (ex->self->name,
               "p2p: task failed after %" PRIu64 " bytes id=%" PRIu64 " task=%.16s why=%s; "
               "closing the client connection so it retries",
               ex->body_sent, ex->id, ex->task_id, why);
    s_conn_kill (conn, "p2p failed after the head");
}

//  Range "bytes=A-B" / "bytes=A-" / "bytes=-N" against the length; 0 none (or ignored), 1 ok,
//  -1 unsatisfiable.
static int s_range_parse (const char *range, uint64_t length, uint64_t *first, uint64_t *last)
{
    if (!range || strncmp (range, "bytes=", 6) != 0 || strchr (range, ','))
        return 0;
    const char *text = range + 6;
    char *end;
    if (*text == '-') {
        errno = 0;
        uint64_t suffix = strtoull (text + 1, &end, 10);
        if (errno || *end || end == text + 1)
            return 0;
        if (suffix == 0 || length == 0)
            return -1;
        *first = suffix >= length ? 0 : length - suffix;
        *last = length - 1;
        return 1;
    }
    if (!isdigit ((unsigned char) *text))
        return 0;
    errno = 0;
    uint64_t start = strtoull (text, &end, 10);
    if (errno || *end != '-')
        return 0;
    uint64_t stop = length ? length - 1 : 0;
    if (end[1]) {
        char *tail;
        errno = 0;
        stop = strtoull (end + 1, &tail, 10);
        if (errno || *tail)
            return 0;
        if (stop < start)
            return 0;
        if (stop >= length)
            stop = length - 1;
    }
    if (start >= length)
        return -1;
    *first = start;
    *last = stop;
    return 1;
}

//  Queues the response head; false when that ended the exchange (416, empty body), which may
//  have freed ex.
static bool s_p2p_send_head (exchange_t *ex)
{
    conn_t *conn = ex->conn;
    int ranged = s_range_parse (ex->range, ex->content_length, &ex->range_first, &ex->range_last);
    if (ranged == -1) {
        ex->head_sent = true;
        ex->status = 416;
        zf_proxy_out_printf (conn->out,
                             "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%" PRIu64
                             "\r\nContent-Length: 0\r\nConnection: %s\r\n\r\n",
                             ex->content_length, ex->close_after ? "close" : "keep-alive");
        s_exchange_end (conn);
        return false;
    }
    if (ranged == 0) {
        ex->range_first = 0;
        ex->range_last = ex->content_length ? ex->content_length - 1 : 0;
    }
    uint64_t length = ex->content_length ? ex->range_last - ex->range_first + 1 : 0;
    ex->status = ranged ? 206 : 200;
    ex->head_sent = true;
    zf_proxy_out_printf (
        conn->out,
        "HTTP/1.1 %d %s\r\nContent-Type: application/octet-stream\r\n"
        "Docker-Content-Digest: %s\r\nAccept-Ranges: bytes\r\nContent-Length: %" PRIu64 "\r\n",
        ex->status, s_reason (ex->status), ex->digest, length);
    if (ranged)
        zf_proxy_out_printf (conn->out,
                             "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n",
                             ex->range_first, ex->range_last, ex->content_length);
    zf_proxy_out_printf (conn->out, "Connection: %s\r\n\r\n",
                         ex->close_after ? "close" : "keep-alive");
    ex->next_offset = ex->range_first;
    ex->streaming = true;
    s_update_events (conn);
    if (length == 0) {
        zf_info (ex->self->name, "request id=%" PRIu64 " GET %s route=p2p status=%d bytes=0",
                 ex->id, ex->url, ex->status);
        s_exchange_end (conn);
        return false;
    }
    return true;
}

//  Bus replies find their exchange alive, orphaned (client gone: free when none pending) or
//  finished.
static exchange_t *s_reply_exchange (void *arg)
{
    exchange_t *ex = arg;
    ex->bus_pending--;
    if (!ex->conn) {
        if (ex->bus_pending == 0) {
            void *handle = zlistx_find (ex->self->orphans, ex);
            if (handle)
                zlistx_detach (ex->self->orphans, handle);
            s_exchange_free (ex);
        }
        return NULL;
    }
    return ex;
}

//  Takes a task.status; false when the exchange is no longer a P2P one in progress (it ended,
//  failed or fell back to direct): the caller must not touch ex then.
static bool s_on_status (exchange_t *ex, const zf_msg_task_status_t *status)
{
    if (!ex->task_id[0])
        zf_strlcpy (ex->task_id, status->task_id, sizeof ex->task_id);
    //  a cache hit: the first piece is asked for at once, not after a poll of storage
    if (streq (status->state, "complete"))
        ex->task_complete = true;
    if (streq (status->state, "failed")) {
        char why[1200];
        snprintf (why, sizeof why, "task failed: %s %s",
                  status->error_code ? status->error_code : "",
                  status->error_message ? status->error_message : "");
        if (ex->head_sent)
            s_p2p_fail_after_head (ex, why);
        else
            s_p2p_fallback (ex, why);
        return false;
    }
    if (!ex->head_sent && status->piece_length > 0
        && (status->content_length > 0 || streq (status->state, "complete"))) {
        ex->content_length = status->content_length;
        ex->piece_length = status->piece_length;
        ex->piece_count = status->piece_count;
        return s_p2p_send_head (ex);
    }
    return true;
}

//  Sends a head just queued at once, before asking storage for the first piece: holding it
//  for the piece, or waking storage first, made the first byte arrive 0.2-0.5 ms later on
//  loopback (docs/benchmarks.md, "Proxy"). False when that closed the connection (the
//  exchange may be freed).
static bool s_flush_now (conn_t *conn)
{
    if (!s_flush (conn))
        return false;
    s_update_events (conn);
    return true;
}

static void s_p2p_schedule_poll (exchange_t *ex);

//  The part of the piece at content [offset, offset + size) that the response needs next:
//  from (within the piece) and count; false when it is not the piece the response is at.
static bool s_piece_span (exchange_t *ex, uint64_t offset, uint64_t size, uint64_t *from,
                          uint64_t *count)
{
    uint64_t piece_end = offset + size; //  exclusive
    if (ex->next_offset < offset || ex->next_offset >= piece_end)
        return false;
    uint64_t stop = ex->range_last + 1 < piece_end ? ex->range_last + 1 : piece_end;
    *from = ex->next_offset - offset;
    *count = stop - ex->next_offset;
    return true;
}

//  count more body bytes are queued: on to the next piece.
static void s_p2p_queued (exchange_t *ex, uint64_t count)
{
    ex->next_offset += count;
    ex->body_sent += count;
    s_update_events (ex->conn);
    s_p2p_pump (ex);
}

static void s_on_piece (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    exchange_t *ex = s_reply_exchange (arg);
    if (!ex)
        return;
    if (status != ZF_OK) {
        s_p2p_fail_after_head (ex, err ? err->message : "piece.read failed");
        return;
    }
    const zf_msg_piece_data_t *piece = reply->env.body;
    zframe_t *frame = zmsg_pop (reply->raw);
    uint64_t from, count;
    if (!frame || zframe_size (frame) != piece->size) {
        zframe_destroy (&frame);
        s_p2p_fail_after_head (ex, "piece.data without its bytes");
        return;
    }
    if (!s_piece_span (ex, piece->offset, piece->size, &from, &count)) {
        zframe_destroy (&frame);
        s_p2p_fail_after_head (ex, "piece.data for another offset");
        return;
    }
    //  the frame itself is queued: the piece is not copied again on its way to the socket
    zf_proxy_out_frame (ex->conn->out, &frame, (size_t) from, (size_t) count);
    s_p2p_queued (ex, count);
}

//  Storage cannot locate pieces for us (another host, or an older storage): from now on this
//  proxy reads them over the bus.
static bool s_locate_refused (exchange_t *ex, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err)
{
    if (status != ZF_E_REMOTE || !reply)
        return false;
    const zf_msg_error_t *error = reply->env.body;
    if (!streq (error->code, "forbidden")
        && !streq (error->code, zf_status_name (ZF_E_UNKNOWN_TYPE)))
        return false;
    if (!ex->self->locate_refused)
        zf_notice (ex->self->name,
                   "p2p: storage %s does not locate pieces for this proxy (%s): cached pieces "
                   "are read over the bus, without sendfile",
                   ex->self->config->storage, err->message);
    ex->self->locate_refused = true;
    return true;
}

static void s_on_located (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    exchange_t *ex = s_reply_exchange (arg);
    if (!ex)
        return;
    if (s_locate_refused (ex, status, reply, err)) {
        s_p2p_pump (ex); //  the same piece again, over the bus
        return;
    }
    if (status != ZF_OK) {
        s_p2p_fail_after_head (ex, err ? err->message : "piece.locate failed");
        return;
    }
    const zf_msg_piece_located_t *located = reply->env.body;
    uint64_t from, count;
    if (located->size > ex->piece_length
        || !s_piece_span (ex, located->piece * ex->piece_length, located->size, &from, &count)) {
        s_p2p_fail_after_head (ex, "piece.located for another offset");
        return;
    }
    zf_error_t error;
    zf_proxy_file_t *file = zf_proxy_files_open (ex->self->files, located->path, s_now (), &error);
    if (!file) {
        s_p2p_fail_after_head (ex, error.message);
        return;
    }
    zf_proxy_out_file (ex->conn->out, file, located->offset + from, count);
    zf_proxy_file_release (&file);
    s_p2p_queued (ex, count);
}

static void s_on_storage_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                               const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) err;
    exchange_t *ex = s_reply_exchange (arg);
    if (!ex)
        return;
    ex->polling = false;
    ex->stat_not_held = s_now () - ex->stat_sent_ms < P2P_STAT_WAIT_MS / 2;
    if (status == ZF_OK) {
        const zf_msg_storage_task_t *task = reply->env.body;
        zframe_t *frame = zmsg_first (reply->raw);
        if (frame) {
            zchunk_destroy (&ex->bitmap);
            ex->bitmap = zchunk_new (zframe_data (frame), zframe_size (frame));
        }
        ex->stat_not_held &= task->finished_count == ex->stat_finished;
        ex->stat_finished = task->finished_count;
    }
    s_p2p_pump (ex);
}

static void s_on_query (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    exchange_t *ex = s_reply_exchange (arg);
    if (!ex)
        return;
    if (status != ZF_OK) {
        ex->polling = false;
        if (ex->head_sent)
            s_p2p_fail_after_head (ex, err ? err->message : "task.query failed");
        else
            s_p2p_fallback (ex, err ? err->message : "task.query failed");
        return;
    }
    conn_t *conn = ex->conn;
    if (!s_on_status (ex, reply->env.body) || !s_flush_now (conn))
        return; //  fell back, finished or closed
    if (!ex->streaming) {
        ex->polling = false;
        s_p2p_schedule_poll (ex);
        return;
    }
    //  A long poll: storage answers when the next piece lands (or after P2P_STAT_WAIT_MS).
    zf_msg_storage_stat_t stat = {.task_id = ex->task_id,
                                  .wait_ms = P2P_STAT_WAIT_MS,
                                  .known_finished = ex->stat_finished,
                                  .bitmap_only = true};
    zf_bus_call_t call = {.timeout_ms = P2P_STAT_WAIT_MS + P2P_STAT_TIMEOUT_MS, .retries = -1};
    ex->stat_sent_ms = s_now ();
    zf_error_t error;
    if (zf_bus_request (bus, ex->self->config->storage, &zf_msg_storage_stat, &stat, NULL, call,
                        s_on_storage_stat, ex, &error)
        != ZF_OK) {
        ex->polling = false;
        s_p2p_fail_after_head (ex, error.message);
        return;
    }
    ex->bus_pending++;
}

static int s_on_poll_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    exchange_t *ex = arg;
    ex->timer_id = -1;
    zf_msg_task_query_t query = {.task_id = ex->task_id};
    zf_error_t err;
    if (zf_bus_request (ex->self->bus, ex->self->config->fetcher, &zf_msg_task_query, &query, NULL,
                        ZF_BUS_CALL_DEFAULT, s_on_query, ex, &err)
        != ZF_OK) {
        if (ex->head_sent)
            s_p2p_fail_after_head (ex, err.message);
        else
            s_p2p_fallback (ex, err.message);
        return 0;
    }
    ex->polling = true;
    ex->bus_pending++;
    return 0;
}

//  With a storage that holds storage.stat until a piece lands, the next question goes out at
//  once (the hold paces it); with one that answers at once, every p2p_poll.
static void s_p2p_schedule_poll (exchange_t *ex)
{
    if (ex->timer_id >= 0 || ex->polling)
        return;
    size_t delay = ex->stat_not_held ? (size_t) ex->self->config->p2p_poll_ms : 1;
    ex->timer_id = zloop_timer (ex->self->loop, delay, 1, s_on_poll_timer, ex);
}

static bool s_piece_finished (exchange_t *ex, uint64_t piece)
{
    if (ex->task_complete)
        return true;
    if (!ex->bitmap || piece / 8 >= zchunk_size (ex->bitmap))
        return false;
    return (zchunk_data (ex->bitmap)[piece / 8] >> (piece % 8)) & 1;
}

//  Whether the response may take another piece now. A piece read over the bus is held in
//  memory, so the next one is read only once the last has nearly left; a file range holds no
//  memory, so pieces are located up to LOCATE_AHEAD ahead of the one being sent, and the
//  stream does not wait for storage's check of the next piece.
static bool s_p2p_room (exchange_t *ex)
{
    zf_proxy_out_t *out = ex->conn->out;
    uint64_t in_memory = zf_proxy_out_memory (out);
    uint64_t in_files = zf_proxy_out_pending (out) - in_memory;
    return in_memory <= OUT_HIGH && in_files <= LOCATE_AHEAD * ex->piece_length;
}

//  Pieces of local tasks go to plain-HTTP clients from storage's files with sendfile; TLS
//  needs the bytes in memory to encrypt them, and the bus frame already brings them there
//  without a copy.
static bool s_p2p_sendfile (exchange_t *ex)
{
    return !ex->conn->ssl && !ex->self->locate_refused;
}

static void s_p2p_pump (exchange_t *ex)
{
    conn_t *conn = ex->conn;
    if (!conn || !ex->streaming || ex->bus_pending > 0)
        return;
    if (ex->next_offset > ex->range_last || ex->content_length == 0) {
        zf_info (ex->self->name,
                 "request id=%" PRIu64 " GET %s route=p2p status=%d bytes=%" PRIu64 " ms=%" PRId64
                 " task=%.16s",
                 ex->id, ex->url, ex->status, ex->body_sent, s_now () - ex->started_ms,
                 ex->task_id);
        s_exchange_end (conn);
        return;
    }
    if (!s_p2p_room (ex))
        return; //  s_on_client calls again as the queue drains
    uint64_t piece = ex->next_offset / ex->piece_length;
    if (!s_piece_finished (ex, piece)) {
        s_p2p_schedule_poll (ex);
        return;
    }
    zf_error_t err;
    zf_status_t status;
    if (s_p2p_sendfile (ex)) {
        zf_msg_piece_locate_t locate = {.task_id = ex->task_id, .piece = piece};
        status = zf_bus_request (ex->self->bus, ex->self->config->storage, &zf_msg_piece_locate,
                                 &locate, NULL, ZF_BUS_CALL_DEFAULT, s_on_located, ex, &err);
    } else {
        zf_msg_piece_read_t read = {.task_id = ex->task_id, .piece = piece};
        status = zf_bus_request (ex->self->bus, ex->self->config->storage, &zf_msg_piece_read,
                                 &read, NULL, ZF_BUS_CALL_DEFAULT, s_on_piece, ex, &err);
    }
    if (status != ZF_OK) {
        s_p2p_fail_after_head (ex, err.message);
        return;
    }
    ex->bus_pending++;
}

static void s_on_fetch (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    exchange_t *ex = s_reply_exchange (arg);
    if (!ex)
        return;
    if (status != ZF_OK) {
        s_p2p_fallback (ex, err ? err->message : "task.fetch failed");
        return;
    }
    if (!s_on_status (ex, reply->env.body) || !s_flush_now (ex->conn))
        return;
    if (ex->streaming)
        s_p2p_pump (ex);
    else
        s_p2p_schedule_poll (ex);
}

static void s_p2p_start (exchange_t *ex)
{
    self_t *self = ex->self;
    ex->kind = EX_P2P;
    zf_rec_http_header_t headers[2];
    size_t header_count = 0;
    if (ex->authorization)
        headers[header_count++] =
            (zf_rec_http_header_t){.name = "Authorization", .value = ex->authorization};
    if (ex->accept)
        headers[header_count++] = (zf_rec_http_header_t){.name = "Accept", .value = ex->accept};
    zf_msg_task_fetch_t fetch = {
        .url = ex->url, .digest = ex->digest, .headers = {.items = headers, .count = header_count}};
    zf_error_t err;
    if (zf_bus_request (self->bus, self->config->fetcher, &zf_msg_task_fetch, &fetch, NULL,
                        ZF_BUS_CALL_DEFAULT, s_on_fetch, ex, &err)
        != ZF_OK) {
        s_p2p_fallback (ex, err.message);
        return;
    }
    ex->bus_pending++;
    zf_counter_add (s_requests ("p2p"), 1);
}

//  ---------------------------------------------------------------------------------------------
//  Requests

static void s_tunnel_start (conn_t *conn, const char *host, const char *port);

static bool s_split_authority (const char *authority, char *host, size_t host_size, char *port,
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

static void s_handle_connect (conn_t *conn)
{
    self_t *self = conn->self;
    const char *authority = zf_http_request_url (conn->req);
    char host[256], port[8];
    if (conn->ssl || !s_split_authority (authority, host, sizeof host, port, sizeof port)) {
        zf_notice (self->name, "connect: refused conn=%" PRIu64 " authority=%.100s", conn->id,
                   authority);
        s_respond_error (conn, 400, false, "BAD_REQUEST", "bad CONNECT authority", true);
        return;
    }
    if (self->has_hijack && regexec (&self->hijack, host, 0, NULL, 0) == 0) {
        if (!self->tls) {
            zf_notice (self->name, "connect: %s matches hijack but no ca_cert/ca_key: tunnel",
                       host);
        } else {
            SSL *ssl = zf_proxy_tls_server (self->tls, host);
            if (!ssl) {
                s_respond_error (conn, 502, false, "TLS", "cannot make a certificate", true);
                return;
            }
            zf_proxy_out_printf (conn->out, "HTTP/1.1 200 Connection Established\r\n\r\n");
            //  the 200 goes out in clear before the TLS session starts
            if (!s_flush (conn))
                return;
            if (zf_proxy_out_pending (conn->out) > 0) {
                //  rare: the 200 did not fit in the socket buffer; keep it simple and refuse
                SSL_free (ssl);
                s_conn_kill (conn, "connect: could not send 200");
                return;
            }
            conn->ssl = ssl;
            conn->rbio = BIO_new (BIO_s_mem ());
            conn->wbio = BIO_new (BIO_s_mem ());
            SSL_set_bio (ssl, conn->rbio, conn->wbio);
            conn->authority =
                streq (port, "443") ? zf_strdup (host) : zf_asprintf ("%s:%s", host, port);
            //  bytes already read after the CONNECT head are the start of the TLS session
            if (conn->in_len > 0) {
                BIO_write (conn->rbio, conn->in, (int) conn->in_len);
                conn->in_len = 0;
            }
            zf_counter_add (s_requests ("intercept"), 1);
            zf_info (self->name, "connect: intercepting conn=%" PRIu64 " host=%s", conn->id,
                     conn->authority);
            zf_http_request_next (conn->req);
            if (!s_tls_read (conn))
                s_conn_kill (conn, "tls failed");
            return;
        }
    }
    s_tunnel_start (conn, host, port);
}

//  The ex of a request just parsed: upstream URL, route, then direct or P2P.
static void s_dispatch (conn_t *conn)
{
    self_t *self = conn->self;
    zf_http_request_t *req = conn->req;
    const char *method = zf_http_request_method (req);
    const char *target = zf_http_request_url (req);
    bool keep_alive = zf_http_request_keep_alive (req);
    if (zf_http_request_is_connect (req)) {
        s_handle_connect (conn);
        return;
    }
    if (zf_http_request_is_upgrade (req)) {
        s_respond_error (conn, 501, false, "UNSUPPORTED", "protocol upgrades are not supported",
                         true);
        return;
    }
    exchange_t *ex = zf_calloc (1, sizeof *ex);
    ex->self = self;
    ex->conn = conn;
    ex->id = ++self->next_id;
    ex->timer_id = -1;
    ex->started_ms = s_now ();
    ex->method = zf_strdup (method);
    ex->is_head = streq (method, "HEAD");
    ex->close_after = !keep_alive;
    conn->ex = ex;
    char *url = NULL;
    if (strncasecmp (target, "http://", 7) == 0 || strncasecmp (target, "https://", 8) == 0) {
        url = zf_strdup (target); //  forward proxy
        const char *path = strchr (target + 8, '/');
        ex->path = zf_strdup (path ? path : "/");
    } else if (*target == '/') {
        ex->path = zf_strdup (target);
        if (conn->authority)
            url = zf_asprintf ("https://%s%s", conn->authority, target); //  intercepted
        else {
            //  registry mirror
            char *path = zf_strdup (target);
            char *ns = s_query_take (path, "ns", true);
            const char *registry = zf_http_request_header (req, "X-Dragonfly-Registry");
            if (!registry || !*registry)
                registry = ns && *ns ? ns : self->config->default_registry;
            char *base = s_registry_base (self, registry);
            url = zf_asprintf ("%s%s", base, path);
            zf_free (base);
            zf_free (path);
            zf_free (ns);
        }
    } else {
        zf_notice (self->name, "request refused conn=%" PRIu64 " peer=%s: bad target %.100s",
                   conn->id, conn->peer, target);
        zf_counter_add (self->refused_bad, 1);
        ex->head_sent = true;
        s_respond_error (conn, 400, false, "BAD_REQUEST", "request target not understood", true);
        s_exchange_end (conn);
        return;
    }
    ex->registry_path = strncmp (ex->path, "/v2/", 4) == 0 || streq (ex->path, "/v2");
    const rule_t *rule = s_rule_match (self, url);
    route_t route = rule ? rule->route : ROUTE_DIRECT;
    if (rule && rule->use_https && strncasecmp (url, "http://", 7) == 0) {
        char *secure = zf_asprintf ("https://%s", url + 7);
        zf_free (url);
        url = secure;
    }
    ex->url = url;
    const char *forced = zf_http_request_header (req, "X-Zfly-Route");
    if (forced && strcasecmp (forced, "direct") == 0)
        route = ROUTE_DIRECT;
    else if (forced && strcasecmp (forced, "p2p") == 0)
        route = ROUTE_P2P;
    zf_debug (self->name, "request id=%" PRIu64 " conn=%" PRIu64 " %s %s -> %s route=%s", ex->id,
              conn->id, method, target, url, route == ROUTE_P2P ? "p2p" : "direct");
    if (route == ROUTE_P2P && streq (method, "GET") && *self->config->fetcher
        && zf_task_digest_from_url (url, ex->digest)) {
        const char *value = zf_http_request_header (req, "Authorization");
        ex->authorization = value ? zf_strdup (value) : NULL;
        value = zf_http_request_header (req, "Accept");
        ex->accept = value ? zf_strdup (value) : NULL;
        value = zf_http_request_header (req, "Range");
        ex->range = value ? zf_strdup (value) : NULL;
        s_p2p_start (ex);
    } else
        s_direct_start (ex, req);
}

static void s_exchange_end (conn_t *conn)
{
    exchange_t *ex = conn->ex;
    ZF_ASSERT (ex);
    bool close_after = ex->close_after;
    conn->ex = NULL;
    ex->conn = NULL;
    if (ex->bus_pending > 0) {
        if (ex->timer_id >= 0) {
            zloop_timer_end (ex->self->loop, ex->timer_id);
            ex->timer_id = -1;
        }
        zlistx_add_end (ex->self->orphans, ex);
    } else
        s_exchange_free (ex);
    conn->last_activity_ms = s_now ();
    conn->head_started_ms = 0;
    zf_http_request_next (conn->req);
    if (close_after)
        conn->closing = true;
    else
        s_progress (conn); //  pipelined requests
    s_update_events (conn);
}

//  Parses buffered bytes into requests while none is being answered.
static void s_progress (conn_t *conn)
{
    self_t *self = conn->self;
    while (!conn->dead && !conn->ex && !conn->closing && !conn->tunnel) {
        if (conn->ssl && conn->handshake_done && conn->in_len < IN_MAX) {
            if (!s_tls_read (conn)) {
                conn->closing = true;
                break;
            }
        }
        if (conn->in_len == 0)
            break;
        size_t used = 0;
        zf_http_feed_t fed = zf_http_request_feed (conn->req, conn->in, conn->in_len, &used);
        memmove (conn->in, conn->in + used, conn->in_len - used);
        conn->in_len -= used;
        if (zf_http_request_started (conn->req) && !conn->head_started_ms)
            conn->head_started_ms = s_now ();
        if (fed == ZF_HTTP_MORE) {
            if (conn->in_len == IN_MAX)
                conn->in_len = 0; //  cannot happen: the parser consumes all it is given
            break;
        }
        if (fed == ZF_HTTP_ERROR) {
            int status = zf_http_request_error_status (conn->req);
            const char *reason = zf_http_request_error_reason (conn->req);
            bool tls_hello = used == 0 && conn->in_len > 0 && (unsigned char) conn->in[0] == 0x16;
            zf_notice (self->name, "request refused conn=%" PRIu64 " peer=%s status=%d why=%s%s",
                       conn->id, conn->peer, status, reason,
                       tls_hello ? " (a TLS handshake on the plain HTTP port: configure the "
                                   "mirror as http://, or reach HTTPS registries through "
                                   "HTTPS_PROXY with CONNECT)"
                                 : "");
            zf_counter_add (self->refused_bad, 1);
            s_respond_error (conn, status, false, "BAD_REQUEST", reason, true);
            conn->in_len = 0;
            break;
        }
        conn->head_started_ms = 0;
        s_dispatch (conn);
    }
    if (!conn->dead)
        s_update_events (conn);
}

static int s_on_client (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    conn_t *conn = arg;
    if (conn->dead || item->fd != conn->fd)
        return 0;
    if (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
        if (conn->tunnel) {
            ssize_t got = recv (conn->fd, conn->in + conn->in_len, IN_MAX - conn->in_len, 0);
            if (got > 0) {
                conn->in_len += (size_t) got;
                conn->last_activity_ms = s_now ();
            } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                conn->client_eof = true;
                if (conn->in_len == 0)
                    shutdown (conn->tfd, SHUT_WR);
            }
        } else {
            if (!s_read (conn))
                return 0;
            if (conn->client_eof && conn->ex) {
                //  the client hung up while we answered: stop the upstream side
                s_conn_kill (conn, "client closed during a response");
                return 0;
            }
        }
    }
    if (item->revents & ZMQ_POLLOUT || (!conn->tunnel && conn->ssl)) {
        if (!s_flush (conn))
            return 0;
    }
    if (conn->tunnel) {
        if (conn->upstream_eof && zf_proxy_out_pending (conn->out) == 0) {
            s_conn_kill (conn, "tunnel closed by upstream");
            return 0;
        }
        s_update_events (conn);
        return 0;
    }
    //  a paused source may go on
    exchange_t *ex = conn->ex;
    if (ex && ex->kind == EX_DIRECT && ex->paused && ex->easy
        && zf_proxy_out_memory (conn->out) <= OUT_HIGH / 2) {
        ex->paused = false;
        zf_curl_loop_unpause (conn->self->curl, ex->easy);
    } else if (ex && ex->kind == EX_P2P)
        s_p2p_pump (ex); //  it knows when there is room for the next piece
    if (conn->dead)
        return 0;
    if (conn->closing && !conn->ex && s_all_sent (conn)) {
        s_conn_kill (conn, "response done, closing");
        return 0;
    }
    if (conn->client_eof && !conn->ex && s_all_sent (conn) && conn->in_len == 0) {
        s_conn_kill (conn, "client closed");
        return 0;
    }
    s_progress (conn);
    if (!conn->dead && conn->client_eof && !conn->ex && s_all_sent (conn))
        s_conn_kill (conn, "client closed");
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  Blind tunnel

static void s_tunnel_start (conn_t *conn, const char *host, const char *port)
{
    self_t *self = conn->self;
    char target_host[256], target_port[8];
    zf_strlcpy (target_host, host, sizeof target_host);
    zf_strlcpy (target_port, port, sizeof target_port);
    const char *mapped = zhashx_lookup (self->hosts, host);
    if (mapped)
        s_split_authority (mapped, target_host, sizeof target_host, target_port,
                           sizeof target_port);
    //  NOTE: a blocking name lookup; blind tunnels are for the rare hosts not intercepted
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo (target_host, target_port, &hints, &found);
    int fd = -1;
    if (rc == 0) {
        fd = socket (found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect (fd, found->ai_addr, found->ai_addrlen) != 0
            && errno != EINPROGRESS) {
            close (fd);
            fd = -1;
        }
        freeaddrinfo (found);
    }
    if (fd < 0) {
        zf_notice (self->name, "connect: cannot reach %s:%s (%s)", host, port,
                   rc ? gai_strerror (rc) : strerror (errno));
        s_respond_error (conn, 502, false, "UNREACHABLE", "cannot reach the CONNECT target", true);
        return;
    }
    zf_http_request_next (conn->req);
    conn->tunnel = true;
    conn->tfd = fd;
    conn->tfd_events = -1;
    conn->tfd_connecting = true;
    conn->last_activity_ms = s_now ();
    zf_counter_add (s_requests ("tunnel"), 1);
    zf_info (self->name, "connect: tunnel conn=%" PRIu64 " to %s:%s", conn->id, host, port);
    s_update_events (conn);
}

static int s_on_tunnel (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    conn_t *conn = arg;
    if (conn->dead || item->fd != conn->tfd)
        return 0;
    if (conn->tfd_connecting) {
        int error = 0;
        socklen_t size = sizeof error;
        getsockopt (conn->tfd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error) {
            zf_notice (conn->self->name, "connect: tunnel conn=%" PRIu64 " failed: %s", conn->id,
                       strerror (error));
            s_poller_set (conn->self, conn->tfd, &conn->tfd_events, -1, NULL, NULL);
            close (conn->tfd);
            conn->tfd = -1;
            conn->tunnel = false;
            s_respond_error (conn, 502, false, "UNREACHABLE", "cannot reach the CONNECT target",
                             true);
            s_update_events (conn);
            return 0;
        }
        if (!(item->revents & ZMQ_POLLOUT))
            return 0;
        conn->tfd_connecting = false;
        zf_proxy_out_printf (conn->out, "HTTP/1.1 200 Connection Established\r\n\r\n");
    }
    if (item->revents & ZMQ_POLLOUT && conn->in_len > 0) {
        ssize_t sent = send (conn->tfd, conn->in, conn->in_len, MSG_NOSIGNAL);
        if (sent > 0) {
            memmove (conn->in, conn->in + sent, conn->in_len - (size_t) sent);
            conn->in_len -= (size_t) sent;
            conn->last_activity_ms = s_now ();
            if (conn->in_len == 0 && conn->client_eof)
                shutdown (conn->tfd, SHUT_WR);
        } else if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            s_conn_kill (conn, "tunnel upstream send failed");
            return 0;
        }
    }
    if (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
        char buffer[16384];
        ssize_t got = recv (conn->tfd, buffer, sizeof buffer, 0);
        if (got > 0) {
            zf_proxy_out_append (conn->out, buffer, (size_t) got);
            conn->last_activity_ms = s_now ();
        } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            conn->upstream_eof = true;
    }
    if (!s_flush (conn))
        return 0;
    if (conn->upstream_eof && zf_proxy_out_pending (conn->out) == 0) {
        s_conn_kill (conn, "tunnel closed by upstream");
        return 0;
    }
    s_update_events (conn);
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  Listener, sweeper

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
        if (zlistx_size (self->conns) >= (size_t) self->config->max_connections) {
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
        int one = 1;
        setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *conn = zf_calloc (1, sizeof *conn);
        conn->self = self;
        conn->id = ++self->next_id;
        conn->fd = fd;
        conn->fd_events = -1;
        conn->tfd = -1;
        conn->tfd_events = -1;
        conn->req = zf_http_request_new (&self->limits);
        conn->out = zf_proxy_out_new (self->sent_copied, self->sent_sendfile);
        conn->last_activity_ms = s_now ();
        char host[INET6_ADDRSTRLEN] = "?";
        if (address.ss_family == AF_INET)
            inet_ntop (AF_INET, &((struct sockaddr_in *) &address)->sin_addr, host, sizeof host);
        else if (address.ss_family == AF_INET6)
            inet_ntop (AF_INET6, &((struct sockaddr_in6 *) &address)->sin6_addr, host, sizeof host);
        snprintf (conn->peer, sizeof conn->peer, "%s", host);
        conn->handle = zlistx_add_end (self->conns, conn);
        zf_gauge_set (self->connections, (double) zlistx_size (self->conns));
        s_update_events (conn);
    }
    return 0;
}

static int s_on_sweep (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    conn_t *conn;
    while ((conn = zlistx_detach (self->graveyard, NULL)))
        s_conn_free (conn);
    int64_t now = s_now ();
    zf_proxy_files_sweep (self->files, now, FILE_IDLE_MS);
    const zf_proxy_config_t *config = self->config;
    conn = zlistx_first (self->conns);
    while (conn) {
        conn_t *next = zlistx_next (self->conns);
        if (conn->head_started_ms && !conn->ex && !conn->closing
            && now - conn->head_started_ms > config->header_timeout_ms) {
            zf_notice (self->name,
                       "request timeout conn=%" PRIu64 " peer=%s: head not complete after %" PRId64
                       " ms (slow client)",
                       conn->id, conn->peer, now - conn->head_started_ms);
            zf_counter_add (self->timeouts, 1);
            conn->head_started_ms = 0;
            s_respond_error (conn, 408, false, "TIMEOUT", "request head too slow", true);
            if (s_flush (conn))
                s_update_events (conn);
        } else if (now - conn->last_activity_ms > config->client_timeout_ms
                   && (!conn->ex || zf_proxy_out_pending (conn->out) > 0)) {
            zf_info (self->name, "conn=%" PRIu64 " peer=%s idle for %" PRId64 " ms: closing",
                     conn->id, conn->peer, now - conn->last_activity_ms);
            zf_counter_add (self->timeouts, 1);
            s_conn_kill (conn, "idle");
        }
        conn = next;
    }
    return 0;
}

static int s_listen (self_t *self, zf_error_t *err)
{
    char host[256], port[8];
    if (!s_split_authority (self->config->listen, host, sizeof host, port, sizeof port)) {
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
        zf_error_set (err, ZF_E_IO, "listen", "cannot listen on %s: %s", self->config->listen,
                      strerror (errno));
        if (fd >= 0)
            close (fd);
        freeaddrinfo (found);
        return -1;
    }
    freeaddrinfo (found);
    self->listen_fd = fd;
    return 0;
}

//  "A=B C=D" into a table; false on a malformed pair.
static bool s_pairs (const char *text, zhashx_t *table, const char *key, zf_error_t *err)
{
    char *copy = zf_strdup (text);
    char *save = NULL;
    bool ok = true;
    for (char *word = strtok_r (copy, " \t", &save); word; word = strtok_r (NULL, " \t", &save)) {
        char *equal = strchr (word, '=');
        if (!equal || equal == word || !equal[1]) {
            zf_error_set (err, ZF_E_CONFIG, key, "\"%s\": expected NAME=VALUE pairs", word);
            ok = false;
            break;
        }
        *equal = 0;
        zhashx_update (table, word, zf_strdup (equal + 1));
    }
    zf_free (copy);
    return ok;
}

static void s_string_free (void **item_p)
{
    zf_free (*item_p);
    *item_p = NULL;
}

static int s_setup (self_t *self, zf_error_t *err)
{
    const zf_proxy_config_t *config = self->config;
    for (size_t index = 0; index < ZF_PROXY_RULES_MAX; index++) {
        if (!config->rules[index] || !*config->rules[index])
            continue;
        if (s_rule_parse (config->rules[index], &self->rules[self->rule_count], err) != ZF_OK)
            return -1;
        self->rule_count++;
    }
    if (self->rule_count == 0)
        for (size_t index = 0; index < ZF_ARRAY_LEN (s_default_rules); index++)
            ZF_ASSERT (s_rule_parse (s_default_rules[index], &self->rules[self->rule_count++], err)
                       == ZF_OK);
    self->hosts = zhashx_new ();
    zhashx_set_destructor (self->hosts, s_string_free);
    self->registry_map = zhashx_new ();
    zhashx_set_destructor (self->registry_map, s_string_free);
    if (!s_pairs (config->hosts, self->hosts, "hosts", err)
        || !s_pairs (config->registry_map, self->registry_map, "registry_map", err))
        return -1;
    for (const char *address = zhashx_first (self->hosts); address;
         address = zhashx_next (self->hosts)) {
        char *line = zf_asprintf ("%s::%s", (const char *) zhashx_cursor (self->hosts), address);
        self->connect_to = curl_slist_append (self->connect_to, line);
        zf_free (line);
    }
    if (*config->hijack) {
        int rc = regcomp (&self->hijack, config->hijack, REG_EXTENDED | REG_NOSUB | REG_ICASE);
        if (rc != 0) {
            zf_error_set (err, ZF_E_CONFIG, "hijack", "bad regular expression \"%s\"",
                          config->hijack);
            return -1;
        }
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

void zf_proxy_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    self_t self = {.name = actor->name, .config = actor->config, .listen_fd = -1};
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
    self.conns = zlistx_new ();
    self.graveyard = zlistx_new ();
    self.orphans = zlistx_new ();
    self.connections = zf_metrics_gauge ("zfly_proxy_connections", "Open client connections", NULL);
    self.refused_full =
        zf_metrics_counter ("zfly_proxy_refused_total", "Client connections or requests refused",
                            "reason", "max_connections", NULL);
    self.refused_bad =
        zf_metrics_counter ("zfly_proxy_refused_total", "Client connections or requests refused",
                            "reason", "bad_request", NULL);
    self.timeouts =
        zf_metrics_counter ("zfly_proxy_refused_total", "Client connections or requests refused",
                            "reason", "timeout", NULL);
    self.fallbacks = zf_metrics_counter ("zfly_proxy_p2p_fallbacks_total",
                                         "P2P requests served directly after a P2P failure", NULL);
    self.sent_copied =
        zf_metrics_counter ("zfly_proxy_sent_bytes_total",
                            "Bytes written to client sockets, by system call", "via", "send", NULL);
    self.sent_sendfile = zf_metrics_counter ("zfly_proxy_sent_bytes_total",
                                             "Bytes written to client sockets, by system call",
                                             "via", "sendfile", NULL);
    self.files = zf_proxy_files_new ();
    //  cached pieces go out with sendfile, which cannot be told MSG_NOSIGNAL
    zf_proxy_out_block_sigpipe ();
    self.loop = zloop_new ();
    zloop_set_nonstop (self.loop, true);
    zloop_reader (self.loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (self.bus, self.loop);
    self.curl = zf_curl_loop_new (self.loop, s_curl_done, &self);
    zmq_pollitem_t item = {.socket = NULL, .fd = self.listen_fd, .events = ZMQ_POLLIN};
    zloop_poller (self.loop, &item, s_on_accept, &self);
    zloop_poller_set_tolerant (self.loop, &item);
    zloop_timer (self.loop, SWEEP_MS, 0, s_on_sweep, &self);
    zf_notice (self.name, "started listen=%s rules=%zu fetcher=%s hijack=%s default_registry=%s",
               self.config->listen, self.rule_count,
               *self.config->fetcher ? self.config->fetcher : "-",
               *self.config->hijack ? self.config->hijack : "-", self.config->default_registry);
    zstr_send (pipe, "READY");
    zloop_start (self.loop);
    conn_t *conn;
    while ((conn = zlistx_first (self.conns))) {
        s_conn_kill (conn, "stopping");
    }
    while ((conn = zlistx_detach (self.graveyard, NULL)))
        s_conn_free (conn);
    exchange_t *ex;
    while ((ex = zlistx_detach (self.orphans, NULL))) {
        ex->timer_id = -1;
        s_exchange_free (ex);
    }
    zf_curl_loop_destroy (&self.curl);
    zf_info (self.name, "stopped");
    zf_proxy_files_destroy (&self.files);
cleanup:
    zf_bus_destroy (&self.bus);
    zloop_destroy (&self.loop);
    zlistx_destroy (&self.conns);
    zlistx_destroy (&self.graveyard);
    zlistx_destroy (&self.orphans);
    if (self.listen_fd >= 0)
        close (self.listen_fd);
    for (size_t index = 0; index < self.rule_count; index++) {
        regfree (&self.rules[index].regex);
        zf_free (self.rules[index].text);
    }
    if (self.has_hijack)
        regfree (&self.hijack);
    zf_proxy_tls_destroy (&self.tls);
    curl_slist_free_all (self.connect_to);
    zhashx_destroy (&self.hosts);
    zhashx_destroy (&self.registry_map);
}

//  ---------------------------------------------------------------------------------------------

void zf_proxy_test (bool verbose)
{
    if (verbose)
        printf (" * zf_proxy: ");
    rule_t rule;
    zf_error_t err;
    ZF_ASSERT (s_rule_parse (s_default_rules[0], &rule, &err) == ZF_OK);
    ZF_ASSERT (rule.route == ROUTE_P2P && !rule.use_https);
    const char *blob = "https://r/v2/a/b/blobs/sha256:"
                       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    ZF_ASSERT (regexec (&rule.regex, blob, 0, NULL, 0) == 0);
    ZF_ASSERT (regexec (&rule.regex, "https://r/v2/a/manifests/latest", 0, NULL, 0) != 0);
    regfree (&rule.regex);
    zf_free (rule.text);
    ZF_ASSERT (s_rule_parse ("^http://mirror/  direct  use_https", &rule, &err) == ZF_OK);
    ZF_ASSERT (rule.route == ROUTE_DIRECT && rule.use_https);
    regfree (&rule.regex);
    zf_free (rule.text);
    ZF_ASSERT (s_rule_parse ("[ p2p", &rule, &err) == ZF_E_CONFIG);
    ZF_ASSERT (s_rule_parse ("abc", &rule, &err) == ZF_E_CONFIG);
    ZF_ASSERT (s_rule_parse ("abc fast", &rule, &err) == ZF_E_CONFIG);

    char url[] = "/v2/lib/manifests/1?ns=docker.io&x=1";
    char *ns = s_query_take (url, "ns", true);
    ZF_ASSERT (streq (ns, "docker.io") && streq (url, "/v2/lib/manifests/1?x=1"));
    zf_free (ns);
    char url2[] = "/v2/lib/manifests/1?ns=docker.io";
    ns = s_query_take (url2, "ns", true);
    ZF_ASSERT (streq (url2, "/v2/lib/manifests/1"));
    zf_free (ns);

    uint64_t first, last;
    ZF_ASSERT (s_range_parse ("bytes=0-9", 100, &first, &last) == 1 && first == 0 && last == 9);
    ZF_ASSERT (s_range_parse ("bytes=90-", 100, &first, &last) == 1 && last == 99);
    ZF_ASSERT (s_range_parse ("bytes=-10", 100, &first, &last) == 1 && first == 90);
    ZF_ASSERT (s_range_parse ("bytes=50-500", 100, &first, &last) == 1 && last == 99);
    ZF_ASSERT (s_range_parse ("bytes=100-", 100, &first, &last) == -1);
    ZF_ASSERT (s_range_parse ("bytes=1-2,5-6", 100, &first, &last) == 0);
    ZF_ASSERT (s_range_parse ("items=1-2", 100, &first, &last) == 0);

    char host[256], port[8];
    ZF_ASSERT (s_split_authority ("reg.test:5000", host, sizeof host, port, sizeof port));
    ZF_ASSERT (streq (host, "reg.test") && streq (port, "5000"));
    ZF_ASSERT (s_split_authority ("reg.test", host, sizeof host, port, sizeof port));
    ZF_ASSERT (streq (port, "443"));
    ZF_ASSERT (s_split_authority ("[::1]:8443", host, sizeof host, port, sizeof port));
    ZF_ASSERT (streq (host, "::1") && streq (port, "8443"));
    ZF_ASSERT (!s_split_authority ("reg.test:99999", host, sizeof host, port, sizeof port));
    if (verbose)
        printf ("OK\n");
}
