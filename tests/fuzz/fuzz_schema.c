/*  fuzz_schema.c — libFuzzer target for zf_schema_decode_buffer, through selftest.sample, the
    body that has a field of every kind (schemas/selftest.schema).

    A body that decodes must encode, decode again, and encode to the same bytes. */
#include "zf_schema.h"
#include "zf_msgs.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static msgpack_sbuffer s_encode (const void *value)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    zf_error_t err;
    zf_status_t rc = zf_schema_encode (zf_msg_selftest_sample.body, value, &pk, &err);
    if (rc != ZF_OK)
        fprintf (stderr, "fuzz_schema: re-encode refused: %s: %s\n", err.where, err.message);
    ZF_ASSERT (rc == ZF_OK);
    return buffer;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const zf_record_desc_t *desc = zf_msg_selftest_sample.body;
    zf_msg_selftest_sample_t sample;
    zf_error_t err;
    if (zf_schema_decode_buffer (desc, data, size, &sample, &err) != ZF_OK)
        return 0;
    msgpack_sbuffer first = s_encode (&sample);
    zf_msg_selftest_sample_t again;
    ZF_ASSERT (
        zf_schema_decode_buffer (desc, (const uint8_t *) first.data, first.size, &again, &err)
        == ZF_OK);
    msgpack_sbuffer second = s_encode (&again);
    ZF_ASSERT (first.size == second.size && memcmp (first.data, second.data, first.size) == 0);

    msgpack_sbuffer_destroy (&second);
    msgpack_sbuffer_destroy (&first);
    zf_schema_clear (desc, &again);
    zf_schema_clear (desc, &sample);
    return 0;
}
