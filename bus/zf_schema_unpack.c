/*  zf_schema_unpack.c — the checked unpack of raw bytes (zf_schema_unpack) and the
    whole-buffer decode on top of it (zf_schema_decode_buffer).

    Separate from the codec (zf_schema.c), which walks descriptors over an unpacked object:
    this file reads bytes from outside, and proves their shape before msgpack-c is given them.
    The envelope (zf_envelope.c) unpacks its frames here too. */
#include "zf_schema.h"

//  --------------------------------------------------------------------------------------------
//  Whole-buffer decode. msgpack-c allocates an array's or map's slots as soon as it reads the
//  count, so five bytes claiming four billion items would ask for 100 GB. s_scan walks the
//  bytes first, without allocating, and proves every container's items are really there.

//  The msgpack formats 0xc0..0xdf (the others carry their size in the type byte).
typedef struct {
    uint8_t length_size; //  bytes of a big-endian length or count after the type byte
    uint8_t payload;     //  fixed bytes after that; ext's type byte counts here
    uint8_t per_count;   //  containers: objects per counted item (array 1, map 2)
} s_format_t;

static const s_format_t s_formats[0x20] = {
    [0xc4 - 0xc0] = {1, 0, 0},  //  bin8
    [0xc5 - 0xc0] = {2, 0, 0},  //  bin16
    [0xc6 - 0xc0] = {4, 0, 0},  //  bin32
    [0xc7 - 0xc0] = {1, 1, 0},  //  ext8
    [0xc8 - 0xc0] = {2, 1, 0},  //  ext16
    [0xc9 - 0xc0] = {4, 1, 0},  //  ext32
    [0xca - 0xc0] = {0, 4, 0},  //  float32
    [0xcb - 0xc0] = {0, 8, 0},  //  float64
    [0xcc - 0xc0] = {0, 1, 0},  //  uint8
    [0xcd - 0xc0] = {0, 2, 0},  //  uint16
    [0xce - 0xc0] = {0, 4, 0},  //  uint32
    [0xcf - 0xc0] = {0, 8, 0},  //  uint64
    [0xd0 - 0xc0] = {0, 1, 0},  //  int8
    [0xd1 - 0xc0] = {0, 2, 0},  //  int16
    [0xd2 - 0xc0] = {0, 4, 0},  //  int32
    [0xd3 - 0xc0] = {0, 8, 0},  //  int64
    [0xd4 - 0xc0] = {0, 2, 0},  //  fixext1
    [0xd5 - 0xc0] = {0, 3, 0},  //  fixext2
    [0xd6 - 0xc0] = {0, 5, 0},  //  fixext4
    [0xd7 - 0xc0] = {0, 9, 0},  //  fixext8
    [0xd8 - 0xc0] = {0, 17, 0}, //  fixext16
    [0xd9 - 0xc0] = {1, 0, 0},  //  str8
    [0xda - 0xc0] = {2, 0, 0},  //  str16
    [0xdb - 0xc0] = {4, 0, 0},  //  str32
    [0xdc - 0xc0] = {2, 0, 1},  //  array16
    [0xdd - 0xc0] = {4, 0, 1},  //  array32
    [0xde - 0xc0] = {2, 0, 2},  //  map16
    [0xdf - 0xc0] = {4, 0, 2},  //  map32
    //  0xc0 nil, 0xc2 false, 0xc3 true: nothing follows; 0xc1 is never used
};

static uint64_t s_read_be (const uint8_t *data, size_t size)
{
    uint64_t number = 0;
    for (size_t index = 0; index < size; index++)
        number = (number << 8) | data[index];
    return number;
}

static zf_status_t s_truncated (size_t size, const char *where, zf_error_t *err)
{
    return zf_error_set (err, ZF_E_TRUNCATED, where, "input ends inside a value at byte %zu", size);
}

