/*  zf_fetch_task_origin.c — the origin's share of a task (see zf_fetch_task_internal.h): the
    probe, range transfers for the pieces the origin may take, or one stream from an origin
    that ignores Range; their bytes cut into pieces, retries and backoff. The origin's sink
    (zf_fetch_origin.h) is here. */
#include "zf_clock.h"
#include "zf_fetch_task_internal.h"
#include "zf_log.h"

//  --- the origin's share -------------------------------------------------------------------------

#define RETRY_BACKOFF_CAP_MS 30000

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

//  An origin piece is complete: checked against the parents' digest when they know it.
static void s_origin_piece_done (zf_fetch_task_t *self, uint64_t index)
{
    zf_fetch_task_slot_t *slot = &self->slots[index];
    const uint8_t *expected = self->parents ? zf_fetch_parents_digest (self->parents, index) : NULL;
    if (!expected) {
        //  Nothing to compare with: storage computes the digest when a peer first asks for
        //  the piece, so a download nobody shares costs no SHA-256 (0.6 s per GiB here).
        zf_fetch_task_piece_verified (self, index, NULL, 0);
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
        zf_fetch_task_fail (self, ZF_TASK_ERROR_DIGEST,
                            "piece %" PRIu64 " from the origin differs from the parents' digest",
                            index);
        return;
    }
    zf_fetch_task_piece_verified (self, index, digest, 0);
}

