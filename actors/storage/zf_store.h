/*  zf_store.h — the cache directory: tasks on disk, no bus, no policy.

    Layout (DESIGN.md section 5):
        DIR/tasks/XX/TASK_ID/data     the content, sparse: ftruncate'd to content_length,
                                      pieces written in place with pwrite
        DIR/tasks/XX/TASK_ID/meta.0   the task's metadata, a storage_meta record
        DIR/tasks/XX/TASK_ID/meta.1   (schemas/storage_meta.schema) in one of two slots
                                      (zf_meta_slot.h), the newer valid one counts
        DIR/quarantine/TASK_ID.MS     task directories whose metadata could not be trusted
    XX is the first two hex characters of the task id, so no directory grows too large. A
    cache written before the slots has DIR/tasks/XX/TASK_ID/meta instead: it is read once
    and moved into a slot at start.

    Crash safety rests on two things. A piece's bit reaches the metadata only after the
    piece's bytes were written, and the metadata is never renamed, but rewritten in place in
    the slot that does not hold the newest record, with a sequence number and a checksum: a
    record that a crash cut short (a torn write) fails its checksum, and the loader takes
    the other slot, whose older record claims no more than it did. So after kill -9 a task
    claims at most the pieces it really has. And every piece is verified again whenever it
    is read, so even a claim that a power cut made false is caught before anything is served
    (see zf_store_set_durable for the stricter, slower mode that fdatasyncs). (A rename over
    the old metadata, as before the slots, made ext4 flush the new file first, and that
    flush waited behind the data file's writeback: 0.07-0.55 s per commit under load.)

    Pieces are written in two steps, so that the actor's loop never waits for the disk:
    zf_store_write_prepare (the actor) makes a job, zf_store_write_run (a worker thread:
    zf_io_worker.h) checks the SHA-256 when asked, writes the bytes in place and takes their
    XXH3 checksum, and zf_store_write_finish (the actor again) marks the piece finished: from
    then on it is served, and pending until a commit claims it. Commits take the same three
    steps: zf_store_commit_begin encodes the record of every finished piece, _run writes it
    into its slot (after an fdatasync of the data, when durable), _end settles which pieces
    it claimed. A task removed and created again under the same id while jobs are under way
    is a new generation: what the old one's jobs report is dropped (zf_store_write_task),
    their data writes find the new file of another length refused or land in ranges of
    pieces the new task has not written yet (writes run in order, and a piece's checksum
    covers what its own write put there), and their metadata goes to the old, unlinked slot
    file they opened.

    Every piece served over the bus is read back and checked against the XXH3-64 checksum
    taken when it was written. A piece located for a reader on this host (zf_store_locate_piece,
    which then sends or copies the file itself) is checked the same way once, and then again
    only after the data file changed: its inode, size, mtime or ctime differ from when the
    check was made. As file times are coarse (a tick, or seconds on some filesystems), checks
    count only once the file's last change is more than two seconds older than the moment
    storage looked at it, unless that change was storage's own write: the writer looks at
    the file just before and just after each write, and a piece it wrote is checked already
    (the checksum is of the very bytes written). Each write's "before" must be the last
    one's "after", or something else changed the file between them and no check counts any
    more. While a task's writes are under way its file's times change under storage's own
    hand, so a look then asks only that it be the same file of the same length (checking
    every piece located during a download cost the actor's loop 0.35 s of CPU per GiB).
    Damage by any other write to the file is thus caught before the next serve, except a
    write while one of storage's own is under way (during a download: found at the next
    write's "before" if it came between two writes), or, on kernels before 6.13, one in the
    same clock tick just after one of storage's own (since 6.13 ext4, XFS and btrfs give a
    change after a stat a newer time); damage that changes none of these (under the filesystem) is
    caught by the bus path, which checks every read, or by the check after a restart. (XXH3 is
    about 20 times faster than SHA-256, and ample against damage on disk; the
    SHA-256 digest is what other nodes verify, and the fallback for pieces without a
    checksum). A mismatch clears the piece's bit (persisted by the next commit) so it is
    fetched again. Task ids are checked to be 64 lowercase hex characters before they become
    paths. */
