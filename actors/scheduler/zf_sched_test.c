/*  zf_sched_test.c — the scheduler's selftest: model, selection, single flight, health, churn,
    and the scheduler ring. Everything runs on the model directly, with a fixed random seed
    and a fake clock, so every run takes the same decisions. */
#include "zf_sched_decide.h"
#include "zf_sched_health.h"
#include "zf_sched_ring.h"
#include "zf_sched_select.h"
#include "zf_scheduler.h"

#define TASK_A "aaaa000000000000000000000000000000000000000000000000000000000001"
#define TASK_B "bbbb000000000000000000000000000000000000000000000000000000000002"

static bool s_verbose;

static void s_check (zf_sched_t *sched)
{
    const char *why = NULL;
    if (!zf_sched_check (sched, &why)) {
        fprintf (stderr, "scheduler model inconsistent: %s\n", why);
        ZF_ASSERT (false);
    }
}

static zf_sched_t *s_sched_graph (uint32_t slots, bool acyclic)
{
    zf_sched_params_t params;
    zf_sched_params_defaults (&params);
    params.upload_slots = slots;
    params.seed_upload_slots = slots;
    params.random_seed = 42;
    params.acyclic = acyclic;
    return zf_sched_new (&params);
}

//  The default graph: a mesh, peers may feed each other.
static zf_sched_t *s_sched (uint32_t slots)
{
    return s_sched_graph (slots, false);
}

//  Announces host id; the info's labels and links as given, its actor names from the id.
static zf_sched_host_t *s_announce (zf_sched_t *sched, const char *id, zf_sched_host_info_t info,
                                    int64_t now)
{
    char storage[160], fetcher[160];
    snprintf (storage, sizeof storage, "storage@%s", id);
    snprintf (fetcher, sizeof fetcher, "fetcher@%s", id);
    info.id = info.node = id;
    info.storage = storage;
    info.fetcher = fetcher;
    return zf_sched_host_upsert (sched, &info, now);
}

static zf_sched_host_t *s_host (zf_sched_t *sched, const char *id, bool seed, const char *idc,
                                const char *location, int64_t now)
{
    return s_announce (sched, id,
                       (zf_sched_host_info_t){.idc = idc, .location = location, .seed = seed}, now);
}

static zf_sched_peer_t *s_peer (zf_sched_t *sched, const char *task_id, zf_sched_host_t *host)
{
    zf_sched_task_t *task = zf_sched_task_ensure (sched, task_id);
    zf_sched_task_set_lengths (task, 64ull << 20, 4 << 20, 16);
    zf_sched_task_set_origin (task, "http://origin/blob", "", "", "");
    zf_sched_peer_t *peer = zf_sched_peer_find (sched, task, host);
    return peer ? peer : zf_sched_peer_add (sched, task, host);
}

static void s_give (zf_sched_t *sched, zf_sched_peer_t *peer, uint64_t first, uint64_t count)
{
    uint64_t pieces[64];
    for (uint64_t index = 0; index < count; index++)
        pieces[index] = first + index;
    zf_sched_peer_add_pieces (sched, peer, pieces, count, NULL);
}

//  --- model ---------------------------------------------------------------------------------

static void s_test_model (void)
{
    zf_sched_t *sched = s_sched (4);
    size_t empty = zf_sched_bytes (sched);
    zf_sched_host_t *a = s_host (sched, "a", false, "", "", 0);
    zf_sched_host_t *b = s_host (sched, "b", false, "", "", 0);
    ZF_ASSERT (zf_sched_host_find (sched, "a") == a && zf_sched_host_count (sched) == 2);
    zf_sched_peer_t *pa = s_peer (sched, TASK_A, a);
    zf_sched_peer_t *pb = s_peer (sched, TASK_A, b);
    ZF_ASSERT (zf_sched_peer_find (sched, pa->task, a) == pa);
    ZF_ASSERT (pa->task == pb->task && pa->task->peer_count == 2);
    s_give (sched, pa, 0, 3);
    s_give (sched, pa, 2, 2); //  piece 2 again: counted once
    ZF_ASSERT (pa->finished_count == 4 && pa->task->holders == 1);
    size_t refused = 0;
    uint64_t beyond = 16;
    zf_sched_peer_add_pieces (sched, pa, &beyond, 1, &refused);
    ZF_ASSERT (refused == 1 && pa->finished_count == 4);
    zf_sched_edge_add (sched, pb, pa);
    ZF_ASSERT (a->load == 1 && pa->child_count == 1);
    s_check (sched);
    //  Removing the parent flags the child and frees the slot.
    zf_sched_peer_remove (sched, pa);
    ZF_ASSERT (pb->parent_count == 0 && pb->reschedule && a->load == 0);
    s_check (sched);
    //  A thousand peers on many tasks, then all gone: every counted byte comes back.
    for (int index = 0; index < 1000; index++) {
        char id[80];
        snprintf (id, sizeof id, "%064d", index % 100);
        zf_sched_host_t *host = index % 2 ? a : b;
        zf_sched_peer_t *peer = s_peer (sched, id, host);
        s_give (sched, peer, (uint64_t) index % 16, 1);
    }
    s_check (sched);
    if (s_verbose)
        printf ("  model: %zu peers, %zu bytes\n", zf_sched_peer_count (sched),
                zf_sched_bytes (sched));
    zf_sched_host_remove (sched, a);
    zf_sched_host_remove (sched, b);
    ZF_ASSERT (zf_sched_peer_count (sched) == 0 && zf_sched_task_count (sched) == 0);
    ZF_ASSERT (zf_sched_bytes (sched) >= empty);
    zf_sched_destroy (&sched);
}

//  --- selection -------------------------------------------------------------------------------

