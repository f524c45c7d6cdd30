/*  zf_proxy_p2p.c — a blob request answered peer to peer (see zf_proxy_p2p.h). */
#include "zf_proxy_p2p.h"
#include <unistd.h>
#include "zf_log.h"
#include "zf_metrics.h"

#define LOCATE_AHEAD 2 //  pieces queued as file ranges beyond the one being sent

struct zf_proxy_p2p_s {
    zf_proxy_request_t *request;
    zf_proxy_out_t *out;
    zf_proxy_files_t *files;
    zf_task_reader_t *reader;
    zf_proxy_p2p_fn *callback;
    void *arg;
    char *digest;
    char *range;
    uint64_t content_length, piece_length;
    uint64_t range_first, range_last; //  inclusive, once the length is known
    uint64_t next_offset;             //  the next content byte the response needs
    bool paused;
    //  The response's last byte waits for the fetcher's word that the task is complete (it
    //  checked the content digest): a client never gets a whole body of wrong bytes, only a
    //  short one when the task fails.
    bool task_complete; //  the fetcher said so: nothing is held back
    bool holding;       //  held_byte is the response's last byte, sent at DONE
    bool done;          //  DONE was emitted
    uint8_t held_byte;
    int emitting;   //  callbacks running
    bool destroyed; //  the owner let go during a callback: freed once it returns
    //  the timeline of the first byte (ms after the request arrived), for the log
    int64_t status_ms, layout_ms, first_piece_ms;
};

static void s_free (zf_proxy_p2p_t *self)
{
    zf_task_reader_destroy (&self->reader);
    zf_free (self->digest);
    zf_free (self->range);
    zf_free (self);
}

//  Tells the owner; false when it let the exchange go meanwhile (the caller returns at once).
static bool s_emit (zf_proxy_p2p_t *self, zf_proxy_p2p_event_t event, const char *why)
{
    self->emitting++;
    self->callback (self, event, why, self->arg);
    self->emitting--;
    if (!self->destroyed)
        return true;
    if (self->emitting == 0)
        s_free (self);
    return false;
}

