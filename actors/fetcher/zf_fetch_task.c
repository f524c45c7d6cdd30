/*  zf_fetch_task.c — one task: its phases, its storage conversation, its pieces in memory and
    its content hash. Where pieces come from is its sources' business (zf_fetch_origin.c,
    zf_fetch_parents.c); they report back through the sinks at the end of this file, and the
    task does its work from a pump that runs on the next turn of the loop, never inside a
    source's callback. */
#include "zf_fetch_task.h"
#include "zf_clock.h"
#include "zf_fetch_origin.h"
#include "zf_fetch_parents.h"
#include "zf_fetch_peeks.h"
#include "zf_log.h"
#include "zf_piece_table.h"
#include <openssl/evp.h>

#define RETRY_BACKOFF_CAP_MS 30000
#define REOPENS_MAX          3 //  storage losing pieces again and again is a failure
//  Pieces one origin range request asks for. s_start_ranges can ask for a run of consecutive
//  pieces in one request; one per request measured as fast (docs/benchmarks.md "Data plane").
#define RANGE_PIECES 1
//  Pieces held in memory for the origin at most: twice the range transfers in flight, so that
//  a piece waiting for storage's piece.written leaves no connection idle (transfers + 1 took
//  13% longer back to source), as far as WINDOW_MEMORY allows.
#define WINDOW_MEMORY (32u << 20)
//  Parents are asked for no more pieces while pieces of this many bytes wait for storage's
//  piece.written (one piece at least): on a fast link the network outruns the page cache once
//  the kernel throttles dirty pages, and a child took 351 MiB of 16 MiB pieces waiting to be
//  written on a 4 GiB transfer (docs/benchmarks.md "Datacenter speed"). A swarm's links are
//  far slower than any disk, so this never holds one back.
#define WRITES_MEMORY (16u << 20)

typedef enum {
    PHASE_STAT,
    PHASE_PARENTS,
    PHASE_PROBE,
    PHASE_OPEN,
    PHASE_RUN,
    PHASE_COMPLETING,
    PHASE_COMPLETE,
    PHASE_FAILED,
} task_phase_t;

//  A piece's bytes while they are needed (filled by a source, written, hashed).
typedef struct {
    zframe_t *frame;
    size_t filled;
    uint32_t attempts; //  failed origin attempts
    bool reading;      //  piece.read in flight to feed the content hash
} slot_t;

struct zf_fetch_task_s {
    zf_fetch_env_t *env;
    char task_id[ZF_TASK_ID_SIZE + 1];
    char digest[ZF_DIGEST_TEXT_SIZE + 1]; //  "" when the content digest is unknown
    uint64_t generation;
    char *url, *tag, *application;
    struct curl_slist *headers; //  the client's, minus Range
    task_phase_t phase;
    bool answer_pending;
    zf_bus_return_t answer;

    uint64_t content_length, piece_length, piece_count;
    uint64_t stored_length, stored_piece_length; //  from storage.stat, 0 when absent
    zf_piece_table_t *table;                     //  from OPEN on
    slot_t *slots;                               //  piece_count, with the table
    zf_fetch_origin_t *origin;                   //  NULL without a URL
    zf_fetch_parents_t *parents;                 //  NULL when neither given nor scheduled
    zf_fetch_peeks_t *peeks;                     //  piece.peek held, NULL until the first
    bool stream_mode; //  the origin ignores Range: one transfer, pieces cut in order
    //  Piece buffers storage gave back after writing them (piece_length bytes): a new piece
    //  fills one of them instead of fresh memory, which would cost a page fault and a zeroed
    //  page every 4 KiB (big buffers come from mmap: zfly_main.c).
    zlist_t *spare_frames;
    uint64_t window_start; //  first piece not retired (stored and hashed)
    size_t window;         //  pieces held for the origin at most
    size_t range_pieces;   //  pieces per origin range request
    uint64_t finished_count;
    uint64_t bytes_from_source, bytes_from_parents;
    size_t writes_pending; //  piece.write sent, piece.written not yet back

    //  With a scheduler: it names the one origin fetcher (sched_source). Others take from
    //  the origin only what parents cannot give after sched_fallback without progress.
    bool scheduled;
    bool sched_source;
    int64_t progress_ms; //  the last piece from a parent, or a new parent
    char fallback[64];   //  why the task took from the origin although scheduled, "" if not

    EVP_MD_CTX *whole_hash; //  over the content in order, when digest is set
    uint64_t hashed_offset;
    uint32_t probe_attempts, stream_attempts, reopens;
    int64_t retry_at_ms; //  probe or stream backoff
    uint64_t stream_furthest;
    uint64_t length_hint; //  the origin's length from the access question, 0: probe
    //  When the first bytes came, for the debug timeline (ms after the task was made): the
    //  steps before a cold task's first byte (docs/architecture.md, Proxy).
    int64_t born_ms, stat_ms, source_ms, layout_ms, open_ms, first_byte_ms, first_written_ms;
    int wake_timer;  //  the pump's next turn, -1: none
    int check_timer; //  a backoff or deadline to look at again, -1: none

    char error_code[32];
    char error_message[1024];
};

