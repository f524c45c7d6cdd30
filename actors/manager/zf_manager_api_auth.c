/*  zf_manager_api_auth.c — REST resources of credentials: join tokens, users, personal access
    tokens. A token's secret is in the answer of its creation only; lists show its prefix.

        GET    /api/v1/join-tokens                      list
        POST   /api/v1/join-tokens                      {name, cluster_id, expires_in, max_uses}
        DELETE /api/v1/join-tokens/{id}                 revoke (nodes already joined stay)
        GET    /api/v1/users                            list
        POST   /api/v1/users                            {name, role: admin | read-only}
        GET    /api/v1/users/{id}
        DELETE /api/v1/users/{id}                       and its tokens; never the last admin
        GET    /api/v1/personal-access-tokens           list (user_id)
        POST   /api/v1/personal-access-tokens           {name, user_id, write, expires_in}
        DELETE /api/v1/personal-access-tokens/{id}      revoke */
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_manager_internal.h"

typedef zf_status_t (s_parse_fn) (json_t *body, zf_token_input_t *input, zf_error_t *err);

//  The request's body as input (parse): false when it was answered (no JSON, or refused).
static bool s_read_input (zf_rest_request_t *request, s_parse_fn *parse, zf_token_input_t *input)
{
    json_t *body = zf_rest_json_body (request);
    zf_error_t err;
    return body && zf_manager_input_checked (request, body, parse (body, input, &err), &err);
}

//  ---------------------------------------------------------------------------------------------
//  Join tokens

static void s_join_tokens_list (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_list (request, arg, zf_join_tokens_list);
}

static void s_join_tokens_create (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    zf_token_input_t input;
    if (!s_read_input (request, zf_join_token_input_parse, &input))
        return;
    zf_error_t err;
    zf_db_t *db = zf_manager_db (manager);
    if (input.cluster_id) {
        json_t *cluster = zf_clusters_get (db, input.cluster_id, &err);
        if (!cluster) {
            zf_token_input_clear (&input);
            if (err.code == ZF_E_MISSING)
                zf_rest_reply_error (request, 400, "invalid", "cluster_id: %s", err.message);
            else
                zf_manager_reply_failure (request, &err);
            return;
        }
        json_decref (cluster);
    }
    int64_t now = zf_clock_wall_ms ();
    int64_t expires_at = input.expires_in_ms ? now + input.expires_in_ms : 0;
    char token[ZF_TOKEN_SIZE];
    int64_t id = 0;
    zf_status_t status =
        zf_join_tokens_create (db, input.name, input.cluster_id, expires_at, input.max_uses,
                               zf_rest_principal (request), token, &id, &err);
    if (status != ZF_OK) {
        zf_token_input_clear (&input);
        zf_manager_reply_failure (request, &err);
        return;
    }
    zf_notice ("manager", "api: join token %" PRId64 " created by %s", id,
               zf_rest_principal (request));
    char expires[32];
    zf_time_rfc3339 (expires_at, expires, sizeof expires);
    json_t *answer = json_pack (
        "{s:I, s:s, s:s, s:o, s:o, s:o}", "id", (json_int_t) id, "name", input.name, "token", token,
        "cluster_id", input.cluster_id ? json_integer (input.cluster_id) : json_null (),
        "expires_at", *expires ? json_string (expires) : json_null (), "max_uses",
        input.max_uses ? json_integer (input.max_uses) : json_null ());
    explicit_bzero (token, sizeof token);
    zf_token_input_clear (&input);
    zf_rest_reply_json (request, 201, answer);
}

static void s_join_tokens_revoke (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_removed (request, arg, zf_join_tokens_revoke, "join token", "revoked");
}

//  ---------------------------------------------------------------------------------------------
//  Users

static void s_users_list (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_list (request, arg, zf_users_list);
}

static void s_users_create (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    zf_token_input_t input;
    if (!s_read_input (request, zf_user_input_parse, &input))
        return;
    zf_error_t err;
    int64_t id = 0;
    zf_status_t status =
        zf_users_create (zf_manager_db (manager), input.name,
                         input.admin ? ZF_ROLE_ADMIN : ZF_ROLE_READ_ONLY, &id, &err);
    zf_token_input_clear (&input);
    if (status != ZF_OK) {
        zf_manager_reply_failure (request, &err);
        return;
    }
    zf_notice ("manager", "api: user %" PRId64 " created by %s", id, zf_rest_principal (request));
    zf_manager_reply_object (request, 201, zf_users_get (zf_manager_db (manager), id, &err), &err);
}

static void s_users_get (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_get (request, arg, zf_users_get);
}

static void s_users_delete (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_removed (request, arg, zf_users_delete, "user", "deleted");
}

