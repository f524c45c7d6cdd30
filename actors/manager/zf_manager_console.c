/*  zf_manager_console.c — the web console's static files, on the API's listener.

        GET /                    302 to /console/
        GET /console/            index.html
        GET /console/{file}      one embedded file (console/ in the source tree)

    The console is HTML, CSS and plain JavaScript with no build step, embedded in the binary by
    tools/zf_embed.py, so it needs nothing installed and fetches nothing from elsewhere. These
    routes are public (a page without data is no secret): the console asks for a personal
    access token and then calls /api/v1/ with it like any script. It adds no API of its own.

    Every answer says: scripts, styles and connections only from this origin (CSP), no
    framing, no MIME sniffing, no referrer, and revalidate before reuse (the files change with
    the binary). */
#include "zf_console_files.h"
#include "zf_manager_internal.h"

static void s_security_headers (zf_rest_request_t *request)
{
    zf_rest_add_header (request, "Content-Security-Policy",
                        "default-src 'none'; script-src 'self'; style-src 'self'; "
                        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                        "form-action 'self'; frame-ancestors 'none'");
    zf_rest_add_header (request, "X-Content-Type-Options", "nosniff");
    zf_rest_add_header (request, "X-Frame-Options", "DENY");
    zf_rest_add_header (request, "Referrer-Policy", "no-referrer");
    zf_rest_add_header (request, "Cache-Control", "no-cache");
}

static const zf_console_file_t *s_find (const char *name)
{
    for (size_t index = 0; index < zf_console_file_count; index++)
        if (streq (zf_console_files[index].name, name))
            return &zf_console_files[index];
    return NULL;
}

static void s_serve (zf_rest_request_t *request, const char *name)
{
    const zf_console_file_t *file = s_find (name);
    if (!file) {
        zf_rest_reply_error (request, 404, "not_found", "the console has no file %s", name);
        return;
    }
    s_security_headers (request);
    zf_rest_reply_text (request, 200, file->content_type, (const char *) file->data, file->size);
}

static void s_index (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    s_serve (request, "index.html");
}

static void s_file (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    s_serve (request, zf_rest_param (request, "file"));
}

static void s_root (zf_rest_request_t *request, void *arg)
{
    (void) arg;
    zf_rest_add_header (request, "Location", "/console/");
    zf_rest_reply_text (request, 302, "text/plain; charset=utf-8", "/console/\n", 10);
}

void zf_manager_console_register (zf_rest_t *rest, zf_manager_t *manager)
{
    (void) manager;
    zf_rest_route (rest, "GET", "/", ZF_REST_PUBLIC, s_root, NULL);
    zf_rest_route (rest, "GET", "/console", ZF_REST_PUBLIC, s_index, NULL);
    zf_rest_route (rest, "GET", "/console/{file}", ZF_REST_PUBLIC, s_file, NULL);
}
