/*  zf_jobs_store.c — preheat jobs and their tasks in the manager's database.

    jobs: one row per job (state, who runs it and since when, sealed credentials while it
    runs, what its references resolved to); job_tasks: one row per (job, blob or file, host),
    keyed by the blob's digest (or the file URL's SHA-256) and the host's name, so a worker's
    repeated reports and a restarted job update the same rows. */
#include "zf_jobs.h"
#include "zf_log.h"
#include "../preheat/zf_manifest.h"

static const char *const s_state_names[ZF_JOB_STATUS_COUNT] = {"pending", "running", "success",
                                                               "failure", "cancelled"};

const char *zf_job_status_name (zf_job_status_t state)
{
    ZF_ASSERT ((int) state >= 0 && state < ZF_JOB_STATUS_COUNT);
    return s_state_names[state];
}

zf_job_status_t zf_job_status_of (const char *text)
{
    for (int state = 0; state < ZF_JOB_STATUS_COUNT; state++)
        if (text && streq (text, s_state_names[state]))
            return (zf_job_status_t) state;
    return ZF_JOB_STATUS_COUNT;
}

bool zf_job_status_final (zf_job_status_t state)
{
    return state == ZF_JOB_SUCCESS || state == ZF_JOB_FAILURE || state == ZF_JOB_CANCELLED;
}

static zf_status_t s_failed (zf_error_t *err)
{
    return err ? err->code : ZF_E_IO;
}

//  ---------------------------------------------------------------------------------------------
//  Rows for the queue

#define S_ROW_SELECT                                                                               \
    "SELECT id, state, worker, attempt, queue_ref, heartbeat_at, created_at FROM jobs "

static void s_row (const zf_db_result_t *rows, size_t index, zf_job_row_t *row)
{
    memset (row, 0, sizeof *row);
    row->id = zf_db_result_int (rows, index, 0, 0);
    row->state = zf_job_status_of (zf_db_result_text (rows, index, 1));
    if (row->state == ZF_JOB_STATUS_COUNT)
        row->state = ZF_JOB_FAILURE; //  a word this build does not know: treat as ended
    zf_strlcpy (row->worker, zf_db_result_text (rows, index, 2), sizeof row->worker);
    row->attempt = zf_db_result_int (rows, index, 3, 0);
    zf_strlcpy (row->queue_ref, zf_db_result_text (rows, index, 4), sizeof row->queue_ref);
    row->heartbeat_at = zf_db_result_int (rows, index, 5, 0);
    row->created_at = zf_db_result_int (rows, index, 6, 0);
}

zf_status_t zf_jobs_insert (zf_db_t *db, const zf_job_input_t *input, const char *secrets,
                            const char *created_by, int64_t now, int64_t *id, zf_error_t *err)
{
    json_t *args = zf_job_input_args (input);
    char *args_text = json_dumps (args, JSON_COMPACT);
    json_decref (args);
    char *clusters = zf_job_input_cluster_ids (input);
    zf_status_t status = zf_db_exec (
        db,
        "INSERT INTO jobs (type, state, args, result, scheduler_cluster_ids, "
        "created_by, created_at, updated_at, secrets) "
        "VALUES ('preheat', 'pending', ?, '{}', ?, ?, ?, ?, ?)",
        ZF_DB_ARGS (ZF_DB_TEXT (args_text), ZF_DB_TEXT (clusters), ZF_DB_TEXT (created_by),
                    ZF_DB_INT (now), ZF_DB_INT (now), ZF_DB_TEXT (secrets)),
        NULL, id, err);
    free (args_text);
    free (clusters);
    return status;
}

zf_status_t zf_jobs_row (zf_db_t *db, int64_t id, zf_job_row_t *row, zf_error_t *err)
{
    zf_db_result_t *rows =
        zf_db_query (db, S_ROW_SELECT "WHERE id = ?", ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!rows)
        return s_failed (err);
    bool found = zf_db_result_rows (rows) == 1;
    if (found)
        s_row (rows, 0, row);
    zf_db_result_destroy (&rows);
    return found ? ZF_OK : zf_error_set (err, ZF_E_MISSING, "id", "no job %" PRId64, id);
}

