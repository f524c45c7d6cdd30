/*  zf_fetch_task.c — one task's life and phases (see zf_fetch_task_internal.h for its parts):
    made, started, storage.stat and storage.open, the layout, the pump that drives RUN, the
    content digest checked and storage.complete, and failure. */
#include "zf_clock.h"
#include "zf_fetch_task_internal.h"
#include "zf_log.h"

#define REOPENS_MAX 3 //  storage losing pieces again and again is a failure
//  The span of pieces the origin may work on ahead of the first one not yet stored: twice
//  the pieces the range transfers in flight ask for, so that a piece waiting for storage's
//  piece.written leaves no connection idle (transfers + 1 took 13% longer back to source),
//  as far as WINDOW_MEMORY allows. A piece holds a buffer only from its first byte to its
//  write, and a copy after that while the content hash has not come to it, so the memory
//  held is the pieces being filled (one per transfer), written, and ahead of the hash: at
//  most the window, 2 x source_concurrency x ZF_FETCH_TASK_RANGE_BYTES (16 MiB at the
//  defaults, whatever the piece length).
#define WINDOW_MEMORY (32u << 20)

//  --- phases -------------------------------------------------------------------------------------

bool zf_fetch_task_running (zf_fetch_task_t *self)
{
    return self->phase != ZF_FETCH_TASK_PHASE_COMPLETE && self->phase != ZF_FETCH_TASK_PHASE_FAILED;
}

static void s_end_timer (zf_fetch_task_t *self, int *timer)
{
    if (*timer >= 0)
        zf_timers_end (self->env->timers, *timer);
    *timer = -1;
}

void zf_fetch_task_fail (zf_fetch_task_t *self, zf_task_error_t code, const char *fmt, ...)
{
    if (!zf_fetch_task_running (self))
        return;
    self->phase = ZF_FETCH_TASK_PHASE_FAILED;
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
    zf_fetch_task_free_buffers (self);
    zf_counter_add (self->env->tasks_failed, 1);
    zf_warning (self->env->name, "task failed task=%.16s code=%s: %s", self->task_id,
                self->error_code, self->error_message);
    zf_fetch_task_prove (self, ZF_FETCH_PROOF_ENDED, 0, 0, self->error_message);
    zf_fetch_task_ended (self);
}

void zf_fetch_task_abandon (zf_fetch_task_t *self, const char *why)
{
    zf_fetch_task_fail (self, ZF_TASK_ERROR_SOURCE,
                        "the origin did not accept the caller this task was made for: %s", why);
}

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
    self->headers = zf_fetch_origin_headers (request->headers.items, request->headers.count);
    self->wake_timer = self->check_timer = -1;
    self->probe = "no";
    self->born_ms = zf_clock_mono_ms ();
    self->phase = ZF_FETCH_TASK_PHASE_STAT;
    self->scheduled = env->scheduled;
    if (*self->url)
        self->origin = zf_fetch_origin_new (env->name, env->config, env->curl, self->url,
                                            self->headers, &zf_fetch_task_origin_sink, self);
    if (request->parents.count > 0 || self->scheduled) {
        self->parents = zf_fetch_parents_new (env, task_id, digest, self->scheduled,
                                              &zf_fetch_task_parents_sink, self);
        for (size_t index = 0; index < request->parents.count; index++)
            zf_fetch_parents_add (self->parents, ((char **) request->parents.items)[index]);
    }
    return self;
}

void zf_fetch_task_hint_length (zf_fetch_task_t *self, uint64_t content_length)
{
    ZF_ASSERT (self->phase == ZF_FETCH_TASK_PHASE_STAT);
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
    zf_fetch_task_free_buffers (self);
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

//  --- going to the origin --------------------------------------------------------------------

//  Nothing came from parents before the layout was known: the origin alone, as if none had
//  been given.
static void s_parents_to_origin (zf_fetch_task_t *self, const char *why)
{
    if (self->phase != ZF_FETCH_TASK_PHASE_PARENTS)
        return;
    if (!self->origin) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_PARENTS, "%s, and the task has no URL", why);
        return;
    }
    zf_notice (self->env->name, "task goes to the origin task=%.16s: %s", self->task_id, why);
    zf_fetch_parents_remove_all (self->parents);
    self->phase = ZF_FETCH_TASK_PHASE_PROBE;
    zf_fetch_task_wake (self);
}

