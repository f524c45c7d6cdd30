/*  zf_http.c — /healthz and /metrics over libmicrohttpd.

    We bind the listening socket ourselves and hand it to libmicrohttpd: that way a bind failure
    comes back with its real errno ("Address already in use"), which MHD_start_daemon does not
    report, and the port chosen for port 0 is read straight from the socket. libmicrohttpd runs
    its own polling thread; the handler only reads atomics and the metrics registry, both safe
    from any thread. */
#include "zf_http.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_CONNECTION_TIMEOUT_S 10
#define S_CONNECTION_LIMIT     64
#define S_LISTEN_BACKLOG       64

typedef enum {
    S_STARTING,
    S_READY,
    S_STOPPING,
} s_health_t;

struct zf_http_s {
    struct MHD_Daemon *daemon;
    int port;
    atomic_int health; //  s_health_t, set by the owner, read by the HTTP thread
};

//  One socket address of either family, without casts between sockaddr types.
typedef struct {
    union {
        struct sockaddr any;
        struct sockaddr_in ipv4;
        struct sockaddr_in6 ipv6;
        struct sockaddr_storage storage;
    } as;
    socklen_t len;
} s_address_t;

//  --------------------------------------------------------------------------------------------
//  Listen address

static bool s_parse_port (const char *text, int *port)
{
    size_t len = strlen (text);
    if (len == 0 || len > 5 || strspn (text, "0123456789") != len)
        return false;
    long value = strtol (text, NULL, 10);
    if (value > 65535)
        return false;
    *port = (int) value;
    return true;
}

//  "HOST:PORT" or "[V6HOST]:PORT", numeric hosts only: a name would need a resolver at start
//  and could mean different addresses on different days.
static zf_status_t s_parse_listen (const char *endpoint, s_address_t *address, zf_error_t *err)
{
    memset (address, 0, sizeof *address);
    const char *colon = strrchr (endpoint, ':');
    const char *host = endpoint;
    size_t host_len = colon ? (size_t) (colon - endpoint) : 0;
    int family = AF_INET;
    if (colon && *endpoint == '[') {
        bool bracketed = host_len >= 2 && endpoint[host_len - 1] == ']';
        host++;
        host_len = bracketed ? host_len - 2 : 0;
        family = AF_INET6;
    }
    char host_text[INET6_ADDRSTRLEN];
    int port = 0;
    if (!colon || host_len == 0 || host_len >= sizeof host_text || !s_parse_port (colon + 1, &port))
        return zf_error_set (err, ZF_E_CONFIG, endpoint,
                             "expected HOST:PORT with a numeric IPv4 host or [IPv6] host and a "
                             "port 0-65535");
    memcpy (host_text, host, host_len);
    host_text[host_len] = '\0';

    struct sockaddr_in *ipv4 = &address->as.ipv4;
    struct sockaddr_in6 *ipv6 = &address->as.ipv6;
    void *host_binary = family == AF_INET ? (void *) &ipv4->sin_addr : (void *) &ipv6->sin6_addr;
    if (inet_pton (family, host_text, host_binary) != 1)
        return zf_error_set (err, ZF_E_CONFIG, endpoint, "'%s' is not a numeric %s address",
                             host_text, family == AF_INET ? "IPv4" : "IPv6");
    if (family == AF_INET) {
        ipv4->sin_family = AF_INET;
        ipv4->sin_port = htons ((uint16_t) port);
        address->len = sizeof *ipv4;
    } else {
        ipv6->sin6_family = AF_INET6;
        ipv6->sin6_port = htons ((uint16_t) port);
        address->len = sizeof *ipv6;
    }
    return ZF_OK;
}

//  Fills err from errno, closes fd if open, and returns -1 for the caller to pass on.
static int s_socket_failed (zf_error_t *err, const char *endpoint, const char *step, int fd)
{
    int saved_errno = errno;
    if (fd >= 0)
        close (fd);
    char text[128];
    zf_error_set (err, ZF_E_IO, endpoint, "cannot listen on %s: %s: %s", endpoint, step,
                  strerror_r (saved_errno, text, sizeof text));
    return -1;
}

