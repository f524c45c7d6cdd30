/*  zf_proxy_direct.c — a request answered straight from upstream (see zf_proxy_direct.h). */
#include "zf_proxy_direct.h"
#include "zf_curl_origin.h"
#include "zf_log.h"
#include "zf_metrics.h"

#define RESP_HEAD_MAX 65536 //  upstream response head

struct zf_proxy_direct_s {
    const zf_proxy_upstream_t *upstream;
    zf_proxy_request_t *request;
    zf_proxy_out_t *out;
    zf_proxy_direct_fn *callback;
    void *arg;
    CURL *easy;
    struct curl_slist *request_headers;
    char *request_body;
    char *resp_head; //  the response's header lines, hop-by-hop ones left out
    size_t resp_head_len;
    bool resp_has_length;
    bool resp_too_big;
    bool chunked;
    bool paused;
    char curl_error[CURL_ERROR_SIZE];
};

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

static void s_send_head (zf_proxy_direct_t *self)
{
    zf_proxy_request_t *request = self->request;
    ZF_ASSERT (!request->head_sent);
    request->head_sent = true;
    bool no_body = request->is_head || request->status == 204 || request->status == 304
                   || (request->status >= 100 && request->status < 200);
    self->chunked = !no_body && !self->resp_has_length;
    if (self->chunked && request->http_minor == 0) {
        self->chunked = false;
        request->close_after = true; //  HTTP/1.0: the end of the body is the end of the connection
    }
    zf_proxy_out_printf (self->out, "HTTP/1.1 %d %s\r\n", request->status,
                         zf_proxy_reason (request->status));
    zf_proxy_out_append (self->out, self->resp_head, self->resp_head_len);
    if (self->chunked)
        zf_proxy_out_printf (self->out, "Transfer-Encoding: chunked\r\n");
    zf_proxy_out_printf (self->out, "Connection: %s\r\n\r\n",
                         request->close_after ? "close" : "keep-alive");
}

static size_t s_curl_header (char *data, size_t size, size_t count, void *arg)
{
    zf_proxy_direct_t *self = arg;
    size_t length = size * count;
    if (zf_curl_origin_status_line (data, length)) {
        self->resp_head_len = 0; //  a new response (after a redirect or a 100)
        self->resp_has_length = false;
        const char *space = memchr (data, ' ', length);
        self->request->status = space ? (int) strtol (space + 1, NULL, 10) : 502;
        return length;
    }
    const char *colon = memchr (data, ':', length);
    if (!colon)
        return length; //  the blank line
    size_t name_len = (size_t) (colon - data);
    if (s_hop_by_hop (data, name_len)) {
        if (name_len == 14 && strncasecmp (data, "content-length", 14) == 0)
            self->resp_has_length = true;
        else
            return length;
    }
    if (self->resp_head_len + length + 2 > RESP_HEAD_MAX) {
        self->resp_too_big = true;
        return 0; //  aborts the transfer
    }
    self->resp_head = zf_realloc (self->resp_head, self->resp_head_len + length + 2);
    size_t line = length;
    while (line && (data[line - 1] == '\r' || data[line - 1] == '\n'))
        line--;
    memcpy (self->resp_head + self->resp_head_len, data, line);
    memcpy (self->resp_head + self->resp_head_len + line, "\r\n", 2);
    self->resp_head_len += line + 2;
    return length;
}

