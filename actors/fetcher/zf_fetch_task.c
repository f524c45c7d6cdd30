/*  zf_fetch_task.c — a task's pieces, its storage conversation and its content hash. */
#include "zf_fetch_internal.h"
#include "zf_clock.h"
#include "zf_fetch_sched.h"
#include "zf_log.h"

#define RETRY_BACKOFF_CAP_MS 30000

//  A bus request's way back to its task: the task may be gone or replaced by the time the
//  reply arrives, so the reply looks it up again instead of holding a pointer.
typedef struct {
    zf_fetch_env_t *env;
    char task_id[ZF_TASK_ID_SIZE + 1];
    uint64_t generation;
    uint64_t piece;
} call_t;

uint64_t zf_fetch_piece_size (zf_fetch_task_t *self, uint64_t piece)
{
    uint64_t start = piece * self->piece_length;
    uint64_t end = start + self->piece_length;
    return (end > self->content_length ? self->content_length : end) - start;
}

//  The bytes land straight in the frame that piece.write sends: no copy on the way. A full
//  piece reuses a buffer storage gave back, when there is one.
void zf_fetch_piece_hold (zf_fetch_task_t *self, uint64_t index)
{
    piece_t *piece = &self->pieces[index];
    size_t size = (size_t) zf_fetch_piece_size (self, index);
    piece->frame =
        size == self->piece_length && self->spare_frames ? zlist_pop (self->spare_frames) : NULL;
    if (!piece->frame)
        piece->frame = zframe_new (NULL, size);
    piece->buffer = zframe_data (piece->frame);
    piece->filled = 0;
}

//  Keeps a buffer piece.written gave back for the next piece, up to the pieces the window
//  may hold at once; beyond that, and of any other size, it is freed.
static void s_keep_spare (zf_fetch_task_t *self, zframe_t **frame_p)
{
    bool wanted = *frame_p && zf_fetch_task_running (self)
                  && zframe_size (*frame_p) == self->piece_length
                  && (!self->spare_frames || zlist_size (self->spare_frames) < self->window);
    if (wanted) {
        if (!self->spare_frames)
            self->spare_frames = zlist_new ();
        zlist_append (self->spare_frames, *frame_p);
        *frame_p = NULL;
    }
    zframe_destroy (frame_p);
}

static void s_free_spares (zf_fetch_task_t *self)
{
    zframe_t *frame;
    while (self->spare_frames && (frame = zlist_pop (self->spare_frames)))
        zframe_destroy (&frame);
    zlist_destroy (&self->spare_frames);
}

void zf_fetch_piece_release (piece_t *piece)
{
    zframe_destroy (&piece->frame);
    piece->buffer = NULL;
}

static uint64_t s_piece_end (zf_fetch_task_t *self, uint64_t piece)
{
    return piece * self->piece_length + zf_fetch_piece_size (self, piece);
}

static bool s_hash_needed (zf_fetch_task_t *self)
{
    return *self->digest != '\0';
}

static bool s_hashed (zf_fetch_task_t *self, uint64_t piece)
{
    return !s_hash_needed (self) || self->hashed_offset >= s_piece_end (self, piece);
}

static zf_fetch_task_t *s_task_of (call_t *call)
{
    zf_fetch_task_t *task = zhashx_lookup (call->env->tasks, call->task_id);
    return task && task->generation == call->generation ? task : NULL;
}

//  Sends a request whose reply comes back to callback with a call_t (freed here on failure,
//  by the callback otherwise). Returns false, having failed the task, when it cannot be sent.
static bool s_request (zf_fetch_task_t *self, const zf_msg_desc_t *desc, const void *body,
                       zmsg_t **raw, zf_bus_reply_fn *callback, uint64_t piece)
{
    call_t *call = zf_calloc (1, sizeof *call);
    call->env = self->env;
    zf_strlcpy (call->task_id, self->task_id, sizeof call->task_id);
    call->generation = self->generation;
    call->piece = piece;
    zf_error_t err;
    if (zf_bus_request (self->env->bus, self->env->config->storage, desc, body, raw,
                        ZF_BUS_CALL_DEFAULT, callback, call, &err)
        == ZF_OK)
        return true;
    zf_free (call);
    zmsg_destroy (raw);
    zf_fetch_task_fail (self, "storage", "%s to %s not sent: %s", desc->type,
                        self->env->config->storage, err.message);
    return false;
}

