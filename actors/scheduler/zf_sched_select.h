/*  zf_sched_select.h — parent selection: filter the task's peers, score, keep the best.

    A candidate is refused when it is the child, on the child's host, (with params acyclic, not
    the default) one of the child's descendants: an edge to it would close a cycle,
    already a parent, blocked by the child (it failed it before), on a host marked bad, on a
    host with no free upload slot, or useless: it has no piece the child lacks, unless it is a
    seed that is fetching the task (seeds are handed out before they hold anything, so pieces
    stream down the tree while the seed downloads).

    Score = sum of weights times terms in [0,1]: finished fraction, free upload fraction of its
    host (by the rates peers report once the host showed what it can do, else by slots), host
    type (seed 1, normal 0), same IDC, location affinity (the share of
    '|'-separated location levels in common from the widest). On a large task the scan looks
    at a bounded sample from a random start (params.candidates eligible ones, at most 8 times
    that examined), so one decision costs the same with 10 or 10,000 peers. */
#ifndef ZF_SCHED_SELECT_H_INCLUDED
#define ZF_SCHED_SELECT_H_INCLUDED

#include "zf_sched_model.h"

//  Fills chosen with up to want candidates, best first; returns how many.
size_t zf_sched_select (zf_sched_t *sched, zf_sched_peer_t *child, int64_t now_ms,
                        zf_sched_peer_t **chosen, size_t want);

//  The candidate holds a piece the child lacks.
bool zf_sched_has_news (const zf_sched_peer_t *candidate, const zf_sched_peer_t *child);
//  The candidate's host may serve the child: another host, not bad, with a free upload slot,
//  not blocked by the child, and not already its parent. Selection and adoption both ask it.
bool zf_sched_may_serve (const zf_sched_peer_t *child, const zf_sched_peer_t *candidate,
                         int64_t now_ms);

//  The score of one candidate for a child (exposed for tests).
double zf_sched_score (zf_sched_t *sched, const zf_sched_peer_t *child,
                       const zf_sched_peer_t *candidate, int64_t now_ms);

//  Share of location levels in common, 0..1 ("eu|de|fra" and "eu|de|ber": 2/3).
double zf_sched_location_affinity (const char *a, const char *b);

#endif
