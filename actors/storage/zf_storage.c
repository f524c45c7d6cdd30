/*  zf_storage.c — the storage actor (see zf_storage.h): bus handlers, commits, uploads, GC. */
#include "zf_storage.h"
#include "zf_bus.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include "storage/zf_spread.h"
#include "storage/zf_stat_watch.h"
#include "storage/zf_store.h"
#include "storage/zf_store_io.h"
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <time.h>

static const zf_config_key_t s_keys[] = {
    {.key = "dir",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_storage_config_t, dir),
     .default_text = "/var/lib/zfly/cache",
     .help = "cache root: DIR/tasks/XX/TASK_ID/{data,meta}"},
    {.key = "bind",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_storage_config_t, bind),
     .default_text = "",
     .help = "endpoints, blank-separated: ipc:// for clients on this host, tcp:// (CURVE) for "
             "other nodes' fetchers; empty: none"},
    {.key = "upload_rate",
     .kind = ZF_CONFIG_SIZE,
     .offset = offsetof (zf_storage_config_t, upload_rate),
     .default_text = "0",
     .help = "bytes per second served to other nodes, 0: unlimited"},
    {.key = "upload_concurrency",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (zf_storage_config_t, upload_concurrency),
     .default_text = "16",
     .min = 1,
     .max = 100000,
     .help = "piece reads from other nodes waiting at once; beyond it they are answered busy"},
    {.key = "high_watermark",
     .kind = ZF_CONFIG_PERCENT,
     .offset = offsetof (zf_storage_config_t, high_watermark),
     .default_text = "80",
     .min = 1,
     .max = 100,
     .help = "disk use (of the filesystem, or of quota) above which GC evicts tasks"},
    {.key = "low_watermark",
     .kind = ZF_CONFIG_PERCENT,
     .offset = offsetof (zf_storage_config_t, low_watermark),
     .default_text = "60",
     .min = 0,
     .max = 100,
     .help = "disk use GC evicts down to, least recently used first"},
    {.key = "quota",
     .kind = ZF_CONFIG_SIZE,
     .offset = offsetof (zf_storage_config_t, quota),
     .default_text = "0",
     .help = "bytes the cache may hold; watermarks are then percent of it; 0: of the filesystem"},
    {.key = "task_ttl",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_storage_config_t, task_ttl_ms),
     .default_text = "30d",
     .min = 1000,
     .max = INT64_MAX,
     .help = "a task not used for this long is removed"},
    {.key = "gc_interval",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_storage_config_t, gc_interval_ms),
     .default_text = "60s",
     .min = 100,
     .max = 86400000,
     .help = "how often GC checks watermarks and TTL"},
    {.key = "busy_grace",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_storage_config_t, busy_grace_ms),
     .default_text = "30s",
     .min = 0,
     .max = 86400000,
     .help = "a task read or written this recently is in use and never evicted"},
    {.key = "commit_interval",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_storage_config_t, commit_interval_ms),
     .default_text = "1ms",
     .min = 1,
     .max = 1000,
     .help = "no longer used (kept so that older files still load): metadata commits now run "
             "off the actor's loop, each as soon as the one before ended"},
    {.key = "fsync",
     .kind = ZF_CONFIG_BOOL,
     .offset = offsetof (zf_storage_config_t, fsync),
     .default_text = "false",
     .help = "fdatasync pieces and metadata before acknowledging writes (claims survive power "
             "cuts; slower: every piece is verified on read anyway)"},
};

const zf_config_section_t zf_storage_section = {
    .name = "storage",
    .help = "the cache of tasks: serves pieces to local readers and other nodes, GC",
    .keys = s_keys,
    .key_count = ZF_ARRAY_LEN (s_keys),
    .struct_size = sizeof (zf_storage_config_t),
};

//  A piece.write on its way through the writer thread (zf_store_io).
typedef struct {
    zf_store_write_t write; //  first: the job the writer runs
    zf_bus_return_t ret;
    bool give_back;    //  the frame goes back with piece.written
    bool digest_known; //  digest is the bytes' SHA-256 (given, checked)
    uint8_t digest[ZF_STORE_DIGEST_LEN];
} write_job_t;

//  Durable mode: an answer waiting for the commit that claims what it says.
typedef struct {
    zf_bus_return_t ret;
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t piece;   //  piece.written; UINT64_MAX: storage.complete
    zframe_t *buffer; //  the written bytes' frame, to give back to a writer in this process
} claim_wait_t;

//  A piece.read from another node waiting for upload tokens.
typedef struct {
    zf_bus_return_t ret;
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t piece;
    uint64_t frame_max; //  piece.read's: the bytes in frames of at most this size (0: one)
} upload_t;

#define WATCH_TICK_MS 100

typedef struct {
    zf_counter_t *written, *served_local, *served_remote, *upload_bytes, *corrupt, *busy;
    zf_counter_t *elsewhere;
    zf_counter_t *evicted_watermark, *evicted_ttl, *quarantined, *stats_held;
    zf_gauge_t *bytes, *tasks_running, *tasks_complete;
} metrics_t;

typedef struct {
    const char *name;
    const zf_storage_config_t *config;
    zf_node_t *node;
    zsock_t *pipe;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_store_t *store;
    zf_store_io_t *io;      //  piece writes and commits, off this loop
    zlistx_t *uploads;      //  upload_t *, FIFO
    int upload_timer;       //  -1 when none is armed
    zf_stat_watch_t *watch; //  storage.stat requests waiting for a task's next piece
    zf_spread_t *spread;    //  pieces from the origin: one other node first
    int watch_timer;        //  -1 when none is armed
    double tokens;          //  upload bytes that may go out now; negative: debt to wait off
    int64_t tokens_at_ms;
    int64_t clock_offset_ms; //  moved forward by the ADVANCE test command
    metrics_t metrics;
} self_t;

// ---- time --------------------------------------------------------------------------------------

//  Wall clock: access times are persisted, so they must mean something after a restart.
static int64_t s_now_ms (self_t *self)
{
    return zf_clock_wall_ms () + self->clock_offset_ms;
}

// ---- replies -----------------------------------------------------------------------------------

//  storage.task; with bitmap_only, the digests frame is empty (storage.stat's bitmap_only).
static void s_reply_task_frames (self_t *self, const zf_bus_return_t *ret, zf_store_task_t *task,
                                 bool bitmap_only)
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

static void s_reply_task (self_t *self, const zf_bus_return_t *ret, zf_store_task_t *task)
{
    s_reply_task_frames (self, ret, task, false);
}

static void s_reply_removed (self_t *self, const zf_bus_return_t *ret, const char *task_id)
{
    zf_msg_storage_task_t body = {
        .task_id = (char *) task_id, .state = "removed", .digest = "", .url = ""};
    zmsg_t *raw = zmsg_new ();
    zmsg_addmem (raw, NULL, 0);
    zmsg_addmem (raw, NULL, 0);
    zf_bus_reply (self->bus, ret, &zf_msg_storage_task, &body, &raw);
}

static void s_reply_not_found (self_t *self, const zf_bus_return_t *ret, const char *task_id)
{
    zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FOUND, "task_id", "no task %s", task_id);
}

//  Looks the task up after checking the id; answers the request itself when there is none.
static zf_store_task_t *s_task_or_reply (self_t *self, const zf_bus_return_t *ret,
                                         const char *task_id)
{
    if (!zf_store_id_valid (task_id)) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "task_id",
                            "task_id must be 64 lowercase hex characters");
        return NULL;
    }
    zf_store_task_t *task = zf_store_find (self->store, task_id);
    if (!task)
        s_reply_not_found (self, ret, task_id);
    return task;
}

// ---- held storage.stat requests ---------------------------------------------------------------

static void s_answer_watch (const zf_bus_return_t *ret, const char *task_id, bool bitmap_only,
                            void *arg)
{
    self_t *self = arg;
    zf_store_task_t *task = zf_store_find (self->store, task_id);
    if (task)
        s_reply_task_frames (self, ret, task, bitmap_only);
    else
        s_reply_not_found (self, ret, task_id);
}

static int s_watch_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    if (zf_stat_watch_expire (self->watch, zf_clock_mono_ms ()) < 0) {
        zloop_timer_end (self->loop, self->watch_timer);
        self->watch_timer = -1;
    }
    return 0;
}