//  Returns the listening socket and its port, or -1 with err filled.
static int s_listen_socket (const char *endpoint, const s_address_t *address, int *port,
                            zf_error_t *err)
{
    int fd = socket (address->as.any.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return s_socket_failed (err, endpoint, "socket", fd);
    //  A restarted daemon can bind again while old connections sit in TIME_WAIT; Linux still
    //  refuses a port that another socket is listening on.
    int reuse = 1;
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
    if (bind (fd, &address->as.any, address->len) != 0)
        return s_socket_failed (err, endpoint, "bind", fd);
    if (listen (fd, S_LISTEN_BACKLOG) != 0)
        return s_socket_failed (err, endpoint, "listen", fd);
    s_address_t bound;
    memset (&bound, 0, sizeof bound);
    bound.len = sizeof bound.as;
    if (getsockname (fd, &bound.as.any, &bound.len) != 0)
        return s_socket_failed (err, endpoint, "getsockname", fd);
    *port = ntohs (bound.as.any.sa_family == AF_INET6 ? bound.as.ipv6.sin6_port
                                                      : bound.as.ipv4.sin_port);
    return fd;
}

int zf_http_listen_socket (const char *listen, int *port, zf_error_t *err)
{
    s_address_t address;
    if (s_parse_listen (listen, &address, err) != ZF_OK)
        return -1;
    return s_listen_socket (listen, &address, port, err);
}

//  --------------------------------------------------------------------------------------------
//  Requests

//  Bounded label values: a scanner probing random paths must not create a series per path.
static const char *s_path_label (const char *url)
{
    if (streq (url, "/healthz"))
        return "/healthz";
    if (streq (url, "/metrics"))
        return "/metrics";
    return "other";
}

static void s_count_request (const char *path_label, unsigned int code)
{
    char code_text[8];
    snprintf (code_text, sizeof code_text, "%u", code);
    zf_counter_add (zf_metrics_counter ("zfly_http_requests_total",
                                        "HTTP requests answered by the status endpoint", "path",
                                        path_label, "code", code_text, NULL),
                    1);
}

typedef struct {
    unsigned int code;
    const char *content_type;
    char *body; //  freed by libmicrohttpd when body_owned, else static
    bool body_owned;
    bool allow_get; //  405: say which methods would work
} s_reply_t;

static enum MHD_Result s_send (struct MHD_Connection *connection, const char *path_label,
                               s_reply_t reply)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        strlen (reply.body), reply.body,
        reply.body_owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!response) {
        if (reply.body_owned)
            zf_free (reply.body);
        return MHD_NO; //  libmicrohttpd out of memory: it drops the connection
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, reply.content_type);
    if (reply.allow_get)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result result = MHD_queue_response (connection, reply.code, response);
    MHD_destroy_response (response);
    s_count_request (path_label, reply.code);
    return result;
}

static s_reply_t s_text_reply (unsigned int code, const char *body)
{
    return (s_reply_t){
        .code = code, .content_type = "text/plain; charset=utf-8", .body = (char *) body};
}

static s_reply_t s_health_reply (zf_http_t *self)
{
    switch ((s_health_t) atomic_load (&self->health)) {
    case S_READY: return s_text_reply (MHD_HTTP_OK, "ok\n");
    case S_STOPPING: return s_text_reply (MHD_HTTP_SERVICE_UNAVAILABLE, "stopping\n");
    case S_STARTING: break;
    }
    return s_text_reply (MHD_HTTP_SERVICE_UNAVAILABLE, "starting\n");
}

static s_reply_t s_metrics_reply (void)
{
    return (s_reply_t){.code = MHD_HTTP_OK,
                       .content_type = "text/plain; version=0.0.4; charset=utf-8",
                       .body = zf_metrics_render (),
                       .body_owned = true};
}

