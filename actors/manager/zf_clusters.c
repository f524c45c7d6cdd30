/*  zf_clusters.c — scheduler clusters: scopes, client config, the default cluster.

    API shape of a cluster:
        {"id": 1, "name": "eu", "description": "", "is_default": false,
         "scopes": {"idc": "fra1|fra2", "location": "eu|de", "cidrs": ["10.1.0.0/16"],
                    "hostnames": ["^edge-eu-"]},
         "client_config": {...}, "members_version": 7, "created_at": "…", "updated_at": "…"}
    Setting is_default on one cluster clears it on the others (one default cluster). */
#include "zf_clock.h"
#include "zf_manager_store.h"

#define S_NAME_MAX   128
#define S_TEXT_MAX   1024
#define S_LIST_MAX   64    //  CIDRs or hostname regexes per cluster
#define S_CONFIG_MAX 65536 //  bytes of client config JSON

static const zf_col_t s_columns[] = {
    {"id", NULL, ZF_COL_INT},
    {"name", NULL, ZF_COL_TEXT},
    {"description", NULL, ZF_COL_TEXT},
    {"is_default", NULL, ZF_COL_BOOL},
    {"client_config", NULL, ZF_COL_JSON},
    {"members_version", NULL, ZF_COL_INT},
    {"created_at", NULL, ZF_COL_TIME},
    {"updated_at", NULL, ZF_COL_TIME},
};

#define S_SELECT                                                                                   \
    "SELECT id, name, description, is_default, scope_idc, scope_location, scope_cidrs, "           \
    "scope_hostnames, client_config, members_version, created_at, updated_at FROM clusters "

static json_t *s_cluster_json (const zf_db_result_t *rows, size_t row)
{
    json_t *cluster = zf_db_row_json (rows, row, s_columns, ZF_ARRAY_LEN (s_columns));
    static const zf_col_t scope_columns[] = {
        {"scope_idc", "idc", ZF_COL_TEXT},
        {"scope_location", "location", ZF_COL_TEXT},
        {"scope_cidrs", "cidrs", ZF_COL_JSON},
        {"scope_hostnames", "hostnames", ZF_COL_JSON},
    };
    json_object_set_new (cluster, "scopes",
                         zf_db_row_json (rows, row, scope_columns, ZF_ARRAY_LEN (scope_columns)));
    return cluster;
}

//  ---------------------------------------------------------------------------------------------
//  Rows

zf_status_t zf_clusters_ensure_default (zf_db_t *db, zf_error_t *err)
{
    zf_db_result_t *rows =
        zf_db_query (db, "SELECT COUNT(*) FROM clusters WHERE is_default = 1", ZF_DB_NO_ARGS, err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    int64_t defaults = zf_db_result_int (rows, 0, 0, 0);
    zf_db_result_destroy (&rows);
    if (defaults > 0)
        return ZF_OK;
    int64_t now = zf_clock_wall_ms ();
    //  A cluster named "default" left from before becomes the default again.
    int64_t changed = 0;
    zf_status_t status =
        zf_db_exec (db, "UPDATE clusters SET is_default = 1, updated_at = ? WHERE name = 'default'",
                    ZF_DB_ARGS (ZF_DB_INT (now)), &changed, NULL, err);
    if (status == ZF_OK && changed == 0)
        status = zf_db_exec (db,
                             "INSERT INTO clusters (name, description, is_default, scope_cidrs, "
                             "scope_hostnames, client_config, created_at, updated_at) "
                             "VALUES ('default', 'made at the first start', 1, '[]', '[]', '{}', "
                             "?, ?)",
                             ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (now)), NULL, NULL, err);
    return status;
}

//  Clears is_default on every cluster but id (inside the caller's transaction).
static zf_status_t s_clear_other_defaults (zf_db_t *db, int64_t id, zf_error_t *err)
{
    return zf_db_exec (db, "UPDATE clusters SET is_default = 0 WHERE id <> ? AND is_default = 1",
                       ZF_DB_ARGS (ZF_DB_INT (id)), NULL, NULL, err);
}

zf_status_t zf_clusters_create (zf_db_t *db, const zf_cluster_input_t *input, int64_t *id,
                                zf_error_t *err)
{
    int64_t now = zf_clock_wall_ms ();
    zf_status_t status = zf_db_begin (db, err);
    if (status != ZF_OK)
        return status;
    status = zf_db_exec (
        db,
        "INSERT INTO clusters (name, description, is_default, scope_idc, scope_location, "
        "scope_cidrs, scope_hostnames, client_config, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ZF_DB_ARGS (ZF_DB_TEXT (input->name),
                    ZF_DB_TEXT (input->description ? input->description : ""),
                    ZF_DB_INT (input->is_default ? 1 : 0),
                    ZF_DB_TEXT (input->scope_idc ? input->scope_idc : ""),
                    ZF_DB_TEXT (input->scope_location ? input->scope_location : ""),
                    ZF_DB_TEXT (input->scope_cidrs ? input->scope_cidrs : "[]"),
                    ZF_DB_TEXT (input->scope_hostnames ? input->scope_hostnames : "[]"),
                    ZF_DB_TEXT (input->client_config ? input->client_config : "{}"),
                    ZF_DB_INT (now), ZF_DB_INT (now)),
        NULL, id, err);
    if (status == ZF_OK && input->is_default)
        status = s_clear_other_defaults (db, *id, err);
    if (status == ZF_OK)
        return zf_db_commit (db, err);
    zf_db_rollback (db);
    return status;
}