void zf_fetch_task_to_source (zf_fetch_task_t *self)
{
    if (!zf_fetch_task_running (self) || self->sched_source)
        return;
    self->sched_source = true;
    self->source_ms = zf_clock_mono_ms () - self->born_ms;
    if (self->phase == ZF_FETCH_TASK_PHASE_PARENTS)
        s_parents_to_origin (self, "it is the task's origin fetcher");
    else
        zf_fetch_task_wake (self);
}

//  The task does not become an origin fetcher: when it did, every peer of a swarm whose
//  scheduler died took the rest of the file from the origin while the seed still fed them
//  (N = 8, the scheduler killed at 8 s of 25: 5.3 F from the origin, the last peer at 118 s;
//  docs/benchmarks.md "A scheduler that dies").
void zf_fetch_task_lose_scheduler (zf_fetch_task_t *self, const char *why)
{
    if (!zf_fetch_task_running (self) || self->sched_source || self->sched_lost)
        return;
    self->sched_lost = why;
    zf_notice (self->env->name, "task goes on without a scheduler task=%.16s: %s, parents=%zu",
               self->task_id, why, zf_fetch_task_parent_count (self));
    zf_fetch_task_wake (self);
}

//  A scheduler answers again (it restarted, or came back): the task is scheduled as before,
//  its parents given and replaced by the scheduler.
void zf_fetch_task_regain_scheduler (zf_fetch_task_t *self, const char *scheduler)
{
    if (!zf_fetch_task_running (self) || !self->sched_lost)
        return;
    self->sched_lost = NULL;
    zf_notice (self->env->name, "task has a scheduler again task=%.16s scheduler=%s parents=%zu",
               self->task_id, scheduler, zf_fetch_task_parent_count (self));
    zf_fetch_task_wake (self);
}

//  --- storage: stat, open ---------------------------------------------------------------------

static int s_on_check (zloop_t *loop, int timer_id, void *arg);

//  Looks at the task again at `when` (a backoff ending, a deadline).
void zf_fetch_task_check_at (zf_fetch_task_t *self, int64_t when)
{
    s_end_timer (self, &self->check_timer);
    int64_t delay = when - zf_clock_mono_ms ();
    self->check_timer =
        zf_timers_start (self->env->timers, delay > 0 ? (size_t) delay : 1, 1, s_on_check, self);
}

static void s_on_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_fetch_task_t *self = zf_fetch_task_of_reply (arg, NULL);
    if (!self)
        return;
    if (status == ZF_OK) {
        const zf_msg_storage_task_t *task = reply->env.body;
        self->content_length = task->content_length;
        self->piece_length = task->piece_length;
        self->piece_count = task->piece_count;
        self->finished_count = task->finished_count;
        if (streq (task->state, "complete")) {
            self->phase = ZF_FETCH_TASK_PHASE_COMPLETE;
            zf_counter_add (self->env->tasks_complete, 1);
            zf_info (self->env->name, "task complete in storage task=%.16s", self->task_id);
            //  no request to the origin will prove the requester's access: ask
            zf_fetch_task_prove (self, ZF_FETCH_PROOF_ASK, 0, 0, NULL);
            zf_fetch_task_told_ended (self);
            zf_fetch_task_answer (self);
            return;
        }
        self->stored_length = task->content_length;
        self->stored_piece_length = task->piece_length;
    } else if (zf_bus_error_code (status, reply) != ZF_CODE_NOT_FOUND) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE, "storage.stat at %s: %s",
                            self->env->config->storage, zf_fetch_task_reply_error (status, err));
        return;
    }
    //  Said once storage has not got it whole: a cache hit is no download (info, above), and
    //  a mirror serving the same blobs all day logged a "started" for every request.
    zf_notice (self->env->name, "task started task=%.16s digest=%s", self->task_id,
               *self->digest ? self->digest : "-");
    self->stat_ms = zf_clock_mono_ms () - self->born_ms;
    if (!self->parents) {
        self->phase = ZF_FETCH_TASK_PHASE_PROBE;
        zf_fetch_task_answer (self);
        zf_fetch_task_wake (self);
        return;
    }
    self->phase = ZF_FETCH_TASK_PHASE_PARENTS;
    self->progress_ms = zf_clock_mono_ms ();
    zf_fetch_task_answer (self);
    zf_notice (self->env->name, "task asks parents task=%.16s parents=%zu%s", self->task_id,
               zf_fetch_parents_count (self->parents), self->scheduled ? " scheduled" : "");
    if (!self->scheduled) //  parents given: they come first, the origin only after them
        zf_fetch_task_prove (self, ZF_FETCH_PROOF_ASK, 0, 0, NULL);
    if (self->scheduled) {
        self->env->observer->task_started (self->env->observer_arg, self);
        zf_fetch_task_check_at (self, self->progress_ms + self->env->config->sched_fallback_ms);
    } else
        zf_fetch_task_wake (self);
    //  A parent given with the request may have answered before storage did.
    if (zf_fetch_task_running (self))
        zf_fetch_task_take_parents_layout (self);
}

