/*  zf_fetch_sched.c — the scheduler client: announce, register, report, reschedule, fail over.

    One record per scheduled task (sched_task_t), keyed by task id; the task itself is looked
    up again by id and generation whenever it is needed, so a task replaced or dropped
    meanwhile is never touched. One schedule request (register, parent.failed, reschedule) is
    in flight per task at a time; what happens meanwhile (another failed parent, a reschedule
    flag) waits in the record and goes next. Reports are fire-and-forget batches whose acks
    may ask for a reschedule. */
#include "zf_fetch_sched.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_sched_ring.h"
#include <sys/random.h>

#define SCHEDULERS_MAX     16
#define TICK_MS            100
#define REPORT_INTERVAL_MS 100  //  a batch of finished pieces waits at most this long
#define REPORT_BATCH       64   //  or until it has this many
#define REPORT_MAX         4096 //  pieces in one piece.report (the schema's bound)
#define WAIT_MS            1000 //  long poll of a register
//  How long a scheduler may stay unreachable (not connected, or silent to the connection's
//  heartbeats) before a request to it fails and it is marked dead. A scheduler that is
//  connected but slow to answer is waited for: behind a slow or full link (a 20 Mbit/s
//  peer's downlink queued behind its parents' pieces) a piece.report took over 3 s, and
//  marking the scheduler dead for it sent the task to the origin (docs/benchmarks.md).
#define SCHEDULE_TIMEOUT_MS  5000 //  register (with its long poll), parent.failed, reschedule
#define REPORT_TIMEOUT_MS    3000 //  piece.report, peer.finished, peer.failed, host.announce
#define HEARTBEAT_DEFAULT_MS 5000
#define HEARTBEAT_MIN_MS     500
//  A dead scheduler is announced to this often (each announce patient for REPORT_TIMEOUT_MS),
//  so one is always waiting when it comes back: the bus sends it again as the link comes up,
//  and the tasks that went on without it register within a moment of its restart instead of
//  up to a heartbeat later.
#define DEAD_PROBE_MS 1000
#define RETRY_MIN_MS  100
#define PARENTS_KEPT  32 //  storage name -> host id, of parents given to a task
//  A stopping daemon waits this long at most for its schedulers to hear host.leave: the stop
//  of a whole cluster, schedulers first, must not hang on them.
#define LEAVE_TIMEOUT_MS 1000
#define FAILED_MAX       16 //  parents to report or exclude, per task
#define HOST_ID_MAX      128
#define TOP_UP_MS        1000 //  with fewer parents than TOP_UP_PARENTS, ask again this often
//  Nothing from any parent this long: ask again (every so often while it lasts). The task may
//  wait for pieces nobody will bring: its origin fetcher failed or died, and the scheduler
//  flagged its children for a new schedule, which they hear of only with the ack of a report
//  they no longer send. When the origin died mid-download every peer waited forever.
#define STALL_MS 3000
//  The scheduler's most (ZF_SCHED_PARENTS_MAX; it caps at its own `parents`): with 4, children
//  stopped asking once they had the seed and three peers, and the peers picked first served
//  most of the swarm while others idled (docs/benchmarks.md "Swarm").
#define TOP_UP_PARENTS 8

typedef struct {
    char storage[ZF_NAME_MAX + 1];
    char host_id[HOST_ID_MAX + 1];
} given_t;

typedef struct {
    char task_id[ZF_TASK_ID_SIZE + 1];
    uint64_t generation;
    char scheduler[ZF_NAME_MAX + 1]; //  "" until chosen
    bool registered;                 //  the scheduler knows this peer (answered a register)
    bool asking;                     //  a schedule request is in flight
    bool reschedule;                 //  an ack said the parent set changed under us
    bool full_report;                //  report every stored piece once registered
    bool lost;                       //  no scheduler was reachable: on its own until one is
    bool resumed; //  registers again, at a scheduler that may know nothing of it (peer.register)
    int64_t register_at_ms; //  after "wait": register again from then on
    int64_t top_up_at_ms;   //  next peer.reschedule while parents are few
    int64_t stall_at_ms;    //  next peer.reschedule while nothing comes
    given_t given[PARENTS_KEPT];
    size_t given_count;
    char failed[FAILED_MAX][HOST_ID_MAX + 1]; //  to report with parent.failed
    const char *failed_reason[FAILED_MAX];    //  "failed" or "slow"
    size_t failed_count;
    char exclude[FAILED_MAX][HOST_ID_MAX + 1]; //  not to be given again (peer.reschedule)
    size_t exclude_count;
    uint64_t batch[REPORT_BATCH];
    size_t batch_count;
    char batch_from[HOST_ID_MAX + 1];
    int64_t batch_since_ms;
} sched_task_t;

typedef enum {
    CALL_ANNOUNCE,
    CALL_SCHEDULE, //  register, parent.failed, reschedule: answered with peer.schedule
    CALL_REPORT,
    CALL_END, //  peer.finished, peer.failed
} call_kind_t;

