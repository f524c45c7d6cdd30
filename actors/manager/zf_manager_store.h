/*  zf_manager_store.h — what the manager keeps, as operations over its database (zf_db).

    Three groups, one file each, all taking the zf_db_t of the calling thread:
      zf_credentials.c  tokens: join tokens, users, personal access tokens, the first admin
      zf_clusters.c     clusters with scopes and client config; the default cluster
      zf_members.c      hosts that joined, schedulers and seed peers, membership versions
    Handlers of the REST API, the join protocol and `zfly manager init` all go through
    these, so a rule (a token's expiry, a revoked key) is enforced in one place.

    Secrets. Tokens are 24 random bytes as 48 hex characters after a kind prefix ("zfj_" for
    join tokens, "zfp_" for personal access tokens), shown once when created. The database
    keeps only their SHA-256 and the first 8 characters after the prefix (to tell tokens apart
    in lists); nothing logs a token.

    Rows come out as JSON objects for the API (zf_db_row_json with a column table), times as
    RFC 3339 strings. */
#ifndef ZF_MANAGER_STORE_H_INCLUDED
#define ZF_MANAGER_STORE_H_INCLUDED

#include "zf_db.h"
#include "zf_manager_input.h"
#include "zf_rest.h"
#include <jansson.h>

extern const zf_db_migration_t zf_manager_migrations[];
extern const size_t zf_manager_migration_count;

#define ZF_TOKEN_SIZE 53 //  prefix (4) + 48 hex + NUL

//  ---------------------------------------------------------------------------------------------
//  Rows as JSON

typedef enum {
    ZF_COL_TEXT,
    ZF_COL_INT,
    ZF_COL_BOOL, //  0/1 in the database
    ZF_COL_JSON, //  JSON text in the database, a value in the answer
    ZF_COL_TIME, //  milliseconds in the database, RFC 3339 (or null) in the answer
} zf_col_kind_t;

typedef struct {
    const char *column; //  as the SELECT names it
    const char *key;    //  in the JSON object; NULL: same as column
    zf_col_kind_t kind;
} zf_col_t;

json_t *zf_db_row_json (const zf_db_result_t *result, size_t row, const zf_col_t *columns,
                        size_t column_count);
//  One page of a list: count_sql counts with the filter arguments, rows_sql takes them plus
//  LIMIT ? OFFSET ? (per_page, offset); *total gets the count.
json_t *zf_db_page_json (zf_db_t *db, const char *count_sql, const char *rows_sql,
                         const zf_db_arg_t *filters, size_t filter_count, const zf_col_t *columns,
                         size_t column_count, int64_t page, int64_t per_page, int64_t *total,
                         zf_error_t *err);
//  The row sql (one ? for id) selects, or NULL with ZF_E_MISSING "no WHAT ID" when there is
//  none (or a failure).
zf_db_result_t *zf_db_query_id (zf_db_t *db, const char *sql, int64_t id, const char *what,
                                zf_error_t *err);
//  That row as JSON (zf_db_row_json), or NULL as zf_db_query_id.
json_t *zf_db_id_json (zf_db_t *db, const char *sql, int64_t id, const char *what,
                       const zf_col_t *columns, size_t column_count, zf_error_t *err);
//  "2026-11-27T03:39:12Z" for ms since the epoch; writes "" for 0.
void zf_time_rfc3339 (int64_t ms, char *text, size_t size);

//  ---------------------------------------------------------------------------------------------
//  Credentials (zf_credentials.c)

typedef enum { ZF_ROLE_READ_ONLY, ZF_ROLE_ADMIN } zf_role_t;

//  A new random token "PREFIX" + 48 hex characters into token (ZF_TOKEN_SIZE bytes).
void zf_token_new (const char *prefix, char *token);
//  SHA-256 of the token as 64 hex characters into hex (65 bytes).
void zf_token_hash (const char *token, char *hex);

zf_status_t zf_users_create (zf_db_t *db, const char *name, zf_role_t role, int64_t *id,
                             zf_error_t *err);
//  A new personal access token for user_id; write=false makes it read-only whatever the user's
//  role. expires_at 0: never. The token is written into token (ZF_TOKEN_SIZE).
zf_status_t zf_pats_create (zf_db_t *db, int64_t user_id, const char *name, bool write,
                            int64_t expires_at, char *token, int64_t *id, zf_error_t *err);
//  The access a bearer token grants right now: ZF_REST_WRITE needs an admin user and a token
//  with write scope; an unknown, expired or revoked token grants nothing (0). principal gets
//  the user's name.
zf_rest_access_t zf_pats_check (zf_db_t *db, const char *token, int64_t now, char *principal,
                                size_t size);
