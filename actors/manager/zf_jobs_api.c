/*  zf_jobs_api.c — /api/v1/jobs: preheat jobs for zfly-preheat, the console and scripts.

        POST /api/v1/jobs               create (write): Dragonfly's job body (zf_jobs_input.h)
                                        -> 201 the job, Location: /api/v1/jobs/ID
        GET  /api/v1/jobs               list (read), newest first: page, per_page,
                                        state=pending|running|success|failure|cancelled,
                                        type=preheat
        GET  /api/v1/jobs/{id}          one job (read) with its blobs: per blob, per host
        POST /api/v1/jobs/{id}/cancel   cancel (write) -> 200 the job; 409 when it had ended

    A job as the API shows it (credentials never; their header names yes):
        {"id", "type": "preheat", "state", "args": {"type", "urls", "platform", "scope",
         "tag", "concurrent_count", "timeout", "header_names", "credentials"},
         "scheduler_cluster_ids", "created_by", "created_at", "updated_at", "started_at",
         "finished_at", "worker", "attempt", "error", "images",
         "progress": {"tasks_total", "tasks_pending", "tasks_running", "tasks_succeeded",
                      "tasks_failed", "bytes_total", "bytes_done"[, "blobs_total",
                      "blobs_done"]},
         "blobs": [{"url", "digest", "content_length", "state",
                    "hosts": [{"host", "ip", "cluster_id", "state", "bytes_done", "attempts",
                               "description"}]}]}     (GET of one job only) */
#include "zf_jobs.h"

static void s_reply_job (zf_rest_request_t *request, zf_jobs_t *jobs, unsigned int status,
                         int64_t id, bool blobs)
{
    zf_error_t err;
    zf_manager_reply_object (request, status, zf_jobs_get (zf_jobs_db (jobs), id, blobs, &err),
                             &err);
}

bool zf_jobs_create_from_request (zf_rest_request_t *request, zf_jobs_t *jobs, bool legacy,
                                  int64_t *id)
{
    json_t *body = zf_rest_json_body (request); //  NULL: zf_rest answered
    zf_job_input_t input;
    zf_error_t err;
    if (!body
        || !zf_manager_input_checked (request, body,
                                      legacy ? zf_job_input_parse_legacy (body, &input, &err)
                                             : zf_job_input_parse (body, &input, &err),
                                      &err))
        return false;
    zf_status_t status = zf_jobs_create (jobs, &input, zf_rest_principal (request), id, &err);
    zf_job_input_clear (&input);
    if (status != ZF_OK) {
        zf_manager_reply_failure (request, &err);
        return false;
    }
    return true;
}

static void s_create (zf_rest_request_t *request, void *arg)
{
    zf_jobs_t *jobs = arg;
    int64_t id = 0;
    if (!zf_jobs_create_from_request (request, jobs, false, &id))
        return;
    char location[64];
    snprintf (location, sizeof location, "/api/v1/jobs/%" PRId64, id);
    zf_rest_add_header (request, "Location", location);
    s_reply_job (request, jobs, 201, id, false);
}

static void s_list (zf_rest_request_t *request, void *arg)
{
    zf_jobs_t *jobs = arg;
    int64_t page, per_page, total = 0;
    if (!zf_rest_page (request, &page, &per_page))
        return;
    const char *state = zf_rest_query (request, "state");
    if (state && zf_job_status_of (state) == ZF_JOB_STATUS_COUNT) {
        zf_rest_reply_error (request, 400, "invalid",
                             "state must be pending, running, success, failure or cancelled");
        return;
    }
    const char *type = zf_rest_query (request, "type");
    if (type && !streq (type, "preheat")) {
        zf_rest_reply_error (request, 400, "invalid", "type must be preheat");
        return;
    }
    zf_error_t err;
    json_t *items = zf_jobs_list (zf_jobs_db (jobs), state, type, page, per_page, &total, &err);
    zf_manager_reply_page (request, items, page, per_page, total, &err);
}

static void s_get (zf_rest_request_t *request, void *arg)
{
    int64_t id;
    if (zf_rest_param_id (request, "id", &id))
        s_reply_job (request, arg, 200, id, true);
}

static void s_cancel (zf_rest_request_t *request, void *arg)
{
    zf_jobs_t *jobs = arg;
    int64_t id;
    if (!zf_rest_param_id (request, "id", &id))
        return;
    zf_error_t err;
    if (zf_jobs_cancel (jobs, id, zf_rest_principal (request), &err) != ZF_OK) {
        zf_manager_reply_refused (request, &err);
        return;
    }
    s_reply_job (request, jobs, 200, id, false);
}

void zf_jobs_api_register (zf_rest_t *rest, zf_jobs_t *jobs)
{
    zf_rest_route (rest, "POST", "/api/v1/jobs", ZF_REST_WRITE, s_create, jobs);
    zf_rest_route (rest, "GET", "/api/v1/jobs", ZF_REST_READ, s_list, jobs);
    zf_rest_route (rest, "GET", "/api/v1/jobs/{id}", ZF_REST_READ, s_get, jobs);
    zf_rest_route (rest, "POST", "/api/v1/jobs/{id}/cancel", ZF_REST_WRITE, s_cancel, jobs);
}
