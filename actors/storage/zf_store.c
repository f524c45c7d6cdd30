/*  zf_store.c — the cache directory (see zf_store.h for the layout): opening it and loading
    the tasks found there, creating, removing and listing tasks. Piece writes and commits are
    in zf_store_write.c, reads in zf_store_read.c (zf_store_internal.h). */
#include "storage/zf_store_internal.h"
#include "zf_log.h"
#include "storage/zf_meta_slot.h"
#include "storage/zf_store_task.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define META_MAX_SIZE (ZF_META_SLOT_HEADER + ZF_META_SLOT_PAYLOAD_MAX + ZF_META_SLOT_TRAILER)

const char *const zf_store_slot_names[2] = {"meta.0", "meta.1"};

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

char *zf_store_task_path (zf_store_t *self, const char *id, const char *file)
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

//  Reads exactly size bytes; a short file is an error (the data file was cut behind our back).
zf_status_t zf_store_pread_all (int fd, const char *path, uint8_t *data, size_t size,
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
    if (zf_store_pread_all (fd, path, data, *size, 0, err) != ZF_OK) {
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

// ---- loading -----------------------------------------------------------------------------------

//  One slot of a task directory: its record decoded into a task, or NULL and why not.
//  *unused: the slot is missing or empty (never written), which is no news.
zf_store_task_t *zf_store_load_slot (zf_store_t *self, const char *id, int slot, uint64_t data_size,
                                     uint64_t *sequence, bool *unused, zf_error_t *err)
{
    char *path = zf_store_task_path (self, id, zf_store_slot_names[slot]);
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
    char *path = zf_store_task_path (self, id, ZF_STORE_META_LEGACY);
    size_t size = 0;
    uint8_t *bytes = s_read_file (path, META_MAX_SIZE, &size, err);
    zf_store_task_t *task = bytes ? zf_store_task_decode (id, bytes, size, data_size, err) : NULL;
    zf_free (bytes);
    if (task) {
        task->generation = ++self->last_generation;
        zf_error_t save_err;
        char *dir = s_task_dir (self, id);
        char *other =
            zf_store_task_path (self, id, zf_store_slot_names[0]); //  the first record goes to 1
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
    char *tmp_path = zf_store_task_path (self, id, ZF_STORE_META_TMP);
    unlink (tmp_path); //  left over from a rename interrupted before the slots
    zf_free (tmp_path);
    char *data_path = zf_store_task_path (self, id, "data");
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
        found[slot] = zf_store_load_slot (self, id, slot, data_size, &sequence[slot], &unused[slot],
                                          &why[slot]);
    int newest = !found[0] ? 1 : !found[1] ? 0 : sequence[1] > sequence[0] ? 1 : 0;
    zf_store_task_t *task = found[newest];
    if (task) {
        int other = 1 - newest;
        if (!found[other] && !unused[other]) //  torn or damaged: worth a line
            zf_notice (self->log_name, "task=%s %s not usable (%s), loaded %s", id,
                       zf_store_slot_names[other], why[other].message, zf_store_slot_names[newest]);
        zf_store_task_destroy (&found[other]);
        task->meta_sequence = sequence[newest];
        task->generation = ++self->last_generation;
        return task;
    }
    char *legacy = zf_store_task_path (self, id, ZF_STORE_META_LEGACY);
    bool has_legacy = access (legacy, F_OK) == 0;
    zf_free (legacy);
    if (has_legacy)
        return s_load_legacy (self, id, data_size, err);
    int failed = unused[1] ? 0 : 1; //  the slot that holds something says most
    zf_error_set (err, why[failed].code, zf_store_slot_names[failed], "%s", why[failed].message);
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
    const char *const files[] = {"data", zf_store_slot_names[0], zf_store_slot_names[1]};
    for (size_t index = 0; index < ZF_ARRAY_LEN (files) && status == ZF_OK; index++) {
        char *path = zf_store_task_path (self, spec->id, files[index]);
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

void zf_store_set_durable (zf_store_t *self, bool durable)
{
    self->durable = durable;
}

bool zf_store_durable (zf_store_t *self)
{
    return self->durable;
}

// ---- removal and listing -----------------------------------------------------------------------

void zf_store_remove (zf_store_t *self, zf_store_task_t **task_p)
{
    zf_store_task_t *task = *task_p;
    ZF_ASSERT (task);
    static const char *const files[] = {"meta.0", "meta.1", ZF_STORE_META_LEGACY, ZF_STORE_META_TMP,
                                        "data"};
    //  Metadata first: if the unlinks are cut short, what remains is a directory without
    //  metadata, which the next start quarantines instead of trusting.
    for (size_t index = 0; index < ZF_ARRAY_LEN (files); index++) {
        char *path = zf_store_task_path (self, task->id, files[index]);
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