void zf_fetch_task_start (zf_fetch_task_t *self, const zf_bus_return_t *answer)
{
    if (answer) {
        self->answer = *answer;
        self->answer_pending = true;
    }
    zf_msg_storage_stat_t stat = {.task_id = self->task_id};
    zf_fetch_task_storage (self, &zf_msg_storage_stat, &stat, NULL, s_on_stat, 0);
}

//  The task's pieces in memory: its piece table (every piece missing until storage says
//  otherwise), their slots, and the content hash begun.
static void s_make_table (zf_fetch_task_t *self)
{
    self->table = zf_piece_table_new (self->piece_count);
    zf_piece_table_set_origin (self->table, self->origin != NULL);
    self->slots =
        zf_calloc (self->piece_count ? self->piece_count : 1, sizeof (zf_fetch_task_slot_t));
    if (zf_fetch_task_hash_needed (self)) {
        self->whole_hash = EVP_MD_CTX_new ();
        ZF_ASSERT (self->whole_hash
                   && EVP_DigestInit_ex (self->whole_hash, EVP_sha256 (), NULL) == 1);
    }
}

//  The pieces storage.open says it holds (a resumed task): missing ones become stored.
static void s_take_stored (zf_fetch_task_t *self, zframe_t *bitmap)
{
    const uint8_t *bits = bitmap ? zframe_data (bitmap) : NULL;
    for (uint64_t index = 0; index < self->piece_count; index++)
        if (bitmap && index / 8 < zframe_size (bitmap) && zf_bit (bits, index)
            && zf_piece_table_state (self->table, index) == ZF_PIECE_MISSING)
            zf_piece_table_store (self->table, index);
    self->finished_count = zf_piece_table_stored (self->table);
    if (self->finished_count > 0)
        zf_notice (self->env->name,
                   "task resumes task=%.16s finished=%" PRIu64 " of %" PRIu64 " pieces",
                   self->task_id, self->finished_count, self->piece_count);
}

//  RUN: parents may be asked for pieces and the origin's transfers start.
static void s_run (zf_fetch_task_t *self)
{
    if (self->parents)
        zf_fetch_parents_attach (self->parents, self->table, self->content_length,
                                 self->piece_length);
    self->phase = ZF_FETCH_TASK_PHASE_RUN;
}

static void s_on_open (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_fetch_task_t *self = zf_fetch_task_of_reply (arg, NULL);
    if (!self)
        return;
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE, "storage.open at %s: %s",
                            self->env->config->storage, zf_fetch_task_reply_error (status, err));
        return;
    }
    const zf_msg_storage_task_t *task = reply->env.body;
    if (task->content_length != self->content_length || task->piece_length != self->piece_length
        || task->piece_count != self->piece_count) {
        zf_fetch_task_fail (
            self, ZF_TASK_ERROR_STORAGE,
            "storage.open answered length %" PRIu64 "/%" PRIu64 ", asked %" PRIu64 "/%" PRIu64,
            task->content_length, task->piece_length, self->content_length, self->piece_length);
        return;
    }
    self->opening = false;
    self->open_ms = zf_clock_mono_ms () - self->born_ms;
    bool fresh = self->table != NULL; //  made at the layout, running already (or about to)
    if (!fresh)
        s_make_table (self);
    s_take_stored (self, zmsg_first (reply->raw));
    if (!fresh)
        s_run (self);
    zf_fetch_task_wake (self); //  and a fresh task may complete now
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
    self->opening = true;
    zf_fetch_task_storage (self, &zf_msg_storage_open, &open, NULL, s_on_open, 0);
}

static void s_on_stale_removed (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                                const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    zf_fetch_task_t *self = zf_fetch_task_of_reply (arg, NULL);
    if (!self)
        return;
    if (status != ZF_OK)
        zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE, "storage.remove of a stale copy: %s",
                            zf_fetch_task_reply_error (status, err));
    else
        s_open (self);
}

