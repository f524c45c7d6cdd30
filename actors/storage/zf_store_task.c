/*  zf_store_task.c — one task of the cache in memory (see zf_store_task.h). */
#include "storage/zf_store_task.h"
#include "zf_clock.h"
#include "zf_msgs.h"
#include <openssl/evp.h>
#include <xxhash.h>

#define STATE_RUNNING  "running"
#define STATE_COMPLETE "complete"

// ---- bits and counts ---------------------------------------------------------------------------

uint64_t zf_store_piece_count (uint64_t content_length, uint64_t piece_length)
{
    return content_length / piece_length + (content_length % piece_length ? 1 : 0);
}

size_t zf_store_bitmap_size (uint64_t piece_count)
{
    return (size_t) ((piece_count + 7) / 8);
}

bool zf_store_bit (const uint8_t *bitmap, uint64_t index)
{
    return (bitmap[index / 8] >> (index % 8)) & 1;
}

void zf_store_set_bit (uint8_t *bitmap, uint64_t index, bool value)
{
    if (value)
        bitmap[index / 8] |= (uint8_t) (1u << (index % 8));
    else
        bitmap[index / 8] &= (uint8_t) ~(1u << (index % 8));
}

uint64_t zf_store_piece_size (const zf_store_task_t *task, uint64_t piece)
{
    ZF_ASSERT (piece < task->piece_count);
    uint64_t offset = piece * task->piece_length;
    uint64_t left = task->content_length - offset;
    return left < task->piece_length ? left : task->piece_length;
}

bool zf_store_is_finished (const zf_store_task_t *task, uint64_t piece)
{
    return piece < task->piece_count && zf_store_bit (task->finished, piece);
}

bool zf_store_is_claimed (const zf_store_task_t *task, uint64_t piece)
{
    return zf_store_is_finished (task, piece) && !zf_store_bit (task->pending, piece)
           && !zf_store_bit (task->committing, piece);
}

static void s_recount (zf_store_task_t *task)
{
    task->finished_count = task->finished_bytes = task->pending_count = 0;
    for (uint64_t piece = 0; piece < task->piece_count; piece++) {
        if (zf_store_bit (task->finished, piece)) {
            task->finished_count++;
            task->finished_bytes += zf_store_piece_size (task, piece);
        }
        task->pending_count += zf_store_bit (task->pending, piece);
    }
}

// ---- life --------------------------------------------------------------------------------------

zf_store_task_t *zf_store_task_new (const char *id, uint64_t content_length, uint64_t piece_length)
{
    zf_store_task_t *task = zf_calloc (1, sizeof *task);
    zf_strlcpy (task->id, id, sizeof task->id);
    task->content_length = content_length;
    task->piece_length = piece_length;
    task->piece_count = zf_store_piece_count (content_length, piece_length);
    size_t bitmap_size = zf_store_bitmap_size (task->piece_count);
    //  calloc (0) may return NULL: keep every array a valid pointer for empty tasks.
    task->finished = zf_calloc (1, bitmap_size + 1);
    task->pending = zf_calloc (1, bitmap_size + 1);
    task->committing = zf_calloc (1, bitmap_size + 1);
    task->digests = zf_calloc (1, (size_t) task->piece_count * ZF_STORE_DIGEST_LEN + 1);
    task->checksums = zf_calloc (1, (size_t) task->piece_count * ZF_STORE_CHECKSUM_LEN + 1);
    task->verified = zf_calloc (1, bitmap_size + 1);
    return task;
}

void zf_store_task_destroy (zf_store_task_t **task_p)
{
    zf_store_task_t *task = *task_p;
    if (!task)
        return;
    zf_free (task->url);
    zf_free (task->digest);
    zf_free (task->tag);
    zf_free (task->application);
    zf_free (task->finished);
    zf_free (task->pending);
    zf_free (task->committing);
    zf_free (task->digests);
    zf_free (task->checksums);
    zf_free (task->verified);
    zf_free (task);
    *task_p = NULL;
}

// ---- checksums and digests ---------------------------------------------------------------------

uint64_t zf_store_checksum (const uint8_t *data, size_t size)
{
    uint64_t checksum = XXH3_64bits (data, size);
    return checksum ? checksum : 1;
}

//  A piece's bytes as they lie in memory: one buffer, or the frames of a piece read in parts.
typedef struct {
    const uint8_t *data; //  one buffer of size bytes, when frames is NULL
    size_t size;
    zmsg_t *frames;
} bytes_t;

