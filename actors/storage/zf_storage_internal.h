/*  zf_storage_internal.h — the storage actor's state and the functions its parts call in each
    other; nothing outside the actor includes it.

    zf_storage.h is one actor in six files, cut by job:
      zf_storage.c         the configuration table, the actor's life (start, pipe commands,
                           stop), its metrics, and the replies and checks every handler shares
      zf_storage_tasks.c   the task commands: storage.open, storage.stat (held as a long poll
                           until there is news), storage.complete, storage.remove, and
                           storage.shift_clock and storage.measure
      zf_storage_write.c   piece.write through the writer thread to piece.written (with fsync,
                           once a commit claims the piece)
      zf_storage_upload.c  piece.read and piece.locate: checked pieces served, the upload rate
                           and its queue of waiting reads
      zf_storage_gc.c      GC: watermarks, TTL, evictions, removing tasks, access times, gauges
      zf_storage_test.c    the selftest (it sees only zf_storage.h)
    The state below is the one actor all five work on; each field says which part owns it
    (sets it and decides what it means). Everything is made and destroyed by zf_storage.c. */
#ifndef ZF_STORAGE_INTERNAL_H_INCLUDED
#define ZF_STORAGE_INTERNAL_H_INCLUDED

#include "zf_bus.h"
#include "zf_metrics.h"
#include "zf_storage.h"
#include "storage/zf_spread.h"
#include "storage/zf_stat_watch.h"
#include "storage/zf_store.h"
#include "storage/zf_store_io.h"

typedef struct {
    zf_counter_t *written, *served_local, *served_remote, *upload_bytes, *corrupt, *busy;
    zf_counter_t *elsewhere;
    zf_counter_t *evicted_watermark, *evicted_ttl, *quarantined, *stats_held;
    zf_gauge_t *bytes, *tasks_running, *tasks_complete;
} zf_storage_metrics_t;

typedef struct {
    //  zf_storage.c: set at start, read by every part
    const char *name;
    const zf_storage_config_t *config;
    zf_node_t *node;
    zsock_t *pipe;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_store_t *store;
    zf_storage_metrics_t metrics;
    //  zf_storage.c (ADVANCE) and zf_storage_tasks.c (storage.shift_clock): only forward
    int64_t clock_offset_ms;
    //  zf_storage_write.c: piece writes and commits, off this loop (GC, storage.complete and
    //  damaged pieces ask it for a commit too)
    zf_store_io_t *io;
    //  zf_storage_write.c notes pieces from the origin, zf_storage_upload.c asks whom they
    //  may go to, zf_storage_gc.c forgets removed tasks: one other node first
    zf_spread_t *spread;
    //  zf_storage_upload.c: reads from other nodes waiting for tokens (FIFO of its own
    //  records), the timer that serves them, and the token bucket
    zlistx_t *uploads;
    int upload_timer; //  -1 when none is armed
    double tokens;    //  upload bytes that may go out now; negative: debt to wait off
    int64_t tokens_at_ms;
    //  zf_storage_tasks.c: storage.stat requests held until their task's next piece (any
    //  part that changes a task notifies it), and the timer of their deadlines
    zf_stat_watch_t *watch;
    int watch_timer; //  -1 when none is armed
} zf_storage_t;

//  ---------------------------------------------------------------------------------------------
//  zf_storage.c: time, replies and checks every handler shares

//  Wall clock: access times are persisted, so they must mean something after a restart.
int64_t zf_storage_now_ms (zf_storage_t *self);

//  storage.task; with bitmap_only, the digests frame is empty (storage.stat's bitmap_only).
void zf_storage_reply_task_frames (zf_storage_t *self, const zf_bus_return_t *ret,
                                   zf_store_task_t *task, bool bitmap_only);
void zf_storage_reply_task (zf_storage_t *self, const zf_bus_return_t *ret, zf_store_task_t *task);
void zf_storage_reply_not_found (zf_storage_t *self, const zf_bus_return_t *ret,
                                 const char *task_id);
//  Looks the task up after checking the id; answers the request itself when there is none.
zf_store_task_t *zf_storage_task_or_reply (zf_storage_t *self, const zf_bus_return_t *ret,
                                           const char *task_id);
//  False, answered "invalid", for a piece past the task's last.
bool zf_storage_piece_in_range (zf_storage_t *self, const zf_bus_return_t *ret,
                                zf_store_task_t *task, uint64_t piece);

