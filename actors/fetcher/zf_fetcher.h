/*  zf_fetcher.h — the piece fetcher actor: downloads tasks into the storage actor.

    Serves task.fetch, task.query (answers task.status) on its inbox and, with [fetcher] bind,
    to clients of other processes (zfly-get over ipc://, remote nodes over tcp:// with CURVE).
    Publishes task.ended when a task completes or fails (to other processes with events_bind),
    so readers of a task (bus/zf_task_reader.h) are told instead of asking.
    A task is fetched back to source with libcurl: a `Range: bytes=0-0` probe learns the
    length and whether the origin honours Range; then up to source_concurrency range requests
    run at once, each required to come back 206 with exactly the Content-Range asked. An origin
    that answers 200 is read as one stream and cut into pieces in order. Each piece is hashed
    (SHA-256) and written through storage (piece.write); the whole content is hashed in order
    and checked against the task digest before storage.complete. A mismatch removes the task
    from storage. Finished pieces found in storage are not downloaded again (resume).
    Concurrent task.fetch of one task share its download. Memory: at most
    source_concurrency + 1 pieces are held at once.

    With parents (task.fetch parents: "storage@node" names), pieces come from those storage
    actors over the bus instead (zf_fetch_parents.c): the parents' storage.stat gives the
    layout and piece digests, pieces are read rarest first with parent_concurrency requests in
    flight per parent, each checked against the digest list; a parent that times out, fails
    or disagrees is dropped, and pieces no parent can give come from the origin. A task.fetch
    that joins a running task adds its parents to it.

    With [fetcher] schedulers set, a task asks the scheduler that owns it (zf_fetch_sched.c:
    consistent hashing over the list, skipping dead ones) for parents, or is told to go back to
    source or wait; progress and failed parents are reported; no scheduler reachable means the
    origin. A seed (seed = true) also takes seed.trigger and starts the task it names.

    Access (zf_fetch_access.h): a task.fetch is answered only once the origin accepted the
    caller's own request for the URL (its headers: the credentials), asked with a HEAD and
    kept for access_ttl; refused, the answer is the error "denied", and the caller asks the
    origin itself. Origins in [upstream] public are not asked.

    Not yet: origins that send no length. */
#ifndef ZF_FETCHER_H_INCLUDED
#define ZF_FETCHER_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *bind;                 //  external endpoint for clients, "" for none
    char *events_bind;          //  external endpoint for task.ended events, "" for none
    char *storage;              //  name of the storage actor
    int64_t source_concurrency; //  range requests in flight per task
    uint64_t piece_length_min;  //  bytes, power of two
    uint64_t piece_length_max;  //  bytes, power of two
    int64_t piece_count_target; //  pieces aimed at before clamping
    int64_t connect_timeout_ms; //  per connection attempt
    int64_t stall_timeout_ms;   //  below 1 byte/s this long aborts a transfer
    int64_t retries;            //  attempts after the first, per piece
    int64_t retry_backoff_ms;   //  first wait, doubled per attempt, capped
    char *volatile_params;      //  extra query parameter names left out of task ids
    int64_t parent_concurrency; //  piece.read requests in flight per parent
    int64_t parent_timeout_ms;  //  a parent delivering nothing this long while asked: dropped
    int64_t parent_refresh_ms;  //  how often parents still downloading are asked again
    char *schedulers;           //  blank-separated scheduler actor names, "" for none
    bool seed;                  //  a seed peer: announces type seed, takes seed.trigger
    char *host_id;              //  the host's name at the scheduler, "" = the node name
    char *idc, *location;       //  affinity labels announced to schedulers
    int64_t upload_slots;       //  children served at once, announced; 0: scheduler's default
    uint64_t upload_bandwidth;  //  bytes/s of this host's links, announced; 0: unknown
    uint64_t download_bandwidth;
    int64_t sched_fallback_ms; //  no piece from parents this long: the origin, scheduler or not
    bool access_check;         //  ask the origin whether each caller may read the URL
    int64_t access_ttl_ms;     //  how long an origin's answer is kept
    int64_t access_timeout_ms; //  one question
    //  From [upstream] (zf_upstream.h), filled in by the actor: not keys of [fetcher] any more
    //  (its old hosts, upstream_ca and connect_timeout are deprecated names of [upstream]'s).
    struct curl_slist *connect_to; //  hosts as CURLOPT_CONNECT_TO entries (split DNS, tests)
    char *upstream_ca;             //  CA bundle for origin HTTPS; "" for the system's
} zf_fetcher_config_t;

extern const zf_config_section_t zf_fetcher_section;

void zf_fetcher_actor (zsock_t *pipe, void *args);

#endif
