/*  zf_secret.h — secrets in memory (tokens, passwords, Authorization values): read from a
    file without leaving a copy behind, wiped before their memory is freed. */
#ifndef ZF_SECRET_H_INCLUDED
#define ZF_SECRET_H_INCLUDED

#include "zf_prelude.h"

//  The first line of the file at path, cut at its first character from stop ("\r\n" keeps a
//  password's blanks; "\r\n \t" takes a token's first word), as a new string (possibly "")
//  the caller frees with zf_secret_free; at most 511 characters. NULL when the file cannot be
//  opened (errno says why). The buffer it was read into is wiped.
char *zf_secret_read_line (const char *path, const char *stop);

//  Wipes text, then frees it; NULL is nothing to do.
void zf_secret_free (char *text);

void zf_secret_test (bool verbose);

#endif
