/*  zf_piece_table.h — one task's pieces: where each stands, who may fetch it, how rare it is.

    A pure class: no bus, no loop, no I/O, no clock of its own (callers pass `now`), so every
    rule here is tested by its selftest alone. The task owns one and its sources consult it:
    the origin takes pieces routed to it, parents take the rarest piece they hold.

    A piece is MISSING, FETCHING (a source fills it: an origin transfer, or piece.read
    requests at parents, up to ZF_PIECE_REQUESTS_MAX at once in the end game), WRITING
    (verified bytes on their way to storage) or STORED. Who may fetch a missing piece:
    parents, unless it is routed to the origin (no parent can give it); either waits while it
    backs off after a failure. Availability counts the active parents holding each piece:
    the rarest one is asked for first, so pieces spread through the swarm instead of every
    child holding the same prefix. */
#ifndef ZF_PIECE_TABLE_H_INCLUDED
#define ZF_PIECE_TABLE_H_INCLUDED

#include "zf_prelude.h"

#define ZF_PIECE_REQUESTS_MAX 3 //  parents asked for one piece at once (end game)

typedef struct zf_piece_table_s zf_piece_table_t;

typedef enum {
    ZF_PIECE_MISSING,
    ZF_PIECE_FETCHING,
    ZF_PIECE_WRITING,
    ZF_PIECE_STORED,
} zf_piece_state_t;

//  Who is filling a FETCHING piece.
typedef enum {
    ZF_PIECE_BY_ORIGIN,
    ZF_PIECE_BY_PARENTS,
} zf_piece_source_t;

zf_piece_table_t *zf_piece_table_new (uint64_t count);
void zf_piece_table_destroy (zf_piece_table_t **self_p);

uint64_t zf_piece_table_count (const zf_piece_table_t *self);
zf_piece_state_t zf_piece_table_state (const zf_piece_table_t *self, uint64_t piece);
uint64_t zf_piece_table_stored (const zf_piece_table_t *self);
//  Pieces not STORED.
uint64_t zf_piece_table_remaining (const zf_piece_table_t *self);

//  --- transitions ----------------------------------------------------------------------------
//  MISSING -> FETCHING by the origin.
void zf_piece_table_fetch (zf_piece_table_t *self, uint64_t piece, zf_piece_source_t source,
                           int64_t now);
//  One more parent asked for the piece (MISSING, or FETCHING by parents below the most).
//  Returns false when it may not be asked now.
bool zf_piece_table_request (zf_piece_table_t *self, uint64_t piece, int64_t now);
//  A parent request of the piece ended without its bytes; with none left it is MISSING
//  again. `attempt`: the failure counts against the piece (after ZF_PIECE_PARENT_ATTEMPTS it
//  is routed to the origin when the task has one).
void zf_piece_table_request_ended (zf_piece_table_t *self, uint64_t piece, bool attempt);
//  Parent requests of the piece in flight.
uint32_t zf_piece_table_requests (const zf_piece_table_t *self, uint64_t piece);
//  When the current round of parent requests began (its first request).
int64_t zf_piece_table_requested_at (const zf_piece_table_t *self, uint64_t piece);
//  FETCHING -> WRITING: its bytes arrived and passed their checks. `from`: the parent's id
//  (0: the origin), remembered for progress reports.
void zf_piece_table_filled (zf_piece_table_t *self, uint64_t piece, uint32_t from);
uint32_t zf_piece_table_from (const zf_piece_table_t *self, uint64_t piece);
//  WRITING -> STORED; MISSING -> STORED when storage already holds it (resume).
void zf_piece_table_store (zf_piece_table_t *self, uint64_t piece);
//  Back to MISSING from any state: an origin transfer failed, or storage lost a stored piece.
void zf_piece_table_reset (zf_piece_table_t *self, uint64_t piece);
//  The piece waits until `until` before anyone may fetch it again.
void zf_piece_table_backoff (zf_piece_table_t *self, uint64_t piece, int64_t until);
int64_t zf_piece_table_not_before (const zf_piece_table_t *self, uint64_t piece);

//  --- routing ---------------------------------------------------------------------------------
//  No parent can give the piece: the origin takes it from now on.
void zf_piece_table_route_to_origin (zf_piece_table_t *self, uint64_t piece);
bool zf_piece_table_routed_to_origin (const zf_piece_table_t *self, uint64_t piece);
//  Whether the task has an origin to route pieces to (set once; default true).
void zf_piece_table_set_origin (zf_piece_table_t *self, bool has_origin);
//  MISSING, not backing off, and for parents (not routed to the origin).
bool zf_piece_table_wanted_by_parents (const zf_piece_table_t *self, uint64_t piece, int64_t now);
//  MISSING and not backing off (the origin takes it when routed there, or when the task
//  has no parents deciding).
bool zf_piece_table_missing_now (const zf_piece_table_t *self, uint64_t piece, int64_t now);

//  --- availability ----------------------------------------------------------------------------
//  A parent became active with the pieces in `bitmap` (count bits), or left.
void zf_piece_table_holder_add (zf_piece_table_t *self, const uint8_t *bitmap);
void zf_piece_table_holder_remove (zf_piece_table_t *self, const uint8_t *bitmap);
//  An active parent gained or lost one piece.
void zf_piece_table_holder_gained (zf_piece_table_t *self, uint64_t piece);
void zf_piece_table_holder_lost (zf_piece_table_t *self, uint64_t piece);
uint32_t zf_piece_table_availability (const zf_piece_table_t *self, uint64_t piece);

//  The piece in [from, count) a holder with `bitmap` should be asked for, or -1: `first` when
//  it can give it and parents want it (a reader on this host waits for that piece: -1 for
//  none), else the rarest it can give. Among the rarest, `random` 0 takes the lowest index (a
//  reader streaming in order); any other value picks one uniformly (it seeds the draw), so
//  that children asking one holder for its new pieces ask for different ones. Pieces set in
//  `skip` (may be NULL) are not taken from this holder (it sent them to another node a moment
//  ago: "elsewhere").
int64_t zf_piece_table_pick (const zf_piece_table_t *self, const uint8_t *bitmap, uint64_t from,
                             uint64_t random, const uint8_t *skip, int64_t first, int64_t now);

//  Bitmap helpers (bit i of byte i / 8, least significant first, as on the bus).
static inline bool zf_bit (const uint8_t *bitmap, uint64_t index)
{
    return bitmap && (bitmap[index / 8] >> (index % 8)) & 1;
}

static inline void zf_bit_set (uint8_t *bitmap, uint64_t index, bool value)
{
    if (value)
        bitmap[index / 8] |= (uint8_t) (1u << (index % 8));
    else
        bitmap[index / 8] &= (uint8_t) ~(1u << (index % 8));
}

void zf_piece_table_test (bool verbose);

#endif
