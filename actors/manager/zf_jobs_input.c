/*  zf_jobs_input.c — preheat job bodies: Dragonfly's (the API, Harbor) and Harbor's legacy. */
#include "zf_jobs_input.h"
#include "../preheat/zf_manifest.h"
#include "zf_secret.h"

#define S_STRING_MAX   8192
#define S_NAME_MAX     256
#define S_PASSWORD_MAX 1024
#define S_NS_PER_MS    INT64_C (1000000)

static zf_status_t s_string (json_t *object, const char *key, size_t max, bool required,
                             const char *path, char **value, zf_error_t *err)
{
    json_t *item = json_object_get (object, key);
    if (!item || json_is_null (item)) {
        if (required)
            return zf_error_set (err, ZF_E_MISSING, path, "%s is required", path);
        return ZF_OK;
    }
    if (!json_is_string (item))
        return zf_error_set (err, ZF_E_INVALID, path, "%s must be a string", path);
    if (json_string_length (item) > max)
        return zf_error_set (err, ZF_E_INVALID, path, "%s is longer than %zu bytes", path, max);
    if (strlen (json_string_value (item)) != json_string_length (item))
        return zf_error_set (err, ZF_E_INVALID, path, "%s has a NUL byte", path);
    zf_free (*value);
    *value = zf_strdup (json_string_value (item));
    return ZF_OK;
}

//  Printable ASCII without blanks: what a URL or reference may hold.
static bool s_url_text_valid (const char *text)
{
    if (!*text)
        return false;
    for (const char *cursor = text; *cursor; cursor++)
        if ((unsigned char) *cursor <= ' ' || (unsigned char) *cursor >= 0x7f)
            return false;
    return true;
}

static zf_status_t s_add_url (zf_job_input_t *input, json_t *item, const char *path,
                              zf_error_t *err)
{
    if (!json_is_string (item) || !s_url_text_valid (json_string_value (item))
        || strlen (json_string_value (item)) != json_string_length (item))
        return zf_error_set (err, ZF_E_INVALID, path,
                             "%s must be a URL or image reference without blanks", path);
    if (json_string_length (item) > ZF_JOB_URL_MAX)
        return zf_error_set (err, ZF_E_INVALID, path, "%s is longer than %d bytes", path,
                             ZF_JOB_URL_MAX);
    if (input->url_count == ZF_JOB_URLS_MAX)
        return zf_error_set (err, ZF_E_INVALID, path, "a job holds at most %d URLs",
                             ZF_JOB_URLS_MAX);
    input->urls[input->url_count++] = zf_strdup (json_string_value (item));
    return ZF_OK;
}

static zf_status_t s_headers (json_t *object, const char *path, zf_job_input_t *input,
                              zf_error_t *err)
{
    json_t *headers = json_object_get (object, "headers");
    if (!headers || json_is_null (headers))
        return ZF_OK;
    if (!json_is_object (headers))
        return zf_error_set (err, ZF_E_INVALID, path, "%s must be an object of strings", path);
    if (json_object_size (headers) > ZF_JOB_HEADERS_MAX)
        return zf_error_set (err, ZF_E_INVALID, path, "%s has more than %d entries", path,
                             ZF_JOB_HEADERS_MAX);
    input->headers = json_object ();
    const char *name;
    json_t *value;
    json_object_foreach (headers, name, value)
    {
        bool name_ok = *name && strlen (name) <= S_NAME_MAX;
        for (const char *cursor = name; name_ok && *cursor; cursor++)
            name_ok =
                (unsigned char) *cursor > ' ' && (unsigned char) *cursor < 0x7f && *cursor != ':';
        if (!name_ok)
            return zf_error_set (err, ZF_E_INVALID, path,
                                 "%s: a header name must be a printable word without ':'", path);
        if (!json_is_string (value))
            return zf_error_set (err, ZF_E_INVALID, path, "%s.%s must be a string", path, name);
        const char *text = json_string_value (value);
        if (json_string_length (value) > S_STRING_MAX || strlen (text) != json_string_length (value)
            || strpbrk (text, "\r\n"))
            return zf_error_set (err, ZF_E_INVALID, path,
                                 "%s.%s must be one line of at most %d bytes", path, name,
                                 S_STRING_MAX);
        json_object_set (input->headers, name, value);
    }
    return ZF_OK;
}