//  A request in flight: freed by its callback, or by the bus when it ends with the request
//  unanswered (zf_bus_call_t.drop).
typedef struct {
    zf_fetch_sched_t *self;
    call_kind_t kind;
    char task_id[ZF_TASK_ID_SIZE + 1];
    uint64_t generation;
    char scheduler[ZF_NAME_MAX + 1];
} call_t;

struct zf_fetch_sched_s {
    zf_fetch_env_t *env;
    zf_node_t *bus_node; //  routes learned from schedules, endpoints to announce
    bool from_join;      //  the scheduler list follows the join actor's view of the cluster
    zf_counter_t *fallbacks;
    zf_sched_ring_t *ring;
    char *names[SCHEDULERS_MAX];
    bool dead[SCHEDULERS_MAX];
    size_t count;
    char host_id[HOST_ID_MAX + 1];
    uint64_t incarnation; //  drawn at start: a scheduler tells a restart by it
    char storage[ZF_NAME_MAX + 1];
    char fetcher[ZF_NAME_MAX + 1];
    char node[ZF_NAME_MAX + 1];
    zhashx_t *tasks; //  task id -> sched_task_t, owned
    int timer_id;
    int64_t announce_at_ms;
    int64_t probe_at_ms; //  next announce to the dead schedulers
    int64_t interval_ms;
    bool leaving; //  host.leave sent: nothing more is announced or asked
    size_t leaves_unanswered;
};

static void s_kick (zf_fetch_sched_t *self, sched_task_t *record);

//  --- schedulers ------------------------------------------------------------------------------

static ssize_t s_scheduler_index (zf_fetch_sched_t *self, const char *name)
{
    for (size_t index = 0; index < self->count; index++)
        if (streq (self->names[index], name))
            return (ssize_t) index;
    return -1;
}

//  The task registers again at its next tick, at the scheduler the ring names then, which may
//  know nothing of it: it says so (peer.register "resumed") and reports all it holds.
static void s_register_anew (sched_task_t *record)
{
    record->scheduler[0] = '\0';
    record->resumed = true;
    record->registered = false;
    record->asking = false;
    record->full_report = true;
    record->register_at_ms = 0;
}

static void s_set_alive (zf_fetch_sched_t *self, const char *name, bool alive, const char *why)
{
    ssize_t index = s_scheduler_index (self, name);
    if (index < 0 || self->dead[index] == !alive)
        return;
    self->dead[index] = !alive;
    zf_sched_ring_set_alive (self->ring, name, alive);
    if (alive) {
        zf_notice (self->env->name, "scheduler alive scheduler=%s", name);
        return;
    }
    zf_warning (self->env->name, "scheduler dead scheduler=%s: %s", name, why);
    //  Its tasks move to the next scheduler on the ring, with what they have.
    for (sched_task_t *record = zhashx_first (self->tasks); record;
         record = zhashx_next (self->tasks))
        if (streq (record->scheduler, name))
            s_register_anew (record);
}

//  A scheduler answered (an announce): tasks that went on without any scheduler register
//  again, with all they hold, at their next tick. A scheduler restarted (an upgrade, a crash
//  and systemd) or one that joined the cluster learns the running downloads, and their
//  children and parents are scheduled as before.
static void s_resume_lost (zf_fetch_sched_t *self)
{
    for (sched_task_t *record = zhashx_first (self->tasks); record;
         record = zhashx_next (self->tasks))
        if (record->lost) {
            record->lost = false;
            s_register_anew (record);
        }
}

//  --- the records ----------------------------------------------------------------------------

static zf_fetch_task_t *s_task_of (zf_fetch_sched_t *self, sched_task_t *record)
{
    zf_fetch_task_t *task = zhashx_lookup (self->env->tasks, record->task_id);
    return task && zf_fetch_task_generation (task) == record->generation
                   && zf_fetch_task_running (task)
               ? task
               : NULL;
}

static sched_task_t *s_record_of (zf_fetch_sched_t *self, const char *task_id, uint64_t generation)
{
    sched_task_t *record = zhashx_lookup (self->tasks, task_id);
    return record && record->generation == generation ? record : NULL;
}

static void s_destroy_record (void **item)
{
    zf_free (*item);
    *item = NULL;
}

//  The host id of a parent the scheduler gave as storage name; else the node part of it.
static const char *s_host_of (sched_task_t *record, const char *storage)
{
    for (size_t index = 0; index < record->given_count; index++)
        if (streq (record->given[index].storage, storage))
            return record->given[index].host_id;
    const char *at = strchr (storage, '@');
    return at ? at + 1 : storage;
}

static bool s_listed (char list[][HOST_ID_MAX + 1], size_t count, const char *host_id)
{
    for (size_t index = 0; index < count; index++)
        if (streq (list[index], host_id))
            return true;
    return false;
}