//  The task a reply belongs to, if it is still waiting for it; frees the call.
static zf_fetch_task_t *s_reply_task (void *arg, uint64_t *piece)
{
    call_t *call = arg;
    zf_fetch_task_t *task = s_task_of (call);
    if (piece)
        *piece = call->piece;
    zf_free (call);
    if (task && (task->phase == PHASE_FAILED || task->phase == PHASE_COMPLETE))
        return NULL;
    return task;
}

static const char *s_reply_error (zf_status_t status, const zf_error_t *err)
{
    return err && *err->message ? err->message : zf_status_name (status);
}

static bool s_remote_code_is (zf_status_t status, zf_bus_msg_t *reply, const char *code)
{
    if (status != ZF_E_REMOTE || !reply)
        return false;
    const zf_msg_error_t *body = reply->env.body;
    return streq (body->code, code);
}

//  --- answering clients -------------------------------------------------------------------------

void zf_fetch_task_status (zf_fetch_task_t *self, zf_msg_task_status_t *status)
{
    memset (status, 0, sizeof *status);
    status->task_id = self->task_id;
    status->state = self->phase == PHASE_COMPLETE ? "complete"
                    : self->phase == PHASE_FAILED ? "failed"
                                                  : "running";
    status->content_length = self->content_length;
    status->piece_length = self->piece_length;
    status->piece_count = self->piece_count;
    status->finished_count = self->finished_count;
    status->bytes_from_source = self->bytes_from_source;
    status->bytes_from_parents = self->bytes_from_parents;
    status->error_code = self->error_code;
    status->error_message = self->error_message;
}

bool zf_fetch_task_running (zf_fetch_task_t *self)
{
    return self->phase != PHASE_COMPLETE && self->phase != PHASE_FAILED;
}

//  The task is over (complete or failed): whoever watches tasks ends is told (the fetcher
//  publishes task.ended), before the requester waiting for this run is answered.
static void s_ended (zf_fetch_task_t *self)
{
    if (self->env->on_end)
        self->env->on_end (self, self->env->on_end_arg);
}

static void s_answer (zf_fetch_task_t *self)
{
    if (!self->answer_pending)
        return;
    self->answer_pending = false;
    zf_msg_task_status_t status;
    zf_fetch_task_status (self, &status);
    zf_bus_reply (self->env->bus, &self->answer, &zf_msg_task_status, &status, NULL);
}

//  --- life cycle
//  ----------------------------------------------------------------------------------

zf_fetch_task_t *zf_fetch_task_new (zf_fetch_env_t *env, const char *task_id, const char *digest,
                                    const zf_msg_task_fetch_t *request)
{
    zf_fetch_task_t *self = zf_calloc (1, sizeof *self);
    self->env = env;
    zf_strlcpy (self->task_id, task_id, sizeof self->task_id);
    zf_strlcpy (self->digest, digest, sizeof self->digest);
    self->generation = ++env->next_generation;
    self->url = zf_strdup (request->url);
    self->tag = zf_strdup (request->tag);
    self->application = zf_strdup (request->application);
    const zf_rec_http_header_t *headers = request->headers.items;
    for (size_t index = 0; index < request->headers.count; index++) {
        //  Ranges are the fetcher's business: a client's Range would cut every piece wrong.
        if (strcasecmp (headers[index].name, "Range") == 0)
            continue;
        char *line = zf_asprintf ("%s: %s", headers[index].name, headers[index].value);
        self->headers = curl_slist_append (self->headers, line);
        ZF_ASSERT (self->headers);
        zf_free (line);
    }
    self->timer_id = -1;
    self->phase = PHASE_STAT;
    if (request->parents.count > 0)
        zf_fetch_parents_new (self, request);
    self->scheduled = zf_fetch_sched_enabled (env->sched);
    return self;
}

static void s_end_timer (zf_fetch_task_t *self)
{
    if (self->timer_id >= 0)
        zloop_timer_end (self->env->loop, self->timer_id);
    self->timer_id = -1;
}

static void s_release_pieces (zf_fetch_task_t *self)
{
    for (uint64_t index = 0; self->pieces && index < self->piece_count; index++)
        zf_fetch_piece_release (&self->pieces[index]);
}

static void s_free_buffers (zf_fetch_task_t *self)
{
    s_release_pieces (self);
    s_free_spares (self);
}

