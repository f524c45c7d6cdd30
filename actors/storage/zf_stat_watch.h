/*  zf_stat_watch.h — storage.stat requests held until their task has news.

    A child downloading from a parent that is itself still downloading wants to hear of each
    piece the parent finishes as soon as it lands: polling would add up to a poll interval of
    lag at every hop of the swarm. So a storage.stat with wait_ms is held here while the task
    has no more than known_finished pieces, and answered when it does, when the task goes
    away, or when wait_ms runs out (then unchanged, which tells the child nothing new came).

    A request for a task storage does not have yet (a child given a parent that has not
    opened the task) waits the same way for the task to be created.

    The watch only keeps the waiting requests; the storage actor decides what the answer is
    (zf_stat_watch_answer_fn). Not thread-safe: one actor owns it. */
#ifndef ZF_STAT_WATCH_H
#define ZF_STAT_WATCH_H

#include "zf_bus.h"

typedef struct zf_stat_watch_s zf_stat_watch_t;

//  known_finished of a request for a task that does not exist yet: any news answers it.
#define ZF_STAT_WATCH_ABSENT UINT64_MAX

//  Answers one held request: the storage actor replies with the task's state (or not_found
//  when the task is gone).
typedef void (*zf_stat_watch_answer_fn) (const zf_bus_return_t *ret, const char *task_id,
                                         bool bitmap_only, void *arg);

zf_stat_watch_t *zf_stat_watch_new (zf_stat_watch_answer_fn answer, void *arg);
//  Drops every held request unanswered (the actor is stopping: its peers time out).
void zf_stat_watch_destroy (zf_stat_watch_t **self_p);

//  Holds a request until task_id has more than known_finished pieces or until deadline_ms
//  (monotonic). A bounded number of requests is held; beyond it the oldest is answered now.
void zf_stat_watch_add (zf_stat_watch_t *self, const zf_bus_return_t *ret, const char *task_id,
                        uint64_t known_finished, bool bitmap_only, int64_t deadline_ms);

//  The task now has finished_count pieces (just created: 0; complete or gone: UINT64_MAX):
//  answers every request that waits for fewer, and every one that waits for it to exist.
void zf_stat_watch_notify (zf_stat_watch_t *self, const char *task_id, uint64_t finished_count);

//  Answers the requests whose deadline has passed. Returns the earliest deadline still held,
//  or -1 when none is.
int64_t zf_stat_watch_expire (zf_stat_watch_t *self, int64_t now_ms);

size_t zf_stat_watch_size (zf_stat_watch_t *self);

void zf_stat_watch_test (bool verbose);

#endif
