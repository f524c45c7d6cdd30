/*  zf_sched_select.c — filter, score and pick parents for one child. */
#include "zf_sched_select.h"
#include <math.h>

#define EXAMINE_FACTOR 8 //  peers examined per eligible candidate wanted, at most

double zf_sched_location_affinity (const char *a, const char *b)
{
    if (!a || !b || !*a || !*b)
        return 0;
    size_t levels_a = 1, levels_b = 1, common = 0;
    for (const char *cursor = a; *cursor; cursor++)
        levels_a += *cursor == '|';
    for (const char *cursor = b; *cursor; cursor++)
        levels_b += *cursor == '|';
    //  Walk both level by level while they agree.
    while (*a && *b) {
        size_t length_a = strcspn (a, "|"), length_b = strcspn (b, "|");
        if (length_a != length_b || memcmp (a, b, length_a) != 0)
            break;
        common++;
        a += length_a + (a[length_a] == '|');
        b += length_b + (b[length_b] == '|');
    }
    return (double) common / (double) (levels_a > levels_b ? levels_a : levels_b);
}

//  0..1: the share of the host's upload that is free, by measured rates once its capacity is
//  known (zf_sched_host_upload_capacity), else by upload slots.
static double s_free_upload (const zf_sched_host_t *host, int64_t now_ms)
{
    double capacity = zf_sched_host_upload_capacity (host);
    if (capacity > 0)
        return fmax (0.0, 1.0 - zf_sched_host_upload_rate (host, now_ms) / capacity);
    if (host->upload_slots <= host->load)
        return 0;
    return (double) (host->upload_slots - host->load) / host->upload_slots;
}

double zf_sched_score (zf_sched_t *sched, const zf_sched_peer_t *child,
                       const zf_sched_peer_t *candidate, int64_t now_ms)
{
    const double *weights = zf_sched_params (sched)->weights;
    const zf_sched_host_t *host = candidate->host;
    uint32_t piece_count = candidate->task->piece_count;
    double finished = candidate->state == ZF_PEER_FINISHED ? 1
                      : piece_count > 0 ? (double) candidate->finished_count / piece_count
                                        : 0;
    double free_upload = s_free_upload (host, now_ms);
    bool same_idc = *host->idc && streq (host->idc, child->host->idc);
    return weights[ZF_SCHED_WEIGHT_FINISHED] * finished
           + weights[ZF_SCHED_WEIGHT_FREE_UPLOAD] * free_upload
           + weights[ZF_SCHED_WEIGHT_HOST_TYPE] * (host->seed ? 1 : 0)
           + weights[ZF_SCHED_WEIGHT_IDC] * (same_idc ? 1 : 0)
           + weights[ZF_SCHED_WEIGHT_LOCATION]
                 * zf_sched_location_affinity (host->location, child->host->location);
}

//  Marks the child and everything below it with epoch: those can never be its parents.
static void s_mark_descendants (zf_sched_t *sched, zf_sched_peer_t *child, uint32_t epoch)
{
    size_t depth = 0, cap = 64;
    zf_sched_peer_t **stack = zf_sched_stack (sched, cap);
    child->mark = epoch;
    stack[depth++] = child;
    while (depth > 0) {
        zf_sched_peer_t *peer = stack[--depth];
        if (depth + peer->child_count > cap) {
            cap = depth + peer->child_count;
            stack = zf_sched_stack (sched, cap);
        }
        for (uint16_t index = 0; index < peer->child_count; index++) {
            zf_sched_peer_t *below = peer->children[index];
            if (below->mark != epoch) {
                below->mark = epoch;
                stack[depth++] = below;
            }
        }
    }
}