//  `zfly manager init`: makes user "admin" when missing and a new admin token for it.
zf_status_t zf_credentials_init_admin (zf_db_t *db, char *token, zf_error_t *err);

//  Join tokens: cluster_id 0 lets scopes decide; expires_at 0 never; max_uses 0 unlimited.
zf_status_t zf_join_tokens_create (zf_db_t *db, const char *name, int64_t cluster_id,
                                   int64_t expires_at, int64_t max_uses, const char *created_by,
                                   char *token, int64_t *id, zf_error_t *err);

typedef enum {
    ZF_JOIN_TOKEN_OK,
    ZF_JOIN_TOKEN_UNKNOWN,
    ZF_JOIN_TOKEN_EXPIRED,
    ZF_JOIN_TOKEN_USED_UP,
    ZF_JOIN_TOKEN_REVOKED,
} zf_join_token_verdict_t;

//  Checks a join token and, when it is good, counts one use. *token_id and *cluster_id (0:
//  scopes decide) describe it. ZF_E_IO only when the database fails.
zf_status_t zf_join_tokens_consume (zf_db_t *db, const char *token, int64_t now,
                                    zf_join_token_verdict_t *verdict, int64_t *token_id,
                                    int64_t *cluster_id, zf_error_t *err);
const char *zf_join_token_verdict_text (zf_join_token_verdict_t verdict);

//  Lists and revocations for the API (ZF_E_MISSING when there is no such row).
json_t *zf_join_tokens_list (zf_db_t *db, int64_t page, int64_t per_page, int64_t *total,
                             zf_error_t *err);
zf_status_t zf_join_tokens_revoke (zf_db_t *db, int64_t id, zf_error_t *err);
json_t *zf_users_list (zf_db_t *db, int64_t page, int64_t per_page, int64_t *total,
                       zf_error_t *err);
json_t *zf_users_get (zf_db_t *db, int64_t id, zf_error_t *err);
//  Deletes a user and revokes its tokens; refuses to delete the last admin.
zf_status_t zf_users_delete (zf_db_t *db, int64_t id, zf_error_t *err);
//  user_id 0: every user's tokens.
json_t *zf_pats_list (zf_db_t *db, int64_t user_id, int64_t page, int64_t per_page, int64_t *total,
                      zf_error_t *err);
zf_status_t zf_pats_revoke (zf_db_t *db, int64_t id, zf_error_t *err);
//  The user id of a name (0 when none).
int64_t zf_users_id (zf_db_t *db, const char *name);

//  ---------------------------------------------------------------------------------------------
//  Clusters (zf_clusters.c)

//  Makes the cluster "default" (is_default) when no cluster is the default.
zf_status_t zf_clusters_ensure_default (zf_db_t *db, zf_error_t *err);

zf_status_t zf_clusters_create (zf_db_t *db, const zf_cluster_input_t *input, int64_t *id,
                                zf_error_t *err);
//  ZF_E_MISSING when there is no such cluster.
zf_status_t zf_clusters_update (zf_db_t *db, int64_t id, const zf_cluster_input_t *input,
                                zf_error_t *err);
//  Refuses (ZF_E_INVALID) the default cluster and clusters that still have hosts.
zf_status_t zf_clusters_delete (zf_db_t *db, int64_t id, zf_error_t *err);
json_t *zf_clusters_get (zf_db_t *db, int64_t id, zf_error_t *err); //  NULL: none (err says)
json_t *zf_clusters_list (zf_db_t *db, int64_t page, int64_t per_page, int64_t *total,
                          zf_error_t *err);
//  Every cluster with what the search needs, for a join.
zf_db_result_t *zf_clusters_scopes (zf_db_t *db, zf_error_t *err);

//  ---------------------------------------------------------------------------------------------
//  Members (zf_members.c)

typedef struct {
    const char *name;       //  the node's name
    const char *public_key; //  from the authenticated connection, never the message
    const char *address;    //  the peer address the connection came from
    const char *idc, *location;
    const char *labels_json; //  JSON object text
    const char *token;       //  the join token, "" when refreshing a known key
    //  roles: endpoints announced by the node ("" when it does not run them); a wildcard host
    //  (tcp://*:P, tcp://0.0.0.0:P) is replaced by the address
    const char *scheduler_endpoint;
    const char *storage_endpoint;
    const char *fetcher_endpoint;
    bool seed;
    //  the node's cache as its storage measured it (storage.usage); capacity 0: not reported
    uint64_t cache_bytes, cache_tasks, cache_capacity;
} zf_join_request_t;

