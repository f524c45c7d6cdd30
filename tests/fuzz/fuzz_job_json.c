/*  fuzz_job_json.c — preheat job bodies (actors/manager/zf_jobs_input.c) on arbitrary bytes:
    parsed as JSON the way zf_rest does (duplicates refused), then checked as Dragonfly's job
    body (POST /api/v1/jobs, Harbor's POST /oapi/v1/jobs) and as Harbor's legacy one (POST
    /preheats). An accepted body must come out whole: at least one URL of printable text, a
    type, a scope, a platform an image job can use, cluster ids and concurrency in range, and
    what the manager stores (args, sealed secrets, cluster ids) must be JSON that parses again
    with no secret in args. A refused one must say which field. Crashes, sanitizer reports and
    leaks fail. */
#include "../../actors/manager/zf_jobs_input.h"
#include "../../actors/preheat/zf_manifest.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static json_t *s_reparse (const char *text)
{
    ZF_ASSERT (text);
    json_t *value = json_loads (text, 0, NULL);
    ZF_ASSERT (value);
    return value;
}

static void s_check (const zf_job_input_t *input)
{
    ZF_ASSERT (input->type && (streq (input->type, "image") || streq (input->type, "file")));
    ZF_ASSERT (input->url_count >= 1 && input->url_count <= ZF_JOB_URLS_MAX);
    for (size_t index = 0; index < input->url_count; index++)
        ZF_ASSERT (input->urls[index] && *input->urls[index]
                   && strlen (input->urls[index]) <= ZF_JOB_URL_MAX);
    ZF_ASSERT (input->scope && *input->scope);
    if (streq (input->type, "image"))
        ZF_ASSERT (input->platform && zf_platform_valid (input->platform));
    ZF_ASSERT (input->cluster_count <= ZF_JOB_CLUSTERS_MAX);
    for (size_t index = 0; index < input->cluster_count; index++)
        ZF_ASSERT (input->cluster_ids[index] > 0);
    ZF_ASSERT (input->concurrency >= 0 && input->concurrency <= ZF_JOB_CONCURRENCY_MAX);
    ZF_ASSERT (input->timeout_ms >= 0);
    ZF_ASSERT (!input->password || input->username);

    json_t *args = zf_job_input_args (input);
    ZF_ASSERT (json_is_object (args));
    char *args_text = json_dumps (args, JSON_COMPACT);
    json_decref (args);
    json_t *reparsed = s_reparse (args_text);
    //  the secrets stay out of what the API shows
    ZF_ASSERT (!json_object_get (reparsed, "password") && !json_object_get (reparsed, "headers"));
    json_decref (reparsed);
    free (args_text);
    char *secrets = zf_job_input_secrets (input);
    if (secrets) {
        json_t *value = s_reparse (secrets);
        ZF_ASSERT (json_is_object (value));
        json_decref (value);
        free (secrets);
    } else
        ZF_ASSERT (!input->headers && !input->username);
    char *clusters = zf_job_input_cluster_ids (input);
    json_t *list = s_reparse (clusters);
    ZF_ASSERT (json_is_array (list) && json_array_size (list) == input->cluster_count);
    json_decref (list);
    free (clusters);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    json_t *body = json_loadb ((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!body)
        return 0;
    zf_status_t (*parsers[]) (json_t *, zf_job_input_t *,
                              zf_error_t *) = {zf_job_input_parse, zf_job_input_parse_legacy};
    for (size_t index = 0; index < ZF_ARRAY_LEN (parsers); index++) {
        zf_job_input_t input;
        zf_error_t err;
        if (parsers[index](body, &input, &err) == ZF_OK) {
            s_check (&input);
            zf_job_input_clear (&input);
        } else
            ZF_ASSERT (*err.message);
    }
    json_decref (body);
    return 0;
}
