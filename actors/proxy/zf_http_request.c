/*  zf_http_request.c — bounded request parsing on http-parser (see the header). */
#include "zf_http_request.h"
#include <http_parser.h>

typedef struct {
    char *name;
    size_t name_len;
    char *value;
    size_t value_len;
} s_header_t;

struct zf_http_request_s {
    zf_http_limits_t limits;
    http_parser parser;
    http_parser_settings settings;
    char *url;
    size_t url_len;
    s_header_t *headers;
    size_t header_count;
    size_t header_cap;
    bool in_value; //  the last header callback was a value
    size_t head_bytes;
    char *body;
    size_t body_len;
    bool started;
    bool headers_done;
    bool complete;
    int error_status;
    const char *error_reason;
    zf_http_header_t view; //  returned by zf_http_request_header_at
};

static zf_http_request_t *s_self (http_parser *parser)
{
    return parser->data;
}

static int s_refuse (zf_http_request_t *self, int status, const char *reason)
{
    if (!self->error_status) {
        self->error_status = status;
        self->error_reason = reason;
    }
    return 1; //  http-parser stops with HPE_CB_*
}

//  Appends to *text (NUL-terminated, *length bytes) within the head budget.
static int s_append (zf_http_request_t *self, char **text, size_t *length, const char *at,
                     size_t size, int status, const char *reason)
{
    if (self->head_bytes + size > self->limits.header_max)
        return s_refuse (self, status, reason);
    self->head_bytes += size;
    *text = zf_realloc (*text, *length + size + 1);
    memcpy (*text + *length, at, size);
    *length += size;
    (*text)[*length] = 0;
    return 0;
}

static int s_on_message_begin (http_parser *parser)
{
    s_self (parser)->started = true;
    return 0;
}

static int s_on_url (http_parser *parser, const char *at, size_t size)
{
    zf_http_request_t *self = s_self (parser);
    self->started = true;
    return s_append (self, &self->url, &self->url_len, at, size, 414, "URI Too Long");
}

static int s_on_header_field (http_parser *parser, const char *at, size_t size)
{
    zf_http_request_t *self = s_self (parser);
    if (self->in_value || self->header_count == 0) {
        if (self->header_count == self->limits.headers_max)
            return s_refuse (self, 431, "Request Header Fields Too Large");
        if (self->header_count == self->header_cap) {
            self->header_cap = self->header_cap ? self->header_cap * 2 : 16;
            self->headers = zf_realloc (self->headers, self->header_cap * sizeof (s_header_t));
        }
        self->headers[self->header_count++] = (s_header_t){0};
        self->in_value = false;
    }
    s_header_t *header = &self->headers[self->header_count - 1];
    return s_append (self, &header->name, &header->name_len, at, size, 431,
                     "Request Header Fields Too Large");
}

static int s_on_header_value (http_parser *parser, const char *at, size_t size)
{
    zf_http_request_t *self = s_self (parser);
    ZF_ASSERT (self->header_count > 0);
    s_header_t *header = &self->headers[self->header_count - 1];
    self->in_value = true;
    if (!header->value)
        header->value = zf_strdup ("");
    return s_append (self, &header->value, &header->value_len, at, size, 431,
                     "Request Header Fields Too Large");
}

static int s_on_headers_complete (http_parser *parser)
{
    zf_http_request_t *self = s_self (parser);
    self->headers_done = true;
    for (size_t index = 0; index < self->header_count; index++)
        if (!self->headers[index].value)
            self->headers[index].value = zf_strdup ("");
    if (!self->url)
        self->url = zf_strdup ("");
    if (parser->content_length != ULLONG_MAX && parser->content_length > self->limits.body_max
        && !(parser->flags & F_CHUNKED))
        return s_refuse (self, 413, "Content Too Large") ? -1 : 0;
    //  A CONNECT's head is the whole request; what follows is the tunnel's. http-parser
    //  then treats the message as complete and stops on its own (upgrade).
    return 0;
}

static int s_on_body (http_parser *parser, const char *at, size_t size)
{
    zf_http_request_t *self = s_self (parser);
    if (self->body_len + size > self->limits.body_max)
        return s_refuse (self, 413, "Content Too Large");
    self->body = zf_realloc (self->body, self->body_len + size + 1);
    memcpy (self->body + self->body_len, at, size);
    self->body_len += size;
    self->body[self->body_len] = 0;
    return 0;
}