void zf_fetch_task_layout (zf_fetch_task_t *self, uint64_t content_length, uint64_t piece_length,
                           bool ranges, bool stale)
{
    const zf_fetcher_config_t *config = self->env->config;
    self->content_length = content_length;
    self->stream_mode = !ranges;
    self->piece_length = piece_length;
    self->piece_count = (content_length + piece_length - 1) / piece_length;
    size_t transfers = (size_t) config->source_concurrency;
    size_t window = (size_t) (WINDOW_MEMORY / piece_length);
    //  Every transfer's run and one piece more fit in the window: with many transfers, runs
    //  are shorter (one piece each at 16 transfers of 1 MiB pieces, as before runs).
    self->range_pieces = piece_length < ZF_FETCH_TASK_RANGE_BYTES
                             ? (size_t) (ZF_FETCH_TASK_RANGE_BYTES / piece_length)
                             : 1;
    if (self->range_pieces > 1 && transfers * self->range_pieces + 1 > window)
        self->range_pieces = window > transfers ? (window - 1) / transfers : 1;
    if (window > 2 * transfers * self->range_pieces)
        window = 2 * transfers * self->range_pieces;
    size_t least = transfers * self->range_pieces + 1;
    self->window = window > least ? window : least;
    self->phase = ZF_FETCH_TASK_PHASE_OPEN;
    self->layout_ms = zf_clock_mono_ms () - self->born_ms;
    zf_info (self->env->name,
             "task length task=%.16s content_length=%" PRIu64 " piece_length=%" PRIu64
             " pieces=%" PRIu64 " mode=%s range_pieces=%zu",
             self->task_id, content_length, piece_length, self->piece_count,
             ranges ? "ranges" : "stream", self->range_pieces);
    if (stale) { //  the content changed: what storage holds is not it
        zf_warning (self->env->name,
                    "task changed at the origin task=%.16s stored=%" PRIu64 " now=%" PRIu64,
                    self->task_id, self->stored_length, content_length);
        zf_msg_storage_remove_t remove = {.task_id = self->task_id};
        zf_fetch_task_storage (self, &zf_msg_storage_remove, &remove, NULL, s_on_stale_removed, 0);
        return;
    }
    s_open (self);
    //  A fresh task (storage holds nothing of it) need not wait for storage's answer, which
    //  took 1-3 ms before the first range's bytes could go on (docs/architecture.md, "Where
    //  the first byte of a cold blob waits"): its table is made now, and it runs as soon as
    //  a reader peeks (s_pump), so those bytes fill pieces, and answer peeks, as they
    //  arrive. Its piece.write requests go out after the open on the one link to storage,
    //  which takes them in order (bus/zf_bus_link.c: one DEALER per actor; storage opens at
    //  once): none reaches storage before the task exists. A failed open still fails the
    //  task, and the task completes only once storage answered the open (s_pump_run).
    if (self->stored_length == 0 && zf_fetch_task_running (self)) {
        s_make_table (self);
        zf_fetch_task_wake (self);
    }
}

//  --- the end: the content digest, storage.complete ----------------------------------------------

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
        zf_fetch_task_release (
            &self->slots[index]); //  the spare buffers stay, for the pieces fetched again
    zf_free (self->slots);
    self->slots = NULL;
    zf_piece_table_destroy (&self->table);
    EVP_MD_CTX_free (self->whole_hash);
    self->whole_hash = NULL;
    self->hashed_offset = 0;
    self->window_start = 0;
    self->phase = ZF_FETCH_TASK_PHASE_OPEN;
    s_open (self);
}

static void s_on_completed (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                            const zf_error_t *err, void *arg)
{
    (void) bus;
    zf_fetch_task_t *self = zf_fetch_task_of_reply (arg, NULL);
    if (!self)
        return;
    if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FINISHED && self->reopens < REOPENS_MAX) {
        s_reopen (self);
        return;
    }
    if (status != ZF_OK) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_STORAGE, "storage.complete at %s: %s",
                            self->env->config->storage, zf_fetch_task_reply_error (status, err));
        return;
    }
    const zf_msg_storage_task_t *task = reply->env.body;
    self->finished_count = task->finished_count;
    self->phase = ZF_FETCH_TASK_PHASE_COMPLETE;
    zf_fetch_peeks_drop (self->peeks, "the task is complete");
    zf_fetch_task_free_buffers (self);
    if (self->parents)
        zf_fetch_parents_remove_all (self->parents);
    zf_counter_add (self->env->tasks_complete, 1);
    zf_notice (self->env->name,
               "task complete task=%.16s content_length=%" PRIu64 " from_source=%" PRIu64
               " from_parents=%" PRIu64 "%s%s",
               self->task_id, self->content_length, self->bytes_from_source,
               self->bytes_from_parents, *self->fallback ? " fallback=" : "", self->fallback);
    zf_fetch_task_ended (self);
}

