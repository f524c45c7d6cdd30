/*  zf_fetch_task.h — one task's download, from storage.stat to storage.complete.

    Phases: STAT (is it complete in storage already?) -> [PARENTS (storage.stat at each
    parent: the layout, piece digests and bitmaps; no usable parent: on to PROBE), then straight
    to OPEN] -> PROBE (`Range: bytes=0-0` at the
    origin: length, and whether Range is honoured) -> OPEN (storage.open answers the bitmap of
    finished pieces) -> RUN (missing pieces from the origin, in a window that starts at the
    first piece not yet retired; finished ones read back from storage only to feed the
    whole-content hash) -> COMPLETING (storage.complete) -> COMPLETE, or FAILED at any step
    with error_code "source", "digest", "storage" or "invalid".

    The task owns its curl transfers; bus replies find it again through the fetcher's task
    table by id and generation, so a task replaced or dropped meanwhile ignores them. */
#ifndef ZF_FETCH_TASK_H_INCLUDED
#define ZF_FETCH_TASK_H_INCLUDED

#include "zf_bus.h"
#include "zf_curl_loop.h"
#include "zf_fetcher.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include "zf_task_id.h"

typedef struct zf_fetch_task_s zf_fetch_task_t;
typedef struct zf_fetch_sched_s zf_fetch_sched_t;

//  What a task learns about its parents, for whoever chooses them (the scheduler client, when
//  it comes): a parent too slow (a request timed out), failed (dropped from the task: dead,
//  stalled, corrupt, disagreeing), or a piece that came from it.
typedef enum {
    ZF_FETCH_PARENT_SLOW,
    ZF_FETCH_PARENT_FAILED,
    ZF_FETCH_PARENT_PIECE,
} zf_fetch_parent_event_t;

typedef void (zf_fetch_parent_fn) (const char *task_id, const char *parent,
                                   zf_fetch_parent_event_t event, uint64_t piece,
                                   const char *reason, void *arg);

//  A task ended: complete (found complete in storage, or completed now) or failed. Called
//  once per run of a task, after its state changed and before its requester is answered.
typedef void (zf_fetch_end_fn) (zf_fetch_task_t *task, void *arg);

//  What every task shares: the actor's handles and its table of tasks.
typedef struct {
    const char *name;
    const zf_fetcher_config_t *config;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_curl_loop_t *curl;
    zhashx_t *tasks; //  task id -> zf_fetch_task_t *, owned
    uint64_t next_generation;
    zlistx_t *parent_calls;        //  requests to parents awaiting their callback, owned
    zf_fetch_parent_fn *on_parent; //  may be NULL: events are logged only
    void *on_parent_arg;
    zf_fetch_sched_t *sched; //  the scheduler client; NULL: no scheduler configured
    zf_fetch_end_fn *on_end; //  may be NULL
    void *on_end_arg;
    zf_counter_t *source_bytes;
    zf_counter_t *parent_bytes;
    zf_counter_t *piece_retries;
    zf_counter_t *tasks_complete;
    zf_counter_t *tasks_failed;
} zf_fetch_env_t;

//  A task for a validated request (id and digest computed by zf_task_id_compute).
zf_fetch_task_t *zf_fetch_task_new (zf_fetch_env_t *env, const char *task_id, const char *digest,
                                    const zf_msg_task_fetch_t *request);
void zf_fetch_task_destroy (zf_fetch_task_t **self_p);

//  Starts the task; `answer` (may be NULL) gets task.status once storage said whether the
//  task is already complete.
void zf_fetch_task_start (zf_fetch_task_t *self, const zf_bus_return_t *answer);

//  Fills status with the task's state; strings are borrowed from the task.
void zf_fetch_task_status (zf_fetch_task_t *self, zf_msg_task_status_t *status);

bool zf_fetch_task_running (zf_fetch_task_t *self);

//  Changes a task's parent set while it runs ("storage@node"). Adding a parent asks it what
//  it has; removing one moves its requests to other parents or the origin. The task never
//  restarts. Returns false when the parent was already there (add) or not there (remove).
bool zf_fetch_task_add_parent (zf_fetch_task_t *self, const char *parent);
bool zf_fetch_task_remove_parent (zf_fetch_task_t *self, const char *parent);

//  The scheduler (or the lack of one) says: this task takes from the origin whatever its
//  parents cannot give, now. Pieces parents hold still come from them.
void zf_fetch_task_to_source (zf_fetch_task_t *self);

//  The curl loop's done callback (easy_private is the task's transfer).
void zf_fetch_task_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg);

#endif
