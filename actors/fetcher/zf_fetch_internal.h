/*  zf_fetch_internal.h — a task's insides, shared by zf_fetch_task.c (pieces, storage,
    hashing), zf_fetch_source.c (HTTP transfers), zf_fetch_parents.c (pieces from parents) and
    zf_fetch_sched.c (the scheduler client). Not for other files. */
#ifndef ZF_FETCH_INTERNAL_H_INCLUDED
#define ZF_FETCH_INTERNAL_H_INCLUDED

#include "zf_fetch_task.h"
#include <openssl/evp.h>

typedef enum {
    PHASE_STAT,
    PHASE_PARENTS, //  storage.stat to each parent: who has what, and the task's layout
    PHASE_PROBE,
    PHASE_OPEN,
    PHASE_RUN,
    PHASE_COMPLETING,
    PHASE_COMPLETE,
    PHASE_FAILED,
} phase_t;

typedef enum {
    PIECE_MISSING,   //  to download (maybe after not_before_ms)
    PIECE_FETCHING,  //  a range transfer, or the stream, is filling its buffer
    PIECE_REQUESTED, //  piece.read sent to one parent (two in the end game); no buffer yet
    PIECE_WRITING,   //  piece.write sent, not yet acknowledged
    PIECE_STORED,    //  storage holds it (written now, or found at resume)
} piece_state_t;

typedef struct {
    piece_state_t state;
    zframe_t *frame; //  the piece's bytes while still needed (write, hash); sent as is
    uint8_t *buffer; //  zframe_data (frame), NULL without a frame
    size_t filled;
    uint32_t attempts;
    int64_t not_before_ms; //  retry backoff
    bool reading;          //  piece.read in flight to feed the whole-content hash
    //  Parents (PIECE_REQUESTED): the live requests for the piece, a primary and in the end
    //  game a duplicate; a reply counts only while its sequence number is still one of them.
    uint64_t seq, dup_seq;
    uint32_t parent_id, dup_parent_id;
    int64_t requested_ms;
    uint32_t parent_attempts; //  failed attempts at parents (busy answers not counted)
    bool use_origin;          //  no parent can give it: the origin's (range transfers)
    uint32_t from_parent_id;  //  the parent whose copy was written; 0: the origin
} piece_t;

typedef struct parent_set_s parent_set_t;

typedef struct transfer_s transfer_t;

struct zf_fetch_task_s {
    zf_fetch_env_t *env;
    char task_id[ZF_TASK_ID_SIZE + 1];
    char digest[ZF_DIGEST_TEXT_SIZE + 1]; //  "" when the content digest is unknown
    uint64_t generation;
    char *url, *tag, *application;
    struct curl_slist *headers; //  the client's, minus Range
    phase_t phase;
    bool stream_mode; //  the origin ignores Range: one transfer, pieces cut in order
    bool answer_pending;
    zf_bus_return_t answer;

    uint64_t content_length, piece_length, piece_count;
    uint64_t stored_length, stored_piece_length; //  from storage.stat, 0 when absent
    piece_t *pieces;
    //  Piece buffers storage gave back after writing them (zframe_t *, piece_length bytes, at
    //  most window): a new piece fills one of them instead of fresh memory, which would cost
    //  a page fault and a zeroed page every 4 KiB (big buffers come from mmap: zfly_main.c).
    zlist_t *spare_frames;
    uint64_t window_start; //  first piece not retired (stored and hashed)
    size_t window;         //  pieces held at most
    uint64_t finished_count;
    uint64_t bytes_from_source;
    uint64_t bytes_from_parents;
    parent_set_t *parents; //  NULL: the task was given no parents
    //  With a scheduler: it chooses parents and who goes to the origin. Until it says
    //  "source" (sched_source), pieces no parent holds wait for parents, unless none came
    //  for sched_fallback (sched_progress_ms: the last piece from a parent or new schedule).
    bool scheduled;
    bool sched_source;
    int64_t sched_progress_ms;

    EVP_MD_CTX *whole_hash; //  over the content in order, when digest is set
    uint64_t hashed_offset;

    transfer_t *transfers; //  running transfers, a list
    size_t range_transfers;
    uint32_t probe_attempts, stream_attempts;
    uint32_t reopens;         //  resumed after storage lost a stored piece (s_reopen)
    int64_t retry_at_ms;      //  probe or stream backoff
    uint64_t stream_furthest; //  bytes the best stream attempt reached
    bool in_curl_callback;    //  transfers must not be removed now
    int timer_id;             //  wakes the pump after a backoff, -1: none

