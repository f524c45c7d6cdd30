/*  zf_task_reader.c — reads a task as it arrives (see zf_task_reader.h for the conversation and
    its error rules). */
#include "zf_task_reader.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_task_id.h"
#include <openssl/evp.h>

#define BUSY_RETRY_MS    100
#define BUSY_RETRIES_MAX 300 //  "busy" answers for one piece before giving up (~30 s)
#define REFETCH_MAX      3   //  times a reader asks the fetcher again for pieces storage lost
#define SHA256_SIZE      32

typedef enum {
    PHASE_FETCH,  //  the first task.fetch is out: nothing is known yet
    PHASE_FOLLOW, //  the fetcher knows the task: we watch storage and read pieces
    PHASE_OVER,   //  DONE or FAILED was emitted
} reader_phase_t;

//  One piece of the window: piece p uses slot p % ZF_TASK_READER_WINDOW_MAX.
typedef struct {
    zf_task_reader_t *reader;
    uint64_t piece;
    bool requested; //  a piece.locate or piece.read is out
    bool ready;     //  answered: path or frame holds it until the caller takes it
    bool retry;     //  storage was busy: asked again at the next wake
    int busy_count;
    zframe_t *frame;
    char *path;
    uint64_t file_offset;
} slot_t;

struct zf_task_readers_s {
    zf_bus_t *bus;
    zloop_t *loop;
    char *name;
    char *fetcher, *storage;
    zf_task_readers_options_t options;
    zhashx_t *by_task;   //  task id -> zlistx_t of readers (not owned)
    zlistx_t *all;       //  every reader, let go or not (owned)
    bool locate_refused; //  storage does not locate pieces for us: everyone reads over the bus
};

struct zf_task_reader_s {
    zf_task_readers_t *set;
    void *handle;                //  in set->all
    zf_task_reader_fn *callback; //  NULL once let go
    void *arg;
    bool locate, wait_complete;
    int emitting; //  callbacks running: freeing waits for them
    int pending;  //  bus replies (and event deliveries) still due

    zf_msg_task_fetch_t fetch; //  the request (a copy), kept to ask again
    bool has_fetch;

    reader_phase_t phase;
    bool answered;
    bool fetch_pending, query_pending, stat_pending;
    bool registered; //  in set->by_task under task_id
    char task_id[ZF_TASK_ID_SIZE + 1];

    //  the fetcher's last word
    zf_msg_task_status_t status;
    bool has_status;
    char state[17], error_code[33], error_message[1025];
    bool fetcher_complete;

    //  the layout pieces are read with, fixed by the first status that states it
    bool layout_known;
    int layouts_given; //  LAYOUT events so far: a second one restarts
    uint64_t content_length, piece_length, piece_count;

    //  storage's word: which pieces are finished
    uint8_t *bitmap;
    size_t bitmap_size;
    uint64_t stored_count;
    bool storage_complete;
    bool stat_not_held; //  the last storage.stat came back at once without news
    int64_t stat_sent_ms;

    //  the range being read
    bool reading, paused;
    uint64_t next_request, next_deliver, read_end;
    size_t window;
    slot_t slots[ZF_TASK_READER_WINDOW_MAX];
    bool refetch_wanted, restart_wanted;
    bool recheck; //  a piece went missing while the task ran: how is it? (task.query)

    //  Streaming the origin's bytes (piece.peek) of the piece to deliver next while storage
    //  does not hold it yet: part_from bytes of piece part_piece went to the caller; an
    //  answer that came while paused waits in part_frame.
    bool peek, peek_pending;
    uint64_t part_piece, part_from;
    zframe_t *part_frame;
    uint64_t part_frame_from;
    bool no_peek; //  the fetcher does not fill piece no_peek_piece: storage gives it
    uint64_t no_peek_piece;
    int refetches;
    int timer_id;
};

static void s_pump (zf_task_reader_t *self);

//  ---------------------------------------------------------------------------------------------
//  Life: a reader is freed when its caller let it go, no callback runs and no reply is due.

static void s_slot_clear (slot_t *slot)
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
        zloop_timer_end (self->set->loop, self->timer_id);
    self->timer_id = -1;
}

