/*  zf_storage.c — the storage actor (see zf_storage.h): the checks of its configuration
    (zf_storage_config.c has the keys), its life (start, pipe commands, stop), its metrics, and the
   replies and checks every handler shares. The handlers live in the parts listed in
   zf_storage_internal.h. */
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include "storage/zf_storage_internal.h"
#include <sys/prctl.h>

// ---- metrics -----------------------------------------------------------------------------------

static void s_metrics_init (zf_storage_metrics_t *metrics)
{
    metrics->written = zf_metrics_counter ("zfly_storage_pieces_written_total",
                                           "Pieces written to the cache", NULL);
    metrics->served_local = zf_metrics_counter (
        "zfly_storage_pieces_served_total", "Pieces served from the cache", "peer", "local", NULL);
    metrics->served_remote = zf_metrics_counter (
        "zfly_storage_pieces_served_total", "Pieces served from the cache", "peer", "remote", NULL);
    metrics->upload_bytes = zf_metrics_counter ("zfly_storage_upload_bytes_total",
                                                "Piece bytes served to other nodes", NULL);
    metrics->corrupt = zf_metrics_counter (
        "zfly_storage_corrupt_pieces_total",
        "Pieces found damaged on disk when read; marked missing to be fetched again", NULL);
    metrics->busy =
        zf_metrics_counter ("zfly_storage_busy_total",
                            "Piece reads refused because the upload limit was reached", NULL);
    metrics->elsewhere = zf_metrics_counter (
        "zfly_storage_elsewhere_total",
        "Reads of pieces from the origin refused because another node just got them", NULL);
    metrics->evicted_watermark = zf_metrics_counter (
        "zfly_storage_evictions_total", "Tasks evicted by GC", "reason", "watermark", NULL);
    metrics->evicted_ttl = zf_metrics_counter ("zfly_storage_evictions_total",
                                               "Tasks evicted by GC", "reason", "ttl", NULL);
    metrics->quarantined =
        zf_metrics_counter ("zfly_storage_quarantined_total",
                            "Task directories with bad metadata moved aside at start", NULL);
    metrics->stats_held = zf_metrics_counter (
        "zfly_storage_stats_held_total",
        "storage.stat requests held until their task had a new piece (long polls)", NULL);
    metrics->bytes =
        zf_metrics_gauge ("zfly_storage_bytes", "Bytes of finished pieces in the cache", NULL);
    metrics->tasks_running = zf_metrics_gauge ("zfly_storage_tasks", "Tasks in the cache by state",
                                               "state", "running", NULL);
    metrics->tasks_complete = zf_metrics_gauge ("zfly_storage_tasks", "Tasks in the cache by state",
                                                "state", "complete", NULL);
}

// ---- time --------------------------------------------------------------------------------------

//  Wall clock: access times are persisted, so they must mean something after a restart.
int64_t zf_storage_now_ms (zf_storage_t *self)
{
    return zf_clock_wall_ms () + self->clock_offset_ms;
}

// ---- replies -----------------------------------------------------------------------------------

//  storage.task; with bitmap_only, the digests frame is empty (storage.stat's bitmap_only).
void zf_storage_reply_task_frames (zf_storage_t *self, const zf_bus_return_t *ret,
                                   zf_store_task_t *task, bool bitmap_only)
{
    zf_msg_storage_task_t body = {
        .task_id = task->id,
        .state = task->complete ? "complete" : "running",
        .content_length = task->content_length,
        .piece_length = task->piece_length,
        .piece_count = task->piece_count,
        .finished_count = task->finished_count,
        .digest = task->digest,
        .url = task->url,
    };
    zmsg_t *raw = zmsg_new ();
    zmsg_addmem (raw, task->finished, (size_t) ((task->piece_count + 7) / 8));
    zmsg_addmem (raw, task->digests,
                 bitmap_only ? 0 : (size_t) task->piece_count * ZF_STORE_DIGEST_LEN);
    zf_bus_reply (self->bus, ret, &zf_msg_storage_task, &body, &raw);
}

void zf_storage_reply_task (zf_storage_t *self, const zf_bus_return_t *ret, zf_store_task_t *task)
{
    zf_storage_reply_task_frames (self, ret, task, false);
}

void zf_storage_reply_not_found (zf_storage_t *self, const zf_bus_return_t *ret,
                                 const char *task_id)
{
    zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FOUND, "task_id", "no task %s", task_id);
}

//  Looks the task up after checking the id; answers the request itself when there is none.
zf_store_task_t *zf_storage_task_or_reply (zf_storage_t *self, const zf_bus_return_t *ret,
                                           const char *task_id)
{
    if (!zf_store_id_valid (task_id)) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "task_id",
                            "task_id must be 64 lowercase hex characters");
        return NULL;
    }
    zf_store_task_t *task = zf_store_find (self->store, task_id);
    if (!task)
        zf_storage_reply_not_found (self, ret, task_id);
    return task;
}

bool zf_storage_piece_in_range (zf_storage_t *self, const zf_bus_return_t *ret,
                                zf_store_task_t *task, uint64_t piece)
{
    if (piece < task->piece_count)
        return true;
    zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "piece",
                        "piece %" PRIu64 " out of range (task has %" PRIu64 ")", piece,
                        task->piece_count);
    return false;
}

//  A reader on this host (the fetcher, zfly-get, the proxy) is never rate-limited. The
//  transport decides, not the envelope's self-declared sender name.
bool zf_storage_from_this_host (const zf_bus_msg_t *request)
{
    return request->origin != ZF_BUS_FROM_NETWORK;
}

