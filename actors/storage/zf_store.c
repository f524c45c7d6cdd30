/*  zf_store.c — the cache directory: tasks on disk (see zf_store.h for the layout). */
#include "zf_store.h"
#include "zf_clock.h"
#include "zf_log.h"
#include "zf_msgs.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define STATE_RUNNING  "running"
#define STATE_COMPLETE "complete"

struct zf_store_s {
    char *dir;
    char *log_name;
    zhashx_t *tasks; //  id -> zf_store_task_t *, owned
    size_t quarantined;
    bool durable; //  fdatasync/fsync before claiming (survives power loss, not only kill -9)
};

// ---- small helpers -----------------------------------------------------------------------------

bool zf_store_id_valid (const char *id)
{
    if (!id)
        return false;
    size_t length = 0;
    for (; id[length]; length++)
        if (!((id[length] >= '0' && id[length] <= '9') || (id[length] >= 'a' && id[length] <= 'f'))
            || length >= ZF_STORE_ID_LEN)
            return false;
    return length == ZF_STORE_ID_LEN;
}

static uint64_t s_piece_count (uint64_t content_length, uint64_t piece_length)
{
    return content_length / piece_length + (content_length % piece_length ? 1 : 0);
}

zf_status_t zf_store_check_geometry (uint64_t content_length, uint64_t piece_length,
                                     zf_error_t *err)
{
    if (piece_length == 0 || piece_length > ZF_STORE_PIECE_LENGTH_MAX)
        return zf_error_set (err, ZF_E_INVALID, "piece_length",
                             "piece_length %" PRIu64 " is out of range (1..%d)", piece_length,
                             ZF_STORE_PIECE_LENGTH_MAX);
    if (s_piece_count (content_length, piece_length) > ZF_STORE_PIECES_MAX)
        return zf_error_set (err, ZF_E_INVALID, "content_length",
                             "content_length %" PRIu64 " needs more than %d pieces of %" PRIu64
                             " bytes",
                             content_length, ZF_STORE_PIECES_MAX, piece_length);
    return ZF_OK;
}

uint64_t zf_store_piece_size (const zf_store_task_t *task, uint64_t piece)
{
    ZF_ASSERT (piece < task->piece_count);
    uint64_t offset = piece * task->piece_length;
    uint64_t left = task->content_length - offset;
    return left < task->piece_length ? left : task->piece_length;
}

static bool s_bit (const uint8_t *bitmap, uint64_t index)
{
    return (bitmap[index / 8] >> (index % 8)) & 1;
}

static void s_set_bit (uint8_t *bitmap, uint64_t index, bool value)
{
    if (value)
        bitmap[index / 8] |= (uint8_t) (1u << (index % 8));
    else
        bitmap[index / 8] &= (uint8_t) ~(1u << (index % 8));
}

bool zf_store_is_finished (const zf_store_task_t *task, uint64_t piece)
{
    return piece < task->piece_count && s_bit (task->finished, piece);
}

static size_t s_bitmap_size (uint64_t piece_count)
{
    return (size_t) ((piece_count + 7) / 8);
}

void zf_store_sha256 (const uint8_t *data, size_t size, uint8_t digest[ZF_STORE_DIGEST_LEN])
{
    unsigned int length = 0;
    ZF_ASSERT (EVP_Digest (data, size, digest, &length, EVP_sha256 (), NULL) == 1);
    ZF_ASSERT (length == ZF_STORE_DIGEST_LEN);
}

static char *s_task_dir (zf_store_t *self, const char *id)
{
    return zf_asprintf ("%s/tasks/%.2s/%s", self->dir, id, id);
}

static char *s_task_file (zf_store_t *self, const char *id, const char *file)
{
    return zf_asprintf ("%s/tasks/%.2s/%s/%s", self->dir, id, id, file);
}

static zf_status_t s_mkdir (const char *path, zf_error_t *err)
{
    if (mkdir (path, 0750) == 0 || errno == EEXIST)
        return ZF_OK;
    return zf_error_set (err, ZF_E_IO, path, "cannot create directory %s: %s", path,
                         strerror (errno));
}

//  fsync of a directory makes a rename or a new entry in it durable.
static zf_status_t s_sync_dir (const char *path, zf_error_t *err)
{
    int fd = open (path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync (fd) != 0) {
        zf_status_t status = zf_error_set (err, ZF_E_IO, path, "cannot sync directory %s: %s", path,
                                           strerror (errno));
        if (fd >= 0)
            close (fd);
        return status;
    }
    close (fd);
    return ZF_OK;
}

