/*  zf_manager_schema.c — the manager's tables, as numbered migrations (zf_db_migrate).

    Append, never edit: a released migration has run on someone's database. A new table or
    column is a new entry at the end with the next version (the preheat worker's changes go
    here too). Times are milliseconds since the epoch (BIGINT); lists and free-form objects are
    JSON text (MEDIUMTEXT); secrets are stored only as SHA-256 hex of the token.

    clusters        a scheduler cluster: scopes that pick it for a joining host, the client
                    config handed to its nodes, and members_version, bumped whenever its
                    member keys change (nodes apply membership changes in that order)
    hosts           every node that joined: its name, the CURVE key that authenticated the
                    join (the identity; unique), its cluster, labels, state active|revoked,
                    its cache use as last reported (bytes, tasks, capacity)
    schedulers      hosts that serve the scheduler actor: endpoint, key, state, keep-alive
    seed_peers      hosts with a seed fetcher: storage and fetcher endpoints, key, keep-alive
    join_tokens     hashed; optional expiry, maximum uses, a cluster they pin joins to
    users           people and programs using the API: name, role admin|read-only
    personal_access_tokens  hashed bearer tokens of a user, with scopes and expiry
    jobs            preheat (and later) jobs: type, state, args and result as JSON
    job_tasks       one row per (job, layer or URL, host): the per-layer, per-host results a
                    job reports (Harbor reads success_tasks / failure_tasks from them) */
#include "zf_manager_store.h"

//  The default cluster is made at start (zf_clusters_ensure_default), not here: an INSERT
//  that runs once needs SELECT ... WHERE without FROM, which the two engines spell apart.

static const char *const s_v1[] = {
    "CREATE TABLE IF NOT EXISTS clusters ("
    " id {{ID}},"
    " name VARCHAR(128) NOT NULL UNIQUE,"
    " description VARCHAR(1024) NOT NULL DEFAULT '',"
    " is_default BIGINT NOT NULL DEFAULT 0,"
    " scope_idc VARCHAR(1024) NOT NULL DEFAULT '',"
    " scope_location VARCHAR(1024) NOT NULL DEFAULT '',"
    " scope_cidrs MEDIUMTEXT NOT NULL,"
    " scope_hostnames MEDIUMTEXT NOT NULL,"
    " client_config MEDIUMTEXT NOT NULL,"
    " members_version BIGINT NOT NULL DEFAULT 1,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL"
    "){{TABLE}}",

    "CREATE TABLE IF NOT EXISTS hosts ("
    " id {{ID}},"
    " name VARCHAR(128) NOT NULL,"
    " public_key VARCHAR(40) NOT NULL UNIQUE,"
    " cluster_id BIGINT NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " address VARCHAR(64) NOT NULL DEFAULT '',"
    " idc VARCHAR(64) NOT NULL DEFAULT '',"
    " location VARCHAR(256) NOT NULL DEFAULT '',"
    " labels MEDIUMTEXT NOT NULL,"
    " join_token_id BIGINT,"
    " first_seen BIGINT NOT NULL,"
    " last_seen BIGINT NOT NULL,"
    " revoked_at BIGINT,"
    " FOREIGN KEY (cluster_id) REFERENCES clusters (id)"
    "){{TABLE}}",
    "CREATE INDEX IF NOT EXISTS hosts_cluster_state ON hosts (cluster_id, state)",
    "CREATE INDEX IF NOT EXISTS hosts_name ON hosts (name)",

    "CREATE TABLE IF NOT EXISTS schedulers ("
    " id {{ID}},"
    " host_id BIGINT NOT NULL UNIQUE,"
    " cluster_id BIGINT NOT NULL,"
    " name VARCHAR(128) NOT NULL,"
    " endpoint VARCHAR(256) NOT NULL,"
    " public_key VARCHAR(40) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " last_keepalive BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " FOREIGN KEY (host_id) REFERENCES hosts (id),"
    " FOREIGN KEY (cluster_id) REFERENCES clusters (id)"
    "){{TABLE}}",
    "CREATE INDEX IF NOT EXISTS schedulers_cluster_state ON schedulers (cluster_id, state)",

    "CREATE TABLE IF NOT EXISTS seed_peers ("
    " id {{ID}},"
    " host_id BIGINT NOT NULL UNIQUE,"
    " cluster_id BIGINT NOT NULL,"
    " name VARCHAR(128) NOT NULL,"
    " storage_endpoint VARCHAR(256) NOT NULL,"
    " fetcher_endpoint VARCHAR(256) NOT NULL,"
    " public_key VARCHAR(40) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " last_keepalive BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " FOREIGN KEY (host_id) REFERENCES hosts (id),"
    " FOREIGN KEY (cluster_id) REFERENCES clusters (id)"
    "){{TABLE}}",
    "CREATE INDEX IF NOT EXISTS seed_peers_cluster_state ON seed_peers (cluster_id, state)",

    "CREATE TABLE IF NOT EXISTS join_tokens ("
    " id {{ID}},"
    " name VARCHAR(128) NOT NULL DEFAULT '',"
    " token_hash VARCHAR(64) NOT NULL UNIQUE,"
    " token_prefix VARCHAR(16) NOT NULL,"
    " cluster_id BIGINT,"
    " expires_at BIGINT,"
    " max_uses BIGINT,"
    " use_count BIGINT NOT NULL DEFAULT 0,"
    " state VARCHAR(16) NOT NULL,"
    " created_by VARCHAR(128) NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL,"
    " last_used_at BIGINT"
    "){{TABLE}}",

    "CREATE TABLE IF NOT EXISTS users ("
    " id {{ID}},"
    " name VARCHAR(128) NOT NULL UNIQUE,"
    " role VARCHAR(16) NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL"
    "){{TABLE}}",

    "CREATE TABLE IF NOT EXISTS personal_access_tokens ("
    " id {{ID}},"
    " user_id BIGINT NOT NULL,"
    " name VARCHAR(128) NOT NULL DEFAULT '',"
    " token_hash VARCHAR(64) NOT NULL UNIQUE,"
    " token_prefix VARCHAR(16) NOT NULL,"
    " scopes VARCHAR(64) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " expires_at BIGINT,"
    " created_at BIGINT NOT NULL,"
    " last_used_at BIGINT,"
    " FOREIGN KEY (user_id) REFERENCES users (id)"
    "){{TABLE}}",

    "CREATE TABLE IF NOT EXISTS jobs ("
    " id {{ID}},"
    " type VARCHAR(32) NOT NULL,"
    " state VARCHAR(16) NOT NULL,"
    " args MEDIUMTEXT NOT NULL,"
    " result MEDIUMTEXT NOT NULL,"
    " scheduler_cluster_ids MEDIUMTEXT NOT NULL,"
    " created_by VARCHAR(128) NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL"
    "){{TABLE}}",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id)",

    "CREATE TABLE IF NOT EXISTS job_tasks ("
    " id {{ID}},"
    " job_id BIGINT NOT NULL,"
    " cluster_id BIGINT,"
    " url MEDIUMTEXT NOT NULL,"
    " task_id VARCHAR(64) NOT NULL DEFAULT '',"
    " host_name VARCHAR(128) NOT NULL DEFAULT '',"
    " host_ip VARCHAR(64) NOT NULL DEFAULT '',"
    " state VARCHAR(16) NOT NULL,"
    " description MEDIUMTEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " FOREIGN KEY (job_id) REFERENCES jobs (id)"
    "){{TABLE}}",
    "CREATE INDEX IF NOT EXISTS job_tasks_job ON job_tasks (job_id, state)",
    NULL,
};