//  True for a request from this host. Anyone else is answered `code` with `answer`, and the
//  refusal logged (at most as often as limit lets) with `why`.
bool zf_storage_local_only (zf_storage_t *self, const zf_bus_msg_t *request, zf_ratelimit_t *limit,
                            zf_code_t code, const char *why, const char *answer)
{
    if (zf_storage_from_this_host (request))
        return true;
    zf_warning_limited (limit, self->name, "refused %s from %s (key %s): %s", request->env.type,
                        request->env.from, *request->peer_key ? request->peer_key : "none", why);
    zf_bus_reply_code (self->bus, &request->return_to, code, "type", "%s %s", request->env.type,
                       answer);
    return false;
}

//  Only actors of this host may change the cache: another node could otherwise plant pieces
//  with digests of its own choosing. Answers "refused" and returns false for anyone else.
bool zf_storage_may_change (zf_storage_t *self, const zf_bus_msg_t *request)
{
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 10000);
    return zf_storage_local_only (self, request, &limit, ZF_CODE_REFUSED,
                                  "only this host may change the cache",
                                  "is accepted from this host only");
}

// ---- the actor ---------------------------------------------------------------------------------

static int s_pipe_command (zloop_t *loop, zsock_t *pipe, void *arg)
{
    (void) loop;
    zf_storage_t *self = arg;
    zmsg_t *msg = zmsg_recv (pipe);
    char *command = msg ? zmsg_popstr (msg) : NULL;
    int rc = 0;
    if (!command || streq (command, "$TERM"))
        rc = -1;
    else if (streq (command, "ADVANCE")) {
        char *amount = zmsg_popstr (msg);
        self->clock_offset_ms += amount ? strtoll (amount, NULL, 10) : 0;
        zstr_free (&amount);
        zstr_send (pipe, "OK");
    } else if (streq (command, "GC")) {
        zf_storage_gc (self);
        zstr_send (pipe, "OK");
    } else
        zf_warning (self->name, "unknown pipe command %s", command);
    zstr_free (&command);
    zmsg_destroy (&msg);
    return rc;
}

static void s_free_item (void **item)
{
    zf_free (*item);
    *item = NULL;
}

void zf_storage_actor (zsock_t *pipe, void *args)
{
    prctl (PR_SET_NAME, "zf-storage", 0, 0, 0); //  as ps, top and perf show this thread
    const zf_actor_args_t *actor = args;
    zf_storage_t self = {.name = actor->name,
                         .config = actor->config,
                         .node = actor->node,
                         .pipe = pipe,
                         .upload_timer = -1,
                         .watch_timer = -1};
    zf_error_t err;
    if (self.config->low_watermark > self.config->high_watermark) {
        zsock_signal (pipe, 0);
        zf_actor_fatal (pipe, self.name, "low_watermark %.1f is above high_watermark %.1f",
                        self.config->low_watermark, self.config->high_watermark);
        return;
    }
    self.bus = zf_bus_new (actor->node, actor->name, self.config->bind, NULL, &err);
    if (self.bus) {
        zf_bus_set_bulk (self.bus, true); //  pieces for other hosts wait behind our downloads
        self.store = zf_store_new (self.config->dir, self.name, zf_storage_now_ms (&self), &err);
        if (!self.store) //  "[storage] dir: cannot create directory /x/tasks: Not a directory"
            zf_error_prefix (&err, "[%s] dir", self.name);
    }
    if (self.store)
        zf_store_set_durable (self.store, self.config->fsync);
    zsock_signal (pipe, 0);
    if (!self.store) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        zf_bus_destroy (&self.bus);
        return;
    }
    s_metrics_init (&self.metrics);
    zf_counter_add (self.metrics.quarantined, zf_store_quarantined (self.store));
    zf_store_io_handlers_t handlers = {
        .written = zf_storage_on_written, .committed = zf_storage_on_committed, .arg = &self};
    self.io = zf_store_io_new (self.store, self.name, &handlers);
    self.uploads = zlistx_new (); //  of zf_storage_upload.c's records, plain memory
    zlistx_set_destructor (self.uploads, s_free_item);
    self.tokens = (double) self.config->upload_rate;
    self.tokens_at_ms = zf_clock_mono_ms ();
    self.watch = zf_stat_watch_new (zf_storage_answer_watch, &self);
    self.spread = zf_spread_new ();

    zf_storage_tasks_register (&self);
    zf_storage_write_register (&self);
    zf_storage_upload_register (&self);
    self.loop = zloop_new ();
    zloop_set_nonstop (self.loop, true); //  the daemon handles signals and sends $TERM
    zloop_reader (self.loop, pipe, s_pipe_command, &self);
    zf_bus_attach (self.bus, self.loop);
    zf_store_io_attach (self.io, self.loop);
    zloop_timer (self.loop, (size_t) self.config->gc_interval_ms, 0, zf_storage_gc_timer, &self);
    zf_storage_gc (&self);
    zf_notice (self.name, "started dir=%s tasks=%zu bytes=%" PRIu64 " bind=%s", self.config->dir,
               zf_store_task_count (self.store), zf_store_bytes (self.store),
               *self.config->bind ? self.config->bind : "-");
    zstr_send (pipe, "READY");
    zloop_start (self.loop);

    //  Writes under way are finished and committed, with the access times: their writers
    //  may be waiting for a reply that can still go out.
    zf_storage_save_access_times (&self);
    zf_store_io_destroy (&self.io);
    zf_info (self.name, "stopped tasks=%zu", zf_store_task_count (self.store));
    zf_bus_destroy (&self.bus); //  before its loop: it unregisters its sockets
    zloop_destroy (&self.loop);
    zlistx_destroy (&self.uploads);
    zf_stat_watch_destroy (&self.watch);
    zf_spread_destroy (&self.spread);
    zf_store_destroy (&self.store);
}