typedef enum {
    ZF_JOIN_ACCEPTED,
    ZF_JOIN_TOKEN_REFUSED, //  see token_verdict
    ZF_JOIN_REVOKED,       //  this key was revoked
    ZF_JOIN_NAME_TAKEN,    //  an active host of another key has this name
} zf_join_verdict_t;

typedef struct {
    zf_join_verdict_t verdict;
    zf_join_token_verdict_t token_verdict;
    int64_t host_id;
    int64_t cluster_id;
    bool new_member;         //  a key joined the cluster's members
    bool view_changed;       //  a scheduler or seed peer of the cluster came, went or moved
    int64_t members_version; //  the cluster's version after this join (bumped on any change)
} zf_join_result_t;

//  Admits a node (first join: a good token; later: its known, unrevoked key) and records its
//  roles' keep-alive. cluster search: zf_search_cluster over zf_clusters_scopes.
zf_status_t zf_members_join (zf_db_t *db, const zf_join_request_t *request, int64_t now,
                             zf_join_result_t *result, zf_error_t *err);
//  Revokes a host: state revoked, its scheduler and seed rows inactive, its cluster's members
//  version bumped. *cluster_id gets its cluster, *public_key (41 bytes) its key.
zf_status_t zf_members_revoke (zf_db_t *db, int64_t host_id, int64_t now, int64_t *cluster_id,
                               char *public_key, zf_error_t *err);
//  The active host with this key stops cleanly: its scheduler and seed rows inactive, its
//  cluster's members version bumped when any was active. *cluster_id gets its cluster, *ended
//  how many roles ended (0: none active, or no active host has the key).
zf_status_t zf_members_leave (zf_db_t *db, const char *public_key, int64_t now, int64_t *cluster_id,
                              int64_t *ended, zf_error_t *err);
//  Marks schedulers and seed peers whose last keep-alive is older than now - timeout
//  inactive; clusters (at most clusters_max) get the clusters whose view changed.
zf_status_t zf_members_expire (zf_db_t *db, int64_t now, int64_t timeout_ms, int64_t *clusters,
                               size_t clusters_max, size_t *cluster_count, zf_error_t *err);

//  The cluster's members_version (0 when there is no such cluster or the database failed).
int64_t zf_members_version (zf_db_t *db, int64_t cluster_id);

//  Rows (id, members_version) of every cluster, by id, at most max of them; NULL when the
//  database failed.
zf_db_result_t *zf_members_versions (zf_db_t *db, size_t max, zf_error_t *err);

//  What a node of cluster_id is told: {"cluster": {id, name}, "client_config": {...},
//  "schedulers": [{name, endpoint, key}], "seed_peers": [{name, storage, fetcher, key}],
//  "members": [keys], "members_version": N}. Active entries only.
json_t *zf_members_cluster_view (zf_db_t *db, int64_t cluster_id, zf_error_t *err);

//  Lists for the API; filters may be 0 / NULL (name: hosts whose name contains it).
json_t *zf_members_hosts_list (zf_db_t *db, int64_t cluster_id, const char *state, const char *name,
                               int64_t page, int64_t per_page, int64_t *total, zf_error_t *err);
json_t *zf_members_host_get (zf_db_t *db, int64_t id, zf_error_t *err);
json_t *zf_members_schedulers_list (zf_db_t *db, int64_t cluster_id, int64_t page, int64_t per_page,
                                    int64_t *total, zf_error_t *err);
json_t *zf_members_seed_peers_list (zf_db_t *db, int64_t cluster_id, int64_t page, int64_t per_page,
                                    int64_t *total, zf_error_t *err);

//  ---------------------------------------------------------------------------------------------
//  Cluster search (zf_search.c): which cluster a joining host belongs to, by scopes, weighed
//  as Dragonfly's manager does: CIDR 0.3, hostname regex 0.3, IDC 0.25, location prefix 0.14,
//  default cluster 0.01. The best score wins; ties go to the lowest id.

typedef struct {
    const char *address; //  the host's IP as the manager saw it
    const char *name;
    const char *idc;
    const char *location; //  '|'-separated, widest first
} zf_search_host_t;

//  clusters: rows of zf_clusters_scopes. Returns the chosen cluster id, or 0 when there is none.
int64_t zf_search_cluster (const zf_db_result_t *clusters, const zf_search_host_t *host);

void zf_search_test (bool verbose);
void zf_manager_store_test (bool verbose);

#endif
