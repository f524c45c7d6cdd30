/*  zf_store_internal.h — what the parts of the store share, and nothing else uses.

    zf_store.h is one class in four files: zf_store.c is the directory (opening and loading it,
    creating, removing and listing tasks), zf_store_write.c writes pieces and commits metadata
    (the jobs that run on worker threads), zf_store_read.c reads pieces back and locates them,
    checking each, and zf_store_test.c is the selftest. They share the task directory's file
    names and a few file helpers. */
#ifndef ZF_STORE_INTERNAL_H_INCLUDED
#define ZF_STORE_INTERNAL_H_INCLUDED

#include "storage/zf_store.h"

#define ZF_STORE_META_LEGACY "meta" //  before the slots: one file, replaced by rename
#define ZF_STORE_META_TMP    "meta.tmp"

//  The two metadata slot files of a task directory (zf_meta_slot.h).
extern const char *const zf_store_slot_names[2];

//  DIR/tasks/XX/ID/FILE, the caller's to free.
char *zf_store_task_path (zf_store_t *self, const char *id, const char *file);

//  Reads exactly size bytes at offset; a short file is an error (the data file was cut behind
//  our back).
zf_status_t zf_store_pread_all (int fd, const char *path, uint8_t *data, size_t size,
                                uint64_t offset, zf_error_t *err);

//  One slot of a task directory: its record decoded into a task, or NULL and why not.
//  *unused: the slot is missing or empty (never written), which is no news.
zf_store_task_t *zf_store_load_slot (zf_store_t *self, const char *id, int slot, uint64_t data_size,
                                     uint64_t *sequence, bool *unused, zf_error_t *err);

#endif
