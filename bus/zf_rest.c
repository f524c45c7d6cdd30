/*  zf_rest.c — routes, auth and JSON answers over libmicrohttpd, handlers on the owner's loop.

    Two threads meet here. libmicrohttpd's polling thread reads a request into a
    zf_rest_request_t (copies of method, path, headers, query and body, so nothing is read
    from the connection later), suspends the connection, queues the request under the lock
    and writes the eventfd. The owner's zloop reads the eventfd, takes the queue, routes,
    authenticates and calls the handler. The answer is stored in the request and the
    connection resumed; libmicrohttpd calls the access handler once more, which queues the
    stored answer, and frees the request when the connection is done with it. A request is
    touched by one thread at a time: the queue's lock hands it over, resuming hands it back. */
#include "zf_rest.h"
#include "zf_actor.h"
#include "zf_clock.h"
#include "zf_http.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_CONNECTION_TIMEOUT_S 30
#define S_CONNECTION_LIMIT     256
#define S_HEADERS_OUT_MAX      8
#define S_SEGMENTS_MAX         16
#define S_JSON_DEPTH_MAX       32

typedef struct {
    char *name;
    char *value;
} s_pair_t;

typedef struct {
    char *method;
    char *pattern;
    char *segments[S_SEGMENTS_MAX];
    size_t segment_count;
    zf_rest_access_t access;
    zf_rest_handler_fn *handler;
    void *arg;
} s_route_t;

typedef enum {
    S_READING,  //  libmicrohttpd is reading it
    S_QUEUED,   //  handed to the owner (connection suspended)
    S_ANSWERED, //  the answer is set; libmicrohttpd sends it
} s_state_t;

struct zf_rest_request_s {
    zf_rest_t *rest;
    struct MHD_Connection *connection;
    s_state_t state;
    char *method;
    char *path;
    s_pair_t *headers;
    size_t header_count;
    s_pair_t *args;
    size_t arg_count;
    s_pair_t params[ZF_REST_PARAMS_MAX];
    size_t param_count;
    char *body;
    size_t body_size;
    bool too_large;
    char peer[INET6_ADDRSTRLEN];
    const s_route_t *route;
    char principal[128];
    zf_rest_access_t granted;
    void *open_handle; //  in rest->open while the owner holds it
    bool drained;      //  answered by zf_rest_destroy: counted in rest->draining
    int64_t started_us;
    //  the answer
    unsigned int status;
    char *content_type;
    char *answer;
    size_t answer_size;
    s_pair_t out_headers[S_HEADERS_OUT_MAX];
    size_t out_header_count;
};

struct zf_rest_s {
    struct MHD_Daemon *daemon;
    int port;
    s_route_t *routes;
    size_t route_count;
    zf_rest_auth_fn *auth;
    void *auth_arg;
    pthread_mutex_t lock; //  guards queue and stopping
    zlistx_t *queue;      //  requests handed to the owner, not yet taken
    bool stopping;
    int wake_fd; //  eventfd: the HTTP thread wakes the owner's loop
    zloop_t *loop;
    zlistx_t *open;      //  owner thread only: requests taken and not yet answered
    atomic_int draining; //  answered at destroy, not yet sent by libmicrohttpd
};

//  ---------------------------------------------------------------------------------------------
//  Requests: construction on the HTTP thread

static void s_pairs_free (s_pair_t *pairs, size_t count)
{
    for (size_t index = 0; index < count; index++) {
        zf_free (pairs[index].name);
        zf_free (pairs[index].value);
    }
}

static void s_request_free (zf_rest_request_t *request)
{
    s_pairs_free (request->headers, request->header_count);
    zf_free (request->headers);
    s_pairs_free (request->args, request->arg_count);
    zf_free (request->args);
    s_pairs_free (request->params, request->param_count);
    s_pairs_free (request->out_headers, request->out_header_count);
    zf_free (request->method);
    zf_free (request->path);
    zf_free (request->body);
    zf_free (request->content_type);
    zf_free (request->answer);
    zf_free (request);
}

typedef struct {
    s_pair_t **pairs;
    size_t *count;
} s_collect_t;

static enum MHD_Result s_collect (void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void) kind;
    s_collect_t *collect = cls;
    if (*collect->count >= 128) //  libmicrohttpd's memory pool bounds them anyway
        return MHD_NO;
    *collect->pairs = zf_realloc (*collect->pairs, (*collect->count + 1) * sizeof **collect->pairs);
    (*collect->pairs)[(*collect->count)++] =
        (s_pair_t){.name = zf_strdup (key ? key : ""), .value = zf_strdup (value ? value : "")};
    return MHD_YES;
}