//  Deadlines are checked every WATCH_TICK_MS while requests are held: a held stat is a
//  long poll, and answering it up to a tick late changes nothing for its sender.
static void s_arm_watch_timer (self_t *self)
{
    if (self->watch_timer < 0)
        self->watch_timer = zloop_timer (self->loop, WATCH_TICK_MS, 0, s_watch_timer, self);
}

static bool s_piece_in_range (self_t *self, const zf_bus_return_t *ret, zf_store_task_t *task,
                              uint64_t piece)
{
    if (piece < task->piece_count)
        return true;
    zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "piece",
                        "piece %" PRIu64 " out of range (task has %" PRIu64 ")", piece,
                        task->piece_count);
    return false;
}

// ---- metrics -----------------------------------------------------------------------------------

static void s_metrics_init (metrics_t *metrics)
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

static void s_update_gauges (self_t *self)
{
    size_t count;
    zf_store_task_t **tasks = zf_store_tasks (self->store, &count);
    uint64_t bytes = 0, complete = 0;
    for (size_t index = 0; index < count; index++) {
        bytes += tasks[index]->finished_bytes;
        complete += tasks[index]->complete;
    }
    zf_free (tasks);
    zf_gauge_set (self->metrics.bytes, (double) bytes);
    zf_gauge_set (self->metrics.tasks_complete, (double) complete);
    zf_gauge_set (self->metrics.tasks_running, (double) (count - complete));
}

// ---- GC ----------------------------------------------------------------------------------------

//  In use: touched within busy_grace, with a write or commit under way or pieces not yet
//  claimed, or a read waiting for upload tokens. GC never takes such a task from its user.
static bool s_in_use (self_t *self, zf_store_task_t *task, int64_t now_ms)
{
    if (now_ms - task->accessed_ms < self->config->busy_grace_ms || task->pending_count > 0
        || task->writes_queued > 0 || task->commit_running)
        return true;
    for (upload_t *upload = zlistx_first (self->uploads); upload;
         upload = zlistx_next (self->uploads))
        if (streq (upload->task_id, task->id))
            return true;
    return false;
}

//  Deletes the task; storage.stat requests held for it are answered (not_found).
static void s_remove_task (self_t *self, zf_store_task_t **task_p)
{
    char task_id[ZF_STORE_ID_LEN + 1];
    zf_strlcpy (task_id, (*task_p)->id, sizeof task_id);
    zf_store_remove (self->store, task_p);
    zf_stat_watch_notify (self->watch, task_id, UINT64_MAX);
    zf_spread_forget (self->spread, task_id);
}

//  Removes a task whose data file storage may not write any more (zf_store_read_piece): the
//  next download of it starts over with a new file. Other names of the file keep its bytes.
static void s_drop_task (self_t *self, zf_store_task_t *task, const char *why)
{
    zf_warning (self->name, "dropped task=%s: %s", task->id, why);
    s_remove_task (self, &task);
}

static void s_evict (self_t *self, zf_store_task_t *task, const char *reason)
{
    zf_msg_storage_evicted_t event = {
        .task_id = task->id, .reason = (char *) reason, .bytes = task->finished_bytes};
    zf_bus_publish (self->bus, &zf_msg_storage_evicted, &event);
    zf_info (self->name, "evicted task=%s reason=%s bytes=%" PRIu64, task->id, reason,
             task->finished_bytes);
    zf_counter_add (
        streq (reason, "ttl") ? self->metrics.evicted_ttl : self->metrics.evicted_watermark, 1);
    s_remove_task (self, &task);
}

//  Cache use and capacity in bytes: of the quota when one is set, else of the filesystem.
static bool s_usage (self_t *self, uint64_t *used, uint64_t *capacity)
{
    if (self->config->quota > 0) {
        *used = zf_store_bytes (self->store);
        *capacity = self->config->quota;
        return true;
    }
    struct statvfs info;
    if (statvfs (zf_store_dir (self->store), &info) != 0 || info.f_blocks == 0) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (1, 60000);
        zf_warning_limited (&limit, self->name, "cannot statvfs %s: %s", zf_store_dir (self->store),
                            strerror (errno));
        return false;
    }
    *capacity = (uint64_t) info.f_blocks * info.f_frsize;
    *used = (uint64_t) (info.f_blocks - info.f_bfree) * info.f_frsize;
    return true;
}

static int s_by_access (const void *left, const void *right)
{
    const zf_store_task_t *a = *(zf_store_task_t *const *) left;
    const zf_store_task_t *b = *(zf_store_task_t *const *) right;
    return (a->accessed_ms > b->accessed_ms) - (a->accessed_ms < b->accessed_ms);
}

static void s_gc (self_t *self)
{
    int64_t now = s_now_ms (self);
    size_t count;
    zf_store_task_t **tasks = zf_store_tasks (self->store, &count);
    qsort (tasks, count, sizeof *tasks, s_by_access);
    for (size_t index = 0; index < count; index++)
        if (now - tasks[index]->accessed_ms > self->config->task_ttl_ms
            && !s_in_use (self, tasks[index], now)) {
            s_evict (self, tasks[index], "ttl");
            tasks[index] = NULL;
        }
    uint64_t used, capacity;
    if (s_usage (self, &used, &capacity)
        && (double) used > self->config->high_watermark / 100.0 * (double) capacity) {
        //  Freed bytes are counted from the tasks, not re-measured: a filesystem may report
        //  the space free only later.
        double target = self->config->low_watermark / 100.0 * (double) capacity;
        zf_notice (self->name, "gc: use %" PRIu64 " of %" PRIu64 " bytes is above %.1f%%", used,
                   capacity, self->config->high_watermark);
        for (size_t index = 0; index < count && (double) used > target; index++) {
            zf_store_task_t *task = tasks[index];
            if (!task || s_in_use (self, task, now))
                continue;
            used -= task->finished_bytes < used ? task->finished_bytes : used;
            s_evict (self, task, "watermark");
        }
        if ((double) used > target)
            zf_warning (self->name, "gc: still %" PRIu64 " bytes used: the rest is in use", used);
    }
    zf_free (tasks);
    s_update_gauges (self);
}

//  Persists access times now and then, not on every read: losing some only makes LRU a
//  little less exact after a crash.
static void s_save_access_times (self_t *self)
{
    size_t count;
    zf_store_task_t **tasks = zf_store_tasks (self->store, &count);
    for (size_t index = 0; index < count; index++)
        if (tasks[index]->access_dirty)
            tasks[index]->meta_dirty = true;
    zf_free (tasks);
    zf_store_io_commit (self->io);
}

static int s_gc_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    s_save_access_times (self);
    s_gc (self);
    return 0;
}

// ---- writes and commits ------------------------------------------------------------------------

//  piece.written; buffer (may be NULL) goes back to a writer in this process, which fills its
//  next piece into it (inproc:// moves frames, nothing is copied) instead of into fresh
//  memory that costs a page fault per 4 KiB.
static void s_reply_written (self_t *self, const zf_bus_return_t *ret, zf_store_task_t *task,
                             uint64_t piece, zframe_t **buffer_p)
{
    zf_msg_piece_written_t body = {
        .task_id = task->id, .piece = piece, .finished_count = task->finished_count};
    zmsg_t *raw = NULL;
    if (buffer_p && *buffer_p) {
        raw = zmsg_new ();
        zmsg_append (raw, buffer_p);
    }
    zf_bus_reply (self->bus, ret, &zf_msg_piece_written, &body, raw ? &raw : NULL);
}

//  Durable mode: the commit an answer waited for has ended.
static void s_on_claimed (void *arg, void *waiter, zf_store_task_t *task, zf_status_t status)
{
    self_t *self = arg;
    claim_wait_t *wait = waiter;
    bool complete = wait->piece == UINT64_MAX;
    if (!task)
        s_reply_not_found (self, &wait->ret, wait->task_id);
    else if (status == ZF_OK && complete && task->complete)
        s_reply_task (self, &wait->ret, task);
    else if (status == ZF_OK && !complete && zf_store_is_claimed (task, wait->piece))
        s_reply_written (self, &wait->ret, task, wait->piece, &wait->buffer);
    else if (complete)
        zf_bus_reply_error (self->bus, &wait->ret, ZF_E_IO, NULL, "cannot save task");
    else
        zf_bus_reply_error (self->bus, &wait->ret, ZF_E_IO, "piece",
                            "piece %" PRIu64 " could not be stored", wait->piece);
    zframe_destroy (&wait->buffer);
    zf_free (wait);
}