static int64_t s_elapsed (const zf_proxy_p2p_t *self)
{
    return zclock_mono () - self->request->started_ms;
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

static void s_log_done (zf_proxy_p2p_t *self)
{
    zf_proxy_request_t *request = self->request;
    zf_info ("proxy",
             "request id=%" PRIu64 " GET %s route=p2p status=%d bytes=%" PRIu64 " ms=%" PRId64
             " task=%.16s",
             request->id, request->url, request->status, request->body_sent, s_elapsed (self),
             zf_task_reader_task_id (self->reader));
    zf_debug ("proxy",
              "p2p timeline id=%" PRIu64 " task=%.16s status_ms=%" PRId64 " layout_ms=%" PRId64
              " first_piece_ms=%" PRId64 " done_ms=%" PRId64,
              request->id, zf_task_reader_task_id (self->reader), self->status_ms, self->layout_ms,
              self->first_piece_ms, s_elapsed (self));
}

//  The head, once the length is known; then the pieces covering the range are read. False
//  when the exchange ended or went away.
static bool s_on_layout (zf_proxy_p2p_t *self, const zf_task_reader_event_t *event)
{
    zf_proxy_request_t *request = self->request;
    if (event->restart) //  the layout changed after the head: the client must start over
        return s_emit (self, ZF_PROXY_P2P_ABORTED, "the task's length changed while it ran");
    self->layout_ms = s_elapsed (self);
    self->content_length = event->content_length;
    self->piece_length = event->piece_length;
    int ranged =
        s_range_parse (self->range, self->content_length, &self->range_first, &self->range_last);
    request->head_sent = true;
    if (ranged == -1) {
        request->status = 416;
        zf_proxy_out_printf (self->out,
                             "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */%" PRIu64
                             "\r\nContent-Length: 0\r\nConnection: %s\r\n\r\n",
                             self->content_length, request->close_after ? "close" : "keep-alive");
        return s_emit (self, ZF_PROXY_P2P_DONE, NULL);
    }
    if (ranged == 0) {
        self->range_first = 0;
        self->range_last = self->content_length ? self->content_length - 1 : 0;
    }
    uint64_t length = self->content_length ? self->range_last - self->range_first + 1 : 0;
    request->status = ranged ? 206 : 200;
    zf_proxy_out_printf (self->out, "HTTP/1.1 %d %s\r\nContent-Type: application/octet-stream\r\n",
                         request->status, zf_proxy_reason (request->status));
    if (*self->digest)
        zf_proxy_out_printf (self->out, "Docker-Content-Digest: %s\r\n", self->digest);
    zf_proxy_out_printf (self->out, "Accept-Ranges: bytes\r\nContent-Length: %" PRIu64 "\r\n",
                         length);
    if (ranged)
        zf_proxy_out_printf (self->out,
                             "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n",
                             self->range_first, self->range_last, self->content_length);
    zf_proxy_out_printf (self->out, "Connection: %s\r\n\r\n",
                         request->close_after ? "close" : "keep-alive");
    self->next_offset = self->range_first;
    //  The head leaves at once, before the first piece is asked for: holding it for the piece,
    //  or waking storage first, made the first byte 0.2-0.5 ms later on loopback
    //  (docs/benchmarks.md, "Proxy").
    if (!s_emit (self, ZF_PROXY_P2P_HEAD, NULL))
        return false;
    if (length == 0) {
        s_log_done (self);
        return s_emit (self, ZF_PROXY_P2P_DONE, NULL);
    }
    uint64_t first = self->range_first / self->piece_length;
    uint64_t last = self->range_last / self->piece_length;
    zf_task_reader_read (self->reader, first, last - first + 1);
    return true;
}

//  Whether the response may take another piece now. A piece read over the bus is held in
//  memory, so the next one is taken only once the last has nearly left; a file range holds no
//  memory, so pieces are taken up to LOCATE_AHEAD ahead of the one being sent, and the stream
//  does not wait for storage's check of the next piece.
static bool s_room (zf_proxy_p2p_t *self)
{
    uint64_t in_memory = zf_proxy_out_memory (self->out);
    uint64_t in_files = zf_proxy_out_pending (self->out) - in_memory;
    return in_memory <= ZF_PROXY_OUT_HIGH && in_files <= LOCATE_AHEAD * self->piece_length;
}

//  Keeps the response's last byte (at `at` in the piece's event) until the task is complete.
//  False when the located file cannot be read (the reader then brings the piece by bus).
static bool s_hold_last (zf_proxy_p2p_t *self, const zf_task_reader_event_t *event, uint64_t at)
{
    if (event->path) {
        zf_error_t err;
        zf_proxy_file_t *file =
            zf_proxy_files_open (self->files, event->path, zclock_mono (), &err);
        ssize_t got = file ? pread (zf_proxy_file_fd (file), &self->held_byte, 1,
                                    (off_t) (event->file_offset + at))
                           : -1;
        zf_proxy_file_release (&file);
        if (got != 1)
            return false;
    } else
        self->held_byte = zframe_data (*event->frame)[at];
    self->holding = true;
    zf_task_reader_wait_complete (self->reader); //  DONE then means: the last byte may go
    return true;
}

//  Queues the part of the piece the response needs; false when the located file could not be
//  opened (the reader then brings this piece over the bus).
static bool s_on_piece (zf_proxy_p2p_t *self, const zf_task_reader_event_t *event)
{
    if (!self->first_piece_ms)
        self->first_piece_ms = s_elapsed (self);
    uint64_t piece_end = event->offset + event->size; //  exclusive
    if (piece_end <= self->next_offset || self->next_offset > self->range_last || self->holding)
        return true; //  bytes the response has or does not need (before or after its Range)
    ZF_ASSERT (self->next_offset >= event->offset);
    uint64_t stop = self->range_last + 1 < piece_end ? self->range_last + 1 : piece_end;
    //  A response that ends with the content's last byte holds it back until the task is
    //  complete. (A Range that ends earlier goes out as its bytes arrive, as lazy-pulling
    //  clients want, from bytes the content digest has not covered yet.)
    bool hold =
        stop == self->range_last + 1 && stop == self->content_length && !self->task_complete;
    uint64_t from = self->next_offset - event->offset;
    uint64_t count = stop - self->next_offset - (hold ? 1 : 0);
    if (hold && !s_hold_last (self, event, from + count))
        return false;
    if (count > 0 && event->path) {
        zf_error_t err;
        zf_proxy_file_t *file =
            zf_proxy_files_open (self->files, event->path, zclock_mono (), &err);
        if (!file) {
            zf_notice ("proxy",
                       "p2p: cannot open cached piece id=%" PRIu64 ": %s; reading it "
                       "over the bus",
                       self->request->id, err.message);
            self->holding = false;
            return false;
        }
        zf_proxy_out_file (self->out, file, event->file_offset + from, count);
        zf_proxy_file_release (&file);
    } else if (count > 0) //  the frame itself is queued: the piece is not copied again
        zf_proxy_out_frame (self->out, event->frame, (size_t) from, (size_t) count);
    self->next_offset += count;
    self->request->body_sent += count;
    if (!s_room (self)) {
        self->paused = true;
        zf_task_reader_pause (self->reader, true);
    }
    if (self->next_offset > self->range_last) { //  every byte of the response is queued
        self->done = true;
        s_log_done (self);
        s_emit (self, ZF_PROXY_P2P_DONE, NULL);
        return true;
    }
    s_emit (self, ZF_PROXY_P2P_MORE, NULL);
    return true;
}

static void s_on_failed (zf_proxy_p2p_t *self, const zf_task_reader_event_t *event)
{
    char why[1400];
    snprintf (why, sizeof why, "%s%s%s: %s",
              event->failure == ZF_TASK_READER_TASK ? "task failed: " : "",
              event->request ? event->request : "", event->request ? " failed" : event->code,
              event->message);
    if (self->request->head_sent)
        s_emit (self, ZF_PROXY_P2P_ABORTED, why);
    else if (event->failure == ZF_TASK_READER_REFUSED && event->reply_code == ZF_CODE_DENIED)
        s_emit (self, ZF_PROXY_P2P_DENIED, event->message);
    else
        s_emit (self, ZF_PROXY_P2P_FALLBACK, why);
}

static bool s_on_event (zf_task_reader_t *reader, const zf_task_reader_event_t *event, void *arg)
{
    (void) reader;
    zf_proxy_p2p_t *self = arg;
    switch (event->type) {
    case ZF_TASK_READER_STATUS:
        if (!self->status_ms)
            self->status_ms = s_elapsed (self);
        if (streq (event->status->state, "complete"))
            self->task_complete = true;
        return true;
    case ZF_TASK_READER_LAYOUT: s_on_layout (self, event); return true;
    case ZF_TASK_READER_PIECE: return s_on_piece (self, event);
    case ZF_TASK_READER_DONE: //  the task is complete: the last byte may go
        if (self->done)
            return true; //  the response ended with its range, before the reader's pieces
        self->done = true;
        if (self->holding) {
            self->holding = false;
            zf_proxy_out_append (self->out, &self->held_byte, 1);
            self->next_offset++;
            self->request->body_sent++;
        }
        s_log_done (self);
        s_emit (self, ZF_PROXY_P2P_DONE, NULL);
        return true;
    case ZF_TASK_READER_FAILED: s_on_failed (self, event); return true;
    }
    return true;
}

zf_proxy_p2p_t *zf_proxy_p2p_new (zf_task_readers_t *readers, zf_proxy_files_t *files,
                                  zf_proxy_request_t *request, const zf_proxy_p2p_params_t *params,
                                  zf_proxy_out_t *out, zf_proxy_p2p_fn *callback, void *arg,
                                  zf_error_t *err)
{
    zf_proxy_p2p_t *self = zf_calloc (1, sizeof *self);
    self->request = request;
    self->out = out;
    self->files = files;
    self->callback = callback;
    self->arg = arg;
    self->digest = zf_strdup (params->digest);
    self->range = params->range ? zf_strdup (params->range) : NULL;
    //  A client that waits for bytes does not wait for the fetcher's word on completion, but
    //  for a response's last byte (s_hold_last): bytes go as they arrive, the origin's from
    //  the fetcher's buffers before the piece is stored (piece.peek)
    self->reader = zf_task_reader_new (readers, params->sendfile, false, s_on_event, self);
    zf_task_reader_set_peek (self->reader, true);
    zf_rec_http_header_t headers[2];
    size_t header_count = 0;
    if (params->authorization)
        headers[header_count++] = (zf_rec_http_header_t){.name = "Authorization",
                                                         .value = (char *) params->authorization};
    if (params->accept)
        headers[header_count++] =
            (zf_rec_http_header_t){.name = "Accept", .value = (char *) params->accept};
    zf_msg_task_fetch_t fetch = {.url = request->url,
                                 .digest = self->digest,
                                 .headers = {.items = headers, .count = header_count}};
    if (!zf_task_reader_start (self->reader, &fetch, err)) {
        s_free (self);
        return NULL;
    }
    zf_counter_add (zf_metrics_counter ("zfly_proxy_requests_total", "Client requests by route",
                                        "route", "p2p", NULL),
                    1);
    return self;
}

void zf_proxy_p2p_destroy (zf_proxy_p2p_t **self_p)
{
    zf_proxy_p2p_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->emitting > 0) {
        self->destroyed = true; //  s_emit frees it once the callback returns
        return;
    }
    s_free (self);
}

