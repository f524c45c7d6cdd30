/*  zf_meta_slot.h — a task's metadata record as it lies in one of its two slot files.

    Each task keeps its metadata in DIR/tasks/XX/TASK_ID/meta.0 and meta.1, rewritten in place
    alternately (record n goes to slot n % 2), never renamed: a rename over an existing file
    makes ext4 flush the new file (auto_da_alloc), and that flush waits behind the writeback of
    the task's data file, for up to half a second under load. A record that a crash or a power
    cut cut short fails its checksum, and the loader takes the other slot, which holds the
    record before it (zf_store.h). A record, little-endian:

        offset  size
        0       8     magic "zfmeta" 0x00 0x01 (the last byte is the format version)
        8       8     sequence: 1 for a task's first record, one more for each after it
        16      4     payload length
        20      4     0, reserved
        24      n     payload: a storage_meta record (msgpack, schemas/storage_meta.schema)
        24 + n  8     XXH3-64 of the 24 + n bytes before it

    A slot file may be longer than its record (an earlier, longer record was overwritten in
    place): the bytes after the record mean nothing. Slot files are outside input after a
    restart: parsing checks every length before it trusts it (tests/fuzz/fuzz_meta_slot.c). */
#ifndef ZF_META_SLOT_H_INCLUDED
#define ZF_META_SLOT_H_INCLUDED

#include "zf_error.h"

#define ZF_META_SLOT_HEADER      24
#define ZF_META_SLOT_TRAILER     8
#define ZF_META_SLOT_PAYLOAD_MAX (48u << 20) //  storage_meta's bounds add up to ~41 MiB

//  Fills the header and trailer that frame payload as record `sequence`: write header,
//  payload and trailer back to back at offset 0 of the slot file (one pwritev).
void zf_meta_slot_frame (uint64_t sequence, const uint8_t *payload, size_t payload_size,
                         uint8_t header[ZF_META_SLOT_HEADER],
                         uint8_t trailer[ZF_META_SLOT_TRAILER]);

//  Checks the record at the start of bytes (a whole slot file): magic, lengths, checksum.
//  On ZF_OK *sequence is its sequence and *payload points into bytes.
zf_status_t zf_meta_slot_parse (const uint8_t *bytes, size_t size, uint64_t *sequence,
                                const uint8_t **payload, size_t *payload_size, zf_error_t *err);

void zf_meta_slot_test (bool verbose);

#endif
