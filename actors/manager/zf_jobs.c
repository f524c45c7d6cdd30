/*  zf_jobs.c — the manager's side of preheat: jobs created, queued, handed to workers, their
    leases, their end. See zf_jobs.h for the life of a job and schemas/preheat.schema for the
    conversation with workers. */
#include "zf_jobs.h"
#include "zf_clock.h"
#include "zf_job_secrets.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include "../preheat/zf_job_stream.h"
#include "zf_secret.h"

#define S_TAKE_WAIT_MAX_MS 30000 //  how long a job.take may be held
#define S_SWEEP_BATCH      100   //  jobs looked at per sweep
#define S_LOST_LEASES      3     //  silent this many leases: is its stream entry still there?
#define S_RECENT_REFRESHES 3     //  all_peers: hosts seen within this many refresh intervals

//  A job waiting in the manager's own queue; offered_at: when a worker was offered it (0:
//  not yet). An offer not followed by job.start within a lease is made again.
typedef struct {
    int64_t id;
    int64_t offered_at;
} s_queued_t;

//  A worker's job.take waiting for a job.
typedef struct {
    zf_bus_return_t return_to;
    int64_t deadline;
} s_taker_t;

struct zf_jobs_s {
    zf_manager_t *manager;
    zf_db_t *db;
    zf_bus_t *bus;
    zloop_t *loop;
    const zf_manager_config_t *config;
    zf_node_t *node;
    int64_t lease_ms;
    zf_job_secrets_t *secrets;
    zf_job_stream_t *stream; //  NULL: the manager's own queue
    zlistx_t *queue;         //  s_queued_t, oldest first (own queue only)
    zlistx_t *takers;        //  s_taker_t (own queue only)
    zcertstore_t *allowed;   //  [bus] allow: worker keys trusted besides the manager's own
    int timer_id;
    int64_t next_stream_check; //  when to look for lost stream entries again
    //  metrics
    zf_gauge_t *jobs_by_state[ZF_JOB_STATUS_COUNT];
    zf_gauge_t *queue_depth, *queue_oldest;
    zf_counter_t *finished[ZF_JOB_STATUS_COUNT];
    zf_histogram_t *job_seconds;
};

static const char *s_name = "manager";

static void s_free_item (void **item)
{
    zf_free (*item);
    *item = NULL;
}

bool zf_jobs_config_valid (const zf_manager_config_t *config, zf_error_t *err)
{
    if (!*config->queue || zf_job_stream_url_valid (config->queue, err))
        return true;
    zf_error_prefix (err, "[manager] queue");
    return false;
}

zf_db_t *zf_jobs_db (zf_jobs_t *self)
{
    return self->db;
}

//  ---------------------------------------------------------------------------------------------
//  The manager's own queue

static s_queued_t *s_queue_find (zf_jobs_t *self, int64_t id)
{
    for (s_queued_t *item = zlistx_first (self->queue); item; item = zlistx_next (self->queue))
        if (item->id == id)
            return item;
    return NULL;
}

static void s_queue_remove (zf_jobs_t *self, int64_t id)
{
    for (s_queued_t *item = zlistx_first (self->queue); item; item = zlistx_next (self->queue))
        if (item->id == id) {
            zlistx_delete (self->queue, zlistx_cursor (self->queue));
            return;
        }
}

//  The first job no worker was offered within a lease, marked offered now.
static int64_t s_queue_offer (zf_jobs_t *self, int64_t now)
{
    for (s_queued_t *item = zlistx_first (self->queue); item; item = zlistx_next (self->queue))
        if (!item->offered_at || now - item->offered_at >= self->lease_ms) {
            item->offered_at = now;
            return item->id;
        }
    return 0;
}

static void s_reply_offer (zf_jobs_t *self, const zf_bus_return_t *return_to, int64_t id)
{
    zf_msg_job_offer_t offer = {.job_id = (uint64_t) id, .queue_ref = ""};
    zf_bus_reply (self->bus, return_to, &zf_msg_job_offer, &offer, NULL);
}

