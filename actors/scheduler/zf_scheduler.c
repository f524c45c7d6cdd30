/*  zf_scheduler.c — the scheduler's bus side: messages in, decisions out, timers. */
#include "zf_scheduler.h"
#include "zf_bus.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include "zf_sched_decide.h"
#include "zf_sched_health.h"

#define TICK_MS             50   //  poll deadlines
#define EXPIRE_MS           1000 //  heartbeat expiry scan and gauges
#define WAKES_MAX           64
#define RESUME_GRACE_MAX_MS 4000 //  see zf_sched_params_t.resume_grace_ms

//  A register held until a parent has pieces (long poll). Linked in its task's list and in
//  the global list that the tick scans for deadlines.
typedef struct waiter_s waiter_t;
struct waiter_s {
    waiter_t *prev, *next;   //  task->parked list
    waiter_t *gprev, *gnext; //  all waiters
    zf_sched_peer_t *peer;
    zf_bus_return_t ret;
    int64_t deadline_ms;
    int64_t started_us;
};

typedef struct {
    zf_counter_t *decisions[3];
    zf_counter_t *seed_triggers, *seed_refusals, *expired, *bad, *refused_pieces, *adopted;
    zf_histogram_t *latency;
    zf_gauge_t *hosts, *tasks, *peers, *bytes, *waiting;
} metrics_t;

typedef struct {
    const char *name;
    const zf_scheduler_config_t *config;
    zf_node_t *node; //  routes learned from announces, keys revoked by the manager
    zf_bus_t *bus;
    zf_sched_t *sched;
    waiter_t *waiters; //  global list head
    size_t waiter_count;
    metrics_t metrics;
    uint64_t decisions;
} self_t;

//  Seed triggers in flight: names copied, the task may be gone when the answer comes. Freed by
//  the answer, or by the bus when it ends with the trigger unanswered (zf_bus_call_t.drop).
typedef struct {
    self_t *self;
    char task_id[ZF_SCHED_TASK_ID_MAX + 1];
    char host_id[129];
} trigger_t;

static void s_event (self_t *self, const char *kind, const char *task_id, const char *host_id,
                     const char *detail)
{
    zf_msg_scheduler_event_t event = {.kind = (char *) kind,
                                      .task_id = (char *) (task_id ? task_id : ""),
                                      .host_id = (char *) (host_id ? host_id : ""),
                                      .detail = (char *) (detail ? detail : "")};
    zf_bus_publish (self->bus, &zf_msg_scheduler_event, &event);
}

//  --- answers ---------------------------------------------------------------------------------

static void s_reply_schedule (self_t *self, const zf_bus_return_t *ret, zf_sched_peer_t *peer,
                              zf_decision_t decision, int64_t started_us)
{
    zf_rec_sched_parent_t parents[ZF_SCHED_PARENTS_MAX];
    size_t count = decision == ZF_DECISION_PARENTS ? peer->parent_count : 0;
    for (size_t index = 0; index < count; index++) {
        const zf_sched_peer_t *parent = peer->parents[index];
        parents[index] = (zf_rec_sched_parent_t){.host_id = parent->host->id,
                                                 .storage = parent->host->storage,
                                                 .finished_count = parent->finished_count,
                                                 .seed = parent->host->seed,
                                                 .endpoint = parent->host->endpoint,
                                                 .key = parent->host->key};
    }
    zf_sched_task_t *task = peer->task;
    zf_msg_peer_schedule_t body = {
        .task_id = task->id,
        .host_id = peer->host->id,
        .decision = (char *) zf_sched_decision_name (decision),
        .parents = {.items = parents, .count = count},
        .content_length = task->content_length,
        .piece_length = task->piece_length,
        .piece_count = task->piece_count,
        .retry_ms = decision == ZF_DECISION_WAIT ? (uint64_t) self->config->retry_ms : 0,
    };
    zf_bus_reply (self->bus, ret, &zf_msg_peer_schedule, &body, NULL);
    zf_counter_add (self->metrics.decisions[decision], 1);
    zf_histogram_observe (self->metrics.latency, (double) (zclock_usecs () - started_us) / 1e6);
    self->decisions++;
    if (decision == ZF_DECISION_SOURCE)
        s_event (self, "source", task->id, peer->host->id, NULL);
}

static void s_reply_ack (self_t *self, const zf_bus_return_t *ret, const char *task_id,
                         const char *host_id, const zf_sched_peer_t *peer)
{
    bool orphan = peer && peer->state == ZF_PEER_RUNNING && peer->parent_count == 0;
    zf_msg_peer_ack_t body = {.task_id = (char *) task_id,
                              .host_id = (char *) host_id,
                              .finished_count = peer ? peer->finished_count : 0,
                              .reschedule = peer && (peer->reschedule || orphan)};
    zf_bus_reply (self->bus, ret, &zf_msg_peer_ack, &body, NULL);
}

//  --- waiting registers -------------------------------------------------------------------------

