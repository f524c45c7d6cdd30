/*  zf_fetch_task.h — one task's download, from storage.stat to storage.complete.

    Phases: STAT (is it complete in storage already?) -> PARENTS (only with parents or a
    scheduler: the parents' storage.stat gives the layout; with a scheduler, the task waits for
    its schedule) -> PROBE (`Range: bytes=0-0` at the origin: the length, and whether Range is
    honoured; for a task that proves its requester's access, a first range of 4 MiB whose
    answer is the proof and the length, and whose body becomes the first range transfer;
    none when the access question's answer stated the length) -> OPEN (storage.open answers
    the bitmap of finished pieces: a restarted download resumes; a fresh task, of which
    storage held nothing, goes on to RUN without waiting for that answer, and only its
    completion waits for it) -> RUN -> COMPLETING
    (storage.complete) -> COMPLETE, or FAILED at any step with error_code "source", "digest",
    "storage", "parents" or "invalid".

    In RUN the task's piece table (zf_piece_table.h) says where every piece stands; its
    parents (zf_fetch_parents.h) take the rarest pieces they hold, its origin
    (zf_fetch_origin.h) takes the pieces routed to it, in range transfers within a window of
    pieces held in memory (or one stream from origins that ignore Range). Each piece is
    checked (against the parents' digest when known) and written through storage; the whole
    content is hashed in order and checked against the task digest before anything is marked
    complete.

    Who goes to the origin. Without parents: the task itself. With parents given by the
    client: pieces no parent holds (and none may still get). With a scheduler: the one peer it
    names as the task's origin fetcher; everyone else waits for parents, and only after no
    progress for [fetcher] sched_fallback (or when the scheduler cannot be reached) takes what
    parents cannot give from the origin, each such fallback logged with its reason and counted
    (zfly_fetcher_origin_fallbacks_total).

    The task owns its sources and piece table. Bus replies find the task again through the
    fetcher's task table by id and generation, so a task replaced meanwhile ignores them. */
#ifndef ZF_FETCH_TASK_H_INCLUDED
#define ZF_FETCH_TASK_H_INCLUDED

#include "zf_fetch_env.h"
#include "zf_msgs.h"
#include "zf_task_id.h"

//  A task for a validated request (id and digest computed by zf_task_id_compute).
zf_fetch_task_t *zf_fetch_task_new (zf_fetch_env_t *env, const char *task_id, const char *digest,
                                    const zf_msg_task_fetch_t *request);
void zf_fetch_task_destroy (zf_fetch_task_t **self_p);

//  The origin stated the content's length, and that it honours Range, when it answered the
//  caller's access question (zf_fetch_access.h): a task that goes to the origin takes its
//  layout from that and sends no probe of its own. Call before zf_fetch_task_start.
void zf_fetch_task_hint_length (zf_fetch_task_t *self, uint64_t content_length);
//  The access proof of the caller a task was made for (zf_fetch_access.h): the task's origin
//  requests carry that caller's headers, so the origin's answer to the task's first request
//  (a first range, which also states the length: no probe) says whether the caller may read.
typedef enum {
    ZF_FETCH_PROOF_ALLOWED, //  the origin answered with the bytes (2xx, after any redirect)
    ZF_FETCH_PROOF_REFUSED, //  401, 403 or 404: the task fails next, holding no byte
    ZF_FETCH_PROOF_ASK,     //  the task does not take its first bytes from the origin (complete
                            //  in storage, or parents): the origin must be asked (a HEAD), and
                            //  the task takes no piece until zf_fetch_task_grant
    ZF_FETCH_PROOF_ENDED,   //  the task failed before any of these
} zf_fetch_proof_t;
//  status: the origin's HTTP status (ALLOWED, REFUSED); content_length: the length it stated
//  (ALLOWED, when it honours Range), else 0; why: words for the caller (REFUSED, ENDED). ASK may
//  come before ALLOWED or REFUSED; after one of those three, or ENDED, nothing more.
typedef void (zf_fetch_proof_fn) (zf_fetch_task_t *task, zf_fetch_proof_t proof, long status,
                                  uint64_t content_length, const char *why, void *arg);
