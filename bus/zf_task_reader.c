/*  zf_task_reader.c — reads a task as it arrives (see zf_task_reader.h for the conversation and
    its error rules): the reader's life and events, its requests and timer, and the pump that
    settles, delivers pieces in order, asks for more and finishes. What the fetcher and storage
    say is taken in zf_task_reader_fetcher.c and zf_task_reader_storage.c
    (zf_task_reader_internal.h). */
#include "zf_task_reader_internal.h"
#include "zf_log.h"

//  ---------------------------------------------------------------------------------------------
//  Life: a reader is freed when its caller let it go, no callback runs and no reply is due.

static void s_slot_clear (zf_task_reader_slot_t *slot)
{
    zframe_destroy (&slot->frame);
    zf_free (slot->path);
    slot->path = NULL;
    slot->ready = false;
}

static void s_unregister (zf_task_reader_t *self)
{
    if (!self->registered)
        return;
    self->registered = false;
    zlistx_t *readers = zhashx_lookup (self->set->by_task, self->task_id);
    if (!readers)
        return;
    void *handle = zlistx_find (readers, self);
    if (handle)
        zlistx_delete (readers, handle);
    if (zlistx_size (readers) == 0)
        zhashx_delete (self->set->by_task, self->task_id);
}

static void s_stop_timer (zf_task_reader_t *self)
{
    if (self->timer_id >= 0)
        zf_timers_end (self->set->timers, self->timer_id);
    self->timer_id = -1;
}

static void s_free (zf_task_reader_t *self)
{
    s_unregister (self);
    s_stop_timer (self);
    for (size_t index = 0; index < ZF_TASK_READER_WINDOW_MAX; index++)
        s_slot_clear (&self->slots[index]);
    zframe_destroy (&self->part_frame);
    zframe_destroy (&self->first_frame);
    if (self->has_fetch)
        zf_schema_clear (zf_msg_task_fetch.body, &self->fetch);
    zf_free (self->bitmap);
    zf_free (self);
}

static void s_free_if_unused (zf_task_reader_t *self)
{
    if (self->callback || self->emitting > 0 || self->pending > 0)
        return;
    zlistx_delete (self->set->all, self->handle);
}

//  The reader a reply (or an event delivery) was due to, or NULL when it was let go: then it
//  is freed once nothing more is due.
zf_task_reader_t *zf_task_reader_reply (void *arg)
{
    zf_task_reader_t *self = arg;
    ZF_ASSERT (self->pending > 0);
    self->pending--;
    if (self->callback)
        return self;
    s_free_if_unused (self);
    return NULL;
}

//  Calls the caller; false when it let the reader go meanwhile (the reader may be freed: the
//  caller of zf_task_reader_emit returns at once).
bool zf_task_reader_emit (zf_task_reader_t *self, zf_task_reader_event_t *event, bool *taken)
{
    if (!self->callback)
        return false;
    self->emitting++;
    bool result = self->callback (self, event, self->arg);
    self->emitting--;
    if (taken)
        *taken = result;
    if (self->callback)
        return true;
    s_free_if_unused (self);
    return false;
}

void zf_task_reader_fail (zf_task_reader_t *self, zf_task_reader_failure_t failure,
                          const char *code, const char *fmt, ...)
{
    if (self->phase == ZF_TASK_READER_PHASE_OVER)
        return;
    self->phase = ZF_TASK_READER_PHASE_OVER;
    s_stop_timer (self);
    char message[1200];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    zf_task_reader_event_t event = {
        .type = ZF_TASK_READER_FAILED,
        .failure = failure,
        .task_error = failure == ZF_TASK_READER_TASK ? zf_task_error_of (code) : ZF_TASK_ERROR_NONE,
        .reply_code = failure == ZF_TASK_READER_TASK ? ZF_CODE_NONE : zf_code_of (code),
        .code = code,
        .message = message,
        .answered = self->answered,
        .status = self->has_status ? &self->status : NULL};
    zf_task_reader_emit (self, &event, NULL);
}

//  A request that failed locally (ZF_E_TIMEOUT, ZF_E_UNREACHABLE, a full queue).
void zf_task_reader_fail_bus (zf_task_reader_t *self, zf_status_t status, const zf_error_t *err,
                              const char *request, const char *actor)
{
    if (self->phase == ZF_TASK_READER_PHASE_OVER)
        return;
    self->phase = ZF_TASK_READER_PHASE_OVER;
    s_stop_timer (self);
    zf_task_reader_event_t event = {.type = ZF_TASK_READER_FAILED,
                                    .failure = ZF_TASK_READER_UNREACHABLE,
                                    .bus_status = status,
                                    .code = zf_status_name (status),
                                    .message = err && *err->message ? err->message
                                                                    : zf_status_name (status),
                                    .request = request,
                                    .actor = actor,
                                    .answered = self->answered};
    zf_task_reader_emit (self, &event, NULL);
}