static void s_free (zf_task_reader_t *self)
{
    s_unregister (self);
    s_stop_timer (self);
    for (size_t index = 0; index < ZF_TASK_READER_WINDOW_MAX; index++)
        s_slot_clear (&self->slots[index]);
    zframe_destroy (&self->part_frame);
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
static zf_task_reader_t *s_reply (void *arg)
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
//  caller of s_emit returns at once).
static bool s_emit (zf_task_reader_t *self, zf_task_reader_event_t *event, bool *taken)
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

static void s_fail (zf_task_reader_t *self, zf_task_reader_failure_t failure, const char *code,
                    const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));

static void s_fail (zf_task_reader_t *self, zf_task_reader_failure_t failure, const char *code,
                    const char *fmt, ...)
{
    if (self->phase == PHASE_OVER)
        return;
    self->phase = PHASE_OVER;
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
    s_emit (self, &event, NULL);
}

//  A request that failed locally (ZF_E_TIMEOUT, ZF_E_UNREACHABLE, a full queue).
static void s_fail_bus (zf_task_reader_t *self, zf_status_t status, const zf_error_t *err,
                        const char *request, const char *actor)
{
    if (self->phase == PHASE_OVER)
        return;
    self->phase = PHASE_OVER;
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
    s_emit (self, &event, NULL);
}

//  ---------------------------------------------------------------------------------------------
//  Requests

//  Every request is patient (bus/zf_bus.h): a daemon that is connected but slow to answer
//  (starved of CPU, its disk throttled) is waited for, however long it takes; the timeouts
//  bound only how long it may be unreachable (not running, or gone: ZMTP heartbeats tell).
static zf_bus_call_t s_call (zf_task_reader_t *self)
{
    const zf_task_readers_options_t *options = &self->set->options;
    int64_t timeout = options->timeout_ms;
    if (self->answered && options->later_timeout_ms > timeout)
        timeout = options->later_timeout_ms;
    return (zf_bus_call_t){.timeout_ms = timeout, .retries = 0, .patient = true};
}

static bool s_request (zf_task_reader_t *self, const char *to, const zf_msg_desc_t *desc,
                       const void *body, zf_bus_call_t call, zf_bus_reply_fn *callback, void *arg,
                       bool *pending_flag)
{
    zf_error_t err;
    zf_status_t status =
        zf_bus_request (self->set->bus, to, desc, body, NULL, call, callback, arg, &err);
    if (status != ZF_OK) {
        s_fail_bus (self, status, &err, desc->type, to);
        return false;
    }
    self->pending++;
    if (pending_flag)
        *pending_flag = true;
    return true;
}

static void s_on_fetch (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);
static void s_on_query (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);

static bool s_send_fetch (zf_task_reader_t *self)
{
    return s_request (self, self->set->fetcher, &zf_msg_task_fetch, &self->fetch, s_call (self),
                      s_on_fetch, self, &self->fetch_pending);
}

static void s_send_query (zf_task_reader_t *self)
{
    if (self->query_pending || self->fetch_pending || !self->task_id[0]
        || self->phase != PHASE_FOLLOW)
        return;
    zf_msg_task_query_t query = {.task_id = self->task_id};
    s_request (self, self->set->fetcher, &zf_msg_task_query, &query, s_call (self), s_on_query,
               self, &self->query_pending);
}

//  ---------------------------------------------------------------------------------------------
//  Timer: busy retries, a storage that does not hold storage.stat, a query asked again.

static bool s_request_piece (zf_task_reader_t *self, slot_t *slot);

static int s_on_wake (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_task_reader_t *self = arg;
    self->timer_id = -1;
    if (self->phase != PHASE_FOLLOW)
        return 0;
    for (size_t index = 0; index < ZF_TASK_READER_WINDOW_MAX; index++) {
        slot_t *slot = &self->slots[index];
        if (slot->retry && !self->refetch_wanted && !self->restart_wanted
            && !s_request_piece (self, slot))
            return 0;
    }
    if (self->storage_complete && self->wait_complete && !self->fetcher_complete)
        s_send_query (self);
    s_pump (self);
    return 0;
}

