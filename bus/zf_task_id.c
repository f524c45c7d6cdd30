/*  zf_task_id.c — task ids from digests or canonical URLs; piece lengths. */
#include "zf_task_id.h"
#include <ctype.h>
#include <openssl/evp.h>

//  Signed-URL parameters of S3, GCS, OSS, OBS and COS, and containerd's ns: they change from
//  one request of the same object to the next. A trailing '*' is a prefix.
static const char *const s_volatile_params[] = {
    "x-amz-*",          "x-goog-*",    "x-oss-*",     "x-obs-*",    "ossaccesskeyid",
    "security-token",   "accesskeyid", "expires",     "signature",  "securitytoken",
    "q-sign-algorithm", "q-ak",        "q-sign-time", "q-key-time", "q-header-list",
    "q-url-param-list", "q-signature", "ns",
};

static bool s_is_hex_lower (const char *text, size_t length)
{
    for (size_t index = 0; index < length; index++)
        if (!isdigit ((unsigned char) text[index]) && !(text[index] >= 'a' && text[index] <= 'f'))
            return false;
    return true;
}

bool zf_task_digest_valid (const char *digest)
{
    return digest && strncmp (digest, "sha256:", 7) == 0 && strlen (digest) == ZF_DIGEST_TEXT_SIZE
           && s_is_hex_lower (digest + 7, ZF_TASK_ID_SIZE);
}

bool zf_task_digest_from_url (const char *url, char digest[ZF_DIGEST_TEXT_SIZE + 1])
{
    size_t path_end = strcspn (url, "?#");
    const char *found = NULL;
    for (const char *at = strstr (url, "/blobs/sha256:"); at && (size_t) (at - url) < path_end;
         at = strstr (at + 1, "/blobs/sha256:"))
        found = at; //  the last one: repository names may contain "/blobs/"
    if (!found)
        return false;
    const char *hex = found + strlen ("/blobs/sha256:");
    size_t hex_length = (size_t) (url + path_end - hex);
    if (hex_length != ZF_TASK_ID_SIZE || !s_is_hex_lower (hex, ZF_TASK_ID_SIZE))
        return false;
    memcpy (digest, hex - 7, ZF_DIGEST_TEXT_SIZE);
    digest[ZF_DIGEST_TEXT_SIZE] = '\0';
    return true;
}

static bool s_name_matches (const char *name, size_t name_length, const char *pattern)
{
    size_t pattern_length = strlen (pattern);
    if (pattern_length > 0 && pattern[pattern_length - 1] == '*')
        return name_length >= pattern_length - 1
               && strncasecmp (name, pattern, pattern_length - 1) == 0;
    return name_length == pattern_length && strncasecmp (name, pattern, name_length) == 0;
}

static bool s_is_volatile (const char *param, const char *extra_volatile)
{
    size_t name_length = strcspn (param, "=");
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_volatile_params); index++)
        if (s_name_matches (param, name_length, s_volatile_params[index]))
            return true;
    const char *cursor = extra_volatile ? extra_volatile : "";
    while (*cursor) {
        cursor += strspn (cursor, " \t");
        size_t word_length = strcspn (cursor, " \t");
        if (word_length > 0) {
            char *word = zf_strndup (cursor, word_length);
            bool matches = s_name_matches (param, name_length, word);
            zf_free (word);
            if (matches)
                return true;
        }
        cursor += word_length;
    }
    return false;
}

//  Sorts by name, then by value: compare "name" parts first so "a=2" and "a-b=1" order by
//  the name "a" < "a-b" rather than by '=' against '-'.
static int s_compare_params (const void *left_p, const void *right_p)
{
    const char *left = *(const char *const *) left_p;
    const char *right = *(const char *const *) right_p;
    size_t left_name = strcspn (left, "="), right_name = strcspn (right, "=");
    size_t common = left_name < right_name ? left_name : right_name;
    int order = memcmp (left, right, common);
    if (order != 0)
        return order;
    if (left_name != right_name)
        return left_name < right_name ? -1 : 1;
    return strcmp (left + left_name, right + right_name);
}

