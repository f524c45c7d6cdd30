/*  zf_manager_api.c — REST resources of the cluster side: clusters, hosts, schedulers, seed
    peers. Reads need any token, writes an admin token with write scope (zf_rest access).

        GET    /api/v1/clusters              list (page, per_page)
        POST   /api/v1/clusters              create {name, description, is_default, scopes,
                                                     client_config}
        GET    /api/v1/clusters/{id}
        PATCH  /api/v1/clusters/{id}         change the fields given
        DELETE /api/v1/clusters/{id}         only without hosts, never the default one
        GET    /api/v1/hosts                 list (cluster_id, state=active|revoked, name: part
                                             of the name)
        GET    /api/v1/hosts/{id}
        DELETE /api/v1/hosts/{id}            revoke: its key is refused everywhere
        GET    /api/v1/schedulers            list (cluster_id)
        GET    /api/v1/seed-peers            list (cluster_id) */
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_manager_internal.h"

//  A positive integer query argument; 0 when absent. Answers 400 and returns false otherwise.
static bool s_query_id (zf_rest_request_t *request, const char *name, int64_t *id)
{
    *id = 0;
    const char *text = zf_rest_query (request, name);
    if (!text)
        return true;
    char *end = NULL;
    long long value = strtoll (text, &end, 10);
    if (!*text || *end || value < 1) {
        zf_rest_reply_error (request, 400, "invalid", "%s must be a positive whole number", name);
        return false;
    }
    *id = value;
    return true;
}

//  ---------------------------------------------------------------------------------------------
//  Clusters

static void s_clusters_list (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_list (request, arg, zf_clusters_list);
}

//  POST (id 0: a new cluster) or PATCH of a cluster: the body checked, the store changed, the
//  cluster as it is now answered.
static void s_clusters_write (zf_rest_request_t *request, zf_manager_t *manager, int64_t id)
{
    bool create = id == 0;
    json_t *body = zf_rest_json_body (request);
    zf_cluster_input_t input;
    zf_error_t err;
    if (!body
        || !zf_manager_input_checked (request, body,
                                      zf_cluster_input_parse (body, create, &input, &err), &err))
        return;
    zf_db_t *db = zf_manager_db (manager);
    zf_status_t status = create ? zf_clusters_create (db, &input, &id, &err)
                                : zf_clusters_update (db, id, &input, &err);
    zf_cluster_input_clear (&input);
    if (status != ZF_OK) {
        zf_manager_reply_failure (request, &err);
        return;
    }
    zf_notice ("manager", "api: cluster %" PRId64 " %s by %s", id, create ? "created" : "changed",
               zf_rest_principal (request));
    if (create) {
        char location[64];
        snprintf (location, sizeof location, "/api/v1/clusters/%" PRId64, id);
        zf_rest_add_header (request, "Location", location);
    } else
        zf_manager_forget_views (manager, id);
    zf_manager_reply_object (request, create ? 201 : 200, zf_clusters_get (db, id, &err), &err);
}

static void s_clusters_create (zf_rest_request_t *request, void *arg)
{
    s_clusters_write (request, arg, 0);
}

static void s_clusters_get (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_get (request, arg, zf_clusters_get);
}

static void s_clusters_update (zf_rest_request_t *request, void *arg)
{
    int64_t id;
    if (zf_rest_param_id (request, "id", &id))
        s_clusters_write (request, arg, id);
}

static void s_clusters_delete (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    int64_t id =
        zf_manager_reply_removed (request, manager, zf_clusters_delete, "cluster", "deleted");
    if (id)
        zf_manager_forget_views (manager, id);
}

//  ---------------------------------------------------------------------------------------------
//  Hosts, schedulers, seed peers

