/*  zf_fetch_access.c — may this client read this URL? (see zf_fetch_access.h) */
#include "zf_fetch_access.h"
#include "zf_curl_origin.h"
#include "zf_fetch_origin.h"
#include "zf_log.h"
#include "zf_metrics.h"
#include <ctype.h>
#include <openssl/evp.h>
#include <strings.h>

#define KEYS_MAX 4096 //  answers kept at most (expired ones go first)

typedef struct {
    zf_fetch_access_fn *callback;
    zf_fetch_access_free_fn *free_fn;
    void *arg;
} waiter_t;

typedef struct {
    bool allowed;
    int64_t content_length; //  -1: not stated (see zf_fetch_access_fn)
    int64_t expires_ms;
    char why[256];
} answer_t;

typedef struct {
    zf_fetch_access_t *owner;
    char key[65];
    char *url;
    char *where; //  the URL without its query, for logs and answers
    CURL *easy;
    struct curl_slist *headers;
    bool as_get; //  asked again as a GET of one byte (the origin refused HEAD)
    bool ranges; //  the answer said "Accept-Ranges: bytes"
    zlistx_t *waiters;
    char curl_error[CURL_ERROR_SIZE];
} question_t;

struct zf_fetch_access_s {
    zf_fetch_access_options_t options;
    zf_curl_loop_t *curl;
    struct curl_slist *connect_to;
    zhashx_t *answers;   //  key -> answer_t
    zhashx_t *questions; //  key -> question_t in flight
    zf_counter_t *allowed, *refused, *errors, *cached_allowed, *cached_refused, *skipped;
    zf_counter_t *proofs_allowed, *proofs_refused;
};

//  ---------------------------------------------------------------------------------------------
//  Keys: a SHA-256 of the URL and the caller's headers, in hex. The headers hold the
//  credentials; nothing else of them is kept.

static void s_key (const char *url, const zf_rec_http_header_t *headers, size_t count, char key[65])
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new ();
    ZF_ASSERT (sha && EVP_DigestInit_ex (sha, EVP_sha256 (), NULL) == 1);
    EVP_DigestUpdate (sha, url, strlen (url) + 1);
    for (size_t index = 0; index < count; index++) {
        //  names in any case mean the same header
        for (const char *name = headers[index].name; *name; name++) {
            char lower = (char) tolower ((unsigned char) *name);
            EVP_DigestUpdate (sha, &lower, 1);
        }
        EVP_DigestUpdate (sha, ":", 1);
        EVP_DigestUpdate (sha, headers[index].value, strlen (headers[index].value) + 1);
    }
    uint8_t hash[32];
    unsigned int size = 0;
    EVP_DigestFinal_ex (sha, hash, &size);
    EVP_MD_CTX_free (sha);
    for (size_t index = 0; index < sizeof hash; index++)
        snprintf (key + 2 * index, 3, "%02x", hash[index]);
}

//  What an origin's status means for access: true yes, false no; *known false when it says
//  neither (an error).
static bool s_status_allows (long status, bool *known)
{
    *known = true;
    if (status >= 200 && status < 400)
        return true; //  a 307 to object storage: the bytes are there for this client
    if (status == 401 || status == 403 || status == 404)
        return false;
    *known = false;
    return false;
}

//  ---------------------------------------------------------------------------------------------
//  Answers

static void s_keep (zf_fetch_access_t *self, const char *key, bool allowed, int64_t content_length,
                    const char *why)
{
    if (self->options.ttl_ms <= 0)
        return;
    int64_t now = zclock_mono ();
    if (zhashx_size (self->answers) >= KEYS_MAX) {
        zlist_t *expired = zlist_new ();
        for (answer_t *answer = zhashx_first (self->answers); answer;
             answer = zhashx_next (self->answers))
            if (answer->expires_ms <= now)
                zlist_append (expired, (void *) zhashx_cursor (self->answers));
        for (const char *old = zlist_first (expired); old; old = zlist_next (expired))
            zhashx_delete (self->answers, old);
        zlist_destroy (&expired);
        if (zhashx_size (self->answers) >= KEYS_MAX)
            zhashx_purge (self->answers); //  all fresh: rare, and only costs questions again
    }
    answer_t *answer = zf_calloc (1, sizeof *answer);
    answer->allowed = allowed;
    answer->content_length = content_length;
    answer->expires_ms = now + self->options.ttl_ms;
    zf_strlcpy (answer->why, why, sizeof answer->why);
    zhashx_update (self->answers, key, answer);
}

