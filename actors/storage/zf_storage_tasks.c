/*  zf_storage_tasks.c — the storage actor's task commands (see zf_storage_internal.h):
    storage.open, storage.stat (held as a long poll until the task has news), storage.complete,
    storage.remove, and storage.shift_clock and storage.measure. */
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include "storage/zf_storage_internal.h"

#define WATCH_TICK_MS 100

static void s_reply_removed (zf_storage_t *self, const zf_bus_return_t *ret, const char *task_id)
{
    zf_msg_storage_task_t body = {
        .task_id = (char *) task_id, .state = "removed", .digest = "", .url = ""};
    zmsg_t *raw = zmsg_new ();
    zmsg_addmem (raw, NULL, 0);
    zmsg_addmem (raw, NULL, 0);
    zf_bus_reply (self->bus, ret, &zf_msg_storage_task, &body, &raw);
}

// ---- held storage.stat requests ---------------------------------------------------------------

void zf_storage_answer_watch (const zf_bus_return_t *ret, const char *task_id, bool bitmap_only,
                              void *arg)
{
    zf_storage_t *self = arg;
    zf_store_task_t *task = zf_store_find (self->store, task_id);
    if (task)
        zf_storage_reply_task_frames (self, ret, task, bitmap_only);
    else
        zf_storage_reply_not_found (self, ret, task_id);
}

static int s_watch_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_storage_t *self = arg;
    if (zf_stat_watch_expire (self->watch, zf_clock_mono_ms ()) < 0) {
        zloop_timer_end (self->loop, self->watch_timer);
        self->watch_timer = -1;
    }
    return 0;
}

//  Deadlines are checked every WATCH_TICK_MS while requests are held: a held stat is a
//  long poll, and answering it up to a tick late changes nothing for its sender.
static void s_arm_watch_timer (zf_storage_t *self)
{
    if (self->watch_timer < 0)
        self->watch_timer = zloop_timer (self->loop, WATCH_TICK_MS, 0, s_watch_timer, self);
}

// ---- tasks -------------------------------------------------------------------------------------

//  A new task of content_length bytes: refused at once when the cache's filesystem could
//  never hold it (the download would fail when the disk filled, after fetching what fits;
//  a quota is GC's target, not a limit: a task over it is held, and evicted once unused);
//  else room is made for it now, where GC's next round might come only after the disk is full.
static bool s_fits (zf_storage_t *self, const zf_bus_return_t *ret, uint64_t content_length)
{
    uint64_t used, capacity;
    if (zf_storage_filesystem (self, &used, &capacity) && content_length > capacity) {
        zf_warning (self->name, "refused a task of %" PRIu64 " bytes: %s holds %" PRIu64,
                    content_length, zf_store_dir (self->store), capacity);
        zf_bus_reply_error (self->bus, ret, ZF_E_TOO_LARGE, "content_length",
                            "a task of %" PRIu64 " bytes cannot fit in the cache's filesystem "
                            "([storage] dir) of %" PRIu64 " bytes",
                            content_length, capacity);
        return false;
    }
    zf_storage_make_room (self, content_length, false);
    return true;
}

static void s_handle_open (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    if (!zf_storage_may_change (self, request))
        return;
    const zf_msg_storage_open_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    zf_error_t err;
    if (!zf_store_id_valid (body->task_id)) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "task_id",
                            "task_id must be 64 lowercase hex characters");
        return;
    }
    zf_store_task_t *task = zf_store_find (self->store, body->task_id);
    if (task) {
        if (task->content_length != body->content_length
            || task->piece_length != body->piece_length) {
            zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "content_length",
                                "task %s holds %" PRIu64 " bytes in pieces of %" PRIu64, task->id,
                                task->content_length, task->piece_length);
            return;
        }
    } else if (!body->create) {
        zf_storage_reply_not_found (self, ret, body->task_id);
        return;
    } else if (zf_store_check_geometry (body->content_length, body->piece_length, &err) != ZF_OK) {
        zf_bus_reply_error (self->bus, ret, err.code, err.where, "%s", err.message);
        return;
    } else if (!s_fits (self, ret, body->content_length)) {
        return;
    } else {
        zf_store_spec_t spec = {.id = body->task_id,
                                .url = body->url,
                                .digest = body->digest,
                                .tag = body->tag,
                                .application = body->application,
                                .content_length = body->content_length,
                                .piece_length = body->piece_length};
        if (zf_store_create (self->store, &spec, zf_storage_now_ms (self), &task, &err) != ZF_OK) {
            zf_error_log (self->name, "task=%s cannot create: %s", body->task_id, err.message);
            zf_bus_reply_error (self->bus, ret, ZF_E_IO, NULL, "cannot create task");
            return;
        }
        zf_info (self->name, "created task=%s length=%" PRIu64 " pieces=%" PRIu64, task->id,
                 task->content_length, task->piece_count);
        zf_storage_update_gauges (self);
        zf_stat_watch_notify (self->watch, task->id, 0); //  children waiting for it to exist
    }
    task->accessed_ms = zf_storage_now_ms (self);
    task->access_dirty = true;
    zf_storage_reply_task (self, ret, task);
}

static void s_hold_stat (zf_storage_t *self, const zf_bus_msg_t *request, uint64_t known_finished)
{
    const zf_msg_storage_stat_t *body = request->env.body;
    zf_stat_watch_add (self->watch, &request->return_to, body->task_id, known_finished,
                       body->bitmap_only, zf_clock_mono_ms () + (int64_t) body->wait_ms);
    zf_counter_add (self->metrics.stats_held, 1);
    s_arm_watch_timer (self);
}

