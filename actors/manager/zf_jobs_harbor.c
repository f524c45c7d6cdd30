/*  zf_jobs_harbor.c — Harbor's Dragonfly preheat providers, answered as Harbor reads them
    (goharbor/harbor src/pkg/p2p/preheat/provider/dragonfly.go; ../shared/REFERENCE.md).

    Current provider (Harbor 2.13 on; 2.12 too):
        GET  /healthy             any 2xx is healthy (public: Harbor may send no token)
        POST /oapi/v1/jobs        Dragonfly's job body -> 200 {"id": N (an integer),
                                  "created_at", "updated_at" (RFC 3339), "state": "PENDING", …}
        GET  /oapi/v1/jobs/{id}   "state": PENDING while pending or running, SUCCESS, FAILURE
                                  (failed or cancelled); "result": {"job_states": [{"state",
                                  "error", "results": [{"scheduler_cluster_id",
                                  "success_tasks": [{"url", "hostname", "ip"}],
                                  "failure_tasks": [{"url", "hostname", "ip",
                                  "description"}]}]}]}. On SUCCESS Harbor prints the tasks;
                                  on FAILURE it joins the job_states' errors. No list is ever
                                  null and no entry of a list is null: a null entry crashes
                                  Harbor's job.
    Legacy provider (Harbor 2.8 to 2.11):
        GET  /_ping               any 2xx
        POST /preheats            {"type", "url", "headers", "image", "tag", "digest"} -> 200
                                  {"ID": "N"} (a string: a number fails Harbor's decoder)
        GET  /preheats/{id}       {"ID", "startTime", "finishTime", "errorMsg", "Status"}:
                                  WAITING (pending), RUNNING (Harbor keeps polling), SUCCESS,
                                  FAILED.
    Both take Harbor's "OAuth" authentication: Authorization: Bearer <personal access token>
    (a token with write scope for the POSTs). */
#include "zf_jobs.h"

static const char *s_harbor_state (const char *state)
{
    if (streq (state, "success"))
        return "SUCCESS";
    if (streq (state, "failure") || streq (state, "cancelled"))
        return "FAILURE";
    return "PENDING";
}

//  result.job_states for a job that ended (an empty list before).
static json_t *s_job_states (zf_db_t *db, int64_t id, const char *state, const char *error,
                             zf_error_t *err)
{
    json_t *job_states = json_array ();
    if (streq (state, "pending") || streq (state, "running"))
        return job_states;
    zf_db_result_t *tasks = zf_jobs_tasks (db, id, err);
    if (!tasks) {
        json_decref (job_states);
        return NULL;
    }
    json_t *results = json_array ();
    json_t *current = NULL;
    int64_t current_cluster = -1;
    for (size_t row = 0; row < zf_db_result_rows (tasks); row++) {
        int64_t cluster = zf_db_result_int (tasks, row, 3, 0);
        if (!current || cluster != current_cluster) {
            current = json_pack ("{s:I, s:[], s:[]}", "scheduler_cluster_id", (json_int_t) cluster,
                                 "success_tasks", "failure_tasks");
            json_array_append_new (results, current);
            current_cluster = cluster;
        }
        const char *task_state = zf_db_result_text (tasks, row, 4);
        const char *url = zf_db_result_text (tasks, row, 0);
        const char *host = zf_db_result_text (tasks, row, 1);
        const char *ip = zf_db_result_text (tasks, row, 2);
        if (streq (task_state, "success"))
            json_array_append_new (
                json_object_get (current, "success_tasks"),
                json_pack ("{s:s, s:s, s:s}", "url", url, "hostname", host, "ip", ip));
        else {
            const char *description = zf_db_result_text (tasks, row, 5);
            if (!*description)
                description = "did not finish before the job ended";
            json_array_append_new (json_object_get (current, "failure_tasks"),
                                   json_pack ("{s:s, s:s, s:s, s:s}", "url", url, "hostname", host,
                                              "ip", ip, "description", description));
        }
    }
    zf_db_result_destroy (&tasks);
    const char *harbor = s_harbor_state (state);
    const char *message = error && *error             ? error
                          : streq (harbor, "FAILURE") ? "the preheat job failed"
                                                      : "";
    json_array_append_new (job_states, json_pack ("{s:s, s:s, s:o}", "state", harbor, "error",
                                                  message, "results", results));
    return job_states;
}