static void s_wake (zf_fetch_task_t *self);
static void s_fail (zf_fetch_task_t *self, zf_task_error_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  --- small things ------------------------------------------------------------------------------

static uint64_t s_piece_size (zf_fetch_task_t *self, uint64_t piece)
{
    uint64_t start = piece * self->piece_length;
    uint64_t end = start + self->piece_length;
    return (end > self->content_length ? self->content_length : end) - start;
}

static uint64_t s_piece_end (zf_fetch_task_t *self, uint64_t piece)
{
    return piece * self->piece_length + s_piece_size (self, piece);
}

static bool s_hash_needed (zf_fetch_task_t *self)
{
    return *self->digest != '\0';
}

static bool s_hashed (zf_fetch_task_t *self, uint64_t piece)
{
    return !s_hash_needed (self) || self->hashed_offset >= s_piece_end (self, piece);
}

static bool s_layout_known (zf_fetch_task_t *self)
{
    return self->phase >= PHASE_OPEN && self->phase <= PHASE_COMPLETING;
}

bool zf_fetch_task_running (zf_fetch_task_t *self)
{
    return self->phase != PHASE_COMPLETE && self->phase != PHASE_FAILED;
}

//  The bytes land straight in the frame that piece.write sends: no copy on the way. A full
//  piece reuses a buffer storage gave back, when there is one.
static uint8_t *s_hold (zf_fetch_task_t *self, uint64_t piece)
{
    slot_t *slot = &self->slots[piece];
    if (!slot->frame) {
        size_t size = (size_t) s_piece_size (self, piece);
        slot->frame = size == self->piece_length && self->spare_frames
                          ? zlist_pop (self->spare_frames)
                          : NULL;
        if (!slot->frame)
            slot->frame = zframe_new (NULL, size);
        slot->filled = 0;
    }
    return zframe_data (slot->frame);
}

//  A piece that came from a parent in several frames is joined into one of the buffers
//  storage gave back (else they would only pile up on a child that takes nothing from the
//  origin: a window of them, 32 MiB).
static zframe_t *s_parents_buffer (void *arg, size_t size)
{
    zf_fetch_task_t *self = arg;
    zframe_t *frame =
        size == self->piece_length && self->spare_frames ? zlist_pop (self->spare_frames) : NULL;
    return frame ? frame : zframe_new (NULL, size);
}

static void s_release (slot_t *slot)
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

static void s_free_buffers (zf_fetch_task_t *self)
{
    for (uint64_t index = 0; self->slots && index < self->piece_count; index++)
        s_release (&self->slots[index]);
    zframe_t *frame;
    while (self->spare_frames && (frame = zlist_pop (self->spare_frames)))
        zframe_destroy (&frame);
    zlist_destroy (&self->spare_frames);
}

static void s_end_timer (zf_fetch_task_t *self, int *timer)
{
    if (*timer >= 0)
        zloop_timer_end (self->env->loop, *timer);
    *timer = -1;
}

//  Pieces holding a buffer for the origin, or awaiting their write: what the window counts.
static size_t s_held (zf_fetch_task_t *self)
{
    size_t held = 0;
    uint64_t end = self->window_start + self->window;
    for (uint64_t index = self->window_start; index < end && index < self->piece_count; index++)
        held += self->slots[index].frame
                || zf_piece_table_state (self->table, index) == ZF_PIECE_WRITING;
    return held;
}

static void s_count_fallback (zf_fetch_task_t *self, const char *why)
{
    if (*self->fallback)
        return; //  once per task: the log line and the counter say that it happened, and why
    zf_strlcpy (self->fallback, why, sizeof self->fallback);
    zf_notice (self->env->name, "task takes from the origin task=%.16s: %s", self->task_id, why);
    zf_counter_add (zf_metrics_counter ("zfly_fetcher_origin_fallbacks_total",
                                        "Scheduled tasks that took pieces from the origin "
                                        "themselves, by reason",
                                        "actor", self->env->name, "reason", why, NULL),
                    1);
}

//  --- storage requests ------------------------------------------------------------------------

//  A bus request's way back to its task: the task may be gone or replaced by the time the
//  reply arrives, so the reply looks it up again instead of holding a pointer.
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

//  Sends a request to this node's storage; the reply comes back to callback with a call_t
//  (freed here on failure, by the callback otherwise). Storage is an actor of this process:
//  the request waits as long as storage takes (a busy storage slows the task, never fails it).
static bool s_storage (zf_fetch_task_t *self, const zf_msg_desc_t *desc, const void *body,
                       zmsg_t **raw, zf_bus_reply_fn *callback, uint64_t piece)
{
    call_t *call = s_call_new (self, piece);
    zf_error_t err;
    if (zf_bus_request (self->env->bus, self->env->config->storage, desc, body, raw,
                        ZF_BUS_CALL_DEFAULT, callback, call, &err)
        == ZF_OK)
        return true;
    zf_free (call);
    zmsg_destroy (raw);
    s_fail (self, ZF_TASK_ERROR_STORAGE, "%s to %s not sent: %s", desc->type,
            self->env->config->storage, err.message);
    return false;
}

//  The task a reply belongs to, if it is still waiting for it; frees the call.
static zf_fetch_task_t *s_reply_task (void *arg, uint64_t *piece)
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

static const char *s_reply_error (zf_status_t status, const zf_error_t *err)
{
    return err && *err->message ? err->message : zf_status_name (status);
}

//  --- answering clients ----------------------------------------------------------------------

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

static void s_answer (zf_fetch_task_t *self)
{
    if (!self->answer_pending)
        return;
    self->answer_pending = false;
    zf_msg_task_status_t status;
    zf_fetch_task_status (self, &status);
    zf_bus_reply (self->env->bus, &self->answer, &zf_msg_task_status, &status, NULL);
}

//  Whoever watches every task's end is told (the fetcher publishes task.ended).
static void s_told_ended (zf_fetch_task_t *self)
{
    if (self->env->on_end)
        self->env->on_end (self, self->env->on_end_arg);
}

static void s_ended (zf_fetch_task_t *self)
{
    const zf_fetch_observer_t *observer = self->env->observer;
    if (observer && self->scheduled)
        observer->task_ended (self->env->observer_arg, self);
    s_told_ended (self);
    s_answer (self);
}

static void s_fail (zf_fetch_task_t *self, zf_task_error_t code, const char *fmt, ...)
{
    if (!zf_fetch_task_running (self))
        return;
    self->phase = PHASE_FAILED;
    zf_strlcpy (self->error_code, zf_task_error_name (code), sizeof self->error_code);
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->error_message, sizeof self->error_message, fmt, args);
    va_end (args);
    if (self->origin)
        zf_fetch_origin_cancel_all (self->origin); //  safe inside the origin's callbacks
    if (self->parents)
        zf_fetch_parents_remove_all (self->parents);
    s_end_timer (self, &self->check_timer);
    zf_fetch_peeks_drop (self->peeks, "the task failed");
    s_free_buffers (self);
    zf_counter_add (self->env->tasks_failed, 1);
    zf_warning (self->env->name, "task failed task=%.16s code=%s: %s", self->task_id,
                self->error_code, self->error_message);
    s_ended (self);
}

//  --- the two sources' sinks (defined at the end) --------------------------------------------

static void s_origin_length (void *arg, uint64_t content_length, bool ranges);

static const zf_fetch_origin_sink_t s_origin_sink;
static const zf_fetch_parents_sink_t s_parents_sink;
static void s_parents_layout (void *arg, uint64_t content_length, uint64_t piece_length);

//  --- life cycle ------------------------------------------------------------------------------

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
    self->wake_timer = self->check_timer = -1;
    self->born_ms = zf_clock_mono_ms ();
    self->phase = PHASE_STAT;
    self->scheduled = env->scheduled;
    if (*self->url)
        self->origin = zf_fetch_origin_new (env->name, env->config, env->curl, self->url,
                                            self->headers, &s_origin_sink, self);
    if (request->parents.count > 0 || self->scheduled) {
        self->parents =
            zf_fetch_parents_new (env, task_id, digest, self->scheduled, &s_parents_sink, self);
        for (size_t index = 0; index < request->parents.count; index++)
            zf_fetch_parents_add (self->parents, ((char **) request->parents.items)[index]);
    }
    return self;
}

void zf_fetch_task_hint_length (zf_fetch_task_t *self, uint64_t content_length)
{
    ZF_ASSERT (self->phase == PHASE_STAT);
    self->length_hint = content_length;
}

