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
//  Input

static zf_status_t s_string (json_t *value, const char *field, size_t max, bool empty_ok,
                             char **out, zf_error_t *err)
{
    if (!json_is_string (value))
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must be a string", field);
    const char *text = json_string_value (value);
    size_t len = json_string_length (value);
    if (len != strlen (text))
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must not contain NUL", field);
    if (len > max)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: longer than %zu bytes", field, max);
    if (!empty_ok && len == 0)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must not be empty", field);
    zf_free (*out);
    *out = zf_strdup (text);
    return ZF_OK;
}

//  A list of strings, each checked: CIDRs or regexes.
static zf_status_t s_list (json_t *value, const char *field, bool regexes, char **out,
                           zf_error_t *err)
{
    if (!json_is_array (value))
        return zf_error_set (err, ZF_E_INVALID, field, "%s: must be a list of strings", field);
    if (json_array_size (value) > S_LIST_MAX)
        return zf_error_set (err, ZF_E_INVALID, field, "%s: at most %d entries", field, S_LIST_MAX);
    size_t index;
    json_t *item;
    json_array_foreach (value, index, item)
    {
        char where[64];
        snprintf (where, sizeof where, "%s[%zu]", field, index);
        const char *text = json_string_value (item);
        if (!text || json_string_length (item) != strlen (text) || strlen (text) > 256)
            return zf_error_set (err, ZF_E_INVALID, where,
                                 "%s: must be a string of at most 256 bytes", where);
        char why[128] = "";
        if (regexes && !zf_search_regex_valid (text, why, sizeof why))
            return zf_error_set (err, ZF_E_INVALID, where, "%s: '%s' is not a regex: %s", where,
                                 text, why);
        if (!regexes && !zf_search_cidr_valid (text))
            return zf_error_set (err, ZF_E_INVALID, where,
                                 "%s: '%s' is not a CIDR (like 10.0.0.0/8 or fd00::/8)", where,
                                 text);
    }
    zf_free (*out);
    *out = json_dumps (value, JSON_COMPACT);
    ZF_ASSERT (*out);
    return ZF_OK;
}

static zf_status_t s_scopes (json_t *scopes, zf_cluster_input_t *input, zf_error_t *err)
{
    if (!json_is_object (scopes))
        return zf_error_set (err, ZF_E_INVALID, "scopes", "scopes: must be an object");
    input->has_scopes = true;
    zf_status_t status = ZF_OK;
    const char *key;
    json_t *value;
    json_object_foreach (scopes, key, value)
    {
        if (streq (key, "idc"))
            status = s_string (value, "scopes.idc", S_TEXT_MAX, true, &input->scope_idc, err);
        else if (streq (key, "location"))
            status =
                s_string (value, "scopes.location", S_TEXT_MAX, true, &input->scope_location, err);
        else if (streq (key, "cidrs"))
            status = s_list (value, "scopes.cidrs", false, &input->scope_cidrs, err);
        else if (streq (key, "hostnames"))
            status = s_list (value, "scopes.hostnames", true, &input->scope_hostnames, err);
        else
            status = zf_error_set (err, ZF_E_INVALID, "scopes",
                                   "scopes.%.64s: unknown (known: idc, location, cidrs, "
                                   "hostnames)",
                                   key);
        if (status != ZF_OK)
            return status;
    }
    return ZF_OK;
}

