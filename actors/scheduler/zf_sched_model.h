/*  zf_sched_model.h — the scheduler's picture of the swarm: hosts, tasks, peers, parent edges.

    A host is a node that announced itself (labels, upload slots, heartbeat). A task is one
    content (task_id). A peer is one host downloading (or holding) one task: its finished
    pieces as a bitmap, its parents (the peers it pulls from) and its children. Parent edges
    form a DAG per task; every edge costs one upload slot on the parent's host.

    Cost of operations: host and task lookup are hash lookups; a peer is found by (task, host)
    in an open-addressing table; adding and removing a peer, an edge or pieces is O(1) (O(edges)
    for a removal, O(children) for an edge removal). Memory per peer: the struct, its bitmap,
    one table slot and one slot in the task's and host's arrays; zf_sched_bytes counts it all.

    Internal to actors/scheduler: the selection, health and decision files read these structs
    directly. Nothing here talks to the bus; owners learn what changed through flags
    (peer->reschedule) and the wake list (tasks whose waiting peers may be served now). */
#ifndef ZF_SCHED_MODEL_H_INCLUDED
#define ZF_SCHED_MODEL_H_INCLUDED

#include "zf_prelude.h"

#define ZF_SCHED_PARENTS_MAX  8  //  parents per peer; schema lists allow more
#define ZF_SCHED_BLOCKED_MAX  4  //  parents a peer reported as failed, kept away from it
#define ZF_SCHED_FAILURES_MAX 64 //  bound of bad_host_failures
#define ZF_SCHED_TASK_ID_MAX  64

typedef enum {
    ZF_SCHED_WEIGHT_FINISHED,
    ZF_SCHED_WEIGHT_FREE_UPLOAD,
    ZF_SCHED_WEIGHT_HOST_TYPE,
    ZF_SCHED_WEIGHT_IDC,
    ZF_SCHED_WEIGHT_LOCATION,
    ZF_SCHED_WEIGHTS
} zf_sched_weight_t;

//  Tunables, from the [scheduler] section.
typedef struct {
    uint32_t parents_max;       //  parents given to a peer, 1..ZF_SCHED_PARENTS_MAX
    uint32_t candidates;        //  eligible candidates scored per decision (sampling)
    uint32_t upload_slots;      //  default for normal hosts that announce 0
    uint32_t seed_upload_slots; //  default for seed hosts that announce 0
    double weights[ZF_SCHED_WEIGHTS];
    uint32_t bad_failures; //  children reporting failures within bad_window_ms: a bad host
    int64_t bad_window_ms;
    int64_t bad_cooldown_ms; //  how long a bad host is left out
    int64_t host_timeout_ms; //  no heartbeat for this long: the host is removed
    int64_t resume_grace_ms; //  a task first seen from resumed peers: no new origin fetcher
    bool seeds_enabled;      //  seed hosts may be triggered
    bool acyclic;            //  parent graphs stay DAGs (off by default: a mesh, where two
                             //  peers may feed each other; a piece is still taken once)
    const char *seeds;       //  "" or "auto": any seed host; else blank-separated host ids
    uint64_t random_seed;    //  sampling order; fixed in tests
} zf_sched_params_t;

void zf_sched_params_defaults (zf_sched_params_t *params);

typedef enum {
    ZF_PEER_WAITING,  //  no parents yet
    ZF_PEER_RUNNING,  //  pulling from parents
    ZF_PEER_SOURCE,   //  the task's origin fetcher (a seed or the first peer)
    ZF_PEER_FINISHED, //  holds every piece
} zf_peer_state_t;

typedef struct zf_sched_host_s zf_sched_host_t;

//  A host's transfer rate in one direction, measured from what peers report: bytes counted in
//  windows of ZF_SCHED_RATE_WINDOW_MS; `rate` is the last full window's, `peak` the highest
//  seen, decaying slowly (what the host can do, when it was busy enough to show it).
typedef struct {
    int64_t window_start_ms;
    uint64_t window_bytes;
    double rate, peak; //  bytes/s
} zf_sched_rate_t;

#define ZF_SCHED_RATE_WINDOW_MS 1000
typedef struct zf_sched_task_s zf_sched_task_t;
typedef struct zf_sched_peer_s zf_sched_peer_t;

//  Bytes a peer received from one source, counted from its piece reports (whole pieces): what
//  the console's swarm picture writes on each edge. from_serial is the source host's serial,
//  ZF_SCHED_FROM_ORIGIN for the origin, ZF_SCHED_FROM_OTHERS for sources past the first
//  ZF_SCHED_RECEIVED_MAX - 1 (a peer rarely has more: parents are few and change seldom).
typedef struct {
    uint32_t from_serial;
    uint64_t bytes;
} zf_sched_received_t;

#define ZF_SCHED_RECEIVED_MAX 8
#define ZF_SCHED_FROM_ORIGIN  0u
#define ZF_SCHED_FROM_OTHERS  UINT32_MAX

