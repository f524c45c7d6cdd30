/*  zf_piece_table.c — one task's pieces (see zf_piece_table.h). */
#include "zf_piece_table.h"

//  Failed attempts at parents after which a piece goes to the origin (when the task has one):
//  parents that keep failing on one piece are unlikely to give it.
#define PARENT_ATTEMPTS_MAX 3

typedef struct {
    uint8_t state;  //  zf_piece_state_t
    uint8_t source; //  zf_piece_source_t, while FETCHING
    uint8_t requests;
    bool to_origin;
    uint16_t availability;
    uint16_t parent_attempts;
    uint32_t from;
    int64_t not_before;
    int64_t requested_at;
} piece_t;

struct zf_piece_table_s {
    piece_t *pieces;
    uint64_t count;
    uint64_t stored;
    bool has_origin;
};

zf_piece_table_t *zf_piece_table_new (uint64_t count)
{
    zf_piece_table_t *self = zf_calloc (1, sizeof *self);
    self->pieces = zf_calloc (count ? count : 1, sizeof (piece_t));
    self->count = count;
    self->has_origin = true;
    return self;
}

void zf_piece_table_destroy (zf_piece_table_t **self_p)
{
    zf_piece_table_t *self = *self_p;
    if (!self)
        return;
    zf_free (self->pieces);
    zf_free (self);
    *self_p = NULL;
}

static piece_t *s_piece (const zf_piece_table_t *self, uint64_t piece)
{
    ZF_ASSERT (piece < self->count);
    return &self->pieces[piece];
}

uint64_t zf_piece_table_count (const zf_piece_table_t *self)
{
    return self->count;
}

zf_piece_state_t zf_piece_table_state (const zf_piece_table_t *self, uint64_t piece)
{
    return (zf_piece_state_t) s_piece (self, piece)->state;
}

uint64_t zf_piece_table_stored (const zf_piece_table_t *self)
{
    return self->stored;
}

uint64_t zf_piece_table_remaining (const zf_piece_table_t *self)
{
    return self->count - self->stored;
}

static void s_set_state (zf_piece_table_t *self, piece_t *piece, zf_piece_state_t state)
{
    if (piece->state == ZF_PIECE_STORED)
        self->stored--;
    if (state == ZF_PIECE_STORED)
        self->stored++;
    piece->state = (uint8_t) state;
    if (state != ZF_PIECE_FETCHING)
        piece->requests = 0;
}

void zf_piece_table_fetch (zf_piece_table_t *self, uint64_t index, zf_piece_source_t source,
                           int64_t now)
{
    piece_t *piece = s_piece (self, index);
    ZF_ASSERT (piece->state == ZF_PIECE_MISSING);
    s_set_state (self, piece, ZF_PIECE_FETCHING);
    piece->source = (uint8_t) source;
    piece->requested_at = now;
}

bool zf_piece_table_request (zf_piece_table_t *self, uint64_t index, int64_t now)
{
    piece_t *piece = s_piece (self, index);
    if (piece->state == ZF_PIECE_MISSING) {
        zf_piece_table_fetch (self, index, ZF_PIECE_BY_PARENTS, now);
        piece->requests = 1;
        return true;
    }
    if (piece->state != ZF_PIECE_FETCHING || piece->source != ZF_PIECE_BY_PARENTS
        || piece->requests >= ZF_PIECE_REQUESTS_MAX)
        return false;
    piece->requests++;
    return true;
}

void zf_piece_table_request_ended (zf_piece_table_t *self, uint64_t index, bool attempt)
{
    piece_t *piece = s_piece (self, index);
    if (piece->state != ZF_PIECE_FETCHING || piece->source != ZF_PIECE_BY_PARENTS)
        return; //  the piece moved on (another request delivered it)
    ZF_ASSERT (piece->requests > 0);
    if (attempt && ++piece->parent_attempts >= PARENT_ATTEMPTS_MAX && self->has_origin)
        piece->to_origin = true;
    if (--piece->requests == 0)
        s_set_state (self, piece, ZF_PIECE_MISSING);
}

uint32_t zf_piece_table_requests (const zf_piece_table_t *self, uint64_t index)
{
    const piece_t *piece = s_piece (self, index);
    return piece->state == ZF_PIECE_FETCHING && piece->source == ZF_PIECE_BY_PARENTS
               ? piece->requests
               : 0;
}

