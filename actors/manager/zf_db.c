/*  zf_db.c — the backend-neutral half of the manager's database: URLs, results, migrations,
    transactions. The engines live in zf_db_sqlite.c and zf_db_mariadb.c. */
#include "zf_db.h"
#include "zf_clock.h"
#include "zf_log.h"
#include <errno.h>
#include <unistd.h>

struct zf_db_s {
    zf_db_kind_t kind;
    const zf_db_backend_t *backend;
    void *conn;
    bool in_transaction;
};

struct zf_db_result_s {
    size_t columns;
    char **names;
    char **values; //  rows * columns, row-major; NULL for SQL NULL
    size_t rows;
    size_t capacity; //  rows allocated
};

zf_db_t *zf_db_open (const char *url, const char *password_file, zf_error_t *err)
{
    ZF_ASSERT (url);
    zf_db_t *self = zf_calloc (1, sizeof *self);
    if (strncmp (url, "sqlite:", 7) == 0) {
        self->kind = ZF_DB_SQLITE;
        self->conn = zf_db_sqlite_open (url + 7, &self->backend, err);
    } else if (strncmp (url, "mariadb://", 10) == 0) {
        self->kind = ZF_DB_MARIADB;
        self->conn = zf_db_mariadb_open (url, password_file, &self->backend, err);
    } else
        zf_error_set (err, ZF_E_CONFIG, "database",
                      "database '%s': expected sqlite:PATH or mariadb://USER@HOST[:PORT]/DB", url);
    if (!self->conn) {
        zf_free (self);
        return NULL;
    }
    return self;
}

void zf_db_close (zf_db_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_db_t *self = *self_p;
    if (!self)
        return;
    if (self->in_transaction)
        zf_db_rollback (self);
    self->backend->close (self->conn);
    zf_free (self);
    *self_p = NULL;
}

zf_db_kind_t zf_db_kind (zf_db_t *self)
{
    return self->kind;
}

const char *zf_db_kind_name (zf_db_t *self)
{
    return self->kind == ZF_DB_SQLITE ? "sqlite" : "mariadb";
}

zf_status_t zf_db_exec (zf_db_t *self, const char *sql, const zf_db_arg_t *args, size_t arg_count,
                        int64_t *changed, int64_t *last_id, zf_error_t *err)
{
    return self->backend->exec (self->conn, sql, args, arg_count, NULL, changed, last_id, err);
}

zf_db_result_t *zf_db_query (zf_db_t *self, const char *sql, const zf_db_arg_t *args,
                             size_t arg_count, zf_error_t *err)
{
    zf_db_result_t *result = NULL;
    if (self->backend->exec (self->conn, sql, args, arg_count, &result, NULL, NULL, err) != ZF_OK) {
        zf_db_result_destroy (&result);
        return NULL;
    }
    ZF_ASSERT (result); //  backends always answer a query with a result, empty or not
    return result;
}

zf_status_t zf_db_begin (zf_db_t *self, zf_error_t *err)
{
    ZF_ASSERT (!self->in_transaction);
    const char *sql = self->kind == ZF_DB_SQLITE ? "BEGIN IMMEDIATE" : "START TRANSACTION";
    zf_status_t status = zf_db_exec (self, sql, ZF_DB_NO_ARGS, NULL, NULL, err);
    self->in_transaction = status == ZF_OK;
    return status;
}

zf_status_t zf_db_commit (zf_db_t *self, zf_error_t *err)
{
    ZF_ASSERT (self->in_transaction);
    self->in_transaction = false;
    zf_status_t status = zf_db_exec (self, "COMMIT", ZF_DB_NO_ARGS, NULL, NULL, err);
    if (status != ZF_OK)
        zf_db_exec (self, "ROLLBACK", ZF_DB_NO_ARGS, NULL, NULL, NULL);
    return status;
}

