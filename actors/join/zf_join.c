/*  zf_join.c — the join actor: joins the manager, follows the cluster, caches what it learned. */
#include "zf_join.h"
#include "zf_bus.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "zf_msgs.h"
#include "zf_secret.h"
#include <jansson.h>
#include <unistd.h>

typedef struct {
    const char *name;
    const zf_join_config_t *config;
    zf_node_t *node;
    zf_bus_t *bus;
    zloop_t *loop;
    int timer_id;     //  the next join attempt
    bool in_flight;   //  a join request is out
    int64_t retry_ms; //  current backoff
    json_t *view;     //  the last view (a manager.joined as JSON), NULL before any
    uint64_t cluster_id;
    uint64_t members_version;
    bool reachable;                     //  the last join got an answer
    size_t scheduler_count, seed_count; //  in the last view applied (SIZE_MAX before any)
    bool subscribed;
    uint64_t resync_version; //  the announced version that last made this node ask again
    zf_gauge_t *member_gauge;
    zf_gauge_t *joined_gauge;
    char manager_key[ZF_KEY_TEXT]; //  the manager's CURVE key, "" when insecure
    bool stopping;                 //  the node stops: no join may follow its manager.leave
    bool leave_pending;            //  manager.leave is out, unanswered
} self_t;

//  A stopping node waits this long at most for the manager to hear manager.leave.
#define LEAVE_TIMEOUT_MS 1000

static void s_schedule (self_t *self, int64_t delay_ms);

static void s_count (const char *result)
{
    zf_counter_add (zf_metrics_counter ("zfly_join_attempts_total",
                                        "Joins and refreshes sent to the manager, by result",
                                        "result", result, NULL),
                    1);
}

//  ---------------------------------------------------------------------------------------------
//  The view: routes, members, the local event, the cache

static const char *s_string (json_t *object, const char *key)
{
    const char *value = json_string_value (json_object_get (object, key));
    return value ? value : "";
}

static void s_log_revoked (self_t *self, const char *key)
{
    zf_notice (self->name, "member key=%s revoked: refused from now on", key);
}