//  A failed origin attempt: back off (per piece, or for the probe and stream) or, past the
//  retries or for a final answer, fail the task. Returns true when it will be tried again.
static bool s_retry (zf_fetch_task_t *self, uint32_t *attempts, int64_t *until, const char *what,
                     const char *reason, bool retryable)
{
    const zf_fetcher_config_t *config = self->env->config;
    (*attempts)++;
    if (!retryable || *attempts > (uint32_t) config->retries) {
        zf_fetch_task_fail (self, ZF_TASK_ERROR_SOURCE, "%s: %s%s", what, reason,
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

//  Pieces the run starting at index should have: range_pieces, but no more than an even share
//  of what the origin has left to take among the transfers free now, so that a small blob
//  still uses them all (4 pieces, 2 transfers: two runs of 2 at once, not one of 4).
static uint64_t s_run_wanted (zf_fetch_task_t *self, uint64_t index, size_t free_transfers,
                              int64_t now)
{
    uint64_t enough = (uint64_t) free_transfers * self->range_pieces;
    uint64_t left = 0;
    for (uint64_t piece = index; piece < self->piece_count && left < enough; piece++)
        left += s_origin_may_take (self, piece, now);
    uint64_t share = (left + free_transfers - 1) / free_transfers;
    return share < self->range_pieces ? share : self->range_pieces;
}

//  Starts range transfers for runs of pieces the origin may take, inside the window; returns
//  the earliest time a piece waiting for its backoff may start (0: none waits). A piece holds
//  no buffer until its first byte arrives (s_origin_bytes).
static int64_t s_start_ranges (zf_fetch_task_t *self, int64_t now)
{
    int64_t wake = 0;
    uint64_t end = self->window_start + self->window;
    if (end > self->piece_count)
        end = self->piece_count;
    size_t transfers = (size_t) self->env->config->source_concurrency;
    for (uint64_t index = self->window_start; index < end; index++) {
        size_t running = zf_fetch_origin_ranges (self->origin);
        if (running >= transfers)
            break;
        int64_t not_before = zf_piece_table_not_before (self->table, index);
        if (not_before > now && zf_piece_table_state (self->table, index) == ZF_PIECE_MISSING
            && (!self->parents || zf_piece_table_routed_to_origin (self->table, index)))
            wake = wake == 0 || not_before < wake ? not_before : wake;
        if (!s_origin_may_take (self, index, now))
            continue;
        uint64_t wanted = s_run_wanted (self, index, transfers - running, now);
        uint64_t last = index;
        while (last + 1 < end && last + 1 - index < wanted
               && s_origin_may_take (self, last + 1, now))
            last++;
        //  Cut short by the window alone, while another range runs: wait until the window
        //  moves on (it does as pieces are stored) rather than ask for a short run.
        if (last + 1 == end && end < self->piece_count && last + 1 - index < wanted && running > 0)
            break;
        if (self->scheduled && !self->sched_source)
            zf_fetch_task_count_fallback (self,
                                          "piece failed at parents"); //  zf_piece_table routed it
        for (uint64_t piece = index; piece <= last; piece++)
            zf_piece_table_fetch (self->table, piece, ZF_PIECE_BY_ORIGIN, now);
        zf_fetch_origin_range (self->origin, index * self->piece_length,
                               zf_fetch_task_piece_end (self, last) - 1, self->content_length);
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
    if (!zf_fetch_task_hash_needed (self) || self->hashed_offset >= self->content_length)
        return false;
    uint64_t waiting = self->hashed_offset / self->piece_length;
    return zf_piece_table_state (self->table, waiting) == ZF_PIECE_STORED
           && !self->slots[waiting].frame;
}

//  --- the origin's sink ----------------------------------------------------------------------

static void s_origin_length (void *arg, uint64_t content_length, bool ranges)
{
    zf_fetch_task_t *self = arg;
    if (self->phase != ZF_FETCH_TASK_PHASE_PROBE)
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
    zf_fetch_task_layout (self, content_length, piece_length, ranges, stale);
    //  The origin answered the requester's own headers with the bytes: that is its access
    //  proof. Told once the layout is set, so that the requester's task.status carries it and
    //  its reader asks no storage.stat and task.query for it: the head and the first peek go
    //  at once (a task that failed meanwhile told ENDED instead).
    zf_fetch_task_prove (self, ZF_FETCH_PROOF_ALLOWED, ranges ? 206 : 200,
                         ranges ? content_length : 0, NULL);
}

//  Appends slice bytes of the origin's body to the piece index is filling: the piece is done
//  when full, else its readers may peek at what it has so far.
static void s_fill (zf_fetch_task_t *self, uint64_t index, const uint8_t *data, size_t slice)
{
    zf_fetch_task_slot_t *slot = &self->slots[index];
    memcpy (zframe_data (slot->frame) + slot->filled, data, slice);
    slot->filled += slice;
    if (slot->filled == zf_fetch_task_piece_size (self, index))
        s_origin_piece_done (self, index);
    else
        zf_fetch_peeks_fill (self->peeks, index, zframe_data (slot->frame), slot->filled, false);
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
    zf_fetch_task_hash_feed (self, offset, data, size);
    for (size_t used = 0; used < size && zf_fetch_task_running (self);) {
        uint64_t index = (offset + used) / self->piece_length;
        uint64_t piece_start = index * self->piece_length;
        size_t slice = (size_t) (zf_fetch_task_piece_end (self, index) - (offset + used));
        if (slice > size - used)
            slice = size - used;
        if (zf_piece_table_state (self->table, index) == ZF_PIECE_MISSING
            && offset + used == piece_start) {
            zf_piece_table_fetch (self->table, index, ZF_PIECE_BY_ORIGIN, zf_clock_mono_ms ());
            zf_fetch_task_hold (self, index);
        }
        if (zf_piece_table_state (self->table, index) == ZF_PIECE_FETCHING
            && self->slots[index].frame)
            s_fill (self, index, data + used, slice);
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
    if (kind == ZF_ORIGIN_PROBE || self->phase != ZF_FETCH_TASK_PHASE_RUN)
        return true;
    if (!self->first_byte_ms)
        self->first_byte_ms =
            zf_clock_mono_ms ()
            - self->born_ms; //  the probe's byte proves the range works; else cancelled meanwhile
    if (kind == ZF_ORIGIN_STREAM)
        return s_stream_bytes (self, offset, data, size);
    for (size_t used = 0; used < size && zf_fetch_task_running (self);) {
        uint64_t index = (offset + used) / self->piece_length;
        zf_fetch_task_slot_t *slot = &self->slots[index];
        size_t slice = (size_t) (zf_fetch_task_piece_end (self, index) - (offset + used));
        if (slice > size - used)
            slice = size - used;
        ZF_ASSERT (zf_piece_table_state (self->table, index) == ZF_PIECE_FETCHING);
        if (!slot->frame)
            zf_fetch_task_hold (self, index); //  the piece's first byte
        ZF_ASSERT (slot->filled == offset + used - index * self->piece_length);
        s_fill (self, index, data + used, slice);
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
            zf_fetch_task_release (&self->slots[index]);
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
    if (end->kind == ZF_ORIGIN_PROBE && self->phase != ZF_FETCH_TASK_PHASE_PROBE) {
        zf_fetch_task_wake (self); //  a first range that ended before it was taken: ranges
        return;
    }
    if (end->kind == ZF_ORIGIN_PROBE && zf_fetch_task_proof_awaited (self)
        && (end->status == 401 || end->status == 403 || end->status == 404)) {
        //  The origin refused the requester's headers: the requester gets its answer, and
        //  the task, made for it alone, ends holding no byte.
        zf_fetch_task_prove (self, ZF_FETCH_PROOF_REFUSED, end->status, 0, end->reason);
        zf_fetch_task_fail (self, ZF_TASK_ERROR_SOURCE,
                            "the origin refused the request this task was made for: %s",
                            end->reason);
        return;
    }
    if (end->kind == ZF_ORIGIN_PROBE) {
        if (s_retry (self, &self->probe_attempts, &self->retry_at_ms, "probe", end->reason,
                     end->retryable))
            zf_fetch_task_wake (self);
        return;
    }
    if (self->phase != ZF_FETCH_TASK_PHASE_RUN)
        return;
    if (end->ok) {
        zf_fetch_task_wake (self);
        return;
    }
    if (end->kind == ZF_ORIGIN_RANGE && end->ignores_range) {
        s_switch_to_stream (self);
        zf_fetch_task_wake (self);
        return;
    }
    s_origin_unfilled (self, end->first, end->last);
    if (end->kind == ZF_ORIGIN_STREAM) {
        if (s_retry (self, &self->stream_attempts, &self->retry_at_ms, "stream", end->reason,
                     end->retryable))
            zf_fetch_task_wake (self);
        return;
    }
    //  A range: the pieces it delivered whole stay. The attempt counts for the first piece it
    //  did not deliver, and the pieces from there to its end wait out the same backoff.
    uint64_t first = (end->first + end->received) / self->piece_length;
    uint64_t last = end->last / self->piece_length;
    if (first > last) { //  every byte came, and then the transfer failed: nothing lost
        zf_fetch_task_wake (self);
        return;
    }
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
    zf_fetch_task_wake (self);
}

const zf_fetch_origin_sink_t zf_fetch_task_origin_sink = {
    .on_length = s_origin_length,
    .on_bytes = s_origin_bytes,
    .on_end = s_origin_end,
};

//  The first range a task awaiting its access proof asked before it knew the length: taken
//  as the range transfer of its pieces when it ends on a piece boundary (always at piece
//  lengths up to ZF_FETCH_TASK_RANGE_BYTES) and the origin may take them all now; else
//  stopped, and the pieces are asked for as usual.
static void s_take_first_range (zf_fetch_task_t *self, int64_t now)
{
    uint64_t last;
    if (!zf_fetch_origin_probe_held (self->origin, &last))
        return;
    uint64_t last_piece = last / self->piece_length;
    bool fits = !self->stream_mode && last < self->content_length
                && (last + 1 == self->content_length || (last + 1) % self->piece_length == 0)
                && last_piece < self->window_start + self->window;
    for (uint64_t piece = 0; fits && piece <= last_piece; piece++)
        fits = s_origin_may_take (self, piece, now);
    if (fits)
        for (uint64_t piece = 0; piece <= last_piece; piece++)
            zf_piece_table_fetch (self->table, piece, ZF_PIECE_BY_ORIGIN, now);
    zf_fetch_origin_probe_release (self->origin, fits);
}

void zf_fetch_task_pump_probe (zf_fetch_task_t *self)
{
    if (self->length_hint) { //  the access question's answer stated it
        s_origin_length (self, self->length_hint, true);
        return;
    }
    if (zf_fetch_origin_busy (self->origin))
        return;
    if (self->retry_at_ms > zf_clock_mono_ms ())
        zf_fetch_task_check_at (self, self->retry_at_ms);
    else { //  awaiting the access proof: a first range, which is both proof and length
        bool first_range = zf_fetch_task_proof_awaited (self)
                           && self->env->config->piece_length_max <= ZF_FETCH_TASK_RANGE_BYTES;
        self->probe = first_range ? "first_range" : "yes";
        zf_fetch_origin_probe (self->origin, first_range ? ZF_FETCH_TASK_RANGE_BYTES : 1);
    }
}

void zf_fetch_task_pump_origin (zf_fetch_task_t *self, int64_t now)
{
    if (!self->origin)
        return;
    if (!self->stream_mode) {
        s_take_first_range (self, now);
        int64_t wake = s_start_ranges (self, now);
        if (wake)
            zf_fetch_task_check_at (self, wake);
    } else if (!zf_fetch_origin_streaming (self->origin) && s_stream_needed (self)) {
        if (self->retry_at_ms > now)
            zf_fetch_task_check_at (self, self->retry_at_ms);
        else
            zf_fetch_origin_stream (self->origin, self->content_length);
    }
}
