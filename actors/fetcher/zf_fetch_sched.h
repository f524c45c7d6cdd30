/*  zf_fetch_sched.h — the fetcher's scheduler client (schemas/scheduler.schema).

    Announces the host to every configured scheduler at start and every interval the
    scheduler asks for (the heartbeat). For each task it picks the scheduler that owns it by
    consistent hashing of the task id over the list (zf_sched_ring), skipping schedulers marked
    dead, and registers the peer with a long poll: "parents" are added to the task (others
    dropped), "source" sends it to the origin, "wait" registers again after retry_ms. Finished
    pieces are reported in batches (every REPORT_INTERVAL_MS or REPORT_BATCH pieces, one
    `from` per batch); a parent the task dropped is reported (parent.failed) and the answer is
    the new set; an ack with reschedule asks again (peer.reschedule); the end of the task is
    peer.finished or peer.failed. The node keeps serving finished pieces: storage does that.

    A request that times out or cannot be delivered marks its scheduler dead: the tasks it
    owned register again at the next one on the ring, with a full report of their pieces. A
    heartbeat answered marks it alive again. With no scheduler alive, a task goes to the
    origin itself: a pull never fails because the P2P layer did. */
#ifndef ZF_FETCH_SCHED_H_INCLUDED
#define ZF_FETCH_SCHED_H_INCLUDED

#include "zf_fetch_task.h"

//  A client for env's fetcher, or NULL when [fetcher] schedulers is empty. Starts announcing.
zf_fetch_sched_t *zf_fetch_sched_new (zf_fetch_env_t *env, zf_node_t *node);
void zf_fetch_sched_destroy (zf_fetch_sched_t **self_p);

//  True when tasks should ask a scheduler (self may be NULL).
bool zf_fetch_sched_enabled (zf_fetch_sched_t *self);

//  A scheduled task is waiting for its first schedule (PHASE_PARENTS): register it.
void zf_fetch_sched_task_start (zf_fetch_sched_t *self, zf_fetch_task_t *task);
//  A piece was verified and written; from is the parent's name, NULL for the origin.
void zf_fetch_sched_piece_stored (zf_fetch_sched_t *self, zf_fetch_task_t *task, uint64_t piece,
                                  const char *from);
//  The task completed or failed: last report, then peer.finished or peer.failed.
void zf_fetch_sched_task_end (zf_fetch_sched_t *self, zf_fetch_task_t *task);

//  The zf_fetch_env_t.on_parent hook (arg: the client).
void zf_fetch_sched_on_parent (const char *task_id, const char *parent,
                               zf_fetch_parent_event_t event, uint64_t piece, const char *reason,
                               void *arg);

#endif
