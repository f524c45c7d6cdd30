/*  zf_fetch_task_pieces.c — a task's pieces in memory (see zf_fetch_task_internal.h): their
    buffers, the requests to storage (piece.write, and piece.read of stored pieces for the
    content hash), the content hash taken in order, and the window of pieces retired. */
#include "zf_clock.h"
#include "zf_fetch_task_internal.h"
#include "zf_log.h"

//  --- buffers ------------------------------------------------------------------------------------

uint64_t zf_fetch_task_piece_size (zf_fetch_task_t *self, uint64_t piece)
{
    uint64_t start = piece * self->piece_length;
    uint64_t end = start + self->piece_length;
    return (end > self->content_length ? self->content_length : end) - start;
}

uint64_t zf_fetch_task_piece_end (zf_fetch_task_t *self, uint64_t piece)
{
    return piece * self->piece_length + zf_fetch_task_piece_size (self, piece);
}

bool zf_fetch_task_hash_needed (zf_fetch_task_t *self)
{
    return *self->digest != '\0';
}

static bool s_hashed (zf_fetch_task_t *self, uint64_t piece)
{
    return !zf_fetch_task_hash_needed (self)
           || self->hashed_offset >= zf_fetch_task_piece_end (self, piece);
}

//  The front piece while nothing of the task is stored yet keeps its bytes here until storage
//  wrote it: its readers' first peeks come as it fills and often after (the origin's first
//  range fills a piece in well under a millisecond on loopback, while storage still creates
//  the task), and would otherwise wait for that and the write. One copy of one piece a task.
bool zf_fetch_task_kept_for_readers (zf_fetch_task_t *self, uint64_t piece)
{
    return piece == self->window_start && self->finished_count == 0;
}

//  The bytes land straight in the frame that piece.write sends: no copy on the way. A full
//  piece reuses a buffer storage gave back, when there is one.
uint8_t *zf_fetch_task_hold (zf_fetch_task_t *self, uint64_t piece)
{
    zf_fetch_task_slot_t *slot = &self->slots[piece];
    if (!slot->frame) {
        size_t size = (size_t) zf_fetch_task_piece_size (self, piece);
        slot->frame = size == self->piece_length && self->spare_frames
                          ? zlist_pop (self->spare_frames)
                          : NULL;
        if (!slot->frame)
            slot->frame = zframe_new (NULL, size);
        slot->filled = 0;
    }
    return zframe_data (slot->frame);
}

void zf_fetch_task_release (zf_fetch_task_slot_t *slot)
{
    zframe_destroy (&slot->frame);
    slot->filled = 0;
}

//  Keeps a buffer piece.written gave back for the next piece, up to the window; beyond
//  that, and of any other size, it is freed.
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

void zf_fetch_task_free_buffers (zf_fetch_task_t *self)
{
    for (uint64_t index = 0; self->slots && index < self->piece_count; index++)
        zf_fetch_task_release (&self->slots[index]);
    zframe_t *frame;
    while (self->spare_frames && (frame = zlist_pop (self->spare_frames)))
        zframe_destroy (&frame);
    zlist_destroy (&self->spare_frames);
}

//  --- storage requests ------------------------------------------------------------------------

//  A bus request's way back to its task: the task may be gone or replaced by the time the
//  reply arrives, so the reply looks it up again instead of holding a pointer. Freed by its
//  reply, or by the bus when it ends with the request unanswered (zf_bus_call_t.drop).
typedef struct {
    zf_fetch_env_t *env;
    char task_id[ZF_TASK_ID_SIZE + 1];
    uint64_t generation;
    uint64_t piece;
} call_t;

static call_t *s_call_new (zf_fetch_task_t *self, uint64_t piece)
{
    call_t *call = zf_calloc (1, sizeof *call);
    call->env = self->env;
    zf_strlcpy (call->task_id, self->task_id, sizeof call->task_id);
    call->generation = self->generation;
    call->piece = piece;
    return call;
}

//  Storage is an actor of this process: a request waits as long as storage takes (a busy
//  storage slows the task, never fails it). One the bus drops unanswered when it ends (storage
//  gone first, or never answering) frees its call_t there.
static zf_bus_call_t s_storage_call (void)
{
    zf_bus_call_t call = ZF_BUS_CALL_DEFAULT;
    call.drop = zf_bus_drop_free;
    return call;
}

//  Sends a request to this node's storage; the reply comes back to callback with a call_t
//  (freed here on failure, by the callback otherwise).
bool zf_fetch_task_storage (zf_fetch_task_t *self, const zf_msg_desc_t *desc, const void *body,
                            zmsg_t **raw, zf_bus_reply_fn *callback, uint64_t piece)
{
    call_t *call = s_call_new (self, piece);
    zf_error_t err;
    if (zf_bus_request (self->env->bus, self->env->config->storage, desc, body, raw,
                        s_storage_call (), callback, call, &err)
        == ZF_OK)
        return true;
    zf_free (call);
    zmsg_destroy (raw);
    zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE, "%s to %s not sent: %s", desc->type,
                        self->env->config->storage, err.message);
    return false;
}