static char *s_canonical_query (const char *query, size_t query_length, const char *extra)
{
    char *copy = zf_strndup (query, query_length);
    size_t capacity = 1 + query_length / 2 + 1, count = 0;
    char **params = zf_calloc (capacity, sizeof (char *));
    for (char *save = NULL, *param = strtok_r (copy, "&", &save); param;
         param = strtok_r (NULL, "&", &save))
        if (!s_is_volatile (param, extra)) {
            ZF_ASSERT (count < capacity);
            params[count++] = param;
        }
    qsort (params, count, sizeof (char *), s_compare_params);
    char *joined = zf_calloc (1, query_length + 2);
    size_t used = 0;
    for (size_t index = 0; index < count; index++) {
        joined[used++] = index == 0 ? '?' : '&';
        size_t length = strlen (params[index]);
        memcpy (joined + used, params[index], length);
        used += length;
    }
    zf_free (params);
    zf_free (copy);
    return joined;
}

static void s_lowercase (char *text, size_t length)
{
    for (size_t index = 0; index < length; index++)
        text[index] = (char) tolower ((unsigned char) text[index]);
}

char *zf_task_url_canonical (const char *url, const char *extra_volatile, zf_error_t *err)
{
    const char *scheme_end = strstr (url, "://");
    size_t scheme_length = scheme_end ? (size_t) (scheme_end - url) : 0;
    bool http = scheme_length == 4 && strncasecmp (url, "http", 4) == 0;
    bool https = scheme_length == 5 && strncasecmp (url, "https", 5) == 0;
    if (!http && !https) {
        zf_error_set (err, ZF_E_INVALID, "url", "not an http:// or https:// URL");
        return NULL;
    }
    const char *authority = scheme_end + 3;
    size_t authority_length = strcspn (authority, "/?#");
    const char *rest = authority + authority_length;
    const char *at = memrchr (authority, '@', authority_length);
    if (at) { //  credentials are not part of what the content is
        authority_length -= (size_t) (at + 1 - authority);
        authority = at + 1;
    }
    if (authority_length == 0) {
        zf_error_set (err, ZF_E_INVALID, "url", "URL has no host");
        return NULL;
    }
    const char *default_port = https ? ":443" : ":80";
    size_t port_length = strlen (default_port);
    if (authority_length > port_length
        && memcmp (authority + authority_length - port_length, default_port, port_length) == 0)
        authority_length -= port_length;
    size_t path_length = strcspn (rest, "?#");
    const char *query = rest + path_length;
    size_t query_length = 0;
    if (*query == '?') {
        query++;
        query_length = strcspn (query, "#");
    }
    char *canonical_query = s_canonical_query (query, query_length, extra_volatile);
    char *canonical =
        zf_asprintf ("%.*s://%.*s%.*s%s", (int) scheme_length, url, (int) authority_length,
                     authority, (int) path_length, rest, canonical_query);
    s_lowercase (canonical, scheme_length + 3 + authority_length);
    zf_free (canonical_query);
    return canonical;
}

static void s_sha256_hex (const uint8_t *data, size_t size, char hex[ZF_TASK_ID_SIZE + 1])
{
    uint8_t digest[32];
    unsigned int digest_size = 0;
    ZF_ASSERT (EVP_Digest (data, size, digest, &digest_size, EVP_sha256 (), NULL) == 1);
    for (size_t index = 0; index < sizeof digest; index++)
        snprintf (hex + 2 * index, 3, "%02x", digest[index]);
}

static void s_append_field (zchunk_t *input, const char *name, const char *value)
{
    zchunk_extend (input, name, strlen (name) + 1);
    zchunk_extend (input, value ? value : "", strlen (value ? value : "") + 1);
}

