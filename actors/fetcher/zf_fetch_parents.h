/*  zf_fetch_parents.h — a task's parents: other nodes' storage actors, over the bus.

    Each parent is asked storage.stat: the first valid answer fixes the layout (content and
    piece length) and the piece digests; every later parent must agree (one that does not is
    dropped as failed). Once the task has its piece table, each active parent holds requests:
    up to parent_concurrency piece.read at once, each for the rarest piece it holds that the
    task still wants. A parent still downloading is asked storage.stat with wait_ms: it
    answers when it has more pieces (a long poll), and is asked again at once, so a piece
    moves through the swarm without a poll interval per hop.

    Slow is not failed. Requests wait as long as the parent stays connected (bus "patient"
    requests; ZMTP heartbeats tell a busy parent from a gone one). A request that takes much
    longer than this parent's pieces usually take is asked of another parent too (the first
    good answer wins); a parent that delivers nothing for parent_timeout while asked is
    dropped as slow (the scheduler never counts that against it). A parent is failed only for
    what it did: unreachable (no connection for PARENT_GONE_MS), an error answer, wrong bytes,
    a different layout.

    Every piece is checked (size, SHA-256 against the digest list, or the parent's own digest
    when nobody knew it) before the task sees it. */
#ifndef ZF_FETCH_PARENTS_H_INCLUDED
#define ZF_FETCH_PARENTS_H_INCLUDED

#include "zf_fetch_env.h"
#include "zf_piece_table.h"

typedef struct zf_fetch_parents_s zf_fetch_parents_t;

typedef struct {
    //  The first parent's layout: the task opens storage with it, then attaches its table.
    void (*on_layout) (void *arg, uint64_t content_length, uint64_t piece_length);
    //  A piece's checked bytes from parent `parent_id`; *frame is the callee's.
    void (*on_piece) (void *arg, uint64_t piece, zframe_t **frame, const uint8_t *digest,
                      uint32_t parent_id);
    //  A parent was dropped (failed: its fault; else slow) with the reason.
    void (*on_dropped) (void *arg, const char *parent, bool failed, const char *reason);
    //  Something changed that may let the task move on (a bitmap grew, requests ended, a
    //  parent left): the task should pump soon.
    void (*wake) (void *arg);
    //  A frame of size bytes to join a piece that came in several frames into (the caller's;
    //  its bytes are overwritten): one storage gave back after a write, so no fresh memory.
    zframe_t *(*buffer) (void *arg, size_t size);
    //  The piece a reader on this host waits for (a held piece.peek), or -1: asked of the
    //  first parent that holds it before any rarest-first pick, so that a client streaming
    //  the task gets its next bytes as soon as one parent can send them.
    int64_t (*awaited) (void *arg);
} zf_fetch_parents_sink_t;

//  scheduled: parents come from a scheduler (a parent may answer "not_found" at first, and
//  rarest-first ties are broken at random so children hold different pieces).
zf_fetch_parents_t *zf_fetch_parents_new (zf_fetch_env_t *env, const char *task_id,
                                          const char *digest, bool scheduled,
                                          const zf_fetch_parents_sink_t *sink, void *arg);
void zf_fetch_parents_destroy (zf_fetch_parents_t **self_p);

//  Adds a parent ("storage@node") and asks it what it has. Returns false when it is already
//  in use (a parent dropped earlier starts afresh).
bool zf_fetch_parents_add (zf_fetch_parents_t *self, const char *name);
//  Takes a parent out without blaming it: its requests are forgotten, its pieces go back to
//  the table as missing. Returns false when it was not in use.
bool zf_fetch_parents_remove (zf_fetch_parents_t *self, const char *name);
//  Every parent out (the task goes to the origin alone, or ends).
void zf_fetch_parents_remove_all (zf_fetch_parents_t *self);

//  The task's layout and piece table (borrowed until destroy): parents may be asked for
//  pieces from now on. A layout fixed by the origin is checked against the parents' too.
void zf_fetch_parents_attach (zf_fetch_parents_t *self, zf_piece_table_t *table,
                              uint64_t content_length, uint64_t piece_length);
//  Forgets the table (the task reopens storage, or ends): pieces are asked no more.
void zf_fetch_parents_detach (zf_fetch_parents_t *self);

//  Sends piece.read to parents with room, for pieces from `from` on. Call after anything
//  changed (the sink's wake).
void zf_fetch_parents_pump (zf_fetch_parents_t *self, uint64_t from);

//  The layout the first parent answered with; false while none has.
bool zf_fetch_parents_layout (zf_fetch_parents_t *self, uint64_t *content_length,
                              uint64_t *piece_length);
//  The piece's SHA-256 as the parents have it, or NULL when unknown.
const uint8_t *zf_fetch_parents_digest (zf_fetch_parents_t *self, uint64_t piece);
//  A parent's name by id, NULL when unknown.
const char *zf_fetch_parents_name (zf_fetch_parents_t *self, uint32_t id);
//  Parents in use (asked, or active).
size_t zf_fetch_parents_count (zf_fetch_parents_t *self);
//  True while a parent might still get pieces nobody holds now: one is being asked, or one
//  still downloading grew within parent_timeout.
bool zf_fetch_parents_may_grow (zf_fetch_parents_t *self, int64_t now);
//  True when no parent is left that could answer (all dropped, or none given).
bool zf_fetch_parents_exhausted (zf_fetch_parents_t *self);

#endif
