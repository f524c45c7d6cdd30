/*  zf_sched_ring.c — a sorted array of (hash, member) points, binary searched. */
#include "zf_sched_ring.h"

typedef struct {
    char *name;
    bool alive;
} member_t;

typedef struct {
    uint64_t hash;
    uint32_t member;
} point_t;

struct zf_sched_ring_s {
    uint32_t vnodes;
    member_t *members;
    size_t member_count;
    point_t *points;
    size_t point_count;
};

uint64_t zf_sched_ring_hash (const char *text)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (; *text; text++)
        hash = (hash ^ (uint8_t) *text) * 0x100000001b3ull;
    //  FNV alone clusters similar strings ("s#1", "s#2"); the finalizer spreads them.
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ull;
    hash ^= hash >> 33;
    return hash;
}

zf_sched_ring_t *zf_sched_ring_new (uint32_t vnodes)
{
    zf_sched_ring_t *self = zf_calloc (1, sizeof (zf_sched_ring_t));
    self->vnodes = vnodes ? vnodes : ZF_SCHED_RING_VNODES;
    return self;
}

void zf_sched_ring_destroy (zf_sched_ring_t **self_p)
{
    zf_sched_ring_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->member_count; index++)
        zf_free (self->members[index].name);
    zf_free (self->members);
    zf_free (self->points);
    zf_free (self);
    *self_p = NULL;
}

static int s_point_compare (const void *a, const void *b)
{
    const point_t *left = a, *right = b;
    if (left->hash != right->hash)
        return left->hash < right->hash ? -1 : 1;
    return left->member < right->member ? -1 : left->member > right->member;
}

//  Points depend only on member names, so the ring is the same whatever the order of adds.
static void s_rebuild (zf_sched_ring_t *self)
{
    self->point_count = self->member_count * self->vnodes;
    self->points = zf_realloc (self->points, (self->point_count + 1) * sizeof (point_t));
    size_t used = 0;
    for (uint32_t member = 0; member < self->member_count; member++)
        for (uint32_t vnode = 0; vnode < self->vnodes; vnode++) {
            char label[320]; //  member names are bus names, at most 128 bytes
            snprintf (label, sizeof (label), "%s#%" PRIu32, self->members[member].name, vnode);
            self->points[used++] = (point_t){zf_sched_ring_hash (label), member};
        }
    qsort (self->points, self->point_count, sizeof (point_t), s_point_compare);
}

static member_t *s_member (zf_sched_ring_t *self, const char *name)
{
    for (size_t index = 0; index < self->member_count; index++)
        if (streq (self->members[index].name, name))
            return &self->members[index];
    return NULL;
}

void zf_sched_ring_add (zf_sched_ring_t *self, const char *member)
{
    if (s_member (self, member))
        return;
    self->members = zf_realloc (self->members, (self->member_count + 1) * sizeof (member_t));
    self->members[self->member_count++] = (member_t){zf_strdup (member), true};
    s_rebuild (self);
}

void zf_sched_ring_remove (zf_sched_ring_t *self, const char *member)
{
    member_t *found = s_member (self, member);
    if (!found)
        return;
    zf_free (found->name);
    *found = self->members[--self->member_count];
    s_rebuild (self);
}

void zf_sched_ring_set_alive (zf_sched_ring_t *self, const char *member, bool alive)
{
    member_t *found = s_member (self, member);
    if (found)
        found->alive = alive;
}

size_t zf_sched_ring_size (zf_sched_ring_t *self)
{
    return self->member_count;
}

const char *zf_sched_ring_lookup (zf_sched_ring_t *self, const char *key)
{
    if (self->point_count == 0)
        return NULL;
    uint64_t hash = zf_sched_ring_hash (key);
    size_t low = 0, high = self->point_count; //  first point with hash >= key's
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (self->points[middle].hash < hash)
            low = middle + 1;
        else
            high = middle;
    }
    for (size_t step = 0; step < self->point_count; step++) {
        const point_t *point = &self->points[(low + step) % self->point_count];
        if (self->members[point->member].alive)
            return self->members[point->member].name;
    }
    return NULL;
}
