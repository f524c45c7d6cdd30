/*  zf_resolver.h — resolves an image to the blobs a preheat fetches, over HTTP(S).

    One resolver is one conversation with one registry, run on the caller's zloop through
    zf_curl_loop (no thread, no blocking call), so the preheat worker goes on serving its bus
    while registries answer:

      1. GET the manifest (Accept: every type zf_manifest reads), with the job's headers;
      2. on 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, GET a token from
         the realm (Basic credentials there when the job has them) and ask again with
         `Authorization: Bearer TOKEN`; on a Basic challenge, ask again with the credentials;
      3. an index (manifest list) is narrowed to the job's platform ("all": every platform)
         and each chosen child manifest is fetched by digest and checked against it; nested
         indexes are followed up to ZF_RESOLVER_DEPTH_MAX levels;
      4. the answer: the config and layer blobs of every chosen image, each once, with its
         URL at the registry, and the Authorization header that opened the registry (for the
         fetchers that will GET the blobs).

    Redirects (a registry that sends manifests to a CDN) are followed by curl, which drops the
    Authorization header when the host, port or scheme changes. Manifest bodies are untrusted:
    capped at ZF_MANIFEST_BODY_MAX and parsed by zf_manifest. Credentials and tokens are never
    logged and never appear in an error message.

    Failures say what a person needs to fix: ZF_E_REFUSED for wrong credentials or missing
    rights, ZF_E_MISSING for an unknown repository or tag, ZF_E_INVALID for a platform the
    index lacks or a malformed manifest, ZF_E_UNREACHABLE / ZF_E_TIMEOUT when the registry
    cannot be reached, ZF_E_REMOTE for other HTTP errors. */
#ifndef ZF_RESOLVER_H_INCLUDED
#define ZF_RESOLVER_H_INCLUDED

#include "zf_curl_loop.h"
#include "zf_manifest.h"

#define ZF_RESOLVER_DEPTH_MAX     4  //  index -> index -> … -> image
#define ZF_RESOLVER_MANIFESTS_MAX 64 //  manifests fetched for one image, indexes included

typedef struct zf_resolver_s zf_resolver_t;

typedef struct {
    const char *url;      //  an image reference or a manifest URL (zf_image_ref_parse)
    const char *platform; //  "os/arch[/variant]" or "all"; NULL or "": linux/amd64
    const char *scheme;   //  for references without one: "https" (NULL) or "http"
    //  Headers for the registry, "Name: value" each; an Authorization among them is used
    //  until the registry refuses it.
    const char *const *headers;
    size_t header_count;
    const char *username; //  Basic credentials for the token realm or a Basic challenge
    const char *password;
    struct curl_slist *connect_to; //  CURLOPT_CONNECT_TO entries (borrowed), may be NULL
    const char *ca_file;           //  CA bundle for https registries, NULL: the system's
    int64_t timeout_ms;            //  deadline of each HTTP request
} zf_resolve_request_t;

typedef struct {
    char *url; //  the blob at the registry: SCHEME://HOST/v2/REPO/blobs/DIGEST
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    uint64_t size;
    char media_type[128];
    char platform[96]; //  of the image it belongs to ("" without an index)
} zf_resolved_blob_t;

typedef void (zf_resolve_done_fn) (zf_resolver_t *resolver, void *arg);

//  Starts resolving; done runs once, later, from the loop (never from inside this call). The
//  request is copied. NULL with err (ZF_E_INVALID) when the reference or platform is wrong.
zf_resolver_t *zf_resolver_new (zf_curl_loop_t *curl, const zf_resolve_request_t *request,
                                zf_resolve_done_fn *done, void *arg, zf_error_t *err);
//  Stops a resolution that runs (done does not run) and frees everything.
void zf_resolver_destroy (zf_resolver_t **self_p);

//  For the curl loop's done callback: a transfer whose CURLOPT_PRIVATE a resolver set.
void zf_resolver_curl_done (CURL *easy, CURLcode result, void *easy_private);

//  After done: ZF_OK, or the failure (err filled).
zf_status_t zf_resolver_result (zf_resolver_t *self, zf_error_t *err);
size_t zf_resolver_blob_count (zf_resolver_t *self);
const zf_resolved_blob_t *zf_resolver_blob (zf_resolver_t *self, size_t index);
//  The Authorization value that opened the registry ("Bearer …" or "Basic …"), NULL when
//  none was needed. Secret: pass it on to fetchers, never log it.
const char *zf_resolver_authorization (zf_resolver_t *self);
//  "HOST/REPO:TAG", for logs.
const char *zf_resolver_image (zf_resolver_t *self);
//  The digest of the manifest or index the reference named ("" before it was fetched).
const char *zf_resolver_digest (zf_resolver_t *self);

#endif