void zf_proxy_p2p_drained (zf_proxy_p2p_t *self)
{
    if (self->paused && s_room (self)) {
        self->paused = false;
        zf_task_reader_pause (self->reader, false);
    }
}

const char *zf_proxy_p2p_task (zf_proxy_p2p_t *self)
{
    return zf_task_reader_task_id (self->reader);
}

void zf_proxy_p2p_test (bool verbose)
{
    if (verbose)
        printf (" * zf_proxy_p2p: ");
    uint64_t first, last;
    ZF_ASSERT (s_range_parse ("bytes=0-9", 100, &first, &last) == 1 && first == 0 && last == 9);
    ZF_ASSERT (s_range_parse ("bytes=90-", 100, &first, &last) == 1 && last == 99);
    ZF_ASSERT (s_range_parse ("bytes=-10", 100, &first, &last) == 1 && first == 90);
    ZF_ASSERT (s_range_parse ("bytes=50-500", 100, &first, &last) == 1 && last == 99);
    ZF_ASSERT (s_range_parse ("bytes=100-", 100, &first, &last) == -1);
    ZF_ASSERT (s_range_parse ("bytes=1-2,5-6", 100, &first, &last) == 0);
    ZF_ASSERT (s_range_parse ("items=1-2", 100, &first, &last) == 0);
    if (verbose)
        printf ("OK\n");
}