//  The task a reply belongs to, if it is still waiting for it; frees the call.
zf_fetch_task_t *zf_fetch_task_of_reply (void *arg, uint64_t *piece)
{
    call_t *call = arg;
    zf_fetch_task_t *task = zhashx_lookup (call->env->tasks, call->task_id);
    if (task && task->generation != call->generation)
        task = NULL;
    if (piece)
        *piece = call->piece;
    zf_free (call);
    return task && zf_fetch_task_running (task) ? task : NULL;
}

const char *zf_fetch_task_reply_error (zf_status_t status, const zf_error_t *err)
{
    return err && *err->message ? err->message : zf_status_name (status);
}

static void s_on_removed (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    call_t *call = arg;
    if (status != ZF_OK)
        zf_warning (call->env->name, "storage.remove task=%.16s: %s", call->task_id,
                    zf_fetch_task_reply_error (status, err));
    zf_free (call);
}

void zf_fetch_task_remove_stored (zf_fetch_task_t *self)
{
    zf_msg_storage_remove_t remove = {.task_id = self->task_id};
    call_t *call = s_call_new (self, 0);
    if (zf_bus_request (self->env->bus, self->env->config->storage, &zf_msg_storage_remove, &remove,
                        NULL, s_storage_call (), s_on_removed, call, NULL)
        != ZF_OK)
        zf_free (call);
}

//  --- pieces written and hashed ------------------------------------------------------------------

void zf_fetch_task_hash_feed (zf_fetch_task_t *self, uint64_t offset, const uint8_t *data,
                              size_t size)
{
    if (!zf_fetch_task_hash_needed (self) || !self->whole_hash
        || offset + size <= self->hashed_offset)
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
    zf_fetch_task_t *self = zf_fetch_task_of_reply (arg, &piece);
    if (!self)
        return;
    ZF_ASSERT (self->writes_pending > 0);
    self->writes_pending--;
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE,
                            "piece.write of piece %" PRIu64 " to %s: %s", piece,
                            self->env->config->storage, zf_fetch_task_reply_error (status, err));
        return;
    }
    const zf_msg_piece_written_t *written = reply->env.body;
    if (!self->first_written_ms) {
        self->first_written_ms = zf_clock_mono_ms () - self->born_ms;
        zf_debug (self->env->name,
                  "task timeline task=%.16s stat_ms=%" PRId64 " source_ms=%" PRId64
                  " layout_ms=%" PRId64 " open_ms=%" PRId64 " first_byte_ms=%" PRId64
                  " first_written_ms=%" PRId64 " probe=%s",
                  self->task_id, self->stat_ms, self->source_ms, self->layout_ms, self->open_ms,
                  self->first_byte_ms, self->first_written_ms, self->probe);
    }
    zframe_t *spare = zmsg_pop (reply->raw);
    s_keep_spare (self, &spare);
    if (zf_piece_table_state (self->table, piece) == ZF_PIECE_WRITING) {
        zf_piece_table_store (self->table, piece);
        self->finished_count = written->finished_count;
        const zf_fetch_observer_t *observer = self->env->observer;
        if (observer && self->scheduled) {
            uint32_t from = zf_piece_table_from (self->table, piece);
            observer->piece_stored (
                self->env->observer_arg, self, piece,
                from && self->parents ? zf_fetch_parents_name (self->parents, from) : NULL);
        }
    }
    zf_fetch_task_wake (self);
    if (self->origin)
        zf_fetch_origin_resume (self->origin); //  a stream paused for memory may go on
}

//  A piece whose bytes are in its slot and checked (digest: their SHA-256, NULL when none was
//  computed: storage computes it when a peer first asks): on to storage.
void zf_fetch_task_piece_verified (zf_fetch_task_t *self, uint64_t index, const uint8_t *digest,
                                   uint32_t from)
{
    zf_fetch_task_slot_t *slot = &self->slots[index];
    ZF_ASSERT (slot->frame && slot->filled == zf_fetch_task_piece_size (self, index));
    //  Readers streaming this piece get its (last) bytes from here, checked, before it goes to
    //  storage: the origin's as they came, a parent's whole.
    zf_fetch_peeks_fill (self->peeks, index, zframe_data (slot->frame), slot->filled, true);
    zf_piece_table_filled (self->table, index, from);
    zf_fetch_task_feed_hash (self); //  in order, this piece is usually next: then its bytes can go
    if (!zf_fetch_task_running (self))
        return;
    zmsg_t *raw = zmsg_new ();
    //  Past the window (a parent's rare piece) the bytes are not kept for the hash: it reads
    //  them back from storage when it gets there, so memory stays bounded by the window.
    bool for_hash = !s_hashed (self, index) && index < self->window_start + self->window;
    if (for_hash || zf_fetch_task_kept_for_readers (self, index))
        zmsg_addmem (raw, zframe_data (slot->frame), slot->filled); //  kept: a copy goes
    else {
        zmsg_append (raw, &slot->frame);
        slot->filled = 0;
    }
    zf_msg_piece_write_t write = {.task_id = self->task_id,
                                  .piece = index,
                                  .digest = {.data = (uint8_t *) digest, .size = digest ? 32 : 0},
                                  .origin = from == 0};
    if (zf_fetch_task_storage (self, &zf_msg_piece_write, &write, &raw, s_on_written, index))
        self->writes_pending++;
}