static zf_rest_request_t *s_request_new (zf_rest_t *self, struct MHD_Connection *connection,
                                         const char *url, const char *method)
{
    zf_rest_request_t *request = zf_calloc (1, sizeof *request);
    request->rest = self;
    request->connection = connection;
    request->method = zf_strdup (method);
    request->path = zf_strdup (url);
    request->started_us = zf_clock_mono_us ();
    MHD_get_connection_values (connection, MHD_HEADER_KIND, s_collect,
                               &(s_collect_t){&request->headers, &request->header_count});
    MHD_get_connection_values (connection, MHD_GET_ARGUMENT_KIND, s_collect,
                               &(s_collect_t){&request->args, &request->arg_count});
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    zf_strlcpy (request->peer, "?", sizeof request->peer);
    if (info && info->client_addr) {
        const struct sockaddr *address = info->client_addr;
        if (address->sa_family == AF_INET)
            inet_ntop (AF_INET, &((const struct sockaddr_in *) (const void *) address)->sin_addr,
                       request->peer, sizeof request->peer);
        else if (address->sa_family == AF_INET6)
            inet_ntop (AF_INET6, &((const struct sockaddr_in6 *) (const void *) address)->sin6_addr,
                       request->peer, sizeof request->peer);
    }
    return request;
}

//  ---------------------------------------------------------------------------------------------
//  Answers

static void s_count (zf_rest_request_t *request)
{
    char code[8];
    snprintf (code, sizeof code, "%u", request->status);
    const char *route = request->route ? request->route->pattern : "other";
    const char *method = request->route ? request->route->method : "other";
    zf_counter_add (zf_metrics_counter ("zfly_api_requests_total", "API requests answered", "route",
                                        route, "method", method, "code", code, NULL),
                    1);
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,   0.25,   0.5,   1,    2.5};
    double seconds = (double) (zf_clock_mono_us () - request->started_us) / 1e6;
    zf_histogram_observe (zf_metrics_histogram ("zfly_api_request_seconds",
                                                "Time from a complete request to its answer",
                                                buckets, ZF_ARRAY_LEN (buckets), "route", route,
                                                NULL),
                          seconds);
    zf_info ("api", "%s %s %u peer=%s principal=%s us=%" PRId64, request->method, request->path,
             request->status, request->peer, *request->principal ? request->principal : "-",
             zf_clock_mono_us () - request->started_us);
}

static enum MHD_Result s_send_answer (zf_rest_request_t *request)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        request->answer_size, request->answer ? request->answer : (char *) "",
        MHD_RESPMEM_MUST_COPY);
    if (!response)
        return MHD_NO;
    if (request->content_type)
        MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, request->content_type);
    for (size_t index = 0; index < request->out_header_count; index++)
        MHD_add_response_header (response, request->out_headers[index].name,
                                 request->out_headers[index].value);
    enum MHD_Result result = MHD_queue_response (request->connection, request->status, response);
    MHD_destroy_response (response);
    return result;
}

//  Stores the answer (any thread that holds the request).
static void s_set_answer (zf_rest_request_t *request, unsigned int status, const char *content_type,
                          char *body, size_t size)
{
    ZF_ASSERT (request->state != S_ANSWERED); //  one answer per request
    request->status = status;
    zf_free (request->content_type);
    request->content_type = content_type ? zf_strdup (content_type) : NULL;
    zf_free (request->answer);
    request->answer = body;
    request->answer_size = size;
}

static char *s_error_body (const char *code, const char *message, size_t *size)
{
    json_t *body = json_pack ("{s:s, s:s}", "code", code, "message", message);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    ZF_ASSERT (text);
    char *copy = zf_asprintf ("%s\n", text);
    free (text);
    *size = strlen (copy);
    return copy;
}

//  Owner thread: the answer is set; give the request back to libmicrohttpd.
static void s_finish (zf_rest_request_t *request)
{
    zf_rest_t *self = request->rest;
    s_count (request);
    if (request->open_handle) {
        zlistx_delete (self->open, request->open_handle);
        request->open_handle = NULL;
    }
    request->state = S_ANSWERED;
    MHD_resume_connection (request->connection); //  the request is libmicrohttpd's again
}

void zf_rest_reply_text (zf_rest_request_t *request, unsigned int status, const char *content_type,
                         const char *body, size_t size)
{
    char *copy = zf_malloc (size + 1);
    if (size)
        memcpy (copy, body, size);
    copy[size] = '\0';
    s_set_answer (request, status, content_type, copy, size);
    s_finish (request);
}