zf_status_t zf_jobs_in_state (zf_db_t *db, zf_job_status_t state, int64_t after_id,
                              zf_job_row_t *list, size_t max, size_t *count, zf_error_t *err)
{
    *count = 0;
    zf_db_result_t *rows = zf_db_query (
        db, S_ROW_SELECT "WHERE state = ? AND id > ? ORDER BY id LIMIT ?",
        ZF_DB_ARGS (ZF_DB_TEXT (zf_job_status_name (state)), ZF_DB_INT (after_id), ZF_DB_INT (max)),
        err);
    if (!rows)
        return s_failed (err);
    for (size_t index = 0; index < zf_db_result_rows (rows) && index < max; index++)
        s_row (rows, index, &list[(*count)++]);
    zf_db_result_destroy (&rows);
    return ZF_OK;
}

zf_status_t zf_jobs_census (zf_db_t *db, int64_t counts[ZF_JOB_STATUS_COUNT],
                            int64_t *oldest_pending, zf_error_t *err)
{
    memset (counts, 0, ZF_JOB_STATUS_COUNT * sizeof counts[0]);
    zf_db_result_t *rows =
        zf_db_query (db, "SELECT state, COUNT(*) FROM jobs GROUP BY state", ZF_DB_NO_ARGS, err);
    if (!rows)
        return s_failed (err);
    for (size_t index = 0; index < zf_db_result_rows (rows); index++) {
        zf_job_status_t state = zf_job_status_of (zf_db_result_text (rows, index, 0));
        if (state < ZF_JOB_STATUS_COUNT)
            counts[state] = zf_db_result_int (rows, index, 1, 0);
    }
    zf_db_result_destroy (&rows);
    rows = zf_db_query (db, "SELECT MIN(created_at) FROM jobs WHERE state = 'pending'",
                        ZF_DB_NO_ARGS, err);
    if (!rows)
        return s_failed (err);
    *oldest_pending = zf_db_result_int (rows, 0, 0, 0);
    zf_db_result_destroy (&rows);
    return ZF_OK;
}

zf_status_t zf_jobs_definition (zf_db_t *db, int64_t id, char **args, char **secrets,
                                char **cluster_ids, zf_error_t *err)
{
    *args = *secrets = *cluster_ids = NULL;
    zf_db_result_t *rows =
        zf_db_query (db, "SELECT args, secrets, scheduler_cluster_ids FROM jobs WHERE id = ?",
                     ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!rows)
        return s_failed (err);
    bool found = zf_db_result_rows (rows) == 1;
    if (found) {
        *args = zf_strdup (zf_db_result_text (rows, 0, 0));
        const char *sealed = zf_db_result_text (rows, 0, 1);
        *secrets = sealed && *sealed ? zf_strdup (sealed) : NULL;
        *cluster_ids = zf_strdup (zf_db_result_text (rows, 0, 2));
    }
    zf_db_result_destroy (&rows);
    return found ? ZF_OK : zf_error_set (err, ZF_E_MISSING, "id", "no job %" PRId64, id);
}

//  ---------------------------------------------------------------------------------------------
//  State changes

zf_status_t zf_jobs_set_queued (zf_db_t *db, int64_t id, const char *queue_ref, zf_error_t *err)
{
    return zf_db_exec (db, "UPDATE jobs SET queue_ref = ? WHERE id = ?",
                       ZF_DB_ARGS (ZF_DB_TEXT (queue_ref), ZF_DB_INT (id)), NULL, NULL, err);
}

zf_status_t zf_jobs_set_running (zf_db_t *db, int64_t id, const char *worker, int64_t attempt,
                                 int64_t now, zf_error_t *err)
{
    return zf_db_exec (db,
                       "UPDATE jobs SET state = 'running', worker = ?, attempt = ?, "
                       "heartbeat_at = ?, started_at = CASE WHEN started_at = 0 THEN ? ELSE "
                       "started_at END, updated_at = ? WHERE id = ?",
                       ZF_DB_ARGS (ZF_DB_TEXT (worker), ZF_DB_INT (attempt), ZF_DB_INT (now),
                                   ZF_DB_INT (now), ZF_DB_INT (now), ZF_DB_INT (id)),
                       NULL, NULL, err);
}

