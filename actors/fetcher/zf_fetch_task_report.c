/*  zf_fetch_task_report.c — what a task tells others (see zf_fetch_task_internal.h):
    task.status and the requester's answer, its end (the observer, task.ended), what the
    scheduler client reads, fallbacks to the origin counted, the requester's access proof, and
    piece.peek for readers streaming the task's bytes. */
#include "zf_clock.h"
#include "zf_fetch_task_internal.h"
#include "zf_log.h"

static bool s_layout_known (zf_fetch_task_t *self)
{
    return self->phase >= ZF_FETCH_TASK_PHASE_OPEN && self->phase <= ZF_FETCH_TASK_PHASE_COMPLETING;
}

void zf_fetch_task_count_fallback (zf_fetch_task_t *self, const char *why)
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

//  --- the requester's access proof -------------------------------------------------------------

void zf_fetch_task_await_proof (zf_fetch_task_t *self, zf_fetch_proof_fn *fn, void *arg)
{
    ZF_ASSERT (self->phase == ZF_FETCH_TASK_PHASE_STAT && !self->answer_pending);
    self->proof_fn = fn;
    self->proof_arg = arg;
}

bool zf_fetch_task_proof_awaited (zf_fetch_task_t *self)
{
    return self->proof_fn != NULL;
}

void zf_fetch_task_prove (zf_fetch_task_t *self, zf_fetch_proof_t proof, long status,
                          uint64_t content_length, const char *why)
{
    zf_fetch_proof_fn *fn = self->proof_fn;
    if (!fn || (proof == ZF_FETCH_PROOF_ASK && self->proof_asked))
        return;
    if (proof == ZF_FETCH_PROOF_ASK)
        self->proof_asked = true;
    else
        self->proof_fn = NULL; //  told once
    zf_debug (self->env->name, "task access proof task=%.16s proof=%s status=%ld ms=%" PRId64,
              self->task_id,
              proof == ZF_FETCH_PROOF_ALLOWED   ? "allowed"
              : proof == ZF_FETCH_PROOF_REFUSED ? "refused"
              : proof == ZF_FETCH_PROOF_ASK     ? "ask"
                                                : "ended",
              status, zf_clock_mono_ms () - self->born_ms);
    fn (self, proof, status, content_length, why ? why : "", self->proof_arg);
}

void zf_fetch_task_grant (zf_fetch_task_t *self)
{
    if (!self->proof_fn)
        return;
    self->proof_fn = NULL;
    zf_fetch_task_wake (self);
}

bool zf_fetch_task_failed (zf_fetch_task_t *self)
{
    return self->phase == ZF_FETCH_TASK_PHASE_FAILED;
}

//  --- answering clients ----------------------------------------------------------------------

void zf_fetch_task_status (zf_fetch_task_t *self, zf_msg_task_status_t *status)
{
    memset (status, 0, sizeof *status);
    status->task_id = self->task_id;
    status->state = self->phase == ZF_FETCH_TASK_PHASE_COMPLETE ? "complete"
                    : self->phase == ZF_FETCH_TASK_PHASE_FAILED ? "failed"
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

void zf_fetch_task_answer (zf_fetch_task_t *self)
{
    if (!self->answer_pending)
        return;
    self->answer_pending = false;
    zf_msg_task_status_t status;
    zf_fetch_task_status (self, &status);
    zf_bus_reply (self->env->bus, &self->answer, &zf_msg_task_status, &status, NULL);
}

//  Whoever watches every task's end is told (the fetcher publishes task.ended).
void zf_fetch_task_told_ended (zf_fetch_task_t *self)
{
    if (self->env->on_end)
        self->env->on_end (self, self->env->on_end_arg);
}

void zf_fetch_task_ended (zf_fetch_task_t *self)
{
    const zf_fetch_observer_t *observer = self->env->observer;
    if (observer && self->scheduled)
        observer->task_ended (self->env->observer_arg, self);
    zf_fetch_task_told_ended (self);
    zf_fetch_task_answer (self);
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
    return self->phase == ZF_FETCH_TASK_PHASE_COMPLETE;
}

void zf_fetch_task_lengths (zf_fetch_task_t *self, uint64_t *content_length, uint64_t *piece_length,
                            uint64_t *piece_count)
{
    bool known = s_layout_known (self) || self->phase == ZF_FETCH_TASK_PHASE_COMPLETE;
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
    return self->phase == ZF_FETCH_TASK_PHASE_PARENTS;
}

bool zf_fetch_task_is_source (zf_fetch_task_t *self)
{
    return self->sched_source;
}

int64_t zf_fetch_task_progress_ms (zf_fetch_task_t *self)
{
    return self->progress_ms;
}

//  --- readers streaming the task's bytes (piece.peek) ------------------------------------------

//  A peek is held until its piece has bytes past `from`: the origin's as they arrive, or a
//  parent's whole piece once it passed its check. What it waits for also tells the parents
//  which piece to ask for first (zf_fetch_peeks_first_awaited).

void zf_fetch_task_peek (zf_fetch_task_t *self, const zf_bus_return_t *ret, uint64_t piece,
                         uint64_t from, uint64_t wait_ms)
{
    zf_bus_t *bus = self->env->bus;
    if (!zf_fetch_task_running (self)) {
        zf_bus_reply_code (bus, ret, ZF_CODE_NOT_FOUND, "task_id",
                           "task %.64s is not downloading here", self->task_id);
        return;
    }
    if (self->table) {
        if (piece >= self->piece_count || from > zf_fetch_task_piece_size (self, piece)) {
            zf_bus_reply_error (bus, ret, ZF_E_INVALID, "piece",
                                "piece %" PRIu64 " byte %" PRIu64 " is not in the task", piece,
                                from);
            return;
        }
        zf_piece_state_t state = zf_piece_table_state (self->table, piece);
        zf_fetch_task_slot_t *slot = &self->slots[piece];
        //  Filled, its bytes still here (zf_fetch_task_kept_for_readers, or for the hash): the
        //  rest of them now rather than from storage once written.
        if (state == ZF_PIECE_WRITING && slot->frame && slot->filled > from) {
            zf_fetch_peeks_answer (bus, ret, self->task_id, piece, from, zframe_data (slot->frame),
                                   slot->filled, true);
            return;
        }
        if (state == ZF_PIECE_WRITING || state == ZF_PIECE_STORED) { //  storage has it (soon)
            zf_fetch_peeks_answer (bus, ret, self->task_id, piece, from, NULL, 0, true);
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
        self->peeks = zf_fetch_peeks_new (bus, self->env->timers, self->task_id);
    zf_fetch_peeks_hold (self->peeks, ret, piece, from, wait_ms);
    if (self->phase == ZF_FETCH_TASK_PHASE_OPEN)
        zf_fetch_task_wake (self); //  a fresh task runs for it before storage's open answer
}