void zf_rest_reply_json (zf_rest_request_t *request, unsigned int status, json_t *body)
{
    if (status == MHD_HTTP_NO_CONTENT || !body) {
        json_decref (body);
        s_set_answer (request, status, NULL, NULL, 0);
        s_finish (request);
        return;
    }
    char *text = json_dumps (body, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref (body);
    ZF_ASSERT (text);
    char *copy = zf_asprintf ("%s\n", text);
    free (text);
    s_set_answer (request, status, "application/json", copy, strlen (copy));
    s_finish (request);
}

void zf_rest_reply_error (zf_rest_request_t *request, unsigned int status, const char *code,
                          const char *fmt, ...)
{
    char message[1024];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    size_t size;
    char *body = s_error_body (code, message, &size);
    s_set_answer (request, status, "application/json", body, size);
    s_finish (request);
}

void zf_rest_add_header (zf_rest_request_t *request, const char *name, const char *value)
{
    ZF_ASSERT (request->out_header_count < S_HEADERS_OUT_MAX);
    request->out_headers[request->out_header_count++] =
        (s_pair_t){.name = zf_strdup (name), .value = zf_strdup (value)};
}

json_t *zf_rest_page_json (json_t *items, int64_t page, int64_t per_page, int64_t total)
{
    return json_pack ("{s:o, s:I, s:I, s:I}", "items", items, "page", (json_int_t) page, "per_page",
                      (json_int_t) per_page, "total", (json_int_t) total);
}

//  ---------------------------------------------------------------------------------------------
//  Routing and auth: owner thread

static size_t s_split (char *path, char **segments, size_t max)
{
    size_t count = 0;
    char *saveptr = NULL;
    for (char *segment = strtok_r (path, "/", &saveptr); segment;
         segment = strtok_r (NULL, "/", &saveptr)) {
        if (count == max)
            return max + 1; //  too many: matches nothing
        segments[count++] = segment;
    }
    return count;
}

//  Does the path match the route? Fills request params when it does.
static bool s_match (const s_route_t *route, char **segments, size_t count,
                     zf_rest_request_t *request)
{
    if (count != route->segment_count)
        return false;
    for (size_t index = 0; index < count; index++) {
        const char *pattern = route->segments[index];
        if (*pattern != '{' && !streq (pattern, segments[index]))
            return false;
    }
    if (request) {
        s_pairs_free (request->params, request->param_count);
        request->param_count = 0;
        for (size_t index = 0; index < count; index++) {
            const char *pattern = route->segments[index];
            if (*pattern == '{')
                request->params[request->param_count++] = (s_pair_t){
                    .name = zf_strndup (pattern + 1, strlen (pattern) - 2),
                    .value = zf_strdup (segments[index]),
                };
        }
    }
    return true;
}

static bool s_method_matches (const s_route_t *route, const char *method)
{
    return streq (route->method, method)
           || (streq (route->method, "GET") && streq (method, "HEAD"));
}

static const char *s_bearer (zf_rest_request_t *request)
{
    const char *header = zf_rest_header (request, "Authorization");
    if (!header || strncasecmp (header, "Bearer ", 7) != 0)
        return NULL;
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    return *token ? token : NULL;
}

static void s_dispatch (zf_rest_t *self, zf_rest_request_t *request)
{
    request->open_handle = zlistx_add_end (self->open, request);
    if (request->too_large) {
        zf_rest_reply_error (request, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                             "request body over %d bytes", ZF_REST_BODY_MAX);
        return;
    }
    char *path = zf_strdup (request->path);
    char *segments[S_SEGMENTS_MAX];
    size_t count = s_split (path, segments, S_SEGMENTS_MAX);
    const s_route_t *found = NULL;
    char allow[128] = "";
    for (size_t index = 0; index < self->route_count && !found; index++) {
        const s_route_t *route = &self->routes[index];
        if (!s_match (route, segments, count, NULL))
            continue;
        if (s_method_matches (route, request->method)) {
            found = route;
            s_match (route, segments, count, request);
        } else if (strlen (allow) + strlen (route->method) + 8 < sizeof allow) {
            size_t used = strlen (allow);
            snprintf (allow + used, sizeof allow - used, "%s%s", used ? ", " : "", route->method);
        }
    }
    zf_free (path);
    if (!found && *allow) {
        zf_rest_add_header (request, MHD_HTTP_HEADER_ALLOW, allow);
        zf_rest_reply_error (request, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                             "%s is not allowed on %s (allowed: %s)", request->method,
                             request->path, allow);
        return;
    }
    if (!found) {
        zf_rest_reply_error (request, MHD_HTTP_NOT_FOUND, "not_found", "no such resource: %s",
                             request->path);
        return;
    }
    request->route = found;
    if (found->access != ZF_REST_PUBLIC) {
        const char *token = s_bearer (request);
        request->granted =
            token && self->auth
                ? self->auth (token, request->principal, sizeof request->principal, self->auth_arg)
                : ZF_REST_NONE;
        if (request->granted == ZF_REST_NONE) {
            zf_rest_add_header (request, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"zfly\"");
            zf_rest_reply_error (request, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                                 token ? "the bearer token is not valid (unknown, expired or "
                                         "revoked)"
                                       : "this endpoint needs Authorization: Bearer "
                                         "<personal access token> (`zfly manager init` "
                                         "makes the first one)");
            return;
        }
        if (request->granted < found->access) {
            zf_rest_reply_error (request, MHD_HTTP_FORBIDDEN, "forbidden",
                                 "%s may only read: %s %s needs a token with write access",
                                 request->principal, request->method, found->pattern);
            return;
        }
    }
    found->handler (request, found->arg);
}

static int s_on_wake (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    zf_rest_t *self = arg;
    uint64_t count;
    if (read (item->fd, &count, sizeof count) != (ssize_t) sizeof count)
        return 0;
    zlistx_t *taken = zlistx_new ();
    pthread_mutex_lock (&self->lock);
    zf_rest_request_t *request;
    while ((request = zlistx_detach (self->queue, NULL)))
        zlistx_add_end (taken, request);
    pthread_mutex_unlock (&self->lock);
    while ((request = zlistx_detach (taken, NULL)))
        s_dispatch (self, request);
    zlistx_destroy (&taken);
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  libmicrohttpd callbacks: HTTP thread

static enum MHD_Result s_refuse_now (zf_rest_request_t *request, unsigned int status,
                                     const char *code, const char *message)
{
    size_t size;
    char *body = s_error_body (code, message, &size);
    s_set_answer (request, status, "application/json", body, size);
    request->state = S_ANSWERED;
    s_count (request);
    return s_send_answer (request);
}

static enum MHD_Result s_access (void *cls, struct MHD_Connection *connection, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **request_state)
{
    (void) version;
    zf_rest_t *self = cls;
    zf_rest_request_t *request = *request_state;
    if (!request) {
        *request_state = s_request_new (self, connection, url, method);
        return MHD_YES;
    }
    if (request->state == S_ANSWERED)
        return s_send_answer (request);
    if (*upload_data_size) {
        if (request->body_size + *upload_data_size > ZF_REST_BODY_MAX)
            request->too_large = true; //  keep reading (and dropping) to answer cleanly
        else {
            request->body = zf_realloc (request->body, request->body_size + *upload_data_size + 1);
            memcpy (request->body + request->body_size, upload_data, *upload_data_size);
            request->body_size += *upload_data_size;
            request->body[request->body_size] = '\0';
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (request->state == S_QUEUED)
        return MHD_YES; //  resumed before the owner answered: cannot happen, but harmless
    pthread_mutex_lock (&self->lock);
    bool stopping = self->stopping;
    if (!stopping) {
        MHD_suspend_connection (connection); //  before the owner can possibly resume it
        request->state = S_QUEUED;
        zlistx_add_end (self->queue, request);
    }
    pthread_mutex_unlock (&self->lock);
    if (stopping)
        return s_refuse_now (request, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
                             "the server is stopping");
    uint64_t one = 1;
    if (write (self->wake_fd, &one, sizeof one) != (ssize_t) sizeof one)
        zf_warning ("api", "cannot wake the owner loop: %s", strerror (errno));
    return MHD_YES;
}

static void s_completed (void *cls, struct MHD_Connection *connection, void **request_state,
                         enum MHD_RequestTerminationCode code)
{
    (void) cls;
    (void) connection;
    (void) code;
    zf_rest_request_t *request = *request_state;
    if (request) {
        //  Only requests libmicrohttpd holds end here: queued ones are suspended, and a
        //  suspended connection is not closed until it is resumed.
        ZF_ASSERT (request->state != S_QUEUED);
        if (request->drained)
            atomic_fetch_sub (&request->rest->draining, 1);
        s_request_free (request);
        *request_state = NULL;
    }
}

static void s_mhd_log (void *cls, const char *fmt, va_list args)
    __attribute__ ((format (printf, 2, 0)));

static void s_mhd_log (void *cls, const char *fmt, va_list args)
{
    (void) cls;
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 60000);
    char line[512];
    vsnprintf (line, sizeof line, fmt, args);
    line[strcspn (line, "\r\n")] = '\0';
    zf_warning_limited (&limit, "api", "libmicrohttpd: %s", line);
}

//  ---------------------------------------------------------------------------------------------
//  Lifecycle

zf_rest_t *zf_rest_new (const char *listen, zf_error_t *err)
{
    int port = 0;
    int fd = zf_http_listen_socket (listen, &port, err);
    if (fd < 0)
        return NULL;
    zf_rest_t *self = zf_calloc (1, sizeof *self);
    self->port = port;
    pthread_mutex_init (&self->lock, NULL);
    self->queue = zlistx_new ();
    self->open = zlistx_new ();
    self->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
    ZF_ASSERT (self->wake_fd >= 0);
    self->daemon = MHD_start_daemon (
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME
            | MHD_USE_ERROR_LOG,
        0, NULL, NULL, s_access, self, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) S_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int) S_CONNECTION_LIMIT, MHD_OPTION_END);
    if (!self->daemon) {
        zf_error_set (err, ZF_E_IO, listen, "cannot start the API server (libmicrohttpd)");
        close (self->wake_fd);
        zlistx_destroy (&self->queue);
        zlistx_destroy (&self->open);
        pthread_mutex_destroy (&self->lock);
        zf_free (self);
        return NULL;
    }
    zf_info ("api", "listening listen=%s port=%d", listen, port);
    return self;
}

void zf_rest_destroy (zf_rest_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_rest_t *self = *self_p;
    if (!self)
        return;
    if (self->loop)
        zloop_poller_end (self->loop, &(zmq_pollitem_t){.fd = self->wake_fd});
    //  No new request reaches the queue after this; answer what is queued or open.
    pthread_mutex_lock (&self->lock);
    self->stopping = true;
    zf_rest_request_t *request;
    while ((request = zlistx_detach (self->queue, NULL)))
        zlistx_add_end (self->open, request);
    pthread_mutex_unlock (&self->lock);
    while ((request = zlistx_first (self->open))) {
        request->open_handle = zlistx_cursor (self->open);
        request->drained = true;
        atomic_fetch_add (&self->draining, 1);
        zf_rest_reply_error (request, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
                             "the server is stopping");
    }
    //  Stopping the daemon closes every connection at once: give the answers just queued a
    //  moment to leave (bounded: a client that does not read must not hold up the stop).
    int64_t deadline = zf_clock_mono_ms () + 1000;
    while (atomic_load (&self->draining) > 0 && zf_clock_mono_ms () < deadline)
        zclock_sleep (5);
    MHD_stop_daemon (self->daemon);
    close (self->wake_fd);
    zlistx_destroy (&self->queue);
    zlistx_destroy (&self->open);
    pthread_mutex_destroy (&self->lock);
    for (size_t index = 0; index < self->route_count; index++) {
        zf_free (self->routes[index].method);
        zf_free (self->routes[index].pattern);
        for (size_t segment = 0; segment < self->routes[index].segment_count; segment++)
            zf_free (self->routes[index].segments[segment]);
    }
    zf_free (self->routes);
    zf_free (self);
    *self_p = NULL;
}

int zf_rest_port (zf_rest_t *self)
{
    return self->port;
}

void zf_rest_route (zf_rest_t *self, const char *method, const char *pattern,
                    zf_rest_access_t access, zf_rest_handler_fn *handler, void *arg)
{
    ZF_ASSERT (*pattern == '/' && handler && access >= ZF_REST_PUBLIC);
    s_route_t route = {
        .method = zf_strdup (method),
        .pattern = zf_strdup (pattern),
        .access = access,
        .handler = handler,
        .arg = arg,
    };
    char *path = zf_strdup (pattern);
    char *segments[S_SEGMENTS_MAX];
    route.segment_count = s_split (path, segments, S_SEGMENTS_MAX);
    ZF_ASSERT (route.segment_count <= S_SEGMENTS_MAX);
    size_t params = 0;
    for (size_t index = 0; index < route.segment_count; index++) {
        const char *segment = segments[index];
        if (*segment == '{') {
            ZF_ASSERT (strlen (segment) > 2 && segment[strlen (segment) - 1] == '}');
            params++;
        }
        route.segments[index] = zf_strdup (segment);
    }
    zf_free (path);
    ZF_ASSERT (params <= ZF_REST_PARAMS_MAX);
    for (size_t index = 0; index < self->route_count; index++)
        ZF_ASSERT (!(streq (self->routes[index].method, method)
                     && streq (self->routes[index].pattern, pattern)));
    self->routes = zf_realloc (self->routes, (self->route_count + 1) * sizeof *self->routes);
    self->routes[self->route_count++] = route;
}

void zf_rest_set_auth (zf_rest_t *self, zf_rest_auth_fn *auth, void *arg)
{
    self->auth = auth;
    self->auth_arg = arg;
}

void zf_rest_attach (zf_rest_t *self, zloop_t *loop)
{
    ZF_ASSERT (!self->loop);
    self->loop = loop;
    zmq_pollitem_t item = {.socket = NULL, .fd = self->wake_fd, .events = ZMQ_POLLIN};
    zloop_poller (loop, &item, s_on_wake, self);
    //  Requests queued before the attach: wake once to take them.
    uint64_t one = 1;
    if (write (self->wake_fd, &one, sizeof one) != (ssize_t) sizeof one)
        zf_warning ("api", "cannot wake the owner loop: %s", strerror (errno));
}

//  ---------------------------------------------------------------------------------------------
//  Request accessors

const char *zf_rest_method (zf_rest_request_t *request)
{
    return request->method;
}

const char *zf_rest_path (zf_rest_request_t *request)
{
    return request->path;
}

const char *zf_rest_route_pattern (zf_rest_request_t *request)
{
    return request->route ? request->route->pattern : "";
}

static const char *s_find (const s_pair_t *pairs, size_t count, const char *name, bool any_case)
{
    for (size_t index = 0; index < count; index++)
        if (any_case ? strcasecmp (pairs[index].name, name) == 0 : streq (pairs[index].name, name))
            return pairs[index].value;
    return NULL;
}

const char *zf_rest_param (zf_rest_request_t *request, const char *name)
{
    return s_find (request->params, request->param_count, name, false);
}

const char *zf_rest_query (zf_rest_request_t *request, const char *name)
{
    return s_find (request->args, request->arg_count, name, false);
}

const char *zf_rest_header (zf_rest_request_t *request, const char *name)
{
    return s_find (request->headers, request->header_count, name, true);
}

const char *zf_rest_body (zf_rest_request_t *request, size_t *size)
{
    if (size)
        *size = request->body_size;
    return request->body ? request->body : "";
}

const char *zf_rest_principal (zf_rest_request_t *request)
{
    return request->principal;
}

zf_rest_access_t zf_rest_granted (zf_rest_request_t *request)
{
    return request->granted;
}

const char *zf_rest_peer (zf_rest_request_t *request)
{
    return request->peer;
}

json_t *zf_rest_json_body (zf_rest_request_t *request)
{
    if (!request->body_size) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "this request needs a JSON object as its body");
        return NULL;
    }
    json_error_t error;
    json_t *body = json_loadb (request->body, request->body_size, JSON_REJECT_DUPLICATES, &error);
    if (!body) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "the body is not valid JSON: %s at line %d column %d", error.text,
                             error.line, error.column);
        return NULL;
    }
    if (!json_is_object (body)) {
        json_decref (body);
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "the body must be a JSON object");
        return NULL;
    }
    return body;
}