#ifndef ZF_STORE_H_INCLUDED
#define ZF_STORE_H_INCLUDED

#include "zf_error.h"
#include "storage/zf_io_worker.h"
#include <sys/stat.h>

#define ZF_STORE_ID_LEN           64
#define ZF_STORE_DIGEST_LEN       32                 //  SHA-256
#define ZF_STORE_CHECKSUM_LEN     8                  //  XXH3-64
#define ZF_STORE_PIECES_MAX       (1024 * 1024)      //  bounds of storage_meta.schema
#define ZF_STORE_PIECE_LENGTH_MAX (64 * 1024 * 1024) //  one piece rides in one frame

typedef struct zf_store_s zf_store_t;

typedef struct {
    char id[ZF_STORE_ID_LEN + 1];
    uint64_t generation; //  unique in this store: a task removed and created again differs
    char *url, *digest, *tag, *application; //  never NULL
    uint64_t content_length;
    uint64_t piece_length;
    uint64_t piece_count;
    uint64_t finished_count; //  bits set in finished
    uint64_t finished_bytes; //  bytes of the finished pieces: the task's share of the cache
    uint8_t *finished;       //  written and checked: served from now on
    uint8_t *pending;        //  finished, claimed by no record written or being written yet
    uint64_t pending_count;
    uint8_t *committing; //  finished, claimed by the record being written (zf_store_commit_*)
    uint8_t *digests;    //  ZF_STORE_DIGEST_LEN per piece
    uint8_t *checksums;  //  ZF_STORE_CHECKSUM_LEN per piece: XXH3-64 little-endian, 0 = unknown
    uint8_t *verified;   //  in memory only: pieces checked on disk since file_seen was taken
    struct {
        uint64_t ino, size;
        int64_t mtime_ns, ctime_ns;
        int64_t seen_ns;    //  wall clock when storage looked
        bool by_store;      //  as storage's own last write left it
    } file_seen;            //  the data file when the verified bits were last reset
    size_t writes_queued;   //  zf_store_write_prepare'd, not yet _finish'ed
    bool commit_running;    //  between zf_store_commit_begin and _end
    uint64_t meta_sequence; //  of the newest record written (or loaded)
    bool meta_dirty;        //  something besides pending pieces the next record must say
    bool data_unusable;     //  its data file is no longer storage's to write: drop the task
    bool complete;
    int64_t created_ms;  //  wall clock
    int64_t accessed_ms; //  wall clock of the last open, read or write: LRU order and TTL
    bool access_dirty;   //  accessed_ms changed since the metadata was written
} zf_store_task_t;

//  What a task is created with.
typedef struct {
    const char *id;
    const char *url, *digest, *tag, *application; //  may be NULL
    uint64_t content_length;
    uint64_t piece_length;
} zf_store_spec_t;

//  Outcome of reading a piece back.
typedef enum {
    ZF_STORE_READ_OK,
    ZF_STORE_READ_NOT_FINISHED,
    ZF_STORE_READ_CORRUPT, //  bytes on disk do not match the digest; the piece is now missing
    ZF_STORE_READ_IO,      //  the file could not be read
} zf_store_read_t;

//  Opens the cache at dir (created when absent) and loads every task found there; metadata
//  that does not decode or does not add up is logged under log_name and moved to quarantine.
zf_store_t *zf_store_new (const char *dir, const char *log_name, int64_t now_ms, zf_error_t *err);
void zf_store_destroy (zf_store_t **self_p);

//  True for exactly 64 lowercase hex characters: the only ids that may become paths.
bool zf_store_id_valid (const char *id);

//  ZF_OK when content_length and piece_length make a task within bounds; err says why not.
zf_status_t zf_store_check_geometry (uint64_t content_length, uint64_t piece_length,
                                     zf_error_t *err);

zf_store_task_t *zf_store_find (zf_store_t *self, const char *id);

//  Creates the task's directory, sparse data file and first metadata record. The spec must
//  pass zf_store_id_valid and zf_store_check_geometry (asserted).
zf_status_t zf_store_create (zf_store_t *self, const zf_store_spec_t *spec, int64_t now_ms,
                             zf_store_task_t **task_p, zf_error_t *err);