//  A reader on this host (the fetcher, zfly-get, the proxy) is never rate-limited. The
//  transport decides, not the envelope's self-declared sender name.
bool zf_storage_from_this_host (const zf_bus_msg_t *request);
//  True for a request from this host. Anyone else is answered `code` with `answer`, and the
//  refusal logged (at most as often as limit lets) with `why`.
bool zf_storage_local_only (zf_storage_t *self, const zf_bus_msg_t *request, zf_ratelimit_t *limit,
                            zf_code_t code, const char *why, const char *answer);
//  Only actors of this host may change the cache: another node could otherwise plant pieces
//  with digests of its own choosing. Answers "refused" and returns false for anyone else.
bool zf_storage_may_change (zf_storage_t *self, const zf_bus_msg_t *request);

//  ---------------------------------------------------------------------------------------------
//  zf_storage_tasks.c: the task commands

//  Registers storage.open, stat, complete, remove, shift_clock and measure.
void zf_storage_tasks_register (zf_storage_t *self);
//  Answers a held storage.stat (zf_stat_watch_new's callback; arg: the actor).
void zf_storage_answer_watch (const zf_bus_return_t *ret, const char *task_id, bool bitmap_only,
                              void *arg);

//  ---------------------------------------------------------------------------------------------
//  zf_storage_write.c: piece.write

//  Registers piece.write.
void zf_storage_write_register (zf_storage_t *self);
//  The writer thread wrote a piece (zf_store_io_handlers_t written; arg: the actor).
void zf_storage_on_written (void *arg, zf_store_write_t *write, zf_store_task_t *task);
//  Durable mode: answers once the task's next commit has ended: piece.written for piece, or
//  storage.task for UINT64_MAX (storage.complete). buffer_p (may be NULL) goes back with
//  piece.written.
void zf_storage_answer_when_claimed (zf_storage_t *self, const zf_bus_return_t *ret,
                                     zf_store_task_t *task, uint64_t piece, zframe_t **buffer_p);

//  ---------------------------------------------------------------------------------------------
//  zf_storage_upload.c: piece.read and piece.locate

//  Registers piece.read and piece.locate.
void zf_storage_upload_register (zf_storage_t *self);
//  A read of the task waits for upload tokens: GC leaves the task alone.
bool zf_storage_upload_waiting (zf_storage_t *self, const char *task_id);

//  ---------------------------------------------------------------------------------------------
//  zf_storage_gc.c: GC, removal, gauges

//  Evicts expired tasks, then least recently used ones while use is above high_watermark.
void zf_storage_gc (zf_storage_t *self);
//  When `need` more bytes would take use above high_watermark, or the disk is full whatever
//  the watermarks say (a quota's use is the tasks' bytes, not the filesystem's): evicts least
//  recently used tasks not in use until they fit under low_watermark, now rather than at GC's
//  next round (a task about to be created; a write that met ENOSPC). Returns the bytes freed.
uint64_t zf_storage_make_room (zf_storage_t *self, uint64_t need, bool disk_full);
//  Every gc_interval: access times saved, then GC (a zloop timer; arg: the actor).
int zf_storage_gc_timer (zloop_t *loop, int timer_id, void *arg);
//  A batch of commits ended (zf_store_io_handlers_t committed; arg: the actor).
void zf_storage_on_committed (void *arg);
//  Marks tasks whose access times changed for the next commit, and asks for it.
void zf_storage_save_access_times (zf_storage_t *self);
//  Cache use and capacity in bytes: of the quota when one is set, else of the filesystem.
bool zf_storage_usage (zf_storage_t *self, uint64_t *used, uint64_t *capacity);
//  The same of the cache directory's filesystem, whatever the quota.
bool zf_storage_filesystem (zf_storage_t *self, uint64_t *used, uint64_t *capacity);
//  Deletes the task; storage.stat requests held for it are answered (not_found).
void zf_storage_remove_task (zf_storage_t *self, zf_store_task_t **task_p);
//  Removes a task whose data file storage may not write any more, saying why.
void zf_storage_drop_task (zf_storage_t *self, zf_store_task_t *task, const char *why);
//  The byte and task gauges, from the store.
void zf_storage_update_gauges (zf_storage_t *self);

#endif
