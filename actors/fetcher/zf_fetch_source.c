/*  zf_fetch_source.c — back to source: the probe, range transfers, and the single stream for
    origins that ignore Range. Every transfer has a connect timeout and stall detection, so
    none can hang; every answer is checked before a byte of it is kept. */
#include "zf_fetch_internal.h"
#include "zf_log.h"

#define MAX_REDIRECTS 10
//  libcurl's receive buffer: large enough for few callbacks per piece, below the daemon's mmap
//  threshold (zfly_main.c) so that each transfer's buffer comes from the heap, not from fresh
//  pages that fault.
#define RECV_BUFFER (128 * 1024)

typedef enum { KIND_PROBE, KIND_RANGE, KIND_STREAM } transfer_kind_t;

struct transfer_s {
    transfer_t *next;
    zf_fetch_task_t *task;
    transfer_kind_t kind;
    CURL *easy;
    uint64_t piece;       //  KIND_RANGE
    uint64_t first, last; //  bytes asked for (KIND_PROBE, KIND_RANGE)
    long status;          //  HTTP status of the answer whose body is arriving
    char content_range[128];
    uint64_t offset; //  KIND_STREAM: content offset of the next byte; else bytes received
    bool ignores_range;
    bool paused;
    bool in_callback;
    char failure[320]; //  why we aborted it ourselves
    bool failure_retryable;
    char curl_error[CURL_ERROR_SIZE];
    struct curl_slist *connect_to; //  [fetcher] hosts as CURLOPT_CONNECT_TO
};

//  --- transfers
//  -----------------------------------------------------------------------------------

static void s_unlink (zf_fetch_task_t *task, transfer_t *transfer)
{
    for (transfer_t **link = &task->transfers; *link; link = &(*link)->next)
        if (*link == transfer) {
            *link = transfer->next;
            break;
        }
    if (transfer->kind == KIND_RANGE)
        task->range_transfers--;
}

static void s_transfer_destroy (transfer_t *transfer)
{
    curl_easy_cleanup (transfer->easy);
    curl_slist_free_all (transfer->connect_to);
    zf_free (transfer);
}

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
    if (length >= 5 && strncmp (line, "HTTP/", 5) == 0)
        transfer->content_range[0] = '\0';
    else if (length > 14 && strncasecmp (line, "Content-Range:", 14) == 0) {
        const char *value = line + 14;
        size_t value_length = length - 14;
        while (value_length && (*value == ' ' || *value == '\t')) {
            value++;
            value_length--;
        }
        while (value_length
               && (value[value_length - 1] == '\r' || value[value_length - 1] == '\n'
                   || value[value_length - 1] == ' '))
            value_length--;
        if (value_length >= sizeof transfer->content_range)
            value_length = sizeof transfer->content_range - 1;
        memcpy (transfer->content_range, value, value_length);
        transfer->content_range[value_length] = '\0';
    }
    return length;
}