static void s_park (self_t *self, zf_sched_peer_t *peer, const zf_bus_return_t *ret,
                    int64_t wait_ms, int64_t started_us)
{
    waiter_t *waiter = zf_calloc (1, sizeof (waiter_t));
    waiter->peer = peer;
    waiter->ret = *ret;
    waiter->deadline_ms = zf_clock_mono_ms () + wait_ms;
    waiter->started_us = started_us;
    waiter->next = peer->task->parked;
    if (waiter->next)
        waiter->next->prev = waiter;
    peer->task->parked = waiter;
    waiter->gnext = self->waiters;
    if (waiter->gnext)
        waiter->gnext->gprev = waiter;
    self->waiters = waiter;
    self->waiter_count++;
    peer->parked = waiter;
}

//  Unlinks and frees; the caller has answered (or will answer) the request.
static void s_unpark (self_t *self, waiter_t *waiter)
{
    zf_sched_task_t *task = waiter->peer->task;
    if (waiter->prev)
        waiter->prev->next = waiter->next;
    else
        task->parked = waiter->next;
    if (waiter->next)
        waiter->next->prev = waiter->prev;
    if (waiter->gprev)
        waiter->gprev->gnext = waiter->gnext;
    else
        self->waiters = waiter->gnext;
    if (waiter->gnext)
        waiter->gnext->gprev = waiter->gprev;
    waiter->peer->parked = NULL;
    self->waiter_count--;
    zf_free (waiter);
}

//  Before a peer goes: its held register gets an error (the peer is gone, register again).
static void s_drop_waiter (self_t *self, zf_sched_peer_t *peer, const char *why)
{
    waiter_t *waiter = peer->parked;
    if (!waiter)
        return;
    zf_bus_reply_code (self->bus, &waiter->ret, ZF_CODE_NOT_FOUND, "body.host_id",
                       "peer of host '%s' for task %s is gone: %s", peer->host->id, peer->task->id,
                       why);
    s_unpark (self, waiter);
}

//  A host that left, expired, was revoked or restarted (what: the event's kind): the
//  registers its peers hold are answered, subscribers and the log hear of it. The caller
//  then removes the host or forgets its peers.
static void s_host_gone (self_t *self, zf_sched_host_t *host, const char *what)
{
    char why[32];
    snprintf (why, sizeof why, "host %s", what);
    for (uint32_t index = 0; index < host->peer_count; index++)
        s_drop_waiter (self, host->peers[index], why);
    s_event (self, what, NULL, host->id, NULL);
    zf_notice (self->name, "host %s id=%s peers=%" PRIu32, what, host->id, host->peer_count);
}

static void s_trigger_seed (zf_sched_peer_t *seed_peer, void *arg);

//  Serves the held registers of tasks that changed (pieces, a freed slot, a released source).
static void s_serve_wakes (self_t *self)
{
    zf_sched_task_t *tasks[WAKES_MAX];
    size_t count;
    int64_t now = zf_clock_mono_ms ();
    while ((count = zf_sched_take_wakes (self->sched, tasks, WAKES_MAX)) > 0)
        for (size_t index = 0; index < count; index++) {
            waiter_t *waiter = tasks[index]->parked;
            while (waiter) {
                waiter_t *next = waiter->next;
                zf_sched_peer_t *peer = waiter->peer;
                zf_decision_t decision =
                    zf_sched_decide (self->sched, peer, now, s_trigger_seed, self);
                if (decision != ZF_DECISION_WAIT) {
                    zf_bus_return_t ret = waiter->ret;
                    int64_t started_us = waiter->started_us;
                    s_unpark (self, waiter);
                    s_reply_schedule (self, &ret, peer, decision, started_us);
                }
                waiter = next;
            }
        }
}

//  --- seeds -----------------------------------------------------------------------------------

static void s_on_seed_answer (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                              const zf_error_t *err, void *arg)
{
    (void) bus;
    (void) reply;
    trigger_t *trigger = arg;
    self_t *self = trigger->self;
    if (status != ZF_OK) {
        zf_warning (self->name, "seed refused task=%s seed=%s: %s", trigger->task_id,
                    trigger->host_id, err ? err->message : zf_status_name (status));
        zf_counter_add (self->metrics.seed_refusals, 1);
        zf_sched_task_t *task = zf_sched_task_find (self->sched, trigger->task_id);
        zf_sched_host_t *host = zf_sched_host_find (self->sched, trigger->host_id);
        zf_sched_peer_t *peer = task && host ? zf_sched_peer_find (self->sched, task, host) : NULL;
        if (peer) {
            zf_sched_host_failure (self->sched, host, 0, zf_clock_mono_ms ());
            zf_sched_seed_refused (self->sched, peer);
        }
        s_serve_wakes (self);
    }
    zf_free (trigger);
}

