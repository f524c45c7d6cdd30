/*  zf_storage_write.c — piece.write in the storage actor (see zf_storage_internal.h): checked,
    written on the writer thread (zf_store_io.h), answered with piece.written once written, or
    with fsync once a commit claims the piece. */
#include "zf_log.h"
#include "zf_msgs.h"
#include "storage/zf_storage_internal.h"

//  A piece.write on its way through the writer thread (zf_store_io).
typedef struct {
    zf_store_write_t write; //  first: the job the writer runs
    zf_bus_return_t ret;
    bool give_back;    //  the frame goes back with piece.written
    bool digest_known; //  digest is the bytes' SHA-256 (given, checked)
    bool retried;      //  written again once GC made room (the disk was full)
    uint8_t digest[ZF_STORE_DIGEST_LEN];
} write_job_t;

//  Durable mode: an answer waiting for the commit that claims what it says.
typedef struct {
    zf_bus_return_t ret;
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t piece;   //  piece.written; UINT64_MAX: storage.complete
    zframe_t *buffer; //  the written bytes' frame, to give back to a writer in this process
} claim_wait_t;

// ---- writes and commits ------------------------------------------------------------------------

//  piece.written; buffer (may be NULL) goes back to a writer in this process, which fills its
//  next piece into it (inproc:// moves frames, nothing is copied) instead of into fresh
//  memory that costs a page fault per 4 KiB.
static void s_reply_written (zf_storage_t *self, const zf_bus_return_t *ret, zf_store_task_t *task,
                             uint64_t piece, zframe_t **buffer_p)
{
    zf_msg_piece_written_t body = {
        .task_id = task->id, .piece = piece, .finished_count = task->finished_count};
    zmsg_t *raw = NULL;
    if (buffer_p && *buffer_p) {
        raw = zmsg_new ();
        zmsg_append (raw, buffer_p);
    }
    zf_bus_reply (self->bus, ret, &zf_msg_piece_written, &body, raw ? &raw : NULL);
}

//  Durable mode: the commit an answer waited for has ended.
static void s_on_claimed (void *arg, void *waiter, zf_store_task_t *task, zf_status_t status)
{
    zf_storage_t *self = arg;
    claim_wait_t *wait = waiter;
    bool complete = wait->piece == UINT64_MAX;
    if (!task)
        zf_storage_reply_not_found (self, &wait->ret, wait->task_id);
    else if (status == ZF_OK && complete && task->complete)
        zf_storage_reply_task (self, &wait->ret, task);
    else if (status == ZF_OK && !complete && zf_store_is_claimed (task, wait->piece))
        s_reply_written (self, &wait->ret, task, wait->piece, &wait->buffer);
    else if (complete)
        zf_bus_reply_error (self->bus, &wait->ret, ZF_E_IO, NULL, "cannot save task");
    else
        zf_bus_reply_error (self->bus, &wait->ret, ZF_E_IO, "piece",
                            "piece %" PRIu64 " could not be stored", wait->piece);
    zframe_destroy (&wait->buffer);
    zf_free (wait);
}

//  Durable mode: answers once the task's next commit has ended (s_on_claimed).
void zf_storage_answer_when_claimed (zf_storage_t *self, const zf_bus_return_t *ret,
                                     zf_store_task_t *task, uint64_t piece, zframe_t **buffer_p)
{
    claim_wait_t *wait = zf_calloc (1, sizeof *wait);
    wait->ret = *ret;
    zf_strlcpy (wait->task_id, task->id, sizeof wait->task_id);
    wait->piece = piece;
    if (buffer_p) {
        wait->buffer = *buffer_p;
        *buffer_p = NULL;
    }
    zf_store_io_when_committed (self->io, task, s_on_claimed, self, wait);
}

//  The disk was full when the writer wrote this piece. Tasks not in use are evicted to make
//  room and the piece is written once more: when some went, or when the disk has room for it
//  now (a write that failed beside this one made room already: several are under way at
//  once). When there is none, the task cannot complete in this cache now, and is dropped:
//  kept, its partial data held the disk full, and every download after it failed until GC's
//  next round (up to gc_interval + busy_grace later). True when the write went back to the
//  writer.
static bool s_retry_when_full (zf_storage_t *self, write_job_t *job, zf_store_task_t *task)
{
    zf_store_write_t *write = &job->write;
    uint64_t need = zframe_size (write->bytes), used = 0, capacity = 0;
    bool room = !job->retried
                && (zf_storage_make_room (self, need, true) > 0
                    || (zf_storage_filesystem (self, &used, &capacity) && capacity - used >= need));
    if (room) {
        job->retried = true;
        uint8_t digest[ZF_STORE_DIGEST_LEN];
        bool check = write->check_digest;
        memcpy (digest, write->digest, sizeof digest);
        zframe_t *bytes = write->bytes;
        write->bytes = NULL;
        zf_store_write_clear (write);
        zf_store_write_prepare (self->store, task, write->piece, &bytes, check ? digest : NULL,
                                write);
        zf_store_io_write (self->io, write);
        return true;
    }
    zf_storage_filesystem (self, &used, &capacity);
    zf_bus_reply_error (self->bus, &job->ret, ZF_E_IO, "piece",
                        "cannot store piece %" PRIu64 ": the cache's filesystem is full (%" PRIu64
                        " of %" PRIu64 " bytes used, by tasks in use or files not storage's)",
                        write->piece, used, capacity);
    zf_storage_drop_task (self, task, "the disk is full and no other task can make room");
    return false;
}