static zf_status_t s_scope (zf_job_input_t *input, const char *path, zf_error_t *err)
{
    if (!input->scope || !*input->scope || streq (input->scope, "single_peer")) {
        zf_free (input->scope);
        input->scope = zf_strdup ("single_seed_peer"); //  Harbor's UI default; 2.12's word
        return ZF_OK;
    }
    if (streq (input->scope, "single_seed_peer") || streq (input->scope, "all_seed_peers")
        || streq (input->scope, "all_peers"))
        return ZF_OK;
    return zf_error_set (err, ZF_E_INVALID, path,
                         "%s must be single_seed_peer, all_seed_peers or all_peers", path);
}

static zf_status_t s_cluster_ids (json_t *list, const char *path, zf_job_input_t *input,
                                  zf_error_t *err)
{
    if (!list || json_is_null (list))
        return ZF_OK;
    if (!json_is_array (list) || json_array_size (list) > ZF_JOB_CLUSTERS_MAX)
        return zf_error_set (err, ZF_E_INVALID, path,
                             "%s must be a list of at most %d cluster ids (or null: all)", path,
                             ZF_JOB_CLUSTERS_MAX);
    size_t index;
    json_t *item;
    json_array_foreach (list, index, item)
    {
        if (!json_is_integer (item) || json_integer_value (item) < 1)
            return zf_error_set (err, ZF_E_INVALID, path, "%s[%zu] must be a positive integer",
                                 path, index);
        input->cluster_ids[input->cluster_count++] = json_integer_value (item);
    }
    return ZF_OK;
}

static zf_status_t s_integer (json_t *object, const char *key, int64_t max, const char *path,
                              int64_t *value, zf_error_t *err)
{
    json_t *item = json_object_get (object, key);
    if (!item || json_is_null (item))
        return ZF_OK;
    if (!json_is_integer (item) || json_integer_value (item) < 0 || json_integer_value (item) > max)
        return zf_error_set (err, ZF_E_INVALID, path, "%s must be a whole number 0..%" PRId64, path,
                             max);
    *value = json_integer_value (item);
    return ZF_OK;
}

//  What both bodies check once they are read.
static zf_status_t s_check (zf_job_input_t *input, zf_error_t *err)
{
    if (!streq (input->type, "image") && !streq (input->type, "file"))
        return zf_error_set (err, ZF_E_INVALID, "args.type", "args.type must be image or file");
    if (input->url_count == 0)
        return zf_error_set (err, ZF_E_MISSING, "args.url", "args.url (or args.urls) is required");
    bool image = streq (input->type, "image");
    for (size_t index = 0; index < input->url_count; index++)
        if (!image && strncmp (input->urls[index], "http://", 7) != 0
            && strncmp (input->urls[index], "https://", 8) != 0)
            return zf_error_set (err, ZF_E_INVALID, "args.urls",
                                 "a file job's URLs must be http:// or https:// (got '%.100s')",
                                 input->urls[index]);
    if (!input->platform || !*input->platform) {
        zf_free (input->platform);
        input->platform = zf_strdup (image ? "linux/amd64" : "");
    } else if (!image)
        return zf_error_set (err, ZF_E_INVALID, "args.platform", "args.platform is for image jobs");
    else if (!zf_platform_valid (input->platform))
        return zf_error_set (err, ZF_E_INVALID, "args.platform",
                             "args.platform must be os/arch[/variant] (linux/amd64) or all");
    if (input->password && !input->username)
        return zf_error_set (err, ZF_E_INVALID, "args.password",
                             "args.password needs args.username");
    return s_scope (input, "args.scope", err);
}