static void s_trigger_seed (zf_sched_peer_t *seed_peer, void *arg)
{
    self_t *self = arg;
    zf_sched_task_t *task = seed_peer->task;
    trigger_t *trigger = zf_calloc (1, sizeof (trigger_t));
    trigger->self = self;
    zf_strlcpy (trigger->task_id, task->id, sizeof (trigger->task_id));
    zf_strlcpy (trigger->host_id, seed_peer->host->id, sizeof (trigger->host_id));
    zf_msg_seed_trigger_t body = {.task_id = task->id,
                                  .host_id = seed_peer->host->id,
                                  .url = task->url,
                                  .digest = task->digest,
                                  .tag = task->tag,
                                  .application = task->application,
                                  .content_length = task->content_length};
    zf_error_t err;
    zf_bus_call_t call = {
        .timeout_ms = self->config->seed_timeout_ms, .retries = 1, .drop = zf_bus_drop_free};
    zf_counter_add (self->metrics.seed_triggers, 1);
    s_event (self, "seed", task->id, seed_peer->host->id, seed_peer->host->fetcher);
    if (zf_bus_request (self->bus, seed_peer->host->fetcher, &zf_msg_seed_trigger, &body, NULL,
                        call, s_on_seed_answer, trigger, &err)
        != ZF_OK) {
        //  Not now: the answer path does the bookkeeping once this call returned.
        zf_warning (self->name, "cannot trigger seed %s: %s", seed_peer->host->fetcher,
                    err.message);
        zf_counter_add (self->metrics.seed_refusals, 1);
        task->seed_refused = seed_peer->host->serial;
        seed_peer->state = ZF_PEER_RUNNING;
        task->source = NULL;
        zf_sched_wake (self->sched, task);
        zf_free (trigger);
    }
}

//  --- lookups shared by handlers ----------------------------------------------------------------

//  Finds the peer a request names, or answers not_found and returns NULL.
static zf_sched_peer_t *s_peer_of (self_t *self, const zf_bus_return_t *ret, const char *task_id,
                                   const char *host_id)
{
    zf_sched_host_t *host = zf_sched_host_find (self->sched, host_id);
    if (!host) {
        zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FOUND, "body.host_id",
                           "host '%s' is unknown: announce it first", host_id);
        return NULL;
    }
    host->last_seen_ms = zf_clock_mono_ms (); //  any message proves the host alive
    zf_sched_task_t *task = zf_sched_task_find (self->sched, task_id);
    zf_sched_peer_t *peer = task ? zf_sched_peer_find (self->sched, task, host) : NULL;
    if (!peer)
        zf_bus_reply_code (self->bus, ret, ZF_CODE_NOT_FOUND, "body.task_id",
                           "host '%s' has no peer for task %s: register first", host_id, task_id);
    return peer;
}

static bool s_valid_task_id (const char *task_id)
{
    size_t length = strlen (task_id);
    return length > 0 && length <= ZF_SCHED_TASK_ID_MAX;
}

//  --- handlers ----------------------------------------------------------------------------------

//  A host announced another incarnation: its process restarted without host.leave (a crash,
//  kill -9, systemd starting it again at once). What it ran died with it, and a seed that was
//  a task's origin fetcher fetches nothing any more: left alone, its children waited for those
//  pieces forever. Its peers are forgotten as host.leave would forget them; the host stays,
//  with what was measured of it. Two restarts within three heartbeats are more likely two
//  nodes announcing one host id, each forgetting the other's peers every heartbeat.
static void s_host_restarted (self_t *self, zf_sched_host_t *host)
{
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (3, 60000);
    int64_t now = zf_clock_mono_ms ();
    if (host->restarted_ms && now - host->restarted_ms < 3 * self->config->heartbeat_ms)
        zf_warning_limited (&limit, self->name,
                            "host %s restarted twice within %" PRId64
                            " ms: do two nodes announce this host id? Give each node its "
                            "own [fetcher] host_id (default: its [node] name)",
                            host->id, now - host->restarted_ms);
    host->restarted_ms = now;
    s_host_gone (self, host, "restarted");
    zf_sched_host_forget_peers (self->sched, host);
    s_serve_wakes (self); //  a released flight: a peer waiting to be told may take it now
}

