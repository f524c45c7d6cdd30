/*  zf_store.c — the cache directory: tasks on disk (see zf_store.h for the layout). */
#include "zf_store.h"
#include "zf_log.h"
#include "storage/zf_meta_slot.h"
#include "storage/zf_store_task.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define META_LEGACY   "meta" //  before the slots: one file, replaced by rename
#define META_TMP      "meta.tmp"
#define META_MAX_SIZE (ZF_META_SLOT_HEADER + ZF_META_SLOT_PAYLOAD_MAX + ZF_META_SLOT_TRAILER)

static const char *const s_slot_names[2] = {"meta.0", "meta.1"};

struct zf_store_s {
    char *dir;
    char *log_name;
    zhashx_t *tasks; //  id -> zf_store_task_t *, owned
    size_t quarantined;
    bool durable;             //  fdatasync before claiming (survives power loss, not only kill -9)
    uint64_t last_generation; //  given to the last task created or loaded
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

zf_status_t zf_store_check_geometry (uint64_t content_length, uint64_t piece_length,
                                     zf_error_t *err)
{
    if (piece_length == 0 || piece_length > ZF_STORE_PIECE_LENGTH_MAX)
        return zf_error_set (err, ZF_E_INVALID, "piece_length",
                             "piece_length %" PRIu64 " is out of range (1..%d)", piece_length,
                             ZF_STORE_PIECE_LENGTH_MAX);
    if (zf_store_piece_count (content_length, piece_length) > ZF_STORE_PIECES_MAX)
        return zf_error_set (err, ZF_E_INVALID, "content_length",
                             "content_length %" PRIu64 " needs more than %d pieces of %" PRIu64
                             " bytes",
                             content_length, ZF_STORE_PIECES_MAX, piece_length);
    return ZF_OK;
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

//  fsync of a directory makes a new entry in it durable.
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

//  Reads whole small files only: metadata is bounded by its schema. NULL with err when the
//  file cannot be read; an empty file reads as zero bytes.
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

//  Creates an empty file (or empties one left behind), for the data or a slot.
static zf_status_t s_create_file (const char *path, uint64_t length, zf_error_t *err)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    zf_status_t status = ZF_OK;
    if (fd < 0 || (length > 0 && ftruncate (fd, (off_t) length) != 0))
        status = zf_error_set (err, ZF_E_IO, path, "cannot create %s: %s", path, strerror (errno));
    if (fd >= 0)
        close (fd);
    return status;
}

// ---- commits -----------------------------------------------------------------------------------

zf_status_t zf_store_commit_begin (zf_store_t *self, zf_store_task_t *task,
                                   zf_store_commit_t *commit, zf_error_t *err)
{
    memset (commit, 0, sizeof *commit);
    zf_strlcpy (commit->task_id, task->id, sizeof commit->task_id);
    commit->generation = task->generation;
    commit->sequence = task->meta_sequence + 1;
    commit->slot_fd = commit->data_fd = -1;
    //  The slot that does not hold the newest record: if this write is torn, that one is
    //  still whole. Opened here, not by path when the record is written, so that a record
    //  of a task removed meanwhile goes to its own unlinked file and never to the slot of a
    //  task created again under the same id.
    commit->slot_path = s_task_file (self, task->id, s_slot_names[commit->sequence % 2]);
    commit->slot_fd = open (commit->slot_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    zf_status_t status = ZF_OK;
    if (commit->slot_fd < 0)
        status = zf_error_set (err, ZF_E_IO, commit->slot_path, "cannot open %s: %s",
                               commit->slot_path, strerror (errno));
    if (status == ZF_OK && self->durable) {
        char *data_path = s_task_file (self, task->id, "data");
        commit->data_fd = open (data_path, O_WRONLY | O_CLOEXEC);
        if (commit->data_fd < 0)
            status = zf_error_set (err, ZF_E_IO, data_path, "cannot open %s: %s", data_path,
                                   strerror (errno));
        zf_free (data_path);
    }
    if (status != ZF_OK) {
        if (commit->slot_fd >= 0)
            close (commit->slot_fd);
        zf_free (commit->slot_path);
        memset (commit, 0, sizeof *commit);
        return status;
    }
    commit->record = zf_store_task_encode (task, &commit->record_size);
    commit->access_dirty = task->access_dirty;
    commit->meta_dirty = task->meta_dirty;
    task->access_dirty = task->meta_dirty = false;
    zf_store_task_commit_begin (task);
    return ZF_OK;
}

void zf_store_commit_run (zf_store_commit_t *commit)
{
    commit->status = ZF_OK;
    //  Durable: the bytes a record claims are on disk before the record is.
    if (commit->data_fd >= 0 && fdatasync (commit->data_fd) != 0)
        commit->status =
            zf_error_set (&commit->err, ZF_E_IO, commit->slot_path,
                          "cannot sync the data of %s: %s", commit->task_id, strerror (errno));
    uint8_t header[ZF_META_SLOT_HEADER], trailer[ZF_META_SLOT_TRAILER];
    zf_meta_slot_frame (commit->sequence, commit->record, commit->record_size, header, trailer);
    struct iovec parts[3] = {
        {header, sizeof header}, {commit->record, commit->record_size}, {trailer, sizeof trailer}};
    size_t left = sizeof header + commit->record_size + sizeof trailer;
    off_t offset = 0;
    size_t part = 0;
    while (commit->status == ZF_OK && left > 0) {
        //  In place, from offset 0: never truncated, as ext4 flushes a file truncated to
        //  zero when it is closed; bytes past the record are left over and mean nothing.
        ssize_t written = pwritev (commit->slot_fd, parts + part, (int) (3 - part), offset);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0) {
            commit->status =
                zf_error_set (&commit->err, ZF_E_IO, commit->slot_path, "cannot write %s: %s",
                              commit->slot_path, written < 0 ? strerror (errno) : "no progress");
            break;
        }
        left -= (size_t) written;
        offset += written;
        for (size_t done = (size_t) written; done > 0 && part < 3;) {
            size_t take = done < parts[part].iov_len ? done : parts[part].iov_len;
            parts[part].iov_base = (uint8_t *) parts[part].iov_base + take;
            parts[part].iov_len -= take;
            done -= take;
            if (parts[part].iov_len == 0)
                part++;
        }
    }
    if (commit->status == ZF_OK && commit->data_fd >= 0 && fdatasync (commit->slot_fd) != 0)
        commit->status = zf_error_set (&commit->err, ZF_E_IO, commit->slot_path,
                                       "cannot sync %s: %s", commit->slot_path, strerror (errno));
    close (commit->slot_fd);
    commit->slot_fd = -1;
    if (commit->data_fd >= 0)
        close (commit->data_fd);
    commit->data_fd = -1;
}

zf_store_task_t *zf_store_commit_task (zf_store_t *self, const zf_store_commit_t *commit)
{
    zf_store_task_t *task = zf_store_find (self, commit->task_id);
    return task && task->generation == commit->generation ? task : NULL;
}

zf_status_t zf_store_commit_end (zf_store_t *self, zf_store_task_t *task, zf_store_commit_t *commit)
{
    (void) self;
    if (task) {
        ZF_ASSERT (task->generation == commit->generation);
        if (commit->status == ZF_OK)
            task->meta_sequence = commit->sequence;
        else {
            task->access_dirty |= commit->access_dirty;
            task->meta_dirty |= commit->meta_dirty;
        }
        zf_store_task_commit_end (task, commit->status == ZF_OK);
    }
    if (commit->slot_fd >= 0)
        close (commit->slot_fd);
    if (commit->data_fd >= 0)
        close (commit->data_fd);
    zf_free (commit->record);
    zf_free (commit->slot_path);
    commit->record = NULL;
    commit->slot_path = NULL;
    commit->slot_fd = commit->data_fd = -1;
    return commit->status;
}

zf_status_t zf_store_save (zf_store_t *self, zf_store_task_t *task, zf_error_t *err)
{
    zf_store_commit_t commit;
    zf_status_t status = zf_store_commit_begin (self, task, &commit, err);
    if (status != ZF_OK)
        return status;
    zf_store_commit_run (&commit);
    if (commit.status != ZF_OK && err)
        *err = commit.err;
    return zf_store_commit_end (self, task, &commit);
}

// ---- loading -----------------------------------------------------------------------------------

//  One slot of a task directory: its record decoded into a task, or NULL and why not.
//  *unused: the slot is missing or empty (never written), which is no news.
static zf_store_task_t *s_load_slot (zf_store_t *self, const char *id, int slot, uint64_t data_size,
                                     uint64_t *sequence, bool *unused, zf_error_t *err)
{
    char *path = s_task_file (self, id, s_slot_names[slot]);
    struct stat info;
    bool exists = stat (path, &info) == 0;
    *unused = exists ? info.st_size == 0 : errno == ENOENT;
    size_t size = 0;
    uint8_t *bytes = s_read_file (path, META_MAX_SIZE + (1u << 20), &size, err);
    zf_free (path);
    zf_store_task_t *task = NULL;
    const uint8_t *payload;
    size_t payload_size;
    if (bytes && zf_meta_slot_parse (bytes, size, sequence, &payload, &payload_size, err) == ZF_OK)
        task = zf_store_task_decode (id, payload, payload_size, data_size, err);
    zf_free (bytes);
    return task;
}

//  Before the slots: DIR/tasks/XX/ID/meta, a bare storage_meta record replaced by rename.
//  Read once, written into a slot (both slot files created, as for a new task), then removed.
static zf_store_task_t *s_load_legacy (zf_store_t *self, const char *id, uint64_t data_size,
                                       zf_error_t *err)
{
    char *path = s_task_file (self, id, META_LEGACY);
    size_t size = 0;
    uint8_t *bytes = s_read_file (path, META_MAX_SIZE, &size, err);
    zf_store_task_t *task = bytes ? zf_store_task_decode (id, bytes, size, data_size, err) : NULL;
    zf_free (bytes);
    if (task) {
        task->generation = ++self->last_generation;
        zf_error_t save_err;
        char *dir = s_task_dir (self, id);
        char *other = s_task_file (self, id, s_slot_names[0]); //  the first record goes to 1
        zf_status_t status = s_create_file (other, 0, &save_err);
        if (status == ZF_OK)
            status = zf_store_save (self, task, &save_err);
        if (status == ZF_OK && self->durable)
            status = s_sync_dir (dir, &save_err);
        if (status != ZF_OK) //  it loads from the old file again next time
            zf_warning (self->log_name, "task=%s cannot move metadata into a slot: %s", id,
                        save_err.message);
        else if (unlink (path) != 0)
            zf_warning (self->log_name, "cannot remove %s: %s", path, strerror (errno));
        else
            zf_info (self->log_name, "task=%s metadata moved into slot files", id);
        zf_free (other);
        zf_free (dir);
    }
    zf_free (path);
    return task;
}

//  Loads one task directory: the newest of its slots that reads back whole and adds up, else
//  the metadata of a cache written before the slots.
static zf_store_task_t *s_task_load (zf_store_t *self, const char *id, zf_error_t *err)
{
    char *tmp_path = s_task_file (self, id, META_TMP);
    unlink (tmp_path); //  left over from a rename interrupted before the slots
    zf_free (tmp_path);
    char *data_path = s_task_file (self, id, "data");
    struct stat info;
    uint64_t data_size = stat (data_path, &info) == 0 && S_ISREG (info.st_mode)
                             ? (uint64_t) info.st_size
                             : UINT64_MAX;
    zf_free (data_path);

    zf_store_task_t *found[2];
    uint64_t sequence[2] = {0, 0};
    bool unused[2];
    zf_error_t why[2];
    for (int slot = 0; slot < 2; slot++)
        found[slot] =
            s_load_slot (self, id, slot, data_size, &sequence[slot], &unused[slot], &why[slot]);
    int newest = !found[0] ? 1 : !found[1] ? 0 : sequence[1] > sequence[0] ? 1 : 0;
    zf_store_task_t *task = found[newest];
    if (task) {
        int other = 1 - newest;
        if (!found[other] && !unused[other]) //  torn or damaged: worth a line
            zf_notice (self->log_name, "task=%s %s not usable (%s), loaded %s", id,
                       s_slot_names[other], why[other].message, s_slot_names[newest]);
        zf_store_task_destroy (&found[other]);
        task->meta_sequence = sequence[newest];
        task->generation = ++self->last_generation;
        return task;
    }
    char *legacy = s_task_file (self, id, META_LEGACY);
    bool has_legacy = access (legacy, F_OK) == 0;
    zf_free (legacy);
    if (has_legacy)
        return s_load_legacy (self, id, data_size, err);
    int failed = unused[1] ? 0 : 1; //  the slot that holds something says most
    zf_error_set (err, why[failed].code, s_slot_names[failed], "%s", why[failed].message);
    return NULL;
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
    zf_store_task_destroy ((zf_store_task_t **) item);
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
    zf_store_task_t *task = zf_store_task_new (spec->id, spec->content_length, spec->piece_length);
    task->generation = ++self->last_generation;
    task->url = zf_strdup (spec->url ? spec->url : "");
    task->digest = zf_strdup (spec->digest ? spec->digest : "");
    task->tag = zf_strdup (spec->tag ? spec->tag : "");
    task->application = zf_strdup (spec->application ? spec->application : "");
    task->created_ms = task->accessed_ms = now_ms;

    char *bucket = zf_asprintf ("%s/tasks/%.2s", self->dir, spec->id);
    char *dir = s_task_dir (self, spec->id);
    zf_status_t status = s_mkdir (bucket, err);
    if (status == ZF_OK)
        status = s_mkdir (dir, err);
    //  Both slots exist from the start, so that no later commit adds a directory entry that
    //  a durable commit would have to sync.
    const char *const files[] = {"data", s_slot_names[0], s_slot_names[1]};
    for (size_t index = 0; index < ZF_ARRAY_LEN (files) && status == ZF_OK; index++) {
        char *path = s_task_file (self, spec->id, files[index]);
        status = s_create_file (path, index == 0 ? spec->content_length : 0, err);
        zf_free (path);
    }
    if (status == ZF_OK)
        status = zf_store_save (self, task, err);
    if (status == ZF_OK && self->durable)
        status = s_sync_dir (dir, err);
    if (status == ZF_OK && self->durable)
        status = s_sync_dir (bucket, err);
    zf_free (bucket);
    zf_free (dir);
    zhashx_insert (self->tasks, task->id, task);
    if (status != ZF_OK) {
        zf_store_remove (self, &task); //  leave nothing half-made behind
        return status;
    }
    *task_p = task;
    return ZF_OK;
}

// ---- writes ------------------------------------------------------------------------------------

void zf_store_write_prepare (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                             zframe_t **bytes_p, const uint8_t *check_digest,
                             zf_store_write_t *write)
{
    ZF_ASSERT (piece < task->piece_count && *bytes_p
               && zframe_size (*bytes_p) == zf_store_piece_size (task, piece));
    memset (write, 0, sizeof *write);
    write->io.run = zf_store_write_run;
    zf_strlcpy (write->task_id, task->id, sizeof write->task_id);
    write->generation = task->generation;
    write->piece = piece;
    write->path = s_task_file (self, task->id, "data");
    write->offset = piece * task->piece_length;
    write->file_length = task->content_length;
    write->durable = self->durable;
    write->check_digest = check_digest != NULL;
    if (check_digest)
        memcpy (write->digest, check_digest, ZF_STORE_DIGEST_LEN);
    write->bytes = *bytes_p;
    *bytes_p = NULL;
    zf_store_set_bit (task->verified, piece, false); //  its bytes are about to change
    task->writes_queued++;
}

void zf_store_write_run (zf_io_job_t *job)
{
    zf_store_write_t *write = (zf_store_write_t *) job;
    const uint8_t *data = zframe_data (write->bytes);
    size_t size = zframe_size (write->bytes);
    write->status = ZF_OK;
    if (write->check_digest) {
        uint8_t digest[ZF_STORE_DIGEST_LEN];
        zf_store_sha256 (data, size, digest);
        if (memcmp (digest, write->digest, ZF_STORE_DIGEST_LEN) != 0) {
            write->status =
                zf_error_set (&write->err, ZF_E_INVALID, "digest",
                              "piece %" PRIu64 " does not match its SHA-256 digest", write->piece);
            return;
        }
    }
    //  Opened by path at each write: the task may have been removed meanwhile (then ENOENT),
    //  or removed and created again, as another generation (zf_store.h), whose data file
    //  must be as long as ours to be written at all.
    int fd = open (write->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        write->status = zf_error_set (&write->err, ZF_E_IO, write->path, "cannot open %s: %s",
                                      write->path, strerror (errno));
        return;
    }
    write->before_known = fstat (fd, &write->before) == 0;
    if (write->before_known && (uint64_t) write->before.st_size != write->file_length)
        write->status =
            zf_error_set (&write->err, ZF_E_REFUSED, write->path,
                          "%s is %lld bytes, not %" PRIu64 ": changed under storage", write->path,
                          (long long) write->before.st_size, write->file_length);
    else if (write->before_known && write->before.st_nlink > 1)
        //  Another name shares the file (zfly-get's output, linked): its bytes are someone
        //  else's now, never to be written by storage (zf_store_read_piece).
        write->status =
            zf_error_set (&write->err, ZF_E_REFUSED, write->path,
                          "%s has another name (a hard link): not written", write->path);
    else
        write->status = s_pwrite_all (fd, write->path, data, size, write->offset, &write->err);
    if (write->status == ZF_OK) {
        write->after_known = fstat (fd, &write->after) == 0;
        //  Durable: start writing the piece to disk now, so that the commit's fdatasync finds
        //  little left to wait for. Advisory: where it cannot, the fdatasync does it all.
        if (write->durable)
            (void) sync_file_range (fd, (off64_t) write->offset, (off64_t) size,
                                    SYNC_FILE_RANGE_WRITE);
        write->checksum = zf_store_checksum (data, size);
    }
    close (fd);
}

zf_store_task_t *zf_store_write_task (zf_store_t *self, const zf_store_write_t *write)
{
    zf_store_task_t *task = zf_store_find (self, write->task_id);
    return task && task->generation == write->generation ? task : NULL;
}

zf_status_t zf_store_write_finish (zf_store_t *self, zf_store_task_t *task, zf_store_write_t *write,
                                   const uint8_t *digest, zf_error_t *err)
{
    (void) self;
    ZF_ASSERT (task->generation == write->generation && task->writes_queued > 0);
    task->writes_queued--;
    if (write->status != ZF_OK) {
        if (err)
            *err = write->err;
        return write->status;
    }
    zf_store_task_written (task, write->piece, write->checksum, digest,
                           write->before_known ? &write->before : NULL,
                           write->after_known ? &write->after : NULL);
    return ZF_OK;
}

void zf_store_write_clear (zf_store_write_t *write)
{
    zf_free (write->path);
    write->path = NULL;
}

void zf_store_set_durable (zf_store_t *self, bool durable)
{
    self->durable = durable;
}

bool zf_store_durable (zf_store_t *self)
{
    return self->durable;
}

// ---- reads -------------------------------------------------------------------------------------

//  info: the data file as it was read (NULL if unknown).
static zf_store_read_t s_piece_damaged (zf_store_task_t *task, uint64_t piece,
                                        const struct stat *info, zf_error_t *err)
{
    zf_store_task_damaged (task, piece);
    if (!info || info->st_nlink > 1 || (uint64_t) info->st_size != task->content_length)
        task->data_unusable = true;
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

//  Frames for size bytes, of at most frame_max bytes each (0: one frame).
static zmsg_t *s_frames_new (uint64_t size, uint64_t frame_max)
{
    if (frame_max != 0 && frame_max < ZF_STORE_FRAME_MIN)
        frame_max = ZF_STORE_FRAME_MIN;
    if (frame_max == 0 || frame_max > size)
        frame_max = size;
    zmsg_t *frames = zmsg_new ();
    uint64_t offset = 0;
    do {
        uint64_t part = size - offset < frame_max ? size - offset : frame_max;
        zframe_t *frame = zframe_new (NULL, (size_t) part);
        zmsg_append (frames, &frame);
        offset += part;
    } while (offset < size);
    return frames;
}

static zf_status_t s_pread_frames (int fd, const char *path, zmsg_t *frames, uint64_t offset,
                                   zf_error_t *err)
{
    for (zframe_t *frame = zmsg_first (frames); frame; frame = zmsg_next (frames)) {
        if (s_pread_all (fd, path, zframe_data (frame), zframe_size (frame), offset, err) != ZF_OK)
            return err->code;
        offset += zframe_size (frame);
    }
    return ZF_OK;
}

zf_store_read_t zf_store_read_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                     uint64_t frame_max, zmsg_t **frames, zf_error_t *err)
{
    *frames = NULL;
    if (!s_check_finished (task, piece, err))
        return ZF_STORE_READ_NOT_FINISHED;
    uint64_t size = zf_store_piece_size (task, piece);
    zmsg_t *bytes = s_frames_new (size, frame_max);
    char *data_path = s_task_file (self, task->id, "data");
    int fd = open (data_path, O_RDONLY | O_CLOEXEC);
    struct stat info;
    bool known = fd >= 0 && fstat (fd, &info) == 0;
    bool cut = known && (uint64_t) info.st_size < piece * task->piece_length + size;
    zf_status_t status =
        fd < 0 ? zf_error_set (err, ZF_E_IO, data_path, "cannot open: %s", strerror (errno))
        : cut  ? ZF_OK //  damage, below
               : s_pread_frames (fd, data_path, bytes, piece * task->piece_length, err);
    if (fd >= 0)
        close (fd);
    zf_free (data_path);
    if (status != ZF_OK) {
        zmsg_destroy (&bytes);
        return ZF_STORE_READ_IO;
    }
    if (cut || !zf_store_task_intact_frames (task, piece, bytes)) {
        zmsg_destroy (&bytes);
        return s_piece_damaged (task, piece, known ? &info : NULL, err);
    }
    *frames = bytes;
    return ZF_STORE_READ_OK;
}

//  Checks [offset, offset + size) of the open data file in place: mapped, not copied out.
//  The file's length is checked first, because touching a mapping past the end of a file
//  (one cut behind our back) would raise SIGBUS instead of an error.
static zf_status_t s_check_mapped (int fd, const char *path, const zf_store_task_t *task,
                                   uint64_t piece, const struct stat *info, bool *intact,
                                   zf_error_t *err)
{
    uint64_t offset = piece * task->piece_length;
    uint64_t size = zf_store_piece_size (task, piece);
    if (!info)
        return zf_error_set (err, ZF_E_IO, path, "cannot stat %s: %s", path, strerror (errno));
    if ((uint64_t) info->st_size < offset + size) { //  cut short: the piece is damaged
        *intact = false;
        return ZF_OK;
    }
    uint64_t page = (uint64_t) sysconf (_SC_PAGESIZE);
    uint64_t map_offset = offset - offset % page;
    size_t map_size = (size_t) (offset + size - map_offset);
    uint8_t *map =
        mmap (NULL, map_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t) map_offset);
    if (map == MAP_FAILED)
        return zf_error_set (err, ZF_E_IO, path, "cannot map %s: %s", path, strerror (errno));
    *intact = zf_store_task_intact (task, piece, map + (offset - map_offset), (size_t) size);
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
    struct stat info;
    bool known = false;
    if (fd < 0)
        status = zf_error_set (err, ZF_E_IO, data_path, "cannot open: %s", strerror (errno));
    else {
        //  The file as storage last saw it: this piece's check still counts if it had one.
        known = fstat (fd, &info) == 0;
        bool unchanged = zf_store_task_observe (task, known ? &info : NULL);
        intact = unchanged && zf_store_bit (task->verified, piece);
        if (!intact) //  first located since written, or since the file changed: checked now
            status =
                s_check_mapped (fd, data_path, task, piece, known ? &info : NULL, &intact, err);
        close (fd);
    }
    zf_store_set_bit (task->verified, piece, status == ZF_OK && intact);
    if (status != ZF_OK || !intact) {
        zf_free (data_path);
        return status != ZF_OK ? ZF_STORE_READ_IO
                               : s_piece_damaged (task, piece, known ? &info : NULL, err);
    }
    *path_p = data_path;
    return ZF_STORE_READ_OK;
}