static bool s_positive (const char *text, int64_t max, int64_t *value)
{
    if (!text || !*text || strlen (text) > 18 || strspn (text, "0123456789") != strlen (text))
        return false;
    long long number = strtoll (text, NULL, 10);
    if (number < 1 || number > max)
        return false;
    *value = number;
    return true;
}

bool zf_rest_page (zf_rest_request_t *request, int64_t *page, int64_t *per_page)
{
    *page = 1;
    *per_page = ZF_REST_PER_PAGE;
    const char *page_text = zf_rest_query (request, "page");
    const char *per_page_text = zf_rest_query (request, "per_page");
    if (page_text && !s_positive (page_text, 1000000000, page)) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "page must be a whole number from 1");
        return false;
    }
    if (per_page_text && !s_positive (per_page_text, ZF_REST_PER_PAGE_MAX, per_page)) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "per_page must be a whole number from 1 to %d", ZF_REST_PER_PAGE_MAX);
        return false;
    }
    return true;
}

bool zf_rest_param_id (zf_rest_request_t *request, const char *name, int64_t *id)
{
    if (s_positive (zf_rest_param (request, name), INT64_MAX, id))
        return true;
    zf_rest_reply_error (request, MHD_HTTP_NOT_FOUND, "not_found", "no such resource: %s",
                         request->path);
    return false;
}

