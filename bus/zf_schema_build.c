/*  zf_schema_build.c — msgpack built by hand (zf_schema_build), for tests that need input no
    encoder would write: wrong types, truncation, junk.

    Separate from the codec: nothing in zfly's own traffic is built this way. */
#include "zf_schema.h"

static void s_build_one (msgpack_packer *pk, msgpack_sbuffer *buffer, char letter, va_list *args)
{
    switch (letter) {
    case 's': {
        const char *text = va_arg (*args, const char *);
        msgpack_pack_str_with_body (pk, text, strlen (text));
        break;
    }
    case 'S': {
        const char *text = va_arg (*args, const char *);
        msgpack_pack_str_with_body (pk, text, va_arg (*args, size_t));
        break;
    }
    case 'B': {
        const void *data = va_arg (*args, const void *);
        msgpack_pack_bin_with_body (pk, data, va_arg (*args, size_t));
        break;
    }
    case 'r': {
        const void *data = va_arg (*args, const void *);
        msgpack_sbuffer_write (buffer, data, va_arg (*args, size_t));
        break;
    }
    case 'u': msgpack_pack_uint64 (pk, va_arg (*args, uint64_t)); break;
    case 'i': msgpack_pack_int64 (pk, va_arg (*args, int64_t)); break;
    case 'f': msgpack_pack_double (pk, va_arg (*args, double)); break;
    case 't': msgpack_pack_true (pk); break;
    case 'F': msgpack_pack_false (pk); break;
    case 'n': msgpack_pack_nil (pk); break;
    default: ZF_ASSERT (!"zf_schema_build: unknown format letter");
    }
}

//  "M3" and "A2": a map or array header with the count written after the letter.
static const char *s_build_header (msgpack_packer *pk, const char *letter)
{
    char *end = NULL;
    unsigned long count = strtoul (letter + 1, &end, 10);
    ZF_ASSERT (end != letter + 1 && "zf_schema_build: M and A need a count");
    if (*letter == 'M')
        msgpack_pack_map (pk, count);
    else
        msgpack_pack_array (pk, count);
    return end - 1;
}

uint8_t *zf_schema_build (size_t *size, const char *format, ...)
{
    ZF_ASSERT (size && format);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    va_list args;
    va_start (args, format);
    for (const char *letter = format; *letter; letter++) {
        if (*letter == 'M' || *letter == 'A')
            letter = s_build_header (&pk, letter);
        else if (*letter != ' ')
            s_build_one (&pk, &buffer, *letter, &args);
    }
    va_end (args);
    *size = buffer.size;
    return (uint8_t *) msgpack_sbuffer_release (&buffer);
}
