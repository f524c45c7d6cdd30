/*  zf_db.h — the manager's database: one interface, two backends.

    SQLite (the embedded default: all-in-one and tests, zero setup) and MariaDB through
    libmariadb (production). Both speak the same SQL with `?` placeholders, and every query
    that carries a caller's value is a prepared statement: values travel as bound parameters,
    never inside the SQL text. Statements are prepared once per connection and cached by their
    text, so a hot query costs no parse.

    One zf_db_t is one connection, owned by one thread (STYLE: one owner per third-party
    handle). Results are materialised: a query returns every row as text (NULL stays NULL),
    which suits the manager's bounded, paginated queries and keeps both backends identical.

    URLs:
        sqlite:PATH                            a file, created if missing (WAL journal)
        sqlite::memory:                        a private in-memory database (tests)
        mariadb://USER@HOST:PORT/DB            TCP
        mariadb://USER@localhost/DB?socket=PATH  a Unix socket
    A MariaDB password is never in the URL (URLs end up in logs): it comes from the
    `password_file` given to zf_db_open, or none.

    The schema is versioned (zf_db_migrate): migrations are numbered lists of statements in
    a portable subset, applied in order at start, each recorded in schema_migrations. DDL
    differs between the engines in two places only, written as tokens the backend expands:
        {{ID}}     an auto-increment 64-bit primary key
        {{TABLE}}  table options (MariaDB: InnoDB, utf8mb4; SQLite: nothing)
    Other type names are chosen to mean the same on both: VARCHAR(N) for indexed text,
    BIGINT for integers and times (milliseconds since the epoch), MEDIUMTEXT for JSON and
    other long text (MariaDB's TEXT stops at 64 KiB, and strict mode refuses longer values
    instead of cutting them). */
#ifndef ZF_DB_H_INCLUDED
#define ZF_DB_H_INCLUDED

#include "zf_error.h"

typedef struct zf_db_s zf_db_t;
typedef struct zf_db_result_s zf_db_result_t;

typedef enum {
    ZF_DB_SQLITE,
    ZF_DB_MARIADB,
} zf_db_kind_t;

//  A bound parameter: an integer, a text, or NULL.
typedef enum { ZF_DB_ARG_NULL, ZF_DB_ARG_INT, ZF_DB_ARG_TEXT } zf_db_arg_kind_t;
typedef struct {
    zf_db_arg_kind_t kind;
    int64_t integer;
    const char *text;
} zf_db_arg_t;

static inline zf_db_arg_t zf_db_text_arg (const char *text)
{
    return (zf_db_arg_t){.kind = text ? ZF_DB_ARG_TEXT : ZF_DB_ARG_NULL, .text = text};
}
#define ZF_DB_INT(value)  ((zf_db_arg_t){.kind = ZF_DB_ARG_INT, .integer = (int64_t) (value)})
#define ZF_DB_TEXT(value) zf_db_text_arg (value) //  NULL becomes SQL NULL
#define ZF_DB_NULL        ((zf_db_arg_t){.kind = ZF_DB_ARG_NULL})
//  Argument lists: zf_db_exec (db, sql, ZF_DB_ARGS (ZF_DB_INT (1), ZF_DB_TEXT (name)), &err).
#define ZF_DB_ARGS(...)                                                                            \
    (const zf_db_arg_t[]){__VA_ARGS__},                                                            \
        sizeof ((const zf_db_arg_t[]){__VA_ARGS__}) / sizeof (zf_db_arg_t)
#define ZF_DB_NO_ARGS NULL, 0

//  Opens a connection. password_file may be NULL. Errors: ZF_E_CONFIG for a malformed URL,
//  ZF_E_IO when the database cannot be opened or reached (the backend's words in message).
zf_db_t *zf_db_open (const char *url, const char *password_file, zf_error_t *err);
void zf_db_close (zf_db_t **self_p);

zf_db_kind_t zf_db_kind (zf_db_t *self);
//  "sqlite" or "mariadb", for logs and metrics labels.
const char *zf_db_kind_name (zf_db_t *self);

//  Runs a statement that returns no rows. *changed (may be NULL) gets the rows affected,
//  *last_id (may be NULL) the id an INSERT created. A unique-key violation is ZF_E_INVALID
//  with "already exists" in the message, so callers can answer 409 without parsing the
//  backend's text; other failures are ZF_E_IO.
zf_status_t zf_db_exec (zf_db_t *self, const char *sql, const zf_db_arg_t *args, size_t arg_count,
                        int64_t *changed, int64_t *last_id, zf_error_t *err);

//  Runs a query; returns its rows, or NULL with err filled.
zf_db_result_t *zf_db_query (zf_db_t *self, const char *sql, const zf_db_arg_t *args,
                             size_t arg_count, zf_error_t *err);

//  Transactions (BEGIN / COMMIT / ROLLBACK). Nested calls are a programming error.
zf_status_t zf_db_begin (zf_db_t *self, zf_error_t *err);
zf_status_t zf_db_commit (zf_db_t *self, zf_error_t *err);
void zf_db_rollback (zf_db_t *self);

//  Applies the migrations newer than the recorded version, in order. A database whose
//  recorded version is newer than this build knows is refused (ZF_E_VERSION): an older
//  manager must not write into a schema it does not understand.
typedef struct {
    int version;
    const char *what;              //  one line for the log
    const char *const *statements; //  NULL-terminated
} zf_db_migration_t;
zf_status_t zf_db_migrate (zf_db_t *self, const zf_db_migration_t *migrations, size_t count,
                           zf_error_t *err);
//  The recorded schema version (0 for an empty database), or -1 on error.
int zf_db_schema_version (zf_db_t *self, zf_error_t *err);

//  Results
size_t zf_db_result_rows (const zf_db_result_t *result);
size_t zf_db_result_columns (const zf_db_result_t *result);
//  The column's name, as the query named it.
const char *zf_db_result_name (const zf_db_result_t *result, size_t column);
//  A value as text; NULL for SQL NULL. Valid until the result is destroyed.
const char *zf_db_result_text (const zf_db_result_t *result, size_t row, size_t column);
//  A value as an integer; fallback for NULL or a value that is not one.
int64_t zf_db_result_int (const zf_db_result_t *result, size_t row, size_t column,
                          int64_t fallback);
//  The column index of a name, or -1.
int zf_db_result_column (const zf_db_result_t *result, const char *name);
void zf_db_result_destroy (zf_db_result_t **self_p);

void zf_db_test (bool verbose);

//  ---------------------------------------------------------------------------------------------
//  For the backends only (zf_db_sqlite.c, zf_db_mariadb.c).

typedef struct {
    zf_status_t (*exec) (void *conn, const char *sql, const zf_db_arg_t *args, size_t arg_count,
                         zf_db_result_t **result, int64_t *changed, int64_t *last_id,
                         zf_error_t *err);
    void (*close) (void *conn);
} zf_db_backend_t;

void *zf_db_sqlite_open (const char *path, const zf_db_backend_t **backend, zf_error_t *err);
void *zf_db_mariadb_open (const char *url, const char *password_file,
                          const zf_db_backend_t **backend, zf_error_t *err);

//  Result building, for backends.
zf_db_result_t *zf_db_result_new (size_t columns);
void zf_db_result_set_name (zf_db_result_t *self, size_t column, const char *name);
//  Starts a row; then set each column (text may be NULL; len bytes, not NUL-terminated).
void zf_db_result_add_row (zf_db_result_t *self);
void zf_db_result_set (zf_db_result_t *self, size_t column, const char *text, size_t len);

#endif