//  ---------------------------------------------------------------------------------------------
//  Selftest: a server actor owns the loop and the routes; the test thread is the client
//  (libcurl, blocking), so handlers run on another thread than the client, as in the manager.

#include <curl/curl.h>

typedef struct {
    zf_rest_request_t *held; //  a request answered later, from a timer
    zsock_t *pipe;
} s_test_state_t;

static zf_rest_access_t s_test_auth (const char *token, char *principal, size_t size, void *arg)
{
    (void) arg;
    if (streq (token, "writer-token")) {
        zf_strlcpy (principal, "writer", size);
        return ZF_REST_WRITE;
    }
    if (streq (token, "reader-token")) {
        zf_strlcpy (principal, "reader", size);
        return ZF_REST_READ;
    }
    return ZF_REST_NONE;
}

static void s_test_ping (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    zf_rest_reply_json (request, 200, json_pack ("{s:s}", "pong", zf_rest_path (request)));
}

static void s_test_thing (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    int64_t id;
    if (!zf_rest_param_id (request, "id", &id))
        return;
    int64_t page, per_page;
    if (!zf_rest_page (request, &page, &per_page))
        return;
    zf_rest_reply_json (request, 200,
                        json_pack ("{s:I, s:I, s:I, s:s}", "id", (json_int_t) id, "page",
                                   (json_int_t) page, "per_page", (json_int_t) per_page, "who",
                                   zf_rest_principal (request)));
}

