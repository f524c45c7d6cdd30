/*  zf_store_io.c — piece writes and metadata commits on worker threads (see zf_store_io.h). */
#include "storage/zf_store_io.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "storage/zf_io_worker.h"

#define COMMIT_COST_SHARE  8    //  a batch's encoding takes at most ~1/8 of the loop
#define COMMIT_RETRY_MS    1000 //  after a batch in which a commit failed
#define COMMIT_INTERVAL_MS 100  //  between batches when nobody waits for one (not durable)

//  One batch of commits: the job the committer runs.
typedef struct {
    zf_io_job_t io; //  first
    uint64_t number;
    zf_store_commit_t *commits;
    size_t count;
} batch_t;

//  Someone waiting for a task's next commit.
typedef struct {
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t generation;
    uint64_t batch; //  the batch whose end answers it
    zf_store_io_committed_fn *fn;
    void *arg, *waiter;
} waiter_t;

struct zf_store_io_s {
    zf_store_t *store;
    const char *log_name;
    zf_store_io_handlers_t handlers;
    zf_io_worker_t *writer, *committer;
    zloop_t *loop;
    uint64_t batch_number; //  of the batch running, or of the last one
    bool batch_running;
    int64_t next_batch_us; //  no batch begins before (COMMIT_COST_SHARE)
    int batch_timer;       //  -1 when none is armed
    zlistx_t *waiters;     //  waiter_t *, in the order they came
    bool draining;         //  at stop: batches follow at once, until one fails
    bool drain_failed;
};

static void s_batch_run (zf_io_job_t *job)
{
    batch_t *batch = (batch_t *) job;
    for (size_t index = 0; index < batch->count; index++)
        zf_store_commit_run (&batch->commits[index]);
}

//  Starts a batch of every task that needs a commit; false when none does.
static bool s_batch_begin (zf_store_io_t *self)
{
    int64_t start_us = zf_clock_mono_us ();
    size_t count;
    zf_store_task_t **tasks = zf_store_tasks (self->store, &count);
    batch_t *batch = zf_calloc (1, sizeof *batch);
    batch->io.run = s_batch_run;
    batch->commits = zf_calloc (count + 1, sizeof *batch->commits);
    for (size_t index = 0; index < count; index++) {
        if (!zf_store_needs_commit (tasks[index]))
            continue;
        zf_error_t err;
        if (zf_store_commit_begin (self->store, tasks[index], &batch->commits[batch->count], &err)
            == ZF_OK)
            batch->count++;
        else {
            zf_error_log (self->log_name, "task=%s commit failed: %s", tasks[index]->id,
                          err.message);
            self->next_batch_us = start_us + COMMIT_RETRY_MS * 1000;
            self->drain_failed = self->draining;
        }
    }
    zf_free (tasks);
    if (batch->count == 0) {
        zf_free (batch->commits);
        zf_free (batch);
        return false;
    }
    batch->number = ++self->batch_number;
    self->batch_running = true;
    int64_t cost_us = zf_clock_mono_us () - start_us;
    if (self->next_batch_us < start_us + COMMIT_COST_SHARE * cost_us)
        self->next_batch_us = start_us + COMMIT_COST_SHARE * cost_us;
    //  Without fsync nothing waits for a claim (piece.written is answered when the bytes are
    //  written), and a record says every piece of its task: back to back, a task of 4096
    //  pieces (160 KiB of digests and checksums) was encoded and written about a thousand
    //  times a second while it downloaded. What a kill -9 loses by waiting is at most the
    //  interval's pieces, fetched again.
    //  (At stop s_schedule begins batches at once whatever this says.)
    if (!zf_store_durable (self->store)
        && self->next_batch_us < start_us + COMMIT_INTERVAL_MS * 1000)
        self->next_batch_us = start_us + COMMIT_INTERVAL_MS * 1000;
    zf_io_worker_submit (self->committer, &batch->io);
    return true;
}

//  Answers the waiters of tasks the batch that ended held (or should have held). They are
//  taken off the list first: an answer may add new waiters.
static void s_answer_waiters (zf_store_io_t *self, const batch_t *batch)
{
    zlistx_t *ready = zlistx_new ();
    void *handle = zlistx_first (self->waiters) ? zlistx_cursor (self->waiters) : NULL;
    while (handle) {
        waiter_t *waiter = zlistx_handle_item (handle);
        void *next = zlistx_next (self->waiters) ? zlistx_cursor (self->waiters) : NULL;
        if (waiter->batch <= batch->number)
            zlistx_add_end (ready, zlistx_detach (self->waiters, handle));
        handle = next;
    }
    for (waiter_t *waiter; (waiter = zlistx_detach (ready, NULL));) {
        zf_store_task_t *task = zf_store_find (self->store, waiter->task_id);
        if (task && task->generation != waiter->generation)
            task = NULL;
        //  Not in the batch: its commit could not begin, or it had nothing left to say (what
        //  the waiter waits for was claimed already).
        zf_status_t status = !task ? ZF_E_INVALID : zf_store_needs_commit (task) ? ZF_E_IO : ZF_OK;
        for (size_t index = 0; task && index < batch->count; index++)
            if (streq (batch->commits[index].task_id, task->id))
                status = batch->commits[index].status;
        waiter->fn (waiter->arg, waiter->waiter, task, status);
        zf_free (waiter);
    }
    zlistx_destroy (&ready);
}

//  Waiters of the batch that would have begun, had anything needed a commit: answered now.
static void s_answer_idle (zf_store_io_t *self)
{
    batch_t none = {.number = self->batch_number + 1};
    s_answer_waiters (self, &none);
}

