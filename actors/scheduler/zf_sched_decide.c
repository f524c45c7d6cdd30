/*  zf_sched_decide.c — single flight, seed triggering, and the decision for one peer. */
#include "zf_sched_decide.h"
#include "zf_sched_health.h"
#include "zf_sched_select.h"

const char *zf_sched_decision_name (zf_decision_t decision)
{
    static const char *names[] = {"parents", "source", "wait"};
    return names[decision];
}

//  FNV-1a then a 64-bit finalizer: stable across runs and platforms.
static uint64_t s_hash2 (const char *a, const char *b)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (const char *text = a; *text; text++)
        hash = (hash ^ (uint8_t) *text) * 0x100000001b3ull;
    hash = (hash ^ 0xff) * 0x100000001b3ull;
    for (const char *text = b; *text; text++)
        hash = (hash ^ (uint8_t) *text) * 0x100000001b3ull;
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    return hash;
}

//  params.seeds: "" or "auto" allows any seed host, else the blank-separated host ids listed.
static bool s_seed_allowed (const char *seeds, const char *host_id)
{
    if (!*seeds || streq (seeds, "auto"))
        return true;
    size_t length = strlen (host_id);
    for (const char *word = seeds; *word;) {
        word += strspn (word, " \t,");
        size_t word_length = strcspn (word, " \t,");
        if (word_length == length && memcmp (word, host_id, length) == 0)
            return true;
        word += word_length;
    }
    return false;
}

zf_sched_host_t *zf_sched_pick_seed (zf_sched_t *sched, const zf_sched_task_t *task,
                                     const zf_sched_host_t *exclude, int64_t now_ms)
{
    const zf_sched_params_t *params = zf_sched_params (sched);
    if (!params->seeds_enabled || !task->url)
        return NULL; //  a seed needs the URL to fetch
    size_t count;
    zf_sched_host_t *const *seeds = zf_sched_seed_hosts (sched, &count);
    zf_sched_host_t *best = NULL;
    uint64_t best_weight = 0;
    for (size_t index = 0; index < count; index++) {
        zf_sched_host_t *host = seeds[index];
        if (host == exclude || host->serial == task->seed_refused || !*host->fetcher
            || zf_sched_host_is_bad (host, now_ms) || !s_seed_allowed (params->seeds, host->id))
            continue;
        uint64_t weight = s_hash2 (task->id, host->id);
        if (!best || weight > best_weight) {
            best = host;
            best_weight = weight;
        }
    }
    return best;
}

static size_t s_top_up (zf_sched_t *sched, zf_sched_peer_t *peer, int64_t now_ms)
{
    uint32_t parents_max = zf_sched_params (sched)->parents_max;
    if (peer->parent_count >= parents_max)
        return 0;
    zf_sched_peer_t *chosen[ZF_SCHED_PARENTS_MAX];
    size_t count = zf_sched_select (sched, peer, now_ms, chosen, parents_max - peer->parent_count);
    size_t added = 0;
    for (; added < count; added++)
        zf_sched_edge_add (sched, peer, chosen[added]);
    if (peer->parent_count > 0 && peer->state == ZF_PEER_WAITING)
        peer->state = ZF_PEER_RUNNING;
    return added;
}

//  An origin fetcher takes no piece from parents: it brings them in.
static void s_drop_parents (zf_sched_t *sched, zf_sched_peer_t *peer)
{
    while (peer->parent_count > 0)
        zf_sched_edge_remove (sched, peer, peer->parents[peer->parent_count - 1]);
}

//  The peer fetches from the origin what its parents do not give, and holds the task's single
//  flight unless another peer does (after the origin failed, every peer may go).
static zf_decision_t s_to_origin (zf_sched_peer_t *peer)
{
    peer->state = ZF_PEER_SOURCE;
    if (!peer->task->source)
        peer->task->source = peer;
    return ZF_DECISION_SOURCE;
}

