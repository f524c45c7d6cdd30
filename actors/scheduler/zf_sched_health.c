/*  zf_sched_health.c — failure windows and heartbeat expiry. */
#include "zf_sched_health.h"

//  Failure number `index` of the host's ring fell within bad_window_ms.
static bool s_recent (const zf_sched_params_t *params, const zf_sched_host_t *host, uint32_t index,
                      int64_t now_ms)
{
    return host->failures[index] > 0 && now_ms - host->failures[index] <= params->bad_window_ms;
}

bool zf_sched_host_failure (zf_sched_t *sched, zf_sched_host_t *host, uint32_t reporter,
                            int64_t now_ms)
{
    const zf_sched_params_t *params = zf_sched_params (sched);
    if (zf_sched_host_is_bad (host, now_ms))
        return false;
    //  One child that cannot reach a host (its own network, its own configuration) says
    //  little: a reporter counts once per window.
    for (uint32_t index = 0; reporter && index < params->bad_failures; index++)
        if (host->failure_reporters[index] == reporter && s_recent (params, host, index, now_ms))
            return false;
    host->failures[host->failure_next] = now_ms;
    host->failure_reporters[host->failure_next] = reporter;
    host->failure_next = (host->failure_next + 1) % params->bad_failures;
    if (zf_sched_host_recent_failures (sched, host, now_ms) < params->bad_failures)
        return false;
    host->bad_until_ms = now_ms + params->bad_cooldown_ms;
    memset (host->failures, 0, params->bad_failures * sizeof (int64_t));
    zf_sched_host_drop_children (sched, host);
    //  Children that cannot reach it cannot take what it fetches: a peer takes the origin
    //  fetch over now, not when the host's announces stop counting (host_timeout, 15 s).
    zf_sched_host_release_flights (sched, host);
    return true;
}

uint32_t zf_sched_host_recent_failures (zf_sched_t *sched, const zf_sched_host_t *host,
                                        int64_t now_ms)
{
    const zf_sched_params_t *params = zf_sched_params (sched);
    uint32_t recent = 0;
    for (uint32_t index = 0; index < params->bad_failures; index++)
        recent += s_recent (params, host, index, now_ms);
    return recent;
}

size_t zf_sched_expire_hosts (zf_sched_t *sched, int64_t now_ms, zf_sched_expire_fn *callback,
                              void *arg)
{
    int64_t timeout = zf_sched_params (sched)->host_timeout_ms;
    //  Collect first: removing while iterating the hash would lose the cursor.
    zlistx_t *expired = zlistx_new ();
    for (zf_sched_host_t *host = zf_sched_host_first (sched); host;
         host = zf_sched_host_next (sched))
        if (now_ms - host->last_seen_ms > timeout)
            zlistx_add_end (expired, host);
    size_t count = zlistx_size (expired);
    for (zf_sched_host_t *host = zlistx_first (expired); host; host = zlistx_next (expired)) {
        if (callback)
            callback (host, arg);
        zf_sched_host_remove (sched, host);
    }
    zlistx_destroy (&expired);
    return count;
}
