/*  zf_fetch_task_internal.h — one task as the parts of zf_fetch_task share it; nothing outside
    the task includes it.

    zf_fetch_task.h is one class in five files, cut by job:
      zf_fetch_task.c          the task's life and phases: made, started, storage.stat and
                               storage.open, the layout, the pump that drives RUN, the content
                               digest checked and storage.complete, failure
      zf_fetch_task_pieces.c   pieces in memory: their buffers, the requests to storage
                               (piece.write, piece.read back for the hash), the content hash in
                               order, the window retired
      zf_fetch_task_origin.c   the origin's share: probe, range transfers and the stream, their
                               bytes cut into pieces, retries and backoff (the origin's sink)
      zf_fetch_task_parents.c  the parents' share: the parent set, which pieces go to the origin
                               because no parent has them, the parents' pieces (their sink)
      zf_fetch_task_report.c   what the task tells others: task.status and the requester's
                               answer, its end (observer, task.ended), what the scheduler client
                               reads, fallbacks counted, piece.peek
    Where pieces come from is the sources' business (zf_fetch_origin.c, zf_fetch_parents.c):
    they report to their sink, and the task acts from its pump on the next turn of the loop,
    never inside a source's callback (zf_fetch_task_wake). The struct below is the one task all
    five work on; each group of fields says which part owns it (sets it and decides what it
    means); the others read. */
#ifndef ZF_FETCH_TASK_INTERNAL_H_INCLUDED
#define ZF_FETCH_TASK_INTERNAL_H_INCLUDED

#include "zf_fetch_origin.h"
#include "zf_fetch_parents.h"
#include "zf_fetch_peeks.h"
#include "zf_fetch_task.h"
#include "zf_piece_table.h"
#include <openssl/evp.h>

typedef enum {
    ZF_FETCH_TASK_PHASE_STAT,
    ZF_FETCH_TASK_PHASE_PARENTS,
    ZF_FETCH_TASK_PHASE_PROBE,
    ZF_FETCH_TASK_PHASE_OPEN,
    ZF_FETCH_TASK_PHASE_RUN,
    ZF_FETCH_TASK_PHASE_COMPLETING,
    ZF_FETCH_TASK_PHASE_COMPLETE,
    ZF_FETCH_TASK_PHASE_FAILED,
} zf_fetch_task_phase_t;

//  A piece's bytes while they are needed (filled by a source, written, hashed).
typedef struct {
    zframe_t *frame;
    size_t filled;
    uint32_t attempts; //  failed origin attempts
    bool reading;      //  piece.read in flight to feed the content hash
} zf_fetch_task_slot_t;

struct zf_fetch_task_s {
    //  zf_fetch_task.c: what the task is, its phase, its layout and its parts
    zf_fetch_env_t *env;
    char task_id[ZF_TASK_ID_SIZE + 1];
    char digest[ZF_DIGEST_TEXT_SIZE + 1]; //  "" when the content digest is unknown
    uint64_t generation;
    char *url, *tag, *application;
    struct curl_slist *headers; //  the client's, minus Range
    zf_fetch_task_phase_t phase;
    uint64_t content_length, piece_length, piece_count;
    uint64_t stored_length, stored_piece_length; //  from storage.stat, 0 when absent
    zf_piece_table_t *table;                     //  from the layout (fresh) or storage.open on
    zf_fetch_task_slot_t *slots;                 //  piece_count, with the table
    zf_fetch_origin_t *origin;                   //  NULL without a URL
    zf_fetch_parents_t *parents;                 //  NULL when neither given nor scheduled
    size_t window;                               //  pieces held for the origin at most
    size_t range_pieces;                         //  pieces per origin range request
    uint64_t finished_count;                     //  as storage counts them
    uint32_t reopens;
    bool opening; //  storage.open sent, not answered: a fresh task runs, but does not complete
    //  With a scheduler: it names the one origin fetcher (sched_source). Others take from
    //  the origin only what parents cannot give after sched_fallback without progress.
    bool scheduled;
    bool sched_source;
    const char *sched_lost; //  why the scheduler is gone (then parents as if given), or NULL
    int wake_timer;         //  the pump's next turn, -1: none
    int check_timer;        //  a backoff or deadline to look at again, -1: none
    char error_code[32];
    char error_message[1024];
    //  When the first bytes came, for the debug timeline (ms after the task was made): the
    //  steps before a cold task's first byte (docs/architecture.md, Proxy). Each is set
    //  where its step happens (first_byte_ms by the origin's part, first_written_ms by the
    //  pieces' part).
    int64_t born_ms, stat_ms, source_ms, layout_ms, open_ms, first_byte_ms, first_written_ms;