//  Durable mode: answers once the task's next commit has ended (s_on_claimed).
static void s_answer_when_claimed (self_t *self, const zf_bus_return_t *ret, zf_store_task_t *task,
                                   uint64_t piece, zframe_t **buffer_p)
{
    claim_wait_t *wait = zf_calloc (1, sizeof *wait);
    wait->ret = *ret;
    zf_strlcpy (wait->task_id, task->id, sizeof wait->task_id);
    wait->piece = piece;
    if (buffer_p) {
        wait->buffer = *buffer_p;
        *buffer_p = NULL;
    }
    zf_store_io_when_committed (self->io, task, s_on_claimed, self, wait);
}

//  A write the writer thread has done: the piece is finished (served from now on) and is
//  answered now, or in durable mode once a commit claimed it.
static void s_on_written (void *arg, zf_store_write_t *write, zf_store_task_t *task)
{
    self_t *self = arg;
    write_job_t *job = (write_job_t *) write;
    zf_error_t err;
    zf_status_t status = ZF_OK;
    if (!task) //  removed (or removed and created again) while the piece was written
        zf_bus_reply_code (self->bus, &job->ret, ZF_CODE_NOT_FOUND, "task_id",
                           "task %s was removed while piece %" PRIu64 " was written",
                           write->task_id, write->piece);
    else
        status = zf_store_write_finish (self->store, task, write,
                                        job->digest_known ? job->digest : NULL, &err);
    if (!task)
        ;
    else if (status == ZF_E_INVALID) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 10000);
        zf_warning_limited (&limit, self->name,
                            "refused piece task=%s piece=%" PRIu64 " from=%s: digest mismatch",
                            task->id, write->piece, job->ret.from);
        zf_bus_reply_error (self->bus, &job->ret, ZF_E_INVALID, "digest", "%s", err.message);
    } else if (status != ZF_OK) {
        zf_error_log (self->name, "task=%s piece=%" PRIu64 " write failed: %s", task->id,
                      write->piece, err.message);
        zf_bus_reply_error (self->bus, &job->ret, ZF_E_IO, "piece", "cannot store piece: %s",
                            err.message);
        if (status == ZF_E_REFUSED)
            s_drop_task (self, task, "its data file is not storage's to write");
    } else {
        zf_counter_add (self->metrics.written, 1);
        zf_stat_watch_notify (self->watch, task->id, task->finished_count);
        zframe_t **buffer_p = job->give_back ? &write->bytes : NULL;
        if (zf_store_durable (self->store))
            s_answer_when_claimed (self, &job->ret, task, write->piece, buffer_p);
        else
            s_reply_written (self, &job->ret, task, write->piece, buffer_p);
    }
    zframe_destroy (&write->bytes);
    zf_store_write_clear (write);
    zf_free (job);
}

//  A batch of commits ended: a write may have pushed use over the high watermark.
static void s_on_committed (void *arg)
{
    self_t *self = arg;
    uint64_t used, capacity;
    if (s_usage (self, &used, &capacity)
        && (double) used > self->config->high_watermark / 100.0 * (double) capacity)
        s_gc (self);
    else
        s_update_gauges (self);
}

//  A reader on this host (the fetcher, zfly-get, the proxy) is never rate-limited. The
//  transport decides, not the envelope's self-declared sender name.
static bool s_from_this_host (const zf_bus_msg_t *request)
{
    return request->origin != ZF_BUS_FROM_NETWORK;
}

//  True for a request from this host. Anyone else is answered `code` with `answer`, and the
//  refusal logged (at most as often as limit lets) with `why`.
static bool s_local_only (self_t *self, const zf_bus_msg_t *request, zf_ratelimit_t *limit,
                          zf_code_t code, const char *why, const char *answer)
{
    if (s_from_this_host (request))
        return true;
    zf_warning_limited (limit, self->name, "refused %s from %s (key %s): %s", request->env.type,
                        request->env.from, *request->peer_key ? request->peer_key : "none", why);
    zf_bus_reply_code (self->bus, &request->return_to, code, "type", "%s %s", request->env.type,
                       answer);
    return false;
}

//  Only actors of this host may change the cache: another node could otherwise plant pieces
//  with digests of its own choosing. Answers "refused" and returns false for anyone else.
static bool s_may_change (self_t *self, const zf_bus_msg_t *request)
{
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 10000);
    return s_local_only (self, request, &limit, ZF_CODE_REFUSED,
                         "only this host may change the cache", "is accepted from this host only");
}

//  The digest a piece.write's bytes must be checked against, or NULL. An empty digest claims
//  nothing: storage computes it when a peer first asks for the piece. The fetcher of this
//  process computed a digest it sends from these very bytes (and checked it against the
//  parents'), and the frame came over inproc://, so hashing it again would only double the
//  work; from any other writer the digest is a claim, checked (by the writer thread).
static const uint8_t *s_digest_to_check (const zf_bus_msg_t *request)
{
    const zf_msg_piece_write_t *body = request->env.body;
    if (body->digest.size == 0 || request->origin == ZF_BUS_FROM_PROCESS)
        return NULL;
    return body->digest.data;
}

static void s_handle_piece_write (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    if (!s_may_change (self, request))
        return;
    const zf_msg_piece_write_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    zf_store_task_t *task = s_task_or_reply (self, ret, body->task_id);
    if (!task || !s_piece_in_range (self, ret, task, body->piece))
        return;
    zframe_t *bytes = zmsg_first (request->raw);
    uint64_t expected = zf_store_piece_size (task, body->piece);
    if (!bytes || zframe_size (bytes) != expected) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "piece",
                            "piece %" PRIu64 " needs one frame of %" PRIu64 " bytes, got %zu",
                            body->piece, expected, bytes ? zframe_size (bytes) : 0);
        return;
    }
    if (body->digest.size != 0 && body->digest.size != ZF_STORE_DIGEST_LEN) {
        zf_bus_reply_error (self->bus, ret, ZF_E_INVALID, "digest",
                            "piece %" PRIu64 " does not match its SHA-256 digest", body->piece);
        return;
    }
    task->accessed_ms = s_now_ms (self);
    task->access_dirty = true;
    if (zf_store_is_finished (task, body->piece)) { //  a resend, or a second parent's copy
        if (zf_store_durable (self->store) && !zf_store_is_claimed (task, body->piece))
            s_answer_when_claimed (self, ret, task, body->piece, NULL);
        else
            s_reply_written (self, ret, task, body->piece, NULL);
        return;
    }
    if (body->origin)
        zf_spread_from_origin (self->spread, task->id, task->piece_count, body->piece);
    write_job_t *job = zf_calloc (1, sizeof *job);
    job->ret = *ret;
    //  The fetcher of this process gets its buffer back with piece.written (s_reply_written).
    //  Other writers get no bytes back.
    job->give_back = request->origin == ZF_BUS_FROM_PROCESS;
    job->digest_known = body->digest.size == ZF_STORE_DIGEST_LEN;
    if (job->digest_known)
        memcpy (job->digest, body->digest.data, ZF_STORE_DIGEST_LEN);
    bytes = zmsg_pop (request->raw); //  moved to the writer thread, never copied
    zf_store_write_prepare (self->store, task, body->piece, &bytes, s_digest_to_check (request),
                            &job->write);
    zf_store_io_write (self->io, &job->write);
}

// ---- reads and uploads -------------------------------------------------------------------------

//  Answers a read (or locate) whose piece did not pass: not finished, damaged, unreadable.
static void s_reply_unreadable (self_t *self, const zf_bus_return_t *ret, zf_store_task_t *task,
                                uint64_t piece, zf_store_read_t outcome, const zf_error_t *err)
{
    switch (outcome) {
    case ZF_STORE_READ_OK: ZF_ASSERT (!"a readable piece is not answered here"); break;
    case ZF_STORE_READ_NOT_FINISHED:
        zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FINISHED, "piece", "%s", err->message);
        break;
    case ZF_STORE_READ_CORRUPT:
        zf_counter_add (self->metrics.corrupt, 1);
        zf_warning (self->name, "corrupt piece task=%s piece=%" PRIu64 ": marked missing", task->id,
                    piece);
        zf_bus_reply_code (self->bus, ret, ZF_CODE_CORRUPT, "piece", "%s", err->message);
        if (task->data_unusable)
            s_drop_task (self, task, "its data file was cut short or changed under another name");
        else
            zf_store_io_commit (self->io); //  the next record says it is missing
        s_update_gauges (self);
        break;
    case ZF_STORE_READ_IO:
        zf_error_log (self->name, "task=%s piece=%" PRIu64 " read failed: %s", task->id, piece,
                      err->message);
        zf_bus_reply_error (self->bus, ret, ZF_E_IO, "piece", "cannot read piece");
        break;
    }
}

