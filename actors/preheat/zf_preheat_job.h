/*  zf_preheat_job.h — one preheat job on a worker: resolve, fan out, follow, report.

    Given what the manager said the job is (job.started), the job
      1. resolves each image reference to its blobs (zf_resolver: manifest, token, index,
         platform), or takes the file URLs as they are; a registry that cannot be reached is
         asked again (retries, with doubling delays), a refusal (wrong password, unknown tag,
         no such platform) fails the job at once with the resolver's words;
      2. picks the hosts of each blob: scope single_seed_peer, one seed peer per cluster (the
         same one for a blob every time: rendezvous hashing of the digest over the cluster's
         seeds, so the work spreads and a second preheat asks the seed that already has it);
         all_seed_peers, every seed peer; all_peers, every host with a fetcher;
      3. sends each host's fetcher task.fetch with the blob's URL, its digest and the
         Authorization that opened the registry, exactly what the proxy sends for a pull, so
         the task id is the one a later pull computes and the pull finds the blob in the cache
         or at a seed. Blobs run in parallel up to the job's concurrency; every host of a blob
         at once. A running task is followed with task.query;
      4. keeps per (blob, host) state, bytes and attempts; a failed task (the fetcher's error,
         an unreachable host) is tried again after a doubling delay, up to retries times,
         then recorded as failed with its reason;
      5. ends with success when every task succeeded, else failure with the first reasons,
         or at its deadline.
    A blob already in a host's cache completes at once (the fetcher's storage answers), so
    preheating twice moves no bytes.

    The worker (zf_preheat.c) reports the job's changed tasks to the manager
    (zf_preheat_job_changes) and destroys the job when it ends, is cancelled or lost. */
#ifndef ZF_PREHEAT_JOB_H_INCLUDED
#define ZF_PREHEAT_JOB_H_INCLUDED

#include "zf_bus.h"
#include "zf_curl_loop.h"
#include "zf_metrics.h"

typedef struct {
    //  defaults for what a job leaves at 0
    int64_t concurrency;
    int64_t timeout_ms;
    int64_t retries;
    int64_t retry_delay_ms; //  first delay; doubled after each failure
    int64_t poll_ms;        //  task.query interval of a running task
    int64_t request_timeout_ms;
    const char *plain_http; //  registries (HOST[:PORT], blank-separated) without TLS
    const char *upstream_ca;
    struct curl_slist *connect_to;
} zf_preheat_settings_t;

//  What every job of a worker shares.
typedef struct {
    const char *name; //  the worker actor, for logs
    zf_node_t *node;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_curl_loop_t *curl;
    const zf_preheat_settings_t *settings;
    zf_counter_t *tasks_succeeded, *tasks_failed, *task_retries, *bytes;
    //  Called (when set) as a job ends, so that its worker reports the end without waiting for
    //  its timer; it must not destroy the job.
    void (*ended) (void *arg);
    void *ended_arg;
} zf_preheat_env_t;

typedef struct zf_preheat_job_s zf_preheat_job_t;

//  Starts a job; started must have verdict "run". Everything needed is copied.
zf_preheat_job_t *zf_preheat_job_new (zf_preheat_env_t *env, const zf_msg_job_started_t *started);
//  Stops whatever runs (requests forgotten, resolutions abandoned) and frees the job.
void zf_preheat_job_destroy (zf_preheat_job_t **self_p);

int64_t zf_preheat_job_id (zf_preheat_job_t *self);
int64_t zf_preheat_job_attempt (zf_preheat_job_t *self);
//  True once the job ended; *state "success" or "failure", *error why (borrowed).
//  Time passes: retries of resolutions and tasks that are due, polls of running tasks, the
//  job's deadline. The worker calls it from its own timer (a job owns no timer: a job its
//  worker released in the same loop pass would otherwise still get its tick).
void zf_preheat_job_tick (zf_preheat_job_t *self, int64_t now);
bool zf_preheat_job_ended (zf_preheat_job_t *self, const char **state, const char **error);
//  True while tasks changed since they were last taken by zf_preheat_job_changes.
bool zf_preheat_job_dirty (zf_preheat_job_t *self);

//  The report of the changes: up to max changed tasks (borrowed, valid until the job
//  changes), the images resolved so far and the number of tasks. The tasks count as reported
//  once zf_preheat_job_reported (self, batch, true) says the manager took them; with false
//  they are sent again next time. One batch at a time.
typedef struct {
    zf_rec_job_task_t *tasks;
    size_t count;
    char **images;
    size_t image_count;
    uint64_t tasks_total;
    bool more;       //  changed tasks beyond this batch wait for the next one
    size_t *indexes; //  (internal) which tasks the batch holds, and their versions
    uint64_t *versions;
} zf_preheat_batch_t;
void zf_preheat_job_changes (zf_preheat_job_t *self, size_t max, zf_preheat_batch_t *batch);
void zf_preheat_job_reported (zf_preheat_job_t *self, zf_preheat_batch_t *batch, bool taken);

#endif
