/*  zf_sched_decide.h — what a peer does now: parents, source, or wait.

    Single flight: a task has at most one origin fetcher (task->source). The first peer of a
    task nobody holds claims it: when a seed host is available the scheduler makes that seed
    the source (the owner sends it seed.trigger) and hands it to the peer as a parent at once;
    with no seed, the peer itself is told "source". Every other peer gets parents when some
    peer can serve it, else "wait", and is served again when pieces appear (wake list). A new
    origin fetcher is chosen only when the source is gone and nobody holds any piece, so a
    storm of hundreds of registers costs the origin one fetch.

    Seeds are chosen per task by rendezvous hashing of (task id, host id) over the usable seed
    hosts, so one task always lands on the same seed and tasks spread evenly over seeds. */
#ifndef ZF_SCHED_DECIDE_H_INCLUDED
#define ZF_SCHED_DECIDE_H_INCLUDED

#include "zf_sched_model.h"

#define ZF_SCHED_CHILDREN_MIN  2
#define ZF_SCHED_ADOPT_EXAMINE 64 //  peers looked at for children, from a random start

typedef enum {
    ZF_DECISION_PARENTS,
    ZF_DECISION_SOURCE,
    ZF_DECISION_WAIT,
} zf_decision_t;

const char *zf_sched_decision_name (zf_decision_t decision);

//  A peer registers that a scheduler now gone had scheduled (peer.register "resumed"; it
//  restarted, died, or the task moved on the ring). One that fetches from the origin
//  (`source`) is the task's origin fetcher again, unless the task has one; otherwise a task
//  seen first this way gets no new origin fetcher for params.resume_grace_ms, while its
//  peers register again: its old one is about to. Without the grace, the peers that found a
//  restarted scheduler before the seed did each became another origin fetcher (N = 8, the
//  scheduler back after 3 s: 1.82 F from the origin).
void zf_sched_peer_resumed (zf_sched_t *sched, zf_sched_peer_t *peer, bool source, int64_t now_ms);

//  A seed was made a task's source: the owner tells it (seed.trigger).
typedef void (zf_sched_trigger_fn) (zf_sched_peer_t *seed_peer, void *arg);

//  Tops the peer's parents up to parents_max and says what it does now.
zf_decision_t zf_sched_decide (zf_sched_t *sched, zf_sched_peer_t *peer, int64_t now_ms,
                               zf_sched_trigger_fn *trigger, void *arg);

//  A peer that holds pieces but serves fewer children than its share is given some: children
//  that lack its pieces, taken from the parent with the most children when their set is full
//  (flagged to reschedule, so they learn their new set at their next report). Its share: the
//  task's parent edges over its holders, less one, and at least ZF_SCHED_CHILDREN_MIN.
//  Selection fills a child's parents from the peers that hold pieces when it asks; on a task
//  with more peers than parents_max, peers that got their first pieces later were then
//  nobody's parent for the whole download, their uplinks idle, and a first copy the seed gave
//  one of them reached the others only through the seed again (docs/benchmarks.md, "Every
//  holder a parent"); with two children each they still uploaded half what the others did
//  ("Every holder its share of children"). Not with params.acyclic. Returns the children
//  given.
size_t zf_sched_adopt (zf_sched_t *sched, zf_sched_peer_t *parent, int64_t now_ms);

//  The usable seed for a task (live, not bad, not refused for it, allowed by params.seeds), or
//  NULL. exclude: a host not to choose (the asking peer's own).
zf_sched_host_t *zf_sched_pick_seed (zf_sched_t *sched, const zf_sched_task_t *task,
                                     const zf_sched_host_t *exclude, int64_t now_ms);

//  A triggered seed did not take the task: it is dropped as the task's source (a waiting peer
//  takes over) and not chosen for this task again.
void zf_sched_seed_refused (zf_sched_t *sched, zf_sched_peer_t *seed_peer);

//  A peer leaves the task after a failure of its own (peer.failed, other than "evicted"). When
//  it is a seed fetching the task from the origin, the origin refused it or could not be
//  reached from it: no seed is triggered for the task again, and the task's peers fetch from
//  the origin themselves (one at a time, as ever). The origin may refuse a seed what it gives
//  the clients: a private registry's blob, whose credentials stay with the clients; triggering
//  a seed again asked the registry in a loop (about 30 times a second) until the clients gave
//  up waiting (sched_fallback, 10 s a blob). Call it before the peer is removed.
void zf_sched_seed_failed (zf_sched_t *sched, zf_sched_peer_t *peer);

//  A peer leaves the task because the origin failed it (peer.failed "source"). When it was the
//  task's origin fetcher and not a seed (one fetching with its own client's credentials), the
//  single flight is over: every peer that asks from now on fetches what its parents cannot give
//  from the origin itself. One at a time, each waited for the last to fail in turn (its
//  retries, about 16 s): with the origin dead, the last of 8 peers learned it after two
//  minutes, the last of N after N times that. Call it before the peer is removed.
void zf_sched_origin_failed (zf_sched_t *sched, zf_sched_peer_t *peer);

//  A parent did not serve the child: drop the edge, keep it away from the child, count the
//  failure against its host. Returns true when the host became bad. A task's origin fetcher
//  whose host has as many recent failures as the task has other peers gives up the flight,
//  bad or not.
bool zf_sched_parent_failed (zf_sched_t *sched, zf_sched_peer_t *child, zf_sched_peer_t *parent,
                             bool counts, int64_t now_ms);

#endif