zf_status_t zf_task_id_compute (const char *url, const char *digest_in, const char *tag,
                                const char *application, const char *extra_volatile,
                                char id[ZF_TASK_ID_SIZE + 1], char digest[ZF_DIGEST_TEXT_SIZE + 1],
                                zf_error_t *err)
{
    digest[0] = '\0';
    if (digest_in && *digest_in) {
        if (!zf_task_digest_valid (digest_in))
            return zf_error_set (err, ZF_E_INVALID, "digest",
                                 "digest must be sha256:<64 lowercase hex>, got '%.80s'",
                                 digest_in);
        zf_strlcpy (digest, digest_in, ZF_DIGEST_TEXT_SIZE + 1);
    } else if (url)
        zf_task_digest_from_url (url, digest);

    zchunk_t *input = zchunk_new (NULL, 256);
    zchunk_extend (input, "zfly-task-v1", strlen ("zfly-task-v1") + 1);
    if (*digest)
        s_append_field (input, "digest", digest);
    else {
        char *canonical = zf_task_url_canonical (url ? url : "", extra_volatile, err);
        if (!canonical) {
            zchunk_destroy (&input);
            return err ? err->code : ZF_E_INVALID;
        }
        s_append_field (input, "url", canonical);
        zf_free (canonical);
    }
    s_append_field (input, "tag", tag);
    s_append_field (input, "application", application);
    s_sha256_hex (zchunk_data (input), zchunk_size (input), id);
    zchunk_destroy (&input);
    return ZF_OK;
}

uint64_t zf_piece_length (uint64_t content_length, uint64_t min, uint64_t max,
                          uint64_t target_pieces)
{
    ZF_ASSERT (min > 0 && (min & (min - 1)) == 0 && (max & (max - 1)) == 0 && min <= max);
    ZF_ASSERT (target_pieces > 0);
    uint64_t wanted = content_length / target_pieces;
    uint64_t length = min;
    while (length < wanted && length < max)
        length <<= 1;
    return length;
}

//  --- selftest --------------------------------------------------------------------------------

static void s_check_canonical (const char *url, const char *extra, const char *expected)
{
    zf_error_t err;
    char *canonical = zf_task_url_canonical (url, extra, &err);
    if (!canonical || strcmp (canonical, expected) != 0) {
        fprintf (stderr, "canonical of %s:\n  got      %s\n  expected %s\n", url,
                 canonical ? canonical : err.message, expected);
        ZF_ASSERT (false);
    }
    zf_free (canonical);
}

static void s_id (const char *url, const char *digest, const char *tag, char id[65])
{
    char digest_used[ZF_DIGEST_TEXT_SIZE + 1];
    zf_error_t err;
    ZF_ASSERT (zf_task_id_compute (url, digest, tag, NULL, "token", id, digest_used, &err)
               == ZF_OK);
    ZF_ASSERT (strlen (id) == ZF_TASK_ID_SIZE);
}