//  Hands queued jobs to waiting workers.
static void s_serve_takers (zf_jobs_t *self)
{
    int64_t now = zf_clock_wall_ms ();
    while (zlistx_size (self->takers) > 0) {
        int64_t id = s_queue_offer (self, now);
        if (!id)
            return;
        s_taker_t *taker = zlistx_first (self->takers);
        s_reply_offer (self, &taker->return_to, id);
        zlistx_delete (self->takers, zlistx_cursor (self->takers));
    }
}

static void s_enqueue (zf_jobs_t *self, int64_t id)
{
    if (self->stream) {
        char ref[ZF_JOB_STREAM_REF_MAX];
        zf_error_t err;
        if (zf_job_stream_add (self->stream, id, ref, &err) != ZF_OK) {
            //  The sweep adds it when Redis is back: the job waits, it is not lost.
            static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
            zf_warning_limited (&limit, s_name, "job %" PRId64 " not queued yet: %s", id,
                                err.message);
            return;
        }
        if (zf_jobs_set_queued (self->db, id, ref, &err) != ZF_OK)
            zf_warning (s_name, "job %" PRId64 ": queue entry %s not recorded: %s", id, ref,
                        err.message);
        zf_debug (s_name, "job %" PRId64 " queued entry=%s", id, ref);
        return;
    }
    if (!s_queue_find (self, id)) {
        s_queued_t *item = zf_calloc (1, sizeof *item);
        item->id = id;
        zlistx_add_end (self->queue, item);
    }
    s_serve_takers (self);
}

//  ---------------------------------------------------------------------------------------------
//  State changes: one log line each

static void s_finished (zf_jobs_t *self, int64_t id, zf_job_status_t state, const char *error,
                        int64_t created_at)
{
    zf_counter_add (self->finished[state], 1);
    if (created_at > 0)
        zf_histogram_observe (self->job_seconds,
                              (double) (zf_clock_wall_ms () - created_at) / 1000.0);
    if (state == ZF_JOB_SUCCESS)
        zf_notice (s_name, "job %" PRId64 " %s", id, zf_job_status_name (state));
    else
        zf_notice (s_name, "job %" PRId64 " %s: %s", id, zf_job_status_name (state),
                   error && *error ? error : "(no reason given)");
}

zf_status_t zf_jobs_create (zf_jobs_t *self, const zf_job_input_t *input, const char *created_by,
                            int64_t *id, zf_error_t *err)
{
    char *plain = zf_job_input_secrets (input);
    char *sealed = plain ? zf_job_secrets_seal (self->secrets, plain) : NULL;
    if (plain) {
        explicit_bzero (plain, strlen (plain));
        free (plain);
    }
    zf_status_t status =
        zf_jobs_insert (self->db, input, sealed, created_by, zf_clock_wall_ms (), id, err);
    zf_free (sealed);
    if (status != ZF_OK)
        return status;
    zf_notice (s_name, "job %" PRId64 " pending type=%s url=%s%s platform=%s scope=%s by=%s", *id,
               input->type, input->urls[0], input->url_count > 1 ? " (and more)" : "",
               *input->platform ? input->platform : "-", input->scope, created_by);
    s_enqueue (self, *id);
    return ZF_OK;
}

zf_status_t zf_jobs_cancel (zf_jobs_t *self, int64_t id, const char *by, zf_error_t *err)
{
    zf_job_row_t row;
    zf_status_t status = zf_jobs_row (self->db, id, &row, err);
    if (status != ZF_OK)
        return status;
    if (zf_job_status_final (row.state))
        return zf_error_set (err, ZF_E_INVALID, "state", "job %" PRId64 " already ended (%s)", id,
                             zf_job_status_name (row.state));
    char reason[200];
    snprintf (reason, sizeof reason, "cancelled by %s", by && *by ? by : "an operator");
    status = zf_jobs_set_final (self->db, id, ZF_JOB_CANCELLED, reason, zf_clock_wall_ms (), err);
    if (status != ZF_OK)
        return status;
    if (!self->stream)
        s_queue_remove (self, id);
    //  The worker learns it from its next job.update and stops; a queued Redis entry is
    //  acknowledged by the worker that takes it (job.start answers "cancelled").
    s_finished (self, id, ZF_JOB_CANCELLED, reason, row.created_at);
    return ZF_OK;
}