static void s_handle_announce (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    const zf_msg_host_announce_t *body = request->env.body;
    bool seed = streq (body->type, "seed");
    if (!seed && !streq (body->type, "normal")) {
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "body.type",
                            "host type '%s' is neither normal nor seed", body->type);
        return;
    }
    if (!*body->host_id || !*body->storage) {
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID,
                            *body->host_id ? "body.storage" : "body.host_id",
                            "host_id and storage must not be empty");
        return;
    }
    zf_sched_host_t *known = zf_sched_host_find (self->sched, body->host_id);
    if (known && known->incarnation && body->incarnation && known->incarnation != body->incarnation)
        s_host_restarted (self, known);
    bool fresh = !known;
    //  Where children reach it, and the key that authenticated this announce (a key in the
    //  message would prove nothing). The seed's fetcher is learned here for seed.trigger.
    bool networked = request->origin == ZF_BUS_FROM_NETWORK && *request->peer_key;
    char *endpoint = networked && *body->storage_endpoint
                         ? zf_node_endpoint_for_peer (body->storage_endpoint, request->peer_address)
                         : NULL;
    if (networked && *body->fetcher_endpoint && *body->fetcher) {
        char *fetcher = zf_node_endpoint_for_peer (body->fetcher_endpoint, request->peer_address);
        zf_error_t err;
        zf_route_t configured;
        //  [endpoints] may name it (a hand-wired cluster): said only when it says otherwise.
        if (zf_node_learn_route (self->node, body->fetcher, fetcher, NULL, request->peer_key, &err)
                != ZF_OK
            && fresh
            && !(zf_node_resolve (self->node, body->fetcher, &configured, NULL) == ZF_OK
                 && streq (configured.endpoint, fetcher)))
            zf_warning (self->name, "host %s: fetcher route not learned: %s (it announces %s)",
                        body->host_id, err.message, fetcher);
        zf_free (fetcher);
    }
    zf_sched_host_info_t info = {.id = body->host_id,
                                 .node = body->node,
                                 .storage = body->storage,
                                 .fetcher = body->fetcher,
                                 .endpoint = endpoint,
                                 .key = endpoint ? request->peer_key : NULL,
                                 .idc = body->idc,
                                 .location = body->location,
                                 .seed = seed,
                                 .upload_slots = (uint32_t) body->upload_slots,
                                 .upload_bandwidth = body->upload_bandwidth,
                                 .download_bandwidth = body->download_bandwidth};
    zf_sched_host_t *host = zf_sched_host_upsert (self->sched, &info, zf_clock_mono_ms ());
    if (body->incarnation)
        host->incarnation = body->incarnation;
    if (fresh)
        zf_info (self->name,
                 "host announced id=%s type=%s storage=%s endpoint=%s idc=%s location=%s",
                 body->host_id, body->type, body->storage, endpoint ? endpoint : "-", body->idc,
                 body->location);
    zf_free (endpoint);
    zf_msg_host_announced_t reply = {.host_id = body->host_id,
                                     .interval_ms = (uint64_t) self->config->heartbeat_ms,
                                     .timeout_ms = (uint64_t) self->config->host_timeout_ms};
    zf_bus_reply (bus, &request->return_to, &zf_msg_host_announced, &reply, NULL);
}

static void s_handle_leave (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    const zf_msg_host_leave_t *body = request->env.body;
    zf_sched_host_t *host = zf_sched_host_find (self->sched, body->host_id);
    if (host) {
        s_host_gone (self, host, "left");
        zf_sched_host_remove (self->sched, host);
    }
    s_reply_ack (self, &request->return_to, "", body->host_id, NULL);
    (void) bus;
    s_serve_wakes (self);
}

static void s_handle_register (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    int64_t started_us = zclock_usecs ();
    const zf_msg_peer_register_t *body = request->env.body;
    zf_sched_host_t *host = zf_sched_host_find (self->sched, body->host_id);
    if (!host) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_NOT_FOUND, "body.host_id",
                           "host '%s' is unknown: announce it first", body->host_id);
        return;
    }
    if (!s_valid_task_id (body->task_id)) {
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "body.task_id",
                            "task_id must not be empty");
        return;
    }
    int64_t now = zf_clock_mono_ms ();
    host->last_seen_ms = now;
    zf_sched_task_t *task = zf_sched_task_find (self->sched, body->task_id);
    if (task && body->piece_count && task->piece_count && body->piece_count != task->piece_count) {
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "body.piece_count",
                            "task %s has %" PRIu32 " pieces, not %" PRIu64, task->id,
                            task->piece_count, body->piece_count);
        return;
    }
    task = zf_sched_task_ensure (self->sched, body->task_id);
    zf_sched_task_set_lengths (task, body->content_length, body->piece_length, body->piece_count);
    zf_sched_peer_t *peer = zf_sched_peer_find (self->sched, task, host);
    zf_sched_task_set_origin (task, body->url, body->digest, body->tag, body->application);
    if (!peer)
        peer = zf_sched_peer_add (self->sched, task, host);
    if (body->resumed || body->source)
        zf_sched_peer_resumed (self->sched, peer, body->source, now);
    if (peer->parked) {
        //  A resend or a second poll: the earlier one is answered "wait" and this one takes over.
        waiter_t *old = peer->parked;
        zf_bus_return_t ret = old->ret;
        s_unpark (self, old);
        s_reply_schedule (self, &ret, peer, ZF_DECISION_WAIT, started_us);
    }
    zf_decision_t decision = zf_sched_decide (self->sched, peer, now, s_trigger_seed, self);
    int64_t wait_ms = (int64_t) body->wait_ms < self->config->wait_max_ms
                          ? (int64_t) body->wait_ms
                          : self->config->wait_max_ms;
    if (decision == ZF_DECISION_WAIT && wait_ms > 0)
        s_park (self, peer, &request->return_to, wait_ms, started_us);
    else
        s_reply_schedule (self, &request->return_to, peer, decision, started_us);
    s_serve_wakes (self);
}