//  Answers on the first call, before any request body: nothing here reads one, and
//  libmicrohttpd closes the connection after the reply when a body was left unread.
static enum MHD_Result s_answer (void *cls, struct MHD_Connection *connection, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **request_state)
{
    (void) version;
    (void) upload_data;
    (void) upload_data_size;
    (void) request_state;
    zf_http_t *self = cls;
    const char *path_label = s_path_label (url);
    if (streq (path_label, "other"))
        return s_send (connection, path_label, s_text_reply (MHD_HTTP_NOT_FOUND, "not found\n"));
    if (!streq (method, MHD_HTTP_METHOD_GET) && !streq (method, MHD_HTTP_METHOD_HEAD)) {
        s_reply_t reply = s_text_reply (MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        reply.allow_get = true;
        return s_send (connection, path_label, reply);
    }
    if (streq (path_label, "/healthz"))
        return s_send (connection, path_label, s_health_reply (self));
    return s_send (connection, path_label, s_metrics_reply ());
}

void zf_http_mhd_log (void *cls, const char *fmt, va_list args)
{
    zf_http_log_t *log = cls;
    char line[512];
    vsnprintf (line, sizeof line, fmt, args);
    line[strcspn (line, "\r\n")] = '\0'; //  libmicrohttpd ends its messages with a newline
    zf_warning_limited (&log->limit, log->subsystem, "libmicrohttpd: %s", line);
}

static zf_http_log_t s_log = ZF_HTTP_LOG_INIT ("http");

//  --------------------------------------------------------------------------------------------
//  Lifecycle

zf_http_t *zf_http_new (const char *endpoint, zf_error_t *err)
{
    ZF_ASSERT (endpoint);
    s_address_t address;
    if (s_parse_listen (endpoint, &address, err) != ZF_OK)
        return NULL;
    zf_http_t *self = zf_calloc (1, sizeof *self);
    atomic_init (&self->health, S_STARTING);
    int fd = s_listen_socket (endpoint, &address, &self->port, err);
    if (fd < 0) {
        zf_free (self);
        return NULL;
    }
    self->daemon = MHD_start_daemon (
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, s_answer, self,
        MHD_OPTION_EXTERNAL_LOGGER, zf_http_mhd_log, &s_log, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) S_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int) S_CONNECTION_LIMIT, MHD_OPTION_END);
    if (!self->daemon) {
        //  Not closing fd: libmicrohttpd may have closed it already, and closing a number that
        //  another thread reused would be worse than one descriptor left behind by a failed
        //  start (thread or memory exhaustion; the daemon exits on this error anyway).
        zf_error_set (err, ZF_E_IO, endpoint, "cannot start the HTTP server (libmicrohttpd)");
        zf_free (self);
        return NULL;
    }
    zf_info ("http", "listening listen=%s port=%d", endpoint, self->port);
    return self;
}

void zf_http_destroy (zf_http_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_http_t *self = *self_p;
    if (!self)
        return;
    MHD_stop_daemon (self->daemon); //  joins its thread and closes the listening socket
    zf_free (self);
    *self_p = NULL;
}

int zf_http_port (zf_http_t *self)
{
    ZF_ASSERT (self);
    return self->port;
}

//  Stopping is final: a late "ready" from a shutting-down actor must not turn health green.
void zf_http_set_ready (zf_http_t *self, bool ready)
{
    ZF_ASSERT (self);
    int expected = ready ? S_STARTING : S_READY;
    atomic_compare_exchange_strong (&self->health, &expected, ready ? S_READY : S_STARTING);
}

void zf_http_set_stopping (zf_http_t *self)
{
    ZF_ASSERT (self);
    atomic_store (&self->health, S_STOPPING);
}

//  --------------------------------------------------------------------------------------------
//  Selftest: a minimal blocking client, so zfbus needs no HTTP client library

#define S_TEST_RESPONSE_MAX ((size_t) 1024 * 1024)

