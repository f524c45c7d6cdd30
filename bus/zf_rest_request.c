/*  zf_rest_request.c — what a handler reads from a request: method, path, {name} segments,
    query, headers, body, who called, and the checked readings of a JSON body, a page and an id
    (each of which answers 400 or 404 itself when the request is wrong).

    Separate from the server (zf_rest.c): these run on the owner's thread inside a handler and
    touch only the request, never the server's queue or threads. */
#include "zf_rest_internal.h"
#include <microhttpd.h>
#include <strings.h>

const char *zf_rest_method (zf_rest_request_t *request)
{
    return request->method;
}

const char *zf_rest_path (zf_rest_request_t *request)
{
    return request->path;
}

const char *zf_rest_route_pattern (zf_rest_request_t *request)
{
    return request->route ? request->route->pattern : "";
}

static const char *s_find (const zf_rest_pair_t *pairs, size_t count, const char *name,
                           bool any_case)
{
    for (size_t index = 0; index < count; index++)
        if (any_case ? strcasecmp (pairs[index].name, name) == 0 : streq (pairs[index].name, name))
            return pairs[index].value;
    return NULL;
}

const char *zf_rest_param (zf_rest_request_t *request, const char *name)
{
    return s_find (request->params, request->param_count, name, false);
}

const char *zf_rest_query (zf_rest_request_t *request, const char *name)
{
    return s_find (request->args, request->arg_count, name, false);
}

const char *zf_rest_header (zf_rest_request_t *request, const char *name)
{
    return s_find (request->headers, request->header_count, name, true);
}

const char *zf_rest_body (zf_rest_request_t *request, size_t *size)
{
    if (size)
        *size = request->body_size;
    return request->body ? request->body : "";
}

const char *zf_rest_principal (zf_rest_request_t *request)
{
    return request->principal;
}

zf_rest_access_t zf_rest_granted (zf_rest_request_t *request)
{
    return request->granted;
}

const char *zf_rest_peer (zf_rest_request_t *request)
{
    return request->peer;
}

json_t *zf_rest_json_body (zf_rest_request_t *request)
{
    if (!request->body_size) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "this request needs a JSON object as its body");
        return NULL;
    }
    json_error_t error;
    json_t *body = json_loadb (request->body, request->body_size, JSON_REJECT_DUPLICATES, &error);
    if (!body) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "the body is not valid JSON: %s at line %d column %d", error.text,
                             error.line, error.column);
        return NULL;
    }
    if (!json_is_object (body)) {
        json_decref (body);
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "the body must be a JSON object");
        return NULL;
    }
    return body;
}

static bool s_positive (const char *text, int64_t max, int64_t *value)
{
    if (!text || !*text || strlen (text) > 18 || strspn (text, "0123456789") != strlen (text))
        return false;
    long long number = strtoll (text, NULL, 10);
    if (number < 1 || number > max)
        return false;
    *value = number;
    return true;
}

bool zf_rest_page (zf_rest_request_t *request, int64_t *page, int64_t *per_page)
{
    *page = 1;
    *per_page = ZF_REST_PER_PAGE;
    const char *page_text = zf_rest_query (request, "page");
    const char *per_page_text = zf_rest_query (request, "per_page");
    if (page_text && !s_positive (page_text, 1000000000, page)) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "page must be a whole number from 1");
        return false;
    }
    if (per_page_text && !s_positive (per_page_text, ZF_REST_PER_PAGE_MAX, per_page)) {
        zf_rest_reply_error (request, MHD_HTTP_BAD_REQUEST, "invalid",
                             "per_page must be a whole number from 1 to %d", ZF_REST_PER_PAGE_MAX);
        return false;
    }
    return true;
}

bool zf_rest_param_id (zf_rest_request_t *request, const char *name, int64_t *id)
{
    if (s_positive (zf_rest_param (request, name), INT64_MAX, id))
        return true;
    zf_rest_reply_error (request, MHD_HTTP_NOT_FOUND, "not_found", "no such resource: %s",
                         request->path);
    return false;
}
