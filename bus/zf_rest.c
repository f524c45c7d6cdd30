/*  zf_rest.c — the REST server: routes, auth and answers over libmicrohttpd, handlers on the
    owner's loop. What a handler reads from a request is in zf_rest_request.c.

    Two threads meet here. libmicrohttpd's polling thread reads a request into a
    zf_rest_request_t (copies of method, path, headers, query and body, so nothing is read
    from the connection later), suspends the connection, queues the request under the lock
    and writes the eventfd. The owner's zloop reads the eventfd, takes the queue, routes,
    authenticates and calls the handler. The answer is stored in the request and the
    connection resumed; libmicrohttpd calls the access handler once more, which queues the
    stored answer, and frees the request when the connection is done with it. A request is
    touched by one thread at a time: the queue's lock hands it over, resuming hands it back. */
#include "zf_rest_internal.h"
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

struct zf_rest_s {
    struct MHD_Daemon *daemon;
    int port;
    zf_rest_route_entry_t *routes;
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

static void s_pairs_free (zf_rest_pair_t *pairs, size_t count)
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
    zf_rest_pair_t **pairs;
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
    (*collect->pairs)[(*collect->count)++] = (zf_rest_pair_t){
        .name = zf_strdup (key ? key : ""), .value = zf_strdup (value ? value : "")};
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
    ZF_ASSERT (request->state != ZF_REST_ANSWERED); //  one answer per request
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
    request->state = ZF_REST_ANSWERED;
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
    ZF_ASSERT (request->out_header_count < ZF_REST_HEADERS_OUT_MAX);
    request->out_headers[request->out_header_count++] =
        (zf_rest_pair_t){.name = zf_strdup (name), .value = zf_strdup (value)};
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
static bool s_match (const zf_rest_route_entry_t *route, char **segments, size_t count,
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
                request->params[request->param_count++] = (zf_rest_pair_t){
                    .name = zf_strndup (pattern + 1, strlen (pattern) - 2),
                    .value = zf_strdup (segments[index]),
                };
        }
    }
    return true;
}

static bool s_method_matches (const zf_rest_route_entry_t *route, const char *method)
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
    char *segments[ZF_REST_SEGMENTS_MAX];
    size_t count = s_split (path, segments, ZF_REST_SEGMENTS_MAX);
    const zf_rest_route_entry_t *found = NULL;
    char allow[128] = "";
    for (size_t index = 0; index < self->route_count && !found; index++) {
        const zf_rest_route_entry_t *route = &self->routes[index];
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
    request->state = ZF_REST_ANSWERED;
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
    if (request->state == ZF_REST_ANSWERED)
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
    if (request->state == ZF_REST_QUEUED)
        return MHD_YES; //  resumed before the owner answered: cannot happen, but harmless
    pthread_mutex_lock (&self->lock);
    bool stopping = self->stopping;
    if (!stopping) {
        MHD_suspend_connection (connection); //  before the owner can possibly resume it
        request->state = ZF_REST_QUEUED;
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
        ZF_ASSERT (request->state != ZF_REST_QUEUED);
        if (request->drained)
            atomic_fetch_sub (&request->rest->draining, 1);
        s_request_free (request);
        *request_state = NULL;
    }
}

static zf_http_log_t s_log = ZF_HTTP_LOG_INIT ("api");

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
        0, NULL, NULL, s_access, self, MHD_OPTION_EXTERNAL_LOGGER, zf_http_mhd_log, &s_log,
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
    zf_rest_route_entry_t route = {
        .method = zf_strdup (method),
        .pattern = zf_strdup (pattern),
        .access = access,
        .handler = handler,
        .arg = arg,
    };
    char *path = zf_strdup (pattern);
    char *segments[ZF_REST_SEGMENTS_MAX];
    route.segment_count = s_split (path, segments, ZF_REST_SEGMENTS_MAX);
    ZF_ASSERT (route.segment_count <= ZF_REST_SEGMENTS_MAX);
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
