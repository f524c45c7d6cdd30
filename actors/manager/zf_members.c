/*  zf_members.c — hosts that joined, the schedulers and seed peers among them, and what each
    cluster's nodes are told.

    A host is identified by the CURVE key that authenticated its join: the first join needs a
    good join token, later ones (the periodic refresh, a restart) are recognised by the key. A
    revoked key stays in the table, revoked, so the same node cannot come back with another
    token: re-admitting it takes a new keypair. A host's scheduler and seed roles are rows of
    their own, kept alive by its joins and marked inactive by zf_members_expire.

    clusters.members_version counts changes of what a cluster's nodes are told: a key added or
    revoked, a scheduler or seed peer that came or went. Every change bumps it by one and the
    manager publishes it, so a node that sees a version it did not expect knows it missed
    something and asks again. */
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_manager_store.h"
#include "zf_node.h"

static const zf_col_t s_host_columns[] = {
    {"id", NULL, ZF_COL_INT},
    {"name", NULL, ZF_COL_TEXT},
    {"public_key", NULL, ZF_COL_TEXT},
    {"cluster_id", NULL, ZF_COL_INT},
    {"state", NULL, ZF_COL_TEXT},
    {"address", NULL, ZF_COL_TEXT},
    {"idc", NULL, ZF_COL_TEXT},
    {"location", NULL, ZF_COL_TEXT},
    {"labels", NULL, ZF_COL_JSON},
    {"is_scheduler", NULL, ZF_COL_BOOL},
    {"is_seed", NULL, ZF_COL_BOOL},
    {"first_seen", NULL, ZF_COL_TIME},
    {"last_seen", NULL, ZF_COL_TIME},
    {"revoked_at", NULL, ZF_COL_TIME},
    {"cache_bytes", NULL, ZF_COL_INT},
    {"cache_tasks", NULL, ZF_COL_INT},
    {"cache_capacity", NULL, ZF_COL_INT},
};

#define S_HOST_SELECT                                                                              \
    "SELECT h.id, h.name, h.public_key, h.cluster_id, h.state, h.address, h.idc, h.location, "     \
    "h.labels, h.first_seen, h.last_seen, h.revoked_at, h.cache_bytes, h.cache_tasks, "            \
    "h.cache_capacity, "                                                                           \
    "(SELECT COUNT(*) FROM schedulers s WHERE s.host_id = h.id AND s.state = 'active') "           \
    "AS is_scheduler, "                                                                            \
    "(SELECT COUNT(*) FROM seed_peers p WHERE p.host_id = h.id AND p.state = 'active') "           \
    "AS is_seed FROM hosts h "

static const zf_col_t s_scheduler_columns[] = {
    {"id", NULL, ZF_COL_INT},          {"host_id", NULL, ZF_COL_INT},
    {"cluster_id", NULL, ZF_COL_INT},  {"name", NULL, ZF_COL_TEXT},
    {"endpoint", NULL, ZF_COL_TEXT},   {"public_key", NULL, ZF_COL_TEXT},
    {"state", NULL, ZF_COL_TEXT},      {"last_keepalive", NULL, ZF_COL_TIME},
    {"created_at", NULL, ZF_COL_TIME},
};

static const zf_col_t s_seed_columns[] = {
    {"id", NULL, ZF_COL_INT},
    {"host_id", NULL, ZF_COL_INT},
    {"cluster_id", NULL, ZF_COL_INT},
    {"name", NULL, ZF_COL_TEXT},
    {"storage_endpoint", NULL, ZF_COL_TEXT},
    {"fetcher_endpoint", NULL, ZF_COL_TEXT},
    {"public_key", NULL, ZF_COL_TEXT},
    {"state", NULL, ZF_COL_TEXT},
    {"last_keepalive", NULL, ZF_COL_TIME},
    {"created_at", NULL, ZF_COL_TIME},
};

