/*  zf_fetch_task_parents.c — the parents' share of a task (see zf_fetch_task_internal.h): the
    parent set changed while the task runs, which missing pieces go to the origin because no
    parent has them, and what the parents report (their sink, zf_fetch_parents.h): the layout,
    pieces, dropped parents. */
#include "zf_clock.h"
#include "zf_fetch_task_internal.h"

//  Parents are asked for no more pieces while pieces of this many bytes wait for storage's
//  piece.written (one piece at least): on a fast link the network outruns the page cache once
//  the kernel throttles dirty pages, and a child took 351 MiB of 16 MiB pieces waiting to be
//  written on a 4 GiB transfer (docs/benchmarks.md "Datacenter speed"). A swarm's links are
//  far slower than any disk, so this never holds one back.
#define WRITES_MEMORY (16u << 20)

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

//  --- the parent set ----------------------------------------------------------------------------

bool zf_fetch_task_add_parent (zf_fetch_task_t *self, const char *parent)
{
    if (!zf_fetch_task_running (self) || !self->parents)
        return false;
    if (!zf_fetch_parents_add (self->parents, parent))
        return false;
    self->progress_ms = zf_clock_mono_ms ();
    //  The schedule gave parents: the first bytes come from them, not from the origin, whose
    //  answer would prove the requester's access. Asked now, beside the parents' layout.
    if (self->phase == ZF_FETCH_TASK_PHASE_PARENTS && !self->sched_source)
        zf_fetch_task_prove (self, ZF_FETCH_PROOF_ASK, 0, 0, NULL);
    return true;
}

bool zf_fetch_task_remove_parent (zf_fetch_task_t *self, const char *parent)
{
    return zf_fetch_task_running (self) && self->parents
           && zf_fetch_parents_remove (self->parents, parent);
}

//  With parents: which missing pieces the origin takes, those no parent holds, and when.
//  - The task's origin fetcher (told "source", or fallen back): at once.
//  - Scheduled otherwise: never while it has a parent. The scheduler hands out the seed and
//    the peers that hold pieces, and replaces a source that died; a busy or starved swarm is
//    slow, and must not turn into every peer fetching from the origin. Only a task left with
//    no parent at all for sched_fallback takes them itself.
//  - Parents given by the client, or left by a scheduler that is gone: once none of them may
//    still get the piece.
//  A task without a URL that no parent can serve fails.
static bool s_route_now (zf_fetch_task_t *self, int64_t now)
{
    if (self->sched_source)
        return true;
    if (self->scheduled && !self->sched_lost)
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
            zf_fetch_task_fail (self, ZF_TASK_ERROR_PARENTS,
                                "piece %" PRIu64 ": no parent has it and the task has no URL",
                                index);
            return;
        }
        if (self->scheduled && !self->sched_source)
            zf_fetch_task_count_fallback (self,
                                          self->sched_lost ? self->sched_lost : "no parent left");
        zf_piece_table_route_to_origin (self->table, index);
    }
}

//  --- the parents' sink ------------------------------------------------------------------------

static void s_parents_layout (void *arg, uint64_t content_length, uint64_t piece_length)
{
    zf_fetch_task_t *self = arg;
    if (self->phase != ZF_FETCH_TASK_PHASE_PARENTS)
        return; //  the origin fixed it first; the parents check theirs against it
    //  Pieces must line up with the parents' to be checked against their digests: a local
    //  copy cut otherwise is of no use.
    bool stale =
        self->stored_length != 0
        && (self->stored_length != content_length || self->stored_piece_length != piece_length);
    zf_fetch_task_prove (self, ZF_FETCH_PROOF_ASK, 0, 0, NULL); //  if not asked already
    zf_fetch_task_layout (self, content_length, piece_length, true, stale);
}

static void s_parents_piece (void *arg, uint64_t piece, zframe_t **frame, const uint8_t *digest,
                             uint32_t parent_id)
{
    zf_fetch_task_t *self = arg;
    if (self->phase != ZF_FETCH_TASK_PHASE_RUN
        || zf_piece_table_state (self->table, piece) != ZF_PIECE_FETCHING)
        return;
    zf_fetch_task_slot_t *slot = &self->slots[piece];
    zframe_destroy (&slot->frame);
    slot->filled = zframe_size (*frame);
    slot->frame = *frame;
    *frame = NULL;
    self->bytes_from_parents += slot->filled;
    self->progress_ms = zf_clock_mono_ms ();
    zf_fetch_task_piece_verified (self, piece, digest, parent_id);
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
    zf_fetch_task_wake (arg);
}

static int64_t s_parents_awaited (void *arg)
{
    zf_fetch_task_t *self = arg;
    return zf_fetch_peeks_first_awaited (self->peeks);
}

const zf_fetch_parents_sink_t zf_fetch_task_parents_sink = {
    .on_layout = s_parents_layout,
    .on_piece = s_parents_piece,
    .on_dropped = s_parents_dropped,
    .wake = s_parents_wake,
    .buffer = s_parents_buffer,
    .awaited = s_parents_awaited,
};

void zf_fetch_task_pump_parents (zf_fetch_task_t *self, int64_t now)
{
    if (self->parents
        && (self->writes_pending == 0
            || self->writes_pending * self->piece_length < WRITES_MEMORY)) {
        zf_fetch_parents_pump (self->parents, self->window_start);
        s_route (self, now);
    }
}

void zf_fetch_task_take_parents_layout (zf_fetch_task_t *self)
{
    uint64_t content_length, piece_length;
    if (zf_fetch_parents_layout (self->parents, &content_length, &piece_length))
        s_parents_layout (self, content_length, piece_length);
}