static uint64_t s_bytes_checksum (const bytes_t *bytes)
{
    if (!bytes->frames)
        return zf_store_checksum (bytes->data, bytes->size);
    XXH3_state_t *state = XXH3_createState ();
    ZF_ASSERT (state && XXH3_64bits_reset (state) == XXH_OK);
    for (zframe_t *frame = zmsg_first (bytes->frames); frame; frame = zmsg_next (bytes->frames))
        ZF_ASSERT (XXH3_64bits_update (state, zframe_data (frame), zframe_size (frame)) == XXH_OK);
    uint64_t checksum = XXH3_64bits_digest (state);
    XXH3_freeState (state);
    return checksum ? checksum : 1;
}

static void s_bytes_sha256 (const bytes_t *bytes, uint8_t digest[ZF_STORE_DIGEST_LEN])
{
    if (!bytes->frames) {
        zf_store_sha256 (bytes->data, bytes->size, digest);
        return;
    }
    EVP_MD_CTX *hash = EVP_MD_CTX_new ();
    ZF_ASSERT (hash && EVP_DigestInit_ex (hash, EVP_sha256 (), NULL) == 1);
    for (zframe_t *frame = zmsg_first (bytes->frames); frame; frame = zmsg_next (bytes->frames))
        ZF_ASSERT (EVP_DigestUpdate (hash, zframe_data (frame), zframe_size (frame)) == 1);
    unsigned int length = 0;
    ZF_ASSERT (EVP_DigestFinal_ex (hash, digest, &length) == 1 && length == ZF_STORE_DIGEST_LEN);
    EVP_MD_CTX_free (hash);
}

static void s_checksum_put (zf_store_task_t *task, uint64_t piece, uint64_t checksum)
{
    uint8_t *slot = task->checksums + piece * ZF_STORE_CHECKSUM_LEN;
    for (size_t index = 0; index < ZF_STORE_CHECKSUM_LEN; index++)
        slot[index] = (uint8_t) (checksum >> (8 * index));
}

static uint64_t s_checksum_get (const zf_store_task_t *task, uint64_t piece)
{
    const uint8_t *slot = task->checksums + piece * ZF_STORE_CHECKSUM_LEN;
    uint64_t checksum = 0;
    for (size_t index = 0; index < ZF_STORE_CHECKSUM_LEN; index++)
        checksum |= (uint64_t) slot[index] << (8 * index);
    return checksum;
}

void zf_store_sha256 (const uint8_t *data, size_t size, uint8_t digest[ZF_STORE_DIGEST_LEN])
{
    unsigned int length = 0;
    ZF_ASSERT (EVP_Digest (data, size, digest, &length, EVP_sha256 (), NULL) == 1);
    ZF_ASSERT (length == ZF_STORE_DIGEST_LEN);
}

const uint8_t *zf_store_known_digest (const zf_store_task_t *task, uint64_t piece)
{
    static const uint8_t unknown[ZF_STORE_DIGEST_LEN];
    const uint8_t *digest = task->digests + piece * ZF_STORE_DIGEST_LEN;
    return memcmp (digest, unknown, ZF_STORE_DIGEST_LEN) == 0 ? NULL : digest;
}

const uint8_t *zf_store_piece_digest (zf_store_task_t *task, uint64_t piece, zmsg_t *frames)
{
    uint8_t *digest = task->digests + piece * ZF_STORE_DIGEST_LEN;
    if (!zf_store_known_digest (task, piece)) //  saved with the task's next record
        s_bytes_sha256 (&(bytes_t){.frames = frames}, digest);
    return digest;
}

static bool s_intact (const zf_store_task_t *task, uint64_t piece, const bytes_t *bytes)
{
    uint64_t checksum = s_checksum_get (task, piece);
    if (checksum)
        return s_bytes_checksum (bytes) == checksum;
    const uint8_t *known = zf_store_known_digest (task, piece);
    if (!known)
        return false;
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    s_bytes_sha256 (bytes, digest);
    return memcmp (digest, known, ZF_STORE_DIGEST_LEN) == 0;
}

bool zf_store_task_intact (const zf_store_task_t *task, uint64_t piece, const uint8_t *data,
                           size_t size)
{
    return s_intact (task, piece, &(bytes_t){.data = data, .size = size});
}

bool zf_store_task_intact_frames (const zf_store_task_t *task, uint64_t piece, zmsg_t *frames)
{
    return s_intact (task, piece, &(bytes_t){.frames = frames});
}

// ---- the data file as storage last left it (zf_store.h: located pieces) ------------------------

static int64_t s_ns (struct timespec time)
{
    return (int64_t) time.tv_sec * 1000000000 + time.tv_nsec;
}

#define FILE_TIME_GRAIN_NS (2 * 1000000000ll) //  coarsest file time granularity trusted