//  Makes a seed the task's origin fetcher; returns false when no seed can.
static bool s_claim_with_seed (zf_sched_t *sched, zf_sched_peer_t *peer, int64_t now_ms,
                               zf_sched_trigger_fn *trigger, void *arg)
{
    zf_sched_task_t *task = peer->task;
    zf_sched_host_t *seed = zf_sched_pick_seed (sched, task, peer->host, now_ms);
    if (!seed)
        return false;
    zf_sched_peer_t *seed_peer = zf_sched_peer_find (sched, task, seed);
    if (!seed_peer)
        seed_peer = zf_sched_peer_add (sched, task, seed);
    s_drop_parents (sched, seed_peer);
    s_to_origin (seed_peer);
    if (trigger)
        trigger (seed_peer, arg);
    return true;
}

//  A peer holds every piece: the task can complete without the origin.
static bool s_complete_somewhere (const zf_sched_task_t *task)
{
    for (uint32_t index = 0; index < task->peer_count; index++)
        if (task->peers[index]->state == ZF_PEER_FINISHED)
            return true;
    return false;
}

//  A replacement origin fetcher needs the URL; a seed of the task would take it if it could
//  (it is the one meant for the origin), else any peer.
static bool s_may_fetch_origin (zf_sched_t *sched, zf_sched_peer_t *peer, zf_sched_task_t *task)
{
    (void) sched;
    return task->url && *task->url && peer->state != ZF_PEER_FINISHED;
}

void zf_sched_peer_resumed (zf_sched_t *sched, zf_sched_peer_t *peer, bool source, int64_t now_ms)
{
    zf_sched_task_t *task = peer->task;
    if (source && !task->source && !task->origin_failed && peer->state != ZF_PEER_FINISHED) {
        s_drop_parents (sched, peer);
        s_to_origin (peer);
    }
    if (!task->source && task->resume_until_ms == 0)
        task->resume_until_ms = now_ms + zf_sched_params (sched)->resume_grace_ms;
}

zf_decision_t zf_sched_decide (zf_sched_t *sched, zf_sched_peer_t *peer, int64_t now_ms,
                               zf_sched_trigger_fn *trigger, void *arg)
{
    zf_sched_task_t *task = peer->task;
    peer->reschedule = false;
    if (peer->state == ZF_PEER_FINISHED)
        return ZF_DECISION_PARENTS; //  nothing to fetch: an empty parent set
    if (task->source == peer)
        return ZF_DECISION_SOURCE;
    s_top_up (sched, peer, now_ms);
    if (task->origin_failed && !s_complete_somewhere (task)
        && s_may_fetch_origin (sched, peer, task))
        return s_to_origin (peer);
    //  Resumed from a scheduler that is gone: the task's origin fetcher may not have found us
    //  yet (zf_sched_peer_resumed).
    if (!task->source && now_ms < task->resume_until_ms)
        return peer->parent_count > 0 ? ZF_DECISION_PARENTS : ZF_DECISION_WAIT;
    //  The origin fetcher is gone (it died, left or failed) while nobody holds the whole task:
    //  pieces nobody has would never come. A new single flight: this peer fetches from the
    //  origin what its parents cannot give (peers wait for parents as long as they have one).
    if (!task->source && task->holders > 0 && !s_complete_somewhere (task)
        && s_may_fetch_origin (sched, peer, task))
        return s_to_origin (peer);
    if (task->source || task->holders > 0) //  someone feeds the task
        return peer->parent_count > 0 ? ZF_DECISION_PARENTS : ZF_DECISION_WAIT;
    //  Nobody fetches and nobody holds: this peer's request starts the one origin fetch. Any
    //  parents it has wait as it does (given while a source that has since failed ran, or
    //  peers that hold nothing): waiting for them would wait for sched_fallback.
    bool seed_enabled = zf_sched_params (sched)->seeds_enabled;
    if (!(peer->host->seed && seed_enabled) && !task->seed_failed
        && s_claim_with_seed (sched, peer, now_ms, trigger, arg)) {
        s_top_up (sched, peer, now_ms);
        return peer->parent_count > 0 ? ZF_DECISION_PARENTS : ZF_DECISION_WAIT;
    }
    s_drop_parents (sched, peer);
    return s_to_origin (peer);
}

//  The child's parent with the most children, other than the task's source (the source
//  brings new pieces in: no child gives it up), or NULL.
static zf_sched_peer_t *s_busiest_parent (const zf_sched_peer_t *child)
{
    zf_sched_peer_t *busiest = NULL;
    for (uint8_t index = 0; index < child->parent_count; index++) {
        zf_sched_peer_t *parent = child->parents[index];
        if (parent != child->task->source
            && (!busiest || parent->child_count > busiest->child_count))
            busiest = parent;
    }
    return busiest;
}