//  Bytes of piece `piece` (the last one may be shorter).
uint64_t zf_store_piece_size (const zf_store_task_t *task, uint64_t piece);
bool zf_store_is_finished (const zf_store_task_t *task, uint64_t piece);
//  Finished, and claimed by a record written in full: survives kill -9 (and, when durable,
//  a power cut).
bool zf_store_is_claimed (const zf_store_task_t *task, uint64_t piece);

// ---- writing a piece: prepare (actor), run (worker thread), finish (actor) -------------------

typedef struct {
    zf_io_job_t io; //  first: a job for zf_io_worker_submit
    //  set by zf_store_write_prepare
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t generation;
    uint64_t piece;
    char *path; //  the data file, opened by path when the job runs
    uint64_t offset;
    uint64_t file_length; //  the data file must be this long, or it is not this task's
    bool durable;
    bool check_digest; //  refuse the bytes unless their SHA-256 is digest
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    zframe_t *bytes; //  the piece; still here when the job is done
    //  set by zf_store_write_run
    zf_status_t status; //  ZF_E_INVALID (field "digest"): not written, the digest differs;
                        //  ZF_E_REFUSED: not written, the data file is not ours to write
    zf_error_t err;
    bool no_space; //  ZF_E_IO because the filesystem (or a disk quota) is full
    uint64_t checksum;
    struct stat before, after; //  the data file just before and just after the write
    bool before_known, after_known;
} zf_store_write_t;

//  Makes write a job that puts *bytes_p (taken and NULLed; its size must be the piece's) in
//  place. check_digest: the SHA-256 the bytes must have, or NULL when they are trusted.
void zf_store_write_prepare (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                             zframe_t **bytes_p, const uint8_t *check_digest,
                             zf_store_write_t *write);

//  The task a write was prepared for, or NULL when it was removed (or removed and created
//  again) meanwhile: then its outcome means nothing, and only zf_store_write_clear is left.
zf_store_task_t *zf_store_write_task (zf_store_t *self, const zf_store_write_t *write);

//  Applies a write's outcome to its task (from zf_store_write_task): on success the piece is
//  finished and pending, with the checksum of the bytes written and digest (their SHA-256,
//  or NULL to leave it unknown until a reader needs it: zf_store_piece_digest). Returns the
//  write's status; err says why it failed.
zf_status_t zf_store_write_finish (zf_store_t *self, zf_store_task_t *task, zf_store_write_t *write,
                                   const uint8_t *digest, zf_error_t *err);

//  Frees what prepare allocated, except bytes (the caller's to give back or destroy).
void zf_store_write_clear (zf_store_write_t *write);

//  Runs the write (zf_io_job_fn): touches no store or task, so it may run on any thread.
void zf_store_write_run (zf_io_job_t *job);

//  The piece's SHA-256 digest when a writer gave it or a reader computed it, else NULL.
const uint8_t *zf_store_known_digest (const zf_store_task_t *task, uint64_t piece);

//  The piece's SHA-256 digest, computed from frames (its bytes in order, just read and
//  checked against the checksum) and kept when nobody knew it yet. Only nodes that serve a
//  piece to others need its digest, so a node nobody downloads from never hashes its pieces
//  with SHA-256.
const uint8_t *zf_store_piece_digest (zf_store_task_t *task, uint64_t piece, zmsg_t *frames);

//  Durable (off by default): a commit fdatasyncs the data before its record claims it, and
//  fdatasyncs the record, so claims survive a power cut. Without it a claim survives kill -9
//  (the bytes are in the page cache), and after a power cut a claimed piece whose bytes were
//  lost fails its checksum on the next read, is marked missing and is fetched again: correct
//  either way, because every piece is verified before it is served.
void zf_store_set_durable (zf_store_t *self, bool durable);
bool zf_store_durable (zf_store_t *self);

// ---- commits: begin (actor), run (worker thread), end (actor) --------------------------------