static void s_test_create (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    json_t *body = zf_rest_json_body (request);
    if (!body)
        return;
    zf_rest_add_header (request, "Location", "/api/v1/things/7");
    zf_rest_reply_json (request, 201, body);
}

static int s_test_answer_held (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_test_state_t *state = arg;
    if (state->held)
        zf_rest_reply_json (state->held, 200, json_pack ("{s:b}", "late", 1));
    state->held = NULL;
    return 0;
}

static void s_test_later (zf_rest_request_t *request, void *arg)
{
    s_test_state_t *state = arg;
    state->held = request;
    zloop_timer (request->rest->loop, 50, 1, s_test_answer_held, state);
}

static void s_test_forever (zf_rest_request_t *request, void *arg)
{
    s_test_state_t *state = arg;
    state->held = request; //  answered only by zf_rest_destroy
    zstr_send (state->pipe, "HELD");
}

static void s_test_server (zsock_t *pipe, void *arg)
{
    (void) arg;
    zf_error_t err;
    zf_rest_t *rest = zf_rest_new ("127.0.0.1:0", &err);
    ZF_ASSERT (rest);
    s_test_state_t state = {.pipe = pipe};
    zf_rest_set_auth (rest, s_test_auth, NULL);
    zf_rest_route (rest, "GET", "/api/v1/ping", ZF_REST_PUBLIC, s_test_ping, NULL);
    zf_rest_route (rest, "GET", "/api/v1/things/{id}", ZF_REST_READ, s_test_thing, NULL);
    zf_rest_route (rest, "POST", "/api/v1/things", ZF_REST_WRITE, s_test_create, NULL);
    zf_rest_route (rest, "GET", "/api/v1/later", ZF_REST_PUBLIC, s_test_later, &state);
    zf_rest_route (rest, "GET", "/api/v1/forever", ZF_REST_PUBLIC, s_test_forever, &state);
    zloop_t *loop = zloop_new ();
    zf_rest_attach (rest, loop);
    zloop_reader (loop, pipe, zf_actor_pipe_term, NULL);
    zsock_signal (pipe, 0);
    zstr_sendf (pipe, "%d", zf_rest_port (rest));
    zloop_start (loop);
    zf_rest_destroy (&rest); //  answers the request held forever with 503
    zloop_destroy (&loop);
}