static void s_handle_report (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    (void) bus;
    const zf_msg_piece_report_t *body = request->env.body;
    zf_sched_peer_t *peer = s_peer_of (self, &request->return_to, body->task_id, body->host_id);
    if (!peer)
        return;
    if (!zf_sched_task_set_lengths (peer->task, body->content_length, body->piece_length,
                                    body->piece_count)) {
        zf_bus_reply_error (bus, &request->return_to, ZF_E_INVALID, "body.piece_count",
                            "task %s has %" PRIu32 " pieces, not %" PRIu64, peer->task->id,
                            peer->task->piece_count, body->piece_count);
        return;
    }
    size_t refused = 0;
    uint32_t added = zf_sched_peer_add_pieces (self->sched, peer, body->pieces.items,
                                               body->pieces.count, &refused);
    if (refused)
        zf_counter_add (self->metrics.refused_pieces, refused);
    //  What hosts can upload is measured from what their children report receiving: a report
    //  names where its pieces came from (a parent's host id, or "source").
    if (added > 0 && peer->task->piece_length > 0 && body->from && *body->from) {
        zf_sched_host_t *from = zf_sched_host_find (self->sched, body->from);
        uint64_t bytes = (uint64_t) added * peer->task->piece_length;
        zf_sched_host_transferred (from, peer->host, bytes, zf_clock_mono_ms ());
        //  And per edge, for the swarm's picture (scheduler.dump).
        if (from || streq (body->from, "source"))
            zf_sched_peer_received (self->sched, peer, from, bytes);
    }
    uint32_t piece_count = peer->task->piece_count;
    if (piece_count > 0 && peer->finished_count == piece_count && peer->state != ZF_PEER_FINISHED)
        zf_sched_peer_finish (self->sched, peer);
    size_t adopted = added > 0 ? zf_sched_adopt (self->sched, peer, zf_clock_mono_ms ()) : 0;
    if (adopted > 0) {
        zf_counter_add (self->metrics.adopted, adopted);
        zf_debug (self->name, "children given task=%.16s parent=%s children=%zu", peer->task->id,
                  peer->host->id, adopted);
    }
    s_reply_ack (self, &request->return_to, body->task_id, body->host_id, peer);
    s_serve_wakes (self);
}

static void s_handle_parent_failed (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    (void) bus;
    int64_t started_us = zclock_usecs ();
    //  The reason is one of enum parent_failure: the bus refused any other before this runs.
    const zf_msg_parent_failed_t *body = request->env.body;
    zf_sched_peer_t *peer = s_peer_of (self, &request->return_to, body->task_id, body->host_id);
    if (!peer)
        return;
    int64_t now = zf_clock_mono_ms ();
    zf_sched_host_t *parent_host = zf_sched_host_find (self->sched, body->parent);
    zf_sched_peer_t *parent =
        parent_host ? zf_sched_peer_find (self->sched, peer->task, parent_host) : NULL;
    //  Slow is not failed: a busy parent (a seed serving many children) stays a good one.
    bool counts = !streq (body->reason, "slow");
    if (parent && parent != peer
        && zf_sched_parent_failed (self->sched, peer, parent, counts, now)) {
        zf_counter_add (self->metrics.bad, 1);
        s_event (self, "bad", peer->task->id, parent_host->id, body->reason);
        zf_notice (self->name, "host marked bad id=%s for %" PRId64 "ms", parent_host->id,
                   self->config->bad_host_cooldown_ms);
    } else if (parent_host && !parent)
        zf_sched_peer_block (peer, parent_host);
    zf_decision_t decision = zf_sched_decide (self->sched, peer, now, s_trigger_seed, self);
    s_reply_schedule (self, &request->return_to, peer, decision, started_us);
    s_serve_wakes (self);
}

static void s_handle_reschedule (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    (void) bus;
    int64_t started_us = zclock_usecs ();
    const zf_msg_peer_reschedule_t *body = request->env.body;
    zf_sched_peer_t *peer = s_peer_of (self, &request->return_to, body->task_id, body->host_id);
    if (!peer)
        return;
    int64_t now = zf_clock_mono_ms ();
    char **excluded = body->exclude.items;
    for (size_t index = 0; index < body->exclude.count; index++) {
        zf_sched_host_t *host = zf_sched_host_find (self->sched, excluded[index]);
        zf_sched_peer_t *parent = host ? zf_sched_peer_find (self->sched, peer->task, host) : NULL;
        if (parent && parent != peer)
            zf_sched_parent_failed (self->sched, peer, parent, false, now);
        else if (host)
            zf_sched_peer_block (peer, host);
    }
    zf_decision_t decision = zf_sched_decide (self->sched, peer, now, s_trigger_seed, self);
    s_reply_schedule (self, &request->return_to, peer, decision, started_us);
    s_serve_wakes (self);
}

static void s_handle_finished (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    (void) bus;
    const zf_msg_peer_finished_t *body = request->env.body;
    zf_sched_peer_t *peer = s_peer_of (self, &request->return_to, body->task_id, body->host_id);
    if (!peer)
        return;
    zf_sched_peer_finish (self->sched, peer);
    s_reply_ack (self, &request->return_to, body->task_id, body->host_id, peer);
    s_serve_wakes (self);
}

