/*  zf_get_link.c — PATH as a second name of the cache file (a hard link), where that is
    possible, instead of a copy.

    Separate from zf_get_output.c: a link writes no bytes; it decides at the first located
    piece, checks each piece's file is still the same, and makes the link at the end. */
#include "zf_get.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// --- PATH as a second name of the cache file (a hard link) -----------------------------------

//  A copy writes every byte a second time, after storage wrote it into the cache, and on a
//  machine where filling page-cache pages costs more than the disk's bandwidth (docs/
//  benchmarks.md "Data plane"), the second write is what zfly-get's time is made of. So where
//  it can, zfly-get makes PATH a hard link of the cache file, as dfget does: where the cache
//  file is on PATH's filesystem and is ours (the daemon runs as we do, e.g. both as root),
//  so that PATH is owned as a copy would be. The link is made when the task is complete,
//  never before, so PATH.part is never the cache file while storage writes pieces into it;
//  until then each located piece is only taken as it is (storage checked it, answering
//  piece.locate) and hashed for --digest. PATH is given the mode a copy would have. It is
//  not synced: it is the cache's file, as durable as the cache makes it (with [storage]
//  fsync = true, synced before the task completes; by default, as curl -o leaves its file).
//  Syncing it would mean waiting for the whole file to reach the disk, where a download
//  into the page cache waits only for what the kernel's dirty limits hold back
//  (docs/benchmarks.md "Large files").
//  What a later write to PATH does to the cache: the next read of a changed piece fails its
//  checksum, and storage, seeing the file has another name, drops the task instead of
//  writing into it (zf_store.h): PATH keeps its bytes, the next download makes a new cache
//  file. Whenever linking goes wrong (the task's file replaced under us, no link possible
//  after all), PATH.part is started over as a copy, with a new reader.

//  At the first located piece: link, or copy?
void zf_get_link_decide (zf_get_t *self, const char *cache_path)
{
    self->link_decided = true;
    if (self->options->copy)
        return;
    int fd = open (cache_path, O_RDONLY | O_CLOEXEC);
    struct stat cache, part;
    if (fd >= 0 && fstat (fd, &cache) == 0 && fstat (self->fd, &part) == 0
        && cache.st_dev == part.st_dev && cache.st_uid == geteuid () && S_ISREG (cache.st_mode)) {
        self->link_fd = fd;
        self->link_path = zf_strdup (cache_path);
        self->link_dev = cache.st_dev;
        self->link_ino = cache.st_ino;
        if (self->options->verbose)
            fprintf (stderr, "zfly-get: %s will be a hard link of the cache file %s\n",
                     self->options->output, cache_path);
    } else if (fd >= 0)
        close (fd);
}

//  Gives up linking: PATH.part is emptied and read again from the first piece, as a copy,
//  by a new reader (the old one may be the caller: a reader may be destroyed from inside its
//  own callback).
static void s_link_abandon (zf_get_t *self, const char *why)
{
    if (self->options->verbose)
        fprintf (stderr, "zfly-get: no hard link of the cache file (%s); copying from the start\n",
                 why);
    close (self->link_fd);
    self->link_fd = -1;
    zf_free (self->link_path);
    self->link_path = NULL;
    zf_task_reader_destroy (&self->reader);
    if (!zf_get_start_over (self))
        return;
    if (self->locate && self->direct_fd < 0)
        self->direct_fd = open (self->part_path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    zf_error_t err;
    if (!zf_get_begin (self, &err)) {
        zf_get_progress_break (&self->progress);
        zf_get_no_daemon (self, self->fetcher_endpoint, err.message);
        zf_get_finish (self, ZF_GET_EXIT_UNREACHABLE);
    }
}

//  A located piece while linking: hashed for --digest. False when linking was abandoned (a
//  new reader starts over), or after zf_get_fail.
bool zf_get_link_piece (zf_get_t *self, const char *path, uint64_t offset, uint64_t size)
{
    struct stat now;
    if (!streq (path, self->link_path) || stat (path, &now) != 0 || now.st_dev != self->link_dev
        || now.st_ino != self->link_ino) {
        s_link_abandon (self, "the cache file changed");
        return false;
    }
    if (!*self->options->digest)
        return true;
    uint8_t *buffer = zf_get_copy_buffer (self);
    for (uint64_t done = 0; done < size;) {
        size_t chunk =
            size - done < ZF_GET_COPY_BUFFER ? (size_t) (size - done) : ZF_GET_COPY_BUFFER;
        ssize_t got = pread (self->link_fd, buffer, chunk, (off_t) (offset + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            s_link_abandon (self, "the cache file was cut short");
            return false;
        }
        EVP_DigestUpdate (self->sha, buffer, (size_t) got);
        done += (uint64_t) got;
    }
    return true;
}

//  PATH.part becomes a name of the very file the pieces were located in (not of whatever its
//  path names now: through /proc/self/fd, else by path and then compared), with a copy's
//  mode. False when it cannot (linking is abandoned: a new reader copies it all), or after
//  zf_get_fail.
bool zf_get_link_output (zf_get_t *self)
{
    close (self->fd);
    self->fd = -1;
    if (self->direct_fd >= 0)
        close (self->direct_fd);
    self->direct_fd = -1;
    unlink (self->part_path);
    char proc[48];
    snprintf (proc, sizeof proc, "/proc/self/fd/%d", self->link_fd);
    bool linked = linkat (AT_FDCWD, proc, AT_FDCWD, self->part_path, AT_SYMLINK_FOLLOW) == 0;
    struct stat made;
    if (!linked && link (self->link_path, self->part_path) == 0) {
        linked = stat (self->part_path, &made) == 0 && made.st_dev == self->link_dev
                 && made.st_ino == self->link_ino;
        if (!linked)
            unlink (self->part_path);
    }
    int error = errno;
    self->fd =
        open (self->part_path,
              linked ? O_RDONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (self->fd < 0) {
        zf_get_fail (self, ZF_GET_EXIT_OTHER, "cannot create %s: %s", self->part_path,
                     strerror (errno));
        return false;
    }
    if (!linked) {
        s_link_abandon (self, strerror (error));
        return false;
    }
    mode_t mask = umask (0);
    umask (mask);
    (void) fchmod (self->fd, 0666 & ~mask);
    return true;
}