typedef struct {
    char data[4096];
    size_t size;
} s_test_buffer_t;

static size_t s_test_write (char *data, size_t size, size_t count, void *arg)
{
    s_test_buffer_t *buffer = arg;
    size_t bytes = size * count;
    size_t room = sizeof buffer->data - 1 - buffer->size;
    memcpy (buffer->data + buffer->size, data, bytes < room ? bytes : room);
    buffer->size += bytes < room ? bytes : room;
    buffer->data[buffer->size] = '\0';
    return bytes;
}

//  One request; returns the status, fills body and (when given) the headers' text.
static long s_test_call (int port, const char *method, const char *path, const char *token,
                         const char *body, s_test_buffer_t *response, s_test_buffer_t *headers)
{
    CURL *curl = curl_easy_init ();
    ZF_ASSERT (curl);
    char url[256];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    if (streq (method, "HEAD"))
        curl_easy_setopt (curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 10L);
    struct curl_slist *list = NULL;
    char authorization[128];
    if (token) {
        snprintf (authorization, sizeof authorization, "Authorization: Bearer %s", token);
        list = curl_slist_append (list, authorization);
    }
    list = curl_slist_append (list, "Content-Type: application/json");
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, list);
    if (body) {
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, (long) strlen (body));
    }
    memset (response, 0, sizeof *response);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_test_write);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, response);
    if (headers) {
        memset (headers, 0, sizeof *headers);
        curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, s_test_write);
        curl_easy_setopt (curl, CURLOPT_HEADERDATA, headers);
    }
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt (curl, CURLOPT_ERRORBUFFER, error);
    CURLcode code = curl_easy_perform (curl);
    if (code != CURLE_OK)
        fprintf (stderr, "zf_rest_test: %s %s: %s\n", method, path, error);
    ZF_ASSERT (code == CURLE_OK);
    long status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all (list);
    curl_easy_cleanup (curl);
    return status;
}

typedef struct {
    int port;
    long status;
    s_test_buffer_t body;
} s_test_pending_t;

static void *s_test_pending_client (void *arg)
{
    s_test_pending_t *pending = arg;
    pending->status =
        s_test_call (pending->port, "GET", "/api/v1/forever", NULL, NULL, &pending->body, NULL);
    return NULL;
}