//  The origin's verdict on a client's request for `where` (the URL without its query): words
//  for the caller in why, counted, a refusal logged, and kept for the TTL (content_length:
//  what a yes stated, -1 if nothing).
static void s_conclude (zf_fetch_access_t *self, const char *key, const char *where, bool allowed,
                        long status, int64_t content_length, zf_counter_t *counter, char *why,
                        size_t why_size)
{
    if (allowed)
        snprintf (why, why_size, "%s answered %ld", where, status);
    else {
        snprintf (why, why_size, "the origin answered %ld to this client's request for %s", status,
                  where);
        zf_notice (self->options.name, "access refused url=%s status=%ld", where, status);
    }
    zf_counter_add (counter, 1);
    s_keep (self, key, allowed, allowed ? content_length : -1, why);
}

static const answer_t *s_kept (zf_fetch_access_t *self, const char *key)
{
    answer_t *answer = zhashx_lookup (self->answers, key);
    if (answer && answer->expires_ms <= zclock_mono ()) {
        zhashx_delete (self->answers, key);
        answer = NULL;
    }
    return answer;
}

//  Every caller waiting on the question gets the verdict; the question goes.
static void s_answer (question_t *question, zf_fetch_access_verdict_t verdict, const char *why,
                      int64_t content_length)
{
    zf_fetch_access_t *self = question->owner;
    zlistx_t *waiters = question->waiters;
    question->waiters = NULL;
    zhashx_delete (self->questions, question->key); //  frees the question
    waiter_t *waiter;
    while ((waiter = zlistx_detach (waiters, NULL))) {
        waiter->callback (verdict, why, content_length, waiter->arg);
        zf_free (waiter);
    }
    zlistx_destroy (&waiters);
}

//  ---------------------------------------------------------------------------------------------
//  Questions: a HEAD (or a GET of one byte) with the caller's headers

static size_t s_discard (char *data, size_t size, size_t count, void *arg)
{
    (void) data;
    (void) arg;
    return size * count;
}

static void s_ask (question_t *question);

//  Headers of the answer: whether it says "Accept-Ranges: bytes".
static size_t s_on_header (char *line, size_t size, size_t count, void *arg)
{
    question_t *question = arg;
    size_t length = size * count;
    char value[16];
    if (zf_curl_origin_status_line (line, length))
        question->ranges = false;
    else if (zf_curl_origin_header (line, length, "Accept-Ranges", value, sizeof value))
        question->ranges = strncasecmp (value, "bytes", 5) == 0;
    return length;
}