//  Applies a view (from the manager or the cache) to this process.
static void s_apply (self_t *self, json_t *view, bool from_cache)
{
    json_t *schedulers = json_object_get (view, "schedulers");
    json_t *seeds = json_object_get (view, "seed_peers");
    json_t *members = json_object_get (view, "members");
    size_t scheduler_count = json_array_size (schedulers), seed_count = json_array_size (seeds);
    char **scheduler_names = zf_calloc (scheduler_count + 1, sizeof *scheduler_names);
    char **seed_names = zf_calloc (seed_count + 1, sizeof *seed_names);
    zf_error_t err;
    size_t scheduler_used = 0, seed_used = 0;
    for (size_t index = 0; index < scheduler_count; index++) {
        json_t *item = json_array_get (schedulers, index);
        char *route = zf_asprintf ("scheduler@%s", s_string (item, "name"));
        if (zf_node_learn_route (self->node, route, s_string (item, "endpoint"), NULL,
                                 s_string (item, "key"), &err)
            == ZF_OK)
            scheduler_names[scheduler_used++] = route;
        else {
            zf_warning (self->name, "scheduler %s ignored: %s", route, err.message);
            zf_free (route);
        }
    }
    for (size_t index = 0; index < seed_count; index++) {
        json_t *item = json_array_get (seeds, index);
        char *storage = zf_asprintf ("storage@%s", s_string (item, "name"));
        char *fetcher = zf_asprintf ("fetcher@%s", s_string (item, "name"));
        bool ok = zf_node_learn_route (self->node, storage, s_string (item, "storage"), NULL,
                                       s_string (item, "key"), &err)
                  == ZF_OK;
        if (ok && *s_string (item, "fetcher"))
            zf_node_learn_route (self->node, fetcher, s_string (item, "fetcher"), NULL,
                                 s_string (item, "key"), NULL);
        zf_free (fetcher);
        if (ok)
            seed_names[seed_used++] = storage;
        else
            zf_free (storage);
    }
    size_t member_count = json_array_size (members);
    const char **keys = zf_calloc (member_count + 2, sizeof *keys);
    for (size_t index = 0; index < member_count; index++)
        keys[index] = json_string_value (json_array_get (members, index));
    //  The manager itself is admitted too: it decides who the members are anyway, and it asks
    //  schedulers for a task's swarm (GET /api/v1/tasks/{id}/swarm).
    size_t admitted = member_count;
    if (*self->manager_key)
        keys[admitted++] = self->manager_key;
    //  Keys the view leaves out are revoked: said as manager.changed's are (s_on_changed), for
    //  the view that brings a revocation whose event this node missed (its events connection
    //  not up again after the manager restarted).
    zlistx_t *revoked = zlistx_new ();
    zlistx_set_duplicator (revoked, (zlistx_duplicator_fn *) strdup);
    zlistx_set_destructor (revoked, (zlistx_destructor_fn *) zstr_free);
    zf_node_set_members (self->node, keys, admitted, revoked);
    for (const char *key = zlistx_first (revoked); key; key = zlistx_next (revoked))
        s_log_revoked (self, key);
    zlistx_destroy (&revoked);
    zf_free (keys);
    zf_gauge_set (self->member_gauge, (double) member_count);
    self->cluster_id = (uint64_t) json_integer_value (json_object_get (view, "cluster_id"));
    self->members_version =
        (uint64_t) json_integer_value (json_object_get (view, "members_version"));

    zf_msg_join_view_t event = {
        .cluster_id = self->cluster_id,
        .cluster = (char *) s_string (view, "cluster"),
        .schedulers = {.items = scheduler_names, .count = scheduler_used},
        .seed_peers = {.items = seed_names, .count = seed_used},
        .members_version = self->members_version,
        .from_cache = from_cache,
    };
    zf_bus_publish (self->bus, &zf_msg_join_view, &event);
    zf_info (self->name,
             "view cluster=%s schedulers=%zu seed_peers=%zu members=%zu version=%" PRIu64 "%s",
             event.cluster, scheduler_used, seed_used, member_count, self->members_version,
             from_cache ? " (from the cache)" : "");
    for (size_t index = 0; index < scheduler_used; index++)
        zf_free (scheduler_names[index]);
    for (size_t index = 0; index < seed_used; index++)
        zf_free (seed_names[index]);
    zf_free (scheduler_names);
    zf_free (seed_names);
}

//  Written whole to PATH.tmp, synced, renamed: a crash leaves the old cache or the new one.
static void s_save (self_t *self, json_t *view)
{
    if (!*self->config->cache)
        return;
    char *temporary = zf_asprintf ("%s.tmp", self->config->cache);
    bool ok = json_dump_file (view, temporary, JSON_COMPACT) == 0;
    if (ok) {
        FILE *file = fopen (temporary, "r");
        ok = file && fsync (fileno (file)) == 0;
        if (file)
            fclose (file);
    }
    if (ok)
        ok = rename (temporary, self->config->cache) == 0;
    if (!ok) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (2, 60000);
        zf_warning_limited (&limit, self->name, "cannot write the cluster cache %s: %s",
                            self->config->cache, strerror (errno));
        unlink (temporary);
    }
    zf_free (temporary);
}

static json_t *s_load (self_t *self)
{
    if (!*self->config->cache || access (self->config->cache, R_OK) != 0)
        return NULL;
    json_error_t error;
    json_t *view = json_load_file (self->config->cache, 0, &error);
    if (!json_is_object (view) || !json_is_array (json_object_get (view, "members"))) {
        zf_warning (self->name, "ignoring the cluster cache %s: %s", self->config->cache,
                    view ? "not a view" : error.text);
        json_decref (view);
        return NULL;
    }
    return view;
}

