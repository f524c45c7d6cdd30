/*  zf_sched_model.c — hosts, tasks, peers and parent edges, with counted memory. */
#include "zf_sched_model.h"

struct zf_sched_s {
    zf_sched_params_t params;
    char *seeds;     //  params.seeds points here
    zhashx_t *hosts; //  id -> zf_sched_host_t *
    zhashx_t *tasks; //  id -> zf_sched_task_t *
    //  Peers by (task, host): open addressing, linear probing, backward-shift deletion.
    zf_sched_peer_t **slots;
    size_t slot_count, peer_total;
    zf_sched_host_t **seed_hosts;
    size_t seed_count, seed_cap;
    zf_sched_task_t **wakes;
    size_t wake_count, wake_cap;
    zf_sched_peer_t **stack;
    size_t stack_cap;
    uint32_t epoch, next_serial;
    uint64_t random_state;
    size_t bytes;
};

void zf_sched_params_defaults (zf_sched_params_t *params)
{
    *params = (zf_sched_params_t){
        .parents_max = 8,
        .candidates = 24,
        .upload_slots = 16,
        .seed_upload_slots = 64,
        .weights = {0.35, 0.25, 0.1, 0.2, 0.1},
        .bad_failures = 3,
        .bad_window_ms = 30000,
        .bad_cooldown_ms = 60000,
        .host_timeout_ms = 15000,
        .resume_grace_ms = 4000,
        .seeds_enabled = true,
        .acyclic = false,
        .seeds = "auto",
        .random_seed = 0x5eed,
    };
}

//  --- memory ------------------------------------------------------------------------------------

void zf_sched_bytes_add (zf_sched_t *self, ssize_t delta)
{
    self->bytes = (size_t) ((ssize_t) self->bytes + delta);
}

size_t zf_sched_bytes (zf_sched_t *self)
{
    return self->bytes;
}

static char *s_strdup (zf_sched_t *self, const char *text)
{
    text = text ? text : "";
    zf_sched_bytes_add (self, (ssize_t) strlen (text) + 1);
    return zf_strdup (text);
}

static void s_strfree (zf_sched_t *self, char **text_p)
{
    if (*text_p) {
        zf_sched_bytes_add (self, -(ssize_t) (strlen (*text_p) + 1));
        zf_free (*text_p);
        *text_p = NULL;
    }
}

//  Grows an array of pointers to hold one more; counts the bytes.
static void s_reserve (zf_sched_t *self, void ***array, uint32_t count, uint32_t *cap,
                       uint32_t first)
{
    if (count < *cap)
        return;
    uint32_t grown = *cap ? *cap * 2 : first;
    *array = zf_realloc (*array, grown * sizeof (void *));
    zf_sched_bytes_add (self, (ssize_t) ((grown - *cap) * sizeof (void *)));
    *cap = grown;
}