//  --- requests -------------------------------------------------------------------------------

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg);

static bool s_send (zf_fetch_sched_t *self, call_kind_t kind, sched_task_t *record,
                    const char *scheduler, const zf_msg_desc_t *desc, const void *body,
                    int64_t timeout_ms)
{
    if (self->leaving) //  the host left: a register or report would announce it again
        return false;
    call_t *call = zf_calloc (1, sizeof *call);
    call->self = self;
    call->kind = kind;
    if (record) {
        zf_strlcpy (call->task_id, record->task_id, sizeof call->task_id);
        call->generation = record->generation;
    }
    zf_strlcpy (call->scheduler, scheduler, sizeof call->scheduler);
    zf_error_t err;
    zf_bus_call_t deadline = ZF_BUS_CALL_PATIENT; //  slow is not dead (SCHEDULE_TIMEOUT_MS)
    deadline.timeout_ms = timeout_ms;
    deadline.drop = zf_bus_drop_free;
    if (zf_bus_request (self->env->bus, scheduler, desc, body, NULL, deadline, s_on_reply, call,
                        &err)
        != ZF_OK) {
        zf_free (call);
        zf_warning (self->env->name, "%s to %s not sent: %s", desc->type, scheduler, err.message);
        s_set_alive (self, scheduler, false, err.message);
        return false;
    }
    return true;
}

static void s_announce (zf_fetch_sched_t *self, const char *scheduler)
{
    //  Where other nodes reach our storage and fetcher (their tcp:// binds, as zf_bus_new
    //  recorded them): the scheduler hands the storage one to children with our key.
    char storage_actor[ZF_NAME_MAX + 1], storage_endpoint[ZF_ENDPOINT_MAX];
    char fetcher_endpoint[ZF_ENDPOINT_MAX];
    zf_strlcpy (storage_actor, self->storage, sizeof storage_actor);
    storage_actor[strcspn (storage_actor, "@")] = '\0';
    zf_node_advertised (self->bus_node, storage_actor, storage_endpoint, sizeof storage_endpoint);
    zf_node_advertised (self->bus_node, self->env->name, fetcher_endpoint, sizeof fetcher_endpoint);
    zf_msg_host_announce_t body = {.storage_endpoint = storage_endpoint,
                                   .fetcher_endpoint = fetcher_endpoint,
                                   .host_id = self->host_id,
                                   .node = self->node,
                                   .storage = self->storage,
                                   .fetcher = self->fetcher,
                                   .type = self->env->config->seed ? "seed" : "normal",
                                   .idc = self->env->config->idc,
                                   .location = self->env->config->location,
                                   .upload_slots = (uint64_t) self->env->config->upload_slots,
                                   .upload_bandwidth = self->env->config->upload_bandwidth,
                                   .download_bandwidth = self->env->config->download_bandwidth,
                                   .incarnation = self->incarnation};
    s_send (self, CALL_ANNOUNCE, NULL, scheduler, &zf_msg_host_announce, &body, REPORT_TIMEOUT_MS);
}

static void s_announce_all (zf_fetch_sched_t *self)
{
    for (size_t index = 0; index < self->count; index++)
        s_announce (self, self->names[index]);
    self->announce_at_ms = zf_clock_mono_ms () + self->interval_ms;
}

static void s_send_report (zf_fetch_sched_t *self, sched_task_t *record, zf_fetch_task_t *task,
                           uint64_t *pieces, size_t count, const char *from)
{
    zf_msg_piece_report_t body = {.task_id = record->task_id,
                                  .host_id = self->host_id,
                                  .pieces = {.items = pieces, .count = count},
                                  .from = (char *) from};
    zf_fetch_task_lengths (task, &body.content_length, &body.piece_length, &body.piece_count);
    s_send (self, CALL_REPORT, record, record->scheduler, &zf_msg_piece_report, &body,
            REPORT_TIMEOUT_MS);
}

static void s_flush (zf_fetch_sched_t *self, sched_task_t *record)
{
    if (record->batch_count == 0)
        return;
    zf_fetch_task_t *task = zhashx_lookup (self->env->tasks, record->task_id);
    //  Unregistered, the batch is dropped: the full report after registering covers it.
    if (task && record->registered && *record->scheduler)
        s_send_report (self, record, task, record->batch, record->batch_count, record->batch_from);
    record->batch_count = 0;
}

//  Every stored piece, after (re)registering: a new scheduler knows nothing of them.
static void s_report_all (zf_fetch_sched_t *self, sched_task_t *record, zf_fetch_task_t *task)
{
    uint64_t content_length, piece_length, piece_count;
    zf_fetch_task_lengths (task, &content_length, &piece_length, &piece_count);
    if (piece_count == 0)
        return; //  once the layout is known (s_kick)
    record->full_report = false;
    //  The batch first, with the host its pieces came from (what the scheduler counts as
    //  that host's upload): the full report names none, and repeats them harmlessly.
    s_flush (self, record);
    uint64_t *pieces = zf_calloc (REPORT_MAX, sizeof (uint64_t));
    size_t count = 0;
    for (uint64_t index = 0; index < piece_count; index++) {
        if (zf_fetch_task_has_piece (task, index))
            pieces[count++] = index;
        if (count == REPORT_MAX || (count > 0 && index + 1 == piece_count)) {
            s_send_report (self, record, task, pieces, count, "");
            count = 0;
        }
    }
    zf_free (pieces);
}

