/*  zf_meta_slot.c — a task's metadata record in a slot file (see zf_meta_slot.h). */
#include "zf_meta_slot.h"
#include <xxhash.h>

static const uint8_t s_magic[8] = {'z', 'f', 'm', 'e', 't', 'a', 0x00, 0x01};

static void s_put_le (uint8_t *to, uint64_t value, size_t size)
{
    for (size_t index = 0; index < size; index++)
        to[index] = (uint8_t) (value >> (8 * index));
}

static uint64_t s_get_le (const uint8_t *from, size_t size)
{
    uint64_t value = 0;
    for (size_t index = 0; index < size; index++)
        value |= (uint64_t) from[index] << (8 * index);
    return value;
}

static uint64_t s_checksum (const uint8_t header[ZF_META_SLOT_HEADER], const uint8_t *payload,
                            size_t payload_size)
{
    XXH3_state_t *state = XXH3_createState ();
    ZF_ASSERT (state);
    ZF_ASSERT (XXH3_64bits_reset (state) == XXH_OK);
    ZF_ASSERT (XXH3_64bits_update (state, header, ZF_META_SLOT_HEADER) == XXH_OK);
    if (payload_size > 0)
        ZF_ASSERT (XXH3_64bits_update (state, payload, payload_size) == XXH_OK);
    uint64_t checksum = XXH3_64bits_digest (state);
    XXH3_freeState (state);
    return checksum;
}

void zf_meta_slot_frame (uint64_t sequence, const uint8_t *payload, size_t payload_size,
                         uint8_t header[ZF_META_SLOT_HEADER], uint8_t trailer[ZF_META_SLOT_TRAILER])
{
    ZF_ASSERT (payload_size <= ZF_META_SLOT_PAYLOAD_MAX);
    memcpy (header, s_magic, sizeof s_magic);
    s_put_le (header + 8, sequence, 8);
    s_put_le (header + 16, payload_size, 4);
    s_put_le (header + 20, 0, 4);
    s_put_le (trailer, s_checksum (header, payload, payload_size), ZF_META_SLOT_TRAILER);
}

zf_status_t zf_meta_slot_parse (const uint8_t *bytes, size_t size, uint64_t *sequence,
                                const uint8_t **payload, size_t *payload_size, zf_error_t *err)
{
    if (size == 0)
        return zf_error_set (err, ZF_E_TRUNCATED, "slot", "empty (never written)");
    if (size < ZF_META_SLOT_HEADER + ZF_META_SLOT_TRAILER)
        return zf_error_set (err, ZF_E_TRUNCATED, "slot", "%zu bytes: shorter than a record", size);
    if (memcmp (bytes, s_magic, sizeof s_magic) != 0)
        return zf_error_set (err, ZF_E_INVALID, "slot", "not a metadata record (magic)");
    uint64_t length = s_get_le (bytes + 16, 4);
    if (length > ZF_META_SLOT_PAYLOAD_MAX || s_get_le (bytes + 20, 4) != 0)
        return zf_error_set (err, ZF_E_INVALID, "slot", "bad header (length %" PRIu64 ")", length);
    if (length > size - ZF_META_SLOT_HEADER - ZF_META_SLOT_TRAILER)
        return zf_error_set (err, ZF_E_TRUNCATED, "slot",
                             "record of %" PRIu64 " bytes cut short at %zu", length, size);
    const uint8_t *body = bytes + ZF_META_SLOT_HEADER;
    uint64_t stored = s_get_le (body + length, ZF_META_SLOT_TRAILER);
    if (s_checksum (bytes, body, (size_t) length) != stored)
        return zf_error_set (err, ZF_E_INVALID, "slot", "checksum mismatch (torn or damaged)");
    *sequence = s_get_le (bytes + 8, 8);
    if (*sequence == 0)
        return zf_error_set (err, ZF_E_INVALID, "slot", "sequence 0");
    *payload = body;
    *payload_size = (size_t) length;
    return ZF_OK;
}