static void s_wake_after (zf_task_reader_t *self, int64_t delay_ms)
{
    if (self->timer_id >= 0)
        return;
    self->timer_id =
        zloop_timer (self->set->loop, (size_t) (delay_ms > 0 ? delay_ms : 1), 1, s_on_wake, self);
}

//  ---------------------------------------------------------------------------------------------
//  The fetcher's word

//  A task id is 64 lowercase hex characters (zf_task_id.h).
static bool s_task_id_valid (const char *task_id)
{
    if (!task_id || strlen (task_id) != ZF_TASK_ID_SIZE)
        return false;
    return strspn (task_id, "0123456789abcdef") == ZF_TASK_ID_SIZE;
}

static void s_register (zf_task_reader_t *self, const char *task_id)
{
    if (self->registered || !s_task_id_valid (task_id))
        return;
    zf_strlcpy (self->task_id, task_id, sizeof self->task_id);
    zlistx_t *readers = zhashx_lookup (self->set->by_task, task_id);
    if (!readers) {
        readers = zlistx_new ();
        zhashx_insert (self->set->by_task, task_id, readers);
    }
    zlistx_add_end (readers, self);
    self->registered = true;
}

static void s_set_window (zf_task_reader_t *self)
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

//  Takes the layout the status states, once it states one: while the task runs when the
//  origin told the length; always once complete. False when the reader stopped.
static bool s_take_layout (zf_task_reader_t *self)
{
    const zf_msg_task_status_t *status = &self->status;
    bool complete = streq (status->state, "complete");
    if (!complete && (status->piece_length == 0 || status->content_length == 0))
        return true;
    uint64_t count = 0;
    if (status->content_length > 0) {
        if (status->piece_length == 0
            || status->piece_count
                   != (status->content_length + status->piece_length - 1) / status->piece_length) {
            s_fail (self, ZF_TASK_READER_PROTOCOL, "invalid",
                    "the fetcher reported an inconsistent task: %" PRIu64 " bytes in %" PRIu64
                    " pieces of %" PRIu64,
                    status->content_length, status->piece_count, status->piece_length);
            return false;
        }
        count = status->piece_count;
    }
    if (self->layout_known) {
        if (self->content_length != status->content_length
            || (count > 0 && self->piece_length != status->piece_length))
            self->restart_wanted = true; //  s_settle starts over once the reads end
        return true;
    }
    self->layout_known = true;
    self->content_length = status->content_length;
    self->piece_length = status->piece_length;
    self->piece_count = count;
    s_set_window (self);
    zf_task_reader_event_t event = {.type = ZF_TASK_READER_LAYOUT,
                                    .content_length = self->content_length,
                                    .piece_length = self->piece_length,
                                    .piece_count = self->piece_count,
                                    .restart = self->layouts_given > 0};
    self->layouts_given++;
    return s_emit (self, &event, NULL);
}

//  A task.status (reply or task.ended event); false when the reader stopped.
static bool s_take_status (zf_task_reader_t *self, const zf_msg_task_status_t *status)
{
    if (self->phase == PHASE_OVER)
        return false;
    s_register (self, status->task_id);
    self->status = *status;
    self->status.task_id = self->task_id;
    zf_strlcpy (self->state, status->state ? status->state : "", sizeof self->state);
    zf_strlcpy (self->error_code, status->error_code ? status->error_code : "",
                sizeof self->error_code);
    zf_strlcpy (self->error_message, status->error_message ? status->error_message : "",
                sizeof self->error_message);
    self->status.state = self->state;
    self->status.error_code = self->error_code;
    self->status.error_message = self->error_message;
    self->has_status = true;
    zf_task_reader_event_t event = {.type = ZF_TASK_READER_STATUS, .status = &self->status};
    if (!s_emit (self, &event, NULL))
        return false;
    if (streq (self->state, "failed")) {
        s_fail (self, ZF_TASK_READER_TASK, *self->error_code ? self->error_code : "failed", "%s",
                *self->error_message ? self->error_message : "no details");
        return false;
    }
    bool complete = streq (self->state, "complete");
    if (self->recheck) {
        self->recheck = false;
        if (complete) //  complete, but storage lost a piece: have the fetcher complete it again
            return s_send_fetch (self);
    }
    self->fetcher_complete = complete;
    if (complete)
        self->storage_complete = true; //  every piece can be read
    return s_take_layout (self);
}