zf_status_t zf_jobs_set_pending (zf_db_t *db, int64_t id, int64_t now, zf_error_t *err)
{
    return zf_db_exec (db, "UPDATE jobs SET state = 'pending', updated_at = ? WHERE id = ?",
                       ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (id)), NULL, NULL, err);
}

zf_status_t zf_jobs_set_final (zf_db_t *db, int64_t id, zf_job_status_t state, const char *error,
                               int64_t now, zf_error_t *err)
{
    ZF_ASSERT (zf_job_status_final (state));
    return zf_db_exec (db,
                       "UPDATE jobs SET state = ?, error = ?, finished_at = ?, updated_at = ?, "
                       "secrets = NULL WHERE id = ?",
                       ZF_DB_ARGS (ZF_DB_TEXT (zf_job_status_name (state)),
                                   ZF_DB_TEXT (error && *error ? error : NULL), ZF_DB_INT (now),
                                   ZF_DB_INT (now), ZF_DB_INT (id)),
                       NULL, NULL, err);
}

//  The task's key: the blob digest's hex, or the SHA-256 of a file URL.
static void s_task_key (const zf_rec_job_task_t *task, char *key)
{
    if (zf_task_digest_valid (task->digest)) {
        zf_strlcpy (key, task->digest + 7, ZF_TASK_ID_SIZE + 1);
        return;
    }
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    zf_manifest_digest (task->url, strlen (task->url), digest);
    zf_strlcpy (key, digest + 7, ZF_TASK_ID_SIZE + 1);
}

static zf_status_t s_record_task (zf_db_t *db, int64_t job_id, const zf_rec_job_task_t *task,
                                  int64_t now, zf_error_t *err)
{
    char key[ZF_TASK_ID_SIZE + 1];
    s_task_key (task, key);
    zf_db_result_t *rows = zf_db_query (
        db, "SELECT id FROM job_tasks WHERE job_id = ? AND task_id = ? AND host_name = ?",
        ZF_DB_ARGS (ZF_DB_INT (job_id), ZF_DB_TEXT (key), ZF_DB_TEXT (task->host)), err);
    if (!rows)
        return s_failed (err);
    int64_t row_id = zf_db_result_int (rows, 0, 0, 0);
    zf_db_result_destroy (&rows);
    if (row_id)
        return zf_db_exec (db,
                           "UPDATE job_tasks SET url = ?, digest = ?, cluster_id = ?, host_ip = ?, "
                           "state = ?, description = ?, content_length = ?, bytes_done = ?, "
                           "attempts = ?, updated_at = ? WHERE id = ?",
                           ZF_DB_ARGS (ZF_DB_TEXT (task->url), ZF_DB_TEXT (task->digest),
                                       ZF_DB_INT (task->cluster_id), ZF_DB_TEXT (task->address),
                                       ZF_DB_TEXT (task->state), ZF_DB_TEXT (task->description),
                                       ZF_DB_INT (task->content_length),
                                       ZF_DB_INT (task->bytes_done), ZF_DB_INT (task->attempts),
                                       ZF_DB_INT (now), ZF_DB_INT (row_id)),
                           NULL, NULL, err);
    return zf_db_exec (
        db,
        "INSERT INTO job_tasks (job_id, cluster_id, url, task_id, host_name, "
        "host_ip, state, description, created_at, updated_at, digest, "
        "content_length, bytes_done, attempts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ZF_DB_ARGS (ZF_DB_INT (job_id), ZF_DB_INT (task->cluster_id), ZF_DB_TEXT (task->url),
                    ZF_DB_TEXT (key), ZF_DB_TEXT (task->host), ZF_DB_TEXT (task->address),
                    ZF_DB_TEXT (task->state), ZF_DB_TEXT (task->description), ZF_DB_INT (now),
                    ZF_DB_INT (now), ZF_DB_TEXT (task->digest), ZF_DB_INT (task->content_length),
                    ZF_DB_INT (task->bytes_done), ZF_DB_INT (task->attempts)),
        NULL, NULL, err);
}

