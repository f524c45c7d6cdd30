/*  zf_manager_swarm.c — one task's swarm as its scheduler sees it, read through the manager.

        GET /api/v1/tasks/{id}/swarm[?cluster_id=N]     {id}: a task id, or a blob's
                                                          digest (sha256:HEX) that names one

    The manager keeps no swarm state: the scheduler that owns the task does. The manager finds
    it as every node does, by the consistent-hash ring (zf_sched_ring) over the cluster's
    active schedulers, asks it with scheduler.state, and answers with its scheduler.dump as
    JSON: the task's peers, each with its state, its current parents and the bytes it received
    from each source (the origin, a seed, another peer). Without cluster_id it asks each
    cluster with active schedulers in turn and answers with the first that knows the task.
    Read-only; any token. (Schedulers admit the manager's key: actors/join/zf_join.c.)

        {"task_id", "cluster_id", "scheduler", "truncated", "piece_count", "piece_length",
         "content_length", "source",
         "peers": [{"host_id", "state", "finished_count", "seed", "parents": [host ids],
                    "received": [{"from": host id | "source" | "others", "bytes"}]}]}

    404 when no asked scheduler knows the task (a task is forgotten when its last peer
    leaves); 503 when none could be asked or none answered, naming which. */
#include "zf_log.h"
#include "zf_manager_internal.h"
#include "zf_sched_ring.h"
#include "zf_task_id.h"

#define S_ASK_TIMEOUT_MS 5000
#define S_CLUSTERS_MAX   64 //  clusters asked for one task, in id order

typedef struct {
    int64_t id;
    zf_sched_ring_t *ring;
    json_t *routes; //  {"scheduler@NAME": [endpoint, key]}
} s_cluster_t;

//  One request in flight: the clusters still to ask and what went wrong so far.
typedef struct {
    zf_manager_t *manager;
    zf_rest_request_t *request;
    char task_id[65];
    s_cluster_t clusters[S_CLUSTERS_MAX];
    size_t cluster_count, next;
    char asked[256];    //  "scheduler@a (cluster 1), …" for the 404 message
    char failures[512]; //  what failed, for the 503 message
} s_ask_t;

static void s_ask_destroy (s_ask_t **self_p)
{
    s_ask_t *self = *self_p;
    for (size_t index = 0; index < self->cluster_count; index++) {
        zf_sched_ring_destroy (&self->clusters[index].ring);
        json_decref (self->clusters[index].routes);
    }
    zf_free (self);
    *self_p = NULL;
}

//  The manager ended with the scheduler's answer still to come: the REST server, destroyed
//  first, answered the HTTP request (503) and freed it; what the ask holds is freed here.
static void s_ask_drop (void *arg)
{
    s_ask_t *self = arg;
    s_ask_destroy (&self);
}

