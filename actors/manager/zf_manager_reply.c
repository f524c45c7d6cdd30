/*  zf_manager_reply.c — how the REST modules answer: a store call's failure as a status code,
    and the handlers that differ only by the store call they run (a list, one resource, a
    removal). See zf_manager_internal.h. */
#include "zf_log.h"
#include "zf_manager_internal.h"

void zf_manager_reply_failure (zf_rest_request_t *request, const zf_error_t *err)
{
    if (err->code == ZF_E_MISSING && streq (err->where, "id"))
        zf_rest_reply_error (request, 404, "not_found", "%s", err->message);
    else if (err->code == ZF_E_INVALID && strstr (err->message, "already exists"))
        zf_rest_reply_error (request, 409, "conflict", "%s", err->message);
    else if (err->code == ZF_E_INVALID || err->code == ZF_E_MISSING)
        zf_rest_reply_error (request, 400, "invalid", "%s", err->message);
    else {
        zf_warning ("manager", "api: %s %s: database: %s", zf_rest_method (request),
                    zf_rest_path (request), err->message);
        zf_rest_reply_error (request, 503, "unavailable", "the database failed: %s", err->message);
    }
}

void zf_manager_reply_refused (zf_rest_request_t *request, const zf_error_t *err)
{
    if (err->code == ZF_E_INVALID)
        zf_rest_reply_error (request, 409, "conflict", "%s", err->message);
    else
        zf_manager_reply_failure (request, err);
}

bool zf_manager_input_checked (zf_rest_request_t *request, json_t *body, zf_status_t status,
                               const zf_error_t *err)
{
    json_decref (body);
    if (status != ZF_OK)
        zf_rest_reply_error (request, 400, "invalid", "%s", err->message);
    return status == ZF_OK;
}

void zf_manager_reply_object (zf_rest_request_t *request, unsigned int status, json_t *object,
                              const zf_error_t *err)
{
    if (!object)
        zf_manager_reply_failure (request, err);
    else
        zf_rest_reply_json (request, status, object);
}

void zf_manager_reply_page (zf_rest_request_t *request, json_t *items, int64_t page,
                            int64_t per_page, int64_t total, const zf_error_t *err)
{
    if (!items) {
        zf_manager_reply_failure (request, err);
        return;
    }
    char header[32];
    snprintf (header, sizeof header, "%" PRId64, total);
    zf_rest_add_header (request, "X-Total-Count", header);
    zf_rest_reply_json (request, 200, zf_rest_page_json (items, page, per_page, total));
}

void zf_manager_reply_list (zf_rest_request_t *request, zf_manager_t *manager,
                            zf_manager_list_fn *list)
{
    int64_t page, per_page, total = 0;
    if (!zf_rest_page (request, &page, &per_page))
        return;
    zf_error_t err;
    json_t *items = list (zf_manager_db (manager), page, per_page, &total, &err);
    zf_manager_reply_page (request, items, page, per_page, total, &err);
}

void zf_manager_reply_get (zf_rest_request_t *request, zf_manager_t *manager,
                           zf_manager_get_fn *get)
{
    int64_t id;
    if (!zf_rest_param_id (request, "id", &id))
        return;
    zf_error_t err;
    zf_manager_reply_object (request, 200, get (zf_manager_db (manager), id, &err), &err);
}

int64_t zf_manager_reply_removed (zf_rest_request_t *request, zf_manager_t *manager,
                                  zf_manager_remove_fn *remove, const char *what, const char *verb)
{
    int64_t id;
    if (!zf_rest_param_id (request, "id", &id))
        return 0;
    zf_error_t err;
    if (remove (zf_manager_db (manager), id, &err) != ZF_OK) {
        zf_manager_reply_refused (request, &err);
        return 0;
    }
    zf_notice ("manager", "api: %s %" PRId64 " %s by %s", what, id, verb,
               zf_rest_principal (request));
    zf_rest_reply_json (request, 204, NULL);
    return id;
}