static void s_hosts_list (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    int64_t page, per_page, cluster_id, total = 0;
    if (!zf_rest_page (request, &page, &per_page)
        || !s_query_id (request, "cluster_id", &cluster_id))
        return;
    const char *state = zf_rest_query (request, "state");
    if (state && !streq (state, "active") && !streq (state, "revoked")) {
        zf_rest_reply_error (request, 400, "invalid", "state must be active or revoked");
        return;
    }
    const char *name = zf_rest_query (request, "name");
    if (name && strlen (name) > 128) {
        zf_rest_reply_error (request, 400, "invalid", "name: at most 128 characters");
        return;
    }
    zf_error_t err;
    json_t *items = zf_members_hosts_list (zf_manager_db (manager), cluster_id, state, name, page,
                                           per_page, &total, &err);
    zf_manager_reply_page (request, items, page, per_page, total, &err);
}

static void s_hosts_get (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_get (request, arg, zf_members_host_get);
}

static void s_hosts_revoke (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    int64_t id, cluster_id = 0;
    if (!zf_rest_param_id (request, "id", &id))
        return;
    char key[41] = "";
    zf_error_t err;
    if (zf_members_revoke (zf_manager_db (manager), id, zf_clock_wall_ms (), &cluster_id, key, &err)
        != ZF_OK) {
        zf_manager_reply_failure (request, &err);
        return;
    }
    zf_notice ("manager", "api: host %" PRId64 " key=%s revoked by %s", id, key,
               zf_rest_principal (request));
    //  Its schedulers and seed roles went with it: nodes drop them at once too.
    zf_manager_publish_change (manager, cluster_id, NULL, key, true);
    zf_manager_reply_object (request, 200, zf_members_host_get (zf_manager_db (manager), id, &err),
                             &err);
}

typedef json_t *(s_roles_list_fn) (zf_db_t *db, int64_t cluster_id, int64_t page, int64_t per_page,
                                   int64_t *total, zf_error_t *err);

//  GET of the schedulers or seed peers (list), of one cluster when cluster_id is given.
static void s_reply_roles (zf_rest_request_t *request, zf_manager_t *manager, s_roles_list_fn *list)
{
    int64_t page, per_page, cluster_id, total = 0;
    if (!zf_rest_page (request, &page, &per_page)
        || !s_query_id (request, "cluster_id", &cluster_id))
        return;
    zf_error_t err;
    json_t *items = list (zf_manager_db (manager), cluster_id, page, per_page, &total, &err);
    zf_manager_reply_page (request, items, page, per_page, total, &err);
}

static void s_schedulers_list (zf_rest_request_t *request, void *arg)
{
    s_reply_roles (request, arg, zf_members_schedulers_list);
}

static void s_seed_peers_list (zf_rest_request_t *request, void *arg)
{
    s_reply_roles (request, arg, zf_members_seed_peers_list);
}

void zf_manager_api_register (zf_rest_t *rest, zf_manager_t *manager)
{
    zf_rest_route (rest, "GET", "/api/v1/clusters", ZF_REST_READ, s_clusters_list, manager);
    zf_rest_route (rest, "POST", "/api/v1/clusters", ZF_REST_WRITE, s_clusters_create, manager);
    zf_rest_route (rest, "GET", "/api/v1/clusters/{id}", ZF_REST_READ, s_clusters_get, manager);
    zf_rest_route (rest, "PATCH", "/api/v1/clusters/{id}", ZF_REST_WRITE, s_clusters_update,
                   manager);
    zf_rest_route (rest, "DELETE", "/api/v1/clusters/{id}", ZF_REST_WRITE, s_clusters_delete,
                   manager);
    zf_rest_route (rest, "GET", "/api/v1/hosts", ZF_REST_READ, s_hosts_list, manager);
    zf_rest_route (rest, "GET", "/api/v1/hosts/{id}", ZF_REST_READ, s_hosts_get, manager);
    zf_rest_route (rest, "DELETE", "/api/v1/hosts/{id}", ZF_REST_WRITE, s_hosts_revoke, manager);
    zf_rest_route (rest, "GET", "/api/v1/schedulers", ZF_REST_READ, s_schedulers_list, manager);
    zf_rest_route (rest, "GET", "/api/v1/seed-peers", ZF_REST_READ, s_seed_peers_list, manager);
}
