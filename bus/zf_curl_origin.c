/*  zf_curl_origin.c — an easy handle set up to reach an origin (see zf_curl_origin.h). */
#include "zf_curl_origin.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>

CURL *zf_curl_origin_new (const zf_curl_origin_t *setup)
{
    CURL *easy = curl_easy_init ();
    ZF_ASSERT (easy);
    curl_easy_setopt (easy, CURLOPT_URL, setup->url);
    curl_easy_setopt (easy, CURLOPT_PRIVATE, setup->owner);
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, setup->error_buffer);
    curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, setup->max_redirects > 0 ? 1L : 0L);
    if (setup->max_redirects > 0)
        curl_easy_setopt (easy, CURLOPT_MAXREDIRS, setup->max_redirects);
    //  libcurl drops a custom Authorization (and Cookie) header when a redirect changes host,
    //  port or scheme, as long as this stays off (its default, said here so that it stays).
    curl_easy_setopt (easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt (easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt (easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (setup->ca && *setup->ca)
        curl_easy_setopt (easy, CURLOPT_CAINFO, setup->ca);
    if (setup->connect_to)
        curl_easy_setopt (easy, CURLOPT_CONNECT_TO, setup->connect_to);
    if (setup->ignore_env_proxy)
        curl_easy_setopt (easy, CURLOPT_PROXY, "");
    if (setup->http1)
        curl_easy_setopt (easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
    curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS, (long) setup->connect_timeout_ms);
    if (setup->timeout_ms > 0)
        curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long) setup->timeout_ms);
    if (setup->stall_seconds > 0) {
        curl_easy_setopt (easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt (easy, CURLOPT_LOW_SPEED_TIME, setup->stall_seconds);
    }
    if (setup->headers)
        curl_easy_setopt (easy, CURLOPT_HTTPHEADER, setup->headers);
    if (setup->user_agent)
        curl_easy_setopt (easy, CURLOPT_USERAGENT, setup->user_agent);
    curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, setup->header_fn);
    curl_easy_setopt (easy, CURLOPT_HEADERDATA, setup->header_arg);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, setup->body_fn);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, setup->body_arg);
    return easy;
}

bool zf_curl_origin_status_line (const char *line, size_t length)
{
    return length >= 5 && strncmp (line, "HTTP/", 5) == 0;
}

