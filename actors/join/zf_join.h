/*  zf_join.h — the join actor: makes this node a member of a cluster the manager runs.

    With a [join] section, an edge node's INI needs nothing about other nodes: it names the
    manager (endpoint and key) and a join-token file, and the actor
      - joins at start (manager.join over tcp:// with CURVE; the first join of this node's key
        spends the token, later ones are recognised by the key),
      - learns routes for the cluster's schedulers ("scheduler@HOST") and seed peers
        ("storage@HOST", "fetcher@HOST") with their keys, and admits the cluster's member keys
        in this process's ZAP handler beside the allow directory,
      - publishes join.view to the actors of this process (the fetcher's scheduler ring),
      - follows manager.changed events (keys added and revoked within moments) and refreshes
        every refresh_ms the manager asks for (the keep-alive of schedulers and seed peers),
      - caches the last view on disk (written atomically), so a node restarted while the
        manager is down starts with its cluster, and retries the manager until it answers.
    It tells the manager what this process serves: the tcp:// binds of its scheduler, storage
    and fetcher actors (a wildcard host is replaced by the address the manager sees) and
    whether the fetcher is a seed, and how full its cache is (storage.measure to the storage
    actor of this process just before each join; none without one). A refused join (bad
    token, revoked key, taken name) is logged as an error with what to do, counted, and tried
    again at the retry interval. */
#ifndef ZF_JOIN_H_INCLUDED
#define ZF_JOIN_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *manager;    //  ENDPOINT [events=ENDPOINT] key=Z85 | cert=PATH
    char *token_file; //  the join token (first join only)
    char *cache;      //  file keeping the last view
    char *idc;
    char *location;
    char *labels;     //  "key=value key=value"
    int64_t retry_ms; //  first retry after a failed join, doubled up to retry_max_ms
    int64_t retry_max_ms;
    int64_t timeout_ms; //  one join request, all attempts
} zf_join_config_t;

extern const zf_config_section_t zf_join_section;

void zf_join_actor (zsock_t *pipe, void *args);

#endif