zf_status_t zf_jobs_record (zf_db_t *db, const zf_msg_job_update_t *update, int64_t now,
                            zf_error_t *err)
{
    zf_status_t status = zf_db_begin (db, err);
    if (status != ZF_OK)
        return status;
    const zf_rec_job_task_t *tasks = update->tasks.items;
    for (size_t index = 0; status == ZF_OK && index < update->tasks.count; index++)
        status = s_record_task (db, (int64_t) update->job_id, &tasks[index], now, err);
    if (status == ZF_OK && update->images.count) {
        json_t *images = json_array ();
        for (size_t index = 0; index < update->images.count; index++)
            json_array_append_new (images, json_string (((char **) update->images.items)[index]));
        json_t *result = json_pack ("{s:o}", "images", images);
        char *text = json_dumps (result, JSON_COMPACT);
        json_decref (result);
        status = zf_db_exec (db, "UPDATE jobs SET result = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (text), ZF_DB_INT (update->job_id)), NULL, NULL,
                             err);
        free (text);
    }
    if (status == ZF_OK)
        status =
            zf_db_exec (db,
                        "UPDATE jobs SET heartbeat_at = ?, updated_at = ?, tasks_total = ? "
                        "WHERE id = ?",
                        ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (now),
                                    ZF_DB_INT (update->tasks_total), ZF_DB_INT (update->job_id)),
                        NULL, NULL, err);
    if (status == ZF_OK)
        return zf_db_commit (db, err);
    zf_db_rollback (db);
    return status;
}

//  ---------------------------------------------------------------------------------------------
//  Targets

zf_status_t zf_jobs_targets (zf_db_t *db, bool seeds_only, const int64_t *clusters,
                             size_t cluster_count, int64_t seen_since,
                             zf_rec_job_target_t **targets, size_t *count, zf_error_t *err)
{
    *targets = NULL;
    *count = 0;
    ZF_ASSERT (cluster_count <= ZF_JOB_CLUSTERS_MAX);
    //  The cluster filter as "?, ?, …": values stay bound parameters.
    char in_list[ZF_JOB_CLUSTERS_MAX * 3 + 1] = "";
    size_t used = 0;
    for (size_t index = 0; index < cluster_count; index++)
        used += zf_strlcpy (in_list + used, index ? ", ?" : "?", sizeof in_list - used);
    zf_db_arg_t args[ZF_JOB_CLUSTERS_MAX + 1];
    size_t arg_count = 0;
    if (!seeds_only)
        args[arg_count++] = ZF_DB_INT (seen_since);
    for (size_t index = 0; index < cluster_count; index++)
        args[arg_count++] = ZF_DB_INT (clusters[index]);
    char *sql =
        seeds_only
            ? zf_asprintf ("SELECT s.cluster_id, s.name, h.address, s.fetcher_endpoint, "
                           "s.public_key, 1 FROM seed_peers s JOIN hosts h ON h.id = s.host_id "
                           "WHERE s.state = 'active' AND h.state = 'active' AND "
                           "s.fetcher_endpoint <> ''%s%s%s ORDER BY s.cluster_id, s.name",
                           cluster_count ? " AND s.cluster_id IN (" : "", in_list,
                           cluster_count ? ")" : "")
            : zf_asprintf ("SELECT h.cluster_id, h.name, h.address, h.fetcher_endpoint, "
                           "h.public_key, (SELECT COUNT(*) FROM seed_peers p WHERE p.host_id = "
                           "h.id AND p.state = 'active') FROM hosts h WHERE h.state = 'active' "
                           "AND h.fetcher_endpoint <> '' AND h.last_seen >= ?%s%s%s "
                           "ORDER BY h.cluster_id, h.name",
                           cluster_count ? " AND h.cluster_id IN (" : "", in_list,
                           cluster_count ? ")" : "");
    zf_db_result_t *rows = zf_db_query (db, sql, args, arg_count, err);
    zf_free (sql);
    if (!rows)
        return s_failed (err);
    size_t found = zf_db_result_rows (rows);
    *targets = zf_calloc (found ? found : 1, sizeof **targets);
    for (size_t index = 0; index < found; index++) {
        zf_rec_job_target_t *target = &(*targets)[index];
        target->cluster_id = (uint64_t) zf_db_result_int (rows, index, 0, 0);
        target->host = zf_strdup (zf_db_result_text (rows, index, 1));
        target->address = zf_strdup (zf_db_result_text (rows, index, 2));
        target->fetcher = zf_strdup (zf_db_result_text (rows, index, 3));
        target->key = zf_strdup (zf_db_result_text (rows, index, 4));
        target->seed = zf_db_result_int (rows, index, 5, 0) > 0;
    }
    *count = found;
    zf_db_result_destroy (&rows);
    return ZF_OK;
}

