/*  zf_store_io.h — the storage actor's disk work, off its loop: piece writes and metadata
    commits, each on a worker thread of its own (zf_io_worker.h).

    Writes run in the order given on the writer thread, so the loop keeps answering stats,
    reads and uploads while the kernel holds a write back (dirty page throttling), and a
    task's writes keep their order (zf_store.h says why that matters when a task is removed
    and created again). Commits run on the committer thread, one batch at a time: a batch
    holds a record for every task with something its metadata does not say yet, and never
    holds a write back. Who waits for what is the caller's choice: zf_store_io_when_committed
    calls back once the task's next commit ended (durable mode waits so for piece.written,
    and there a batch begins as soon as the one before has ended; the default mode answers
    when the bytes are written, and a batch begins COMMIT_INTERVAL_MS after the last began:
    a record says every piece of its task, and written back to back they cost a task of
    4096 pieces 0.8 CPU s per GiB).

    The cost of a batch on the loop is the encoding of its records, which grows with the
    piece count; a batch begins no sooner than COMMIT_COST_SHARE times that cost after the
    last began, so encoding takes at most about an eighth of the loop even for tasks of a
    million pieces. A batch that failed is tried again after COMMIT_RETRY_MS. At stop,
    batches follow each other at once until everything is claimed. */
#ifndef ZF_STORE_IO_H_INCLUDED
#define ZF_STORE_IO_H_INCLUDED

#include "storage/zf_store.h"

typedef struct zf_store_io_s zf_store_io_t;

typedef struct {
    //  A write is done (in the loop). task: its task, or NULL if it was removed meanwhile.
    //  The write is the callee's from now on (zf_store_write_finish, _clear, and free it).
    void (*written) (void *arg, zf_store_write_t *write, zf_store_task_t *task);
    //  A batch of commits ended (pieces were claimed, or not).
    void (*committed) (void *arg);
    void *arg;
} zf_store_io_handlers_t;

//  Once a commit of the task that began after zf_store_io_when_committed ended: status ZF_OK
//  when it wrote every piece finished at the time of the call (and whatever else the task
//  said then), else the error; task NULL (status ZF_E_INVALID) when the task went away.
typedef void (zf_store_io_committed_fn) (void *arg, void *waiter, zf_store_task_t *task,
                                         zf_status_t status);

zf_store_io_t *zf_store_io_new (zf_store_t *store, const char *log_name,
                                const zf_store_io_handlers_t *handlers);
//  Waits for every job under way (zf_store_io_drain) and stops both threads.
void zf_store_io_destroy (zf_store_io_t **self_p);

void zf_store_io_attach (zf_store_io_t *self, zloop_t *loop);

//  Queues a write prepared by zf_store_write_prepare (the caller allocated it).
void zf_store_io_write (zf_store_io_t *self, zf_store_write_t *write);

//  Commits every task that needs it (zf_store_needs_commit): at once, or after the running
//  batch.
void zf_store_io_commit (zf_store_io_t *self);

//  Calls fn (arg, waiter, …) after the task's next commit (see zf_store_io_committed_fn).
void zf_store_io_when_committed (zf_store_io_t *self, zf_store_task_t *task,
                                 zf_store_io_committed_fn *fn, void *arg, void *waiter);

//  At stop, with the loop ended: waits for every write, commits every task, and answers
//  every waiter. Bounded by the disk only.
void zf_store_io_drain (zf_store_io_t *self);

//  Writes under way.
size_t zf_store_io_writes (zf_store_io_t *self);

#endif