int64_t zf_piece_table_requested_at (const zf_piece_table_t *self, uint64_t index)
{
    return s_piece (self, index)->requested_at;
}

void zf_piece_table_filled (zf_piece_table_t *self, uint64_t index, uint32_t from)
{
    piece_t *piece = s_piece (self, index);
    ZF_ASSERT (piece->state == ZF_PIECE_FETCHING);
    s_set_state (self, piece, ZF_PIECE_WRITING);
    piece->from = from;
}

uint32_t zf_piece_table_from (const zf_piece_table_t *self, uint64_t index)
{
    return s_piece (self, index)->from;
}

void zf_piece_table_store (zf_piece_table_t *self, uint64_t index)
{
    piece_t *piece = s_piece (self, index);
    ZF_ASSERT (piece->state == ZF_PIECE_WRITING || piece->state == ZF_PIECE_MISSING);
    s_set_state (self, piece, ZF_PIECE_STORED);
}

void zf_piece_table_reset (zf_piece_table_t *self, uint64_t index)
{
    s_set_state (self, s_piece (self, index), ZF_PIECE_MISSING);
}

void zf_piece_table_backoff (zf_piece_table_t *self, uint64_t index, int64_t until)
{
    s_piece (self, index)->not_before = until;
}

int64_t zf_piece_table_not_before (const zf_piece_table_t *self, uint64_t index)
{
    return s_piece (self, index)->not_before;
}

void zf_piece_table_route_to_origin (zf_piece_table_t *self, uint64_t index)
{
    s_piece (self, index)->to_origin = true;
}

bool zf_piece_table_routed_to_origin (const zf_piece_table_t *self, uint64_t index)
{
    return s_piece (self, index)->to_origin;
}

void zf_piece_table_set_origin (zf_piece_table_t *self, bool has_origin)
{
    self->has_origin = has_origin;
}

bool zf_piece_table_missing_now (const zf_piece_table_t *self, uint64_t index, int64_t now)
{
    const piece_t *piece = s_piece (self, index);
    return piece->state == ZF_PIECE_MISSING && piece->not_before <= now;
}

bool zf_piece_table_wanted_by_parents (const zf_piece_table_t *self, uint64_t index, int64_t now)
{
    return zf_piece_table_missing_now (self, index, now) && !s_piece (self, index)->to_origin;
}

//  --- availability ------------------------------------------------------------------------------

void zf_piece_table_holder_add (zf_piece_table_t *self, const uint8_t *bitmap)
{
    for (uint64_t index = 0; index < self->count; index++)
        if (zf_bit (bitmap, index))
            self->pieces[index].availability++;
}

void zf_piece_table_holder_remove (zf_piece_table_t *self, const uint8_t *bitmap)
{
    for (uint64_t index = 0; index < self->count; index++)
        if (zf_bit (bitmap, index))
            zf_piece_table_holder_lost (self, index);
}

void zf_piece_table_holder_gained (zf_piece_table_t *self, uint64_t index)
{
    s_piece (self, index)->availability++;
}

void zf_piece_table_holder_lost (zf_piece_table_t *self, uint64_t index)
{
    piece_t *piece = s_piece (self, index);
    ZF_ASSERT (piece->availability > 0);
    piece->availability--;
}

uint32_t zf_piece_table_availability (const zf_piece_table_t *self, uint64_t index)
{
    return s_piece (self, index)->availability;
}