zf_status_t zf_cluster_input_parse (json_t *body, bool create, zf_cluster_input_t *input,
                                    zf_error_t *err)
{
    memset (input, 0, sizeof *input);
    zf_status_t status = ZF_OK;
    const char *key;
    json_t *value;
    json_object_foreach (body, key, value)
    {
        if (streq (key, "name")) {
            status = s_string (value, "name", S_NAME_MAX, false, &input->name, err);
            input->has_name = true;
        } else if (streq (key, "description")) {
            status = s_string (value, "description", S_TEXT_MAX, true, &input->description, err);
            input->has_description = true;
        } else if (streq (key, "is_default")) {
            if (!json_is_boolean (value))
                status = zf_error_set (err, ZF_E_INVALID, "is_default",
                                       "is_default: must be true or false");
            input->is_default = json_is_true (value);
            input->has_default = true;
        } else if (streq (key, "scopes"))
            status = s_scopes (value, input, err);
        else if (streq (key, "client_config")) {
            if (!json_is_object (value))
                status = zf_error_set (err, ZF_E_INVALID, "client_config",
                                       "client_config: must be an object");
            else {
                input->client_config = json_dumps (value, JSON_COMPACT);
                ZF_ASSERT (input->client_config);
                if (strlen (input->client_config) > S_CONFIG_MAX)
                    status = zf_error_set (err, ZF_E_INVALID, "client_config",
                                           "client_config: larger than %d bytes", S_CONFIG_MAX);
                input->has_config = true;
            }
        } else if (streq (key, "id") || streq (key, "members_version") || streq (key, "created_at")
                   || streq (key, "updated_at"))
            ; //  read-only fields a client may send back from a GET: ignored
        else
            status = zf_error_set (err, ZF_E_INVALID, "body",
                                   "%.64s: unknown field (known: name, description, is_default, "
                                   "scopes, client_config)",
                                   key);
        if (status != ZF_OK)
            break;
    }
    if (status == ZF_OK && create && !input->has_name)
        status = zf_error_set (err, ZF_E_MISSING, "name", "name: required");
    if (status != ZF_OK)
        zf_cluster_input_clear (input);
    return status;
}

void zf_cluster_input_clear (zf_cluster_input_t *input)
{
    zf_free (input->name);
    zf_free (input->description);
    zf_free (input->scope_idc);
    zf_free (input->scope_location);
    free (input->scope_cidrs); //  json_dumps allocations
    free (input->scope_hostnames);
    free (input->client_config);
    memset (input, 0, sizeof *input);
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
    if (input->has_name)
        status =
            zf_db_exec (db, "UPDATE clusters SET name = ? WHERE id = ?",
                        ZF_DB_ARGS (ZF_DB_TEXT (input->name), ZF_DB_INT (id)), NULL, NULL, err);
    if (status == ZF_OK && input->has_description)
        status = zf_db_exec (db, "UPDATE clusters SET description = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (input->description), ZF_DB_INT (id)), NULL,
                             NULL, err);
    if (status == ZF_OK && input->scope_idc)
        status = zf_db_exec (db, "UPDATE clusters SET scope_idc = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (input->scope_idc), ZF_DB_INT (id)), NULL, NULL,
                             err);
    if (status == ZF_OK && input->scope_location)
        status = zf_db_exec (db, "UPDATE clusters SET scope_location = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (input->scope_location), ZF_DB_INT (id)), NULL,
                             NULL, err);
    if (status == ZF_OK && input->scope_cidrs)
        status = zf_db_exec (db, "UPDATE clusters SET scope_cidrs = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (input->scope_cidrs), ZF_DB_INT (id)), NULL,
                             NULL, err);
    if (status == ZF_OK && input->scope_hostnames)
        status = zf_db_exec (db, "UPDATE clusters SET scope_hostnames = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (input->scope_hostnames), ZF_DB_INT (id)), NULL,
                             NULL, err);
    if (status == ZF_OK && input->has_config)
        status = zf_db_exec (db, "UPDATE clusters SET client_config = ? WHERE id = ?",
                             ZF_DB_ARGS (ZF_DB_TEXT (input->client_config), ZF_DB_INT (id)), NULL,
                             NULL, err);
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
    zf_db_result_t *rows =
        zf_db_query (db, S_SELECT "WHERE id = ?", ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!rows)
        return NULL;
    json_t *cluster = NULL;
    if (zf_db_result_rows (rows) == 1)
        cluster = s_cluster_json (rows, 0);
    else
        zf_error_set (err, ZF_E_MISSING, "id", "no cluster %" PRId64, id);
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