static void s_on_fetch (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_t *self = s_reply (arg);
    if (!self)
        return;
    self->fetch_pending = false;
    if (status == ZF_E_REMOTE) {
        self->answered = true;
        const zf_msg_error_t *error = reply->env.body;
        s_fail (self, ZF_TASK_READER_REFUSED, error->code, "%s", err->message);
        return;
    }
    if (status != ZF_OK) {
        s_fail_bus (self, status, err, "task.fetch", self->set->fetcher);
        return;
    }
    self->answered = true;
    if (self->phase == PHASE_FETCH)
        self->phase = PHASE_FOLLOW;
    if (s_take_status (self, reply->env.body))
        s_pump (self);
}

static void s_on_query (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_t *self = s_reply (arg);
    if (!self)
        return;
    self->query_pending = false;
    if (self->phase != PHASE_FOLLOW)
        return;
    if (status == ZF_E_REMOTE) {
        const zf_msg_error_t *error = reply->env.body;
        if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND) { //  the fetcher forgot it
            if (!self->fetch_pending)
                s_send_fetch (self);
            return;
        }
        s_fail (self, ZF_TASK_READER_REFUSED, error->code, "%s", err->message);
        return;
    }
    if (status != ZF_OK) {
        s_fail_bus (self, status, err, "task.query", self->set->fetcher);
        return;
    }
    if (!s_take_status (self, reply->env.body))
        return;
    //  storage completed the task a moment before the fetcher heard of it: ask again soon
    if (self->storage_complete && self->wait_complete && !self->fetcher_complete)
        s_wake_after (self, self->set->options.poll_ms);
    s_pump (self);
}

//  task.ended from the fetcher: every reader of the task takes it like a task.query answer.
static void s_on_ended (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    zf_task_readers_t *set = arg;
    const zf_msg_task_ended_t *ended = event->env.body;
    zlistx_t *readers = zhashx_lookup (set->by_task, ended->task_id);
    if (!readers)
        return;
    //  A callback may let readers go, even others of this task: each is held as if a reply
    //  were due until its turn.
    size_t count = zlistx_size (readers);
    zf_task_reader_t **snapshot = zf_calloc (count, sizeof *snapshot);
    size_t index = 0;
    for (zf_task_reader_t *reader = zlistx_first (readers); reader && index < count;
         reader = zlistx_next (readers)) {
        reader->pending++;
        snapshot[index++] = reader;
    }
    zf_msg_task_status_t status = {.task_id = ended->task_id,
                                   .state = ended->state,
                                   .content_length = ended->content_length,
                                   .piece_length = ended->piece_length,
                                   .piece_count = ended->piece_count,
                                   .finished_count = ended->finished_count,
                                   .bytes_from_source = ended->bytes_from_source,
                                   .bytes_from_parents = ended->bytes_from_parents,
                                   .error_code = ended->error_code,
                                   .error_message = ended->error_message};
    for (size_t position = 0; position < index; position++) {
        zf_task_reader_t *self = s_reply (snapshot[position]);
        if (self && self->phase == PHASE_FOLLOW && s_take_status (self, &status))
            s_pump (self);
    }
    zf_free (snapshot);
}

//  ---------------------------------------------------------------------------------------------
//  Storage's word: storage.stat, held until a piece lands

static void s_on_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg);

static bool s_stored (const zf_task_reader_t *self, uint64_t piece)
{
    if (self->storage_complete)
        return true;
    return piece / 8 < self->bitmap_size && (self->bitmap[piece / 8] >> (piece % 8)) & 1;
}

static bool s_window_has_room (const zf_task_reader_t *self)
{
    return self->next_request < self->read_end
           && self->next_request - self->next_deliver < self->window;
}

