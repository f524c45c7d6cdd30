/*  zf_task_id.h — which task a request means, and how its content is cut into pieces.

    Same content, same task, whatever mirror or signed URL it came from:

    - When the content digest is known (given, or named by the URL path as
      `/blobs/sha256:<64 lowercase hex>`), the id depends only on the digest, tag and
      application. One layer pulled from two registries is one task.
    - Otherwise the id depends on the canonical URL, tag and application. Canonical form:
        scheme and host lowercased; user:password@ dropped; default port (:80 for http, :443
        for https) dropped; path kept byte for byte; fragment dropped; query parameters whose
        name is volatile removed (names compared case-insensitively: X-Amz-*, X-Goog-*,
        x-oss-*, X-Obs-*, OSSAccessKeyId, security-token, AccessKeyId, Expires, Signature,
   SecurityToken, q-sign-algorithm, q-ak, q-sign-time, q-key-time, q-header-list, q-url-param-list,
        q-signature, containerd's ns, plus the configured extra names, where a trailing '*'
        means a prefix); the rest sorted by name then value (byte order, as sent, no
        re-encoding) and joined with '&'; "?" only when parameters remain.
    - id = lowercase hex SHA-256 of "zfly-task-v1" NUL "digest" or "url" NUL value NUL "tag"
      NUL tag NUL "application" NUL application. NULs keep the fields from running together.
    Range is never part of the id.

    Piece length (DESIGN.md section 5): the next power of two of content_length / target,
    clamped to [min, max], both powers of two. */
#ifndef ZF_TASK_ID_H_INCLUDED
#define ZF_TASK_ID_H_INCLUDED

#include "zf_error.h"

#define ZF_TASK_ID_SIZE     64                    //  hex characters
#define ZF_DIGEST_TEXT_SIZE (7 + ZF_TASK_ID_SIZE) //  "sha256:" + 64 hex

//  True when digest is "sha256:" followed by 64 lowercase hex characters.
bool zf_task_digest_valid (const char *digest);

//  Copies the digest named by a `/blobs/sha256:<hex>` URL path into digest; false if none.
bool zf_task_digest_from_url (const char *url, char digest[ZF_DIGEST_TEXT_SIZE + 1]);

//  The canonical form described above (caller frees), or NULL with err when url is not an
//  absolute http(s) URL. extra_volatile: space-separated names, may be NULL.
char *zf_task_url_canonical (const char *url, const char *extra_volatile, zf_error_t *err);

//  Computes the id into id (NUL-terminated) and the content digest in force into digest
//  ("" when none). digest_in, tag, application may be NULL or "". Fails with ZF_E_INVALID on a
//  malformed digest or URL.
zf_status_t zf_task_id_compute (const char *url, const char *digest_in, const char *tag,
                                const char *application, const char *extra_volatile,
                                char id[ZF_TASK_ID_SIZE + 1], char digest[ZF_DIGEST_TEXT_SIZE + 1],
                                zf_error_t *err);

//  Piece length for a content length; min and max powers of two, min <= max, target >= 1.
uint64_t zf_piece_length (uint64_t content_length, uint64_t min, uint64_t max,
                          uint64_t target_pieces);

void zf_task_id_test (bool verbose);

#endif
