/*  zf_fetch_origin.c — a task's origin (see zf_fetch_origin.h). */
#include "zf_fetch_origin.h"
#include "zf_curl_origin.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include <ctype.h>
#include <errno.h>
#include <strings.h>

#define MAX_REDIRECTS 10
//  libcurl's receive buffer: large enough for few callbacks per piece, below the daemon's mmap
//  threshold (zfly_main.c) so that each transfer's buffer comes from the heap, not from fresh
//  pages that fault.
#define RECV_BUFFER (128 * 1024)

typedef struct transfer_s transfer_t;

struct zf_fetch_origin_s {
    const char *actor;
    const zf_fetcher_config_t *config;
    zf_curl_loop_t *curl;
    char *url;
    struct curl_slist *headers; //  borrowed
    zf_fetch_origin_sink_t sink;
    void *arg;
    transfer_t *transfers;
    size_t ranges;
};

struct transfer_s {
    transfer_t *next;
    zf_fetch_origin_t *origin; //  NULL once cancelled: curl still holds it, nobody is told
    zf_origin_kind_t kind;
    CURL *easy;
    uint64_t first, last;    //  bytes asked for (probe, range)
    uint64_t probe_bytes;    //  probe: bytes asked from 0 (1, or a first range)
    bool held;               //  probe: a first range, paused since its length was told
    uint64_t content_length; //  range, stream
    uint64_t received;       //  body bytes passed on
    long status;             //  HTTP status of the answer whose body is arriving
    char content_range[128];
    bool ignores_range;
    bool paused;
    bool in_callback;
    char failure[320]; //  why we aborted it ourselves
    bool failure_retryable;
    char curl_error[CURL_ERROR_SIZE];
};

zf_fetch_origin_t *zf_fetch_origin_new (const char *actor, const zf_fetcher_config_t *config,
                                        zf_curl_loop_t *curl, const char *url,
                                        struct curl_slist *headers,
                                        const zf_fetch_origin_sink_t *sink, void *arg)
{
    zf_fetch_origin_t *self = zf_calloc (1, sizeof *self);
    self->actor = actor;
    self->config = config;
    self->curl = curl;
    self->url = zf_strdup (url);
    self->headers = headers;
    self->sink = *sink;
    self->arg = arg;
    return self;
}

static void s_transfer_destroy (transfer_t *transfer)
{
    curl_easy_cleanup (transfer->easy);
    zf_free (transfer);
}

static void s_unlink (zf_fetch_origin_t *self, transfer_t *transfer)
{
    for (transfer_t **link = &self->transfers; *link; link = &(*link)->next)
        if (*link == transfer) {
            *link = transfer->next;
            if (transfer->kind == ZF_ORIGIN_RANGE)
                self->ranges--;
            return;
        }
}

void zf_fetch_origin_cancel_all (zf_fetch_origin_t *self)
{
    while (self->transfers) {
        transfer_t *transfer = self->transfers;
        s_unlink (self, transfer);
        transfer->origin = NULL;
        //  curl is inside it: it ends when the callback returns (the write fails), and the
        //  done callback frees it then.
        if (transfer->in_callback)
            continue;
        zf_curl_loop_remove (self->curl, transfer->easy);
        s_transfer_destroy (transfer);
    }
}

void zf_fetch_origin_destroy (zf_fetch_origin_t **self_p)
{
    zf_fetch_origin_t *self = *self_p;
    if (!self)
        return;
    zf_fetch_origin_cancel_all (self);
    zf_free (self->url);
    zf_free (self);
    *self_p = NULL;
}

size_t zf_fetch_origin_ranges (const zf_fetch_origin_t *self)
{
    return self->ranges;
}

bool zf_fetch_origin_busy (const zf_fetch_origin_t *self)
{
    return self->transfers != NULL;
}

bool zf_fetch_origin_streaming (const zf_fetch_origin_t *self)
{
    for (transfer_t *transfer = self->transfers; transfer; transfer = transfer->next)
        if (transfer->kind == ZF_ORIGIN_STREAM)
            return true;
    return false;
}

//  --- answers ---------------------------------------------------------------------------------