void zf_jobs_targets_free (zf_rec_job_target_t *targets, size_t count)
{
    for (size_t index = 0; index < count; index++) {
        zf_free (targets[index].host);
        zf_free (targets[index].address);
        zf_free (targets[index].fetcher);
        zf_free (targets[index].key);
    }
    zf_free (targets);
}

//  ---------------------------------------------------------------------------------------------
//  JSON for the API

static const zf_col_t s_job_columns[] = {
    {"id", NULL, ZF_COL_INT},
    {"type", NULL, ZF_COL_TEXT},
    {"state", NULL, ZF_COL_TEXT},
    {"args", NULL, ZF_COL_JSON},
    {"scheduler_cluster_ids", NULL, ZF_COL_JSON},
    {"created_by", NULL, ZF_COL_TEXT},
    {"created_at", NULL, ZF_COL_TIME},
    {"updated_at", NULL, ZF_COL_TIME},
    {"started_at", NULL, ZF_COL_TIME},
    {"finished_at", NULL, ZF_COL_TIME},
    {"worker", NULL, ZF_COL_TEXT},
    {"attempt", NULL, ZF_COL_INT},
    {"error", NULL, ZF_COL_TEXT},
};

#define S_JOB_SELECT                                                                               \
    "SELECT id, type, state, args, scheduler_cluster_ids, created_by, created_at, updated_at, "    \
    "started_at, finished_at, worker, attempt, error, result, tasks_total FROM jobs "

