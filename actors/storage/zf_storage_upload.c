/*  zf_storage_upload.c — piece.read and piece.locate in the storage actor (see
    zf_storage_internal.h): every piece checked before it is served; reads from other nodes
    share upload_rate (a token bucket) and wait in a queue of at most upload_concurrency. */
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include "storage/zf_storage_internal.h"

//  A piece.read from another node waiting for upload tokens.
typedef struct {
    zf_bus_return_t ret;
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t piece;
    uint64_t frame_max; //  piece.read's: the bytes in frames of at most this size (0: one)
} upload_t;

// ---- reads and uploads -------------------------------------------------------------------------

//  Answers a read (or locate) whose piece did not pass: not finished, damaged, unreadable.
static void s_reply_unreadable (zf_storage_t *self, const zf_bus_return_t *ret,
                                zf_store_task_t *task, uint64_t piece, zf_store_read_t outcome,
                                const zf_error_t *err)
{
    switch (outcome) {
    case ZF_STORE_READ_OK: ZF_ASSERT (!"a readable piece is not answered here"); break;
    case ZF_STORE_READ_NOT_FINISHED:
        zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FINISHED, "piece", "%s", err->message);
        break;
    case ZF_STORE_READ_CORRUPT:
        zf_counter_add (self->metrics.corrupt, 1);
        zf_warning (self->name, "corrupt piece task=%s piece=%" PRIu64 ": marked missing", task->id,
                    piece);
        zf_bus_reply_code (self->bus, ret, ZF_CODE_CORRUPT, "piece", "%s", err->message);
        if (task->data_unusable)
            zf_storage_drop_task (self, task,
                                  "its data file was cut short or changed under another name");
        else
            zf_store_io_commit (self->io); //  the next record says it is missing
        zf_storage_update_gauges (self);
        break;
    case ZF_STORE_READ_IO:
        zf_error_log (self->name, "task=%s piece=%" PRIu64 " read failed: %s", task->id, piece,
                      err->message);
        zf_bus_reply_error (self->bus, ret, ZF_E_IO, "piece", "cannot read piece");
        break;
    }
}

//  Answers a read now: piece.data, or the reason there is none. Returns bytes sent.
static uint64_t s_serve (zf_storage_t *self, const zf_bus_return_t *ret, const char *task_id,
                         uint64_t piece, uint64_t frame_max, bool remote)
{
    zf_store_task_t *task = zf_store_find (self->store, task_id);
    if (!task) {
        zf_storage_reply_not_found (self, ret, task_id);
        return 0;
    }
    //  In the frames the reader asked for (piece.read frame_max: libzmq's CURVE handles each
    //  frame whole, with buffers of its size, so a piece of megabytes in one frame costs
    //  megabytes more on both sides), read straight into them.
    zmsg_t *raw = NULL;
    zf_error_t err;
    zf_store_read_t outcome = zf_store_read_piece (self->store, task, piece, frame_max, &raw, &err);
    if (outcome != ZF_STORE_READ_OK) {
        s_reply_unreadable (self, ret, task, piece, outcome, &err);
        return 0;
    }
    task->accessed_ms = zf_storage_now_ms (self);
    task->access_dirty = true;
    uint64_t size = zmsg_content_size (raw);
    zf_msg_piece_data_t body = {
        .task_id = task->id,
        .piece = piece,
        .offset = piece * task->piece_length,
        .size = size,
        .digest = {(uint8_t *) zf_store_piece_digest (task, piece, raw), ZF_STORE_DIGEST_LEN},
    };
    //  Counted before the reply goes: whoever has the piece and then reads /metrics sees it.
    zf_counter_add (remote ? self->metrics.served_remote : self->metrics.served_local, 1);
    if (remote)
        zf_counter_add (self->metrics.upload_bytes, size);
    zf_bus_reply (self->bus, ret, &zf_msg_piece_data, &body, &raw);
    return size;
}

static void s_refill (zf_storage_t *self)
{
    int64_t now = zf_clock_mono_ms ();
    double rate = (double) self->config->upload_rate;
    self->tokens += rate * (double) (now - self->tokens_at_ms) / 1000.0;
    if (self->tokens > rate) //  a burst of at most one second's worth
        self->tokens = rate;
    self->tokens_at_ms = now;
}

static int s_upload_timer (zloop_t *loop, int timer_id, void *arg);

