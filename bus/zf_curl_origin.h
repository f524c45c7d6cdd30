/*  zf_curl_origin.h — an easy handle set up to reach an origin, the same way everywhere.

    Four transfers go to origins and registries: the fetcher's back-to-source (zf_fetch_origin),
    its access question (zf_fetch_access), the proxy's direct upstream path (zf_proxy_direct) and
    the preheat resolver (zf_resolver). They share one policy, set here once:
      - http and https only, for the request and for any redirect;
      - [upstream] hosts (CURLOPT_CONNECT_TO) and ca (a private CA; else the system's);
      - TLS peer and host verification on (libcurl's default, never turned off);
      - an Authorization (or Cookie) header of ours never follows a redirect to another host,
        port or scheme: CURLOPT_UNRESTRICTED_AUTH stays off, so libcurl drops it. A registry's
        credentials must not reach the CDN its blob redirects to (issue 14).
    What differs between them is a field of zf_curl_origin_t: whether and how far redirects are
    followed, deadlines, HTTP/1.1 only, the environment's proxy. The caller sets what is its own
    (a range, HEAD, a buffer size) after this, adds the handle to its zf_curl_loop and owns it. */
#ifndef ZF_CURL_ORIGIN_H_INCLUDED
#define ZF_CURL_ORIGIN_H_INCLUDED

#include "zf_prelude.h"
#include <curl/curl.h>

typedef struct {
    const char *url;
    void *owner;        //  CURLOPT_PRIVATE: what zf_curl_loop's done callback receives
    char *error_buffer; //  CURL_ERROR_SIZE bytes: libcurl's reason when a transfer fails
    curl_write_callback header_fn;
    void *header_arg;
    curl_write_callback body_fn;
    void *body_arg;
    struct curl_slist *headers;    //  request headers (borrowed by the handle), or NULL
    const char *user_agent;        //  NULL: none set here (the proxy passes its client's)
    struct curl_slist *connect_to; //  [upstream] hosts as CURLOPT_CONNECT_TO entries, or NULL
    const char *ca;                //  CA bundle for HTTPS; NULL or "": the system's
    int64_t connect_timeout_ms;    //  each connection attempt
    int64_t timeout_ms;            //  the whole transfer; 0: no deadline
    long stall_seconds;            //  abort when no byte arrived for this long; 0: never
    long max_redirects;            //  redirects followed; 0: a redirect is the answer
    bool http1;                    //  HTTP/1.1 only; false: libcurl's choice
    bool ignore_env_proxy;         //  never through the environment's http(s)_proxy
} zf_curl_origin_t;

//  A new easy handle with the policy above and setup's fields; the caller frees it
//  (curl_easy_cleanup).
CURL *zf_curl_origin_new (const zf_curl_origin_t *setup);

//  For header callbacks, which see every answer of a redirect chain (and a 100 Continue):
//  whether line is a status line, where an answer's headers start again.
bool zf_curl_origin_status_line (const char *line, size_t length);
//  Whether line is header name's ("Name: value", name in any case); if so copies its value,
//  blanks before and line end after trimmed, into value (size bytes, cut to fit).
bool zf_curl_origin_header (const char *line, size_t length, const char *name, char *value,
                            size_t size);

void zf_curl_origin_test (bool verbose);

#endif