static void s_finish (zf_fetch_task_t *self)
{
    if (zf_fetch_task_hash_needed (self)) {
        uint8_t digest[32];
        unsigned int digest_size = 0;
        ZF_ASSERT (EVP_DigestFinal_ex (self->whole_hash, digest, &digest_size) == 1);
        char actual[65];
        for (size_t index = 0; index < sizeof digest; index++)
            snprintf (actual + 2 * index, 3, "%02x", digest[index]);
        if (!streq (actual, self->digest + 7)) {
            //  Nothing wrong may stay in the cache: remove what was stored, then fail.
            zf_fetch_task_remove_stored (self);
            zf_fetch_task_fail (self, ZF_TASK_ERROR_DIGEST,
                                "content digest mismatch: expected %s, got sha256:%s (%" PRIu64
                                " bytes from %s)",
                                self->digest, actual, self->content_length, self->url);
            return;
        }
    }
    self->phase = ZF_FETCH_TASK_PHASE_COMPLETING;
    zf_msg_storage_complete_t complete = {.task_id = self->task_id};
    zf_fetch_task_storage (self, &zf_msg_storage_complete, &complete, NULL, s_on_completed, 0);
}

//  --- the pump -----------------------------------------------------------------------------------

static void s_pump_run (zf_fetch_task_t *self)
{
    //  Asked whether its requester may read it: no piece moves on behalf of a caller the
    //  origin may refuse (zf_fetch_task_grant).
    if (self->proof_fn && self->proof_asked)
        return;
    int64_t now = zf_clock_mono_ms ();
    zf_fetch_task_feed_hash (self);
    zf_fetch_task_retire (self);
    if (!zf_fetch_task_running (self))
        return;
    if (self->window_start >= self->piece_count) {
        if (!self->opening) //  a fresh task ran before storage answered the open
            s_finish (self);
        return;
    }
    zf_fetch_task_pump_parents (self, now);
    if (!zf_fetch_task_running (self))
        return;
    zf_fetch_task_pump_origin (self, now);
}

static void s_pump (zf_fetch_task_t *self)
{
    switch (self->phase) {
    case ZF_FETCH_TASK_PHASE_PARENTS:
        //  Parents given by the client (or left by a lost scheduler), all gone before any
        //  answered: the origin.
        if ((!self->scheduled || self->sched_lost) && zf_fetch_parents_exhausted (self->parents)) {
            if (self->sched_lost)
                zf_fetch_task_count_fallback (self, self->sched_lost);
            s_parents_to_origin (self, "no parent to use");
        }
        break;
    case ZF_FETCH_TASK_PHASE_PROBE: zf_fetch_task_pump_probe (self); break;
    case ZF_FETCH_TASK_PHASE_OPEN:
        //  A fresh task's table was made at the layout: it runs while storage opens it once a
        //  reader waits for its bytes. Not before: on a busy host the origin's bytes pouring
        //  in (copied, written) took the CPU from the reader, whose task.status then came
        //  several ms late and held the first byte back more than the open did.
        if (self->table && (!self->opening || zf_fetch_peeks_first_awaited (self->peeks) >= 0)) {
            s_run (self);
            s_pump_run (self);
        }
        break;
    case ZF_FETCH_TASK_PHASE_RUN: s_pump_run (self); break;
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
void zf_fetch_task_wake (zf_fetch_task_t *self)
{
    if (self->wake_timer < 0 && zf_fetch_task_running (self))
        self->wake_timer = zf_timers_start (self->env->timers, 0, 1, s_on_wake, self);
}

static int s_on_check (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_fetch_task_t *self = arg;
    self->check_timer = -1;
    int64_t now = zf_clock_mono_ms ();
    //  Scheduled, and no parent to use in time: the origin.
    if (self->phase == ZF_FETCH_TASK_PHASE_PARENTS && self->scheduled && !self->sched_source) {
        int64_t deadline = self->progress_ms + self->env->config->sched_fallback_ms;
        if (now >= deadline) {
            zf_fetch_task_count_fallback (self, "no parent to use within sched_fallback");
            self->sched_source = true;
            s_parents_to_origin (self, "no parent to use in time");
            return 0;
        }
        zf_fetch_task_check_at (self, deadline);
    }
    s_pump (self);
    return 0;
}