static size_t s_curl_write (char *data, size_t size, size_t count, void *arg)
{
    zf_proxy_direct_t *self = arg;
    size_t length = size * count;
    if (zf_proxy_out_memory (self->out) > ZF_PROXY_OUT_HIGH) {
        self->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (!self->request->head_sent)
        s_send_head (self);
    if (self->request->is_head)
        return length;
    if (self->chunked)
        zf_proxy_out_printf (self->out, "%zx\r\n", length);
    zf_proxy_out_append (self->out, data, length);
    if (self->chunked)
        zf_proxy_out_append (self->out, "\r\n", 2);
    self->request->body_sent += length;
    self->callback (self, ZF_PROXY_DIRECT_MORE, self->arg);
    return length;
}

void zf_proxy_direct_curl_done (CURL *easy, CURLcode result, void *easy_private)
{
    zf_proxy_direct_t *self = easy_private;
    ZF_ASSERT (self->easy == easy);
    curl_easy_cleanup (easy);
    self->easy = NULL;
    zf_proxy_request_t *request = self->request;
    if (result == CURLE_OK) {
        if (!request->head_sent)
            s_send_head (self);
        if (self->chunked)
            zf_proxy_out_append (self->out, "0\r\n\r\n", 5);
        zf_info ("proxy",
                 "request id=%" PRIu64 " %s %s route=direct status=%d bytes=%" PRIu64
                 " ms=%" PRId64,
                 request->id, request->method, request->url, request->status, request->body_sent,
                 zclock_mono () - request->started_ms);
        self->callback (self, ZF_PROXY_DIRECT_DONE, self->arg);
        return;
    }
    const char *why = *self->curl_error ? self->curl_error : curl_easy_strerror (result);
    if (self->resp_too_big)
        why = "upstream response head too large";
    if (request->head_sent) {
        zf_notice ("proxy",
                   "request id=%" PRIu64 " %s %s: upstream failed after %" PRIu64
                   " bytes (%s); closing the client connection so it retries",
                   request->id, request->method, request->url, request->body_sent, why);
        request->close_after = true;
        self->callback (self, ZF_PROXY_DIRECT_ABORTED, self->arg);
        return;
    }
    int status = result == CURLE_OPERATION_TIMEDOUT ? 504 : 502;
    const char *code = result == CURLE_OPERATION_TIMEDOUT ? "TIMEOUT" : "UNAVAILABLE";
    char message[512];
    //  quotes and backslashes would break the JSON body
    snprintf (message, sizeof message, "upstream %s failed: %s", request->url, why);
    for (char *scan = message; *scan; scan++)
        if (*scan == '"' || *scan == '\\' || (unsigned char) *scan < 0x20)
            *scan = '\'';
    zf_notice ("proxy", "request id=%" PRIu64 " %s %s: %s -> %d", request->id, request->method,
               request->url, message, status);
    request->status = status;
    request->head_sent = true;
    zf_proxy_out_error (self->out, status, request->registry_path, code, message,
                        request->close_after);
    self->callback (self, ZF_PROXY_DIRECT_DONE, self->arg);
}

static void s_set_headers (zf_proxy_direct_t *self, zf_http_request_t *req)
{
    //  end-to-end headers go as the client sent them (Accept, Authorization, Range, …)
    for (size_t index = 0; index < zf_http_request_header_count (req); index++) {
        const zf_http_header_t *header = zf_http_request_header_at (req, index);
        if (s_hop_by_hop (header->name, strlen (header->name)))
            continue;
        char *line = *header->value ? zf_asprintf ("%s: %s", header->name, header->value)
                                    : zf_asprintf ("%s;", header->name);
        self->request_headers = curl_slist_append (self->request_headers, line);
        zf_free (line);
    }
    self->request_headers = curl_slist_append (self->request_headers, "Expect:");
    if (!zf_http_request_header (req, "accept"))
        self->request_headers = curl_slist_append (self->request_headers, "Accept:");
    curl_easy_setopt (self->easy, CURLOPT_HTTPHEADER, self->request_headers);
}

static void s_set_body (zf_proxy_direct_t *self, zf_http_request_t *req)
{
    const char *method = self->request->method;
    size_t body_len;
    const char *body = zf_http_request_body (req, &body_len);
    if (self->request->is_head)
        curl_easy_setopt (self->easy, CURLOPT_NOBODY, 1L);
    else if (!streq (method, "GET")) {
        curl_easy_setopt (self->easy, CURLOPT_CUSTOMREQUEST, method);
        if (body_len > 0 || streq (method, "POST") || streq (method, "PUT")
            || streq (method, "PATCH")) {
            self->request_body = zf_malloc (body_len + 1);
            memcpy (self->request_body, body, body_len);
            curl_easy_setopt (self->easy, CURLOPT_POSTFIELDS, self->request_body);
            curl_easy_setopt (self->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
        }
    }
}

zf_proxy_direct_t *zf_proxy_direct_new (const zf_proxy_upstream_t *upstream,
                                        zf_proxy_request_t *request, zf_http_request_t *req,
                                        zf_proxy_out_t *out, zf_proxy_direct_fn *callback,
                                        void *arg)
{
    zf_proxy_direct_t *self = zf_calloc (1, sizeof *self);
    self->upstream = upstream;
    self->request = request;
    self->out = out;
    self->callback = callback;
    self->arg = arg;
    //  The client's own headers go with it (s_set_headers), its Authorization included: kept
    //  off other hosts a redirect leads to (zf_curl_origin). Never through the environment's
    //  proxy.
    zf_curl_origin_t setup = {.url = request->url,
                              .owner = self,
                              .error_buffer = self->curl_error,
                              .header_fn = s_curl_header,
                              .header_arg = self,
                              .body_fn = s_curl_write,
                              .body_arg = self,
                              .connect_to = upstream->connect_to,
                              .ca = upstream->ca,
                              .connect_timeout_ms = upstream->connect_timeout_ms,
                              .stall_seconds = 60,
                              .max_redirects = 10,
                              .http1 = true,
                              .ignore_env_proxy = true};
    CURL *easy = self->easy = zf_curl_origin_new (&setup);
    s_set_headers (self, req);
    s_set_body (self, req);
    zf_counter_add (zf_metrics_counter ("zfly_proxy_requests_total", "Client requests by route",
                                        "route", "direct", NULL),
                    1);
    zf_curl_loop_add (upstream->curl, easy);
    return self;
}

void zf_proxy_direct_destroy (zf_proxy_direct_t **self_p)
{
    zf_proxy_direct_t *self = *self_p;
    if (!self)
        return;
    if (self->easy) {
        zf_curl_loop_remove (self->upstream->curl, self->easy);
        curl_easy_cleanup (self->easy);
    }
    curl_slist_free_all (self->request_headers);
    zf_free (self->request_body);
    zf_free (self->resp_head);
    zf_free (self);
    *self_p = NULL;
}

void zf_proxy_direct_drained (zf_proxy_direct_t *self)
{
    if (self->paused && self->easy && zf_proxy_out_memory (self->out) <= ZF_PROXY_OUT_HIGH / 2) {
        self->paused = false;
        zf_curl_loop_unpause (self->upstream->curl, self->easy);
    }
}