void zf_fetch_task_destroy (zf_fetch_task_t **self_p)
{
    zf_fetch_task_t *self = *self_p;
    if (!self)
        return;
    zf_fetch_source_cancel_all (self);
    zf_fetch_parents_destroy (self);
    s_end_timer (self);
    s_free_buffers (self);
    zf_free (self->pieces);
    EVP_MD_CTX_free (self->whole_hash);
    curl_slist_free_all (self->headers);
    zf_free (self->url);
    zf_free (self->tag);
    zf_free (self->application);
    zf_free (self);
    *self_p = NULL;
}

void zf_fetch_task_fail (zf_fetch_task_t *self, const char *code, const char *fmt, ...)
{
    if (!zf_fetch_task_running (self))
        return;
    self->phase = PHASE_FAILED;
    zf_strlcpy (self->error_code, code, sizeof self->error_code);
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->error_message, sizeof self->error_message, fmt, args);
    va_end (args);
    zf_fetch_source_cancel_all (self); //  defers transfers that are inside a curl callback
    zf_fetch_parents_stop (self);
    s_end_timer (self);
    s_free_buffers (self);
    zf_counter_add (self->env->tasks_failed, 1);
    zf_warning (self->env->name, "task failed task=%.16s code=%s: %s", self->task_id, code,
                self->error_message);
    zf_fetch_sched_task_end (self->env->sched, self);
    s_ended (self);
    s_answer (self);
}

//  --- storage: stat, open ------------------------------------------------------------------------

static void s_on_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_fetch_task_t *self = s_reply_task (arg, NULL);
    if (!self)
        return;
    if (status == ZF_OK) {
        const zf_msg_storage_task_t *task = reply->env.body;
        self->content_length = task->content_length;
        self->piece_length = task->piece_length;
        self->piece_count = task->piece_count;
        self->finished_count = task->finished_count;
        if (streq (task->state, "complete")) {
            self->phase = PHASE_COMPLETE;
            zf_counter_add (self->env->tasks_complete, 1);
            zf_info (self->env->name, "task complete in storage task=%.16s", self->task_id);
            s_ended (self);
            s_answer (self);
            return;
        }
        self->stored_length = task->content_length;
        self->stored_piece_length = task->piece_length;
    } else if (!s_remote_code_is (status, reply, "not_found")) {
        zf_fetch_task_fail (self, "storage", "storage.stat at %s: %s", self->env->config->storage,
                            s_reply_error (status, err));
        return;
    }
    if (self->scheduled) { //  the scheduler gives parents, or says "source"
        zf_fetch_parents_ensure (self);
        self->phase = PHASE_PARENTS;
        self->sched_progress_ms = zf_clock_mono_ms ();
        s_answer (self);
        zf_fetch_parents_start (self);
        zf_fetch_sched_task_start (self->env->sched, self);
        return;
    }
    if (self->parents) {
        self->phase = PHASE_PARENTS;
        s_answer (self);
        zf_fetch_parents_start (self);
        return;
    }
    self->phase = PHASE_PROBE;
    s_answer (self);
    zf_fetch_task_pump (self);
}

bool zf_fetch_task_has_origin (zf_fetch_task_t *self)
{
    return self->url && *self->url;
}

void zf_fetch_task_to_origin (zf_fetch_task_t *self)
{
    if (!zf_fetch_task_running (self) || self->phase != PHASE_PARENTS)
        return;
    if (!zf_fetch_task_has_origin (self)) {
        zf_fetch_task_fail (self, "parents", "no parent can serve the task and it has no URL");
        return;
    }
    zf_notice (self->env->name, "task goes to the origin task=%.16s: no parent to use",
               self->task_id);
    self->phase = PHASE_PROBE;
    zf_fetch_task_pump (self);
}

void zf_fetch_task_to_source (zf_fetch_task_t *self)
{
    if (!zf_fetch_task_running (self) || self->sched_source)
        return;
    self->sched_source = true;
    if (self->phase == PHASE_PARENTS) {
        //  Nothing known from parents yet: the origin alone, as if none had been given.
        zf_fetch_parents_retire_all (self);
        zf_fetch_task_to_origin (self);
    } else
        zf_fetch_task_pump (self);
}

void zf_fetch_task_start (zf_fetch_task_t *self, const zf_bus_return_t *answer)
{
    if (answer) {
        self->answer = *answer;
        self->answer_pending = true;
    }
    zf_notice (self->env->name, "task started task=%.16s digest=%s", self->task_id,
               *self->digest ? self->digest : "-");
    zf_msg_storage_stat_t stat = {.task_id = self->task_id};
    s_request (self, &zf_msg_storage_stat, &stat, NULL, s_on_stat, 0);
}