//  ---------------------------------------------------------------------------------------------
//  Workers

//  Job messages carry credentials: only this process, this host (ipc://, file permissions),
//  the manager's own key or a key of the [bus] allow directory may speak them.
static bool s_trusted (zf_jobs_t *self, zf_bus_msg_t *request)
{
    if (request->origin != ZF_BUS_FROM_NETWORK)
        return true;
    const char *own = zf_node_public_key (self->node);
    if (*request->peer_key && own && streq (request->peer_key, own))
        return true;
    if (*request->peer_key && self->allowed && zcertstore_lookup (self->allowed, request->peer_key))
        return true;
    static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
    zf_warning_limited (&limit, s_name,
                        "refused %s from key=%s address=%s: not a trusted preheat worker (use "
                        "the manager's keypair, or put the worker's key in [bus] allow)",
                        request->env.type, *request->peer_key ? request->peer_key : "-",
                        request->peer_address);
    zf_bus_reply_code (self->bus, &request->return_to, ZF_CODE_REFUSED, "",
                       "not a trusted preheat worker");
    return false;
}

static void s_handle_take (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_jobs_t *self = arg;
    if (!s_trusted (self, request))
        return;
    const zf_msg_job_take_t *body = request->env.body;
    if (self->stream) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_REFUSED, "",
                           "this manager queues jobs in %s: set [preheat] queue to it",
                           self->config->queue);
        return;
    }
    int64_t now = zf_clock_wall_ms ();
    int64_t id = s_queue_offer (self, now);
    if (id || body->wait_ms == 0) {
        s_reply_offer (self, &request->return_to, id);
        return;
    }
    s_taker_t *taker = zf_calloc (1, sizeof *taker);
    taker->return_to = request->return_to;
    int64_t wait =
        body->wait_ms < S_TAKE_WAIT_MAX_MS ? (int64_t) body->wait_ms : S_TAKE_WAIT_MAX_MS;
    taker->deadline = now + wait;
    zlistx_add_end (self->takers, taker);
}

static void s_reply_started (zf_jobs_t *self, const zf_bus_return_t *return_to, int64_t id,
                             const char *verdict, const char *message)
{
    zf_msg_job_started_t started = {
        .job_id = (uint64_t) id, .verdict = (char *) verdict, .message = (char *) message};
    zf_bus_reply (self->bus, return_to, &zf_msg_job_started, &started, NULL);
}

//  Fills started from the job's definition (and opened secrets). False with err when the job
//  cannot run as defined.
static zf_status_t s_definition (zf_jobs_t *self, int64_t id, json_t **args_out,
                                 json_t **secrets_out, zf_rec_job_target_t **targets,
                                 size_t *target_count, zf_error_t *err)
{
    char *args_text, *sealed, *clusters_text;
    zf_status_t status =
        zf_jobs_definition (self->db, id, &args_text, &sealed, &clusters_text, err);
    if (status != ZF_OK)
        return status;
    json_t *args = json_loads (args_text, 0, NULL);
    json_t *clusters = json_loads (clusters_text, 0, NULL);
    zf_free (args_text);
    zf_free (clusters_text);
    json_t *secrets = NULL;
    if (sealed) {
        char *plain = zf_job_secrets_open (self->secrets, sealed, err);
        zf_free (sealed);
        if (!plain) {
            json_decref (args);
            json_decref (clusters);
            return err->code;
        }
        secrets = json_loads (plain, 0, NULL);
        zf_secret_free (plain);
    }
    int64_t cluster_ids[ZF_JOB_CLUSTERS_MAX];
    size_t cluster_count = 0;
    size_t index;
    json_t *item;
    json_array_foreach (clusters, index, item) if (cluster_count < ZF_JOB_CLUSTERS_MAX)
        cluster_ids[cluster_count++] = json_integer_value (item);
    json_decref (clusters);
    const char *scope = json_string_value (json_object_get (args, "scope"));
    bool seeds_only = !scope || !streq (scope, "all_peers");
    int64_t seen_since = zf_clock_wall_ms () - S_RECENT_REFRESHES * self->config->refresh_ms;
    status = zf_jobs_targets (self->db, seeds_only, cluster_ids, cluster_count, seen_since, targets,
                              target_count, err);
    if (status != ZF_OK) {
        json_decref (args);
        json_decref (secrets);
        return status;
    }
    *args_out = args;
    *secrets_out = secrets;
    return ZF_OK;
}

