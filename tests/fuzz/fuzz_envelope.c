/*  fuzz_envelope.c — libFuzzer target for zf_envelope_decode, the first code to touch bytes
    from the network.

    Beyond "no crash, no leak, no sanitizer report", it checks that what zfly accepts it can
    send on: a decoded envelope re-encodes, the re-encoding decodes to the same message, and
    encoding is then a fixed point (one value, one encoding). */
#include "zf_envelope.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void s_check_same_header (const zf_envelope_t *left, const zf_envelope_t *right)
{
    ZF_ASSERT (left->desc == right->desc && streq (left->type, right->type));
    ZF_ASSERT (left->id == right->id && left->re == right->re);
    ZF_ASSERT (streq (left->from, right->from) && streq (left->to, right->to));
}

static zframe_t *s_reencode (const zf_envelope_t *env)
{
    zf_error_t err;
    zframe_t *frame =
        zf_envelope_encode (env->desc, env->id, env->re, env->from, env->to, env->body, &err);
    if (!frame)
        fprintf (stderr, "fuzz_envelope: re-encode refused: %s: %s\n", err.where, err.message);
    ZF_ASSERT (frame);
    return frame;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    zf_envelope_t env;
    zf_error_t err;
    zf_error_clear (&err);
    if (zf_envelope_decode (data, size, &env, &err) != ZF_OK) {
        ZF_ASSERT (err.code != ZF_OK && env.body == NULL && err.message[0]);
        return 0;
    }
    zframe_t *frame = s_reencode (&env);
    zf_envelope_t again;
    ZF_ASSERT (zf_envelope_decode (zframe_data (frame), zframe_size (frame), &again, &err)
               == ZF_OK);
    s_check_same_header (&env, &again);
    zframe_t *frame_again = s_reencode (&again);
    ZF_ASSERT (zframe_eq (frame, frame_again));

    zframe_destroy (&frame_again);
    zframe_destroy (&frame);
    zf_envelope_clear (&again);
    zf_envelope_clear (&env);
    return 0;
}