//  Unchanged since the verified bits were reset, and that moment was late enough after the
//  file's last change that a later write would have shown in its times, or that change was
//  storage's own write.
static bool s_file_unchanged (const zf_store_task_t *task, const struct stat *info)
{
    return task->file_seen.ino == (uint64_t) info->st_ino
           && task->file_seen.size == (uint64_t) info->st_size
           && task->file_seen.mtime_ns == s_ns (info->st_mtim)
           && task->file_seen.ctime_ns == s_ns (info->st_ctim)
           && (task->file_seen.by_store
               || task->file_seen.seen_ns - task->file_seen.ctime_ns > FILE_TIME_GRAIN_NS);
}

static void s_file_record (zf_store_task_t *task, const struct stat *info, bool by_store)
{
    task->file_seen.ino = (uint64_t) info->st_ino;
    task->file_seen.size = (uint64_t) info->st_size;
    task->file_seen.mtime_ns = s_ns (info->st_mtim);
    task->file_seen.ctime_ns = s_ns (info->st_ctim);
    task->file_seen.seen_ns = zf_clock_wall_ms () * 1000000;
    task->file_seen.by_store = by_store;
}

static void s_unverify_all (zf_store_task_t *task)
{
    memset (task->verified, 0, zf_store_bitmap_size (task->piece_count));
}

bool zf_store_task_observe (zf_store_task_t *task, const struct stat *info)
{
    if (info && s_file_unchanged (task, info))
        return true;
    //  While storage's own writes are under way the file's times change under its own hand:
    //  the checks count as long as it is the same file, of the same length, as the last
    //  finished write left it. A change by anyone else shows in the next write's "before"
    //  (s_file_written), which resets them all.
    if (task->writes_queued > 0)
        return info && task->file_seen.by_store && task->file_seen.ino == (uint64_t) info->st_ino
               && task->file_seen.size == (uint64_t) info->st_size;
    s_unverify_all (task);
    if (info)
        s_file_record (task, info, false);
    else
        memset (&task->file_seen, 0, sizeof task->file_seen);
    return false;
}

//  After storage wrote a piece (its checksum taken from the bytes written): the piece counts
//  as checked, and the file as storage left it. If the file had changed before the write
//  (before: its state then, NULL if unknown), no earlier check counts. Writes run one after
//  another on one thread, so each one's "before" is the last one's "after" unless something
//  else wrote between them.
static void s_file_written (zf_store_task_t *task, const struct stat *before,
                            const struct stat *after, uint64_t piece)
{
    if (!before || !s_file_unchanged (task, before))
        s_unverify_all (task);
    if (!after) {
        s_unverify_all (task);
        memset (&task->file_seen, 0, sizeof task->file_seen);
        return;
    }
    s_file_record (task, after, true);
    zf_store_set_bit (task->verified, piece, true);
}

// ---- piece states ------------------------------------------------------------------------------

void zf_store_task_written (zf_store_task_t *task, uint64_t piece, uint64_t checksum,
                            const uint8_t *digest, const struct stat *before,
                            const struct stat *after)
{
    ZF_ASSERT (piece < task->piece_count);
    s_file_written (task, before, after, piece);
    uint8_t *slot = task->digests + piece * ZF_STORE_DIGEST_LEN;
    if (digest)
        memcpy (slot, digest, ZF_STORE_DIGEST_LEN);
    else
        memset (slot, 0, ZF_STORE_DIGEST_LEN);
    s_checksum_put (task, piece, checksum);
    if (!zf_store_bit (task->finished, piece)) {
        zf_store_set_bit (task->finished, piece, true);
        task->finished_count++;
        task->finished_bytes += zf_store_piece_size (task, piece);
    }
    if (!zf_store_bit (task->pending, piece)) {
        zf_store_set_bit (task->pending, piece, true);
        task->pending_count++;
    }
}

void zf_store_task_damaged (zf_store_task_t *task, uint64_t piece)
{
    zf_store_set_bit (task->finished, piece, false);
    zf_store_set_bit (task->pending, piece, false);
    zf_store_set_bit (task->verified, piece, false);
    task->complete = false;
    task->meta_dirty = true;
    s_recount (task);
}

bool zf_store_needs_commit (const zf_store_task_t *task)
{
    return !task->commit_running && (task->pending_count > 0 || task->meta_dirty);
}

void zf_store_task_commit_begin (zf_store_task_t *task)
{
    ZF_ASSERT (!task->commit_running);
    size_t bitmap_size = zf_store_bitmap_size (task->piece_count);
    memcpy (task->committing, task->pending, bitmap_size);
    memset (task->pending, 0, bitmap_size);
    task->pending_count = 0;
    task->commit_running = true;
}

