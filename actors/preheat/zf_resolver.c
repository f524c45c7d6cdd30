/*  zf_resolver.c — a registry conversation: manifest, token, index, child manifests. */
#include "zf_resolver.h"
#include "zf_curl_origin.h"
#include "zf_secret.h"
#include <openssl/evp.h>

#define S_HEADER_VALUE_MAX 2048
#define S_USER_AGENT       "zfly-preheat/0.1"

//  What one HTTP request is for.
typedef enum {
    S_GET_MANIFEST, //  a manifest or index (by tag first, then by digest)
    S_GET_TOKEN,    //  the token realm
} s_purpose_t;

//  A manifest still to fetch: its reference and how deep in the index tree it sits.
typedef struct {
    char reference[160];
    char platform[96]; //  from the index entry that named it
    int depth;
} s_pending_t;

struct zf_resolver_s {
    zf_curl_loop_t *curl;
    zf_resolve_done_fn *done;
    void *done_arg;
    //  the request, copied
    zf_image_ref_t ref;
    char image[600];
    char platform[96];
    char **headers; //  "Name: value" without Authorization
    size_t header_count;
    char *username, *password;
    struct curl_slist *connect_to;
    char *ca_file;
    int64_t timeout_ms;
    //  progress
    char *authorization;  //  "Bearer …" / "Basic …": sent to the registry; secret
    bool token_fetched;   //  a token from the realm is in use: a 401 now is final
    bool basic_tried;     //  Basic credentials were sent to a Basic challenge
    s_pending_t *pending; //  manifests to fetch, first at [0]
    size_t pending_count;
    s_pending_t current;
    size_t manifests_fetched;
    char digest[ZF_DIGEST_TEXT_SIZE + 1]; //  of the manifest the reference named
    //  the transfer in flight
    CURL *easy;
    s_purpose_t purpose;
    struct curl_slist *request_headers;
    char *body;
    size_t body_size;
    bool body_too_large;
    char content_type[160];
    char challenge[S_HEADER_VALUE_MAX];
    char curl_error[CURL_ERROR_SIZE];
    //  the outcome
    zf_resolved_blob_t *blobs;
    size_t blob_count;
    zf_status_t status;
    zf_error_t err;
};

static void s_start (zf_resolver_t *self);
static void s_fetch_current (zf_resolver_t *self);

//  ---------------------------------------------------------------------------------------------
//  Transfers

static size_t s_on_body (char *data, size_t size, size_t count, void *arg)
{
    zf_resolver_t *self = arg;
    size_t length = size * count;
    if (self->body_size + length > ZF_MANIFEST_BODY_MAX) {
        self->body_too_large = true;
        return 0; //  curl stops the transfer: CURLE_WRITE_ERROR
    }
    self->body = zf_realloc (self->body, self->body_size + length + 1);
    memcpy (self->body + self->body_size, data, length);
    self->body_size += length;
    self->body[self->body_size] = '\0';
    return length;
}

static size_t s_on_header (char *data, size_t size, size_t count, void *arg)
{
    zf_resolver_t *self = arg;
    size_t length = size * count;
    if (zf_curl_origin_status_line (data, length)) {
        //  a new response (after a redirect or a 100): only the last one counts
        self->content_type[0] = self->challenge[0] = '\0';
        return length;
    }
    char value[S_HEADER_VALUE_MAX];
    if (zf_curl_origin_header (data, length, "Content-Type", value, sizeof value))
        zf_strlcpy (self->content_type, value, sizeof self->content_type);
    else if (zf_curl_origin_header (data, length, "WWW-Authenticate", value, sizeof value)
             && !*self->challenge) //  the first challenge: registries list Bearer first
        zf_strlcpy (self->challenge, value, sizeof self->challenge);
    return length;
}

static void s_transfer_clear (zf_resolver_t *self)
{
    if (self->easy) {
        zf_curl_loop_remove (self->curl, self->easy);
        curl_easy_cleanup (self->easy);
        self->easy = NULL;
    }
    curl_slist_free_all (self->request_headers);
    self->request_headers = NULL;
    zf_free (self->body);
    self->body = NULL;
    self->body_size = 0;
    self->body_too_large = false;
    self->content_type[0] = self->challenge[0] = self->curl_error[0] = '\0';
}