bool zf_curl_origin_header (const char *line, size_t length, const char *name, char *value,
                            size_t size)
{
    size_t name_length = strlen (name);
    if (length <= name_length || line[name_length] != ':'
        || strncasecmp (line, name, name_length) != 0)
        return false;
    const char *start = line + name_length + 1;
    const char *end = line + length;
    while (start < end && (*start == ' ' || *start == '\t'))
        start++;
    while (end > start && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t used = (size_t) (end - start) < size - 1 ? (size_t) (end - start) : size - 1;
    memcpy (value, start, used);
    value[used] = '\0';
    return true;
}

//  ---------------------------------------------------------------------------------------------
//  Selftest: a registry on one port redirects to a "CDN" on another; the CDN must not see the
//  Authorization header sent to the registry.

typedef struct {
    int listener;
    const char *answer;
    char request[2048]; //  what arrived, up to the blank line
} s_step_t;

typedef struct {
    s_step_t *steps;
    size_t count;
} s_server_t;

static void *s_serve (void *arg)
{
    s_server_t *server = arg;
    for (size_t index = 0; index < server->count; index++) {
        s_step_t *step = &server->steps[index];
        int fd = accept (step->listener, NULL, NULL);
        ZF_ASSERT (fd >= 0);
        size_t used = 0;
        while (used + 1 < sizeof step->request && !strstr (step->request, "\r\n\r\n")) {
            ssize_t got = recv (fd, step->request + used, sizeof step->request - used - 1, 0);
            if (got <= 0)
                break;
            used += (size_t) got;
            step->request[used] = '\0';
        }
        ZF_ASSERT (send (fd, step->answer, strlen (step->answer), MSG_NOSIGNAL)
                   == (ssize_t) strlen (step->answer));
        close (fd);
    }
    return NULL;
}

static int s_listener (int *port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    ZF_ASSERT (fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (0x7f000001)};
    socklen_t length = sizeof address;
    ZF_ASSERT (bind (fd, (struct sockaddr *) &address, length) == 0 && listen (fd, 4) == 0);
    ZF_ASSERT (getsockname (fd, (struct sockaddr *) &address, &length) == 0);
    *port = ntohs (address.sin_port);
    return fd;
}

static size_t s_keep (char *data, size_t size, size_t count, void *arg)
{
    char *body = arg;
    size_t used = strlen (body);
    size_t length = size * count < 63 - used ? size * count : 63 - used;
    memcpy (body + used, data, length);
    body[used + length] = '\0';
    return size * count;
}

static size_t s_ignore (char *data, size_t size, size_t count, void *arg)
{
    (void) data;
    (void) arg;
    return size * count;
}

//  Runs one GET of url with an Authorization header; the HTTP status, the body in body.
static long s_get (const char *url, long max_redirects, char *body)
{
    char error[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = curl_slist_append (NULL, "Authorization: Bearer registry-secret");
    zf_curl_origin_t setup = {.url = url,
                              .error_buffer = error,
                              .header_fn = s_ignore,
                              .body_fn = s_keep,
                              .body_arg = body,
                              .headers = headers,
                              .user_agent = "zfly-selftest",
                              .connect_timeout_ms = 5000,
                              .timeout_ms = 10000,
                              .max_redirects = max_redirects,
                              .ignore_env_proxy = true};
    CURL *easy = zf_curl_origin_new (&setup);
    body[0] = '\0';
    CURLcode result = curl_easy_perform (easy);
    if (result != CURLE_OK)
        fprintf (stderr, "zf_curl_origin_test: %s: %s\n", url, error);
    ZF_ASSERT (result == CURLE_OK);
    long status = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup (easy);
    curl_slist_free_all (headers);
    return status;
}

void zf_curl_origin_test (bool verbose)
{
    if (verbose)
        printf (" * zf_curl_origin: ");
    char value[8];
    static const char range[] = "content-range: \tbytes 0-9/20 \r\n";
    ZF_ASSERT (zf_curl_origin_header (range, strlen (range), "Content-Range", value, sizeof value));
    ZF_ASSERT (streq (value, "bytes 0")); //  cut to fit
    ZF_ASSERT (!zf_curl_origin_header (range, strlen (range), "Content-Type", value, sizeof value));
    ZF_ASSERT (
        !zf_curl_origin_header ("Content-Rangex: 1\r\n", 19, "Content-Range", value, sizeof value));
    ZF_ASSERT (zf_curl_origin_status_line ("HTTP/1.1 302 Found\r\n", 20));
    ZF_ASSERT (!zf_curl_origin_status_line ("Location: /\r\n", 13));
    int registry_port, cdn_port;
    int registry = s_listener (&registry_port);
    int cdn = s_listener (&cdn_port);
    char redirect[160];
    snprintf (redirect, sizeof redirect,
              "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/blob\r\nContent-Length: 0\r\n"
              "Connection: close\r\n\r\n",
              cdn_port);
    static const char ok[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nblob";
    s_step_t steps[] = {
        {.listener = registry, .answer = redirect}, //  followed: the CDN answers
        {.listener = cdn, .answer = ok},
        {.listener = registry, .answer = redirect}, //  not followed: the redirect is the answer
    };
    s_server_t server = {.steps = steps, .count = ZF_ARRAY_LEN (steps)};
    pthread_t thread;
    ZF_ASSERT (pthread_create (&thread, NULL, s_serve, &server) == 0);

    char url[64], body[64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/v2/x/blobs/y", registry_port);
    ZF_ASSERT (s_get (url, 5, body) == 200 && streq (body, "blob"));
    ZF_ASSERT (strstr (steps[0].request, "Authorization: Bearer registry-secret"));
    ZF_ASSERT (strstr (steps[1].request, "GET /blob "));
    ZF_ASSERT (!strstr (steps[1].request, "registry-secret")); //  issue 14: not at the CDN
    ZF_ASSERT (s_get (url, 0, body) == 302 && streq (body, ""));

    ZF_ASSERT (pthread_join (thread, NULL) == 0);
    close (registry);
    close (cdn);
    if (verbose)
        printf ("OK\n");
}
