/*  zf_db_mariadb.c — the production backend: MariaDB through libmariadb's binary protocol.

    Every statement is a server-side prepared statement (mysql_stmt_*), cached per SQL text.
    Results are fetched as strings: the client library converts each column to the buffer type
    we bind, and the buffer is sized from the stored result's max_length, so values of any
    length arrive whole. Every network call has a timeout; a lost connection (server restarted)
    is reopened once per call and the statement prepared again. */
//  mysql.h's macros use strcpy, which zf_prelude.h poisons: include it first.
#define _GNU_SOURCE 1
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "zf_db.h"
#include "zf_log.h"
#include "zf_secret.h"

#define S_TIMEOUT_S 10 //  connect, read and write: a stalled server must not stall the manager

typedef struct {
    MYSQL *handle;
    char *host, *user, *password, *database, *socket;
    unsigned int port;
    zhashx_t *statements; //  SQL text -> MYSQL_STMT
} s_conn_t;

static void s_statement_destroy (void **item)
{
    mysql_stmt_close (*item);
    *item = NULL;
}

//  mariadb://USER@HOST[:PORT]/DB[?socket=PATH]
static bool s_parse_url (s_conn_t *conn, const char *url)
{
    const char *rest = url + strlen ("mariadb://");
    const char *at = strchr (rest, '@');
    const char *slash = at ? strchr (at, '/') : NULL;
    if (!at || !slash || at == rest || slash == at + 1 || !slash[1])
        return false;
    conn->user = zf_strndup (rest, (size_t) (at - rest));
    char *hostport = zf_strndup (at + 1, (size_t) (slash - at - 1));
    char *colon = strrchr (hostport, ':');
    if (colon) {
        char *end = NULL;
        long port = strtol (colon + 1, &end, 10);
        if (*end || port <= 0 || port > 65535) {
            zf_free (hostport);
            return false;
        }
        conn->port = (unsigned int) port;
        *colon = '\0';
    }
    conn->host = hostport;
    const char *query = strchr (slash, '?');
    conn->database =
        zf_strndup (slash + 1, query ? (size_t) (query - slash - 1) : strlen (slash + 1));
    if (query) {
        if (strncmp (query, "?socket=", 8) != 0 || !query[8])
            return false;
        conn->socket = zf_strdup (query + 8);
    }
    return *conn->database && *conn->host;
}

static void s_conn_free (s_conn_t *conn)
{
    zhashx_destroy (&conn->statements);
    if (conn->handle)
        mysql_close (conn->handle);
    zf_free (conn->host);
    zf_free (conn->user);
    zf_secret_free (conn->password);
    zf_free (conn->database);
    zf_free (conn->socket);
    zf_free (conn);
}

