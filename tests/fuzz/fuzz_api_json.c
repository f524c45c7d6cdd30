/*  fuzz_api_json.c — the manager API's request bodies (actors/manager/zf_manager_input.c) on
    arbitrary bytes: parsed as JSON the way zf_rest does (duplicates refused, an object
    required), then checked as a cluster (create and update), a join token, a personal access
    token and a user. An accepted body must come out with well-formed values (its JSON texts
    parse again, names within bounds); a refused one must say which field. Crashes, sanitizer
    reports and leaks fail. */
#include "../../actors/manager/zf_manager_input.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void s_check_json_text (const char *text, bool array)
{
    if (!text)
        return;
    json_t *value = json_loads (text, 0, NULL);
    ZF_ASSERT (value && (array ? json_is_array (value) : json_is_object (value)));
    json_decref (value);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    json_t *body = json_loadb ((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object (body)) {
        json_decref (body);
        return 0;
    }
    zf_error_t err;
    for (int create = 0; create < 2; create++) {
        zf_cluster_input_t cluster;
        if (zf_cluster_input_parse (body, create, &cluster, &err) == ZF_OK) {
            ZF_ASSERT (!create || (cluster.name && *cluster.name && strlen (cluster.name) <= 128));
            s_check_json_text (cluster.scope_cidrs, true);
            s_check_json_text (cluster.scope_hostnames, true);
            s_check_json_text (cluster.client_config, false);
            zf_cluster_input_clear (&cluster);
        } else
            ZF_ASSERT (*err.message && *err.where);
    }
    zf_status_t (*parsers[]) (json_t *, zf_token_input_t *, zf_error_t *) = {
        zf_join_token_input_parse, zf_pat_input_parse, zf_user_input_parse};
    for (size_t index = 0; index < ZF_ARRAY_LEN (parsers); index++) {
        zf_token_input_t input;
        if (parsers[index](body, &input, &err) == ZF_OK) {
            ZF_ASSERT (input.name && strlen (input.name) <= 128);
            ZF_ASSERT (input.expires_in_ms >= 0 && input.max_uses >= 0);
            zf_token_input_clear (&input);
        } else
            ZF_ASSERT (*err.message);
    }
    json_decref (body);
    return 0;
}