static int s_batch_timer (zloop_t *loop, int timer_id, void *arg);

//  Begins the next batch now, or arms a timer for when it may begin.
static void s_schedule (zf_store_io_t *self)
{
    if (self->batch_running || self->batch_timer >= 0 || self->drain_failed)
        return;
    int64_t wait_us = self->next_batch_us - zf_clock_mono_us ();
    if (self->draining || wait_us <= 0 || !self->loop) {
        if (!s_batch_begin (self))
            s_answer_idle (self);
    } else
        self->batch_timer =
            zloop_timer (self->loop, (size_t) ((wait_us + 999) / 1000), 1, s_batch_timer, self);
}

static int s_batch_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_store_io_t *self = arg;
    self->batch_timer = -1;
    s_schedule (self);
    return 0;
}

static void s_batch_end (zf_store_io_t *self, batch_t *batch)
{
    self->batch_running = false;
    for (size_t index = 0; index < batch->count; index++) {
        zf_store_commit_t *commit = &batch->commits[index];
        zf_store_task_t *task = zf_store_commit_task (self->store, commit);
        if (task && commit->status != ZF_OK) {
            zf_error_log (self->log_name, "task=%s commit failed: %s", commit->task_id,
                          commit->err.message);
            self->next_batch_us = zf_clock_mono_us () + COMMIT_RETRY_MS * 1000;
            self->drain_failed = self->draining;
        }
        zf_store_commit_end (self->store, task, commit);
    }
    s_answer_waiters (self, batch);
    zf_free (batch->commits);
    zf_free (batch);
    if (self->handlers.committed)
        self->handlers.committed (self->handlers.arg);
    s_schedule (self);
}

static void s_write_end (zf_store_io_t *self, zf_store_write_t *write)
{
    self->handlers.written (self->handlers.arg, write, zf_store_write_task (self->store, write));
}

static int s_on_writer (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void) loop;
    (void) sock;
    zf_store_io_t *self = arg;
    zf_io_job_t *job;
    while ((job = zf_io_worker_done (self->writer)))
        s_write_end (self, (zf_store_write_t *) job);
    zf_store_io_commit (self);
    return 0;
}

static int s_on_committer (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void) loop;
    (void) sock;
    zf_store_io_t *self = arg;
    zf_io_job_t *job;
    while ((job = zf_io_worker_done (self->committer)))
        s_batch_end (self, (batch_t *) job);
    return 0;
}

zf_store_io_t *zf_store_io_new (zf_store_t *store, const char *log_name,
                                const zf_store_io_handlers_t *handlers)
{
    ZF_ASSERT (handlers && handlers->written);
    zf_store_io_t *self = zf_calloc (1, sizeof *self);
    self->store = store;
    self->log_name = log_name;
    self->handlers = *handlers;
    self->writer = zf_io_worker_new ("zf-writer");
    self->committer = zf_io_worker_new ("zf-committer");
    self->batch_timer = -1;
    self->waiters = zlistx_new ();
    return self;
}

void zf_store_io_attach (zf_store_io_t *self, zloop_t *loop)
{
    self->loop = loop;
    zloop_reader (loop, zf_io_worker_sock (self->writer), s_on_writer, self);
    zloop_reader (loop, zf_io_worker_sock (self->committer), s_on_committer, self);
}

void zf_store_io_write (zf_store_io_t *self, zf_store_write_t *write)
{
    zf_io_worker_submit (self->writer, &write->io);
}

void zf_store_io_commit (zf_store_io_t *self)
{
    s_schedule (self);
}

void zf_store_io_when_committed (zf_store_io_t *self, zf_store_task_t *task,
                                 zf_store_io_committed_fn *fn, void *arg, void *waiter)
{
    waiter_t *entry = zf_calloc (1, sizeof *entry);
    zf_strlcpy (entry->task_id, task->id, sizeof entry->task_id);
    entry->generation = task->generation;
    //  A batch running now encoded its records already: the next one holds what is new.
    entry->batch = self->batch_number + 1;
    entry->fn = fn;
    entry->arg = arg;
    entry->waiter = waiter;
    zlistx_add_end (self->waiters, entry);
    s_schedule (self);
}

size_t zf_store_io_writes (zf_store_io_t *self)
{
    return zf_io_worker_outstanding (self->writer);
}

void zf_store_io_drain (zf_store_io_t *self)
{
    if (self->loop) {
        zloop_reader_end (self->loop, zf_io_worker_sock (self->writer));
        zloop_reader_end (self->loop, zf_io_worker_sock (self->committer));
        if (self->batch_timer >= 0)
            zloop_timer_end (self->loop, self->batch_timer);
        self->batch_timer = -1;
        self->loop = NULL;
    }
    self->draining = true; //  batches begin at once, until one fails
    for (zf_io_job_t *job; (job = zf_io_worker_wait (self->writer));)
        s_write_end (self, (zf_store_write_t *) job);
    //  The running batch, then as many as it takes to commit everything (a batch that ends
    //  begins the next one while something is left).
    s_schedule (self);
    for (zf_io_job_t *job; (job = zf_io_worker_wait (self->committer));)
        s_batch_end (self, (batch_t *) job);
    batch_t none = {.number = UINT64_MAX}; //  after a failure, whoever still waits
    s_answer_waiters (self, &none);
}

void zf_store_io_destroy (zf_store_io_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_store_io_t *self = *self_p;
    if (!self)
        return;
    zf_store_io_drain (self);
    zf_io_worker_destroy (&self->writer);
    zf_io_worker_destroy (&self->committer);
    zlistx_destroy (&self->waiters);
    zf_free (self);
    *self_p = NULL;
}