//  The reply as JSON (what the cache keeps); the member keys come from its raw frame.
static json_t *s_view_json (const zf_msg_manager_joined_t *joined, zmsg_t *raw)
{
    json_t *view = json_pack (
        "{s:I, s:I, s:s, s:s, s:I, s:s, s:I}", "host_id", (json_int_t) joined->host_id,
        "cluster_id", (json_int_t) joined->cluster_id, "cluster", joined->cluster, "address",
        joined->address, "members_version", (json_int_t) joined->members_version, "client_config",
        joined->client_config, "refresh_ms", (json_int_t) joined->refresh_ms);
    json_t *list = json_array ();
    const zf_rec_manager_scheduler_t *schedulers = joined->schedulers.items;
    for (size_t index = 0; index < joined->schedulers.count; index++)
        json_array_append_new (list, json_pack ("{s:s, s:s, s:s}", "name", schedulers[index].name,
                                                "endpoint", schedulers[index].endpoint, "key",
                                                schedulers[index].key));
    json_object_set_new (view, "schedulers", list);
    list = json_array ();
    const zf_rec_manager_seed_t *seeds = joined->seed_peers.items;
    for (size_t index = 0; index < joined->seed_peers.count; index++)
        json_array_append_new (list, json_pack ("{s:s, s:s, s:s, s:s}", "name", seeds[index].name,
                                                "storage", seeds[index].storage, "fetcher",
                                                seeds[index].fetcher, "key", seeds[index].key));
    json_object_set_new (view, "seed_peers", list);
    list = json_array ();
    zframe_t *keys = zmsg_first (raw);
    size_t count = keys ? zframe_size (keys) / 32 : 0;
    if (count != joined->members_count)
        zf_warning ("join", "the manager's answer has %zu member keys, says %" PRIu64, count,
                    joined->members_count);
    for (size_t index = 0; index < count; index++) {
        char text[41];
        zmq_z85_encode (text, zframe_data (keys) + 32 * index, 32);
        json_array_append_new (list, json_string (text));
    }
    json_object_set_new (view, "members", list);
    return view;
}

//  ---------------------------------------------------------------------------------------------
//  Joining

static void s_on_changed (zf_bus_t *bus, zf_bus_msg_t *event, void *arg);
static void s_on_versions (zf_bus_t *bus, zf_bus_msg_t *event, void *arg);

static void s_subscribe (self_t *self)
{
    if (self->subscribed)
        return;
    zf_route_t route;
    if (zf_node_resolve (self->node, "manager", &route, NULL) != ZF_OK || !*route.events) {
        zf_notice (self->name, "the manager route has no events=…: changes arrive with the "
                               "periodic refresh only");
        self->subscribed = true;
        return;
    }
    zf_error_t err;
    if (zf_bus_subscribe (self->bus, "manager", "manager.changed", s_on_changed, self, &err)
            == ZF_OK
        && zf_bus_subscribe (self->bus, "manager", "manager.versions", s_on_versions, self, &err)
               == ZF_OK)
        self->subscribed = true;
    else
        zf_warning (self->name, "cannot subscribe to the manager's events: %s", err.message);
}

static void s_on_joined (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                         const zf_error_t *err, void *arg)
{
    (void) bus;
    self_t *self = arg;
    self->in_flight = false;
    if (status == ZF_OK) {
        const zf_msg_manager_joined_t *joined = reply->env.body;
        json_t *view = s_view_json (joined, reply->raw);
        bool first = !self->reachable;
        s_apply (self, view, false);
        s_save (self, view);
        json_decref (self->view);
        self->view = view;
        self->reachable = true;
        self->retry_ms = self->config->retry_ms;
        zf_gauge_set (self->joined_gauge, 1);
        s_count ("joined");
        if (first)
            zf_notice (self->name,
                       "joined cluster=%s id=%" PRIu64 " host=%" PRIu64
                       " address=%s schedulers=%zu members=%zu",
                       joined->cluster, joined->cluster_id, joined->host_id, joined->address,
                       joined->schedulers.count,
                       json_array_size (json_object_get (view, "members")));
        s_subscribe (self);
        s_schedule (self, joined->refresh_ms ? (int64_t) joined->refresh_ms : 60000);
        return;
    }
    //  Refused by the manager: say what to do, and keep trying (the operator may fix the token
    //  file); unreachable: keep working from the cached view.
    const zf_msg_error_t *body = reply ? reply->env.body : NULL;
    zf_code_t code = zf_bus_error_code (status, reply);
    if (body
        && (code == ZF_CODE_TOKEN_REFUSED || code == ZF_CODE_REVOKED || code == ZF_CODE_NAME_TAKEN
            || code == ZF_CODE_NO_KEY)) {
        s_count (zf_code_name (code));
        zf_error_log (self->name, "join refused by the manager: %s", body->message);
    } else {
        s_count (status == ZF_E_TIMEOUT ? "timeout" : "error");
        if (self->reachable || !self->retry_ms || self->retry_ms == self->config->retry_ms)
            zf_warning (self->name, "manager unreachable (%s)%s; retrying", err->message,
                        self->view ? ", working from the last view" : "");
        self->reachable = false;
        zf_gauge_set (self->joined_gauge, 0);
    }
    s_schedule (self, self->retry_ms);
    self->retry_ms = self->retry_ms * 2 > self->config->retry_max_ms ? self->config->retry_max_ms
                                                                     : self->retry_ms * 2;
}