static void s_start_job (zf_jobs_t *self, zf_bus_msg_t *request, const zf_job_row_t *row)
{
    const zf_msg_job_start_t *body = request->env.body;
    int64_t id = row->id;
    json_t *args = NULL, *secrets = NULL;
    zf_rec_job_target_t *targets = NULL;
    size_t target_count = 0;
    zf_error_t err;
    zf_status_t status = s_definition (self, id, &args, &secrets, &targets, &target_count, &err);
    if (status == ZF_E_REFUSED || status == ZF_E_INVALID) {
        //  The credentials cannot be opened: the job cannot run as asked, now or later.
        if (zf_jobs_set_final (self->db, id, ZF_JOB_FAILURE, err.message, zf_clock_wall_ms (), &err)
            == ZF_OK)
            s_finished (self, id, ZF_JOB_FAILURE, err.message, row->created_at);
        s_reply_started (self, &request->return_to, id, "done", err.message);
        return;
    }
    if (status != ZF_OK) {
        zf_bus_reply_code (self->bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                           "the manager's database failed: %s", err.message);
        return;
    }
    int64_t attempt = row->attempt + 1;
    if (zf_jobs_set_running (self->db, id, body->worker, attempt, zf_clock_wall_ms (), &err)
        != ZF_OK) {
        zf_bus_reply_code (self->bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                           "the manager's database failed: %s", err.message);
        json_decref (args);
        json_decref (secrets);
        zf_jobs_targets_free (targets, target_count);
        return;
    }
    if (!self->stream)
        s_queue_remove (self, id);
    zf_notice (s_name, "job %" PRId64 " running worker=%s attempt=%" PRId64 " targets=%zu", id,
               body->worker, attempt, target_count);

    json_t *urls = json_object_get (args, "urls");
    char *url_list[ZF_JOB_URLS_MAX];
    size_t url_count = 0;
    size_t index;
    json_t *item;
    json_array_foreach (urls, index, item) if (url_count < ZF_JOB_URLS_MAX) url_list[url_count++] =
        (char *) json_string_value (item);
    json_t *headers = json_object_get (secrets, "headers");
    zf_rec_http_header_t header_list[ZF_JOB_HEADERS_MAX];
    size_t header_count = 0;
    const char *name;
    json_object_foreach (headers, name,
                         item) if (header_count < ZF_JOB_HEADERS_MAX
                                   && json_is_string (item)) header_list[header_count++] =
        (zf_rec_http_header_t){.name = (char *) name, .value = (char *) json_string_value (item)};
    json_int_t timeout_ns = json_integer_value (json_object_get (args, "timeout"));
    const char *username = json_string_value (json_object_get (secrets, "username"));
    const char *password = json_string_value (json_object_get (secrets, "password"));
    zf_msg_job_started_t started = {
        .job_id = (uint64_t) id,
        .verdict = "run",
        .message = "",
        .attempt = (uint64_t) attempt,
        .type = (char *) json_string_value (json_object_get (args, "type")),
        .urls = {.items = url_list, .count = url_count},
        .platform = (char *) json_string_value (json_object_get (args, "platform")),
        .scope = (char *) json_string_value (json_object_get (args, "scope")),
        .concurrency = (uint64_t) json_integer_value (json_object_get (args, "concurrent_count")),
        .timeout_ms = (uint64_t) (timeout_ns / 1000000),
        .headers = {.items = header_list, .count = header_count},
        .username = (char *) (username ? username : ""),
        .password = (char *) (password ? password : ""),
        .targets = {.items = targets, .count = target_count < 1024 ? target_count : 1024},
    };
    if (!started.type)
        started.type = "image";
    if (!started.platform)
        started.platform = "";
    if (!started.scope)
        started.scope = "single_seed_peer";
    zf_bus_reply (self->bus, &request->return_to, &zf_msg_job_started, &started, NULL);
    json_decref (args);
    json_decref (secrets); //  jansson keeps no copy we would need to wipe beyond this
    zf_jobs_targets_free (targets, target_count);
}

