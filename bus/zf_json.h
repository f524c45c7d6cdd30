/*  zf_json.h — msgpack values as JSON (jansson), for people reading bus traffic. */
#ifndef ZF_JSON_H_INCLUDED
#define ZF_JSON_H_INCLUDED

#include "zf_prelude.h"
#include <jansson.h>

//  Converts any msgpack object to a new JSON value. Map keys that are not strings are
//  rendered as their JSON text; binary values become {"bin_size": N, "hex": first 32 bytes};
//  nesting deeper than 32 levels becomes the string "…".
json_t *zf_json_from_msgpack (const msgpack_object *object);

#endif