uint64_t zf_sched_random (zf_sched_t *self)
{
    //  splitmix64: fast, and a fixed seed gives the same sampling in tests.
    uint64_t z = (self->random_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

//  --- the whole model -----------------------------------------------------------------------

zf_sched_t *zf_sched_new (const zf_sched_params_t *params)
{
    ZF_ASSERT (params->parents_max >= 1 && params->parents_max <= ZF_SCHED_PARENTS_MAX);
    ZF_ASSERT (params->bad_failures >= 1 && params->bad_failures <= ZF_SCHED_FAILURES_MAX);
    zf_sched_t *self = zf_calloc (1, sizeof (zf_sched_t));
    self->params = *params;
    self->seeds = zf_strdup (params->seeds ? params->seeds : "");
    self->params.seeds = self->seeds;
    self->hosts = zhashx_new ();
    self->tasks = zhashx_new ();
    self->slot_count = 1024;
    self->slots = zf_calloc (self->slot_count, sizeof (zf_sched_peer_t *));
    self->random_state = params->random_seed;
    self->bytes = sizeof (zf_sched_t) + self->slot_count * sizeof (zf_sched_peer_t *);
    return self;
}

void zf_sched_destroy (zf_sched_t **self_p)
{
    zf_sched_t *self = *self_p;
    if (!self)
        return;
    zf_sched_host_t *host;
    while ((host = zhashx_first (self->hosts)))
        zf_sched_host_remove (self, host);
    ZF_ASSERT (zhashx_size (self->tasks) == 0); //  every task has a peer, every peer a host
    zhashx_destroy (&self->hosts);
    zhashx_destroy (&self->tasks);
    zf_free (self->slots);
    zf_free (self->wakes);
    zf_free (self->seed_hosts);
    zf_free (self->stack);
    zf_free (self->seeds);
    zf_free (self);
    *self_p = NULL;
}

const zf_sched_params_t *zf_sched_params (zf_sched_t *self)
{
    return &self->params;
}

uint32_t zf_sched_next_epoch (zf_sched_t *self)
{
    if (++self->epoch == 0) {
        //  Wrapped: clear every mark so an old one never equals a new epoch.
        for (size_t index = 0; index < self->slot_count; index++)
            if (self->slots[index])
                self->slots[index]->mark = 0;
        self->epoch = 1;
    }
    return self->epoch;
}

zf_sched_peer_t **zf_sched_stack (zf_sched_t *self, size_t need)
{
    if (need > self->stack_cap) {
        size_t grown = need < 64 ? 64 : need * 2;
        self->stack = zf_realloc (self->stack, grown * sizeof (zf_sched_peer_t *));
        self->stack_cap = grown;
    }
    return self->stack;
}

size_t zf_sched_host_count (zf_sched_t *self)
{
    return zhashx_size (self->hosts);
}

size_t zf_sched_task_count (zf_sched_t *self)
{
    return zhashx_size (self->tasks);
}

size_t zf_sched_peer_count (zf_sched_t *self)
{
    return self->peer_total;
}

//  --- the peer table ------------------------------------------------------------------------

static size_t s_slot_of (const zf_sched_t *self, const zf_sched_task_t *task,
                         const zf_sched_host_t *host)
{
    uint64_t key = (uint64_t) (uintptr_t) task * 0x9e3779b97f4a7c15ull
                   ^ (uint64_t) (uintptr_t) host * 0xc2b2ae3d27d4eb4full;
    key ^= key >> 29;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 32;
    return (size_t) (key & (self->slot_count - 1));
}

static void s_table_put (zf_sched_t *self, zf_sched_peer_t *peer)
{
    size_t slot = s_slot_of (self, peer->task, peer->host);
    while (self->slots[slot])
        slot = (slot + 1) & (self->slot_count - 1);
    self->slots[slot] = peer;
}

static void s_table_grow (zf_sched_t *self)
{
    zf_sched_peer_t **old = self->slots;
    size_t old_count = self->slot_count;
    self->slot_count *= 2;
    self->slots = zf_calloc (self->slot_count, sizeof (zf_sched_peer_t *));
    zf_sched_bytes_add (self, (ssize_t) (old_count * sizeof (zf_sched_peer_t *)));
    for (size_t index = 0; index < old_count; index++)
        if (old[index])
            s_table_put (self, old[index]);
    zf_free (old);
}

static void s_table_delete (zf_sched_t *self, zf_sched_peer_t *peer)
{
    size_t mask = self->slot_count - 1;
    size_t hole = s_slot_of (self, peer->task, peer->host);
    while (self->slots[hole] != peer) {
        ZF_ASSERT (self->slots[hole]);
        hole = (hole + 1) & mask;
    }
    //  Backward shift: move later entries of the run into the hole when their home allows it,
    //  so lookups never need tombstones.
    size_t next = (hole + 1) & mask;
    while (self->slots[next]) {
        size_t home = s_slot_of (self, self->slots[next]->task, self->slots[next]->host);
        bool movable = ((next - home) & mask) >= ((next - hole) & mask);
        if (movable) {
            self->slots[hole] = self->slots[next];
            hole = next;
        }
        next = (next + 1) & mask;
    }
    self->slots[hole] = NULL;
}

zf_sched_peer_t *zf_sched_peer_find (zf_sched_t *self, zf_sched_task_t *task, zf_sched_host_t *host)
{
    size_t slot = s_slot_of (self, task, host);
    while (self->slots[slot]) {
        if (self->slots[slot]->task == task && self->slots[slot]->host == host)
            return self->slots[slot];
        slot = (slot + 1) & (self->slot_count - 1);
    }
    return NULL;
}

//  --- wakes ---------------------------------------------------------------------------------

void zf_sched_wake (zf_sched_t *self, zf_sched_task_t *task)
{
    if (task->wake_pending || !task->parked)
        return;
    if (self->wake_count == self->wake_cap) {
        self->wake_cap = self->wake_cap ? self->wake_cap * 2 : 16;
        self->wakes = zf_realloc (self->wakes, self->wake_cap * sizeof (zf_sched_task_t *));
    }
    self->wakes[self->wake_count++] = task;
    task->wake_pending = true;
}

size_t zf_sched_take_wakes (zf_sched_t *self, zf_sched_task_t **tasks, size_t max)
{
    size_t taken = 0;
    while (taken < max && self->wake_count > 0) {
        zf_sched_task_t *task = self->wakes[--self->wake_count];
        task->wake_pending = false;
        tasks[taken++] = task;
    }
    return taken;
}

static void s_unwake (zf_sched_t *self, zf_sched_task_t *task)
{
    for (size_t index = 0; task->wake_pending && index < self->wake_count; index++)
        if (self->wakes[index] == task) {
            self->wakes[index] = self->wakes[--self->wake_count];
            task->wake_pending = false;
        }
}

//  --- hosts ---------------------------------------------------------------------------------

static void s_seed_list_add (zf_sched_t *self, zf_sched_host_t *host)
{
    if (self->seed_count == self->seed_cap) {
        self->seed_cap = self->seed_cap ? self->seed_cap * 2 : 8;
        self->seed_hosts = zf_realloc (self->seed_hosts, self->seed_cap * sizeof (void *));
    }
    self->seed_hosts[self->seed_count++] = host;
}

static void s_seed_list_remove (zf_sched_t *self, zf_sched_host_t *host)
{
    for (size_t index = 0; index < self->seed_count; index++)
        if (self->seed_hosts[index] == host) {
            self->seed_hosts[index] = self->seed_hosts[--self->seed_count];
            return;
        }
}

zf_sched_host_t *const *zf_sched_seed_hosts (zf_sched_t *self, size_t *count)
{
    *count = self->seed_count;
    return self->seed_hosts;
}

static void s_host_set (zf_sched_t *self, zf_sched_host_t *host, const zf_sched_host_info_t *info)
{
    char **fields[] = {&host->node,     &host->storage,  &host->fetcher, &host->idc,
                       &host->location, &host->endpoint, &host->key};
    const char *values[] = {info->node,     info->storage,  info->fetcher, info->idc,
                            info->location, info->endpoint, info->key};
    for (size_t index = 0; index < ZF_ARRAY_LEN (fields); index++) {
        if (*fields[index] && streq (*fields[index], values[index] ? values[index] : ""))
            continue;
        s_strfree (self, fields[index]);
        *fields[index] = s_strdup (self, values[index]);
    }
    if (info->seed && !host->seed)
        s_seed_list_add (self, host);
    else if (!info->seed && host->seed)
        s_seed_list_remove (self, host);
    host->seed = info->seed;
    host->upload_slots = info->upload_slots ? info->upload_slots
                         : info->seed       ? self->params.seed_upload_slots
                                            : self->params.upload_slots;
    //  Shares already handed out stay until their edges go (a changed link shows in new ones).
    host->upload_bandwidth = info->upload_bandwidth;
    host->download_bandwidth = info->download_bandwidth;
}

zf_sched_host_t *zf_sched_host_upsert (zf_sched_t *self, const zf_sched_host_info_t *info,
                                       int64_t now_ms)
{
    zf_sched_host_t *host = zhashx_lookup (self->hosts, info->id);
    if (!host) {
        host = zf_calloc (1, sizeof (zf_sched_host_t));
        host->id = s_strdup (self, info->id);
        host->serial = ++self->next_serial;
        host->failures = zf_calloc (self->params.bad_failures, sizeof (int64_t));
        host->failure_reporters = zf_calloc (self->params.bad_failures, sizeof (uint32_t));
        zf_sched_bytes_add (
            self, (ssize_t) (sizeof (zf_sched_host_t)
                             + self->params.bad_failures * (sizeof (int64_t) + sizeof (uint32_t))));
        zhashx_insert (self->hosts, host->id, host);
    }
    s_host_set (self, host, info);
    host->last_seen_ms = now_ms;
    return host;
}

zf_sched_host_t *zf_sched_host_find (zf_sched_t *self, const char *id)
{
    return zhashx_lookup (self->hosts, id);
}

zf_sched_host_t *zf_sched_host_first (zf_sched_t *self)
{
    return zhashx_first (self->hosts);
}

zf_sched_host_t *zf_sched_host_next (zf_sched_t *self)
{
    return zhashx_next (self->hosts);
}

bool zf_sched_host_is_bad (const zf_sched_host_t *host, int64_t now_ms)
{
    return host->bad_until_ms > now_ms;
}

void zf_sched_host_forget_peers (zf_sched_t *self, zf_sched_host_t *host)
{
    while (host->peer_count > 0)
        zf_sched_peer_remove (self, host->peers[host->peer_count - 1]);
}

void zf_sched_host_remove (zf_sched_t *self, zf_sched_host_t *host)
{
    zf_sched_host_forget_peers (self, host);
    if (host->seed)
        s_seed_list_remove (self, host);
    zhashx_delete (self->hosts, host->id);
    char **fields[] = {&host->id,  &host->node,     &host->storage,  &host->fetcher,
                       &host->idc, &host->location, &host->endpoint, &host->key};
    for (size_t index = 0; index < ZF_ARRAY_LEN (fields); index++)
        s_strfree (self, fields[index]);
    zf_sched_bytes_add (
        self, -(ssize_t) (sizeof (zf_sched_host_t)
                          + self->params.bad_failures * (sizeof (int64_t) + sizeof (uint32_t))
                          + host->peer_cap * sizeof (void *)));
    zf_free (host->failures);
    zf_free (host->failure_reporters);
    zf_free (host->peers);
    zf_free (host);
}

//  --- tasks ---------------------------------------------------------------------------------

zf_sched_task_t *zf_sched_task_find (zf_sched_t *self, const char *id)
{
    return zhashx_lookup (self->tasks, id);
}

zf_sched_task_t *zf_sched_task_ensure (zf_sched_t *self, const char *id)
{
    zf_sched_task_t *task = zhashx_lookup (self->tasks, id);
    if (task)
        return task;
    ZF_ASSERT (strlen (id) <= ZF_SCHED_TASK_ID_MAX);
    task = zf_calloc (1, sizeof (zf_sched_task_t));
    zf_strlcpy (task->id, id, sizeof (task->id));
    zf_sched_bytes_add (self, sizeof (zf_sched_task_t));
    zhashx_insert (self->tasks, task->id, task);
    return task;
}

bool zf_sched_task_set_lengths (zf_sched_task_t *task, uint64_t content_length,
                                uint64_t piece_length, uint64_t piece_count)
{
    if (piece_count && task->piece_count && piece_count != task->piece_count)
        return false;
    if (piece_count && piece_count <= UINT32_MAX)
        task->piece_count = (uint32_t) piece_count;
    if (content_length)
        task->content_length = content_length;
    if (piece_length)
        task->piece_length = piece_length;
    return true;
}

void zf_sched_task_set_origin (zf_sched_task_t *task, const char *url, const char *digest,
                               const char *tag, const char *application)
{
    //  The first peer that knows the URL sets it; the rest are the same task by definition.
    //  Not counted per byte: it is per task, and bounded by the schema.
    if (task->url || !url || !*url)
        return;
    task->url = zf_strdup (url);
    task->digest = zf_strdup (digest ? digest : "");
    task->tag = zf_strdup (tag ? tag : "");
    task->application = zf_strdup (application ? application : "");
}

static void s_task_free (zf_sched_t *self, zf_sched_task_t *task)
{
    ZF_ASSERT (task->peer_count == 0 && !task->parked);
    s_unwake (self, task);
    zhashx_delete (self->tasks, task->id);
    zf_sched_bytes_add (self,
                        -(ssize_t) (sizeof (zf_sched_task_t) + task->peer_cap * sizeof (void *)));
    zf_free (task->url);
    zf_free (task->digest);
    zf_free (task->tag);
    zf_free (task->application);
    zf_free (task->peers);
    zf_free (task);
}

//  --- peers ---------------------------------------------------------------------------------

zf_sched_peer_t *zf_sched_peer_add (zf_sched_t *self, zf_sched_task_t *task, zf_sched_host_t *host)
{
    ZF_ASSERT (!zf_sched_peer_find (self, task, host));
    zf_sched_peer_t *peer = zf_calloc (1, sizeof (zf_sched_peer_t));
    zf_sched_bytes_add (self, sizeof (zf_sched_peer_t));
    peer->task = task;
    peer->host = host;
    peer->state = ZF_PEER_WAITING;
    s_reserve (self, (void ***) &task->peers, task->peer_count, &task->peer_cap, 4);
    peer->task_index = task->peer_count;
    task->peers[task->peer_count++] = peer;
    s_reserve (self, (void ***) &host->peers, host->peer_count, &host->peer_cap, 4);
    peer->host_index = host->peer_count;
    host->peers[host->peer_count++] = peer;
    //  Load factor at most 1/2 keeps probe runs short.
    if ((self->peer_total + 1) * 2 > self->slot_count)
        s_table_grow (self);
    s_table_put (self, peer);
    self->peer_total++;
    return peer;
}

void zf_sched_peer_remove (zf_sched_t *self, zf_sched_peer_t *peer)
{
    zf_sched_task_t *task = peer->task;
    zf_sched_host_t *host = peer->host;
    ZF_ASSERT (!peer->parked); //  the owner answers its waiting request first
    while (peer->parent_count > 0)
        zf_sched_edge_remove (self, peer, peer->parents[peer->parent_count - 1]);
    while (peer->child_count > 0) {
        zf_sched_peer_t *child = peer->children[peer->child_count - 1];
        zf_sched_edge_remove (self, child, peer);
        child->reschedule = true;
    }
    if (peer->finished_count > 0)
        task->holders--;
    if (task->source == peer) {
        task->source = NULL; //  single flight released: a waiting peer may take over
        zf_sched_wake (self, task);
    }
    task->peers[peer->task_index] = task->peers[--task->peer_count];
    task->peers[peer->task_index]->task_index = peer->task_index;
    host->peers[peer->host_index] = host->peers[--host->peer_count];
    host->peers[peer->host_index]->host_index = peer->host_index;
    s_table_delete (self, peer);
    self->peer_total--;
    zf_sched_bytes_add (self,
                        -(ssize_t) (sizeof (zf_sched_peer_t) + peer->child_cap * sizeof (void *)
                                    + peer->bitmap_bits / 8
                                    + peer->received_count * sizeof (zf_sched_received_t)));
    zf_free (peer->children);
    zf_free (peer->bitmap);
    zf_free (peer->received);
    zf_free (peer);
    if (task->peer_count == 0 && !task->parked)
        s_task_free (self, task);
}

static void s_bitmap_reserve (zf_sched_t *self, zf_sched_peer_t *peer, uint32_t bits)
{
    if (bits <= peer->bitmap_bits)
        return;
    uint32_t grown = peer->task->piece_count >= bits ? peer->task->piece_count : bits;
    if (!peer->task->piece_count && grown < peer->bitmap_bits * 2)
        grown = peer->bitmap_bits * 2; //  unknown length: grow geometrically
    grown = (grown + 63) & ~63u;
    peer->bitmap = zf_realloc (peer->bitmap, grown / 8);
    memset ((uint8_t *) peer->bitmap + peer->bitmap_bits / 8, 0, (grown - peer->bitmap_bits) / 8);
    zf_sched_bytes_add (self, (ssize_t) ((grown - peer->bitmap_bits) / 8));
    peer->bitmap_bits = grown;
}

bool zf_sched_peer_has (const zf_sched_peer_t *peer, uint32_t piece)
{
    return piece < peer->bitmap_bits && (peer->bitmap[piece / 64] >> (piece % 64)) & 1;
}

uint32_t zf_sched_peer_add_pieces (zf_sched_t *self, zf_sched_peer_t *peer, const uint64_t *pieces,
                                   size_t count, size_t *refused)
{
    uint32_t fresh = 0, before = peer->finished_count;
    for (size_t index = 0; index < count; index++) {
        uint64_t piece = pieces[index];
        bool known = peer->task->piece_count > 0;
        if ((known && piece >= peer->task->piece_count) || piece >= (1u << 24)) {
            if (refused)
                (*refused)++;
            continue;
        }
        s_bitmap_reserve (self, peer, (uint32_t) piece + 1);
        uint64_t bit = 1ull << (piece % 64);
        if (!(peer->bitmap[piece / 64] & bit)) {
            peer->bitmap[piece / 64] |= bit;
            fresh++;
        }
    }
    peer->finished_count += fresh;
    if (before == 0 && peer->finished_count > 0)
        peer->task->holders++;
    if (fresh)
        zf_sched_wake (self, peer->task);
    return fresh;
}

void zf_sched_peer_finish (zf_sched_t *self, zf_sched_peer_t *peer)
{
    while (peer->parent_count > 0)
        zf_sched_edge_remove (self, peer, peer->parents[peer->parent_count - 1]);
    uint32_t count = peer->task->piece_count;
    if (count > 0) {
        s_bitmap_reserve (self, peer, count);
        memset (peer->bitmap, 0, peer->bitmap_bits / 8);
        for (uint32_t word = 0; word < count / 64; word++)
            peer->bitmap[word] = ~0ull;
        if (count % 64)
            peer->bitmap[count / 64] = (1ull << (count % 64)) - 1;
        if (peer->finished_count == 0)
            peer->task->holders++;
        peer->finished_count = count;
    }
    if (peer->task->source == peer)
        peer->task->source = NULL; //  done: holders serve from now on
    peer->state = ZF_PEER_FINISHED;
    peer->reschedule = false;
    zf_sched_wake (self, peer->task);
}

void zf_sched_peer_block (zf_sched_peer_t *peer, const zf_sched_host_t *host)
{
    if (zf_sched_peer_blocks (peer, host))
        return;
    peer->blocked[peer->blocked_next] = host->serial;
    peer->blocked_next = (uint8_t) ((peer->blocked_next + 1) % ZF_SCHED_BLOCKED_MAX);
}

bool zf_sched_peer_blocks (const zf_sched_peer_t *peer, const zf_sched_host_t *host)
{
    for (size_t index = 0; index < ZF_SCHED_BLOCKED_MAX; index++)
        if (peer->blocked[index] == host->serial)
            return true;
    return false;
}

bool zf_sched_peer_has_parent (const zf_sched_peer_t *child, const zf_sched_peer_t *parent)
{
    for (uint8_t index = 0; index < child->parent_count; index++)
        if (child->parents[index] == parent)
            return true;
    return false;
}

const char *zf_sched_peer_state_name (const zf_sched_peer_t *peer)
{
    static const char *names[] = {"waiting", "running", "source", "finished"};
    return names[peer->state];
}

//  --- edges ---------------------------------------------------------------------------------

//  A window's bytes become the rate once it is over; the peak decays by PEAK_DECAY per window
//  so that a host that slowed down (its link shared with other traffic) is believed in time.
#define PEAK_DECAY 0.98

static void s_rate_add (zf_sched_rate_t *rate, uint64_t bytes, int64_t now_ms)
{
    int64_t elapsed = now_ms - rate->window_start_ms;
    if (rate->window_start_ms == 0) {
        rate->window_start_ms = now_ms;
        elapsed = 0;
    }
    if (elapsed >= ZF_SCHED_RATE_WINDOW_MS) {
        rate->rate = (double) rate->window_bytes * 1000.0 / (double) elapsed;
        rate->peak = rate->peak * PEAK_DECAY > rate->rate ? rate->peak * PEAK_DECAY : rate->rate;
        rate->window_start_ms = now_ms;
        rate->window_bytes = 0;
    }
    rate->window_bytes += bytes;
}

void zf_sched_host_transferred (zf_sched_host_t *from, zf_sched_host_t *to, uint64_t bytes,
                                int64_t now_ms)
{
    if (from)
        s_rate_add (&from->uploaded, bytes, now_ms);
    if (to)
        s_rate_add (&to->downloaded, bytes, now_ms);
}

void zf_sched_peer_received (zf_sched_t *self, zf_sched_peer_t *peer, const zf_sched_host_t *from,
                             uint64_t bytes)
{
    uint32_t serial = from ? from->serial : ZF_SCHED_FROM_ORIGIN;
    for (uint8_t index = 0; index < peer->received_count; index++)
        if (peer->received[index].from_serial == serial) {
            peer->received[index].bytes += bytes;
            return;
        }
    if (peer->received_count == ZF_SCHED_RECEIVED_MAX) {
        //  Full: the last entry becomes (or already is) the sum of every further source.
        peer->received[ZF_SCHED_RECEIVED_MAX - 1].from_serial = ZF_SCHED_FROM_OTHERS;
        peer->received[ZF_SCHED_RECEIVED_MAX - 1].bytes += bytes;
        return;
    }
    //  One entry at a time: most peers have one to four sources in their life.
    peer->received =
        zf_realloc (peer->received, (peer->received_count + 1u) * sizeof (zf_sched_received_t));
    peer->received[peer->received_count++] =
        (zf_sched_received_t){.from_serial = serial, .bytes = bytes};
    zf_sched_bytes_add (self, sizeof (zf_sched_received_t));
}

double zf_sched_host_upload_capacity (const zf_sched_host_t *host)
{
    double measured = host->uploaded.peak;
    double announced = (double) host->upload_bandwidth;
    if (announced > 0 && (measured == 0 || measured > announced))
        return announced;
    return measured;
}

double zf_sched_host_upload_rate (const zf_sched_host_t *host, int64_t now_ms)
{
    //  Nothing reported for two windows: nothing uploaded now.
    if (now_ms - host->uploaded.window_start_ms > 2 * ZF_SCHED_RATE_WINDOW_MS)
        return 0;
    return host->uploaded.rate;
}

void zf_sched_edge_add (zf_sched_t *self, zf_sched_peer_t *child, zf_sched_peer_t *parent)
{
    ZF_ASSERT (child->parent_count < self->params.parents_max);
    ZF_ASSERT (child != parent && child->task == parent->task);
    child->parents[child->parent_count++] = parent;
    if (parent->child_count == parent->child_cap) {
        uint16_t grown = parent->child_cap ? (uint16_t) (parent->child_cap * 2) : 4;
        ZF_ASSERT (grown > parent->child_cap);
        parent->children = zf_realloc (parent->children, grown * sizeof (void *));
        zf_sched_bytes_add (self, (ssize_t) ((grown - parent->child_cap) * sizeof (void *)));
        parent->child_cap = grown;
    }
    parent->children[parent->child_count++] = child;
    parent->host->load++;
    child->task->edges++;
}

void zf_sched_edge_remove (zf_sched_t *self, zf_sched_peer_t *child, zf_sched_peer_t *parent)
{
    (void) self;
    bool found = false;
    for (uint8_t index = 0; index < child->parent_count; index++)
        if (child->parents[index] == parent) {
            child->parent_count--;
            child->parents[index] = child->parents[child->parent_count];
            found = true;
            break;
        }
    ZF_ASSERT (found);
    for (uint16_t index = 0; index < parent->child_count; index++)
        if (parent->children[index] == child) {
            parent->children[index] = parent->children[--parent->child_count];
            break;
        }
    ZF_ASSERT (parent->host->load > 0 && child->task->edges > 0);
    parent->host->load--;
    child->task->edges--;
    //  A freed slot may serve a peer that waits on this task.
    zf_sched_wake (self, parent->task);
}

void zf_sched_host_drop_children (zf_sched_t *self, zf_sched_host_t *host)
{
    for (uint32_t index = 0; index < host->peer_count; index++) {
        zf_sched_peer_t *peer = host->peers[index];
        while (peer->child_count > 0) {
            zf_sched_peer_t *child = peer->children[peer->child_count - 1];
            zf_sched_edge_remove (self, child, peer);
            child->reschedule = true;
        }
    }
}

void zf_sched_peer_release_flight (zf_sched_t *self, zf_sched_peer_t *peer)
{
    if (peer->task->source != peer)
        return;
    peer->task->source = NULL;
    peer->state = ZF_PEER_RUNNING; //  serves what it holds, if anyone can reach it
    zf_sched_wake (self, peer->task);
}

void zf_sched_host_release_flights (zf_sched_t *self, zf_sched_host_t *host)
{
    for (uint32_t index = 0; index < host->peer_count; index++)
        zf_sched_peer_release_flight (self, host->peers[index]);
}

//  --- checks --------------------------------------------------------------------------------

bool zf_sched_task_acyclic (zf_sched_t *self, zf_sched_task_t *task)
{
    (void) self;
    //  Kahn's algorithm over the parent edges: every peer gets removed iff there is no cycle.
    uint32_t *pending = zf_calloc (task->peer_count + 1, sizeof (uint32_t));
    zf_sched_peer_t **ready = zf_calloc (task->peer_count + 1, sizeof (zf_sched_peer_t *));
    size_t ready_count = 0, removed = 0;
    for (uint32_t index = 0; index < task->peer_count; index++) {
        pending[index] = task->peers[index]->parent_count;
        if (pending[index] == 0)
            ready[ready_count++] = task->peers[index];
    }
    while (ready_count > 0) {
        zf_sched_peer_t *peer = ready[--ready_count];
        removed++;
        for (uint16_t index = 0; index < peer->child_count; index++)
            if (--pending[peer->children[index]->task_index] == 0)
                ready[ready_count++] = peer->children[index];
    }
    zf_free (pending);
    zf_free (ready);
    return removed == task->peer_count;
}

static bool s_check_peer (zf_sched_peer_t *peer, const char **why)
{
    for (uint8_t index = 0; index < peer->parent_count; index++) {
        zf_sched_peer_t *parent = peer->parents[index];
        bool back = false;
        for (uint16_t child = 0; child < parent->child_count; child++)
            back = back || parent->children[child] == peer;
        if (!back || parent->task != peer->task || parent->host == peer->host) {
            *why = !back ? "edge missing its child side" : "edge across tasks or to itself";
            return false;
        }
    }
    if (peer->task->peers[peer->task_index] != peer
        || peer->host->peers[peer->host_index] != peer) {
        *why = "peer index out of date";
        return false;
    }
    return true;
}

bool zf_sched_check (zf_sched_t *self, const char **why)
{
    zf_sched_host_t *host;
    for (host = zhashx_first (self->hosts); host; host = zhashx_next (self->hosts)) {
        uint32_t load = 0;
        for (uint32_t index = 0; index < host->peer_count; index++)
            load += host->peers[index]->child_count;
        if (load != host->load) {
            *why = "host load differs from its edges";
            return false;
        }
    }
    size_t peers = 0;
    zf_sched_task_t *task;
    for (task = zhashx_first (self->tasks); task; task = zhashx_next (self->tasks)) {
        uint32_t holders = 0, edges = 0;
        for (uint32_t index = 0; index < task->peer_count; index++) {
            if (!s_check_peer (task->peers[index], why))
                return false;
            holders += task->peers[index]->finished_count > 0;
            edges += task->peers[index]->parent_count;
        }
        if (holders != task->holders) {
            *why = "holders count is wrong";
            return false;
        }
        if (edges != task->edges) {
            *why = "edge count is wrong";
            return false;
        }
        if (self->params.acyclic && !zf_sched_task_acyclic (self, task)) {
            *why = "parent graph has a cycle";
            return false;
        }
        peers += task->peer_count;
    }
    if (peers != self->peer_total) {
        *why = "peer table and tasks disagree";
        return false;
    }
    return true;
}