static void s_handle_failed (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    (void) bus;
    const zf_msg_peer_failed_t *body = request->env.body;
    zf_sched_peer_t *peer = s_peer_of (self, &request->return_to, body->task_id, body->host_id);
    if (!peer)
        return;
    s_drop_waiter (self, peer, "peer failed");
    zf_info (self->name, "peer left task=%s host=%s reason=%s", body->task_id, body->host_id,
             body->reason);
    if (!streq (body->reason, "evicted"))
        zf_sched_seed_failed (self->sched, peer);
    if (streq (body->reason, "source"))
        zf_sched_origin_failed (self->sched, peer);
    zf_sched_peer_remove (self->sched, peer);
    s_reply_ack (self, &request->return_to, body->task_id, body->host_id, NULL);
    s_serve_wakes (self);
}

//  --- state dump ------------------------------------------------------------------------------

//  What the dump borrows, freed after the reply.
typedef struct {
    char **names;
    zf_rec_sched_received_t *received;
    zf_sched_host_t **hosts; //  every host, by serial (to name the sources of received bytes)
} s_dump_memory_t;

static int s_by_serial (const void *left, const void *right)
{
    uint32_t a = (*(zf_sched_host_t *const *) left)->serial;
    uint32_t b = (*(zf_sched_host_t *const *) right)->serial;
    return a < b ? -1 : a > b;
}

//  The host id of a source serial; NULL for a host that has left the scheduler.
static const char *s_source_name (zf_sched_host_t **hosts, size_t count, uint32_t serial)
{
    if (serial == ZF_SCHED_FROM_ORIGIN)
        return "source";
    if (serial == ZF_SCHED_FROM_OTHERS)
        return "others";
    size_t low = 0, high = count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (hosts[middle]->serial < serial)
            low = middle + 1;
        else
            high = middle;
    }
    return low < count && hosts[low]->serial == serial ? hosts[low]->id : NULL;
}

static void s_dump_task (self_t *self, zf_sched_task_t *task, zf_msg_scheduler_dump_t *dump,
                         s_dump_memory_t *memory)
{
    size_t count = task->peer_count < 2048 ? task->peer_count : 2048;
    zf_rec_sched_peer_t *peers = zf_calloc (count + 1, sizeof (zf_rec_sched_peer_t));
    memory->names = zf_calloc (count * ZF_SCHED_PARENTS_MAX + 1, sizeof (char *));
    memory->received = zf_calloc (count * ZF_SCHED_RECEIVED_MAX + 1, sizeof *memory->received);
    size_t host_count = zf_sched_host_count (self->sched);
    memory->hosts = zf_calloc (host_count + 1, sizeof (zf_sched_host_t *));
    size_t found = 0;
    for (zf_sched_host_t *host = zf_sched_host_first (self->sched); host && found < host_count;
         host = zf_sched_host_next (self->sched))
        memory->hosts[found++] = host;
    qsort (memory->hosts, found, sizeof (zf_sched_host_t *), s_by_serial);
    for (size_t index = 0; index < count; index++) {
        zf_sched_peer_t *peer = task->peers[index];
        char **parents = memory->names + index * ZF_SCHED_PARENTS_MAX;
        for (uint8_t parent = 0; parent < peer->parent_count; parent++)
            parents[parent] = peer->parents[parent]->host->id;
        zf_rec_sched_received_t *received = memory->received + index * ZF_SCHED_RECEIVED_MAX;
        size_t sources = 0;
        for (uint8_t entry = 0; entry < peer->received_count; entry++) {
            const char *from =
                s_source_name (memory->hosts, found, peer->received[entry].from_serial);
            if (from)
                received[sources++] = (zf_rec_sched_received_t){
                    .from = (char *) from, .bytes = peer->received[entry].bytes};
        }
        peers[index] =
            (zf_rec_sched_peer_t){.host_id = peer->host->id,
                                  .state = (char *) zf_sched_peer_state_name (peer),
                                  .finished_count = peer->finished_count,
                                  .parents = {.items = parents, .count = peer->parent_count},
                                  .seed = peer->host->seed,
                                  .received = {.items = received, .count = sources}};
    }
    dump->found = true;
    dump->truncated = count < task->peer_count;
    dump->piece_count = task->piece_count;
    dump->piece_length = task->piece_length;
    dump->content_length = task->content_length;
    dump->source = task->source ? task->source->host->id : "";
    dump->peers = (zf_list_t){.items = peers, .count = count};
}

static void s_handle_state (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    self_t *self = arg;
    const zf_msg_scheduler_state_t *body = request->env.body;
    zf_msg_scheduler_dump_t dump = {.task_id = body->task_id,
                                    .source = "",
                                    .hosts = zf_sched_host_count (self->sched),
                                    .tasks = zf_sched_task_count (self->sched),
                                    .peer_total = zf_sched_peer_count (self->sched),
                                    .model_bytes = zf_sched_bytes (self->sched)};
    zf_sched_task_t *task = *body->task_id ? zf_sched_task_find (self->sched, body->task_id) : NULL;
    s_dump_memory_t memory = {0};
    if (task)
        s_dump_task (self, task, &dump, &memory);
    zf_bus_reply (bus, &request->return_to, &zf_msg_scheduler_dump, &dump, NULL);
    zf_free (memory.names);
    zf_free (memory.received);
    zf_free (memory.hosts);
    zf_free (dump.peers.items);
}