//  A write the writer thread has done: the piece is finished (served from now on) and is
//  answered now, or in durable mode once a commit claimed it.
void zf_storage_on_written (void *arg, zf_store_write_t *write, zf_store_task_t *task)
{
    zf_storage_t *self = arg;
    write_job_t *job = (write_job_t *) write;
    zf_error_t err;
    zf_status_t status = ZF_OK;
    if (!task) //  removed (or removed and created again) while the piece was written
        zf_bus_reply_code (self->bus, &job->ret, ZF_CODE_NOT_FOUND, "task_id",
                           "task %s was removed while piece %" PRIu64 " was written",
                           write->task_id, write->piece);
    else
        status = zf_store_write_finish (self->store, task, write,
                                        job->digest_known ? job->digest : NULL, &err);
    if (!task)
        ;
    else if (status == ZF_E_INVALID) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 10000);
        zf_warning_limited (&limit, self->name,
                            "refused piece task=%s piece=%" PRIu64 " from=%s: digest mismatch",
                            task->id, write->piece, job->ret.from);
        zf_bus_reply_error (self->bus, &job->ret, ZF_E_INVALID, "digest", "%s", err.message);
    } else if (status != ZF_OK && write->no_space) {
        zf_error_log (self->name, "task=%s piece=%" PRIu64 " write failed: %s", task->id,
                      write->piece, err.message);
        if (s_retry_when_full (self, job, task))
            return;
    } else if (status != ZF_OK) {
        zf_error_log (self->name, "task=%s piece=%" PRIu64 " write failed: %s", task->id,
                      write->piece, err.message);
        zf_bus_reply_error (self->bus, &job->ret, ZF_E_IO, "piece", "cannot store piece: %s",
                            err.message);
        if (status == ZF_E_REFUSED)
            zf_storage_drop_task (self, task, "its data file is not storage's to write");
    } else {
        zf_counter_add (self->metrics.written, 1);
        zf_stat_watch_notify (self->watch, task->id, task->finished_count);
        zframe_t **buffer_p = job->give_back ? &write->bytes : NULL;
        if (zf_store_durable (self->store))
            zf_storage_answer_when_claimed (self, &job->ret, task, write->piece, buffer_p);
        else
            s_reply_written (self, &job->ret, task, write->piece, buffer_p);
    }
    zframe_destroy (&write->bytes);
    zf_store_write_clear (write);
    zf_free (job);
}

//  The digest a piece.write's bytes must be checked against, or NULL. An empty digest claims
//  nothing: storage computes it when a peer first asks for the piece. The fetcher of this
//  process computed a digest it sends from these very bytes (and checked it against the
//  parents'), and the frame came over inproc://, so hashing it again would only double the
//  work; from any other writer the digest is a claim, checked (by the writer thread).
static const uint8_t *s_digest_to_check (const zf_bus_msg_t *request)
{
    const zf_msg_piece_write_t *body = request->env.body;
    if (body->digest.size == 0 || request->origin == ZF_BUS_FROM_PROCESS)
        return NULL;
    return body->digest.data;
}

static void s_handle_piece_write (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    if (!zf_storage_may_change (self, request))
        return;
    const zf_msg_piece_write_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    zf_store_task_t *task = zf_storage_task_or_reply (self, ret, body->task_id);
    if (!task || !zf_storage_piece_in_range (self, ret, task, body->piece))
        return;
    zframe_t *bytes = zmsg_first (request->raw);
    uint64_t expected = zf_store_piece_size (task, body->piece);
    if (!bytes || zframe_size (bytes) != expected) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "piece",
                            "piece %" PRIu64 " needs one frame of %" PRIu64 " bytes, got %zu",
                            body->piece, expected, bytes ? zframe_size (bytes) : 0);
        return;
    }
    if (body->digest.size != 0 && body->digest.size != ZF_STORE_DIGEST_LEN) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "digest",
                            "piece %" PRIu64 " does not match its SHA-256 digest", body->piece);
        return;
    }
    task->accessed_ms = zf_storage_now_ms (self);
    task->access_dirty = true;
    if (zf_store_is_finished (task, body->piece)) { //  a resend, or a second parent's copy
        if (zf_store_durable (self->store) && !zf_store_is_claimed (task, body->piece))
            zf_storage_answer_when_claimed (self, ret, task, body->piece, NULL);
        else
            s_reply_written (self, ret, task, body->piece, NULL);
        return;
    }
    if (body->origin)
        zf_spread_from_origin (self->spread, task->id, task->piece_count, body->piece);
    write_job_t *job = zf_calloc (1, sizeof *job);
    job->ret = *ret;
    //  The fetcher of this process gets its buffer back with piece.written (s_reply_written).
    //  Other writers get no bytes back.
    job->give_back = request->origin == ZF_BUS_FROM_PROCESS;
    job->digest_known = body->digest.size == ZF_STORE_DIGEST_LEN;
    if (job->digest_known)
        memcpy (job->digest, body->digest.data, ZF_STORE_DIGEST_LEN);
    bytes = zmsg_pop (request->raw); //  moved to the writer thread, never copied
    zf_store_write_prepare (self->store, task, body->piece, &bytes, s_digest_to_check (request),
                            &job->write);
    zf_store_io_write (self->io, &job->write);
}

void zf_storage_write_register (zf_storage_t *self)
{
    zf_bus_handle (self->bus, ZF_MSG_PIECE_WRITE, s_handle_piece_write, self);
}