static void s_register (zf_fetch_sched_t *self, sched_task_t *record, zf_fetch_task_t *task)
{
    zf_msg_peer_register_t body = {.task_id = record->task_id,
                                   .host_id = self->host_id,
                                   .url = (char *) zf_fetch_task_url (task),
                                   .digest = (char *) zf_fetch_task_digest (task),
                                   .tag = (char *) zf_fetch_task_tag (task),
                                   .application = (char *) zf_fetch_task_application (task),
                                   .wait_ms = WAIT_MS,
                                   .resumed = record->resumed,
                                   .source = zf_fetch_task_is_source (task)};
    zf_fetch_task_lengths (task, &body.content_length, &body.piece_length, &body.piece_count);
    record->asking = s_send (self, CALL_SCHEDULE, record, record->scheduler, &zf_msg_peer_register,
                             &body, SCHEDULE_TIMEOUT_MS);
}

//  No scheduler can help this task: it goes on with the parents it has, and the origin for
//  what none of them may still get. A scheduler that refused it is not asked again; when none
//  was reachable the record stays, lost, until one answers an announce (s_resume_lost).
static void s_give_up (zf_fetch_sched_t *self, sched_task_t *record, zf_fetch_task_t *task,
                       const char *why, bool for_good)
{
    zf_counter_add (self->fallbacks, 1);
    if (for_good)
        zhashx_delete (self->tasks, record->task_id);
    else
        record->lost = true;
    zf_fetch_task_lose_scheduler (task, why);
}

//  Sends what the task needs from its scheduler next, if nothing is in flight.
static void s_kick (zf_fetch_sched_t *self, sched_task_t *record)
{
    zf_fetch_task_t *task = s_task_of (self, record);
    if (!task || record->asking || record->lost)
        return;
    if (!*record->scheduler) {
        const char *owner = zf_sched_ring_lookup (self->ring, record->task_id);
        if (!owner) {
            s_give_up (self, record, task, "no scheduler reachable", false);
            return;
        }
        zf_strlcpy (record->scheduler, owner, sizeof record->scheduler);
        zf_info (self->env->name, "task scheduler task=%.16s scheduler=%s", record->task_id, owner);
    }
    if (!record->registered) {
        if (record->register_at_ms <= zf_clock_mono_ms ())
            s_register (self, record, task);
        return;
    }
    if (record->full_report) //  once registered and the layout is known
        s_report_all (self, record, task);
    if (record->failed_count > 0) {
        zf_msg_parent_failed_t body = {.task_id = record->task_id,
                                       .host_id = self->host_id,
                                       .parent = record->failed[0],
                                       .reason = (char *) record->failed_reason[0]};
        record->asking = s_send (self, CALL_SCHEDULE, record, record->scheduler,
                                 &zf_msg_parent_failed, &body, SCHEDULE_TIMEOUT_MS);
        memmove (record->failed[0], record->failed[1],
                 (record->failed_count - 1) * sizeof record->failed[0]);
        memmove (&record->failed_reason[0], &record->failed_reason[1],
                 (record->failed_count - 1) * sizeof record->failed_reason[0]);
        record->failed_count--;
        return;
    }
    int64_t now = zf_clock_mono_ms ();
    //  Early on only the seed has pieces; peers that have some since are worth asking for.
    if (!record->reschedule && !zf_fetch_task_is_source (task)
        && zf_fetch_task_parent_count (task) < TOP_UP_PARENTS && now >= record->top_up_at_ms)
        record->reschedule = true;
    if (!record->reschedule && !zf_fetch_task_is_source (task)
        && now - zf_fetch_task_progress_ms (task) >= STALL_MS && now >= record->stall_at_ms) {
        record->reschedule = true;
        record->stall_at_ms = now + STALL_MS;
    }
    if (record->reschedule) {
        record->reschedule = false;
        record->top_up_at_ms = now + TOP_UP_MS;
        char *exclude[FAILED_MAX];
        for (size_t index = 0; index < record->exclude_count; index++)
            exclude[index] = record->exclude[index];
        zf_msg_peer_reschedule_t body = {
            .task_id = record->task_id,
            .host_id = self->host_id,
            .exclude = {.items = exclude, .count = record->exclude_count}};
        record->asking = s_send (self, CALL_SCHEDULE, record, record->scheduler,
                                 &zf_msg_peer_reschedule, &body, SCHEDULE_TIMEOUT_MS);
    }
}