static void s_get (zf_resolver_t *self, s_purpose_t purpose, const char *url,
                   const char *authorization)
{
    s_transfer_clear (self);
    self->purpose = purpose;
    if (purpose == S_GET_MANIFEST) {
        self->request_headers =
            curl_slist_append (self->request_headers, "Accept: " ZF_MANIFEST_ACCEPT);
        for (size_t index = 0; index < self->header_count; index++)
            self->request_headers = curl_slist_append (self->request_headers, self->headers[index]);
    } else
        self->request_headers =
            curl_slist_append (self->request_headers, "Accept: application/json");
    if (authorization) {
        char *line = zf_asprintf ("Authorization: %s", authorization);
        self->request_headers = curl_slist_append (self->request_headers, line);
        zf_secret_free (line);
    }
    //  Redirects are followed (a registry's blobs and tokens live elsewhere), but the
    //  Authorization header stays behind on another host, port or scheme (zf_curl_origin): a
    //  CDN's signed URL must not see the registry's credentials.
    zf_curl_origin_t setup = {.url = url,
                              .owner = self,
                              .error_buffer = self->curl_error,
                              .header_fn = s_on_header,
                              .header_arg = self,
                              .body_fn = s_on_body,
                              .body_arg = self,
                              .headers = self->request_headers,
                              .user_agent = S_USER_AGENT,
                              .connect_to = self->connect_to,
                              .ca = self->ca_file,
                              .connect_timeout_ms = self->timeout_ms,
                              .timeout_ms = self->timeout_ms,
                              .max_redirects = 5};
    CURL *easy = zf_curl_origin_new (&setup);
    curl_easy_setopt (easy, CURLOPT_ACCEPT_ENCODING, "");
    self->easy = easy;
    zf_curl_loop_add (self->curl, easy);
}

//  Ends the resolution: done runs (last: it may destroy the resolver).
static void s_finish (zf_resolver_t *self, zf_status_t status)
{
    s_transfer_clear (self);
    self->status = status;
    if (status == ZF_OK)
        zf_error_clear (&self->err);
    self->done (self, self->done_arg);
}