static zf_status_t s_write_all (int fd, const char *path, const void *data, size_t size,
                                zf_error_t *err)
{
    const uint8_t *cursor = data;
    while (size > 0) {
        ssize_t written = write (fd, cursor, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return zf_error_set (err, ZF_E_IO, path, "cannot write %s: %s", path,
                                 written < 0 ? strerror (errno) : "no progress");
        cursor += written;
        size -= (size_t) written;
    }
    return ZF_OK;
}

//  Linux sizes new page-cache folios by the length of the write that creates them. Large
//  folios come from large free blocks, which a VM whose balloon reports free memory to the
//  host (virtio-balloon free page reporting, as in Firecracker) has handed back, so each one
//  costs host page faults: on such a VM, 1 GiB written in 1-4 MiB calls took 1.6-1.7 s, in
//  32 KiB calls 0.32 s (docs/benchmarks.md, tools/bench/pagecache_writes.py). Small writes
//  keep to small folios; elsewhere they cost some thousand more system calls per GiB.
#define WRITE_SLICE (32 * 1024)

static zf_status_t s_pwrite_all (int fd, const char *path, const uint8_t *data, size_t size,
                                 uint64_t offset, zf_error_t *err)
{
    while (size > 0) {
        size_t slice = size < WRITE_SLICE ? size : WRITE_SLICE;
        ssize_t written = pwrite (fd, data, slice, (off_t) offset);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return zf_error_set (err, ZF_E_IO, path, "cannot write %s: %s", path,
                                 written < 0 ? strerror (errno) : "no progress");
        data += written;
        offset += (uint64_t) written;
        size -= (size_t) written;
    }
    return ZF_OK;
}

//  Reads exactly size bytes; a short file is an error (the data file was cut behind our back).
static zf_status_t s_pread_all (int fd, const char *path, uint8_t *data, size_t size,
                                uint64_t offset, zf_error_t *err)
{
    while (size > 0) {
        ssize_t got = pread (fd, data, size, (off_t) offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return zf_error_set (err, ZF_E_IO, path, "cannot read %s: %s", path,
                                 got < 0 ? strerror (errno) : "file too short");
        data += got;
        offset += (uint64_t) got;
        size -= (size_t) got;
    }
    return ZF_OK;
}

// ---- tasks in memory ---------------------------------------------------------------------------

static void s_task_destroy (zf_store_task_t **task_p)
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
    zf_free (task->digests);
    zf_free (task->checksums);
    zf_free (task->verified);
    zf_free (task);
    *task_p = NULL;
}

static zf_store_task_t *s_task_new (const char *id, uint64_t content_length, uint64_t piece_length)
{
    zf_store_task_t *task = zf_calloc (1, sizeof *task);
    zf_strlcpy (task->id, id, sizeof task->id);
    task->content_length = content_length;
    task->piece_length = piece_length;
    task->piece_count = s_piece_count (content_length, piece_length);
    size_t bitmap_size = s_bitmap_size (task->piece_count);
    //  calloc (0) may return NULL: keep every array a valid pointer for empty tasks.
    task->finished = zf_calloc (1, bitmap_size + 1);
    task->pending = zf_calloc (1, bitmap_size + 1);
    task->digests = zf_calloc (1, (size_t) task->piece_count * ZF_STORE_DIGEST_LEN + 1);
    task->checksums = zf_calloc (1, (size_t) task->piece_count * ZF_STORE_CHECKSUM_LEN + 1);
    task->verified = zf_calloc (1, bitmap_size + 1);
    return task;
}

static void s_recount (zf_store_task_t *task)
{
    task->finished_count = 0;
    task->finished_bytes = 0;
    for (uint64_t piece = 0; piece < task->piece_count; piece++)
        if (s_bit (task->finished, piece)) {
            task->finished_count++;
            task->finished_bytes += zf_store_piece_size (task, piece);
        }
}

// ---- metadata ----------------------------------------------------------------------------------

static zf_status_t s_meta_write (zf_store_t *self, zf_store_task_t *task, zf_error_t *err)
{
    zf_rec_storage_meta_t meta = {
        .task_id = task->id,
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
        .finished = {task->finished, s_bitmap_size (task->piece_count)},
        .piece_digests = {task->digests, (size_t) task->piece_count * ZF_STORE_DIGEST_LEN},
        .piece_checksums = {task->checksums, (size_t) task->piece_count * ZF_STORE_CHECKSUM_LEN},
    };
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    zf_status_t status = zf_schema_encode (&zf_rec_storage_meta, &meta, &packer, err);
    ZF_ASSERT (status == ZF_OK); //  every field is bounded by construction

    char *dir = s_task_dir (self, task->id);
    char *tmp_path = s_task_file (self, task->id, "meta.tmp");
    char *meta_path = s_task_file (self, task->id, "meta");
    int fd = open (tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        status = zf_error_set (err, ZF_E_IO, tmp_path, "cannot create %s: %s", tmp_path,
                               strerror (errno));
    else {
        status = s_write_all (fd, tmp_path, buffer.data, buffer.size, err);
        if (status == ZF_OK && self->durable && fsync (fd) != 0)
            status = zf_error_set (err, ZF_E_IO, tmp_path, "cannot sync %s: %s", tmp_path,
                                   strerror (errno));
        close (fd);
    }
    if (status == ZF_OK && rename (tmp_path, meta_path) != 0)
        status = zf_error_set (err, ZF_E_IO, meta_path, "cannot rename %s: %s", tmp_path,
                               strerror (errno));
    if (status == ZF_OK && self->durable)
        status = s_sync_dir (dir, err);
    if (status == ZF_OK)
        task->access_dirty = false;
    zf_free (dir);
    zf_free (tmp_path);
    zf_free (meta_path);
    msgpack_sbuffer_destroy (&buffer);
    return status;
}

static char *s_take_string (char **field)
{
    char *value = *field;
    *field = NULL;
    return value ? value : zf_strdup ("");
}

//  Reads whole small files only: metadata is bounded by its schema.
static uint8_t *s_read_file (const char *path, size_t size_max, size_t *size, zf_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    struct stat info;
    if (fd < 0 || fstat (fd, &info) != 0) {
        zf_error_set (err, ZF_E_IO, path, "cannot open: %s", strerror (errno));
        if (fd >= 0)
            close (fd);
        return NULL;
    }
    if (!S_ISREG (info.st_mode) || (uint64_t) info.st_size > size_max) {
        zf_error_set (err, ZF_E_TOO_LARGE, path, "not a regular file of at most %zu bytes",
                      size_max);
        close (fd);
        return NULL;
    }
    *size = (size_t) info.st_size;
    uint8_t *data = zf_malloc (*size + 1);
    if (s_pread_all (fd, path, data, *size, 0, err) != ZF_OK) {
        zf_free (data);
        data = NULL;
    }
    close (fd);
    return data;
}

//  Loads one task directory. Metadata is outside input: it is decoded with the schema checks
//  and then checked to add up (id, geometry, array sizes, data file size) before it is trusted.
static zf_store_task_t *s_task_load (zf_store_t *self, const char *id, zf_error_t *err)
{
    char *meta_path = s_task_file (self, id, "meta");
    char *data_path = s_task_file (self, id, "data");
    char *tmp_path = s_task_file (self, id, "meta.tmp");
    unlink (tmp_path); //  an interrupted metadata write: the old meta is still whole
    zf_store_task_t *task = NULL;
    size_t size = 0;
    uint8_t *bytes = s_read_file (meta_path, 40 * 1024 * 1024, &size, err);
    zf_rec_storage_meta_t meta;
    memset (&meta, 0, sizeof meta);
    bool decoded =
        bytes && zf_schema_decode_buffer (&zf_rec_storage_meta, bytes, size, &meta, err) == ZF_OK;
    struct stat info;
    if (!decoded)
        ;
    else if (!streq (meta.task_id, id))
        zf_error_set (err, ZF_E_INVALID, "task_id", "metadata names task %.64s", meta.task_id);
    else if (zf_store_check_geometry (meta.content_length, meta.piece_length, err) != ZF_OK)
        ;
    else if (meta.piece_count != s_piece_count (meta.content_length, meta.piece_length)
             || meta.finished.size != s_bitmap_size (meta.piece_count)
             || meta.piece_digests.size != meta.piece_count * ZF_STORE_DIGEST_LEN
             || (meta.piece_checksums.size != 0
                 && meta.piece_checksums.size != meta.piece_count * ZF_STORE_CHECKSUM_LEN))
        zf_error_set (err, ZF_E_INVALID, "piece_count",
                      "piece count, bitmap and digest sizes do not add up");
    else if (!streq (meta.state, STATE_RUNNING) && !streq (meta.state, STATE_COMPLETE))
        zf_error_set (err, ZF_E_INVALID, "state", "unknown state '%.16s'", meta.state);
    else if (stat (data_path, &info) != 0 || !S_ISREG (info.st_mode)
             || (uint64_t) info.st_size != meta.content_length)
        zf_error_set (err, ZF_E_INVALID, "data", "data file missing or not %" PRIu64 " bytes",
                      meta.content_length);
    else {
        task = s_task_new (id, meta.content_length, meta.piece_length);
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
        s_recount (task);
        task->complete = streq (meta.state, STATE_COMPLETE);
        if (task->complete && task->finished_count != task->piece_count) {
            zf_error_set (err, ZF_E_INVALID, "state", "complete but pieces are missing");
            s_task_destroy (&task);
        }
    }
    if (decoded)
        zf_schema_clear (&zf_rec_storage_meta, &meta);
    zf_free (bytes);
    zf_free (meta_path);
    zf_free (data_path);
    zf_free (tmp_path);
    return task;
}

//  Moves an untrusted task directory aside, so it is neither served nor reported again.
static void s_quarantine (zf_store_t *self, const char *parent, const char *name, int64_t now_ms)
{
    char *from = zf_asprintf ("%s/%s", parent, name);
    char *quarantine = zf_asprintf ("%s/quarantine", self->dir);
    char *to = zf_asprintf ("%s/%s.%" PRId64, quarantine, name, now_ms);
    zf_error_t err;
    if (s_mkdir (quarantine, &err) != ZF_OK || rename (from, to) != 0)
        zf_error_log (self->log_name, "cannot quarantine %s: %s", from, strerror (errno));
    zf_free (from);
    zf_free (quarantine);
    zf_free (to);
}

static bool s_is_hex_pair (const char *name)
{
    return strlen (name) == 2 && strchr ("0123456789abcdef", name[0]) && name[0]
           && strchr ("0123456789abcdef", name[1]) && name[1];
}

static void s_scan_bucket (zf_store_t *self, const char *bucket_path, const char *bucket,
                           int64_t now_ms)
{
    DIR *dir = opendir (bucket_path);
    if (!dir) {
        zf_warning (self->log_name, "cannot read %s: %s", bucket_path, strerror (errno));
        return;
    }
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        const char *name = entry->d_name;
        if (streq (name, ".") || streq (name, ".."))
            continue;
        if (!zf_store_id_valid (name) || strncmp (name, bucket, 2) != 0) {
            zf_warning (self->log_name, "skipping %s/%s: not a task directory", bucket_path, name);
            continue;
        }
        zf_error_t err;
        zf_store_task_t *task = s_task_load (self, name, &err);
        if (task)
            zhashx_insert (self->tasks, task->id, task);
        else {
            zf_warning (self->log_name, "quarantined task=%s bad metadata: %s: %s", name, err.where,
                        err.message);
            s_quarantine (self, bucket_path, name, now_ms);
            self->quarantined++;
        }
    }
    closedir (dir);
}

static void s_scan (zf_store_t *self, int64_t now_ms)
{
    char *tasks_path = zf_asprintf ("%s/tasks", self->dir);
    DIR *dir = opendir (tasks_path);
    struct dirent *entry;
    while (dir && (entry = readdir (dir))) {
        if (!s_is_hex_pair (entry->d_name))
            continue;
        char *bucket_path = zf_asprintf ("%s/%s", tasks_path, entry->d_name);
        s_scan_bucket (self, bucket_path, entry->d_name, now_ms);
        zf_free (bucket_path);
    }
    if (dir)
        closedir (dir);
    zf_free (tasks_path);
}

// ---- the store ---------------------------------------------------------------------------------

static void s_task_destructor (void **item)
{
    s_task_destroy ((zf_store_task_t **) item);
}

zf_store_t *zf_store_new (const char *dir, const char *log_name, int64_t now_ms, zf_error_t *err)
{
    ZF_ASSERT (dir && *dir);
    zf_store_t *self = zf_calloc (1, sizeof *self);
    self->dir = zf_strdup (dir);
    self->log_name = zf_strdup (log_name);
    self->tasks = zhashx_new ();
    zhashx_set_destructor (self->tasks, s_task_destructor);
    //  The root itself is created one level deep only: a missing parent is a configuration
    //  mistake worth an error, not a tree to invent.
    char *tasks_path = zf_asprintf ("%s/tasks", dir);
    zf_status_t status = s_mkdir (dir, err);
    if (status == ZF_OK)
        status = s_mkdir (tasks_path, err);
    zf_free (tasks_path);
    if (status != ZF_OK) {
        zf_store_destroy (&self);
        return NULL;
    }
    //  Absolute from here on: piece.locate hands the data file's path to other processes,
    //  whose working directory is not ours.
    char *absolute = realpath (dir, NULL);
    if (!absolute) {
        zf_error_set (err, ZF_E_IO, dir, "cannot resolve %s: %s", dir, strerror (errno));
        zf_store_destroy (&self);
        return NULL;
    }
    zf_free (self->dir);
    self->dir = absolute; //  from malloc, as zf_free expects
    s_scan (self, now_ms);
    return self;
}

void zf_store_destroy (zf_store_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_store_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->tasks);
    zf_free (self->dir);
    zf_free (self->log_name);
    zf_free (self);
    *self_p = NULL;
}