//  The join token: read each time, so a token file fixed by the operator is used next time.
//  No file (or none set): an empty token.
static char *s_token (self_t *self)
{
    const char *path = self->config->token_file;
    char *token = *path ? zf_secret_read_line (path, "\r\n \t") : NULL;
    return token ? token : zf_strdup ("");
}

//  usage: the local storage's answer to storage.measure, NULL when there is none.
static void s_send_join (self_t *self, const zf_msg_storage_usage_t *usage)
{
    char scheduler[ZF_ENDPOINT_MAX], storage[ZF_ENDPOINT_MAX], fetcher[ZF_ENDPOINT_MAX], seed[8];
    zf_node_advertised (self->node, "scheduler", scheduler, sizeof scheduler);
    zf_node_advertised (self->node, "storage", storage, sizeof storage);
    zf_node_advertised (self->node, "fetcher", fetcher, sizeof fetcher);
    zf_node_advertised (self->node, "seed", seed, sizeof seed);
    char *labels_text = zf_strdup (self->config->labels);
    char *labels[32];
    size_t label_count = 0;
    char *saveptr = NULL;
    for (char *label = strtok_r (labels_text, " \t", &saveptr); label && label_count < 32;
         label = strtok_r (NULL, " \t", &saveptr))
        labels[label_count++] = label;
    char *token = s_token (self);
    zf_msg_manager_join_t body = {
        .name = (char *) zf_node_name (self->node),
        .token = token,
        .idc = self->config->idc,
        .location = self->config->location,
        .labels = {.items = labels, .count = label_count},
        .scheduler = scheduler,
        .storage = storage,
        .fetcher = fetcher,
        .seed = streq (seed, "true"),
        .cache_bytes = usage ? usage->bytes : 0,
        .cache_tasks = usage ? usage->tasks : 0,
        .cache_capacity = usage ? usage->capacity : 0,
    };
    zf_error_t err;
    zf_bus_call_t call = {.timeout_ms = self->config->timeout_ms, .retries = -1};
    if (zf_bus_request (self->bus, "manager", &zf_msg_manager_join, &body, NULL, call, s_on_joined,
                        self, &err)
        == ZF_OK)
        self->in_flight = true;
    else {
        zf_warning (self->name, "cannot send the join: %s", err.message);
        s_schedule (self, self->retry_ms);
    }
    zf_secret_free (token);
    zf_free (labels_text);
}

static void s_on_measured (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                           const zf_error_t *err, void *arg)
{
    (void) bus;
    self_t *self = arg;
    self->in_flight = false;
    if (status != ZF_OK) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (1, 60000);
        zf_warning_limited (&limit, self->name, "joining without cache use: %s", err->message);
    }
    s_send_join (self, status == ZF_OK ? reply->env.body : NULL);
}