//  Answers a read now: piece.data, or the reason there is none. Returns bytes sent.
static uint64_t s_serve (self_t *self, const zf_bus_return_t *ret, const char *task_id,
                         uint64_t piece, uint64_t frame_max, bool remote)
{
    zf_store_task_t *task = zf_store_find (self->store, task_id);
    if (!task) {
        s_reply_not_found (self, ret, task_id);
        return 0;
    }
    //  In the frames the reader asked for (piece.read frame_max: libzmq's CURVE handles each
    //  frame whole, with buffers of its size, so a piece of megabytes in one frame costs
    //  megabytes more on both sides), read straight into them.
    zmsg_t *raw = NULL;
    zf_error_t err;
    zf_store_read_t outcome = zf_store_read_piece (self->store, task, piece, frame_max, &raw, &err);
    if (outcome != ZF_STORE_READ_OK) {
        s_reply_unreadable (self, ret, task, piece, outcome, &err);
        return 0;
    }
    task->accessed_ms = s_now_ms (self);
    task->access_dirty = true;
    uint64_t size = zmsg_content_size (raw);
    zf_msg_piece_data_t body = {
        .task_id = task->id,
        .piece = piece,
        .offset = piece * task->piece_length,
        .size = size,
        .digest = {(uint8_t *) zf_store_piece_digest (task, piece, raw), ZF_STORE_DIGEST_LEN},
    };
    zf_bus_reply (self->bus, ret, &zf_msg_piece_data, &body, &raw);
    zf_counter_add (remote ? self->metrics.served_remote : self->metrics.served_local, 1);
    if (remote)
        zf_counter_add (self->metrics.upload_bytes, size);
    return size;
}

static void s_refill (self_t *self)
{
    int64_t now = zf_clock_mono_ms ();
    double rate = (double) self->config->upload_rate;
    self->tokens += rate * (double) (now - self->tokens_at_ms) / 1000.0;
    if (self->tokens > rate) //  a burst of at most one second's worth
        self->tokens = rate;
    self->tokens_at_ms = now;
}

static int s_upload_timer (zloop_t *loop, int timer_id, void *arg);

//  Serves waiting uploads while tokens last; a piece may overdraw the bucket, and the debt is
//  waited off before the next one, so the average stays at upload_rate whatever the piece size.
static void s_pump_uploads (self_t *self)
{
    s_refill (self);
    upload_t *upload;
    while (self->tokens > 0 && (upload = zlistx_detach (self->uploads, NULL))) {
        self->tokens -= (double) s_serve (self, &upload->ret, upload->task_id, upload->piece,
                                          upload->frame_max, true);
        zf_free (upload);
    }
    if (zlistx_size (self->uploads) > 0 && self->upload_timer < 0) {
        double wait_ms = (1.0 - self->tokens) * 1000.0 / (double) self->config->upload_rate;
        self->upload_timer =
            zloop_timer (self->loop, (size_t) wait_ms + 1, 1, s_upload_timer, self);
    }
}

static int s_upload_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    self->upload_timer = -1;
    s_pump_uploads (self);
    return 0;
}

static void s_handle_piece_read (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    const zf_msg_piece_read_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    zf_store_task_t *task = s_task_or_reply (self, ret, body->task_id);
    if (!task || !s_piece_in_range (self, ret, task, body->piece))
        return;
    if (!zf_store_is_finished (task, body->piece)) {
        zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FINISHED, "piece",
                           "piece %" PRIu64 " is not finished", body->piece);
        return;
    }
    if (!s_from_this_host (request)
        && !zf_spread_may_send (self->spread, task->id, body->piece,
                                *request->peer_key ? request->peer_key : request->env.from,
                                zf_clock_mono_ms ())) {
        zf_counter_add (self->metrics.elsewhere, 1);
        zf_bus_reply_code (self->bus, ret, ZF_CODE_ELSEWHERE, "piece",
                           "piece %" PRIu64 " went to another node a moment ago: take it there",
                           body->piece);
        return;
    }
    if (s_from_this_host (request) || self->config->upload_rate == 0) {
        s_serve (self, ret, task->id, body->piece, body->frame_max, !s_from_this_host (request));
        return;
    }
    if (zlistx_size (self->uploads) >= (size_t) self->config->upload_concurrency) {
        zf_counter_add (self->metrics.busy, 1);
        zf_bus_reply_code (self->bus, ret, ZF_CODE_BUSY, NULL,
                           "upload limit reached; try another parent or later");
        return;
    }
    upload_t *upload = zf_calloc (1, sizeof *upload);
    upload->ret = *ret;
    zf_strlcpy (upload->task_id, task->id, sizeof upload->task_id);
    upload->piece = body->piece;
    upload->frame_max = body->frame_max;
    zlistx_add_end (self->uploads, upload);
    s_pump_uploads (self);
}

//  Where a finished piece is on disk, for a reader on this host that copies the bytes itself
//  (zfly-get with copy_file_range, the proxy with sendfile). It names a file, so the network
//  is never told; and it is checked like a read, so what the reader copies was intact.
static void s_handle_piece_locate (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    const zf_msg_piece_locate_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 10000);
    if (!s_local_only (self, request, &limit, ZF_CODE_FORBIDDEN, "not local",
                       "is answered for this host only; use piece.read"))
        return;
    zf_store_task_t *task = s_task_or_reply (self, ret, body->task_id);
    if (!task || !s_piece_in_range (self, ret, task, body->piece))
        return;
    char *path = NULL;
    zf_error_t err;
    zf_store_read_t outcome = zf_store_locate_piece (self->store, task, body->piece, &path, &err);
    if (outcome != ZF_STORE_READ_OK) {
        s_reply_unreadable (self, ret, task, body->piece, outcome, &err);
        return;
    }
    task->accessed_ms = s_now_ms (self);
    task->access_dirty = true;
    zf_msg_piece_located_t located = {
        .task_id = task->id,
        .piece = body->piece,
        .path = path,
        .offset = body->piece * task->piece_length,
        .size = zf_store_piece_size (task, body->piece),
    };
    const uint8_t *digest = zf_store_known_digest (task, body->piece);
    if (digest) //  else unknown yet: readers on this host go by storage's checksum check
        located.digest = (zf_bytes_t){(uint8_t *) digest, ZF_STORE_DIGEST_LEN};
    zf_bus_reply (self->bus, ret, &zf_msg_piece_located, &located, NULL);
    zf_counter_add (self->metrics.served_local, 1);
    zf_free (path);
}

// ---- tasks -------------------------------------------------------------------------------------

static void s_handle_open (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    if (!s_may_change (self, request))
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
        s_reply_not_found (self, ret, body->task_id);
        return;
    } else if (zf_store_check_geometry (body->content_length, body->piece_length, &err) != ZF_OK) {
        zf_bus_reply_error (self->bus, ret, err.code, err.where, "%s", err.message);
        return;
    } else {
        zf_store_spec_t spec = {.id = body->task_id,
                                .url = body->url,
                                .digest = body->digest,
                                .tag = body->tag,
                                .application = body->application,
                                .content_length = body->content_length,
                                .piece_length = body->piece_length};
        if (zf_store_create (self->store, &spec, s_now_ms (self), &task, &err) != ZF_OK) {
            zf_error_log (self->name, "task=%s cannot create: %s", body->task_id, err.message);
            zf_bus_reply_error (self->bus, ret, ZF_E_IO, NULL, "cannot create task");
            return;
        }
        zf_info (self->name, "created task=%s length=%" PRIu64 " pieces=%" PRIu64, task->id,
                 task->content_length, task->piece_count);
        s_update_gauges (self);
        zf_stat_watch_notify (self->watch, task->id, 0); //  children waiting for it to exist
    }
    task->accessed_ms = s_now_ms (self);
    task->access_dirty = true;
    s_reply_task (self, ret, task);
}