zf_store_task_t *zf_store_find (zf_store_t *self, const char *id)
{
    if (!zf_store_id_valid (id))
        return NULL;
    return zhashx_lookup (self->tasks, id);
}

zf_status_t zf_store_create (zf_store_t *self, const zf_store_spec_t *spec, int64_t now_ms,
                             zf_store_task_t **task_p, zf_error_t *err)
{
    ZF_ASSERT (zf_store_id_valid (spec->id));
    ZF_ASSERT (zf_store_check_geometry (spec->content_length, spec->piece_length, NULL) == ZF_OK);
    ZF_ASSERT (!zf_store_find (self, spec->id));
    zf_store_task_t *task = s_task_new (spec->id, spec->content_length, spec->piece_length);
    task->url = zf_strdup (spec->url ? spec->url : "");
    task->digest = zf_strdup (spec->digest ? spec->digest : "");
    task->tag = zf_strdup (spec->tag ? spec->tag : "");
    task->application = zf_strdup (spec->application ? spec->application : "");
    task->created_ms = task->accessed_ms = now_ms;

    char *bucket = zf_asprintf ("%s/tasks/%.2s", self->dir, spec->id);
    char *dir = s_task_dir (self, spec->id);
    char *data_path = s_task_file (self, spec->id, "data");
    zf_status_t status = s_mkdir (bucket, err);
    if (status == ZF_OK)
        status = s_mkdir (dir, err);
    if (status == ZF_OK) {
        int fd = open (data_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0 || ftruncate (fd, (off_t) spec->content_length) != 0)
            status = zf_error_set (err, ZF_E_IO, data_path, "cannot create %s: %s", data_path,
                                   strerror (errno));
        if (fd >= 0)
            close (fd);
    }
    //  The metadata rename syncs the task directory; the bucket must know the task directory.
    if (status == ZF_OK)
        status = s_meta_write (self, task, err);
    if (status == ZF_OK)
        status = s_sync_dir (bucket, err);
    zf_free (bucket);
    zf_free (dir);
    zf_free (data_path);
    if (status != ZF_OK) {
        zhashx_insert (self->tasks, task->id, task);
        zf_store_remove (self, &task); //  leave nothing half-made behind
        return status;
    }
    zhashx_insert (self->tasks, task->id, task);
    *task_p = task;
    return ZF_OK;
}

