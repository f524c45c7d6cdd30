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

typedef struct zf_fetch_sched_s zf_fetch_sched_t;

//  A client for env's fetcher, or NULL when [fetcher] schedulers is empty. Starts announcing,
//  and watches env's tasks (env->observer; env->scheduled: new tasks wait for a schedule).
zf_fetch_sched_t *zf_fetch_sched_new (zf_fetch_env_t *env, zf_node_t *node);
void zf_fetch_sched_destroy (zf_fetch_sched_t **self_p);

//  The daemon stops (its tasks ended): every scheduler of another process that is not marked
//  dead is told that this host leaves (host.leave), so its peers go at once and no child is
//  given this node as a parent during host_timeout; nothing more is announced or asked.
//  Returns how many answers to wait for (each waits LEAVE_TIMEOUT_MS at most);
//  zf_fetch_sched_leaving says how many are still awaited.
size_t zf_fetch_sched_leave (zf_fetch_sched_t *self);
size_t zf_fetch_sched_leaving (const zf_fetch_sched_t *self);

#endif