static int s_on_message_complete (http_parser *parser)
{
    zf_http_request_t *self = s_self (parser);
    self->complete = true;
    http_parser_pause (parser, 1); //  one request at a time
    return 0;
}

static void s_clear (zf_http_request_t *self)
{
    zf_free (self->url);
    self->url = NULL;
    self->url_len = 0;
    for (size_t index = 0; index < self->header_count; index++) {
        zf_free (self->headers[index].name);
        zf_free (self->headers[index].value);
    }
    self->header_count = 0;
    zf_free (self->body);
    self->body = NULL;
    self->body_len = 0;
    self->in_value = false;
    self->head_bytes = 0;
    self->started = false;
    self->headers_done = false;
    self->complete = false;
}

zf_http_request_t *zf_http_request_new (const zf_http_limits_t *limits)
{
    zf_http_request_t *self = zf_calloc (1, sizeof *self);
    self->limits = *limits;
    http_parser_init (&self->parser, HTTP_REQUEST);
    self->parser.data = self;
    http_parser_settings_init (&self->settings);
    self->settings.on_message_begin = s_on_message_begin;
    self->settings.on_url = s_on_url;
    self->settings.on_header_field = s_on_header_field;
    self->settings.on_header_value = s_on_header_value;
    self->settings.on_headers_complete = s_on_headers_complete;
    self->settings.on_body = s_on_body;
    self->settings.on_message_complete = s_on_message_complete;
    return self;
}

void zf_http_request_destroy (zf_http_request_t **self_p)
{
    zf_http_request_t *self = *self_p;
    if (!self)
        return;
    s_clear (self);
    zf_free (self->headers);
    zf_free (self);
    *self_p = NULL;
}

zf_http_feed_t zf_http_request_feed (zf_http_request_t *self, const char *data, size_t size,
                                     size_t *consumed)
{
    *consumed = 0;
    if (self->error_status)
        return ZF_HTTP_ERROR;
    if (self->complete)
        return ZF_HTTP_DONE;
    if (size == 0)
        return ZF_HTTP_MORE;
    size_t parsed = http_parser_execute (&self->parser, &self->settings, data, size);
    *consumed = parsed;
    enum http_errno code = HTTP_PARSER_ERRNO (&self->parser);
    if (self->error_status)
        return ZF_HTTP_ERROR;
    if (self->complete && (code == HPE_OK || code == HPE_PAUSED))
        return ZF_HTTP_DONE;
    if (code != HPE_OK) {
        self->error_status = 400;
        self->error_reason = http_errno_name (code);
        return ZF_HTTP_ERROR;
    }
    if (self->parser.upgrade && self->headers_done) {
        //  CONNECT or Upgrade: http-parser stopped after the head without completing
        self->complete = true;
        return ZF_HTTP_DONE;
    }
    return ZF_HTTP_MORE;
}

void zf_http_request_next (zf_http_request_t *self)
{
    s_clear (self);
    if (HTTP_PARSER_ERRNO (&self->parser) == HPE_PAUSED)
        http_parser_pause (&self->parser, 0);
    else if (self->parser.upgrade || HTTP_PARSER_ERRNO (&self->parser) != HPE_OK) {
        http_parser_init (&self->parser, HTTP_REQUEST);
        self->parser.data = self;
    }
}

bool zf_http_request_started (zf_http_request_t *self)
{
    return self->started;
}

int zf_http_request_error_status (zf_http_request_t *self)
{
    return self->error_status;
}

const char *zf_http_request_error_reason (zf_http_request_t *self)
{
    return self->error_reason ? self->error_reason : "";
}

const char *zf_http_request_method (zf_http_request_t *self)
{
    return http_method_str (self->parser.method);
}

const char *zf_http_request_url (zf_http_request_t *self)
{
    return self->url ? self->url : "";
}

int zf_http_request_version_minor (zf_http_request_t *self)
{
    return self->parser.http_minor;
}

bool zf_http_request_keep_alive (zf_http_request_t *self)
{
    return http_should_keep_alive (&self->parser) != 0;
}

bool zf_http_request_is_connect (zf_http_request_t *self)
{
    return self->parser.method == HTTP_CONNECT;
}

bool zf_http_request_is_upgrade (zf_http_request_t *self)
{
    return self->parser.upgrade && self->parser.method != HTTP_CONNECT;
}

size_t zf_http_request_header_count (zf_http_request_t *self)
{
    return self->header_count;
}