static void s_curl_done (CURL *easy, CURLcode result, void *easy_private, void *arg)
{
    (void) arg;
    question_t *question = easy_private;
    zf_fetch_access_t *self = question->owner;
    long status = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    char why[512];
    if (result != CURLE_OK) {
        curl_easy_cleanup (easy);
        question->easy = NULL;
        snprintf (why, sizeof why, "cannot ask %s whether this client may read it: %s",
                  question->where,
                  *question->curl_error ? question->curl_error : curl_easy_strerror (result));
        zf_counter_add (self->errors, 1);
        zf_notice (self->options.name, "access: %s", why);
        s_answer (question, ZF_FETCH_ACCESS_ERROR, why, -1);
        return;
    }
    if ((status == 405 || status == 501) && !question->as_get) {
        curl_easy_cleanup (easy);
        question->easy = NULL;
        question->as_get = true; //  HEAD not allowed there: the same question as a GET
        s_ask (question);
        return;
    }
    bool known;
    bool allowed = s_status_allows (status, &known);
    if (!known) {
        curl_easy_cleanup (easy);
        question->easy = NULL;
        snprintf (why, sizeof why, "%s answered %ld when asked whether this client may read it",
                  question->where, status);
        zf_counter_add (self->errors, 1);
        zf_notice (self->options.name, "access: %s", why);
        s_answer (question, ZF_FETCH_ACCESS_ERROR, why, -1);
        return;
    }
    //  A HEAD's 200 states the length, and Accept-Ranges whether pieces may be asked for: the
    //  task then skips its own probe (one round trip to the origin less before the first byte).
    curl_off_t length = -1;
    if (status == 200 && !question->as_get && question->ranges)
        curl_easy_getinfo (easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    int64_t content_length = length > 0 ? (int64_t) length : -1;
    curl_easy_cleanup (easy);
    question->easy = NULL;
    s_conclude (self, question->key, question->where, allowed, status, content_length,
                allowed ? self->allowed : self->refused, why, sizeof why);
    s_answer (question, allowed ? ZF_FETCH_ACCESS_ALLOWED : ZF_FETCH_ACCESS_REFUSED, why,
              allowed ? content_length : -1);
}

static void s_ask (question_t *question)
{
    zf_fetch_access_t *self = question->owner;
    const zf_upstream_config_t *upstream = self->options.upstream;
    question->curl_error[0] = '\0';
    //  A redirect is the answer (max_redirects 0): the question is about this URL.
    zf_curl_origin_t setup = {.url = question->url,
                              .owner = question,
                              .error_buffer = question->curl_error,
                              .header_fn = s_on_header,
                              .header_arg = question,
                              .body_fn = s_discard,
                              .headers = question->headers,
                              .user_agent = "zfly-fetcher/0.1 (access)",
                              .connect_to = self->connect_to,
                              .ca = upstream->ca,
                              .connect_timeout_ms = upstream->connect_timeout_ms,
                              .timeout_ms = self->options.timeout_ms,
                              .http1 = true,
                              .ignore_env_proxy = true};
    CURL *easy = question->easy = zf_curl_origin_new (&setup);
    if (question->as_get)
        curl_easy_setopt (easy, CURLOPT_RANGE, "0-0");
    else
        curl_easy_setopt (easy, CURLOPT_NOBODY, 1L);
    zf_curl_loop_add (self->curl, easy);
}

static void s_question_free (void **item)
{
    question_t *question = *item;
    if (!question)
        return;
    if (question->easy) {
        zf_curl_loop_remove (question->owner->curl, question->easy);
        curl_easy_cleanup (question->easy);
    }
    waiter_t *waiter;
    while (question->waiters && (waiter = zlistx_detach (question->waiters, NULL))) {
        if (waiter->free_fn)
            waiter->free_fn (waiter->arg);
        zf_free (waiter);
    }
    zlistx_destroy (&question->waiters);
    curl_slist_free_all (question->headers);
    zf_free (question->url);
    zf_free (question->where);
    zf_free (question);
    *item = NULL;
}

static question_t *s_question_new (zf_fetch_access_t *self, const char *key, const char *url,
                                   const zf_rec_http_header_t *headers, size_t count)
{
    question_t *question = zf_calloc (1, sizeof *question);
    question->owner = self;
    zf_strlcpy (question->key, key, sizeof question->key);
    question->url = zf_strdup (url);
    question->where = zf_strndup (url, strcspn (url, "?#"));
    question->waiters = zlistx_new ();
    question->headers = zf_fetch_origin_headers (headers, count);
    zhashx_insert (self->questions, key, question);
    return question;
}

//  ---------------------------------------------------------------------------------------------

void zf_fetch_access_check (zf_fetch_access_t *self, const char *url,
                            const zf_rec_http_header_t *headers, size_t header_count,
                            zf_fetch_access_fn *callback, zf_fetch_access_free_fn *free_fn,
                            void *arg)
{
    if (zf_upstream_is_public (self->options.upstream, url)) {
        zf_counter_add (self->skipped, 1);
        callback (ZF_FETCH_ACCESS_ALLOWED, "a public origin", -1, arg);
        return;
    }
    char key[65];
    s_key (url, headers, header_count, key);
    const answer_t *kept = s_kept (self, key);
    if (kept) {
        zf_counter_add (kept->allowed ? self->cached_allowed : self->cached_refused, 1);
        char why[sizeof kept->why]; //  the callback may ask again and so change the answers
        zf_strlcpy (why, kept->why, sizeof why);
        callback (kept->allowed ? ZF_FETCH_ACCESS_ALLOWED : ZF_FETCH_ACCESS_REFUSED, why,
                  kept->content_length, arg);
        return;
    }
    question_t *question = zhashx_lookup (self->questions, key);
    bool new_question = !question;
    if (new_question)
        question = s_question_new (self, key, url, headers, header_count);
    waiter_t *waiter = zf_calloc (1, sizeof *waiter);
    *waiter = (waiter_t){.callback = callback, .free_fn = free_fn, .arg = arg};
    zlistx_add_end (question->waiters, waiter);
    if (new_question)
        s_ask (question);
}

bool zf_fetch_access_would_ask (zf_fetch_access_t *self, const char *url,
                                const zf_rec_http_header_t *headers, size_t header_count)
{
    if (zf_upstream_is_public (self->options.upstream, url))
        return false;
    char key[65];
    s_key (url, headers, header_count, key);
    return s_kept (self, key) == NULL;
}

void zf_fetch_access_record (zf_fetch_access_t *self, const char *url,
                             const zf_rec_http_header_t *headers, size_t header_count, bool allowed,
                             long status, int64_t content_length, char *why, size_t why_size)
{
    char key[65];
    s_key (url, headers, header_count, key);
    char *where = zf_strndup (url, strcspn (url, "?#")); //  for logs: no query
    s_conclude (self, key, where, allowed, status, content_length > 0 ? content_length : -1,
                allowed ? self->proofs_allowed : self->proofs_refused, why, why_size);
    zf_free (where);
}

static void s_answer_free (void **item)
{
    zf_free (*item);
    *item = NULL;
}

zf_fetch_access_t *zf_fetch_access_new (zloop_t *loop, const zf_fetch_access_options_t *options)
{
    zf_fetch_access_t *self = zf_calloc (1, sizeof *self);
    self->options = *options;
    self->curl = zf_curl_loop_new (loop, s_curl_done, self);
    self->connect_to = zf_upstream_connect_to (options->upstream);
    self->answers = zhashx_new ();
    zhashx_set_destructor (self->answers, s_answer_free);
    self->questions = zhashx_new ();
    zhashx_set_destructor (self->questions, s_question_free);
    const char *help = "Questions to origins whether a client may read a URL, by answer";
    self->allowed = zf_metrics_counter ("zfly_fetcher_access_checks_total", help, "actor",
                                        options->name, "result", "allowed", NULL);
    self->refused = zf_metrics_counter ("zfly_fetcher_access_checks_total", help, "actor",
                                        options->name, "result", "refused", NULL);
    self->errors = zf_metrics_counter ("zfly_fetcher_access_checks_total", help, "actor",
                                       options->name, "result", "error", NULL);
    help = "Access answers served from the TTL cache, by verdict";
    self->cached_allowed = zf_metrics_counter ("zfly_fetcher_access_cache_hits_total", help,
                                               "actor", options->name, "verdict", "allowed", NULL);
    self->cached_refused = zf_metrics_counter ("zfly_fetcher_access_cache_hits_total", help,
                                               "actor", options->name, "verdict", "refused", NULL);
    help = "Access answered by a task's own first request to the origin (with the caller's "
           "headers: no question asked), by answer";
    self->proofs_allowed = zf_metrics_counter ("zfly_fetcher_access_proofs_total", help, "actor",
                                               options->name, "result", "allowed", NULL);
    self->proofs_refused = zf_metrics_counter ("zfly_fetcher_access_proofs_total", help, "actor",
                                               options->name, "result", "refused", NULL);
    self->skipped = zf_metrics_counter ("zfly_fetcher_access_skipped_total",
                                        "Requests served without asking: a public origin", "actor",
                                        options->name, NULL);
    return self;
}

void zf_fetch_access_destroy (zf_fetch_access_t **self_p)
{
    zf_fetch_access_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->questions); //  their transfers first, then the multi handle
    zf_curl_loop_destroy (&self->curl);
    zhashx_destroy (&self->answers);
    curl_slist_free_all (self->connect_to);
    zf_free (self);
    *self_p = NULL;
}

