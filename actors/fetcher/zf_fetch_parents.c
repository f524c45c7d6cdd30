/*  zf_fetch_parents.c — pieces from parents: other nodes' storage actors, over the bus.

    A task given parents ("storage@node") asks each one storage.stat: the first valid answer
    fixes the layout (content and piece length) and the piece digests; every later parent
    must agree with them (a parent that does not is dropped with a log line). The parent set
    may change while the task runs (zf_fetch_task_add_parent / _remove_parent).

    Each active parent has credit: at most parent_concurrency piece.read requests in flight.
    A parent with credit gets the rarest piece it holds (fewest active parents holding it;
    lowest index on a tie, which keeps the content hash and streaming readers in order).
    A parent still downloading is asked storage.stat with wait_ms: it answers when it has
    finished another piece (a long poll, so a piece moves down a chain of peers without a
    poll interval of lag per hop), and is asked again at once; a parent whose storage does
    not hold the question (an older node) is asked again every parent_refresh. Every
    request has a deadline (parent_timeout) and no resend: a timeout marks the parent slow,
    PARENT_FAILURES_MAX failures in a row drop it, and its requests go to other parents. When
    nothing is left to hand out, a piece requested long enough ago is asked of a second
    parent too (end game); the first good answer wins.

    Each piece is checked (size, SHA-256 against the parents' digest list) before it is
    written. A piece no active parent holds (and none is still downloading), or one that
    failed at parents PIECE_PARENT_ATTEMPTS times, goes to the origin as a range request,
    unless the task has no URL: then the task fails with "parents".

    With a scheduler (task->scheduled), the scheduler decides who goes to the origin: pieces
    no parent holds wait for the parents it gives, until it says "source" or no piece came
    from a parent for sched_fallback. A parent it gives may not have opened the task yet (a
    seed triggered a moment ago): "not_found" at storage.stat is asked again for a while. */
#include "zf_clock.h"
#include "zf_fetch_internal.h"
#include "zf_log.h"

#define PARENTS_MAX           64 //  given and added together, failed ones included
#define PARENT_FAILURES_MAX   2  //  failed requests in a row that drop a parent
#define PIECE_PARENT_ATTEMPTS 3  //  failed attempts at parents before a piece goes to the origin
#define BUSY_BACKOFF_MS       50 //  first wait after "busy", doubled per busy answer in a row
#define BUSY_BACKOFF_CAP_MS   2000
#define TICK_MS               100 //  the pump's own clock: busy backoffs, end game, refresh
#define DIGEST_SIZE           32
#define NOT_FOUND_RETRY_MS    100  //  a scheduled parent that has not opened the task yet
#define STAT_WAIT_MS          2000 //  how long a parent holds a storage.stat without news

typedef enum { PARENT_STATING, PARENT_ACTIVE, PARENT_FAILED } parent_state_t;

typedef struct {
    uint32_t id; //  never reused within a task: replies find their parent by it
    char name[ZF_NAME_MAX + 1];
    parent_state_t state;
    uint8_t *bitmap; //  pieces it holds, once active
    uint64_t have_count;
    bool complete;
    bool stat_pending;
    int64_t stat_at_ms; //  next refresh
    int64_t stat_sent_ms;
    bool stat_waits;        //  the pending storage.stat is a long poll
    uint64_t stat_finished; //  finished_count of its last storage.task: what a long poll knows
    uint64_t stat_seq;      //  of the latest storage.stat; answers to older ones are stale
    int64_t grew_ms;        //  when it last reported more pieces (or became active)
    int64_t added_ms;       //  when it was given (not_found at stat is forgiven for a while)
    int64_t ok_ms;          //  its last good answer (a piece or a stat)
    int64_t in_flight;      //  piece.read requests without an answer yet
    uint32_t failures;      //  in a row
    uint32_t busy_streak;
    int64_t busy_until_ms;
    uint64_t pieces_from, bytes_from;
} parent_t;

struct parent_set_s {
    parent_t *items[PARENTS_MAX];
    size_t count;
    uint32_t next_id;
    size_t cursor;          //  round robin over parents
    uint8_t *digests;       //  piece_count * 32 once the layout is known; zeros: unknown
    uint16_t *availability; //  active parents holding each piece
    uint64_t next_seq;
    uint64_t random; //  splitmix64 state: where a scheduled task's rarest-first scan starts
    int timer_id;
};

typedef struct {
    zf_fetch_env_t *env;
    char task_id[ZF_TASK_ID_SIZE + 1];
    uint64_t generation;
    uint32_t parent_id;
    uint64_t piece;
    uint64_t seq;
    void *handle; //  in env->parent_calls, so calls the bus never answers are freed at the end
} parent_call_t;