//  splitmix64: the draws among the rarest
static uint64_t s_next (uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int64_t zf_piece_table_pick (const zf_piece_table_t *self, const uint8_t *bitmap, uint64_t from,
                             uint64_t random, const uint8_t *skip, int64_t first, int64_t now)
{
    if (from >= self->count)
        return -1;
    if (first >= (int64_t) from && (uint64_t) first < self->count
        && zf_bit (bitmap, (uint64_t) first) && !zf_bit (skip, (uint64_t) first)
        && zf_piece_table_wanted_by_parents (self, (uint64_t) first, now))
        return first;
    //  One pass, the rarest kept; ties replace it with chance 1 / (ties so far), which leaves
    //  each of them equally likely (reservoir sampling). A scan from a random start taking the
    //  first of the rarest, as before, gave most children the same piece: a seed's new pieces
    //  are a run of indexes, and every start outside the run led to its first piece, which the
    //  seed then sent one child and refused the others ("elsewhere": 80% of the time the
    //  children's requests spent at the seed in an N = 16 run, 72% with the draw).
    int64_t best = -1;
    uint64_t ties = 0;
    uint64_t state = random;
    for (uint64_t index = from; index < self->count; index++) {
        if (!zf_bit (bitmap, index) || zf_bit (skip, index)
            || !zf_piece_table_wanted_by_parents (self, index, now))
            continue;
        uint16_t availability = self->pieces[index].availability;
        if (best < 0 || availability < self->pieces[best].availability) {
            best = (int64_t) index;
            ties = 1;
            if (random == 0 && availability <= 1)
                break; //  the lowest index of the rarest: nothing is rarer
        } else if (random != 0 && availability == self->pieces[best].availability
                   && s_next (&state) % ++ties == 0)
            best = (int64_t) index;
    }
    return best;
}

//  --- selftest ----------------------------------------------------------------------------------

//  A holder of only a run of new pieces at the end, as a seed is to its children: draws
//  spread over the run, each piece about as often as the others (a scan from a random start
//  that took the first of the rarest gave the run's first piece 90% of the time).
static void s_test_draws (void)
{
    zf_piece_table_t *table = zf_piece_table_new (100);
    uint8_t seed[13] = {0};
    for (uint64_t piece = 90; piece < 100; piece++)
        zf_bit_set (seed, piece, true);
    zf_piece_table_holder_add (table, seed);
    uint32_t times[100] = {0};
    for (uint64_t draw = 1; draw <= 1000; draw++) {
        int64_t piece = zf_piece_table_pick (table, seed, 0, draw * 7919, NULL, -1, 0);
        ZF_ASSERT (piece >= 90 && piece < 100);
        times[piece]++;
    }
    for (uint64_t piece = 90; piece < 100; piece++)
        ZF_ASSERT (times[piece] >= 60 && times[piece] <= 140);              //  100 expected
    ZF_ASSERT (zf_piece_table_pick (table, seed, 0, 0, NULL, -1, 0) == 90); //  no draw
    zf_piece_table_destroy (&table);
}

void zf_piece_table_test (bool verbose)
{
    (void) verbose;
    zf_piece_table_t *table = zf_piece_table_new (10);
    ZF_ASSERT (zf_piece_table_count (table) == 10 && zf_piece_table_remaining (table) == 10);

    //  Resume: pieces storage holds already.
    zf_piece_table_store (table, 0);
    zf_piece_table_store (table, 1);
    ZF_ASSERT (zf_piece_table_stored (table) == 2);

    //  Availability: two holders; the rarest piece first, the lowest index on a tie without a
    //  draw, never a piece in `skip`.
    uint8_t both[2] = {0xfc, 0x03};   //  pieces 2..9
    uint8_t second[2] = {0x0c, 0x00}; //  pieces 2, 3
    zf_piece_table_holder_add (table, both);
    zf_piece_table_holder_add (table, second);
    ZF_ASSERT (zf_piece_table_availability (table, 2) == 2);
    ZF_ASSERT (zf_piece_table_availability (table, 4) == 1);
    ZF_ASSERT (zf_piece_table_pick (table, both, 0, 0, NULL, -1, 0) == 4);
    ZF_ASSERT (zf_piece_table_pick (table, second, 0, 0, NULL, -1, 0) == 2);
    uint8_t skip[2] = {0xf0, 0x03}; //  pieces 4..9
    ZF_ASSERT (zf_piece_table_pick (table, both, 0, 0, skip, -1, 0) == 2);
    ZF_ASSERT (zf_piece_table_pick (table, both, 4, 0, skip, -1, 0) == -1);
    //  A piece a reader waits for goes first, rare or not, when this holder can give it and it
    //  is wanted; else the rarest as before.
    ZF_ASSERT (zf_piece_table_pick (table, both, 0, 0, NULL, 8, 0) == 8);
    ZF_ASSERT (zf_piece_table_pick (table, both, 0, 0, NULL, 2, 0) == 2);   //  not the rarest
    ZF_ASSERT (zf_piece_table_pick (table, second, 0, 0, NULL, 8, 0) == 2); //  it lacks 8
    ZF_ASSERT (zf_piece_table_pick (table, both, 0, 0, skip, 8, 0) == 2);   //  skipped here
    ZF_ASSERT (zf_piece_table_pick (table, both, 0, 0, NULL, 0, 0) == 4);   //  0 is stored
    ZF_ASSERT (zf_piece_table_pick (table, both, 3, 0, NULL, 2, 0) == 4);   //  before `from`
    zf_piece_table_holder_remove (table, second);
    ZF_ASSERT (zf_piece_table_availability (table, 2) == 1);

    //  Requests: up to the most at once, then the piece is not asked again; the last request
    //  ending without bytes makes it missing again.
    ZF_ASSERT (zf_piece_table_request (table, 4, 100));
    ZF_ASSERT (zf_piece_table_state (table, 4) == ZF_PIECE_FETCHING);
    ZF_ASSERT (zf_piece_table_requested_at (table, 4) == 100);
    for (int extra = 1; extra < ZF_PIECE_REQUESTS_MAX; extra++)
        ZF_ASSERT (zf_piece_table_request (table, 4, 200));
    ZF_ASSERT (!zf_piece_table_request (table, 4, 300));
    ZF_ASSERT (zf_piece_table_requests (table, 4) == ZF_PIECE_REQUESTS_MAX);
    ZF_ASSERT (zf_piece_table_pick (table, both, 0, 0, NULL, -1, 0) != 4);
    for (int ended = 0; ended < ZF_PIECE_REQUESTS_MAX; ended++)
        zf_piece_table_request_ended (table, 4, false);
    ZF_ASSERT (zf_piece_table_state (table, 4) == ZF_PIECE_MISSING);

    //  Failed attempts route a piece to the origin, and parents stop wanting it.
    for (int attempt = 0; attempt < PARENT_ATTEMPTS_MAX; attempt++) {
        ZF_ASSERT (zf_piece_table_request (table, 5, 0));
        zf_piece_table_request_ended (table, 5, true);
    }
    ZF_ASSERT (zf_piece_table_routed_to_origin (table, 5));
    ZF_ASSERT (!zf_piece_table_wanted_by_parents (table, 5, 0));
    ZF_ASSERT (zf_piece_table_missing_now (table, 5, 0));
    //  ... but not in a task without an origin: parents are all it has.
    zf_piece_table_set_origin (table, false);
    for (int attempt = 0; attempt < PARENT_ATTEMPTS_MAX; attempt++) {
        ZF_ASSERT (zf_piece_table_request (table, 6, 0));
        zf_piece_table_request_ended (table, 6, true);
    }
    ZF_ASSERT (!zf_piece_table_routed_to_origin (table, 6));
    zf_piece_table_set_origin (table, true);

    //  Backoff: not wanted before its time.
    zf_piece_table_backoff (table, 7, 1000);
    ZF_ASSERT (!zf_piece_table_missing_now (table, 7, 999));
    ZF_ASSERT (zf_piece_table_missing_now (table, 7, 1000));

    //  The origin fills a piece: no parent request may join it; a request ending after its
    //  bytes arrived changes nothing.
    zf_piece_table_fetch (table, 8, ZF_PIECE_BY_ORIGIN, 0);
    ZF_ASSERT (!zf_piece_table_request (table, 8, 0));
    ZF_ASSERT (zf_piece_table_request (table, 9, 0));
    ZF_ASSERT (zf_piece_table_request (table, 9, 0));
    zf_piece_table_filled (table, 9, 7);
    zf_piece_table_request_ended (table, 9, true); //  the duplicate, late
    ZF_ASSERT (zf_piece_table_state (table, 9) == ZF_PIECE_WRITING);
    ZF_ASSERT (zf_piece_table_from (table, 9) == 7);
    zf_piece_table_store (table, 9);
    ZF_ASSERT (zf_piece_table_stored (table) == 3);

    //  Storage lost a stored piece: missing again, counted out.
    zf_piece_table_reset (table, 9);
    ZF_ASSERT (zf_piece_table_stored (table) == 2 && zf_piece_table_remaining (table) == 8);
    ZF_ASSERT (zf_piece_table_state (table, 9) == ZF_PIECE_MISSING);

    zf_piece_table_destroy (&table);
    ZF_ASSERT (table == NULL);
    s_test_draws ();
}
