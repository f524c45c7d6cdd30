/*  zf_manager.c — the manager actor: joins over the bus, the REST API, keep-alive expiry. */
#include "zf_manager.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_jobs.h"
#include "zf_manager_internal.h"
#include "zf_metrics.h"
#include "zf_msgs.h"

//  Route modules, registered in order at start.
static zf_manager_module_fn *const s_modules[] = {
    zf_manager_api_register,   zf_manager_api_auth_register, zf_manager_openapi_register,
    zf_manager_swarm_register, zf_manager_console_register,
    zf_jobs_register, //  preheat: /api/v1/jobs, Harbor's providers, the workers' queue
};

#define S_STOP_HOOKS_MAX 4

#define S_CHANGED_KEYS_MAX 1
//  The most clusters one manager.versions names (the schema's items limit); more are rare
//  enough that their nodes keep to their refresh.
#define S_ANNOUNCE_CLUSTERS_MAX 4096

struct zf_manager_s {
    const char *name;
    const zf_manager_config_t *config;
    zf_node_t *node;
    zf_bus_t *bus;
    zf_db_t *db;
    zf_rest_t *rest;
    zf_histogram_t *join_seconds;
    zloop_t *loop;
    //  Modules' teardown, run before the bus and the database go (zf_manager_on_stop).
    struct {
        zf_manager_stop_fn *fn;
        void *arg;
    } stop_hooks[S_STOP_HOOKS_MAX];
    size_t stop_hook_count;
    //  The view each cluster's nodes are told, kept between joins ("ID" -> json_t): a join
    //  storm adds one key per join, and rebuilding the member list from the database each
    //  time made a join cost in proportion to the cluster's size. A new member appends its
    //  key; any other change drops the cluster's view and the next join reads the database.
    //  (One manager per database: another writer would go unseen.)
    zhashx_t *views;
};

//  A cluster's view as joins answer it: the JSON (schedulers, seed peers, config, version)
//  and the member keys as the reply's raw frame (32 bytes each), grown by one key per join.
typedef struct {
    json_t *view;
    zchunk_t *keys;
} s_view_t;

static void s_view_destroy (void **item)
{
    s_view_t *cached = *item;
    if (cached) {
        json_decref (cached->view);
        zchunk_destroy (&cached->keys);
        zf_free (cached);
    }
    *item = NULL;
}

void zf_manager_forget_views (zf_manager_t *self, int64_t cluster_id)
{
    if (cluster_id <= 0) {
        zhashx_purge (self->views);
        return;
    }
    char id[24];
    snprintf (id, sizeof id, "%" PRId64, cluster_id);
    zhashx_delete (self->views, id);
}

static bool s_append_key (zchunk_t *keys, const char *z85)
{
    uint8_t binary[32];
    if (!z85 || strlen (z85) != 40 || !zmq_z85_decode (binary, z85))
        return false;
    zchunk_extend (keys, binary, sizeof binary);
    return true;
}

//  The view a join's answer carries (borrowed from the cache), current for this join.
static s_view_t *s_view (zf_manager_t *self, const zf_join_result_t *result, const char *key,
                         zf_error_t *err)
{
    char id[24];
    snprintf (id, sizeof id, "%" PRId64, result->cluster_id);
    s_view_t *cached = zhashx_lookup (self->views, id);
    if (cached && !result->view_changed) {
        json_int_t version = json_integer_value (json_object_get (cached->view, "members_version"));
        if (version == result->members_version && !result->new_member)
            return cached;
        if (result->new_member && version + 1 == result->members_version
            && s_append_key (cached->keys, key)) {
            json_object_set_new (cached->view, "members_version",
                                 json_integer ((json_int_t) result->members_version));
            return cached;
        }
    }
    json_t *view = zf_members_cluster_view (self->db, result->cluster_id, err);
    if (!view)
        return NULL;
    s_view_t *fresh = zf_calloc (1, sizeof *fresh);
    json_t *members = json_object_get (view, "members");
    fresh->keys = zchunk_new (NULL, json_array_size (members) * 32 + 4096);
    size_t index;
    json_t *member;
    json_array_foreach (members, index, member)
        s_append_key (fresh->keys, json_string_value (member));
    //  The manager's own key is a member of every cluster: preheat workers, which run with
    //  the manager's keypair, send their blobs to the nodes' fetchers (zf_jobs.h).
    if (zf_node_public_key (self->node))
        s_append_key (fresh->keys, zf_node_public_key (self->node));
    json_object_del (view, "members"); //  the chunk holds them
    fresh->view = view;
    zhashx_update (self->views, id, fresh);
    return fresh;
}