void zf_fetch_task_destroy (zf_fetch_task_t **self_p)
{
    zf_fetch_task_t *self = *self_p;
    if (!self)
        return;
    zf_fetch_origin_destroy (&self->origin);
    zf_fetch_parents_destroy (&self->parents);
    zf_fetch_peeks_destroy (&self->peeks);
    s_end_timer (self, &self->wake_timer);
    s_end_timer (self, &self->check_timer);
    s_free_buffers (self);
    zf_free (self->slots);
    zf_piece_table_destroy (&self->table);
    EVP_MD_CTX_free (self->whole_hash);
    curl_slist_free_all (self->headers);
    zf_free (self->url);
    zf_free (self->tag);
    zf_free (self->application);
    zf_free (self);
    *self_p = NULL;
}

//  --- what the scheduler client reads ---------------------------------------------------------

const char *zf_fetch_task_id (zf_fetch_task_t *self)
{
    return self->task_id;
}

uint64_t zf_fetch_task_generation (zf_fetch_task_t *self)
{
    return self->generation;
}

const char *zf_fetch_task_url (zf_fetch_task_t *self)
{
    return self->url;
}

const char *zf_fetch_task_digest (zf_fetch_task_t *self)
{
    return self->digest;
}

const char *zf_fetch_task_tag (zf_fetch_task_t *self)
{
    return self->tag;
}

const char *zf_fetch_task_application (zf_fetch_task_t *self)
{
    return self->application;
}

const char *zf_fetch_task_error_code (zf_fetch_task_t *self)
{
    return self->error_code;
}

bool zf_fetch_task_complete (zf_fetch_task_t *self)
{
    return self->phase == PHASE_COMPLETE;
}

void zf_fetch_task_lengths (zf_fetch_task_t *self, uint64_t *content_length, uint64_t *piece_length,
                            uint64_t *piece_count)
{
    bool known = s_layout_known (self) || self->phase == PHASE_COMPLETE;
    *content_length = known ? self->content_length : 0;
    *piece_length = known ? self->piece_length : 0;
    *piece_count = known ? self->piece_count : 0;
}

bool zf_fetch_task_has_piece (zf_fetch_task_t *self, uint64_t piece)
{
    return self->table && piece < self->piece_count
           && zf_piece_table_state (self->table, piece) == ZF_PIECE_STORED;
}

size_t zf_fetch_task_parent_count (zf_fetch_task_t *self)
{
    return self->parents ? zf_fetch_parents_count (self->parents) : 0;
}

bool zf_fetch_task_awaits_schedule (zf_fetch_task_t *self)
{
    return self->phase == PHASE_PARENTS;
}

bool zf_fetch_task_is_source (zf_fetch_task_t *self)
{
    return self->sched_source;
}

//  --- the parent set ----------------------------------------------------------------------------

bool zf_fetch_task_add_parent (zf_fetch_task_t *self, const char *parent)
{
    if (!zf_fetch_task_running (self) || !self->parents)
        return false;
    if (!zf_fetch_parents_add (self->parents, parent))
        return false;
    self->progress_ms = zf_clock_mono_ms ();
    return true;
}

bool zf_fetch_task_remove_parent (zf_fetch_task_t *self, const char *parent)
{
    return zf_fetch_task_running (self) && self->parents
           && zf_fetch_parents_remove (self->parents, parent);
}

//  --- readers streaming the origin's bytes (piece.peek) ----------------------------------------

void zf_fetch_task_peek (zf_fetch_task_t *self, const zf_bus_return_t *ret, uint64_t piece,
                         uint64_t from, uint64_t wait_ms)
{
    zf_bus_t *bus = self->env->bus;
    if (!zf_fetch_task_running (self) || !self->origin) {
        zf_bus_reply_code (bus, ret, ZF_CODE_NOT_FOUND, "task_id",
                           "task %.64s is not downloading here", self->task_id);
        return;
    }
    if (self->table) {
        if (piece >= self->piece_count || from > s_piece_size (self, piece)) {
            zf_bus_reply_error (bus, ret, ZF_E_INVALID, "piece",
                                "piece %" PRIu64 " byte %" PRIu64 " is not in the task", piece,
                                from);
            return;
        }
        zf_piece_state_t state = zf_piece_table_state (self->table, piece);
        slot_t *slot = &self->slots[piece];
        if (state == ZF_PIECE_WRITING || state == ZF_PIECE_STORED) { //  storage has it (soon)
            zf_fetch_peeks_answer (bus, ret, self->task_id, piece, from, NULL, 0, true);
            return;
        }
        if (state == ZF_PIECE_FETCHING && zf_piece_table_requests (self->table, piece) > 0) {
            zf_bus_reply_code (bus, ret, ZF_CODE_NOT_FOUND, "piece",
                               "piece %" PRIu64 " comes from parents, whole", piece);
            return;
        }
        if (state == ZF_PIECE_FETCHING && slot->frame && slot->filled > from) {
            zf_fetch_peeks_answer (bus, ret, self->task_id, piece, from, zframe_data (slot->frame),
                                   slot->filled, false);
            return;
        }
    }
    if (wait_ms == 0) {
        zf_fetch_peeks_answer (bus, ret, self->task_id, piece, from, NULL, 0, false);
        return;
    }
    if (!self->peeks)
        self->peeks = zf_fetch_peeks_new (bus, self->env->loop, self->task_id);
    zf_fetch_peeks_hold (self->peeks, ret, piece, from, wait_ms);
}

//  --- going to the origin --------------------------------------------------------------------

//  Nothing came from parents before the layout was known: the origin alone, as if none had
//  been given.
static void s_parents_to_origin (zf_fetch_task_t *self, const char *why)
{
    if (self->phase != PHASE_PARENTS)
        return;
    if (!self->origin) {
        s_fail (self, ZF_TASK_ERROR_PARENTS, "%s, and the task has no URL", why);
        return;
    }
    zf_notice (self->env->name, "task goes to the origin task=%.16s: %s", self->task_id, why);
    zf_fetch_parents_remove_all (self->parents);
    self->phase = PHASE_PROBE;
    s_wake (self);
}

void zf_fetch_task_to_source (zf_fetch_task_t *self)
{
    if (!zf_fetch_task_running (self) || self->sched_source)
        return;
    self->sched_source = true;
    self->source_ms = zf_clock_mono_ms () - self->born_ms;
    if (self->phase == PHASE_PARENTS)
        s_parents_to_origin (self, "it is the task's origin fetcher");
    else
        s_wake (self);
}

void zf_fetch_task_fall_back (zf_fetch_task_t *self, const char *why)
{
    if (!zf_fetch_task_running (self) || self->sched_source)
        return;
    s_count_fallback (self, why);
    zf_fetch_task_to_source (self);
}

//  --- storage: stat, open ---------------------------------------------------------------------

static int s_on_check (zloop_t *loop, int timer_id, void *arg);

