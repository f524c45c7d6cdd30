/*  zf_io_worker.h — a thread that runs an actor's blocking jobs one after another, in order.

    An actor's loop must keep answering while the kernel holds a write back (dirty page
    throttling), or an fsync waits for the disk: it hands such work to a worker and gets each
    job back, done, in the order given, on a socket it reads in its loop. The worker is a czmq
    actor; a job travels as a pointer over its inproc PAIR pipe, so nothing in it is copied
    (a piece's frame rides along as it is), and it belongs to the worker from submit until it
    comes back. A job is any struct whose first member is a zf_io_job_t.

        zf_io_worker_t *worker = zf_io_worker_new ("zf-writer");
        zf_io_worker_submit (worker, &job->io);              //  job->io.run = my_run
        zloop_reader (loop, zf_io_worker_sock (worker), on_done, self);
        …in on_done: while ((job = zf_io_worker_done (worker))) …
        while (zf_io_worker_outstanding (worker)) take (zf_io_worker_wait (worker));
        zf_io_worker_destroy (&worker);                      //  nothing may be outstanding */
#ifndef ZF_IO_WORKER_H_INCLUDED
#define ZF_IO_WORKER_H_INCLUDED

#include "zf_prelude.h"

typedef struct zf_io_job_s zf_io_job_t;
typedef void (zf_io_job_fn) (zf_io_job_t *job);
struct zf_io_job_s {
    zf_io_job_fn *run; //  runs on the worker's thread; must not touch the actor's state
};

typedef struct zf_io_worker_s zf_io_worker_t;

//  Starts the thread; name (at most 15 characters) is its name in ps, top and perf.
zf_io_worker_t *zf_io_worker_new (const char *name);
//  Stops the thread. Every job submitted must have been taken back first (asserted).
void zf_io_worker_destroy (zf_io_worker_t **self_p);

void zf_io_worker_submit (zf_io_worker_t *self, zf_io_job_t *job);
//  Readable when a job is done.
zsock_t *zf_io_worker_sock (zf_io_worker_t *self);
//  The next job done, or NULL if none is done yet (never blocks).
zf_io_job_t *zf_io_worker_done (zf_io_worker_t *self);
//  The next job done, waiting for it; NULL when none is outstanding.
zf_io_job_t *zf_io_worker_wait (zf_io_worker_t *self);
//  Jobs submitted and not yet taken back.
size_t zf_io_worker_outstanding (zf_io_worker_t *self);

void zf_io_worker_test (bool verbose);

#endif
