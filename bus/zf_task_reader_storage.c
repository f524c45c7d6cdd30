/*  zf_task_reader_storage.c — the task reader's side of storage: storage.stat, held until a
    piece lands, tells which pieces are finished; piece.locate and piece.read bring them, by
    the error rules in zf_task_reader.h (busy, lost, refused, wrong, unverified).

    Separate from zf_task_reader.c (the reader's life and pump) and from the fetcher's side:
    each file takes what one actor says. */
#include "zf_task_reader_internal.h"
#include "zf_clock.h"
#include "zf_log.h"
#include <openssl/evp.h>

#define BUSY_RETRY_MS    100
#define BUSY_RETRIES_MAX 300 //  "busy" answers for one piece before giving up (~30 s)
#define REFETCH_MAX      3   //  times a reader asks the fetcher again for pieces storage lost
#define SHA256_SIZE      32

//  ---------------------------------------------------------------------------------------------
//  Storage's word: storage.stat, held until a piece lands

static void s_on_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg);

//  Asks storage which pieces are finished when that is what we wait for: the layout (storage
//  holds the question until the task is opened), the next piece of the window, or completion.
void zf_task_reader_stat (zf_task_reader_t *self)
{
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW || !self->task_id[0] || self->stat_pending
        || self->storage_complete || self->refetch_wanted || self->restart_wanted)
        return;
    bool wanted = !self->layout_known
                  || (self->reading && zf_task_reader_window_has_room (self)
                      && !zf_task_reader_stored (self, self->next_request))
                  || (self->wait_complete && self->reading && self->next_request == self->read_end);
    if (!wanted)
        return;
    const zf_task_readers_options_t *options = &self->set->options;
    int64_t now = zf_clock_mono_ms ();
    if (!self->stat_held && now - self->stat_sent_ms < options->poll_ms) {
        zf_task_reader_wake_after (self, options->poll_ms - (now - self->stat_sent_ms));
        return;
    }
    zf_bus_call_t call = zf_task_reader_call (self);
    int64_t base = call.timeout_ms > 0 ? call.timeout_ms : 5000;
    zf_msg_storage_stat_t stat = {.task_id = self->task_id,
                                  .wait_ms = (uint64_t) options->stat_wait_ms,
                                  .known_finished = self->stored_count,
                                  .bitmap_only = true,
                                  //  without the layout, news is that the task was opened
                                  //  (it may have been before this question came)
                                  .wait_open = !self->layout_known};
    self->stat_sent_ms = now;
    zf_task_reader_request (
        self, self->set->storage, &zf_msg_storage_stat, &stat,
        (zf_bus_call_t){.timeout_ms = options->stat_wait_ms + base, .retries = 0, .patient = true},
        s_on_stat, self, &self->stat_pending);
}

//  A bitmap for the layout we read with (another one is a stale copy the fetcher is about to
//  replace); false when it is not of use.
static bool s_take_bitmap (zf_task_reader_t *self, const zf_msg_storage_task_t *task,
                           zframe_t *bits)
{
    if (!bits || !self->layout_known || !streq (task->task_id, self->task_id)
        || task->content_length != self->content_length || task->piece_length != self->piece_length)
        return false;
    size_t size = zframe_size (bits);
    if (size > self->bitmap_size)
        self->bitmap = zf_realloc (self->bitmap, size);
    memcpy (self->bitmap, zframe_data (bits), size);
    self->bitmap_size = size;
    self->stored_count = task->finished_count;
    if (streq (task->state, "complete"))
        self->storage_complete = true;
    return true;
}

