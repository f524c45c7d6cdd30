/*  zf_manager_internal.h — what the manager's API modules see of the actor.

    The REST API is built from modules, each registering its routes at start (zf_manager.c,
    s_modules): the manager's own resources (zf_manager_api.c: clusters, hosts, schedulers,
    seed peers; zf_manager_api_auth.c: join tokens, users, personal access tokens) and the
    preheat jobs with Harbor's providers (zf_jobs.h). A module's handlers run on the manager's
    thread, with the manager's database and bus; a handler that waits for another actor keeps
    its zf_rest_request_t and answers when the bus reply comes. */
#ifndef ZF_MANAGER_INTERNAL_H_INCLUDED
#define ZF_MANAGER_INTERNAL_H_INCLUDED

#include "zf_bus.h"
#include "zf_manager.h"
#include "zf_manager_store.h"
#include "zf_rest.h"

typedef struct zf_manager_s zf_manager_t;

//  A module: registers its routes (and may keep manager for its handlers).
typedef void (zf_manager_module_fn) (zf_rest_t *rest, zf_manager_t *manager);

zf_db_t *zf_manager_db (zf_manager_t *self);
zf_bus_t *zf_manager_bus (zf_manager_t *self);
//  The manager's loop (for a module's timers), node and configuration.
zloop_t *zf_manager_loop (zf_manager_t *self);
zf_node_t *zf_manager_node (zf_manager_t *self);
const zf_manager_config_t *zf_manager_config (zf_manager_t *self);

//  Runs fn (arg) when the manager stops, after the REST server and before the bus and the
//  database close: a module's teardown. Hooks run in reverse order of registration.
typedef void (zf_manager_stop_fn) (void *arg);
void zf_manager_on_stop (zf_manager_t *self, zf_manager_stop_fn *fn, void *arg);

//  Tells the cluster's nodes what changed (manager.changed with the cluster's new version).
void zf_manager_publish_change (zf_manager_t *self, int64_t cluster_id, const char *added_key,
                                const char *removed_key, bool view_changed);

//  Drops the cached view of a cluster's nodes (0: of every cluster) after a change the
//  members version does not count (client config, scopes, a deleted cluster).
void zf_manager_forget_views (zf_manager_t *self, int64_t cluster_id);

//  How handlers answer (zf_manager_reply.c).
//  A failed store call: 404 for ZF_E_MISSING, 409 for "already exists", 400 for other invalid
//  input, 503 when the database failed.
void zf_manager_reply_failure (zf_rest_request_t *request, const zf_error_t *err);
//  A store call that refused what was asked (ZF_E_INVALID: the last admin, a cluster in use, a
//  finished job) is a 409 conflict; any other failure as zf_manager_reply_failure.
void zf_manager_reply_refused (zf_rest_request_t *request, const zf_error_t *err);
//  Ends the reading of a request's JSON body: releases body, and answers 400 with err's message
//  and returns false when status (what parsing it returned) is not ZF_OK.
bool zf_manager_input_checked (zf_rest_request_t *request, json_t *body, zf_status_t status,
                               const zf_error_t *err);
//  object with status, or the failure when object is NULL.
void zf_manager_reply_object (zf_rest_request_t *request, unsigned int status, json_t *object,
                              const zf_error_t *err);
//  A page of a list (zf_rest_page_json, and X-Total-Count), or the failure when items is NULL.
void zf_manager_reply_page (zf_rest_request_t *request, json_t *items, int64_t page,
                            int64_t per_page, int64_t total, const zf_error_t *err);

//  Handlers that differ only by their store call, which has one of these signatures.
typedef json_t *(zf_manager_list_fn) (zf_db_t *db, int64_t page, int64_t per_page, int64_t *total,
                                      zf_error_t *err);
typedef json_t *(zf_manager_get_fn) (zf_db_t *db, int64_t id, zf_error_t *err);
typedef zf_status_t (zf_manager_remove_fn) (zf_db_t *db, int64_t id, zf_error_t *err);
//  GET of a list: the page asked for (page, per_page), or a 400 for a bad one.
void zf_manager_reply_list (zf_rest_request_t *request, zf_manager_t *manager,
                            zf_manager_list_fn *list);
//  GET of one resource by its {id}.
void zf_manager_reply_get (zf_rest_request_t *request, zf_manager_t *manager,
                           zf_manager_get_fn *get);
//  DELETE of one resource by its {id}: runs remove, logs "api: WHAT ID VERB by PRINCIPAL" and
//  answers 204, or the refusal (zf_manager_reply_refused). Returns the id, 0 when it failed.
int64_t zf_manager_reply_removed (zf_rest_request_t *request, zf_manager_t *manager,
                                  zf_manager_remove_fn *remove, const char *what, const char *verb);

void zf_manager_api_register (zf_rest_t *rest, zf_manager_t *manager);
void zf_manager_api_auth_register (zf_rest_t *rest, zf_manager_t *manager);
//  GET /api/v1/openapi.json: the document describing every route above.
void zf_manager_openapi_register (zf_rest_t *rest, zf_manager_t *manager);
//  The web console's static files under /console/ (zf_manager_console.c).
void zf_manager_console_register (zf_rest_t *rest, zf_manager_t *manager);
//  GET /api/v1/tasks/{id}/swarm: a task's peers as its scheduler sees them (zf_manager_swarm.c).
void zf_manager_swarm_register (zf_rest_t *rest, zf_manager_t *manager);

#endif