//  Serves waiting uploads while tokens last; a piece may overdraw the bucket, and the debt is
//  waited off before the next one, so the average stays at upload_rate whatever the piece size.
static void s_pump_uploads (zf_storage_t *self)
{
    s_refill (self);
    upload_t *upload;
    while (self->tokens > 0 && (upload = zlistx_detach (self->uploads, NULL))) {
        self->tokens -= (double) s_serve (self, &upload->ret, upload->task_id, upload->piece,
                                          upload->frame_max, true);
        zf_free (upload);
    }
    if (zlistx_size (self->uploads) > 0 && self->upload_timer < 0) {
        double wait_ms = (1.0 - self->tokens) * 1000.0 / (double) self->config->upload_rate;
        self->upload_timer =
            zloop_timer (self->loop, (size_t) wait_ms + 1, 1, s_upload_timer, self);
    }
}

static int s_upload_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_storage_t *self = arg;
    self->upload_timer = -1;
    s_pump_uploads (self);
    return 0;
}

static void s_handle_piece_read (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    const zf_msg_piece_read_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    zf_store_task_t *task = zf_storage_task_or_reply (self, ret, body->task_id);
    if (!task || !zf_storage_piece_in_range (self, ret, task, body->piece))
        return;
    if (!zf_store_is_finished (task, body->piece)) {
        zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FINISHED, "piece",
                           "piece %" PRIu64 " is not finished", body->piece);
        return;
    }
    if (!zf_storage_from_this_host (request)
        && !zf_spread_may_send (self->spread, task->id, body->piece,
                                *request->peer_key ? request->peer_key : request->env.from,
                                zf_clock_mono_ms ())) {
        zf_counter_add (self->metrics.elsewhere, 1);
        zf_bus_reply_code (self->bus, ret, ZF_CODE_ELSEWHERE, "piece",
                           "piece %" PRIu64 " went to another node a moment ago: take it there",
                           body->piece);
        return;
    }
    if (zf_storage_from_this_host (request) || self->config->upload_rate == 0) {
        s_serve (self, ret, task->id, body->piece, body->frame_max,
                 !zf_storage_from_this_host (request));
        return;
    }
    if (zlistx_size (self->uploads) >= (size_t) self->config->upload_concurrency) {
        zf_counter_add (self->metrics.busy, 1);
        zf_bus_reply_code (self->bus, ret, ZF_CODE_BUSY, NULL,
                           "upload limit reached; try another parent or later");
        return;
    }
    upload_t *upload = zf_calloc (1, sizeof *upload);
    upload->ret = *ret;
    zf_strlcpy (upload->task_id, task->id, sizeof upload->task_id);
    upload->piece = body->piece;
    upload->frame_max = body->frame_max;
    zlistx_add_end (self->uploads, upload);
    s_pump_uploads (self);
}

//  Where a finished piece is on disk, for a reader on this host that copies the bytes itself
//  (zfly-get with copy_file_range, the proxy with sendfile). It names a file, so the network
//  is never told; and it is checked like a read, so what the reader copies was intact.
static void s_handle_piece_locate (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    const zf_msg_piece_locate_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 10000);
    if (!zf_storage_local_only (self, request, &limit, ZF_CODE_FORBIDDEN, "not local",
                                "is answered for this host only; use piece.read"))
        return;
    zf_store_task_t *task = zf_storage_task_or_reply (self, ret, body->task_id);
    if (!task || !zf_storage_piece_in_range (self, ret, task, body->piece))
        return;
    char *path = NULL;
    zf_error_t err;
    zf_store_read_t outcome = zf_store_locate_piece (self->store, task, body->piece, &path, &err);
    if (outcome != ZF_STORE_READ_OK) {
        s_reply_unreadable (self, ret, task, body->piece, outcome, &err);
        return;
    }
    task->accessed_ms = zf_storage_now_ms (self);
    task->access_dirty = true;
    zf_msg_piece_located_t located = {
        .task_id = task->id,
        .piece = body->piece,
        .path = path,
        .offset = body->piece * task->piece_length,
        .size = zf_store_piece_size (task, body->piece),
    };
    const uint8_t *digest = zf_store_known_digest (task, body->piece);
    if (digest) //  else unknown yet: readers on this host go by storage's checksum check
        located.digest = (zf_bytes_t){(uint8_t *) digest, ZF_STORE_DIGEST_LEN};
    zf_counter_add (self->metrics.served_local, 1); //  before the reply, as in s_serve
    zf_bus_reply (self->bus, ret, &zf_msg_piece_located, &located, NULL);
    zf_free (path);
}

bool zf_storage_upload_waiting (zf_storage_t *self, const char *task_id)
{
    for (upload_t *upload = zlistx_first (self->uploads); upload;
         upload = zlistx_next (self->uploads))
        if (streq (upload->task_id, task_id))
            return true;
    return false;
}

void zf_storage_upload_register (zf_storage_t *self)
{
    zf_bus_handle (self->bus, ZF_MSG_PIECE_READ, s_handle_piece_read, self);
    zf_bus_handle (self->bus, ZF_MSG_PIECE_LOCATE, s_handle_piece_locate, self);
}