//  Looks at the task again at `when` (a backoff ending, a deadline).
static void s_check_at (zf_fetch_task_t *self, int64_t when)
{
    s_end_timer (self, &self->check_timer);
    int64_t delay = when - zf_clock_mono_ms ();
    self->check_timer =
        zloop_timer (self->env->loop, delay > 0 ? (size_t) delay : 1, 1, s_on_check, self);
}

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
            s_told_ended (self);
            s_answer (self);
            return;
        }
        self->stored_length = task->content_length;
        self->stored_piece_length = task->piece_length;
    } else if (zf_bus_error_code (status, reply) != ZF_CODE_NOT_FOUND) {
        s_fail (self, ZF_TASK_ERROR_STORAGE, "storage.stat at %s: %s", self->env->config->storage,
                s_reply_error (status, err));
        return;
    }
    self->stat_ms = zf_clock_mono_ms () - self->born_ms;
    if (!self->parents) {
        self->phase = PHASE_PROBE;
        s_answer (self);
        s_wake (self);
        return;
    }
    self->phase = PHASE_PARENTS;
    self->progress_ms = zf_clock_mono_ms ();
    s_answer (self);
    zf_notice (self->env->name, "task asks parents task=%.16s parents=%zu%s", self->task_id,
               zf_fetch_parents_count (self->parents), self->scheduled ? " scheduled" : "");
    if (self->scheduled) {
        self->env->observer->task_started (self->env->observer_arg, self);
        s_check_at (self, self->progress_ms + self->env->config->sched_fallback_ms);
    } else
        s_wake (self);
    //  A parent given with the request may have answered before storage did.
    uint64_t content_length, piece_length;
    if (zf_fetch_task_running (self)
        && zf_fetch_parents_layout (self->parents, &content_length, &piece_length))
        s_parents_layout (self, content_length, piece_length);
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
    s_storage (self, &zf_msg_storage_stat, &stat, NULL, s_on_stat, 0);
}

static void s_on_open (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_fetch_task_t *self = s_reply_task (arg, NULL);
    if (!self)
        return;
    if (status != ZF_OK) {
        s_fail (self, ZF_TASK_ERROR_STORAGE, "storage.open at %s: %s", self->env->config->storage,
                s_reply_error (status, err));
        return;
    }
    const zf_msg_storage_task_t *task = reply->env.body;
    if (task->content_length != self->content_length || task->piece_length != self->piece_length
        || task->piece_count != self->piece_count) {
        s_fail (self, ZF_TASK_ERROR_STORAGE,
                "storage.open answered length %" PRIu64 "/%" PRIu64 ", asked %" PRIu64 "/%" PRIu64,
                task->content_length, task->piece_length, self->content_length, self->piece_length);
        return;
    }
    self->table = zf_piece_table_new (self->piece_count);
    zf_piece_table_set_origin (self->table, self->origin != NULL);
    self->slots = zf_calloc (self->piece_count ? self->piece_count : 1, sizeof (slot_t));
    zframe_t *bitmap = zmsg_first (reply->raw);
    const uint8_t *bits = bitmap ? zframe_data (bitmap) : NULL;
    for (uint64_t index = 0; index < self->piece_count; index++)
        if (bitmap && index / 8 < zframe_size (bitmap) && zf_bit (bits, index))
            zf_piece_table_store (self->table, index);
    self->finished_count = zf_piece_table_stored (self->table);
    if (self->finished_count > 0)
        zf_notice (self->env->name,
                   "task resumes task=%.16s finished=%" PRIu64 " of %" PRIu64 " pieces",
                   self->task_id, self->finished_count, self->piece_count);
    if (s_hash_needed (self)) {
        self->whole_hash = EVP_MD_CTX_new ();
        ZF_ASSERT (self->whole_hash
                   && EVP_DigestInit_ex (self->whole_hash, EVP_sha256 (), NULL) == 1);
    }
    if (self->parents)
        zf_fetch_parents_attach (self->parents, self->table, self->content_length,
                                 self->piece_length);
    self->phase = PHASE_RUN;
    self->open_ms = zf_clock_mono_ms () - self->born_ms;
    s_wake (self);
}

static void s_open (zf_fetch_task_t *self)
{
    zf_msg_storage_open_t open = {.task_id = self->task_id,
                                  .url = self->url,
                                  .digest = self->digest,
                                  .tag = self->tag,
                                  .application = self->application,
                                  .content_length = self->content_length,
                                  .piece_length = self->piece_length,
                                  .create = true};
    s_storage (self, &zf_msg_storage_open, &open, NULL, s_on_open, 0);
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
        s_fail (self, ZF_TASK_ERROR_STORAGE, "storage.remove of a stale copy: %s",
                s_reply_error (status, err));
    else
        s_open (self);
}

static void s_layout (zf_fetch_task_t *self, uint64_t content_length, uint64_t piece_length,
                      bool ranges, bool stale)
{
    const zf_fetcher_config_t *config = self->env->config;
    self->content_length = content_length;
    self->stream_mode = !ranges;
    self->piece_length = piece_length;
    self->piece_count = (content_length + piece_length - 1) / piece_length;
    size_t transfers = (size_t) config->source_concurrency;
    self->range_pieces = RANGE_PIECES;
    size_t window = (size_t) (WINDOW_MEMORY / piece_length);
    if (window > 2 * transfers * self->range_pieces)
        window = 2 * transfers * self->range_pieces;
    size_t least = transfers * self->range_pieces + 1;
    self->window = window > least ? window : least;
    self->phase = PHASE_OPEN;
    self->layout_ms = zf_clock_mono_ms () - self->born_ms;
    zf_info (self->env->name,
             "task length task=%.16s content_length=%" PRIu64 " piece_length=%" PRIu64
             " pieces=%" PRIu64 " mode=%s",
             self->task_id, content_length, piece_length, self->piece_count,
             ranges ? "ranges" : "stream");
    if (stale) { //  the content changed: what storage holds is not it
        zf_warning (self->env->name,
                    "task changed at the origin task=%.16s stored=%" PRIu64 " now=%" PRIu64,
                    self->task_id, self->stored_length, content_length);
        zf_msg_storage_remove_t remove = {.task_id = self->task_id};
        s_storage (self, &zf_msg_storage_remove, &remove, NULL, s_on_stale_removed, 0);
    } else
        s_open (self);
}

//  --- pieces ------------------------------------------------------------------------------------

static void s_feed_hash (zf_fetch_task_t *self);

static void s_hash_feed (zf_fetch_task_t *self, uint64_t offset, const uint8_t *data, size_t size)
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
    ZF_ASSERT (self->writes_pending > 0);
    self->writes_pending--;
    if (status != ZF_OK) {
        s_fail (self, ZF_TASK_ERROR_STORAGE, "piece.write of piece %" PRIu64 " to %s: %s", piece,
                self->env->config->storage, s_reply_error (status, err));
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
                  self->first_byte_ms, self->first_written_ms, self->length_hint ? "no" : "yes");
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
    s_wake (self);
    if (self->origin)
        zf_fetch_origin_resume (self->origin); //  a stream paused for memory may go on
}