static void s_mark_finished (zf_fetch_task_t *self, zmsg_t *raw)
{
    zframe_t *bitmap = zmsg_first (raw);
    const uint8_t *bits = bitmap ? zframe_data (bitmap) : NULL;
    size_t bits_size = bitmap ? zframe_size (bitmap) : 0;
    self->finished_count = 0;
    for (uint64_t index = 0; index < self->piece_count; index++)
        if (index / 8 < bits_size && (bits[index / 8] >> (index % 8)) & 1) {
            self->pieces[index].state = PIECE_STORED;
            self->finished_count++;
        }
}

static void s_on_open (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_fetch_task_t *self = s_reply_task (arg, NULL);
    if (!self)
        return;
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, "storage", "storage.open at %s: %s", self->env->config->storage,
                            s_reply_error (status, err));
        return;
    }
    const zf_msg_storage_task_t *task = reply->env.body;
    if (task->content_length != self->content_length || task->piece_length != self->piece_length
        || task->piece_count != self->piece_count) {
        zf_fetch_task_fail (
            self, "storage",
            "storage.open answered length %" PRIu64 "/%" PRIu64 ", asked %" PRIu64 "/%" PRIu64,
            task->content_length, task->piece_length, self->content_length, self->piece_length);
        return;
    }
    s_mark_finished (self, reply->raw);
    if (self->finished_count > 0)
        zf_notice (self->env->name,
                   "task resumes task=%.16s finished=%" PRIu64 " of %" PRIu64 " pieces",
                   self->task_id, self->finished_count, self->piece_count);
    if (s_hash_needed (self)) {
        self->whole_hash = EVP_MD_CTX_new ();
        ZF_ASSERT (self->whole_hash
                   && EVP_DigestInit_ex (self->whole_hash, EVP_sha256 (), NULL) == 1);
    }
    self->phase = PHASE_RUN;
    zf_fetch_task_pump (self);
}

static void s_open (zf_fetch_task_t *self)
{
    self->pieces = zf_calloc (self->piece_count ? self->piece_count : 1, sizeof (piece_t));
    zf_msg_storage_open_t open = {.task_id = self->task_id,
                                  .url = self->url,
                                  .digest = self->digest,
                                  .tag = self->tag,
                                  .application = self->application,
                                  .content_length = self->content_length,
                                  .piece_length = self->piece_length,
                                  .create = true};
    s_request (self, &zf_msg_storage_open, &open, NULL, s_on_open, 0);
}

static void s_on_stale_removed (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                                const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    zf_fetch_task_t *self = s_reply_task (arg, NULL);
    if (!self)
        return;
    if (status != ZF_OK)
        zf_fetch_task_fail (self, "storage", "storage.remove of a stale copy: %s",
                            s_reply_error (status, err));
    else
        s_open (self);
}

//  Pieces held at once. Twice the transfers in flight, so that a piece waiting for storage's
//  piece.written does not leave a connection idle (transfers + 1 took 13% longer back to
//  source, docs/benchmarks.md), as far as WINDOW_MEMORY allows; never fewer than transfers + 1.
#define WINDOW_MEMORY (32u << 20)

static size_t s_window (const zf_fetcher_config_t *config, uint64_t piece_length)
{
    size_t transfers = (size_t) config->source_concurrency;
    size_t window = WINDOW_MEMORY / piece_length;
    if (window > 2 * transfers)
        window = 2 * transfers;
    return window > transfers + 1 ? window : transfers + 1;
}

static void s_layout (zf_fetch_task_t *self, uint64_t content_length, uint64_t piece_length,
                      bool ranges, bool stale)
{
    const zf_fetcher_config_t *config = self->env->config;
    self->content_length = content_length;
    self->stream_mode = !ranges;
    self->piece_length = piece_length;
    self->piece_count = (content_length + self->piece_length - 1) / self->piece_length;
    self->window = s_window (config, piece_length);
    self->phase = PHASE_OPEN;
    zf_info (self->env->name,
             "task length task=%.16s content_length=%" PRIu64 " piece_length=%" PRIu64
             " pieces=%" PRIu64 " mode=%s",
             self->task_id, content_length, self->piece_length, self->piece_count,
             ranges ? "ranges" : "stream");
    if (stale) { //  the origin's content changed length: what storage holds is not it
        zf_warning (self->env->name,
                    "task changed at the origin task=%.16s stored=%" PRIu64 " now=%" PRIu64,
                    self->task_id, self->stored_length, content_length);
        zf_msg_storage_remove_t remove = {.task_id = self->task_id};
        s_request (self, &zf_msg_storage_remove, &remove, NULL, s_on_stale_removed, 0);
    } else
        s_open (self);
}

