/*  zf_proxy_files.c — open data files by path, reference-counted (see zf_proxy_files.h). */
#include "zf_proxy_files.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct zf_proxy_file_s {
    int fd;
    int refs;
    dev_t device;
    ino_t inode;
    int64_t used_ms; //  last zf_proxy_files_open that returned it
    char *path;
};

struct zf_proxy_files_s {
    zhashx_t *files; //  path -> zf_proxy_file_t, holding one reference each
};

static void s_file_release_item (void **item_p)
{
    zf_proxy_file_release ((zf_proxy_file_t **) item_p);
}

zf_proxy_files_t *zf_proxy_files_new (void)
{
    zf_proxy_files_t *self = zf_calloc (1, sizeof *self);
    self->files = zhashx_new ();
    zhashx_set_destructor (self->files, s_file_release_item);
    return self;
}

void zf_proxy_files_destroy (zf_proxy_files_t **self_p)
{
    ZF_ASSERT (self_p);
    zf_proxy_files_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->files);
    zf_free (self);
    *self_p = NULL;
}

static zf_proxy_file_t *s_file_open (const char *path, zf_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    struct stat status;
    if (fd < 0 || fstat (fd, &status) != 0) {
        zf_error_set (err, ZF_E_IO, path, "cannot open %s: %s", path, strerror (errno));
        if (fd >= 0)
            close (fd);
        return NULL;
    }
    zf_proxy_file_t *file = zf_calloc (1, sizeof *file);
    file->fd = fd;
    file->refs = 1;
    file->device = status.st_dev;
    file->inode = status.st_ino;
    file->path = zf_strdup (path);
    return file;
}

zf_proxy_file_t *zf_proxy_files_open (zf_proxy_files_t *self, const char *path, int64_t now_ms,
                                      zf_error_t *err)
{
    zf_proxy_file_t *file = zhashx_lookup (self->files, path);
    if (file) {
        struct stat status;
        if (stat (path, &status) == 0 && status.st_dev == file->device
            && status.st_ino == file->inode) {
            file->used_ms = now_ms;
            return zf_proxy_file_ref (file);
        }
        zhashx_delete (self->files, path); //  replaced or removed: responses keep their own
    }
    file = s_file_open (path, err);
    if (!file)
        return NULL;
    file->used_ms = now_ms;
    zhashx_insert (self->files, path, file);
    return zf_proxy_file_ref (file);
}

static void *s_path_dup (const void *path)
{
    return zf_strdup (path);
}

static void s_path_free (void **path_p)
{
    zf_free (*path_p);
    *path_p = NULL;
}

void zf_proxy_files_sweep (zf_proxy_files_t *self, int64_t now_ms, int64_t idle_ms)
{
    zlistx_t *idle = zlistx_new ();
    zlistx_set_duplicator (idle, s_path_dup);
    zlistx_set_destructor (idle, s_path_free);
    for (zf_proxy_file_t *file = zhashx_first (self->files); file; file = zhashx_next (self->files))
        if (file->refs == 1 && now_ms - file->used_ms >= idle_ms)
            zlistx_add_end (idle, file->path);
    //  deleted after the walk: deleting moves zhashx's cursor
    for (const char *path = zlistx_first (idle); path; path = zlistx_next (idle))
        zhashx_delete (self->files, path);
    zlistx_destroy (&idle);
}

size_t zf_proxy_files_size (zf_proxy_files_t *self)
{
    return zhashx_size (self->files);
}

zf_proxy_file_t *zf_proxy_file_ref (zf_proxy_file_t *file)
{
    ZF_ASSERT (file && file->refs > 0);
    file->refs++;
    return file;
}

void zf_proxy_file_release (zf_proxy_file_t **file_p)
{
    ZF_ASSERT (file_p);
    zf_proxy_file_t *file = *file_p;
    if (!file)
        return;
    *file_p = NULL;
    ZF_ASSERT (file->refs > 0);
    if (--file->refs > 0)
        return;
    close (file->fd);
    zf_free (file->path);
    zf_free (file);
}

int zf_proxy_file_fd (const zf_proxy_file_t *file)
{
    return file->fd;
}

const char *zf_proxy_file_path (const zf_proxy_file_t *file)
{
    return file->path;
}

//  ---------------------------------------------------------------------------------------------

static void s_test_write (const char *path, const char *text)
{
    FILE *handle = fopen (path, "w");
    ZF_ASSERT (handle);
    ZF_ASSERT (fputs (text, handle) >= 0);
    ZF_ASSERT (fclose (handle) == 0);
}

void zf_proxy_files_test (bool verbose)
{
    if (verbose)
        printf (" * zf_proxy_files: ");
    char dir[] = "/tmp/zf_proxy_files_XXXXXX";
    ZF_ASSERT (mkdtemp (dir));
    char *path = zf_asprintf ("%s/data", dir);
    char *moved = zf_asprintf ("%s/data.old", dir);
    s_test_write (path, "first");
    zf_error_t err;
    zf_proxy_files_t *files = zf_proxy_files_new ();

    //  one open file per path, whoever asks
    zf_proxy_file_t *one = zf_proxy_files_open (files, path, 0, &err);
    zf_proxy_file_t *two = zf_proxy_files_open (files, path, 10, &err);
    ZF_ASSERT (one && one == two && zf_proxy_files_size (files) == 1);
    ZF_ASSERT (streq (zf_proxy_file_path (one), path));

    //  the path now names another file (the task was evicted and made again): a new open,
    //  while the old one stays readable for whoever holds it
    ZF_ASSERT (rename (path, moved) == 0);
    s_test_write (path, "second");
    zf_proxy_file_t *three = zf_proxy_files_open (files, path, 20, &err);
    ZF_ASSERT (three && three != one && zf_proxy_files_size (files) == 1);
    char text[8] = "";
    ZF_ASSERT (pread (zf_proxy_file_fd (one), text, 5, 0) == 5 && memcmp (text, "first", 5) == 0);
    ZF_ASSERT (pread (zf_proxy_file_fd (three), text, 6, 0) == 6);
    ZF_ASSERT (memcmp (text, "second", 6) == 0);
    zf_proxy_file_release (&one);
    zf_proxy_file_release (&two);
    ZF_ASSERT (one == NULL && two == NULL);

    //  held files survive the sweep; idle ones are closed once unused long enough
    zf_proxy_files_sweep (files, 1000, 100);
    ZF_ASSERT (zf_proxy_files_size (files) == 1);
    zf_proxy_file_release (&three);
    zf_proxy_files_sweep (files, 50, 100);
    ZF_ASSERT (zf_proxy_files_size (files) == 1);
    zf_proxy_files_sweep (files, 120, 100);
    ZF_ASSERT (zf_proxy_files_size (files) == 0);

    //  a missing file is an error that names it
    ZF_ASSERT (unlink (path) == 0);
    ZF_ASSERT (zf_proxy_files_open (files, path, 200, &err) == NULL);
    ZF_ASSERT (err.code == ZF_E_IO && strstr (err.message, path));

    zf_proxy_files_destroy (&files);
    ZF_ASSERT (files == NULL);
    ZF_ASSERT (unlink (moved) == 0 && rmdir (dir) == 0);
    zf_free (path);
    zf_free (moved);
    if (verbose)
        printf ("OK\n");
}