static void s_append (char *text, size_t size, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static void s_append (char *text, size_t size, const char *fmt, ...)
{
    size_t used = strlen (text);
    if (used + 4 >= size)
        return;
    if (used)
        used += (size_t) snprintf (text + used, size - used, "; ");
    va_list args;
    va_start (args, fmt);
    vsnprintf (text + used, size - used, fmt, args);
    va_end (args);
}

static bool s_task_id_valid (const char *text)
{
    if (strlen (text) != 64)
        return false;
    for (const char *cursor = text; *cursor; cursor++)
        if (!isxdigit ((unsigned char) *cursor) || isupper ((unsigned char) *cursor))
            return false;
    return true;
}

static json_t *s_dump_json (const zf_msg_scheduler_dump_t *dump, int64_t cluster_id,
                            const char *scheduler)
{
    json_t *peers = json_array ();
    const zf_rec_sched_peer_t *items = dump->peers.items;
    for (size_t index = 0; index < dump->peers.count; index++) {
        const zf_rec_sched_peer_t *peer = &items[index];
        json_t *parents = json_array ();
        char **names = peer->parents.items;
        for (size_t parent = 0; parent < peer->parents.count; parent++)
            json_array_append_new (parents, json_string (names[parent]));
        json_t *received = json_array ();
        const zf_rec_sched_received_t *sources = peer->received.items;
        for (size_t source = 0; source < peer->received.count; source++)
            json_array_append_new (received,
                                   json_pack ("{s:s, s:I}", "from", sources[source].from, "bytes",
                                              (json_int_t) sources[source].bytes));
        json_array_append_new (
            peers, json_pack ("{s:s, s:s, s:I, s:b, s:o, s:o}", "host_id", peer->host_id, "state",
                              peer->state, "finished_count", (json_int_t) peer->finished_count,
                              "seed", peer->seed, "parents", parents, "received", received));
    }
    return json_pack ("{s:s, s:I, s:s, s:b, s:I, s:I, s:I, s:s, s:o}", "task_id", dump->task_id,
                      "cluster_id", (json_int_t) cluster_id, "scheduler", scheduler, "truncated",
                      dump->truncated, "piece_count", (json_int_t) dump->piece_count,
                      "piece_length", (json_int_t) dump->piece_length, "content_length",
                      (json_int_t) dump->content_length, "source", dump->source, "peers", peers);
}

static void s_ask_next (s_ask_t *self);

static void s_on_dump (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    s_ask_t *self = arg;
    const s_cluster_t *cluster = &self->clusters[self->next - 1];
    const char *owner = zf_sched_ring_lookup (cluster->ring, self->task_id);
    if (status != ZF_OK || !streq (reply->env.type, ZF_MSG_SCHEDULER_DUMP)) {
        s_append (self->failures, sizeof self->failures, "%s (cluster %" PRId64 "): %s", owner,
                  cluster->id, status != ZF_OK ? err->message : "unexpected reply");
        s_ask_next (self);
        return;
    }
    const zf_msg_scheduler_dump_t *dump = reply->env.body;
    if (!dump->found) {
        s_ask_next (self);
        return;
    }
    zf_rest_reply_json (self->request, 200, s_dump_json (dump, cluster->id, owner));
    s_ask_destroy (&self);
}

//  Asks the owner of the task in the next cluster, or answers when none is left.
static void s_ask_next (s_ask_t *self)
{
    while (self->next < self->cluster_count) {
        s_cluster_t *cluster = &self->clusters[self->next++];
        const char *owner = zf_sched_ring_lookup (cluster->ring, self->task_id);
        json_t *route = json_object_get (cluster->routes, owner);
        zf_error_t err;
        if (zf_node_learn_route (zf_manager_node (self->manager), owner,
                                 json_string_value (json_array_get (route, 0)), NULL,
                                 json_string_value (json_array_get (route, 1)), &err)
                != ZF_OK
            && err.code != ZF_E_INVALID) {
            s_append (self->failures, sizeof self->failures, "%s (cluster %" PRId64 "): %s", owner,
                      cluster->id, err.message);
            continue;
        }
        s_append (self->asked, sizeof self->asked, "%s (cluster %" PRId64 ")", owner, cluster->id);
        zf_msg_scheduler_state_t body = {.task_id = self->task_id};
        zf_bus_call_t call = {.timeout_ms = S_ASK_TIMEOUT_MS, .retries = 1, .drop = s_ask_drop};
        if (zf_bus_request (zf_manager_bus (self->manager), owner, &zf_msg_scheduler_state, &body,
                            NULL, call, s_on_dump, self, &err)
            == ZF_OK)
            return; //  s_on_dump goes on
        s_append (self->failures, sizeof self->failures, "%s (cluster %" PRId64 "): %s", owner,
                  cluster->id, err.message);
    }
    if (*self->failures)
        zf_rest_reply_error (self->request, 503, "unavailable",
                             "task %s: not found where asked (%s), and some schedulers could not "
                             "be asked: %s",
                             self->task_id, *self->asked ? self->asked : "nowhere", self->failures);
    else if (self->cluster_count == 0)
        zf_rest_reply_error (self->request, 404, "not_found",
                             "task %s: no cluster has an active scheduler to ask", self->task_id);
    else
        zf_rest_reply_error (self->request, 404, "not_found",
                             "no scheduler knows task %s (asked %s); a task is forgotten when its "
                             "last peer leaves",
                             self->task_id, self->asked);
    s_ask_destroy (&self);
}

//  The active schedulers, grouped by cluster into rings named as nodes name them.
static bool s_load_clusters (s_ask_t *self, int64_t only_cluster, zf_error_t *err)
{
    int64_t total = 0;
    json_t *items = zf_members_schedulers_list (zf_manager_db (self->manager), only_cluster, 1,
                                                ZF_REST_PER_PAGE_MAX, &total, err);
    if (!items)
        return false;
    size_t index;
    json_t *item;
    json_array_foreach (items, index, item)
    {
        const char *state = json_string_value (json_object_get (item, "state"));
        if (!state || !streq (state, "active"))
            continue;
        int64_t cluster_id = json_integer_value (json_object_get (item, "cluster_id"));
        s_cluster_t *cluster = NULL;
        for (size_t known = 0; known < self->cluster_count && !cluster; known++)
            if (self->clusters[known].id == cluster_id)
                cluster = &self->clusters[known];
        if (!cluster) {
            if (self->cluster_count == S_CLUSTERS_MAX)
                continue;
            cluster = &self->clusters[self->cluster_count++];
            *cluster = (s_cluster_t){.id = cluster_id,
                                     .ring = zf_sched_ring_new (ZF_SCHED_RING_VNODES),
                                     .routes = json_object ()};
        }
        char *name =
            zf_asprintf ("scheduler@%s", json_string_value (json_object_get (item, "name")));
        zf_sched_ring_add (cluster->ring, name);
        json_object_set_new (cluster->routes, name,
                             json_pack ("[O, O]", json_object_get (item, "endpoint"),
                                        json_object_get (item, "public_key")));
        zf_free (name);
    }
    json_decref (items);
    //  Clusters in id order, as the schedulers list gives them by scheduler id.
    for (size_t left = 0; left < self->cluster_count; left++)
        for (size_t right = left + 1; right < self->cluster_count; right++)
            if (self->clusters[right].id < self->clusters[left].id) {
                s_cluster_t swap = self->clusters[left];
                self->clusters[left] = self->clusters[right];
                self->clusters[right] = swap;
            }
    return true;
}

static void s_swarm_get (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    const char *task_id = zf_rest_param (request, "id");
    //  A blob's digest names its task (without tag or application, as the proxy keys layers).
    char computed[ZF_TASK_ID_SIZE + 1], digest[ZF_DIGEST_TEXT_SIZE + 1];
    if (strncmp (task_id, "sha256:", 7) == 0) {
        zf_error_t err;
        if (zf_task_id_compute (NULL, task_id, NULL, NULL, NULL, computed, digest, &err) != ZF_OK) {
            zf_rest_reply_error (request, 400, "invalid", "id: %s", err.message);
            return;
        }
        task_id = computed;
    }
    if (!s_task_id_valid (task_id)) {
        zf_rest_reply_error (request, 400, "invalid",
                             "id: a task id is 64 lowercase hex characters, or give a blob's "
                             "digest as sha256:<64 lowercase hex>");
        return;
    }
    int64_t cluster_id = 0;
    const char *cluster_text = zf_rest_query (request, "cluster_id");
    if (cluster_text) {
        char *end = NULL;
        long long value = strtoll (cluster_text, &end, 10);
        if (!*cluster_text || *end || value < 1) {
            zf_rest_reply_error (request, 400, "invalid", "cluster_id must be a positive number");
            return;
        }
        cluster_id = value;
    }
    s_ask_t *ask = zf_calloc (1, sizeof *ask);
    ask->manager = manager;
    ask->request = request;
    zf_strlcpy (ask->task_id, task_id, sizeof ask->task_id);
    zf_error_t err;
    if (!s_load_clusters (ask, cluster_id, &err)) {
        zf_manager_reply_failure (request, &err);
        s_ask_destroy (&ask);
        return;
    }
    s_ask_next (ask);
}

void zf_manager_swarm_register (zf_rest_t *rest, zf_manager_t *manager)
{
    zf_rest_route (rest, "GET", "/api/v1/tasks/{id}/swarm", ZF_REST_READ, s_swarm_get, manager);
}
