/*  zf_manifest.h — what a registry's answers mean, without talking to one.

    The preheat worker resolves an image to the blobs its nodes should fetch (zf_resolver does
    the HTTP). Everything that reads the registry's bytes lives here, as pure functions with a
    selftest and a fuzz target (tests/fuzz/fuzz_manifest.c), because those bytes are untrusted:
      - image references and manifest URLs: "HOST/REPO:TAG", "HOST/REPO@sha256:…", "REPO:TAG"
        (Docker Hub), and Harbor's "https://HOST/v2/REPO/manifests/TAG";
      - manifests: Docker v2 schema 2 and OCI image manifests (config and layers), Docker
        manifest lists and OCI image indexes (child manifests with their platforms), told apart
        by mediaType, else by Content-Type, else by shape; schema 1 is refused by name;
      - platforms: "os/arch[/variant]" as an index entry carries it, and matching;
      - `WWW-Authenticate` challenges (Bearer realm/service/scope, Basic) and the token realm's
        answer ({"token"} or {"access_token"});
      - the registry's error body ({"errors":[{"code","message"}]}), for messages people read.
    Every bound is explicit: bodies up to ZF_MANIFEST_BODY_MAX, lists up to
    ZF_MANIFEST_ITEMS_MAX, digests only "sha256:" + 64 lowercase hex, sizes 0..2^53. */
#ifndef ZF_MANIFEST_H_INCLUDED
#define ZF_MANIFEST_H_INCLUDED

#include "zf_error.h"
#include "zf_task_id.h"

#define ZF_MANIFEST_BODY_MAX  (4 * 1024 * 1024) //  a manifest or index larger than this is refused
#define ZF_MANIFEST_ITEMS_MAX 1024              //  layers of a manifest, entries of an index

#define ZF_MEDIA_OCI_INDEX      "application/vnd.oci.image.index.v1+json"
#define ZF_MEDIA_OCI_MANIFEST   "application/vnd.oci.image.manifest.v1+json"
#define ZF_MEDIA_DOCKER_LIST    "application/vnd.docker.distribution.manifest.list.v2+json"
#define ZF_MEDIA_DOCKER_V2      "application/vnd.docker.distribution.manifest.v2+json"
#define ZF_MEDIA_DOCKER_V1      "application/vnd.docker.distribution.manifest.v1+json"
#define ZF_MEDIA_DOCKER_V1_SIGN "application/vnd.docker.distribution.manifest.v1+prettyjws"
//  What a resolver sends as Accept: every type it reads. distribution answers 404 for an OCI
//  manifest when Accept does not name the OCI type.
#define ZF_MANIFEST_ACCEPT                                                                         \
    ZF_MEDIA_OCI_INDEX ", " ZF_MEDIA_OCI_MANIFEST ", " ZF_MEDIA_DOCKER_LIST ","                    \
                       " " ZF_MEDIA_DOCKER_V2

//  ---------------------------------------------------------------------------------------------
//  Image references

typedef struct {
    char scheme[8];       //  "https" or "http"
    char host[256];       //  "registry.example:5000"; Docker Hub is "registry-1.docker.io"
    char repository[256]; //  "library/alpine"
    char reference[160];  //  a tag, or "sha256:…"
} zf_image_ref_t;

//  Reads a manifest URL ("http[s]://HOST/v2/REPO/manifests/REF", as Harbor sends it) or a
//  reference ("[HOST/]REPO[:TAG][@sha256:…]": no host means Docker Hub, one path segment there
//  means library/, no tag means "latest", and a digest wins over a tag). scheme is used for
//  references ("https", or "http" for a registry without TLS). ZF_E_INVALID with what is wrong.
zf_status_t zf_image_ref_parse (const char *text, const char *scheme, zf_image_ref_t *ref,
                                zf_error_t *err);
//  "SCHEME://HOST/v2/REPO/manifests/REFERENCE" and ".../blobs/DIGEST" (caller frees).
char *zf_image_ref_manifest_url (const zf_image_ref_t *ref, const char *reference);
char *zf_image_ref_blob_url (const zf_image_ref_t *ref, const char *digest);
//  "HOST/REPO:TAG" or "HOST/REPO@DIGEST", for messages.
void zf_image_ref_text (const zf_image_ref_t *ref, char *text, size_t size);

//  ---------------------------------------------------------------------------------------------
//  Manifests and indexes

typedef enum {
    ZF_MANIFEST_IMAGE, //  an image manifest: items are the config, then the layers
    ZF_MANIFEST_INDEX, //  an index / manifest list: items are child manifests
} zf_manifest_kind_t;

typedef struct {
    char digest[ZF_DIGEST_TEXT_SIZE + 1];
    char media_type[128]; //  "" when the document gave none
    uint64_t size;
    char platform[96]; //  index entries: "os/arch[/variant]", "" when none was given
} zf_descriptor_t;

typedef struct {
    zf_manifest_kind_t kind;
    char media_type[128];
    zf_descriptor_t *items;
    size_t count;
} zf_manifest_t;

//  Parses a manifest or an index. content_type is the response's (may be NULL); the document's
//  own mediaType wins when it has one. Refuses, with a message that says which: bodies that
//  are not a JSON object, schema 1, unknown media types, missing or malformed digests and
//  sizes, more than ZF_MANIFEST_ITEMS_MAX items, an image without a config.
zf_manifest_t *zf_manifest_parse (const char *body, size_t size, const char *content_type,
                                  zf_error_t *err);
void zf_manifest_destroy (zf_manifest_t **self_p);
bool zf_media_type_is_index (const char *media_type);

//  ---------------------------------------------------------------------------------------------
//  Platforms

//  True for "all" and "os/arch[/variant]" (lowercase letters, digits, '_', '.', '-').
bool zf_platform_valid (const char *platform);
//  Whether an index entry's platform ("os/arch[/variant]") is one the job asked for: "all"
//  takes every entry but attestations ("unknown/unknown"); otherwise os and architecture must
//  be equal, and the variant too when the job names one (arm64's "" and "v8" are one). An
//  entry without a platform (a nested index) matches anything.
bool zf_platform_match (const char *wanted, const char *platform);

//  ---------------------------------------------------------------------------------------------
//  Authentication

typedef struct {
    char scheme[16]; //  "Bearer" or "Basic", as the registry spelt it
    char realm[1024];
    char service[256];
    char scope[1024];
} zf_challenge_t;

//  Parses a WWW-Authenticate value: SCHEME followed by comma-separated key=value or
//  key="quoted value" parameters (quoted-pair escapes honoured). A Bearer challenge needs an
//  http(s) realm. Unknown parameters are ignored.
zf_status_t zf_challenge_parse (const char *header, zf_challenge_t *challenge, zf_error_t *err);
//  The token from the realm's JSON answer ("token", else "access_token"; caller frees), or NULL
//  with err. A token is at most 16 KiB of printable ASCII without blanks.
char *zf_token_answer_parse (const char *body, size_t size, zf_error_t *err);

//  The first error of a registry's error body as "CODE: message" (cut to size), or false when
//  the body is not one.
bool zf_registry_error_text (const char *body, size_t size, char *text, size_t text_size);

//  "sha256:HEX" of bytes into digest (ZF_DIGEST_TEXT_SIZE + 1).
void zf_manifest_digest (const void *data, size_t size, char *digest);

void zf_manifest_test (bool verbose);

#endif