zf_db_t *zf_manager_db (zf_manager_t *self)
{
    return self->db;
}

zf_bus_t *zf_manager_bus (zf_manager_t *self)
{
    return self->bus;
}

zloop_t *zf_manager_loop (zf_manager_t *self)
{
    return self->loop;
}

zf_node_t *zf_manager_node (zf_manager_t *self)
{
    return self->node;
}

const zf_manager_config_t *zf_manager_config (zf_manager_t *self)
{
    return self->config;
}

void zf_manager_on_stop (zf_manager_t *self, zf_manager_stop_fn *fn, void *arg)
{
    ZF_ASSERT (self->stop_hook_count < S_STOP_HOOKS_MAX);
    self->stop_hooks[self->stop_hook_count].fn = fn;
    self->stop_hooks[self->stop_hook_count++].arg = arg;
}

static void s_count_join (const char *result)
{
    zf_counter_add (zf_metrics_counter ("zfly_manager_joins_total", "Joins and refreshes by result",
                                        "result", result, NULL),
                    1);
}

void zf_manager_publish_change (zf_manager_t *self, int64_t cluster_id, const char *added_key,
                                const char *removed_key, bool view_changed)
{
    char *added[S_CHANGED_KEYS_MAX], *removed[S_CHANGED_KEYS_MAX];
    zf_msg_manager_changed_t event = {
        .cluster_id = (uint64_t) cluster_id,
        .version = (uint64_t) zf_members_version (self->db, cluster_id),
        .view_changed = view_changed,
    };
    if (added_key && *added_key) {
        added[0] = (char *) added_key;
        event.added = (zf_list_t){.items = added, .count = 1};
    }
    if (removed_key && *removed_key) {
        removed[0] = (char *) removed_key;
        event.removed = (zf_list_t){.items = removed, .count = 1};
    }
    zf_bus_publish (self->bus, &zf_msg_manager_changed, &event);
    if ((removed_key && *removed_key) || view_changed)
        zf_manager_forget_views (self, cluster_id);
    zf_info (self->name,
             "changed cluster=%" PRId64 " version=%" PRIu64 " added=%s removed=%s view=%s",
             cluster_id, event.version, added_key ? added_key : "-",
             removed_key ? removed_key : "-", view_changed ? "changed" : "same");
}

//  ---------------------------------------------------------------------------------------------
//  Joins