// ---- selftest ----------------------------------------------------------------------------------

//  Header, payload and trailer back to back, then `extra` stale bytes, as in a slot file.
static uint8_t *s_test_record (uint64_t sequence, const char *payload, size_t extra, size_t *size)
{
    size_t payload_size = strlen (payload);
    *size = ZF_META_SLOT_HEADER + payload_size + ZF_META_SLOT_TRAILER + extra;
    uint8_t *bytes = zf_malloc (*size);
    memset (bytes, 0xee, *size);
    zf_meta_slot_frame (sequence, (const uint8_t *) payload, payload_size, bytes,
                        bytes + ZF_META_SLOT_HEADER + payload_size);
    memcpy (bytes + ZF_META_SLOT_HEADER, payload, payload_size);
    return bytes;
}

void zf_meta_slot_test (bool verbose)
{
    printf (" * zf_meta_slot: ");
    size_t size;
    uint64_t sequence = 0;
    const uint8_t *payload = NULL;
    size_t payload_size = 0;
    zf_error_t err;

    //  A record reads back; stale bytes after it (a longer record overwritten) do not matter.
    uint8_t *bytes = s_test_record (7, "hello, metadata", 100, &size);
    ZF_ASSERT (zf_meta_slot_parse (bytes, size, &sequence, &payload, &payload_size, &err) == ZF_OK);
    ZF_ASSERT (sequence == 7 && payload_size == 15 && memcmp (payload, "hello, metadata", 15) == 0);
    ZF_ASSERT (payload == bytes + ZF_META_SLOT_HEADER);

    //  Any flipped bit, in header, payload or checksum, and any cut is refused.
    size_t record = size - 100;
    for (size_t offset = 0; offset < record; offset++) {
        bytes[offset] ^= 0x04;
        ZF_ASSERT (zf_meta_slot_parse (bytes, size, &sequence, &payload, &payload_size, &err)
                   != ZF_OK);
        bytes[offset] ^= 0x04;
    }
    for (size_t cut = 0; cut < record; cut++)
        ZF_ASSERT (zf_meta_slot_parse (bytes, cut, &sequence, &payload, &payload_size, &err)
                   != ZF_OK);
    ZF_ASSERT (zf_meta_slot_parse (bytes, record, &sequence, &payload, &payload_size, &err)
               == ZF_OK);
    //  A torn write: the new header over an old, longer record's tail.
    uint8_t *newer = s_test_record (8, "hello, metadatb", 0, &size);
    memcpy (bytes, newer, ZF_META_SLOT_HEADER + 4);
    ZF_ASSERT (zf_meta_slot_parse (bytes, record, &sequence, &payload, &payload_size, &err)
               == ZF_E_INVALID);
    ZF_ASSERT (strstr (err.message, "checksum"));
    //  A length beyond the file, or beyond any record, is refused before it is used.
    memcpy (bytes, newer, size);
    bytes[16] = 0xff;
    bytes[17] = 0xff;
    ZF_ASSERT (zf_meta_slot_parse (bytes, record, &sequence, &payload, &payload_size, &err)
               == ZF_E_TRUNCATED);
    bytes[19] = 0xff;
    ZF_ASSERT (zf_meta_slot_parse (bytes, record, &sequence, &payload, &payload_size, &err)
               == ZF_E_INVALID);
    ZF_ASSERT (zf_meta_slot_parse (bytes, 0, &sequence, &payload, &payload_size, &err)
               == ZF_E_TRUNCATED);
    zf_free (newer);
    zf_free (bytes);

    //  An empty payload is a record too.
    bytes = s_test_record (1, "", 0, &size);
    ZF_ASSERT (zf_meta_slot_parse (bytes, size, &sequence, &payload, &payload_size, &err) == ZF_OK);
    ZF_ASSERT (sequence == 1 && payload_size == 0);
    zf_free (bytes);
    if (verbose)
        printf ("(records, flips, cuts, torn writes) ");
    printf ("OK\n");
}