//  Adds images, progress (and blobs) to a job object.
static zf_status_t s_job_details (zf_db_t *db, json_t *job, const zf_db_result_t *rows, size_t row,
                                  bool blobs, zf_error_t *err)
{
    int64_t id = zf_db_result_int (rows, row, 0, 0);
    json_t *result = json_loads (zf_db_result_text (rows, row, 13), 0, NULL);
    json_t *images = json_object_get (result, "images");
    json_object_set_new (job, "images",
                         json_is_array (images) ? json_incref (images) : json_array ());
    json_decref (result);
    if (json_is_null (json_object_get (job, "error")))
        json_object_set_new (job, "error", json_string (""));

    zf_db_result_t *tasks = zf_db_query (
        db,
        "SELECT task_id, url, digest, content_length, host_name, host_ip, cluster_id, state, "
        "description, bytes_done, attempts FROM job_tasks WHERE job_id = ? ORDER BY id",
        ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!tasks)
        return s_failed (err);
    int64_t counts[4] = {0}; //  pending, running, success, failure
    int64_t bytes_total = 0, bytes_done = 0;
    json_t *blob_list = json_array ();
    json_t *blob_index = json_object (); //  task_id -> position in blob_list
    for (size_t index = 0; index < zf_db_result_rows (tasks); index++) {
        const char *state = zf_db_result_text (tasks, index, 7);
        int position = streq (state, "pending")   ? 0
                       : streq (state, "running") ? 1
                       : streq (state, "success") ? 2
                                                  : 3;
        counts[position]++;
        int64_t length = zf_db_result_int (tasks, index, 3, 0);
        int64_t done = zf_db_result_int (tasks, index, 9, 0);
        bytes_total += length;
        bytes_done += position == 2 ? length : done;
        if (!blobs)
            continue;
        const char *key = zf_db_result_text (tasks, index, 0);
        json_t *at = json_object_get (blob_index, key);
        json_t *blob = at ? json_array_get (blob_list, (size_t) json_integer_value (at)) : NULL;
        if (!blob) {
            blob = json_pack ("{s:s, s:s, s:I, s:[]}", "url", zf_db_result_text (tasks, index, 1),
                              "digest", zf_db_result_text (tasks, index, 2), "content_length",
                              (json_int_t) length, "hosts");
            json_object_set_new (blob_index, key,
                                 json_integer ((json_int_t) json_array_size (blob_list)));
            json_array_append_new (blob_list, blob);
        }
        json_array_append_new (json_object_get (blob, "hosts"),
                               json_pack ("{s:s, s:s, s:I, s:s, s:I, s:I, s:s}", "host",
                                          zf_db_result_text (tasks, index, 4), "ip",
                                          zf_db_result_text (tasks, index, 5), "cluster_id",
                                          (json_int_t) zf_db_result_int (tasks, index, 6, 0),
                                          "state", state, "bytes_done",
                                          (json_int_t) (position == 2 ? length : done), "attempts",
                                          (json_int_t) zf_db_result_int (tasks, index, 10, 0),
                                          "description", zf_db_result_text (tasks, index, 8)));
    }
    //  A blob is done when every host has it; it failed when a host gave up on it.
    size_t blobs_done = 0;
    size_t position;
    json_t *blob;
    json_array_foreach (blob_list, position, blob)
    {
        size_t host_index, succeeded = 0, failed = 0;
        json_t *host;
        json_t *hosts = json_object_get (blob, "hosts");
        json_array_foreach (hosts, host_index, host)
        {
            const char *state = json_string_value (json_object_get (host, "state"));
            succeeded += streq (state, "success");
            failed += streq (state, "failure");
        }
        const char *state = failed                                 ? "failure"
                            : succeeded == json_array_size (hosts) ? "success"
                                                                   : "running";
        blobs_done += streq (state, "success");
        json_object_set_new (blob, "state", json_string (state));
    }
    json_object_set_new (job, "progress",
                         json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "tasks_total",
                                    (json_int_t) zf_db_result_int (rows, row, 14, 0),
                                    "tasks_pending", (json_int_t) counts[0], "tasks_running",
                                    (json_int_t) counts[1], "tasks_succeeded",
                                    (json_int_t) counts[2], "tasks_failed", (json_int_t) counts[3],
                                    "bytes_total", (json_int_t) bytes_total, "bytes_done",
                                    (json_int_t) bytes_done));
    if (blobs) {
        json_object_set_new (job, "blobs", blob_list);
        json_object_set_new (json_object_get (job, "progress"), "blobs_total",
                             json_integer ((json_int_t) json_array_size (blob_list)));
        json_object_set_new (json_object_get (job, "progress"), "blobs_done",
                             json_integer ((json_int_t) blobs_done));
    } else
        json_decref (blob_list);
    json_decref (blob_index);
    zf_db_result_destroy (&tasks);
    return ZF_OK;
}

json_t *zf_jobs_get (zf_db_t *db, int64_t id, bool blobs, zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query_id (db, S_JOB_SELECT "WHERE id = ?", id, "job", err);
    if (!rows)
        return NULL;
    json_t *job = zf_db_row_json (rows, 0, s_job_columns, ZF_ARRAY_LEN (s_job_columns));
    if (s_job_details (db, job, rows, 0, blobs, err) != ZF_OK) {
        json_decref (job);
        job = NULL;
    }
    zf_db_result_destroy (&rows);
    return job;
}

