/*  zf_db_sqlite.c — the embedded backend: SQLite with a statement cache.

    WAL journal (readers never wait for the writer), foreign keys on, and a busy timeout so a
    second connection (`zfly manager init` while the daemon runs) waits instead of failing.
    Statements are prepared with SQLITE_PREPARE_PERSISTENT and kept per SQL text. */
#include "zf_db.h"
#include <sqlite3.h>

#define S_BUSY_TIMEOUT_MS 5000

typedef struct {
    sqlite3 *handle;
    zhashx_t *statements; //  SQL text -> sqlite3_stmt
} s_conn_t;

static void s_statement_destroy (void **item)
{
    sqlite3_finalize (*item);
    *item = NULL;
}

static zf_status_t s_fail (s_conn_t *conn, int rc, const char *sql, zf_error_t *err)
{
    int extended = sqlite3_extended_errcode (conn->handle);
    if (extended == SQLITE_CONSTRAINT_UNIQUE || extended == SQLITE_CONSTRAINT_PRIMARYKEY)
        return zf_error_set (err, ZF_E_INVALID, "database", "already exists (%s)",
                             sqlite3_errmsg (conn->handle));
    (void) sql;
    return zf_error_set (err, ZF_E_IO, "database", "sqlite: %s (%s)", sqlite3_errmsg (conn->handle),
                         sqlite3_errstr (rc));
}

static sqlite3_stmt *s_prepare (s_conn_t *conn, const char *sql, zf_error_t *err)
{
    sqlite3_stmt *statement = zhashx_lookup (conn->statements, sql);
    if (statement)
        return statement;
    int rc =
        sqlite3_prepare_v3 (conn->handle, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, NULL);
    if (rc != SQLITE_OK) {
        s_fail (conn, rc, sql, err);
        return NULL;
    }
    zhashx_insert (conn->statements, sql, statement);
    return statement;
}

static zf_status_t s_exec (void *conn_arg, const char *sql, const zf_db_arg_t *args,
                           size_t arg_count, zf_db_result_t **result, int64_t *changed,
                           int64_t *last_id, zf_error_t *err)
{
    s_conn_t *conn = conn_arg;
    sqlite3_stmt *statement = s_prepare (conn, sql, err);
    if (!statement)
        return err ? err->code : ZF_E_IO;
    ZF_ASSERT ((size_t) sqlite3_bind_parameter_count (statement) == arg_count);
    for (size_t index = 0; index < arg_count; index++) {
        int position = (int) index + 1;
        switch (args[index].kind) {
        case ZF_DB_ARG_NULL: sqlite3_bind_null (statement, position); break;
        case ZF_DB_ARG_INT: sqlite3_bind_int64 (statement, position, args[index].integer); break;
        case ZF_DB_ARG_TEXT:
            sqlite3_bind_text (statement, position, args[index].text, -1, SQLITE_STATIC);
            break;
        }
    }
    size_t columns = (size_t) sqlite3_column_count (statement);
    if (result) {
        *result = zf_db_result_new (columns);
        for (size_t column = 0; column < columns; column++)
            zf_db_result_set_name (*result, column, sqlite3_column_name (statement, (int) column));
    }
    int rc;
    while ((rc = sqlite3_step (statement)) == SQLITE_ROW) {
        if (!result)
            continue;
        zf_db_result_add_row (*result);
        for (size_t column = 0; column < columns; column++) {
            const unsigned char *text = sqlite3_column_text (statement, (int) column);
            size_t len = (size_t) sqlite3_column_bytes (statement, (int) column);
            zf_db_result_set (*result, column, (const char *) text, len);
        }
    }
    zf_status_t status = ZF_OK;
    if (rc != SQLITE_DONE)
        status = s_fail (conn, rc, sql, err);
    else {
        if (changed)
            *changed = sqlite3_changes64 (conn->handle);
        if (last_id)
            *last_id = sqlite3_last_insert_rowid (conn->handle);
    }
    sqlite3_reset (statement);
    sqlite3_clear_bindings (statement);
    return status;
}

static void s_close (void *conn_arg)
{
    s_conn_t *conn = conn_arg;
    zhashx_destroy (&conn->statements); //  finalizes every statement before the close
    sqlite3_close (conn->handle);
    zf_free (conn);
}

static const zf_db_backend_t s_backend = {.exec = s_exec, .close = s_close};

void *zf_db_sqlite_open (const char *path, const zf_db_backend_t **backend, zf_error_t *err)
{
    if (!*path) {
        zf_error_set (err, ZF_E_CONFIG, "database", "sqlite: needs a path (sqlite:PATH)");
        return NULL;
    }
    s_conn_t *conn = zf_calloc (1, sizeof *conn);
    int rc =
        sqlite3_open_v2 (path, &conn->handle,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        zf_error_set (err, ZF_E_IO, "database", "sqlite: cannot open %s: %s", path,
                      conn->handle ? sqlite3_errmsg (conn->handle) : sqlite3_errstr (rc));
        sqlite3_close (conn->handle);
        zf_free (conn);
        return NULL;
    }
    conn->statements = zhashx_new ();
    zhashx_set_destructor (conn->statements, s_statement_destroy);
    sqlite3_busy_timeout (conn->handle, S_BUSY_TIMEOUT_MS);
    //  WAL: readers do not block the writer; NORMAL sync is durable across process crashes
    //  (the manager's writes are small and frequent: keep-alives, joins).
    const char *setup[] = {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                           "PRAGMA foreign_keys=ON"};
    for (size_t index = 0; index < ZF_ARRAY_LEN (setup); index++) {
        char *message = NULL;
        rc = sqlite3_exec (conn->handle, setup[index], NULL, NULL, &message);
        if (rc != SQLITE_OK) {
            zf_error_set (err, ZF_E_IO, "database", "sqlite: %s: %s", path,
                          message ? message : sqlite3_errstr (rc));
            sqlite3_free (message);
            s_close (conn);
            return NULL;
        }
    }
    *backend = &s_backend;
    return conn;
}
