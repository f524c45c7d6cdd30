/*  zf_storage.h — the storage actor: the node's cache of tasks, served over the bus.

    Serves storage.open/stat/complete/remove, piece.write and piece.read
    (schemas/dataplane.schema) from the cache directory laid out by zf_store.h, and
    storage.measure (how full the cache is, sent to the manager with every join).

    - piece.write is checked (size; SHA-256 against the given digest, on the writer thread)
      before a byte is written. The bytes are written on the writer thread (zf_store_io.h),
      so this loop keeps answering while the kernel holds a write back. A written piece is
      finished and served at once (its checksum is of the bytes written), and claimed in the
      task's metadata by the next commit, which runs on a thread of its own as soon as the
      one before has ended. piece.written goes out once the bytes are written; with
      `fsync = true` only once a synced record claims them, so an acknowledged piece then
      survives a power cut. Either way, after kill -9 a task claims no piece that was not
      written (zf_store.h), and nothing is ever served unchecked.
    - piece.write from this process (the fetcher, over inproc://) carries the digest the
      fetcher computed from these bytes and is not hashed again; from anyone else the digest
      is checked. Either way the XXH3 checksum of the bytes written is recorded. The frame
      of an in-process write goes back with piece.written for the writer's next piece.
    - piece.read reads the piece back and checks its digest every time; a damaged piece is
      answered "corrupt", marked missing (the next record says so) and counted, so it is
      fetched again; a damaged data file with another name (a hard link) drops the task.
    - piece.locate answers where a finished piece is (data file, offset, size) for readers on
      this host that copy it themselves; the piece is checked in place (mapped, not copied)
      as for piece.read. Network origins get "forbidden".
    - Readers on other nodes (messages that came over tcp://, whatever their envelope says)
      share upload_rate (a token bucket; a read that must wait is answered later from a
      timer) and at most upload_concurrency reads waiting at once; beyond that the answer is
      "busy". Readers on this host (inproc://, ipc://) are never limited.
    - Only this host may change the cache (storage.open, piece.write, storage.complete,
      storage.remove); other nodes may stat and read. Anything else is answered "refused".
    - storage.complete checks every piece is there (with fsync, it answers once the record
      that says so is synced). The whole-content digest is the fetcher's to check, in order
      as pieces arrive, before it asks for completion.
    - GC every gc_interval and after writes: above high_watermark (of the filesystem, or of
      quota when set) it evicts least recently used tasks down to low_watermark; tasks idle
      longer than task_ttl expire. A task read or written within busy_grace, or with reads or
      writes in flight, is never evicted. Evictions are published as storage.evicted.

    Error codes: not_found, not_finished, corrupt, busy, refused, forbidden, invalid, io.
    Pipe commands besides $TERM, for tests: "ADVANCE" MS (moves the actor's wall clock
    forward) and "GC" (runs GC now); both answer "OK". Tests of a running daemon move the clock
    with storage.shift_clock (this host only). */
#ifndef ZF_STORAGE_H_INCLUDED
#define ZF_STORAGE_H_INCLUDED

#include "zf_actor.h"

typedef struct {
    char *dir;                  //  cache root
    char *bind;                 //  external request endpoint, "" for inproc only
    uint64_t upload_rate;       //  bytes per second to other nodes, 0 = unlimited
    int64_t upload_concurrency; //  reads from other nodes waiting or served at once
    double high_watermark;      //  percent of the filesystem (or of quota) that starts GC
    double low_watermark;       //  percent GC evicts down to
    uint64_t quota;             //  bytes; 0 = watermarks are of the filesystem
    int64_t task_ttl_ms;        //  idle time after which a task expires
    int64_t gc_interval_ms;     //  how often GC runs
    int64_t busy_grace_ms;      //  a task used this recently is never evicted
    int64_t commit_interval_ms; //  no longer used: commits follow each other off the loop
    bool fsync;                 //  sync data and metadata before acknowledging writes
} zf_storage_config_t;

extern const zf_config_section_t zf_storage_section;

void zf_storage_actor (zsock_t *pipe, void *args);

void zf_storage_test (bool verbose);

#endif