static void s_hold_stat (self_t *self, const zf_bus_msg_t *request, uint64_t known_finished)
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
    self_t *self = arg;
    const zf_msg_storage_stat_t *body = request->env.body;
    bool absent = zf_store_id_valid (body->task_id) && !zf_store_find (self->store, body->task_id);
    if (absent && body->wait_ms > 0) { //  held until the task is opened here
        s_hold_stat (self, request, ZF_STAT_WATCH_ABSENT);
        return;
    }
    zf_store_task_t *task = s_task_or_reply (self, &request->return_to, body->task_id);
    if (!task)
        return;
    if (body->wait_ms > 0 && !body->wait_open && !task->complete
        && task->finished_count <= body->known_finished)
        s_hold_stat (self, request, body->known_finished);
    else
        s_reply_task_frames (self, &request->return_to, task, body->bitmap_only);
}

static void s_handle_complete (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    if (!s_may_change (self, request))
        return;
    const zf_msg_storage_complete_t *body = request->env.body;
    const zf_bus_return_t *ret = &request->return_to;
    zf_store_task_t *task = s_task_or_reply (self, ret, body->task_id);
    if (!task)
        return;
    bool durable = zf_store_durable (self->store);
    if (task->complete) { //  durable: it may still be on its way to disk
        if (durable && (task->meta_dirty || task->commit_running))
            s_answer_when_claimed (self, ret, task, UINT64_MAX, NULL);
        else
            s_reply_task (self, ret, task);
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
    //  this host may complete a task (s_may_change), and every piece is checked on each read.
    task->complete = true;
    task->meta_dirty = true;
    task->accessed_ms = s_now_ms (self);
    zf_info (self->name, "complete task=%s bytes=%" PRIu64, task->id, task->content_length);
    zf_stat_watch_notify (self->watch, task->id, UINT64_MAX); //  "complete" is news too
    s_update_gauges (self);
    if (durable) //  answered once the record that says so is on disk
        s_answer_when_claimed (self, ret, task, UINT64_MAX, NULL);
    else {
        s_reply_task (self, ret, task);
        zf_store_io_commit (self->io);
    }
}

static void s_handle_remove (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    if (!s_may_change (self, request))
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
        s_remove_task (self, &task);
        zf_info (self->name, "removed task=%s", body->task_id);
        s_update_gauges (self);
    }
    s_reply_removed (self, ret, body->task_id);
}

//  Tests age tasks this way instead of sleeping through busy_grace (storage.shift_clock).
static void s_handle_shift_clock (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    if (!s_may_change (self, request))
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
    zf_msg_storage_clock_t clock = {.now_ms = (uint64_t) s_now_ms (self),
                                    .offset_ms = body->offset_ms};
    zf_bus_reply (self->bus, ret, &zf_msg_storage_clock, &clock, NULL);
}

//  How full the cache is (storage.measure), for the join actor's keep-alive: anyone may ask.
static void s_handle_measure (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    (void) bus;
    self_t *self = arg;
    uint64_t used = 0, capacity = 0;
    if (!s_usage (self, &used, &capacity)) {
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

// ---- the actor ---------------------------------------------------------------------------------

static int s_pipe_command (zloop_t *loop, zsock_t *pipe, void *arg)
{
    (void) loop;
    self_t *self = arg;
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
        s_gc (self);
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
    self_t self = {.name = actor->name,
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
        self.store = zf_store_new (self.config->dir, self.name, s_now_ms (&self), &err);
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
        .written = s_on_written, .committed = s_on_committed, .arg = &self};
    self.io = zf_store_io_new (self.store, self.name, &handlers);
    self.uploads = zlistx_new ();
    zlistx_set_destructor (self.uploads, s_free_item);
    self.tokens = (double) self.config->upload_rate;
    self.tokens_at_ms = zf_clock_mono_ms ();
    self.watch = zf_stat_watch_new (s_answer_watch, &self);
    self.spread = zf_spread_new ();

    zf_bus_handle (self.bus, ZF_MSG_STORAGE_OPEN, s_handle_open, &self);
    zf_bus_handle (self.bus, ZF_MSG_STORAGE_STAT, s_handle_stat, &self);
    zf_bus_handle (self.bus, ZF_MSG_STORAGE_COMPLETE, s_handle_complete, &self);
    zf_bus_handle (self.bus, ZF_MSG_STORAGE_REMOVE, s_handle_remove, &self);
    zf_bus_handle (self.bus, ZF_MSG_STORAGE_SHIFT_CLOCK, s_handle_shift_clock, &self);
    zf_bus_handle (self.bus, ZF_MSG_STORAGE_MEASURE, s_handle_measure, &self);
    zf_bus_handle (self.bus, ZF_MSG_PIECE_WRITE, s_handle_piece_write, &self);
    zf_bus_handle (self.bus, ZF_MSG_PIECE_READ, s_handle_piece_read, &self);
    zf_bus_handle (self.bus, ZF_MSG_PIECE_LOCATE, s_handle_piece_locate, &self);
    self.loop = zloop_new ();
    zloop_set_nonstop (self.loop, true); //  the daemon handles signals and sends $TERM
    zloop_reader (self.loop, pipe, s_pipe_command, &self);
    zf_bus_attach (self.bus, self.loop);
    zf_store_io_attach (self.io, self.loop);
    zloop_timer (self.loop, (size_t) self.config->gc_interval_ms, 0, s_gc_timer, &self);
    s_gc (&self);
    zf_notice (self.name, "started dir=%s tasks=%zu bytes=%" PRIu64 " bind=%s", self.config->dir,
               zf_store_task_count (self.store), zf_store_bytes (self.store),
               *self.config->bind ? self.config->bind : "-");
    zstr_send (pipe, "READY");
    zloop_start (self.loop);

    //  Writes under way are finished and committed, with the access times: their writers
    //  may be waiting for a reply that can still go out.
    s_save_access_times (&self);
    zf_store_io_destroy (&self.io);
    zf_info (self.name, "stopped tasks=%zu", zf_store_task_count (self.store));
    zf_bus_destroy (&self.bus); //  before its loop: it unregisters its sockets
    zloop_destroy (&self.loop);
    zlistx_destroy (&self.uploads);
    zf_stat_watch_destroy (&self.watch);
    zf_spread_destroy (&self.spread);
    zf_store_destroy (&self.store);
}

// ---- selftest ----------------------------------------------------------------------------------

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

//  What the last request got back.
typedef struct {
    bool done;
    zf_status_t status;
    zf_code_t code; //  of an error reply
    char state[17];
    uint64_t finished_count;
    zmsg_t *raw;
    char path[4097]; //  piece.located
    uint64_t offset, size;
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    size_t digest_size;
} test_result_t;

typedef struct {
    zf_node_t *node;
    zf_bus_t *bus;
    zloop_t *loop;
    zactor_t *storage;
    zf_actor_args_t args;
    zf_storage_config_t config;
    test_result_t result;
    const char *node_name;
    size_t connects;
    const char *endpoint; //  storage's ipc:// bind for a client on this host, NULL: inproc
} test_client_t;

static void s_test_keep_digest (test_result_t *result, const zf_bytes_t *digest)
{
    result->digest_size = digest->size;
    if (digest->size > 0) //  an empty bin may come with no data at all
        memcpy (result->digest, digest->data,
                digest->size < sizeof result->digest ? digest->size : sizeof result->digest);
}

static void s_test_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) err;
    test_result_t *result = arg;
    result->done = true;
    result->status = status;
    result->code = zf_bus_error_code (status, reply);
    result->state[0] = '\0';
    zmsg_destroy (&result->raw);
    if (!reply)
        return;
    result->raw = zmsg_dup (reply->raw);
    if (streq (reply->env.type, ZF_MSG_STORAGE_TASK)) {
        const zf_msg_storage_task_t *task = reply->env.body;
        zf_strlcpy (result->state, task->state, sizeof result->state);
        result->finished_count = task->finished_count;
    } else if (streq (reply->env.type, ZF_MSG_PIECE_WRITTEN))
        result->finished_count = ((zf_msg_piece_written_t *) reply->env.body)->finished_count;
    else if (streq (reply->env.type, ZF_MSG_PIECE_DATA)) {
        const zf_msg_piece_data_t *data = reply->env.body;
        s_test_keep_digest (result, &data->digest);
    } else if (streq (reply->env.type, ZF_MSG_PIECE_LOCATED)) {
        const zf_msg_piece_located_t *located = reply->env.body;
        zf_strlcpy (result->path, located->path, sizeof result->path);
        result->offset = located->offset;
        result->size = located->size;
        s_test_keep_digest (result, &located->digest);
    }
}

