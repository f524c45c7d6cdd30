/*  zf_jobs.h — preheat jobs on the manager: the database rows (zf_jobs_store.c), the queue and
    the workers' conversation (zf_jobs.c), and the doors that create and show jobs: the REST
    API (zf_jobs_api.c: /api/v1/jobs) and Harbor's two providers (zf_jobs_harbor.c).

    A job's life, all of it in the manager's database (jobs, job_tasks):

        pending --(a worker starts it)--> running --(the worker reports the end)--> success
           ^                                 |                                   \-> failure
           +--(its worker went silent for a lease; the manager's own queue)--+
        pending | running --(cancel)--> cancelled

    The manager changes a job's state and logs one line per change ("job 7 running worker=…
    attempt=1"). Workers take jobs from a queue: the manager's own (in memory, rebuilt from
    the database at start: all-in-one, no Redis) or a Redis stream (cluster mode,
    actors/preheat/zf_job_stream.h). Either way the manager is the one that says whether a
    worker may run a job (job.start) and whether it still holds it (job.update): a worker
    silent for a lease loses the job, and no job runs on two workers at once. */
#ifndef ZF_JOBS_H_INCLUDED
#define ZF_JOBS_H_INCLUDED

#include "zf_jobs_input.h"
#include "zf_manager_internal.h"
#include "zf_msgs.h"

typedef enum {
    ZF_JOB_PENDING,
    ZF_JOB_RUNNING,
    ZF_JOB_SUCCESS,
    ZF_JOB_FAILURE,
    ZF_JOB_CANCELLED,
} zf_job_status_t;

#define ZF_JOB_STATUS_COUNT 5

const char *zf_job_status_name (zf_job_status_t state); //  "pending", …
//  ZF_JOB_STATUS_COUNT when text names no state.
zf_job_status_t zf_job_status_of (const char *text);
bool zf_job_status_final (zf_job_status_t state);

//  ---------------------------------------------------------------------------------------------
//  Rows (zf_jobs_store.c)

//  A job row as the queue needs it.
typedef struct {
    int64_t id;
    zf_job_status_t state;
    char worker[129];
    int64_t attempt;
    char queue_ref[64];
    int64_t heartbeat_at; //  ms: the last word from its worker
    int64_t created_at;
} zf_job_row_t;

//  Inserts a pending job; secrets is sealed text or NULL.
zf_status_t zf_jobs_insert (zf_db_t *db, const zf_job_input_t *input, const char *secrets,
                            const char *created_by, int64_t now, int64_t *id, zf_error_t *err);
//  ZF_E_MISSING (where "id") when there is no such job.
zf_status_t zf_jobs_row (zf_db_t *db, int64_t id, zf_job_row_t *row, zf_error_t *err);
//  Jobs in a state with ids above after_id, oldest first (at most max), for the queue at
//  start (page by page: after_id the last id of the page before) and its sweeps.
zf_status_t zf_jobs_in_state (zf_db_t *db, zf_job_status_t state, int64_t after_id,
                              zf_job_row_t *rows, size_t max, size_t *count, zf_error_t *err);
//  Counts by state, and the creation time of the oldest pending job (0: none).
zf_status_t zf_jobs_census (zf_db_t *db, int64_t counts[ZF_JOB_STATUS_COUNT],
                            int64_t *oldest_pending, zf_error_t *err);

//  The job's definition (args JSON text, sealed secrets or NULL, cluster ids JSON text), for
//  job.start. Caller frees the strings.
zf_status_t zf_jobs_definition (zf_db_t *db, int64_t id, char **args, char **secrets,
                                char **cluster_ids, zf_error_t *err);

//  State changes. Each updates updated_at; final states set finished_at and drop the sealed
//  secrets (the job no longer needs them).
zf_status_t zf_jobs_set_queued (zf_db_t *db, int64_t id, const char *queue_ref, zf_error_t *err);
zf_status_t zf_jobs_set_running (zf_db_t *db, int64_t id, const char *worker, int64_t attempt,
                                 int64_t now, zf_error_t *err);
zf_status_t zf_jobs_set_pending (zf_db_t *db, int64_t id, int64_t now, zf_error_t *err);
zf_status_t zf_jobs_set_final (zf_db_t *db, int64_t id, zf_job_status_t state, const char *error,
                               int64_t now, zf_error_t *err);
//  Records a worker's report: its tasks (upserted by job, task and host), how many tasks the
//  job has, what the images resolved to, and the heartbeat.
zf_status_t zf_jobs_record (zf_db_t *db, const zf_msg_job_update_t *update, int64_t now,
                            zf_error_t *err);

//  The hosts a job's blobs go to: active seed peers (seeds_only) or every active host with a
//  fetcher endpoint seen within seen_since, of the given clusters (none: every cluster).
//  Returns a list the caller frees with zf_jobs_targets_free.
zf_status_t zf_jobs_targets (zf_db_t *db, bool seeds_only, const int64_t *clusters,
                             size_t cluster_count, int64_t seen_since,
                             zf_rec_job_target_t **targets, size_t *count, zf_error_t *err);
void zf_jobs_targets_free (zf_rec_job_target_t *targets, size_t count);

//  JSON for the API: one job with its progress (and with blobs = per-blob, per-host tasks).
json_t *zf_jobs_get (zf_db_t *db, int64_t id, bool blobs, zf_error_t *err);
//  A page of jobs, newest first; state and type may be NULL.
json_t *zf_jobs_list (zf_db_t *db, const char *state, const char *type, int64_t page,
                      int64_t per_page, int64_t *total, zf_error_t *err);
//  Every task of a job (for Harbor's results), as rows: url, host_name, host_ip, cluster_id,
//  state, description.
zf_db_result_t *zf_jobs_tasks (zf_db_t *db, int64_t id, zf_error_t *err);

//  ---------------------------------------------------------------------------------------------
//  The queue and the workers (zf_jobs.c)

typedef struct zf_jobs_s zf_jobs_t;

//  Checks [manager] queue (redis://HOST:PORT or empty); err names the key.
bool zf_jobs_config_valid (const zf_manager_config_t *config, zf_error_t *err);

//  The manager module: routes of /api/v1/jobs and Harbor's, the workers' bus messages, the
//  queue, the lease timer, the metrics.
void zf_jobs_register (zf_rest_t *rest, zf_manager_t *manager);

//  For the doors: creates a job (state pending, queued) and logs it; *id gets its id.
zf_status_t zf_jobs_create (zf_jobs_t *self, const zf_job_input_t *input, const char *created_by,
                            int64_t *id, zf_error_t *err);
//  Cancels a pending or running job; ZF_E_INVALID when it already ended.
zf_status_t zf_jobs_cancel (zf_jobs_t *self, int64_t id, const char *by, zf_error_t *err);
zf_db_t *zf_jobs_db (zf_jobs_t *self);

//  The doors' create (zf_jobs_api.c): parses the request's body (Dragonfly's, or Harbor's legacy
//  one) and creates the job. On failure it answers the request itself (400 with the field's
//  error, or the store's failure) and returns false; else true with *id.
bool zf_jobs_create_from_request (zf_rest_request_t *request, zf_jobs_t *jobs, bool legacy,
                                  int64_t *id);

void zf_jobs_api_register (zf_rest_t *rest, zf_jobs_t *jobs);
void zf_jobs_harbor_register (zf_rest_t *rest, zf_jobs_t *jobs);

void zf_jobs_store_test (bool verbose);

#endif