const zf_http_header_t *zf_http_request_header_at (zf_http_request_t *self, size_t index)
{
    ZF_ASSERT (index < self->header_count);
    self->view.name = self->headers[index].name ? self->headers[index].name : "";
    self->view.value = self->headers[index].value ? self->headers[index].value : "";
    return &self->view;
}

const char *zf_http_request_header (zf_http_request_t *self, const char *name)
{
    for (size_t index = 0; index < self->header_count; index++)
        if (self->headers[index].name && strcasecmp (self->headers[index].name, name) == 0)
            return self->headers[index].value ? self->headers[index].value : "";
    return NULL;
}

const char *zf_http_request_body (zf_http_request_t *self, size_t *size)
{
    *size = self->body_len;
    return self->body ? self->body : "";
}

//  --------------------------------------------------------------------------------------------

static zf_http_feed_t s_feed_all (zf_http_request_t *request, const char *text, size_t *used)
{
    return zf_http_request_feed (request, text, strlen (text), used);
}

void zf_http_request_test (bool verbose)
{
    if (verbose)
        printf (" * zf_http_request: ");
    zf_http_limits_t limits = {.header_max = 512, .headers_max = 8, .body_max = 64};
    zf_http_request_t *request = zf_http_request_new (&limits);
    size_t used;

    //  two pipelined requests, the first split in two feeds
    const char *two = "GET /v2/ HTTP/1.1\r\nHost: a\r\nAccept: x\r\n\r\n"
                      "HEAD /v2/lib/blobs/sha256:00 HTTP/1.1\r\nHost: a\r\n\r\n";
    ZF_ASSERT (zf_http_request_feed (request, two, 10, &used) == ZF_HTTP_MORE && used == 10);
    ZF_ASSERT (s_feed_all (request, two + 10, &used) == ZF_HTTP_DONE);
    ZF_ASSERT (streq (zf_http_request_method (request), "GET"));
    ZF_ASSERT (streq (zf_http_request_url (request), "/v2/"));
    ZF_ASSERT (streq (zf_http_request_header (request, "accept"), "x"));
    ZF_ASSERT (zf_http_request_keep_alive (request));
    size_t rest = strlen (two + 10) - used;
    const char *next = two + 10 + used;
    zf_http_request_next (request);
    ZF_ASSERT (zf_http_request_feed (request, next, rest, &used) == ZF_HTTP_DONE);
    ZF_ASSERT (used == rest && streq (zf_http_request_method (request), "HEAD"));
    zf_http_request_next (request);

    //  chunked body, decoded
    const char *chunked = "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    ZF_ASSERT (s_feed_all (request, chunked, &used) == ZF_HTTP_DONE);
    size_t size;
    ZF_ASSERT (memcmp (zf_http_request_body (request, &size), "abcde", 5) == 0 && size == 5);
    zf_http_request_next (request);

    //  CONNECT stops after the head; the rest is the tunnel's
    const char *connect = "CONNECT reg.test:443 HTTP/1.1\r\nHost: reg.test:443\r\n\r\n\x16\x03";
    ZF_ASSERT (s_feed_all (request, connect, &used) == ZF_HTTP_DONE);
    ZF_ASSERT (zf_http_request_is_connect (request) && used == strlen (connect) - 2);
    ZF_ASSERT (streq (zf_http_request_url (request), "reg.test:443"));
    zf_http_request_destroy (&request);

    //  refusals
    struct {
        const char *text;
        int status;
    } bad[] = {
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"BLAH\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", 413},
        {"GET / HTTP/1.1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: "
         "1\r\n\r\n",
         431},
    };
    for (size_t index = 0; index < ZF_ARRAY_LEN (bad); index++) {
        request = zf_http_request_new (&limits);
        ZF_ASSERT (s_feed_all (request, bad[index].text, &used) == ZF_HTTP_ERROR);
        ZF_ASSERT (zf_http_request_error_status (request) == bad[index].status);
        zf_http_request_destroy (&request);
    }
    request = zf_http_request_new (&limits);
    char big[1024];
    memset (big, 'a', sizeof big);
    memcpy (big, "GET /", 5);
    ZF_ASSERT (zf_http_request_feed (request, big, sizeof big, &used) == ZF_HTTP_ERROR);
    ZF_ASSERT (zf_http_request_error_status (request) == 414);
    zf_http_request_destroy (&request);
    if (verbose)
        printf ("OK\n");
}