zf_status_t zf_job_input_parse (json_t *body, zf_job_input_t *input, zf_error_t *err)
{
    memset (input, 0, sizeof *input);
    if (!json_is_object (body))
        return zf_error_set (err, ZF_E_INVALID, "", "the body must be a JSON object");
    char *kind = NULL;
    zf_status_t status = s_string (body, "type", 32, false, "type", &kind, err);
    bool preheat = !kind || streq (kind, "preheat");
    zf_free (kind);
    if (status != ZF_OK)
        return status;
    if (!preheat)
        return zf_error_set (err, ZF_E_INVALID, "type", "type must be preheat");
    json_t *args = json_object_get (body, "args");
    if (!json_is_object (args))
        return zf_error_set (err, ZF_E_MISSING, "args", "args must be an object");
    status = s_string (args, "type", 16, false, "args.type", &input->type, err);
    if (status == ZF_OK && (!input->type || !*input->type)) {
        zf_free (input->type);
        input->type = zf_strdup ("image");
    }
    json_t *url = json_object_get (args, "url");
    json_t *urls = json_object_get (args, "urls");
    bool has_url =
        url && !json_is_null (url) && !(json_is_string (url) && !json_string_length (url));
    bool has_urls = urls && !json_is_null (urls);
    if (status == ZF_OK && has_url && has_urls)
        status =
            zf_error_set (err, ZF_E_INVALID, "args.urls", "give args.url or args.urls, not both");
    if (status == ZF_OK && has_url)
        status = s_add_url (input, url, "args.url", err);
    if (status == ZF_OK && has_urls && !json_is_array (urls))
        status = zf_error_set (err, ZF_E_INVALID, "args.urls", "args.urls must be a list");
    for (size_t index = 0; status == ZF_OK && has_urls && index < json_array_size (urls); index++)
        status = s_add_url (input, json_array_get (urls, index), "args.urls", err);
    if (status == ZF_OK)
        status = s_string (args, "platform", 96, false, "args.platform", &input->platform, err);
    if (status == ZF_OK)
        status = s_string (args, "scope", 32, false, "args.scope", &input->scope, err);
    if (status == ZF_OK)
        status = s_string (args, "tag", S_NAME_MAX, false, "args.tag", &input->tag, err);
    if (status == ZF_OK)
        status =
            s_string (args, "username", S_NAME_MAX, false, "args.username", &input->username, err);
    if (status == ZF_OK)
        status = s_string (args, "password", S_PASSWORD_MAX, false, "args.password",
                           &input->password, err);
    if (status == ZF_OK)
        status = s_headers (args, "args.headers", input, err);
    if (status == ZF_OK)
        status = s_integer (args, "concurrent_count", ZF_JOB_CONCURRENCY_MAX,
                            "args.concurrent_count", &input->concurrency, err);
    int64_t timeout_ns = 0;
    if (status == ZF_OK)
        status = s_integer (args, "timeout", INT64_C (2592000000000000), "args.timeout",
                            &timeout_ns, err);
    input->timeout_ms = timeout_ns > 0 ? (timeout_ns + S_NS_PER_MS - 1) / S_NS_PER_MS : 0;
    if (status == ZF_OK)
        status = s_cluster_ids (json_object_get (body, "scheduler_cluster_ids"),
                                "scheduler_cluster_ids", input, err);
    if (status == ZF_OK)
        status = s_check (input, err);
    if (status != ZF_OK)
        zf_job_input_clear (input);
    return status;
}

