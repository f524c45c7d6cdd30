/*  zf_get_output.c — PATH.part, zfly-get's output: pieces written into it at their offsets
    (from the bus, or copied from the cache file cheapest first: a reflink, mapped pages written
    with O_DIRECT, copy_file_range, or through a buffer), hashed for --digest, and at the end
    synced, checked and renamed to PATH.

    Separate from the download (zf_get_download.c), which decides what goes where, and from
    the hard link (zf_get_link.c), which writes nothing. */
#include "zf_get.h"
#include "zf_clock.h"
#include "zf_human.h"
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define SHA256_SIZE 32

// --- reading pieces into the file -----------------------------------------------------------

//  Writes at `offset` of PATH.part. Every write names its offset (the bus path, copies from
//  the cache and reflinks alike), so a piece written again lands where it belongs. data may
//  be the cache file's pages mapped (s_copy_mapped): if that file was cut short under us the
//  kernel answers EFAULT, and with source_gone given we set it and return false, not failing.
bool zf_get_write_all (zf_get_t *self, const uint8_t *data, size_t size, uint64_t offset,
                       bool *source_gone)
{
    while (size > 0) {
        ssize_t written = pwrite (self->fd, data, size, (off_t) offset);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0 && errno == EFAULT && source_gone) {
            *source_gone = true;
            return false;
        }
        if (written <= 0) {
            zf_get_fail (self, ZF_GET_EXIT_OTHER, "cannot write %s: %s", self->part_path,
                         strerror (errno));
            return false;
        }
        data += written;
        offset += (uint64_t) written;
        size -= (size_t) written;
    }
    return true;
}

void zf_get_complete (zf_get_t *self)
{
    if (self->link_fd >= 0 && !zf_get_link_output (self))
        return; //  copying it all from the start, or failed
    //  A copy is synced before it takes PATH's name; a link is the cache's file, as durable
    //  as the cache makes it (s_link_*).
    if (self->link_fd < 0 && fdatasync (self->fd) != 0 && errno != EINVAL) {
        zf_get_fail (self, ZF_GET_EXIT_OTHER, "cannot write %s: %s", self->part_path,
                     strerror (errno));
        return;
    }
    if (*self->options->digest) {
        uint8_t hash[SHA256_SIZE];
        unsigned int hash_size = 0;
        EVP_DigestFinal_ex (self->sha, hash, &hash_size);
        char hex[2 * SHA256_SIZE + 1];
        for (size_t index = 0; index < SHA256_SIZE; index++)
            snprintf (hex + 2 * index, 3, "%02x", hash[index]);
        if (!streq (hex, self->options->digest + 7)) {
            zf_get_fail (self, ZF_GET_EXIT_DIGEST,
                         "%s: digest mismatch: the content read from the cache has sha256:%s, "
                         "expected %s; %s not written",
                         self->options->url, hex, self->options->digest, self->options->output);
            return;
        }
    }
    int rc = close (self->fd);
    self->fd = -1;
    if (rc != 0 || rename (self->part_path, self->options->output) != 0) {
        zf_get_fail (self, ZF_GET_EXIT_OTHER, "cannot write %s: %s", self->options->output,
                     strerror (errno));
        return;
    }
    //  A rename onto another name of the same file (PATH linked by an earlier run) does
    //  nothing and leaves PATH.part: PATH is already what it should be.
    if (self->link_fd >= 0)
        (void) unlink (self->part_path);
    zf_get_show_progress (self, true);
    if (self->progress.mode != ZF_GET_PROGRESS_NONE) {
        double seconds = (double) (zf_clock_mono_ms () - self->progress.started_ms) / 1000.0;
        char size_text[32], rate_text[32], source_text[32], parents_text[32];
        zf_human_bytes (self->content_length, size_text, sizeof size_text);
        zf_human_bytes (seconds > 0 ? (uint64_t) ((double) self->content_length / seconds)
                                    : self->content_length,
                        rate_text, sizeof rate_text);
        zf_human_bytes (self->bytes_from_source, source_text, sizeof source_text);
        zf_human_bytes (self->bytes_from_parents, parents_text, sizeof parents_text);
        fprintf (stderr,
                 "zfly-get: saved %s (%s in %.1fs, %s/s; task from source %s, from parents "
                 "%s)\n",
                 self->options->output, size_text, seconds, rate_text, source_text, parents_text);
    }
    zf_get_finish (self, ZF_GET_EXIT_OK);
}