//  Steps over the object at *offset, checking its bytes are there; a container's items are
//  not stepped over but counted into *items, for the caller to visit.
static zf_status_t s_scan_one (const uint8_t *data, size_t size, size_t *offset, uint64_t *items,
                               const char *where, zf_error_t *err)
{
    if (*offset >= size)
        return s_truncated (size, where, err);
    uint8_t byte = data[(*offset)++];
    uint64_t payload = 0;
    *items = 0;
    if (byte <= 0x7f || byte >= 0xe0)
        return ZF_OK; //  fixint
    else if (byte <= 0x8f)
        *items = 2u * (byte & 0x0f); //  fixmap
    else if (byte <= 0x9f)
        *items = byte & 0x0f; //  fixarray
    else if (byte <= 0xbf)
        payload = byte & 0x1f; //  fixstr
    else if (byte == 0xc1)
        return zf_error_set (err, ZF_E_INVALID, where, "byte 0xc1 at offset %zu is not msgpack",
                             *offset - 1);
    else {
        s_format_t format = s_formats[byte - 0xc0];
        if (size - *offset < format.length_size)
            return s_truncated (size, where, err);
        uint64_t length = s_read_be (data + *offset, format.length_size);
        *offset += format.length_size;
        if (format.per_count)
            *items = length * format.per_count;
        else
            payload = format.payload + length;
    }
    if (payload > size - *offset)
        return s_truncated (size, where, err);
    *offset += (size_t) payload;
    return ZF_OK;
}

//  Checks data holds exactly one complete msgpack object nested at most ZF_SCHEMA_DEPTH_MAX deep.
static zf_status_t s_scan (const uint8_t *data, size_t size, const char *where, zf_error_t *err)
{
    uint64_t pending[ZF_SCHEMA_DEPTH_MAX + 1]; //  objects still to read, per open container
    size_t depth = 0;
    size_t offset = 0;
    pending[0] = 1;
    while (true) {
        while (depth > 0 && pending[depth] == 0)
            depth--;
        if (depth == 0 && pending[0] == 0)
            break;
        pending[depth]--;
        uint64_t items;
        zf_status_t rc = s_scan_one (data, size, &offset, &items, where, err);
        if (rc != ZF_OK)
            return rc;
        if (items == 0)
            continue;
        if (depth == ZF_SCHEMA_DEPTH_MAX)
            return zf_error_set (err, ZF_E_TOO_LARGE, where, "msgpack nested deeper than %d levels",
                                 ZF_SCHEMA_DEPTH_MAX);
        pending[++depth] = items;
    }
    if (offset != size)
        return zf_error_set (err, ZF_E_TRAILING, where, "%zu byte(s) left over after the value",
                             size - offset);
    return ZF_OK;
}

zf_status_t zf_schema_unpack (const uint8_t *data, size_t size, msgpack_unpacked *result,
                              const char *where, zf_error_t *err)
{
    ZF_ASSERT (result);
    msgpack_unpacked_init (result);
    if (!data && size > 0)
        return zf_error_set (err, ZF_E_INTERNAL, where, "no data for %zu bytes", size);
    zf_status_t rc = s_scan (data, size, where, err);
    if (rc != ZF_OK)
        return rc;
    //  The scan proved the shape; these checks only guard against a disagreement with it.
    size_t offset = 0;
    msgpack_unpack_return ret = msgpack_unpack_next (result, (const char *) data, size, &offset);
    if (ret == MSGPACK_UNPACK_CONTINUE)
        rc = zf_error_set (err, ZF_E_TRUNCATED, where, "input ends inside a value");
    else if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = zf_error_set (err, ZF_E_TOO_LARGE, where, "msgpack ran out of memory");
    else if (ret != MSGPACK_UNPACK_SUCCESS)
        rc = zf_error_set (err, ZF_E_INVALID, where, "msgpack parse error");
    else if (offset != size)
        rc = zf_error_set (err, ZF_E_TRAILING, where, "%zu byte(s) left over after the value",
                           size - offset);
    if (rc != ZF_OK)
        msgpack_unpacked_destroy (result);
    return rc;
}

zf_status_t zf_schema_decode_buffer (const zf_record_desc_t *desc, const uint8_t *data, size_t size,
                                     void *value, zf_error_t *err)
{
    ZF_ASSERT (desc && value);
    memset (value, 0, desc->size); //  the failure contract: value cleared
    msgpack_unpacked result;
    zf_status_t rc = zf_schema_unpack (data, size, &result, "", err);
    if (rc == ZF_OK)
        rc = zf_schema_decode (desc, &result.data, value, "", err);
    msgpack_unpacked_destroy (&result);
    return rc;
}
