/*  zf_store.h — the cache directory: tasks on disk, no bus, no policy.

    Layout (DESIGN.md section 5):
        DIR/tasks/XX/TASK_ID/data   the content, sparse: ftruncate'd to content_length, pieces
                                    written in place with pwrite
        DIR/tasks/XX/TASK_ID/meta   a storage_meta record (schemas/storage_meta.schema)
        DIR/quarantine/TASK_ID.MS   task directories whose metadata could not be trusted
    XX is the first two hex characters of the task id, so no directory grows too large.

    Crash safety rests on two things. Metadata is replaced atomically (meta.tmp, rename), and
    a piece's bit reaches it only after the piece's bytes were written, so after kill -9 a task
    claims at most the pieces it really has. And every piece is verified again whenever it is
    read, so even a claim that a power cut made false is caught before anything is served
    (see zf_store_set_durable for the stricter, slower mode that fsyncs). Writes are grouped:
    zf_store_write_piece puts the bytes in place and marks the piece pending; zf_store_commit
    claims every pending piece of a task with one metadata write.

    Every piece served over the bus is read back and checked against the XXH3-64 checksum
    taken when it was written. A piece located for a reader on this host (zf_store_locate_piece,
    which then sends or copies the file itself) is checked the same way once, and then again
    only after the data file changed: its inode, size, mtime or ctime differ from when the
    check was made. As file times are coarse (a tick, or seconds on some filesystems), checks
    count only once the file's last change is more than two seconds older than the moment
    storage looked at it, unless that change was storage's own write: storage looks at the
    file just before and just after each write, and a piece it wrote is checked already (the
    checksum is of the very bytes written). Damage by any other write to the file is thus
    caught before the next serve, except, on kernels before 6.13, a write in the same clock
    tick just after one of storage's own (a few ms; since 6.13 ext4, XFS and btrfs give a
    change after a stat a newer time); damage that changes none of these (under the filesystem) is
    caught by the bus path, which checks every read, or by the check after a restart. (XXH3 is
    about 20 times faster than SHA-256, and ample against damage on disk; the
    SHA-256 digest is what other nodes verify, and the fallback for pieces without a
    checksum). A mismatch clears the piece's bit (persisted at once) so it is fetched again. Task
   ids are checked to be 64 lowercase hex characters before they become paths. */
#ifndef ZF_STORE_H_INCLUDED
#define ZF_STORE_H_INCLUDED

#include "zf_error.h"

#define ZF_STORE_ID_LEN           64
#define ZF_STORE_DIGEST_LEN       32                 //  SHA-256
#define ZF_STORE_CHECKSUM_LEN     8                  //  XXH3-64
#define ZF_STORE_PIECES_MAX       (1024 * 1024)      //  bounds of storage_meta.schema
#define ZF_STORE_PIECE_LENGTH_MAX (64 * 1024 * 1024) //  one piece rides in one frame

typedef struct zf_store_s zf_store_t;

typedef struct {
    char id[ZF_STORE_ID_LEN + 1];
    char *url, *digest, *tag, *application; //  never NULL
    uint64_t content_length;
    uint64_t piece_length;
    uint64_t piece_count;
    uint64_t finished_count; //  bits set in finished
    uint64_t finished_bytes; //  bytes of the finished pieces: the task's share of the cache
    uint8_t *finished;       //  durable, verified pieces: the persisted bitmap
    uint8_t *pending;        //  written and verified, not yet fdatasync'ed and claimed
    uint64_t pending_count;
    uint8_t *digests;   //  ZF_STORE_DIGEST_LEN per piece
    uint8_t *checksums; //  ZF_STORE_CHECKSUM_LEN per piece: XXH3-64 little-endian, 0 = unknown
    uint8_t *verified;  //  in memory only: pieces checked on disk since file_seen was taken
    struct {
        uint64_t ino, size;
        int64_t mtime_ns, ctime_ns;
        int64_t seen_ns; //  wall clock when storage looked
        bool by_store;   //  as storage's own last write left it
    } file_seen;         //  the data file when the verified bits were last reset
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

//  Creates the task's directory, sparse data file and metadata. The spec must pass
//  zf_store_id_valid and zf_store_check_geometry (asserted).
zf_status_t zf_store_create (zf_store_t *self, const zf_store_spec_t *spec, int64_t now_ms,
                             zf_store_task_t **task_p, zf_error_t *err);

//  Bytes of piece `piece` (the last one may be shorter).
uint64_t zf_store_piece_size (const zf_store_task_t *task, uint64_t piece);
bool zf_store_is_finished (const zf_store_task_t *task, uint64_t piece);

//  Writes already verified bytes of a piece in place and marks it pending. digest is their
//  SHA-256, or NULL to leave it unknown until a reader needs it (zf_store_piece_digest).
zf_status_t zf_store_write_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                  const uint8_t *data, size_t size, const uint8_t *digest,
                                  zf_error_t *err);

//  The piece's SHA-256 digest when a writer gave it or a reader computed it, else NULL.
const uint8_t *zf_store_known_digest (const zf_store_task_t *task, uint64_t piece);

//  The piece's SHA-256 digest, computed from data (its bytes, just read and checked against
//  the checksum) and kept when nobody knew it yet. Only nodes that serve a piece to others
//  need its digest, so a node nobody downloads from never hashes its pieces with SHA-256.
const uint8_t *zf_store_piece_digest (zf_store_task_t *task, uint64_t piece, const uint8_t *data,
                                      size_t size);

//  Durable (off by default): every commit fdatasyncs the data before the metadata claims it,
//  and metadata is fsync'ed with its directory, so claims survive a power cut. Without it a
//  claim survives kill -9 (the bytes are in the page cache), and after a power cut a claimed
//  piece whose bytes were lost fails its digest on the next read, is marked missing and is
//  fetched again: correct either way, because every piece is verified before it is served.
void zf_store_set_durable (zf_store_t *self, bool durable);

//  Claims the pending pieces of a task: (durable: fdatasync of the data, then) the metadata
//  that claims them. On failure the pieces stay unclaimed (the writer must try again).
zf_status_t zf_store_commit (zf_store_t *self, zf_store_task_t *task, zf_error_t *err);

//  Rewrites the metadata (after complete, or to persist accessed_ms).
zf_status_t zf_store_save (zf_store_t *self, zf_store_task_t *task, zf_error_t *err);

//  Reads a finished piece and checks its digest. On ZF_STORE_READ_OK *frame holds the bytes.
//  On ZF_STORE_READ_CORRUPT the bit is cleared and the metadata saved already.
zf_store_read_t zf_store_read_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                     zframe_t **frame, zf_error_t *err);

//  Checks a finished piece on disk as zf_store_read_piece does, without copying it out (the
//  file is mapped), for readers on this host that copy the bytes themselves. On
//  ZF_STORE_READ_OK *path_p is the data file's absolute path (the caller's to free); the
//  piece is [piece * piece_length, + zf_store_piece_size) of it. Outcomes as for reads.
zf_store_read_t zf_store_locate_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                       char **path_p, zf_error_t *err);

//  Deletes the task's files and forgets it; *task_p is NULLed.
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

#endif