static void s_on_piece_data (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    uint64_t index;
    zf_fetch_task_t *self = zf_fetch_task_of_reply (arg, &index);
    if (!self)
        return;
    self->slots[index].reading = false;
    zf_code_t code = zf_bus_error_code (status, reply);
    if (code == ZF_CODE_CORRUPT || code == ZF_CODE_NOT_FOUND || code == ZF_CODE_NOT_FINISHED) {
        //  Storage found the piece damaged and dropped it: download it again.
        zf_warning (self->env->name, "stored piece lost task=%.16s piece=%" PRIu64 ": %s",
                    self->task_id, index, zf_fetch_task_reply_error (status, err));
        zf_piece_table_reset (self->table, index);
        self->finished_count -= self->finished_count > 0;
        zf_fetch_task_wake (self);
        return;
    }
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE,
                            "piece.read of piece %" PRIu64 " from %s: %s", index,
                            self->env->config->storage, zf_fetch_task_reply_error (status, err));
        return;
    }
    zframe_t *bytes = zmsg_first (reply->raw);
    uint64_t expected = zf_fetch_task_piece_size (self, index);
    if (!bytes || zframe_size (bytes) != expected) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE,
                            "piece.data of piece %" PRIu64 " has %zu bytes, expected %" PRIu64,
                            index, bytes ? zframe_size (bytes) : 0, expected);
        return;
    }
    zf_fetch_task_slot_t *slot = &self->slots[index];
    if (!slot->frame && zf_piece_table_state (self->table, index) == ZF_PIECE_STORED) {
        slot->frame =
            zmsg_pop (reply->raw); //  the hash takes it in its turn (zf_fetch_task_feed_hash)
        slot->filled = zframe_size (slot->frame);
    }
    zf_fetch_task_feed_hash (self);
    zf_fetch_task_wake (self);
}

//  Feeds the content hash as far as the bytes at hand allow, in order. Pieces stored without
//  their bytes in memory (finished before a restart, or written past the window: from parents
//  they come in any order) are read back from storage for it, HASH_READ_AHEAD at a time, so
//  the hash is not one storage round trip per piece behind (stream mode: the stream feeds the
//  hash itself).
#define HASH_READ_AHEAD 8
#define HASH_READ_SPAN  64 //  pieces past the hash's that are looked at for that

void zf_fetch_task_feed_hash (zf_fetch_task_t *self)
{
    if (!zf_fetch_task_hash_needed (self) || !self->whole_hash)
        return;
    uint64_t index = self->hashed_offset / self->piece_length;
    while (self->hashed_offset < self->content_length) {
        index = self->hashed_offset / self->piece_length;
        zf_fetch_task_slot_t *slot = &self->slots[index];
        zf_piece_state_t state = zf_piece_table_state (self->table, index);
        if (!slot->frame || (state != ZF_PIECE_WRITING && state != ZF_PIECE_STORED))
            break;
        zf_fetch_task_hash_feed (self, index * self->piece_length, zframe_data (slot->frame),
                                 slot->filled);
        if (state == ZF_PIECE_STORED)
            zf_fetch_task_release (slot); //  read back for the hash alone
    }
    if (self->stream_mode)
        return;
    size_t reading = 0;
    uint64_t end =
        index + HASH_READ_SPAN < self->piece_count ? index + HASH_READ_SPAN : self->piece_count;
    for (uint64_t ahead = index; ahead < end && reading < HASH_READ_AHEAD; ahead++) {
        zf_fetch_task_slot_t *slot = &self->slots[ahead];
        if (zf_piece_table_state (self->table, ahead) != ZF_PIECE_STORED || slot->frame)
            continue;
        reading++;
        if (slot->reading)
            continue;
        slot->reading = true;
        zf_msg_piece_read_t read = {.task_id = self->task_id, .piece = ahead};
        if (!zf_fetch_task_storage (self, &zf_msg_piece_read, &read, NULL, s_on_piece_data, ahead))
            return;
    }
}

//  Frees buffers no longer needed (written and hashed) and moves the window past retired
//  pieces.
void zf_fetch_task_retire (zf_fetch_task_t *self)
{
    uint64_t end = self->window_start + self->window;
    for (uint64_t index = self->window_start; index < end && index < self->piece_count; index++)
        if (self->slots[index].frame && s_hashed (self, index)
            && zf_piece_table_state (self->table, index) >= ZF_PIECE_WRITING
            && !zf_fetch_task_kept_for_readers (self, index))
            zf_fetch_task_release (&self->slots[index]);
    while (self->window_start < self->piece_count
           && zf_piece_table_state (self->table, self->window_start) == ZF_PIECE_STORED
           && !self->slots[self->window_start].frame && s_hashed (self, self->window_start))
        self->window_start++;
}