static int s_test_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    return ((test_result_t *) arg)->done ? -1 : 0;
}

//  Sends one request and runs the loop until its answer is in client->result.
static void s_test_call (test_client_t *client, const zf_msg_desc_t *desc, const void *body,
                         zmsg_t *raw)
{
    client->result.done = false;
    zf_error_t err;
    zf_status_t status = zf_bus_request (client->bus, "storage", desc, body, raw ? &raw : NULL,
                                         (zf_bus_call_t){.timeout_ms = 5000, .retries = 0},
                                         s_test_on_reply, &client->result, &err);
    ZF_ASSERT (status == ZF_OK);
    zloop_start (client->loop);
    ZF_ASSERT (client->result.done);
}

static void s_test_start_storage (test_client_t *client)
{
    client->args =
        (zf_actor_args_t){.node = client->node, .name = "storage", .config = &client->config};
    client->storage = zactor_new (zf_storage_actor, &client->args);
    char *answer = NULL, *why = NULL;
    zstr_recvx (client->storage, &answer, &why, NULL);
    if (!answer || !streq (answer, "READY"))
        fprintf (stderr, "storage did not start: %s\n", why ? why : "no reason");
    ZF_ASSERT (answer && streq (answer, "READY"));
    zstr_free (&answer);
    zstr_free (&why);
}

static void s_test_pipe (test_client_t *client, const char *command, const char *value)
{
    zstr_sendx (client->storage, command, value, NULL);
    char *answer = zstr_recv (client->storage);
    ZF_ASSERT (answer && streq (answer, "OK"));
    zstr_free (&answer);
}

//  The client's node, bus and loop. After a restart of the actor they are all new, under
//  a new node name: an inproc endpoint is released asynchronously after its socket closes,
//  so the restarted actor could not bind the old name yet.
static void s_test_client_connect (test_client_t *client)
{
    zf_bus_destroy (&client->bus);
    zloop_destroy (&client->loop);
    zf_node_destroy (&client->node);
    char *name = zf_asprintf ("%s-%zu", client->node_name, client->connects++);
    zf_node_options_t options = {.name = name,
                                 .hwm = 1000,
                                 .tap_hwm = 1000,
                                 .request_timeout_ms = 5000,
                                 .request_retries = 0};
    zf_error_t err;
    client->node = zf_node_new (&options, &err);
    zf_free (name);
    ZF_ASSERT (client->node);
    if (client->endpoint)
        ZF_ASSERT (zf_node_add_route (client->node, "storage", client->endpoint, "selftest", &err)
                   == ZF_OK);
    else
        zf_node_add_local (client->node, "storage");
    zf_node_add_local (client->node, "client");
    client->bus = zf_bus_new (client->node, "client", NULL, NULL, &err);
    ZF_ASSERT (client->bus);
    client->loop = zloop_new ();
    zloop_set_nonstop (client->loop, true);
    zf_bus_attach (client->bus, client->loop);
    zloop_timer (client->loop, 1, 0, s_test_tick, &client->result);
}

static void s_test_restart (test_client_t *client)
{
    zactor_destroy (&client->storage);
    s_test_client_connect (client);
    s_test_start_storage (client);
}

static void s_test_client_new (test_client_t *client, const char *node_name, const char *dir)
{
    memset (client, 0, sizeof *client);
    client->node_name = node_name;
    s_test_client_connect (client);
    client->config = (zf_storage_config_t){.dir = (char *) dir,
                                           .bind = "",
                                           .upload_rate = 0,
                                           .upload_concurrency = 4,
                                           .high_watermark = 80,
                                           .low_watermark = 60,
                                           .quota = 0,
                                           .task_ttl_ms = 30LL * 86400 * 1000,
                                           .gc_interval_ms = 60000,
                                           .busy_grace_ms = 3600 * 1000,
                                           .commit_interval_ms = 2};
}

static void s_test_client_destroy (test_client_t *client)
{
    zactor_destroy (&client->storage);
    zf_bus_destroy (&client->bus);
    zloop_destroy (&client->loop);
    zf_node_destroy (&client->node);
    zmsg_destroy (&client->result.raw);
}

static void s_test_id (char *id, char fill)
{
    memset (id, fill, ZF_STORE_ID_LEN);
    id[ZF_STORE_ID_LEN] = '\0';
}

static void s_test_content (uint8_t *data, size_t size, unsigned seed)
{
    for (size_t index = 0; index < size; index++)
        data[index] = (uint8_t) ((index * 31 + seed * 7 + index / 251) & 0xff);
}

static void s_test_open (test_client_t *client, const char *id, uint64_t length,
                         uint64_t piece_length, const char *digest)
{
    zf_msg_storage_open_t open_body = {.task_id = (char *) id,
                                       .url = "http://origin/blob",
                                       .digest = (char *) (digest ? digest : ""),
                                       .tag = "",
                                       .application = "",
                                       .content_length = length,
                                       .piece_length = piece_length,
                                       .create = true};
    s_test_call (client, &zf_msg_storage_open, &open_body, NULL);
}

typedef enum { DIGEST_GOOD, DIGEST_WRONG, DIGEST_NONE } test_digest_t;

static void s_test_write (test_client_t *client, const char *id, uint64_t piece,
                          const uint8_t *data, size_t size, test_digest_t kind)
{
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (data, size, digest);
    if (kind == DIGEST_WRONG)
        digest[0] ^= 1;
    zf_msg_piece_write_t body = {.task_id = (char *) id,
                                 .piece = piece,
                                 .digest = {digest, kind == DIGEST_NONE ? 0 : sizeof digest}};
    zmsg_t *raw = zmsg_new ();
    zmsg_addmem (raw, data, size);
    s_test_call (client, &zf_msg_piece_write, &body, raw);
}

static void s_test_read (test_client_t *client, const char *id, uint64_t piece)
{
    zf_msg_piece_read_t body = {.task_id = (char *) id, .piece = piece};
    s_test_call (client, &zf_msg_piece_read, &body, NULL);
}

static void s_test_locate (test_client_t *client, const char *id, uint64_t piece)
{
    zf_msg_piece_locate_t body = {.task_id = (char *) id, .piece = piece};
    s_test_call (client, &zf_msg_piece_locate, &body, NULL);
}

//  A located piece is where the answer says, with the bytes and digest that were written.
static void s_test_check_located (test_client_t *client, const uint8_t *data, size_t size)
{
    ZF_ASSERT (client->result.status == ZF_OK);
    ZF_ASSERT (client->result.path[0] == '/' && client->result.size == size);
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (data, size, digest);
    ZF_ASSERT (client->result.digest_size == ZF_STORE_DIGEST_LEN
               && memcmp (client->result.digest, digest, sizeof digest) == 0);
    uint8_t *copy = zf_malloc (size);
    int fd = open (client->result.path, O_RDONLY | O_CLOEXEC);
    ZF_ASSERT (fd >= 0);
    ZF_ASSERT (pread (fd, copy, size, (off_t) client->result.offset) == (ssize_t) size);
    close (fd);
    ZF_ASSERT (memcmp (copy, data, size) == 0);
    zf_free (copy);
}

static void s_test_stat (test_client_t *client, const char *id)
{
    zf_msg_storage_stat_t body = {.task_id = (char *) id};
    s_test_call (client, &zf_msg_storage_stat, &body, NULL);
}

static void s_test_complete (test_client_t *client, const char *id)
{
    zf_msg_storage_complete_t body = {.task_id = (char *) id};
    s_test_call (client, &zf_msg_storage_complete, &body, NULL);
}

static void s_test_remove (test_client_t *client, const char *id)
{
    zf_msg_storage_remove_t body = {.task_id = (char *) id};
    s_test_call (client, &zf_msg_storage_remove, &body, NULL);
}

static bool s_test_error (test_client_t *client, zf_code_t code)
{
    return client->result.status == ZF_E_REMOTE && client->result.code == code;
}

