/*  zf_sections.c — [node], [bus], [endpoints] declared as data, and the list of every section
    a node's INI may have (the actors' own are in actors/X/zf_X_config.c). */
#include "zf_sections.h"
#include <unistd.h>
#include "echo/zf_echo.h"
#include "fetcher/zf_fetcher.h"
#include "join/zf_join.h"
#include "manager/zf_manager.h"
#include "preheat/zf_preheat.h"
#include "probe/zf_probe.h"
#include "proxy/zf_proxy.h"
#include "scheduler/zf_scheduler.h"
#include "storage/zf_storage.h"
#include "zf_upstream.h"

static const zf_config_key_t s_node_keys[] = {
    {.key = "name",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_node_config_t, name),
     .default_text = "",
     .help = "this node's name, unique in the cluster (actor@name on the bus); empty: the "
             "host name"},
    {.key = "log_level",
     .kind = ZF_CONFIG_ENUM,
     .offset = offsetof (zf_node_config_t, log_level),
     .default_text = "notice",
     .choices = "error|warning|notice|info|debug",
     .help = "least severe log level written"},
    {.key = "http",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_node_config_t, http),
     .default_text = "127.0.0.1:65080",
     .help = "HOST:PORT serving /healthz and /metrics; empty: none"},
    {.key = "tap",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_node_config_t, tap),
     .default_text = "",
     .help = "endpoint mirroring all bus traffic for zfly-tap (ipc:// or tcp://); empty: off"},
    {.key = "tap_secrets",
     .kind = ZF_CONFIG_BOOL,
     .offset = offsetof (zf_node_config_t, tap_secrets),
     .default_text = "false",
     .help = "show credentials (fields marked secret in schemas/) in clear on the tap, for "
             "debugging; logged as a warning at every start"},
};

const char *zf_node_config_name (const zf_node_config_t *node_config)
{
    static char host[256];
    if (*node_config->name)
        return node_config->name;
    if (gethostname (host, sizeof host) != 0 || !*host)
        zf_strlcpy (host, "localhost", sizeof host);
    host[sizeof host - 1] = '\0';
    return host;
}

const zf_config_section_t zf_node_section = {
    .name = "node",
    .help = "this process: its name, logging, health and metrics",
    .keys = s_node_keys,
    .key_count = ZF_ARRAY_LEN (s_node_keys),
    .struct_size = sizeof (zf_node_config_t),
    .required = true,
};

static const zf_config_key_t s_bus_keys[] = {
    {.key = "cert",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_bus_config_t, cert),
     .default_text = "",
     .help = "secret certificate of this node from `zfly keygen` (needed for tcp://)"},
    {.key = "allow",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_bus_config_t, allow),
     .default_text = "",
     .help = "directory of public certificates (*.pub) allowed to connect over tcp://"},
    {.key = "insecure",
     .kind = ZF_CONFIG_BOOL,
     .offset = offsetof (zf_bus_config_t, insecure),
     .default_text = "false",
     .help = "plain TCP without CURVE: no encryption, no authentication (testing only)"},
    {.key = "hwm",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (zf_bus_config_t, hwm),
     .default_text = "1000",
     .min = 1,
     .max = 1000000,
     .help = "high-water mark of each bus socket, in messages; beyond it sends are dropped"},
    {.key = "tap_hwm",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (zf_bus_config_t, tap_hwm),
     .default_text = "10000",
     .min = 1,
     .max = 10000000,
     .help = "tap queue bound, in messages; beyond it mirrored messages are dropped"},
    {.key = "request_timeout",
     .kind = ZF_CONFIG_DURATION,
     .offset = offsetof (zf_bus_config_t, request_timeout_ms),
     .default_text = "5s",
     .min = 1,
     .max = 3600000,
     .help = "default deadline of a bus request, all attempts together"},
    {.key = "request_retries",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (zf_bus_config_t, request_retries),
     .default_text = "2",
     .min = 0,
     .max = 100,
     .help = "default resends of a request after a per-attempt timeout"},
    {.key = "congestion",
     .kind = ZF_CONFIG_STR,
     .offset = offsetof (zf_bus_config_t, congestion),
     .default_text = "cubic",
     .help = "TCP congestion control of tcp:// bus connections (cubic, bbr, any the kernel "
             "allows); empty: the system's"},
    {.key = "io_threads",
     .kind = ZF_CONFIG_INT,
     .offset = offsetof (zf_bus_config_t, io_threads),
     .default_text = "0",
     .min = 0,
     .max = 64,
     .help = "threads that move bus bytes (TCP, CURVE); connections are spread over them; "
             "0: one per two CPUs, 1 to 4"},
};

const zf_config_section_t zf_bus_section = {
    .name = "bus",
    .help = "the message bus: CURVE keys, allow-list, queue bounds, request defaults",
    .keys = s_bus_keys,
    .key_count = ZF_ARRAY_LEN (s_bus_keys),
    .struct_size = sizeof (zf_bus_config_t),
};

const zf_config_section_t zf_endpoints_section = {
    .name = "endpoints",
    .help = "where actors of other processes live",
    .free_form = true,
    .free_form_help = "ACTOR = ENDPOINT [events=ENDPOINT] [key=Z85-PUBLIC-KEY | cert=PUB-FILE]",
};

//  One per actor kind, in zf_actor_kinds' order (zf_actor_kinds.c).
static const zf_config_section_t *const s_actor_sections[] = {
    &zf_echo_section,    &zf_probe_section,   &zf_storage_section,
    &zf_fetcher_section, &zf_proxy_section,   &zf_scheduler_section,
    &zf_manager_section, &zf_preheat_section, &zf_join_section,
};

const zf_config_section_t *const *zf_all_sections (size_t *count)
{
    static const zf_config_section_t *sections[4 + ZF_ARRAY_LEN (s_actor_sections)];
    size_t used = 0;
    sections[used++] = &zf_node_section;
    sections[used++] = &zf_bus_section;
    sections[used++] = &zf_endpoints_section;
    sections[used++] = &zf_upstream_section;
    for (size_t index = 0; index < ZF_ARRAY_LEN (s_actor_sections); index++)
        sections[used++] = s_actor_sections[index];
    *count = used;
    return sections;
}