//  --- answers --------------------------------------------------------------------------------

static void s_apply_parents (zf_fetch_sched_t *self, sched_task_t *record, zf_fetch_task_t *task,
                             const zf_msg_peer_schedule_t *schedule)
{
    const zf_rec_sched_parent_t *parents = schedule->parents.items;
    //  The complete set from now on: drop those no longer in it.
    for (size_t index = 0; index < record->given_count;) {
        bool kept = false;
        for (size_t step = 0; step < schedule->parents.count && !kept; step++)
            kept = streq (parents[step].storage, record->given[index].storage);
        if (kept) {
            index++;
            continue;
        }
        zf_fetch_task_remove_parent (task, record->given[index].storage);
        if (!zf_fetch_task_running (task))
            return;
        record->given[index] = record->given[--record->given_count];
    }
    for (size_t index = 0; index < schedule->parents.count; index++) {
        const zf_rec_sched_parent_t *parent = &parents[index];
        if (!strchr (parent->storage, '@'))
            continue; //  not a name this node could resolve
        bool known = false;
        for (size_t step = 0; step < record->given_count && !known; step++)
            known = streq (record->given[step].storage, parent->storage);
        if (!known && record->given_count < PARENTS_KEPT) {
            given_t *given = &record->given[record->given_count++];
            zf_strlcpy (given->storage, parent->storage, sizeof given->storage);
            zf_strlcpy (given->host_id, parent->host_id, sizeof given->host_id);
        }
        //  The scheduler says where the parent is and which key it proved: this node needs
        //  no [endpoints] line for it. (A name the INI maps keeps the INI's route.)
        if (*parent->endpoint && *parent->key)
            zf_node_learn_route (self->bus_node, parent->storage, parent->endpoint, NULL,
                                 parent->key, NULL);
        zf_fetch_task_add_parent (task, parent->storage);
        if (!zf_fetch_task_running (task))
            return;
    }
}

static void s_on_schedule (zf_fetch_sched_t *self, sched_task_t *record, zf_fetch_task_t *task,
                           const zf_msg_peer_schedule_t *schedule)
{
    bool first = !record->registered;
    zf_debug (self->env->name, "schedule task=%.16s decision=%s parents=%zu", record->task_id,
              schedule->decision, schedule->parents.count);
    if (streq (schedule->decision, "wait")) {
        record->registered = false;
        int64_t retry = (int64_t) schedule->retry_ms;
        record->register_at_ms =
            zf_clock_mono_ms () + (retry > RETRY_MIN_MS ? retry : RETRY_MIN_MS);
        //  A resumed peer waits while its task's origin fetcher finds the scheduler again;
        //  what it holds is told now, so that others are given it as a parent meanwhile.
        //  Told again once registered, with what came in between.
        if (record->resumed && record->full_report) {
            s_report_all (self, record, task);
            record->full_report = true;
        }
        return;
    }
    record->registered = true;
    if (first)
        record->top_up_at_ms = zf_clock_mono_ms () + TOP_UP_MS;
    if (record->resumed) {
        record->resumed = false;
        zf_fetch_task_regain_scheduler (task, record->scheduler);
    }
    if (streq (schedule->decision, "source")) {
        zf_info (self->env->name, "task is the origin fetcher task=%.16s scheduler=%s",
                 record->task_id, record->scheduler);
        zf_fetch_task_to_source (task);
    } else if (streq (schedule->decision, "parents"))
        s_apply_parents (self, record, task, schedule);
    else
        zf_warning (self->env->name, "schedule task=%.16s: unknown decision '%s'", record->task_id,
                    schedule->decision);
    //  What it holds goes from s_kick, which runs next, as soon as the layout is known.
}