static void s_handle_stat (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    const zf_msg_storage_stat_t *body = request->env.body;
    bool absent = zf_store_id_valid (body->task_id) && !zf_store_find (self->store, body->task_id);
    if (absent && body->wait_ms > 0) { //  held until the task is opened here
        s_hold_stat (self, request, ZF_STAT_WATCH_ABSENT);
        return;
    }
    zf_store_task_t *task = zf_storage_task_or_reply (self, &request->return_to, body->task_id);
    if (!task)
        return;
    if (body->wait_ms > 0 && !body->wait_open && !task->complete
        && task->finished_count <= body->known_finished)
        s_hold_stat (self, request, body->known_finished);
    else
        zf_storage_reply_task_frames (self, &request->return_to, task, body->bitmap_only);
}

static void s_handle_complete (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    if (!zf_storage_may_change (self, request))
        return;
    const zf_msg_storage_complete_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    zf_store_task_t *task = zf_storage_task_or_reply (self, ret, body->task_id);
    if (!task)
        return;
    bool durable = zf_store_durable (self->store);
    if (task->complete) { //  durable: it may still be on its way to disk
        if (durable && (task->meta_dirty || task->commit_running))
            zf_storage_answer_when_claimed (self, ret, task, UINT64_MAX, NULL);
        else
            zf_storage_reply_task (self, ret, task);
        return;
    }
    //  Writes answered are finished: the writer of the last piece was answered before it
    //  asked for completion.
    if (task->finished_count != task->piece_count) {
        zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FINISHED, "task_id",
                           "%" PRIu64 " of %" PRIu64 " pieces finished", task->finished_count,
                           task->piece_count);
        return;
    }
    //  The whole-content digest was checked by the fetcher, in order, while the pieces
    //  arrived; hashing the file again here would stall this actor for ~0.5 s per GB. Only
    //  this host may complete a task (zf_storage_may_change), and every piece is checked on each
    //  read.
    task->complete = true;
    task->meta_dirty = true;
    task->accessed_ms = zf_storage_now_ms (self);
    zf_info (self->name, "complete task=%s bytes=%" PRIu64, task->id, task->content_length);
    zf_stat_watch_notify (self->watch, task->id, UINT64_MAX); //  "complete" is news too
    zf_storage_update_gauges (self);
    if (durable) //  answered once the record that says so is on disk
        zf_storage_answer_when_claimed (self, ret, task, UINT64_MAX, NULL);
    else {
        zf_storage_reply_task (self, ret, task);
        zf_store_io_commit (self->io);
    }
}

static void s_handle_remove (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    if (!zf_storage_may_change (self, request))
        return;
    const zf_msg_storage_remove_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    if (!zf_store_id_valid (body->task_id)) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "task_id",
                            "task_id must be 64 lowercase hex characters");
        return;
    }
    zf_store_task_t *task = zf_store_find (self->store, body->task_id);
    if (task) { //  absent is success too: a resent remove must not fail
        zf_storage_remove_task (self, &task);
        zf_info (self->name, "removed task=%s", body->task_id);
        zf_storage_update_gauges (self);
    }
    s_reply_removed (self, ret, body->task_id);
}

//  Tests age tasks this way instead of sleeping through busy_grace (storage.shift_clock).
static void s_handle_shift_clock (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    if (!zf_storage_may_change (self, request))
        return;
    const zf_msg_storage_shift_clock_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    if ((int64_t) body->offset_ms < self->clock_offset_ms) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "offset_ms",
                            "the clock runs %" PRId64 " ms ahead already; it never goes back",
                            self->clock_offset_ms);
        return;
    }
    if ((int64_t) body->offset_ms != self->clock_offset_ms)
        zf_notice (self->name, "clock shifted offset_ms=%" PRIu64 " by=%s", body->offset_ms,
                   request->env.from);
    self->clock_offset_ms = (int64_t) body->offset_ms;
    zf_msg_storage_clock_t clock = {.now_ms = (uint64_t) zf_storage_now_ms (self),
                                    .offset_ms = body->offset_ms};
    zf_bus_reply (self->bus, ret, &zf_msg_storage_clock, &clock, NULL);
}

//  How full the cache is (storage.measure), for the join actor's keep-alive: anyone may ask.
static void s_handle_measure (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    zf_storage_t *self = arg;
    uint64_t used = 0, capacity = 0;
    if (!zf_storage_usage (self, &used, &capacity)) {
        zf_bus_reply_error (self->bus, &request->return_to, ZF_E_IO, "",
                            "cannot measure the cache directory %s", zf_store_dir (self->store));
        return;
    }
    zf_msg_storage_usage_t usage = {.bytes = zf_store_bytes (self->store),
                                    .tasks = zf_store_task_count (self->store),
                                    .used = used,
                                    .capacity = capacity};
    zf_bus_reply (self->bus, &request->return_to, &zf_msg_storage_usage, &usage, NULL);
}

void zf_storage_tasks_register (zf_storage_t *self)
{
    zf_bus_handle (self->bus, ZF_MSG_STORAGE_OPEN, s_handle_open, self);
    zf_bus_handle (self->bus, ZF_MSG_STORAGE_STAT, s_handle_stat, self);
    zf_bus_handle (self->bus, ZF_MSG_STORAGE_COMPLETE, s_handle_complete, self);
    zf_bus_handle (self->bus, ZF_MSG_STORAGE_REMOVE, s_handle_remove, self);
    zf_bus_handle (self->bus, ZF_MSG_STORAGE_SHIFT_CLOCK, s_handle_shift_clock, self);
    zf_bus_handle (self->bus, ZF_MSG_STORAGE_MEASURE, s_handle_measure, self);
}