//  First bytes of a body: is this the answer we asked for? Returns false to abort.
static bool s_check_answer (transfer_t *transfer)
{
    zf_fetch_task_t *task = transfer->task;
    curl_easy_getinfo (transfer->easy, CURLINFO_RESPONSE_CODE, &transfer->status);
    if (transfer->kind == KIND_STREAM) {
        curl_off_t length = -1;
        curl_easy_getinfo (transfer->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        if (transfer->status != 200)
            return false;
        if (length >= 0 && (uint64_t) length != task->content_length) {
            s_set_failure (transfer, false,
                           "origin length changed from %" PRIu64 " to %" PRId64 " bytes",
                           task->content_length, (int64_t) length);
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
    if (transfer->kind == KIND_PROBE)
        return true; //  the probe's Content-Range is read when it is done
    char expected[128];
    snprintf (expected, sizeof expected, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, transfer->first,
              transfer->last, task->content_length);
    if (strcmp (transfer->content_range, expected) != 0) {
        s_set_failure (transfer, true, "asked %s, origin answered 206 with Content-Range '%s'",
                       expected, transfer->content_range);
        return false;
    }
    return true;
}

static size_t s_write_range (transfer_t *transfer, const uint8_t *data, size_t size)
{
    zf_fetch_task_t *task = transfer->task;
    uint64_t expected = transfer->last - transfer->first + 1;
    if (transfer->offset + size > expected) {
        s_set_failure (transfer, true, "origin sent more than the %" PRIu64 " bytes asked",
                       expected);
        return 0;
    }
    if (transfer->kind == KIND_RANGE) {
        piece_t *piece = &task->pieces[transfer->piece];
        memcpy (piece->buffer + piece->filled, data, size);
        piece->filled += size;
    }
    transfer->offset += size;
    return size;
}

//  Pieces the chunk [offset, offset + size) would start holding that are not held yet.
static size_t s_new_pieces_needed (zf_fetch_task_t *task, uint64_t offset, size_t size)
{
    size_t needed = 0;
    for (uint64_t index = offset / task->piece_length;
         index <= (offset + size - 1) / task->piece_length; index++)
        if (task->pieces[index].state == PIECE_MISSING)
            needed++;
    return needed;
}

static size_t s_write_stream (transfer_t *transfer, const uint8_t *data, size_t size)
{
    zf_fetch_task_t *task = transfer->task;
    uint64_t offset = transfer->offset;
    if (offset + size > task->content_length) {
        s_set_failure (transfer, false, "origin sent more than %" PRIu64 " bytes",
                       task->content_length);
        return 0;
    }
    //  Memory bound: wait for storage to acknowledge writes before holding more pieces.
    if (zf_fetch_task_held (task) + s_new_pieces_needed (task, offset, size) > task->window) {
        transfer->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    zf_fetch_task_hash_feed (task, offset, data, size);
    size_t used = 0;
    while (used < size && zf_fetch_task_running (task)) {
        uint64_t index = (offset + used) / task->piece_length;
        uint64_t piece_start = index * task->piece_length;
        uint64_t piece_size = zf_fetch_piece_size (task, index);
        size_t slice = (size_t) (piece_start + piece_size - (offset + used));
        if (slice > size - used)
            slice = size - used;
        piece_t *piece = &task->pieces[index];
        if (piece->state == PIECE_MISSING && offset + used == piece_start) {
            zf_fetch_piece_hold (task, index);
            piece->state = PIECE_FETCHING;
        }
        if (piece->state == PIECE_FETCHING) {
            memcpy (piece->buffer + piece->filled, data + used, slice);
            piece->filled += slice;
            if (piece->filled == piece_size)
                zf_fetch_task_piece_done (task, index);
        }
        used += slice;
    }
    transfer->offset += size;
    if (transfer->offset > task->stream_furthest) {
        task->stream_furthest = transfer->offset;
        task->stream_attempts = 0; //  progress: retries count from here
    }
    return zf_fetch_task_running (task) ? size : 0;
}

static size_t s_on_body (char *data, size_t size, size_t count, void *arg)
{
    transfer_t *transfer = arg;
    zf_fetch_task_t *task = transfer->task;
    size_t length = size * count;
    if (transfer->status == 0 && !s_check_answer (transfer))
        return 0;
    if (!zf_fetch_task_running (task))
        return 0;
    task->in_curl_callback = transfer->in_callback = true;
    size_t written = transfer->kind == KIND_STREAM
                         ? s_write_stream (transfer, (const uint8_t *) data, length)
                         : s_write_range (transfer, (const uint8_t *) data, length);
    task->in_curl_callback = transfer->in_callback = false;
    if (written == length) {
        task->bytes_from_source += length;
        zf_counter_add (task->env->source_bytes, length);
    }
    return written;
}

//  "NAME=ADDR:PORT …" -> CURLOPT_CONNECT_TO entries "NAME::ADDR:PORT" (any port of NAME).
static struct curl_slist *s_connect_to (const char *hosts)
{
    struct curl_slist *list = NULL;
    if (!hosts)
        return NULL;
    const char *cursor = hosts;
    while (*cursor) {
        size_t skip = strspn (cursor, " \t");
        cursor += skip;
        size_t length = strcspn (cursor, " \t");
        if (length == 0)
            break;
        const char *equal = memchr (cursor, '=', length);
        if (equal && equal != cursor && equal + 1 < cursor + length) {
            char *line = zf_asprintf ("%.*s::%.*s", (int) (equal - cursor), cursor,
                                      (int) (cursor + length - equal - 1), equal + 1);
            list = curl_slist_append (list, line);
            zf_free (line);
        }
        cursor += length;
    }
    return list;
}

static transfer_t *s_transfer_new (zf_fetch_task_t *task, transfer_kind_t kind)
{
    const zf_fetcher_config_t *config = task->env->config;
    transfer_t *transfer = zf_calloc (1, sizeof *transfer);
    transfer->task = task;
    transfer->kind = kind;
    CURL *easy = transfer->easy = curl_easy_init ();
    ZF_ASSERT (easy);
    curl_easy_setopt (easy, CURLOPT_URL, task->url);
    curl_easy_setopt (easy, CURLOPT_PRIVATE, transfer);
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    //  libcurl drops a custom Authorization (and Cookie) header when a redirect changes host,
    //  port or scheme, as long as CURLOPT_UNRESTRICTED_AUTH stays off.
    curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt (easy, CURLOPT_MAXREDIRS, (long) MAX_REDIRECTS);
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, task->headers);
    curl_easy_setopt (easy, CURLOPT_USERAGENT,
                      "zfly-fetcher/"
                      "0.1");
    curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS, (long) config->connect_timeout_ms);
    long stall_seconds = (long) ((config->stall_timeout_ms + 999) / 1000);
    curl_easy_setopt (easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt (easy, CURLOPT_LOW_SPEED_TIME, stall_seconds > 0 ? stall_seconds : 1L);
    curl_easy_setopt (easy, CURLOPT_BUFFERSIZE, (long) RECV_BUFFER);
    curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, transfer->curl_error);
    curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (easy, CURLOPT_HEADERDATA, transfer);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, transfer);
    //  [fetcher] hosts and upstream_ca, as the proxy's: origins named by split DNS (or by a
    //  test) and private CAs. Words that are not NAME=ADDR:PORT are skipped.
    transfer->connect_to = s_connect_to (config->hosts);
    if (transfer->connect_to)
        curl_easy_setopt (easy, CURLOPT_CONNECT_TO, transfer->connect_to);
    if (config->upstream_ca && *config->upstream_ca)
        curl_easy_setopt (easy, CURLOPT_CAINFO, config->upstream_ca);
    return transfer;
}

static void s_transfer_start (transfer_t *transfer)
{
    zf_fetch_task_t *task = transfer->task;
    if (transfer->kind != KIND_STREAM) {
        char range[64];
        snprintf (range, sizeof range, "%" PRIu64 "-%" PRIu64, transfer->first, transfer->last);
        curl_easy_setopt (transfer->easy, CURLOPT_RANGE, range);
    }
    transfer->next = task->transfers;
    task->transfers = transfer;
    if (transfer->kind == KIND_RANGE)
        task->range_transfers++;
    zf_curl_loop_add (task->env->curl, transfer->easy);
}

void zf_fetch_source_probe (zf_fetch_task_t *self)
{
    //  Dragonfly's lesson: probe with a one-byte range, not HEAD; the answer tells the length
    //  and whether Range is honoured in one round trip.
    transfer_t *transfer = s_transfer_new (self, KIND_PROBE);
    transfer->first = transfer->last = 0;
    s_transfer_start (transfer);
}

void zf_fetch_source_range (zf_fetch_task_t *self, uint64_t index)
{
    piece_t *piece = &self->pieces[index];
    uint64_t size = zf_fetch_piece_size (self, index);
    zf_fetch_piece_hold (self, index);
    piece->state = PIECE_FETCHING;
    transfer_t *transfer = s_transfer_new (self, KIND_RANGE);
    transfer->piece = index;
    transfer->first = index * self->piece_length;
    transfer->last = transfer->first + size - 1;
    s_transfer_start (transfer);
}

void zf_fetch_source_stream (zf_fetch_task_t *self)
{
    s_transfer_start (s_transfer_new (self, KIND_STREAM));
}

bool zf_fetch_source_streaming (zf_fetch_task_t *self)
{
    for (transfer_t *transfer = self->transfers; transfer; transfer = transfer->next)
        if (transfer->kind == KIND_STREAM)
            return true;
    return false;
}

void zf_fetch_source_resume_stream (zf_fetch_task_t *self)
{
    for (transfer_t *transfer = self->transfers; transfer; transfer = transfer->next)
        if (transfer->kind == KIND_STREAM && transfer->paused) {
            transfer->paused = false;
            //  May deliver the held chunk at once (and pause again) or report the end.
            zf_curl_loop_unpause (self->env->curl, transfer->easy);
            return;
        }
}

void zf_fetch_source_cancel_all (zf_fetch_task_t *self)
{
    transfer_t **link = &self->transfers;
    while (*link) {
        transfer_t *transfer = *link;
        if (transfer->in_callback) { //  curl is inside it: it ends when the callback returns
            link = &transfer->next;
            continue;
        }
        *link = transfer->next;
        if (transfer->kind == KIND_RANGE)
            self->range_transfers--;
        zf_curl_loop_remove (self->env->curl, transfer->easy);
        s_transfer_destroy (transfer);
    }
}

//  --- finished transfers -------------------------------------------------------------------------

static void s_count_request (zf_fetch_task_t *task, long status)
{
    char label[24];
    if (status > 0)
        snprintf (label, sizeof label, "%ld", status);
    else
        zf_strlcpy (label, "error", sizeof label);
    zf_counter_add (zf_metrics_counter ("zfly_fetcher_source_requests_total",
                                        "Requests sent to origins, by HTTP status of the answer",
                                        "actor", task->env->name, "status", label, NULL),
                    1);
}

//  Why a transfer did not give what was asked, and whether trying again may help.
static bool s_describe_failure (transfer_t *transfer, CURLcode result, char *reason,
                                size_t reason_size)
{
    zf_fetch_task_t *task = transfer->task;
    if (*transfer->failure) {
        zf_strlcpy (reason, transfer->failure, reason_size);
        return transfer->failure_retryable;
    }
    if (transfer->status >= 400) {
        snprintf (reason, reason_size, "HTTP %ld from %s", transfer->status, task->url);
        //  4xx are final, except timeouts and rate limits
        return transfer->status >= 500 || transfer->status == 408 || transfer->status == 429;
    }
    if (result != CURLE_OK) {
        snprintf (reason, reason_size, "%s (%s) from %s", curl_easy_strerror (result),
                  *transfer->curl_error ? transfer->curl_error : "-", task->url);
        return result != CURLE_UNSUPPORTED_PROTOCOL && result != CURLE_URL_MALFORMAT
               && result != CURLE_TOO_MANY_REDIRECTS && result != CURLE_COULDNT_RESOLVE_HOST;
    }
    snprintf (reason, reason_size, "unexpected HTTP %ld from %s", transfer->status, task->url);
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

static void s_fail_no_length (zf_fetch_task_t *task)
{
    zf_fetch_task_fail (task, "source",
                        "origin sent no length for %s (neither Content-Range nor "
                        "Content-Length); not supported yet",
                        task->url);
}

static void s_probe_done (transfer_t *transfer, CURLcode result)
{
    zf_fetch_task_t *task = transfer->task;
    uint64_t total = 0;
    if (transfer->ignores_range || (transfer->status == 200 && result == CURLE_OK)) {
        curl_off_t length = -1;
        curl_easy_getinfo (transfer->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        if (length < 0)
            s_fail_no_length (task);
        else
            zf_fetch_task_on_length (task, (uint64_t) length, false);
        return;
    }
    if (transfer->status == 206 && result == CURLE_OK) {
        if (s_parse_total (transfer->content_range, "bytes 0-0/", &total))
            zf_fetch_task_on_length (task, total, true);
        else
            s_fail_no_length (task);
        return;
    }
    if (transfer->status == 416 && s_parse_total (transfer->content_range, "bytes */", &total)
        && total == 0) { //  an empty file has no byte 0 to ask for
        zf_fetch_task_on_length (task, 0, true);
        return;
    }
    char reason[512];
    bool retryable = s_describe_failure (transfer, result, reason, sizeof reason);
    if (zf_fetch_task_piece_retry (task, NULL, &task->probe_attempts, "probe", reason, retryable))
        zf_fetch_task_pump (task);
}

//  An origin that answered 200 to a range: read it as one stream from now on. Pieces already
//  written stay; half-filled ones start over.
static void s_switch_to_stream (zf_fetch_task_t *task)
{
    zf_warning (task->env->name, "origin ignores Range task=%.16s url=%s: reading one stream",
                task->task_id, task->url);
    task->stream_mode = true;
    zf_fetch_source_cancel_all (task);
    for (uint64_t index = 0; index < task->piece_count; index++) {
        piece_t *piece = &task->pieces[index];
        if (piece->state == PIECE_FETCHING) {
            zf_fetch_piece_release (piece);
            piece->filled = 0;
            piece->state = PIECE_MISSING;
        }
    }
    zf_fetch_task_pump (task);
}

static void s_range_done (transfer_t *transfer, CURLcode result)
{
    zf_fetch_task_t *task = transfer->task;
    piece_t *piece = &task->pieces[transfer->piece];
    uint64_t expected = transfer->last - transfer->first + 1;
    if (transfer->ignores_range) {
        s_switch_to_stream (task);
        return;
    }
    if (result == CURLE_OK && transfer->status == 206 && transfer->offset == expected) {
        zf_fetch_task_piece_done (task, transfer->piece);
        return;
    }
    if (result == CURLE_OK && transfer->status == 206)
        s_set_failure (transfer, true, "origin sent %" PRIu64 " of %" PRIu64 " bytes",
                       transfer->offset, expected);
    zf_fetch_piece_release (piece);
    piece->filled = 0;
    piece->state = PIECE_MISSING;
    char reason[512], what[64];
    bool retryable = s_describe_failure (transfer, result, reason, sizeof reason);
    snprintf (what, sizeof what, "piece %" PRIu64, transfer->piece);
    if (zf_fetch_task_piece_retry (task, piece, &piece->attempts, what, reason, retryable))
        zf_fetch_task_pump (task);
}

static void s_stream_done (transfer_t *transfer, CURLcode result)
{
    zf_fetch_task_t *task = transfer->task;
    if (result == CURLE_OK && transfer->status == 200 && transfer->offset == task->content_length) {
        zf_fetch_task_pump (task);
        return;
    }
    if (result == CURLE_OK && transfer->status == 200)
        s_set_failure (transfer, true, "stream ended after %" PRIu64 " of %" PRIu64 " bytes",
                       transfer->offset, task->content_length);
    for (uint64_t index = 0; index < task->piece_count; index++) {
        piece_t *piece = &task->pieces[index];
        if (piece->state == PIECE_FETCHING) {
            zf_fetch_piece_release (piece);
            piece->filled = 0;
            piece->state = PIECE_MISSING;
        }
    }
    char reason[512];
    bool retryable = s_describe_failure (transfer, result, reason, sizeof reason);
    if (zf_fetch_task_piece_retry (task, NULL, &task->stream_attempts, "stream", reason, retryable))
        zf_fetch_task_pump (task);
}

void zf_fetch_task_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg)
{
    (void) easy;
    (void) arg;
    transfer_t *transfer = easy_private;
    zf_fetch_task_t *task = transfer->task;
    s_unlink (task, transfer);
    if (transfer->status == 0)
        curl_easy_getinfo (transfer->easy, CURLINFO_RESPONSE_CODE, &transfer->status);
    s_count_request (task, transfer->status);
    if (zf_fetch_task_running (task)) {
        if (transfer->kind == KIND_PROBE)
            s_probe_done (transfer, result);
        else if (transfer->kind == KIND_RANGE)
            s_range_done (transfer, result);
        else
            s_stream_done (transfer, result);
    }
    s_transfer_destroy (transfer);
}