static void s_on_reply (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                        const zf_error_t *err, void *arg)
{
    (void) bus;
    call_t *call = arg;
    zf_fetch_sched_t *self = call->self;
    call_kind_t kind = call->kind;
    char scheduler[ZF_NAME_MAX + 1], task_id[ZF_TASK_ID_SIZE + 1];
    zf_strlcpy (scheduler, call->scheduler, sizeof scheduler);
    zf_strlcpy (task_id, call->task_id, sizeof task_id);
    sched_task_t *record =
        kind == CALL_ANNOUNCE ? NULL : s_record_of (self, call->task_id, call->generation);
    zf_free (call);
    const char *reason = err && *err->message ? err->message : zf_status_name (status);

    if (status == ZF_E_TIMEOUT || status == ZF_E_UNREACHABLE || status == ZF_E_OVERLOAD) {
        s_set_alive (self, scheduler, false, reason); //  its tasks register elsewhere
        if (record)
            s_kick (self, record);
        return;
    }
    if (kind == CALL_ANNOUNCE) {
        if (status != ZF_OK) {
            zf_warning (self->env->name, "host.announce to %s refused: %s", scheduler, reason);
            return;
        }
        s_set_alive (self, scheduler, true, NULL);
        s_resume_lost (self);
        const zf_msg_host_announced_t *announced = reply->env.body;
        int64_t interval = (int64_t) announced->interval_ms;
        if (interval >= HEARTBEAT_MIN_MS && interval < self->interval_ms)
            self->interval_ms = interval;
        return;
    }
    if (!record || !streq (record->scheduler, scheduler))
        return; //  the task ended or moved to another scheduler meanwhile
    if (kind == CALL_SCHEDULE)
        record->asking = false;
    zf_fetch_task_t *task = s_task_of (self, record);
    if (zf_bus_error_code (status, reply) == ZF_CODE_NOT_FOUND) {
        //  The scheduler does not know this host or peer (it restarted, or expired us):
        //  announce again, register again, report everything.
        zf_info (self->env->name, "scheduler forgot us task=%.16s scheduler=%s: %s", task_id,
                 scheduler, reason);
        s_announce (self, scheduler);
        record->registered = false;
        record->resumed = true;
        record->full_report = true;
        record->register_at_ms = zf_clock_mono_ms () + RETRY_MIN_MS;
        return;
    }
    if (status != ZF_OK) {
        zf_warning (self->env->name, "scheduler %s refused a request task=%.16s: %s", scheduler,
                    task_id, reason);
        //  Nothing it says can be relied on: not asked again for this task.
        if (kind == CALL_SCHEDULE && task)
            s_give_up (self, record, task, "scheduler refused", true);
        return;
    }
    if (!task)
        return;
    uint64_t generation = record->generation;
    if (kind == CALL_SCHEDULE && streq (reply->env.type, ZF_MSG_PEER_SCHEDULE)) {
        s_on_schedule (self, record, task, reply->env.body);
        record = s_record_of (self, task_id, generation); //  the task may have ended meanwhile
        if (!record)
            return;
    } else if (kind == CALL_REPORT && streq (reply->env.type, ZF_MSG_PEER_ACK)) {
        const zf_msg_peer_ack_t *ack = reply->env.body;
        if (ack->reschedule)
            record->reschedule = true;
    }
    s_kick (self, record);
}

//  --- what tasks tell (zf_fetch_observer_t) ----------------------------------------------------

static void s_task_started (void *arg, zf_fetch_task_t *task)
{
    zf_fetch_sched_t *self = arg;
    sched_task_t *record = zf_calloc (1, sizeof *record);
    zf_strlcpy (record->task_id, zf_fetch_task_id (task), sizeof record->task_id);
    record->generation = zf_fetch_task_generation (task);
    //  A task may start with pieces in the cache (the daemon restarted, the client asks
    //  again): a scheduler that knew them forgot them with the old process.
    record->full_report = true;
    zhashx_update (self->tasks, record->task_id, record);
    s_kick (self, record);
}

static void s_piece_stored (void *arg, zf_fetch_task_t *task, uint64_t piece, const char *from)
{
    zf_fetch_sched_t *self = arg;
    sched_task_t *record =
        s_record_of (self, zf_fetch_task_id (task), zf_fetch_task_generation (task));
    if (!record)
        return;
    const char *from_host = from ? s_host_of (record, from) : "source";
    if (record->batch_count > 0 && !streq (record->batch_from, from_host))
        s_flush (self, record);
    if (record->batch_count == 0) {
        zf_strlcpy (record->batch_from, from_host, sizeof record->batch_from);
        record->batch_since_ms = zf_clock_mono_ms ();
    }
    record->batch[record->batch_count++] = piece;
    if (record->batch_count == REPORT_BATCH)
        s_flush (self, record);
}

static void s_task_ended (void *arg, zf_fetch_task_t *task)
{
    zf_fetch_sched_t *self = arg;
    sched_task_t *record =
        s_record_of (self, zf_fetch_task_id (task), zf_fetch_task_generation (task));
    if (!record)
        return;
    s_flush (self, record);
    if (record->registered && *record->scheduler) {
        if (zf_fetch_task_complete (task)) {
            zf_msg_peer_finished_t body = {.task_id = record->task_id, .host_id = self->host_id};
            s_send (self, CALL_END, record, record->scheduler, &zf_msg_peer_finished, &body,
                    REPORT_TIMEOUT_MS);
        } else {
            zf_msg_peer_failed_t body = {.task_id = record->task_id,
                                         .host_id = self->host_id,
                                         .reason = (char *) zf_fetch_task_error_code (task)};
            s_send (self, CALL_END, record, record->scheduler, &zf_msg_peer_failed, &body,
                    REPORT_TIMEOUT_MS);
        }
    }
    zhashx_delete (self->tasks, record->task_id);
}