//  Asks storage which pieces are finished when that is what we wait for: the layout (storage
//  holds the question until the task is opened), the next piece of the window, or completion.
static void s_stat (zf_task_reader_t *self)
{
    if (self->phase != PHASE_FOLLOW || !self->task_id[0] || self->stat_pending
        || self->storage_complete || self->refetch_wanted || self->restart_wanted)
        return;
    bool wanted =
        !self->layout_known
        || (self->reading && s_window_has_room (self) && !s_stored (self, self->next_request))
        || (self->wait_complete && self->reading && self->next_request == self->read_end);
    if (!wanted)
        return;
    const zf_task_readers_options_t *options = &self->set->options;
    int64_t now = zf_clock_mono_ms ();
    if (self->stat_not_held && now - self->stat_sent_ms < options->poll_ms) {
        s_wake_after (self, options->poll_ms - (now - self->stat_sent_ms));
        return;
    }
    zf_bus_call_t call = s_call (self);
    int64_t base = call.timeout_ms > 0 ? call.timeout_ms : 5000;
    zf_msg_storage_stat_t stat = {.task_id = self->task_id,
                                  .wait_ms = (uint64_t) options->stat_wait_ms,
                                  .known_finished = self->stored_count,
                                  .bitmap_only = true,
                                  //  without the layout, news is that the task was opened
                                  //  (it may have been before this question came)
                                  .wait_open = !self->layout_known};
    self->stat_sent_ms = now;
    s_request (
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
    zf_task_reader_t *self = s_reply (arg);
    if (!self)
        return;
    self->stat_pending = false;
    if (self->phase != PHASE_FOLLOW)
        return;
    int64_t held_ms = zf_clock_mono_ms () - self->stat_sent_ms;
    bool held = held_ms >= self->set->options.stat_wait_ms / 2;
    if (status == ZF_OK) {
        self->answered = true;
        const zf_msg_storage_task_t *task = reply->env.body;
        uint64_t known = self->stored_count;
        bool took = s_take_bitmap (self, task, zmsg_first (reply->raw));
        bool news = took && self->stored_count != known;
        self->stat_not_held = !held && !news && !self->storage_complete;
        if (!took && !self->layout_known)
            s_send_query (self); //  opened: the fetcher knows the layout now
        else if (self->storage_complete && self->wait_complete && !self->fetcher_complete)
            s_send_query (self); //  the fetcher's "complete", with its totals
        else if (held && !news)
            s_send_query (self); //  quiet for a whole long poll: is the task still running?
    } else if (status == ZF_E_REMOTE) {
        self->answered = true;
        const zf_msg_error_t *error = reply->env.body;
        if (zf_bus_error_code (status, reply) != ZF_CODE_NOT_FOUND) {
            s_fail (self, ZF_TASK_READER_STORAGE, error->code, "storage.stat failed: %s",
                    err->message);
            return;
        }
        //  not opened yet (a storage that holds the question answers this only after
        //  wait_ms), or just removed: the fetcher says which
        self->stat_not_held = !held;
        if (held)
            s_send_query (self);
    } else {
        s_fail_bus (self, status, err, "storage.stat", self->set->storage);
        return;
    }
    s_pump (self);
}

//  ---------------------------------------------------------------------------------------------
//  Pieces

static void s_on_piece (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);
static void s_on_located (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg);

static uint64_t s_piece_size (const zf_task_reader_t *self, uint64_t piece)
{
    if (piece + 1 == self->piece_count)
        return self->content_length - piece * self->piece_length;
    return self->piece_length;
}

static bool s_locating (const zf_task_reader_t *self)
{
    return self->locate && !self->set->locate_refused;
}

static bool s_request_piece (zf_task_reader_t *self, slot_t *slot)
{
    slot->retry = false;
    const zf_task_readers_options_t *options = &self->set->options;
    zf_bus_call_t call = {.timeout_ms = options->read_timeout_ms, .retries = 0, .patient = true};
    if (s_locating (self)) {
        zf_msg_piece_locate_t locate = {.task_id = self->task_id, .piece = slot->piece};
        return s_request (self, self->set->storage, &zf_msg_piece_locate, &locate, call,
                          s_on_located, slot, &slot->requested);
    }
    zf_msg_piece_read_t read = {.task_id = self->task_id, .piece = slot->piece};
    return s_request (self, self->set->storage, &zf_msg_piece_read, &read, call, s_on_piece, slot,
                      &slot->requested);
}

//  What a piece.read and a piece.locate answer share: whether to go on with it. Errors are
//  handled here by the rules in the header, answering false.
static bool s_piece_answer_usable (zf_task_reader_t *self, slot_t *slot, zf_status_t status,
                                   zf_bus_msg_t *reply, const zf_error_t *err, const char *what)
{
    slot->requested = false;
    if (self->phase != PHASE_FOLLOW)
        return false;
    if (self->refetch_wanted || self->restart_wanted) {
        s_pump (self); //  whatever this answer is, it is dropped: we read on after settling
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
            s_wake_after (self, BUSY_RETRY_MS);
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
            s_pump (self);
            return false;
        }
        s_fail (self, ZF_TASK_READER_STORAGE, zf_code_name (code),
                "storage could not serve piece %" PRIu64 ": %s", slot->piece, err->message);
        return false;
    }
    if (status != ZF_OK) {
        s_fail_bus (self, status, err, what, self->set->storage);
        return false;
    }
    self->answered = true;
    return true;
}