    //  zf_fetch_task_pieces.c: buffers, writes and the content hash (made by
    //  zf_fetch_task.c with the table and finished by it at the end)
    //  Piece buffers storage gave back after writing them (piece_length bytes): a new piece
    //  fills one of them instead of fresh memory, which would cost a page fault and a zeroed
    //  page every 4 KiB (big buffers come from mmap: zfly_main.c).
    zlist_t *spare_frames;
    uint64_t window_start;  //  first piece not retired (stored and hashed)
    size_t writes_pending;  //  piece.write sent, piece.written not yet back
    EVP_MD_CTX *whole_hash; //  over the content in order, when digest is set
    uint64_t hashed_offset;

    //  zf_fetch_task_origin.c
    bool stream_mode; //  the origin ignores Range: one transfer, pieces cut in order
    uint64_t bytes_from_source;
    uint32_t probe_attempts, stream_attempts;
    int64_t retry_at_ms; //  probe or stream backoff
    uint64_t stream_furthest;
    uint64_t length_hint; //  the origin's length from the access question, 0: probe
    const char *probe;    //  the timeline's probe=: "no", "yes" (one byte) or "first_range"

    //  zf_fetch_task_parents.c
    uint64_t bytes_from_parents;
    int64_t progress_ms; //  the last piece from a parent, or a new parent

    //  zf_fetch_task_report.c
    zf_fetch_proof_fn *proof_fn; //  the requester's access proof is awaited (NULL: not, or told)
    void *proof_arg;
    bool proof_asked; //  ZF_FETCH_PROOF_ASK said
    bool answer_pending;
    zf_bus_return_t answer;
    zf_fetch_peeks_t *peeks; //  piece.peek held, NULL until the first
    char fallback[64];       //  why the task took from the origin although scheduled, "" if not
};

//  Bytes one origin range request asks for: a run of whole pieces, one at least. Every
//  request waits for the origin's first byte (docker-registry with token auth on a quiet
//  loopback: 3.4-4.9 ms whatever the length, then 0.8 ms per MiB of body; busy, 3-25 ms), so
//  a 12 MiB layer of 1 MiB pieces fetched one piece a request waited 7 times in a row with
//  two in flight. In runs of 4 MiB a cold layer through a node took 59-60 ms instead of
//  95-108 ms (docs/benchmarks.md "Origin ranges of 4 MiB"). Large files have 4 MiB pieces and
//  so one piece a request, as before. Pieces of a run still complete, are written and can be
//  served one by one as their bytes arrive; a failed run loses only what it had not
//  delivered. A task awaiting its requester's access proof asks this much as its first range,
//  before it knows the length: at the default piece lengths (powers of two up to 4 MiB) the
//  answer ends on a piece boundary and becomes the task's first range transfer.
#define ZF_FETCH_TASK_RANGE_BYTES (4u << 20)

//  ---------------------------------------------------------------------------------------------
//  zf_fetch_task.c: phases

