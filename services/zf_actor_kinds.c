/*  zf_actor_kinds.c — the actors the daemon can start, in start order; each reads the section
    of its name (zf_sections.c lists them). */
#include "zf_sections.h"
#include "echo/zf_echo.h"
#include "fetcher/zf_fetcher.h"
#include "join/zf_join.h"
#include "manager/zf_manager.h"
#include "preheat/zf_preheat.h"
#include "probe/zf_probe.h"
#include "proxy/zf_proxy.h"
#include "scheduler/zf_scheduler.h"
#include "storage/zf_storage.h"

const zf_actor_kind_t zf_actor_kinds[] = {
    {"echo", "answers echo.request (bus self-check)", zf_echo_actor},
    {"probe", "checks an echo actor over the bus and reports", zf_probe_actor},
    {"storage", "the cache of tasks: pieces to local readers and other nodes, GC",
     zf_storage_actor},
    {"fetcher", "downloads tasks back to source into storage, verified, resumable",
     zf_fetcher_actor},
    {"proxy", "HTTP proxy, registry mirror, CONNECT/TLS interception", zf_proxy_actor},
    {"scheduler", "the swarm: parents, seeds, single-flight back to source", zf_scheduler_actor},
    {"manager", "the control plane: clusters, nodes that join, REST API, database",
     zf_manager_actor},
    {"preheat", "the preheat worker: resolves images, has seed peers or peers fetch their blobs",
     zf_preheat_actor},
    //  Last: it tells the manager what the actors above bound (their tcp:// endpoints).
    {"join", "joins the manager's cluster: schedulers, seed peers, member keys, cached",
     zf_join_actor},
};

const size_t zf_actor_kind_count = ZF_ARRAY_LEN (zf_actor_kinds);