//  A node with storage in this process tells the manager how full its cache is with every
//  join (the console's hosts page): storage measures first, then the join goes out.
static void s_join (self_t *self)
{
    if (self->in_flight || self->stopping) //  a join after the leave would undo it
        return;
    zf_route_t route;
    if (zf_node_resolve (self->node, "storage", &route, NULL) != ZF_OK || !route.local) {
        s_send_join (self, NULL);
        return;
    }
    zf_msg_storage_measure_t measure = {0};
    zf_error_t err;
    zf_bus_call_t call = {.timeout_ms = self->config->timeout_ms};
    if (zf_bus_request (self->bus, "storage", &zf_msg_storage_measure, &measure, NULL, call,
                        s_on_measured, self, &err)
        == ZF_OK)
        self->in_flight = true;
    else
        s_send_join (self, NULL);
}

static int s_on_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    self_t *self = arg;
    self->timer_id = -1;
    s_join (self);
    return 0;
}

static void s_schedule (self_t *self, int64_t delay_ms)
{
    if (self->timer_id >= 0)
        zloop_timer_end (self->loop, self->timer_id);
    self->timer_id =
        zloop_timer (self->loop, (size_t) (delay_ms > 1 ? delay_ms : 1), 1, s_on_timer, self);
}

//  manager.changed: apply the next version in place; anything else means ask again.
static void s_on_changed (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    self_t *self = arg;
    const zf_msg_manager_changed_t *changed = event->env.body;
    if (!self->view || changed->cluster_id != self->cluster_id
        || changed->version <= self->members_version)
        return;
    char **added = changed->added.items, **removed = changed->removed.items;
    if (changed->version == self->members_version + 1) {
        json_t *members = json_object_get (self->view, "members");
        for (size_t index = 0; index < changed->added.count; index++) {
            zf_node_add_member (self->node, added[index]);
            json_array_append_new (members, json_string (added[index]));
        }
        for (size_t index = 0; index < changed->removed.count; index++) {
            zf_node_revoke (self->node, removed[index]);
            s_log_revoked (self, removed[index]);
            for (size_t position = 0; position < json_array_size (members); position++)
                if (streq (json_string_value (json_array_get (members, position)), removed[index]))
                    json_array_remove (members, position--);
        }
        self->members_version = changed->version;
        json_object_set_new (self->view, "members_version",
                             json_integer ((json_int_t) changed->version));
        zf_gauge_set (self->member_gauge, (double) zf_node_member_count (self->node));
        if (!changed->view_changed) {
            s_save (self, self->view);
            return;
        }
    } else
        //  Missed a change: revocations must not wait for the next refresh.
        for (size_t index = 0; index < changed->removed.count; index++)
            zf_node_revoke (self->node, removed[index]);
    s_schedule (self, 0); //  the rest comes with a fresh view
}

//  manager.versions: a version other than this node's means a manager.changed was missed (the
//  subscription was not up yet when this node joined, or the events connection dropped):
//  ask again now. Once per announced version, so a view that lags the announcements (a join
//  answered just before a change) cannot make the node join every second.
static void s_on_versions (zf_bus_t *bus, zf_bus_msg_t *event, void *arg)
{
    (void) bus;
    self_t *self = arg;
    const zf_msg_manager_versions_t *versions = event->env.body;
    const zf_rec_manager_version_t *items = versions->clusters.items;
    if (!self->view || self->in_flight)
        return;
    for (size_t index = 0; index < versions->clusters.count; index++) {
        if (items[index].cluster_id != self->cluster_id)
            continue;
        if (items[index].version != self->members_version
            && items[index].version != self->resync_version) {
            zf_info (self->name,
                     "members version %" PRIu64 " announced, %" PRIu64 " held: asking again",
                     items[index].version, self->members_version);
            self->resync_version = items[index].version;
            zf_counter_add (zf_metrics_counter ("zfly_join_resyncs_total",
                                                "Joins made because the manager announced a "
                                                "members version this node did not hold",
                                                NULL),
                            1);
            s_schedule (self, 0);
        }
        return;
    }
}

//  --- leaving ----------------------------------------------------------------------------------