//  FAILED with code and a message, once: sources stopped, buffers freed, logged, counted, and
//  the end reported.
void zf_fetch_task_fail (zf_fetch_task_t *self, zf_task_error_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
//  The pump runs on the next turn of the loop.
void zf_fetch_task_wake (zf_fetch_task_t *self);
//  Looks at the task again at `when` (a backoff ending, a deadline).
void zf_fetch_task_check_at (zf_fetch_task_t *self, int64_t when);
//  The layout is known (from the origin or the parents): OPEN, and a fresh task RUN from the
//  pump's next turn without waiting for storage's answer. stale: what storage holds is not
//  this content and is removed first.
void zf_fetch_task_layout (zf_fetch_task_t *self, uint64_t content_length, uint64_t piece_length,
                           bool ranges, bool stale);

//  ---------------------------------------------------------------------------------------------
//  zf_fetch_task_pieces.c: pieces in memory, storage, the content hash

uint64_t zf_fetch_task_piece_size (zf_fetch_task_t *self, uint64_t piece);
//  The offset just past the piece.
uint64_t zf_fetch_task_piece_end (zf_fetch_task_t *self, uint64_t piece);
//  The content digest is known: the content is hashed in order and checked.
bool zf_fetch_task_hash_needed (zf_fetch_task_t *self);
//  The piece's buffer, made (or a spare one taken) when it has none; returns its bytes.
uint8_t *zf_fetch_task_hold (zf_fetch_task_t *self, uint64_t piece);
void zf_fetch_task_release (zf_fetch_task_slot_t *slot);
//  Every piece's buffer and the spare ones.
void zf_fetch_task_free_buffers (zf_fetch_task_t *self);

//  Sends a request to this node's storage; the reply comes back to callback, which finds its
//  task with zf_fetch_task_of_reply. False, the task failed, when it could not be sent.
bool zf_fetch_task_storage (zf_fetch_task_t *self, const zf_msg_desc_t *desc, const void *body,
                            zmsg_t **raw, zf_bus_reply_fn *callback, uint64_t piece);
//  The task a storage reply belongs to, if it is still running and waiting for it (piece: the
//  piece the request was for).
zf_fetch_task_t *zf_fetch_task_of_reply (void *arg, uint64_t *piece);
//  A failed reply's words.
const char *zf_fetch_task_reply_error (zf_status_t status, const zf_error_t *err);
//  Asks storage to remove what it holds of the task, whatever becomes of the task: nothing
//  wrong may stay in the cache.
void zf_fetch_task_remove_stored (zf_fetch_task_t *self);

//  Adds bytes at offset to the content hash (the part not hashed yet; no gap allowed).
void zf_fetch_task_hash_feed (zf_fetch_task_t *self, uint64_t offset, const uint8_t *data,
                              size_t size);
//  Feeds the content hash as far as the bytes at hand allow, reading stored pieces back.
void zf_fetch_task_feed_hash (zf_fetch_task_t *self);
//  A piece in its slot is checked (digest: its SHA-256, NULL when none was computed; from: the
//  parent, 0 for the origin): on to storage.
void zf_fetch_task_piece_verified (zf_fetch_task_t *self, uint64_t index, const uint8_t *digest,
                                   uint32_t from);
//  The piece's bytes stay in memory until storage wrote them, for readers' first peeks.
bool zf_fetch_task_kept_for_readers (zf_fetch_task_t *self, uint64_t piece);
//  Frees buffers no longer needed and moves the window past retired pieces.
void zf_fetch_task_retire (zf_fetch_task_t *self);

//  ---------------------------------------------------------------------------------------------
//  zf_fetch_task_origin.c: the origin's share

extern const zf_fetch_origin_sink_t zf_fetch_task_origin_sink;
//  PROBE: the length from the access question's answer, or a probe (after its backoff).
void zf_fetch_task_pump_probe (zf_fetch_task_t *self);
//  RUN: range transfers for the pieces the origin may take, or the stream.
void zf_fetch_task_pump_origin (zf_fetch_task_t *self, int64_t now);

//  ---------------------------------------------------------------------------------------------
//  zf_fetch_task_parents.c: the parents' share

extern const zf_fetch_parents_sink_t zf_fetch_task_parents_sink;
//  RUN: asks parents for pieces (unless too many writes wait) and routes to the origin what no
//  parent has.
void zf_fetch_task_pump_parents (zf_fetch_task_t *self, int64_t now);
//  A parent given with the request may have answered before storage did: its layout, if any.
void zf_fetch_task_take_parents_layout (zf_fetch_task_t *self);

//  ---------------------------------------------------------------------------------------------
//  zf_fetch_task_report.c: what the task tells others

//  task.status to the requester, once it waits for one.
void zf_fetch_task_answer (zf_fetch_task_t *self);
//  Whoever watches every task's end is told (the fetcher publishes task.ended).
void zf_fetch_task_told_ended (zf_fetch_task_t *self);
//  The task completed or failed: the observer, task.ended, the requester.
void zf_fetch_task_ended (zf_fetch_task_t *self);
//  A scheduled task takes from the origin itself: logged and counted, once per task.
void zf_fetch_task_count_fallback (zf_fetch_task_t *self, const char *why);
//  Tells the access proof awaited (zf_fetch_task_await_proof), if it is: ASK once; ALLOWED,
//  REFUSED or ENDED end the wait.
void zf_fetch_task_prove (zf_fetch_task_t *self, zf_fetch_proof_t proof, long status,
                          uint64_t content_length, const char *why);
//  The access proof is awaited from the origin's first answer (not yet ALLOWED or REFUSED).
bool zf_fetch_task_proof_awaited (zf_fetch_task_t *self);

#endif
