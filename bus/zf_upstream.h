/*  zf_upstream.h — the [upstream] section: how this node reaches origins and registries.

    The proxy (direct transfers, tunnels) and the fetcher (back to source, access checks) both
    connect to origins: what they share is set once here. The older per-actor keys
    ([proxy] and [fetcher] hosts, upstream_ca, connect_timeout) are deprecated names of these
    (zf_config aliases: accepted with a warning, and must agree). */
#ifndef ZF_UPSTREAM_H_INCLUDED
#define ZF_UPSTREAM_H_INCLUDED

#include "zf_config.h"
#include <curl/curl.h>

typedef struct {
    zf_config_list_t hosts;     //  "NAME=ADDR:PORT …" items: split DNS, tests
    char *ca;                   //  CA bundle for origin HTTPS; "" for the system's
    int64_t connect_timeout_ms; //  per connection attempt
    zf_config_list_t public;    //  host names whose content any client may read (issue 14)
} zf_upstream_config_t;

extern const zf_config_section_t zf_upstream_section;

//  The section's defaults, for actors started without one (selftests).
const zf_upstream_config_t *zf_upstream_defaults (void);

//  hosts as CURLOPT_CONNECT_TO entries ("NAME::ADDR:PORT"); NULL when none. The caller frees
//  it with curl_slist_free_all.
struct curl_slist *zf_upstream_connect_to (const zf_upstream_config_t *config);

//  Where NAME should be reached ("ADDR:PORT", a copy the caller frees), or NULL: not mapped.
char *zf_upstream_host_lookup (const zf_upstream_config_t *config, const char *name);

//  Whether url's host is listed in public (case-insensitive, port ignored).
bool zf_upstream_is_public (const zf_upstream_config_t *config, const char *url);

void zf_upstream_test (bool verbose);

#endif