//  Writes every piece of a task of `length` bytes filled from seed; returns the content.
static uint8_t *s_test_fill (test_client_t *client, const char *id, size_t length,
                             size_t piece_length, unsigned seed)
{
    uint8_t *content = zf_malloc (length);
    s_test_content (content, length, seed);
    s_test_open (client, id, length, piece_length, NULL);
    ZF_ASSERT (client->result.status == ZF_OK);
    for (size_t offset = 0; offset < length; offset += piece_length) {
        size_t size = length - offset < piece_length ? length - offset : piece_length;
        s_test_write (client, id, offset / piece_length, content + offset, size, DIGEST_GOOD);
        ZF_ASSERT (client->result.status == ZF_OK);
    }
    return content;
}

static void s_test_core (const char *dir, bool verbose)
{
    test_client_t client;
    s_test_client_new (&client, "selftest", dir);
    char *bind = zf_asprintf ("ipc://%s/storage.sock", dir);
    client.config.bind = bind;
    s_test_start_storage (&client);
    enum { LENGTH = 20000, PIECE = 8192 };
    uint8_t content[LENGTH];
    s_test_content (content, LENGTH, 1);
    uint8_t whole[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (content, LENGTH, whole);
    char digest_text[8 + 2 * ZF_STORE_DIGEST_LEN + 1] = "sha256:";
    for (size_t index = 0; index < ZF_STORE_DIGEST_LEN; index++)
        snprintf (digest_text + 7 + 2 * index, 3, "%02x", whole[index]);
    char id_a[65], id_b[65], id_bad[65];
    s_test_id (id_a, 'a');
    s_test_id (id_b, 'b');

    //  Bad ids never become paths.
    s_test_id (id_bad, 'A');
    s_test_open (&client, id_bad, LENGTH, PIECE, NULL);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_open (&client, "../../../../etc/passwd", LENGTH, PIECE, NULL);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_open (&client, id_a, LENGTH, 0, NULL);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_stat (&client, id_a);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));

    s_test_open (&client, id_a, LENGTH, PIECE, digest_text);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "running"));
    ZF_ASSERT (client.result.finished_count == 0);
    s_test_open (&client, id_a, LENGTH + 1, PIECE, NULL); //  lengths must match
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));

    //  Wrong digest from this host (ipc://, as zfly-get or a tool would write): refused.
    //  Writes from this process (the fetcher) are trusted to carry the digest of their bytes.
    test_client_t local;
    s_test_client_new (&local, "selftest-ipc", dir);
    local.endpoint = client.config.bind;
    s_test_client_connect (&local);
    s_test_write (&local, id_a, 0, content, PIECE, DIGEST_WRONG);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_INVALID));
    //  Wrong size, out of range: refused, nothing written.
    s_test_write (&client, id_a, 0, content, PIECE - 1, DIGEST_GOOD);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_write (&client, id_a, 3, content, PIECE, DIGEST_GOOD);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_read (&client, id_a, 0);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FINISHED));
    s_test_locate (&local, id_a, 0);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_NOT_FINISHED));
    s_test_locate (&local, id_b, 0);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_NOT_FOUND));

    for (uint64_t piece = 0; piece < 3; piece++) {
        size_t size = piece < 2 ? PIECE : LENGTH - 2 * PIECE;
        s_test_write (&client, id_a, piece, content + piece * PIECE, size, DIGEST_GOOD);
        ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == piece + 1);
        //  A writer in this process gets its buffer back for the next piece.
        ZF_ASSERT (zmsg_size (client.result.raw) == 1
                   && zframe_size (zmsg_first (client.result.raw)) == size);
    }
    s_test_read (&client, id_a, 1);
    ZF_ASSERT (client.result.status == ZF_OK);
    zframe_t *bytes = zmsg_first (client.result.raw);
    ZF_ASSERT (bytes && zframe_size (bytes) == PIECE);
    ZF_ASSERT (memcmp (zframe_data (bytes), content + PIECE, PIECE) == 0);
    s_test_read (&client, id_a, 3);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_INVALID));
    s_test_read (&client, id_b, 0);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    //  Located, from this process and from this host: the bytes are at the path and offset
    //  given (the short last piece too).
    s_test_locate (&client, id_a, 1);
    s_test_check_located (&client, content + PIECE, PIECE);
    ZF_ASSERT (client.result.offset == PIECE);
    s_test_locate (&local, id_a, 2);
    s_test_check_located (&local, content + 2 * PIECE, LENGTH - 2 * PIECE);
    s_test_locate (&local, id_a, 3);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_INVALID));

    //  One byte damaged on disk: detected before serving, marked missing, fetched again.
    char *data_path = zf_asprintf ("%s/tasks/aa/%s/data", dir, id_a);
    FILE *file = fopen (data_path, "r+b");
    ZF_ASSERT (file && fseek (file, PIECE + 10, SEEK_SET) == 0);
    ZF_ASSERT (fputc (content[PIECE + 10] ^ 0x40, file) != EOF && fclose (file) == 0);
    zf_counter_t *corrupt = zf_metrics_counter (
        "zfly_storage_corrupt_pieces_total",
        "Pieces found damaged on disk when read; marked missing to be fetched again", NULL);
    uint64_t corrupt_before = zf_counter_value (corrupt);
    s_test_read (&client, id_a, 1);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_CORRUPT));
    ZF_ASSERT (zf_counter_value (corrupt) == corrupt_before + 1);
    s_test_stat (&client, id_a);
    ZF_ASSERT (client.result.finished_count == 2);
    ZF_ASSERT ((zframe_data (zmsg_first (client.result.raw))[0] & 0x07) == 0x05);
    s_test_read (&client, id_a, 1);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FINISHED));
    s_test_write (&client, id_a, 1, content + PIECE, PIECE, DIGEST_GOOD);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 3);
    //  piece.locate checks the bytes on disk as piece.read does.
    file = fopen (data_path, "r+b");
    ZF_ASSERT (file && fseek (file, 2 * PIECE + 5, SEEK_SET) == 0);
    ZF_ASSERT (fputc (content[2 * PIECE + 5] ^ 0x01, file) != EOF && fclose (file) == 0);
    s_test_locate (&local, id_a, 2);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_CORRUPT));
    ZF_ASSERT (zf_counter_value (corrupt) == corrupt_before + 2);
    s_test_locate (&local, id_a, 2);
    ZF_ASSERT (s_test_error (&local, ZF_CODE_NOT_FINISHED));
    s_test_write (&local, id_a, 2, content + 2 * PIECE, LENGTH - 2 * PIECE, DIGEST_GOOD);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.finished_count == 3);
    ZF_ASSERT (zmsg_size (local.result.raw) == 0); //  bytes never go back over ipc://
    //  A piece written without a digest (its fetcher had none to compare with): the first
    //  read computes it from the checked bytes; until then piece.located carries none.
    char id_c[65];
    s_test_id (id_c, 'c');
    s_test_open (&client, id_c, LENGTH, PIECE, NULL);
    s_test_write (&local, id_c, 0, content, PIECE, DIGEST_NONE);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.finished_count == 1);
    s_test_locate (&local, id_c, 0);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.digest_size == 0);
    s_test_read (&local, id_c, 0);
    uint8_t computed[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (content, PIECE, computed);
    ZF_ASSERT (local.result.status == ZF_OK && local.result.digest_size == sizeof computed
               && memcmp (local.result.digest, computed, sizeof computed) == 0);
    s_test_locate (&local, id_c, 0);
    s_test_check_located (&local, content, PIECE);
    s_test_remove (&client, id_c);
    ZF_ASSERT (client.result.status == ZF_OK);
    s_test_client_destroy (&local);
    s_test_complete (&client, id_a);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "complete"));

    //  B stays half done: one piece.
    s_test_open (&client, id_b, LENGTH, PIECE, NULL);
    s_test_write (&client, id_b, 1, content + PIECE, PIECE, DIGEST_GOOD);
    ZF_ASSERT (client.result.status == ZF_OK);

    //  Metadata nobody can trust is quarantined at start, the rest loads.
    char id_d[65];
    s_test_id (id_d, 'd');
    char *bad_dir = zf_asprintf ("%s/tasks/dd/%s", dir, id_d);
    char *bucket = zf_asprintf ("%s/tasks/dd", dir);
    char *bad_meta = zf_asprintf ("%s/meta", bad_dir);
    ZF_ASSERT (mkdir (bucket, 0750) == 0 && mkdir (bad_dir, 0750) == 0);
    file = fopen (bad_meta, "wb");
    ZF_ASSERT (file && fwrite ("\x85\xa3junk", 1, 6, file) == 6 && fclose (file) == 0);

    //  Restart on the same directory: finished work is still there.
    s_test_restart (&client);
    s_test_stat (&client, id_a);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "complete"));
    ZF_ASSERT (client.result.finished_count == 3);
    s_test_read (&client, id_a, 2);
    ZF_ASSERT (client.result.status == ZF_OK);
    ZF_ASSERT (memcmp (zframe_data (zmsg_first (client.result.raw)), content + 2 * PIECE,
                       LENGTH - 2 * PIECE)
               == 0);
    s_test_stat (&client, id_b);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 1);
    ZF_ASSERT (streq (client.result.state, "running"));
    s_test_stat (&client, id_d);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    struct stat info;
    ZF_ASSERT (stat (bad_dir, &info) != 0);

    s_test_remove (&client, id_a);
    ZF_ASSERT (client.result.status == ZF_OK && streq (client.result.state, "removed"));
    s_test_stat (&client, id_a);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    ZF_ASSERT (stat (data_path, &info) != 0);
    s_test_remove (&client, id_a); //  a resent remove succeeds
    ZF_ASSERT (client.result.status == ZF_OK);
    if (verbose)
        printf ("storage core: ok\n");
    zf_free (data_path);
    zf_free (bad_dir);
    zf_free (bucket);
    zf_free (bad_meta);
    s_test_client_destroy (&client);
    zf_free (bind);
}