//  Errors that say "this copy method does not apply here" (another filesystem, no support,
//  a file the method refuses): the next method is tried, and this one not again.
static bool s_copy_unsupported (int error)
{
    return error == EXDEV || error == ENOSYS || error == EINVAL || error == EOPNOTSUPP
           || error == ENOTTY || error == EPERM || error == ETXTBSY || error == EBADF;
}

//  Shares the cache file's blocks with PATH.part (btrfs, XFS with reflink): no bytes are
//  copied at all. Returns false when the filesystem cannot, silently: ext4 cannot.
static bool s_clone (zf_get_t *self, int source, uint64_t offset, uint64_t size)
{
    struct file_clone_range range = {
        .src_fd = source, .src_offset = offset, .src_length = size, .dest_offset = offset};
    if (!self->clone_ok || ioctl (self->fd, FICLONERANGE, &range) == 0)
        return self->clone_ok;
    self->clone_ok = false;
    if (self->options->verbose)
        fprintf (stderr, "zfly-get: no reflink copies (%s); copying\n", strerror (errno));
    return false;
}

//  copy_file_range of [offset, offset + size) to the same offset of PATH.part: the kernel
//  copies page cache to page cache. Returns the bytes copied, which are fewer than size when
//  the method does not apply (the caller copies the rest), or -1 after zf_get_fail.
static int64_t s_copy_range (zf_get_t *self, int source, uint64_t offset, uint64_t size)
{
    uint64_t done = 0;
    while (self->copy_range_ok && done < size) {
        loff_t in = (loff_t) (offset + done), out = in;
        ssize_t copied = copy_file_range (source, &in, self->fd, &out, size - done, 0);
        if (copied > 0)
            done += (uint64_t) copied;
        else if (copied < 0 && errno == EINTR)
            continue;
        else if (copied == 0) //  the cache file ends early: the buffered copy finds out
            break;
        else if (s_copy_unsupported (errno)) {
            self->copy_range_ok = false;
            break;
        } else {
            zf_get_fail (self, ZF_GET_EXIT_OTHER, "cannot write %s: %s", self->part_path,
                         strerror (errno));
            return -1;
        }
    }
    return (int64_t) done;
}

//  Writes [offset, offset + size) of PATH.part from aligned memory (our buffer, or mapped
//  pages of the cache file: source_gone as for zf_get_write_all): the aligned part straight to
//  disk (O_DIRECT) when the filesystem allows, the rest through the page cache.
static bool s_write_out (zf_get_t *self, const uint8_t *data, size_t size, uint64_t offset,
                         bool *source_gone)
{
    size_t direct = offset % ZF_GET_DIRECT_ALIGN == 0 ? size - size % ZF_GET_DIRECT_ALIGN : 0;
    while (self->direct_fd >= 0 && direct > 0) {
        ssize_t written = pwrite (self->direct_fd, data, direct, (off_t) offset);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0 && errno == EFAULT && source_gone) {
            *source_gone = true;
            return false;
        }
        if (written <= 0 || written % ZF_GET_DIRECT_ALIGN != 0) {
            if (written < 0 && errno != EINVAL) {
                zf_get_fail (self, ZF_GET_EXIT_OTHER, "cannot write %s: %s", self->part_path,
                             strerror (errno));
                return false;
            }
            close (self->direct_fd); //  EINVAL: the device wants another alignment
            self->direct_fd = -1;
            if (written > 0) {
                data += written;
                offset += (uint64_t) written;
                size -= (size_t) written;
            }
            break;
        }
        data += written;
        offset += (uint64_t) written;
        size -= (size_t) written;
        direct -= (size_t) written;
    }
    return zf_get_write_all (self, data, size, offset, source_gone);
}

uint8_t *zf_get_copy_buffer (zf_get_t *self)
{
    if (!self->copy_buffer
        && posix_memalign ((void **) &self->copy_buffer, ZF_GET_DIRECT_ALIGN, ZF_GET_COPY_BUFFER)
               != 0)
        ZF_ASSERT (!"out of memory");
    return self->copy_buffer;
}