static void s_handle_start (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_jobs_t *self = arg;
    if (!s_trusted (self, request))
        return;
    const zf_msg_job_start_t *body = request->env.body;
    int64_t id = (int64_t) body->job_id;
    zf_job_row_t row;
    zf_error_t err;
    zf_status_t status = zf_jobs_row (self->db, id, &row, &err);
    if (status == ZF_E_MISSING) {
        s_reply_started (self, &request->return_to, id, "stale", "no such job");
        return;
    }
    if (status != ZF_OK) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                           "the manager's database failed: %s", err.message);
        return;
    }
    if (row.state == ZF_JOB_CANCELLED) {
        s_reply_started (self, &request->return_to, id, "cancelled", "the job was cancelled");
        return;
    }
    if (zf_job_status_final (row.state)) {
        s_reply_started (self, &request->return_to, id, "done", zf_job_status_name (row.state));
        return;
    }
    //  A Redis entry other than the job's own (one added twice around a crash): drop it.
    if (self->stream && *row.queue_ref && !streq (row.queue_ref, body->queue_ref)) {
        s_reply_started (self, &request->return_to, id, "stale",
                         "this queue entry is not the job's own");
        return;
    }
    int64_t now = zf_clock_wall_ms ();
    if (row.state == ZF_JOB_RUNNING && !streq (row.worker, body->worker)
        && now - row.heartbeat_at < self->lease_ms) {
        char message[256];
        snprintf (message, sizeof message, "worker %s runs it and reported %" PRId64 " ms ago",
                  row.worker, now - row.heartbeat_at);
        s_reply_started (self, &request->return_to, id, "held", message);
        return;
    }
    s_start_job (self, request, &row);
}

static void s_reply_updated (zf_jobs_t *self, const zf_bus_return_t *return_to, uint64_t id,
                             const char *verdict)
{
    zf_msg_job_updated_t updated = {.job_id = id, .verdict = (char *) verdict};
    zf_bus_reply (self->bus, return_to, &zf_msg_job_updated, &updated, NULL);
}

static void s_handle_update (zf_bus_t *bus, zf_bus_msg_t *request, void *arg)
{
    zf_jobs_t *self = arg;
    if (!s_trusted (self, request))
        return;
    const zf_msg_job_update_t *body = request->env.body;
    int64_t id = (int64_t) body->job_id;
    zf_job_row_t row;
    zf_error_t err;
    zf_status_t status = zf_jobs_row (self->db, id, &row, &err);
    if (status == ZF_E_MISSING) {
        s_reply_updated (self, &request->return_to, body->job_id, "lost");
        return;
    }
    if (status != ZF_OK) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                           "the manager's database failed: %s", err.message);
        return;
    }
    if (zf_job_status_final (row.state)) {
        //  An update that repeats the end this worker reported (its first answer was lost) is
        //  "ok" again; any other is told why it should stop.
        bool repeat = streq (row.worker, body->worker) && row.attempt == (int64_t) body->attempt
                      && !streq (body->state, "running");
        s_reply_updated (self, &request->return_to, body->job_id,
                         repeat                          ? "ok"
                         : row.state == ZF_JOB_CANCELLED ? "cancelled"
                                                         : "done");
        return;
    }
    if (row.state != ZF_JOB_RUNNING || !streq (row.worker, body->worker)
        || row.attempt != (int64_t) body->attempt) {
        zf_info (s_name,
                 "job %" PRId64 ": update from worker=%s attempt=%" PRIu64
                 " refused: the job is %s with worker=%s attempt=%" PRId64,
                 id, body->worker, body->attempt, zf_job_status_name (row.state), row.worker,
                 row.attempt);
        s_reply_updated (self, &request->return_to, body->job_id, "lost");
        return;
    }
    int64_t now = zf_clock_wall_ms ();
    if (zf_jobs_record (self->db, body, now, &err) != ZF_OK) {
        zf_bus_reply_code (bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                           "the manager's database failed: %s", err.message);
        return;
    }
    if (!streq (body->state, "running")) {
        zf_job_status_t state = streq (body->state, "success") ? ZF_JOB_SUCCESS : ZF_JOB_FAILURE;
        if (zf_jobs_set_final (self->db, id, state, body->error, now, &err) != ZF_OK) {
            zf_bus_reply_code (bus, &request->return_to, ZF_CODE_UNAVAILABLE, "",
                               "the manager's database failed: %s", err.message);
            return;
        }
        s_finished (self, id, state, body->error, row.created_at);
    }
    s_reply_updated (self, &request->return_to, body->job_id, "ok");
}