//  --- timers ----------------------------------------------------------------------------------

static int s_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    int64_t now = zf_clock_mono_ms ();
    waiter_t *waiter = self->waiters;
    while (waiter) {
        waiter_t *next = waiter->gnext;
        if (waiter->deadline_ms <= now) {
            zf_bus_return_t ret = waiter->ret;
            zf_sched_peer_t *peer = waiter->peer;
            int64_t started_us = waiter->started_us;
            s_unpark (self, waiter);
            s_reply_schedule (self, &ret, peer, ZF_DECISION_WAIT, started_us);
        }
        waiter = next;
    }
    return 0;
}

static void s_on_expired (zf_sched_host_t *host, void *arg)
{
    self_t *self = arg;
    zf_counter_add (self->metrics.expired, 1);
    s_host_gone (self, host, "expired");
}

//  Hosts whose key the manager revoked go at once, like expired ones: their pieces are no
//  longer handed out, their children reschedule.
static void s_remove_revoked (self_t *self)
{
    zlistx_t *revoked = zlistx_new ();
    for (zf_sched_host_t *host = zf_sched_host_first (self->sched); host;
         host = zf_sched_host_next (self->sched))
        if (host->key && *host->key && zf_node_is_revoked (self->node, host->key))
            zlistx_add_end (revoked, host);
    for (zf_sched_host_t *host = zlistx_first (revoked); host; host = zlistx_next (revoked)) {
        zf_notice (self->name, "host id=%s: its key %s was revoked", host->id, host->key);
        s_host_gone (self, host, "revoked");
        zf_sched_host_remove (self->sched, host);
    }
    zlistx_destroy (&revoked);
}

static int s_expire (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    zf_sched_expire_hosts (self->sched, zf_clock_mono_ms (), s_on_expired, self);
    s_remove_revoked (self);
    s_serve_wakes (self);
    zf_gauge_set (self->metrics.hosts, (double) zf_sched_host_count (self->sched));
    zf_gauge_set (self->metrics.tasks, (double) zf_sched_task_count (self->sched));
    zf_gauge_set (self->metrics.peers, (double) zf_sched_peer_count (self->sched));
    zf_gauge_set (self->metrics.bytes, (double) zf_sched_bytes (self->sched));
    zf_gauge_set (self->metrics.waiting, (double) self->waiter_count);
    return 0;
}

//  --- start and stop ----------------------------------------------------------------------------

static void s_metrics_init (metrics_t *metrics, const char *actor)
{
    static const double buckets[] = {1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
                                     1e-3, 5e-3, 1e-2, 0.1,    0.5,  1,    2.5};
    for (int decision = 0; decision < 3; decision++)
        metrics->decisions[decision] = zf_metrics_counter (
            "zfly_scheduler_decisions_total", "Schedules answered, by decision", "actor", actor,
            "decision", zf_sched_decision_name ((zf_decision_t) decision), NULL);
    metrics->seed_triggers = zf_metrics_counter ("zfly_scheduler_seed_triggers_total",
                                                 "seed.trigger sent", "actor", actor, NULL);
    metrics->seed_refusals =
        zf_metrics_counter ("zfly_scheduler_seed_refusals_total",
                            "Seeds that did not accept a trigger", "actor", actor, NULL);
    metrics->expired =
        zf_metrics_counter ("zfly_scheduler_hosts_expired_total",
                            "Hosts removed for missed heartbeats", "actor", actor, NULL);
    metrics->bad =
        zf_metrics_counter ("zfly_scheduler_hosts_marked_bad_total",
                            "Hosts marked bad after repeated failures", "actor", actor, NULL);
    metrics->refused_pieces =
        zf_metrics_counter ("zfly_scheduler_pieces_refused_total",
                            "Reported pieces beyond the task's piece count", "actor", actor, NULL);
    metrics->adopted = zf_metrics_counter (
        "zfly_scheduler_children_given_total",
        "Children given to a peer that held pieces but served fewer than its share "
        "(zf_sched_adopt)",
        "actor", actor, NULL);
    metrics->latency =
        zf_metrics_histogram ("zfly_scheduler_decision_seconds",
                              "Time from a request to its schedule (held registers included)",
                              buckets, ZF_ARRAY_LEN (buckets), "actor", actor, NULL);
    metrics->hosts = zf_metrics_gauge ("zfly_scheduler_hosts", "Hosts known", "actor", actor, NULL);
    metrics->tasks =
        zf_metrics_gauge ("zfly_scheduler_tasks", "Tasks with peers", "actor", actor, NULL);
    metrics->peers = zf_metrics_gauge ("zfly_scheduler_peers", "Peers", "actor", actor, NULL);
    metrics->bytes = zf_metrics_gauge ("zfly_scheduler_model_bytes",
                                       "Bytes of the scheduler's model", "actor", actor, NULL);
    metrics->waiting =
        zf_metrics_gauge ("zfly_scheduler_waiting_registers",
                          "Registers held until a parent has pieces", "actor", actor, NULL);
}

