/*  zf_sched_health.h — hosts that fail, hosts that vanish.

    Bad hosts: parent failures reported against a host are remembered (a ring of the last
    bad_failures times and reporters), one per reporting child and window: a child that cannot
    reach a parent may have a problem of its own. When failures from bad_failures different
    children fall within bad_window_ms the host is marked bad for bad_cooldown_ms: no child
    gets it as a parent, the children it has are told to reschedule, and where it is a task's
    origin fetcher the single flight is released to a peer at once. After the cool-down
    it is a candidate again with a clean slate. Slowness is never a failure (a busy seed is
    still the best parent there is): parent.failed with reason "slow" is not counted.

    Vanished hosts: a host whose last announce is older than host_timeout_ms is removed with
    all its peers; their children are flagged to reschedule and, where a removed peer was a
    task's origin fetcher, the single flight is released to a waiting peer. */
#ifndef ZF_SCHED_HEALTH_H_INCLUDED
#define ZF_SCHED_HEALTH_H_INCLUDED

#include "zf_sched_model.h"

//  Counts a failure seen by reporter (a child host's serial; 0: the scheduler itself, each of
//  whose observations counts); returns true when this one made the host bad.
bool zf_sched_host_failure (zf_sched_t *sched, zf_sched_host_t *host, uint32_t reporter,
                            int64_t now_ms);

//  How many failures of the host, for any of its tasks, fell within bad_window_ms: one per
//  reporting child (a child counts once per window) and one per seed refusal (reporter 0, each
//  counted); at most bad_failures, for once that many did, it is bad.
uint32_t zf_sched_host_recent_failures (zf_sched_t *sched, const zf_sched_host_t *host,
                                        int64_t now_ms);

//  Called for each host about to be removed, before its peers go (the owner answers their
//  waiting requests and publishes an event).
typedef void (zf_sched_expire_fn) (zf_sched_host_t *host, void *arg);

//  Removes hosts not seen for host_timeout_ms; returns how many.
size_t zf_sched_expire_hosts (zf_sched_t *sched, int64_t now_ms, zf_sched_expire_fn *callback,
                              void *arg);

#endif
