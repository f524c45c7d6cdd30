/*  zf_preheat.h — the preheat worker actor: takes jobs from a queue and runs them.

    A worker takes a job id from the queue ([preheat] queue: empty for the manager's own,
    asked with job.take; redis://HOST:PORT for the Redis stream, zf_job_stream.h), asks the
    manager to start it (job.start: what the job is, its credentials, the hosts it goes to),
    runs it (zf_preheat_job.h) and reports to the manager (job.update) as tasks change and at
    least every lease / 3, which is also its heartbeat. It holds up to [preheat] jobs at once.

    Never two workers on one job: with Redis the worker touches its stream entry every lease /
    3 and stops the job the moment the entry is not its own any more (another worker claimed
    it after a lease of silence) or Redis has been out of reach for half a lease; with the
    manager's queue it stops when the manager says the job is lost, or when it could not
    report for a lease. The manager answers an update from a worker that no longer holds the
    job with "lost". A job ends on the worker only once the manager recorded its end; then the
    stream entry is acknowledged and deleted.

    The worker sends task.fetch to other nodes' fetchers over tcp:// with CURVE: it runs with
    the manager's keypair ([bus] cert), which the manager makes a member of every cluster. The
    manager must be reachable as [preheat] manager (this process, or [endpoints]).

    Off unless the INI file has a [preheat] section. */
#ifndef ZF_PREHEAT_H_INCLUDED
#define ZF_PREHEAT_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *queue;   //  "" the manager's own queue; redis://HOST:PORT
    char *manager; //  the manager actor's name (local or in [endpoints])
    int64_t jobs;  //  jobs at once
    int64_t lease_ms;
    int64_t concurrency; //  blobs in flight per job, when the job says 0
    int64_t retries;
    int64_t retry_delay_ms;
    int64_t timeout_ms; //  a job's deadline, when the job says 0
    int64_t poll_ms;
    int64_t request_timeout_ms;
    char *plain_http; //  (split DNS and a private CA come from [upstream])
} zf_preheat_config_t;

extern const zf_config_section_t zf_preheat_section;

void zf_preheat_actor (zsock_t *pipe, void *args);

#endif