//  "k=v" labels as a JSON object text (caller frees with free).
static char *s_labels_json (const zf_msg_manager_join_t *body)
{
    json_t *labels = json_object ();
    char **items = body->labels.items;
    for (size_t index = 0; index < body->labels.count; index++) {
        const char *label = items[index];
        const char *equals = strchr (label, '=');
        if (!equals || equals == label)
            continue;
        char *key = zf_strndup (label, (size_t) (equals - label));
        json_object_set_new (labels, key, json_string (equals + 1));
        zf_free (key);
    }
    char *text = json_dumps (labels, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref (labels);
    ZF_ASSERT (text);
    return text;
}

//  Answers a join from the cluster's view: records of schedulers and seed peers, and the member
//  keys as one raw frame (a copy of the cached chunk).
static void s_reply_joined (zf_manager_t *self, zf_bus_msg_t *request,
                            const zf_join_result_t *result, const char *address,
                            const s_view_t *cached)
{
    const zf_msg_manager_join_t *body = request->env.body;
    bool keepalive = *body->scheduler || body->seed;
    json_t *view = cached->view;
    json_t *schedulers = json_object_get (view, "schedulers");
    json_t *seeds = json_object_get (view, "seed_peers");
    size_t scheduler_count = json_array_size (schedulers);
    size_t seed_count = json_array_size (seeds);
    zf_rec_manager_scheduler_t *scheduler_list =
        zf_calloc (scheduler_count ? scheduler_count : 1, sizeof *scheduler_list);
    zf_rec_manager_seed_t *seed_list = zf_calloc (seed_count ? seed_count : 1, sizeof *seed_list);
    for (size_t index = 0; index < scheduler_count; index++) {
        json_t *item = json_array_get (schedulers, index);
        scheduler_list[index] = (zf_rec_manager_scheduler_t){
            .name = (char *) json_string_value (json_object_get (item, "name")),
            .endpoint = (char *) json_string_value (json_object_get (item, "endpoint")),
            .key = (char *) json_string_value (json_object_get (item, "key")),
        };
    }
    for (size_t index = 0; index < seed_count; index++) {
        json_t *item = json_array_get (seeds, index);
        seed_list[index] = (zf_rec_manager_seed_t){
            .name = (char *) json_string_value (json_object_get (item, "name")),
            .storage = (char *) json_string_value (json_object_get (item, "storage")),
            .fetcher = (char *) json_string_value (json_object_get (item, "fetcher")),
            .key = (char *) json_string_value (json_object_get (item, "key")),
        };
    }
    char *config = json_dumps (json_object_get (view, "client_config"), JSON_COMPACT);
    zf_msg_manager_joined_t reply = {
        .host_id = (uint64_t) result->host_id,
        .cluster_id = (uint64_t) result->cluster_id,
        .cluster = (char *) json_string_value (
            json_object_get (json_object_get (view, "cluster"), "name")),
        .address = (char *) address,
        .schedulers = {.items = scheduler_list, .count = scheduler_count},
        .seed_peers = {.items = seed_list, .count = seed_count},
        .members_count = zchunk_size (cached->keys) / 32,
        .members_version =
            (uint64_t) json_integer_value (json_object_get (view, "members_version")),
        .client_config = config ? config : (char *) "{}",
        .refresh_ms =
            (uint64_t) (keepalive ? self->config->keepalive_ms : self->config->refresh_ms),
    };
    zmsg_t *raw = zmsg_new ();
    zmsg_addmem (raw, zchunk_data (cached->keys), zchunk_size (cached->keys));
    zf_bus_reply (self->bus, &request->return_to, &zf_msg_manager_joined, &reply, &raw);
    free (config);
    zf_free (scheduler_list);
    zf_free (seed_list);
}

//  The key a node is known by: the one that authenticated the connection; a node of this very
//  process (all-in-one) speaks over inproc:// with the node's own key. NULL, with no_key
//  answered, when there is none (what: the request's verb, for the answer).
static const char *s_caller_key (zf_manager_t *self, zf_bus_msg_t *request, const char *what)
{
    if (request->origin == ZF_BUS_FROM_PROCESS && zf_node_public_key (self->node))
        return zf_node_public_key (self->node);
    if (*request->peer_key)
        return request->peer_key;
    zf_bus_reply_code (self->bus, &request->return_to, ZF_CODE_NO_KEY, "key",
                       "%s over tcp:// with CURVE: the manager knows nodes by the key that "
                       "authenticated them",
                       what);
    return NULL;
}

static void s_handle_join (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_manager_t *self = arg;
    int64_t started = zf_clock_mono_us ();
    const zf_msg_manager_join_t *body = request->env.body;
    const char *key = s_caller_key (self, request, "join");
    if (!key) {
        s_count_join ("no_key");
        return;
    }
    const char *address = request->origin == ZF_BUS_FROM_PROCESS && zf_node_public_key (self->node)
                              ? "127.0.0.1"
                              : request->peer_address;
    char *labels = s_labels_json (body);
    zf_join_request_t join = {
        .name = body->name,
        .public_key = key,
        .address = *address ? address : "127.0.0.1",
        .idc = body->idc,
        .location = body->location,
        .labels_json = labels,
        .token = body->token,
        .scheduler_endpoint = body->scheduler,
        .storage_endpoint = body->storage,
        .fetcher_endpoint = body->fetcher,
        .seed = body->seed,
        .cache_bytes = body->cache_bytes,
        .cache_tasks = body->cache_tasks,
        .cache_capacity = body->cache_capacity,
    };
    zf_join_result_t result;
    zf_error_t err;
    int64_t now = zf_clock_wall_ms ();
    zf_status_t status = zf_members_join (self->db, &join, now, &result, &err);
    free (labels);
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (10, 10000);
    if (status != ZF_OK) {
        s_count_join ("error");
        zf_warning_limited (&limit, self->name, "join failed name=%s key=%s: %s", body->name, key,
                            err.message);
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                           "the manager cannot record the join now: %s", err.message);
        return;
    }
    if (result.verdict == ZF_JOIN_TOKEN_REFUSED) {
        s_count_join ("token_refused");
        const char *why = *body->token ? zf_join_token_verdict_text (result.token_verdict)
                                       : "no join token given";
        zf_warning_limited (&limit, self->name, "join refused name=%s key=%s address=%s: %s",
                            body->name, key, join.address, why);
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_TOKEN_REFUSED, "token",
                           "join refused: %s (ask the operator for a join token: "
                           "zfly-admin token create)",
                           why);
        return;
    }
    if (result.verdict == ZF_JOIN_REVOKED) {
        s_count_join ("revoked");
        zf_warning_limited (&limit, self->name, "join refused name=%s key=%s address=%s: revoked",
                            body->name, key, join.address);
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_REVOKED, "key",
                           "this node's key %s was revoked: make a new keypair (zfly "
                           "keygen) and join with a new token",
                           key);
        return;
    }
    if (result.verdict == ZF_JOIN_NAME_TAKEN) {
        s_count_join ("name_taken");
        zf_warning_limited (&limit, self->name, "join refused name=%s key=%s: name taken",
                            body->name, key);
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_NAME_TAKEN, "name",
                           "another active host is named '%s': give this node another "
                           "[node] name, or revoke the old host",
                           body->name);
        return;
    }
    s_view_t *view = s_view (self, &result, key, &err);
    if (!view) {
        s_count_join ("error");
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_UNAVAILABLE, "", "%s", err.message);
        return;
    }
    s_count_join (result.new_member ? "joined" : "refreshed");
    s_reply_joined (self, request, &result, join.address, view);
    if (result.new_member)
        zf_notice (self->name, "joined name=%s key=%s address=%s cluster=%" PRId64 " host=%" PRId64,
                   body->name, key, join.address, result.cluster_id, result.host_id);
    if (result.new_member || result.view_changed)
        zf_manager_publish_change (self, result.cluster_id, result.new_member ? key : NULL, NULL,
                                   result.view_changed);
    zf_histogram_observe (self->join_seconds, (double) (zf_clock_mono_us () - started) / 1e6);
}