void zf_fetch_access_test (bool verbose)
{
    if (verbose)
        printf (" * zf_fetch_access: ");
    zf_rec_http_header_t one[] = {{.name = "Authorization", .value = "Bearer a"}};
    zf_rec_http_header_t other[] = {{.name = "authorization", .value = "Bearer b"}};
    zf_rec_http_header_t same[] = {{.name = "AUTHORIZATION", .value = "Bearer a"}};
    char key_one[65], key_other[65], key_same[65], key_none[65], key_url[65];
    s_key ("https://r/v2/a/blobs/sha256:1", one, 1, key_one);
    s_key ("https://r/v2/a/blobs/sha256:1", other, 1, key_other);
    s_key ("https://r/v2/a/blobs/sha256:1", same, 1, key_same);
    s_key ("https://r/v2/a/blobs/sha256:1", NULL, 0, key_none);
    s_key ("https://r/v2/b/blobs/sha256:1", one, 1, key_url);
    ZF_ASSERT (strlen (key_one) == 64 && streq (key_one, key_same));
    ZF_ASSERT (!streq (key_one, key_other) && !streq (key_one, key_none));
    ZF_ASSERT (!streq (key_one, key_url)); //  another repository is another question
    ZF_ASSERT (!strstr (key_one, "Bearer"));
    bool known;
    ZF_ASSERT (s_status_allows (200, &known) && known);
    ZF_ASSERT (s_status_allows (307, &known) && known);
    ZF_ASSERT (!s_status_allows (401, &known) && known);
    ZF_ASSERT (!s_status_allows (403, &known) && known);
    ZF_ASSERT (!s_status_allows (404, &known) && known);
    ZF_ASSERT (!s_status_allows (500, &known) && !known);
    ZF_ASSERT (!s_status_allows (429, &known) && !known);
    if (verbose)
        printf ("OK\n");
}