struct zf_sched_host_s {
    char *id, *node, *storage, *fetcher, *idc, *location;
    char *endpoint, *key; //  its storage's tcp:// endpoint and CURVE key ("" when unknown)
    bool seed;
    uint32_t serial;       //  never reused: safe in blocklists after the host is gone
    uint64_t incarnation;  //  announced by its process (host.announce), 0: not told
    int64_t restarted_ms;  //  when another incarnation was last announced, 0: never
    uint32_t upload_slots; //  effective (announced or default)
    uint32_t load;         //  parent edges into this host's peers: slots in use
    uint64_t upload_bandwidth, download_bandwidth; //  bytes/s, announced caps; 0: none
    zf_sched_rate_t uploaded, downloaded;          //  measured from piece reports
    int64_t last_seen_ms;
    int64_t bad_until_ms;        //  0 or the end of its cool-down
    int64_t *failures;           //  ring of the last bad_failures failure times
    uint32_t *failure_reporters; //  and who reported each (a child host's serial, 0: self)
    uint32_t failure_next;
    zf_sched_peer_t **peers;
    uint32_t peer_count, peer_cap;
};

struct zf_sched_task_s {
    char id[ZF_SCHED_TASK_ID_MAX + 1];
    char *url, *digest, *tag, *application;
    uint64_t content_length, piece_length;
    uint32_t piece_count; //  0 while unknown
    zf_sched_peer_t **peers;
    uint32_t peer_count, peer_cap;
    uint32_t holders;        //  peers with at least one finished piece
    uint32_t edges;          //  parent edges between its peers
    zf_sched_peer_t *source; //  the one origin fetcher (single flight), or NULL
    uint32_t seed_refused;   //  serial of a seed that did not take the task, 0: none
    bool seed_failed;        //  a seed failed to fetch it from the origin: no seed is asked again
    bool origin_failed;      //  so did a peer: each peer that asks now fetches from it itself
    int64_t resume_until_ms; //  first seen from a resumed peer: no new origin fetcher before
    void *parked;            //  the owner's waiting requests (zf_scheduler.c)
    bool wake_pending;
};

struct zf_sched_peer_s {
    zf_sched_task_t *task;
    zf_sched_host_t *host;
    zf_sched_peer_t *parents[ZF_SCHED_PARENTS_MAX];
    zf_sched_peer_t **children;
    uint16_t child_count, child_cap;
    uint8_t parent_count;
    uint8_t state;   //  zf_peer_state_t
    bool reschedule; //  the parent set changed under the peer: tell it
    uint8_t blocked_next;
    uint32_t blocked[ZF_SCHED_BLOCKED_MAX]; //  host serials
    uint32_t task_index, host_index;        //  positions in task->peers and host->peers
    uint32_t mark;                          //  walk epoch (descendant check)
    uint32_t finished_count;
    uint32_t bitmap_bits;
    uint64_t *bitmap;
    zf_sched_received_t *received; //  by source, grown on demand; NULL until the first report
    uint8_t received_count;
    void *parked; //  the owner's waiting request of this peer, or NULL
};

typedef struct zf_sched_s zf_sched_t;

zf_sched_t *zf_sched_new (const zf_sched_params_t *params);
void zf_sched_destroy (zf_sched_t **self_p);
const zf_sched_params_t *zf_sched_params (zf_sched_t *self);

//  Hosts. Upsert creates or updates labels and refreshes last_seen_ms.
typedef struct {
    const char *id, *node, *storage, *fetcher, *idc, *location;
    const char *endpoint, *key; //  the storage's endpoint, the announce's CURVE key; may be NULL
    bool seed;
    uint32_t upload_slots;                         //  0: the default of its type
    uint64_t upload_bandwidth, download_bandwidth; //  bytes/s; 0: unknown
} zf_sched_host_info_t;
zf_sched_host_t *zf_sched_host_upsert (zf_sched_t *self, const zf_sched_host_info_t *info,
                                       int64_t now_ms);
zf_sched_host_t *zf_sched_host_find (zf_sched_t *self, const char *id);
//  Removes the host with all its peers (children of those peers are flagged to reschedule).
void zf_sched_host_remove (zf_sched_t *self, zf_sched_host_t *host);
//  Removes all its peers, as zf_sched_host_remove does, and keeps the host: its process
//  restarted, and what it ran is gone.
void zf_sched_host_forget_peers (zf_sched_t *self, zf_sched_host_t *host);
bool zf_sched_host_is_bad (const zf_sched_host_t *host, int64_t now_ms);
//  First host in iteration order, then the next; for expiry scans and seed choice.
zf_sched_host_t *zf_sched_host_first (zf_sched_t *self);
zf_sched_host_t *zf_sched_host_next (zf_sched_t *self);
//  The seed hosts, whatever their state (a short list kept on announce and removal).
zf_sched_host_t *const *zf_sched_seed_hosts (zf_sched_t *self, size_t *count);

//  Tasks are created by their first peer and freed with their last.
zf_sched_task_t *zf_sched_task_find (zf_sched_t *self, const char *id);
zf_sched_task_t *zf_sched_task_ensure (zf_sched_t *self, const char *id);
//  Learns lengths once known; a different non-zero piece_count later is refused (false).
bool zf_sched_task_set_lengths (zf_sched_task_t *task, uint64_t content_length,
                                uint64_t piece_length, uint64_t piece_count);