//  ---------------------------------------------------------------------------------------------
//  Requests

//  Every request is patient (bus/zf_bus.h): a daemon that is connected but slow to answer
//  (starved of CPU, its disk throttled) is waited for, however long it takes; the timeouts
//  bound only how long it may be unreachable (not running, or gone: ZMTP heartbeats tell).
zf_bus_call_t zf_task_reader_call (zf_task_reader_t *self)
{
    const zf_task_readers_options_t *options = &self->set->options;
    int64_t timeout = options->timeout_ms;
    if (self->answered && options->later_timeout_ms > timeout)
        timeout = options->later_timeout_ms;
    return (zf_bus_call_t){.timeout_ms = timeout, .retries = 0, .patient = true};
}

bool zf_task_reader_request (zf_task_reader_t *self, const char *to, const zf_msg_desc_t *desc,
                             const void *body, zf_bus_call_t call, zf_bus_reply_fn *callback,
                             void *arg, bool *pending_flag)
{
    zf_error_t err;
    zf_status_t status =
        zf_bus_request (self->set->bus, to, desc, body, NULL, call, callback, arg, &err);
    if (status != ZF_OK) {
        zf_task_reader_fail_bus (self, status, &err, desc->type, to);
        return false;
    }
    self->pending++;
    if (pending_flag)
        *pending_flag = true;
    return true;
}

//  ---------------------------------------------------------------------------------------------
//  Timer: busy retries, a storage that does not hold storage.stat, a query asked again.

static int s_on_wake (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_task_reader_t *self = arg;
    self->timer_id = -1;
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return 0;
    for (size_t index = 0; index < ZF_TASK_READER_WINDOW_MAX; index++) {
        zf_task_reader_slot_t *slot = &self->slots[index];
        if (slot->retry && !self->refetch_wanted && !self->restart_wanted
            && !zf_task_reader_request_piece (self, slot))
            return 0;
    }
    if (self->storage_complete && self->wait_complete && !self->fetcher_complete)
        zf_task_reader_send_query (self);
    zf_task_reader_pump (self);
    return 0;
}

void zf_task_reader_wake_after (zf_task_reader_t *self, int64_t delay_ms)
{
    if (self->timer_id >= 0)
        return;
    self->timer_id = zf_timers_start (self->set->timers, (size_t) (delay_ms > 0 ? delay_ms : 1), 1,
                                      s_on_wake, self);
}

//  ---------------------------------------------------------------------------------------------
//  The window

void zf_task_reader_set_window (zf_task_reader_t *self)
{
    const zf_task_readers_options_t *options = &self->set->options;
    uint64_t window;
    if (self->locate)
        window = options->locate_window;
    else {
        window = self->piece_length ? options->read_window_bytes / self->piece_length : 0;
        if (window < options->read_window_min)
            window = options->read_window_min;
    }
    if (window < 1)
        window = 1;
    self->window = window > ZF_TASK_READER_WINDOW_MAX ? ZF_TASK_READER_WINDOW_MAX : window;
}

bool zf_task_reader_stored (const zf_task_reader_t *self, uint64_t piece)
{
    if (self->storage_complete)
        return true;
    return piece / 8 < self->bitmap_size && (self->bitmap[piece / 8] >> (piece % 8)) & 1;
}

bool zf_task_reader_window_has_room (const zf_task_reader_t *self)
{
    return self->next_request < self->read_end
           && self->next_request - self->next_deliver < self->window;
}

uint64_t zf_task_reader_piece_size (const zf_task_reader_t *self, uint64_t piece)
{
    if (piece + 1 == self->piece_count)
        return self->content_length - piece * self->piece_length;
    return self->piece_length;
}

//  ---------------------------------------------------------------------------------------------
//  The pump: settle, deliver in order, ask for more, finish

