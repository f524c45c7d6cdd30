/*  zf_fetch_access.h — may this client read this URL? The origin says, once per TTL.

    A task's bytes are shared by every client that asks for them (the task id is the content
    digest), but an origin such as a private registry decides per client who may read what.
    So before the fetcher serves a task to a caller, the origin must have accepted the
    caller's own request headers (its credentials) for the URL. Where the fetcher makes a
    task for the caller and that task goes to the origin first, the task's own first range
    (sent with exactly those headers) is the proof, and nothing is asked: its 2xx is a yes,
    its 401, 403 or 404 a no, recorded here like an answer (zf_fetch_access_record;
    zf_fetch_task_await_proof). Every other caller (one that joins a running task or reads a
    complete one, a task that takes its bytes from parents) is asked about: a HEAD of the
    URL with the caller's headers, redirects not followed. 2xx, or a
    3xx to where the bytes live (a registry's 307 to its object storage), means yes; 401,
    403 and 404 mean no (the caller then asks the origin itself and gets its own answer,
    challenge and all); a HEAD the origin does not allow (405, 501) is asked again as a GET
    of one byte. Anything else (5xx, no connection) is an error, and the caller is refused:
    access is never granted because the question could not be asked.

    Answers are kept for ttl_ms, keyed by a SHA-256 of the URL and the caller's headers: the
    credential itself is never stored, only that hash. Questions for one key while one is out
    wait for its answer, so a swarm of pulls costs the origin one small request per client
    and TTL, never blob bytes. Origins listed in [upstream] public are not asked.

    Metrics: zfly_fetcher_access_checks_total{result=allowed|refused|error} (requests to
    origins), zfly_fetcher_access_proofs_total{result=allowed|refused} (tasks' own first
    ranges), zfly_fetcher_access_cache_hits_total{verdict=allowed|refused},
    zfly_fetcher_access_skipped_total (public origins). Refusals are logged with the URL
    (its query left out) and the status, never with the credentials. */
#ifndef ZF_FETCH_ACCESS_H_INCLUDED
#define ZF_FETCH_ACCESS_H_INCLUDED

#include "zf_curl_loop.h"
#include "zf_msgs.h"
#include "zf_upstream.h"

typedef struct zf_fetch_access_s zf_fetch_access_t;

typedef enum {
    ZF_FETCH_ACCESS_ALLOWED,
    ZF_FETCH_ACCESS_REFUSED, //  the origin said no to these credentials: why says how
    ZF_FETCH_ACCESS_ERROR,   //  the origin could not be asked: why says why
} zf_fetch_access_verdict_t;

//  content_length: the length the origin's yes stated, when it was a 200 with Content-Length
//  and "Accept-Ranges: bytes" (a task that goes to the origin then needs no probe of its own);
//  -1 otherwise (a redirect, no ranges, a refusal).
typedef void (zf_fetch_access_fn) (zf_fetch_access_verdict_t verdict, const char *why,
                                   int64_t content_length, void *arg);
//  Frees an arg whose answer never came (the fetcher stopped).
typedef void (zf_fetch_access_free_fn) (void *arg);

typedef struct {
    const char *name;                     //  the actor, for logs and metrics
    int64_t ttl_ms;                       //  how long an answer is kept; 0: not kept
    int64_t timeout_ms;                   //  one question, all of it
    const zf_upstream_config_t *upstream; //  hosts, ca, connect timeout, public origins
} zf_fetch_access_options_t;

//  On the actor's loop (its own curl multi handle). options->upstream is borrowed.
zf_fetch_access_t *zf_fetch_access_new (zloop_t *loop, const zf_fetch_access_options_t *options);
//  Unanswered questions are dropped: their args go to their free functions.
void zf_fetch_access_destroy (zf_fetch_access_t **self_p);

//  Asks whether the caller behind headers may read url. The callback runs exactly once: at
//  once for a public origin or a kept answer, else when the origin answered.
void zf_fetch_access_check (zf_fetch_access_t *self, const char *url,
                            const zf_rec_http_header_t *headers, size_t header_count,
                            zf_fetch_access_fn *callback, zf_fetch_access_free_fn *free_fn,
                            void *arg);

//  Whether zf_fetch_access_check would ask the origin (false: a public origin, or an answer
//  kept for these headers).
bool zf_fetch_access_would_ask (zf_fetch_access_t *self, const char *url,
                                const zf_rec_http_header_t *headers, size_t header_count);
//  The origin answered the caller's own request for url, sent by a task with exactly these
//  headers (its first range; see zf_fetch_task_await_proof): status 2xx (allowed) or 401, 403,
//  404 (refused). Kept as a question's answer would be (content_length: what the answer
//  stated, -1 if not), counted in zfly_fetcher_access_proofs_total{result}; why gets the
//  words a question's answer would have.
void zf_fetch_access_record (zf_fetch_access_t *self, const char *url,
                             const zf_rec_http_header_t *headers, size_t header_count, bool allowed,
                             long status, int64_t content_length, char *why, size_t why_size);

void zf_fetch_access_test (bool verbose);

#endif