void zf_fetch_task_on_length (zf_fetch_task_t *self, uint64_t content_length, bool ranges)
{
    const zf_fetcher_config_t *config = self->env->config;
    bool stale = self->stored_length != 0 && self->stored_length != content_length;
    uint64_t piece_length;
    if (self->stored_length == content_length && self->stored_piece_length)
        piece_length = self->stored_piece_length; //  resume with the pieces we have
    else
        piece_length =
            zf_piece_length (content_length, config->piece_length_min, config->piece_length_max,
                             (uint64_t) config->piece_count_target);
    s_layout (self, content_length, piece_length, ranges, stale);
}

void zf_fetch_task_on_layout (zf_fetch_task_t *self, uint64_t content_length, uint64_t piece_length)
{
    //  Pieces must line up with the parents' to be checked against their digests: a local
    //  copy cut otherwise is of no use.
    bool stale =
        self->stored_length != 0
        && (self->stored_length != content_length || self->stored_piece_length != piece_length);
    s_layout (self, content_length, piece_length, true, stale);
}

//  --- pieces ------------------------------------------------------------------------------------

static void s_feed_hash (zf_fetch_task_t *self);

size_t zf_fetch_task_held (zf_fetch_task_t *self)
{
    size_t held = 0;
    uint64_t end = self->window_start + self->window;
    for (uint64_t index = self->window_start; index < end && index < self->piece_count; index++)
        if (self->pieces[index].buffer || self->pieces[index].state == PIECE_WRITING)
            held++;
    return held;
}

void zf_fetch_task_hash_feed (zf_fetch_task_t *self, uint64_t offset, const uint8_t *data,
                              size_t size)
{
    if (!s_hash_needed (self) || !self->whole_hash || offset + size <= self->hashed_offset)
        return;
    ZF_ASSERT (offset <= self->hashed_offset); //  the content is hashed in order, no gap
    size_t skip = (size_t) (self->hashed_offset - offset);
    ZF_ASSERT (EVP_DigestUpdate (self->whole_hash, data + skip, size - skip) == 1);
    self->hashed_offset += size - skip;
}

static void s_on_written (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    uint64_t piece;
    zf_fetch_task_t *self = s_reply_task (arg, &piece);
    if (!self)
        return;
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, "storage", "piece.write of piece %" PRIu64 " to %s: %s", piece,
                            self->env->config->storage, s_reply_error (status, err));
        return;
    }
    const zf_msg_piece_written_t *written = reply->env.body;
    zframe_t *spare = zmsg_pop (reply->raw);
    s_keep_spare (self, &spare);
    if (self->pieces[piece].state == PIECE_WRITING) {
        self->pieces[piece].state = PIECE_STORED;
        self->finished_count = written->finished_count;
        zf_fetch_sched_piece_stored (
            self->env->sched, self, piece,
            zf_fetch_parents_name (self, self->pieces[piece].from_parent_id));
    }
    zf_fetch_task_pump (self);
    if (zf_fetch_task_running (self))
        zf_fetch_source_resume_stream (self);
}

void zf_fetch_task_piece_done (zf_fetch_task_t *self, uint64_t index)
{
    piece_t *piece = &self->pieces[index];
    ZF_ASSERT (piece->buffer && piece->filled == zf_fetch_piece_size (self, index));
    const uint8_t *expected = self->parents ? zf_fetch_parents_digest (self, index) : NULL;
    if (!expected) {
        //  Nothing to compare with: storage computes the digest when a peer first asks for
        //  the piece, so a download nobody shares costs no SHA-256 (0.6 s per GiB here).
        zf_fetch_task_piece_verified (self, index, NULL);
        return;
    }
    uint8_t digest[32];
    unsigned int digest_size = 0;
    ZF_ASSERT (EVP_Digest (piece->buffer, piece->filled, digest, &digest_size, EVP_sha256 (), NULL)
               == 1);
    if (memcmp (expected, digest, sizeof digest) != 0) {
        //  The origin and the parents disagree on this piece: one of them serves other
        //  content than the task's. Nothing settles which, so nothing is kept.
        zf_fetch_task_fail (self, "digest",
                            "piece %" PRIu64 " from the origin differs from the parents' digest",
                            index);
        return;
    }
    zf_fetch_task_piece_verified (self, index, digest);
}