//  ---------------------------------------------------------------------------------------------
//  The timer: leases, held takes, lost entries, metrics

static void s_expire_takers (zf_jobs_t *self, int64_t now)
{
    s_taker_t *taker = zlistx_first (self->takers);
    while (taker) {
        if (now >= taker->deadline) {
            s_reply_offer (self, &taker->return_to, 0);
            zlistx_delete (self->takers, zlistx_cursor (self->takers));
            taker = zlistx_first (self->takers); //  restart: the cursor went with the item
        } else
            taker = zlistx_next (self->takers);
    }
}

//  Calls visit for every job in state, oldest first, a page of S_SWEEP_BATCH at a time (a job
//  beyond the first page must not wait for the ones before it to leave the state), until visit
//  returns false. *visited (when not NULL) counts the jobs visit took.
typedef bool (s_visit_fn) (zf_jobs_t *self, const zf_job_row_t *row, void *arg);
static zf_status_t s_each_in_state (zf_jobs_t *self, zf_job_status_t state, s_visit_fn *visit,
                                    void *arg, size_t *visited, zf_error_t *err)
{
    zf_job_row_t rows[S_SWEEP_BATCH];
    size_t count = 0;
    int64_t after_id = 0;
    if (visited)
        *visited = 0;
    do {
        zf_status_t status =
            zf_jobs_in_state (self->db, state, after_id, rows, S_SWEEP_BATCH, &count, err);
        if (status != ZF_OK)
            return status;
        for (size_t index = 0; index < count; index++) {
            if (!visit (self, &rows[index], arg))
                return ZF_OK;
            if (visited)
                (*visited)++;
        }
        if (count)
            after_id = rows[count - 1].id;
    } while (count == S_SWEEP_BATCH);
    return ZF_OK;
}

//  A job whose worker went silent for a lease goes back to the queue (own queue: the manager
//  decides; with Redis, Redis gives the entry to another worker, see s_sweep_stream).
static bool s_expire_lease (zf_jobs_t *self, const zf_job_row_t *row, void *arg)
{
    int64_t now = *(const int64_t *) arg;
    zf_error_t err;
    if (now - row->heartbeat_at < self->lease_ms
        || zf_jobs_set_pending (self->db, row->id, now, &err) != ZF_OK)
        return true;
    zf_notice (s_name, "job %" PRId64 " pending: worker=%s silent for %" PRId64 " ms", row->id,
               row->worker, now - row->heartbeat_at);
    s_enqueue (self, row->id);
    return true;
}

static bool s_enqueue_row (zf_jobs_t *self, const zf_job_row_t *row, void *arg)
{
    (void) arg;
    s_enqueue (self, row->id);
    return true;
}

typedef struct {
    int64_t now;
    zf_job_status_t state;
    bool check_entries; //  this sweep asks Redis whether quiet jobs' entries still exist
    bool redis_away;    //  Redis did not answer: the sweep stops, next time again
} s_stream_sweep_t;