//  A dropped parent is reported (parent.failed: "failed" for its faults, "slow" when it was
//  only useless to us; the scheduler counts only faults against a host) and not asked for
//  again. Sent from the tick or the next answer, not from here.
static void s_parent_dropped (void *arg, zf_fetch_task_t *task, const char *parent, bool failed,
                              const char *reason)
{
    (void) reason;
    zf_fetch_sched_t *self = arg;
    sched_task_t *record =
        s_record_of (self, zf_fetch_task_id (task), zf_fetch_task_generation (task));
    if (!record)
        return;
    const char *host_id = s_host_of (record, parent);
    if (!s_listed (record->failed, record->failed_count, host_id)
        && record->failed_count < FAILED_MAX) {
        record->failed_reason[record->failed_count] = failed ? "failed" : "slow";
        zf_strlcpy (record->failed[record->failed_count++], host_id, HOST_ID_MAX + 1);
    }
    if (!s_listed (record->exclude, record->exclude_count, host_id)
        && record->exclude_count < FAILED_MAX)
        zf_strlcpy (record->exclude[record->exclude_count++], host_id, HOST_ID_MAX + 1);
}

static const zf_fetch_observer_t s_observer = {
    .task_started = s_task_started,
    .piece_stored = s_piece_stored,
    .parent_dropped = s_parent_dropped,
    .task_ended = s_task_ended,
};

//  --- the clock --------------------------------------------------------------------------------

static int s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_fetch_sched_t *self = arg;
    if (self->leaving)
        return 0;
    int64_t now = zf_clock_mono_ms ();
    if (now >= self->announce_at_ms)
        s_announce_all (self);
    else if (now >= self->probe_at_ms) {
        for (size_t index = 0; index < self->count; index++)
            if (self->dead[index])
                s_announce (self, self->names[index]);
        self->probe_at_ms = now + DEAD_PROBE_MS;
    }
    //  Keys first: a kick may give a task up and delete its record.
    zlist_t *keys = zlist_new ();
    zlist_autofree (keys);
    for (sched_task_t *record = zhashx_first (self->tasks); record;
         record = zhashx_next (self->tasks))
        zlist_append (keys, (void *) record->task_id);
    for (const char *key = zlist_first (keys); key; key = zlist_next (keys)) {
        sched_task_t *record = zhashx_lookup (self->tasks, key);
        if (!record)
            continue;
        zf_fetch_task_t *task = s_task_of (self, record);
        if (!task) {
            zhashx_delete (self->tasks, key);
            continue;
        }
        if (record->batch_count > 0 && now - record->batch_since_ms >= REPORT_INTERVAL_MS)
            s_flush (self, record);
        s_kick (self, record);
    }
    zlist_destroy (&keys);
    return 0;
}

//  --- schedulers named by the manager ------------------------------------------------------------

//  With no [fetcher] schedulers and a join actor in this process, the ring follows the
//  cluster's schedulers as the manager names them (join.view): one that joins is announced to
//  and takes its share of new tasks; one that leaves (or stops keeping alive) hands its tasks
//  to the next on the ring, as a dead one does. No restart, no INI change.

static void s_scheduler_add (zf_fetch_sched_t *self, const char *name)
{
    if (s_scheduler_index (self, name) >= 0 || self->count == SCHEDULERS_MAX)
        return;
    self->names[self->count] = zf_strdup (name);
    self->dead[self->count] = false;
    self->count++;
    zf_sched_ring_add (self->ring, name);
    zf_notice (self->env->name, "scheduler joined the ring scheduler=%s schedulers=%zu", name,
               self->count);
    s_announce (self, name);
}

static void s_scheduler_remove (zf_fetch_sched_t *self, size_t index)
{
    char *name = self->names[index];
    s_set_alive (self, name, false, "left the cluster"); //  its tasks move on
    zf_sched_ring_remove (self->ring, name);
    memmove (&self->names[index], &self->names[index + 1],
             (self->count - index - 1) * sizeof self->names[0]);
    memmove (&self->dead[index], &self->dead[index + 1],
             (self->count - index - 1) * sizeof self->dead[0]);
    self->count--;
    zf_notice (self->env->name, "scheduler left the ring scheduler=%s schedulers=%zu", name,
               self->count);
    zf_free (name);
}

static void s_on_view (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    zf_fetch_sched_t *self = arg;
    const zf_msg_join_view_t *view = event->env.body;
    char **names = view->schedulers.items;
    for (size_t index = 0; index < self->count;) {
        bool listed = false;
        for (size_t step = 0; step < view->schedulers.count && !listed; step++)
            listed = streq (names[step], self->names[index]);
        if (listed)
            index++;
        else
            s_scheduler_remove (self, index);
    }
    for (size_t index = 0; index < view->schedulers.count; index++)
        s_scheduler_add (self, names[index]);
}

static bool s_join_runs_here (zf_node_t *node)
{
    zf_route_t route;
    return zf_node_resolve (node, "join", &route, NULL) == ZF_OK && route.local;
}

//  --- leaving ----------------------------------------------------------------------------------