void zf_fetch_task_piece_verified (zf_fetch_task_t *self, uint64_t index, const uint8_t *digest)
{
    piece_t *piece = &self->pieces[index];
    ZF_ASSERT (piece->buffer && piece->filled == zf_fetch_piece_size (self, index));
    piece->state = PIECE_WRITING;
    s_feed_hash (self); //  in order, this piece is usually next: then its bytes can go
    if (!zf_fetch_task_running (self))
        return;
    zmsg_t *raw = zmsg_new ();
    //  Past the window (a parent's rare piece) the bytes are not kept for the hash: it reads
    //  them back from storage when it gets there, so memory stays bounded by the window.
    if (s_hashed (self, index) || index >= self->window_start + self->window) {
        zmsg_append (raw, &piece->frame);
        piece->buffer = NULL;
    } else
        zmsg_addmem (raw, piece->buffer, piece->filled); //  kept until the hash reaches it
    zf_msg_piece_write_t write = {.task_id = self->task_id,
                                  .piece = index,
                                  .digest = {.data = (uint8_t *) digest, .size = digest ? 32 : 0}};
    if (s_request (self, &zf_msg_piece_write, &write, &raw, s_on_written, index))
        zf_fetch_task_pump (self);
}

static void s_on_piece_data (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    uint64_t index;
    zf_fetch_task_t *self = s_reply_task (arg, &index);
    if (!self)
        return;
    piece_t *piece = &self->pieces[index];
    piece->reading = false;
    if (s_remote_code_is (status, reply, "corrupt") || s_remote_code_is (status, reply, "not_found")
        || s_remote_code_is (status, reply, "not_finished")) {
        //  Storage found the piece damaged and dropped it: download it again.
        zf_warning (self->env->name, "stored piece lost task=%.16s piece=%" PRIu64 ": %s",
                    self->task_id, index, s_reply_error (status, err));
        piece->state = PIECE_MISSING;
        self->finished_count -= self->finished_count > 0;
        zf_fetch_task_pump (self);
        return;
    }
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, "storage", "piece.read of piece %" PRIu64 " from %s: %s", index,
                            self->env->config->storage, s_reply_error (status, err));
        return;
    }
    zframe_t *bytes = zmsg_first (reply->raw);
    uint64_t expected = zf_fetch_piece_size (self, index);
    if (!bytes || zframe_size (bytes) != expected) {
        zf_fetch_task_fail (self, "storage",
                            "piece.data of piece %" PRIu64 " has %zu bytes, expected %" PRIu64,
                            index, bytes ? zframe_size (bytes) : 0, expected);
        return;
    }
    zf_fetch_task_hash_feed (self, index * self->piece_length, zframe_data (bytes),
                             zframe_size (bytes));
    zf_fetch_task_pump (self);
}

//  Feeds the content hash as far as the bytes at hand allow, in order; a piece finished
//  before a restart is read back from storage for it (range mode: the stream feeds itself).
static void s_feed_hash (zf_fetch_task_t *self)
{
    while (s_hash_needed (self) && self->hashed_offset < self->content_length) {
        uint64_t index = self->hashed_offset / self->piece_length;
        piece_t *piece = &self->pieces[index];
        if (piece->buffer && piece->state != PIECE_FETCHING) {
            zf_fetch_task_hash_feed (self, index * self->piece_length, piece->buffer,
                                     piece->filled);
            continue;
        }
        if (piece->state == PIECE_STORED && !piece->buffer && !piece->reading
            && !self->stream_mode) {
            piece->reading = true;
            zf_msg_piece_read_t read = {.task_id = self->task_id, .piece = index};
            s_request (self, &zf_msg_piece_read, &read, NULL, s_on_piece_data, index);
        }
        return;
    }
}