//  A piece whose bytes are in its slot and checked (digest: their SHA-256, NULL when none was
//  computed: storage computes it when a peer first asks): on to storage.
static void s_piece_verified (zf_fetch_task_t *self, uint64_t index, const uint8_t *digest,
                              uint32_t from)
{
    slot_t *slot = &self->slots[index];
    ZF_ASSERT (slot->frame && slot->filled == s_piece_size (self, index));
    //  Readers streaming this piece get its last bytes from here, before it goes to storage.
    if (from == 0)
        zf_fetch_peeks_fill (self->peeks, index, zframe_data (slot->frame), slot->filled, true);
    else
        zf_fetch_peeks_elsewhere (self->peeks, index);
    zf_piece_table_filled (self->table, index, from);
    s_feed_hash (self); //  in order, this piece is usually next: then its bytes can go
    if (!zf_fetch_task_running (self))
        return;
    zmsg_t *raw = zmsg_new ();
    //  Past the window (a parent's rare piece) the bytes are not kept for the hash: it reads
    //  them back from storage when it gets there, so memory stays bounded by the window.
    if (s_hashed (self, index) || index >= self->window_start + self->window) {
        zmsg_append (raw, &slot->frame);
        slot->filled = 0;
    } else
        zmsg_addmem (raw, zframe_data (slot->frame), slot->filled); //  kept for the hash
    zf_msg_piece_write_t write = {.task_id = self->task_id,
                                  .piece = index,
                                  .digest = {.data = (uint8_t *) digest, .size = digest ? 32 : 0},
                                  .origin = from == 0};
    if (s_storage (self, &zf_msg_piece_write, &write, &raw, s_on_written, index))
        self->writes_pending++;
}

//  An origin piece is complete: checked against the parents' digest when they know it.
static void s_origin_piece_done (zf_fetch_task_t *self, uint64_t index)
{
    slot_t *slot = &self->slots[index];
    const uint8_t *expected = self->parents ? zf_fetch_parents_digest (self->parents, index) : NULL;
    if (!expected) {
        //  Nothing to compare with: storage computes the digest when a peer first asks for
        //  the piece, so a download nobody shares costs no SHA-256 (0.6 s per GiB here).
        s_piece_verified (self, index, NULL, 0);
        return;
    }
    uint8_t digest[32];
    unsigned int digest_size = 0;
    ZF_ASSERT (EVP_Digest (zframe_data (slot->frame), slot->filled, digest, &digest_size,
                           EVP_sha256 (), NULL)
               == 1);
    if (memcmp (expected, digest, sizeof digest) != 0) {
        //  The origin and the parents disagree: one of them serves other content than the
        //  task's. Nothing settles which, so nothing is kept.
        s_fail (self, ZF_TASK_ERROR_DIGEST,
                "piece %" PRIu64 " from the origin differs from the parents' digest", index);
        return;
    }
    s_piece_verified (self, index, digest, 0);
}

static void s_on_piece_data (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    uint64_t index;
    zf_fetch_task_t *self = s_reply_task (arg, &index);
    if (!self)
        return;
    self->slots[index].reading = false;
    zf_code_t code = zf_bus_error_code (status, reply);
    if (code == ZF_CODE_CORRUPT || code == ZF_CODE_NOT_FOUND || code == ZF_CODE_NOT_FINISHED) {
        //  Storage found the piece damaged and dropped it: download it again.
        zf_warning (self->env->name, "stored piece lost task=%.16s piece=%" PRIu64 ": %s",
                    self->task_id, index, s_reply_error (status, err));
        zf_piece_table_reset (self->table, index);
        self->finished_count -= self->finished_count > 0;
        s_wake (self);
        return;
    }
    if (status != ZF_OK) {
        s_fail (self, ZF_TASK_ERROR_STORAGE, "piece.read of piece %" PRIu64 " from %s: %s", index,
                self->env->config->storage, s_reply_error (status, err));
        return;
    }
    zframe_t *bytes = zmsg_first (reply->raw);
    uint64_t expected = s_piece_size (self, index);
    if (!bytes || zframe_size (bytes) != expected) {
        s_fail (self, ZF_TASK_ERROR_STORAGE,
                "piece.data of piece %" PRIu64 " has %zu bytes, expected %" PRIu64, index,
                bytes ? zframe_size (bytes) : 0, expected);
        return;
    }
    slot_t *slot = &self->slots[index];
    if (!slot->frame && zf_piece_table_state (self->table, index) == ZF_PIECE_STORED) {
        slot->frame = zmsg_pop (reply->raw); //  the hash takes it in its turn (s_feed_hash)
        slot->filled = zframe_size (slot->frame);
    }
    s_feed_hash (self);
    s_wake (self);
}

//  Feeds the content hash as far as the bytes at hand allow, in order. Pieces stored without
//  their bytes in memory (finished before a restart, or written past the window: from parents
//  they come in any order) are read back from storage for it, HASH_READ_AHEAD at a time, so
//  the hash is not one storage round trip per piece behind (stream mode: the stream feeds the
//  hash itself).
#define HASH_READ_AHEAD 8
#define HASH_READ_SPAN  64 //  pieces past the hash's that are looked at for that

static void s_feed_hash (zf_fetch_task_t *self)
{
    if (!s_hash_needed (self) || !self->whole_hash)
        return;
    uint64_t index = self->hashed_offset / self->piece_length;
    while (self->hashed_offset < self->content_length) {
        index = self->hashed_offset / self->piece_length;
        slot_t *slot = &self->slots[index];
        zf_piece_state_t state = zf_piece_table_state (self->table, index);
        if (!slot->frame || (state != ZF_PIECE_WRITING && state != ZF_PIECE_STORED))
            break;
        s_hash_feed (self, index * self->piece_length, zframe_data (slot->frame), slot->filled);
        if (state == ZF_PIECE_STORED)
            s_release (slot); //  read back for the hash alone
    }
    if (self->stream_mode)
        return;
    size_t reading = 0;
    uint64_t end =
        index + HASH_READ_SPAN < self->piece_count ? index + HASH_READ_SPAN : self->piece_count;
    for (uint64_t ahead = index; ahead < end && reading < HASH_READ_AHEAD; ahead++) {
        slot_t *slot = &self->slots[ahead];
        if (zf_piece_table_state (self->table, ahead) != ZF_PIECE_STORED || slot->frame)
            continue;
        reading++;
        if (slot->reading)
            continue;
        slot->reading = true;
        zf_msg_piece_read_t read = {.task_id = self->task_id, .piece = ahead};
        if (!s_storage (self, &zf_msg_piece_read, &read, NULL, s_on_piece_data, ahead))
            return;
    }
}