//  Children a peer that holds pieces should serve: its share of the task's parent edges
//  less one (so that no edge moves back and forth between peers near the share), and at
//  least ZF_SCHED_CHILDREN_MIN.
static uint32_t s_children_wanted (const zf_sched_task_t *task)
{
    uint32_t share = task->holders > 0 ? task->edges / task->holders : 0;
    return share > ZF_SCHED_CHILDREN_MIN + 1 ? share - 1 : ZF_SCHED_CHILDREN_MIN;
}

size_t zf_sched_adopt (zf_sched_t *sched, zf_sched_peer_t *parent, int64_t now_ms)
{
    zf_sched_task_t *task = parent->task;
    const zf_sched_params_t *params = zf_sched_params (sched);
    uint32_t wanted = s_children_wanted (task);
    if (params->acyclic || parent->finished_count == 0 || parent->child_count >= wanted
        || task->peer_count < 3)
        return 0;
    size_t given = 0;
    uint32_t start = (uint32_t) (zf_sched_random (sched) % task->peer_count);
    for (uint32_t step = 0; step < task->peer_count && step < ZF_SCHED_ADOPT_EXAMINE; step++) {
        if (parent->child_count >= wanted)
            break;
        zf_sched_peer_t *child = task->peers[(start + step) % task->peer_count];
        if (child == parent || child->state != ZF_PEER_RUNNING
            || !zf_sched_may_serve (child, parent, now_ms) || !zf_sched_has_news (parent, child))
            continue;
        if (child->parent_count >= params->parents_max) {
            //  Only from a parent that keeps more children than this one will have.
            zf_sched_peer_t *busiest = s_busiest_parent (child);
            if (!busiest || busiest->child_count <= parent->child_count + 2)
                continue;
            zf_sched_edge_remove (sched, child, busiest);
        }
        zf_sched_edge_add (sched, child, parent);
        child->reschedule = true;
        given++;
    }
    return given;
}

void zf_sched_seed_refused (zf_sched_t *sched, zf_sched_peer_t *seed_peer)
{
    zf_sched_task_t *task = seed_peer->task;
    if (task->source != seed_peer)
        return; //  already replaced or finished
    task->seed_refused = seed_peer->host->serial;
    if (seed_peer->finished_count == 0 && !seed_peer->parked)
        zf_sched_peer_remove (sched, seed_peer); //  releases the flight, flags its children
    else
        zf_sched_peer_release_flight (sched, seed_peer); //  keeps serving what it has
}

void zf_sched_seed_failed (zf_sched_t *sched, zf_sched_peer_t *peer)
{
    (void) sched;
    if (peer->task->source == peer && peer->host->seed)
        peer->task->seed_failed = true;
}

void zf_sched_origin_failed (zf_sched_t *sched, zf_sched_peer_t *peer)
{
    (void) sched;
    if (peer->task->source == peer && !peer->host->seed)
        peer->task->origin_failed = true;
}

bool zf_sched_parent_failed (zf_sched_t *sched, zf_sched_peer_t *child, zf_sched_peer_t *parent,
                             bool counts, int64_t now_ms)
{
    for (uint8_t index = 0; index < child->parent_count; index++)
        if (child->parents[index] == parent) {
            zf_sched_edge_remove (sched, child, parent);
            break;
        }
    zf_sched_peer_block (child, parent->host);
    if (!counts)
        return false;
    bool bad = zf_sched_host_failure (sched, parent->host, child->host->serial, now_ms);
    //  A task with fewer children than it takes to make a host bad (bad_failures): once its
    //  origin fetcher's host has as many recent failures as the task has other peers (theirs
    //  or, alike, other tasks' children's: a host that fails them fails these too), nobody can
    //  take what it fetches, so the flight goes to one of them now, not when its announces stop
    //  counting.
    if (!bad && parent->task->source == parent
        && zf_sched_host_recent_failures (sched, parent->host, now_ms) + 1
               >= parent->task->peer_count)
        zf_sched_peer_release_flight (sched, parent);
    return bad;
}
