/*  zf_rest_test.c — the selftest of the REST server (zf_rest.h): a server actor owns the loop
    and the routes; the test thread is the client (libcurl, blocking), so handlers run on
    another thread than the client, as in the manager. Tokens, bad input, answers given later
    and a request still open when the server stops.

    Separate from zf_rest.c because it is a third of its length; it uses only the public API. */
#include "zf_rest.h"
#include "zf_actor.h"
#include "zf_metrics.h"
#include <pthread.h>

#include <curl/curl.h>

typedef struct {
    zf_rest_request_t *held; //  a request answered later, from a timer
    zsock_t *pipe;
    zloop_t *loop; //  the server's, for that timer
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
    zloop_timer (state->loop, 50, 1, s_test_answer_held, state);
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
    state.loop = loop;
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
