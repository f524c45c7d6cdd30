/*  zf_proxy_files.h — the proxy's open data files, shared by every connection.

    A cache hit is sent with sendfile from storage's data file (piece.locate gives the path of
    a verified piece). Each path is opened read-only once and kept while responses use it;
    a file nobody has used for a while is closed by zf_proxy_files_sweep. Every open checks
    that the path still names the inode held open: storage may have evicted the task and
    created it again, and the old inode would lack the pieces just verified in the new one.
    Files are reference-counted: a response keeps its file open even after the sweep or
    the cache itself has let go of it. */
#ifndef ZF_PROXY_FILES_H_INCLUDED
#define ZF_PROXY_FILES_H_INCLUDED

#include "zf_error.h"

typedef struct zf_proxy_files_s zf_proxy_files_t;
typedef struct zf_proxy_file_s zf_proxy_file_t;

zf_proxy_files_t *zf_proxy_files_new (void);
//  Lets go of every cached file; those still referenced stay open until released.
void zf_proxy_files_destroy (zf_proxy_files_t **self_p);

//  A new reference to the open file at path (opened now, or the cached one when the path
//  still names it); NULL with err (ZF_E_IO) when it cannot be opened.
zf_proxy_file_t *zf_proxy_files_open (zf_proxy_files_t *self, const char *path, int64_t now_ms,
                                      zf_error_t *err);

//  Closes files no response holds that were last opened idle_ms or more before now_ms.
void zf_proxy_files_sweep (zf_proxy_files_t *self, int64_t now_ms, int64_t idle_ms);

//  Files in the cache (for tests and logs).
size_t zf_proxy_files_size (zf_proxy_files_t *self);

//  One more reference to file.
zf_proxy_file_t *zf_proxy_file_ref (zf_proxy_file_t *file);
//  Drops a reference and NULLs the pointer; the last one closes the file.
void zf_proxy_file_release (zf_proxy_file_t **file_p);
int zf_proxy_file_fd (const zf_proxy_file_t *file);
const char *zf_proxy_file_path (const zf_proxy_file_t *file);

void zf_proxy_files_test (bool verbose);

#endif
