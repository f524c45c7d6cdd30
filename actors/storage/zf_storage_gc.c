/*  zf_storage_gc.c — the storage actor's GC (see zf_storage_internal.h): tasks expire after
    task_ttl, and above high_watermark the least recently used are evicted down to
    low_watermark; a task in use never is. Also removing a task, saving access times, and the
    gauges of what the cache holds. */
#include "zf_log.h"
#include "zf_msgs.h"
#include "storage/zf_storage_internal.h"
#include <sys/statvfs.h>

// ---- gauges ------------------------------------------------------------------------------------

void zf_storage_update_gauges (zf_storage_t *self)
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
static bool s_in_use (zf_storage_t *self, zf_store_task_t *task, int64_t now_ms)
{
    if (now_ms - task->accessed_ms < self->config->busy_grace_ms || task->pending_count > 0
        || task->writes_queued > 0 || task->commit_running)
        return true;
    return zf_storage_upload_waiting (self, task->id);
}

//  Deletes the task; storage.stat requests held for it are answered (not_found).
void zf_storage_remove_task (zf_storage_t *self, zf_store_task_t **task_p)
{
    char task_id[ZF_STORE_ID_LEN + 1];
    zf_strlcpy (task_id, (*task_p)->id, sizeof task_id);
    zf_store_remove (self->store, task_p);
    zf_stat_watch_notify (self->watch, task_id, UINT64_MAX);
    zf_spread_forget (self->spread, task_id);
}

//  Removes a task whose data file storage may not write any more (zf_store_read_piece): the
//  next download of it starts over with a new file. Other names of the file keep its bytes.
void zf_storage_drop_task (zf_storage_t *self, zf_store_task_t *task, const char *why)
{
    zf_warning (self->name, "dropped task=%s: %s", task->id, why);
    zf_storage_remove_task (self, &task);
}

static void s_evict (zf_storage_t *self, zf_store_task_t *task, const char *reason)
{
    zf_msg_storage_evicted_t event = {
        .task_id = task->id, .reason = (char *) reason, .bytes = task->finished_bytes};
    zf_bus_publish (self->bus, &zf_msg_storage_evicted, &event);
    zf_info (self->name, "evicted task=%s reason=%s bytes=%" PRIu64, task->id, reason,
             task->finished_bytes);
    zf_counter_add (
        streq (reason, "ttl") ? self->metrics.evicted_ttl : self->metrics.evicted_watermark, 1);
    zf_storage_remove_task (self, &task);
}

//  Cache use and capacity in bytes: of the quota when one is set, else of the filesystem.
bool zf_storage_usage (zf_storage_t *self, uint64_t *used, uint64_t *capacity)
{
    if (self->config->quota > 0) {
        *used = zf_store_bytes (self->store);
        *capacity = self->config->quota;
        return true;
    }
    return zf_storage_filesystem (self, used, capacity);
}

bool zf_storage_filesystem (zf_storage_t *self, uint64_t *used, uint64_t *capacity)
{
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

//  Evicts the least recently used tasks not in use (tasks[], sorted by s_by_access; NULL
//  entries skipped) while used is above target; returns used as it then is. Freed bytes are
//  counted from the tasks, not re-measured: a filesystem may report the space free only later.
static uint64_t s_evict_down_to (zf_storage_t *self, zf_store_task_t **tasks, size_t count,
                                 uint64_t used, double target, int64_t now)
{
    for (size_t index = 0; index < count && (double) used > target; index++) {
        zf_store_task_t *task = tasks[index];
        if (!task || s_in_use (self, task, now))
            continue;
        used -= task->finished_bytes < used ? task->finished_bytes : used;
        s_evict (self, task, "watermark");
        tasks[index] = NULL;
    }
    return used;
}

void zf_storage_gc (zf_storage_t *self)
{
    int64_t now = zf_storage_now_ms (self);
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
    if (zf_storage_usage (self, &used, &capacity)
        && (double) used > self->config->high_watermark / 100.0 * (double) capacity) {
        double target = self->config->low_watermark / 100.0 * (double) capacity;
        zf_notice (self->name, "gc: use %" PRIu64 " of %" PRIu64 " bytes is above %.1f%%", used,
                   capacity, self->config->high_watermark);
        used = s_evict_down_to (self, tasks, count, used, target, now);
        if ((double) used > target)
            zf_warning (self->name, "gc: still %" PRIu64 " bytes used: the rest is in use", used);
    }
    zf_free (tasks);
    zf_storage_update_gauges (self);
}

uint64_t zf_storage_make_room (zf_storage_t *self, uint64_t need, bool disk_full)
{
    //  A full disk is measured as the filesystem: a quota's use (the tasks' bytes) may be far
    //  under it while other files fill the rest.
    uint64_t used, capacity;
    bool measured = disk_full ? zf_storage_filesystem (self, &used, &capacity)
                              : zf_storage_usage (self, &used, &capacity);
    if (!measured
        || (!disk_full
            && (double) (used + need) <= self->config->high_watermark / 100.0 * (double) capacity))
        return 0;
    int64_t now = zf_storage_now_ms (self);
    size_t count;
    zf_store_task_t **tasks = zf_store_tasks (self->store, &count);
    qsort (tasks, count, sizeof *tasks, s_by_access);
    double target = self->config->low_watermark / 100.0 * (double) capacity - (double) need;
    zf_notice (self->name, "gc: making room for %" PRIu64 " bytes: use %" PRIu64 " of %" PRIu64,
               need, used, capacity);
    uint64_t left = s_evict_down_to (self, tasks, count, used, target, now);
    zf_free (tasks);
    zf_storage_update_gauges (self);
    return used - left;
}

//  Persists access times now and then, not on every read: losing some only makes LRU a
//  little less exact after a crash.
void zf_storage_save_access_times (zf_storage_t *self)
{
    size_t count;
    zf_store_task_t **tasks = zf_store_tasks (self->store, &count);
    for (size_t index = 0; index < count; index++)
        if (tasks[index]->access_dirty)
            tasks[index]->meta_dirty = true;
    zf_free (tasks);
    zf_store_io_commit (self->io);
}

int zf_storage_gc_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_storage_t *self = arg;
    zf_storage_save_access_times (self);
    zf_storage_gc (self);
    return 0;
}

//  A batch of commits ended: a write may have pushed use over the high watermark.
void zf_storage_on_committed (void *arg)
{
    zf_storage_t *self = arg;
    uint64_t used, capacity;
    if (zf_storage_usage (self, &used, &capacity)
        && (double) used > self->config->high_watermark / 100.0 * (double) capacity)
        zf_storage_gc (self);
    else
        zf_storage_update_gauges (self);
}