//  Frees buffers no longer needed (written and hashed) and moves the window past retired
//  pieces.
static void s_retire (zf_fetch_task_t *self)
{
    uint64_t end = self->window_start + self->window;
    for (uint64_t index = self->window_start; index < end && index < self->piece_count; index++) {
        piece_t *piece = &self->pieces[index];
        if (piece->buffer && piece->state != PIECE_FETCHING && s_hashed (self, index))
            zf_fetch_piece_release (piece);
    }
    while (self->window_start < self->piece_count
           && self->pieces[self->window_start].state == PIECE_STORED
           && !self->pieces[self->window_start].buffer && s_hashed (self, self->window_start))
        self->window_start++;
}

#define REOPENS_MAX 3 //  storage losing pieces again and again is a failure

//  storage.complete counted fewer pieces than were written: a reader found one damaged on
//  disk since, and storage dropped it. The task resumes as after a restart: storage's bitmap
//  says what to fetch again, and the content hash is taken again over what is stored.
static void s_reopen (zf_fetch_task_t *self)
{
    zf_warning (self->env->name, "task lost a stored piece, resuming task=%.16s", self->task_id);
    self->reopens++;
    s_release_pieces (self); //  the spare buffers stay, for the pieces fetched again
    zf_free (self->pieces);
    EVP_MD_CTX_free (self->whole_hash);
    self->whole_hash = NULL;
    self->hashed_offset = 0;
    self->window_start = 0;
    self->phase = PHASE_OPEN;
    s_open (self);
}

static void s_on_completed (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                            const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_fetch_task_t *self = s_reply_task (arg, NULL);
    if (!self)
        return;
    if (s_remote_code_is (status, reply, "not_finished") && self->reopens < REOPENS_MAX) {
        s_reopen (self);
        return;
    }
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, "storage", "storage.complete at %s: %s",
                            self->env->config->storage, s_reply_error (status, err));
        return;
    }
    const zf_msg_storage_task_t *task = reply->env.body;
    self->finished_count = task->finished_count;
    self->phase = PHASE_COMPLETE;
    s_free_spares (self);
    zf_fetch_parents_stop (self);
    zf_counter_add (self->env->tasks_complete, 1);
    zf_notice (self->env->name,
               "task complete task=%.16s content_length=%" PRIu64 " from_source=%" PRIu64
               " from_parents=%" PRIu64,
               self->task_id, self->content_length, self->bytes_from_source,
               self->bytes_from_parents);
    zf_fetch_sched_task_end (self->env->sched, self);
    s_ended (self);
    s_answer (self);
}

static void s_on_removed (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    call_t *call = arg;
    if (status != ZF_OK)
        zf_warning (call->env->name, "storage.remove task=%.16s: %s", call->task_id,
                    s_reply_error (status, err));
    zf_free (call);
}

static void s_content_digest_mismatch (zf_fetch_task_t *self, const char *actual)
{
    //  Nothing wrong may stay in the cache: remove what was stored, then fail.
    call_t *call = zf_calloc (1, sizeof *call);
    call->env = self->env;
    zf_strlcpy (call->task_id, self->task_id, sizeof call->task_id);
    zf_msg_storage_remove_t remove = {.task_id = self->task_id};
    if (zf_bus_request (self->env->bus, self->env->config->storage, &zf_msg_storage_remove, &remove,
                        NULL, ZF_BUS_CALL_DEFAULT, s_on_removed, call, NULL)
        != ZF_OK)
        zf_free (call);
    zf_fetch_task_fail (self, "digest",
                        "content digest mismatch: expected %s, got sha256:%s (%" PRIu64
                        " bytes from %s)",
                        self->digest, actual, self->content_length, self->url);
}

static void s_finish (zf_fetch_task_t *self)
{
    if (s_hash_needed (self)) {
        uint8_t digest[32];
        unsigned int digest_size = 0;
        ZF_ASSERT (EVP_DigestFinal_ex (self->whole_hash, digest, &digest_size) == 1);
        char actual[65];
        for (size_t index = 0; index < sizeof digest; index++)
            snprintf (actual + 2 * index, 3, "%02x", digest[index]);
        if (!streq (actual, self->digest + 7)) {
            s_content_digest_mismatch (self, actual);
            return;
        }
    }
    self->phase = PHASE_COMPLETING;
    zf_msg_storage_complete_t complete = {.task_id = self->task_id};
    s_request (self, &zf_msg_storage_complete, &complete, NULL, s_on_completed, 0);
}

static int s_on_wake (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    zf_fetch_task_t *self = arg;
    if (timer_id == self->timer_id)
        self->timer_id = -1;
    zf_fetch_task_pump (self);
    return 0;
}