//  XXH3-64 of the bytes, never 0 (0 marks an unknown checksum in the metadata).
static uint64_t s_checksum (const uint8_t *data, size_t size)
{
    uint64_t checksum = XXH3_64bits (data, size);
    return checksum ? checksum : 1;
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

const uint8_t *zf_store_known_digest (const zf_store_task_t *task, uint64_t piece)
{
    static const uint8_t unknown[ZF_STORE_DIGEST_LEN];
    const uint8_t *digest = task->digests + piece * ZF_STORE_DIGEST_LEN;
    return memcmp (digest, unknown, ZF_STORE_DIGEST_LEN) == 0 ? NULL : digest;
}

const uint8_t *zf_store_piece_digest (zf_store_task_t *task, uint64_t piece, const uint8_t *data,
                                      size_t size)
{
    uint8_t *digest = task->digests + piece * ZF_STORE_DIGEST_LEN;
    if (!zf_store_known_digest (task, piece))
        zf_store_sha256 (data, size, digest); //  saved with the task's next metadata write
    return digest;
}

//  The bytes read back are the bytes written: by checksum when one was taken, else by digest.
//  A piece with neither cannot be vouched for and counts as damaged.
static bool s_piece_intact (const zf_store_task_t *task, uint64_t piece, const uint8_t *data,
                            size_t size)
{
    uint64_t checksum = s_checksum_get (task, piece);
    if (checksum)
        return s_checksum (data, size) == checksum;
    const uint8_t *known = zf_store_known_digest (task, piece);
    if (!known)
        return false;
    uint8_t digest[ZF_STORE_DIGEST_LEN];
    zf_store_sha256 (data, size, digest);
    return memcmp (digest, known, ZF_STORE_DIGEST_LEN) == 0;
}

//  --- the data file as storage last left it (zf_store.h: located pieces) ----------------------

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

//  The open data file before a locate: unless it is unchanged, no earlier check counts.
//  Returns its size, or -1 (errno set) when it cannot be looked at.
static int64_t s_file_observe (zf_store_task_t *task, int fd)
{
    struct stat info;
    bool known = fstat (fd, &info) == 0;
    if (known && s_file_unchanged (task, &info))
        return (int64_t) info.st_size;
    memset (task->verified, 0, s_bitmap_size (task->piece_count));
    if (known)
        s_file_record (task, &info, false);
    else
        memset (&task->file_seen, 0, sizeof task->file_seen);
    return known ? (int64_t) info.st_size : -1;
}

//  After storage wrote a piece (its checksum taken from the bytes written): the piece counts
//  as checked, and the file as storage left it. If the file had changed before the write
//  (before: its state then, NULL if unknown), no earlier check counts.
static void s_file_written (zf_store_task_t *task, int fd, const struct stat *before,
                            uint64_t piece)
{
    if (!before || !s_file_unchanged (task, before))
        memset (task->verified, 0, s_bitmap_size (task->piece_count));
    struct stat info;
    if (fstat (fd, &info) != 0) {
        memset (task->verified, 0, s_bitmap_size (task->piece_count));
        memset (&task->file_seen, 0, sizeof task->file_seen);
        return;
    }
    s_file_record (task, &info, true);
    s_set_bit (task->verified, piece, true);
}

zf_status_t zf_store_write_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                  const uint8_t *data, size_t size, const uint8_t *digest,
                                  zf_error_t *err)
{
    ZF_ASSERT (piece < task->piece_count && size == zf_store_piece_size (task, piece));
    char *data_path = s_task_file (self, task->id, "data");
    zf_status_t status = ZF_OK;
    int fd = open (data_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        status = zf_error_set (err, ZF_E_IO, data_path, "cannot open %s: %s", data_path,
                               strerror (errno));
    else {
        struct stat before;
        bool before_known = fstat (fd, &before) == 0;
        s_set_bit (task->verified, piece, false);
        status = s_pwrite_all (fd, data_path, data, size, piece * task->piece_length, err);
        if (status == ZF_OK)
            s_file_written (task, fd, before_known ? &before : NULL, piece);
        //  Durable: start writing the piece to disk now, so that the commit's fdatasync finds
        //  little left to wait for. Advisory: where it cannot, the fdatasync does it all.
        if (status == ZF_OK && self->durable)
            (void) sync_file_range (fd, (off64_t) (piece * task->piece_length), (off64_t) size,
                                    SYNC_FILE_RANGE_WRITE);
        close (fd);
    }
    zf_free (data_path);
    if (status != ZF_OK)
        return status;
    uint8_t *slot = task->digests + piece * ZF_STORE_DIGEST_LEN;
    if (digest)
        memcpy (slot, digest, ZF_STORE_DIGEST_LEN);
    else
        memset (slot, 0, ZF_STORE_DIGEST_LEN);
    s_checksum_put (task, piece, s_checksum (data, size));
    if (!s_bit (task->pending, piece)) {
        s_set_bit (task->pending, piece, true);
        task->pending_count++;
    }
    return ZF_OK;
}

static zf_status_t s_sync_data (zf_store_t *self, zf_store_task_t *task, zf_error_t *err)
{
    char *data_path = s_task_file (self, task->id, "data");
    zf_status_t status = ZF_OK;
    int fd = open (data_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || fdatasync (fd) != 0)
        status = zf_error_set (err, ZF_E_IO, data_path, "cannot sync %s: %s", data_path,
                               strerror (errno));
    if (fd >= 0)
        close (fd);
    zf_free (data_path);
    return status;
}

void zf_store_set_durable (zf_store_t *self, bool durable)
{
    self->durable = durable;
}

zf_status_t zf_store_commit (zf_store_t *self, zf_store_task_t *task, zf_error_t *err)
{
    if (task->pending_count == 0)
        return ZF_OK;
    zf_status_t status = self->durable ? s_sync_data (self, task, err) : ZF_OK;

    size_t bitmap_size = s_bitmap_size (task->piece_count);
    uint8_t *before = zf_malloc (bitmap_size + 1);
    memcpy (before, task->finished, bitmap_size);
    if (status == ZF_OK) {
        for (size_t index = 0; index < bitmap_size; index++)
            task->finished[index] |= task->pending[index];
        status = s_meta_write (self, task, err);
        if (status != ZF_OK) //  not claimed on disk, so not claimed in memory either
            memcpy (task->finished, before, bitmap_size);
    }
    //  Pending pieces are settled either way: claimed now, or to be written again.
    memset (task->pending, 0, bitmap_size);
    task->pending_count = 0;
    zf_free (before);
    s_recount (task);
    return status;
}

zf_status_t zf_store_save (zf_store_t *self, zf_store_task_t *task, zf_error_t *err)
{
    return s_meta_write (self, task, err);
}

//  The piece failed its check on disk: it is missing from now on (persisted at once), so it is
//  fetched again and never served.
static zf_store_read_t s_piece_damaged (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                        zf_error_t *err)
{
    s_set_bit (task->finished, piece, false);
    s_set_bit (task->verified, piece, false);
    task->complete = false;
    s_recount (task);
    zf_error_t save_err;
    if (s_meta_write (self, task, &save_err) != ZF_OK)
        zf_error_log (self->log_name, "task=%s cannot persist corrupt piece=%" PRIu64 ": %s",
                      task->id, piece, save_err.message);
    zf_error_set (err, ZF_E_INVALID, "piece", "piece %" PRIu64 " does not match its digest on disk",
                  piece);
    return ZF_STORE_READ_CORRUPT;
}

static bool s_check_finished (const zf_store_task_t *task, uint64_t piece, zf_error_t *err)
{
    if (zf_store_is_finished (task, piece))
        return true;
    zf_error_set (err, ZF_E_INVALID, "piece", "piece %" PRIu64 " is not finished", piece);
    return false;
}

zf_store_read_t zf_store_read_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                     zframe_t **frame, zf_error_t *err)
{
    *frame = NULL;
    if (!s_check_finished (task, piece, err))
        return ZF_STORE_READ_NOT_FINISHED;
    uint64_t size = zf_store_piece_size (task, piece);
    zframe_t *bytes = zframe_new (NULL, (size_t) size);
    char *data_path = s_task_file (self, task->id, "data");
    int fd = open (data_path, O_RDONLY | O_CLOEXEC);
    zf_status_t status =
        fd < 0 ? zf_error_set (err, ZF_E_IO, data_path, "cannot open: %s", strerror (errno))
               : s_pread_all (fd, data_path, zframe_data (bytes), (size_t) size,
                              piece * task->piece_length, err);
    if (fd >= 0)
        close (fd);
    zf_free (data_path);
    if (status != ZF_OK) {
        zframe_destroy (&bytes);
        return ZF_STORE_READ_IO;
    }
    if (!s_piece_intact (task, piece, zframe_data (bytes), (size_t) size)) {
        zframe_destroy (&bytes);
        return s_piece_damaged (self, task, piece, err);
    }
    *frame = bytes;
    return ZF_STORE_READ_OK;
}

