/*  fuzz_meta_slot.c — libFuzzer target for a task's metadata slot file as storage reads it
    after a restart (actors/storage/zf_meta_slot.h): the record's framing and checksum, then
    its storage_meta payload through the schema decoder.

    A record that parses must frame again to the same header and trailer; a payload that
    decodes must encode and decode again. (Random input rarely passes the checksum, so the
    payload decoder is also run on the bytes after the header as they are.) */
#include "zf_schema.h"
#include "zf_msgs.h"
#include "storage/zf_meta_slot.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void s_decode (const uint8_t *payload, size_t size)
{
    zf_rec_storage_meta_t meta;
    zf_error_t err;
    if (zf_schema_decode_buffer (&zf_rec_storage_meta, payload, size, &meta, &err) != ZF_OK)
        return;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    ZF_ASSERT (zf_schema_encode (&zf_rec_storage_meta, &meta, &packer, &err) == ZF_OK);
    zf_rec_storage_meta_t again;
    ZF_ASSERT (zf_schema_decode_buffer (&zf_rec_storage_meta, (const uint8_t *) buffer.data,
                                        buffer.size, &again, &err)
               == ZF_OK);
    zf_schema_clear (&zf_rec_storage_meta, &again);
    msgpack_sbuffer_destroy (&buffer);
    zf_schema_clear (&zf_rec_storage_meta, &meta);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    uint64_t sequence;
    const uint8_t *payload;
    size_t payload_size;
    zf_error_t err;
    if (zf_meta_slot_parse (data, size, &sequence, &payload, &payload_size, &err) == ZF_OK) {
        ZF_ASSERT (payload >= data + ZF_META_SLOT_HEADER
                   && payload + payload_size + ZF_META_SLOT_TRAILER <= data + size);
        uint8_t header[ZF_META_SLOT_HEADER], trailer[ZF_META_SLOT_TRAILER];
        zf_meta_slot_frame (sequence, payload, payload_size, header, trailer);
        ZF_ASSERT (memcmp (header, data, sizeof header) == 0);
        ZF_ASSERT (memcmp (trailer, payload + payload_size, sizeof trailer) == 0);
        s_decode (payload, payload_size);
    } else if (size > ZF_META_SLOT_HEADER)
        s_decode (data + ZF_META_SLOT_HEADER, size - ZF_META_SLOT_HEADER);
    return 0;
}