static void s_on_left (zf_bus_t *bus, zf_status_t status, zf_bus_msg_t *reply,
                       const zf_error_t *err, void *arg)
{
    (void) bus;
    self_t *self = arg;
    self->leave_pending = false;
    if (status == ZF_OK)
        zf_info (self->name, "left the cluster's roles roles=%" PRIu64,
                 ((const zf_msg_manager_left_t *) reply->env.body)->roles);
    else
        zf_info (self->name, "manager.leave unanswered: %s", err->message);
}

static bool s_left (void *arg)
{
    return !((self_t *) arg)->leave_pending;
}

//  Stopping: a node that is a scheduler or a seed peer of its cluster tells the manager, which
//  ends those roles at once (schemas/manager.schema manager.leave), and the loop runs on until
//  it answers. Other nodes change nothing in the cluster's view by leaving: they send nothing.
static void s_leave (self_t *self)
{
    char scheduler[ZF_ENDPOINT_MAX], seed[8];
    zf_node_advertised (self->node, "scheduler", scheduler, sizeof scheduler);
    zf_node_advertised (self->node, "seed", seed, sizeof seed);
    self->stopping = true;
    if (!self->reachable || (!*scheduler && !streq (seed, "true")))
        return;
    if (self->timer_id >= 0)
        zloop_timer_end (self->loop, self->timer_id);
    self->timer_id = -1;
    zf_msg_manager_leave_t body = {.name = (char *) zf_node_name (self->node)};
    zf_bus_call_t call = {.timeout_ms = LEAVE_TIMEOUT_MS, .retries = 0};
    zf_error_t err;
    if (zf_bus_request (self->bus, "manager", &zf_msg_manager_leave, &body, NULL, call, s_on_left,
                        self, &err)
        != ZF_OK)
        return;
    self->leave_pending = true;
    //  The request times out after LEAVE_TIMEOUT_MS; twice that is a backstop.
    zf_actor_run_until (self->loop, s_left, self, 2 * LEAVE_TIMEOUT_MS);
}

//  ---------------------------------------------------------------------------------------------
//  The actor

void zf_join_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    self_t self = {
        .name = actor->name, .config = actor->config, .node = actor->node, .timer_id = -1};
    self.retry_ms = self.config->retry_ms;
    self.scheduler_count = self.seed_count = SIZE_MAX;
    zf_error_t err;
    zf_route_t manager;
    zf_status_t status = zf_node_parse_route (actor->node, "manager", self.config->manager,
                                              "[join] manager", &manager, &err);
    if (status == ZF_OK
        && zf_node_learn_route (actor->node, "manager", manager.endpoint, manager.events,
                                manager.server_key, &err)
               != ZF_OK
        && err.code != ZF_E_INVALID)
        status = err.code;
    if (status == ZF_OK)
        zf_strlcpy (self.manager_key, manager.server_key, sizeof self.manager_key);
    self.bus = status == ZF_OK ? zf_bus_new (actor->node, actor->name, NULL, NULL, &err) : NULL;
    if (self.bus)
        zf_node_follow_cluster (actor->node);
    zsock_signal (pipe, 0);
    if (!self.bus) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        return;
    }
    self.member_gauge =
        zf_metrics_gauge ("zfly_join_members", "Member keys of this node's cluster", NULL);
    self.joined_gauge = zf_metrics_gauge ("zfly_join_connected",
                                          "1 while the manager answers this node's joins", NULL);
    self.loop = zloop_new ();
    zloop_set_nonstop (self.loop, true);
    zloop_reader (self.loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (self.bus, self.loop);
    //  The cached view first: the node works at once, manager or not.
    json_t *cached = s_load (&self);
    if (cached) {
        s_apply (&self, cached, true);
        self.view = cached;
    }
    //  Subscribed before the first join, so that changes after its answer are not missed
    //  while the subscription comes up (manager.versions covers what still is).
    s_subscribe (&self);
    zf_notice (self.name, "started manager=%s cache=%s%s", manager.endpoint, self.config->cache,
               cached ? " (loaded)" : "");
    s_join (&self);
    zstr_send (pipe, "READY");
    zloop_start (self.loop);
    s_leave (&self);
    zf_bus_destroy (&self.bus);
    zloop_destroy (&self.loop);
    json_decref (self.view);
}
