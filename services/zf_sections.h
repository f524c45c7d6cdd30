/*  zf_sections.h — the daemon's own configuration sections and the table of actor kinds. */
#ifndef ZF_SECTIONS_H_INCLUDED
#define ZF_SECTIONS_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *name;
    int log_level;    //  zf_log_level_t
    char *http;       //  HOST:PORT for /healthz and /metrics, "" for none
    char *tap;        //  tap endpoint, "" for none
    bool tap_secrets; //  the tap shows secret fields in clear (warned at start)
} zf_node_config_t;

typedef struct {
    char *cert;
    char *allow;
    bool insecure;
    int64_t hwm;
    int64_t tap_hwm;
    int64_t request_timeout_ms;
    int64_t request_retries;
    char *congestion;   //  TCP congestion control for tcp:// connections, "" = the system's
    int64_t io_threads; //  libzmq I/O threads; 0: one per two CPUs, 1 to 4
} zf_bus_config_t;

extern const zf_config_section_t zf_node_section;

//  [node] name, or the host name when it is empty, so every edge's file can be the same.
const char *zf_node_config_name (const zf_node_config_t *node_config);
extern const zf_config_section_t zf_bus_section;
extern const zf_config_section_t zf_endpoints_section;

//  Every actor kind the daemon can start, in start order.
extern const zf_actor_kind_t zf_actor_kinds[];
extern const size_t zf_actor_kind_count;

//  All sections a configuration file may have: node, bus, endpoints, then one per actor kind.
//  Returns a static array.
const zf_config_section_t *const *zf_all_sections (size_t *count);

#endif
