/*  zf_job_stream.h — the durable job queue of cluster mode: a Redis stream with a consumer
    group (hiredis).

    The manager adds one entry per job (`job` = its id) to the stream zfly:preheat:jobs; the
    preheat workers read it as consumers of the group zfly:preheat:workers:
      - take: XAUTOCLAIM first (an entry whose worker has been silent for a lease: it died),
        else XREADGROUP ">" (a new entry). Redis gives each entry to one consumer at a time;
      - renew: the worker that holds an entry touches it (XCLAIM to itself, JUSTID) every
        lease / 3, in one Lua script that first checks the entry is still its own, so a worker
        that was paused past its lease learns that it lost the job instead of stealing it back;
      - ack: XACK and XDEL once the manager has recorded the job's end. The entry held only
        the job's id: credentials never touch Redis.
    The database stays the truth about a job; the stream is only who runs it next. Entries are
    kept by Redis across restarts when it persists (appendonly yes: deploy/manager.ini says
    so); an entry Redis lost is added again by the manager's sweep (zf_jobs.c).

    hiredis 0.14 (Debian 12): blocking calls, here with a connect and command timeout
    (ZF_JOB_STREAM_TIMEOUT_MS), so the owner's loop stalls at most that long. A failed call
    drops the connection; the next call reconnects, but not before a backoff (doubling up to
    2 s), so a Redis that is down costs its callers one timeout per backoff, not one per call. */
#ifndef ZF_JOB_STREAM_H_INCLUDED
#define ZF_JOB_STREAM_H_INCLUDED

#include "zf_error.h"

#define ZF_JOB_STREAM_KEY        "zfly:preheat:jobs"
#define ZF_JOB_STREAM_GROUP      "zfly:preheat:workers"
#define ZF_JOB_STREAM_TIMEOUT_MS 1000
#define ZF_JOB_STREAM_REF_MAX    48 //  "1700000000000-0" and its NUL, with room

typedef struct zf_job_stream_s zf_job_stream_t;

//  True when url is redis://HOST:PORT (or redis://HOST, port 6379); err says why not.
bool zf_job_stream_url_valid (const char *url, zf_error_t *err);

//  consumer: this worker's name in the group (unique per process: a restarted worker is a new
//  consumer, and the old one's entries are reclaimed after a lease). NULL for the manager.
zf_job_stream_t *zf_job_stream_new (const char *url, const char *consumer, zf_error_t *err);
void zf_job_stream_destroy (zf_job_stream_t **self_p);

//  Adds job_id's entry; ref gets its id (ZF_JOB_STREAM_REF_MAX).
zf_status_t zf_job_stream_add (zf_job_stream_t *self, int64_t job_id, char *ref, zf_error_t *err);
//  Whether the entry ref is still in the stream.
zf_status_t zf_job_stream_exists (zf_job_stream_t *self, const char *ref, bool *exists,
                                  zf_error_t *err);
//  Takes an entry: one silent for lease_ms (reclaimed: *reclaimed true), else a new one.
//  *job_id 0 when there is none.
zf_status_t zf_job_stream_take (zf_job_stream_t *self, int64_t lease_ms, int64_t *job_id, char *ref,
                                bool *reclaimed, zf_error_t *err);
//  Touches an entry this consumer holds; *held false when another consumer has it now, or it
//  is gone.
zf_status_t zf_job_stream_renew (zf_job_stream_t *self, const char *ref, bool *held,
                                 zf_error_t *err);
//  Acknowledges and deletes an entry.
zf_status_t zf_job_stream_ack (zf_job_stream_t *self, const char *ref, zf_error_t *err);

void zf_job_stream_test (bool verbose);

#endif