void zf_task_id_test (bool verbose)
{
    (void) verbose;
    //  Canonical URLs: case, credentials, default ports, fragments, volatile and order.
    s_check_canonical ("HTTP://User:pw@Example.COM:80/A/b?z=1&a=2#frag", NULL,
                       "http://example.com/A/b?a=2&z=1");
    s_check_canonical ("https://h:443/p", NULL, "https://h/p");
    s_check_canonical ("https://h:8443/p?", NULL, "https://h:8443/p");
    s_check_canonical ("https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=c"
                       "&X-Amz-Date=d&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
                       "&X-Amz-Signature=abc&versionId=7",
                       NULL, "https://bucket.s3.amazonaws.com/k?versionId=7");
    s_check_canonical ("https://b.oss.aliyuncs.com/o?OSSAccessKeyId=k&Expires=1&Signature=s"
                       "&security-token=t&SecurityToken=t&x-oss-process=img",
                       NULL, "https://b.oss.aliyuncs.com/o");
    s_check_canonical ("https://storage.googleapis.com/b/o?X-Goog-Signature=s&X-Goog-Date=d", NULL,
                       "https://storage.googleapis.com/b/o");
    s_check_canonical ("https://cos/o?q-sign-algorithm=sha1&q-ak=a&q-sign-time=1&q-key-time=1"
                       "&q-header-list=&q-url-param-list=&q-signature=s&keep=1",
                       NULL, "https://cos/o?keep=1");
    s_check_canonical ("http://mirror/v2/x/manifests/1?ns=docker.io", NULL,
                       "http://mirror/v2/x/manifests/1");
    s_check_canonical ("http://h/p?b=2&a-b=1&a=3&a=1&token=x&sess=1", "token sess*",
                       "http://h/p?a=1&a=3&a-b=1&b=2");
    zf_error_t err;
    ZF_ASSERT (zf_task_url_canonical ("ftp://h/p", NULL, &err) == NULL);
    ZF_ASSERT (err.code == ZF_E_INVALID);
    ZF_ASSERT (zf_task_url_canonical ("http:///p", NULL, &err) == NULL);

    //  Digests from blob URLs, only well-formed ones.
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char *blob_url = zf_asprintf ("https://r.example/v2/lib/blobs/x/blobs/sha256:%s?ns=a", hex);
    ZF_ASSERT (zf_task_digest_from_url (blob_url, digest));
    ZF_ASSERT (strncmp (digest, "sha256:", 7) == 0 && strcmp (digest + 7, hex) == 0);
    ZF_ASSERT (!zf_task_digest_from_url ("https://r/v2/lib/blobs/sha256:0123", digest));
    ZF_ASSERT (!zf_task_digest_from_url ("https://r/v2/lib/manifests/latest", digest));
    ZF_ASSERT (zf_task_digest_valid (digest));
    ZF_ASSERT (!zf_task_digest_valid ("sha256:ABC"));
    ZF_ASSERT (!zf_task_digest_valid ("md5:0123456789abcdef0123456789abcdef"));

    //  Same content, same task: signed URLs, mirrors, digest given or in the path.
    char id_a[65], id_b[65], id_c[65], id_d[65];
    s_id ("https://s3/k?X-Amz-Signature=1&X-Amz-Date=1", NULL, NULL, id_a);
    s_id ("https://S3:443/k?X-Amz-Signature=2&X-Amz-Date=2", NULL, NULL, id_b);
    ZF_ASSERT (streq (id_a, id_b));
    s_id ("https://s3/k?token=secret", NULL, NULL, id_c); //  "token" configured as volatile
    ZF_ASSERT (streq (id_a, id_c));
    s_id ("https://s3/k", NULL, "v2", id_d); //  the tag separates tasks
    ZF_ASSERT (!streq (id_a, id_d));
    s_id ("https://s3/other", NULL, NULL, id_d);
    ZF_ASSERT (!streq (id_a, id_d));
    s_id (blob_url, NULL, NULL, id_a);
    char *mirror_url = zf_asprintf ("http://mirror:5000/v2/other/blobs/sha256:%s", hex);
    s_id (mirror_url, NULL, NULL, id_b);
    ZF_ASSERT (streq (id_a, id_b));
    char *given = zf_asprintf ("sha256:%s", hex);
    s_id ("https://cdn/any/file.tar", given, NULL, id_c);
    ZF_ASSERT (streq (id_a, id_c));
    for (const char *cursor = id_a; *cursor; cursor++)
        ZF_ASSERT (isxdigit ((unsigned char) *cursor) && !isupper ((unsigned char) *cursor));
    char id[65];
    ZF_ASSERT (
        zf_task_id_compute ("https://h/p", "sha256:nothex", NULL, NULL, NULL, id, digest, &err)
        == ZF_E_INVALID);
    ZF_ASSERT (zf_task_id_compute ("file:///etc/passwd", NULL, NULL, NULL, NULL, id, digest, &err)
               == ZF_E_INVALID);
    zf_free (blob_url);
    zf_free (mirror_url);
    zf_free (given);

    //  Piece length: length/target rounded up to a power of two, clamped.
    const uint64_t mib = 1024 * 1024;
    ZF_ASSERT (zf_piece_length (0, 4 * mib, 64 * mib, 500) == 4 * mib);
    ZF_ASSERT (zf_piece_length (1024 * mib, 4 * mib, 64 * mib, 500) == 4 * mib);
    ZF_ASSERT (zf_piece_length (4000 * mib, 4 * mib, 64 * mib, 500) == 8 * mib);
    ZF_ASSERT (zf_piece_length (4096 * mib, 4 * mib, 64 * mib, 500) == 16 * mib);
    ZF_ASSERT (zf_piece_length (1000000 * mib, 4 * mib, 64 * mib, 500) == 64 * mib);
    ZF_ASSERT (zf_piece_length (10 * mib, 64 * 1024, 64 * mib, 10) == 1 * mib);
    ZF_ASSERT (zf_piece_length (5 * mib, 1024, 1024, 1) == 1024);
}