static void s_reply_job (zf_rest_request_t *request, zf_jobs_t *jobs, int64_t id)
{
    zf_error_t err;
    zf_db_t *db = zf_jobs_db (jobs);
    json_t *job = zf_jobs_get (db, id, false, &err);
    if (!job) {
        zf_manager_reply_failure (request, &err);
        return;
    }
    const char *state = json_string_value (json_object_get (job, "state"));
    const char *error = json_string_value (json_object_get (job, "error"));
    json_t *job_states = s_job_states (db, id, state, error, &err);
    if (!job_states) {
        json_decref (job);
        zf_manager_reply_failure (request, &err);
        return;
    }
    json_t *answer = json_pack (
        "{s:O, s:O, s:O, s:s, s:s, s:O, s:O, s:{s:o}}", "id", json_object_get (job, "id"),
        "created_at", json_object_get (job, "created_at"), "updated_at",
        json_object_get (job, "updated_at"), "state", s_harbor_state (state), "type", "preheat",
        "args", json_object_get (job, "args"), "scheduler_cluster_ids",
        json_object_get (job, "scheduler_cluster_ids"), "result", "job_states", job_states);
    json_decref (job);
    ZF_ASSERT (answer);
    zf_rest_reply_json (request, 200, answer);
}

static void s_healthy (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    zf_rest_reply_json (request, 200, json_pack ("{s:s}", "status", "ok"));
}

static void s_create (zf_rest_request_t *request, void *arg)
{
    int64_t id = 0;
    if (zf_jobs_create_from_request (request, arg, false, &id))
        s_reply_job (request, arg, id); //  200, as Dragonfly answers (Harbor takes any 2xx but 208)
}

static void s_get (zf_rest_request_t *request, void *arg)
{
    int64_t id;
    if (zf_rest_param_id (request, "id", &id))
        s_reply_job (request, arg, id);
}

//  ---------------------------------------------------------------------------------------------
//  Legacy

static void s_ping (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    zf_rest_reply_json (request, 200, json_pack ("{s:s}", "status", "ok"));
}

static void s_legacy_create (zf_rest_request_t *request, void *arg)
{
    int64_t id = 0;
    if (!zf_jobs_create_from_request (request, arg, true, &id))
        return;
    char text[24];
    snprintf (text, sizeof text, "%" PRId64, id);
    zf_rest_reply_json (request, 200, json_pack ("{s:s}", "ID", text));
}

static void s_legacy_get (zf_rest_request_t *request, void *arg)
{
    zf_jobs_t *jobs = arg;
    int64_t id;
    if (!zf_rest_param_id (request, "id", &id))
        return;
    zf_error_t err;
    json_t *job = zf_jobs_get (zf_jobs_db (jobs), id, false, &err);
    if (!job) {
        zf_manager_reply_failure (request, &err);
        return;
    }
    const char *state = json_string_value (json_object_get (job, "state"));
    const char *status = streq (state, "pending")   ? "WAITING"
                         : streq (state, "running") ? "RUNNING"
                         : streq (state, "success") ? "SUCCESS"
                                                    : "FAILED";
    const char *started = json_string_value (json_object_get (job, "started_at"));
    const char *finished = json_string_value (json_object_get (job, "finished_at"));
    const char *error = json_string_value (json_object_get (job, "error"));
    char text[24];
    snprintf (text, sizeof text, "%" PRId64, id);
    json_t *answer = json_pack ("{s:s, s:s, s:s, s:s, s:s}", "ID", text, "startTime",
                                started ? started : "", "finishTime", finished ? finished : "",
                                "errorMsg", error ? error : "", "Status", status);
    json_decref (job);
    zf_rest_reply_json (request, 200, answer);
}

void zf_jobs_harbor_register (zf_rest_t *rest, zf_jobs_t *jobs)
{
    zf_rest_route (rest, "GET", "/healthy", ZF_REST_PUBLIC, s_healthy, jobs);
    zf_rest_route (rest, "POST", "/oapi/v1/jobs", ZF_REST_WRITE, s_create, jobs);
    zf_rest_route (rest, "GET", "/oapi/v1/jobs/{id}", ZF_REST_READ, s_get, jobs);
    zf_rest_route (rest, "GET", "/_ping", ZF_REST_PUBLIC, s_ping, jobs);
    zf_rest_route (rest, "POST", "/preheats", ZF_REST_WRITE, s_legacy_create, jobs);
    zf_rest_route (rest, "GET", "/preheats/{id}", ZF_REST_READ, s_legacy_get, jobs);
}