void zf_sched_task_set_origin (zf_sched_task_t *task, const char *url, const char *digest,
                               const char *tag, const char *application);

zf_sched_peer_t *zf_sched_peer_find (zf_sched_t *self, zf_sched_task_t *task,
                                     zf_sched_host_t *host);
zf_sched_peer_t *zf_sched_peer_add (zf_sched_t *self, zf_sched_task_t *task, zf_sched_host_t *host);
//  Drops the peer's edges (its children are flagged to reschedule), releases the task's
//  source if it was it, and frees the task when it was its last peer.
void zf_sched_peer_remove (zf_sched_t *self, zf_sched_peer_t *peer);
//  Marks pieces finished; returns how many were new. Pieces beyond a known piece_count are
//  skipped and counted in *refused.
uint32_t zf_sched_peer_add_pieces (zf_sched_t *self, zf_sched_peer_t *peer, const uint64_t *pieces,
                                   size_t count, size_t *refused);
bool zf_sched_peer_has (const zf_sched_peer_t *peer, uint32_t piece);
//  The peer holds the whole task: every bit set, parent edges released.
void zf_sched_peer_finish (zf_sched_t *self, zf_sched_peer_t *peer);
void zf_sched_peer_block (zf_sched_peer_t *peer, const zf_sched_host_t *host);
bool zf_sched_peer_blocks (const zf_sched_peer_t *peer, const zf_sched_host_t *host);
//  parent is one of child's parents.
bool zf_sched_peer_has_parent (const zf_sched_peer_t *child, const zf_sched_peer_t *parent);
const char *zf_sched_peer_state_name (const zf_sched_peer_t *peer);

//  Edges. add asserts that it keeps the graph acyclic only in zf_sched_check; callers
//  (selection) guarantee it. Every edge costs the parent's host one upload slot.
void zf_sched_edge_add (zf_sched_t *self, zf_sched_peer_t *child, zf_sched_peer_t *parent);
void zf_sched_edge_remove (zf_sched_t *self, zf_sched_peer_t *child, zf_sched_peer_t *parent);
//  Rates. `bytes` went from host `from` (NULL: the origin) to host `to` (reported by `to`).
void zf_sched_host_transferred (zf_sched_host_t *from, zf_sched_host_t *to, uint64_t bytes,
                                int64_t now_ms);
//  What the host can upload, bytes/s: the peak measured, at most what it announced; 0 while
//  neither is known.
double zf_sched_host_upload_capacity (const zf_sched_host_t *host);
//  What it uploads now (the last full window), bytes/s; 0 after a quiet window.
double zf_sched_host_upload_rate (const zf_sched_host_t *host, int64_t now_ms);
//  Counts bytes the peer received from host from (NULL: the origin).
void zf_sched_peer_received (zf_sched_t *self, zf_sched_peer_t *peer, const zf_sched_host_t *from,
                             uint64_t bytes);
//  Drops every edge into the host's peers (a host marked bad); children are flagged.
void zf_sched_host_drop_children (zf_sched_t *self, zf_sched_host_t *host);
//  When the peer is its task's origin fetcher, releases the single flight: the peer stays, as
//  one that runs, and the task's waiting peers are woken (one of them takes the flight).
void zf_sched_peer_release_flight (zf_sched_t *self, zf_sched_peer_t *peer);
//  Releases the flight of every task whose origin fetcher is one of the host's peers (a host
//  marked bad).
void zf_sched_host_release_flights (zf_sched_t *self, zf_sched_host_t *host);

//  Tasks whose waiting peers may be served now (new pieces, a released source). The owner takes
//  them after each change; a task freed meanwhile is not in the list.
void zf_sched_wake (zf_sched_t *self, zf_sched_task_t *task);
size_t zf_sched_take_wakes (zf_sched_t *self, zf_sched_task_t **tasks, size_t max);

//  A fresh walk epoch and a scratch stack for graph walks (selection, checks).
uint32_t zf_sched_next_epoch (zf_sched_t *self);
zf_sched_peer_t **zf_sched_stack (zf_sched_t *self, size_t need);
uint64_t zf_sched_random (zf_sched_t *self);

size_t zf_sched_host_count (zf_sched_t *self);
size_t zf_sched_task_count (zf_sched_t *self);
size_t zf_sched_peer_count (zf_sched_t *self);
//  Bytes of the model's own structures (not allocator overhead).
size_t zf_sched_bytes (zf_sched_t *self);
void zf_sched_bytes_add (zf_sched_t *self, ssize_t delta);

//  Consistency of everything: edges both ways, loads, holders, indexes, and no cycle in any
//  task's parent graph. Returns false with a reason; for tests and the state dump.
bool zf_sched_check (zf_sched_t *self, const char **why);
//  Acyclicity of one task's parent graph.
bool zf_sched_task_acyclic (zf_sched_t *self, zf_sched_task_t *task);

#endif