static void s_fail (zf_resolver_t *self, zf_status_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static void s_fail (zf_resolver_t *self, zf_status_t code, const char *fmt, ...)
{
    self->err.code = code;
    zf_strlcpy (self->err.where, "url", sizeof self->err.where);
    va_list args;
    va_start (args, fmt);
    vsnprintf (self->err.message, sizeof self->err.message, fmt, args);
    va_end (args);
    s_finish (self, code);
}

//  ---------------------------------------------------------------------------------------------
//  Authentication

static char *s_basic (const char *username, const char *password)
{
    char *pair = zf_asprintf ("%s:%s", username, password ? password : "");
    size_t length = strlen (pair);
    char *encoded = zf_malloc (4 * ((length + 2) / 3) + 1);
    EVP_EncodeBlock ((unsigned char *) encoded, (const unsigned char *) pair, (int) length);
    explicit_bzero (pair, length);
    zf_free (pair);
    char *value = zf_asprintf ("Basic %s", encoded);
    zf_secret_free (encoded);
    return value;
}

static void s_set_authorization (zf_resolver_t *self, char *value)
{
    zf_secret_free (self->authorization);
    self->authorization = value;
}

//  "a b" -> "a%20b": the realm's query arguments.
static char *s_escape (CURL *easy, const char *text)
{
    char *escaped = curl_easy_escape (easy, text, 0);
    char *copy = zf_strdup (escaped ? escaped : "");
    curl_free (escaped);
    return copy;
}

//  A 401: asks the realm for a token, or answers a Basic challenge. False when there is
//  nothing more to try (the caller fails).
static bool s_answer_challenge (zf_resolver_t *self)
{
    zf_challenge_t challenge;
    zf_error_t err;
    if (!*self->challenge || zf_challenge_parse (self->challenge, &challenge, &err) != ZF_OK)
        return false;
    if (strcasecmp (challenge.scheme, "Basic") == 0) {
        if (!self->username || self->basic_tried)
            return false;
        self->basic_tried = true;
        s_set_authorization (self, s_basic (self->username, self->password));
        s_fetch_current (self);
        return true;
    }
    if (strcasecmp (challenge.scheme, "Bearer") != 0 || self->token_fetched)
        return false;
    self->token_fetched = true;
    char scope[1100];
    if (*challenge.scope)
        zf_strlcpy (scope, challenge.scope, sizeof scope);
    else
        snprintf (scope, sizeof scope, "repository:%s:pull", self->ref.repository);
    CURL *escaper = curl_easy_init ();
    char *service = s_escape (escaper, challenge.service);
    char *scope_escaped = s_escape (escaper, scope);
    curl_easy_cleanup (escaper);
    char *url = zf_asprintf ("%s%sservice=%s&scope=%s", challenge.realm,
                             strchr (challenge.realm, '?') ? "&" : "?", service, scope_escaped);
    zf_free (service);
    zf_free (scope_escaped);
    //  The realm gets Basic credentials when the job has them, else nothing (anonymous pull).
    char *basic = self->username ? s_basic (self->username, self->password) : NULL;
    s_get (self, S_GET_TOKEN, url, basic);
    zf_secret_free (basic);
    zf_free (url);
    return true;
}

static void s_token_done (zf_resolver_t *self, long status)
{
    if (status == 401 || status == 403) {
        s_fail (self, ZF_E_REFUSED, "%s: the registry's token service refused %s (HTTP %ld)%s",
                self->image, self->username ? "the username and password" : "an anonymous pull",
                status, self->username ? ": wrong username or password?" : ": give credentials");
        return;
    }
    if (status != 200) {
        s_fail (self, ZF_E_REMOTE, "%s: the registry's token service answered HTTP %ld",
                self->image, status);
        return;
    }
    zf_error_t err;
    char *token = zf_token_answer_parse (self->body, self->body_size, &err);
    if (!token) {
        s_fail (self, ZF_E_REMOTE, "%s: %s", self->image, err.message);
        return;
    }
    s_set_authorization (self, zf_asprintf ("Bearer %s", token));
    zf_secret_free (token);
    s_fetch_current (self); //  the same manifest again, with the token
}

//  ---------------------------------------------------------------------------------------------
//  Manifests

static bool s_have_blob (zf_resolver_t *self, const char *digest)
{
    for (size_t index = 0; index < self->blob_count; index++)
        if (streq (self->blobs[index].digest, digest))
            return true;
    return false;
}

static void s_add_blobs (zf_resolver_t *self, const zf_manifest_t *manifest)
{
    for (size_t index = 0; index < manifest->count; index++) {
        const zf_descriptor_t *item = &manifest->items[index];
        if (s_have_blob (self, item->digest)) //  layers shared between platforms: once
            continue;
        self->blobs = zf_realloc (self->blobs, (self->blob_count + 1) * sizeof *self->blobs);
        zf_resolved_blob_t *blob = &self->blobs[self->blob_count++];
        memset (blob, 0, sizeof *blob);
        blob->url = zf_image_ref_blob_url (&self->ref, item->digest);
        zf_strlcpy (blob->digest, item->digest, sizeof blob->digest);
        blob->size = item->size;
        zf_strlcpy (blob->media_type, item->media_type, sizeof blob->media_type);
        zf_strlcpy (blob->platform, self->current.platform, sizeof blob->platform);
    }
}

static void s_push (zf_resolver_t *self, const char *reference, const char *platform, int depth)
{
    self->pending = zf_realloc (self->pending, (self->pending_count + 1) * sizeof *self->pending);
    s_pending_t *next = &self->pending[self->pending_count++];
    memset (next, 0, sizeof *next);
    zf_strlcpy (next->reference, reference, sizeof next->reference);
    zf_strlcpy (next->platform, platform, sizeof next->platform);
    next->depth = depth;
}

//  The platforms an index offers, for the message when none matches.
static void s_list_platforms (const zf_manifest_t *index, char *text, size_t size)
{
    text[0] = '\0';
    size_t used = 0;
    for (size_t position = 0; position < index->count && used + 2 < size; position++) {
        const char *platform =
            *index->items[position].platform ? index->items[position].platform : "(none given)";
        int written = snprintf (text + used, size - used, "%s%s", position ? ", " : "", platform);
        if (written < 0)
            break;
        used += (size_t) written;
    }
}

static void s_take_index (zf_resolver_t *self, const zf_manifest_t *index)
{
    if (self->current.depth + 1 >= ZF_RESOLVER_DEPTH_MAX) {
        s_fail (self, ZF_E_INVALID, "%s: indexes nested deeper than %d levels", self->image,
                ZF_RESOLVER_DEPTH_MAX);
        return;
    }
    size_t chosen = 0;
    for (size_t position = 0; position < index->count; position++) {
        const zf_descriptor_t *item = &index->items[position];
        if (!zf_platform_match (self->platform, item->platform))
            continue;
        const char *platform = *item->platform ? item->platform : self->current.platform;
        s_push (self, item->digest, platform, self->current.depth + 1);
        chosen++;
        if (!streq (self->platform, "all")) //  one image per platform: the first that matches
            break;
    }
    if (chosen == 0) {
        char offered[256];
        s_list_platforms (index, offered, sizeof offered);
        s_fail (self, ZF_E_INVALID, "%s: the index has no %s image (it has %s)", self->image,
                self->platform, *offered ? offered : "nothing");
        return;
    }
    s_start (self);
}

static void s_manifest_done (zf_resolver_t *self, long status)
{
    if (status == 401) {
        if (s_answer_challenge (self))
            return;
        s_fail (self, ZF_E_REFUSED, "%s: the registry refused access (HTTP 401)%s", self->image,
                self->token_fetched ? " with the token it issued: the credentials have no pull "
                                      "rights on this repository"
                : self->basic_tried ? ": wrong username or password?"
                : self->username    ? ""
                                    : ": give credentials");
        return;
    }
    char text[300] = "";
    if (status != 200)
        zf_registry_error_text (self->body, self->body_size, text, sizeof text);
    if (status == 403) {
        s_fail (self, ZF_E_REFUSED, "%s: the registry forbids access (HTTP 403%s%s)", self->image,
                *text ? " " : "", text);
        return;
    }
    if (status == 404) {
        s_fail (self, ZF_E_MISSING, "%s: not found in the registry (HTTP 404%s%s)", self->image,
                *text ? " " : "", text);
        return;
    }
    if (status != 200) {
        s_fail (self, ZF_E_REMOTE, "%s: the registry answered HTTP %ld%s%s", self->image, status,
                *text ? ": " : "", text);
        return;
    }
    //  By digest, the bytes must be what the digest says.
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    zf_manifest_digest (self->body, self->body_size, digest);
    if (zf_task_digest_valid (self->current.reference)
        && !streq (digest, self->current.reference)) {
        s_fail (self, ZF_E_INVALID, "%s: manifest %s came back with digest %s", self->image,
                self->current.reference, digest);
        return;
    }
    if (self->manifests_fetched == 1)
        zf_strlcpy (self->digest, digest, sizeof self->digest);
    zf_error_t err;
    zf_manifest_t *manifest =
        zf_manifest_parse (self->body, self->body_size, self->content_type, &err);
    if (!manifest) {
        s_fail (self, ZF_E_INVALID, "%s: %s", self->image, err.message);
        return;
    }
    if (manifest->kind == ZF_MANIFEST_INDEX)
        s_take_index (self, manifest);
    else {
        s_add_blobs (self, manifest);
        s_start (self);
    }
    zf_manifest_destroy (&manifest);
}

//  Fetches the manifest in hand (again, after a challenge was answered).
static void s_fetch_current (zf_resolver_t *self)
{
    char *url = zf_image_ref_manifest_url (&self->ref, self->current.reference);
    s_get (self, S_GET_MANIFEST, url, self->authorization);
    zf_free (url);
}

//  Fetches the next pending manifest, or ends when none is left.
static void s_start (zf_resolver_t *self)
{
    if (self->pending_count == 0) {
        s_finish (self, ZF_OK);
        return;
    }
    self->current = self->pending[0];
    memmove (self->pending, self->pending + 1, (self->pending_count - 1) * sizeof *self->pending);
    self->pending_count--;
    if (++self->manifests_fetched > ZF_RESOLVER_MANIFESTS_MAX) {
        s_fail (self, ZF_E_TOO_LARGE, "%s: more than %d manifests", self->image,
                ZF_RESOLVER_MANIFESTS_MAX);
        return;
    }
    s_fetch_current (self);
}

void zf_resolver_curl_done (CURL *easy, CURLcode result, void *easy_private)
{
    zf_resolver_t *self = easy_private;
    ZF_ASSERT (self && self->easy == easy);
    long status = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    if (self->body_too_large) {
        s_fail (self, ZF_E_TOO_LARGE, "%s: the registry's answer is larger than %d bytes",
                self->image, ZF_MANIFEST_BODY_MAX);
        return;
    }
    if (result != CURLE_OK) {
        const char *what =
            self->purpose == S_GET_TOKEN ? "the registry's token service" : "the registry";
        zf_status_t code = result == CURLE_OPERATION_TIMEDOUT ? ZF_E_TIMEOUT : ZF_E_UNREACHABLE;
        s_fail (self, code, "%s: cannot reach %s: %s", self->image, what,
                *self->curl_error ? self->curl_error : curl_easy_strerror (result));
        return;
    }
    if (self->purpose == S_GET_TOKEN)
        s_token_done (self, status);
    else
        s_manifest_done (self, status);
}

//  ---------------------------------------------------------------------------------------------
//  The object

zf_resolver_t *zf_resolver_new (zf_curl_loop_t *curl, const zf_resolve_request_t *request,
                                zf_resolve_done_fn *done, void *arg, zf_error_t *err)
{
    ZF_ASSERT (curl && request && done);
    zf_resolver_t *self = zf_calloc (1, sizeof *self);
    self->curl = curl;
    self->done = done;
    self->done_arg = arg;
    self->timeout_ms = request->timeout_ms > 0 ? request->timeout_ms : 30000;
    zf_strlcpy (self->platform,
                request->platform && *request->platform ? request->platform : "linux/amd64",
                sizeof self->platform);
    for (size_t index = 0; index < request->header_count; index++) {
        const char *line = request->headers[index];
        if (strncasecmp (line, "Authorization:", 14) == 0) {
            const char *value = line + 14;
            while (*value == ' ')
                value++;
            s_set_authorization (self, zf_strdup (value));
            continue;
        }
        self->headers = zf_realloc (self->headers, (self->header_count + 1) * sizeof (char *));
        self->headers[self->header_count++] = zf_strdup (line);
    }
    self->username = request->username && *request->username ? zf_strdup (request->username) : NULL;
    self->password = request->password ? zf_strdup (request->password) : NULL;
    self->connect_to = request->connect_to;
    self->ca_file = request->ca_file && *request->ca_file ? zf_strdup (request->ca_file) : NULL;
    self->status = ZF_E_INTERNAL; //  until done
    zf_status_t status = zf_image_ref_parse (request->url, request->scheme, &self->ref, err);
    if (status == ZF_OK && !zf_platform_valid (self->platform))
        status =
            zf_error_set (err, ZF_E_INVALID, "platform",
                          "'%.90s' is not a platform (os/arch[/variant], or all)", self->platform);
    if (status != ZF_OK) {
        zf_resolver_destroy (&self);
        return NULL;
    }
    zf_image_ref_text (&self->ref, self->image, sizeof self->image);
    s_push (self, self->ref.reference, "", 0);
    s_start (self);
    return self;
}

void zf_resolver_destroy (zf_resolver_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_resolver_t *self = *self_p;
    if (!self)
        return;
    s_transfer_clear (self);
    for (size_t index = 0; index < self->header_count; index++)
        zf_free (self->headers[index]);
    zf_free (self->headers);
    s_set_authorization (self, NULL);
    zf_secret_free (self->password);
    zf_free (self->username);
    zf_free (self->ca_file);
    zf_free (self->pending);
    for (size_t index = 0; index < self->blob_count; index++)
        zf_free (self->blobs[index].url);
    zf_free (self->blobs);
    zf_free (self);
    *self_p = NULL;
}

zf_status_t zf_resolver_result (zf_resolver_t *self, zf_error_t *err)
{
    if (self->status != ZF_OK && err)
        *err = self->err;
    return self->status;
}

size_t zf_resolver_blob_count (zf_resolver_t *self)
{
    return self->blob_count;
}

const zf_resolved_blob_t *zf_resolver_blob (zf_resolver_t *self, size_t index)
{
    ZF_ASSERT (index < self->blob_count);
    return &self->blobs[index];
}

const char *zf_resolver_authorization (zf_resolver_t *self)
{
    return self->authorization;
}

const char *zf_resolver_image (zf_resolver_t *self)
{
    return self->image;
}

const char *zf_resolver_digest (zf_resolver_t *self)
{
    return self->digest;
}