// ---- removal and listing -----------------------------------------------------------------------

void zf_store_remove (zf_store_t *self, zf_store_task_t **task_p)
{
    zf_store_task_t *task = *task_p;
    ZF_ASSERT (task);
    static const char *const files[] = {"meta.0", "meta.1", META_LEGACY, META_TMP, "data"};
    //  Metadata first: if the unlinks are cut short, what remains is a directory without
    //  metadata, which the next start quarantines instead of trusting.
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

// ---- selftest ----------------------------------------------------------------------------------

#include "zf_msgs.h"

//  The newest record on disk, decoded: which pieces it claims (NULL: no valid slot).
static zf_store_task_t *s_test_on_disk (zf_store_t *self, const char *id, int *slot_p)
{
    char *data_path = s_task_file (self, id, "data");
    struct stat info;
    ZF_ASSERT (stat (data_path, &info) == 0);
    zf_free (data_path);
    zf_store_task_t *best = NULL;
    uint64_t best_sequence = 0;
    for (int slot = 0; slot < 2; slot++) {
        uint64_t sequence = 0;
        bool unused;
        zf_error_t err;
        zf_store_task_t *task =
            s_load_slot (self, id, slot, (uint64_t) info.st_size, &sequence, &unused, &err);
        if (task && sequence > best_sequence) {
            zf_store_task_destroy (&best);
            best = task;
            best_sequence = sequence;
            if (slot_p)
                *slot_p = slot;
        } else
            zf_store_task_destroy (&task);
    }
    return best;
}

//  A piece written the way the actor does it, all steps on this thread.
static zf_status_t s_test_write (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                 uint8_t fill)
{
    size_t size = (size_t) zf_store_piece_size (task, piece);
    zframe_t *bytes = zframe_new (NULL, size);
    memset (zframe_data (bytes), fill, size);
    zf_store_write_t write;
    zf_store_write_prepare (self, task, piece, &bytes, NULL, &write);
    zf_store_write_run (&write.io);
    zf_status_t status = zf_store_write_finish (self, task, &write, NULL, NULL);
    zframe_destroy (&write.bytes);
    zf_store_write_clear (&write);
    return status;
}

static void s_test_flip (zf_store_t *self, const char *id, const char *file, off_t offset)
{
    char *path = s_task_file (self, id, file);
    int fd = open (path, O_RDWR | O_CLOEXEC);
    uint8_t byte = 0;
    ZF_ASSERT (fd >= 0 && pread (fd, &byte, 1, offset) == 1);
    byte ^= 0x20;
    ZF_ASSERT (pwrite (fd, &byte, 1, offset) == 1 && close (fd) == 0);
    zf_free (path);
}

static void s_test_check_piece (zf_store_t *self, zf_store_task_t *task, uint64_t piece,
                                uint8_t fill)
{
    zmsg_t *frames = NULL;
    zf_error_t err;
    //  In one frame and in the smallest parts a reader may ask for: the same bytes.
    for (uint64_t frame_max = 0; frame_max <= 1; frame_max++) {
        ZF_ASSERT (zf_store_read_piece (self, task, piece, frame_max, &frames, &err)
                   == ZF_STORE_READ_OK);
        uint64_t size = 0;
        for (zframe_t *frame = zmsg_first (frames); frame; frame = zmsg_next (frames)) {
            ZF_ASSERT (frame_max == 0 || zframe_size (frame) <= ZF_STORE_FRAME_MIN);
            for (size_t index = 0; index < zframe_size (frame); index++)
                ZF_ASSERT (zframe_data (frame)[index] == fill);
            size += zframe_size (frame);
        }
        ZF_ASSERT (size == zf_store_piece_size (task, piece));
        zmsg_destroy (&frames);
    }
}

void zf_store_test (bool verbose)
{
    printf (" * zf_store: ");
    char dir[] = "/tmp/zf-store-test-XXXXXX";
    ZF_ASSERT (mkdtemp (dir));
    zf_error_t err;
    zf_store_t *store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT (store);
    char id[ZF_STORE_ID_LEN + 1];
    memset (id, 'a', ZF_STORE_ID_LEN);
    id[ZF_STORE_ID_LEN] = '\0';
    zf_store_spec_t spec = {
        .id = id, .url = "http://origin/a", .content_length = 32768, .piece_length = 8192};
    zf_store_task_t *task;
    ZF_ASSERT (zf_store_create (store, &spec, 1000, &task, &err) == ZF_OK);

    //  The first record (sequence 1, nothing claimed) is in slot 1; slot 0 exists, empty.
    int slot = -1;
    zf_store_task_t *disk = s_test_on_disk (store, id, &slot);
    ZF_ASSERT (disk && slot == 1 && disk->finished_count == 0);
    zf_store_task_destroy (&disk);
    char *slot0 = s_task_file (store, id, "meta.0");
    struct stat info;
    ZF_ASSERT (stat (slot0, &info) == 0 && info.st_size == 0);

    //  A written piece is finished (served) and pending; a commit claims it, in the other slot.
    ZF_ASSERT (s_test_write (store, task, 0, 0x10) == ZF_OK);
    ZF_ASSERT (zf_store_is_finished (task, 0) && !zf_store_is_claimed (task, 0));
    s_test_check_piece (store, task, 0, 0x10);
    ZF_ASSERT (zf_store_needs_commit (task));
    zf_store_commit_t commit;
    ZF_ASSERT (zf_store_commit_begin (store, task, &commit, &err) == ZF_OK);
    //  A piece written while the commit runs is not in its record: pending still after it.
    ZF_ASSERT (s_test_write (store, task, 1, 0x11) == ZF_OK);
    zf_store_commit_run (&commit);
    ZF_ASSERT (zf_store_commit_end (store, zf_store_commit_task (store, &commit), &commit)
               == ZF_OK);
    ZF_ASSERT (zf_store_is_claimed (task, 0) && !zf_store_is_claimed (task, 1));
    disk = s_test_on_disk (store, id, &slot);
    ZF_ASSERT (disk && slot == 0 && disk->finished_count == 1);
    zf_store_task_destroy (&disk);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK); //  sequence 3, slot 1: 0 and 1
    ZF_ASSERT (zf_store_is_claimed (task, 1));
    ZF_ASSERT (s_test_write (store, task, 2, 0x12) == ZF_OK);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK); //  sequence 4, slot 0: 0, 1, 2

    //  The newest record torn (a byte of its payload, or its tail cut): the older one counts,
    //  and it claims less. A restart over the torn slot writes the next record into it.
    s_test_flip (store, id, "meta.0", 40);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    task = zf_store_find (store, id);
    ZF_ASSERT (task && task->finished_count == 2 && task->meta_sequence == 3);
    ZF_ASSERT (zf_store_is_claimed (task, 1) && !zf_store_is_finished (task, 2));
    s_test_check_piece (store, task, 1, 0x11);
    ZF_ASSERT (s_test_write (store, task, 2, 0x12) == ZF_OK);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK);
    disk = s_test_on_disk (store, id, &slot);
    ZF_ASSERT (disk && slot == 0 && disk->finished_count == 3);
    zf_store_task_destroy (&disk);
    char *slot1 = s_task_file (store, id, "meta.1");
    ZF_ASSERT (stat (slot1, &info) == 0 && truncate (slot1, info.st_size - 1) == 0);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT ((task = zf_store_find (store, id)) && task->finished_count == 3);

    //  Both slots bad: nothing can be trusted, the directory is quarantined.
    s_test_flip (store, id, "meta.0", 30);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT (!zf_store_find (store, id) && zf_store_quarantined (store) == 1);

    //  A cache from before the slots: its meta file is read once and moved into a slot.
    ZF_ASSERT (zf_store_create (store, &spec, 1000, &task, &err) == ZF_OK);
    ZF_ASSERT (s_test_write (store, task, 3, 0x13) == ZF_OK);
    size_t size = 0;
    uint8_t *record = zf_store_task_encode (task, &size);
    char *legacy = s_task_file (store, id, META_LEGACY);
    int fd = open (legacy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    ZF_ASSERT (fd >= 0 && write (fd, record, size) == (ssize_t) size && close (fd) == 0);
    zf_free (record);
    ZF_ASSERT (unlink (slot0) == 0 && unlink (slot1) == 0);
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    task = zf_store_find (store, id);
    ZF_ASSERT (task && task->finished_count == 1 && zf_store_is_claimed (task, 3));
    s_test_check_piece (store, task, 3, 0x13);
    ZF_ASSERT (access (legacy, F_OK) != 0 && access (slot0, F_OK) == 0);
    disk = s_test_on_disk (store, id, NULL);
    ZF_ASSERT (disk && disk->finished_count == 1);
    zf_store_task_destroy (&disk);

    //  Removed and created again while a write is on its way: the old generation's write
    //  lands in a range the new task has not written (same length) and is claimed by
    //  nobody, or finds a data file of another length and writes nothing.
    zframe_t *bytes = zframe_new (NULL, 8192);
    memset (zframe_data (bytes), 0x66, 8192);
    zf_store_write_t stale;
    zf_store_write_prepare (store, task, 1, &bytes, NULL, &stale);
    zf_store_commit_t stale_commit;
    ZF_ASSERT (zf_store_commit_begin (store, task, &stale_commit, &err) == ZF_OK);
    zf_store_remove (store, &task);
    zf_store_spec_t again = spec;
    again.piece_length = 16384;
    ZF_ASSERT (zf_store_create (store, &again, 2000, &task, &err) == ZF_OK);
    zf_store_write_run (&stale.io);
    zf_store_commit_run (&stale_commit); //  into the old, unlinked slot it opened
    ZF_ASSERT (stale.status == ZF_OK && zf_store_write_task (store, &stale) == NULL);
    ZF_ASSERT (zf_store_commit_task (store, &stale_commit) == NULL);
    zf_store_commit_end (store, NULL, &stale_commit);
    zframe_destroy (&stale.bytes);
    zf_store_write_clear (&stale);
    ZF_ASSERT (task->finished_count == 0);
    disk = s_test_on_disk (store, id, NULL);
    ZF_ASSERT (disk && disk->finished_count == 0 && disk->piece_length == 16384);
    zf_store_task_destroy (&disk);
    ZF_ASSERT (s_test_write (store, task, 0, 0x20) == ZF_OK); //  over the stray bytes
    s_test_check_piece (store, task, 0, 0x20);
    bytes = zframe_new (NULL, 16384);
    zf_store_write_prepare (store, task, 1, &bytes, NULL, &stale);
    zf_store_remove (store, &task);
    again.content_length = 50000;
    ZF_ASSERT (zf_store_create (store, &again, 3000, &task, &err) == ZF_OK);
    zf_store_write_run (&stale.io); //  finds a file of another length: writes nothing
    ZF_ASSERT (stale.status == ZF_E_REFUSED && strstr (stale.err.message, "changed under storage"));
    zframe_destroy (&stale.bytes);
    zf_store_write_clear (&stale);

    //  Durable: commits fdatasync the data and the record; the claims read back the same.
    zf_store_set_durable (store, true);
    ZF_ASSERT (s_test_write (store, task, 2, 0x22) == ZF_OK);
    ZF_ASSERT (zf_store_save (store, task, &err) == ZF_OK && zf_store_is_claimed (task, 2));
    zf_store_destroy (&store);
    store = zf_store_new (dir, "selftest", 1000, &err);
    ZF_ASSERT ((task = zf_store_find (store, id)) && task->finished_count == 1);
    s_test_check_piece (store, task, 2, 0x22);
    zf_store_destroy (&store);

    zf_free (slot0);
    zf_free (slot1);
    zf_free (legacy);
    char *command = zf_asprintf ("rm -rf '%s'", dir);
    ZF_ASSERT (system (command) == 0);
    zf_free (command);
    if (verbose)
        printf ("(slots, torn records, legacy, generations, durable) ");
    printf ("OK\n");
}
