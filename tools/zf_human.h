/*  zf_human.h — numbers for people, as the command-line tools print them. */
#ifndef ZF_HUMAN_H_INCLUDED
#define ZF_HUMAN_H_INCLUDED

#include "zf_prelude.h"

//  "512 B", "1.5 MiB" (powers of 1024).
void zf_human_bytes (uint64_t bytes, char *text, size_t size);
//  "42s", "3m05s", "2h10m"; "--" for a negative or absurd value.
void zf_human_duration (double seconds, char *text, size_t size);

#endif