static void s_on_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_t *self = zf_task_reader_reply (arg);
    if (!self)
        return;
    self->stat_pending = false;
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return;
    int64_t held_ms = zf_clock_mono_ms () - self->stat_sent_ms;
    bool held = held_ms >= self->set->options.stat_wait_ms / 2;
    if (status == ZF_OK) {
        self->answered = true;
        const zf_msg_storage_task_t *task = reply->env.body;
        uint64_t known = self->stored_count;
        bool first = self->bitmap_size == 0; //  no bitmap yet: storage had not opened it
        bool took = s_take_bitmap (self, task, zmsg_first (reply->raw));
        //  The task opened is news too, whether this was asked with wait_open (no layout yet)
        //  or storage held it while the task was absent (the layout came with task.status):
        //  the question for the first piece then goes at once, not a poll_ms after this one.
        //  A reader that took its first piece from storage (node B, from A's pieces) got it
        //  48-88 ms after the request where storage had it 7-20 ms after the task was made
        //  (docs/benchmarks.md "Pull").
        bool news = took && (self->stored_count != known || first);
        bool opened = !self->layout_known;
        self->stat_held = held || news || opened || self->storage_complete;
        if (!took && !self->layout_known)
            zf_task_reader_send_query (self); //  opened: the fetcher knows the layout now
        else if (self->storage_complete && self->wait_complete && !self->fetcher_complete)
            zf_task_reader_send_query (self); //  the fetcher's "complete", with its totals
        else if (held && !news)
            zf_task_reader_send_query (
                self); //  quiet for a whole long poll: is the task still running?
    } else if (status == ZF_E_REMOTE) {
        self->answered = true;
        const zf_msg_error_t *error = reply->env.body;
        if (zf_bus_error_code (status, reply) != ZF_CODE_NOT_FOUND) {
            zf_task_reader_fail (self, ZF_TASK_READER_STORAGE, error->code,
                                 "storage.stat failed: %s", err->message);
            return;
        }
        //  not opened yet (a storage that holds the question answers this only after
        //  wait_ms), or just removed: the fetcher says which
        self->stat_held = held;
        if (held)
            zf_task_reader_send_query (self);
    } else {
        zf_task_reader_fail_bus (self, status, err, "storage.stat", self->set->storage);
        return;
    }
    zf_task_reader_pump (self);
}

//  ---------------------------------------------------------------------------------------------
//  Pieces

static void s_on_piece (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);
static void s_on_located (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg);

static bool s_locating (const zf_task_reader_t *self)
{
    return self->locate && !self->set->locate_refused;
}

bool zf_task_reader_request_piece (zf_task_reader_t *self, zf_task_reader_slot_t *slot)
{
    slot->retry = false;
    const zf_task_readers_options_t *options = &self->set->options;
    zf_bus_call_t call = {.timeout_ms = options->read_timeout_ms, .retries = 0, .patient = true};
    if (s_locating (self)) {
        zf_msg_piece_locate_t locate = {.task_id = self->task_id, .piece = slot->piece};
        return zf_task_reader_request (self, self->set->storage, &zf_msg_piece_locate, &locate,
                                       call, s_on_located, slot, &slot->requested);
    }
    zf_msg_piece_read_t read = {.task_id = self->task_id, .piece = slot->piece};
    return zf_task_reader_request (self, self->set->storage, &zf_msg_piece_read, &read, call,
                                   s_on_piece, slot, &slot->requested);
}

//  What a piece.read and a piece.locate answer share: whether to go on with it. Errors are
//  handled here by the rules in the header, answering false.
static bool s_piece_answer_usable (zf_task_reader_t *self, zf_task_reader_slot_t *slot,
                                   zf_status_t status, zf_bus_msg_t *reply, const zf_error_t *err,
                                   const char *what)
{
    slot->requested = false;
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return false;
    if (self->refetch_wanted || self->restart_wanted) {
        zf_task_reader_pump (
            self); //  whatever this answer is, it is dropped: we read on after settling
        return false;
    }
    if (status == ZF_E_REMOTE) {
        zf_code_t code = zf_bus_error_code (status, reply);
        //  elsewhere: a storage that spreads pieces it brought in (zf_spread.h) gave this one
        //  to another node a moment ago; a reader has no other parent: it asks again
        bool later = code == ZF_CODE_BUSY || code == ZF_CODE_ELSEWHERE;
        if (later && slot->busy_count < BUSY_RETRIES_MAX) {
            slot->busy_count++;
            slot->retry = true;
            zf_task_reader_wake_after (self, BUSY_RETRY_MS);
            return false;
        }
        bool lost =
            code == ZF_CODE_CORRUPT || code == ZF_CODE_NOT_FINISHED || code == ZF_CODE_NOT_FOUND;
        if (lost && self->refetches < REFETCH_MAX) {
            zf_info (self->set->name,
                     "task reader: piece %" PRIu64 " of task=%.16s: %s; asking the fetcher again",
                     slot->piece, self->task_id, err->message);
            self->refetch_wanted = true;
            self->refetches++;
            zf_task_reader_pump (self);
            return false;
        }
        zf_task_reader_fail (self, ZF_TASK_READER_STORAGE, zf_code_name (code),
                             "storage could not serve piece %" PRIu64 ": %s", slot->piece,
                             err->message);
        return false;
    }
    if (status != ZF_OK) {
        zf_task_reader_fail_bus (self, status, err, what, self->set->storage);
        return false;
    }
    self->answered = true;
    return true;
}