//  Frees buffers no longer needed (written and hashed) and moves the window past retired
//  pieces.
static void s_retire (zf_fetch_task_t *self)
{
    uint64_t end = self->window_start + self->window;
    for (uint64_t index = self->window_start; index < end && index < self->piece_count; index++)
        if (self->slots[index].frame && s_hashed (self, index)
            && zf_piece_table_state (self->table, index) >= ZF_PIECE_WRITING)
            s_release (&self->slots[index]);
    while (self->window_start < self->piece_count
           && zf_piece_table_state (self->table, self->window_start) == ZF_PIECE_STORED
           && !self->slots[self->window_start].frame && s_hashed (self, self->window_start))
        self->window_start++;
}

//  storage.complete counted fewer pieces than were written: a reader found one damaged on
//  disk since, and storage dropped it. The task resumes as after a restart: storage's bitmap
//  says what to fetch again, and the content hash is taken again over what is stored.
static void s_reopen (zf_fetch_task_t *self)
{
    zf_warning (self->env->name, "task lost a stored piece, resuming task=%.16s", self->task_id);
    self->reopens++;
    if (self->parents)
        zf_fetch_parents_detach (self->parents);
    for (uint64_t index = 0; index < self->piece_count; index++)
        s_release (&self->slots[index]); //  the spare buffers stay, for the pieces fetched again
    zf_free (self->slots);
    self->slots = NULL;
    zf_piece_table_destroy (&self->table);
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
    if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FINISHED && self->reopens < REOPENS_MAX) {
        s_reopen (self);
        return;
    }
    if (status != ZF_OK) {
        s_fail (self, ZF_TASK_ERROR_STORAGE, "storage.complete at %s: %s",
                self->env->config->storage, s_reply_error (status, err));
        return;
    }
    const zf_msg_storage_task_t *task = reply->env.body;
    self->finished_count = task->finished_count;
    self->phase = PHASE_COMPLETE;
    zf_fetch_peeks_drop (self->peeks, "the task is complete");
    s_free_buffers (self);
    if (self->parents)
        zf_fetch_parents_remove_all (self->parents);
    zf_counter_add (self->env->tasks_complete, 1);
    zf_notice (self->env->name,
               "task complete task=%.16s content_length=%" PRIu64 " from_source=%" PRIu64
               " from_parents=%" PRIu64 "%s%s",
               self->task_id, self->content_length, self->bytes_from_source,
               self->bytes_from_parents, *self->fallback ? " fallback=" : "", self->fallback);
    s_ended (self);
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
            //  Nothing wrong may stay in the cache: remove what was stored, then fail.
            zf_msg_storage_remove_t remove = {.task_id = self->task_id};
            call_t *call = s_call_new (self, 0);
            if (zf_bus_request (self->env->bus, self->env->config->storage, &zf_msg_storage_remove,
                                &remove, NULL, ZF_BUS_CALL_DEFAULT, s_on_removed, call, NULL)
                != ZF_OK)
                zf_free (call);
            s_fail (self, ZF_TASK_ERROR_DIGEST,
                    "content digest mismatch: expected %s, got sha256:%s (%" PRIu64
                    " bytes from %s)",
                    self->digest, actual, self->content_length, self->url);
            return;
        }
    }
    self->phase = PHASE_COMPLETING;
    zf_msg_storage_complete_t complete = {.task_id = self->task_id};
    s_storage (self, &zf_msg_storage_complete, &complete, NULL, s_on_completed, 0);
}

//  --- the origin's share ---------------------------------------------------------------------

//  A failed origin attempt: back off (per piece, or for the probe and stream) or, past the
//  retries or for a final answer, fail the task. Returns true when it will be tried again.
static bool s_retry (zf_fetch_task_t *self, uint32_t *attempts, int64_t *until, const char *what,
                     const char *reason, bool retryable)
{
    const zf_fetcher_config_t *config = self->env->config;
    (*attempts)++;
    if (!retryable || *attempts > (uint32_t) config->retries) {
        s_fail (self, ZF_TASK_ERROR_SOURCE, "%s: %s%s", what, reason,
                retryable ? " (retries exhausted)" : "");
        return false;
    }
    int64_t backoff = config->retry_backoff_ms;
    for (uint32_t index = 1; index < *attempts && backoff < RETRY_BACKOFF_CAP_MS; index++)
        backoff *= 2;
    if (backoff > RETRY_BACKOFF_CAP_MS)
        backoff = RETRY_BACKOFF_CAP_MS;
    *until = zf_clock_mono_ms () + backoff;
    zf_counter_add (self->env->piece_retries, 1);
    zf_warning (self->env->name, "retry task=%.16s %s attempt=%u in %" PRId64 "ms: %s",
                self->task_id, what, *attempts, backoff, reason);
    return true;
}

//  May the origin take this missing piece? Without parents, every one; with parents, those
//  routed to it.
static bool s_origin_may_take (zf_fetch_task_t *self, uint64_t index, int64_t now)
{
    if (!zf_piece_table_missing_now (self->table, index, now))
        return false;
    return !self->parents || zf_piece_table_routed_to_origin (self->table, index);
}

//  Starts range transfers for runs of pieces the origin may take, inside the window; returns
//  the earliest time a piece waiting for its backoff may start (0: none waits).
static int64_t s_start_ranges (zf_fetch_task_t *self, int64_t now)
{
    int64_t wake = 0;
    uint64_t end = self->window_start + self->window;
    if (end > self->piece_count)
        end = self->piece_count;
    size_t transfers = (size_t) self->env->config->source_concurrency;
    for (uint64_t index = self->window_start; index < end; index++) {
        if (zf_fetch_origin_ranges (self->origin) >= transfers)
            break;
        int64_t not_before = zf_piece_table_not_before (self->table, index);
        if (not_before > now && zf_piece_table_state (self->table, index) == ZF_PIECE_MISSING
            && (!self->parents || zf_piece_table_routed_to_origin (self->table, index)))
            wake = wake == 0 || not_before < wake ? not_before : wake;
        if (!s_origin_may_take (self, index, now))
            continue;
        if (self->scheduled && !self->sched_source)
            s_count_fallback (self, "piece failed at parents"); //  zf_piece_table routed it
        uint64_t last = index;
        while (last + 1 < end && last + 1 - index < self->range_pieces
               && s_origin_may_take (self, last + 1, now))
            last++;
        for (uint64_t piece = index; piece <= last; piece++) {
            zf_piece_table_fetch (self->table, piece, ZF_PIECE_BY_ORIGIN, now);
            s_hold (self, piece);
        }
        zf_fetch_origin_range (self->origin, index * self->piece_length,
                               s_piece_end (self, last) - 1, self->content_length);
        index = last;
    }
    return wake;
}