static void s_on_left (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    zf_fetch_sched_t *self = arg;
    self->leaves_unanswered--;
    if (status != ZF_OK)
        zf_info (self->env->name, "host.leave unanswered: %s",
                 err && *err->message ? err->message : zf_status_name (status));
}

size_t zf_fetch_sched_leave (zf_fetch_sched_t *self)
{
    self->leaving = true;
    zf_msg_host_leave_t body = {.host_id = self->host_id};
    zf_bus_call_t call = {.timeout_ms = LEAVE_TIMEOUT_MS, .retries = 0};
    for (size_t index = 0; index < self->count; index++) {
        zf_route_t route;
        //  One in this process stops with it; a dead one would only make the stop wait.
        if (self->dead[index]
            || (zf_node_resolve (self->bus_node, self->names[index], &route, NULL) == ZF_OK
                && route.local))
            continue;
        zf_error_t err;
        if (zf_bus_request (self->env->bus, self->names[index], &zf_msg_host_leave, &body, NULL,
                            call, s_on_left, self, &err)
            == ZF_OK)
            self->leaves_unanswered++;
    }
    if (self->leaves_unanswered)
        zf_info (self->env->name, "leaving schedulers=%zu host_id=%s", self->leaves_unanswered,
                 self->host_id);
    return self->leaves_unanswered;
}

size_t zf_fetch_sched_leaving (const zf_fetch_sched_t *self)
{
    return self->leaves_unanswered;
}

//  --- life cycle ---------------------------------------------------------------------------------

zf_fetch_sched_t *zf_fetch_sched_new (zf_fetch_env_t *env, zf_node_t *node)
{
    const zf_fetcher_config_t *config = env->config;
    bool from_join = !*config->schedulers && s_join_runs_here (node);
    if (!*config->schedulers && !from_join)
        return NULL;
    zf_fetch_sched_t *self = zf_calloc (1, sizeof *self);
    self->env = env;
    self->bus_node = node;
    self->from_join = from_join;
    self->ring = zf_sched_ring_new (ZF_SCHED_RING_VNODES);
    for (const char *word = config->schedulers; *word && self->count < SCHEDULERS_MAX;) {
        word += strspn (word, " \t");
        size_t length = strcspn (word, " \t");
        if (length == 0)
            break;
        char *name = zf_calloc (1, length + 1);
        memcpy (name, word, length);
        if (s_scheduler_index (self, name) < 0) {
            self->names[self->count++] = name;
            zf_sched_ring_add (self->ring, name);
        } else
            zf_free (name);
        word += length;
    }
    zf_strlcpy (self->node, zf_node_name (node), sizeof self->node);
    zf_strlcpy (self->host_id, *config->host_id ? config->host_id : self->node,
                sizeof self->host_id);
    while (self->incarnation == 0)
        ZF_ASSERT (getrandom (&self->incarnation, sizeof self->incarnation, 0)
                   == (ssize_t) sizeof self->incarnation);
    if (strchr (config->storage, '@'))
        zf_strlcpy (self->storage, config->storage, sizeof self->storage);
    else {
        char *storage = zf_asprintf ("%s@%s", config->storage, self->node);
        zf_strlcpy (self->storage, storage, sizeof self->storage);
        zf_free (storage);
    }
    zf_strlcpy (self->fetcher, zf_bus_address (env->bus), sizeof self->fetcher);
    self->tasks = zhashx_new ();
    zhashx_set_destructor (self->tasks, s_destroy_record);
    self->interval_ms = HEARTBEAT_DEFAULT_MS;
    self->fallbacks =
        zf_metrics_counter ("zfly_fetcher_scheduler_fallbacks_total",
                            "Tasks that lost their scheduler (none reachable, or it refused) and "
                            "went on with their parents, and the origin for what none could give",
                            "actor", env->name, NULL);
    env->observer = &s_observer;
    env->observer_arg = self;
    env->scheduled = true;
    s_announce_all (self);
    self->timer_id = zf_timers_start (env->timers, TICK_MS, 0, s_on_tick, self);
    zf_error_t err;
    if (from_join
        && zf_bus_subscribe (env->bus, "join", "join.view", s_on_view, self, &err) != ZF_OK)
        zf_warning (env->name, "cannot follow the cluster's schedulers: %s", err.message);
    zf_notice (env->name, "scheduler client host_id=%s type=%s storage=%s schedulers=%s",
               self->host_id, config->seed ? "seed" : "normal", self->storage,
               from_join ? "from the manager" : config->schedulers);
    return self;
}

void zf_fetch_sched_destroy (zf_fetch_sched_t **self_p)
{
    zf_fetch_sched_t *self = *self_p;
    if (!self)
        return;
    if (self->timer_id >= 0)
        zf_timers_end (self->env->timers, self->timer_id);
    zhashx_destroy (&self->tasks);
    zf_sched_ring_destroy (&self->ring);
    for (size_t index = 0; index < self->count; index++)
        zf_free (self->names[index]);
    zf_free (self);
    *self_p = NULL;
}
