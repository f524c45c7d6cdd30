/*  zf_manager_openapi.c — GET /api/v1/openapi.json: the API described as OpenAPI 3.0.

    Built from a table (one line per operation) and a few schemas, so adding a route means
    adding a line here; tests/test_manager_api.py checks that every route answers as listed. */
#include "zf_manager_internal.h"

typedef struct {
    const char *method; //  lowercase, as OpenAPI keys it
    const char *path;
    const char *summary;
    const char *body;     //  request schema name or NULL
    const char *response; //  response schema name, "page:NAME" for a list, NULL for 204
    bool write;           //  needs a token with write access
    bool paged;
} s_operation_t;

static const s_operation_t s_operations[] = {
    {"get", "/api/v1/clusters", "List clusters", NULL, "page:Cluster", false, true},
    {"post", "/api/v1/clusters", "Create a cluster", "ClusterInput", "Cluster", true, false},
    {"get", "/api/v1/clusters/{id}", "Get a cluster", NULL, "Cluster", false, false},
    {"patch", "/api/v1/clusters/{id}", "Change a cluster", "ClusterInput", "Cluster", true, false},
    {"delete", "/api/v1/clusters/{id}", "Delete an empty, non-default cluster", NULL, NULL, true,
     false},
    {"get", "/api/v1/hosts", "List hosts (filters: cluster_id, state, name)", NULL, "page:Host",
     false, true},
    {"get", "/api/v1/hosts/{id}", "Get a host", NULL, "Host", false, false},
    {"delete", "/api/v1/hosts/{id}", "Revoke a host: its key is refused everywhere", NULL, "Host",
     true, false},
    {"get", "/api/v1/schedulers", "List schedulers (filter: cluster_id)", NULL, "page:Scheduler",
     false, true},
    {"get", "/api/v1/seed-peers", "List seed peers (filter: cluster_id)", NULL, "page:SeedPeer",
     false, true},
    {"get", "/api/v1/join-tokens", "List join tokens", NULL, "page:JoinToken", false, true},
    {"post", "/api/v1/join-tokens", "Create a join token (the secret is shown once)",
     "JoinTokenInput", "JoinTokenCreated", true, false},
    {"delete", "/api/v1/join-tokens/{id}", "Revoke a join token", NULL, NULL, true, false},
    {"get", "/api/v1/users", "List users", NULL, "page:User", false, true},
    {"post", "/api/v1/users", "Create a user", "UserInput", "User", true, false},
    {"get", "/api/v1/users/{id}", "Get a user", NULL, "User", false, false},
    {"delete", "/api/v1/users/{id}", "Delete a user and its tokens", NULL, NULL, true, false},
    {"get", "/api/v1/personal-access-tokens", "List personal access tokens (filter: user_id)", NULL,
     "page:PersonalAccessToken", false, true},
    {"post", "/api/v1/personal-access-tokens", "Create a personal access token (shown once)",
     "PersonalAccessTokenInput", "PersonalAccessTokenCreated", true, false},
    {"delete", "/api/v1/personal-access-tokens/{id}", "Revoke a personal access token", NULL, NULL,
     true, false},
    {"get", "/api/v1/tasks/{id}/swarm",
     "A task's peers, parents and bytes per source, from its scheduler ({id}: task id or "
     "sha256:digest; filter: cluster_id)",
     NULL, "Swarm", false, false},
    //  Preheat jobs (zf_jobs_api.c); Harbor's providers are outside /api/v1 and not listed.
    {"get", "/api/v1/jobs", "List preheat jobs, newest first (filters: state, type)", NULL,
     "page:Job", false, true},
    {"post", "/api/v1/jobs", "Create a preheat job", "JobInput", "Job", true, false},
    {"get", "/api/v1/jobs/{id}", "A preheat job with its blobs, per blob and per host", NULL, "Job",
     false, false},
    {"post", "/api/v1/jobs/{id}/cancel", "Cancel a pending or running job (409 once it ended)",
     NULL, "Job", true, false},
};

