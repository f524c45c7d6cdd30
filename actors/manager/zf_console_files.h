/*  zf_console_files.h — the web console's static files, embedded in the binary.

    tools/zf_embed.py generates the table from console/ at build time (CMakeLists.txt); the
    manager serves it under /console/ (zf_manager_console.c). */
#ifndef ZF_CONSOLE_FILES_H_INCLUDED
#define ZF_CONSOLE_FILES_H_INCLUDED

#include <stddef.h>

typedef struct {
    const char *name;         //  "app.js": served as /console/app.js
    const char *content_type; //  "text/javascript; charset=utf-8"
    const unsigned char *data;
    size_t size;
} zf_console_file_t;

extern const zf_console_file_t zf_console_files[];
extern const size_t zf_console_file_count;

#endif