json_t *zf_jobs_list (zf_db_t *db, const char *state, const char *type, int64_t page,
                      int64_t per_page, int64_t *total, zf_error_t *err)
{
    //  Filters as bound values; "" matches every row.
    const char *where = "WHERE (? = '' OR state = ?) AND (? = '' OR type = ?) ";
    zf_db_arg_t filters[] = {ZF_DB_TEXT (state ? state : ""), ZF_DB_TEXT (state ? state : ""),
                             ZF_DB_TEXT (type ? type : ""), ZF_DB_TEXT (type ? type : "")};
    char *count_sql = zf_asprintf ("SELECT COUNT(*) FROM jobs %s", where);
    zf_db_result_t *count = zf_db_query (db, count_sql, filters, ZF_ARRAY_LEN (filters), err);
    zf_free (count_sql);
    if (!count)
        return NULL;
    *total = zf_db_result_int (count, 0, 0, 0);
    zf_db_result_destroy (&count);
    char *rows_sql = zf_asprintf (S_JOB_SELECT "%s ORDER BY id DESC LIMIT ? OFFSET ?", where);
    zf_db_arg_t args[ZF_ARRAY_LEN (filters) + 2];
    memcpy (args, filters, sizeof filters);
    args[ZF_ARRAY_LEN (filters)] = ZF_DB_INT (per_page);
    args[ZF_ARRAY_LEN (filters) + 1] = ZF_DB_INT ((page - 1) * per_page);
    zf_db_result_t *rows = zf_db_query (db, rows_sql, args, ZF_ARRAY_LEN (args), err);
    zf_free (rows_sql);
    if (!rows)
        return NULL;
    json_t *items = json_array ();
    for (size_t row = 0; row < zf_db_result_rows (rows); row++) {
        json_t *job = zf_db_row_json (rows, row, s_job_columns, ZF_ARRAY_LEN (s_job_columns));
        if (s_job_details (db, job, rows, row, false, err) != ZF_OK) {
            json_decref (job);
            json_decref (items);
            zf_db_result_destroy (&rows);
            return NULL;
        }
        json_array_append_new (items, job);
    }
    zf_db_result_destroy (&rows);
    return items;
}

zf_db_result_t *zf_jobs_tasks (zf_db_t *db, int64_t id, zf_error_t *err)
{
    return zf_db_query (db,
                        "SELECT url, host_name, host_ip, cluster_id, state, description FROM "
                        "job_tasks WHERE job_id = ? ORDER BY cluster_id, id",
                        ZF_DB_ARGS (ZF_DB_INT (id)), err);
}

//  ---------------------------------------------------------------------------------------------
//  Selftest: the rows on an in-memory SQLite database