//  Sends request to host:port and returns everything until the server closes; every call has a
//  deadline so a broken server fails the test instead of hanging it.
static char *s_test_exchange (const char *host, int port, const char *request)
{
    s_address_t address;
    char endpoint[80];
    snprintf (endpoint, sizeof endpoint, strchr (host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    ZF_ASSERT (s_parse_listen (endpoint, &address, NULL) == ZF_OK);
    int fd = socket (address.as.any.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ZF_ASSERT (fd >= 0);
    struct timeval deadline = {.tv_sec = 10};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
    setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &deadline, sizeof deadline);
    ZF_ASSERT (connect (fd, &address.as.any, address.len) == 0);
    size_t request_len = strlen (request);
    ZF_ASSERT (send (fd, request, request_len, MSG_NOSIGNAL) == (ssize_t) request_len);

    char *response = zf_malloc (S_TEST_RESPONSE_MAX + 1);
    size_t used = 0;
    ssize_t got;
    while ((got = recv (fd, response + used, S_TEST_RESPONSE_MAX - used, 0)) > 0)
        used += (size_t) got;
    ZF_ASSERT (got == 0); //  not a timeout, not over the cap
    response[used] = '\0';
    close (fd);
    return response;
}

static char *s_test_request (int port, const char *method, const char *path)
{
    char request[256];
    snprintf (request, sizeof request,
              "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path);
    return s_test_exchange ("127.0.0.1", port, request);
}

static int s_test_status (const char *response)
{
    ZF_ASSERT (strncmp (response, "HTTP/1.1 ", 9) == 0);
    return (int) strtol (response + 9, NULL, 10);
}

static const char *s_test_body (const char *response)
{
    const char *end_of_headers = strstr (response, "\r\n\r\n");
    ZF_ASSERT (end_of_headers);
    return end_of_headers + 4;
}

//  A header line, looked for in the header block only.
static bool s_test_has_header (const char *response, const char *line)
{
    const char *found = strstr (response, line);
    return found && found < s_test_body (response)
           && strncmp (found + strlen (line), "\r\n", 2) == 0;
}

static void s_test_expect (int port, const char *method, const char *path, int status,
                           const char *body)
{
    char *response = s_test_request (port, method, path);
    ZF_ASSERT (s_test_status (response) == status);
    ZF_ASSERT (streq (s_test_body (response), body));
    zf_free (response);
}

static void s_test_bad_listen (const char *endpoint, zf_status_t code, const char *message)
{
    zf_error_t err;
    zf_error_clear (&err);
    ZF_ASSERT (zf_http_new (endpoint, &err) == NULL);
    ZF_ASSERT (err.code == code);
    ZF_ASSERT (streq (err.where, endpoint));
    ZF_ASSERT (strstr (err.message, message));
}

static void s_test_health (zf_http_t *http, int port)
{
    s_test_expect (port, "GET", "/healthz", 503, "starting\n");
    zf_http_set_ready (http, true);
    s_test_expect (port, "GET", "/healthz", 200, "ok\n");
    s_test_expect (port, "GET", "/healthz?verbose=1", 200, "ok\n");
    s_test_expect (port, "HEAD", "/healthz", 200, "");
}

static void s_test_metrics (int port)
{
    zf_counter_add (zf_metrics_counter ("zfly_test_http_total", "Test counter", NULL), 7);
    char *response = s_test_request (port, "GET", "/metrics");
    ZF_ASSERT (s_test_status (response) == 200);
    ZF_ASSERT (s_test_has_header (response, "Content-Type: text/plain; version=0.0.4; "
                                            "charset=utf-8"));
    const char *body = s_test_body (response);
    ZF_ASSERT (strstr (body, "# TYPE zfly_http_requests_total counter\n"));
    ZF_ASSERT (strstr (body, "zfly_http_requests_total{path=\"/healthz\",code=\"503\"} 1\n"));
    ZF_ASSERT (strstr (body, "zfly_http_requests_total{path=\"/healthz\",code=\"200\"} 3\n"));
    ZF_ASSERT (strstr (body, "zfly_test_http_total 7\n"));
    zf_free (response);

    response = s_test_request (port, "HEAD", "/metrics");
    ZF_ASSERT (s_test_status (response) == 200);
    ZF_ASSERT (s_test_has_header (response, "Content-Type: text/plain; version=0.0.4; "
                                            "charset=utf-8"));
    ZF_ASSERT (streq (s_test_body (response), ""));
    zf_free (response);
}

static void s_test_errors (int port)
{
    s_test_expect (port, "GET", "/", 404, "not found\n");
    s_test_expect (port, "GET", "/metrics/extra", 404, "not found\n");
    char *response = s_test_request (port, "DELETE", "/metrics");
    ZF_ASSERT (s_test_status (response) == 405);
    ZF_ASSERT (s_test_has_header (response, "Allow: GET, HEAD"));
    ZF_ASSERT (streq (s_test_body (response), "method not allowed\n"));
    zf_free (response);
    //  A body nobody reads does not stall the reply.
    response = s_test_exchange ("127.0.0.1", port,
                                "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                "Connection: close\r\n\r\nhello");
    ZF_ASSERT (s_test_status (response) == 405);
    zf_free (response);

    char *metrics = zf_metrics_render ();
    ZF_ASSERT (strstr (metrics, "zfly_http_requests_total{path=\"other\",code=\"404\"} 2\n"));
    ZF_ASSERT (strstr (metrics, "zfly_http_requests_total{path=\"/metrics\",code=\"405\"} 1\n"));
    ZF_ASSERT (strstr (metrics, "zfly_http_requests_total{path=\"/healthz\",code=\"405\"} 1\n"));
    zf_free (metrics);
}

static void s_test_listen_errors (int port_in_use)
{
    const char *usage = "expected HOST:PORT";
    s_test_bad_listen ("nonsense", ZF_E_CONFIG, usage);
    s_test_bad_listen ("127.0.0.1", ZF_E_CONFIG, usage);
    s_test_bad_listen (":8080", ZF_E_CONFIG, usage);
    s_test_bad_listen ("127.0.0.1:", ZF_E_CONFIG, usage);
    s_test_bad_listen ("127.0.0.1:65536", ZF_E_CONFIG, usage);
    s_test_bad_listen ("127.0.0.1:-1", ZF_E_CONFIG, usage);
    s_test_bad_listen ("[::1:80", ZF_E_CONFIG, usage);
    s_test_bad_listen ("localhost:80", ZF_E_CONFIG, "'localhost' is not a numeric IPv4 address");
    s_test_bad_listen ("::1:80", ZF_E_CONFIG, "'::1' is not a numeric IPv4 address");
    s_test_bad_listen ("[127.0.0.1]:80", ZF_E_CONFIG, "not a numeric IPv6 address");

    char endpoint[32];
    snprintf (endpoint, sizeof endpoint, "127.0.0.1:%d", port_in_use);
    char in_use[96];
    snprintf (in_use, sizeof in_use, "cannot listen on %s: bind: Address already in use", endpoint);
    s_test_bad_listen (endpoint, ZF_E_IO, in_use);
}

//  Loopback IPv6 may be missing in a container: then binding fails and there is nothing to test.
static void s_test_ipv6 (bool verbose)
{
    zf_error_t err;
    zf_http_t *http = zf_http_new ("[::1]:0", &err);
    if (!http) {
        ZF_ASSERT (err.code == ZF_E_IO);
        if (verbose)
            printf ("zf_http_test: no IPv6 loopback (%s), skipped\n", err.message);
        return;
    }
    char *response =
        s_test_exchange ("::1", zf_http_port (http),
                         "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ZF_ASSERT (s_test_status (response) == 503);
    zf_free (response);
    zf_http_destroy (&http);
}

void zf_http_test (bool verbose)
{
    zf_error_t err;
    zf_http_t *http = zf_http_new ("127.0.0.1:0", &err);
    ZF_ASSERT (http);
    int port = zf_http_port (http);
    ZF_ASSERT (port > 0 && port <= 65535);
    if (verbose)
        printf ("zf_http_test: listening on port %d\n", port);

    s_test_health (http, port);
    s_test_metrics (port);
    s_test_errors (port);
    s_test_listen_errors (port);
    zf_http_set_stopping (http);
    zf_http_set_ready (http, true); //  too late: stopping stays
    s_test_expect (port, "GET", "/healthz", 503, "stopping\n");
    zf_http_destroy (&http);
    ZF_ASSERT (http == NULL);
    zf_http_destroy (&http); //  NULL is fine

    //  The port is free again: libmicrohttpd closed the socket we handed it.
    char endpoint[32];
    snprintf (endpoint, sizeof endpoint, "127.0.0.1:%d", port);
    http = zf_http_new (endpoint, &err);
    ZF_ASSERT (http && zf_http_port (http) == port);
    zf_http_destroy (&http);

    s_test_ipv6 (verbose);
    zf_metrics_shutdown ();
}