void zf_db_rollback (zf_db_t *self)
{
    if (!self->in_transaction)
        return;
    self->in_transaction = false;
    zf_error_t err;
    if (zf_db_exec (self, "ROLLBACK", ZF_DB_NO_ARGS, NULL, NULL, &err) != ZF_OK)
        zf_warning ("manager", "db: rollback failed: %s", err.message);
}

//  ---------------------------------------------------------------------------------------------
//  Migrations

//  Expands {{ID}} and {{TABLE}} for the engine.
static char *s_expand (zf_db_t *self, const char *statement)
{
    static const struct {
        const char *token;
        const char *sqlite;
        const char *mariadb;
    } tokens[] = {
        {"{{ID}}", "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT PRIMARY KEY AUTO_INCREMENT"},
        {"{{TABLE}}", "", " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    };
    char *text = zf_strdup (statement);
    for (size_t index = 0; index < ZF_ARRAY_LEN (tokens); index++) {
        const char *replacement =
            self->kind == ZF_DB_SQLITE ? tokens[index].sqlite : tokens[index].mariadb;
        char *found;
        while ((found = strstr (text, tokens[index].token))) {
            *found = '\0';
            char *next =
                zf_asprintf ("%s%s%s", text, replacement, found + strlen (tokens[index].token));
            zf_free (text);
            text = next;
        }
    }
    return text;
}

int zf_db_schema_version (zf_db_t *self, zf_error_t *err)
{
    if (zf_db_exec (self,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, "
                    "what VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL)",
                    ZF_DB_NO_ARGS, NULL, NULL, err)
        != ZF_OK)
        return -1;
    zf_db_result_t *result =
        zf_db_query (self, "SELECT MAX(version) FROM schema_migrations", ZF_DB_NO_ARGS, err);
    if (!result)
        return -1;
    int version = (int) zf_db_result_int (result, 0, 0, 0);
    zf_db_result_destroy (&result);
    return version;
}

zf_status_t zf_db_migrate (zf_db_t *self, const zf_db_migration_t *migrations, size_t count,
                           zf_error_t *err)
{
    int current = zf_db_schema_version (self, err);
    if (current < 0)
        return err ? err->code : ZF_E_IO;
    int newest = count ? migrations[count - 1].version : 0;
    if (current > newest)
        return zf_error_set (err, ZF_E_VERSION, "database",
                             "the database schema is version %d, newer than this build knows "
                             "(%d): upgrade zfly before starting the manager on it",
                             current, newest);
    for (size_t index = 0; index < count; index++) {
        const zf_db_migration_t *migration = &migrations[index];
        ZF_ASSERT (index == 0 || migration->version > migrations[index - 1].version);
        if (migration->version <= current)
            continue;
        //  MariaDB commits DDL implicitly, so a migration is not atomic there; each statement
        //  is written to be safe to run again (IF NOT EXISTS), and the version is recorded
        //  last, so a migration cut short is simply applied again at the next start.
        zf_status_t status = ZF_OK;
        for (const char *const *statement = migration->statements; *statement && status == ZF_OK;
             statement++) {
            char *sql = s_expand (self, *statement);
            status = zf_db_exec (self, sql, ZF_DB_NO_ARGS, NULL, NULL, err);
            zf_free (sql);
        }
        if (status == ZF_OK)
            status = zf_db_exec (self,
                                 "INSERT INTO schema_migrations (version, what, applied_at) "
                                 "VALUES (?, ?, ?)",
                                 ZF_DB_ARGS (ZF_DB_INT (migration->version),
                                             ZF_DB_TEXT (migration->what),
                                             ZF_DB_INT (zf_clock_wall_ms ())),
                                 NULL, NULL, err);
        if (status != ZF_OK)
            return status;
        zf_notice ("manager", "db: applied migration version=%d what=\"%s\" engine=%s",
                   migration->version, migration->what, zf_db_kind_name (self));
    }
    return ZF_OK;
}

//  ---------------------------------------------------------------------------------------------
//  Results

zf_db_result_t *zf_db_result_new (size_t columns)
{
    zf_db_result_t *self = zf_calloc (1, sizeof *self);
    self->columns = columns;
    self->names = zf_calloc (columns ? columns : 1, sizeof *self->names);
    return self;
}

void zf_db_result_set_name (zf_db_result_t *self, size_t column, const char *name)
{
    ZF_ASSERT (column < self->columns);
    zf_free (self->names[column]);
    self->names[column] = zf_strdup (name ? name : "");
}

void zf_db_result_add_row (zf_db_result_t *self)
{
    if (self->rows == self->capacity) {
        self->capacity = self->capacity ? self->capacity * 2 : 16;
        self->values =
            zf_realloc (self->values, self->capacity * (self->columns ? self->columns : 1)
                                          * sizeof *self->values);
    }
    for (size_t column = 0; column < self->columns; column++)
        self->values[self->rows * self->columns + column] = NULL;
    self->rows++;
}

void zf_db_result_set (zf_db_result_t *self, size_t column, const char *text, size_t len)
{
    ZF_ASSERT (self->rows > 0 && column < self->columns);
    char **slot = &self->values[(self->rows - 1) * self->columns + column];
    zf_free (*slot);
    *slot = text ? zf_strndup (text, len) : NULL;
}

size_t zf_db_result_rows (const zf_db_result_t *self)
{
    return self->rows;
}

size_t zf_db_result_columns (const zf_db_result_t *self)
{
    return self->columns;
}

const char *zf_db_result_name (const zf_db_result_t *self, size_t column)
{
    ZF_ASSERT (column < self->columns);
    return self->names[column];
}

const char *zf_db_result_text (const zf_db_result_t *self, size_t row, size_t column)
{
    if (row >= self->rows || column >= self->columns)
        return NULL;
    return self->values[row * self->columns + column];
}

int64_t zf_db_result_int (const zf_db_result_t *self, size_t row, size_t column, int64_t fallback)
{
    const char *text = zf_db_result_text (self, row, column);
    if (!text || !*text)
        return fallback;
    char *end = NULL;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    return (errno || *end) ? fallback : (int64_t) value;
}

int zf_db_result_column (const zf_db_result_t *self, const char *name)
{
    for (size_t column = 0; column < self->columns; column++)
        if (streq (self->names[column], name))
            return (int) column;
    return -1;
}

void zf_db_result_destroy (zf_db_result_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_db_result_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->rows * self->columns; index++)
        zf_free (self->values[index]);
    for (size_t column = 0; column < self->columns; column++)
        zf_free (self->names[column]);
    zf_free (self->values);
    zf_free (self->names);
    zf_free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------------------------------
//  Selftest. Runs on SQLite in memory; with ZF_TEST_DB_URL set (tests/test_manager_db.py
//  starts a MariaDB and sets it) the same steps run against that database too.

static const char *const s_test_v1[] = {
    "CREATE TABLE IF NOT EXISTS things (id {{ID}}, name VARCHAR(64) NOT NULL UNIQUE, "
    "size BIGINT, note MEDIUMTEXT){{TABLE}}",
    NULL,
};
static const char *const s_test_v2[] = {
    "CREATE INDEX IF NOT EXISTS things_size ON things (size)",
    NULL,
};
static const zf_db_migration_t s_test_migrations[] = {
    {1, "things", s_test_v1},
    {2, "things by size", s_test_v2},
};

static void s_test_backend (const char *url, bool verbose)
{
    zf_error_t err;
    zf_db_t *db = zf_db_open (url, NULL, &err);
    if (!db)
        fprintf (stderr, "zf_db_test: %s: %s\n", url, err.message);
    ZF_ASSERT (db);
    if (verbose)
        printf ("zf_db_test: %s (%s)\n", url, zf_db_kind_name (db));
    //  Start clean (a MariaDB database may hold an earlier run's tables).
    zf_db_exec (db, "DROP TABLE IF EXISTS things", ZF_DB_NO_ARGS, NULL, NULL, NULL);
    zf_db_exec (db, "DROP TABLE IF EXISTS schema_migrations", ZF_DB_NO_ARGS, NULL, NULL, NULL);
    ZF_ASSERT (zf_db_schema_version (db, &err) == 0);
    ZF_ASSERT (zf_db_migrate (db, s_test_migrations, 1, &err) == ZF_OK);
    ZF_ASSERT (zf_db_schema_version (db, &err) == 1);
    ZF_ASSERT (zf_db_migrate (db, s_test_migrations, 2, &err) == ZF_OK);
    ZF_ASSERT (zf_db_migrate (db, s_test_migrations, 2, &err) == ZF_OK); //  nothing to do
    ZF_ASSERT (zf_db_schema_version (db, &err) == 2);
    //  A build that knows fewer migrations refuses the newer database.
    ZF_ASSERT (zf_db_migrate (db, s_test_migrations, 1, &err) == ZF_E_VERSION);
    ZF_ASSERT (strstr (err.message, "newer than this build knows"));

    //  Values travel as parameters: quotes and SQL in a value are just bytes.
    const char *hostile = "x'); DROP TABLE things; --";
    int64_t id = 0, changed = 0;
    ZF_ASSERT (zf_db_exec (db, "INSERT INTO things (name, size, note) VALUES (?, ?, ?)",
                           ZF_DB_ARGS (ZF_DB_TEXT (hostile), ZF_DB_INT (1LL << 40),
                                       ZF_DB_TEXT ("é ünïcode")),
                           &changed, &id, &err)
               == ZF_OK);
    ZF_ASSERT (changed == 1 && id > 0);
    ZF_ASSERT (zf_db_exec (db, "INSERT INTO things (name, size, note) VALUES (?, ?, ?)",
                           ZF_DB_ARGS (ZF_DB_TEXT ("second"), ZF_DB_NULL, ZF_DB_NULL), NULL, NULL,
                           &err)
               == ZF_OK);
    //  A duplicate is recognised as such.
    ZF_ASSERT (zf_db_exec (db, "INSERT INTO things (name) VALUES (?)",
                           ZF_DB_ARGS (ZF_DB_TEXT ("second")), NULL, NULL, &err)
               == ZF_E_INVALID);
    ZF_ASSERT (strstr (err.message, "already exists"));

    zf_db_result_t *rows = zf_db_query (
        db, "SELECT id, name, size, note FROM things WHERE size IS NULL OR size > ? ORDER BY id",
        ZF_DB_ARGS (ZF_DB_INT (5)), &err);
    ZF_ASSERT (rows && zf_db_result_rows (rows) == 2 && zf_db_result_columns (rows) == 4);
    ZF_ASSERT (zf_db_result_int (rows, 0, 0, -1) == id);
    ZF_ASSERT (streq (zf_db_result_text (rows, 0, 1), hostile));
    ZF_ASSERT (zf_db_result_int (rows, 0, 2, -1) == (1LL << 40));
    ZF_ASSERT (streq (zf_db_result_text (rows, 0, 3), "é ünïcode"));
    ZF_ASSERT (zf_db_result_text (rows, 1, 2) == NULL);
    ZF_ASSERT (zf_db_result_int (rows, 1, 2, -7) == -7);
    ZF_ASSERT (zf_db_result_column (rows, "note") == 3);
    zf_db_result_destroy (&rows);

    //  Transactions: a rollback leaves nothing; the same prepared statement again.
    ZF_ASSERT (zf_db_begin (db, &err) == ZF_OK);
    ZF_ASSERT (zf_db_exec (db, "INSERT INTO things (name, size, note) VALUES (?, ?, ?)",
                           ZF_DB_ARGS (ZF_DB_TEXT ("third"), ZF_DB_INT (3), ZF_DB_NULL), NULL, NULL,
                           &err)
               == ZF_OK);
    zf_db_rollback (db);
    ZF_ASSERT (zf_db_begin (db, &err) == ZF_OK);
    ZF_ASSERT (zf_db_exec (db, "UPDATE things SET size = ? WHERE name = ?",
                           ZF_DB_ARGS (ZF_DB_INT (9), ZF_DB_TEXT ("second")), &changed, NULL, &err)
               == ZF_OK);
    ZF_ASSERT (changed == 1);
    ZF_ASSERT (zf_db_commit (db, &err) == ZF_OK);
    rows = zf_db_query (db, "SELECT COUNT(*), SUM(size) FROM things WHERE size < ?",
                        ZF_DB_ARGS (ZF_DB_INT (100)), &err);
    ZF_ASSERT (rows && zf_db_result_int (rows, 0, 0, -1) == 1
               && zf_db_result_int (rows, 0, 1, -1) == 9);
    zf_db_result_destroy (&rows);

    //  Bad SQL is an error with the engine's words, never a crash.
    ZF_ASSERT (zf_db_query (db, "SELECT nothing FROM nowhere", ZF_DB_NO_ARGS, &err) == NULL);
    ZF_ASSERT (err.code == ZF_E_IO && *err.message);

    //  Many rows (the result grows), and a long value.
    char *long_text = zf_calloc (1, 70001);
    memset (long_text, 'v', 70000);
    for (int index = 0; index < 100; index++) {
        char name[32];
        snprintf (name, sizeof name, "bulk-%03d", index);
        ZF_ASSERT (zf_db_exec (db, "INSERT INTO things (name, size, note) VALUES (?, ?, ?)",
                               ZF_DB_ARGS (ZF_DB_TEXT (name), ZF_DB_INT (index),
                                           ZF_DB_TEXT (index == 42 ? long_text : "short")),
                               NULL, NULL, &err)
                   == ZF_OK);
    }
    rows = zf_db_query (db, "SELECT name, note FROM things WHERE name LIKE ? ORDER BY name",
                        ZF_DB_ARGS (ZF_DB_TEXT ("bulk-%")), &err);
    ZF_ASSERT (rows && zf_db_result_rows (rows) == 100);
    ZF_ASSERT (streq (zf_db_result_text (rows, 42, 1), long_text));
    ZF_ASSERT (streq (zf_db_result_text (rows, 99, 0), "bulk-099"));
    zf_db_result_destroy (&rows);
    zf_free (long_text);

    zf_db_exec (db, "DROP TABLE IF EXISTS things", ZF_DB_NO_ARGS, NULL, NULL, NULL);
    zf_db_exec (db, "DROP TABLE IF EXISTS schema_migrations", ZF_DB_NO_ARGS, NULL, NULL, NULL);
    zf_db_close (&db);
    ZF_ASSERT (db == NULL);
}

void zf_db_test (bool verbose)
{
    zf_error_t err;
    ZF_ASSERT (zf_db_open ("postgres://x", NULL, &err) == NULL && err.code == ZF_E_CONFIG);
    ZF_ASSERT (zf_db_open ("mariadb://nohost", NULL, &err) == NULL && err.code == ZF_E_CONFIG);
    ZF_ASSERT (zf_db_open ("sqlite:/nonexistent-dir/x.db", NULL, &err) == NULL
               && err.code == ZF_E_IO);
    s_test_backend ("sqlite::memory:", verbose);
    char path[64];
    snprintf (path, sizeof path, "sqlite:/tmp/zf-db-test-%d.db", (int) getpid ());
    s_test_backend (path, verbose);
    unlink (path + 7);
    char *wal = zf_asprintf ("%s-wal", path + 7), *shm = zf_asprintf ("%s-shm", path + 7);
    unlink (wal);
    unlink (shm);
    zf_free (wal);
    zf_free (shm);
    const char *mariadb = getenv ("ZF_TEST_DB_URL");
    if (mariadb && *mariadb)
        s_test_backend (mariadb, verbose);
}