zf_status_t zf_job_input_parse_legacy (json_t *body, zf_job_input_t *input, zf_error_t *err)
{
    memset (input, 0, sizeof *input);
    if (!json_is_object (body))
        return zf_error_set (err, ZF_E_INVALID, "", "the body must be a JSON object");
    zf_status_t status = s_string (body, "type", 16, true, "type", &input->type, err);
    if (status == ZF_OK && !streq (input->type, "image"))
        status = zf_error_set (err, ZF_E_INVALID, "type", "type must be image");
    json_t *url = json_object_get (body, "url");
    if (status == ZF_OK && !url)
        status = zf_error_set (err, ZF_E_MISSING, "url", "url is required");
    if (status == ZF_OK)
        status = s_add_url (input, url, "url", err);
    if (status == ZF_OK)
        status = s_headers (body, "headers", input, err);
    //  image, tag and digest repeat what the URL says; the digest is checked if given.
    char *digest = NULL;
    if (status == ZF_OK)
        status = s_string (body, "digest", 80, false, "digest", &digest, err);
    if (status == ZF_OK && digest && *digest && !zf_task_digest_valid (digest))
        status = zf_error_set (err, ZF_E_INVALID, "digest", "digest must be sha256:<64 hex>");
    zf_free (digest);
    json_t *extra = json_object_get (body, "extra_attrs");
    if (status == ZF_OK && json_is_object (extra)) {
        status = s_string (extra, "scope", 32, false, "extra_attrs.scope", &input->scope, err);
        if (status == ZF_OK)
            status = s_cluster_ids (json_object_get (extra, "cluster_ids"),
                                    "extra_attrs.cluster_ids", input, err);
    }
    if (status == ZF_OK)
        status = s_check (input, err);
    if (status != ZF_OK)
        zf_job_input_clear (input);
    return status;
}

void zf_job_input_clear (zf_job_input_t *input)
{
    zf_free (input->type);
    for (size_t index = 0; index < input->url_count; index++)
        zf_free (input->urls[index]);
    zf_free (input->platform);
    zf_free (input->scope);
    zf_free (input->tag);
    json_decref (input->headers);
    zf_free (input->username);
    zf_secret_free (input->password);
    memset (input, 0, sizeof *input);
}

json_t *zf_job_input_args (const zf_job_input_t *input)
{
    json_t *urls = json_array ();
    for (size_t index = 0; index < input->url_count; index++)
        json_array_append_new (urls, json_string (input->urls[index]));
    json_t *names = json_array ();
    const char *name;
    json_t *value;
    json_object_foreach (input->headers, name, value)
        json_array_append_new (names, json_string (name));
    return json_pack ("{s:s, s:o, s:s, s:s, s:s, s:I, s:I, s:o, s:b}", "type", input->type, "urls",
                      urls, "platform", input->platform ? input->platform : "", "scope",
                      input->scope, "tag", input->tag ? input->tag : "", "concurrent_count",
                      (json_int_t) input->concurrency, "timeout",
                      (json_int_t) (input->timeout_ms * S_NS_PER_MS), "header_names", names,
                      "credentials", input->username != NULL);
}

char *zf_job_input_secrets (const zf_job_input_t *input)
{
    if (!input->headers && !input->username)
        return NULL;
    json_t *secrets = json_object ();
    if (input->headers)
        json_object_set (secrets, "headers", input->headers);
    if (input->username)
        json_object_set_new (secrets, "username", json_string (input->username));
    if (input->password)
        json_object_set_new (secrets, "password", json_string (input->password));
    char *text = json_dumps (secrets, JSON_COMPACT);
    json_decref (secrets);
    ZF_ASSERT (text);
    return text;
}

char *zf_job_input_cluster_ids (const zf_job_input_t *input)
{
    json_t *list = json_array ();
    for (size_t index = 0; index < input->cluster_count; index++)
        json_array_append_new (list, json_integer ((json_int_t) input->cluster_ids[index]));
    char *text = json_dumps (list, JSON_COMPACT);
    json_decref (list);
    ZF_ASSERT (text);
    return text;
}
