/*  zf_upstream_config.c — the [upstream] section of a node's INI: its keys, defaults and
    help, read into zf_upstream_config_t (zf_upstream.h). Apart from the code that uses the
    values, which needs libcurl, so that zfly-get links none of it. */
#include "zf_upstream.h"

static const zf_config_key_t s_keys[] = {
    {.key = "hosts",
     .kind = ZF_CONFIG_LIST,
     .offset = offsetof (zf_upstream_config_t, hosts),
     .default_text = "",
     .check = zf_config_check_pairs,
     .help = "NAME=ADDR:PORT pairs: connect to origin NAME at ADDR:PORT (split DNS, tests)"},
    {.key = "ca",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_upstream_config_t, ca),
     .default_text = "",
     .help = "CA bundle trusted for origin HTTPS (a private CA); empty: the system's"},
    {.key = "connect_timeout",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_upstream_config_t, connect_timeout_ms),
     .default_text = "10s",
     .min = 1,
     .max = 600000,
     .help = "deadline of each connection to an origin"},
    {.key = "public",
     .kind = ZF_CONFIG_LIST,
     .offset = offsetof (zf_upstream_config_t, public),
     .default_text = "",
     .help = "host names (blank-separated) whose content any client may read: cached copies "
             "are served without asking the origin whether each client may (see [fetcher] "
             "access_ttl)"},
};

const zf_config_section_t zf_upstream_section = {
    .name = "upstream",
    .help = "how this node reaches origins and registries (the proxy and the fetcher)",
    .keys = s_keys,
    .key_count = ZF_ARRAY_LEN (s_keys),
    .struct_size = sizeof (zf_upstream_config_t),
};