//  Schemas as compact JSON text: short to write, checked by json_loads at first use.
static const struct {
    const char *name;
    const char *json;
} s_schemas[] = {
    {"Error", "{\"type\":\"object\",\"required\":[\"code\",\"message\"],\"properties\":{"
              "\"code\":{\"type\":\"string\"},\"message\":{\"type\":\"string\"}}}"},
    {"Scopes", "{\"type\":\"object\",\"properties\":{\"idc\":{\"type\":\"string\","
               "\"description\":\"IDCs separated by |\"},\"location\":{\"type\":\"string\","
               "\"description\":\"location prefix, | separated, widest first\"},"
               "\"cidrs\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
               "\"hostnames\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
               "\"description\":\"POSIX extended regex\"}}}}"},
    {"ClusterInput", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                     "\"description\":{\"type\":\"string\"},\"is_default\":{\"type\":"
                     "\"boolean\"},\"scopes\":{\"$ref\":\"#/components/schemas/Scopes\"},"
                     "\"client_config\":{\"type\":\"object\"}}}"},
    {"Cluster", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":"
                "{\"type\":\"string\"},\"description\":{\"type\":\"string\"},\"is_default\":"
                "{\"type\":\"boolean\"},\"scopes\":{\"$ref\":\"#/components/schemas/Scopes\"},"
                "\"client_config\":{\"type\":\"object\"},\"members_version\":{\"type\":"
                "\"integer\"},\"created_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
                "\"updated_at\":{\"type\":\"string\",\"format\":\"date-time\"}}}"},
    {"Host", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":{"
             "\"type\":\"string\"},\"public_key\":{\"type\":\"string\"},\"cluster_id\":{\"type\":"
             "\"integer\"},\"state\":{\"type\":\"string\",\"enum\":[\"active\",\"revoked\"]},"
             "\"address\":{\"type\":\"string\"},\"idc\":{\"type\":\"string\"},\"location\":{"
             "\"type\":\"string\"},\"labels\":{\"type\":\"object\"},\"is_scheduler\":{\"type\":"
             "\"boolean\"},\"is_seed\":{\"type\":\"boolean\"},\"first_seen\":{\"type\":\"string\"},"
             "\"last_seen\":{\"type\":\"string\"},\"revoked_at\":{\"type\":\"string\","
             "\"nullable\":true},\"cache_bytes\":{\"type\":\"integer\",\"nullable\":true,"
             "\"description\":\"bytes in the host's cache at its last join\"},\"cache_tasks\":"
             "{\"type\":\"integer\",\"nullable\":true},\"cache_capacity\":{\"type\":"
             "\"integer\",\"nullable\":true,\"description\":\"the quota, or the size of the "
             "cache's filesystem\"}}}"},
    {"Scheduler", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
                  "\"host_id\":{\"type\":\"integer\"},\"cluster_id\":{\"type\":\"integer\"},"
                  "\"name\":{\"type\":\"string\"},\"endpoint\":{\"type\":\"string\"},"
                  "\"public_key\":{\"type\":\"string\"},\"state\":{\"type\":\"string\"},"
                  "\"last_keepalive\":{\"type\":\"string\"}}}"},
    {"SeedPeer", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
                 "\"host_id\":{\"type\":\"integer\"},\"cluster_id\":{\"type\":\"integer\"},"
                 "\"name\":{\"type\":\"string\"},\"storage_endpoint\":{\"type\":\"string\"},"
                 "\"fetcher_endpoint\":{\"type\":\"string\"},\"public_key\":{\"type\":"
                 "\"string\"},\"state\":{\"type\":\"string\"},\"last_keepalive\":{\"type\":"
                 "\"string\"}}}"},
    {"JoinTokenInput", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                       "\"cluster_id\":{\"type\":\"integer\"},\"expires_in\":{\"type\":"
                       "\"string\",\"example\":\"24h\"},\"max_uses\":{\"type\":\"integer\"}}}"},
    {"JoinToken", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":"
                  "{\"type\":\"string\"},\"prefix\":{\"type\":\"string\"},\"cluster_id\":{"
                  "\"type\":\"integer\",\"nullable\":true},\"expires_at\":{\"type\":\"string\","
                  "\"nullable\":true},\"max_uses\":{\"type\":\"integer\",\"nullable\":true},"
                  "\"use_count\":{\"type\":\"integer\"},\"state\":{\"type\":\"string\"}}}"},
    {"JoinTokenCreated", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},"
                         "\"token\":{\"type\":\"string\"},\"expires_at\":{\"type\":\"string\","
                         "\"nullable\":true}}}"},
    {"UserInput", "{\"type\":\"object\",\"required\":[\"name\",\"role\"],\"properties\":{"
                  "\"name\":{\"type\":\"string\"},\"role\":{\"type\":\"string\",\"enum\":["
                  "\"admin\",\"read-only\"]}}}"},
    {"User", "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":{"
             "\"type\":\"string\"},\"role\":{\"type\":\"string\"}}}"},
    {"PersonalAccessTokenInput",
     "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"user_id\":{\"type\":"
     "\"integer\"},\"write\":{\"type\":\"boolean\"},\"expires_in\":{\"type\":\"string\"}}}"},
    {"PersonalAccessToken",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"user_id\":{\"type\":"
     "\"integer\"},\"name\":{\"type\":\"string\"},\"prefix\":{\"type\":\"string\"},\"scopes\":{"
     "\"type\":\"string\"},\"state\":{\"type\":\"string\"}}}"},
    {"Swarm",
     "{\"type\":\"object\",\"properties\":{\"task_id\":{\"type\":\"string\"},\"cluster_id\":{"
     "\"type\":\"integer\"},\"scheduler\":{\"type\":\"string\"},\"truncated\":{\"type\":"
     "\"boolean\"},\"piece_count\":{\"type\":\"integer\"},\"piece_length\":{\"type\":"
     "\"integer\"},\"content_length\":{\"type\":\"integer\"},\"source\":{\"type\":"
     "\"string\"},\"peers\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
     "\"properties\":{\"host_id\":{\"type\":\"string\"},\"state\":{\"type\":\"string\"},"
     "\"finished_count\":{\"type\":\"integer\"},\"seed\":{\"type\":\"boolean\"},"
     "\"parents\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"received\":{"
     "\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"from\":{"
     "\"type\":\"string\"},\"bytes\":{\"type\":\"integer\"}}}}}}}}}"},
    {"JobInput",
     "{\"type\":\"object\",\"required\":[\"args\"],\"properties\":{\"type\":{\"type\":"
     "\"string\",\"enum\":[\"preheat\"]},\"args\":{\"type\":\"object\",\"properties\":{"
     "\"type\":{\"type\":\"string\",\"enum\":[\"image\",\"file\"]},\"url\":{\"type\":"
     "\"string\"},\"urls\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
     "\"platform\":{\"type\":\"string\",\"example\":\"linux/amd64\"},\"scope\":{\"type\":"
     "\"string\",\"enum\":[\"single_seed_peer\",\"all_seed_peers\",\"all_peers\"]},"
     "\"tag\":{\"type\":\"string\"},\"headers\":{\"type\":\"object\"},\"username\":{"
     "\"type\":\"string\"},\"password\":{\"type\":\"string\"},\"concurrent_count\":{"
     "\"type\":\"integer\"},\"timeout\":{\"type\":\"integer\",\"description\":"
     "\"nanoseconds\"}}},\"scheduler_cluster_ids\":{\"type\":\"array\",\"nullable\":true,"
     "\"items\":{\"type\":\"integer\"}}}}"},
    {"Job",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"type\":{"
     "\"type\":\"string\"},\"state\":{\"type\":\"string\",\"enum\":[\"pending\","
     "\"running\",\"success\",\"failure\",\"cancelled\"]},\"args\":{\"type\":\"object\"},"
     "\"scheduler_cluster_ids\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}},"
     "\"created_by\":{\"type\":\"string\"},\"created_at\":{\"type\":\"string\"},"
     "\"updated_at\":{\"type\":\"string\"},\"started_at\":{\"type\":\"string\","
     "\"nullable\":true},\"finished_at\":{\"type\":\"string\",\"nullable\":true},"
     "\"worker\":{\"type\":\"string\"},\"attempt\":{\"type\":\"integer\"},\"error\":{"
     "\"type\":\"string\",\"nullable\":true},\"images\":{\"type\":\"array\"},"
     "\"progress\":{\"type\":\"object\"},\"blobs\":{\"type\":\"array\",\"description\":"
     "\"one job only: url, digest, content_length, state, hosts[host, ip, cluster_id, state, "
     "bytes_done, attempts, description]\"}}}"},
    {"PersonalAccessTokenCreated",
     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"token\":{\"type\":"
     "\"string\"},\"scopes\":{\"type\":\"string\"}}}"},
};