//  Checks [offset, offset + size) of the open data file in place: mapped, not copied out.
//  The file's length is checked first, because touching a mapping past the end of a file
//  (one cut behind our back) would raise SIGBUS instead of an error.
//  file_size: as s_file_observe saw it.
static zf_status_t s_check_mapped (int fd, const char *path, const zf_store_task_t *task,
                                   uint64_t piece, int64_t file_size, bool *intact, zf_error_t *err)
{
    uint64_t offset = piece * task->piece_length;
    uint64_t size = zf_store_piece_size (task, piece);
    if (file_size < 0)
        return zf_error_set (err, ZF_E_IO, path, "cannot stat %s: %s", path, strerror (errno));
    if ((uint64_t) file_size < offset + size)
        return zf_error_set (err, ZF_E_IO, path, "cannot read %s: file too short", path);
    uint64_t page = (uint64_t) sysconf (_SC_PAGESIZE);
    uint64_t map_offset = offset - offset % page;
    size_t map_size = (size_t) (offset + size - map_offset);
    uint8_t *map =
        mmap (NULL, map_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t) map_offset);
    if (map == MAP_FAILED)
        return zf_error_set (err, ZF_E_IO, path, "cannot map %s: %s", path, strerror (errno));
    *intact = s_piece_intact (task, piece, map + (offset - map_offset), (size_t) size);
    munmap (map, map_size);
    return ZF_OK;
}

