/*  zf_credentials.c — join tokens, users and personal access tokens; rows as JSON. */
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_manager_store.h"
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <time.h>

//  A token's last use is written at most this often: a busy API client must not turn every
//  read into a write.
#define S_LAST_USED_GRANULARITY_MS 60000

void zf_token_new (const char *prefix, char *token)
{
    ZF_ASSERT (strlen (prefix) == 4);
    uint8_t random[24];
    ZF_ASSERT (RAND_bytes (random, sizeof random) == 1);
    memcpy (token, prefix, 4);
    for (size_t index = 0; index < sizeof random; index++)
        snprintf (token + 4 + 2 * index, 3, "%02x", random[index]);
    OPENSSL_cleanse (random, sizeof random);
}

void zf_token_hash (const char *token, char *hex)
{
    uint8_t digest[32];
    unsigned int size = 0;
    ZF_ASSERT (EVP_Digest (token, strlen (token), digest, &size, EVP_sha256 (), NULL) == 1);
    for (size_t index = 0; index < sizeof digest; index++)
        snprintf (hex + 2 * index, 3, "%02x", digest[index]);
}

//  A new token of a kind ("zfp_", "zfj_") with what the database keeps of it: its hash, and
//  its prefix (the 8 characters after the kind's, shown in lists to tell tokens apart).
static void s_token_mint (const char *kind, char *token, char hash[65], char prefix[16])
{
    zf_token_new (kind, token);
    zf_token_hash (token, hash);
    zf_strlcpy (prefix, token, 13);
}

