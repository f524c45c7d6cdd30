/*  zf_spread.h — pieces this node brought into the swarm go out once before they go out twice.

    The node that fetches a task from the origin (a seed, usually) is where every piece enters
    the swarm, and its upload is what limits how fast they all do: a piece it sends to a second
    child while the first could pass it on is upload taken from a piece nobody has yet.
    Children pick the rarest piece of their parents, and every child sees the newest pieces as
    held by this node alone, so without this they all ask it for the same ones.

    So a piece this node wrote from the origin (piece.write with `origin`) that went to one
    other node is refused to a different one for ZF_SPREAD_GRACE_MS, with the code "elsewhere":
    the child takes another piece here and gets this one from a peer. While some piece from
    the origin has not gone out at all, the grace is ZF_SPREAD_BACKLOG_GRACE_MS: a second copy
    would delay a first one, which the whole swarm waits for (on mixed links the slow children
    took a third of a seed's upload in second copies while 50 pieces had not left it). After
    the grace anyone may have it again (the first child may be slow, or gone). Pieces this node
    got from its own parents are served to anyone: relaying them to every child is exactly its
    job.

    A pure class (no bus, no clock of its own); storage keeps one and asks it before serving a
    read from the network. Memory: a bitmap and 12 bytes per piece, only for tasks with pieces
    from the origin, freed when the task goes. */
#ifndef ZF_SPREAD_H_INCLUDED
#define ZF_SPREAD_H_INCLUDED

#include "zf_prelude.h"

#define ZF_SPREAD_GRACE_MS         2000
#define ZF_SPREAD_BACKLOG_GRACE_MS 10000

typedef struct zf_spread_s zf_spread_t;

zf_spread_t *zf_spread_new (void);
void zf_spread_destroy (zf_spread_t **self_p);

//  The piece of a task of piece_count pieces came from the origin.
void zf_spread_from_origin (zf_spread_t *self, const char *task_id, uint64_t piece_count,
                            uint64_t piece);
//  May the piece go to `requester` (an identity of the asking node: its CURVE key) now? True
//  records it as sent there; false: it went elsewhere within the grace.
bool zf_spread_may_send (zf_spread_t *self, const char *task_id, uint64_t piece,
                         const char *requester, int64_t now_ms);
//  The task is gone (removed, evicted).
void zf_spread_forget (zf_spread_t *self, const char *task_id);

void zf_spread_test (bool verbose);

#endif
