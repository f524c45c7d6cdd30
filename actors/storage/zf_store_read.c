/*  zf_store_read.c — reading a piece back (zf_store_read_piece) and locating it for a reader
    on this host (zf_store_locate_piece), each checked against the checksum taken when it was
    written; a piece that fails is damaged and missing from then on.

    Separate from zf_store.c and zf_store_write.c: the serving side of the store. */
#include "storage/zf_store_internal.h"
#include "storage/zf_store_task.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

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
        if (zf_store_pread_all (fd, path, zframe_data (frame), zframe_size (frame), offset, err)
            != ZF_OK)
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
    char *data_path = zf_store_task_path (self, task->id, "data");
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
    char *data_path = zf_store_task_path (self, task->id, "data");
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