static void s_params_of (const zf_scheduler_config_t *config, zf_sched_params_t *params)
{
    zf_sched_params_defaults (params);
    params->parents_max = (uint32_t) config->parents;
    params->candidates = (uint32_t) config->candidates;
    params->upload_slots = (uint32_t) config->upload_slots;
    params->seed_upload_slots = (uint32_t) config->seed_upload_slots;
    params->weights[ZF_SCHED_WEIGHT_FINISHED] = config->weight_finished / 100;
    params->weights[ZF_SCHED_WEIGHT_FREE_UPLOAD] = config->weight_free_upload / 100;
    params->weights[ZF_SCHED_WEIGHT_HOST_TYPE] = config->weight_host_type / 100;
    params->weights[ZF_SCHED_WEIGHT_IDC] = config->weight_idc / 100;
    params->weights[ZF_SCHED_WEIGHT_LOCATION] = config->weight_location / 100;
    params->bad_failures = (uint32_t) config->bad_host_failures;
    params->bad_window_ms = config->bad_host_window_ms;
    params->bad_cooldown_ms = config->bad_host_cooldown_ms;
    params->host_timeout_ms = config->host_timeout_ms;
    //  A resumed task's origin fetcher finds this scheduler again within a second or so: its
    //  reports (every 100 ms) come back "not found", or the announce it sends a dead
    //  scheduler every second goes out as the link comes up. Two heartbeats at most, the
    //  slowest a host announces; not much longer than needed, since while a task waits for an
    //  origin fetcher that died with the old one nothing new comes in (the scheduler and
    //  the seed of an all-in-one node restarted together: 10 s of grace cost 1.69 × T_min).
    params->resume_grace_ms = 2 * config->heartbeat_ms < RESUME_GRACE_MAX_MS
                                  ? 2 * config->heartbeat_ms
                                  : RESUME_GRACE_MAX_MS;
    params->seeds_enabled = !streq (config->seeds, "none");
    params->seeds = config->seeds;
    params->acyclic = config->acyclic;
    params->random_seed = (uint64_t) zclock_usecs ();
}

static void s_handle_all (self_t *self)
{
    zf_bus_handle (self->bus, ZF_MSG_HOST_ANNOUNCE, s_handle_announce, self);
    zf_bus_handle (self->bus, ZF_MSG_HOST_LEAVE, s_handle_leave, self);
    zf_bus_handle (self->bus, ZF_MSG_PEER_REGISTER, s_handle_register, self);
    zf_bus_handle (self->bus, ZF_MSG_PIECE_REPORT, s_handle_report, self);
    zf_bus_handle (self->bus, ZF_MSG_PARENT_FAILED, s_handle_parent_failed, self);
    zf_bus_handle (self->bus, ZF_MSG_PEER_RESCHEDULE, s_handle_reschedule, self);
    zf_bus_handle (self->bus, ZF_MSG_PEER_FINISHED, s_handle_finished, self);
    zf_bus_handle (self->bus, ZF_MSG_PEER_FAILED, s_handle_failed, self);
    zf_bus_handle (self->bus, ZF_MSG_SCHEDULER_STATE, s_handle_state, self);
}

static void s_stop (self_t *self)
{
    while (self->waiters) {
        waiter_t *waiter = self->waiters;
        zf_bus_reply_code (self->bus, &waiter->ret, ZF_CODE_BUSY, "", "scheduler stopping");
        s_unpark (self, waiter);
    }
    zf_sched_destroy (&self->sched);
}

void zf_scheduler_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    self_t self = {.name = actor->name, .config = actor->config, .node = actor->node};
    zf_error_t err;
    self.bus =
        zf_bus_new (actor->node, actor->name, self.config->bind, self.config->events_bind, &err);
    zsock_signal (pipe, 0);
    if (!self.bus) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        return;
    }
    zf_sched_params_t params;
    s_params_of (self.config, &params);
    self.sched = zf_sched_new (&params);
    s_metrics_init (&self.metrics, self.name);
    s_handle_all (&self);
    zloop_t *loop = zloop_new ();
    zloop_set_nonstop (loop, true); //  the daemon handles signals and sends $TERM
    zloop_reader (loop, pipe, zf_actor_pipe_term, NULL);
    zloop_timer (loop, TICK_MS, 0, s_tick, &self);
    zloop_timer (loop, EXPIRE_MS, 0, s_expire, &self);
    zf_bus_attach (self.bus, loop);
    zf_notice (self.name,
               "started bind=%s parents=%" PRId64 " upload_slots=%" PRId64 " seeds=%s"
               " host_timeout=%" PRId64 "ms",
               *self.config->bind ? self.config->bind : "-", self.config->parents,
               self.config->upload_slots, self.config->seeds, self.config->host_timeout_ms);
    zstr_send (pipe, "READY");
    zloop_start (loop);
    zf_info (self.name, "stopped decisions=%" PRIu64 " peers=%zu", self.decisions,
             zf_sched_peer_count (self.sched));
    s_stop (&self);
    zf_bus_destroy (&self.bus);
    zloop_destroy (&loop);
}
