/*  zf_manager_input.h — request bodies of the manager's API, parsed and checked (pure: no
    database, fuzzed by tests/fuzz/fuzz_api_json.c), and the scope values they carry. */
#ifndef ZF_MANAGER_INPUT_H_INCLUDED
#define ZF_MANAGER_INPUT_H_INCLUDED

#include "zf_error.h"
#include <jansson.h>

//  A cluster body (create: name required; update: every field optional). Unknown fields are
//  refused; read-only ones a client sends back from a GET (id, created_at, …) are ignored.
typedef struct {
    char *name, *description;
    bool has_name, has_description, has_default, has_scopes, has_config;
    bool is_default;
    char *scope_idc, *scope_location; //  '|'-separated
    char *scope_cidrs;                //  JSON array text
    char *scope_hostnames;            //  JSON array text
    char *client_config;              //  JSON object text
} zf_cluster_input_t;
zf_status_t zf_cluster_input_parse (json_t *body, bool create, zf_cluster_input_t *input,
                                    zf_error_t *err);
void zf_cluster_input_clear (zf_cluster_input_t *input);

//  A join token body: {"name": "", "cluster_id": 0, "expires_in": "24h", "max_uses": 0}.
//  A personal access token body: {"name": "", "user_id": 0, "write": false,
//  "expires_in": "90d"}. A user body: {"name": "...", "role": "admin" | "read-only"}.
typedef struct {
    char *name;
    int64_t cluster_id; //  join tokens
    int64_t user_id;    //  personal access tokens; 0: the caller
    int64_t expires_in_ms;
    int64_t max_uses;
    bool write;
    bool admin; //  users
} zf_token_input_t;
zf_status_t zf_join_token_input_parse (json_t *body, zf_token_input_t *input, zf_error_t *err);
zf_status_t zf_pat_input_parse (json_t *body, zf_token_input_t *input, zf_error_t *err);
zf_status_t zf_user_input_parse (json_t *body, zf_token_input_t *input, zf_error_t *err);
void zf_token_input_clear (zf_token_input_t *input);

//  Scope values: a CIDR ("10.0.0.0/8", "fd00::/8") and a hostname regex (POSIX extended).
typedef struct {
    int family;
    uint8_t bytes[16];
    int prefix;
} zf_network_t;
bool zf_search_parse_address (const char *text, int *family, uint8_t *bytes);
bool zf_search_parse_cidr (const char *cidr, zf_network_t *network);
bool zf_search_in_network (const zf_network_t *network, int family, const uint8_t *bytes);
bool zf_search_cidr_valid (const char *cidr);

#endif