static void s_fail_parent (zf_fetch_task_t *task, parent_t *parent, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  --- the set -------------------------------------------------------------------------------

static bool s_has (parent_t *parent, uint64_t piece)
{
    return parent->bitmap && (parent->bitmap[piece / 8] >> (piece % 8)) & 1;
}

static parent_t *s_find_id (parent_set_t *set, uint32_t id)
{
    for (size_t index = 0; index < set->count; index++)
        if (set->items[index]->id == id)
            return set->items[index];
    return NULL;
}

static parent_t *s_find_name (parent_set_t *set, const char *name)
{
    for (size_t index = 0; index < set->count; index++)
        if (streq (set->items[index]->name, name))
            return set->items[index];
    return NULL;
}

static void s_event (zf_fetch_task_t *task, parent_t *parent, zf_fetch_parent_event_t event,
                     uint64_t piece, const char *reason)
{
    zf_fetch_env_t *env = task->env;
    if (event == ZF_FETCH_PARENT_PIECE)
        zf_debug (env->name, "piece from parent task=%.16s parent=%s piece=%" PRIu64, task->task_id,
                  parent->name, piece);
    else
        zf_warning (env->name, "parent %s task=%.16s parent=%s: %s",
                    event == ZF_FETCH_PARENT_SLOW ? "slow" : "failed", task->task_id, parent->name,
                    reason);
    if (env->on_parent)
        env->on_parent (task->task_id, parent->name, event, piece, reason, env->on_parent_arg);
}

static void s_count (zf_fetch_task_t *task, const char *result)
{
    zf_counter_add (zf_metrics_counter ("zfly_fetcher_parent_requests_total",
                                        "piece.read requests to parents, by result", "actor",
                                        task->env->name, "result", result, NULL),
                    1);
}

static parent_t *s_parent_new (parent_set_t *set, const char *name)
{
    parent_t *parent = zf_calloc (1, sizeof *parent);
    parent->id = ++set->next_id;
    zf_strlcpy (parent->name, name, sizeof parent->name);
    parent->state = PARENT_STATING;
    parent->added_ms = zf_clock_mono_ms ();
    set->items[set->count++] = parent;
    return parent;
}

void zf_fetch_parents_new (zf_fetch_task_t *self, const zf_msg_task_fetch_t *request)
{
    parent_set_t *set = zf_calloc (1, sizeof *set);
    set->timer_id = -1;
    self->parents = set;
    for (size_t index = 0; index < request->parents.count; index++) {
        const char *name = ((char **) request->parents.items)[index];
        if (!*name || s_find_name (set, name) || set->count >= PARENTS_MAX)
            continue;
        s_parent_new (set, name);
    }
}

void zf_fetch_parents_stop (zf_fetch_task_t *self)
{
    parent_set_t *set = self->parents;
    if (set && set->timer_id >= 0) {
        zloop_timer_end (self->env->loop, set->timer_id);
        set->timer_id = -1;
    }
}

void zf_fetch_parents_destroy (zf_fetch_task_t *self)
{
    parent_set_t *set = self->parents;
    if (!set)
        return;
    zf_fetch_parents_stop (self);
    for (size_t index = 0; index < set->count; index++) {
        zf_free (set->items[index]->bitmap);
        zf_free (set->items[index]);
    }
    zf_free (set->digests);
    zf_free (set->availability);
    zf_free (set);
    self->parents = NULL;
}

const uint8_t *zf_fetch_parents_digest (zf_fetch_task_t *self, uint64_t piece)
{
    parent_set_t *set = self->parents;
    if (!set || !set->digests || piece >= self->piece_count)
        return NULL;
    static const uint8_t zeros[DIGEST_SIZE] = {0};
    const uint8_t *digest = set->digests + piece * DIGEST_SIZE;
    return memcmp (digest, zeros, DIGEST_SIZE) == 0 ? NULL : digest;
}

bool zf_fetch_parents_routing (zf_fetch_task_t *self)
{
    return self->parents && self->parents->availability;
}

const char *zf_fetch_parents_name (zf_fetch_task_t *self, uint32_t id)
{
    parent_t *parent = self->parents && id ? s_find_id (self->parents, id) : NULL;
    return parent ? parent->name : NULL;
}

bool zf_fetch_parents_hold (zf_fetch_task_t *self, int64_t now)
{
    return self->scheduled && !self->sched_source
           && now - self->sched_progress_ms < self->env->config->sched_fallback_ms;
}

void zf_fetch_parents_ensure (zf_fetch_task_t *self)
{
    if (self->parents)
        return;
    self->parents = zf_calloc (1, sizeof (parent_set_t));
    self->parents->timer_id = -1;
}

size_t zf_fetch_parents_count (zf_fetch_task_t *self)
{
    size_t count = 0;
    parent_set_t *set = self->parents;
    for (size_t index = 0; set && index < set->count; index++)
        count += set->items[index]->state != PARENT_FAILED;
    return count;
}

bool zf_fetch_parents_active (zf_fetch_task_t *self)
{
    parent_set_t *set = self->parents;
    for (size_t index = 0; set && index < set->count; index++)
        if (set->items[index]->state != PARENT_FAILED)
            return true;
    return false;
}

static bool s_layout_known (zf_fetch_task_t *task)
{
    return task->phase >= PHASE_OPEN && task->phase <= PHASE_COMPLETING;
}

//  --- requests and their answers ---------------------------------------------------------------

static zf_fetch_task_t *s_call_task (parent_call_t *call)
{
    zf_fetch_task_t *task = zhashx_lookup (call->env->tasks, call->task_id);
    if (!task || task->generation != call->generation || !zf_fetch_task_running (task)
        || !task->parents)
        return NULL;
    return task;
}

static parent_call_t *s_call_new (zf_fetch_task_t *task, parent_t *parent, uint64_t piece,
                                  uint64_t seq)
{
    parent_call_t *call = zf_calloc (1, sizeof *call);
    call->env = task->env;
    zf_strlcpy (call->task_id, task->task_id, sizeof call->task_id);
    call->generation = task->generation;
    call->parent_id = parent->id;
    call->piece = piece;
    call->seq = seq;
    call->handle = zlistx_add_end (task->env->parent_calls, call);
    return call;
}

//  Forgets a call once its callback ran (or it was never sent).
static void s_call_free (parent_call_t *call)
{
    zlistx_delete (call->env->parent_calls, call->handle);
}

static zf_bus_call_t s_deadline (zf_fetch_task_t *task)
{
    //  No resend: a parent that does not answer within the deadline is slow, and the piece
    //  is better asked of another one than of the same one again.
    return (zf_bus_call_t){.timeout_ms = task->env->config->parent_timeout_ms, .retries = 0};
}

//  Forgets one live request of a piece; with none left the piece is missing again.
static void s_drop_request (zf_fetch_task_t *task, uint64_t index, uint64_t seq, bool attempt)
{
    piece_t *piece = &task->pieces[index];
    if (piece->state != PIECE_REQUESTED)
        return;
    if (seq == piece->seq) {
        piece->seq = piece->dup_seq;
        piece->parent_id = piece->dup_parent_id;
    }
    if (seq == piece->seq || seq == piece->dup_seq) {
        piece->dup_seq = 0;
        piece->dup_parent_id = 0;
    }
    if (attempt && ++piece->parent_attempts >= PIECE_PARENT_ATTEMPTS
        && zf_fetch_task_has_origin (task) && !piece->use_origin) {
        piece->use_origin = true;
        zf_info (task->env->name, "piece to the origin task=%.16s piece=%" PRIu64 ": %u failures",
                 task->task_id, index, piece->parent_attempts);
    }
    if (piece->seq == 0)
        piece->state = PIECE_MISSING;
}

static void s_clear_bit (zf_fetch_task_t *task, parent_t *parent, uint64_t piece)
{
    if (!s_has (parent, piece))
        return;
    parent->bitmap[piece / 8] &= (uint8_t) ~(1u << (piece % 8));
    parent->have_count--; //  complete stays: it will not download the piece again itself
    if (parent->state == PARENT_ACTIVE && task->parents->availability)
        task->parents->availability[piece]--;
}

//  Checks what a parent answered for a piece; fills digest. NULL when it is good.
static const char *s_check_piece (zf_fetch_task_t *task, uint64_t index, zf_bus_msg_t *reply,
                                  uint8_t *digest)
{
    const zf_msg_piece_data_t *data = reply->env.body;
    zframe_t *bytes = zmsg_first (reply->raw);
    if (data->piece != index || !bytes || zframe_size (bytes) != zf_fetch_piece_size (task, index))
        return "wrong piece or size";
    unsigned int digest_size = 0;
    ZF_ASSERT (EVP_Digest (zframe_data (bytes), zframe_size (bytes), digest, &digest_size,
                           EVP_sha256 (), NULL)
               == 1);
    const uint8_t *expected = zf_fetch_parents_digest (task, index);
    if (!expected && data->digest.size == DIGEST_SIZE)
        expected = data->digest.data; //  nobody knew it at stat time: the parent's word
    if (!expected || memcmp (expected, digest, DIGEST_SIZE) != 0)
        return "digest mismatch";
    return NULL;
}

//  A parent that answered well within the last parent_timeout is alive, only busy.
static bool s_delivering (zf_fetch_task_t *task, parent_t *parent, int64_t now)
{
    return parent->ok_ms && now - parent->ok_ms < task->env->config->parent_timeout_ms;
}

static void s_on_piece (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    parent_call_t *call = arg;
    zf_fetch_task_t *task = s_call_task (call);
    uint32_t parent_id = call->parent_id;
    uint64_t index = call->piece, seq = call->seq;
    s_call_free (call);
    if (!task)
        return;
    parent_t *parent = s_find_id (task->parents, parent_id);
    if (parent)
        parent->in_flight--;
    piece_t *piece = &task->pieces[index];
    bool live = piece->state == PIECE_REQUESTED && (seq == piece->seq || seq == piece->dup_seq);
    const zf_msg_error_t *remote = status == ZF_E_REMOTE && reply ? reply->env.body : NULL;
    const char *reason = err && *err->message ? err->message : zf_status_name (status);
    int64_t now = zf_clock_mono_ms ();

    if (status == ZF_OK) {
        uint8_t digest[DIGEST_SIZE];
        const char *bad = s_check_piece (task, index, reply, digest);
        if (bad) {
            s_count (task, "digest");
            if (live)
                s_drop_request (task, index, seq, true);
            if (parent && parent->state != PARENT_FAILED) {
                s_clear_bit (task, parent, index);
                s_fail_parent (task, parent, "piece %" PRIu64 ": %s", index, bad);
            }
        } else if (!live) {
            s_count (task, "duplicate"); //  the other request of the end game won
            if (parent)
                parent->failures = 0;
        } else {
            s_count (task, "ok");
            zframe_t *bytes = zmsg_pop (reply->raw);
            size_t size = zframe_size (bytes);
            piece->seq = piece->dup_seq = 0;
            piece->parent_id = piece->dup_parent_id = 0;
            piece->frame = bytes;
            piece->buffer = zframe_data (bytes);
            piece->filled = size;
            task->bytes_from_parents += size;
            zf_counter_add (task->env->parent_bytes, size);
            piece->from_parent_id = parent_id;
            task->sched_progress_ms = now;
            if (parent) {
                parent->failures = parent->busy_streak = 0;
                parent->ok_ms = now;
                parent->pieces_from++;
                parent->bytes_from += size;
                s_event (task, parent, ZF_FETCH_PARENT_PIECE, index, "ok");
            }
            zf_fetch_task_piece_verified (task, index, digest);
        }
    } else if (remote && streq (remote->code, "busy")) {
        s_count (task, "busy");
        if (live)
            s_drop_request (task, index, seq, false);
        if (parent) {
            int64_t backoff = BUSY_BACKOFF_MS;
            for (uint32_t step = 0; step < parent->busy_streak && backoff < BUSY_BACKOFF_CAP_MS;
                 step++)
                backoff *= 2;
            parent->busy_streak++;
            parent->busy_until_ms =
                now + (backoff < BUSY_BACKOFF_CAP_MS ? backoff : BUSY_BACKOFF_CAP_MS);
        }
    } else if (remote
               && (streq (remote->code, "corrupt") || streq (remote->code, "not_finished"))) {
        //  The parent no longer has this piece (storage dropped a damaged one): not its
        //  fault as a parent, but never ask it for the piece again unless a refresh says so.
        s_count (task, remote->code);
        if (live)
            s_drop_request (task, index, seq, true);
        if (parent) {
            zf_info (task->env->name,
                     "parent lost a piece task=%.16s parent=%s piece=%" PRIu64 ": %s",
                     task->task_id, parent->name, index, remote->code);
            s_clear_bit (task, parent, index);
        }
    } else if (status == ZF_E_TIMEOUT && parent && s_delivering (task, parent, now)) {
        //  Late, not dead: its upload is queued behind other children's pieces. Ask again
        //  (maybe elsewhere) without blaming it or counting an attempt against the piece.
        s_count (task, "late");
        if (live)
            s_drop_request (task, index, seq, false);
    } else {
        const char *result = status == ZF_E_TIMEOUT                        ? "timeout"
                             : remote && streq (remote->code, "not_found") ? "not_found"
                                                                           : "error";
        s_count (task, result);
        if (live)
            s_drop_request (task, index, seq, true);
        if (parent && parent->state != PARENT_FAILED) {
            if (!streq (result, "timeout"))
                s_fail_parent (task, parent, "piece.read of piece %" PRIu64 ": %s", index, reason);
            else if (++parent->failures >= PARENT_FAILURES_MAX)
                s_fail_parent (task, parent, "%u requests in a row timed out", parent->failures);
            else {
                char why[96];
                snprintf (why, sizeof why, "piece %" PRIu64 " not answered within %" PRId64 "ms",
                          index, task->env->config->parent_timeout_ms);
                s_event (task, parent, ZF_FETCH_PARENT_SLOW, index, why);
            }
        }
    }
    zf_fetch_task_pump (task);
}

//  Asks a parent for a piece; false when the request could not even be sent (the parent is
//  then failed).
static bool s_send_read (zf_fetch_task_t *task, parent_t *parent, uint64_t index, bool duplicate)
{
    parent_set_t *set = task->parents;
    uint64_t seq = ++set->next_seq;
    parent_call_t *call = s_call_new (task, parent, index, seq);
    zf_msg_piece_read_t read = {.task_id = task->task_id, .piece = index};
    zf_error_t err;
    if (zf_bus_request (task->env->bus, parent->name, &zf_msg_piece_read, &read, NULL,
                        s_deadline (task), s_on_piece, call, &err)
        != ZF_OK) {
        s_call_free (call);
        s_count (task, "error");
        s_fail_parent (task, parent, "piece.read not sent: %s", err.message);
        return false;
    }
    parent->in_flight++;
    piece_t *piece = &task->pieces[index];
    piece->state = PIECE_REQUESTED;
    if (duplicate) {
        piece->dup_seq = seq;
        piece->dup_parent_id = parent->id;
    } else {
        piece->seq = seq;
        piece->parent_id = parent->id;
        piece->requested_ms = zf_clock_mono_ms ();
    }
    return true;
}

//  --- stat: layout, digests, bitmaps -------------------------------------------------------------

static void s_ensure_arrays (zf_fetch_task_t *task)
{
    parent_set_t *set = task->parents;
    if (set->digests)
        return;
    size_t count = task->piece_count ? (size_t) task->piece_count : 1;
    set->digests = zf_calloc (count, DIGEST_SIZE);
    set->availability = zf_calloc (count, sizeof (uint16_t));
}

//  Takes a parent's bitmap as the truth about it, keeping availability in step.
static void s_set_bitmap (zf_fetch_task_t *task, parent_t *parent, const uint8_t *bits)
{
    uint16_t *availability = task->parents->availability;
    size_t bytes = (size_t) (task->piece_count + 7) / 8;
    if (!parent->bitmap)
        parent->bitmap = zf_calloc (bytes ? bytes : 1, 1);
    uint64_t had = parent->have_count;
    parent->have_count = 0;
    for (uint64_t index = 0; index < task->piece_count; index++) {
        bool now = (bits[index / 8] >> (index % 8)) & 1;
        bool before = s_has (parent, index);
        if (now)
            parent->have_count++;
        if (now == before)
            continue;
        if (parent->state == PARENT_ACTIVE)
            availability[index] += now ? 1 : -1;
        parent->bitmap[index / 8] ^= (uint8_t) (1u << (index % 8));
    }
    if (parent->have_count > had)
        parent->grew_ms = zf_clock_mono_ms ();
}

static void s_activate (zf_fetch_task_t *task, parent_t *parent)
{
    parent->state = PARENT_ACTIVE;
    parent->grew_ms = zf_clock_mono_ms ();
    for (uint64_t index = 0; index < task->piece_count; index++)
        if (s_has (parent, index))
            task->parents->availability[index]++;
    zf_info (task->env->name,
             "parent active task=%.16s parent=%s pieces=%" PRIu64 " of %" PRIu64 "%s",
             task->task_id, parent->name, parent->have_count, task->piece_count,
             parent->complete ? " (complete)" : "");
}

//  Checks a parent's storage.task against the layout and digests the task has, merging the
//  digests it did not know (digests NULL: the answer carried none, a long poll). NULL when it
//  agrees.
static const char *s_agree (zf_fetch_task_t *task, const zf_msg_storage_task_t *body,
                            const uint8_t *digests)
{
    if (body->content_length != task->content_length || body->piece_length != task->piece_length)
        return "other content or piece length";
    if (*task->digest && body->digest && *body->digest && !streq (task->digest, body->digest))
        return "other content digest";
    static const uint8_t zeros[DIGEST_SIZE] = {0};
    uint8_t *known = task->parents->digests;
    for (uint64_t index = 0; digests && index < task->piece_count; index++) {
        const uint8_t *theirs = digests + index * DIGEST_SIZE;
        uint8_t *ours = known + index * DIGEST_SIZE;
        if (memcmp (theirs, zeros, DIGEST_SIZE) == 0)
            continue;
        if (memcmp (ours, zeros, DIGEST_SIZE) == 0)
            memcpy (ours, theirs, DIGEST_SIZE);
        else if (memcmp (ours, theirs, DIGEST_SIZE) != 0)
            return "other piece digests";
    }
    return NULL;
}

static void s_stat_parent (zf_fetch_task_t *task, parent_t *parent);

//  Before the layout: no parent left to ask means the origin.
static void s_check_parents_phase (zf_fetch_task_t *task)
{
    if (task->scheduled && !task->sched_source)
        return; //  the scheduler client decides (and has its own deadline)
    if (task->phase == PHASE_PARENTS && !zf_fetch_parents_active (task))
        zf_fetch_task_to_origin (task);
}

static int s_on_tick (zloop_t *loop, int timer_id, void *arg);

static void s_on_stat (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    parent_call_t *call = arg;
    zf_fetch_task_t *task = s_call_task (call);
    uint32_t parent_id = call->parent_id;
    uint64_t seq = call->seq;
    s_call_free (call);
    if (!task)
        return;
    parent_t *parent = s_find_id (task->parents, parent_id);
    if (!parent || parent->state == PARENT_FAILED || seq != parent->stat_seq)
        return; //  gone, or a parent given again has a newer question out
    parent->stat_pending = false;
    int64_t now = zf_clock_mono_ms ();
    if (status == ZF_E_REMOTE && reply
        && streq (((zf_msg_error_t *) reply->env.body)->code, "not_found") && task->scheduled
        && now - parent->added_ms < 2 * task->env->config->parent_timeout_ms) {
        //  Given by the scheduler before it opened the task (a seed just triggered): again soon.
        parent->stat_at_ms = now + NOT_FOUND_RETRY_MS;
        if (task->parents->timer_id < 0)
            task->parents->timer_id = zloop_timer (task->env->loop, TICK_MS, 0, s_on_tick, task);
        return;
    }
    if (status == ZF_E_TIMEOUT && parent->state == PARENT_ACTIVE
        && (s_delivering (task, parent, now) || ++parent->failures < PARENT_FAILURES_MAX)) {
        //  Its answer is queued behind the pieces it sends: ask later, like a late piece.
        parent->stat_at_ms = now + task->env->config->parent_refresh_ms;
        return;
    }
    if (status != ZF_OK) {
        s_fail_parent (task, parent, "storage.stat: %s",
                       err && *err->message ? err->message : zf_status_name (status));
        s_check_parents_phase (task);
        return;
    }
    const zf_msg_storage_task_t *body = reply->env.body;
    zframe_t *bitmap = zmsg_first (reply->raw);
    zframe_t *digests = zmsg_next (reply->raw);
    uint64_t count = body->piece_length
                         ? (body->content_length + body->piece_length - 1) / body->piece_length
                         : 0;
    //  A long poll asked for the bitmap only; an older storage may still send the digests.
    bool no_digests =
        parent->state == PARENT_ACTIVE && parent->stat_waits && digests && !zframe_size (digests);
    if (body->piece_count != count || (body->content_length && !body->piece_length) || !bitmap
        || !digests || zframe_size (bitmap) < (size_t) (count + 7) / 8
        || (!no_digests && zframe_size (digests) != (size_t) count * DIGEST_SIZE)) {
        s_fail_parent (task, parent, "storage.task malformed: %" PRIu64 " pieces, frames %zu/%zu",
                       body->piece_count, bitmap ? zframe_size (bitmap) : 0,
                       digests ? zframe_size (digests) : 0);
        s_check_parents_phase (task);
        return;
    }
    bool first = task->phase == PHASE_PARENTS;
    if (first) { //  the first parent to answer fixes the layout
        task->content_length = body->content_length;
        task->piece_length = body->piece_length;
        task->piece_count = body->piece_count;
    }
    s_ensure_arrays (task);
    const char *disagree = s_agree (task, body, no_digests ? NULL : zframe_data (digests));
    if (disagree) {
        s_fail_parent (task, parent, "dropped: %s than the task (%" PRIu64 "/%" PRIu64 ")",
                       disagree, body->content_length, body->piece_length);
        return;
    }
    //  A long poll answered early without news: that storage does not hold questions.
    bool complete = streq (body->state, "complete");
    bool held = parent->stat_waits
                && (body->finished_count > parent->stat_finished || complete
                    || now - parent->stat_sent_ms >= STAT_WAIT_MS / 2);
    parent->complete = complete;
    parent->stat_finished = body->finished_count;
    parent->ok_ms = now;
    s_set_bitmap (task, parent, zframe_data (bitmap));
    if (parent->state == PARENT_STATING)
        s_activate (task, parent);
    parent->stat_at_ms = held ? now : now + task->env->config->parent_refresh_ms;
    if (held && !parent->complete)
        s_stat_parent (task, parent);
    parent_set_t *set = task->parents;
    if (set->timer_id < 0)
        set->timer_id = zloop_timer (task->env->loop, TICK_MS, 0, s_on_tick, task);
    if (first)
        zf_fetch_task_on_layout (task, body->content_length, body->piece_length);
    else
        zf_fetch_task_pump (task);
}

static void s_stat_parent (zf_fetch_task_t *task, parent_t *parent)
{
    parent_call_t *call = s_call_new (task, parent, 0, ++parent->stat_seq);
    zf_msg_storage_stat_t stat = {.task_id = task->task_id};
    zf_bus_call_t deadline = s_deadline (task);
    //  Once it is known to be downloading, ask it to answer with its next piece; a parent the
    //  scheduler gave may not have opened the task yet: ask it to answer once it has, with
    //  its first piece.
    bool active = parent->state == PARENT_ACTIVE;
    parent->stat_waits = active ? !parent->complete : task->scheduled;
    if (parent->stat_waits) {
        stat.wait_ms = STAT_WAIT_MS;
        stat.known_finished = active ? parent->stat_finished : 0;
        stat.bitmap_only = active; //  digests come with each piece (piece.data)
        deadline.timeout_ms += STAT_WAIT_MS;
    }
    parent->stat_sent_ms = zf_clock_mono_ms ();
    zf_error_t err;
    if (zf_bus_request (task->env->bus, parent->name, &zf_msg_storage_stat, &stat, NULL, deadline,
                        s_on_stat, call, &err)
        != ZF_OK) {
        s_call_free (call);
        s_fail_parent (task, parent, "storage.stat not sent: %s", err.message);
        return;
    }
    parent->stat_pending = true;
}

void zf_fetch_parents_start (zf_fetch_task_t *self)
{
    parent_set_t *set = self->parents;
    zf_notice (self->env->name, "task asks parents task=%.16s parents=%zu", self->task_id,
               set->count);
    for (size_t index = 0; index < set->count && self->phase == PHASE_PARENTS; index++)
        if (set->items[index]->state == PARENT_STATING && !set->items[index]->stat_pending)
            s_stat_parent (self, set->items[index]);
    s_check_parents_phase (self);
}

//  Takes a parent out of the task: its pieces stop counting, its requests go elsewhere.
static void s_retire_parent (zf_fetch_task_t *task, parent_t *parent)
{
    bool was_active = parent->state == PARENT_ACTIVE;
    parent->state = PARENT_FAILED;
    uint16_t *availability = task->parents->availability;
    for (uint64_t index = 0; availability && was_active && index < task->piece_count; index++)
        if (s_has (parent, index))
            availability[index]--;
    for (uint64_t index = 0; task->pieces && index < task->piece_count; index++) {
        piece_t *piece = &task->pieces[index];
        if (piece->state != PIECE_REQUESTED)
            continue;
        if (piece->dup_parent_id == parent->id)
            s_drop_request (task, index, piece->dup_seq, false);
        if (piece->parent_id == parent->id)
            s_drop_request (task, index, piece->seq, false);
    }
}

static void s_fail_parent (zf_fetch_task_t *task, parent_t *parent, const char *fmt, ...)
{
    if (parent->state == PARENT_FAILED)
        return;
    char reason[512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (reason, sizeof reason, fmt, args);
    va_end (args);
    s_retire_parent (task, parent);
    s_event (task, parent, ZF_FETCH_PARENT_FAILED, 0, reason);
}

bool zf_fetch_task_add_parent (zf_fetch_task_t *self, const char *name)
{
    if (!zf_fetch_task_running (self) || !*name)
        return false;
    if (!self->parents) {
        self->parents = zf_calloc (1, sizeof (parent_set_t));
        self->parents->timer_id = -1;
    }
    parent_set_t *set = self->parents;
    parent_t *parent = s_find_name (set, name);
    if (parent && parent->state != PARENT_FAILED)
        return false;
    if (parent) { //  given again (the scheduler's choice): a fresh start
        parent->state = PARENT_STATING;
        parent->added_ms = zf_clock_mono_ms ();
        parent->failures = parent->busy_streak = 0;
        parent->busy_until_ms = 0;
        parent->complete = false;
        zf_free (parent->bitmap);
        parent->bitmap = NULL; //  left dangling, a later removal freed it twice
        parent->have_count = parent->stat_finished = 0;
    } else if (set->count < PARENTS_MAX)
        parent = s_parent_new (set, name);
    else
        return false;
    zf_info (self->env->name, "parent added task=%.16s parent=%s", self->task_id, name);
    //  Before the local stat, zf_fetch_parents_start asks it; in PROBE (the origin took over)
    //  it waits for the layout; from OPEN on it is asked now.
    if (self->phase == PHASE_PARENTS || s_layout_known (self))
        s_stat_parent (self, parent);
    return true;
}

void zf_fetch_parents_retire_all (zf_fetch_task_t *self)
{
    parent_set_t *set = self->parents;
    for (size_t index = 0; set && index < set->count; index++)
        if (set->items[index]->state != PARENT_FAILED)
            s_retire_parent (self, set->items[index]);
}

bool zf_fetch_task_remove_parent (zf_fetch_task_t *self, const char *name)
{
    parent_set_t *set = self->parents;
    parent_t *parent = set ? s_find_name (set, name) : NULL;
    if (!parent)
        return false;
    s_retire_parent (self, parent);
    for (size_t index = 0; index < set->count; index++)
        if (set->items[index] == parent) {
            set->items[index] = set->items[--set->count];
            break;
        }
    zf_free (parent->bitmap);
    zf_free (parent);
    zf_info (self->env->name, "parent removed task=%.16s parent=%s", self->task_id, name);
    if (self->phase == PHASE_PARENTS)
        s_check_parents_phase (self);
    else
        zf_fetch_task_pump (self);
    return true;
}

//  --- choosing pieces ----------------------------------------------------------------------------

static bool s_usable (zf_fetch_task_t *task, parent_t *parent, int64_t now)
{
    return parent->state == PARENT_ACTIVE && parent->busy_until_ms <= now
           && parent->in_flight < task->env->config->parent_concurrency;
}

static bool s_wanted (piece_t *piece, int64_t now)
{
    return piece->state == PIECE_MISSING && !piece->use_origin && piece->not_before_ms <= now;
}

static uint64_t s_random (parent_set_t *set)
{
    if (set->random == 0) //  differs between nodes: their own clock and process
        set->random = (uint64_t) zf_clock_mono_us () ^ ((uint64_t) getpid () << 32) ^ 1;
    //  splitmix64
    uint64_t z = (set->random += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

//  The rarest missing piece this parent holds; -1: none. Ties: with a scheduler, the scan starts
//  at a random piece, so children fed by one seed take different pieces and have something to
//  give each other (in order, every child held the same prefix and all pieces came from the seed:
//  measured in docs/benchmarks.md "Swarm"); without one, the lowest index, which keeps the
//  content hash and streaming readers in order.
static int64_t s_pick (zf_fetch_task_t *task, parent_t *parent, int64_t now)
{
    const uint16_t *availability = task->parents->availability;
    uint64_t first = task->window_start, span = task->piece_count - first;
    uint64_t start = task->scheduled && span > 1 ? s_random (task->parents) % span : 0;
    int64_t best = -1;
    for (uint64_t step = 0; step < span; step++) {
        uint64_t index = first + (start + step) % span;
        if (!s_wanted (&task->pieces[index], now) || !s_has (parent, index))
            continue;
        if (best < 0 || availability[index] < availability[best])
            best = (int64_t) index;
        if (availability[best] <= 1)
            break; //  nothing is rarer
    }
    return best;
}

//  A parent that is still downloading may yet get a piece nobody has now.
static bool s_parent_may_grow (zf_fetch_task_t *task, int64_t now)
{
    parent_set_t *set = task->parents;
    for (size_t index = 0; index < set->count; index++) {
        parent_t *parent = set->items[index];
        if (parent->state == PARENT_STATING)
            return true;
        if (parent->state == PARENT_ACTIVE && !parent->complete
            && now - parent->grew_ms < task->env->config->parent_timeout_ms)
            return true;
    }
    return false;
}

//  Pieces no parent can give go to the origin; without one the task cannot finish.
static void s_route_to_origin (zf_fetch_task_t *task, int64_t now)
{
    bool may_grow =
        zf_fetch_parents_hold (task, now) || (!task->sched_source && s_parent_may_grow (task, now));
    for (uint64_t index = task->window_start; index < task->piece_count; index++) {
        piece_t *piece = &task->pieces[index];
        if (piece->state != PIECE_MISSING || piece->use_origin
            || task->parents->availability[index] > 0 || may_grow)
            continue;
        if (!zf_fetch_task_has_origin (task)) {
            zf_fetch_task_fail (task, "parents",
                                "piece %" PRIu64 ": no parent has it and the task has no URL",
                                index);
            return;
        }
        piece->use_origin = true;
        zf_debug (task->env->name, "piece to the origin task=%.16s piece=%" PRIu64 ": no parent",
                  task->task_id, index);
    }
}

//  End game: with nothing new to hand out, a piece asked long ago is asked of a second parent.
static void s_end_game (zf_fetch_task_t *task, int64_t now)
{
    parent_set_t *set = task->parents;
    int64_t late_ms = task->env->config->parent_timeout_ms / 4;
    for (uint64_t index = task->window_start; index < task->piece_count; index++)
        if (s_wanted (&task->pieces[index], now))
            return;
    for (uint64_t index = task->window_start; index < task->piece_count; index++) {
        piece_t *piece = &task->pieces[index];
        if (piece->state != PIECE_REQUESTED || piece->dup_seq
            || now - piece->requested_ms < late_ms)
            continue;
        for (size_t step = 0; step < set->count; step++) {
            parent_t *parent = set->items[(set->cursor + step) % set->count];
            if (parent->id == piece->parent_id || !s_usable (task, parent, now)
                || !s_has (parent, index))
                continue;
            zf_debug (task->env->name, "end game task=%.16s piece=%" PRIu64 " also from %s",
                      task->task_id, index, parent->name);
            s_count (task, "end_game");
            s_send_read (task, parent, index, true);
            break;
        }
        if (!zf_fetch_task_running (task))
            return;
    }
}

void zf_fetch_parents_pump (zf_fetch_task_t *self)
{
    parent_set_t *set = self->parents;
    if (self->phase != PHASE_RUN || !set->availability)
        return;
    int64_t now = zf_clock_mono_ms ();
    s_route_to_origin (self, now);
    bool progress = true;
    while (progress && zf_fetch_task_running (self) && set->count > 0) {
        progress = false;
        for (size_t step = 0; step < set->count && zf_fetch_task_running (self); step++) {
            parent_t *parent = set->items[(set->cursor + step) % set->count];
            if (!s_usable (self, parent, now))
                continue;
            int64_t index = s_pick (self, parent, now);
            if (index >= 0 && s_send_read (self, parent, (uint64_t) index, false))
                progress = true;
        }
        set->cursor++; //  the next round starts at the next parent: pieces spread over all
    }
    if (zf_fetch_task_running (self))
        s_end_game (self, now);
    if (zf_fetch_task_running (self) && set->count && !zf_fetch_parents_active (self))
        s_route_to_origin (self, now); //  the last parent failed just now
}

static int s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_fetch_task_t *task = arg;
    parent_set_t *set = task->parents;
    int64_t now = zf_clock_mono_ms ();
    bool layout = s_layout_known (task);
    for (size_t index = 0; index < set->count; index++) {
        parent_t *parent = set->items[index];
        bool refresh = parent->state == PARENT_ACTIVE && !parent->complete;
        bool retry = parent->state == PARENT_STATING && (layout || task->phase == PHASE_PARENTS);
        if ((refresh || retry) && !parent->stat_pending && parent->stat_at_ms <= now)
            s_stat_parent (task, parent);
    }
    zf_fetch_task_pump (task);
    return 0;
}