void zf_jobs_store_test (bool verbose)
{
    if (verbose)
        printf (" * zf_jobs_store: ");
    zf_error_t err;
    zf_db_t *db = zf_db_open ("sqlite::memory:", NULL, &err);
    ZF_ASSERT (db);
    ZF_ASSERT (zf_db_migrate (db, zf_manager_migrations, zf_manager_migration_count, &err)
               == ZF_OK);
    ZF_ASSERT (zf_clusters_ensure_default (db, &err) == ZF_OK);

    json_t *body = json_loads ("{\"type\":\"preheat\",\"args\":{\"type\":\"image\",\"url\":"
                               "\"https://r.example/v2/a/b/manifests/v1\",\"headers\":"
                               "{\"Authorization\":\"Bearer secret-token\"},\"scope\":\"\","
                               "\"concurrent_count\":0,\"timeout\":0},"
                               "\"scheduler_cluster_ids\":null}",
                               0, NULL);
    zf_job_input_t input;
    ZF_ASSERT (zf_job_input_parse (body, &input, &err) == ZF_OK);
    json_decref (body);
    ZF_ASSERT (streq (input.scope, "single_seed_peer") && streq (input.platform, "linux/amd64"));
    int64_t id = 0;
    ZF_ASSERT (zf_jobs_insert (db, &input, "zs1:sealed", "admin", 1000, &id, &err) == ZF_OK);
    zf_job_input_clear (&input);
    ZF_ASSERT (id == 1);

    zf_job_row_t row;
    ZF_ASSERT (zf_jobs_row (db, id, &row, &err) == ZF_OK && row.state == ZF_JOB_PENDING);
    ZF_ASSERT (zf_jobs_row (db, 99, &row, &err) == ZF_E_MISSING);
    int64_t counts[ZF_JOB_STATUS_COUNT], oldest = 0;
    ZF_ASSERT (zf_jobs_census (db, counts, &oldest, &err) == ZF_OK);
    ZF_ASSERT (counts[ZF_JOB_PENDING] == 1 && oldest == 1000);

    ZF_ASSERT (zf_jobs_set_running (db, id, "preheat@w1", 1, 2000, &err) == ZF_OK);
    zf_rec_job_task_t tasks[2] = {
        {.url = "https://r.example/v2/a/b/blobs/sha256:"
                "1111111111111111111111111111111111111111111111111111111111111111",
         .digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111",
         .cluster_id = 1,
         .host = "seed-1",
         .address = "10.0.0.1",
         .state = "running",
         .description = "",
         .content_length = 100,
         .bytes_done = 40,
         .attempts = 1},
        {.url = "https://files.example/a.iso",
         .digest = "",
         .cluster_id = 1,
         .host = "seed-1",
         .address = "10.0.0.1",
         .state = "failure",
         .description = "HTTP 404",
         .content_length = 0,
         .attempts = 3},
    };
    char *images[] = {"r.example/a/b:v1@sha256:x (2 blobs)"};
    zf_msg_job_update_t update = {.job_id = (uint64_t) id,
                                  .worker = "preheat@w1",
                                  .attempt = 1,
                                  .state = "running",
                                  .images = {.items = images, .count = 1},
                                  .tasks_total = 2,
                                  .tasks = {.items = tasks, .count = 2}};
    ZF_ASSERT (zf_jobs_record (db, &update, 3000, &err) == ZF_OK);
    tasks[0].state = "success"; //  the same row again, updated
    update.tasks.count = 1;
    ZF_ASSERT (zf_jobs_record (db, &update, 3500, &err) == ZF_OK);
    ZF_ASSERT (zf_jobs_set_final (db, id, ZF_JOB_FAILURE, "1 of 2 tasks failed", 4000, &err)
               == ZF_OK);

    json_t *job = zf_jobs_get (db, id, true, &err);
    ZF_ASSERT (job);
    if (verbose) {
        char *text = json_dumps (job, JSON_INDENT (1));
        printf ("%s\n", text);
        free (text);
    }
    ZF_ASSERT (streq (json_string_value (json_object_get (job, "state")), "failure"));
    ZF_ASSERT (streq (json_string_value (json_object_get (job, "error")), "1 of 2 tasks failed"));
    json_t *progress = json_object_get (job, "progress");
    ZF_ASSERT (json_integer_value (json_object_get (progress, "tasks_succeeded")) == 1);
    ZF_ASSERT (json_integer_value (json_object_get (progress, "tasks_failed")) == 1);
    ZF_ASSERT (json_integer_value (json_object_get (progress, "bytes_done")) == 100);
    ZF_ASSERT (json_array_size (json_object_get (job, "blobs")) == 2);
    //  no secret anywhere in what the API shows
    char *text = json_dumps (job, JSON_COMPACT);
    ZF_ASSERT (!strstr (text, "secret-token") && !strstr (text, "zs1:"));
    ZF_ASSERT (strstr (text, "\"header_names\":[\"Authorization\"]"));
    free (text);
    json_decref (job);
    //  the sealed credentials went with the end
    char *args = NULL, *secrets = NULL, *clusters = NULL;
    ZF_ASSERT (zf_jobs_definition (db, id, &args, &secrets, &clusters, &err) == ZF_OK);
    ZF_ASSERT (args && !secrets && streq (clusters, "[]"));
    zf_free (args);
    zf_free (clusters);

    int64_t total = 0;
    json_t *items = zf_jobs_list (db, "failure", NULL, 1, 10, &total, &err);
    ZF_ASSERT (items && total == 1 && json_array_size (items) == 1);
    json_decref (items);
    items = zf_jobs_list (db, "pending", NULL, 1, 10, &total, &err);
    ZF_ASSERT (items && total == 0);
    json_decref (items);

    zf_rec_job_target_t *targets = NULL;
    size_t count = 0;
    int64_t clusters_wanted[] = {1, 2};
    ZF_ASSERT (zf_jobs_targets (db, true, clusters_wanted, 2, 0, &targets, &count, &err) == ZF_OK);
    ZF_ASSERT (count == 0); //  no seed peer joined
    zf_jobs_targets_free (targets, count);
    ZF_ASSERT (zf_jobs_targets (db, false, NULL, 0, 0, &targets, &count, &err) == ZF_OK);
    zf_jobs_targets_free (targets, count);
    zf_db_close (&db);
    if (verbose)
        printf ("OK\n");
}