static json_t *s_ref (const char *name)
{
    char ref[128];
    snprintf (ref, sizeof ref, "#/components/schemas/%s", name);
    return json_pack ("{s:s}", "$ref", ref);
}

static json_t *s_content (json_t *schema)
{
    return json_pack ("{s:{s:o}}", "application/json", "schema", schema);
}

static json_t *s_response_schema (const char *response)
{
    if (strncmp (response, "page:", 5) != 0)
        return s_ref (response);
    return json_pack ("{s:s, s:{s:{s:s, s:o}, s:{s:s}, s:{s:s}, s:{s:s}}}", "type", "object",
                      "properties", "items", "type", "array", "items", s_ref (response + 5), "page",
                      "type", "integer", "per_page", "type", "integer", "total", "type", "integer");
}

static json_t *s_operation (const s_operation_t *operation)
{
    json_t *responses = json_object ();
    const char *ok =
        operation->response ? (streq (operation->method, "post") ? "201" : "200") : "204";
    json_t *success = json_pack ("{s:s}", "description", "success");
    if (operation->response)
        json_object_set_new (success, "content",
                             s_content (s_response_schema (operation->response)));
    json_object_set_new (responses, ok, success);
    static const char *const errors[][2] = {
        {"400", "invalid request"},
        {"401", "no valid bearer token"},
        {"403", "the token may not write"},
        {"404", "no such resource"},
        {"409", "conflicts with the current state"},
        {"503", "the database failed"},
    };
    for (size_t index = 0; index < ZF_ARRAY_LEN (errors); index++)
        json_object_set_new (responses, errors[index][0],
                             json_pack ("{s:s, s:o}", "description", errors[index][1], "content",
                                        s_content (s_ref ("Error"))));
    json_t *op = json_pack ("{s:s, s:o, s:[{s:[]}]}", "summary", operation->summary, "responses",
                            responses, "security", "bearer");
    json_t *parameters = json_array ();
    if (strstr (operation->path, "{id}"))
        json_array_append_new (parameters,
                               json_pack ("{s:s, s:s, s:b, s:{s:s}}", "name", "id", "in", "path",
                                          "required", 1, "schema", "type", "integer"));
    if (operation->paged) {
        json_array_append_new (parameters,
                               json_pack ("{s:s, s:s, s:{s:s, s:i}}", "name", "page", "in", "query",
                                          "schema", "type", "integer", "minimum", 1));
        json_array_append_new (parameters,
                               json_pack ("{s:s, s:s, s:{s:s, s:i, s:i}}", "name", "per_page", "in",
                                          "query", "schema", "type", "integer", "minimum", 1,
                                          "maximum", ZF_REST_PER_PAGE_MAX));
    }
    if (json_array_size (parameters))
        json_object_set (op, "parameters", parameters);
    json_decref (parameters);
    if (operation->body)
        json_object_set_new (op, "requestBody",
                             json_pack ("{s:b, s:o}", "required", 1, "content",
                                        s_content (s_ref (operation->body))));
    json_object_set_new (op, "x-zfly-access", json_string (operation->write ? "write" : "read"));
    return op;
}

