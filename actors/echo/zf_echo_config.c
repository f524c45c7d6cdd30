/*  zf_echo_config.c — the [echo] section of a node's INI: its keys, defaults and help, read
    into zf_echo_config_t (zf_echo.h). Apart from the actor, so that a tool reading a node's INI
    (zfly-get) links none of the actor's code or libraries. */
#include "zf_echo.h"

static const zf_config_key_t s_keys[] = {
    {.key = "bind",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_echo_config_t, bind),
     .default_text = "",
     .help = "endpoints for requests from other processes, blank-separated (tcp:// uses "
             "CURVE); empty: none"},
    {.key = "events_bind",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_echo_config_t, events_bind),
     .default_text = "",
     .help = "endpoint publishing echo.seen events to other processes, empty: none"},
};

const zf_config_section_t zf_echo_section = {
    .name = "echo",
    .help = "bus self-check: answers echo.request (run it with [probe] on another node)",
    .keys = s_keys,
    .key_count = ZF_ARRAY_LEN (s_keys),
    .struct_size = sizeof (zf_echo_config_t),
};