//  acyclic = false: two peers may feed each other; the child itself and its host never.
static void s_test_select_mesh (void)
{
    zf_sched_params_t params;
    zf_sched_params_defaults (&params);
    params.acyclic = false;
    params.random_seed = 42;
    zf_sched_t *sched = zf_sched_new (&params);
    zf_sched_host_t *h0 = s_host (sched, "h0", false, "", "", 0);
    zf_sched_host_t *h1 = s_host (sched, "h1", false, "", "", 0);
    zf_sched_peer_t *p0 = s_peer (sched, TASK_A, h0);
    zf_sched_peer_t *p1 = s_peer (sched, TASK_A, h1);
    s_give (sched, p0, 0, 4);
    s_give (sched, p1, 4, 4);
    zf_sched_edge_add (sched, p1, p0); //  p0 feeds p1
    zf_sched_peer_t *chosen[ZF_SCHED_PARENTS_MAX];
    size_t count = zf_sched_select (sched, p0, 0, chosen, 4);
    ZF_ASSERT (count == 1 && chosen[0] == p1); //  p1 feeds p0 too: pieces 4..7
    zf_sched_edge_add (sched, p0, p1);
    const char *why = NULL;
    ZF_ASSERT (zf_sched_check (sched, &why));
    zf_sched_destroy (&sched);
}

//  A running peer of TASK_A on a host of its own, holding pieces [first, first + count).
static zf_sched_peer_t *s_running (zf_sched_t *sched, const char *host_id, uint64_t first,
                                   uint64_t count)
{
    zf_sched_peer_t *peer = s_peer (sched, TASK_A, s_host (sched, host_id, false, "", "", 0));
    peer->state = ZF_PEER_RUNNING;
    s_give (sched, peer, first, count);
    return peer;
}

//  A peer that got its pieces after every child had filled its set is given children, from
//  the busiest parents, and those children are told to reschedule.
static void s_test_adopt (bool acyclic)
{
    zf_sched_params_t params;
    zf_sched_params_defaults (&params);
    params.upload_slots = params.seed_upload_slots = 16;
    params.parents_max = 2;
    params.random_seed = 42;
    params.acyclic = acyclic;
    zf_sched_t *sched = zf_sched_new (&params);
    zf_sched_peer_t *early[2] = {s_running (sched, "early0", 0, 4),
                                 s_running (sched, "early1", 0, 4)};
    zf_sched_peer_t *children[4];
    for (int index = 0; index < 4; index++) {
        char id[16];
        snprintf (id, sizeof id, "child%d", index);
        children[index] = s_running (sched, id, 0, 2);
        zf_sched_edge_add (sched, children[index], early[0]);
        zf_sched_edge_add (sched, children[index], early[1]);
    }
    //  Pieces 0 and 1 only: nothing the children lack. No children for it.
    zf_sched_peer_t *dull = s_running (sched, "dull", 0, 2);
    ZF_ASSERT (zf_sched_adopt (sched, dull, 0) == 0);
    ZF_ASSERT (dull->child_count == 0);
    //  Pieces 8 and 9, which no child has: two children move to it from the early parents.
    zf_sched_peer_t *late = s_running (sched, "late", 8, 2);
    size_t given = zf_sched_adopt (sched, late, 0);
    if (acyclic) {
        ZF_ASSERT (given == 0 && late->child_count == 0); //  edges there keep a DAG: not moved
        zf_sched_destroy (&sched);
        return;
    }
    ZF_ASSERT (given == ZF_SCHED_CHILDREN_MIN && late->child_count == ZF_SCHED_CHILDREN_MIN);
    ZF_ASSERT (early[0]->child_count + early[1]->child_count == 8 - ZF_SCHED_CHILDREN_MIN);
    size_t moved = 0;
    for (int index = 0; index < 4; index++) {
        ZF_ASSERT (children[index]->parent_count == 2); //  one given up for the late peer
        if (zf_sched_peer_has_parent (children[index], late)) {
            ZF_ASSERT (children[index]->reschedule);
            moved++;
        }
    }
    ZF_ASSERT (moved == ZF_SCHED_CHILDREN_MIN);
    s_check (sched);
    //  Served enough now: nothing changes again.
    ZF_ASSERT (zf_sched_adopt (sched, late, 0) == 0);
    ZF_ASSERT (late->child_count == ZF_SCHED_CHILDREN_MIN);
    zf_sched_destroy (&sched);
}

//  A late holder is given its share of the task's parent edges (less one), not only the
//  minimum: four parents with eight children each, the late one takes five, one at a time
//  from the busiest, and no early parent is left with fewer than it (docs/benchmarks.md
//  "Every holder its share of children").
static void s_test_adopt_share (void)
{
    zf_sched_params_t params;
    zf_sched_params_defaults (&params);
    params.upload_slots = params.seed_upload_slots = 16;
    params.parents_max = 4;
    params.random_seed = 7;
    zf_sched_t *sched = zf_sched_new (&params);
    zf_sched_peer_t *early[4];
    for (int index = 0; index < 4; index++) {
        char id[16];
        snprintf (id, sizeof id, "early%d", index);
        early[index] = s_running (sched, id, 0, 10); //  the late one's pieces too
    }
    for (int index = 0; index < 8; index++) {
        char id[16];
        snprintf (id, sizeof id, "child%d", index);
        zf_sched_peer_t *child = s_running (sched, id, 0, 0); //  holds nothing yet
        for (int parent = 0; parent < 4; parent++)
            zf_sched_edge_add (sched, child, early[parent]);
    }
    //  32 edges over 5 holders: a share of 6, so 5 wanted.
    zf_sched_peer_t *late = s_running (sched, "late", 8, 2);
    ZF_ASSERT (zf_sched_adopt (sched, late, 0) == 5 && late->child_count == 5);
    for (int index = 0; index < 4; index++)
        ZF_ASSERT (early[index]->child_count >= 6 && early[index]->child_count <= 7);
    s_check (sched);
    ZF_ASSERT (zf_sched_adopt (sched, late, 0) == 0);
    zf_sched_destroy (&sched);
}

