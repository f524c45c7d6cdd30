/*  zf_io_worker.c — an actor's blocking jobs on a thread of their own (see zf_io_worker.h). */
#include "zf_io_worker.h"
#include <openssl/crypto.h>
#include <sys/prctl.h>

struct zf_io_worker_s {
    zactor_t *actor;
    size_t outstanding;
};

static void s_worker (zsock_t *pipe, void *args)
{
    prctl (PR_SET_NAME, (const char *) args, 0, 0, 0);
    zsock_signal (pipe, 0); //  args were borrowed until here
    while (true) {
        char *command = NULL;
        void *job = NULL;
        if (zsock_recv (pipe, "sp", &command, &job) != 0 || !command)
            break; //  interrupted: only the daemon's stop does that, with $TERM to follow
        bool stop = streq (command, "$TERM");
        zstr_free (&command);
        if (stop)
            break;
        ZF_ASSERT (job);
        ((zf_io_job_t *) job)->run (job);
        //  Blocks only if the actor has stopped reading while more than the pipe's
        //  high-water mark of jobs are done: then the worker waits too.
        zsock_send (pipe, "p", job);
    }
    //  Jobs hash with OpenSSL, which keeps state per thread (its error queue, 904 bytes): freed
    //  here, as the daemon's actor threads do, or its thread-exit hook may run after the
    //  process's own cleanup and LeakSanitizer reports it (seen once in integration.storage).
    OPENSSL_thread_stop ();
}

zf_io_worker_t *zf_io_worker_new (const char *name)
{
    zf_io_worker_t *self = zf_calloc (1, sizeof *self);
    self->actor = zactor_new (s_worker, (void *) name);
    ZF_ASSERT (self->actor);
    return self;
}

void zf_io_worker_destroy (zf_io_worker_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_io_worker_t *self = *self_p;
    if (!self)
        return;
    ZF_ASSERT (self->outstanding == 0); //  else jobs would be lost in the pipe
    zactor_destroy (&self->actor);
    zf_free (self);
    *self_p = NULL;
}

void zf_io_worker_submit (zf_io_worker_t *self, zf_io_job_t *job)
{
    ZF_ASSERT (job && job->run);
    ZF_ASSERT (zsock_send (self->actor, "sp", "JOB", job) == 0);
    self->outstanding++;
}

zsock_t *zf_io_worker_sock (zf_io_worker_t *self)
{
    return zactor_sock (self->actor);
}

static zf_io_job_t *s_take (zf_io_worker_t *self)
{
    void *job = NULL;
    ZF_ASSERT (zsock_recv (self->actor, "p", &job) == 0 && job);
    ZF_ASSERT (self->outstanding > 0);
    self->outstanding--;
    return job;
}

zf_io_job_t *zf_io_worker_done (zf_io_worker_t *self)
{
    if (self->outstanding == 0 || !(zsock_events (self->actor) & ZMQ_POLLIN))
        return NULL;
    return s_take (self);
}

zf_io_job_t *zf_io_worker_wait (zf_io_worker_t *self)
{
    return self->outstanding == 0 ? NULL : s_take (self);
}

size_t zf_io_worker_outstanding (zf_io_worker_t *self)
{
    return self->outstanding;
}

// ---- selftest ----------------------------------------------------------------------------------

typedef struct {
    zf_io_job_t io;
    int index;
    int *ran; //  the order jobs ran in, written by the worker
    size_t *ran_count;
} test_job_t;

static void s_test_run (zf_io_job_t *job)
{
    test_job_t *test = (test_job_t *) job;
    test->ran[(*test->ran_count)++] = test->index;
}

void zf_io_worker_test (bool verbose)
{
    printf (" * zf_io_worker: ");
    enum { JOBS = 200 };
    zf_io_worker_t *worker = zf_io_worker_new ("zf-test-worker");
    int ran[JOBS];
    size_t ran_count = 0;
    test_job_t jobs[JOBS];
    ZF_ASSERT (zf_io_worker_done (worker) == NULL && zf_io_worker_wait (worker) == NULL);
    for (int index = 0; index < JOBS; index++) {
        jobs[index] =
            (test_job_t){.io.run = s_test_run, .index = index, .ran = ran, .ran_count = &ran_count};
        zf_io_worker_submit (worker, &jobs[index].io);
    }
    ZF_ASSERT (zf_io_worker_outstanding (worker) == JOBS);
    //  Jobs come back as the very structs given, in the order given, each run once.
    zpoller_t *poller = zpoller_new (zf_io_worker_sock (worker), NULL);
    int back = 0;
    while (back < JOBS / 2) {
        ZF_ASSERT (zpoller_wait (poller, 5000) == zf_io_worker_sock (worker));
        zf_io_job_t *job;
        while ((job = zf_io_worker_done (worker)))
            ZF_ASSERT (job == &jobs[back++].io);
    }
    zpoller_destroy (&poller);
    for (zf_io_job_t *job; (job = zf_io_worker_wait (worker));)
        ZF_ASSERT (job == &jobs[back++].io);
    ZF_ASSERT (back == JOBS && zf_io_worker_outstanding (worker) == 0 && ran_count == JOBS);
    for (int index = 0; index < JOBS; index++)
        ZF_ASSERT (ran[index] == index);
    zf_io_worker_destroy (&worker);
    ZF_ASSERT (worker == NULL);
    if (verbose)
        printf ("(%d jobs in order) ", JOBS);
    printf ("OK\n");
}