static zf_status_t s_connect (s_conn_t *conn, zf_error_t *err)
{
    zhashx_purge (conn->statements); //  statements die with their connection
    if (conn->handle)
        mysql_close (conn->handle);
    conn->handle = mysql_init (NULL);
    ZF_ASSERT (conn->handle);
    unsigned int timeout = S_TIMEOUT_S;
    mysql_optionsv (conn->handle, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_optionsv (conn->handle, MYSQL_OPT_READ_TIMEOUT, &timeout);
    mysql_optionsv (conn->handle, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
    mysql_optionsv (conn->handle, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect (conn->handle, conn->socket ? NULL : conn->host, conn->user,
                             conn->password, conn->database, conn->port, conn->socket, 0)) {
        zf_error_set (err, ZF_E_IO, "database", "mariadb: cannot connect to %s as %s: %s",
                      conn->socket ? conn->socket : conn->host, conn->user,
                      mysql_error (conn->handle));
        mysql_close (conn->handle);
        conn->handle = NULL;
        return ZF_E_IO;
    }
    //  Strict mode: a value too long for its column is an error, never silently cut.
    if (mysql_query (conn->handle, "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE'") != 0)
        return zf_error_set (err, ZF_E_IO, "database", "mariadb: %s", mysql_error (conn->handle));
    return ZF_OK;
}

static bool s_connection_lost (unsigned int code)
{
    return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == ER_CONNECTION_KILLED;
}

static zf_status_t s_stmt_fail (MYSQL_STMT *statement, zf_error_t *err)
{
    unsigned int code = mysql_stmt_errno (statement);
    if (code == ER_DUP_ENTRY)
        return zf_error_set (err, ZF_E_INVALID, "database", "already exists (%s)",
                             mysql_stmt_error (statement));
    return zf_error_set (err, ZF_E_IO, "database", "mariadb: %s (%u)", mysql_stmt_error (statement),
                         code);
}

static MYSQL_STMT *s_prepare (s_conn_t *conn, const char *sql, unsigned int *code, zf_error_t *err)
{
    MYSQL_STMT *statement = zhashx_lookup (conn->statements, sql);
    if (statement)
        return statement;
    statement = mysql_stmt_init (conn->handle);
    ZF_ASSERT (statement);
    if (mysql_stmt_prepare (statement, sql, strlen (sql)) != 0) {
        *code = mysql_stmt_errno (statement);
        s_stmt_fail (statement, err);
        mysql_stmt_close (statement);
        return NULL;
    }
    bool update_max_length = true;
    mysql_stmt_attr_set (statement, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max_length);
    zhashx_insert (conn->statements, sql, statement);
    return statement;
}

//  Fetches every row of an executed statement into a result.
static zf_status_t s_fetch (MYSQL_STMT *statement, zf_db_result_t **result, zf_error_t *err)
{
    MYSQL_RES *meta = mysql_stmt_result_metadata (statement);
    size_t columns = meta ? mysql_num_fields (meta) : 0;
    *result = zf_db_result_new (columns);
    if (!meta)
        return ZF_OK;
    if (mysql_stmt_store_result (statement) != 0) {
        mysql_free_result (meta);
        return s_stmt_fail (statement, err);
    }
    MYSQL_FIELD *fields = mysql_fetch_fields (meta);
    MYSQL_BIND *binds = zf_calloc (columns, sizeof *binds);
    unsigned long *lengths = zf_calloc (columns, sizeof *lengths);
    my_bool *nulls = zf_calloc (columns, sizeof *nulls);
    char **buffers = zf_calloc (columns, sizeof *buffers);
    for (size_t column = 0; column < columns; column++) {
        zf_db_result_set_name (*result, column, fields[column].name);
        //  max_length is the longest value in the stored result; numbers converted to text
        //  need up to 21 bytes whatever their stored width.
        size_t size = fields[column].max_length + 1;
        if (size < 32)
            size = 32;
        buffers[column] = zf_malloc (size);
        binds[column].buffer_type = MYSQL_TYPE_STRING;
        binds[column].buffer = buffers[column];
        binds[column].buffer_length = size;
        binds[column].length = &lengths[column];
        binds[column].is_null = &nulls[column];
    }
    zf_status_t status = ZF_OK;
    if (mysql_stmt_bind_result (statement, binds) != 0)
        status = s_stmt_fail (statement, err);
    int rc;
    while (status == ZF_OK && (rc = mysql_stmt_fetch (statement)) != MYSQL_NO_DATA) {
        if (rc == 1) {
            status = s_stmt_fail (statement, err);
            break;
        }
        ZF_ASSERT (rc != MYSQL_DATA_TRUNCATED); //  buffers were sized from max_length
        zf_db_result_add_row (*result);
        for (size_t column = 0; column < columns; column++)
            zf_db_result_set (*result, column, nulls[column] ? NULL : buffers[column],
                              lengths[column]);
    }
    for (size_t column = 0; column < columns; column++)
        zf_free (buffers[column]);
    zf_free (buffers);
    zf_free (nulls);
    zf_free (lengths);
    zf_free (binds);
    mysql_stmt_free_result (statement);
    mysql_free_result (meta);
    return status;
}

//  One attempt; *code gets the server's error number for the caller's retry decision.
static zf_status_t s_exec_once (s_conn_t *conn, const char *sql, const zf_db_arg_t *args,
                                size_t arg_count, zf_db_result_t **result, int64_t *changed,
                                int64_t *last_id, unsigned int *code, zf_error_t *err)
{
    *code = 0;
    MYSQL_STMT *statement = s_prepare (conn, sql, code, err);
    if (!statement)
        return err ? err->code : ZF_E_IO;
    ZF_ASSERT (mysql_stmt_param_count (statement) == arg_count);
    MYSQL_BIND *binds = zf_calloc (arg_count ? arg_count : 1, sizeof *binds);
    unsigned long *lengths = zf_calloc (arg_count ? arg_count : 1, sizeof *lengths);
    for (size_t index = 0; index < arg_count; index++) {
        MYSQL_BIND *bind = &binds[index];
        switch (args[index].kind) {
        case ZF_DB_ARG_NULL: bind->buffer_type = MYSQL_TYPE_NULL; break;
        case ZF_DB_ARG_INT:
            bind->buffer_type = MYSQL_TYPE_LONGLONG;
            bind->buffer = (void *) &args[index].integer;
            break;
        case ZF_DB_ARG_TEXT:
            bind->buffer_type = MYSQL_TYPE_STRING;
            bind->buffer = (void *) args[index].text;
            lengths[index] = (unsigned long) strlen (args[index].text);
            bind->buffer_length = lengths[index];
            bind->length = &lengths[index];
            break;
        }
    }
    zf_status_t status = ZF_OK;
    if ((arg_count && mysql_stmt_bind_param (statement, binds) != 0)
        || mysql_stmt_execute (statement) != 0) {
        *code = mysql_stmt_errno (statement);
        status = s_stmt_fail (statement, err);
    } else if (result)
        status = s_fetch (statement, result, err);
    else {
        if (changed)
            *changed = (int64_t) mysql_stmt_affected_rows (statement);
        if (last_id)
            *last_id = (int64_t) mysql_stmt_insert_id (statement);
    }
    zf_free (lengths);
    zf_free (binds);
    if (status != ZF_OK && result)
        zf_db_result_destroy (result);
    return status;
}

static zf_status_t s_exec (void *conn_arg, const char *sql, const zf_db_arg_t *args,
                           size_t arg_count, zf_db_result_t **result, int64_t *changed,
                           int64_t *last_id, zf_error_t *err)
{
    s_conn_t *conn = conn_arg;
    unsigned int code = 0;
    zf_status_t status = ZF_E_IO;
    if (conn->handle)
        status = s_exec_once (conn, sql, args, arg_count, result, changed, last_id, &code, err);
    if (!conn->handle || (status != ZF_OK && s_connection_lost (code))) {
        //  The server restarted or dropped us: one new connection, one more try.
        static zf_ratelimit_t limit = ZF_RATELIMIT_INIT (5, 60000);
        zf_warning_limited (&limit, "manager", "db: mariadb connection lost; reconnecting");
        if (s_connect (conn, err) == ZF_OK)
            status = s_exec_once (conn, sql, args, arg_count, result, changed, last_id, &code, err);
    }
    return status;
}

static void s_close (void *conn_arg)
{
    s_conn_free (conn_arg);
}

static const zf_db_backend_t s_backend = {.exec = s_exec, .close = s_close};

//  The password file's first line, without its newline.
static char *s_read_password (const char *path, zf_error_t *err)
{
    char *password = zf_secret_read_line (path, "\r\n");
    if (!password)
        zf_error_set (err, ZF_E_IO, "database", "cannot read the password file %s: %s", path,
                      strerror (errno));
    return password;
}

void *zf_db_mariadb_open (const char *url, const char *password_file,
                          const zf_db_backend_t **backend, zf_error_t *err)
{
    s_conn_t *conn = zf_calloc (1, sizeof *conn);
    conn->statements = zhashx_new ();
    zhashx_set_destructor (conn->statements, s_statement_destroy);
    if (!s_parse_url (conn, url)) {
        zf_error_set (err, ZF_E_CONFIG, "database",
                      "database '%s': expected mariadb://USER@HOST[:PORT]/DB[?socket=PATH]", url);
        s_conn_free (conn);
        return NULL;
    }
    if (password_file && *password_file) {
        conn->password = s_read_password (password_file, err);
        if (!conn->password) {
            s_conn_free (conn);
            return NULL;
        }
    }
    if (s_connect (conn, err) != ZF_OK) {
        s_conn_free (conn);
        return NULL;
    }
    *backend = &s_backend;
    return conn;
}