//  Stream mode: another stream is needed while a piece is missing, or while the content hash
//  waits on a piece stored before a restart (only the stream can feed it, in order).
static bool s_stream_needed (zf_fetch_task_t *self)
{
    for (uint64_t index = self->window_start; index < self->piece_count; index++)
        if (zf_piece_table_state (self->table, index) == ZF_PIECE_MISSING)
            return true;
    if (!s_hash_needed (self) || self->hashed_offset >= self->content_length)
        return false;
    uint64_t waiting = self->hashed_offset / self->piece_length;
    return zf_piece_table_state (self->table, waiting) == ZF_PIECE_STORED
           && !self->slots[waiting].frame;
}

//  With parents: which missing pieces the origin takes, those no parent holds, and when.
//  - The task's origin fetcher (told "source", or fallen back): at once.
//  - Scheduled otherwise: never while it has a parent. The scheduler hands out the seed and
//    the peers that hold pieces, and replaces a source that died; a busy or starved swarm is
//    slow, and must not turn into every peer fetching from the origin. Only a task left with
//    no parent at all for sched_fallback takes them itself.
//  - Parents given by the client: once none of them may still get the piece.
//  A task without a URL that no parent can serve fails.
static bool s_route_now (zf_fetch_task_t *self, int64_t now)
{
    if (self->sched_source)
        return true;
    if (self->scheduled)
        return zf_fetch_parents_count (self->parents) == 0
               && now - self->progress_ms >= self->env->config->sched_fallback_ms;
    return !zf_fetch_parents_may_grow (self->parents, now);
}

static void s_route (zf_fetch_task_t *self, int64_t now)
{
    if (!self->parents || !s_route_now (self, now))
        return;
    for (uint64_t index = self->window_start; index < self->piece_count; index++) {
        if (zf_piece_table_state (self->table, index) != ZF_PIECE_MISSING
            || zf_piece_table_routed_to_origin (self->table, index)
            || zf_piece_table_availability (self->table, index) > 0)
            continue;
        if (!self->origin) {
            s_fail (self, ZF_TASK_ERROR_PARENTS,
                    "piece %" PRIu64 ": no parent has it and the task has no URL", index);
            return;
        }
        if (self->scheduled && !self->sched_source)
            s_count_fallback (self, "no parent left");
        zf_piece_table_route_to_origin (self->table, index);
    }
}

static void s_pump_run (zf_fetch_task_t *self)
{
    int64_t now = zf_clock_mono_ms ();
    s_feed_hash (self);
    s_retire (self);
    if (!zf_fetch_task_running (self))
        return;
    if (self->window_start >= self->piece_count) {
        s_finish (self);
        return;
    }
    if (self->parents
        && (self->writes_pending == 0
            || self->writes_pending * self->piece_length < WRITES_MEMORY)) {
        zf_fetch_parents_pump (self->parents, self->window_start);
        s_route (self, now);
        if (!zf_fetch_task_running (self))
            return;
    }
    if (!self->origin)
        return;
    if (!self->stream_mode) {
        int64_t wake = s_start_ranges (self, now);
        if (wake)
            s_check_at (self, wake);
    } else if (!zf_fetch_origin_streaming (self->origin) && s_stream_needed (self)) {
        if (self->retry_at_ms > now)
            s_check_at (self, self->retry_at_ms);
        else
            zf_fetch_origin_stream (self->origin, self->content_length);
    }
}

static void s_pump (zf_fetch_task_t *self)
{
    switch (self->phase) {
    case PHASE_PARENTS:
        //  Parents given by the client, all gone before any answered: the origin.
        if (!self->scheduled && zf_fetch_parents_exhausted (self->parents))
            s_parents_to_origin (self, "no parent to use");
        break;
    case PHASE_PROBE:
        if (self->length_hint) { //  the access question's answer stated it
            s_origin_length (self, self->length_hint, true);
            break;
        }
        if (zf_fetch_origin_busy (self->origin))
            break;
        if (self->retry_at_ms > zf_clock_mono_ms ())
            s_check_at (self, self->retry_at_ms);
        else
            zf_fetch_origin_probe (self->origin);
        break;
    case PHASE_RUN: s_pump_run (self); break;
    default: break;
    }
}

static int s_on_wake (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_fetch_task_t *self = arg;
    self->wake_timer = -1;
    s_pump (self);
    return 0;
}

//  The pump runs on the next turn of the loop: whatever a source's callback changed, the
//  task then acts on a settled state, outside the callback.
static void s_wake (zf_fetch_task_t *self)
{
    if (self->wake_timer < 0 && zf_fetch_task_running (self))
        self->wake_timer = zloop_timer (self->env->loop, 0, 1, s_on_wake, self);
}

static int s_on_check (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_fetch_task_t *self = arg;
    self->check_timer = -1;
    int64_t now = zf_clock_mono_ms ();
    //  Scheduled, and no parent to use in time: the origin.
    if (self->phase == PHASE_PARENTS && self->scheduled && !self->sched_source) {
        int64_t deadline = self->progress_ms + self->env->config->sched_fallback_ms;
        if (now >= deadline) {
            s_count_fallback (self, "no parent to use within sched_fallback");
            self->sched_source = true;
            s_parents_to_origin (self, "no parent to use in time");
            return 0;
        }
        s_check_at (self, deadline);
    }
    s_pump (self);
    return 0;
}

//  --- the origin's sink ----------------------------------------------------------------------