static void s_test_select_filters (void)
{
    zf_sched_t *sched = s_sched_graph (2, true);
    zf_sched_host_t *hosts[6];
    for (int index = 0; index < 6; index++) {
        char id[16];
        snprintf (id, sizeof id, "h%d", index);
        hosts[index] = s_host (sched, id, false, "", "", 0);
    }
    //  A chain h1 <- h2 <- h3 (h2's parent is h1's peer), each with pieces h0's peer lacks.
    zf_sched_peer_t *p0 = s_peer (sched, TASK_A, hosts[0]);
    zf_sched_peer_t *p1 = s_peer (sched, TASK_A, hosts[1]);
    zf_sched_peer_t *p2 = s_peer (sched, TASK_A, hosts[2]);
    zf_sched_peer_t *p3 = s_peer (sched, TASK_A, hosts[3]);
    s_give (sched, p1, 0, 8);
    s_give (sched, p2, 0, 4);
    s_give (sched, p3, 0, 2);
    zf_sched_edge_add (sched, p2, p1);
    zf_sched_edge_add (sched, p3, p2);
    zf_sched_edge_add (sched, p1, p0); //  p0 feeds p1: p1, p2, p3 are p0's descendants
    s_give (sched, p0, 8, 1);
    zf_sched_peer_t *chosen[ZF_SCHED_PARENTS_MAX];
    size_t count = zf_sched_select (sched, p0, 0, chosen, 4);
    ZF_ASSERT (count == 0); //  acyclic: never a descendant, all three would close a cycle
    //  p3 may take its ancestors p1 and p0 (p2 is its parent already).
    count = zf_sched_select (sched, p3, 0, chosen, 4);
    ZF_ASSERT (count == 2 && chosen[0] != p2 && chosen[1] != p2 && chosen[0] != chosen[1]);
    //  Never itself: a second peer on the child's host is refused too.
    zf_sched_peer_t *p4 = s_peer (sched, TASK_A, hosts[4]);
    count = zf_sched_select (sched, p4, 0, chosen, 4);
    for (size_t index = 0; index < count; index++)
        ZF_ASSERT (chosen[index]->host != hosts[4]);
    //  Full hosts are skipped: h1 serves p2, then two more edges fill its 2 slots.
    zf_sched_peer_t *p5 = s_peer (sched, TASK_A, hosts[5]);
    zf_sched_edge_add (sched, p5, p1);
    ZF_ASSERT (hosts[1]->load == 2);
    count = zf_sched_select (sched, p4, 0, chosen, 4);
    for (size_t index = 0; index < count; index++)
        ZF_ASSERT (chosen[index] != p1);
    //  Bad hosts are skipped until their cool-down ends.
    hosts[2]->bad_until_ms = 1000;
    count = zf_sched_select (sched, p4, 0, chosen, 4);
    for (size_t index = 0; index < count; index++)
        ZF_ASSERT (chosen[index] != p2);
    count = zf_sched_select (sched, p4, 1000, chosen, 4);
    bool p2_back = false;
    for (size_t index = 0; index < count; index++)
        p2_back = p2_back || chosen[index] == p2;
    ZF_ASSERT (p2_back);
    //  A peer with nothing the child lacks is useless.
    s_give (sched, p4, 0, 8);
    count = zf_sched_select (sched, p4, 1000, chosen, 4);
    for (size_t index = 0; index < count; index++)
        ZF_ASSERT (chosen[index] == p0); //  only p0 has piece 8
    s_check (sched);
    zf_sched_destroy (&sched);
}

static void s_test_select_affinity (void)
{
    ZF_ASSERT (zf_sched_location_affinity ("eu|de|fra", "eu|de|ber") > 0.66);
    ZF_ASSERT (zf_sched_location_affinity ("eu|de|fra", "eu|de|ber") < 0.67);
    ZF_ASSERT (zf_sched_location_affinity ("eu", "us") == 0);
    ZF_ASSERT (zf_sched_location_affinity ("", "") == 0);
    ZF_ASSERT (zf_sched_location_affinity ("eu|de", "eu|de") == 1);
    zf_sched_t *sched = s_sched (8);
    zf_sched_host_t *child_host = s_host (sched, "child", false, "idc-1", "eu|de|fra", 0);
    zf_sched_host_t *far = s_host (sched, "far", false, "idc-2", "us|ca|sfo", 0);
    zf_sched_host_t *near = s_host (sched, "near", false, "idc-1", "eu|de|fra", 0);
    zf_sched_host_t *town = s_host (sched, "town", false, "idc-3", "eu|de|fra", 0);
    zf_sched_peer_t *child = s_peer (sched, TASK_A, child_host);
    zf_sched_peer_t *pfar = s_peer (sched, TASK_A, far);
    zf_sched_peer_t *pnear = s_peer (sched, TASK_A, near);
    zf_sched_peer_t *ptown = s_peer (sched, TASK_A, town);
    s_give (sched, pfar, 0, 8);
    s_give (sched, pnear, 0, 8);
    s_give (sched, ptown, 0, 8);
    zf_sched_peer_t *chosen[ZF_SCHED_PARENTS_MAX];
    size_t count = zf_sched_select (sched, child, 0, chosen, 3);
    ZF_ASSERT (count == 3 && chosen[0] == pnear && chosen[1] == ptown && chosen[2] == pfar);
    //  More finished pieces outrank location when the difference is large enough.
    s_give (sched, pfar, 8, 8);
    ZF_ASSERT (zf_sched_score (sched, child, pfar, 0) > zf_sched_score (sched, child, ptown, 0));
    zf_sched_destroy (&sched);
}