//  An answer about another piece, task or layout than asked is a bug on the other side: stop.
static bool s_piece_answer_matches (zf_task_reader_t *self, const slot_t *slot, const char *task_id,
                                    uint64_t piece, uint64_t offset, uint64_t size, size_t attached)
{
    uint64_t expected = s_piece_size (self, slot->piece);
    if (piece == slot->piece && streq (task_id, self->task_id)
        && offset == slot->piece * self->piece_length && size == expected && attached == expected)
        return true;
    s_fail (self, ZF_TASK_READER_PROTOCOL, "invalid",
            "storage answered piece %" PRIu64 " with piece %" PRIu64 " offset %" PRIu64
            " size %" PRIu64 " (%zu bytes attached); expected offset %" PRIu64 " size %" PRIu64,
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
    s_fail (self, ZF_TASK_READER_STORAGE, zf_code_name (ZF_CODE_CORRUPT),
            "piece %" PRIu64 " from storage %s does not match its digest", piece->piece,
            self->set->storage);
    return false;
}

static void s_on_piece (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    slot_t *slot = arg;
    zf_task_reader_t *self = s_reply (slot->reader);
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
    s_pump (self);
}

//  Storage cannot locate pieces for us (another host, or a storage without piece.locate):
//  every reader of the set reads over the bus from now on.
static bool s_locate_refused (zf_task_reader_t *self, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err)
{
    if (status != ZF_E_REMOTE || self->phase != PHASE_FOLLOW)
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
    s_set_window (self);
    return true;
}

static void s_on_located (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    slot_t *slot = arg;
    zf_task_reader_t *self = s_reply (slot->reader);
    if (!self)
        return;
    if (!self->refetch_wanted && !self->restart_wanted
        && s_locate_refused (self, status, reply, err)) {
        slot->requested = false;
        if (s_request_piece (self, slot)) //  the same piece, over the bus
            s_pump (self);
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
    s_pump (self);
}

//  ---------------------------------------------------------------------------------------------
//  The origin's bytes of a piece storage does not hold yet (piece.peek to the fetcher)

static void s_on_partial (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg);

//  Bytes of the next piece the caller already has from peeks (0 when none).
static uint64_t s_part_from (const zf_task_reader_t *self)
{
    return self->part_piece == self->next_deliver ? self->part_from : 0;
}

//  Asks the fetcher for the origin's bytes of the piece to deliver next, when storage does
//  not hold it and nothing else is asked for it.
static void s_peek (zf_task_reader_t *self)
{
    uint64_t piece = self->next_deliver;
    if (!self->peek || self->peek_pending || self->paused || self->part_frame
        || self->phase != PHASE_FOLLOW || !self->reading || piece >= self->read_end
        || self->next_request != piece || s_stored (self, piece)
        || (self->no_peek && self->no_peek_piece == piece) || self->refetch_wanted
        || self->restart_wanted)
        return;
    const zf_task_readers_options_t *options = &self->set->options;
    zf_msg_piece_peek_t peek = {.task_id = self->task_id,
                                .piece = piece,
                                .from = s_part_from (self),
                                .wait_ms = (uint64_t) options->stat_wait_ms};
    zf_bus_call_t call = s_call (self);
    int64_t base = call.timeout_ms > 0 ? call.timeout_ms : 5000;
    s_request (
        self, self->set->fetcher, &zf_msg_piece_peek, &peek,
        (zf_bus_call_t){.timeout_ms = options->stat_wait_ms + base, .retries = 0, .patient = true},
        s_on_partial, self, &self->peek_pending);
}

static void s_on_partial (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                          const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_task_reader_t *self = s_reply (arg);
    if (!self)
        return;
    self->peek_pending = false;
    if (self->phase != PHASE_FOLLOW)
        return;
    if (status != ZF_OK) {
        //  not_found: the fetcher does not fill that piece from the origin (parents give it
        //  whole, or the task ended): storage gives it. Anything else: no more peeks at all.
        if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND) {
            self->no_peek = true;
            self->no_peek_piece = self->next_deliver;
        } else {
            zf_info (self->set->name, "task reader: piece.peek of task=%.16s: %s; reading storage",
                     self->task_id, err && *err->message ? err->message : zf_status_name (status));
            self->peek = false;
        }
        s_pump (self);
        return;
    }
    const zf_msg_piece_partial_t *partial = reply->env.body;
    zframe_t *data = zmsg_pop (reply->raw);
    uint64_t size = data ? zframe_size (data) : 0;
    bool current = !self->refetch_wanted && !self->restart_wanted && self->reading
                   && partial->piece == self->next_deliver && self->next_request == partial->piece
                   && partial->from == s_part_from (self) && self->piece_count > partial->piece;
    if (!current) { //  storage took over meanwhile, or the reader starts over
        zframe_destroy (&data);
        s_pump (self);
        return;
    }
    if (!streq (partial->task_id, self->task_id) || size != partial->size
        || partial->from + size > s_piece_size (self, partial->piece)) {
        zframe_destroy (&data);
        s_fail (self, ZF_TASK_READER_PROTOCOL, "invalid",
                "the fetcher answered a peek of piece %" PRIu64 " from %" PRIu64
                " with piece %" PRIu64 " from %" PRIu64 " size %" PRIu64 " (%" PRIu64
                " bytes attached)",
                self->next_deliver, s_part_from (self), partial->piece, partial->from,
                partial->size, size);
        return;
    }
    if (size > 0) {
        self->part_frame = data;
        self->part_frame_from = partial->from;
    } else
        zframe_destroy (&data);
    if (partial->complete && partial->from + size < s_piece_size (self, partial->piece)) {
        self->no_peek = true; //  filled, but not with the origin's bytes: storage has the rest
        self->no_peek_piece = partial->piece;
    }
    s_pump (self);
}

//  Hands the caller the bytes a peek brought; the piece is done once all of it went so.
static bool s_deliver_partial (zf_task_reader_t *self)
{
    if (!self->part_frame || self->paused)
        return true;
    uint64_t piece = self->next_deliver;
    uint64_t size = zframe_size (self->part_frame);
    zf_task_reader_event_t event = {.type = ZF_TASK_READER_PIECE,
                                    .piece = piece,
                                    .offset = piece * self->piece_length + self->part_frame_from,
                                    .size = size,
                                    .partial = true,
                                    .frame = &self->part_frame};
    self->part_piece = piece;
    self->part_from = self->part_frame_from + size;
    if (!s_emit (self, &event, NULL))
        return false;
    zframe_destroy (&self->part_frame);
    if (self->part_from == s_piece_size (self, piece)) {
        self->next_deliver++;
        if (self->next_request < self->next_deliver)
            self->next_request = self->next_deliver;
    }
    return true;
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
        return s_take_layout (self); //  LAYOUT, restart set: the caller reads again
    }
    self->refetch_wanted = false;
    //  A complete task that lost a piece is fetched again; a running one may have failed (its
    //  pieces removed): the fetcher says which first.
    if (was_complete)
        return s_send_fetch (self);
    self->recheck = true;
    s_send_query (self);
    return true;
}