//  Preheat (actors/manager/zf_jobs*.c): who runs a job and how far it got, its sealed
//  credentials, per-blob sizes and progress of its tasks; and every host's fetcher endpoint,
//  which all_peers preheats need (not only seed peers' any more).
static const char *const s_v2[] = {
    "ALTER TABLE jobs ADD COLUMN secrets MEDIUMTEXT",
    "ALTER TABLE jobs ADD COLUMN error MEDIUMTEXT",
    "ALTER TABLE jobs ADD COLUMN worker VARCHAR(128) NOT NULL DEFAULT ''",
    "ALTER TABLE jobs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN queue_ref VARCHAR(64) NOT NULL DEFAULT ''",
    "ALTER TABLE jobs ADD COLUMN heartbeat_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN started_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN finished_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN tasks_total BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE job_tasks ADD COLUMN digest VARCHAR(80) NOT NULL DEFAULT ''",
    "ALTER TABLE job_tasks ADD COLUMN content_length BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE job_tasks ADD COLUMN bytes_done BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE job_tasks ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
    "CREATE UNIQUE INDEX IF NOT EXISTS job_tasks_key ON job_tasks (job_id, task_id, host_name)",
    "ALTER TABLE hosts ADD COLUMN fetcher_endpoint VARCHAR(256) NOT NULL DEFAULT ''",
    NULL,
};

//  Each host's cache as its storage measured it before its last join (storage.usage): NULL
//  until a node with storage joins.
static const char *const s_v3_cache[] = {
    "ALTER TABLE hosts ADD COLUMN cache_bytes BIGINT",
    "ALTER TABLE hosts ADD COLUMN cache_tasks BIGINT",
    "ALTER TABLE hosts ADD COLUMN cache_capacity BIGINT",
    NULL,
};

const zf_db_migration_t zf_manager_migrations[] = {
    {1, "clusters, hosts, schedulers, seed peers, join tokens, users, tokens, jobs", s_v1},
    {2, "preheat: job workers, leases, sealed credentials, task progress; hosts' fetchers", s_v2},
    {3, "hosts' cache use", s_v3_cache},
};

const size_t zf_manager_migration_count = ZF_ARRAY_LEN (zf_manager_migrations);