static zf_status_t s_bump_version (zf_db_t *db, int64_t cluster_id, int64_t *version,
                                   zf_error_t *err)
{
    zf_status_t status =
        zf_db_exec (db, "UPDATE clusters SET members_version = members_version + 1 WHERE id = ?",
                    ZF_DB_ARGS (ZF_DB_INT (cluster_id)), NULL, NULL, err);
    if (status != ZF_OK || !version)
        return status;
    zf_db_result_t *rows = zf_db_query (db, "SELECT members_version FROM clusters WHERE id = ?",
                                        ZF_DB_ARGS (ZF_DB_INT (cluster_id)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    *version = zf_db_result_int (rows, 0, 0, 0);
    zf_db_result_destroy (&rows);
    return ZF_OK;
}

//  Keeps one role row alive (active, endpoint, key) or retires it; *changed when the row's
//  state or endpoint changed, which changes what the cluster's nodes are told.
static zf_status_t s_role (zf_db_t *db, bool scheduler, int64_t host_id, int64_t cluster_id,
                           const zf_join_request_t *request, int64_t now, bool *changed,
                           zf_error_t *err)
{
    const char *table_select =
        scheduler ? "SELECT id, state, endpoint FROM schedulers WHERE host_id = ?"
                  : "SELECT id, state, storage_endpoint, fetcher_endpoint FROM seed_peers WHERE "
                    "host_id = ?";
    zf_db_result_t *rows = zf_db_query (db, table_select, ZF_DB_ARGS (ZF_DB_INT (host_id)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    bool exists = zf_db_result_rows (rows) == 1;
    bool was_active = exists && streq (zf_db_result_text (rows, 0, 1), "active");
    char *old_endpoint = exists ? zf_strdup (zf_db_result_text (rows, 0, 2)) : NULL;
    zf_db_result_destroy (&rows);

    bool wanted = scheduler ? *request->scheduler_endpoint != '\0' : request->seed;
    char *endpoint = NULL, *fetcher = NULL;
    if (wanted) {
        endpoint = zf_node_endpoint_for_peer (
            scheduler ? request->scheduler_endpoint : request->storage_endpoint, request->address);
        fetcher = zf_node_endpoint_for_peer (request->fetcher_endpoint, request->address);
    }
    zf_status_t status = ZF_OK;
    if (wanted && !exists)
        status =
            scheduler
                ? zf_db_exec (db,
                              "INSERT INTO schedulers (host_id, cluster_id, name, endpoint, "
                              "public_key, state, last_keepalive, created_at, updated_at) "
                              "VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                              ZF_DB_ARGS (ZF_DB_INT (host_id), ZF_DB_INT (cluster_id),
                                          ZF_DB_TEXT (request->name), ZF_DB_TEXT (endpoint),
                                          ZF_DB_TEXT (request->public_key), ZF_DB_INT (now),
                                          ZF_DB_INT (now), ZF_DB_INT (now)),
                              NULL, NULL, err)
                : zf_db_exec (db,
                              "INSERT INTO seed_peers (host_id, cluster_id, name, "
                              "storage_endpoint, fetcher_endpoint, public_key, state, "
                              "last_keepalive, created_at, updated_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                              ZF_DB_ARGS (ZF_DB_INT (host_id), ZF_DB_INT (cluster_id),
                                          ZF_DB_TEXT (request->name), ZF_DB_TEXT (endpoint),
                                          ZF_DB_TEXT (fetcher), ZF_DB_TEXT (request->public_key),
                                          ZF_DB_INT (now), ZF_DB_INT (now), ZF_DB_INT (now)),
                              NULL, NULL, err);
    else if (wanted)
        status =
            scheduler
                ? zf_db_exec (db,
                              "UPDATE schedulers SET cluster_id = ?, name = ?, endpoint = ?, "
                              "public_key = ?, state = 'active', last_keepalive = ?, "
                              "updated_at = ? WHERE host_id = ?",
                              ZF_DB_ARGS (ZF_DB_INT (cluster_id), ZF_DB_TEXT (request->name),
                                          ZF_DB_TEXT (endpoint), ZF_DB_TEXT (request->public_key),
                                          ZF_DB_INT (now), ZF_DB_INT (now), ZF_DB_INT (host_id)),
                              NULL, NULL, err)
                : zf_db_exec (db,
                              "UPDATE seed_peers SET cluster_id = ?, name = ?, "
                              "storage_endpoint = ?, fetcher_endpoint = ?, public_key = ?, "
                              "state = 'active', last_keepalive = ?, updated_at = ? "
                              "WHERE host_id = ?",
                              ZF_DB_ARGS (ZF_DB_INT (cluster_id), ZF_DB_TEXT (request->name),
                                          ZF_DB_TEXT (endpoint), ZF_DB_TEXT (fetcher),
                                          ZF_DB_TEXT (request->public_key), ZF_DB_INT (now),
                                          ZF_DB_INT (now), ZF_DB_INT (host_id)),
                              NULL, NULL, err);
    else if (was_active)
        status = zf_db_exec (db,
                             scheduler ? "UPDATE schedulers SET state = 'inactive', updated_at = ? "
                                         "WHERE host_id = ?"
                                       : "UPDATE seed_peers SET state = 'inactive', updated_at = ? "
                                         "WHERE host_id = ?",
                             ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (host_id)), NULL, NULL, err);
    *changed =
        (wanted != was_active) || (wanted && old_endpoint && !streq (old_endpoint, endpoint));
    zf_free (old_endpoint);
    zf_free (endpoint);
    zf_free (fetcher);
    return status;
}

//  The host's row by key: *host_id 0 when unknown.
static zf_status_t s_find_host (zf_db_t *db, const char *key, int64_t *host_id, int64_t *cluster_id,
                                bool *revoked, zf_error_t *err)
{
    zf_db_result_t *rows =
        zf_db_query (db, "SELECT id, cluster_id, state FROM hosts WHERE public_key = ?",
                     ZF_DB_ARGS (ZF_DB_TEXT (key)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    *host_id = zf_db_result_int (rows, 0, 0, 0);
    *cluster_id = zf_db_result_int (rows, 0, 1, 0);
    *revoked = *host_id && !streq (zf_db_result_text (rows, 0, 2), "active");
    zf_db_result_destroy (&rows);
    return ZF_OK;
}

static zf_status_t s_name_taken (zf_db_t *db, const char *name, const char *key, bool *taken,
                                 zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query (
        db, "SELECT COUNT(*) FROM hosts WHERE name = ? AND state = 'active' AND public_key <> ?",
        ZF_DB_ARGS (ZF_DB_TEXT (name), ZF_DB_TEXT (key)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    *taken = zf_db_result_int (rows, 0, 0, 0) > 0;
    zf_db_result_destroy (&rows);
    return ZF_OK;
}

static zf_status_t s_pick_cluster (zf_db_t *db, const zf_join_request_t *request,
                                   int64_t *cluster_id, zf_error_t *err)
{
    zf_db_result_t *clusters = zf_clusters_scopes (db, err);
    if (!clusters)
        return err ? err->code : ZF_E_IO;
    zf_search_host_t host = {.address = request->address,
                             .name = request->name,
                             .idc = request->idc,
                             .location = request->location};
    *cluster_id = zf_search_cluster (clusters, &host);
    zf_db_result_destroy (&clusters);
    if (!*cluster_id)
        return zf_error_set (err, ZF_E_INVALID, "cluster",
                             "no cluster takes this host and there is no default cluster");
    return ZF_OK;
}

//  fetcher: the host's fetcher endpoint with the joining address for a wildcard host ("" when
//  it binds none), kept for preheat jobs of scope all_peers (zf_jobs.c).
static zf_status_t s_join_host (zf_db_t *db, const zf_join_request_t *request, const char *fetcher,
                                int64_t now, zf_join_result_t *result, zf_error_t *err)
{
    bool revoked = false, taken = false;
    int64_t host_id = 0, cluster_id = 0;
    zf_status_t status =
        s_find_host (db, request->public_key, &host_id, &cluster_id, &revoked, err);
    if (status == ZF_OK && revoked) {
        result->verdict = ZF_JOIN_REVOKED;
        return ZF_OK;
    }
    if (status == ZF_OK)
        status = s_name_taken (db, request->name, request->public_key, &taken, err);
    if (status == ZF_OK && taken) {
        result->verdict = ZF_JOIN_NAME_TAKEN;
        return ZF_OK;
    }
    if (status == ZF_OK && !host_id) {
        int64_t token_id = 0, token_cluster = 0;
        status = zf_join_tokens_consume (db, request->token, now, &result->token_verdict, &token_id,
                                         &token_cluster, err);
        if (status == ZF_OK && result->token_verdict != ZF_JOIN_TOKEN_OK) {
            result->verdict = ZF_JOIN_TOKEN_REFUSED;
            return ZF_OK;
        }
        cluster_id = token_cluster;
        if (status == ZF_OK && !cluster_id)
            status = s_pick_cluster (db, request, &cluster_id, err);
        if (status == ZF_OK)
            status = zf_db_exec (
                db,
                "INSERT INTO hosts (name, public_key, cluster_id, state, address, "
                "idc, location, labels, join_token_id, first_seen, last_seen, fetcher_endpoint) "
                "VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?)",
                ZF_DB_ARGS (ZF_DB_TEXT (request->name), ZF_DB_TEXT (request->public_key),
                            ZF_DB_INT (cluster_id), ZF_DB_TEXT (request->address),
                            ZF_DB_TEXT (request->idc), ZF_DB_TEXT (request->location),
                            ZF_DB_TEXT (request->labels_json), ZF_DB_INT (token_id),
                            ZF_DB_INT (now), ZF_DB_INT (now), ZF_DB_TEXT (fetcher)),
                NULL, &host_id, err);
        result->new_member = true;
    } else if (status == ZF_OK)
        status = zf_db_exec (db,
                             "UPDATE hosts SET name = ?, address = ?, idc = ?, location = ?, "
                             "labels = ?, last_seen = ?, fetcher_endpoint = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (request->name), ZF_DB_TEXT (request->address),
                                         ZF_DB_TEXT (request->idc), ZF_DB_TEXT (request->location),
                                         ZF_DB_TEXT (request->labels_json), ZF_DB_INT (now),
                                         ZF_DB_TEXT (fetcher), ZF_DB_INT (host_id)),
                             NULL, NULL, err);
    bool scheduler_changed = false, seed_changed = false;
    if (status == ZF_OK)
        status = s_role (db, true, host_id, cluster_id, request, now, &scheduler_changed, err);
    if (status == ZF_OK)
        status = s_role (db, false, host_id, cluster_id, request, now, &seed_changed, err);
    if (status == ZF_OK && (result->new_member || scheduler_changed || seed_changed))
        status = s_bump_version (db, cluster_id, &result->members_version, err);
    else if (status == ZF_OK) {
        zf_db_result_t *rows = zf_db_query (db, "SELECT members_version FROM clusters WHERE id = ?",
                                            ZF_DB_ARGS (ZF_DB_INT (cluster_id)), err);
        status = rows ? ZF_OK : ZF_E_IO;
        result->members_version = rows ? zf_db_result_int (rows, 0, 0, 0) : 0;
        zf_db_result_destroy (&rows);
    }
    result->view_changed = scheduler_changed || seed_changed;
    result->verdict = ZF_JOIN_ACCEPTED;
    result->host_id = host_id;
    result->cluster_id = cluster_id;
    return status;
}

//  The host's cache as its storage measured it just before this join (a node without storage
//  reports none, and its columns stay as they were).
static zf_status_t s_cache_use (zf_db_t *db, const zf_join_request_t *request, int64_t host_id,
                                zf_error_t *err)
{
    if (!request->cache_capacity)
        return ZF_OK;
    return zf_db_exec (db,
                       "UPDATE hosts SET cache_bytes = ?, cache_tasks = ?, cache_capacity = ? "
                       "WHERE id = ?",
                       ZF_DB_ARGS (ZF_DB_INT ((int64_t) request->cache_bytes),
                                   ZF_DB_INT ((int64_t) request->cache_tasks),
                                   ZF_DB_INT ((int64_t) request->cache_capacity),
                                   ZF_DB_INT (host_id)),
                       NULL, NULL, err);
}

static zf_status_t s_join (zf_db_t *db, const zf_join_request_t *request, int64_t now,
                           zf_join_result_t *result, zf_error_t *err)
{
    char *fetcher = zf_node_endpoint_for_peer (request->fetcher_endpoint, request->address);
    zf_status_t status = s_join_host (db, request, fetcher ? fetcher : "", now, result, err);
    zf_free (fetcher);
    return status;
}

zf_status_t zf_members_join (zf_db_t *db, const zf_join_request_t *request, int64_t now,
                             zf_join_result_t *result, zf_error_t *err)
{
    memset (result, 0, sizeof *result);
    zf_status_t status = zf_db_begin (db, err);
    if (status != ZF_OK)
        return status;
    status = s_join (db, request, now, result, err);
    if (status == ZF_OK && result->verdict == ZF_JOIN_ACCEPTED)
        status = s_cache_use (db, request, result->host_id, err);
    if (status == ZF_OK)
        return zf_db_commit (db, err);
    zf_db_rollback (db);
    return status;
}

//  The statements that end scheduler and seed-peer roles: (updated_at, value) as arguments.
static const char *const s_host_roles[] = {
    "UPDATE schedulers SET state = 'inactive', updated_at = ? WHERE host_id = ?",
    "UPDATE seed_peers SET state = 'inactive', updated_at = ? WHERE host_id = ?",
};
static const char *const s_silent_roles[] = {
    "UPDATE schedulers SET state = 'inactive', updated_at = ? WHERE state = 'active' AND "
    "last_keepalive < ?",
    "UPDATE seed_peers SET state = 'inactive', updated_at = ? WHERE state = 'active' AND "
    "last_keepalive < ?",
};

//  Marks the roles that one pair of statements selects (a host's, or the silent ones) inactive.
static zf_status_t s_deactivate_roles (zf_db_t *db, int64_t now, const char *const statements[2],
                                       int64_t value, zf_error_t *err)
{
    zf_status_t status = ZF_OK;
    for (size_t index = 0; index < 2 && status == ZF_OK; index++)
        status = zf_db_exec (db, statements[index], ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (value)),
                             NULL, NULL, err);
    return status;
}

//  In one transaction: the host revoked (revoke) or not, its scheduler and seed rows inactive,
//  its cluster's members version bumped.
static zf_status_t s_end_host_roles (zf_db_t *db, int64_t now, int64_t host_id, int64_t cluster_id,
                                     bool revoke, zf_error_t *err)
{
    zf_status_t status = zf_db_begin (db, err);
    if (status == ZF_OK && revoke)
        status = zf_db_exec (db, "UPDATE hosts SET state = 'revoked', revoked_at = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (host_id)), NULL, NULL, err);
    if (status == ZF_OK)
        status = s_deactivate_roles (db, now, s_host_roles, host_id, err);
    if (status == ZF_OK)
        status = s_bump_version (db, cluster_id, NULL, err);
    if (status == ZF_OK)
        return zf_db_commit (db, err);
    zf_db_rollback (db);
    return status;
}

zf_status_t zf_members_revoke (zf_db_t *db, int64_t host_id, int64_t now, int64_t *cluster_id,
                               char *public_key, zf_error_t *err)
{
    zf_db_result_t *rows =
        zf_db_query (db, "SELECT cluster_id, public_key, state FROM hosts WHERE id = ?",
                     ZF_DB_ARGS (ZF_DB_INT (host_id)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    bool found = zf_db_result_rows (rows) == 1;
    bool active = found && streq (zf_db_result_text (rows, 0, 2), "active");
    *cluster_id = zf_db_result_int (rows, 0, 0, 0);
    zf_strlcpy (public_key, found ? zf_db_result_text (rows, 0, 1) : "", 41);
    zf_db_result_destroy (&rows);
    if (!found)
        return zf_error_set (err, ZF_E_MISSING, "id", "no host %" PRId64, host_id);
    if (!active)
        return ZF_OK; //  revoking twice changes nothing
    return s_end_host_roles (db, now, host_id, *cluster_id, true, err);
}

zf_status_t zf_members_leave (zf_db_t *db, const char *public_key, int64_t now, int64_t *cluster_id,
                              int64_t *ended, zf_error_t *err)
{
    *cluster_id = 0;
    *ended = 0;
    zf_db_result_t *rows = zf_db_query (
        db,
        "SELECT h.id, h.cluster_id, "
        "(SELECT COUNT(*) FROM schedulers s WHERE s.host_id = h.id AND s.state = 'active') + "
        "(SELECT COUNT(*) FROM seed_peers p WHERE p.host_id = h.id AND p.state = 'active') "
        "FROM hosts h WHERE h.public_key = ? AND h.state = 'active'",
        ZF_DB_ARGS (ZF_DB_TEXT (public_key)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    bool found = zf_db_result_rows (rows) == 1;
    int64_t host_id = found ? zf_db_result_int (rows, 0, 0, 0) : 0;
    *cluster_id = found ? zf_db_result_int (rows, 0, 1, 0) : 0;
    *ended = found ? zf_db_result_int (rows, 0, 2, 0) : 0;
    zf_db_result_destroy (&rows);
    return *ended ? s_end_host_roles (db, now, host_id, *cluster_id, false, err) : ZF_OK;
}

zf_status_t zf_members_expire (zf_db_t *db, int64_t now, int64_t timeout_ms, int64_t *clusters,
                               size_t clusters_max, size_t *cluster_count, zf_error_t *err)
{
    *cluster_count = 0;
    int64_t limit = now - timeout_ms;
    zf_db_result_t *rows = zf_db_query (
        db,
        "SELECT DISTINCT cluster_id FROM schedulers WHERE state = 'active' AND last_keepalive < ? "
        "UNION SELECT DISTINCT cluster_id FROM seed_peers WHERE state = 'active' AND "
        "last_keepalive < ?",
        ZF_DB_ARGS (ZF_DB_INT (limit), ZF_DB_INT (limit)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    if (zf_db_result_rows (rows) == 0) {
        zf_db_result_destroy (&rows);
        return ZF_OK;
    }
    zf_status_t status = zf_db_begin (db, err);
    if (status == ZF_OK)
        status = s_deactivate_roles (db, now, s_silent_roles, limit, err);
    for (size_t row = 0; row < zf_db_result_rows (rows) && status == ZF_OK; row++) {
        int64_t cluster_id = zf_db_result_int (rows, row, 0, 0);
        status = s_bump_version (db, cluster_id, NULL, err);
        if (*cluster_count < clusters_max)
            clusters[(*cluster_count)++] = cluster_id;
    }
    zf_db_result_destroy (&rows);
    if (status == ZF_OK)
        return zf_db_commit (db, err);
    zf_db_rollback (db);
    *cluster_count = 0;
    return status;
}

//  ---------------------------------------------------------------------------------------------
//  What nodes and operators see

int64_t zf_members_version (zf_db_t *db, int64_t cluster_id)
{
    zf_db_result_t *rows = zf_db_query (db, "SELECT members_version FROM clusters WHERE id = ?",
                                        ZF_DB_ARGS (ZF_DB_INT (cluster_id)), NULL);
    int64_t version = rows ? zf_db_result_int (rows, 0, 0, 0) : 0;
    zf_db_result_destroy (&rows);
    return version;
}

zf_db_result_t *zf_members_versions (zf_db_t *db, size_t max, zf_error_t *err)
{
    return zf_db_query (db, "SELECT id, members_version FROM clusters ORDER BY id LIMIT ?",
                        ZF_DB_ARGS (ZF_DB_INT ((int64_t) max)), err);
}

json_t *zf_members_cluster_view (zf_db_t *db, int64_t cluster_id, zf_error_t *err)
{
    zf_db_result_t *cluster = zf_db_query (
        db, "SELECT id, name, client_config, members_version FROM clusters WHERE id = ?",
        ZF_DB_ARGS (ZF_DB_INT (cluster_id)), err);
    zf_db_result_t *schedulers =
        cluster ? zf_db_query (db,
                               "SELECT name, endpoint, public_key FROM schedulers WHERE "
                               "cluster_id = ? AND state = 'active' ORDER BY name",
                               ZF_DB_ARGS (ZF_DB_INT (cluster_id)), err)
                : NULL;
    zf_db_result_t *seeds =
        schedulers ? zf_db_query (db,
                                  "SELECT name, storage_endpoint, fetcher_endpoint, public_key "
                                  "FROM seed_peers WHERE cluster_id = ? AND state = 'active' "
                                  "ORDER BY name",
                                  ZF_DB_ARGS (ZF_DB_INT (cluster_id)), err)
                   : NULL;
    zf_db_result_t *members =
        seeds ? zf_db_query (db,
                             "SELECT public_key FROM hosts WHERE cluster_id = ? AND state = "
                             "'active' ORDER BY id",
                             ZF_DB_ARGS (ZF_DB_INT (cluster_id)), err)
              : NULL;
    json_t *view = NULL;
    if (members && zf_db_result_rows (cluster) == 1) {
        static const zf_col_t cluster_columns[] = {{"id", NULL, ZF_COL_INT},
                                                   {"name", NULL, ZF_COL_TEXT}};
        static const zf_col_t scheduler_columns[] = {{"name", NULL, ZF_COL_TEXT},
                                                     {"endpoint", NULL, ZF_COL_TEXT},
                                                     {"public_key", "key", ZF_COL_TEXT}};
        static const zf_col_t seed_columns[] = {{"name", NULL, ZF_COL_TEXT},
                                                {"storage_endpoint", "storage", ZF_COL_TEXT},
                                                {"fetcher_endpoint", "fetcher", ZF_COL_TEXT},
                                                {"public_key", "key", ZF_COL_TEXT}};
        view = json_object ();
        json_object_set_new (
            view, "cluster",
            zf_db_row_json (cluster, 0, cluster_columns, ZF_ARRAY_LEN (cluster_columns)));
        json_t *config = json_loads (zf_db_result_text (cluster, 0, 2), 0, NULL);
        json_object_set_new (view, "client_config", config ? config : json_object ());
        json_object_set_new (view, "members_version",
                             json_integer (zf_db_result_int (cluster, 0, 3, 0)));
        json_t *list = json_array ();
        for (size_t row = 0; row < zf_db_result_rows (schedulers); row++)
            json_array_append_new (list, zf_db_row_json (schedulers, row, scheduler_columns,
                                                         ZF_ARRAY_LEN (scheduler_columns)));
        json_object_set_new (view, "schedulers", list);
        list = json_array ();
        for (size_t row = 0; row < zf_db_result_rows (seeds); row++)
            json_array_append_new (
                list, zf_db_row_json (seeds, row, seed_columns, ZF_ARRAY_LEN (seed_columns)));
        json_object_set_new (view, "seed_peers", list);
        list = json_array ();
        for (size_t row = 0; row < zf_db_result_rows (members); row++)
            json_array_append_new (list, json_string (zf_db_result_text (members, row, 0)));
        json_object_set_new (view, "members", list);
    } else if (members)
        zf_error_set (err, ZF_E_MISSING, "cluster", "no cluster %" PRId64, cluster_id);
    zf_db_result_destroy (&cluster);
    zf_db_result_destroy (&schedulers);
    zf_db_result_destroy (&seeds);
    zf_db_result_destroy (&members);
    return view;
}

//  Filters as SQL that stays fixed: "(? = 0 OR cluster_id = ?)" binds the value twice.
json_t *zf_members_hosts_list (zf_db_t *db, int64_t cluster_id, const char *state, const char *name,
                               int64_t page, int64_t per_page, int64_t *total, zf_error_t *err)
{
    zf_db_arg_t filters[] = {ZF_DB_INT (cluster_id),          ZF_DB_INT (cluster_id),
                             ZF_DB_TEXT (state ? state : ""), ZF_DB_TEXT (state ? state : ""),
                             ZF_DB_TEXT (name ? name : ""),   ZF_DB_TEXT (name ? name : "")};
    //  INSTR: the same function on SQLite and MariaDB, and no LIKE wildcards to escape.
    return zf_db_page_json (db,
                            "SELECT COUNT(*) FROM hosts h WHERE (? = 0 OR h.cluster_id = ?) AND "
                            "(? = '' OR h.state = ?) AND (? = '' OR INSTR(h.name, ?) > 0)",
                            S_HOST_SELECT
                            "WHERE (? = 0 OR h.cluster_id = ?) AND (? = '' OR h.state = ?) "
                            "AND (? = '' OR INSTR(h.name, ?) > 0) "
                            "ORDER BY h.id LIMIT ? OFFSET ?",
                            filters, ZF_ARRAY_LEN (filters), s_host_columns,
                            ZF_ARRAY_LEN (s_host_columns), page, per_page, total, err);
}

json_t *zf_members_host_get (zf_db_t *db, int64_t id, zf_error_t *err)
{
    return zf_db_id_json (db, S_HOST_SELECT "WHERE h.id = ?", id, "host", s_host_columns,
                          ZF_ARRAY_LEN (s_host_columns), err);
}

json_t *zf_members_schedulers_list (zf_db_t *db, int64_t cluster_id, int64_t page, int64_t per_page,
                                    int64_t *total, zf_error_t *err)
{
    zf_db_arg_t filters[] = {ZF_DB_INT (cluster_id), ZF_DB_INT (cluster_id)};
    return zf_db_page_json (
        db, "SELECT COUNT(*) FROM schedulers WHERE (? = 0 OR cluster_id = ?)",
        "SELECT id, host_id, cluster_id, name, endpoint, public_key, state, "
        "last_keepalive, created_at FROM schedulers WHERE (? = 0 OR cluster_id = ?) "
        "ORDER BY id LIMIT ? OFFSET ?",
        filters, ZF_ARRAY_LEN (filters), s_scheduler_columns, ZF_ARRAY_LEN (s_scheduler_columns),
        page, per_page, total, err);
}

json_t *zf_members_seed_peers_list (zf_db_t *db, int64_t cluster_id, int64_t page, int64_t per_page,
                                    int64_t *total, zf_error_t *err)
{
    zf_db_arg_t filters[] = {ZF_DB_INT (cluster_id), ZF_DB_INT (cluster_id)};
    return zf_db_page_json (
        db, "SELECT COUNT(*) FROM seed_peers WHERE (? = 0 OR cluster_id = ?)",
        "SELECT id, host_id, cluster_id, name, storage_endpoint, fetcher_endpoint, "
        "public_key, state, last_keepalive, created_at FROM seed_peers WHERE "
        "(? = 0 OR cluster_id = ?) ORDER BY id LIMIT ? OFFSET ?",
        filters, ZF_ARRAY_LEN (filters), s_seed_columns, ZF_ARRAY_LEN (s_seed_columns), page,
        per_page, total, err);
}