void zf_store_task_commit_end (zf_store_task_t *task, bool written)
{
    ZF_ASSERT (task->commit_running);
    size_t bitmap_size = zf_store_bitmap_size (task->piece_count);
    if (!written) //  not claimed: pending again, unless found damaged meanwhile
        for (size_t index = 0; index < bitmap_size; index++)
            task->pending[index] |= task->committing[index] & task->finished[index];
    memset (task->committing, 0, bitmap_size);
    task->commit_running = false;
    s_recount (task);
}

// ---- the metadata record -----------------------------------------------------------------------

uint8_t *zf_store_task_encode (const zf_store_task_t *task, size_t *size)
{
    zf_rec_storage_meta_t meta = {
        .task_id = (char *) task->id,
        .url = task->url,
        .digest = task->digest,
        .tag = task->tag,
        .application = task->application,
        .content_length = task->content_length,
        .piece_length = task->piece_length,
        .piece_count = task->piece_count,
        .state = task->complete ? STATE_COMPLETE : STATE_RUNNING,
        .created_ms = (uint64_t) task->created_ms,
        .accessed_ms = (uint64_t) task->accessed_ms,
        .finished = {task->finished, zf_store_bitmap_size (task->piece_count)},
        .piece_digests = {task->digests, (size_t) task->piece_count * ZF_STORE_DIGEST_LEN},
        .piece_checksums = {task->checksums, (size_t) task->piece_count * ZF_STORE_CHECKSUM_LEN},
    };
    return zf_schema_encode_alloc (&zf_rec_storage_meta, &meta, size); //  bounded by construction
}

static char *s_take_string (char **field)
{
    char *value = *field;
    *field = NULL;
    return value ? value : zf_strdup ("");
}

//  Metadata is outside input: it is decoded with the schema checks and then checked to add
//  up before it is trusted.
static zf_status_t s_check (const zf_rec_storage_meta_t *meta, const char *id, uint64_t data_size,
                            zf_error_t *err)
{
    if (!streq (meta->task_id, id))
        return zf_error_set (err, ZF_E_INVALID, "task_id", "metadata names task %.64s",
                             meta->task_id);
    zf_status_t status = zf_store_check_geometry (meta->content_length, meta->piece_length, err);
    if (status != ZF_OK)
        return status;
    if (meta->piece_count != zf_store_piece_count (meta->content_length, meta->piece_length)
        || meta->finished.size != zf_store_bitmap_size (meta->piece_count)
        || meta->piece_digests.size != meta->piece_count * ZF_STORE_DIGEST_LEN
        || (meta->piece_checksums.size != 0
            && meta->piece_checksums.size != meta->piece_count * ZF_STORE_CHECKSUM_LEN))
        return zf_error_set (err, ZF_E_INVALID, "piece_count",
                             "piece count, bitmap and digest sizes do not add up");
    if (!streq (meta->state, STATE_RUNNING) && !streq (meta->state, STATE_COMPLETE))
        return zf_error_set (err, ZF_E_INVALID, "state", "unknown state '%.16s'", meta->state);
    if (data_size != meta->content_length)
        return zf_error_set (err, ZF_E_INVALID, "data",
                             "data file missing or not %" PRIu64 " bytes", meta->content_length);
    return ZF_OK;
}

zf_store_task_t *zf_store_task_decode (const char *id, const uint8_t *payload, size_t size,
                                       uint64_t data_size, zf_error_t *err)
{
    zf_rec_storage_meta_t meta;
    memset (&meta, 0, sizeof meta);
    if (zf_schema_decode_buffer (&zf_rec_storage_meta, payload, size, &meta, err) != ZF_OK)
        return NULL;
    zf_store_task_t *task = NULL;
    if (s_check (&meta, id, data_size, err) == ZF_OK) {
        task = zf_store_task_new (id, meta.content_length, meta.piece_length);
        memcpy (task->finished, meta.finished.data, meta.finished.size);
        memcpy (task->digests, meta.piece_digests.data, meta.piece_digests.size);
        if (meta.piece_checksums.size) //  else unknown: reads fall back to SHA-256
            memcpy (task->checksums, meta.piece_checksums.data, meta.piece_checksums.size);
        task->url = s_take_string (&meta.url);
        task->digest = s_take_string (&meta.digest);
        task->tag = s_take_string (&meta.tag);
        task->application = s_take_string (&meta.application);
        task->created_ms = (int64_t) meta.created_ms;
        task->accessed_ms = (int64_t) meta.accessed_ms;
        task->complete = streq (meta.state, STATE_COMPLETE);
        s_recount (task);
        if (task->complete && task->finished_count != task->piece_count) {
            zf_error_set (err, ZF_E_INVALID, "state", "complete but pieces are missing");
            zf_store_task_destroy (&task);
        }
    }
    zf_schema_clear (&zf_rec_storage_meta, &meta);
    return task;
}
