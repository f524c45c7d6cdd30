/*  zf_store_write.c — writing pieces and committing metadata, each in three steps (zf_store.h):
    prepared on the actor's loop, run on a worker thread (zf_io_worker.h), settled on the loop
    again. The run steps touch no store or task, only the files the first step named.

    Separate from zf_store.c: these are the store's disk writes while tasks run, not the
    directory's life (open, load, create, remove). */
#include "storage/zf_store_internal.h"
#include "storage/zf_meta_slot.h"
#include "storage/zf_store_task.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

//  Linux sizes new page-cache folios by the length of the write that creates them. Large
//  folios come from large free blocks, which a VM whose balloon reports free memory to the
//  host (virtio-balloon free page reporting, as in Firecracker) has handed back, so each one
//  costs host page faults: on such a VM, 1 GiB written in 1-4 MiB calls took 1.6-1.7 s, in
//  32 KiB calls 0.32 s (docs/benchmarks.md, tools/bench/pagecache_writes.py). Small writes
//  keep to small folios; elsewhere they cost some thousand more system calls per GiB.
#define WRITE_SLICE (32 * 1024)

//  *no_space: the write failed because the filesystem (or the user's quota) is full.
static zf_status_t s_pwrite_all (int fd, const char *path, const uint8_t *data, size_t size,
                                 uint64_t offset, bool *no_space, zf_error_t *err)
{
    while (size > 0) {
        size_t slice = size < WRITE_SLICE ? size : WRITE_SLICE;
        ssize_t written = pwrite (fd, data, slice, (off_t) offset);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0 && (errno == ENOSPC || errno == EDQUOT))
            *no_space = true;
        if (written <= 0)
            return zf_error_set (err, ZF_E_IO, path, "cannot write %s: %s", path,
                                 written < 0 ? strerror (errno) : "no progress");
        data += written;
        offset += (uint64_t) written;
        size -= (size_t) written;
    }
    return ZF_OK;
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
    commit->slot_path =
        zf_store_task_path (self, task->id, zf_store_slot_names[commit->sequence % 2]);
    commit->slot_fd = open (commit->slot_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    zf_status_t status = ZF_OK;
    if (commit->slot_fd < 0)
        status = zf_error_set (err, ZF_E_IO, commit->slot_path, "cannot open %s: %s",
                               commit->slot_path, strerror (errno));
    if (status == ZF_OK && zf_store_durable (self)) {
        char *data_path = zf_store_task_path (self, task->id, "data");
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
    write->path = zf_store_task_path (self, task->id, "data");
    write->offset = piece * task->piece_length;
    write->file_length = task->content_length;
    write->durable = zf_store_durable (self);
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
    write->no_space = false;
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
        write->status = s_pwrite_all (fd, write->path, data, size, write->offset, &write->no_space,
                                      &write->err);
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