//  A piece went missing, or the layout changed: once every read in flight has ended, drop
//  what arrived and has not been taken, ask the fetcher again (missing pieces) or start over
//  with the new layout. False when there is nothing more to do now.
static bool s_settle (zf_task_reader_t *self)
{
    for (size_t index = 0; index < ZF_TASK_READER_WINDOW_MAX; index++)
        if (self->slots[index].requested)
            return false;
    if (self->peek_pending)
        return false;
    for (size_t index = 0; index < ZF_TASK_READER_WINDOW_MAX; index++) {
        s_slot_clear (&self->slots[index]);
        self->slots[index].retry = false;
    }
    zframe_destroy (&self->part_frame); //  not delivered: asked again
    zframe_destroy (&self->first_frame);
    self->no_peek = false;
    bool was_complete = self->fetcher_complete || self->storage_complete;
    zf_free (self->bitmap);
    self->bitmap = NULL;
    self->bitmap_size = 0;
    self->stored_count = 0;
    self->storage_complete = false;
    self->fetcher_complete = false;
    self->next_request = self->next_deliver;
    if (self->restart_wanted) {
        self->restart_wanted = false;
        self->refetch_wanted = false;
        self->layout_known = false;
        self->reading = false;
        self->next_request = self->next_deliver = self->read_end = 0;
        self->part_piece = self->part_from = 0;
        return zf_task_reader_take_layout (self); //  LAYOUT, restart set: the caller reads again
    }
    self->refetch_wanted = false;
    //  A complete task that lost a piece is fetched again; a running one may have failed (its
    //  pieces removed): the fetcher says which first.
    if (was_complete)
        return zf_task_reader_send_fetch (self);
    self->recheck = true;
    zf_task_reader_send_query (self);
    return true;
}

//  Hands the caller the pieces that are next in order; false when the reader stopped.
static bool s_deliver (zf_task_reader_t *self)
{
    if (!zf_task_reader_deliver_partial (self))
        return false;
    while (!self->paused && self->next_deliver < self->next_request
           && self->phase == ZF_TASK_READER_PHASE_FOLLOW) {
        zf_task_reader_slot_t *slot = &self->slots[self->next_deliver % ZF_TASK_READER_WINDOW_MAX];
        if (!slot->ready)
            break;
        zf_task_reader_event_t event = {.type = ZF_TASK_READER_PIECE,
                                        .piece = slot->piece,
                                        .offset = slot->piece * self->piece_length,
                                        .size = zf_task_reader_piece_size (self, slot->piece),
                                        .path = slot->path,
                                        .file_offset = slot->file_offset,
                                        .frame = slot->frame ? &slot->frame : NULL};
        bool taken = true;
        if (!zf_task_reader_emit (self, &event, &taken))
            return false;
        s_slot_clear (slot);
        if (!taken) { //  the located file let the caller down: this piece and the rest by bus
            self->locate = false;
            zf_task_reader_set_window (self);
            return zf_task_reader_request_piece (self, slot);
        }
        self->next_deliver++;
    }
    return true;
}

void zf_task_reader_pump (zf_task_reader_t *self)
{
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW || !self->callback)
        return;
    if ((self->refetch_wanted || self->restart_wanted) && !s_settle (self))
        return;
    if (self->phase != ZF_TASK_READER_PHASE_FOLLOW)
        return;
    if (self->layout_known && self->reading) {
        if (!s_deliver (self))
            return;
        while (zf_task_reader_window_has_room (self)
               && zf_task_reader_stored (self, self->next_request)) {
            zf_task_reader_slot_t *slot =
                &self->slots[self->next_request % ZF_TASK_READER_WINDOW_MAX];
            ZF_ASSERT (!slot->requested && !slot->ready);
            slot->piece = self->next_request++;
            slot->busy_count = 0;
            if (!zf_task_reader_request_piece (self, slot))
                return;
        }
        zf_task_reader_peek (self);
        if (self->phase != ZF_TASK_READER_PHASE_FOLLOW)
            return;
        if (self->next_deliver == self->read_end
            && (!self->wait_complete || self->fetcher_complete)) {
            self->phase = ZF_TASK_READER_PHASE_OVER;
            s_stop_timer (self);
            zf_task_reader_event_t event = {.type = ZF_TASK_READER_DONE,
                                            .status = self->has_status ? &self->status : NULL};
            zf_task_reader_emit (self, &event, NULL);
            return;
        }
        //  Every piece taken, storage has them all, the fetcher's word is still due (a caller
        //  that started waiting for it late, zf_task_reader_wait_complete): ask it.
        if (self->next_deliver == self->read_end && self->wait_complete && self->storage_complete
            && self->timer_id < 0)
            zf_task_reader_send_query (self); //  (with a wake due, the wake asks)
    }
    zf_task_reader_stat (self);
}

//  ---------------------------------------------------------------------------------------------
//  Public

static void s_reader_free (void **item)
{
    s_free (*item);
    *item = NULL;
}

static void s_readers_list_free (void **item)
{
    zlistx_destroy ((zlistx_t **) item);
}

