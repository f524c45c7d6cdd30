/*  zf_store_task.h — one task of the cache in memory: its bitmaps, checksums and digests, what
    its metadata record says, and what storage knows of its data file. No files are touched
    here (the zf_store*.c files do that); only they and the storage actor (zf_storage*.c) use
    these.

    A piece is, in order: missing; finished (written and checked: served from now on) and
    pending; committing (claimed by the record being written); claimed (by a record written
    in full). A piece found damaged is missing again at once. */
#ifndef ZF_STORE_TASK_H_INCLUDED
#define ZF_STORE_TASK_H_INCLUDED

#include "storage/zf_store.h"

zf_store_task_t *zf_store_task_new (const char *id, uint64_t content_length, uint64_t piece_length);
void zf_store_task_destroy (zf_store_task_t **task_p);

uint64_t zf_store_piece_count (uint64_t content_length, uint64_t piece_length);
size_t zf_store_bitmap_size (uint64_t piece_count);
bool zf_store_bit (const uint8_t *bitmap, uint64_t index);
void zf_store_set_bit (uint8_t *bitmap, uint64_t index, bool value);

//  XXH3-64 of the bytes, never 0 (0 marks an unknown checksum in the metadata).
uint64_t zf_store_checksum (const uint8_t *data, size_t size);

//  The bytes read back are the bytes written: by checksum when one was taken, else by
//  digest. A piece with neither cannot be vouched for and counts as damaged.
bool zf_store_task_intact (const zf_store_task_t *task, uint64_t piece, const uint8_t *data,
                           size_t size);
//  The same for bytes in several frames, in order.
bool zf_store_task_intact_frames (const zf_store_task_t *task, uint64_t piece, zmsg_t *frames);

//  A write finished: the piece is finished and pending, with the checksum of the bytes
//  written and their digest (NULL: unknown until a reader computes it). before/after: the
//  data file just before and after the write (NULL if unknown), for the verified bits.
void zf_store_task_written (zf_store_task_t *task, uint64_t piece, uint64_t checksum,
                            const uint8_t *digest, const struct stat *before,
                            const struct stat *after);

//  The piece failed its check on disk: missing from now on, so it is fetched again and never
//  served; the next commit says so.
void zf_store_task_damaged (zf_store_task_t *task, uint64_t piece);

//  The data file as a reader sees it before a locate (info from fstat, NULL if it failed).
//  Returns whether the verified bits still count: the file is as storage last saw it, or,
//  while writes of the task are under way (its times change under storage's own hand), the
//  same file of the same length; the writes' before/after chain judges the rest. Otherwise
//  no earlier check counts any more.
bool zf_store_task_observe (zf_store_task_t *task, const struct stat *info);

//  The storage_meta record of the task (the payload of a slot record), the caller's to free.
uint8_t *zf_store_task_encode (const zf_store_task_t *task, size_t *size);

//  The task a storage_meta payload describes, checked to be task `id` and to add up (ids,
//  geometry, array sizes, state; the data file must be data_size bytes long); NULL and err
//  when not.
zf_store_task_t *zf_store_task_decode (const char *id, const uint8_t *payload, size_t size,
                                       uint64_t data_size, zf_error_t *err);

//  A commit begins: pending pieces become committing.
void zf_store_task_commit_begin (zf_store_task_t *task);
//  It ended: committing pieces are claimed, or pending again when it failed.
void zf_store_task_commit_end (zf_store_task_t *task, bool written);

#endif