zf_status_t zf_clusters_update (zf_db_t *db, int64_t id, const zf_cluster_input_t *input,
                                zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query (db, "SELECT is_default FROM clusters WHERE id = ?",
                                        ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    bool found = zf_db_result_rows (rows) == 1;
    bool was_default = zf_db_result_int (rows, 0, 0, 0) != 0;
    zf_db_result_destroy (&rows);
    if (!found)
        return zf_error_set (err, ZF_E_MISSING, "id", "no cluster %" PRId64, id);
    if (input->has_default && !input->is_default && was_default)
        return zf_error_set (err, ZF_E_INVALID, "is_default",
                             "is_default: make another cluster the default instead (there is "
                             "always one)");
    int64_t now = zf_clock_wall_ms ();
    zf_status_t status = zf_db_begin (db, err);
    if (status != ZF_OK)
        return status;
    //  One statement per present field keeps every query a fixed, prepared text.
    const struct {
        bool present;
        const char *sql;
        const char *value;
    } fields[] = {
        {input->has_name, "UPDATE clusters SET name = ? WHERE id = ?", input->name},
        {input->has_description, "UPDATE clusters SET description = ? WHERE id = ?",
         input->description},
        {input->scope_idc != NULL, "UPDATE clusters SET scope_idc = ? WHERE id = ?",
         input->scope_idc},
        {input->scope_location != NULL, "UPDATE clusters SET scope_location = ? WHERE id = ?",
         input->scope_location},
        {input->scope_cidrs != NULL, "UPDATE clusters SET scope_cidrs = ? WHERE id = ?",
         input->scope_cidrs},
        {input->scope_hostnames != NULL, "UPDATE clusters SET scope_hostnames = ? WHERE id = ?",
         input->scope_hostnames},
        {input->has_config, "UPDATE clusters SET client_config = ? WHERE id = ?",
         input->client_config},
    };
    for (size_t index = 0; index < ZF_ARRAY_LEN (fields) && status == ZF_OK; index++)
        if (fields[index].present)
            status = zf_db_exec (db, fields[index].sql,
                                 ZF_DB_ARGS (ZF_DB_TEXT (fields[index].value), ZF_DB_INT (id)),
                                 NULL, NULL, err);
    if (status == ZF_OK && input->has_default && input->is_default) {
        status = zf_db_exec (db, "UPDATE clusters SET is_default = 1 WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_INT (id)), NULL, NULL, err);
        if (status == ZF_OK)
            status = s_clear_other_defaults (db, id, err);
    }
    //  Nodes pick up a new client config with their next refresh.
    if (status == ZF_OK)
        status = zf_db_exec (db, "UPDATE clusters SET updated_at = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (id)), NULL, NULL, err);
    if (status == ZF_OK)
        return zf_db_commit (db, err);
    zf_db_rollback (db);
    return status;
}

zf_status_t zf_clusters_delete (zf_db_t *db, int64_t id, zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query (
        db,
        "SELECT c.is_default, (SELECT COUNT(*) FROM hosts h WHERE h.cluster_id = c.id) "
        "FROM clusters c WHERE c.id = ?",
        ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    bool found = zf_db_result_rows (rows) == 1;
    bool is_default = zf_db_result_int (rows, 0, 0, 0) != 0;
    int64_t hosts = zf_db_result_int (rows, 0, 1, 0);
    zf_db_result_destroy (&rows);
    if (!found)
        return zf_error_set (err, ZF_E_MISSING, "id", "no cluster %" PRId64, id);
    if (is_default)
        return zf_error_set (err, ZF_E_INVALID, "id",
                             "cluster %" PRId64 " is the default cluster: make another one the "
                             "default first",
                             id);
    if (hosts > 0)
        return zf_error_set (err, ZF_E_INVALID, "id",
                             "cluster %" PRId64 " still has %" PRId64 " host(s), revoked ones "
                             "included",
                             id, hosts);
    zf_status_t status =
        zf_db_exec (db, "UPDATE join_tokens SET cluster_id = NULL WHERE cluster_id = ?",
                    ZF_DB_ARGS (ZF_DB_INT (id)), NULL, NULL, err);
    if (status == ZF_OK)
        status = zf_db_exec (db, "DELETE FROM clusters WHERE id = ?", ZF_DB_ARGS (ZF_DB_INT (id)),
                             NULL, NULL, err);
    return status;
}

json_t *zf_clusters_get (zf_db_t *db, int64_t id, zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query_id (db, S_SELECT "WHERE id = ?", id, "cluster", err);
    json_t *cluster = rows ? s_cluster_json (rows, 0) : NULL;
    zf_db_result_destroy (&rows);
    return cluster;
}

json_t *zf_clusters_list (zf_db_t *db, int64_t page, int64_t per_page, int64_t *total,
                          zf_error_t *err)
{
    zf_db_result_t *count = zf_db_query (db, "SELECT COUNT(*) FROM clusters", ZF_DB_NO_ARGS, err);
    if (!count)
        return NULL;
    *total = zf_db_result_int (count, 0, 0, 0);
    zf_db_result_destroy (&count);
    zf_db_result_t *rows =
        zf_db_query (db, S_SELECT "ORDER BY id LIMIT ? OFFSET ?",
                     ZF_DB_ARGS (ZF_DB_INT (per_page), ZF_DB_INT ((page - 1) * per_page)), err);
    if (!rows)
        return NULL;
    json_t *items = json_array ();
    for (size_t row = 0; row < zf_db_result_rows (rows); row++)
        json_array_append_new (items, s_cluster_json (rows, row));
    zf_db_result_destroy (&rows);
    return items;
}

zf_db_result_t *zf_clusters_scopes (zf_db_t *db, zf_error_t *err)
{
    return zf_db_query (db,
                        "SELECT id, is_default, scope_idc, scope_location, scope_cidrs, "
                        "scope_hostnames FROM clusters ORDER BY id",
                        ZF_DB_NO_ARGS, err);
}