//  Has a piece the child lacks. Word by word over the shorter bitmap, then any rest.
bool zf_sched_has_news (const zf_sched_peer_t *candidate, const zf_sched_peer_t *child)
{
    if (candidate->finished_count == 0)
        return false;
    if (child->finished_count == 0 || candidate->state == ZF_PEER_FINISHED)
        return candidate->finished_count > 0 && child->state != ZF_PEER_FINISHED;
    uint32_t words = candidate->bitmap_bits / 64, child_words = child->bitmap_bits / 64;
    for (uint32_t word = 0; word < words; word++) {
        uint64_t lacks = word < child_words ? ~child->bitmap[word] : ~0ull;
        if (candidate->bitmap[word] & lacks)
            return true;
    }
    return false;
}

bool zf_sched_may_serve (const zf_sched_peer_t *child, const zf_sched_peer_t *candidate,
                         int64_t now_ms)
{
    const zf_sched_host_t *host = candidate->host;
    return host != child->host && !zf_sched_host_is_bad (host, now_ms)
           && host->load < host->upload_slots && !zf_sched_peer_blocks (child, host)
           && !zf_sched_peer_has_parent (child, candidate);
}

static bool s_eligible (const zf_sched_peer_t *child, const zf_sched_peer_t *candidate,
                        uint32_t epoch, int64_t now_ms)
{
    if (candidate->mark == epoch || !zf_sched_may_serve (child, candidate, now_ms))
        return false; //  the child itself or a descendant, or a host that may not serve it
    const zf_sched_host_t *host = candidate->host;
    bool seed_feeding =
        host->seed && (candidate->state == ZF_PEER_SOURCE || candidate->state == ZF_PEER_RUNNING);
    return seed_feeding || zf_sched_has_news (candidate, child);
}

//  Inserts into the best-first list of at most want entries.
static size_t s_keep_best (zf_sched_peer_t **chosen, double *scores, size_t count, size_t want,
                           zf_sched_peer_t *candidate, double score)
{
    if (count == want && score <= scores[count - 1])
        return count;
    size_t at = count < want ? count : want - 1;
    while (at > 0 && scores[at - 1] < score) {
        chosen[at] = chosen[at - 1];
        scores[at] = scores[at - 1];
        at--;
    }
    chosen[at] = candidate;
    scores[at] = score;
    return count < want ? count + 1 : count;
}

size_t zf_sched_select (zf_sched_t *sched, zf_sched_peer_t *child, int64_t now_ms,
                        zf_sched_peer_t **chosen, size_t want)
{
    zf_sched_task_t *task = child->task;
    if (want == 0 || task->peer_count < 2)
        return 0;
    if (want > ZF_SCHED_PARENTS_MAX)
        want = ZF_SCHED_PARENTS_MAX;
    uint32_t epoch = zf_sched_next_epoch (sched);
    if (zf_sched_params (sched)->acyclic)
        s_mark_descendants (sched, child, epoch);
    else
        child->mark = epoch; //  a mesh: only the child itself is no candidate
    double scores[ZF_SCHED_PARENTS_MAX];
    size_t count = 0, eligible = 0, examined = 0;
    size_t enough = zf_sched_params (sched)->candidates;
    size_t examine_max = enough * EXAMINE_FACTOR;
    //  The origin fetcher first: on a big task a sample could miss the one peer feeding it.
    zf_sched_peer_t *source = task->source;
    if (source && s_eligible (child, source, epoch, now_ms)) {
        count = s_keep_best (chosen, scores, count, want, source,
                             zf_sched_score (sched, child, source, now_ms));
        eligible++;
    }
    uint32_t start = (uint32_t) (zf_sched_random (sched) % task->peer_count);
    for (uint32_t step = 0; step < task->peer_count; step++) {
        if (eligible >= enough || examined >= examine_max)
            break;
        zf_sched_peer_t *candidate = task->peers[(start + step) % task->peer_count];
        examined++;
        if (candidate == source || !s_eligible (child, candidate, epoch, now_ms))
            continue;
        eligible++;
        count = s_keep_best (chosen, scores, count, want, candidate,
                             zf_sched_score (sched, child, candidate, now_ms));
    }
    return count;
}