//  A node that stops cleanly: its scheduler and seed-peer roles end now, and its cluster hears
//  of it, so nodes move their tasks and preheat jobs pick seeds without the one that left.
static void s_handle_leave (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_manager_t *self = arg;
    const zf_msg_manager_leave_t *body = request->env.body;
    const char *key = s_caller_key (self, request, "leave");
    if (!key)
        return;
    int64_t cluster_id, ended;
    zf_error_t err;
    if (zf_members_leave (self->db, key, zf_clock_wall_ms (), &cluster_id, &ended, &err) != ZF_OK) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                           "the manager cannot record the leave now: %s", err.message);
        return;
    }
    zf_msg_manager_left_t reply = {.roles = (uint64_t) ended};
    zf_bus_reply (bus, &request->return_to, &zf_msg_manager_left, &reply, NULL);
    if (ended == 0)
        return;
    zf_notice (self->name, "left name=%s key=%s cluster=%" PRId64 " roles=%" PRId64, body->name,
               key, cluster_id, ended);
    zf_manager_publish_change (self, cluster_id, NULL, NULL, true);
}

//  ---------------------------------------------------------------------------------------------
//  Keep-alive expiry

static int s_expire (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_manager_t *self = arg;
    int64_t clusters[64];
    size_t count = 0;
    zf_error_t err;
    if (zf_members_expire (self->db, zf_clock_wall_ms (), self->config->keepalive_timeout_ms,
                           clusters, ZF_ARRAY_LEN (clusters), &count, &err)
        != ZF_OK) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
        zf_warning_limited (&limit, self->name, "keep-alive expiry failed: %s", err.message);
        return 0;
    }
    for (size_t index = 0; index < count; index++) {
        zf_notice (self->name,
                   "expired schedulers or seed peers cluster=%" PRId64
                   " (no keep-alive for %" PRId64 " ms)",
                   clusters[index], self->config->keepalive_timeout_ms);
        zf_manager_publish_change (self, clusters[index], NULL, NULL, true);
    }
    return 0;
}