void zf_time_rfc3339 (int64_t ms, char *text, size_t size)
{
    if (ms <= 0) {
        *text = '\0';
        return;
    }
    time_t seconds = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&seconds, &tm);
    strftime (text, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *zf_db_row_json (const zf_db_result_t *result, size_t row, const zf_col_t *columns,
                        size_t column_count)
{
    json_t *object = json_object ();
    for (size_t index = 0; index < column_count; index++) {
        const zf_col_t *column = &columns[index];
        int position = zf_db_result_column (result, column->column);
        ZF_ASSERT (position >= 0); //  the column table and the SELECT agree
        const char *text = zf_db_result_text (result, row, (size_t) position);
        const char *key = column->key ? column->key : column->column;
        json_t *value = NULL;
        if (!text)
            value = json_null ();
        else
            switch (column->kind) {
            case ZF_COL_TEXT: value = json_string (text); break;
            case ZF_COL_INT:
                value = json_integer (zf_db_result_int (result, row, (size_t) position, 0));
                break;
            case ZF_COL_BOOL:
                value = json_boolean (zf_db_result_int (result, row, (size_t) position, 0) != 0);
                break;
            case ZF_COL_JSON: value = json_loads (text, JSON_DECODE_ANY, NULL); break;
            case ZF_COL_TIME: {
                char stamp[32];
                zf_time_rfc3339 (zf_db_result_int (result, row, (size_t) position, 0), stamp,
                                 sizeof stamp);
                value = *stamp ? json_string (stamp) : json_null ();
                break;
            }
            }
        json_object_set_new (object, key, value ? value : json_null ());
    }
    return object;
}

//  One page of rows, each as JSON; filter values are bound, never spliced.
json_t *zf_db_page_json (zf_db_t *db, const char *count_sql, const char *rows_sql,
                         const zf_db_arg_t *filters, size_t filter_count, const zf_col_t *columns,
                         size_t column_count, int64_t page, int64_t per_page, int64_t *total,
                         zf_error_t *err)
{
    zf_db_result_t *count = zf_db_query (db, count_sql, filters, filter_count, err);
    if (!count)
        return NULL;
    *total = zf_db_result_int (count, 0, 0, 0);
    zf_db_result_destroy (&count);
    zf_db_arg_t args[8];
    ZF_ASSERT (filter_count + 2 <= ZF_ARRAY_LEN (args));
    if (filter_count)
        memcpy (args, filters, filter_count * sizeof *args);
    args[filter_count] = ZF_DB_INT (per_page);
    args[filter_count + 1] = ZF_DB_INT ((page - 1) * per_page);
    zf_db_result_t *rows = zf_db_query (db, rows_sql, args, filter_count + 2, err);
    if (!rows)
        return NULL;
    json_t *items = json_array ();
    for (size_t row = 0; row < zf_db_result_rows (rows); row++)
        json_array_append_new (items, zf_db_row_json (rows, row, columns, column_count));
    zf_db_result_destroy (&rows);
    return items;
}

zf_db_result_t *zf_db_query_id (zf_db_t *db, const char *sql, int64_t id, const char *what,
                                zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query (db, sql, ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (rows && zf_db_result_rows (rows) != 1) {
        zf_db_result_destroy (&rows);
        zf_error_set (err, ZF_E_MISSING, "id", "no %s %" PRId64, what, id);
    }
    return rows;
}

json_t *zf_db_id_json (zf_db_t *db, const char *sql, int64_t id, const char *what,
                       const zf_col_t *columns, size_t column_count, zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query_id (db, sql, id, what, err);
    json_t *object = rows ? zf_db_row_json (rows, 0, columns, column_count) : NULL;
    zf_db_result_destroy (&rows);
    return object;
}

//  ---------------------------------------------------------------------------------------------
//  Users and personal access tokens

zf_status_t zf_users_create (zf_db_t *db, const char *name, zf_role_t role, int64_t *id,
                             zf_error_t *err)
{
    int64_t now = zf_clock_wall_ms ();
    return zf_db_exec (
        db, "INSERT INTO users (name, role, created_at, updated_at) VALUES (?, ?, ?, ?)",
        ZF_DB_ARGS (ZF_DB_TEXT (name), ZF_DB_TEXT (role == ZF_ROLE_ADMIN ? "admin" : "read-only"),
                    ZF_DB_INT (now), ZF_DB_INT (now)),
        NULL, id, err);
}

zf_status_t zf_pats_create (zf_db_t *db, int64_t user_id, const char *name, bool write,
                            int64_t expires_at, char *token, int64_t *id, zf_error_t *err)
{
    char hash[65], prefix[16];
    s_token_mint ("zfp_", token, hash, prefix);
    return zf_db_exec (db,
                       "INSERT INTO personal_access_tokens (user_id, name, token_hash, "
                       "token_prefix, scopes, state, expires_at, created_at) "
                       "VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
                       ZF_DB_ARGS (ZF_DB_INT (user_id), ZF_DB_TEXT (name), ZF_DB_TEXT (hash),
                                   ZF_DB_TEXT (prefix), ZF_DB_TEXT (write ? "read,write" : "read"),
                                   expires_at > 0 ? ZF_DB_INT (expires_at) : ZF_DB_NULL,
                                   ZF_DB_INT (zf_clock_wall_ms ())),
                       NULL, id, err);
}

zf_rest_access_t zf_pats_check (zf_db_t *db, const char *token, int64_t now, char *principal,
                                size_t size)
{
    if (strncmp (token, "zfp_", 4) != 0 || strlen (token) != ZF_TOKEN_SIZE - 1)
        return ZF_REST_NONE;
    char hash[65];
    zf_token_hash (token, hash);
    zf_error_t err;
    zf_db_result_t *rows =
        zf_db_query (db,
                     "SELECT t.id, t.scopes, t.expires_at, t.last_used_at, u.name, u.role "
                     "FROM personal_access_tokens t JOIN users u ON u.id = t.user_id "
                     "WHERE t.token_hash = ? AND t.state = 'active'",
                     ZF_DB_ARGS (ZF_DB_TEXT (hash)), &err);
    if (!rows) {
        zf_warning ("manager", "api: token check failed: %s", err.message);
        return ZF_REST_NONE;
    }
    zf_rest_access_t access = ZF_REST_NONE;
    if (zf_db_result_rows (rows) == 1) {
        int64_t expires_at = zf_db_result_int (rows, 0, 2, 0);
        int64_t last_used = zf_db_result_int (rows, 0, 3, 0);
        if (expires_at == 0 || expires_at > now) {
            bool write = strstr (zf_db_result_text (rows, 0, 1), "write") != NULL;
            bool admin = streq (zf_db_result_text (rows, 0, 5), "admin");
            access = write && admin ? ZF_REST_WRITE : ZF_REST_READ;
            zf_strlcpy (principal, zf_db_result_text (rows, 0, 4), size);
            if (now - last_used > S_LAST_USED_GRANULARITY_MS)
                zf_db_exec (
                    db, "UPDATE personal_access_tokens SET last_used_at = ? WHERE id = ?",
                    ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (zf_db_result_int (rows, 0, 0, 0))),
                    NULL, NULL, NULL);
        }
    }
    zf_db_result_destroy (&rows);
    return access;
}

zf_status_t zf_credentials_init_admin (zf_db_t *db, char *token, zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query (db, "SELECT id, role FROM users WHERE name = ?",
                                        ZF_DB_ARGS (ZF_DB_TEXT ("admin")), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    int64_t user_id = zf_db_result_int (rows, 0, 0, 0);
    bool admin = zf_db_result_rows (rows) && streq (zf_db_result_text (rows, 0, 1), "admin");
    zf_db_result_destroy (&rows);
    zf_status_t status = ZF_OK;
    if (!user_id)
        status = zf_users_create (db, "admin", ZF_ROLE_ADMIN, &user_id, err);
    else if (!admin)
        return zf_error_set (err, ZF_E_INVALID, "users",
                             "user 'admin' exists but is not an administrator");
    if (status == ZF_OK)
        status =
            zf_pats_create (db, user_id, "made by zfly manager init", true, 0, token, NULL, err);
    return status;
}

//  ---------------------------------------------------------------------------------------------
//  Join tokens

zf_status_t zf_join_tokens_create (zf_db_t *db, const char *name, int64_t cluster_id,
                                   int64_t expires_at, int64_t max_uses, const char *created_by,
                                   char *token, int64_t *id, zf_error_t *err)
{
    char hash[65], prefix[16];
    s_token_mint ("zfj_", token, hash, prefix);
    return zf_db_exec (db,
                       "INSERT INTO join_tokens (name, token_hash, token_prefix, cluster_id, "
                       "expires_at, max_uses, use_count, state, created_by, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, 0, 'active', ?, ?)",
                       ZF_DB_ARGS (ZF_DB_TEXT (name), ZF_DB_TEXT (hash), ZF_DB_TEXT (prefix),
                                   cluster_id > 0 ? ZF_DB_INT (cluster_id) : ZF_DB_NULL,
                                   expires_at > 0 ? ZF_DB_INT (expires_at) : ZF_DB_NULL,
                                   max_uses > 0 ? ZF_DB_INT (max_uses) : ZF_DB_NULL,
                                   ZF_DB_TEXT (created_by), ZF_DB_INT (zf_clock_wall_ms ())),
                       NULL, id, err);
}

const char *zf_join_token_verdict_text (zf_join_token_verdict_t verdict)
{
    switch (verdict) {
    case ZF_JOIN_TOKEN_OK: return "ok";
    case ZF_JOIN_TOKEN_UNKNOWN: return "unknown token";
    case ZF_JOIN_TOKEN_EXPIRED: return "token expired";
    case ZF_JOIN_TOKEN_USED_UP: return "token used up (max_uses reached)";
    case ZF_JOIN_TOKEN_REVOKED: return "token revoked";
    }
    return "?";
}

zf_status_t zf_join_tokens_consume (zf_db_t *db, const char *token, int64_t now,
                                    zf_join_token_verdict_t *verdict, int64_t *token_id,
                                    int64_t *cluster_id, zf_error_t *err)
{
    *verdict = ZF_JOIN_TOKEN_UNKNOWN;
    *token_id = *cluster_id = 0;
    if (strncmp (token, "zfj_", 4) != 0 || strlen (token) != ZF_TOKEN_SIZE - 1)
        return ZF_OK;
    char hash[65];
    zf_token_hash (token, hash);
    zf_db_result_t *rows = zf_db_query (
        db,
        "SELECT id, cluster_id, expires_at, max_uses, use_count, state FROM join_tokens "
        "WHERE token_hash = ?",
        ZF_DB_ARGS (ZF_DB_TEXT (hash)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    if (zf_db_result_rows (rows) == 1) {
        int64_t expires_at = zf_db_result_int (rows, 0, 2, 0);
        int64_t max_uses = zf_db_result_int (rows, 0, 3, 0);
        if (!streq (zf_db_result_text (rows, 0, 5), "active"))
            *verdict = ZF_JOIN_TOKEN_REVOKED;
        else if (expires_at && expires_at <= now)
            *verdict = ZF_JOIN_TOKEN_EXPIRED;
        else if (max_uses && zf_db_result_int (rows, 0, 4, 0) >= max_uses)
            *verdict = ZF_JOIN_TOKEN_USED_UP;
        else {
            *verdict = ZF_JOIN_TOKEN_OK;
            *token_id = zf_db_result_int (rows, 0, 0, 0);
            *cluster_id = zf_db_result_int (rows, 0, 1, 0);
        }
    }
    zf_db_result_destroy (&rows);
    if (*verdict != ZF_JOIN_TOKEN_OK)
        return ZF_OK;
    //  The use is counted only while uses remain, so two joins racing for the last use of a
    //  token cannot both get it.
    int64_t changed = 0;
    zf_status_t status =
        zf_db_exec (db,
                    "UPDATE join_tokens SET use_count = use_count + 1, last_used_at = ? "
                    "WHERE id = ? AND (max_uses IS NULL OR use_count < max_uses)",
                    ZF_DB_ARGS (ZF_DB_INT (now), ZF_DB_INT (*token_id)), &changed, NULL, err);
    if (status == ZF_OK && changed == 0)
        *verdict = ZF_JOIN_TOKEN_USED_UP;
    return status;
}

//  ---------------------------------------------------------------------------------------------
//  Lists and revocations

static const zf_col_t s_join_token_columns[] = {
    {"id", NULL, ZF_COL_INT},
    {"name", NULL, ZF_COL_TEXT},
    {"token_prefix", "prefix", ZF_COL_TEXT},
    {"cluster_id", NULL, ZF_COL_INT},
    {"expires_at", NULL, ZF_COL_TIME},
    {"max_uses", NULL, ZF_COL_INT},
    {"use_count", NULL, ZF_COL_INT},
    {"state", NULL, ZF_COL_TEXT},
    {"created_by", NULL, ZF_COL_TEXT},
    {"created_at", NULL, ZF_COL_TIME},
    {"last_used_at", NULL, ZF_COL_TIME},
};

json_t *zf_join_tokens_list (zf_db_t *db, int64_t page, int64_t per_page, int64_t *total,
                             zf_error_t *err)
{
    return zf_db_page_json (db, "SELECT COUNT(*) FROM join_tokens",
                            "SELECT id, name, token_prefix, cluster_id, expires_at, max_uses, "
                            "use_count, state, created_by, created_at, last_used_at FROM "
                            "join_tokens ORDER BY id LIMIT ? OFFSET ?",
                            NULL, 0, s_join_token_columns, ZF_ARRAY_LEN (s_join_token_columns),
                            page, per_page, total, err);
}

//  Runs an UPDATE/DELETE of one row by id; ZF_E_MISSING when it matched none.
static zf_status_t s_by_id (zf_db_t *db, const char *sql, int64_t id, const char *what,
                            zf_error_t *err)
{
    int64_t changed = 0;
    zf_status_t status = zf_db_exec (db, sql, ZF_DB_ARGS (ZF_DB_INT (id)), &changed, NULL, err);
    if (status == ZF_OK && changed == 0)
        return zf_error_set (err, ZF_E_MISSING, "id", "no %s %" PRId64, what, id);
    return status;
}

//  Revokes the row id when select (by id) finds it, with update (by id); ZF_E_MISSING when it
//  does not. MariaDB counts only rows it changed: the UPDATE alone would take a second
//  revocation for "no such".
static zf_status_t s_revoke (zf_db_t *db, const char *select, const char *update, int64_t id,
                             const char *what, zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query (db, select, ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    size_t found = zf_db_result_rows (rows);
    zf_db_result_destroy (&rows);
    if (!found)
        return zf_error_set (err, ZF_E_MISSING, "id", "no %s %" PRId64, what, id);
    return zf_db_exec (db, update, ZF_DB_ARGS (ZF_DB_INT (id)), NULL, NULL, err);
}

zf_status_t zf_join_tokens_revoke (zf_db_t *db, int64_t id, zf_error_t *err)
{
    return s_revoke (db, "SELECT state FROM join_tokens WHERE id = ?",
                     "UPDATE join_tokens SET state = 'revoked' WHERE id = ?", id, "join token",
                     err);
}

static const zf_col_t s_user_columns[] = {
    {"id", NULL, ZF_COL_INT},          {"name", NULL, ZF_COL_TEXT},
    {"role", NULL, ZF_COL_TEXT},       {"created_at", NULL, ZF_COL_TIME},
    {"updated_at", NULL, ZF_COL_TIME},
};

json_t *zf_users_list (zf_db_t *db, int64_t page, int64_t per_page, int64_t *total, zf_error_t *err)
{
    return zf_db_page_json (db, "SELECT COUNT(*) FROM users",
                            "SELECT id, name, role, created_at, updated_at FROM users ORDER BY id "
                            "LIMIT ? OFFSET ?",
                            NULL, 0, s_user_columns, ZF_ARRAY_LEN (s_user_columns), page, per_page,
                            total, err);
}

json_t *zf_users_get (zf_db_t *db, int64_t id, zf_error_t *err)
{
    return zf_db_id_json (db,
                          "SELECT id, name, role, created_at, updated_at FROM users WHERE id = ?",
                          id, "user", s_user_columns, ZF_ARRAY_LEN (s_user_columns), err);
}

int64_t zf_users_id (zf_db_t *db, const char *name)
{
    zf_db_result_t *rows = zf_db_query (db, "SELECT id FROM users WHERE name = ?",
                                        ZF_DB_ARGS (ZF_DB_TEXT (name)), NULL);
    int64_t id = rows ? zf_db_result_int (rows, 0, 0, 0) : 0;
    zf_db_result_destroy (&rows);
    return id;
}

zf_status_t zf_users_delete (zf_db_t *db, int64_t id, zf_error_t *err)
{
    zf_db_result_t *rows = zf_db_query (
        db,
        "SELECT role, (SELECT COUNT(*) FROM users WHERE role = 'admin') FROM users WHERE id = ?",
        ZF_DB_ARGS (ZF_DB_INT (id)), err);
    if (!rows)
        return err ? err->code : ZF_E_IO;
    bool found = zf_db_result_rows (rows) == 1;
    bool last_admin = found && streq (zf_db_result_text (rows, 0, 0), "admin")
                      && zf_db_result_int (rows, 0, 1, 0) <= 1;
    zf_db_result_destroy (&rows);
    if (!found)
        return zf_error_set (err, ZF_E_MISSING, "id", "no user %" PRId64, id);
    if (last_admin)
        return zf_error_set (err, ZF_E_INVALID, "id", "user %" PRId64 " is the last administrator",
                             id);
    zf_status_t status = zf_db_exec (db, "DELETE FROM personal_access_tokens WHERE user_id = ?",
                                     ZF_DB_ARGS (ZF_DB_INT (id)), NULL, NULL, err);
    if (status == ZF_OK)
        status = s_by_id (db, "DELETE FROM users WHERE id = ?", id, "user", err);
    return status;
}

static const zf_col_t s_pat_columns[] = {
    {"id", NULL, ZF_COL_INT},
    {"user_id", NULL, ZF_COL_INT},
    {"name", NULL, ZF_COL_TEXT},
    {"token_prefix", "prefix", ZF_COL_TEXT},
    {"scopes", NULL, ZF_COL_TEXT},
    {"state", NULL, ZF_COL_TEXT},
    {"expires_at", NULL, ZF_COL_TIME},
    {"created_at", NULL, ZF_COL_TIME},
    {"last_used_at", NULL, ZF_COL_TIME},
};

json_t *zf_pats_list (zf_db_t *db, int64_t user_id, int64_t page, int64_t per_page, int64_t *total,
                      zf_error_t *err)
{
    zf_db_arg_t filters[] = {ZF_DB_INT (user_id), ZF_DB_INT (user_id)};
    return zf_db_page_json (db,
                            "SELECT COUNT(*) FROM personal_access_tokens WHERE (? = 0 OR "
                            "user_id = ?)",
                            "SELECT id, user_id, name, token_prefix, scopes, state, expires_at, "
                            "created_at, last_used_at FROM personal_access_tokens WHERE (? = 0 "
                            "OR user_id = ?) ORDER BY id LIMIT ? OFFSET ?",
                            filters, ZF_ARRAY_LEN (filters), s_pat_columns,
                            ZF_ARRAY_LEN (s_pat_columns), page, per_page, total, err);
}

zf_status_t zf_pats_revoke (zf_db_t *db, int64_t id, zf_error_t *err)
{
    return s_revoke (db, "SELECT id FROM personal_access_tokens WHERE id = ?",
                     "UPDATE personal_access_tokens SET state = 'revoked' WHERE id = ?", id,
                     "personal access token", err);
}