//  ---------------------------------------------------------------------------------------------
//  Personal access tokens

static void s_pats_list (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    int64_t page, per_page, total = 0, user_id = 0;
    if (!zf_rest_page (request, &page, &per_page))
        return;
    const char *user = zf_rest_query (request, "user_id");
    if (user) {
        char *end = NULL;
        user_id = strtoll (user, &end, 10);
        if (!*user || *end || user_id < 1) {
            zf_rest_reply_error (request, 400, "invalid", "user_id must be a positive number");
            return;
        }
    }
    zf_error_t err;
    json_t *items = zf_pats_list (zf_manager_db (manager), user_id, page, per_page, &total, &err);
    zf_manager_reply_page (request, items, page, per_page, total, &err);
}

static void s_pats_create (zf_rest_request_t *request, void *arg)
{
    zf_manager_t *manager = arg;
    zf_token_input_t input;
    if (!s_read_input (request, zf_pat_input_parse, &input))
        return;
    zf_error_t err;
    zf_db_t *db = zf_manager_db (manager);
    int64_t user_id = input.user_id ? input.user_id : zf_users_id (db, zf_rest_principal (request));
    json_t *user = zf_users_get (db, user_id, &err);
    if (!user) {
        zf_token_input_clear (&input);
        if (err.code == ZF_E_MISSING)
            zf_rest_reply_error (request, 400, "invalid", "user_id: %s", err.message);
        else
            zf_manager_reply_failure (request, &err);
        return;
    }
    bool admin = streq (json_string_value (json_object_get (user, "role")), "admin");
    json_decref (user);
    if (input.write && !admin) {
        zf_token_input_clear (&input);
        zf_rest_reply_error (request, 400, "invalid",
                             "write: user %" PRId64 " is read-only; its tokens cannot write",
                             user_id);
        return;
    }
    int64_t now = zf_clock_wall_ms ();
    int64_t expires_at = input.expires_in_ms ? now + input.expires_in_ms : 0;
    char token[ZF_TOKEN_SIZE];
    int64_t id = 0;
    zf_status_t status =
        zf_pats_create (db, user_id, input.name, input.write, expires_at, token, &id, &err);
    if (status != ZF_OK) {
        zf_token_input_clear (&input);
        zf_manager_reply_failure (request, &err);
        return;
    }
    zf_notice ("manager",
               "api: personal access token %" PRId64 " for user %" PRId64 " created by %s", id,
               user_id, zf_rest_principal (request));
    char expires[32];
    zf_time_rfc3339 (expires_at, expires, sizeof expires);
    json_t *answer = json_pack ("{s:I, s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t) id, "user_id",
                                (json_int_t) user_id, "name", input.name, "token", token, "scopes",
                                input.write ? "read,write" : "read", "expires_at",
                                *expires ? json_string (expires) : json_null ());
    explicit_bzero (token, sizeof token);
    zf_token_input_clear (&input);
    zf_rest_reply_json (request, 201, answer);
}

static void s_pats_revoke (zf_rest_request_t *request, void *arg)
{
    zf_manager_reply_removed (request, arg, zf_pats_revoke, "personal access token", "revoked");
}

void zf_manager_api_auth_register (zf_rest_t *rest, zf_manager_t *manager)
{
    zf_rest_route (rest, "GET", "/api/v1/join-tokens", ZF_REST_READ, s_join_tokens_list, manager);
    zf_rest_route (rest, "POST", "/api/v1/join-tokens", ZF_REST_WRITE, s_join_tokens_create,
                   manager);
    zf_rest_route (rest, "DELETE", "/api/v1/join-tokens/{id}", ZF_REST_WRITE, s_join_tokens_revoke,
                   manager);
    zf_rest_route (rest, "GET", "/api/v1/users", ZF_REST_READ, s_users_list, manager);
    zf_rest_route (rest, "POST", "/api/v1/users", ZF_REST_WRITE, s_users_create, manager);
    zf_rest_route (rest, "GET", "/api/v1/users/{id}", ZF_REST_READ, s_users_get, manager);
    zf_rest_route (rest, "DELETE", "/api/v1/users/{id}", ZF_REST_WRITE, s_users_delete, manager);
    zf_rest_route (rest, "GET", "/api/v1/personal-access-tokens", ZF_REST_READ, s_pats_list,
                   manager);
    zf_rest_route (rest, "POST", "/api/v1/personal-access-tokens", ZF_REST_WRITE, s_pats_create,
                   manager);
    zf_rest_route (rest, "DELETE", "/api/v1/personal-access-tokens/{id}", ZF_REST_WRITE,
                   s_pats_revoke, manager);
}