zf_task_readers_t *zf_task_readers_new (zf_bus_t *bus, zloop_t *loop, const char *name,
                                        const zf_task_readers_options_t *options)
{
    ZF_ASSERT (bus && loop && name && options && options->fetcher && options->storage);
    zf_task_readers_t *self = zf_calloc (1, sizeof *self);
    self->bus = bus;
    self->timers = zf_timers_new (loop);
    self->name = zf_strdup (name);
    self->fetcher = zf_strdup (options->fetcher);
    self->storage = zf_strdup (options->storage);
    self->options = *options;
    self->options.fetcher = self->fetcher;
    self->options.storage = self->storage;
    if (self->options.stat_wait_ms <= 0)
        self->options.stat_wait_ms = 1000;
    if (self->options.poll_ms <= 0)
        self->options.poll_ms = 50;
    self->by_task = zhashx_new ();
    zhashx_set_destructor (self->by_task, s_readers_list_free);
    self->all = zlistx_new ();
    zlistx_set_destructor (self->all, s_reader_free);
    //  Without an events endpoint for the fetcher (another process that publishes only
    //  inproc), readers learn how a task ended from task.query when storage goes quiet.
    zf_error_t err;
    if (zf_bus_subscribe (bus, self->fetcher, "task.ended", zf_task_reader_on_ended, self, &err)
        != ZF_OK)
        zf_debug (name, "task reader: no task.ended events from %s (%s): asking instead",
                  self->fetcher, err.message);
    return self;
}

void zf_task_readers_destroy (zf_task_readers_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_task_readers_t *self = *self_p;
    if (!self)
        return;
    zlistx_destroy (&self->all); //  the readers first: they unregister from by_task
    zhashx_destroy (&self->by_task);
    zf_timers_destroy (&self->timers);
    zf_free (self->name);
    zf_free (self->fetcher);
    zf_free (self->storage);
    zf_free (self);
    *self_p = NULL;
}

zf_task_reader_t *zf_task_reader_new (zf_task_readers_t *set, bool locate, bool wait_complete,
                                      zf_task_reader_fn *callback, void *arg)
{
    ZF_ASSERT (set && callback);
    zf_task_reader_t *self = zf_calloc (1, sizeof *self);
    self->set = set;
    self->callback = callback;
    self->arg = arg;
    self->locate = locate;
    self->wait_complete = wait_complete;
    self->timer_id = -1;
    self->phase = ZF_TASK_READER_PHASE_FETCH;
    self->stat_held = true; //  no storage.stat yet: the first goes at once
    for (size_t index = 0; index < ZF_TASK_READER_WINDOW_MAX; index++)
        self->slots[index].reader = self;
    self->handle = zlistx_add_end (set->all, self);
    return self;
}

void zf_task_reader_destroy (zf_task_reader_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_task_reader_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->callback = NULL;
    self->phase = ZF_TASK_READER_PHASE_OVER;
    s_stop_timer (self);
    s_unregister (self);
    s_free_if_unused (self);
}

bool zf_task_reader_start (zf_task_reader_t *self, const zf_msg_task_fetch_t *fetch,
                           zf_error_t *err)
{
    ZF_ASSERT (self && fetch && fetch->url && self->phase == ZF_TASK_READER_PHASE_FETCH
               && !self->has_fetch);
    if (zf_schema_copy (zf_msg_task_fetch.body, fetch, &self->fetch, err) != ZF_OK)
        return false;
    self->has_fetch = true;
    zf_status_t status =
        zf_bus_request (self->set->bus, self->set->fetcher, &zf_msg_task_fetch, &self->fetch, NULL,
                        zf_task_reader_call (self), zf_task_reader_on_fetch, self, err);
    if (status != ZF_OK)
        return false;
    self->pending++;
    self->fetch_pending = true;
    zf_task_reader_peek_first (self);
    return true;
}

void zf_task_reader_read (zf_task_reader_t *self, uint64_t first, uint64_t count)
{
    ZF_ASSERT (self && self->layout_known && !self->reading);
    ZF_ASSERT (first + count <= self->piece_count || count == 0);
    self->reading = true;
    self->next_request = self->next_deliver = first;
    self->read_end = first + count;
    if (!self->emitting)
        zf_task_reader_pump (self);
}

void zf_task_reader_wait_complete (zf_task_reader_t *self)
{
    ZF_ASSERT (self);
    self->wait_complete = true;
}

void zf_task_reader_set_peek (zf_task_reader_t *self, bool peek)
{
    ZF_ASSERT (self && self->phase == ZF_TASK_READER_PHASE_FETCH);
    self->peek = peek;
}

void zf_task_reader_pause (zf_task_reader_t *self, bool paused)
{
    ZF_ASSERT (self);
    bool resumed = self->paused && !paused;
    self->paused = paused;
    if (resumed && !self->emitting)
        zf_task_reader_pump (self);
}

const char *zf_task_reader_task_id (zf_task_reader_t *self)
{
    ZF_ASSERT (self);
    return self->task_id;
}
