/*  zf_proxy_rules.h — where a request goes: its upstream URL and its route.

    Rules (`rule = REGEX p2p|direct [use_https]`, repeatable, first match on the upstream URL
    wins): without any, GETs of blobs by sha256 digest go P2P and everything else direct. A
    mirror request (origin-form `/v2/…`) goes to the registry its X-Dragonfly-Registry header
    names, else containerd's `ns` query parameter (removed from the URL), else
    default_registry; registry_map turns a registry name into the host serving it
    (docker.io=registry-1.docker.io).

    A rule's check is also the config table's validator (registry_map has zf_config's pairs
    check), so a bad value stops the daemon at load with its file and line. */
#ifndef ZF_PROXY_RULES_H_INCLUDED
#define ZF_PROXY_RULES_H_INCLUDED

#include "zf_config.h"

typedef struct zf_proxy_rules_s zf_proxy_rules_t;

typedef enum { ZF_PROXY_ROUTE_DIRECT = 0, ZF_PROXY_ROUTE_P2P = 1 } zf_proxy_route_t;

//  rules and registry_map are the config lists; default_registry "https://host" or "host".
zf_proxy_rules_t *zf_proxy_rules_new (const zf_config_list_t *rules,
                                      const zf_config_list_t *registry_map,
                                      const char *default_registry, zf_error_t *err);
void zf_proxy_rules_destroy (zf_proxy_rules_t **self_p);

//  Rules in force (the default ones when none were configured).
size_t zf_proxy_rules_count (zf_proxy_rules_t *self);

//  The upstream URL of a mirror request: target is the origin-form path (with its query),
//  registry the X-Dragonfly-Registry header (NULL or "" when absent). The caller frees it.
char *zf_proxy_rules_mirror_url (zf_proxy_rules_t *self, const char *target, const char *registry);

//  The route of *url_p by the first matching rule (direct when none matches); a use_https
//  rule turns an http:// URL into https:// (*url_p is replaced).
zf_proxy_route_t zf_proxy_rules_route (zf_proxy_rules_t *self, char **url_p);

//  The config validator of `rule` (zf_config_check_fn): syntax and regular expression.
bool zf_proxy_rule_check (const char *text, char *why, size_t why_size);

void zf_proxy_rules_test (bool verbose);

#endif