//  Hands the caller the pieces that are next in order; false when the reader stopped.
static bool s_deliver (zf_task_reader_t *self)
{
    if (!s_deliver_partial (self))
        return false;
    while (!self->paused && self->next_deliver < self->next_request
           && self->phase == PHASE_FOLLOW) {
        slot_t *slot = &self->slots[self->next_deliver % ZF_TASK_READER_WINDOW_MAX];
        if (!slot->ready)
            break;
        zf_task_reader_event_t event = {.type = ZF_TASK_READER_PIECE,
                                        .piece = slot->piece,
                                        .offset = slot->piece * self->piece_length,
                                        .size = s_piece_size (self, slot->piece),
                                        .path = slot->path,
                                        .file_offset = slot->file_offset,
                                        .frame = slot->frame ? &slot->frame : NULL};
        bool taken = true;
        if (!s_emit (self, &event, &taken))
            return false;
        s_slot_clear (slot);
        if (!taken) { //  the located file let the caller down: this piece and the rest by bus
            self->locate = false;
            s_set_window (self);
            return s_request_piece (self, slot);
        }
        self->next_deliver++;
    }
    return true;
}

static void s_pump (zf_task_reader_t *self)
{
    if (self->phase != PHASE_FOLLOW || !self->callback)
        return;
    if ((self->refetch_wanted || self->restart_wanted) && !s_settle (self))
        return;
    if (self->phase != PHASE_FOLLOW)
        return;
    if (self->layout_known && self->reading) {
        if (!s_deliver (self))
            return;
        while (s_window_has_room (self) && s_stored (self, self->next_request)) {
            slot_t *slot = &self->slots[self->next_request % ZF_TASK_READER_WINDOW_MAX];
            ZF_ASSERT (!slot->requested && !slot->ready);
            slot->piece = self->next_request++;
            slot->busy_count = 0;
            if (!s_request_piece (self, slot))
                return;
        }
        s_peek (self);
        if (self->phase != PHASE_FOLLOW)
            return;
        if (self->next_deliver == self->read_end
            && (!self->wait_complete || self->fetcher_complete)) {
            self->phase = PHASE_OVER;
            s_stop_timer (self);
            zf_task_reader_event_t event = {.type = ZF_TASK_READER_DONE,
                                            .status = self->has_status ? &self->status : NULL};
            s_emit (self, &event, NULL);
            return;
        }
        //  Every piece taken, storage has them all, the fetcher's word is still due (a caller
        //  that started waiting for it late, zf_task_reader_wait_complete): ask it.
        if (self->next_deliver == self->read_end && self->wait_complete && self->storage_complete
            && self->timer_id < 0)
            s_send_query (self); //  (with a wake due, the wake asks)
    }
    s_stat (self);
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
    self->loop = loop;
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
    if (zf_bus_subscribe (bus, self->fetcher, "task.ended", s_on_ended, self, &err) != ZF_OK)
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
    self->phase = PHASE_FETCH;
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
    self->phase = PHASE_OVER;
    s_stop_timer (self);
    s_unregister (self);
    s_free_if_unused (self);
}