static json_t *s_document (void)
{
    json_t *paths = json_object ();
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_operations); index++) {
        const s_operation_t *operation = &s_operations[index];
        json_t *path = json_object_get (paths, operation->path);
        if (!path) {
            path = json_object ();
            json_object_set_new (paths, operation->path, path);
        }
        json_object_set_new (path, operation->method, s_operation (operation));
    }
    json_t *schemas = json_object ();
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_schemas); index++) {
        json_t *schema = json_loads (s_schemas[index].json, 0, NULL);
        ZF_ASSERT (schema); //  a typo in the table above
        json_object_set_new (schemas, s_schemas[index].name, schema);
    }
    return json_pack ("{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:o, s:{s:{s:s, s:s}}}}", "openapi",
                      "3.0.3", "info", "title", "zfly manager API", "version", "1", "description",
                      "Clusters, nodes that join, credentials. Bearer personal access tokens "
                      "(zfly manager init makes the first); JSON errors {code, message}.",
                      "paths", paths, "components", "schemas", schemas, "securitySchemes", "bearer",
                      "type", "http", "scheme", "bearer");
}

static void s_openapi (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    zf_rest_reply_json (request, 200, s_document ());
}

void zf_manager_openapi_register (zf_rest_t *rest, zf_manager_t *manager)
{
    zf_rest_route (rest, "GET", "/api/v1/openapi.json", ZF_REST_PUBLIC, s_openapi, manager);
}