    char error_code[32];
    char error_message[1024];
};

//  zf_fetch_task.c
void zf_fetch_task_fail (zf_fetch_task_t *self, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
void zf_fetch_task_pump (zf_fetch_task_t *self);
void zf_fetch_task_on_length (zf_fetch_task_t *self, uint64_t content_length, bool ranges);
//  The layout parents agreed on: same as on_length, with their piece length, no probe.
void zf_fetch_task_on_layout (zf_fetch_task_t *self, uint64_t content_length,
                              uint64_t piece_length);
//  The origin, the only way left: probe it (PHASE_PARENTS found no parent to use).
void zf_fetch_task_to_origin (zf_fetch_task_t *self);
bool zf_fetch_task_has_origin (zf_fetch_task_t *self);
//  A piece's buffer is full: write it, checked first against the parents' digest when they
//  know it (else storage computes the digest when a peer asks for the piece).
void zf_fetch_task_piece_done (zf_fetch_task_t *self, uint64_t piece);
//  The same for a piece whose SHA-256 the caller computed and checked already (or NULL).
void zf_fetch_task_piece_verified (zf_fetch_task_t *self, uint64_t piece, const uint8_t *digest);
void zf_fetch_task_hash_feed (zf_fetch_task_t *self, uint64_t offset, const uint8_t *data,
                              size_t size);
bool zf_fetch_task_piece_retry (zf_fetch_task_t *self, piece_t *piece, uint32_t *attempts,
                                const char *what, const char *reason, bool retryable);
uint64_t zf_fetch_piece_size (zf_fetch_task_t *self, uint64_t piece);
//  Gives a piece an empty buffer of its size / drops its buffer.
void zf_fetch_piece_hold (zf_fetch_task_t *self, uint64_t piece);
void zf_fetch_piece_release (piece_t *piece);
//  Pieces holding a buffer or awaiting their write: what the memory bound counts.
size_t zf_fetch_task_held (zf_fetch_task_t *self);

//  zf_fetch_parents.c: pieces from other nodes' storage actors
void zf_fetch_parents_new (zf_fetch_task_t *self, const zf_msg_task_fetch_t *request);
void zf_fetch_parents_destroy (zf_fetch_task_t *self);
//  After the local storage.stat: asks every parent what it has.
void zf_fetch_parents_start (zf_fetch_task_t *self);
//  Sends piece.read to parents with credit left, rarest pieces first, then end-game duplicates.
void zf_fetch_parents_pump (zf_fetch_task_t *self);
//  Stops timers and forgets requests (the task failed or completed).
void zf_fetch_parents_stop (zf_fetch_task_t *self);
//  The piece's SHA-256 as the parents have it, or NULL when unknown.
const uint8_t *zf_fetch_parents_digest (zf_fetch_task_t *self, uint64_t piece);
//  True once parents decide which pieces go to the origin (the layout is known with parents
//  in the set): the range pump then starts only pieces marked use_origin.
bool zf_fetch_parents_routing (zf_fetch_task_t *self);
//  True when pieces may still come from a parent (one is active).
bool zf_fetch_parents_active (zf_fetch_task_t *self);
//  Parents in use (not failed).
size_t zf_fetch_parents_count (zf_fetch_task_t *self);
//  An empty set for parents to come (the scheduler's), when the task has none yet.
void zf_fetch_parents_ensure (zf_fetch_task_t *self);
//  Takes every parent out of the task without blaming it (the task goes to the origin).
void zf_fetch_parents_retire_all (zf_fetch_task_t *self);
//  A parent's name ("storage@node") by its id, or NULL.
const char *zf_fetch_parents_name (zf_fetch_task_t *self, uint32_t id);
//  True while the scheduler should still be given time to find parents (see sched_fallback).
bool zf_fetch_parents_hold (zf_fetch_task_t *self, int64_t now);

//  zf_fetch_source.c
void zf_fetch_source_probe (zf_fetch_task_t *self);
void zf_fetch_source_range (zf_fetch_task_t *self, uint64_t piece);
void zf_fetch_source_stream (zf_fetch_task_t *self);
void zf_fetch_source_cancel_all (zf_fetch_task_t *self);
bool zf_fetch_source_streaming (zf_fetch_task_t *self);
//  Lets a stream paused for memory go on, now that a write was acknowledged.
void zf_fetch_source_resume_stream (zf_fetch_task_t *self);

#endif