zf_store_read_t zf_store_locate_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                       char **path_p, zf_error_t *err)
{
    *path_p = NULL;
    if (!s_check_finished (task, piece, err))
        return ZF_STORE_READ_NOT_FINISHED;
    char *data_path = s_task_file (self, task->id, "data");
    bool intact = false;
    int fd = open (data_path, O_RDONLY | O_CLOEXEC);
    zf_status_t status = ZF_OK;
    if (fd < 0)
        status = zf_error_set (err, ZF_E_IO, data_path, "cannot open: %s", strerror (errno));
    else {
        int64_t file_size = s_file_observe (task, fd);
        intact = s_bit (task->verified, piece);
        if (!intact) //  first located since written, or since the file changed: checked now
            status = s_check_mapped (fd, data_path, task, piece, file_size, &intact, err);
        close (fd);
    }
    s_set_bit (task->verified, piece, status == ZF_OK && intact);
    if (status != ZF_OK || !intact) {
        zf_free (data_path);
        return status != ZF_OK ? ZF_STORE_READ_IO : s_piece_damaged (self, task, piece, err);
    }
    *path_p = data_path;
    return ZF_STORE_READ_OK;
}

void zf_store_remove (zf_store_t *self, zf_store_task_t **task_p)
{
    zf_store_task_t *task = *task_p;
    ZF_ASSERT (task);
    static const char *const files[] = {"meta", "meta.tmp", "data"};
    //  meta first: if the unlinks are cut short, what remains is a directory without metadata,
    //  which the next start quarantines instead of trusting.
    for (size_t index = 0; index < ZF_ARRAY_LEN (files); index++) {
        char *path = s_task_file (self, task->id, files[index]);
        if (unlink (path) != 0 && errno != ENOENT)
            zf_warning (self->log_name, "cannot remove %s: %s", path, strerror (errno));
        zf_free (path);
    }
    char *dir = s_task_dir (self, task->id);
    if (rmdir (dir) != 0 && errno != ENOENT)
        zf_warning (self->log_name, "cannot remove %s: %s", dir, strerror (errno));
    zf_free (dir);
    char *bucket = zf_asprintf ("%s/tasks/%.2s", self->dir, task->id);
    rmdir (bucket); //  only when empty; another task may live there
    zf_free (bucket);
    zhashx_delete (self->tasks, task->id); //  frees the task
    *task_p = NULL;
}

zf_store_task_t **zf_store_tasks (zf_store_t *self, size_t *count)
{
    *count = zhashx_size (self->tasks);
    zf_store_task_t **tasks = zf_calloc (*count + 1, sizeof *tasks);
    size_t used = 0;
    for (zf_store_task_t *task = zhashx_first (self->tasks); task; task = zhashx_next (self->tasks))
        tasks[used++] = task;
    ZF_ASSERT (used == *count);
    return tasks;
}

size_t zf_store_task_count (zf_store_t *self)
{
    return zhashx_size (self->tasks);
}

uint64_t zf_store_bytes (zf_store_t *self)
{
    uint64_t bytes = 0;
    for (zf_store_task_t *task = zhashx_first (self->tasks); task; task = zhashx_next (self->tasks))
        bytes += task->finished_bytes;
    return bytes;
}

size_t zf_store_quarantined (zf_store_t *self)
{
    return self->quarantined;
}

const char *zf_store_dir (zf_store_t *self)
{
    return self->dir;
}