//  One job of the Redis sweep (s_sweep_stream).
static bool s_sweep_row (zf_jobs_t *self, const zf_job_row_t *row, void *arg)
{
    s_stream_sweep_t *sweep = arg;
    zf_error_t err;
    if (!*row->queue_ref) {
        if (sweep->state == ZF_JOB_PENDING)
            s_enqueue (self, row->id);
        return true;
    }
    int64_t quiet_since = sweep->state == ZF_JOB_RUNNING ? row->heartbeat_at : row->created_at;
    if (!sweep->check_entries || sweep->now - quiet_since < S_LOST_LEASES * self->lease_ms)
        return true;
    bool exists = true;
    if (zf_job_stream_exists (self->stream, row->queue_ref, &exists, &err) != ZF_OK) {
        sweep->redis_away = true;
        return false;
    }
    if (exists)
        return true;
    zf_notice (s_name, "job %" PRId64 ": its queue entry %s is gone from Redis: queued again",
               row->id, row->queue_ref);
    if (zf_jobs_set_queued (self->db, row->id, "", &err) == ZF_OK)
        s_enqueue (self, row->id);
    return true;
}

//  Redis: jobs not yet in the stream are added; a job whose entry Redis lost (restarted
//  without persistence) is added again once it was quiet for a few leases. Every page, as the
//  own queue's sweeps: a job past the first must not wait for the ones before it.
static void s_sweep_stream (zf_jobs_t *self, int64_t now)
{
    s_stream_sweep_t sweep = {.now = now, .check_entries = now >= self->next_stream_check};
    if (sweep.check_entries)
        self->next_stream_check = now + self->lease_ms;
    zf_error_t err;
    for (int pass = 0; pass < 2 && !sweep.redis_away; pass++) {
        sweep.state = pass == 0 ? ZF_JOB_PENDING : ZF_JOB_RUNNING;
        if (s_each_in_state (self, sweep.state, s_sweep_row, &sweep, NULL, &err) != ZF_OK)
            return;
    }
}

static void s_census (zf_jobs_t *self, int64_t now)
{
    int64_t counts[ZF_JOB_STATUS_COUNT], oldest = 0;
    zf_error_t err;
    if (zf_jobs_census (self->db, counts, &oldest, &err) != ZF_OK)
        return;
    for (int state = 0; state < ZF_JOB_STATUS_COUNT; state++)
        zf_gauge_set (self->jobs_by_state[state], (double) counts[state]);
    zf_gauge_set (self->queue_depth, (double) counts[ZF_JOB_PENDING]);
    zf_gauge_set (self->queue_oldest, oldest ? (double) (now - oldest) / 1000.0 : 0.0);
}

static int s_on_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    zf_jobs_t *self = arg;
    int64_t now = zf_clock_wall_ms ();
    if (self->stream)
        s_sweep_stream (self, now);
    else {
        zf_error_t err;
        s_expire_takers (self, now);
        s_each_in_state (self, ZF_JOB_RUNNING, s_expire_lease, &now, NULL, &err);
        s_serve_takers (self); //  offers that were not taken up are made again
    }
    s_census (self, now);
    return 0;
}

//  ---------------------------------------------------------------------------------------------
//  Start and stop

static void s_destroy (void *arg)
{
    zf_jobs_t *self = arg;
    if (self->timer_id >= 0)
        zloop_timer_end (self->loop, self->timer_id);
    for (s_taker_t *taker = zlistx_first (self->takers); taker; taker = zlistx_next (self->takers))
        s_reply_offer (self, &taker->return_to, 0);
    zlistx_destroy (&self->takers);
    zlistx_destroy (&self->queue);
    zf_job_stream_destroy (&self->stream);
    zf_job_secrets_destroy (&self->secrets);
    zcertstore_destroy (&self->allowed);
    zf_free (self);
}