//  Answers to requests sent without waiting (s_test_send).
typedef struct {
    size_t sent, answered, written, not_found;
} test_tally_t;

static void s_test_on_tally (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                             const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) err;
    test_tally_t *tally = arg;
    tally->answered++;
    if (status == ZF_OK && streq (reply->env.type, ZF_MSG_PIECE_WRITTEN))
        tally->written++;
    else if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND)
        tally->not_found++;
}

static int s_test_tally_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    test_tally_t *tally = arg;
    return tally->answered == tally->sent ? -1 : 0;
}

//  Writes queued for the writer thread while their task is removed and created again under
//  the same id, with other pieces: each is answered (written, or not_found when it was still
//  queued), none is claimed by the new task, whose own pieces read back exactly.
static void s_test_recreate (const char *dir, bool verbose)
{
    test_client_t client;
    s_test_client_new (&client, "selftest-recreate", dir);
    s_test_start_storage (&client);
    enum { PIECE = 1 << 20, PIECES = 16, LENGTH = PIECE * PIECES };
    char id[65];
    s_test_id (id, 'e');
    uint8_t *old_content = zf_malloc (LENGTH), *new_content = zf_malloc (LENGTH);
    s_test_content (old_content, LENGTH, 5);
    s_test_content (new_content, LENGTH, 6);
    s_test_open (&client, id, LENGTH, PIECE, NULL);
    ZF_ASSERT (client.result.status == ZF_OK);
    test_tally_t tally = {0};
    for (size_t piece = 0; piece < PIECES; piece++) {
        uint8_t digest[ZF_STORE_DIGEST_LEN];
        zf_store_sha256 (old_content + piece * PIECE, PIECE, digest);
        zf_msg_piece_write_t body = {.task_id = id, .piece = piece, .digest = {digest, 32}};
        zmsg_t *raw = zmsg_new ();
        zmsg_addmem (raw, old_content + piece * PIECE, PIECE);
        zf_error_t err;
        ZF_ASSERT (zf_bus_request (client.bus, "storage", &zf_msg_piece_write, &body, &raw,
                                   (zf_bus_call_t){.timeout_ms = 30000, .retries = 0},
                                   s_test_on_tally, &tally, &err)
                   == ZF_OK);
        tally.sent++;
    }
    //  Sent behind the writes, handled by the actor while the writer thread still works.
    s_test_remove (&client, id);
    ZF_ASSERT (client.result.status == ZF_OK);
    s_test_open (&client, id, LENGTH, 2 * PIECE, NULL);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 0);
    int timer = zloop_timer (client.loop, 1, 0, s_test_tally_tick, &tally);
    client.result.done = false; //  else the client's own tick ends the loop at once
    zloop_start (client.loop);
    zloop_timer_end (client.loop, timer);
    ZF_ASSERT (tally.answered == PIECES && tally.written + tally.not_found == PIECES);
    s_test_stat (&client, id);
    ZF_ASSERT (client.result.status == ZF_OK && client.result.finished_count == 0);
    for (uint64_t piece = 0; piece < PIECES / 2; piece++) {
        s_test_write (&client, id, piece, new_content + piece * 2 * PIECE, 2 * PIECE, DIGEST_GOOD);
        ZF_ASSERT (client.result.status == ZF_OK);
        s_test_read (&client, id, piece);
        ZF_ASSERT (client.result.status == ZF_OK);
        ZF_ASSERT (memcmp (zframe_data (zmsg_first (client.result.raw)),
                           new_content + piece * 2 * PIECE, 2 * PIECE)
                   == 0);
    }
    if (verbose)
        printf ("storage recreate: %zu written, %zu dropped: ok\n", tally.written, tally.not_found);
    zf_free (old_content);
    zf_free (new_content);
    s_test_client_destroy (&client);
}

static void s_test_gc (const char *dir, bool verbose)
{
    test_client_t client;
    s_test_client_new (&client, "selftest-gc", dir);
    client.config.quota = 100000; //  high 80000, low 50000
    client.config.high_watermark = 80;
    client.config.low_watermark = 50;
    s_test_start_storage (&client);
    zf_counter_t *watermark = zf_metrics_counter (
        "zfly_storage_evictions_total", "Tasks evicted by GC", "reason", "watermark", NULL);
    zf_counter_t *ttl = zf_metrics_counter ("zfly_storage_evictions_total", "Tasks evicted by GC",
                                            "reason", "ttl", NULL);
    uint64_t watermark_before = zf_counter_value (watermark), ttl_before = zf_counter_value (ttl);
    char ids[4][65];
    uint8_t *contents[4];
    for (int index = 0; index < 3; index++) {
        s_test_id (ids[index], (char) ('1' + index));
        contents[index] = s_test_fill (&client, ids[index], 24000, 8000, (unsigned) index);
    }
    //  Everything idles past busy_grace, then task 1 is read: the others are least recent.
    s_test_pipe (&client, "ADVANCE", "7200000");
    s_test_read (&client, ids[0], 0);
    ZF_ASSERT (client.result.status == ZF_OK);
    s_test_id (ids[3], '4');
    contents[3] = s_test_fill (&client, ids[3], 24000, 8000, 3); //  96000 > 80000: GC
    //  The eviction follows the end of the commit batch that holds the last write
    //  (s_on_committed), which may come after that write's piece.written: wait for it.
    int64_t deadline = zclock_mono () + 10000;
    while (zf_counter_value (watermark) < watermark_before + 2 && zclock_mono () < deadline)
        zclock_sleep (5);
    ZF_ASSERT (zf_counter_value (watermark) == watermark_before + 2);
    bool expect_present[4] = {true, false, false, true};
    for (int index = 0; index < 4; index++) {
        s_test_stat (&client, ids[index]);
        ZF_ASSERT ((client.result.status == ZF_OK) == expect_present[index]);
    }
    //  Past the TTL, idle tasks expire.
    s_test_pipe (&client, "ADVANCE", "2678400000");
    s_test_pipe (&client, "GC", NULL);
    ZF_ASSERT (zf_counter_value (ttl) == ttl_before + 2);
    s_test_stat (&client, ids[0]);
    ZF_ASSERT (s_test_error (&client, ZF_CODE_NOT_FOUND));
    for (int index = 0; index < 4; index++)
        zf_free (contents[index]);
    if (verbose)
        printf ("storage gc: ok\n");
    s_test_client_destroy (&client);
}

void zf_storage_test (bool verbose)
{
    printf (" * zf_storage: ");
    char template_core[] = "/tmp/zf-storage-test-XXXXXX";
    char template_gc[] = "/tmp/zf-storage-gc-XXXXXX";
    ZF_ASSERT (mkdtemp (template_core) && mkdtemp (template_gc));
    s_test_core (template_core, verbose);
    s_test_recreate (template_core, verbose);
    s_test_gc (template_gc, verbose);
    char *command = zf_asprintf ("rm -rf '%s' '%s'", template_core, template_gc);
    ZF_ASSERT (system (command) == 0);
    zf_free (command);
    zf_metrics_shutdown ();
    printf ("OK\n");
}