static void s_origin_length (void *arg, uint64_t content_length, bool ranges)
{
    zf_fetch_task_t *self = arg;
    if (self->phase != PHASE_PROBE)
        return;
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

//  Stream bytes: the content hash takes them as they come, pieces are cut in order; returns
//  false to pause the stream until a write was acknowledged (memory bound).
static bool s_stream_bytes (zf_fetch_task_t *self, uint64_t offset, const uint8_t *data,
                            size_t size)
{
    size_t needed = 0; //  pieces this chunk would start holding
    for (uint64_t index = offset / self->piece_length;
         index <= (offset + size - 1) / self->piece_length; index++)
        needed += zf_piece_table_state (self->table, index) == ZF_PIECE_MISSING;
    if (s_held (self) + needed > self->window)
        return false;
    s_hash_feed (self, offset, data, size);
    for (size_t used = 0; used < size && zf_fetch_task_running (self);) {
        uint64_t index = (offset + used) / self->piece_length;
        uint64_t piece_start = index * self->piece_length;
        size_t slice = (size_t) (s_piece_end (self, index) - (offset + used));
        if (slice > size - used)
            slice = size - used;
        if (zf_piece_table_state (self->table, index) == ZF_PIECE_MISSING
            && offset + used == piece_start) {
            zf_piece_table_fetch (self->table, index, ZF_PIECE_BY_ORIGIN, zf_clock_mono_ms ());
            s_hold (self, index);
        }
        slot_t *slot = &self->slots[index];
        if (zf_piece_table_state (self->table, index) == ZF_PIECE_FETCHING && slot->frame) {
            memcpy (zframe_data (slot->frame) + slot->filled, data + used, slice);
            slot->filled += slice;
            if (slot->filled == s_piece_size (self, index))
                s_origin_piece_done (self, index);
            else
                zf_fetch_peeks_fill (self->peeks, index, zframe_data (slot->frame), slot->filled,
                                     false);
        }
        used += slice;
    }
    if (offset + size > self->stream_furthest) {
        self->stream_furthest = offset + size;
        self->stream_attempts = 0; //  progress: retries count from here
    }
    return true;
}

static bool s_origin_bytes (void *arg, zf_origin_kind_t kind, uint64_t offset, const uint8_t *data,
                            size_t size)
{
    zf_fetch_task_t *self = arg;
    self->bytes_from_source += size;
    zf_counter_add (self->env->source_bytes, size);
    if (kind == ZF_ORIGIN_PROBE || self->phase != PHASE_RUN)
        return true;
    if (!self->first_byte_ms)
        self->first_byte_ms =
            zf_clock_mono_ms ()
            - self->born_ms; //  the probe's byte proves the range works; else cancelled meanwhile
    if (kind == ZF_ORIGIN_STREAM)
        return s_stream_bytes (self, offset, data, size);
    for (size_t used = 0; used < size && zf_fetch_task_running (self);) {
        uint64_t index = (offset + used) / self->piece_length;
        slot_t *slot = &self->slots[index];
        size_t slice = (size_t) (s_piece_end (self, index) - (offset + used));
        if (slice > size - used)
            slice = size - used;
        ZF_ASSERT (slot->frame && slot->filled == offset + used - index * self->piece_length);
        memcpy (zframe_data (slot->frame) + slot->filled, data + used, slice);
        slot->filled += slice;
        if (slot->filled == s_piece_size (self, index))
            s_origin_piece_done (self, index);
        else
            zf_fetch_peeks_fill (self->peeks, index, zframe_data (slot->frame), slot->filled,
                                 false);
        used += slice;
    }
    return true;
}

//  Pieces of [first, last] the origin was still filling go back to missing.
static void s_origin_unfilled (zf_fetch_task_t *self, uint64_t first, uint64_t last)
{
    for (uint64_t index = first / self->piece_length;
         index <= last / self->piece_length && index < self->piece_count; index++)
        if (zf_piece_table_state (self->table, index) == ZF_PIECE_FETCHING) {
            s_release (&self->slots[index]);
            zf_piece_table_reset (self->table, index);
        }
}

//  An origin that answered 200 to a range: read it as one stream from now on. Pieces already
//  written stay; half-filled ones start over.
static void s_switch_to_stream (zf_fetch_task_t *self)
{
    zf_warning (self->env->name, "origin ignores Range task=%.16s url=%s: reading one stream",
                self->task_id, self->url);
    self->stream_mode = true;
    zf_fetch_origin_cancel_all (self->origin);
    s_origin_unfilled (self, 0, self->content_length ? self->content_length - 1 : 0);
}

static void s_origin_end (void *arg, const zf_origin_end_t *end)
{
    zf_fetch_task_t *self = arg;
    if (!zf_fetch_task_running (self))
        return;
    if (end->kind == ZF_ORIGIN_PROBE) {
        if (s_retry (self, &self->probe_attempts, &self->retry_at_ms, "probe", end->reason,
                     end->retryable))
            s_wake (self);
        return;
    }
    if (self->phase != PHASE_RUN)
        return;
    if (end->ok) {
        s_wake (self);
        return;
    }
    if (end->kind == ZF_ORIGIN_RANGE && end->ignores_range) {
        s_switch_to_stream (self);
        s_wake (self);
        return;
    }
    s_origin_unfilled (self, end->first, end->last);
    if (end->kind == ZF_ORIGIN_STREAM) {
        if (s_retry (self, &self->stream_attempts, &self->retry_at_ms, "stream", end->reason,
                     end->retryable))
            s_wake (self);
        return;
    }
    //  A range: the attempt counts for its first piece, and every piece it covered waits out
    //  the same backoff.
    uint64_t first = end->first / self->piece_length, last = end->last / self->piece_length;
    char what[64];
    if (first == last)
        snprintf (what, sizeof what, "piece %" PRIu64, first);
    else
        snprintf (what, sizeof what, "pieces %" PRIu64 "-%" PRIu64, first, last);
    int64_t until = 0;
    if (!s_retry (self, &self->slots[first].attempts, &until, what, end->reason, end->retryable))
        return;
    for (uint64_t index = first; index <= last; index++)
        zf_piece_table_backoff (self->table, index, until);
    s_wake (self);
}

static const zf_fetch_origin_sink_t s_origin_sink = {
    .on_length = s_origin_length,
    .on_bytes = s_origin_bytes,
    .on_end = s_origin_end,
};

//  --- the parents' sink ------------------------------------------------------------------------

static void s_parents_layout (void *arg, uint64_t content_length, uint64_t piece_length)
{
    zf_fetch_task_t *self = arg;
    if (self->phase != PHASE_PARENTS)
        return; //  the origin fixed it first; the parents check theirs against it
    //  Pieces must line up with the parents' to be checked against their digests: a local
    //  copy cut otherwise is of no use.
    bool stale =
        self->stored_length != 0
        && (self->stored_length != content_length || self->stored_piece_length != piece_length);
    s_layout (self, content_length, piece_length, true, stale);
}

static void s_parents_piece (void *arg, uint64_t piece, zframe_t **frame, const uint8_t *digest,
                             uint32_t parent_id)
{
    zf_fetch_task_t *self = arg;
    if (self->phase != PHASE_RUN || zf_piece_table_state (self->table, piece) != ZF_PIECE_FETCHING)
        return;
    slot_t *slot = &self->slots[piece];
    zframe_destroy (&slot->frame);
    slot->filled = zframe_size (*frame);
    slot->frame = *frame;
    *frame = NULL;
    self->bytes_from_parents += slot->filled;
    self->progress_ms = zf_clock_mono_ms ();
    s_piece_verified (self, piece, digest, parent_id);
}

static void s_parents_dropped (void *arg, const char *parent, bool failed, const char *reason)
{
    zf_fetch_task_t *self = arg;
    const zf_fetch_observer_t *observer = self->env->observer;
    if (observer && self->scheduled)
        observer->parent_dropped (self->env->observer_arg, self, parent, failed, reason);
}

static void s_parents_wake (void *arg)
{
    s_wake (arg);
}

static const zf_fetch_parents_sink_t s_parents_sink = {
    .on_layout = s_parents_layout,
    .on_piece = s_parents_piece,
    .on_dropped = s_parents_dropped,
    .wake = s_parents_wake,
    .buffer = s_parents_buffer,
};
