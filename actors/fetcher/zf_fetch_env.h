/*  zf_fetch_env.h — what every task of the fetcher actor shares: the actor's handles, its task
    table, and who watches tasks (the scheduler client).

    Calls go one way: the actor (zf_fetcher.c) owns tasks; a task (zf_fetch_task*.c) owns its
    piece table and its sources (zf_fetch_origin.c, zf_fetch_parents.c), which report to it
    through callbacks; the scheduler client (zf_fetch_sched.c) watches tasks through the
    observer below and changes them only through the task's public calls. */
#ifndef ZF_FETCH_ENV_H_INCLUDED
#define ZF_FETCH_ENV_H_INCLUDED

#include "zf_bus.h"
#include "zf_curl_loop.h"
#include "zf_timers.h"
#include "zf_fetcher.h"
#include "zf_metrics.h"

typedef struct zf_fetch_task_s zf_fetch_task_t;

//  What a task tells whoever chooses its parents. Called from the task's own work; an observer
//  may send bus messages but must not call back into the task from here.
typedef struct {
    //  The task waits for a schedule: parents to use, or the word to go to the origin.
    void (*task_started) (void *arg, zf_fetch_task_t *task);
    //  A piece was verified and written; from: the parent's name, NULL for the origin.
    void (*piece_stored) (void *arg, zf_fetch_task_t *task, uint64_t piece, const char *from);
    //  The task stopped using a parent: failed (unreachable, an error, wrong bytes or layout)
    //  or, with failed false, useless (connected but delivering nothing: slow, not faulty).
    void (*parent_dropped) (void *arg, zf_fetch_task_t *task, const char *parent, bool failed,
                            const char *reason);
    //  The task completed or failed.
    void (*task_ended) (void *arg, zf_fetch_task_t *task);
} zf_fetch_observer_t;

//  A task ended: complete (found complete in storage, or completed now) or failed. Called
//  once per run of a task, scheduled or not, before its requester is answered (the fetcher
//  publishes task.ended: readers of the task are told instead of asking).
typedef void (zf_fetch_end_fn) (zf_fetch_task_t *task, void *arg);

typedef struct {
    const char *name;
    const zf_fetcher_config_t *config;
    zf_bus_t *bus;
    zloop_t *loop;
    zf_timers_t *timers; //  every task's timers: a task can end inside another handler
    zf_curl_loop_t *curl;
    zhashx_t *tasks; //  task id -> zf_fetch_task_t *, owned by the actor
    uint64_t next_generation;
    const zf_fetch_observer_t *observer; //  NULL: no scheduler client
    void *observer_arg;
    bool scheduled;          //  new tasks ask the observer for parents
    zf_fetch_end_fn *on_end; //  may be NULL
    void *on_end_arg;
    zf_counter_t *source_bytes;
    zf_counter_t *parent_bytes;
    zf_counter_t *piece_retries;
    zf_counter_t *tasks_complete;
    zf_counter_t *tasks_failed;
} zf_fetch_env_t;

#endif