void zf_rest_test (bool verbose)
{
    zactor_t *server = zactor_new (s_test_server, NULL);
    char *port_text = zstr_recv (server);
    int port = (int) strtol (port_text, NULL, 10);
    zstr_free (&port_text);
    if (verbose)
        printf ("zf_rest_test: port %d\n", port);
    s_test_buffer_t body, headers;

    ZF_ASSERT (s_test_call (port, "GET", "/api/v1/ping?x=1", NULL, NULL, &body, &headers) == 200);
    ZF_ASSERT (streq (body.data, "{\"pong\":\"/api/v1/ping\"}\n"));
    ZF_ASSERT (strstr (headers.data, "Content-Type: application/json"));
    ZF_ASSERT (s_test_call (port, "HEAD", "/api/v1/ping", NULL, NULL, &body, NULL) == 200);

    //  Tokens: none, unknown, read-only on a write route, a writer.
    ZF_ASSERT (s_test_call (port, "GET", "/api/v1/things/3", NULL, NULL, &body, &headers) == 401);
    ZF_ASSERT (strstr (headers.data, "WWW-Authenticate: Bearer"));
    ZF_ASSERT (strstr (body.data, "\"code\":\"unauthorized\""));
    ZF_ASSERT (s_test_call (port, "GET", "/api/v1/things/3", "guess", NULL, &body, NULL) == 401);
    ZF_ASSERT (strstr (body.data, "not valid"));
    ZF_ASSERT (s_test_call (port, "GET", "/api/v1/things/3?page=2&per_page=10", "reader-token",
                            NULL, &body, NULL)
               == 200);
    ZF_ASSERT (streq (body.data, "{\"id\":3,\"page\":2,\"per_page\":10,\"who\":\"reader\"}\n"));
    ZF_ASSERT (s_test_call (port, "POST", "/api/v1/things", "reader-token", "{}", &body, NULL)
               == 403);
    ZF_ASSERT (strstr (body.data, "\"code\":\"forbidden\""));
    ZF_ASSERT (s_test_call (port, "POST", "/api/v1/things", "writer-token", "{\"a\":[1,2]}", &body,
                            &headers)
               == 201);
    ZF_ASSERT (streq (body.data, "{\"a\":[1,2]}\n"));
    ZF_ASSERT (strstr (headers.data, "Location: /api/v1/things/7"));

    //  Bad input: ids, pages, bodies, paths, methods.
    ZF_ASSERT (s_test_call (port, "GET", "/api/v1/things/x1", "reader-token", NULL, &body, NULL)
               == 404);
    ZF_ASSERT (
        s_test_call (port, "GET", "/api/v1/things/1?per_page=0", "reader-token", NULL, &body, NULL)
        == 400);
    ZF_ASSERT (strstr (body.data, "per_page must be"));
    ZF_ASSERT (s_test_call (port, "POST", "/api/v1/things", "writer-token", "{\"a\":", &body, NULL)
               == 400);
    ZF_ASSERT (strstr (body.data, "not valid JSON"));
    ZF_ASSERT (s_test_call (port, "POST", "/api/v1/things", "writer-token", "[1]", &body, NULL)
               == 400);
    ZF_ASSERT (strstr (body.data, "must be a JSON object"));
    ZF_ASSERT (s_test_call (port, "POST", "/api/v1/things", "writer-token", "{\"a\":1,\"a\":2}",
                            &body, NULL)
               == 400);
    ZF_ASSERT (s_test_call (port, "GET", "/nothing/here", NULL, NULL, &body, NULL) == 404);
    ZF_ASSERT (strstr (body.data, "\"code\":\"not_found\""));
    ZF_ASSERT (s_test_call (port, "DELETE", "/api/v1/things", "writer-token", NULL, &body, &headers)
               == 405);
    ZF_ASSERT (strstr (headers.data, "Allow: POST"));
    char *large = zf_malloc (ZF_REST_BODY_MAX + 2);
    memset (large, ' ', ZF_REST_BODY_MAX + 1);
    large[ZF_REST_BODY_MAX + 1] = '\0';
    ZF_ASSERT (s_test_call (port, "POST", "/api/v1/things", "writer-token", large, &body, NULL)
               == 413);
    zf_free (large);

    //  An answer given later from the owner's loop.
    ZF_ASSERT (s_test_call (port, "GET", "/api/v1/later", NULL, NULL, &body, NULL) == 200);
    ZF_ASSERT (streq (body.data, "{\"late\":true}\n"));

    char *metrics = zf_metrics_render ();
    ZF_ASSERT (strstr (metrics, "zfly_api_requests_total{route=\"/api/v1/things\",method=\"POST\","
                                "code=\"403\"} 1\n"));
    zf_free (metrics);

    //  A request still open when the server stops is answered 503, not dropped.
    s_test_pending_t pending = {.port = port};
    pthread_t client;
    ZF_ASSERT (pthread_create (&client, NULL, s_test_pending_client, &pending) == 0);
    char *held = zstr_recv (server);
    ZF_ASSERT (held && streq (held, "HELD"));
    zstr_free (&held);
    zactor_destroy (&server);
    pthread_join (client, NULL);
    ZF_ASSERT (pending.status == 503);
    ZF_ASSERT (strstr (pending.body.data, "\"code\":\"stopping\""));
    zf_metrics_shutdown ();
}