//  The task reports its requester's access proof to fn; its first origin request is then a
//  first range of ZF_FETCH_TASK_RANGE_BYTES (zf_fetch_origin_probe). The requester's answer is the
//  caller's to give (start the task with answer NULL). Call before zf_fetch_task_start.
void zf_fetch_task_await_proof (zf_fetch_task_t *self, zf_fetch_proof_fn *fn, void *arg);
bool zf_fetch_task_failed (zf_fetch_task_t *self);
//  The origin accepted the caller the task was made for when asked (after
//  ZF_FETCH_PROOF_ASK): the task takes pieces from then on.
void zf_fetch_task_grant (zf_fetch_task_t *self);
//  The origin did not accept the caller the task was made for (why: its answer): the task
//  fails ("source") and takes nothing more from anyone.
void zf_fetch_task_abandon (zf_fetch_task_t *self, const char *why);

//  Starts the task; `answer` (may be NULL) gets task.status once storage said whether the
//  task is already complete.
void zf_fetch_task_start (zf_fetch_task_t *self, const zf_bus_return_t *answer);

//  Fills status with the task's state; strings are borrowed from the task.
void zf_fetch_task_status (zf_fetch_task_t *self, zf_msg_task_status_t *status);
bool zf_fetch_task_running (zf_fetch_task_t *self);

//  What the scheduler client reads.
const char *zf_fetch_task_id (zf_fetch_task_t *self);
uint64_t zf_fetch_task_generation (zf_fetch_task_t *self);
const char *zf_fetch_task_url (zf_fetch_task_t *self);
const char *zf_fetch_task_digest (zf_fetch_task_t *self);
const char *zf_fetch_task_tag (zf_fetch_task_t *self);
const char *zf_fetch_task_application (zf_fetch_task_t *self);
const char *zf_fetch_task_error_code (zf_fetch_task_t *self);
bool zf_fetch_task_complete (zf_fetch_task_t *self);
//  Lengths once known, else 0.
void zf_fetch_task_lengths (zf_fetch_task_t *self, uint64_t *content_length, uint64_t *piece_length,
                            uint64_t *piece_count);
//  True for a piece storage holds (verified and written).
bool zf_fetch_task_has_piece (zf_fetch_task_t *self, uint64_t piece);
//  Parents in use.
size_t zf_fetch_task_parent_count (zf_fetch_task_t *self);
//  Still waiting for its first schedule (no layout from parents yet).
bool zf_fetch_task_awaits_schedule (zf_fetch_task_t *self);
//  The scheduler named it the task's origin fetcher.
bool zf_fetch_task_is_source (zf_fetch_task_t *self);
//  When a piece last came from a parent, or a parent was added (monotonic ms).
int64_t zf_fetch_task_progress_ms (zf_fetch_task_t *self);

//  Changes a task's parent set while it runs ("storage@node"). Adding a parent asks it what
//  it has; removing one gives its pieces in flight to others. The task never restarts.
//  Returns false when the parent was already there (add) or not there (remove).
bool zf_fetch_task_add_parent (zf_fetch_task_t *self, const char *parent);
bool zf_fetch_task_remove_parent (zf_fetch_task_t *self, const char *parent);

//  piece.peek (schemas/dataplane.schema): the bytes of a piece the origin is filling, past
//  `from`, answered to ret now or once there are some (zf_fetch_peeks.h); "not_found" when
//  the task does not fill that piece from the origin.
void zf_fetch_task_peek (zf_fetch_task_t *self, const zf_bus_return_t *ret, uint64_t piece,
                         uint64_t from, uint64_t wait_ms);
//  The scheduler says: this task fetches from the origin whatever its parents cannot give,
//  now (it is the single flight). Pieces parents hold still come from them.
void zf_fetch_task_to_source (zf_fetch_task_t *self);
//  The task's scheduler is gone (none reachable, or it refused): the task keeps the parents
//  it was given and goes on as if a client had named them, taking from the origin only the
//  pieces none of them may still get (logged with why, a static string, and counted then).
void zf_fetch_task_lose_scheduler (zf_fetch_task_t *self, const char *why);
//  A scheduler answered the task again after it was lost: scheduled as before from now on.
void zf_fetch_task_regain_scheduler (zf_fetch_task_t *self, const char *scheduler);

#endif