//  The rest through a buffer, hashed on the way for --digest. Returns false when the cache
//  file could not be read (the caller reads the piece over the bus instead), or after zf_get_fail.
static bool s_copy_buffered (zf_get_t *self, int source, uint64_t offset, uint64_t size,
                             bool *retry)
{
    uint8_t *buffer = zf_get_copy_buffer (self);
    while (size > 0) {
        size_t chunk = size < ZF_GET_COPY_BUFFER ? (size_t) size : ZF_GET_COPY_BUFFER;
        ssize_t got = pread (source, buffer, chunk, (off_t) offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            *retry = true;
            return false;
        }
        if (*self->options->digest)
            EVP_DigestUpdate (self->sha, buffer, (size_t) got);
        if (!s_write_out (self, buffer, (size_t) got, offset, NULL))
            return false;
        offset += (uint64_t) got;
        size -= (uint64_t) got;
    }
    return true;
}

//  The piece's pages of the cache file mapped and written from there with O_DIRECT: the disk
//  takes them straight from the cache's page cache, with no copy through our buffer (1 GiB:
//  0.58 s and 0.06 s of CPU instead of 0.8 s and 0.29 s here). Only the kernel reads the
//  mapping, so a cache file cut short under us is an EFAULT (*retry), never a SIGBUS. Where
//  the piece cannot be mapped, through the buffer.
static bool s_copy_mapped (zf_get_t *self, int source, uint64_t offset, uint64_t size, bool *retry)
{
    long page = sysconf (_SC_PAGESIZE);
    void *map = size > 0 && page > 0 && offset % (uint64_t) page == 0
                    ? mmap (NULL, (size_t) size, PROT_READ, MAP_SHARED, source, (off_t) offset)
                    : MAP_FAILED;
    if (map == MAP_FAILED)
        return s_copy_buffered (self, source, offset, size, retry);
    bool done = s_write_out (self, map, (size_t) size, offset, retry);
    munmap (map, (size_t) size);
    return done;
}

//  Copies a located piece from the cache file into PATH.part at its offset, cheapest first:
//  a reflink (no bytes copied); else its mapped pages written with O_DIRECT; else
//  copy_file_range; else read and write through the page cache. Writing PATH.part around
//  the page cache is cheaper than copy_file_range: filling fresh page-cache pages is the
//  dearest part of a write (several times the disk's time on a VM whose memory is faulted in
//  on first use), and PATH.part is fdatasync'ed before the rename anyway, so the disk writes
//  the same bytes either way. With --digest the bytes must be hashed, so they always go
//  through the buffer. Returns false when not done: *retry says the cache file let us down
//  (gone, unreadable, cut short) and the piece should come over the bus; else zf_get_fail ran.
bool zf_get_copy_located (zf_get_t *self, const char *path, uint64_t offset, uint64_t size,
                          bool *retry)
{
    *retry = false;
    int source = open (path, O_RDONLY | O_CLOEXEC);
    if (source < 0) {
        if (self->options->verbose)
            fprintf (stderr, "zfly-get: cannot open the cache file %s (%s); reading over the bus\n",
                     path, strerror (errno));
        *retry = true;
        return false;
    }
    bool done = false;
    if (*self->options->digest) {
        //  A piece cut short after part of it was hashed comes again over the bus: the hash
        //  goes back to where this piece started.
        EVP_MD_CTX *before = EVP_MD_CTX_new ();
        ZF_ASSERT (before && EVP_MD_CTX_copy_ex (before, self->sha) == 1);
        done = s_copy_buffered (self, source, offset, size, retry);
        if (!done && *retry)
            ZF_ASSERT (EVP_MD_CTX_copy_ex (self->sha, before) == 1);
        EVP_MD_CTX_free (before);
    } else if (s_clone (self, source, offset, size))
        done = true;
    else if (self->direct_fd >= 0)
        done = s_copy_mapped (self, source, offset, size, retry);
    else {
        int64_t copied = s_copy_range (self, source, offset, size);
        done = copied >= 0
               && s_copy_buffered (self, source, offset + (uint64_t) copied,
                                   size - (uint64_t) copied, retry);
    }
    close (source);
    return done;
}

//  Empties PATH.part: a new layout (the content changed under a stale copy).
bool zf_get_start_over (zf_get_t *self)
{
    if (ftruncate (self->fd, 0) != 0) {
        zf_get_fail (self, ZF_GET_EXIT_OTHER, "cannot write %s: %s", self->part_path,
                     strerror (errno));
        return false;
    }
    EVP_DigestInit_ex (self->sha, EVP_sha256 (), NULL);
    self->written = 0;
    zf_get_progress_restart (&self->progress);
    return true;
}