typedef struct {
    char task_id[ZF_STORE_ID_LEN + 1];
    uint64_t generation;
    uint64_t sequence;
    int slot_fd;     //  the slot the record goes to, opened by begin
    int data_fd;     //  durable: the data file to fdatasync first; else -1
    char *slot_path; //  for messages
    uint8_t *record; //  the storage_meta payload
    size_t record_size;
    bool access_dirty, meta_dirty; //  what begin cleared, restored if the write fails
    zf_status_t status;            //  set by run
    zf_error_t err;
} zf_store_commit_t;

//  True when the task has pieces or news (meta_dirty) its record does not say yet and no
//  commit is running. A new access time alone waits for someone to set meta_dirty.
bool zf_store_needs_commit (const zf_store_task_t *task);

//  Starts a commit of the task: encodes its record (every finished piece) and opens the slot
//  it goes to; pending pieces become committing. On failure nothing changed (err says why).
zf_status_t zf_store_commit_begin (zf_store_t *self, zf_store_task_t *task,
                                   zf_store_commit_t *commit, zf_error_t *err);

//  Writes the record: (durable: fdatasync of the data,) the record in place in its slot
//  (durable: then fdatasync'ed). Touches no store or task, so it may run on any thread.
void zf_store_commit_run (zf_store_commit_t *commit);

//  Settles a commit run: its pieces are claimed, or pending again if it failed. task is the
//  task it began with, or NULL when that was removed meanwhile (zf_store_commit_task).
//  Frees what begin allocated. Returns the commit's status.
zf_status_t zf_store_commit_end (zf_store_t *self, zf_store_task_t *task,
                                 zf_store_commit_t *commit);
zf_store_task_t *zf_store_commit_task (zf_store_t *self, const zf_store_commit_t *commit);

//  The three steps at once, on this thread: at start, and at stop.
zf_status_t zf_store_save (zf_store_t *self, zf_store_task_t *task, zf_error_t *err);

//  Reads a finished piece and checks its digest. On ZF_STORE_READ_OK *frames holds the bytes,
//  in frames of at most frame_max bytes (0: one frame; at least ZF_STORE_FRAME_MIN), read
//  straight into them: a reader over CURVE takes a piece in parts (piece.read frame_max).
//  On ZF_STORE_READ_CORRUPT the bit is cleared (the next commit persists it); a data file cut
//  short is damage too. If the damaged file has another name (a hard link, as zfly-get makes
//  its output), task->data_unusable is set: storage never writes into a file that someone
//  else may have changed on purpose, the caller removes the task (the other name keeps its
//  bytes) and the next download makes a new data file.
zf_store_read_t zf_store_read_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                     uint64_t frame_max, zmsg_t **frames, zf_error_t *err);
#define ZF_STORE_FRAME_MIN (64u << 10) //  a reader's smaller frame_max counts as this

//  Checks a finished piece on disk as zf_store_read_piece does, without copying it out (the
//  file is mapped), for readers on this host that copy the bytes themselves. On
//  ZF_STORE_READ_OK *path_p is the data file's absolute path (the caller's to free); the
//  piece is [piece * piece_length, + zf_store_piece_size) of it. Outcomes as for reads.
zf_store_read_t zf_store_locate_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                       char **path_p, zf_error_t *err);

//  Deletes the task's files and forgets it; *task_p is NULLed. Jobs of the task still under
//  way are told apart by its generation (zf_store_write_task, zf_store_commit_task).
void zf_store_remove (zf_store_t *self, zf_store_task_t **task_p);

//  Every task, in no particular order; the array is the caller's, the tasks are not.
zf_store_task_t **zf_store_tasks (zf_store_t *self, size_t *count);
size_t zf_store_task_count (zf_store_t *self);
uint64_t zf_store_bytes (zf_store_t *self);
const char *zf_store_dir (zf_store_t *self);
//  Task directories moved to quarantine when the store was opened.
size_t zf_store_quarantined (zf_store_t *self);

//  SHA-256 of a buffer, for checking a piece before it is written.
void zf_store_sha256 (const uint8_t *data, size_t size, uint8_t digest[ZF_STORE_DIGEST_LEN]);

void zf_store_test (bool verbose);

#endif