static void s_set_failure (transfer_t *transfer, bool retryable, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void s_set_failure (transfer_t *transfer, bool retryable, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (transfer->failure, sizeof transfer->failure, fmt, args);
    va_end (args);
    transfer->failure_retryable = retryable;
}

//  Headers of every answer in a redirect chain pass here: remember the last Content-Range.
static size_t s_on_header (char *line, size_t size, size_t count, void *arg)
{
    transfer_t *transfer = arg;
    size_t length = size * count;
    if (zf_curl_origin_status_line (line, length))
        transfer->content_range[0] = '\0';
    else
        zf_curl_origin_header (line, length, "Content-Range", transfer->content_range,
                               sizeof transfer->content_range);
    return length;
}

//  Digits at text, up to a character not a digit (at *end): false when there are none or
//  they overflow.
static bool s_parse_digits (const char *text, uint64_t *value, const char **end)
{
    if (!isdigit ((unsigned char) *text))
        return false;
    errno = 0;
    char *stop = NULL;
    *value = strtoull (text, &stop, 10);
    *end = stop;
    return errno == 0;
}

//  "bytes 0-LAST/TOTAL": the first range's answer, whose length the origin chose within what
//  was asked (a content shorter than the range ends early).
static bool s_check_first_range (transfer_t *transfer)
{
    const char *text = transfer->content_range;
    const char *prefix = "bytes 0-";
    uint64_t last = 0, total = 0;
    const char *end = text;
    bool parsed = strncmp (text, prefix, strlen (prefix)) == 0
                  && s_parse_digits (text + strlen (prefix), &last, &end) && *end == '/'
                  && s_parse_digits (end + 1, &total, &end) && *end == '\0';
    if (!parsed || total == 0
        || last != (total < transfer->probe_bytes ? total : transfer->probe_bytes) - 1) {
        s_set_failure (transfer, true,
                       "asked bytes 0-%" PRIu64 ", origin answered 206 with Content-Range '%s'",
                       transfer->probe_bytes - 1, transfer->content_range);
        return false;
    }
    transfer->last = last;
    transfer->content_length = total;
    return true;
}

//  First bytes of a body: is this the answer we asked for? Returns false to abort.
static bool s_check_answer (transfer_t *transfer)
{
    curl_easy_getinfo (transfer->easy, CURLINFO_RESPONSE_CODE, &transfer->status);
    if (transfer->kind == ZF_ORIGIN_STREAM) {
        curl_off_t length = -1;
        curl_easy_getinfo (transfer->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        if (transfer->status != 200)
            return false;
        if (length >= 0 && (uint64_t) length != transfer->content_length) {
            s_set_failure (transfer, false,
                           "origin length changed from %" PRIu64 " to %" PRId64 " bytes",
                           transfer->content_length, (int64_t) length);
            return false;
        }
        return true;
    }
    if (transfer->status == 200) {
        transfer->ignores_range = true; //  the whole body is coming: never cut it as a range
        return false;
    }
    if (transfer->status != 206)
        return false;
    if (transfer->kind == ZF_ORIGIN_PROBE && transfer->probe_bytes <= 1)
        return true; //  the probe's Content-Range is read when it is done
    if (transfer->kind == ZF_ORIGIN_PROBE)
        return s_check_first_range (transfer);
    char expected[128];
    snprintf (expected, sizeof expected, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, transfer->first,
              transfer->last, transfer->content_length);
    if (strcmp (transfer->content_range, expected) != 0) {
        s_set_failure (transfer, true, "asked %s, origin answered 206 with Content-Range '%s'",
                       expected, transfer->content_range);
        return false;
    }
    return true;
}

static size_t s_on_body (char *data, size_t size, size_t count, void *arg)
{
    transfer_t *transfer = arg;
    zf_fetch_origin_t *self = transfer->origin;
    size_t length = size * count;
    if (!self || (transfer->status == 0 && !s_check_answer (transfer)))
        return 0;
    if (transfer->kind == ZF_ORIGIN_PROBE && transfer->probe_bytes > 1) {
        //  A first range: its answer states the length. The bytes wait (paused, in curl's
        //  buffer) until the sink has laid the task out and takes the transfer as a range
        //  (zf_fetch_origin_probe_release).
        if (!transfer->held) {
            transfer->held = true;
            transfer->in_callback = true;
            self->sink.on_length (self->arg, transfer->content_length, true);
            transfer->in_callback = false;
            if (!transfer->origin)
                return 0; //  cancelled inside the callback
        }
        transfer->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    uint64_t offset;
    if (transfer->kind == ZF_ORIGIN_STREAM) {
        offset = transfer->received;
        if (offset + length > transfer->content_length) {
            s_set_failure (transfer, false, "origin sent more than %" PRIu64 " bytes",
                           transfer->content_length);
            return 0;
        }
    } else {
        offset = transfer->first + transfer->received;
        if (offset + length > transfer->last + 1) {
            s_set_failure (transfer, true, "origin sent more than the %" PRIu64 " bytes asked",
                           transfer->last - transfer->first + 1);
            return 0;
        }
    }
    if (zf_curl_loop_yield (self->curl, transfer->easy, length))
        return CURL_WRITEFUNC_PAUSE; //  delivered again at the loop's next turn
    transfer->in_callback = true;
    bool taken =
        self->sink.on_bytes (self->arg, transfer->kind, offset, (const uint8_t *) data, length);
    transfer->in_callback = false;
    if (!transfer->origin)
        return 0; //  cancelled inside the callback
    if (!taken) {
        ZF_ASSERT (transfer->kind == ZF_ORIGIN_STREAM);
        transfer->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    transfer->received += length;
    return length;
}

struct curl_slist *zf_fetch_origin_headers (const zf_rec_http_header_t *headers, size_t count)
{
    struct curl_slist *list = NULL;
    for (size_t index = 0; index < count; index++) {
        if (strcasecmp (headers[index].name, "Range") == 0)
            continue;
        char *line = zf_asprintf ("%s: %s", headers[index].name, headers[index].value);
        list = curl_slist_append (list, line);
        ZF_ASSERT (list);
        zf_free (line);
    }
    return list;
}

static transfer_t *s_transfer_new (zf_fetch_origin_t *self, zf_origin_kind_t kind)
{
    const zf_fetcher_config_t *config = self->config;
    transfer_t *transfer = zf_calloc (1, sizeof *transfer);
    transfer->origin = self;
    transfer->kind = kind;
    long stall_seconds = (long) ((config->stall_timeout_ms + 999) / 1000);
    //  [upstream] hosts and ca, as the proxy's: origins named by split DNS (or by a test) and
    //  private CAs. The task's headers (a registry's Authorization) stay off other hosts that
    //  a redirect leads to (zf_curl_origin).
    zf_curl_origin_t setup = {.url = self->url,
                              .owner = transfer,
                              .error_buffer = transfer->curl_error,
                              .header_fn = s_on_header,
                              .header_arg = transfer,
                              .body_fn = s_on_body,
                              .body_arg = transfer,
                              .headers = self->headers,
                              .user_agent = "zfly-fetcher/0.1",
                              .connect_to = config->connect_to,
                              .ca = config->upstream_ca,
                              .connect_timeout_ms = config->connect_timeout_ms,
                              .stall_seconds = stall_seconds > 0 ? stall_seconds : 1L,
                              .max_redirects = MAX_REDIRECTS};
    CURL *easy = transfer->easy = zf_curl_origin_new (&setup);
    curl_easy_setopt (easy, CURLOPT_BUFFERSIZE, (long) RECV_BUFFER);
    return transfer;
}

static void s_transfer_start (zf_fetch_origin_t *self, transfer_t *transfer)
{
    if (transfer->kind != ZF_ORIGIN_STREAM) {
        char range[64];
        snprintf (range, sizeof range, "%" PRIu64 "-%" PRIu64, transfer->first, transfer->last);
        curl_easy_setopt (transfer->easy, CURLOPT_RANGE, range);
    }
    transfer->next = self->transfers;
    self->transfers = transfer;
    if (transfer->kind == ZF_ORIGIN_RANGE)
        self->ranges++;
    zf_curl_loop_add (self->curl, transfer->easy);
}

void zf_fetch_origin_probe (zf_fetch_origin_t *self, uint64_t bytes)
{
    transfer_t *transfer = s_transfer_new (self, ZF_ORIGIN_PROBE);
    transfer->probe_bytes = bytes ? bytes : 1;
    transfer->last = transfer->probe_bytes - 1;
    s_transfer_start (self, transfer);
}

static transfer_t *s_held_probe (const zf_fetch_origin_t *self)
{
    for (transfer_t *transfer = self->transfers; transfer; transfer = transfer->next)
        if (transfer->kind == ZF_ORIGIN_PROBE && transfer->held)
            return transfer;
    return NULL;
}

bool zf_fetch_origin_probe_held (const zf_fetch_origin_t *self, uint64_t *last)
{
    transfer_t *transfer = s_held_probe (self);
    if (transfer)
        *last = transfer->last;
    return transfer != NULL;
}

void zf_fetch_origin_probe_release (zf_fetch_origin_t *self, bool keep)
{
    transfer_t *transfer = s_held_probe (self);
    if (!transfer)
        return;
    if (!keep) {
        s_unlink (self, transfer);
        zf_curl_loop_remove (self->curl, transfer->easy);
        s_transfer_destroy (transfer);
        return;
    }
    //  From now on a range of [0, last] like any other, its answer already checked.
    transfer->kind = ZF_ORIGIN_RANGE;
    transfer->held = false;
    transfer->paused = false;
    self->ranges++;
    zf_curl_loop_unpause (self->curl, transfer->easy); //  may deliver the held bytes at once
}

void zf_fetch_origin_range (zf_fetch_origin_t *self, uint64_t first, uint64_t last,
                            uint64_t content_length)
{
    ZF_ASSERT (first <= last && last < content_length);
    transfer_t *transfer = s_transfer_new (self, ZF_ORIGIN_RANGE);
    transfer->first = first;
    transfer->last = last;
    transfer->content_length = content_length;
    s_transfer_start (self, transfer);
}

void zf_fetch_origin_stream (zf_fetch_origin_t *self, uint64_t content_length)
{
    transfer_t *transfer = s_transfer_new (self, ZF_ORIGIN_STREAM);
    transfer->content_length = content_length;
    transfer->last = content_length ? content_length - 1 : 0;
    s_transfer_start (self, transfer);
}

void zf_fetch_origin_resume (zf_fetch_origin_t *self)
{
    for (transfer_t *transfer = self->transfers; transfer; transfer = transfer->next)
        if (transfer->kind == ZF_ORIGIN_STREAM && transfer->paused) {
            transfer->paused = false;
            //  May deliver the held chunk at once (and pause again) or report the end.
            zf_curl_loop_unpause (self->curl, transfer->easy);
            return;
        }
}

//  --- finished transfers ----------------------------------------------------------------------

static void s_count_request (const char *actor, long status)
{
    char label[24];
    if (status > 0)
        snprintf (label, sizeof label, "%ld", status);
    else
        zf_strlcpy (label, "error", sizeof label);
    zf_counter_add (zf_metrics_counter ("zfly_fetcher_source_requests_total",
                                        "Requests sent to origins, by HTTP status of the answer",
                                        "actor", actor, "status", label, NULL),
                    1);
}

//  Why a transfer did not give what was asked, and whether trying again may help.
static bool s_describe_failure (zf_fetch_origin_t *self, transfer_t *transfer, CURLcode result,
                                char *reason, size_t reason_size)
{
    if (*transfer->failure) {
        zf_strlcpy (reason, transfer->failure, reason_size);
        return transfer->failure_retryable;
    }
    if (transfer->status >= 400) {
        snprintf (reason, reason_size, "HTTP %ld from %s", transfer->status, self->url);
        //  4xx are final, except timeouts and rate limits
        return transfer->status >= 500 || transfer->status == 408 || transfer->status == 429;
    }
    if (result != CURLE_OK) {
        snprintf (reason, reason_size, "%s (%s) from %s", curl_easy_strerror (result),
                  *transfer->curl_error ? transfer->curl_error : "-", self->url);
        return result != CURLE_UNSUPPORTED_PROTOCOL && result != CURLE_URL_MALFORMAT
               && result != CURLE_TOO_MANY_REDIRECTS && result != CURLE_COULDNT_RESOLVE_HOST;
    }
    snprintf (reason, reason_size, "unexpected HTTP %ld from %s", transfer->status, self->url);
    return false;
}

static bool s_parse_total (const char *content_range, const char *prefix, uint64_t *total)
{
    size_t prefix_length = strlen (prefix);
    if (strncmp (content_range, prefix, prefix_length) != 0)
        return false;
    const char *digits = content_range + prefix_length; //  the prefix ends in '/'
    if (*digits < '0' || *digits > '9')
        return false;
    char *end = NULL;
    unsigned long long value = strtoull (digits, &end, 10);
    if (*end != '\0')
        return false;
    *total = value;
    return true;
}

//  The probe's answer: a length (and range support), or a failure for the sink.
static bool s_probe_length (transfer_t *transfer, CURLcode result, uint64_t *length, bool *ranges)
{
    if (transfer->ignores_range || (transfer->status == 200 && result == CURLE_OK)) {
        curl_off_t content_length = -1;
        curl_easy_getinfo (transfer->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &content_length);
        *length = content_length >= 0 ? (uint64_t) content_length : 0;
        *ranges = false;
        if (content_length < 0)
            s_set_failure (transfer, false,
                           "origin sent no length (neither Content-Range nor Content-Length); "
                           "not supported yet");
        return content_length >= 0;
    }
    *ranges = true;
    if (transfer->status == 206 && result == CURLE_OK) {
        if (s_parse_total (transfer->content_range, "bytes 0-0/", length))
            return true;
        s_set_failure (transfer, false,
                       "origin sent no length (Content-Range '%s'); not supported yet",
                       transfer->content_range);
        return false;
    }
    //  An empty file has no byte 0 to ask for.
    return transfer->status == 416 && s_parse_total (transfer->content_range, "bytes */", length)
           && *length == 0;
}

void zf_fetch_origin_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg)
{
    (void) easy;
    (void) arg;
    transfer_t *transfer = easy_private;
    zf_fetch_origin_t *self = transfer->origin;
    if (transfer->status == 0)
        curl_easy_getinfo (transfer->easy, CURLINFO_RESPONSE_CODE, &transfer->status);
    if (!self) { //  cancelled while curl was inside it
        s_transfer_destroy (transfer);
        return;
    }
    s_count_request (self->actor, transfer->status);
    s_unlink (self, transfer);
    char reason[512] = "";
    zf_origin_end_t end = {.kind = transfer->kind,
                           .first = transfer->first,
                           .last = transfer->last,
                           .received = transfer->received,
                           .ignores_range = transfer->ignores_range,
                           .status = transfer->status,
                           .reason = reason};
    if (transfer->kind == ZF_ORIGIN_PROBE && transfer->held) {
        //  a first range whose length was told ended before it was taken: a failure
        if (!*transfer->failure && transfer->status < 400)
            s_set_failure (transfer, true, "origin ended the first range before it was read");
    } else if (transfer->kind == ZF_ORIGIN_PROBE) {
        uint64_t length = 0;
        bool ranges = true;
        if (s_probe_length (transfer, result, &length, &ranges)) {
            s_transfer_destroy (transfer);
            self->sink.on_length (self->arg, length, ranges);
            return;
        }
    } else {
        uint64_t expected = transfer->kind == ZF_ORIGIN_STREAM
                                ? transfer->content_length
                                : transfer->last - transfer->first + 1;
        long good = transfer->kind == ZF_ORIGIN_STREAM ? 200 : 206;
        end.ok = result == CURLE_OK && transfer->status == good && transfer->received == expected
                 && !transfer->ignores_range;
        if (!end.ok && result == CURLE_OK && transfer->status == good && !*transfer->failure)
            s_set_failure (transfer, true, "origin sent %" PRIu64 " of %" PRIu64 " bytes",
                           transfer->received, expected);
    }
    if (!end.ok)
        end.retryable = s_describe_failure (self, transfer, result, reason, sizeof reason);
    s_transfer_destroy (transfer);
    self->sink.on_end (self->arg, &end);
}
