/*  zf_manifest.c — image references, manifests, indexes, challenges: the registry's bytes. */
#include "zf_manifest.h"
#include <jansson.h>
#include <openssl/evp.h>

#define S_SIZE_MAX  (UINT64_C (1) << 53) //  JSON numbers are exact up to here
#define S_TOKEN_MAX (16 * 1024)

//  ---------------------------------------------------------------------------------------------
//  Image references

static bool s_repository_valid (const char *repository)
{
    //  distribution's grammar, loosely: lowercase alphanumerics separated by '.', '_', '__',
    //  '-'+ and '/'; what matters here is that nothing else gets into a URL path.
    if (!*repository || *repository == '/' || repository[strlen (repository) - 1] == '/')
        return false;
    for (const char *cursor = repository; *cursor; cursor++) {
        char c = *cursor;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'
                  || c == '-' || c == '/';
        if (!ok || (c == '/' && cursor[1] == '/'))
            return false;
    }
    return !strstr (repository, "..");
}

static bool s_tag_valid (const char *tag)
{
    size_t length = strlen (tag);
    if (length == 0 || length > 128 || *tag == '.' || *tag == '-')
        return false;
    for (const char *cursor = tag; *cursor; cursor++) {
        char c = *cursor;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
              || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool s_host_valid (const char *host)
{
    if (!*host)
        return false;
    for (const char *cursor = host; *cursor; cursor++) {
        char c = *cursor;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
              || c == '-' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return true;
}

static bool s_reference_valid (const char *reference)
{
    return zf_task_digest_valid (reference) || s_tag_valid (reference);
}

static zf_status_t s_ref_check (zf_image_ref_t *ref, const char *text, zf_error_t *err)
{
    if (streq (ref->host, "docker.io") || streq (ref->host, "index.docker.io"))
        zf_strlcpy (ref->host, "registry-1.docker.io", sizeof ref->host);
    if (!s_host_valid (ref->host))
        return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s': '%.100s' is not a registry host",
                             text, ref->host);
    if (!s_repository_valid (ref->repository))
        return zf_error_set (err, ZF_E_INVALID, "url",
                             "'%.200s': '%.100s' is not a repository name (lowercase letters, "
                             "digits, '.', '_', '-', '/')",
                             text, ref->repository);
    if (!s_reference_valid (ref->reference))
        return zf_error_set (err, ZF_E_INVALID, "url",
                             "'%.200s': '%.100s' is neither a tag nor a sha256 digest", text,
                             ref->reference);
    return ZF_OK;
}

//  Copies [start, end) into buffer; false when it does not fit.
static bool s_copy_span (char *buffer, size_t size, const char *start, const char *end)
{
    size_t length = (size_t) (end - start);
    if (length >= size)
        return false;
    memcpy (buffer, start, length);
    buffer[length] = '\0';
    return true;
}

static zf_status_t s_parse_url (const char *text, zf_image_ref_t *ref, zf_error_t *err)
{
    const char *rest = NULL;
    if (strncmp (text, "https://", 8) == 0) {
        zf_strlcpy (ref->scheme, "https", sizeof ref->scheme);
        rest = text + 8;
    } else {
        zf_strlcpy (ref->scheme, "http", sizeof ref->scheme);
        rest = text + 7;
    }
    const char *slash = strchr (rest, '/');
    if (!slash || !s_copy_span (ref->host, sizeof ref->host, rest, slash))
        return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s': no host and path", text);
    const char *path = slash;
    const char *path_end = path + strcspn (path, "?#");
    if (strncmp (path, "/v2/", 4) != 0)
        return zf_error_set (err, ZF_E_INVALID, "url",
                             "'%.200s': a manifest URL is http(s)://HOST/v2/REPO/manifests/REF",
                             text);
    //  Repository names contain slashes: the last "/manifests/" splits.
    const char *marker = NULL;
    for (const char *found = strstr (path, "/manifests/"); found && found < path_end;
         found = strstr (found + 1, "/manifests/"))
        marker = found;
    if (!marker || marker <= path + 3)
        return zf_error_set (err, ZF_E_INVALID, "url",
                             "'%.200s': a manifest URL is http(s)://HOST/v2/REPO/manifests/REF",
                             text);
    if (!s_copy_span (ref->repository, sizeof ref->repository, path + 4, marker)
        || !s_copy_span (ref->reference, sizeof ref->reference, marker + 11, path_end))
        return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s': name or reference too long",
                             text);
    return s_ref_check (ref, text, err);
}

static zf_status_t s_parse_reference (const char *text, const char *scheme, zf_image_ref_t *ref,
                                      zf_error_t *err)
{
    zf_strlcpy (ref->scheme, scheme && streq (scheme, "http") ? "http" : "https",
                sizeof ref->scheme);
    char name[600];
    if (strlen (text) >= sizeof name)
        return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s…': reference too long", text);
    zf_strlcpy (name, text, sizeof name);
    char *at = strchr (name, '@');
    if (at) {
        *at = '\0';
        if (strlen (at + 1) >= sizeof ref->reference)
            return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s': digest too long", text);
        zf_strlcpy (ref->reference, at + 1, sizeof ref->reference);
    }
    //  The first segment is a host when it looks like one (a dot, a port, localhost).
    char *slash = strchr (name, '/');
    const char *path = name;
    if (slash) {
        *slash = '\0';
        if (strchr (name, '.') || strchr (name, ':') || streq (name, "localhost")) {
            if (strlen (name) >= sizeof ref->host)
                return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s': host too long", text);
            zf_strlcpy (ref->host, name, sizeof ref->host);
            path = slash + 1;
        } else {
            *slash = '/';
            zf_strlcpy (ref->host, "registry-1.docker.io", sizeof ref->host);
        }
    } else
        zf_strlcpy (ref->host, "registry-1.docker.io", sizeof ref->host);
    //  A tag is after the last ':' of the last segment.
    char repository[sizeof ref->repository];
    if (strlen (path) >= sizeof repository)
        return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s': repository too long", text);
    zf_strlcpy (repository, path, sizeof repository);
    char *last = strrchr (repository, '/');
    char *colon = strrchr (last ? last : repository, ':');
    if (colon) {
        *colon = '\0';
        if (!at)
            zf_strlcpy (ref->reference, colon + 1, sizeof ref->reference);
    }
    if (!at && !colon)
        zf_strlcpy (ref->reference, "latest", sizeof ref->reference);
    bool hub = streq (ref->host, "registry-1.docker.io") || streq (ref->host, "docker.io")
               || streq (ref->host, "index.docker.io");
    if (hub && !strchr (repository, '/')) {
        if (snprintf (ref->repository, sizeof ref->repository, "library/%s", repository)
            >= (int) sizeof ref->repository)
            return zf_error_set (err, ZF_E_INVALID, "url", "'%.200s': repository too long", text);
    } else
        zf_strlcpy (ref->repository, repository, sizeof ref->repository);
    return s_ref_check (ref, text, err);
}

zf_status_t zf_image_ref_parse (const char *text, const char *scheme, zf_image_ref_t *ref,
                                zf_error_t *err)
{
    memset (ref, 0, sizeof *ref);
    if (!text || !*text)
        return zf_error_set (err, ZF_E_INVALID, "url", "no image given");
    if (strncmp (text, "http://", 7) == 0 || strncmp (text, "https://", 8) == 0)
        return s_parse_url (text, ref, err);
    if (strstr (text, "://"))
        return zf_error_set (err, ZF_E_INVALID, "url",
                             "'%.200s': only http:// and https:// registries", text);
    return s_parse_reference (text, scheme, ref, err);
}

char *zf_image_ref_manifest_url (const zf_image_ref_t *ref, const char *reference)
{
    return zf_asprintf ("%s://%s/v2/%s/manifests/%s", ref->scheme, ref->host, ref->repository,
                        reference);
}

char *zf_image_ref_blob_url (const zf_image_ref_t *ref, const char *digest)
{
    return zf_asprintf ("%s://%s/v2/%s/blobs/%s", ref->scheme, ref->host, ref->repository, digest);
}

void zf_image_ref_text (const zf_image_ref_t *ref, char *text, size_t size)
{
    int length = snprintf (text, size, "%s/%s%s%s", ref->host, ref->repository,
                           zf_task_digest_valid (ref->reference) ? "@" : ":", ref->reference);
    ZF_ASSERT (length >= 0); //  a longer name is cut: the text is for people
}

//  ---------------------------------------------------------------------------------------------
//  Manifests

bool zf_media_type_is_index (const char *media_type)
{
    return streq (media_type, ZF_MEDIA_OCI_INDEX) || streq (media_type, ZF_MEDIA_DOCKER_LIST);
}

static bool s_media_type_is_image (const char *media_type)
{
    return streq (media_type, ZF_MEDIA_OCI_MANIFEST) || streq (media_type, ZF_MEDIA_DOCKER_V2);
}

//  The media type from a Content-Type value: parameters and blanks dropped.
static void s_content_type (const char *value, char *media_type, size_t size)
{
    media_type[0] = '\0';
    if (!value)
        return;
    while (*value == ' ')
        value++;
    size_t length = strcspn (value, "; \t");
    if (length < size) {
        memcpy (media_type, value, length);
        media_type[length] = '\0';
    }
}

static bool s_platform_part_valid (const char *part, size_t length)
{
    if (length == 0 || length > 30)
        return false;
    for (size_t index = 0; index < length; index++) {
        char c = part[index];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

//  One descriptor; platform only for index entries.
static zf_status_t s_descriptor (json_t *item, const char *path, bool index_entry,
                                 zf_descriptor_t *descriptor, zf_error_t *err)
{
    if (!json_is_object (item))
        return zf_error_set (err, ZF_E_INVALID, path, "%s is not an object", path);
    const char *digest = json_string_value (json_object_get (item, "digest"));
    if (!digest || !zf_task_digest_valid (digest))
        return zf_error_set (err, ZF_E_INVALID, path,
                             "%s: digest missing or not sha256:<64 lowercase hex>", path);
    zf_strlcpy (descriptor->digest, digest, sizeof descriptor->digest);
    json_t *size = json_object_get (item, "size");
    if (!json_is_integer (size) || json_integer_value (size) < 0
        || (uint64_t) json_integer_value (size) > S_SIZE_MAX)
        return zf_error_set (err, ZF_E_INVALID, path, "%s: size missing or not a whole number",
                             path);
    descriptor->size = (uint64_t) json_integer_value (size);
    json_t *media_type = json_object_get (item, "mediaType");
    if (media_type && !json_is_string (media_type))
        return zf_error_set (err, ZF_E_INVALID, path, "%s: mediaType is not a string", path);
    if (media_type && json_string_length (media_type) >= sizeof descriptor->media_type)
        return zf_error_set (err, ZF_E_INVALID, path, "%s: mediaType too long", path);
    zf_strlcpy (descriptor->media_type, media_type ? json_string_value (media_type) : "",
                sizeof descriptor->media_type);
    json_t *platform = index_entry ? json_object_get (item, "platform") : NULL;
    if (!platform || json_is_null (platform))
        return ZF_OK;
    const char *os = json_string_value (json_object_get (platform, "os"));
    const char *arch = json_string_value (json_object_get (platform, "architecture"));
    const char *variant = json_string_value (json_object_get (platform, "variant"));
    if (!json_is_object (platform) || !os || !arch || !s_platform_part_valid (os, strlen (os))
        || !s_platform_part_valid (arch, strlen (arch))
        || (variant && *variant && !s_platform_part_valid (variant, strlen (variant))))
        return zf_error_set (err, ZF_E_INVALID, path,
                             "%s: platform needs os and architecture (lowercase words)", path);
    snprintf (descriptor->platform, sizeof descriptor->platform, "%s/%s%s%s", os, arch,
              variant && *variant ? "/" : "", variant && *variant ? variant : "");
    return ZF_OK;
}

static zf_status_t s_parse_list (zf_manifest_t *self, json_t *list, const char *name,
                                 bool index_entries, zf_error_t *err)
{
    if (!json_is_array (list))
        return zf_error_set (err, ZF_E_INVALID, name, "%s is missing or not a list", name);
    size_t count = json_array_size (list);
    if (self->count + count > ZF_MANIFEST_ITEMS_MAX)
        return zf_error_set (err, ZF_E_TOO_LARGE, name, "%s has %zu entries (at most %d)", name,
                             count, ZF_MANIFEST_ITEMS_MAX);
    self->items = zf_realloc (self->items, (self->count + count + 1) * sizeof *self->items);
    for (size_t index = 0; index < count; index++) {
        char path[64];
        snprintf (path, sizeof path, "%s[%zu]", name, index);
        zf_descriptor_t *descriptor = &self->items[self->count];
        memset (descriptor, 0, sizeof *descriptor);
        zf_status_t status =
            s_descriptor (json_array_get (list, index), path, index_entries, descriptor, err);
        if (status != ZF_OK)
            return status;
        self->count++;
    }
    return ZF_OK;
}

static zf_status_t s_parse (zf_manifest_t *self, json_t *root, const char *content_type,
                            zf_error_t *err)
{
    if (!json_is_object (root))
        return zf_error_set (err, ZF_E_INVALID, "", "the manifest is not a JSON object");
    json_t *schema_version = json_object_get (root, "schemaVersion");
    if (json_is_integer (schema_version) && json_integer_value (schema_version) == 1)
        return zf_error_set (err, ZF_E_INVALID, "schemaVersion",
                             "Docker schema 1 manifests are not supported (push the image again "
                             "with a current client)");
    json_t *media_type = json_object_get (root, "mediaType");
    if (media_type && !json_is_string (media_type))
        return zf_error_set (err, ZF_E_INVALID, "mediaType", "mediaType is not a string");
    char type[128];
    s_content_type (media_type ? json_string_value (media_type) : content_type, type, sizeof type);
    if (streq (type, ZF_MEDIA_DOCKER_V1) || streq (type, ZF_MEDIA_DOCKER_V1_SIGN))
        return zf_error_set (err, ZF_E_INVALID, "mediaType",
                             "Docker schema 1 manifests are not supported (push the image again "
                             "with a current client)");
    bool index;
    if (zf_media_type_is_index (type))
        index = true;
    else if (s_media_type_is_image (type))
        index = false;
    else if (!*type || streq (type, "application/json")) //  OCI lets mediaType out: the shape says
        index = json_object_get (root, "manifests") != NULL;
    else
        return zf_error_set (err, ZF_E_INVALID, "mediaType",
                             "'%.100s' is not a manifest or index type this worker reads", type);
    self->kind = index ? ZF_MANIFEST_INDEX : ZF_MANIFEST_IMAGE;
    zf_strlcpy (self->media_type,
                *type   ? type
                : index ? ZF_MEDIA_OCI_INDEX
                        : ZF_MEDIA_OCI_MANIFEST,
                sizeof self->media_type);
    if (index)
        return s_parse_list (self, json_object_get (root, "manifests"), "manifests", true, err);
    json_t *config = json_object_get (root, "config");
    if (!config)
        return zf_error_set (err, ZF_E_INVALID, "config", "the image manifest has no config");
    self->items = zf_calloc (1, sizeof *self->items);
    zf_status_t status = s_descriptor (config, "config", false, &self->items[0], err);
    if (status != ZF_OK)
        return status;
    self->count = 1;
    return s_parse_list (self, json_object_get (root, "layers"), "layers", false, err);
}

zf_manifest_t *zf_manifest_parse (const char *body, size_t size, const char *content_type,
                                  zf_error_t *err)
{
    if (size > ZF_MANIFEST_BODY_MAX) {
        zf_error_set (err, ZF_E_TOO_LARGE, "", "the manifest has %zu bytes (at most %d)", size,
                      ZF_MANIFEST_BODY_MAX);
        return NULL;
    }
    json_error_t json_error;
    json_t *root = json_loadb (body, size, JSON_REJECT_DUPLICATES, &json_error);
    if (!root) {
        zf_error_set (err, ZF_E_INVALID, "", "the manifest is not JSON: %s (line %d)",
                      json_error.text, json_error.line);
        return NULL;
    }
    zf_manifest_t *self = zf_calloc (1, sizeof *self);
    zf_status_t status = s_parse (self, root, content_type, err);
    json_decref (root);
    if (status != ZF_OK)
        zf_manifest_destroy (&self);
    return self;
}

void zf_manifest_destroy (zf_manifest_t **self_p)
{
    ZF_ASSERT (self_p);
    if (*self_p) {
        zf_free ((*self_p)->items);
        zf_free (*self_p);
        *self_p = NULL;
    }
}

//  ---------------------------------------------------------------------------------------------
//  Platforms

bool zf_platform_valid (const char *platform)
{
    if (!platform)
        return false;
    if (streq (platform, "all"))
        return true;
    const char *parts[4] = {platform};
    size_t count = 1;
    for (const char *cursor = platform; *cursor; cursor++)
        if (*cursor == '/') {
            if (count == 3)
                return false;
            parts[count++] = cursor + 1;
        }
    if (count < 2)
        return false;
    for (size_t index = 0; index < count; index++) {
        const char *end = index + 1 < count ? parts[index + 1] - 1 : platform + strlen (platform);
        if (!s_platform_part_valid (parts[index], (size_t) (end - parts[index])))
            return false;
    }
    return true;
}

//  Splits "os/arch[/variant]" into parts (empty strings when absent).
static void s_platform_split (const char *platform, char *os, char *arch, char *variant,
                              size_t size)
{
    os[0] = arch[0] = variant[0] = '\0';
    char copy[96];
    zf_strlcpy (copy, platform, sizeof copy);
    char *second = strchr (copy, '/');
    char *third = second ? strchr (second + 1, '/') : NULL;
    if (second)
        *second++ = '\0';
    if (third)
        *third++ = '\0';
    zf_strlcpy (os, copy, size);
    zf_strlcpy (arch, second ? second : "", size);
    zf_strlcpy (variant, third ? third : "", size);
    if (streq (arch, "arm64") && streq (variant, "v8"))
        variant[0] = '\0'; //  arm64 has one variant: "" and "v8" name the same
}

bool zf_platform_match (const char *wanted, const char *platform)
{
    if (!*platform)
        return true;
    if (streq (wanted, "all"))
        return strncmp (platform, "unknown/", 8) != 0;
    char os[32], arch[32], variant[32], want_os[32], want_arch[32], want_variant[32];
    s_platform_split (platform, os, arch, variant, sizeof os);
    s_platform_split (wanted, want_os, want_arch, want_variant, sizeof want_os);
    return streq (os, want_os) && streq (arch, want_arch)
           && (!*want_variant || streq (variant, want_variant));
}

//  ---------------------------------------------------------------------------------------------
//  Authentication

static const char *s_skip_blanks (const char *cursor)
{
    while (*cursor == ' ' || *cursor == '\t')
        cursor++;
    return cursor;
}

zf_status_t zf_challenge_parse (const char *header, zf_challenge_t *challenge, zf_error_t *err)
{
    memset (challenge, 0, sizeof *challenge);
    const char *cursor = s_skip_blanks (header ? header : "");
    size_t scheme_length = strcspn (cursor, " \t");
    if (scheme_length == 0 || scheme_length >= sizeof challenge->scheme)
        return zf_error_set (err, ZF_E_INVALID, "WWW-Authenticate",
                             "the registry's challenge names no scheme");
    memcpy (challenge->scheme, cursor, scheme_length);
    cursor = s_skip_blanks (cursor + scheme_length);
    while (*cursor) {
        size_t key_length = strcspn (cursor, "=, \t");
        char key[32] = "";
        if (key_length < sizeof key)
            memcpy (key, cursor, key_length);
        cursor = s_skip_blanks (cursor + key_length);
        if (*cursor != '=') {
            if (key_length == 0 && *cursor != ',')
                break;
            cursor += *cursor == ',';
            cursor = s_skip_blanks (cursor);
            continue;
        }
        cursor = s_skip_blanks (cursor + 1);
        char value[1024];
        size_t used = 0;
        bool fits = true;
        if (*cursor == '"') {
            cursor++;
            while (*cursor && *cursor != '"') {
                if (*cursor == '\\' && cursor[1])
                    cursor++;
                if (used + 1 < sizeof value)
                    value[used++] = *cursor;
                else
                    fits = false;
                cursor++;
            }
            if (*cursor != '"')
                return zf_error_set (err, ZF_E_INVALID, "WWW-Authenticate",
                                     "unterminated quoted value in the registry's challenge");
            cursor++;
        } else
            while (*cursor && *cursor != ',' && *cursor != ' ' && *cursor != '\t') {
                if (used + 1 < sizeof value)
                    value[used++] = *cursor;
                else
                    fits = false;
                cursor++;
            }
        value[used] = '\0';
        char *target = NULL;
        size_t target_size = 0;
        if (strcasecmp (key, "realm") == 0)
            target = challenge->realm, target_size = sizeof challenge->realm;
        else if (strcasecmp (key, "service") == 0)
            target = challenge->service, target_size = sizeof challenge->service;
        else if (strcasecmp (key, "scope") == 0)
            target = challenge->scope, target_size = sizeof challenge->scope;
        if (target && (!fits || used >= target_size))
            return zf_error_set (err, ZF_E_TOO_LARGE, "WWW-Authenticate",
                                 "the registry's challenge has a %s longer than %zu bytes", key,
                                 target_size - 1);
        if (target)
            zf_strlcpy (target, value, target_size);
        cursor = s_skip_blanks (cursor);
        if (*cursor == ',')
            cursor = s_skip_blanks (cursor + 1);
    }
    if (strcasecmp (challenge->scheme, "Bearer") == 0
        && strncmp (challenge->realm, "https://", 8) != 0
        && strncmp (challenge->realm, "http://", 7) != 0)
        return zf_error_set (err, ZF_E_INVALID, "WWW-Authenticate",
                             "the registry's Bearer challenge has no http(s) realm");
    bool bearer = strcasecmp (challenge->scheme, "Bearer") == 0;
    for (const char *check = bearer ? challenge->realm : ""; *check; check++)
        if ((unsigned char) *check <= ' ' || *check == 0x7f)
            return zf_error_set (err, ZF_E_INVALID, "WWW-Authenticate",
                                 "the registry's realm has blanks or control characters");
    return ZF_OK;
}

char *zf_token_answer_parse (const char *body, size_t size, zf_error_t *err)
{
    json_error_t json_error;
    json_t *root = size <= ZF_MANIFEST_BODY_MAX
                       ? json_loadb (body, size, JSON_REJECT_DUPLICATES, &json_error)
                       : NULL;
    const char *token = json_string_value (json_object_get (root, "token"));
    if (!token || !*token)
        token = json_string_value (json_object_get (root, "access_token"));
    bool valid = token && *token && strlen (token) <= S_TOKEN_MAX;
    for (const char *cursor = valid ? token : ""; *cursor; cursor++)
        if ((unsigned char) *cursor <= ' ' || (unsigned char) *cursor >= 0x7f)
            valid = false;
    char *copy = valid ? zf_strdup (token) : NULL;
    if (!copy)
        zf_error_set (err, ZF_E_INVALID, "token",
                      "the token realm's answer has no usable token (JSON with \"token\" or "
                      "\"access_token\")");
    json_decref (root);
    return copy;
}

bool zf_registry_error_text (const char *body, size_t size, char *text, size_t text_size)
{
    json_error_t json_error;
    json_t *root = size <= ZF_MANIFEST_BODY_MAX ? json_loadb (body, size, 0, &json_error) : NULL;
    json_t *first = json_array_get (json_object_get (root, "errors"), 0);
    const char *code = json_string_value (json_object_get (first, "code"));
    const char *message = json_string_value (json_object_get (first, "message"));
    bool found = code || message;
    if (found) {
        snprintf (text, text_size, "%.64s%s%.200s", code ? code : "", code && message ? ": " : "",
                  message ? message : "");
        for (char *cursor = text; *cursor; cursor++) //  one line, printable
            if ((unsigned char) *cursor < ' ' || *cursor == 0x7f)
                *cursor = ' ';
    }
    json_decref (root);
    return found;
}

void zf_manifest_digest (const void *data, size_t size, char *digest)
{
    unsigned char hash[32];
    unsigned int hash_size = 0;
    ZF_ASSERT (EVP_Digest (data, size, hash, &hash_size, EVP_sha256 (), NULL) == 1);
    memcpy (digest, "sha256:", 7);
    for (unsigned int index = 0; index < 32; index++)
        snprintf (digest + 7 + index * 2, 3, "%02x", hash[index]);
}

//  ---------------------------------------------------------------------------------------------
//  Selftest

#define S_D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define S_D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define S_D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static void s_test_refs (void)
{
    zf_image_ref_t ref;
    zf_error_t err;
    ZF_ASSERT (zf_image_ref_parse ("https://harbor.example/v2/library/busybox/manifests/latest",
                                   NULL, &ref, &err)
               == ZF_OK);
    ZF_ASSERT (streq (ref.scheme, "https") && streq (ref.host, "harbor.example"));
    ZF_ASSERT (streq (ref.repository, "library/busybox") && streq (ref.reference, "latest"));
    //  a repository that contains "manifests": the last marker splits
    ZF_ASSERT (zf_image_ref_parse ("http://127.0.0.1:5000/v2/a/manifests/b/manifests/" S_D1, NULL,
                                   &ref, &err)
               == ZF_OK);
    ZF_ASSERT (streq (ref.repository, "a/manifests/b") && streq (ref.reference, S_D1));
    ZF_ASSERT (streq (ref.scheme, "http") && streq (ref.host, "127.0.0.1:5000"));
    ZF_ASSERT (zf_image_ref_parse ("alpine", NULL, &ref, &err) == ZF_OK);
    ZF_ASSERT (streq (ref.host, "registry-1.docker.io") && streq (ref.repository, "library/alpine")
               && streq (ref.reference, "latest") && streq (ref.scheme, "https"));
    ZF_ASSERT (zf_image_ref_parse ("docker.io/bitnami/redis:7.2", NULL, &ref, &err) == ZF_OK);
    ZF_ASSERT (streq (ref.host, "registry-1.docker.io") && streq (ref.repository, "bitnami/redis")
               && streq (ref.reference, "7.2"));
    ZF_ASSERT (zf_image_ref_parse ("localhost:5000/a/b:v1@" S_D2, "http", &ref, &err) == ZF_OK);
    ZF_ASSERT (streq (ref.host, "localhost:5000") && streq (ref.repository, "a/b")
               && streq (ref.reference, S_D2) && streq (ref.scheme, "http"));
    ZF_ASSERT (zf_image_ref_parse ("reg.example/team/app", NULL, &ref, &err) == ZF_OK);
    ZF_ASSERT (streq (ref.repository, "team/app") && streq (ref.reference, "latest"));
    char text[600];
    zf_image_ref_text (&ref, text, sizeof text);
    ZF_ASSERT (streq (text, "reg.example/team/app:latest"));
    char *url = zf_image_ref_blob_url (&ref, S_D1);
    ZF_ASSERT (streq (url, "https://reg.example/v2/team/app/blobs/" S_D1));
    zf_free (url);

    const char *bad[] = {
        "",
        "ftp://x/v2/a/manifests/b",
        "https://x/v3/a/manifests/b",
        "https://x/v2/a/blobs/b",
        "https://x/v2/A/manifests/b",
        "https://x/v2/a/manifests/b/c",
        "https://x/v2/a/manifests/",
        "reg.example/UPPER:v1",
        "reg.example/a:bad tag",
        "reg.example/a@sha256:short",
        "reg.example/a/../b:v1",
        "https://h st/v2/a/manifests/b",
    };
    for (size_t index = 0; index < ZF_ARRAY_LEN (bad); index++) {
        if (zf_image_ref_parse (bad[index], NULL, &ref, &err) == ZF_OK) {
            fprintf (stderr, "accepted: %s\n", bad[index]);
            ZF_ASSERT (false);
        }
        ZF_ASSERT (err.code == ZF_E_INVALID);
    }
}

static void s_test_manifests (void)
{
    zf_error_t err;
    const char *image = "{\"schemaVersion\":2,\"mediaType\":\"" ZF_MEDIA_DOCKER_V2 "\","
                        "\"config\":{\"mediaType\":\"x\",\"digest\":\"" S_D1 "\",\"size\":7},"
                        "\"layers\":[{\"digest\":\"" S_D2 "\",\"size\":100},"
                        "{\"digest\":\"" S_D3 "\",\"size\":0}]}";
    zf_manifest_t *manifest = zf_manifest_parse (image, strlen (image), NULL, &err);
    ZF_ASSERT (manifest && manifest->kind == ZF_MANIFEST_IMAGE && manifest->count == 3);
    ZF_ASSERT (streq (manifest->items[0].digest, S_D1) && manifest->items[0].size == 7);
    ZF_ASSERT (streq (manifest->items[1].digest, S_D2) && manifest->items[1].size == 100);
    zf_manifest_destroy (&manifest);
    ZF_ASSERT (!manifest);

    //  OCI without mediaType: the Content-Type, else the shape, decides
    const char *oci = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" S_D1 "\",\"size\":1},"
                      "\"layers\":[]}";
    manifest = zf_manifest_parse (oci, strlen (oci), ZF_MEDIA_OCI_MANIFEST "; charset=utf-8", &err);
    ZF_ASSERT (manifest && manifest->kind == ZF_MANIFEST_IMAGE && manifest->count == 1);
    zf_manifest_destroy (&manifest);

    const char *index =
        "{\"schemaVersion\":2,\"manifests\":["
        "{\"mediaType\":\"" ZF_MEDIA_OCI_MANIFEST "\",\"digest\":\"" S_D1 "\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"" ZF_MEDIA_OCI_MANIFEST "\",\"digest\":\"" S_D2 "\",\"size\":10,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"" ZF_MEDIA_OCI_INDEX "\",\"digest\":\"" S_D3 "\",\"size\":10}]}";
    manifest = zf_manifest_parse (index, strlen (index), "application/json", &err);
    ZF_ASSERT (manifest && manifest->kind == ZF_MANIFEST_INDEX && manifest->count == 3);
    ZF_ASSERT (streq (manifest->items[0].platform, "linux/amd64"));
    ZF_ASSERT (streq (manifest->items[1].platform, "linux/arm64/v8"));
    ZF_ASSERT (streq (manifest->items[2].platform, "")
               && zf_media_type_is_index (manifest->items[2].media_type));
    zf_manifest_destroy (&manifest);

    struct {
        const char *body;
        const char *says;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{\"schemaVersion\":1,\"fsLayers\":[]}", "schema 1"},
        {"{\"mediaType\":\"" ZF_MEDIA_DOCKER_V1_SIGN "\"}", "schema 1"},
        {"{\"mediaType\":\"text/html\"}", "not a manifest"},
        {"{\"layers\":[]}", "no config"},
        {"{\"config\":{\"digest\":\"sha256:ab\",\"size\":1},\"layers\":[]}", "config: digest"},
        {"{\"config\":{\"digest\":\"" S_D1 "\",\"size\":-1},\"layers\":[]}", "size"},
        {"{\"config\":{\"digest\":\"" S_D1 "\",\"size\":1.5},\"layers\":[]}", "size"},
        {"{\"config\":{\"digest\":\"" S_D1 "\",\"size\":1}}", "layers is missing"},
        {"{\"manifests\":[{\"digest\":\"" S_D1 "\",\"size\":1,\"platform\":{\"os\":\"Linux\"}}]}",
         "platform"},
        {"{\"manifests\":7}", "manifests is missing or not a list"},
        {"{\"a\":1,\"a\":2}", "not JSON"},
        {"{", "not JSON"},
    };
    for (size_t case_index = 0; case_index < ZF_ARRAY_LEN (bad); case_index++) {
        manifest =
            zf_manifest_parse (bad[case_index].body, strlen (bad[case_index].body), NULL, &err);
        if (manifest || !strstr (err.message, bad[case_index].says)) {
            fprintf (stderr, "case %zu: %s\n", case_index, manifest ? "accepted" : err.message);
            ZF_ASSERT (false);
        }
    }
}

static void s_test_platforms (void)
{
    ZF_ASSERT (zf_platform_valid ("linux/amd64") && zf_platform_valid ("linux/arm/v7"));
    ZF_ASSERT (zf_platform_valid ("all") && !zf_platform_valid ("linux"));
    ZF_ASSERT (!zf_platform_valid ("linux/arm/v7/x") && !zf_platform_valid ("linux//amd64"));
    ZF_ASSERT (!zf_platform_valid ("Linux/amd64") && !zf_platform_valid ("linux/amd64/"));
    ZF_ASSERT (zf_platform_match ("linux/amd64", "linux/amd64"));
    ZF_ASSERT (!zf_platform_match ("linux/amd64", "linux/arm64"));
    ZF_ASSERT (zf_platform_match ("linux/arm64", "linux/arm64/v8"));
    ZF_ASSERT (zf_platform_match ("linux/arm64/v8", "linux/arm64"));
    ZF_ASSERT (zf_platform_match ("linux/arm", "linux/arm/v7"));
    ZF_ASSERT (!zf_platform_match ("linux/arm/v6", "linux/arm/v7"));
    ZF_ASSERT (zf_platform_match ("all", "windows/amd64"));
    ZF_ASSERT (!zf_platform_match ("all", "unknown/unknown"));
    ZF_ASSERT (zf_platform_match ("linux/s390x", ""));
}

static void s_test_auth (void)
{
    zf_challenge_t challenge;
    zf_error_t err;
    ZF_ASSERT (zf_challenge_parse ("Bearer realm=\"https://auth.example/token\",service=\"reg\","
                                   "scope=\"repository:a/b:pull\"",
                                   &challenge, &err)
               == ZF_OK);
    ZF_ASSERT (streq (challenge.scheme, "Bearer"));
    ZF_ASSERT (streq (challenge.realm, "https://auth.example/token"));
    ZF_ASSERT (streq (challenge.service, "reg") && streq (challenge.scope, "repository:a/b:pull"));
    ZF_ASSERT (zf_challenge_parse ("Basic realm=\"Registry \\\"x\\\"\"", &challenge, &err)
               == ZF_OK);
    ZF_ASSERT (streq (challenge.scheme, "Basic") && streq (challenge.realm, "Registry \"x\""));
    ZF_ASSERT (
        zf_challenge_parse ("Bearer realm=http://a/t, error=\"invalid_token\"", &challenge, &err)
        == ZF_OK);
    ZF_ASSERT (streq (challenge.realm, "http://a/t") && !*challenge.service);
    ZF_ASSERT (zf_challenge_parse ("Bearer service=\"x\"", &challenge, &err) == ZF_E_INVALID);
    ZF_ASSERT (zf_challenge_parse ("Bearer realm=\"http://a/t", &challenge, &err) == ZF_E_INVALID);
    ZF_ASSERT (zf_challenge_parse ("", &challenge, &err) == ZF_E_INVALID);

    const char *answer = "{\"token\":\"abc.def\",\"expires_in\":300}";
    char *token = zf_token_answer_parse (answer, strlen (answer), &err);
    ZF_ASSERT (token && streq (token, "abc.def"));
    zf_free (token);
    answer = "{\"access_token\":\"xyz\"}";
    token = zf_token_answer_parse (answer, strlen (answer), &err);
    ZF_ASSERT (token && streq (token, "xyz"));
    zf_free (token);
    answer = "{\"token\":\"a b\"}";
    ZF_ASSERT (!zf_token_answer_parse (answer, strlen (answer), &err));
    ZF_ASSERT (!zf_token_answer_parse ("nope", 4, &err));

    char text[128];
    const char *body = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
                       "unknown\",\"detail\":{}}]}";
    ZF_ASSERT (zf_registry_error_text (body, strlen (body), text, sizeof text));
    ZF_ASSERT (streq (text, "MANIFEST_UNKNOWN: manifest unknown"));
    ZF_ASSERT (!zf_registry_error_text ("<html>", 6, text, sizeof text));

    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    zf_manifest_digest ("", 0, digest);
    ZF_ASSERT (
        streq (digest, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

void zf_manifest_test (bool verbose)
{
    if (verbose)
        printf (" * zf_manifest: ");
    s_test_refs ();
    s_test_manifests ();
    s_test_platforms ();
    s_test_auth ();
    if (verbose)
        printf ("OK\n");
}