//  --- single flight -------------------------------------------------------------------------

static int s_triggers;
static zf_sched_peer_t *s_triggered;

static void s_on_trigger (zf_sched_peer_t *seed_peer, void *arg)
{
    (void) arg;
    s_triggers++;
    s_triggered = seed_peer;
}

static void s_test_single_flight (bool with_seed)
{
    zf_sched_t *sched = s_sched (8);
    if (with_seed)
        s_host (sched, "seed-1", true, "", "", 0);
    zf_sched_host_t *hosts[200];
    for (int index = 0; index < 200; index++) {
        char id[16];
        snprintf (id, sizeof id, "n%d", index);
        hosts[index] = s_host (sched, id, false, "", "", 0);
    }
    s_triggers = 0;
    int counts[3] = {0};
    zf_sched_peer_t *peers[200];
    for (int index = 0; index < 200; index++) {
        peers[index] = s_peer (sched, TASK_A, hosts[index]);
        counts[zf_sched_decide (sched, peers[index], 0, s_on_trigger, NULL)]++;
    }
    if (with_seed) {
        //  One trigger; the seed is every first child's parent until its 8 slots are full.
        ZF_ASSERT (s_triggers == 1 && counts[ZF_DECISION_SOURCE] == 0);
        ZF_ASSERT (counts[ZF_DECISION_PARENTS] == 8 && counts[ZF_DECISION_WAIT] == 192);
        ZF_ASSERT (zf_sched_peer_has_parent (peers[0], s_triggered) && s_triggered->host->seed);
        //  The seed registers: it is the source. Registers again: still one source.
        ZF_ASSERT (zf_sched_decide (sched, s_triggered, 0, s_on_trigger, NULL)
                   == ZF_DECISION_SOURCE);
    } else {
        ZF_ASSERT (s_triggers == 0 && counts[ZF_DECISION_SOURCE] == 1);
        ZF_ASSERT (counts[ZF_DECISION_WAIT] == 199);
        ZF_ASSERT (peers[0]->task->source == peers[0]);
    }
    //  Asking again changes nothing: still exactly one origin fetcher.
    for (int index = 1; index < 200; index++)
        ZF_ASSERT (zf_sched_decide (sched, peers[index], 0, s_on_trigger, NULL)
                   != ZF_DECISION_SOURCE);
    //  The source's first pieces serve the waiting: some get parents at once.
    zf_sched_peer_t *source = peers[0]->task->source;
    s_give (sched, source, 0, 2);
    zf_sched_task_t *woken[4];
    (void) zf_sched_take_wakes (sched, woken, 4); //  no parked list here: nothing queued
    int served = 0;
    for (int index = 0; index < 200; index++)
        served +=
            zf_sched_decide (sched, peers[index], 0, s_on_trigger, NULL) == ZF_DECISION_PARENTS;
    ZF_ASSERT (served >= 8);
    //  The source fails with others holding pieces but nobody the whole task: pieces nobody
    //  has would never come, so exactly one peer becomes the new origin fetcher.
    if (!with_seed) {
        zf_sched_peer_t *holder = NULL;
        for (int index = 1; index < 200 && !holder; index++)
            if (peers[index]->parent_count > 0)
                holder = peers[index];
        s_give (sched, holder, 0, 1);
        zf_sched_peer_remove (sched, source);
        int sources = 0;
        for (int index = 1; index < 200; index++)
            sources +=
                zf_sched_decide (sched, peers[index], 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE;
        ZF_ASSERT (sources == 1);
    }
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  --- measured rates ---------------------------------------------------------------------------

//  What a host can upload is learned from what its children report: a host seen uploading
//  80 KB/s that now uploads nothing has all of it free; one that uploads at its peak has none,
//  and ranks below an idle one of the same kind. An announced upload caps what is believed.
static void s_test_rates (void)
{
    zf_sched_t *sched = s_sched (16);
    zf_sched_host_t *busy = s_host (sched, "busy", false, "", "", 0);
    zf_sched_host_t *idle = s_host (sched, "idle", false, "", "", 0);
    zf_sched_host_t *child_host = s_host (sched, "child", false, "", "", 0);
    ZF_ASSERT (zf_sched_host_upload_capacity (busy) == 0); //  nothing seen yet
    //  Both uploaded 80,000 bytes a second for three seconds.
    for (int64_t ms = 0; ms <= 3000; ms += 100) {
        zf_sched_host_transferred (busy, child_host, 8000, 10000 + ms);
        zf_sched_host_transferred (idle, child_host, 8000, 10000 + ms);
    }
    ZF_ASSERT (zf_sched_host_upload_capacity (busy) > 75000);
    ZF_ASSERT (zf_sched_host_upload_capacity (busy) < 90000);
    ZF_ASSERT (child_host->downloaded.peak > 150000);
    //  Then only busy goes on uploading at that pace.
    for (int64_t ms = 3100; ms <= 6000; ms += 100)
        zf_sched_host_transferred (busy, child_host, 8000, 10000 + ms);
    int64_t now = 16050;
    ZF_ASSERT (zf_sched_host_upload_rate (idle, now) == 0);
    ZF_ASSERT (zf_sched_host_upload_rate (busy, now) > 75000);
    zf_sched_peer_t *child = s_peer (sched, TASK_A, child_host);
    zf_sched_peer_t *pbusy = s_peer (sched, TASK_A, busy);
    zf_sched_peer_t *pidle = s_peer (sched, TASK_A, idle);
    s_give (sched, pbusy, 0, 8);
    s_give (sched, pidle, 0, 8);
    ZF_ASSERT (zf_sched_score (sched, child, pidle, now)
               > zf_sched_score (sched, child, pbusy, now));
    //  An announced upload below what was measured caps it.
    zf_sched_host_info_t capped = {.upload_bandwidth = 1000};
    zf_sched_host_t *same = s_announce (sched, "busy", capped, now);
    ZF_ASSERT (same == busy && zf_sched_host_upload_capacity (busy) == 1000);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  A scheduler with `seeds` seed hosts, nodes n1 and n2 (*other), and n1's peer of TASK_A
//  (*peer), whose first decision triggered a seed (s_triggered) and made it n1's parent.
static zf_sched_t *s_sched_seeded (size_t seeds, zf_sched_peer_t **peer, zf_sched_host_t **other)
{
    zf_sched_t *sched = s_sched (8);
    const char *names[] = {"seed-1", "seed-2"};
    for (size_t index = 0; index < seeds && index < ZF_ARRAY_LEN (names); index++)
        s_host (sched, names[index], true, "", "", 0);
    zf_sched_host_t *node = s_host (sched, "n1", false, "", "", 0);
    *other = s_host (sched, "n2", false, "", "", 0);
    s_triggers = 0;
    *peer = s_peer (sched, TASK_A, node);
    ZF_ASSERT (zf_sched_decide (sched, *peer, 0, s_on_trigger, NULL) == ZF_DECISION_PARENTS);
    ZF_ASSERT (s_triggers == 1 && s_triggered->task->source == s_triggered);
    return sched;
}

static void s_test_seed_refused (void)
{
    zf_sched_peer_t *peer;
    zf_sched_host_t *other;
    zf_sched_t *sched = s_sched_seeded (1, &peer, &other);
    zf_sched_seed_refused (sched, s_triggered);
    ZF_ASSERT (peer->parent_count == 0 && peer->reschedule && !peer->task->source);
    //  Without a usable seed, the next to ask goes to the origin itself, once.
    ZF_ASSERT (zf_sched_decide (sched, peer, 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    zf_sched_peer_t *second = s_peer (sched, TASK_A, other);
    ZF_ASSERT (zf_sched_decide (sched, second, 0, s_on_trigger, NULL) == ZF_DECISION_WAIT);
    ZF_ASSERT (s_triggers == 1);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  A triggered seed fails at the origin (a private blob: the origin refuses the seed): the child
//  goes to the origin itself, and no seed (there are two) is triggered for the task again.
static void s_test_seed_failed (void)
{
    zf_sched_peer_t *peer;
    zf_sched_host_t *other;
    zf_sched_t *sched = s_sched_seeded (2, &peer, &other);
    zf_sched_seed_failed (sched, s_triggered);
    zf_sched_peer_remove (sched, s_triggered);
    ZF_ASSERT (peer->parent_count == 0 && !peer->task->source);
    ZF_ASSERT (zf_sched_decide (sched, peer, 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    zf_sched_peer_t *second = s_peer (sched, TASK_A, other);
    ZF_ASSERT (zf_sched_decide (sched, second, 0, s_on_trigger, NULL) == ZF_DECISION_WAIT);
    //  The first child fails as well: the second takes over, still without a seed.
    zf_sched_seed_failed (sched, peer);
    zf_sched_peer_remove (sched, peer);
    ZF_ASSERT (zf_sched_decide (sched, second, 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (s_triggers == 1);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  The origin fails the seed, then the peer that took the flight over (an origin that died):
//  from then on every peer that asks fetches from the origin itself, at once, rather than each
//  in turn after the last one's retries.
static void s_test_origin_failed (void)
{
    zf_sched_peer_t *peer;
    zf_sched_host_t *other;
    zf_sched_t *sched = s_sched_seeded (1, &peer, &other);
    zf_sched_peer_t *second = s_peer (sched, TASK_A, other);
    zf_sched_peer_t *third = s_peer (sched, TASK_A, s_host (sched, "n3", false, "", "", 0));
    zf_sched_seed_failed (sched, s_triggered);
    zf_sched_origin_failed (sched, s_triggered); //  a seed's failure alone ends no flight
    zf_sched_peer_remove (sched, s_triggered);
    ZF_ASSERT (!peer->task->origin_failed);
    ZF_ASSERT (zf_sched_decide (sched, peer, 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (zf_sched_decide (sched, second, 0, s_on_trigger, NULL) == ZF_DECISION_WAIT);
    zf_sched_origin_failed (sched, peer);
    zf_sched_peer_remove (sched, peer);
    ZF_ASSERT (zf_sched_decide (sched, second, 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (zf_sched_decide (sched, third, 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (s_triggers == 1);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  The same, with the others already waiting on each other (integration.preheat, all_peers:
//  the edges asked first and the seeds' own requests came while the triggered seed failed):
//  the other seed was given the failed one as a parent, the failed seed asks again. Nobody
//  fetches and nobody holds a piece, so parents can give nothing: the one asking now fetches
//  from the origin. (Before, it was given the other seed, which held nothing, as a parent;
//  every peer waited on peers that waited too until sched_fallback sent two to the origin.)
static void s_test_seed_failed_while_waiting (void)
{
    zf_sched_peer_t *peer;
    zf_sched_host_t *other;
    zf_sched_t *sched = s_sched_seeded (2, &peer, &other);
    zf_sched_host_t *failed_host = s_triggered->host;
    zf_sched_host_t *other_seed =
        zf_sched_host_find (sched, streq (failed_host->id, "seed-1") ? "seed-2" : "seed-1");
    zf_sched_peer_t *seed = s_peer (sched, TASK_A, other_seed);
    ZF_ASSERT (zf_sched_decide (sched, seed, 0, s_on_trigger, NULL) == ZF_DECISION_PARENTS);
    zf_sched_seed_failed (sched, s_triggered);
    zf_sched_peer_remove (sched, s_triggered);
    ZF_ASSERT (!peer->task->source && peer->task->holders == 0);
    zf_sched_peer_t *again = s_peer (sched, TASK_A, failed_host);
    ZF_ASSERT (zf_sched_decide (sched, again, 0, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (again->parent_count == 0 && peer->task->source == again);
    //  The others now wait for it (or take it as a parent): one origin fetch.
    ZF_ASSERT (zf_sched_decide (sched, seed, 0, s_on_trigger, NULL) != ZF_DECISION_SOURCE);
    ZF_ASSERT (zf_sched_decide (sched, peer, 0, s_on_trigger, NULL) != ZF_DECISION_SOURCE);
    ZF_ASSERT (s_triggers == 1);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  A scheduler restarted while a seed fetched a task for 3 peers, which register again
//  ("resumed") before the seed does: none becomes another origin fetcher while the seed may
//  still come (on the old code the first to register was told "source", and each one after
//  that the first reported pieces), the seed takes the flight back with "source", and only a
//  task whose grace ran out with no origin fetcher gets a new one.
static void s_test_resumed (void)
{
    zf_sched_t *sched = s_sched (8);
    s_triggers = 0;
    const int64_t grace = zf_sched_params (sched)->resume_grace_ms;
    zf_sched_peer_t *first = s_peer (sched, TASK_A, s_host (sched, "n1", false, "", "", 0));
    zf_sched_peer_resumed (sched, first, false, 0);
    ZF_ASSERT (zf_sched_decide (sched, first, 0, s_on_trigger, NULL) == ZF_DECISION_WAIT);
    s_give (sched, first, 0, 4); //  its report, sent while it waits
    zf_sched_peer_t *second = s_peer (sched, TASK_A, s_host (sched, "n2", false, "", "", 0));
    zf_sched_peer_resumed (sched, second, false, 1000);
    ZF_ASSERT (zf_sched_decide (sched, second, 1000, s_on_trigger, NULL) == ZF_DECISION_PARENTS);
    ZF_ASSERT (!first->task->source && s_triggers == 0);
    //  The seed finds the scheduler again: the flight is its own.
    zf_sched_peer_t *seed = s_peer (sched, TASK_A, s_host (sched, "seed", true, "", "", 0));
    zf_sched_peer_resumed (sched, seed, true, 2000);
    ZF_ASSERT (zf_sched_decide (sched, seed, 2000, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (first->task->source == seed && s_triggers == 0);
    ZF_ASSERT (zf_sched_decide (sched, first, 2000, s_on_trigger, NULL) == ZF_DECISION_PARENTS);
    //  Another task whose origin fetcher never comes back: after the grace, one peer takes it.
    zf_sched_peer_t *lone = s_peer (sched, TASK_B, first->host);
    zf_sched_peer_resumed (sched, lone, false, 0);
    s_give (sched, lone, 0, 2);
    zf_sched_peer_t *other = s_peer (sched, TASK_B, second->host);
    zf_sched_peer_resumed (sched, other, false, 0);
    ZF_ASSERT (zf_sched_decide (sched, other, grace - 1, s_on_trigger, NULL)
               == ZF_DECISION_PARENTS);
    ZF_ASSERT (zf_sched_decide (sched, lone, grace - 1, s_on_trigger, NULL) != ZF_DECISION_SOURCE);
    ZF_ASSERT (zf_sched_decide (sched, other, grace, s_on_trigger, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (zf_sched_decide (sched, lone, grace, s_on_trigger, NULL) != ZF_DECISION_SOURCE);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  --- health ----------------------------------------------------------------------------------

static void s_test_bad_host (void)
{
    zf_sched_t *sched = s_sched (8);
    zf_sched_host_t *parent_host = s_host (sched, "flaky", false, "", "", 0);
    zf_sched_host_t *child_host = s_host (sched, "child", false, "", "", 0);
    zf_sched_peer_t *parent = s_peer (sched, TASK_A, parent_host);
    zf_sched_peer_t *child = s_peer (sched, TASK_A, child_host);
    s_give (sched, parent, 0, 4);
    //  Failures from four children spread over more than the window: not bad.
    for (int64_t at = 0; at < 4; at++)
        ZF_ASSERT (!zf_sched_host_failure (sched, parent_host, 100 + (uint32_t) at, at * 20000));
    //  One child reporting again and again: one reporter, not bad.
    zf_sched_edge_add (sched, child, parent);
    int64_t now = 100000;
    for (int index = 0; index < 10; index++)
        ZF_ASSERT (!zf_sched_host_failure (sched, parent_host, 200, now + index));
    //  Three different children within 30 s: bad, its children dropped, skipped until the
    //  cool-down ends.
    ZF_ASSERT (!zf_sched_host_failure (sched, parent_host, 201, now + 10));
    ZF_ASSERT (zf_sched_host_failure (sched, parent_host, 202, now + 11));
    now += 7;
    ZF_ASSERT (child->parent_count == 0 && child->reschedule);
    zf_sched_peer_t *chosen[ZF_SCHED_PARENTS_MAX];
    ZF_ASSERT (zf_sched_select (sched, child, now + 1000, chosen, 4) == 0);
    ZF_ASSERT (zf_sched_select (sched, child, now + 4 + 60000, chosen, 4) == 1);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  A task whose origin fetcher, on host source_id, holds pieces 0-3, and a child on host
//  child_id that takes them from it.
static void s_source_and_child (zf_sched_t *sched, const char *source_id, const char *child_id,
                                zf_sched_peer_t **source, zf_sched_peer_t **child)
{
    *source = s_peer (sched, TASK_A, s_host (sched, source_id, false, "", "", 0));
    *child = s_peer (sched, TASK_A, s_host (sched, child_id, false, "", "", 0));
    ZF_ASSERT (zf_sched_decide (sched, *source, 0, NULL, NULL) == ZF_DECISION_SOURCE);
    s_give (sched, *source, 0, 4);
    ZF_ASSERT (zf_sched_decide (sched, *child, 0, NULL, NULL) == ZF_DECISION_PARENTS);
}

//  A task's origin fetcher whose host is marked bad (its children cannot reach it: it died)
//  fetches for nobody: the flight is released at once, not when the host's announces stop
//  counting (host_timeout, 15 s later), and a peer that holds pieces takes it over.
static void s_test_bad_source (void)
{
    zf_sched_t *sched = s_sched (8);
    zf_sched_peer_t *source, *child;
    s_source_and_child (sched, "dead", "child", &source, &child);
    zf_sched_host_t *dead = source->host;
    s_give (sched, child, 0, 2);
    ZF_ASSERT (!zf_sched_host_failure (sched, dead, 201, 1000));
    ZF_ASSERT (!zf_sched_host_failure (sched, dead, 202, 1001));
    ZF_ASSERT (child->task->source == source); //  not bad yet: still the task's fetcher
    ZF_ASSERT (zf_sched_host_failure (sched, dead, 203, 1002));
    ZF_ASSERT (!child->task->source && child->reschedule && child->parent_count == 0);
    ZF_ASSERT (zf_sched_decide (sched, child, 1003, NULL, NULL) == ZF_DECISION_SOURCE);
    ZF_ASSERT (child->task->source == child);
    //  The bad host's peer is one that runs now; it does not get the flight back.
    ZF_ASSERT (zf_sched_decide (sched, source, 1004, NULL, NULL) != ZF_DECISION_SOURCE);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  A task with fewer peers than it takes to make a host bad (3): once every other peer reported
//  its origin fetcher failed, the flight goes to one of them; not while one has not.
static void s_test_few_report_source (void)
{
    zf_sched_t *sched = s_sched (8);
    zf_sched_peer_t *source, *child;
    s_source_and_child (sched, "dead", "child", &source, &child);
    zf_sched_peer_t *other = s_peer (sched, TASK_A, s_host (sched, "other", false, "", "", 0));
    ZF_ASSERT (zf_sched_decide (sched, other, 0, NULL, NULL) == ZF_DECISION_PARENTS);
    ZF_ASSERT (!zf_sched_parent_failed (sched, child, source, true, 1000));
    ZF_ASSERT (child->task->source == source); //  "other" still reaches it
    ZF_ASSERT (!zf_sched_parent_failed (sched, other, source, true, 1001));
    ZF_ASSERT (!child->task->source && !zf_sched_host_is_bad (source->host, 1002));
    ZF_ASSERT (zf_sched_decide (sched, child, 1002, NULL, NULL) == ZF_DECISION_SOURCE);
    //  "slow" does not count: a busy origin fetcher keeps its flight.
    ZF_ASSERT (!zf_sched_parent_failed (sched, other, child, false, 1003));
    ZF_ASSERT (child->task->source == child);
    s_check (sched);
    zf_sched_destroy (&sched);
}

static void s_test_expiry (void)
{
    zf_sched_t *sched = s_sched (8);
    zf_sched_peer_t *source, *child;
    s_source_and_child (sched, "gone", "alive", &source, &child);
    //  "alive" keeps announcing, "gone" stops: after host_timeout only "gone" is removed.
    s_host (sched, "alive", false, "", "", 14000);
    ZF_ASSERT (zf_sched_expire_hosts (sched, 14000, NULL, NULL) == 0);
    ZF_ASSERT (zf_sched_expire_hosts (sched, 15001, NULL, NULL) == 1);
    ZF_ASSERT (!zf_sched_host_find (sched, "gone") && zf_sched_host_count (sched) == 1);
    ZF_ASSERT (child->parent_count == 0 && child->reschedule && !child->task->source);
    ZF_ASSERT (child->task->holders == 0);
    //  Nobody holds anything now: the child goes to the origin (the flight was released).
    ZF_ASSERT (zf_sched_decide (sched, child, 15001, NULL, NULL) == ZF_DECISION_SOURCE);
    s_check (sched);
    zf_sched_destroy (&sched);
}

//  --- churn -----------------------------------------------------------------------------------

static void s_churn_step (zf_sched_t *sched, zf_sched_host_t **hosts, size_t host_count,
                          uint64_t *state, int64_t now)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t roll = *state >> 33;
    zf_sched_host_t *host = hosts[roll % host_count];
    char task_id[80];
    snprintf (task_id, sizeof task_id, "%064" PRIu64, (roll >> 8) % 4);
    zf_sched_task_t *task = zf_sched_task_find (sched, task_id);
    zf_sched_peer_t *peer = task ? zf_sched_peer_find (sched, task, host) : NULL;
    switch ((roll >> 16) % 10) {
    case 0:
    case 1:
    case 2: //  register / reschedule
        if (!peer)
            peer = s_peer (sched, task_id, host);
        zf_sched_decide (sched, peer, now, NULL, NULL);
        break;
    case 3:
    case 4: //  pieces
        if (peer)
            s_give (sched, peer, (roll >> 20) % 16, 1 + (roll >> 24) % 3);
        break;
    case 5: //  a parent fails
        if (peer && peer->parent_count > 0)
            zf_sched_parent_failed (sched, peer, peer->parents[0], true, now);
        break;
    case 6: //  finished
        if (peer)
            zf_sched_peer_finish (sched, peer);
        break;
    case 7: //  leaves the task
        if (peer)
            zf_sched_peer_remove (sched, peer);
        break;
    case 8: //  the host vanishes and comes back (a new serial, no peers)
        if ((roll >> 40) % 4 == 0) {
            char id[64];
            zf_strlcpy (id, host->id, sizeof id);
            bool seed = host->seed;
            zf_sched_host_remove (sched, host);
            hosts[roll % host_count] = s_host (sched, id, seed, "x", "eu|de", now);
        }
        break;
    default: //  reschedule with a bigger parent set wanted
        if (peer && peer->state != ZF_PEER_FINISHED)
            zf_sched_decide (sched, peer, now, NULL, NULL);
        break;
    }
}

static void s_test_churn (void)
{
    zf_sched_params_t params;
    zf_sched_params_defaults (&params);
    params.upload_slots = 3;
    params.random_seed = 7;
    params.bad_failures = 3;
    zf_sched_t *sched = zf_sched_new (&params);
    zf_sched_host_t *hosts[24];
    for (size_t index = 0; index < ZF_ARRAY_LEN (hosts); index++) {
        char id[16];
        snprintf (id, sizeof id, "c%zu", index);
        hosts[index] = s_host (sched, id, index < 2, index % 3 ? "x" : "y", "eu|de", 0);
    }
    uint64_t state = 12345;
    size_t edges_seen = 0;
    for (int step = 0; step < 20000; step++) {
        s_churn_step (sched, hosts, ZF_ARRAY_LEN (hosts), &state, step * 7);
        s_check (sched); //  consistency and acyclicity after every operation
        zf_sched_task_t *woken[8];
        while (zf_sched_take_wakes (sched, woken, 8))
            ;
        for (size_t index = 0; index < ZF_ARRAY_LEN (hosts); index++)
            edges_seen += hosts[index]->load;
    }
    ZF_ASSERT (edges_seen > 10000); //  the churn did build graphs
    if (s_verbose)
        printf ("  churn: %zu edge-steps, %zu peers left\n", edges_seen,
                zf_sched_peer_count (sched));
    zf_sched_destroy (&sched);
}

//  --- ring ------------------------------------------------------------------------------------

void zf_sched_ring_test (bool verbose)
{
    zf_sched_ring_t *ring = zf_sched_ring_new (0);
    ZF_ASSERT (zf_sched_ring_lookup (ring, "x") == NULL);
    const char *members[] = {"scheduler@s1", "scheduler@s2", "scheduler@s3", "scheduler@s4",
                             "scheduler@s5"};
    for (size_t index = 0; index < ZF_ARRAY_LEN (members); index++)
        zf_sched_ring_add (ring, members[index]);
    enum { KEYS = 20000 };
    char **owner = zf_calloc (KEYS, sizeof (char *));
    size_t per_member[5] = {0};
    for (int key = 0; key < KEYS; key++) {
        char id[80];
        snprintf (id, sizeof id, "%064x", key * 2654435761u);
        owner[key] = zf_strdup (zf_sched_ring_lookup (ring, id));
        for (size_t index = 0; index < 5; index++)
            per_member[index] += streq (owner[key], members[index]);
    }
    for (size_t index = 0; index < 5; index++) {
        if (verbose)
            printf ("  ring: %s owns %zu of %d\n", members[index], per_member[index], KEYS);
        ZF_ASSERT (per_member[index] > KEYS / 5 * 7 / 10 && per_member[index] < KEYS / 5 * 13 / 10);
    }
    //  Dead or removed, s3 loses exactly its own keys; nobody else's move.
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
            zf_sched_ring_set_alive (ring, "scheduler@s3", false);
        else
            zf_sched_ring_remove (ring, "scheduler@s3");
        for (int key = 0; key < KEYS; key++) {
            char id[80];
            snprintf (id, sizeof id, "%064x", key * 2654435761u);
            const char *now = zf_sched_ring_lookup (ring, id);
            ZF_ASSERT (!streq (now, "scheduler@s3"));
            if (!streq (owner[key], "scheduler@s3"))
                ZF_ASSERT (streq (now, owner[key]));
        }
    }
    //  Back again: exactly the old owners, whatever the order of adds.
    zf_sched_ring_add (ring, "scheduler@s3");
    for (int key = 0; key < KEYS; key++) {
        char id[80];
        snprintf (id, sizeof id, "%064x", key * 2654435761u);
        ZF_ASSERT (streq (zf_sched_ring_lookup (ring, id), owner[key]));
        zf_free (owner[key]);
    }
    zf_free (owner);
    for (size_t index = 0; index < ZF_ARRAY_LEN (members); index++)
        zf_sched_ring_set_alive (ring, members[index], false);
    ZF_ASSERT (zf_sched_ring_lookup (ring, "x") == NULL);
    zf_sched_ring_destroy (&ring);
}

void zf_scheduler_test (bool verbose)
{
    s_verbose = verbose;
    s_test_model ();
    s_test_select_filters ();
    s_test_select_mesh ();
    s_test_select_affinity ();
    s_test_adopt (false);
    s_test_adopt (true);
    s_test_adopt_share ();
    s_test_single_flight (false);
    s_test_single_flight (true);
    s_test_seed_refused ();
    s_test_seed_failed ();
    s_test_origin_failed ();
    s_test_seed_failed_while_waiting ();
    s_test_resumed ();
    s_test_rates ();
    s_test_bad_host ();
    s_test_bad_source ();
    s_test_few_report_source ();
    s_test_expiry ();
    s_test_churn ();
    zf_sched_ring_test (verbose);
}