bool zf_task_reader_start (zf_task_reader_t *self, const zf_msg_task_fetch_t *fetch,
                           zf_error_t *err)
{
    ZF_ASSERT (self && fetch && fetch->url && self->phase == PHASE_FETCH && !self->has_fetch);
    if (zf_schema_copy (zf_msg_task_fetch.body, fetch, &self->fetch, err) != ZF_OK)
        return false;
    self->has_fetch = true;
    zf_status_t status = zf_bus_request (self->set->bus, self->set->fetcher, &zf_msg_task_fetch,
                                         &self->fetch, NULL, s_call (self), s_on_fetch, self, err);
    if (status != ZF_OK)
        return false;
    self->pending++;
    self->fetch_pending = true;
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
        s_pump (self);
}

void zf_task_reader_wait_complete (zf_task_reader_t *self)
{
    ZF_ASSERT (self);
    self->wait_complete = true;
}

void zf_task_reader_set_peek (zf_task_reader_t *self, bool peek)
{
    ZF_ASSERT (self && self->phase == PHASE_FETCH);
    self->peek = peek;
}

void zf_task_reader_pause (zf_task_reader_t *self, bool paused)
{
    ZF_ASSERT (self);
    bool resumed = self->paused && !paused;
    self->paused = paused;
    if (resumed && !self->emitting)
        s_pump (self);
}

const char *zf_task_reader_task_id (zf_task_reader_t *self)
{
    ZF_ASSERT (self);
    return self->task_id;
}