static void s_wake_at (zf_fetch_task_t *self, int64_t when_ms)
{
    s_end_timer (self);
    int64_t delay = when_ms - zf_clock_mono_ms ();
    self->timer_id =
        zloop_timer (self->env->loop, delay > 0 ? (size_t) delay : 1, 1, s_on_wake, self);
}

bool zf_fetch_task_piece_retry (zf_fetch_task_t *self, piece_t *piece, uint32_t *attempts,
                                const char *what, const char *reason, bool retryable)
{
    const zf_fetcher_config_t *config = self->env->config;
    (*attempts)++;
    if (!retryable || *attempts > (uint32_t) config->retries) {
        zf_fetch_task_fail (self, "source", "%s: %s%s", what, reason,
                            retryable ? " (retries exhausted)" : "");
        return false;
    }
    int64_t backoff = config->retry_backoff_ms;
    for (uint32_t index = 1; index < *attempts && backoff < RETRY_BACKOFF_CAP_MS; index++)
        backoff *= 2;
    if (backoff > RETRY_BACKOFF_CAP_MS)
        backoff = RETRY_BACKOFF_CAP_MS;
    int64_t when = zf_clock_mono_ms () + backoff;
    if (piece)
        piece->not_before_ms = when;
    else
        self->retry_at_ms = when;
    zf_counter_add (self->env->piece_retries, 1);
    zf_warning (self->env->name, "retry task=%.16s %s attempt=%u in %" PRId64 "ms: %s",
                self->task_id, what, *attempts, backoff, reason);
    return true;
}

//  Starts range transfers for missing pieces inside the window; returns the earliest time a
//  piece waiting for its backoff may start (0: none waits).
static int64_t s_start_ranges (zf_fetch_task_t *self)
{
    int64_t now = zf_clock_mono_ms (), wake = 0;
    uint64_t end = self->window_start + self->window;
    for (uint64_t index = self->window_start; index < end && index < self->piece_count; index++) {
        piece_t *piece = &self->pieces[index];
        if (piece->state != PIECE_MISSING
            || (zf_fetch_parents_routing (self) && !piece->use_origin))
            continue;
        if (piece->not_before_ms > now) {
            wake = wake == 0 || piece->not_before_ms < wake ? piece->not_before_ms : wake;
            continue;
        }
        if (self->range_transfers >= (size_t) self->env->config->source_concurrency)
            break;
        zf_fetch_source_range (self, index);
        if (!zf_fetch_task_running (self))
            return 0;
    }
    return wake;
}

static bool s_all_stored (zf_fetch_task_t *self)
{
    return self->window_start >= self->piece_count;
}

//  Stream mode: another stream is needed while a piece is missing, or while the content hash
//  waits on a piece stored before a restart (only the stream can feed it, in order).
static bool s_stream_needed (zf_fetch_task_t *self)
{
    for (uint64_t index = self->window_start; index < self->piece_count; index++)
        if (self->pieces[index].state == PIECE_MISSING)
            return true;
    if (!s_hash_needed (self) || self->hashed_offset >= self->content_length)
        return false;
    piece_t *waiting = &self->pieces[self->hashed_offset / self->piece_length];
    return waiting->state == PIECE_STORED && !waiting->buffer;
}

void zf_fetch_task_pump (zf_fetch_task_t *self)
{
    if (self->phase == PHASE_PROBE) {
        if (self->transfers)
            return;
        if (self->retry_at_ms > zf_clock_mono_ms ())
            s_wake_at (self, self->retry_at_ms);
        else
            zf_fetch_source_probe (self);
        return;
    }
    if (self->phase != PHASE_RUN)
        return;
    s_feed_hash (self);
    s_retire (self);
    if (!zf_fetch_task_running (self))
        return;
    if (s_all_stored (self)) {
        s_finish (self);
        return;
    }
    if (zf_fetch_parents_routing (self)) {
        zf_fetch_parents_pump (self);
        if (!zf_fetch_task_running (self))
            return;
    }
    if (!self->stream_mode) {
        int64_t wake = s_start_ranges (self);
        if (wake && zf_fetch_task_running (self))
            s_wake_at (self, wake);
    } else if (!zf_fetch_source_streaming (self) && s_stream_needed (self)) {
        if (self->retry_at_ms > zf_clock_mono_ms ())
            s_wake_at (self, self->retry_at_ms);
        else
            zf_fetch_source_stream (self);
    }
}