//  An answer about another piece, task or layout than asked is a bug on the other side: stop.
static bool s_piece_answer_matches (zf_task_reader_t *self, const zf_task_reader_slot_t *slot,
                                    const char *task_id, uint64_t piece, uint64_t offset,
                                    uint64_t size, size_t attached)
{
    uint64_t expected = zf_task_reader_piece_size (self, slot->piece);
    if (piece == slot->piece && streq (task_id, self->task_id)
        && offset == slot->piece * self->piece_length && size == expected && attached == expected)
        return true;
    zf_task_reader_fail (
        self, ZF_TASK_READER_PROTOCOL, "invalid",
        "storage answered piece %" PRIu64 " with piece %" PRIu64 " offset %" PRIu64 " size %" PRIu64
        " (%zu bytes attached); expected offset %" PRIu64 " size %" PRIu64,
        slot->piece, piece, offset, size, attached, slot->piece * self->piece_length, expected);
    return false;
}

//  Storage on this host checked the piece against its checksum before serving it; the bytes
//  of a storage on another host are checked here against the piece's SHA-256.
static bool s_piece_verified (zf_task_reader_t *self, const zf_bus_msg_t *reply,
                              const zf_msg_piece_data_t *piece, zframe_t *data)
{
    if (reply->origin != ZF_BUS_FROM_NETWORK || piece->digest.size != SHA256_SIZE)
        return true;
    uint8_t hash[SHA256_SIZE];
    unsigned int hash_size = 0;
    EVP_Digest (zframe_data (data), zframe_size (data), hash, &hash_size, EVP_sha256 (), NULL);
    if (memcmp (hash, piece->digest.data, SHA256_SIZE) == 0)
        return true;
    zf_task_reader_fail (self, ZF_TASK_READER_STORAGE, zf_code_name (ZF_CODE_CORRUPT),
                         "piece %" PRIu64 " from storage %s does not match its digest",
                         piece->piece, self->set->storage);
    return false;
}

static void s_on_piece (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_slot_t *slot = arg;
    zf_task_reader_t *self = zf_task_reader_reply (slot->reader);
    if (!self || !s_piece_answer_usable (self, slot, status, reply, err, "piece.read"))
        return;
    const zf_msg_piece_data_t *piece = reply->env.body;
    zframe_t *data = zmsg_pop (reply->raw);
    if (!s_piece_answer_matches (self, slot, piece->task_id, piece->piece, piece->offset,
                                 piece->size, data ? zframe_size (data) : 0)
        || !s_piece_verified (self, reply, piece, data)) {
        zframe_destroy (&data);
        return;
    }
    slot->busy_count = 0;
    slot->frame = data;
    slot->ready = true;
    zf_task_reader_pump (self);
}

//  Storage cannot locate pieces for us (another host, or a storage without piece.locate):
//  every reader of the set reads over the bus from now on.
static bool s_locate_refused (zf_task_reader_t *self, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err)
{
    if (status != ZF_E_REMOTE || self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return false;
    zf_code_t code = zf_bus_error_code (status, reply);
    if (code != ZF_CODE_FORBIDDEN && code != ZF_CODE_UNKNOWN_TYPE)
        return false;
    if (!self->set->locate_refused)
        zf_notice (self->set->name,
                   "p2p: storage %s does not locate pieces for this process (%s): cached pieces "
                   "are read over the bus, without sendfile or copies from its files",
                   self->set->storage, err->message);
    self->set->locate_refused = true;
    zf_task_reader_set_window (self);
    return true;
}

static void s_on_located (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_slot_t *slot = arg;
    zf_task_reader_t *self = zf_task_reader_reply (slot->reader);
    if (!self)
        return;
    if (!self->refetch_wanted && !self->restart_wanted
        && s_locate_refused (self, status, reply, err)) {
        slot->requested = false;
        if (zf_task_reader_request_piece (self, slot)) //  the same piece, over the bus
            zf_task_reader_pump (self);
        return;
    }
    if (!s_piece_answer_usable (self, slot, status, reply, err, "piece.locate"))
        return;
    const zf_msg_piece_located_t *located = reply->env.body;
    if (!s_piece_answer_matches (self, slot, located->task_id, located->piece, located->offset,
                                 located->size, (size_t) located->size))
        return;
    slot->busy_count = 0;
    slot->path = zf_strdup (located->path);
    slot->file_offset = located->offset;
    slot->ready = true;
    zf_task_reader_pump (self);
}