static void s_metrics_init (zf_jobs_t *self)
{
    for (int state = 0; state < ZF_JOB_STATUS_COUNT; state++) {
        const char *name = zf_job_status_name ((zf_job_status_t) state);
        self->jobs_by_state[state] = zf_metrics_gauge (
            "zfly_preheat_jobs", "Preheat jobs in the database, by state", "state", name, NULL);
        self->finished[state] =
            zf_metrics_counter ("zfly_preheat_jobs_finished_total",
                                "Preheat jobs that ended, by how", "result", name, NULL);
    }
    self->queue_depth =
        zf_metrics_gauge ("zfly_preheat_queue_depth", "Preheat jobs waiting for a worker", NULL);
    self->queue_oldest =
        zf_metrics_gauge ("zfly_preheat_queue_oldest_seconds",
                          "Age of the oldest preheat job waiting for a worker", NULL);
    static const double buckets[] = {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600};
    self->job_seconds =
        zf_metrics_histogram ("zfly_preheat_job_seconds", "Preheat jobs from creation to their end",
                              buckets, ZF_ARRAY_LEN (buckets), NULL);
}

void zf_jobs_register (zf_rest_t *rest, zf_manager_t *manager)
{
    zf_jobs_t *self = zf_calloc (1, sizeof *self);
    self->manager = manager;
    self->db = zf_manager_db (manager);
    self->bus = zf_manager_bus (manager);
    self->loop = zf_manager_loop (manager);
    self->config = zf_manager_config (manager);
    self->node = zf_manager_node (manager);
    self->lease_ms = self->config->job_lease_ms;
    self->timer_id = -1;
    const zf_node_options_t *options = zf_node_options (self->node);
    zf_error_t err;
    self->secrets = zf_job_secrets_new (options->cert_path, &err);
    if (!self->secrets) {
        //  The daemon loaded this certificate already; failing here would be a race with an
        //  operator replacing it. Jobs get a per-process key and say so.
        zf_warning (s_name, "preheat: %s: job credentials will not survive a restart", err.message);
        self->secrets = zf_job_secrets_new (NULL, &err);
    } else if (!zf_job_secrets_durable (self->secrets))
        zf_notice (s_name, "preheat: no [bus] cert: job credentials will not survive a restart");
    if (options->allow_dir && *options->allow_dir)
        self->allowed = zcertstore_new (options->allow_dir);
    if (*self->config->queue) {
        self->stream = zf_job_stream_new (self->config->queue, NULL, &err);
        ZF_ASSERT (self->stream); //  the configuration was checked at load (zf_manager.c)
    }
    self->queue = zlistx_new ();
    zlistx_set_destructor (self->queue, s_free_item);
    self->takers = zlistx_new ();
    zlistx_set_destructor (self->takers, s_free_item);
    s_metrics_init (self);

    zf_bus_handle (self->bus, ZF_MSG_JOB_TAKE, s_handle_take, self);
    zf_bus_handle (self->bus, ZF_MSG_JOB_START, s_handle_start, self);
    zf_bus_handle (self->bus, ZF_MSG_JOB_UPDATE, s_handle_update, self);
    zf_jobs_api_register (rest, self);
    zf_jobs_harbor_register (rest, self);

    //  The own queue is rebuilt from the database: every pending job waits again (all of
    //  them: one left out would wait for ever), running ones go back to it when their worker
    //  stays silent for a lease (the timer).
    if (!self->stream) {
        size_t queued = 0;
        if (s_each_in_state (self, ZF_JOB_PENDING, s_enqueue_row, NULL, &queued, &err) != ZF_OK)
            zf_warning (s_name, "preheat: pending jobs not queued again: %s", err.message);
        if (queued)
            zf_notice (s_name, "preheat: %zu pending jobs queued again", queued);
    }
    int64_t tick = self->lease_ms / 4 < 1000 ? self->lease_ms / 4 : 1000;
    self->timer_id =
        zloop_timer (self->loop, (size_t) (tick > 50 ? tick : 50), 0, s_on_timer, self);
    zf_manager_on_stop (manager, s_destroy, self);
    zf_info (s_name, "preheat: jobs queue=%s lease=%" PRId64 "ms",
             self->stream ? self->config->queue : "own", self->lease_ms);
}