//  Every cluster's members_version, for nodes to find the manager.changed they missed.
static int s_announce (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_manager_t *self = arg;
    zf_error_t err;
    zf_db_result_t *rows = zf_members_versions (self->db, S_ANNOUNCE_CLUSTERS_MAX, &err);
    if (!rows) {
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
        zf_warning_limited (&limit, self->name, "cannot read the clusters' versions: %s",
                            err.message);
        return 0;
    }
    size_t count = zf_db_result_rows (rows);
    zf_rec_manager_version_t *versions = zf_calloc (count + 1, sizeof *versions);
    for (size_t row = 0; row < count; row++)
        versions[row] =
            (zf_rec_manager_version_t){.cluster_id = (uint64_t) zf_db_result_int (rows, row, 0, 0),
                                       .version = (uint64_t) zf_db_result_int (rows, row, 1, 0)};
    zf_db_result_destroy (&rows);
    zf_msg_manager_versions_t event = {.clusters = {.items = versions, .count = count}};
    zf_bus_publish (self->bus, &zf_msg_manager_versions, &event);
    zf_free (versions);
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  The API's bearer tokens

static zf_rest_access_t s_auth (const char *token, char *principal, size_t size, void *arg)
{
    zf_manager_t *self = arg;
    return zf_pats_check (self->db, token, zf_clock_wall_ms (), principal, size);
}

//  ---------------------------------------------------------------------------------------------
//  Start and stop

static zf_db_t *s_open_database (const zf_manager_config_t *config, zf_error_t *err)
{
    zf_db_t *db = zf_db_open (config->database, config->database_password_file, err);
    if (!db)
        return NULL;
    if (zf_db_migrate (db, zf_manager_migrations, zf_manager_migration_count, err) != ZF_OK
        || zf_clusters_ensure_default (db, err) != ZF_OK)
        zf_db_close (&db);
    return db;
}

void zf_manager_actor (zsock_t *pipe, void *args)
{
    const zf_actor_args_t *actor = args;
    zf_manager_t self = {.name = actor->name, .config = actor->config, .node = actor->node};
    self.views = zhashx_new ();
    zhashx_set_destructor (self.views, s_view_destroy);
    zf_error_t err;
    bool valid = zf_jobs_config_valid (self.config, &err);
    self.bus = valid ? zf_bus_new_open (actor->node, actor->name, self.config->bind,
                                        self.config->events_bind, &err)
                     : NULL;
    zsock_signal (pipe, 0);
    if (!self.bus) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        zhashx_destroy (&self.views);
        return;
    }
    self.db = s_open_database (self.config, &err);
    if (!self.db) {
        zf_actor_fatal (pipe, self.name, "%s", err.message);
        zf_bus_destroy (&self.bus);
        zhashx_destroy (&self.views);
        return;
    }
    if (*self.config->api) {
        self.rest = zf_rest_new (self.config->api, &err);
        if (!self.rest) {
            zf_actor_fatal (pipe, self.name, "api %s: %s", self.config->api, err.message);
            zf_db_close (&self.db);
            zf_bus_destroy (&self.bus);
            zhashx_destroy (&self.views);
            return;
        }
        zf_rest_set_auth (self.rest, s_auth, &self);
    }
    zloop_t *loop = zloop_new ();
    self.loop = loop;
    if (self.rest)
        for (size_t index = 0; index < ZF_ARRAY_LEN (s_modules); index++)
            s_modules[index](self.rest, &self);
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
    self.join_seconds =
        zf_metrics_histogram ("zfly_manager_join_seconds", "Time the manager took to answer a join",
                              buckets, ZF_ARRAY_LEN (buckets), NULL);
    zf_bus_handle (self.bus, ZF_MSG_MANAGER_JOIN, s_handle_join, &self);
    zf_bus_handle (self.bus, ZF_MSG_MANAGER_LEAVE, s_handle_leave, &self);
    zloop_set_nonstop (loop, true);
    zloop_reader (loop, pipe, zf_actor_pipe_term, NULL);
    zf_bus_attach (self.bus, loop);
    if (self.rest)
        zf_rest_attach (self.rest, loop);
    int64_t expire_ms = self.config->keepalive_timeout_ms / 4;
    zloop_timer (loop, (size_t) (expire_ms > 50 ? expire_ms : 50), 0, s_expire, &self);
    zloop_timer (loop, (size_t) self.config->announce_ms, 0, s_announce, &self);
    zf_notice (self.name, "started bind=%s events_bind=%s api=%s api_port=%d database=%s",
               *self.config->bind ? self.config->bind : "-",
               *self.config->events_bind ? self.config->events_bind : "-",
               *self.config->api ? self.config->api : "-", self.rest ? zf_rest_port (self.rest) : 0,
               zf_db_kind_name (self.db));
    zstr_send (pipe, "READY");
    zloop_start (loop);
    zf_rest_destroy (&self.rest);
    while (self.stop_hook_count > 0) {
        self.stop_hook_count--;
        self.stop_hooks[self.stop_hook_count].fn (self.stop_hooks[self.stop_hook_count].arg);
    }
    zf_bus_destroy (&self.bus);
    zloop_destroy (&loop);
    zf_db_close (&self.db);
    zhashx_destroy (&self.views);
    zf_info (self.name, "stopped");
}

int zf_manager_init_command (const zf_manager_config_t *config, FILE *out)
{
    zf_error_t err;
    zf_db_t *db = s_open_database (config, &err);
    if (!db) {
        fprintf (stderr, "zfly: manager init: %s\n", err.message);
        return 1;
    }
    char token[ZF_TOKEN_SIZE];
    zf_status_t status = zf_credentials_init_admin (db, token, &err);
    zf_db_close (&db);
    if (status != ZF_OK) {
        fprintf (stderr, "zfly: manager init: %s\n", err.message);
        return 1;
    }
    fprintf (out,
             "database %s is ready (schema version %d).\n"
             "admin token (shown once; keep it secret, e.g. in ~/.config/zfly/token):\n%s\n",
             config->database, zf_manager_migrations[zf_manager_migration_count - 1].version,
             token);
    explicit_bzero (token, sizeof token);
    return 0;
}
